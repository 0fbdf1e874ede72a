/* xdistill data prep --tokenizer MODEL IN... -o DATA [--jsonl] [--field NAME]
 *                    [--prompt-field NAME] [--doc-sep file|blank|line] [--seed N]
 *                    [--val-frac F] [--special] [--domain file|field:NAME|rule:FILE]
 *                    [--threads N] [--quiet]
 * xdistill data info DATA [--tokenizer MODEL]
 * xdistill data split DATA -o DIR [--domains a,b,...]
 * xdistill data echo DATA --tokenizer MODEL -o OUT [--rate R] [--min-gap N] [--max-gap N]
 *                    [--span-frac F] [--min-len N] [--max-span N] [--seed N] [--quiet]
 * Packs text or JSONL into one token file for training, and splits a file
 * with domains into one file per domain (format: docs/data.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/tokdata.h"
#include "xdistill.h"

static const char PREP_USAGE[] =
    "usage: xdistill data prep --tokenizer MODEL IN... -o DATA [--jsonl] [--field NAME] "
    "[--prompt-field NAME] [--doc-sep file|blank|line] [--seed N] [--val-frac F] [--special] "
    "[--domain file|field:NAME|rule:FILE] [--threads N] [--quiet]";
static const char INFO_USAGE[] = "usage: xdistill data info DATA [--tokenizer MODEL]";
static const char SPLIT_USAGE[] = "usage: xdistill data split DATA -o DIR [--domains a,b,...]";
static const char ECHO_USAGE[] =
    "usage: xdistill data echo DATA --tokenizer MODEL -o OUT [--rate R] [--min-gap N] "
    "[--max-gap N] [--span-frac F] [--min-len N] [--max-span N] [--seed N] [--quiet]";

static void print_summary(const xd_tokdata *d) {
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    uint64_t mn = UINT64_MAX, mx = 0;
    for (uint64_t i = 0; i < h->n_docs; i++) {
        uint64_t n = off[i + 1] - off[i];
        if (n < mn) mn = n;
        if (n > mx) mx = n;
    }
    struct stat st;
    long long size = stat(xd_tokdata_path(d), &st) ? -1 : (long long)st.st_size;
    printf("file            %s (%lld bytes)\n", xd_tokdata_path(d), size);
    printf("version         %u\n", h->version);
    printf("vocab_size      %u (%u-byte token ids)\n", h->vocab_size, h->token_bytes);
    printf("tokenizer_hash  0x%016" PRIx64 "\n", h->tokenizer_hash);
    printf("flags           0x%x%s%s%s\n", h->flags,
           h->flags & XD_TOKDATA_FLAG_EOS ? " (documents end with EOS)" : "",
           h->flags & XD_TOKDATA_FLAG_DOMAINS ? " (domain table)" : "",
           h->flags & XD_TOKDATA_FLAG_MASK ? " (context mask)" : "");
    printf("shuffle_seed    %" PRIu64 "\n", h->shuffle_seed);
    printf("documents       %" PRIu64 " (train %" PRIu64 ", validation %" PRIu64 ")\n", h->n_docs,
           xd_tokdata_split_docs(d, XD_SPLIT_TRAIN), xd_tokdata_split_docs(d, XD_SPLIT_VAL));
    printf("tokens          %" PRIu64 " (train %" PRIu64 ", validation %" PRIu64 ")\n", h->n_tokens,
           xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN), xd_tokdata_split_tokens(d, XD_SPLIT_VAL));
    printf("doc tokens      min %" PRIu64 ", mean %.1f, max %" PRIu64 "\n", mn,
           (double)h->n_tokens / (double)h->n_docs, mx);
    if (xd_tokdata_has_mask(d)) {
        uint64_t ct = xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN),
                 cv = xd_tokdata_masked_tokens(d, XD_SPLIT_VAL);
        printf("context tokens  %" PRIu64 " (train %" PRIu64 ", validation %" PRIu64
               "; no loss predicts them)\n", ct + cv, ct, cv);
    }
    uint32_t nd = xd_tokdata_n_domains(d);
    if (!nd) return;
    uint64_t *c = calloc(4 * (size_t)nd, sizeof *c); /* docs train/val, tokens train/val */
    if (!c) return;
    for (uint64_t i = 0; i < h->n_docs; i++) {
        uint64_t *x = c + 4 * (size_t)xd_tokdata_doc_domain(d, i);
        int val = i >= h->n_train_docs;
        x[val]++;
        x[2 + val] += off[i + 1] - off[i];
    }
    printf("domains         %u\n", nd);
    printf("  %-24s %10s %10s %12s %12s\n", "domain", "train docs", "val docs", "train tokens",
           "val tokens");
    for (uint32_t k = 0; k < nd; k++)
        printf("  %-24s %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n",
               xd_tokdata_domain_name(d, k), c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3]);
    free(c);
}

