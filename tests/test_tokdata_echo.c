/* `data echo` (src/io/tokdata_echo.c): repeats of earlier lines beyond a
 * window, in the train split of a token file.
 *
 * The checks are the definition in io/tokdata.h, verified on the output and
 * its echo mask: the tokens outside echoes are the input, in order; every
 * echo starts after a line end, ends with one, and copies tokens that lie
 * exactly d tokens earlier in the same document, outside any echo, with
 * min_gap <= d <= max_gap; validation documents, header fields and the
 * domain table are unchanged; the counts add up; the output depends on the
 * seed only; options out of range are refused with the option's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "io/tokdata.h"
#include "test.h"
#include "xdistill.h"

static char g_dir[64];

static const char *path_in(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Two text files of 12 documents; each document has 14–25 lines of 3–12 words. */
static void write_corpus(void) {
    static const char *words[] = {"river", "stone", "lamp", "cedar", "north", "silver", "field",
                                  "harbor", "window", "thunder", "garden", "copper", "meadow",
                                  "lantern", "orchard", "valley"};
    unsigned s = 12345;
    for (int f = 0; f < 2; f++) {
        FILE *fp = fopen(path_in(f ? "b.txt" : "a.txt"), "w");
        CHECK(fp != NULL, "create corpus file %d", f);
        if (!fp) return;
        for (int d = 0; d < 6; d++) {
            int lines = 14 + (d * 5 + f * 3) % 12;
            for (int l = 0; l < lines; l++) {
                int nw = 3 + (l * 7 + d) % 10;
                for (int w = 0; w < nw; w++) {
                    s = s * 1103515245u + 12345u;
                    fprintf(fp, "%s%s", w ? " " : "", words[(s >> 16) % 16]);
                }
                fputs(l % 5 == 4 ? ".\n" : "\n", fp);
            }
            fputs("\n", fp); /* a blank line ends the document */
        }
        fclose(fp);
    }
}

static int prep(const xd_tokenizer *t, int domains, const char *out) {
    static char keep[2][512]; /* path_in's buffers are reused */
    snprintf(keep[0], sizeof keep[0], "%s", path_in("a.txt"));
    snprintf(keep[1], sizeof keep[1], "%s", path_in("b.txt"));
    const char *inputs[2] = {keep[0], keep[1]};
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = inputs;
    o.n_inputs = 2;
    o.doc_sep = XD_DOCSEP_BLANK;
    o.val_frac = 0.2;
    o.domain_by = domains ? XD_DOMAIN_FILE : XD_DOMAIN_NONE;
    return xd_tokdata_prep(t, &o, out, NULL);
}

static int32_t *read_all(const xd_tokdata *d) {
    uint64_t n = xd_tokdata_header_of(d)->n_tokens;
    int32_t *x = malloc((n ? n : 1) * sizeof *x);
    if (x && xd_tokdata_copy(d, 0, n, x)) {
        free(x);
        return NULL;
    }
    return x;
}

/* The token ids whose text holds a newline (independently of the echo code: decode each). */
static int is_line_end(const xd_tokenizer *t, int32_t id) {
    char *text = NULL;
    size_t len = 0;
    if (xd_tokenizer_decode(t, &id, 1, &text, &len)) return 0;
    int r = memchr(text, '\n', len) != NULL;
    free(text);
    return r;
}

