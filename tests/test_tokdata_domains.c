/* Domains of token data: `data prep --domain file|field:NAME|rule:FILE`, the
 * domain table, the per-domain validation split and `data split`
 * (docs/data.md "Domains"), and a table of 65536 domains opens fast.
 *
 * The references are independent of the domain code: the documents are
 * tokenized one by one with xd_tokenizer_encode, and the shuffle order is
 * taken from a prep of the same inputs without domains (whose file, train
 * then validation, is the whole shuffled order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "io/tokdata.h"
#include "io/tokdata_internal.h"
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

static void write_file(const char *name, const char *text) {
    FILE *f = fopen(path_in(name), "wb");
    CHECK(f != NULL, "create %s", name);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- the corpus: three files, 20 + 10 + 5 documents ------------------------------ */

#define N_DOCS 35
static char g_text[N_DOCS][64];   /* document texts */
static const char *g_dom[N_DOCS]; /* their file domains */

static void write_corpus(void) {
    char buf[4096];
    size_t used = 0;
    int k = 0;
    for (int i = 0; i < 20; i++, k++) {
        snprintf(g_text[k], sizeof g_text[k], "alpha line %d of the first file", i);
        g_dom[k] = "alpha";
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s\n", g_text[k]);
    }
    write_file("alpha.txt", buf);
    used = 0;
    for (int i = 0; i < 10; i++, k++) {
        snprintf(g_text[k], sizeof g_text[k], "beta %d: LICENSE text", i);
        g_dom[k] = "beta";
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s\n\n", g_text[k]);
    }
    write_file("beta.md", buf);
    used = 0;
    for (int i = 0; i < 5; i++, k++) {
        snprintf(g_text[k], sizeof g_text[k], "gamma record %d", i);
        g_dom[k] = "gamma";
        used += (size_t)snprintf(buf + used, sizeof buf - used,
                                 "{\"text\":\"%s\",\"src\":\"%s\"}\n", g_text[k],
                                 i % 2 ? "odd" : "even");
    }
    write_file("gamma.jsonl", buf);
    write_file("blank.txt", "  \n\n");
}

static const char *inputs[4];

static int prep(const xd_tokenizer *t, xd_domain_by by, const char *arg, int n_in,
                const char *out) {
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = inputs;
    o.n_inputs = n_in;
    o.doc_sep = XD_DOCSEP_LINE;
    o.seed = 11;
    o.val_frac = 0.2;
    o.domain_by = by;
    o.domain_arg = arg;
    return xd_tokdata_prep(t, &o, out, NULL);
}

/* Which corpus document the stored document k is (by independent tokenization). */
static int doc_id(const xd_tokdata *d, uint64_t k, int32_t *const *ids, const size_t *n_ids) {
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    size_t n = (size_t)(off[k + 1] - off[k]);
    int32_t buf[256];
    if (n > 256 || xd_tokdata_copy(d, off[k], n, buf)) return -1;
    for (int i = 0; i < N_DOCS; i++)
        if (n_ids[i] == n && !memcmp(ids[i], buf, n * sizeof *buf)) return i;
    return -1;
}

typedef struct {
    int32_t *ids[N_DOCS];
    size_t n[N_DOCS];
} ref_docs;

static void ref_tokenize(const xd_tokenizer *t, ref_docs *r) {
    int eos = xd_tokenizer_eos(t);
    for (int i = 0; i < N_DOCS; i++) {
        int32_t *ids;
        size_t n;
        CHECK(xd_tokenizer_encode(t, g_text[i], strlen(g_text[i]), 0, &ids, &n) == 0, "encode");
        r->ids[i] = malloc((n + 1) * sizeof *ids);
        memcpy(r->ids[i], ids, n * sizeof *ids);
        if (eos >= 0) r->ids[i][n++] = eos;
        r->n[i] = n;
        free(ids);
    }
}

