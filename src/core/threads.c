/* One thread count for OpenMP and OpenBLAS. The OpenMP build of OpenBLAS runs
 * its threads in OpenMP's own pool, so a GEMM called from inside one of our
 * parallel regions runs on the calling thread and the two never oversubscribe
 * the cores. The pthreads build would start a second pool beside OpenMP's, and
 * the serial build ignores the thread count, so both are refused (the build
 * checks the same at configure time, see CMakeLists.txt). */
#include <cblas.h>
#include <omp.h>

#include "core/error.h"
#include "xdistill.h"

int xd_check_blas(void) {
    /* openblas_get_parallel(): 0 = serial build, 1 = pthreads, 2 = OpenMP */
    int p = openblas_get_parallel();
    if (p == 2) return 0;
    return xd_err("the OpenBLAS loaded at run time is the %s build (openblas_get_parallel() = %d); "
                  "xdistill needs the OpenMP build: install libopenblas0-openmp "
                  "(libopenblas-openmp-dev to build), or select it with "
                  "'update-alternatives --config libopenblas.so.0-x86_64-linux-gnu'",
                  p == 1 ? "pthreads" : p == 0 ? "serial (single-threaded)" : "unknown", p);
}

int xd_set_threads(int n) {
    if (xd_check_blas()) return -1;
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return 0;
}

int xd_get_threads(void) { return omp_get_max_threads(); }