/* Checks the output file `out` (with its echo mask) against the input file `in`. */
static void check_echoes(const xd_tokenizer *t, const char *in, const char *out, const uint8_t *mask,
                         const xd_echo_opts *o, const xd_echo_stats *st, const char *what) {
    xd_tokdata *a = xd_tokdata_open(in), *b = xd_tokdata_open(out);
    CHECK(a && b, "%s: open: %s", what, xd_last_error());
    if (!a || !b) goto done;
    const xd_tokdata_header *ha = xd_tokdata_header_of(a), *hb = xd_tokdata_header_of(b);
    CHECK(ha->n_docs == hb->n_docs && ha->n_train_docs == hb->n_train_docs &&
              ha->vocab_size == hb->vocab_size && ha->tokenizer_hash == hb->tokenizer_hash &&
              ha->flags == hb->flags && ha->shuffle_seed == hb->shuffle_seed,
          "%s: header fields differ", what);
    CHECK(xd_tokdata_n_domains(a) == xd_tokdata_n_domains(b), "%s: domains %u vs %u", what,
          xd_tokdata_n_domains(a), xd_tokdata_n_domains(b));
    for (uint32_t k = 0; k < xd_tokdata_n_domains(a) && k < xd_tokdata_n_domains(b); k++)
        CHECK(!strcmp(xd_tokdata_domain_name(a, k), xd_tokdata_domain_name(b, k)),
              "%s: domain %u name", what, k);
    for (uint64_t d = 0; d < ha->n_docs && xd_tokdata_n_domains(a); d++)
        CHECK(xd_tokdata_doc_domain(a, d) == xd_tokdata_doc_domain(b, d), "%s: doc %llu domain",
              what, (unsigned long long)d);
    int32_t *x = read_all(a), *y = read_all(b);
    const uint64_t *oa = xd_tokdata_doc_offsets(a), *ob = xd_tokdata_doc_offsets(b);
    uint64_t n_runs = 0, n_masked = 0, bad_rest = 0, bad_run = 0, bad_val = 0;
    for (uint64_t d = 0; x && y && d < ha->n_docs; d++) {
        uint64_t na = oa[d + 1] - oa[d], nb = ob[d + 1] - ob[d];
        const int32_t *da = x + oa[d], *db = y + ob[d];
        const uint8_t *m = mask + ob[d];
        if (d >= ha->n_train_docs) { /* validation: unchanged, no echoes */
            int same = na == nb && !memcmp(da, db, na * sizeof *da);
            for (uint64_t i = 0; i < nb; i++) same &= !m[i];
            bad_val += !same;
            continue;
        }
        /* outside the echoes: the input, in order */
        uint64_t k = 0;
        for (uint64_t i = 0; i < nb; i++)
            if (!m[i]) bad_rest += k >= na || db[i] != da[k++];
        bad_rest += k != na;
        /* each echo */
        for (uint64_t i = 0; i < nb;) {
            if (!m[i]) { i++; continue; }
            uint64_t j = i;
            while (j < nb && m[j]) j++;
            n_runs++;
            n_masked += j - i;
            int ok = i > 0 && is_line_end(t, db[i - 1]) && is_line_end(t, db[j - 1]) && j - i >= 2;
            /* the copied part: all but a final line end that the source does not have */
            uint64_t found = 0;
            for (uint64_t dist = (uint64_t)o->min_gap; ok && !found && dist <= (uint64_t)o->max_gap &&
                                                        dist <= i; dist++) {
                uint64_t len = j - i, match = 1;
                for (uint64_t q = 0; q < len && match; q++)
                    match = db[i - dist + q] == db[i + q] && !m[i - dist + q];
                if (!match) { /* without the line end */
                    match = 1, len--;
                    for (uint64_t q = 0; q < len && match; q++)
                        match = db[i - dist + q] == db[i + q] && !m[i - dist + q];
                    match = match && len >= (uint64_t)o->min_len;
                }
                found = match;
            }
            bad_run += !(ok && found);
            i = j;
        }
    }
    CHECK(x && y, "%s: read tokens", what);
    CHECK(bad_val == 0, "%s: %llu validation documents changed", what, (unsigned long long)bad_val);
    CHECK(bad_rest == 0, "%s: the text outside the echoes differs from the input (%llu tokens)",
          what, (unsigned long long)bad_rest);
    CHECK(bad_run == 0, "%s: %llu of %llu echoes do not copy a line or span from min_gap .. max_gap "
          "tokens back", what, (unsigned long long)bad_run, (unsigned long long)n_runs);
    CHECK(st->n_echoes == n_runs && st->echo_tokens == n_masked, "%s: stats %llu/%llu vs %llu/%llu",
          what, (unsigned long long)st->n_echoes, (unsigned long long)st->echo_tokens,
          (unsigned long long)n_runs, (unsigned long long)n_masked);
    CHECK(st->n_tokens_in == ha->n_tokens && st->n_tokens_out == hb->n_tokens &&
              hb->n_tokens == ha->n_tokens + n_masked,
          "%s: token counts %llu + %llu vs %llu", what, (unsigned long long)ha->n_tokens,
          (unsigned long long)n_masked, (unsigned long long)hb->n_tokens);
    free(x);
    free(y);
done:
    xd_tokdata_close(a);
    xd_tokdata_close(b);
}