/* The corpus documents in file order of the file at path (-1 for unknown). */
static int file_docs(const char *path, const ref_docs *r, int *ids, uint64_t *n_train) {
    xd_tokdata *d = xd_tokdata_open(path);
    CHECK(d != NULL, "open %s: %s", path, xd_last_error());
    if (!d) return 0;
    int n = (int)xd_tokdata_header_of(d)->n_docs;
    *n_train = xd_tokdata_header_of(d)->n_train_docs;
    for (int k = 0; k < n; k++) ids[k] = doc_id(d, (uint64_t)k, r->ids, r->n);
    xd_tokdata_close(d);
    return n;
}

/* ---- file domains, the per-domain split, data split ------------------------------- */

static void test_file_domains(const xd_tokenizer *t, const ref_docs *r) {
    const char *plain = path_in("plain.tok"), *dom = path_in("dom.tok");
    CHECK(prep(t, XD_DOMAIN_NONE, NULL, 4, plain) == 0, "plain prep: %s", xd_last_error());
    CHECK(prep(t, XD_DOMAIN_FILE, NULL, 4, dom) == 0, "domain prep: %s", xd_last_error());
    int shuffled[N_DOCS], got[N_DOCS];
    uint64_t plain_train, n_train;
    CHECK(file_docs(plain, r, shuffled, &plain_train) == N_DOCS, "plain: 35 documents");
    CHECK(plain_train == N_DOCS - 7, "plain: round(0.2 * 35) = 7 validation documents, got %llu",
          (unsigned long long)(N_DOCS - plain_train));
    CHECK(file_docs(dom, r, got, &n_train) == N_DOCS, "domains: 35 documents");

    xd_tokdata *d = xd_tokdata_open(dom);
    CHECK(d != NULL, "open: %s", xd_last_error());
    if (!d) return;
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    CHECK(h->flags == (XD_TOKDATA_FLAG_DOMAINS | (xd_tokenizer_eos(t) >= 0 ? 1u : 0u)),
          "flags 0x%x", h->flags);
    /* the blank file has no documents, so no domain; the others in input order */
    CHECK(xd_tokdata_n_domains(d) == 3, "3 domains, got %u", xd_tokdata_n_domains(d));
    const char *names[3] = {"alpha", "beta", "gamma"};
    for (uint32_t k = 0; k < 3 && k < xd_tokdata_n_domains(d); k++)
        CHECK(!strcmp(xd_tokdata_domain_name(d, k), names[k]), "domain %u is %s, expected %s", k,
              xd_tokdata_domain_name(d, k), names[k]);
    int ok = 1;
    for (int k = 0; k < N_DOCS; k++)
        ok &= got[k] >= 0 &&
              !strcmp(xd_tokdata_domain_name(d, xd_tokdata_doc_domain(d, (uint64_t)k)), g_dom[got[k]]);
    CHECK(ok, "every document is labelled with the file it came from");

    /* per-domain validation: alpha 20 -> 4, beta 10 -> 2, gamma 5 -> 1 */
    CHECK(n_train == N_DOCS - 7, "7 validation documents, got %llu",
          (unsigned long long)(N_DOCS - n_train));
    const int want_val[3] = {4, 2, 1};
    for (int k = 0; k < 3; k++) {
        /* the domain's documents in shuffled order (from the plain prep) */
        int seq[N_DOCS], m = 0;
        for (int j = 0; j < N_DOCS; j++)
            if (shuffled[j] >= 0 && !strcmp(g_dom[shuffled[j]], names[k])) seq[m++] = shuffled[j];
        /* its validation documents must be the last want_val of them */
        int n_val = 0, last_ok = 1;
        for (int j = (int)n_train; j < N_DOCS; j++)
            if (got[j] >= 0 && !strcmp(g_dom[got[j]], names[k])) {
                int pos = -1;
                for (int i = 0; i < m; i++)
                    if (seq[i] == got[j]) pos = i;
                last_ok &= pos >= m - want_val[k];
                n_val++;
            }
        CHECK(n_val == want_val[k] && last_ok,
              "%s: %d validation documents (expected %d), the domain's last in the shuffle: %d",
              names[k], n_val, want_val[k], last_ok);
    }
    /* train and validation each keep the shuffled order */
    int prev = -1, order_ok = 1;
    for (int j = 0; j < N_DOCS; j++) {
        int pos = -1;
        for (int i = 0; i < N_DOCS; i++)
            if (shuffled[i] == got[j]) pos = i;
        if (j == (int)n_train) prev = -1;
        order_ok &= pos > prev;
        prev = pos;
    }
    CHECK(order_ok, "train and validation documents keep the shuffled order");
    xd_tokdata_close(d);

    /* data split: each domain file = the domain's documents, same order, same split */
    const char *dir = path_in("split");
    xd_tokdata *all = xd_tokdata_open(dom);
    CHECK(all && xd_tokdata_split_domains(all, dir, NULL, 0) == 0, "split: %s", xd_last_error());
    uint64_t sum_train_tokens = 0;
    for (int k = 0; k < 3 && all; k++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s.tok", dir, names[k]);
        int part[N_DOCS];
        uint64_t part_train;
        int n = file_docs(p, r, part, &part_train);
        int m = 0, same = 1;
        uint64_t m_train = 0;
        for (int j = 0; j < N_DOCS; j++)
            if (got[j] >= 0 && !strcmp(g_dom[got[j]], names[k])) {
                same &= m < n && part[m] == got[j];
                m_train += j < (int)n_train;
                m++;
            }
        CHECK(n == m && same && part_train == m_train,
              "%s.tok: %d documents (expected %d) in the same order: %d, train %llu (expected %llu)",
              names[k], n, m, same, (unsigned long long)part_train, (unsigned long long)m_train);
        xd_tokdata *e = xd_tokdata_open(p);
        if (e) {
            CHECK(xd_tokdata_n_domains(e) == 1 && !strcmp(xd_tokdata_domain_name(e, 0), names[k]),
                  "%s.tok names its one domain", names[k]);
            CHECK(xd_tokdata_header_of(e)->tokenizer_hash == xd_tokdata_header_of(all)->tokenizer_hash &&
                      xd_tokdata_header_of(e)->shuffle_seed == 11,
                  "%s.tok keeps the tokenizer hash and seed", names[k]);
            sum_train_tokens += xd_tokdata_split_tokens(e, XD_SPLIT_TRAIN);
            xd_tokdata_close(e);
        }
    }
    if (all)
        CHECK(sum_train_tokens == xd_tokdata_split_tokens(all, XD_SPLIT_TRAIN),
              "the experts' train tokens add up to the whole file's (%llu)",
              (unsigned long long)sum_train_tokens);
    /* only some domains; an unknown one */
    const char *only[1] = {"beta"};
    const char *dir2 = path_in("split2");
    CHECK(all && xd_tokdata_split_domains(all, dir2, only, 1) == 0, "split beta: %s",
          xd_last_error());
    char p2[600];
    snprintf(p2, sizeof p2, "%s/alpha.tok", dir2);
    CHECK(access(p2, F_OK) != 0, "--domains beta writes only beta");
    const char *bad[1] = {"delta"};
    CHECK(all && xd_tokdata_split_domains(all, dir2, bad, 1) == -1 &&
              contains(xd_last_error(), "no domain \"delta\"") &&
              contains(xd_last_error(), "alpha, beta, gamma"),
          "unknown domain refused: %s", xd_last_error());
    xd_tokdata_close(all);
    xd_tokdata *p = xd_tokdata_open(plain);
    CHECK(p && xd_tokdata_split_domains(p, dir2, NULL, 0) == -1 &&
              contains(xd_last_error(), "no domain table") && contains(xd_last_error(), "--domain"),
          "data without domains refused: %s", xd_last_error());
    xd_tokdata_close(p);
}