/* --domain file | field:NAME | rule:FILE */
static int parse_domain(const char *v, xd_prep_opts *o) {
    if (!strcmp(v, "file")) o->domain_by = XD_DOMAIN_FILE;
    else if (!strncmp(v, "field:", 6) && v[6]) o->domain_by = XD_DOMAIN_FIELD, o->domain_arg = v + 6;
    else if (!strncmp(v, "rule:", 5) && v[5]) o->domain_by = XD_DOMAIN_RULE, o->domain_arg = v + 5;
    else
        return cli_error("--domain: '%s' is not one of file, field:NAME (a JSONL field), "
                         "rule:FILE (a rules file)", v), -1;
    return 0;
}

static int data_prep(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(PREP_USAGE);
    const char *tok = NULL, *out = NULL, *v;
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.verbose = 1;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    if (!inputs) return cli_error("out of memory");
    int n_in = 0, r, rc = 2;
    float vf;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--tokenizer", &v))) {
            if (r < 0) goto done;
            tok = v;
        } else if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) goto done;
            out = v;
        } else if ((r = take_opt(argc, argv, &i, "--field", &v))) {
            if (r < 0) goto done;
            if (!*v) { cli_error("--field: the field name is empty"); goto done; }
            o.field = v;
        } else if ((r = take_opt(argc, argv, &i, "--prompt-field", &v))) {
            if (r < 0) goto done;
            if (!*v) { cli_error("--prompt-field: the field name is empty"); goto done; }
            o.prompt_field = v;
        } else if ((r = take_opt(argc, argv, &i, "--doc-sep", &v))) {
            if (r < 0) goto done;
            if (!strcmp(v, "file")) o.doc_sep = XD_DOCSEP_FILE;
            else if (!strcmp(v, "blank")) o.doc_sep = XD_DOCSEP_BLANK;
            else if (!strcmp(v, "line")) o.doc_sep = XD_DOCSEP_LINE;
            else { cli_error("--doc-sep: '%s' is not one of file, blank, line", v); goto done; }
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &o.seed)) goto done;
        } else if ((r = take_opt(argc, argv, &i, "--val-frac", &v))) {
            if (r < 0 || parse_float("--val-frac", v, 0, 0.99, &vf)) goto done;
            o.val_frac = vf;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &o.threads)) goto done;
        } else if ((r = take_opt(argc, argv, &i, "--domain", &v))) {
            if (r < 0 || parse_domain(v, &o)) goto done;
        } else if (!strcmp(argv[i], "--jsonl")) o.jsonl = 1;
        else if (!strcmp(argv[i], "--special")) o.parse_special = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) o.verbose = 0;
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("data prep: unknown option '%s'", argv[i]);
            goto done;
        } else inputs[n_in++] = argv[i];
    }
    if (!tok || !out || !n_in) {
        cli_error("%s", PREP_USAGE);
        goto done;
    }
    o.inputs = inputs;
    o.n_inputs = n_in;
    rc = 1;
    xd_tokenizer *t = xd_tokenizer_load(tok);
    if (!t) { cli_lib_error(); goto done; }
    xd_prep_stats st;
    if (xd_tokdata_prep(t, &o, out, &st)) {
        cli_lib_error();
        xd_tokenizer_free(t);
        goto done;
    }
    xd_tokenizer_free(t);
    if (o.verbose) {
        fprintf(stderr,
                "data prep: %.2f MB of text -> %" PRIu64 " tokens in %.2f s (%.0f tokens/s)",
                (double)st.bytes_in / 1e6, st.n_tokens, st.seconds,
                st.seconds > 0 ? (double)st.n_tokens / st.seconds : 0.0);
        if (st.n_empty) fprintf(stderr, "; %" PRIu64 " empty documents skipped", st.n_empty);
        fputc('\n', stderr);
        if (st.n_docs - st.n_train_docs == 0 && o.val_frac > 0)
            fprintf(stderr, "data prep: warning: only %" PRIu64 " document(s), so the validation "
                            "split is empty; use --doc-sep blank or line to cut a text into more "
                            "documents\n", st.n_docs);
    }
    xd_tokdata *d = xd_tokdata_open(out);
    if (!d) { cli_lib_error(); goto done; }
    print_summary(d);
    xd_tokdata_close(d);
    rc = 0;