static int echo(const xd_tokenizer *t, const char *in, const char *out, const xd_echo_opts *o,
                xd_echo_stats *st, uint8_t **mask) {
    xd_tokdata *d = xd_tokdata_open(in);
    CHECK(d != NULL, "open %s: %s", in, xd_last_error());
    int rc = d ? xd_tokdata_echo(d, t, o, out, st, mask) : -1;
    xd_tokdata_close(d);
    return rc;
}

static char g_plain[512]; /* path_in's buffers are reused: keep the input's path */

static void test_echoes(const xd_tokenizer *t) {
    snprintf(g_plain, sizeof g_plain, "%s", path_in("plain.tok"));
    const char *in = g_plain;
    CHECK(prep(t, 0, in) == 0, "prep: %s", xd_last_error());
    /* line ends and gaps small enough for this corpus: lines are 4–30 tokens */
    xd_echo_opts o;
    xd_echo_defaults(&o);
    o.min_gap = 24;
    o.max_gap = 200;
    o.min_len = 4;
    o.max_span = 10;
    xd_echo_stats st;
    uint8_t *mask = NULL;
    const double rates[] = {0.5, 1.0};
    const double spans[] = {0.5, 0.0};
    for (int v = 0; v < 2; v++) {
        o.rate = rates[v];
        o.span_frac = spans[v];
        char what[64];
        snprintf(what, sizeof what, "rate %.1f, span_frac %.1f", o.rate, o.span_frac);
        CHECK(echo(t, in, path_in("echo.tok"), &o, &st, &mask) == 0, "%s: %s", what,
              xd_last_error());
        CHECK(st.n_echoes >= 20, "%s: only %llu echoes", what, (unsigned long long)st.n_echoes);
        if (mask) check_echoes(t, in, path_in("echo.tok"), mask, &o, &st, what);
        free(mask);
        mask = NULL;
    }
    /* the same seed gives the same file; another seed another one; rate 0 the input's tokens */
    o.rate = 0.5;
    o.span_frac = 0.5;
    CHECK(echo(t, in, path_in("e1.tok"), &o, &st, NULL) == 0, "seed 1: %s", xd_last_error());
    CHECK(echo(t, in, path_in("e2.tok"), &o, &st, NULL) == 0, "seed 1 again");
    CHECK(test_same_file(path_in("e1.tok"), path_in("e2.tok")), "the same seed gives another file");
    o.seed = 2;
    CHECK(echo(t, in, path_in("e3.tok"), &o, &st, NULL) == 0, "seed 2");
    CHECK(!test_same_file(path_in("e1.tok"), path_in("e3.tok")), "seed 2 gives seed 1's file");
    o.rate = 0;
    CHECK(echo(t, in, path_in("e0.tok"), &o, &st, NULL) == 0 && st.n_echoes == 0, "rate 0");
    CHECK(test_same_file(in, path_in("e0.tok")), "rate 0 changes the file");
    /* gaps longer than any document: no echoes, the input unchanged */
    o.rate = 1;
    o.min_gap = o.max_gap = 100000;
    CHECK(echo(t, in, path_in("e0.tok"), &o, &st, NULL) == 0 && st.n_echoes == 0, "huge gap");
    CHECK(test_same_file(in, path_in("e0.tok")), "a gap beyond every document changes the file");
    /* the domain table is kept */
    static char dom[512];
    snprintf(dom, sizeof dom, "%s", path_in("dom.tok"));
    CHECK(prep(t, 1, dom) == 0, "prep --domain file: %s", xd_last_error());
    xd_echo_defaults(&o);
    o.min_gap = 24;
    o.max_gap = 200;
    o.min_len = 4;
    CHECK(echo(t, dom, path_in("dom-echo.tok"), &o, &st, &mask) == 0, "domains: %s",
          xd_last_error());
    if (mask) check_echoes(t, dom, path_in("dom-echo.tok"), mask, &o, &st, "domains");
    free(mask);
}