/* One rule matching everything: the same bytes as a plain prep before the
 * table (the split by domain is then the plain split). */
static void test_one_domain_is_plain(const xd_tokenizer *t) {
    write_file("all.rules", "everything .\n");
    const char *a = path_in("plain.tok"), *b = path_in("one.tok");
    CHECK(prep(t, XD_DOMAIN_RULE, path_in("all.rules"), 4, b) == 0, "prep: %s", xd_last_error());
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    CHECK(fa && fb, "open both");
    if (!fa || !fb) return;
    fseek(fa, 0, SEEK_END);
    long na = ftell(fa);
    rewind(fa);
    unsigned char *x = malloc((size_t)na), *y = malloc((size_t)na);
    int same = fread(x, 1, (size_t)na, fa) == (size_t)na && fread(y, 1, (size_t)na, fb) == (size_t)na;
    same = same && !memcmp(x, y, 52) && !memcmp(x + 56, y + 56, (size_t)na - 56);
    CHECK(same, "one domain: header (but flags), offsets and tokens equal the plain prep's");
    fclose(fa);
    fclose(fb);
    free(x);
    free(y);
}

/* ---- JSONL fields and rules --------------------------------------------------------- */

static void test_field_and_rules(const xd_tokenizer *t, const ref_docs *r) {
    char out[512]; /* path_in's buffers are reused */
    snprintf(out, sizeof out, "%s", path_in("field.tok"));
    const char *const jsonl[1] = {path_in("gamma.jsonl")};
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = jsonl;
    o.n_inputs = 1;
    o.val_frac = 0;
    o.domain_by = XD_DOMAIN_FIELD;
    o.domain_arg = "src";
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == 0, "field prep: %s", xd_last_error());
    xd_tokdata *d = xd_tokdata_open(out);
    CHECK(d && xd_tokdata_n_domains(d) == 2 && !strcmp(xd_tokdata_domain_name(d, 0), "even") &&
              !strcmp(xd_tokdata_domain_name(d, 1), "odd"),
          "field domains even, odd");
    for (uint64_t k = 0; d && k < xd_tokdata_header_of(d)->n_docs; k++) {
        int id = doc_id(d, k, r->ids, r->n); /* gamma record i is corpus doc 30 + i */
        CHECK(id >= 30 && xd_tokdata_doc_domain(d, k) == (uint32_t)((id - 30) % 2),
              "record %d labelled by its src field", id - 30);
    }
    xd_tokdata_close(d);
    /* field errors name the file, line and field */
    write_file("nofield.jsonl", "{\"text\":\"a\",\"src\":\"x\"}\n{\"text\":\"b\"}\n");
    write_file("numfield.jsonl", "{\"text\":\"a\",\"src\":3}\n");
    write_file("badname.jsonl", "{\"text\":\"a\",\"src\":\"a/b\"}\n");
    const char *cases[3][2] = {{"nofield.jsonl", "line 2: domain field \"src\" is missing"},
                               {"numfield.jsonl", "line 1: domain field \"src\" is an integer"},
                               {"badname.jsonl", "line 1: domain field \"src\": \"a/b\" has a character"}};
    for (int i = 0; i < 3; i++) {
        const char *const in[1] = {path_in(cases[i][0])};
        o.inputs = in;
        CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), cases[i][0]) &&
                  contains(xd_last_error(), cases[i][1]),
              "%s: %s", cases[i][0], xd_last_error());
    }
    /* many domains: 3000 distinct field values in 6000 records, each value twice */
    {
        FILE *f = fopen(path_in("many.jsonl"), "wb");
        for (int i = 0; i < 6000; i++)
            fprintf(f, "{\"text\":\"record %d\",\"src\":\"d%d\"}\n", i, (i * 7) % 3000);
        fclose(f);
        const char *const many[1] = {path_in("many.jsonl")};
        o.inputs = many;
        CHECK(xd_tokdata_prep(t, &o, out, NULL) == 0, "many domains: %s", xd_last_error());
        xd_tokdata *m = xd_tokdata_open(out);
        CHECK(m && xd_tokdata_n_domains(m) == 3000, "3000 domains, got %u", m ? xd_tokdata_n_domains(m) : 0);
        int ok = m != NULL;
        /* domain ids in order of first appearance: record i < 3000 introduces d((7 i) mod 3000) */
        for (uint32_t k = 0; m && k < 3000; k++) {
            char want[16];
            snprintf(want, sizeof want, "d%u", (7u * k) % 3000u);
            ok &= !strcmp(xd_tokdata_domain_name(m, k), want);
        }
        /* every document's label is its record's field (the text names the record) */
        for (uint64_t k = 0; m && k < xd_tokdata_header_of(m)->n_docs; k++) {
            const uint64_t *off = xd_tokdata_doc_offsets(m);
            int32_t buf[64];
            size_t n = (size_t)(off[k + 1] - off[k]);
            char *text = NULL;
            if (n > 64 || xd_tokdata_copy(m, off[k], n, buf) ||
                xd_tokenizer_decode(t, buf, n - (xd_tokenizer_eos(t) >= 0), &text, NULL)) {
                ok = 0;
                break;
            }
            int rec = -1;
            sscanf(text, "record %d", &rec);
            char want[16];
            snprintf(want, sizeof want, "d%d", (rec * 7) % 3000);
            ok &= rec >= 0 && !strcmp(xd_tokdata_domain_name(m, xd_tokdata_doc_domain(m, k)), want);
            free(text);
        }
        CHECK(ok, "3000 domains: names in order of first appearance, every document labelled");
        xd_tokdata_close(m);
    }
    const char *const txt[1] = {path_in("alpha.txt")};
    o.inputs = txt;
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), "alpha.txt") &&
              contains(xd_last_error(), "needs JSONL"),
          "field on a text file: %s", xd_last_error());

    /* rules: first match wins, unmatched documents go to "other" */
    write_file("r.rules", "# comments and blank lines are skipped\n\n"
                          "lic\t(?i)license\n"
                          "early  line [0-4] \n" /* the regex ends with a space */
                          "rec  ^gamma record [02]$\n"
                          "never  \\bzzz\\b\n");
    const char *rout = path_in("rules.tok");
    CHECK(prep(t, XD_DOMAIN_RULE, path_in("r.rules"), 3, rout) == 0, "rules prep: %s",
          xd_last_error());
    d = xd_tokdata_open(rout);
    CHECK(d != NULL, "open: %s", xd_last_error());
    for (uint64_t k = 0; d && k < xd_tokdata_header_of(d)->n_docs; k++) {
        int id = doc_id(d, k, r->ids, r->n);
        const char *want = "other";
        if (id >= 20 && id < 30) want = "lic";
        else if (id >= 0 && id < 5) want = "early";
        else if (id == 30 || id == 32) want = "rec";
        const char *have = xd_tokdata_domain_name(d, xd_tokdata_doc_domain(d, k));
        CHECK(id >= 0 && !strcmp(have, want), "doc %d (%s): domain %s, expected %s", id,
              id >= 0 ? g_text[id] : "?", have, want);
    }
    /* names in order of first appearance in the inputs; "never" matched nothing */
    CHECK(d && xd_tokdata_n_domains(d) == 4, "4 domains (never is absent), got %u",
          d ? xd_tokdata_n_domains(d) : 0);
    xd_tokdata_close(d);
    /* rule file errors */
    write_file("bad1.rules", "ok a\nbroken (unclosed\n");
    write_file("bad2.rules", "lonely\n");
    write_file("bad3.rules", "a/b x\n");
    write_file("bad4.rules", "# nothing\n");
    const char *rcases[5][2] = {{"bad1.rules", "line 2: regex of rule \"broken\" does not compile"},
                                {"bad2.rules", "line 1: rule \"lonely\" has no regex"},
                                {"bad3.rules", "line 1: domain name \"a/b\" has a character"},
                                {"bad4.rules", "no rules"},
                                {"missing.rules", "cannot open the domain rules"}};
    for (int i = 0; i < 5; i++)
        CHECK(prep(t, XD_DOMAIN_RULE, path_in(rcases[i][0]), 1, rout) == -1 &&
                  contains(xd_last_error(), rcases[i][0]) && contains(xd_last_error(), rcases[i][1]),
              "%s: %s", rcases[i][0], xd_last_error());
    /* a file name that is not a valid domain name */
    write_file("bad name.txt", "text\n");
    const char *const sp[1] = {path_in("bad name.txt")};
    xd_prep_defaults(&o);
    o.inputs = sp;
    o.n_inputs = 1;
    o.domain_by = XD_DOMAIN_FILE;
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), "bad name.txt") &&
              contains(xd_last_error(), "from the file name"),
          "file name with a space: %s", xd_last_error());
}

