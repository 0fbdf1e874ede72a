/* Running the xdistill CLI from a test: the binary is $XD_CLI (set by CTest)
 * or the build directory's. */
#ifndef XD_TEST_CLI_UTIL_H
#define XD_TEST_CLI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#ifndef XD_BINARY_DIR
#define XD_BINARY_DIR "."
#endif

static inline const char *test_cli_path(void) {
    const char *c = getenv("XD_CLI");
    return c ? c : XD_BINARY_DIR "/xdistill";
}

/* Runs `xdistill ARGS`; its stderr (stdout too when both) goes to out.
 * Returns the exit status (128 when it died by a signal). */
static inline int test_cli_run(const char *args, char *out, size_t cap, int both) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, both ? "%s %s 2>&1" : "%s %s 2>&1 >/dev/null", test_cli_path(), args);
    FILE *p = popen(cmd, "r");
    size_t n = 0, k;
    while (p && n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0) n += k;
    if (p) { /* drain what did not fit */
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {}
    }
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#endif
