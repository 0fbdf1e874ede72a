/* One thread count for OpenMP and OpenBLAS. The OpenMP build of OpenBLAS runs
 * its threads in OpenMP's own pool, so a GEMM called from inside one of our
 * parallel regions runs on the calling thread and the two never oversubscribe
 * the cores. The pthreads build would start a second pool beside OpenMP's, and
 * the serial build ignores the thread count, so both are refused (the build
 * checks the same at configure time, see CMakeLists.txt). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

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

/* OpenBLAS's DYNAMIC_ARCH build picks its kernels from the CPU's family and model at load.
 * A model it does not know gets the generic Prescott (SSE3) kernels, whatever the CPU's
 * vector units: OpenBLAS 0.3.21 (Debian 12) does so on Intel family 6 model 207 (Emerald
 * Rapids), where the teacher then prefills 3.6× and decodes 1.8–2.1× slower than with its
 * SkylakeX kernels (bench/RESULTS.md, "Decoding over the compact cache; OpenBLAS kernels").
 * OpenBLAS's documented remedy is OPENBLAS_CORETYPE, read at load, so only a program that
 * has not loaded it yet (a re-executed CLI) can use this. */
const char *xd_blas_core_hint(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *set = getenv("OPENBLAS_CORETYPE"), *core = openblas_get_corename();
    if ((set && *set) || !core || strcmp(core, "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}
