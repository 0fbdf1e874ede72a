/* The threading relies on the OpenMP build of OpenBLAS (issue 12): the
 * library refuses any other, and the CLI stops before any work with a message
 * naming the package to install.
 *  1. this build links the OpenMP variant: xd_check_blas and xd_set_threads
 *     succeed, and openblas_get_parallel() says 2;
 *  2. the CLI with a preloaded openblas_get_parallel() that answers 1 (the
 *     pthreads build; tests/link/fake_openblas_pthreads.c) exits 1 and names
 *     libopenblas0-openmp; without the preload the same command works;
 *  3. where Debian's pthreads build is installed, the CLI loaded against it
 *     (LD_LIBRARY_PATH beats the binary's RUNPATH) is refused the same way;
 *  4. kernels: xd_blas_core_hint() is NULL whenever OPENBLAS_CORETYPE is set. With a
 *     preloaded openblas_get_corename() that answers "Prescott" (OpenBLAS 0.3.21 on a CPU
 *     model it does not know; tests/link/fake_openblas_prescott.c), `xdistill --version`
 *     reports the kernels it re-executed itself with: SkylakeX on a CPU with AVX-512
 *     F/BW/DQ/VL, Haswell with AVX2 and FMA, else none chosen; with OPENBLAS_CORETYPE set
 *     it keeps that choice. */
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

    /* 4. the kernels */
    char *user_core = getenv("OPENBLAS_CORETYPE") ? strdup(getenv("OPENBLAS_CORETYPE")) : NULL;
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    CHECK(xd_blas_core_hint() == NULL, "a hint although OPENBLAS_CORETYPE is set");
    const char *want = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    unsetenv("OPENBLAS_CORETYPE");
    setenv("LD_PRELOAD", XD_FAKE_PRESCOTT, 1);
    rc = test_cli_run("--version", out, sizeof out, TEST_CLI_BOTH);
    char line[256];
    snprintf(line, sizeof line, "kernels: %s (chosen by xdistill", want ? want : "Prescott");
    CHECK(rc == 0 && (want ? strstr(out, line) != NULL : strstr(out, "kernels: Prescott\n") != NULL),
          "generic kernels: expected '%s', got exit %d: %s", want ? line : "kernels: Prescott", rc, out);
    printf("OpenBLAS on generic kernels (preloaded stand-in): %s", out);
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    rc = test_cli_run("--version", out, sizeof out, TEST_CLI_BOTH);
    CHECK(rc == 0 && strstr(out, "kernels: Haswell\n"), "OPENBLAS_CORETYPE=Haswell not kept: exit %d: %s", rc, out);
    unsetenv("LD_PRELOAD");
    if (user_core) setenv("OPENBLAS_CORETYPE", user_core, 1);
    else unsetenv("OPENBLAS_CORETYPE");
    free(user_core);
    rc = test_cli_run("--version", out, sizeof out, TEST_CLI_BOTH);
    CHECK(rc == 0 && strstr(out, "xdistill 0.") && strstr(out, "OpenBLAS"), "--version: exit %d: %s", rc, out);
    printf("this machine: %s", out);
    return test_summary("test_blas_variant");
}
