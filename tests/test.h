/* Minimal test harness: CHECK-style assertions that count instead of abort,
 * and a summary line "N passed, N failed" that CI recognises. */
#ifndef XD_TEST_H
#define XD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* UNDER_SANITIZER: built with AddressSanitizer (timings and RSS are not meaningful) */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

static int t_pass, t_fail;

/* max |a[i] − b[i]| over n floats, in double; a NaN makes it NaN (so a check fails). */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= w)) w = d;
    }
    return w;
}

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) t_pass++;                                                     \
        else {                                                                  \
            t_fail++;                                                           \
            fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol, what)                                             \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s: %g vs %g (tol %g)",   \
          (what), (double)(a), (double)(b), (double)(tol))

/* Path of a committed fixture; tests run from the build dir, XD_SOURCE_DIR
 * is the repository root (set by CMake). */
#ifndef XD_SOURCE_DIR
#define XD_SOURCE_DIR "."
#endif
#define FIXTURE(name) XD_SOURCE_DIR "/tests/fixtures/" name

/* The real teacher (installed by `make test`): $XD_TEACHER or the models cache. */
static inline const char *teacher_path(void) {
    const char *p = getenv("XD_TEACHER");
    static char buf[1024];
    if (p && *p) return p;
    const char *home = getenv("HOME");
    snprintf(buf, sizeof buf, "%s/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             home ? home : ".");
    return buf;
}

static int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* The whole file at path, NUL-terminated (malloc'ed; *n its size), or NULL. */
static inline char *test_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    if (b) b[*n] = 0;
    fclose(f);
    return b;
}

/* 1 when the files at a and b both read and hold the same bytes. */
static inline int test_same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g;
    char x[4096], y[4096];
    while (same) {
        size_t n = fread(x, 1, sizeof x, f), m = fread(y, 1, sizeof y, g);
        same = n == m && !memcmp(x, y, n);
        if (n < sizeof x) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

#endif
