#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xdistill.h"

static int g_rank = -1, g_ranks; /* set when running as one of several MPI ranks */

void cli_set_rank(int rank, int ranks) {
    g_rank = rank;
    g_ranks = ranks;
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_log_break();
    if (g_rank >= 0) fprintf(stderr, "xdistill (rank %d of %d): error: ", g_rank, g_ranks);
    else fputs("xdistill: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_lib_error(void) { return cli_error("%s", xd_last_error()); }

int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') {
        cli_error("%s: '%s' is not a non-negative integer", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int parse_float(const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_error("%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int parse_weights(const char *opt, const char *s, int *out) {
    int m = xd_weights_mode_parse(s);
    if (m < 0) {
        cli_error("%s: '%s' (expected fp32, gguf or gguf-all)", opt, s);
        return -1;
    }
    *out = m;
    return 0;
}

int take_opt(int argc, char **argv, int *i, const char *opt, const char **val) {
    if (strcmp(argv[*i], opt)) return 0;
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", opt);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int is_help_arg(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (is_help_arg(argv[i])) return 1;
    return 0;
}

int cli_help(const char *usage) {
    size_t n = strlen(usage);
    fputs(usage, stdout);
    if (!n || usage[n - 1] != '\n') putchar('\n');
    return 0;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