done:
    free(inputs);
    return rc;
}

static int data_info(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(INFO_USAGE);
    const char *path = NULL, *tok = NULL, *v;
    int r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--tokenizer", &v))) {
            if (r < 0) return 2;
            tok = v;
        } else if (argv[i][0] == '-')
            return cli_error("data info: unknown option '%s'", argv[i]), 2;
        else if (!path) path = argv[i];
        else return cli_error("data info: unexpected argument '%s'", argv[i]), 2;
    }
    if (!path) return cli_error("%s", INFO_USAGE), 2;
    xd_tokdata *d = xd_tokdata_open(path);
    if (!d) return cli_lib_error();
    print_summary(d);
    int rc = 0;
    double ht, cv;
    if (xd_tokdata_unigram(d, &ht, &cv) == 0)
        printf("unigram         entropy %.4f nats/token (train), cross-entropy %.4f (validation)\n",
               ht, cv);
    if (tok) {
        xd_tokenizer *t = xd_tokenizer_load(tok);
        if (!t || xd_tokdata_check_tokenizer(d, t)) rc = cli_lib_error();
        else printf("tokenizer       matches %s\n", tok);
        xd_tokenizer_free(t);
    }
    xd_tokdata_close(d);
    return rc;
}

/* One token file per domain, each with its documents and train/validation
 * assignment; prints each output's summary line. */
static int data_split(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(SPLIT_USAGE);
    const char *path = NULL, *dir = NULL, *domains = NULL, *v;
    int r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            dir = v;
        } else if ((r = take_opt(argc, argv, &i, "--domains", &v))) {
            if (r < 0) return 2;
            domains = v;
        } else if (argv[i][0] == '-')
            return cli_error("data split: unknown option '%s'", argv[i]), 2;
        else if (!path) path = argv[i];
        else return cli_error("data split: unexpected argument '%s'", argv[i]), 2;
    }
    if (!path || !dir) return cli_error("%s", SPLIT_USAGE), 2;
    char *list = domains ? strdup(domains) : NULL;
    const char **only = NULL;
    int n_only = 0, rc = 1;
    if (domains) {
        only = calloc(strlen(domains) + 1, sizeof *only);
        if (!list || !only) { free(list); free(only); return cli_error("out of memory"); }
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save))
            only[n_only++] = tok;
        if (!n_only) {
            free(list);
            free(only);
            return cli_error("--domains: no domain names in '%s'", domains), 2;
        }
    }
    xd_tokdata *d = xd_tokdata_open(path);
    if (!d || xd_tokdata_split_domains(d, dir, only, n_only)) {
        rc = cli_lib_error();
        goto done;
    }
    uint32_t nd = n_only ? (uint32_t)n_only : xd_tokdata_n_domains(d);
    for (uint32_t k = 0; k < nd; k++) {
        const char *name = n_only ? only[k] : xd_tokdata_domain_name(d, k);
        char out[4096];
        snprintf(out, sizeof out, "%s/%s.tok", dir, name);
        xd_tokdata *e = xd_tokdata_open(out);
        if (!e) { rc = cli_lib_error(); goto done; }
        printf("%-24s %s: %" PRIu64 " documents (train %" PRIu64 ", validation %" PRIu64
               "), %" PRIu64 " tokens (train %" PRIu64 ", validation %" PRIu64 ")\n",
               name, out, xd_tokdata_header_of(e)->n_docs, xd_tokdata_split_docs(e, XD_SPLIT_TRAIN),
               xd_tokdata_split_docs(e, XD_SPLIT_VAL), xd_tokdata_header_of(e)->n_tokens,
               xd_tokdata_split_tokens(e, XD_SPLIT_TRAIN), xd_tokdata_split_tokens(e, XD_SPLIT_VAL));
        if (xd_tokdata_split_docs(e, XD_SPLIT_VAL) == 0)
            fprintf(stderr, "data split: warning: domain \"%s\" has no validation documents\n",
                    name);
        xd_tokdata_close(e);
    }
    rc = 0;