/* ---- corrupt domain tables ------------------------------------------------------- */

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void expect_corrupt(const char *what, const unsigned char *b, size_t n, const char *msg) {
    const char *p = path_in("corrupt.tok");
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    xd_tokdata *d = xd_tokdata_open(p);
    CHECK(d == NULL && contains(xd_last_error(), "corrupt.tok") && contains(xd_last_error(), msg),
          "%s: %s", what, d ? "opened" : xd_last_error());
    xd_tokdata_close(d);
}

static void test_corrupt(void) {
    size_t n;
    unsigned char *b = slurp(path_in("dom.tok"), &n);
    CHECK(b && n > 100, "read dom.tok");
    if (!b) return;
    uint64_t n_docs, n_tok;
    memcpy(&n_docs, b + 24, 8);
    memcpy(&n_tok, b + 40, 8);
    size_t end = 64 + 8 * (n_docs + 1) + 2 * n_tok, tab = (end + 7) / 8 * 8;
    unsigned char *c = malloc(n);
    expect_corrupt("cut in the document domains", b, n - 4, "domain table: ");
    expect_corrupt("cut before the table", b, tab + 4, "before the table's header");
    memcpy(c, b, n);
    c[n - 4] = 9; /* last document's domain 9 of 3 */
    expect_corrupt("domain id out of range", c, n, "has domain 9, expected < n_domains 3");
    memcpy(c, b, n);
    c[tab + 12] = '/'; /* first letter of the first name */
    expect_corrupt("bad name", c, n, "name 0 has a character");
    memcpy(c, b, n);
    /* names: tab+8 length 5 "alpha", tab+17 length 4 "beta", tab+25 length 5 "gamma" at tab+29 */
    memcpy(c + tab + 29, "alpha", 5);
    expect_corrupt("repeated name", c, n, "name 2 \"alpha\" repeats name 0");
    memcpy(c, b, n);
    c[tab] = 0, c[tab + 1] = 0; /* n_domains 0 */
    expect_corrupt("zero domains", c, n, "n_domains 0");
    memcpy(c, b, n);
    c[52] |= 8; /* unknown flag */
    expect_corrupt("unknown flag", c, n, "flags: unknown bits");
    memcpy(c, b, n);
    c[52] |= 4; /* a context mask flagged but absent: size check, naming the mask */
    expect_corrupt("mask flag without a mask", c, n, "n_tokens (context mask)");
    memcpy(c, b, n);
    c[52] &= (unsigned char)~2u; /* table present but not flagged: size check */
    expect_corrupt("table without its flag", c, n, "file size");
    free(c);
    free(b);
}

