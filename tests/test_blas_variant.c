/* The threading relies on the OpenMP build of OpenBLAS (issue 12): the
 * library refuses any other, and the CLI stops before any work with a message
 * naming the package to install.
 *  1. this build links the OpenMP variant: xd_check_blas and xd_set_threads
 *     succeed, and openblas_get_parallel() says 2;
 *  2. the CLI with a preloaded openblas_get_parallel() that answers 1 (the
 *     pthreads build; tests/link/fake_openblas_pthreads.c) exits 1 and names
 *     libopenblas0-openmp; without the preload the same command works;
 *  3. where Debian's pthreads build is installed, the CLI loaded against it
 *     (LD_LIBRARY_PATH beats the binary's RUNPATH) is refused the same way. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "test.h"
#include "xdistill.h"

#ifndef XD_FAKE_BLAS
#define XD_FAKE_BLAS ""
#endif

int main(void) {
    CHECK(openblas_get_parallel() == 2, "linked OpenBLAS is not the OpenMP build (%d)", openblas_get_parallel());
    CHECK(xd_check_blas() == 0, "xd_check_blas: %s", xd_last_error());
    CHECK(xd_set_threads(2) == 0 && xd_get_threads() == 2, "xd_set_threads(2): %s", xd_last_error());

    char out[8192], args[2048];
    snprintf(args, sizeof args, "inspect %s", FIXTURE("tiny-llama.gguf"));
    int rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 0, "inspect with the OpenMP build: exit %d: %s", rc, out);

    /* the ASan runtime wants to be first in the library list; the preload is harmless */
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
    setenv("LD_PRELOAD", XD_FAKE_BLAS, 1);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    unsetenv("LD_PRELOAD");
    CHECK(rc == 1 && strstr(out, "pthreads") && strstr(out, "libopenblas0-openmp"),
          "pthreads build (preloaded): exit %d, message: %s", rc, out);
    printf("pthreads build refused: %s", out);

    const char *dir = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
    char lib[512];
    snprintf(lib, sizeof lib, "%s/libopenblas.so.0", dir);
    if (access(lib, R_OK) == 0) {
        setenv("LD_LIBRARY_PATH", dir, 1);
        rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
        unsetenv("LD_LIBRARY_PATH");
        CHECK(rc == 1 && strstr(out, "libopenblas0-openmp"), "Debian's pthreads build: exit %d: %s", rc, out);
        printf("Debian's pthreads build refused: %s", out);
    } else {
        printf("Debian's pthreads build not installed (%s): the preloaded stand-in covers it\n", lib);
    }
    return test_summary("test_blas_variant");
}