static void test_bad_options(const xd_tokenizer *t) {
    const char *in = g_plain;
    static const char *field[] = {"rate", "min_gap", "max_gap", "span_frac", "min_len", "max_span"};
    for (int c = 0; c < 6; c++) {
        xd_echo_opts o;
        xd_echo_defaults(&o);
        switch (c) {
        case 0: o.rate = 1.5; break;
        case 1: o.min_gap = 0; break;
        case 2: o.max_gap = o.min_gap - 1; break;
        case 3: o.span_frac = -0.1; break;
        case 4: o.min_len = 0; break;
        default: o.max_span = o.min_len - 1; break;
        }
        int rc = echo(t, in, path_in("bad.tok"), &o, NULL, NULL);
        CHECK(rc != 0 && contains(xd_last_error(), field[c]), "bad %s: rc %d, '%s'",
              field[c], rc, xd_last_error());
        CHECK(access(path_in("bad.tok"), F_OK) != 0, "bad %s left a file", field[c]);
    }
}

static void test_cli(void) {
    char args[4096], out[16384];
    const char *tiny = FIXTURE("tiny-llama.gguf");
    snprintf(args, sizeof args, "data echo %s --tokenizer %s -o %s --min-gap 24 --max-gap 200 "
             "--min-len 4 --rate 0.5", path_in("plain.tok"), tiny, path_in("cli.tok"));
    int rc = test_cli_run(args, out, sizeof out, TEST_CLI_BOTH);
    CHECK(rc == 0 && contains(out, "data echo: ") && contains(out, " echoes, ") &&
              contains(out, "documents       12"),
          "cli echo: %d: %s", rc, out);
    snprintf(args, sizeof args, "data echo %s --tokenizer %s -o %s --rate 2", path_in("plain.tok"),
             tiny, path_in("cli.tok"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 2 && contains(out, "--rate"), "cli --rate 2: %d: %s", rc, out);
    snprintf(args, sizeof args, "data echo %s --tokenizer %s -o %s --min-gap 300 --max-gap 200",
             path_in("plain.tok"), tiny, path_in("cli.tok"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 2 && contains(out, "--max-gap"), "cli max-gap < min-gap: %d: %s", rc, out);
    snprintf(args, sizeof args, "data echo %s --tokenizer %s", path_in("plain.tok"), tiny);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 2 && contains(out, "usage: xdistill data echo"), "cli without -o: %d: %s", rc, out);
    snprintf(args, sizeof args, "data echo %s --tokenizer %s -o %s", path_in("missing.tok"), tiny,
             path_in("cli.tok"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 1 && contains(out, "missing.tok"), "cli missing input: %d: %s", rc, out);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/xd_echo_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_corpus();
    xd_tokenizer *t = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    CHECK(t != NULL, "load tiny tokenizer: %s", xd_last_error());
    if (t) {
        test_echoes(t);
        test_bad_options(t);
        test_cli();
    }
    xd_tokenizer_free(t);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary("tokdata_echo");
}