done:
    xd_tokdata_close(d);
    free(list);
    free(only);
    return rc;
}

/* Repeats of earlier lines at a distance beyond the window, in the train split: data a
 * windowed student can only predict from its memory (src/io/tokdata_echo.c). */
static int data_echo(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(ECHO_USAGE);
    const char *path = NULL, *tok = NULL, *out = NULL, *v;
    xd_echo_opts o;
    xd_echo_defaults(&o);
    int r, quiet = 0;
    float f;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--tokenizer", &v))) {
            if (r < 0) return 2;
            tok = v;
        } else if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            out = v;
        } else if ((r = take_opt(argc, argv, &i, "--rate", &v))) {
            if (r < 0 || parse_float("--rate", v, 0, 1, &f)) return 2;
            o.rate = f;
        } else if ((r = take_opt(argc, argv, &i, "--span-frac", &v))) {
            if (r < 0 || parse_float("--span-frac", v, 0, 1, &f)) return 2;
            o.span_frac = f;
        } else if ((r = take_opt(argc, argv, &i, "--min-gap", &v))) {
            if (r < 0 || parse_int("--min-gap", v, 1, 1 << 24, &o.min_gap)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--max-gap", &v))) {
            if (r < 0 || parse_int("--max-gap", v, 1, 1 << 24, &o.max_gap)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--min-len", &v))) {
            if (r < 0 || parse_int("--min-len", v, 1, 1 << 16, &o.min_len)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--max-span", &v))) {
            if (r < 0 || parse_int("--max-span", v, 1, 1 << 16, &o.max_span)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &o.seed)) return 2;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) quiet = 1;
        else if (argv[i][0] == '-')
            return cli_error("data echo: unknown option '%s'", argv[i]), 2;
        else if (!path) path = argv[i];
        else return cli_error("data echo: unexpected argument '%s'", argv[i]), 2;
    }
    if (!path || !tok || !out) return cli_error("%s", ECHO_USAGE), 2;
    if (o.max_gap < o.min_gap)
        return cli_error("--max-gap: %d is below --min-gap %d", o.max_gap, o.min_gap), 2;
    if (o.max_span < o.min_len)
        return cli_error("--max-span: %d is below --min-len %d", o.max_span, o.min_len), 2;
    xd_tokdata *d = xd_tokdata_open(path);
    xd_tokenizer *t = d ? xd_tokenizer_load(tok) : NULL;
    xd_echo_stats st;
    int rc = 0;
    if (!d || !t || xd_tokdata_echo(d, t, &o, out, &st, NULL)) rc = cli_lib_error();
    xd_tokenizer_free(t);
    xd_tokdata_close(d);
    if (rc) return rc;
    if (!quiet)
        fprintf(stderr, "data echo: %" PRIu64 " echoes, %" PRIu64 " tokens (%.1f%% of the output's "
                "%" PRIu64 ")\n", st.n_echoes, st.echo_tokens,
                st.n_tokens_out ? 100.0 * (double)st.echo_tokens / (double)st.n_tokens_out : 0.0,
                st.n_tokens_out);
    if (st.n_echoes == 0 && o.rate > 0)
        fprintf(stderr, "data echo: warning: no echoes written: %s has no train document with a "
                "line of at least %d tokens starting %d to %d tokens before a line end\n",
                path, o.min_len, o.min_gap, o.max_gap);
    d = xd_tokdata_open(out);
    if (!d) return cli_lib_error();
    if (!quiet) print_summary(d);
    xd_tokdata_close(d);
    return 0;
}

/* The subcommands' usage lines. */
static void usage(FILE *f) {
    fprintf(f, "%s\n%s\n%s\n%s\n", PREP_USAGE, INFO_USAGE, SPLIT_USAGE, ECHO_USAGE);
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prep")) return data_prep(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "info")) return data_info(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "split")) return data_split(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "echo")) return data_echo(argc - 1, argv + 1);
    if (wants_help(argc, argv)) return usage(stdout), 0;
    if (argc >= 2)
        cli_error("data: unknown subcommand '%s' (expected prep, info, split or echo)", argv[1]);
    else cli_error("data: expected a subcommand, prep, info, split or echo");
    return usage(stderr), 2;
}