/* ---- many domains ---------------------------------------------------------------------- */

/* A file with the most domains a table may hold (65536, one document each)
 * opens in well under a second: the repeated-name check is a hash lookup
 * per name, not a comparison with every earlier one (that took seconds).
 * A repeated name among them is still refused, naming both indices. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_many_domains(void) {
    enum { ND = 65536 };
    char **names = malloc(ND * sizeof *names);
    uint16_t *tok = malloc(2 * ND * sizeof *tok);
    uint64_t *off = malloc((ND + 1) * sizeof *off);
    uint32_t *dom = malloc(ND * sizeof *dom);
    off[0] = 0;
    for (uint32_t i = 0; i < ND; i++) {
        names[i] = malloc(16);
        snprintf(names[i], 16, "dom-%05u", i);
        tok[2 * i] = (uint16_t)(i % 250);
        tok[2 * i + 1] = 7;
        off[i + 1] = 2 * (uint64_t)(i + 1);
        dom[i] = i;
    }
    xd_tokdata_header h = {XD_TOKDATA_VERSION, 300, 2, XD_TOKDATA_FLAG_DOMAINS, 0x1234, ND, ND - 100,
                           2 * (uint64_t)ND, 1};
    xd_doc_source src = {tok, 2, off, NULL, dom, (const char *const *)names, ND, NULL};
    const char *path = path_in("many.tok");
    CHECK(xd_tokdata_write_docs(path, &h, &src) == 0, "write %s: %s", path, xd_last_error());
    double t0 = now_s();
    xd_tokdata *d = xd_tokdata_open(path);
    double dt = now_s() - t0;
    CHECK(d != NULL, "open %s: %s", path, xd_last_error());
    CHECK(d && xd_tokdata_n_domains(d) == ND && !strcmp(xd_tokdata_domain_name(d, ND - 1), "dom-65535") &&
              xd_tokdata_doc_domain(d, 4321) == 4321,
          "%u domains read back", d ? xd_tokdata_n_domains(d) : 0);
    xd_tokdata_close(d);
    printf("%u domains: open in %.3f s\n", (unsigned)ND, dt);
    CHECK(dt < 1.0, "opening a file with %u domains took %.2f s (quadratic name check?)", (unsigned)ND, dt);

    /* the last name repeats one in the middle */
    snprintf(names[ND - 1], 16, "dom-%05u", 12345);
    CHECK(xd_tokdata_write_docs(path, &h, &src) == 0, "write %s: %s", path, xd_last_error());
    t0 = now_s();
    d = xd_tokdata_open(path);
    dt = now_s() - t0;
    CHECK(!d && contains(xd_last_error(), path) &&
              contains(xd_last_error(), "domain table: name 65535 \"dom-12345\" repeats name 12345"),
          "repeated name: %s", d ? "(opened)" : xd_last_error());
    CHECK(dt < 1.0, "refusing a file with %u domains took %.2f s", (unsigned)ND, dt);
    xd_tokdata_close(d);
    for (uint32_t i = 0; i < ND; i++) free(names[i]);
    free(names);
    free(tok);
    free(off);
    free(dom);
}

