/* Preloaded by test_blas_variant: answers openblas_get_parallel() as the
 * pthreads build of OpenBLAS does (1), so the CLI can be seen to refuse it
 * without installing that package. */
int openblas_get_parallel(void);
int openblas_get_parallel(void) { return 1; }
