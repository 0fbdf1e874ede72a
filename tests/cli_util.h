/* Helpers for tests that run the xdistill CLI: the binary is $XD_CLI (set
 * by CTest) or the build directory's; and token data made from a text file. */
#ifndef XD_TEST_CLI_UTIL_H
#define XD_TEST_CLI_UTIL_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/tokdata.h"
#include "xdistill.h"

#ifndef XD_BINARY_DIR
#define XD_BINARY_DIR "."
#endif

static inline const char *test_cli_path(void) {
    const char *c = getenv("XD_CLI");
    return c ? c : XD_BINARY_DIR "/xdistill";
}

enum { TEST_CLI_STDERR = 0, TEST_CLI_BOTH = 1, TEST_CLI_STDOUT = 2 };

/* Runs `xdistill ARGS`; what it writes to stderr (mode TEST_CLI_STDERR),
 * to both (TEST_CLI_BOTH) or to stdout (TEST_CLI_STDOUT) goes to out.
 * Returns the exit status (128 when it died by a signal). */
static inline int test_cli_run(const char *args, char *out, size_t cap, int mode) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             mode == TEST_CLI_BOTH     ? "%s %s 2>&1"
             : mode == TEST_CLI_STDOUT ? "%s %s 2>/dev/null"
                                       : "%s %s 2>&1 >/dev/null",
             test_cli_path(), args);
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

/* Starts `xdistill ARGS` in the background, ARGS split at spaces (at most
 * 63 of them), stdout and stderr to log (NULL: /dev/null). Returns the
 * child's pid (wait for it with waitpid or wait4), or -1. */
static inline pid_t test_cli_spawn(const char *args, const char *log) {
    char buf[8192], *argv[64];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", args);
    argv[n++] = (char *)test_cli_path();
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 63; t = strtok_r(NULL, " ", &save))
        argv[n++] = t;
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Token data from the paragraphs of a text file (xd_tokdata_prep with blank-
 * line document separators), tokenised by the model or tokenizer at
 * tokenizer_path. Returns 0, or -1 with xd_last_error(). */
static inline int test_prep_text(const char *tokenizer_path, const char *txt, const char *out,
                                 double val_frac) {
    xd_tokenizer *t = xd_tokenizer_load(tokenizer_path);
    if (!t) return -1;
    xd_prep_opts o;
    xd_prep_defaults(&o);
    const char *in[] = {txt};
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_sep = XD_DOCSEP_BLANK;
    o.val_frac = val_frac;
    int rc = xd_tokdata_prep(t, &o, out, NULL);
    xd_tokenizer_free(t);
    return rc;
}

/* DIR/data.tok: 60 short paragraphs ("the cat sat on the mat number N ...") written to
 * DIR/corpus.txt and tokenised by tiny-llama.gguf, 10% for validation. Returns 0, or -1
 * with xd_last_error(). */
static inline int test_cat_data(const char *dir) {
    char txt[512], out[512];
    snprintf(txt, sizeof txt, "%s/corpus.txt", dir);
    FILE *f = fopen(txt, "w");
    if (!f) return -1;
    for (int i = 0; i < 60; i++)
        fprintf(f, "the cat sat on the mat number %d and then the dog ran to the hat.\n\n", i % 7);
    fclose(f);
    snprintf(out, sizeof out, "%s/data.tok", dir);
    return test_prep_text(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf", txt, out, 0.1);
}

#endif