/* ---- CLI ------------------------------------------------------------------------------ */

static void test_cli(void) {
    char args[4096], out[16384];
    const char *tiny = FIXTURE("tiny-llama.gguf");
    snprintf(args, sizeof args,
             "data prep --tokenizer %s %s %s %s -o %s --doc-sep line --seed 11 --val-frac 0.2 "
             "--domain file",
             tiny, inputs[0], inputs[1], inputs[2], path_in("cli.tok"));
    int rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDOUT);
    CHECK(rc == 0 && contains(out, "domains         3") && contains(out, "alpha") &&
              contains(out, "gamma"),
          "cli prep --domain file: %d: %s", rc, out);
    snprintf(args, sizeof args, "data split %s -o %s", path_in("cli.tok"), path_in("cli_split"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDOUT);
    CHECK(rc == 0 && contains(out, "alpha.tok: 20 documents (train 16, validation 4)") &&
              contains(out, "gamma.tok: 5 documents (train 4, validation 1)"),
          "cli split: %d: %s", rc, out);
    snprintf(args, sizeof args, "data split %s -o %s", path_in("plain.tok"), path_in("cli_split"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 1 && contains(out, "no domain table"), "cli split without domains: %d: %s", rc, out);
    snprintf(args, sizeof args, "data split %s", path_in("cli.tok"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 2 && contains(out, "usage: xdistill data split"), "cli split without -o: %d: %s",
          rc, out);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s -o %s --domain words", tiny,
             inputs[0], path_in("x.tok"));
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 2 && contains(out, "--domain: 'words'"), "cli bad --domain: %d: %s", rc, out);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/xd_tokdom_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_corpus();
    static char p[4][512];
    const char *names[4] = {"alpha.txt", "beta.md", "gamma.jsonl", "blank.txt"};
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", g_dir, names[i]);
        inputs[i] = p[i];
    }
    xd_tokenizer *t = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    CHECK(t != NULL, "load tiny tokenizer: %s", xd_last_error());
    if (!t) return test_summary("tokdata_domains");
    ref_docs r;
    ref_tokenize(t, &r);
    test_file_domains(t, &r);
    test_one_domain_is_plain(t);
    test_field_and_rules(t, &r);
    test_corrupt();
    test_many_domains();
    test_cli();
    for (int i = 0; i < N_DOCS; i++) free(r.ids[i]);
    xd_tokenizer_free(t);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary("tokdata_domains");
}
