/* Preloaded by test_blas_variant: answers openblas_get_corename() as OpenBLAS 0.3.21 does
 * on an x86-64 CPU model it does not know: its generic "Prescott" kernels, unless
 * OPENBLAS_CORETYPE names others (then that name), so the CLI's choice of kernels can be
 * seen on any machine. */
#include <stdlib.h>

char *openblas_get_corename(void);
char *openblas_get_corename(void) {
    char *set = getenv("OPENBLAS_CORETYPE");
    return set && *set ? set : (char *)"Prescott";
}
