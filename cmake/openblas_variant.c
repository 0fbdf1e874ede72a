/* Configure-time probe (CMakeLists.txt): prints which OpenBLAS build the
 * linker picked. openblas_get_parallel(): 0 = serial, 1 = pthreads, 2 = OpenMP. */
#include <cblas.h>
#include <stdio.h>

int main(void) {
    printf("%d\n", openblas_get_parallel());
    return 0;
}
