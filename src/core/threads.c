/* One thread count for OpenMP and OpenBLAS (the OpenMP build of OpenBLAS
 * shares OpenMP's pool, so the two never oversubscribe the cores). */
#include <cblas.h>
#include <omp.h>

#include "xdistill.h"

void xd_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int xd_get_threads(void) { return omp_get_max_threads(); }
