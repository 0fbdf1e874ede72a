/* Helpers shared by the benchmarks: wall clock, RSS, the CPU other
 * processes take (to flag disturbed runs), medians, whole-file reads. */
#ifndef XD_BENCH_COMMON_H
#define XD_BENCH_COMMON_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h" /* xd_rss_mib, xd_peak_rss_mib: resident memory now / at peak */
#include "xdistill.h"

/* The OpenBLAS kernels the command-line tool runs with: re-executes the benchmark once with
 * OPENBLAS_CORETYPE = xd_blas_core_hint() when there is one (src/cli/main.c does the same),
 * so that it measures what users get. Returns the kernels' name (openblas_get_corename). */
static inline const char *bench_blas_core(char **argv) {
    const char *core = xd_blas_core_hint();
    if (core && !setenv("OPENBLAS_CORETYPE", core, 1)) execv("/proc/self/exe", argv);
    return openblas_get_corename();
}

/* The default teacher: $XD_TEACHER, else the one `make teacher` installs. */
static inline const char *bench_teacher_path(void) {
    static char path[4096];
    const char *env = getenv("XD_TEACHER"), *home = getenv("HOME");
    if (env && *env) return env;
    snprintf(path, sizeof path, "%s/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             home ? home : ".");
    return path;
}

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Busy CPU seconds of the whole machine (/proc/stat) and of this process. */
static inline double bench_machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        v[0] = 0;
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static inline double bench_self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* A mark to measure, later, the share of all cores that other processes took. */
typedef struct { double wall, busy, self; } bench_cpu_mark;

static inline void bench_mark(bench_cpu_mark *m) {
    m->wall = bench_now();
    m->busy = bench_machine_busy_s();
    m->self = bench_self_cpu_s();
}

static inline double bench_others_frac(const bench_cpu_mark *a) {
    bench_cpu_mark b;
    bench_mark(&b);
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    double fr = ((b.busy - a->busy) - (b.self - a->self)) / (ncpu * (b.wall - a->wall));
    return fr < 0 ? 0 : fr;
}

static inline int bench_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of x[0..n) (x is left as it is). */
static inline double bench_median(const double *x, int n) {
    if (n <= 0) return 0;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return x[0];
    for (int i = 0; i < n; i++) s[i] = x[i];
    qsort(s, (size_t)n, sizeof *s, bench_cmp_d);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* The whole file, NUL-terminated (malloc'ed), or NULL. */
static inline char *bench_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}

#endif
