/* Small helpers shared by the commands: checked option parsing and errors. */
#ifndef XD_ARGS_H
#define XD_ARGS_H

#include <stdint.h>

/* Prints "xdistill: error: <fmt>" to stderr; returns 1 (the exit status). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the library's last error as above; returns 1. */
int cli_lib_error(void);
/* Errors name the rank from here on (an MPI job with several ranks). */
void cli_set_rank(int rank, int ranks);

/* Installs the library's log callback (main.c): messages and progress to
 * stderr, a status line redrawn in place when stderr is a terminal. */
void cli_log_install(void);
/* Ends a status line left open on the terminal (before other output). */
void cli_log_break(void);

/* Parse option values with range checks; print an error naming the option and
 * return -1 on failure. */
int parse_int(const char *opt, const char *s, long lo, long hi, int *out);
int parse_u64(const char *opt, const char *s, uint64_t *out);
int parse_float(const char *opt, const char *s, double lo, double hi, float *out);
/* --weights fp32|gguf|gguf-all (xd_weights_mode). */
int parse_weights(const char *opt, const char *s, int *out);

/* If argv[*i] equals opt, stores argv[*i + 1] in *val and advances *i. Returns
 * 1 if matched, 0 if not, -1 if the value is missing (error printed). */
int take_opt(int argc, char **argv, int *i, const char *opt, const char **val);

/* Help: every command answers -h or --help, wherever it stands among its
 * arguments, with its usage text on stdout and exit status 0. */
/* 1 if arg is "-h" or "--help". */
int is_help_arg(const char *arg);
/* 1 if one of argv[1 .. argc-1] is -h or --help. */
int wants_help(int argc, char **argv);
/* Prints usage to stdout (with a final newline); returns 0, the exit status. */
int cli_help(const char *usage);

/* Wall-clock seconds. */
double now_s(void);

#endif
