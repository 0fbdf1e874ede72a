/* Token data (src/io/tokdata.c, `xdistill data`): prep from text and JSONL
 * equals tokenizing each document on its own; the header, the split and the
 * deterministic shuffle; the batch sampler and evaluation windows on a
 * hand-checked example and against a brute-force model; exact cursor resume;
 * and bad input — another tokenizer, an empty corpus, malformed JSONL,
 * truncated or corrupt files — gives clear errors and loses nothing. */
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/tokdata.h"
#include "cli_util.h"
#include "test.h"
#include "xdistill.h"

static char g_dir[64];

/* DIR/name; the strings live until free_paths() at the end. */
static char *g_paths[1024];
static int g_n_paths;

static const char *path_in(const char *name) {
    char *p = malloc(strlen(g_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", g_dir, name);
    if (g_n_paths < 1024) g_paths[g_n_paths++] = p;
    return p;
}

static void free_paths(void) {
    for (int i = 0; i < g_n_paths; i++) free(g_paths[i]);
    g_n_paths = 0;
}

static void write_text(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(text, 1, len, f) == len, "write %s", path);
    fclose(f);
}
#define WRITE(name, str) write_text(path_in(name), (str), sizeof(str) - 1)

static int exists(const char *path) { return access(path, F_OK) == 0; }

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- expected documents ------------------------------------------------------- */

typedef struct {
    int32_t *ids; /* tokens + EOS (if any) */
    size_t n;
    int used;
} doc;

typedef struct {
    doc d[8192];
    int n;
} doc_list;

static void expect_doc_sp(doc_list *L, const xd_tokenizer *t, const char *text, size_t len,
                          int special) {
    int32_t *ids;
    size_t n;
    if (xd_tokenizer_encode(t, text, len, special, &ids, &n)) {
        CHECK(0, "encode: %s", xd_last_error());
        return;
    }
    int eos = xd_tokenizer_eos(t);
    int32_t *all = malloc((n + 1) * sizeof *all);
    memcpy(all, ids, n * sizeof *ids);
    if (eos >= 0) all[n++] = eos;
    free(ids);
    L->d[L->n++] = (doc){all, n, 0};
}
static void expect_doc(doc_list *L, const xd_tokenizer *t, const char *text, size_t len) {
    expect_doc_sp(L, t, text, len, 0);
}
#define EXPECT(L, t, str) expect_doc(L, t, str, strlen(str))

static void free_docs(doc_list *L) {
    for (int i = 0; i < L->n; i++) free(L->d[i].ids);
    L->n = 0;
}

/* Every stored document equals exactly one expected document (the order is
 * the shuffle's), and every expected document is stored. */
static void check_docs(const char *what, const char *data, doc_list *L) {
    xd_tokdata *d = xd_tokdata_open(data);
    CHECK(d != NULL, "%s: open: %s", what, xd_last_error());
    if (!d) return;
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    CHECK(h->n_docs == (uint64_t)L->n, "%s: n_docs %llu, expected %d", what,
          (unsigned long long)h->n_docs, L->n);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    size_t total = 0;
    for (int i = 0; i < L->n; i++) L->d[i].used = 0, total += L->d[i].n;
    CHECK(h->n_tokens == total, "%s: n_tokens %llu, expected %zu", what,
          (unsigned long long)h->n_tokens, total);
    int matched = 0;
    int32_t *buf = malloc((h->n_tokens + 1) * sizeof *buf);
    for (uint64_t k = 0; k < h->n_docs && k < (uint64_t)L->n; k++) {
        size_t n = (size_t)(off[k + 1] - off[k]);
        CHECK(xd_tokdata_copy(d, off[k], n, buf) == 0, "copy");
        for (int i = 0; i < L->n; i++)
            if (!L->d[i].used && L->d[i].n == n && !memcmp(L->d[i].ids, buf, n * sizeof *buf)) {
                L->d[i].used = 1;
                matched++;
                break;
            }
    }
    CHECK(matched == L->n, "%s: %d of %d documents match independent tokenization", what, matched,
          L->n);
    free(buf);
    xd_tokdata_close(d);
}

static int prep(const xd_tokenizer *t, const char *const *in, int n_in, xd_docsep sep,
                uint64_t seed, double val_frac, int threads, const char *out, xd_prep_stats *st) {
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = in;
    o.n_inputs = n_in;
    o.doc_sep = sep;
    o.seed = seed;
    o.val_frac = val_frac;
    o.threads = threads;
    return xd_tokdata_prep(t, &o, out, st);
}

/* ---- corpus ---------------------------------------------------------------------- */

static const char A_TXT[] = "The quick brown fox.\n\nJumps over the lazy dog.\nSecond line of "
                            "paragraph two.\n\n\n  \t \nThird paragraph: caf\xc3\xa9, "
                            "na\xc3\xafve, \xe6\x97\xa5\xe6\x9c\xac.\n";
static const char B_TXT[] = "Hello, world! 12345\r\nwindows line\r\n";
static const char C_TXT[] = "  \n\n\t\n"; /* whitespace only: skipped */
static const char D_JSONL[] =
    "{\"text\": \"json document one\", \"id\": 1}\n"
    "{\"id\": 2, \"text\": \"second \\\"quoted\\\" document\\nwith a newline\"}\n"
    "\n"
    "{\"text\": \"unicode \\u00e9\\u65e5 and emoji \\ud83d\\ude00\"}\r\n"
    "{\"text\": \"\"}\n" /* empty: skipped */
    "{\"text\": \"fifth line, fourth document\"}\n"
    "{\"text\": \"a\"}\n"
    "{\"text\": \"the last one, no trailing newline\"}";

static void expected_corpus(doc_list *L, const xd_tokenizer *t, xd_docsep sep) {
    if (sep == XD_DOCSEP_FILE) {
        EXPECT(L, t, A_TXT);
        EXPECT(L, t, B_TXT);
    } else if (sep == XD_DOCSEP_BLANK) {
        EXPECT(L, t, "The quick brown fox.");
        EXPECT(L, t, "Jumps over the lazy dog.\nSecond line of paragraph two.");
        EXPECT(L, t, "Third paragraph: caf\xc3\xa9, na\xc3\xafve, \xe6\x97\xa5\xe6\x9c\xac.");
        EXPECT(L, t, "Hello, world! 12345\r\nwindows line");
    } else {
        EXPECT(L, t, "The quick brown fox.");
        EXPECT(L, t, "Jumps over the lazy dog.");
        EXPECT(L, t, "Second line of paragraph two.");
        EXPECT(L, t, "Third paragraph: caf\xc3\xa9, na\xc3\xafve, \xe6\x97\xa5\xe6\x9c\xac.");
        EXPECT(L, t, "Hello, world! 12345");
        EXPECT(L, t, "windows line");
    }
    EXPECT(L, t, "json document one");
    EXPECT(L, t, "second \"quoted\" document\nwith a newline");
    EXPECT(L, t, "unicode \xc3\xa9\xe6\x97\xa5 and emoji \xf0\x9f\x98\x80");
    EXPECT(L, t, "fifth line, fourth document");
    EXPECT(L, t, "a");
    EXPECT(L, t, "the last one, no trailing newline");
}

static void write_corpus(void) {
    WRITE("a.txt", A_TXT);
    WRITE("b.txt", B_TXT);
    WRITE("c.txt", C_TXT);
    WRITE("d.jsonl", D_JSONL);
}

static const char *corpus_inputs[4];

static void init_inputs(void) {
    static char p[4][512];
    const char *names[4] = {"a.txt", "b.txt", "c.txt", "d.jsonl"};
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", g_dir, names[i]);
        corpus_inputs[i] = p[i];
    }
}

/* Prep the corpus with tokenizer t in all three doc-sep modes and compare with
 * independent tokenization; header fields; split sizes. */
static void test_prep_matches(const char *label, const xd_tokenizer *t) {
    static const char *sep_name[] = {"file", "blank", "line"};
    for (int sep = 0; sep < 3; sep++) {
        char what[128];
        snprintf(what, sizeof what, "%s, doc-sep %s", label, sep_name[sep]);
        const char *out = path_in("prep.bin");
        xd_prep_stats st;
        int rc = prep(t, corpus_inputs, 4, (xd_docsep)sep, 1, 0.05, 0, out, &st);
        CHECK(rc == 0, "%s: prep: %s", what, xd_last_error());
        if (rc) continue;
        doc_list *L = calloc(1, sizeof *L);
        expected_corpus(L, t, (xd_docsep)sep);
        check_docs(what, out, L);
        xd_tokdata *d = xd_tokdata_open(out);
        CHECK(d != NULL, "%s: open: %s", what, xd_last_error());
        if (d) {
            const xd_tokdata_header *h = xd_tokdata_header_of(d);
            int vocab = xd_tokenizer_n_tokens(t);
            CHECK(h->version == 1, "%s: version %u", what, h->version);
            CHECK(h->vocab_size == (uint32_t)vocab, "%s: vocab_size %u vs %d", what, h->vocab_size,
                  vocab);
            CHECK(h->token_bytes == (vocab <= 65536 ? 2u : 4u), "%s: token_bytes %u", what,
                  h->token_bytes);
            CHECK(h->tokenizer_hash == xd_tokenizer_hash(t), "%s: tokenizer_hash", what);
            CHECK(h->flags == (xd_tokenizer_eos(t) >= 0 ? 1u : 0u), "%s: flags %u", what, h->flags);
            CHECK(h->shuffle_seed == 1, "%s: shuffle_seed", what);
            /* 5% of 8..12 documents rounds to 0 or 1: at least one */
            CHECK(h->n_train_docs == h->n_docs - 1, "%s: n_train_docs %llu of %llu", what,
                  (unsigned long long)h->n_train_docs, (unsigned long long)h->n_docs);
            CHECK(st.n_docs == h->n_docs && st.n_train_docs == h->n_train_docs &&
                      st.n_tokens == h->n_tokens,
                  "%s: stats agree with the header", what);
            CHECK(st.n_train_tokens == xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN) &&
                      st.n_val_tokens == xd_tokdata_split_tokens(d, XD_SPLIT_VAL),
                  "%s: split token counts", what);
            CHECK(xd_tokdata_split_docs(d, XD_SPLIT_VAL) == 1, "%s: one validation doc", what);
            /* file mode: c.txt and the "" record; otherwise blank lines only separate */
            uint64_t want_empty = sep == XD_DOCSEP_FILE ? 2 : 1;
            CHECK(st.n_empty == want_empty, "%s: %llu empty documents skipped, expected %llu", what,
                  (unsigned long long)st.n_empty, (unsigned long long)want_empty);
            CHECK(xd_tokdata_check_tokenizer(d, t) == 0, "%s: own tokenizer: %s", what,
                  xd_last_error());
            xd_tokdata_close(d);
        }
        free_docs(L);
        free(L);
    }
}

/* Two preps are byte-identical, whatever the thread count; the seed changes
 * the order only; --val-frac sizes the split. */
static void test_determinism(const xd_tokenizer *t) {
    const char *a = path_in("det_a.bin"), *b = path_in("det_b.bin"), *c = path_in("det_c.bin");
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_LINE, 7, 0.05, 1, a, NULL) == 0, "prep a: %s",
          xd_last_error());
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_LINE, 7, 0.05, 2, b, NULL) == 0, "prep b: %s",
          xd_last_error());
    CHECK(test_same_file(a, b), "two preps (1 and 2 threads) are byte-identical");
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_LINE, 8, 0.05, 2, c, NULL) == 0, "prep c: %s",
          xd_last_error());
    CHECK(!test_same_file(a, c), "another seed gives another order");
    xd_tokdata *da = xd_tokdata_open(a), *dc = xd_tokdata_open(c);
    CHECK(da && dc, "open");
    if (da && dc) {
        const xd_tokdata_header *ha = xd_tokdata_header_of(da), *hc = xd_tokdata_header_of(dc);
        CHECK(ha->n_tokens == hc->n_tokens && ha->n_docs == hc->n_docs, "same corpus");
        CHECK(ha->shuffle_seed == 7 && hc->shuffle_seed == 8, "seeds recorded");
    }
    xd_tokdata_close(da);
    xd_tokdata_close(dc);

    /* 12 line documents: val-frac 0.3 -> round(3.6) = 4; 0 -> none; 0.99 -> 11 */
    struct { double f; uint64_t val; } cases[] = {{0.3, 4}, {0.0, 0}, {0.99, 11}, {0.05, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_LINE, 1, cases[i].f, 0, a, NULL) == 0, "prep");
        xd_tokdata *d = xd_tokdata_open(a);
        CHECK(d != NULL, "open");
        if (!d) continue;
        const xd_tokdata_header *h = xd_tokdata_header_of(d);
        CHECK(h->n_docs == 12, "12 documents, got %llu", (unsigned long long)h->n_docs);
        CHECK(h->n_docs - h->n_train_docs == cases[i].val,
              "val-frac %g: %llu val docs, expected %llu", cases[i].f,
              (unsigned long long)(h->n_docs - h->n_train_docs), (unsigned long long)cases[i].val);
        xd_tokdata_close(d);
    }
    /* a single document: everything is train */
    const char *one[] = {corpus_inputs[0]};
    CHECK(prep(t, one, 1, XD_DOCSEP_FILE, 1, 0.5, 0, a, NULL) == 0, "prep one doc");
    xd_tokdata *d = xd_tokdata_open(a);
    CHECK(d && xd_tokdata_header_of(d)->n_train_docs == 1 &&
              xd_tokdata_split_tokens(d, XD_SPLIT_VAL) == 0 &&
              xd_tokdata_n_windows(d, XD_SPLIT_VAL, 4) == 0,
          "one document: train only, no validation windows");
    xd_tokdata_close(d);
}

/* --special: control-token text in a document becomes that token. */
static void test_special(const char *label, const xd_tokenizer *t) {
    const char *eos = xd_tokenizer_piece(t, xd_tokenizer_eos(t));
    if (!eos) return;
    char text[256], json[512];
    snprintf(text, sizeof text, "before %s after", eos);
    snprintf(json, sizeof json, "{\"text\": \"%s\"}\n", text);
    write_text(path_in("special.jsonl"), json, strlen(json));
    const char *in[] = {path_in("special.jsonl")};
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = in;
    o.n_inputs = 1;
    for (int sp = 0; sp < 2; sp++) {
        o.parse_special = sp;
        const char *out = path_in("special.bin");
        CHECK(xd_tokdata_prep(t, &o, out, NULL) == 0, "%s: prep special: %s", label,
              xd_last_error());
        doc_list *L = calloc(1, sizeof *L);
        expect_doc_sp(L, t, text, strlen(text), sp);
        int n_eos = 0;
        for (size_t i = 0; i < L->d[0].n; i++) n_eos += L->d[0].ids[i] == xd_tokenizer_eos(t);
        CHECK(n_eos == (sp ? 2 : 1), "%s: special %d: %d EOS tokens in the document", label, sp,
              n_eos);
        char what[64];
        snprintf(what, sizeof what, "%s --special=%d", label, sp);
        check_docs(what, out, L);
        free_docs(L);
        free(L);
    }
}

/* A UTF-8 byte-order mark starting a text or JSONL file is not text. */
static void test_bom(const xd_tokenizer *t) {
    WRITE("bom.txt", "\xEF\xBB\xBFhello bom\n");
    WRITE("bom.jsonl", "\xEF\xBB\xBF{\"text\": \"json bom\"}\n");
    const char *in[] = {path_in("bom.txt"), path_in("bom.jsonl")};
    const char *out = path_in("bom.bin");
    CHECK(prep(t, in, 2, XD_DOCSEP_FILE, 1, 0, 0, out, NULL) == 0, "prep BOM: %s", xd_last_error());
    doc_list *L = calloc(1, sizeof *L);
    EXPECT(L, t, "hello bom\n");
    EXPECT(L, t, "json bom");
    check_docs("BOM", out, L);
    free_docs(L);
    free(L);
}

/* Many small documents (several tokenization batches, 2 threads). */
static void test_many_docs(const xd_tokenizer *t) {
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    doc_list *L = calloc(1, sizeof *L);
    for (int i = 0; i < 6000; i++) {
        char line[128];
        int k = snprintf(line, sizeof line, "document %d: %s %d", i,
                         i % 3 ? "some words here" : "other words, more of them", i * 7919 % 1000);
        expect_doc(L, t, line, (size_t)k);
        n += (size_t)snprintf(text + n, cap - n, "{\"text\": \"%s\"}\n", line);
    }
    write_text(path_in("many.jsonl"), text, n);
    const char *in[] = {path_in("many.jsonl")};
    const char *out1 = path_in("many1.bin"), *out2 = path_in("many2.bin");
    CHECK(prep(t, in, 1, XD_DOCSEP_FILE, 3, 0.1, 2, out1, NULL) == 0, "prep many: %s",
          xd_last_error());
    CHECK(prep(t, in, 1, XD_DOCSEP_FILE, 3, 0.1, 1, out2, NULL) == 0, "prep many: %s",
          xd_last_error());
    CHECK(test_same_file(out1, out2), "6000 documents: 1 and 2 threads byte-identical");
    check_docs("6000 JSONL documents", out1, L);
    xd_tokdata *d = xd_tokdata_open(out1);
    CHECK(d && xd_tokdata_split_docs(d, XD_SPLIT_VAL) == 600, "600 validation documents");
    xd_tokdata_close(d);
    free_docs(L);
    free(L);
    free(text);
}

/* ---- sampler ------------------------------------------------------------------------- */

/* train: [10 11 12] [20 21] [30 31 32 33]   validation: [40 41 42] [50 51] */
static const int32_t HAND_IDS[] = {10, 11, 12, 20, 21, 30, 31, 32, 33, 40, 41, 42, 50, 51};
static const uint64_t HAND_OFF[] = {0, 3, 5, 9, 12, 14};

static int eq32(const int32_t *a, const int32_t *b, int n) {
    return !memcmp(a, b, (size_t)n * sizeof *a);
}
#define ARR(...) ((const int32_t[]){__VA_ARGS__})

static void test_sampler_hand(void) {
    const char *p = path_in("hand.bin");
    CHECK(xd_tokdata_write(p, 100, 0x1234, XD_TOKDATA_FLAG_EOS, 0, HAND_IDS, HAND_OFF, 5, 3) == 0,
          "write: %s", xd_last_error());
    xd_tokdata *d = xd_tokdata_open(p);
    CHECK(d != NULL, "open hand: %s", xd_last_error());
    if (!d) return;
    CHECK(xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN) == 9 &&
              xd_tokdata_split_tokens(d, XD_SPLIT_VAL) == 5,
          "split tokens 9 / 5");
    CHECK(xd_tokdata_split_begin(d, XD_SPLIT_VAL) == 9, "val begins at 9");
    CHECK(xd_tokdata_split_docs(d, XD_SPLIT_TRAIN) == 3 &&
              xd_tokdata_split_docs(d, XD_SPLIT_VAL) == 2,
          "split docs 3 / 2");
    int32_t tok[2 * 5], ds[2 * 4], pos[2 * 4];
    uint64_t cur = 0;
    CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos) == 0, "batch: %s",
          xd_last_error());
    CHECK(eq32(tok, ARR(10, 11, 12, 20, 21, /**/ 21, 30, 31, 32, 33), 10), "batch 1 tokens");
    CHECK(eq32(ds, ARR(0, 0, 0, 3, /**/ 0, 1, 1, 1), 8), "batch 1 doc_start");
    CHECK(eq32(pos, ARR(0, 1, 2, 0, /**/ 0, 0, 1, 2), 8), "batch 1 pos");
    CHECK(cur == 8, "cursor advanced by B*T: %llu", (unsigned long long)cur);
    CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos) == 0, "batch 2");
    /* row 0 starts at 8 and wraps after 33; row 1 starts at 12 % 9 = 3 */
    CHECK(eq32(tok, ARR(33, 10, 11, 12, 20, /**/ 20, 21, 30, 31, 32), 10), "batch 2 tokens");
    CHECK(eq32(ds, ARR(0, 1, 1, 1, /**/ 0, 0, 2, 2), 8), "batch 2 doc_start");
    CHECK(eq32(pos, ARR(0, 0, 1, 2, /**/ 0, 1, 0, 1), 8), "batch 2 pos");
    CHECK(cur == 16 && xd_tokdata_epoch(d, XD_SPLIT_TRAIN, cur) == 1, "epoch 1 at cursor 16");
    /* NULL doc_start / pos are fine */
    cur = 0;
    CHECK(xd_tokdata_batch(d, XD_SPLIT_VAL, &cur, 1, 4, tok, NULL, NULL) == 0 &&
              eq32(tok, ARR(40, 41, 42, 50, 51), 5),
          "val batch");
    /* T + 1 must fit in the split */
    cur = 0;
    CHECK(xd_tokdata_batch(d, XD_SPLIT_VAL, &cur, 1, 5, tok, ds, pos) == -1 &&
              contains(xd_last_error(), "validation split has 5 tokens") && cur == 0,
          "T too long: %s", xd_last_error());
    CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, 1, 0, tok, ds, pos) == -1, "T = 0 refused");

    /* evaluation windows: T = 2 -> [40 41 42] [42 50 51] */
    CHECK(xd_tokdata_n_windows(d, XD_SPLIT_VAL, 2) == 2, "2 windows of T=2");
    int n = xd_tokdata_window(d, XD_SPLIT_VAL, 2, 0, tok, ds, pos);
    CHECK(n == 3 && eq32(tok, ARR(40, 41, 42), 3) && eq32(ds, ARR(0, 0), 2) &&
              eq32(pos, ARR(0, 1), 2),
          "window 0");
    n = xd_tokdata_window(d, XD_SPLIT_VAL, 2, 1, tok, ds, pos);
    CHECK(n == 3 && eq32(tok, ARR(42, 50, 51), 3) && eq32(ds, ARR(0, 1), 2) &&
              eq32(pos, ARR(0, 0), 2),
          "window 1");
    /* T = 3 -> [40 41 42 50] [50 51] */
    CHECK(xd_tokdata_n_windows(d, XD_SPLIT_VAL, 3) == 2, "2 windows of T=3");
    n = xd_tokdata_window(d, XD_SPLIT_VAL, 3, 0, tok, ds, pos);
    CHECK(n == 4 && eq32(tok, ARR(40, 41, 42, 50), 4) && eq32(ds, ARR(0, 0, 0), 3) &&
              eq32(pos, ARR(0, 1, 2), 3),
          "window T=3 0");
    n = xd_tokdata_window(d, XD_SPLIT_VAL, 3, 1, tok, ds, pos);
    CHECK(n == 2 && eq32(tok, ARR(50, 51), 2) && ds[0] == 0 && pos[0] == 0, "window T=3 1");
    CHECK(xd_tokdata_window(d, XD_SPLIT_VAL, 3, 2, tok, ds, pos) == -1 &&
              contains(xd_last_error(), "out of range"),
          "window past the end");
    /* T = 100: one short window holding the whole split */
    CHECK(xd_tokdata_n_windows(d, XD_SPLIT_VAL, 100) == 1, "1 window of T=100");
    int32_t big[101], bds[100], bpos[100];
    n = xd_tokdata_window(d, XD_SPLIT_VAL, 100, 0, big, bds, bpos);
    CHECK(n == 5 && eq32(big, ARR(40, 41, 42, 50, 51), 5) && eq32(bds, ARR(0, 0, 0, 3), 4) &&
              eq32(bpos, ARR(0, 1, 2, 0), 4),
          "window T=100");
    xd_tokdata_close(d);
}

/* Brute force: the split as an explicit stream with "document starts here"
 * marks, compared with the sampler for many cursors, B and T. */
static void check_sampler_model(const char *what, xd_tokdata *d, xd_split s) {
    uint64_t L = xd_tokdata_split_tokens(d, s), begin = xd_tokdata_split_begin(d, s);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    int32_t *stream = malloc(L * sizeof *stream);
    char *starts = calloc(L, 1);
    CHECK(xd_tokdata_copy(d, begin, L, stream) == 0, "copy split");
    for (uint64_t k = 0; k <= h->n_docs; k++)
        if (off[k] >= begin && off[k] < begin + L) starts[off[k] - begin] = 1;
    int bad = 0;
    const int Ts[] = {1, 2, 5, 16, 37};
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
        int T = Ts[ti], B = 3;
        if ((uint64_t)T + 1 > L) continue;
        int32_t *tok = malloc((size_t)B * (T + 1) * sizeof *tok);
        int32_t *ds = malloc((size_t)B * T * sizeof *ds);
        int32_t *pos = malloc((size_t)B * T * sizeof *pos);
        uint64_t cur = (uint64_t)ti * 13;
        for (int step = 0; step < 40 && !bad; step++) {
            uint64_t c0 = cur;
            if (xd_tokdata_batch(d, s, &cur, B, T, tok, ds, pos)) { bad = 1; break; }
            for (int b = 0; b < B && !bad; b++) {
                uint64_t q0 = (c0 + (uint64_t)b * T) % L;
                int last = 0;
                for (int t = 0; t <= T; t++) {
                    uint64_t q = (q0 + (uint64_t)t) % L;
                    if (tok[b * (T + 1) + t] != stream[q]) bad = 2;
                    if (t == T) break;
                    if (t > 0 && starts[q]) last = t;
                    if (ds[b * T + t] != last || pos[b * T + t] != t - last) bad = 3;
                }
            }
        }
        CHECK(cur != 0 && !bad, "%s: sampler vs brute force, T=%d: mismatch kind %d", what, T, bad);
        free(tok);
        free(ds);
        free(pos);
    }
    free(stream);
    free(starts);
}

/* Sampling 3 batches from cursor 0 == 1 batch, save the cursor, reopen, 2 more
 * == one batch of 3B rows. */
static void test_cursor_resume(const char *data) {
    enum { B = 2, T = 7 };
    xd_tokdata *d = xd_tokdata_open(data);
    CHECK(d != NULL, "open: %s", xd_last_error());
    if (!d) return;
    int32_t a[3][B * (T + 1)], ads[3][B * T], apos[3][B * T];
    int32_t b[3][B * (T + 1)], bds[3][B * T], bpos[3][B * T];
    int32_t c[3 * B * (T + 1)], cds[3 * B * T], cpos[3 * B * T];
    uint64_t cur = 0;
    for (int i = 0; i < 3; i++)
        CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, B, T, a[i], ads[i], apos[i]) == 0, "a");
    uint64_t end_a = cur;
    cur = 0;
    xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, B, T, b[0], bds[0], bpos[0]);
    uint64_t saved = cur;
    xd_tokdata_close(d);
    d = xd_tokdata_open(data);
    CHECK(d != NULL, "reopen");
    if (!d) return;
    cur = saved;
    for (int i = 1; i < 3; i++)
        CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, B, T, b[i], bds[i], bpos[i]) == 0, "b");
    CHECK(cur == end_a && end_a == 3 * B * T, "cursor %llu", (unsigned long long)cur);
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(ads, bds, sizeof ads) &&
              !memcmp(apos, bpos, sizeof apos),
          "resume from a saved cursor gives the same batches");
    cur = 0;
    xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, 3 * B, T, c, cds, cpos);
    CHECK(!memcmp(a, c, sizeof c) && !memcmp(ads, cds, sizeof cds) &&
              !memcmp(apos, cpos, sizeof cpos),
          "3 batches of B rows == 1 batch of 3B rows");
    check_sampler_model("corpus train", d, XD_SPLIT_TRAIN);
    check_sampler_model("corpus val", d, XD_SPLIT_VAL);
    /* windows cover the validation split: every token but the first is a target once */
    uint64_t L = xd_tokdata_split_tokens(d, XD_SPLIT_VAL);
    uint64_t nw = xd_tokdata_n_windows(d, XD_SPLIT_VAL, T);
    uint64_t targets = 0;
    int32_t w[T + 1];
    for (uint64_t k = 0; k < nw; k++) {
        int n = xd_tokdata_window(d, XD_SPLIT_VAL, T, k, w, NULL, NULL);
        CHECK(n >= 2 && n <= T + 1, "window %llu size %d", (unsigned long long)k, n);
        targets += (uint64_t)(n - 1);
    }
    CHECK(L < 2 || targets == L - 1, "windows score %llu targets of a %llu-token split",
          (unsigned long long)targets, (unsigned long long)L);
    xd_tokdata_close(d);
}

/* ---- bad input ------------------------------------------------------------------- */

static void test_bad_prep(const xd_tokenizer *t) {
    const char *out = path_in("bad.bin"), *keep = path_in("keep.bin");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid()); /* io/atomic.h's temporary name */
    /* an existing good file at the output path survives every failed prep */
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == 0, "good prep");
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_FILE, 1, 0.05, 0, keep, NULL) == 0, "good prep");

    /* empty corpus */
    WRITE("empty.txt", "");
    WRITE("empty.jsonl", "\n{\"text\": \"   \"}\n\n");
    const char *empty[] = {path_in("c.txt"), path_in("empty.txt"), path_in("empty.jsonl")};
    CHECK(prep(t, empty, 3, XD_DOCSEP_BLANK, 1, 0.05, 0, out, NULL) == -1, "empty corpus fails");
    CHECK(contains(xd_last_error(), "empty corpus") && contains(xd_last_error(), "bad.bin"),
          "empty corpus message: %s", xd_last_error());
    CHECK(test_same_file(out, keep) && !exists(tmp), "empty corpus: existing output kept, no .tmp");
    const char *fresh = path_in("fresh.bin");
    CHECK(prep(t, empty, 3, XD_DOCSEP_FILE, 1, 0.05, 0, fresh, NULL) == -1 && !exists(fresh),
          "empty corpus: no output file");

    /* malformed JSONL: names the file and the line */
    WRITE("bad1.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok too\"}\n{\"text\": \"unterminated}\n");
    const char *in1[] = {path_in("bad1.jsonl")};
    CHECK(prep(t, in1, 1, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == -1, "malformed JSONL fails");
    CHECK(contains(xd_last_error(), "bad1.jsonl: line 3") &&
              contains(xd_last_error(), "malformed JSON"),
          "malformed JSONL message: %s", xd_last_error());
    CHECK(test_same_file(out, keep) && !exists(tmp), "malformed JSONL: output kept");
    /* missing field */
    WRITE("bad2.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"wrong field\"}\n");
    const char *in2[] = {path_in("bad2.jsonl")};
    CHECK(prep(t, in2, 1, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == -1 &&
              contains(xd_last_error(), "bad2.jsonl: line 2") &&
              contains(xd_last_error(), "\"text\" is missing"),
          "missing field message: %s", xd_last_error());
    /* --field picks another field */
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = in2;
    o.n_inputs = 1;
    o.field = "content";
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), "line 1") &&
              contains(xd_last_error(), "\"content\" is missing"),
          "--field content: %s", xd_last_error());
    WRITE("good2.jsonl", "{\"content\": \"picked\", \"text\": 5}\n");
    const char *in3[] = {path_in("good2.jsonl")};
    o.inputs = in3;
    CHECK(xd_tokdata_prep(t, &o, fresh, NULL) == 0, "--field content works: %s", xd_last_error());
    doc_list *L = calloc(1, sizeof *L);
    EXPECT(L, t, "picked");
    check_docs("--field content", fresh, L);
    free_docs(L);
    free(L);
    /* wrong type, not an object */
    o.field = "text";
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), "line 1") &&
              contains(xd_last_error(), "is an integer, expected a string"),
          "wrong type: %s", xd_last_error());
    WRITE("bad3.jsonl", "[\"an\", \"array\"]\n");
    const char *in4[] = {path_in("bad3.jsonl")};
    CHECK(prep(t, in4, 1, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == -1 &&
              contains(xd_last_error(), "expected a JSON object"),
          "array line: %s", xd_last_error());
    /* --jsonl forces JSONL on a .txt */
    o.inputs = (const char *[]){path_in("a.txt")};
    o.jsonl = 1;
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 && contains(xd_last_error(), "a.txt: line 1"),
          "--jsonl on text: %s", xd_last_error());
    /* missing input, directory input, output == input */
    const char *in5[] = {path_in("nope.txt")};
    CHECK(prep(t, in5, 1, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == -1 &&
              contains(xd_last_error(), "nope.txt"),
          "missing input: %s", xd_last_error());
    const char *in6[] = {g_dir};
    CHECK(prep(t, in6, 1, XD_DOCSEP_FILE, 1, 0.05, 0, out, NULL) == -1 &&
              contains(xd_last_error(), "directory"),
          "directory input: %s", xd_last_error());
    const char *in7[] = {path_in("a.txt")};
    CHECK(prep(t, in7, 1, XD_DOCSEP_FILE, 1, 0.05, 0, path_in("a.txt"), NULL) == -1 &&
              contains(xd_last_error(), "also an input"),
          "output == input: %s", xd_last_error());
    CHECK(prep(t, in7, 1, XD_DOCSEP_FILE, 1, 1.0, 0, out, NULL) == -1 &&
              contains(xd_last_error(), "val_frac"),
          "val_frac 1: %s", xd_last_error());
    CHECK(prep(t, in7, 1, XD_DOCSEP_FILE, 1, 0.05, 0, "/nonexistent-dir/x.bin", NULL) == -1 &&
              contains(xd_last_error(), "/nonexistent-dir/x.bin.tmp"),
          "unwritable output: %s", xd_last_error());
    CHECK(test_same_file(out, keep) && !exists(tmp), "after all failures the output is intact");
}

/* The hand file with one field changed (at byte offset at, n bytes). */
static void expect_corrupt(const char *what, const unsigned char *good, size_t len, size_t cut,
                           size_t at, const void *val, size_t n, const char *want1,
                           const char *want2) {
    const char *p = path_in("corrupt.bin");
    unsigned char *b = malloc(len + 1);
    memcpy(b, good, len);
    if (val) memcpy(b + at, val, n);
    write_text(p, (const char *)b, cut);
    free(b);
    xd_tokdata *d = xd_tokdata_open(p);
    CHECK(d == NULL, "%s: opened a corrupt file", what);
    xd_tokdata_close(d);
    const char *e = xd_last_error();
    CHECK(contains(e, "corrupt.bin") && contains(e, want1) && (!want2 || contains(e, want2)),
          "%s: message lacks '%s'/'%s': %s", what, want1, want2 ? want2 : "", e);
}

static void test_corrupt(const xd_tokenizer *t) {
    const char *p = path_in("hand.bin");
    size_t len = 0;
    unsigned char *good = (unsigned char *)test_slurp(p, &len);
    CHECK(good && len == 64 + 8 * 6 + 2 * 14, "hand file size %zu", len);
    if (!good) return;
    uint64_t big = UINT64_MAX, v;
    uint32_t u;
    expect_corrupt("header cut", good, len, 40, 0, NULL, 0, "header", "truncated");
    expect_corrupt("empty file", good, len, 0, 0, NULL, 0, "header", NULL);
    expect_corrupt("token array cut", good, len, len - 2, 0, NULL, 0, "file size", "truncated");
    expect_corrupt("offsets cut", good, len, 64 + 20, 0, NULL, 0, "n_docs", "truncated");
    expect_corrupt("magic", good, len, len, 0, "GGUF", 4, "magic", "not an xdistill token file");
    u = 2;
    expect_corrupt("version", good, len, len, 8, &u, 4, "version", "not supported");
    u = 0;
    expect_corrupt("vocab 0", good, len, len, 12, &u, 4, "vocab_size", NULL);
    u = 70000;
    expect_corrupt("vocab vs token_bytes", good, len, len, 12, &u, 4, "token_bytes", "expected 4");
    expect_corrupt("n_docs huge", good, len, len, 24, &big, 8, "n_docs", NULL);
    v = 0;
    expect_corrupt("n_docs 0", good, len, len, 24, &v, 8, "n_docs", "empty");
    v = 6;
    expect_corrupt("n_train > n_docs", good, len, len, 32, &v, 8, "n_train_docs", NULL);
    expect_corrupt("n_tokens huge", good, len, len, 40, &big, 8, "file size", NULL);
    v = 15;
    expect_corrupt("n_tokens off by one", good, len, len, 40, &v, 8, "file size", NULL);
    u = 3;
    expect_corrupt("token_bytes", good, len, len, 48, &u, 4, "token_bytes", NULL);
    u = 9;
    expect_corrupt("flags", good, len, len, 52, &u, 4, "flags", "unknown bits 0x9");
    u = 5; /* the mask flag without a mask */
    expect_corrupt("mask flag", good, len, len, 52, &u, 4, "file size",
                   "+ n_tokens (context mask) = 154");
    v = 1;
    expect_corrupt("offsets[0]", good, len, len, 64, &v, 8, "doc_offsets[0]", NULL);
    v = 10; /* offsets 0 3 10 9 ...: out of order */
    expect_corrupt("offsets out of order", good, len, len, 64 + 16, &v, 8, "doc_offsets[3]",
                   "must increase");
    v = 13;
    expect_corrupt("last offset", good, len, len, 64 + 40, &v, 8, "doc_offsets[5]", "n_tokens");
    uint16_t id = 100;
    expect_corrupt("token id = vocab", good, len, len, 64 + 48 + 2 * 7, &id, 2, "tokens[7]",
                   "vocab_size 100");
    /* not a file at all */
    CHECK(xd_tokdata_open(path_in("nope.bin")) == NULL && contains(xd_last_error(), "nope.bin"),
          "missing: %s", xd_last_error());
    CHECK(xd_tokdata_open(g_dir) == NULL && contains(xd_last_error(), "not a regular file"),
          "directory: %s", xd_last_error());
    CHECK(xd_tokdata_open(FIXTURE("tiny-llama.gguf")) == NULL && contains(xd_last_error(), "magic"),
          "a GGUF: %s", xd_last_error());

    /* random damage: never a crash; whatever opens samples fine */
    uint64_t rng = 12345;
    int opened = 0;
    unsigned char *b = malloc(len);
    const char *fuzz = path_in("fuzz.bin");
    for (int it = 0; it < 3000; it++) {
        memcpy(b, good, len);
        int flips = 1 + (int)(rng % 3);
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % len;
            b[at] = (unsigned char)(rng >> 20);
        }
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t cut = (rng >> 40) % 8 == 0 ? (size_t)(rng >> 33) % (len + 1) : len;
        write_text(fuzz, (const char *)b, cut);
        xd_tokdata *d = xd_tokdata_open(fuzz);
        if (!d) {
            CHECK(contains(xd_last_error(), "fuzz.bin"), "fuzz error names the file: %s",
                  xd_last_error());
            continue;
        }
        opened++;
        int32_t tok[3 * 3], ds[3 * 2], pos[3 * 2];
        uint64_t cur = rng % 1000;
        for (int s = 0; s < 2; s++) {
            if (xd_tokdata_split_tokens(d, (xd_split)s) >= 3)
                CHECK(xd_tokdata_batch(d, (xd_split)s, &cur, 3, 2, tok, ds, pos) == 0,
                      "fuzz batch");
            uint64_t nw = xd_tokdata_n_windows(d, (xd_split)s, 2);
            for (uint64_t k = 0; k < nw; k++)
                CHECK(xd_tokdata_window(d, (xd_split)s, 2, k, tok, ds, pos) >= 2, "fuzz window");
        }
        xd_tokdata_close(d);
    }
    printf("fuzz: %d of 3000 damaged files still valid (changed seed/hash/ids)\n", opened);
    free(b);
    free(good);

    /* another tokenizer's data */
    const char *in[] = {path_in("a.txt")};
    CHECK(prep(t, in, 1, XD_DOCSEP_LINE, 1, 0.05, 0, path_in("tiny.bin"), NULL) == 0, "prep");
    xd_tokenizer *other = xd_tokenizer_load_json(FIXTURE("tiny_tokenizer/tokenizer.json"));
    CHECK(other != NULL, "load tokenizer.json: %s", xd_last_error());
    xd_tokdata *d = xd_tokdata_open(path_in("tiny.bin"));
    CHECK(d != NULL, "open");
    if (d && other) {
        char want[64];
        snprintf(want, sizeof want, "0x%016llx", (unsigned long long)xd_tokenizer_hash(other));
        CHECK(xd_tokdata_check_tokenizer(d, other) == -1, "another tokenizer is refused");
        const char *e = xd_last_error();
        CHECK(contains(e, "tiny.bin: tokenizer hash 0x") && contains(e, want) &&
                  contains(e, "does not match the model's tokenizer") &&
                  contains(e, "re-run data prep"),
              "hash mismatch message: %s", e);
        CHECK(xd_tokdata_check_tokenizer(d, t) == 0, "own tokenizer accepted");
    }
    xd_tokdata_close(d);
    xd_tokenizer_free(other);
}

/* ---- CLI ----------------------------------------------------------------------------- */

static int run_cli(const char *args, char *out, size_t cap, int want_stderr) {
    return test_cli_run(args, out, cap, want_stderr ? TEST_CLI_STDERR : TEST_CLI_STDOUT);
}

static void test_cli(const xd_tokenizer *t) {
    char args[4096], out[16384];
    const char *tiny = FIXTURE("tiny-llama.gguf");
    const char *lib = path_in("lib.bin"), *bin = path_in("cli.bin");
    CHECK(prep(t, corpus_inputs, 4, XD_DOCSEP_BLANK, 5, 0.2, 1, lib, NULL) == 0, "lib prep");
    snprintf(args, sizeof args,
             "data prep --tokenizer %s %s %s %s %s -o %s --doc-sep blank --seed 5 --val-frac 0.2 "
             "--threads 2",
             tiny, corpus_inputs[0], corpus_inputs[1], corpus_inputs[2], corpus_inputs[3], bin);
    int rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 0, "cli prep: status %d: %s", rc, out);
    CHECK(contains(out, "tokens/s"), "progress on stderr: %s", out);
    CHECK(test_same_file(lib, bin), "the CLI and the library write the same bytes");
    snprintf(args, sizeof args, "data info %s", bin);
    rc = run_cli(args, out, sizeof out, 0);
    CHECK(rc == 0 && contains(out, "documents       10 (train 8, validation 2)") &&
              contains(out, "vocab_size      260"),
          "data info: %d: %s", rc, out);
    snprintf(args, sizeof args, "data info %s --tokenizer %s", bin, tiny);
    rc = run_cli(args, out, sizeof out, 0);
    CHECK(rc == 0 && contains(out, "matches"), "data info --tokenizer (same): %d: %s", rc, out);
    snprintf(args, sizeof args, "data info %s --tokenizer %s", bin, FIXTURE("tiny_tokenizer"));
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 1 && contains(out, "xdistill: error:") && contains(out, "does not match"),
          "data info --tokenizer (other): %d: %s", rc, out);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s -o %s", tiny, path_in("c.txt"),
             path_in("cli_empty.bin"));
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 1 && contains(out, "empty corpus") && !exists(path_in("cli_empty.bin")),
          "cli empty corpus: %d: %s", rc, out);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s -o %s", tiny, path_in("bad1.jsonl"),
             bin);
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 1 && contains(out, "bad1.jsonl: line 3") && test_same_file(lib, bin),
          "cli malformed JSONL: %d: %s", rc, out);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s -o %s --doc-sep words", tiny,
             corpus_inputs[0], bin);
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 2 && contains(out, "--doc-sep"), "cli bad --doc-sep: %d: %s", rc, out);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s -o %s --val-frac 2", tiny,
             corpus_inputs[0], bin);
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 2 && contains(out, "--val-frac"), "cli bad --val-frac: %d: %s", rc, out);
    snprintf(args, sizeof args, "data prep %s -o %s", corpus_inputs[0], bin);
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 2 && contains(out, "usage"), "cli prep without --tokenizer: %d: %s", rc, out);
    rc = run_cli("data frobnicate", out, sizeof out, 1);
    CHECK(rc == 2 && contains(out, "frobnicate"), "cli unknown subcommand: %d: %s", rc, out);
    snprintf(args, sizeof args, "data info %s", path_in("corrupt.bin"));
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 1 && contains(out, "corrupt.bin"), "cli info on a corrupt file: %d: %s", rc, out);
}

/* ---- context masks (instruction data) --------------------------------------------- */

/* HAND_IDS with a prompt-like mask: each document starts with context tokens.
 * train [10 11 12] [20 21] [30 31 32 33], validation [40 41 42] [50 51] */
static const uint8_t HAND_MASK[] = {1, 1, 0, /**/ 1, 0, /**/ 1, 1, 0, 0, /**/ 1, 0, 0, /**/ 1, 0};

static int eq8(const uint8_t *a, const uint8_t *b, int n) { return !memcmp(a, b, (size_t)n); }
#define ARR8(...) ((const uint8_t[]){__VA_ARGS__})

/* Brute force: the mask byte of every row token is the split's byte at that
 * stream position, for several B, T and cursors (wrapping included). */
static void check_ctx_model(const xd_tokdata *d, xd_split s, const uint8_t *mask) {
    uint64_t L = xd_tokdata_split_tokens(d, s), begin = xd_tokdata_split_begin(d, s);
    int bad = 0, rows = 0;
    for (int T = 1; T <= 4 && (uint64_t)T + 1 <= L; T++) {
        enum { B = 3 };
        int32_t tok[B * 5];
        uint8_t ctx[B * 5];
        uint64_t cur = (uint64_t)T * 5;
        for (int step = 0; step < 12; step++) {
            uint64_t c0 = cur;
            if (xd_tokdata_batch_ctx(d, s, &cur, B, T, tok, NULL, NULL, ctx)) { bad = 1; break; }
            for (int b = 0; b < B; b++, rows++)
                for (int t = 0; t <= T; t++)
                    if (ctx[b * (T + 1) + t] != mask[begin + (c0 + (uint64_t)(b * T + t)) % L])
                        bad = 2;
        }
    }
    CHECK(!bad && rows > 0, "%s: context bytes vs brute force: mismatch kind %d",
          s == XD_SPLIT_TRAIN ? "train" : "validation", bad);
}

/* A hand-made masked file: written, read back through batches (wrapping) and
 * windows, counted; a file without a mask gives zeros. */
static void test_mask_hand(void) {
    const char *p = path_in("hand_mask.bin");
    CHECK(xd_tokdata_write_mask(p, 100, 0x1234, XD_TOKDATA_FLAG_EOS, 0, HAND_IDS, HAND_OFF, 5, 3,
                                HAND_MASK) == 0,
          "write masked: %s", xd_last_error());
    size_t len = 0;
    unsigned char *bytes = (unsigned char *)test_slurp(p, &len);
    /* the unmasked file's 140 bytes, then one byte per token */
    CHECK(bytes && len == 64 + 8 * 6 + 2 * 14 + 14 && !memcmp(bytes + 140, HAND_MASK, 14),
          "masked file: %zu bytes, the mask last", len);
    free(bytes);
    xd_tokdata *d = xd_tokdata_open(p);
    CHECK(d != NULL, "open masked: %s", xd_last_error());
    if (!d) return;
    CHECK(xd_tokdata_has_mask(d) &&
              xd_tokdata_header_of(d)->flags == (XD_TOKDATA_FLAG_EOS | XD_TOKDATA_FLAG_MASK),
          "mask flag: 0x%x", xd_tokdata_header_of(d)->flags);
    /* train: 2 + 1 + 2 context tokens; validation: 1 + 1 */
    CHECK(xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN) == 5 &&
              xd_tokdata_masked_tokens(d, XD_SPLIT_VAL) == 2,
          "masked tokens %llu / %llu, expected 5 / 2",
          (unsigned long long)xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN),
          (unsigned long long)xd_tokdata_masked_tokens(d, XD_SPLIT_VAL));
    int32_t tok[2 * 5], ds[2 * 4], pos[2 * 4];
    uint8_t ctx[2 * 5];
    uint64_t cur = 0;
    CHECK(xd_tokdata_batch_ctx(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos, ctx) == 0, "batch: %s",
          xd_last_error());
    CHECK(eq32(tok, ARR(10, 11, 12, 20, 21, /**/ 21, 30, 31, 32, 33), 10), "masked batch 1 tokens");
    CHECK(eq8(ctx, ARR8(1, 1, 0, 1, 0, /**/ 0, 1, 1, 0, 0), 10), "batch 1 context bytes");
    CHECK(eq32(ds, ARR(0, 0, 0, 3, /**/ 0, 1, 1, 1), 8), "batch 1 doc_start unchanged by the mask");
    /* row 0 wraps after 33 (its next bytes are the first document's) */
    CHECK(xd_tokdata_batch_ctx(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos, ctx) == 0, "batch 2");
    CHECK(eq32(tok, ARR(33, 10, 11, 12, 20, /**/ 20, 21, 30, 31, 32), 10), "masked batch 2 tokens");
    CHECK(eq8(ctx, ARR8(0, 1, 1, 0, 1, /**/ 1, 0, 1, 1, 0), 10), "batch 2 context bytes (wrap)");
    cur = 0;
    CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos) == 0 &&
              eq32(tok, ARR(10, 11, 12, 20, 21, /**/ 21, 30, 31, 32, 33), 10) && cur == 8,
          "xd_tokdata_batch on a masked file");
    /* windows: T = 3 -> [40 41 42 50] [50 51] */
    int n = xd_tokdata_window_ctx(d, XD_SPLIT_VAL, 3, 0, tok, ds, pos, ctx);
    CHECK(n == 4 && eq32(tok, ARR(40, 41, 42, 50), 4) && eq8(ctx, ARR8(1, 0, 0, 1), 4),
          "window 0 context bytes");
    n = xd_tokdata_window_ctx(d, XD_SPLIT_VAL, 3, 1, tok, ds, pos, ctx);
    CHECK(n == 2 && eq32(tok, ARR(50, 51), 2) && eq8(ctx, ARR8(1, 0), 2), "window 1 context bytes");
    check_ctx_model(d, XD_SPLIT_TRAIN, HAND_MASK);
    check_ctx_model(d, XD_SPLIT_VAL, HAND_MASK);
    xd_tokdata_close(d);

    /* no mask: zeros, and no context tokens */
    d = xd_tokdata_open(path_in("hand.bin"));
    memset(ctx, 7, sizeof ctx);
    cur = 0;
    CHECK(d && !xd_tokdata_has_mask(d) && xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN) == 0 &&
              xd_tokdata_batch_ctx(d, XD_SPLIT_TRAIN, &cur, 2, 4, tok, ds, pos, ctx) == 0 &&
              eq8(ctx, ARR8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 10),
          "a file without a mask gives context bytes 0");
    xd_tokdata_close(d);

    /* the writer refuses what the reader would */
    uint8_t bad[14];
    memcpy(bad, HAND_MASK, sizeof bad);
    bad[6] = 2;
    const char *q = path_in("bad_mask.bin");
    CHECK(xd_tokdata_write_mask(q, 100, 0, 0, 0, HAND_IDS, HAND_OFF, 5, 3, bad) == -1 &&
              contains(xd_last_error(), "context mask: byte at token 6 is 2, expected 0 or 1") &&
              !exists(q),
          "writer: bad mask byte: %s", xd_last_error());
    CHECK(xd_tokdata_write_mask(q, 100, 0, XD_TOKDATA_FLAG_MASK, 0, HAND_IDS, HAND_OFF, 5, 3,
                                NULL) == -1 &&
              contains(xd_last_error(), "no mask was given"),
          "writer: mask flag without a mask: %s", xd_last_error());
}

/* A corrupt mask byte and a truncated mask are refused. */
static void test_mask_corrupt(void) {
    size_t len = 0;
    unsigned char *good = (unsigned char *)test_slurp(path_in("hand_mask.bin"), &len);
    CHECK(good && len == 154, "masked hand file: %zu bytes", len);
    if (!good) return;
    uint8_t two = 2;
    expect_corrupt("mask byte 2", good, len, len, 140 + 9, &two, 1,
                   "context mask: byte at token 9 is 2, expected 0 or 1", NULL);
    expect_corrupt("mask cut", good, len, len - 1, 0, NULL, 0, "file size: 153 bytes",
                   "+ n_tokens (context mask) = 154");
    expect_corrupt("mask missing", good, len, 140, 0, NULL, 0, "file size: 140 bytes",
                   "(context mask)");
    free(good);
}

/* An instruction record: its prompt (context) and completion. */
typedef struct {
    const char *prompt, *text, *dom;
} record;

static const record RECORDS[] = {
    {"Question: what is two plus two?\nAnswer:", " Four.", "math"},
    {"Translate to English: chat\n", "cat", "lang"},
    {"", "no prompt here", "math"},           /* no context tokens */
    {"Only a prompt, no answer", "", "lang"}, /* the prompt, then the EOS */
    {"  ", "\n", "math"},                     /* both blank: skipped */
    {"Say hi\n", "hi there", "lang"},
    {"Count: 1 2 3", " 4 5 6", "math"},
};
enum { N_RECORDS = sizeof RECORDS / sizeof *RECORDS };

/* Expected document of record i: enc(prompt), enc(text), EOS; mask 1 on the
 * prompt's tokens. Returns its length (0 for the skipped record). */
static size_t expected_record(const xd_tokenizer *t, int i, int32_t *ids, uint8_t *mask) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0, n = 0;
    const record *r = &RECORDS[i];
    CHECK(xd_tokenizer_encode(t, r->prompt, strlen(r->prompt), 0, &a, &na) == 0 &&
              xd_tokenizer_encode(t, r->text, strlen(r->text), 0, &b, &nb) == 0,
          "encode: %s", xd_last_error());
    if (i != 4) {
        for (size_t j = 0; j < na; j++) ids[n] = a[j], mask[n++] = 1;
        for (size_t j = 0; j < nb; j++) ids[n] = b[j], mask[n++] = 0;
        if (xd_tokenizer_eos(t) >= 0) ids[n] = xd_tokenizer_eos(t), mask[n++] = 0;
    }
    free(a);
    free(b);
    return n;
}

/* The records as prep with a prompt field writes them: every document of
 * `data` (a prep or one of its domain files) is one expected record's ids
 * and mask; counts the documents matched and the context tokens per split. */
static int match_records(const xd_tokenizer *t, const char *data, int *used, uint64_t ctx[2]) {
    xd_tokdata *d = xd_tokdata_open(data);
    CHECK(d != NULL, "open %s: %s", data, xd_last_error());
    if (!d) return 0;
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    const uint8_t *mask = xd_tokdata_context_mask(d);
    CHECK(mask && (h->flags & XD_TOKDATA_FLAG_MASK), "%s has a context mask", data);
    int matched = 0;
    int32_t got[256], want[256];
    uint8_t want_mask[256];
    for (uint64_t k = 0; mask && k < h->n_docs; k++) {
        size_t n = (size_t)(off[k + 1] - off[k]);
        if (n > 256 || xd_tokdata_copy(d, off[k], n, got)) continue;
        for (int i = 0; i < N_RECORDS; i++) {
            if (used[i] || expected_record(t, i, want, want_mask) != n) continue;
            if (eq32(got, want, (int)n) && eq8(mask + off[k], want_mask, (int)n)) {
                used[i] = 1;
                matched++;
                for (size_t j = 0; j < n; j++) ctx[k >= h->n_train_docs] += want_mask[j];
                break;
            }
        }
    }
    xd_tokdata_close(d);
    return matched;
}

static void write_records(const char *name) {
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < N_RECORDS; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "prompt", RECORDS[i].prompt, "text",
                              RECORDS[i].text, "dom", RECORDS[i].dom);
        char *line = json_dumps(o, JSON_COMPACT);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\n", line);
        free(line);
        json_decref(o);
    }
    write_text(path_in(name), buf, n);
}

/* data prep --prompt-field: the prompt and the completion tokenized
 * separately, the prompt's tokens marked; the mask travels with its document
 * through the shuffle, the split and `data split`. */
static void test_prompt_prep(const xd_tokenizer *t) {
    write_records("inst.jsonl");
    const char *in[] = {path_in("inst.jsonl")};
    const char *out = path_in("inst.bin");
    xd_prep_opts o;
    xd_prep_defaults(&o);
    o.inputs = in;
    o.n_inputs = 1;
    o.prompt_field = "prompt";
    o.seed = 3;
    o.val_frac = 0.3;
    xd_prep_stats st;
    CHECK(xd_tokdata_prep(t, &o, out, &st) == 0, "prep --prompt-field: %s", xd_last_error());
    CHECK(st.n_docs == N_RECORDS - 1 && st.n_empty == 1 && st.n_train_docs == N_RECORDS - 3,
          "%llu documents (%llu train), %llu empty", (unsigned long long)st.n_docs,
          (unsigned long long)st.n_train_docs, (unsigned long long)st.n_empty);
    int used[N_RECORDS] = {0};
    uint64_t ctx[2] = {0, 0};
    int m = match_records(t, out, used, ctx);
    CHECK(m == N_RECORDS - 1 && !used[4], "%d of %d documents match the separately tokenized "
          "prompt + completion + EOS with their masks", m, N_RECORDS - 1);
    xd_tokdata *d = xd_tokdata_open(out);
    CHECK(d && ctx[0] + ctx[1] > 0 && xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN) == ctx[0] &&
              xd_tokdata_masked_tokens(d, XD_SPLIT_VAL) == ctx[1],
          "masked tokens per split: %llu / %llu", (unsigned long long)ctx[0],
          (unsigned long long)ctx[1]);
    xd_tokdata_close(d);

    /* with domains: `data split` carries each document's mask */
    o.domain_by = XD_DOMAIN_FIELD;
    o.domain_arg = "dom";
    const char *dom = path_in("inst_dom.bin");
    CHECK(xd_tokdata_prep(t, &o, dom, NULL) == 0, "prep with domains: %s", xd_last_error());
    d = xd_tokdata_open(dom);
    CHECK(d && xd_tokdata_split_domains(d, path_in("inst_split"), NULL, 0) == 0, "split: %s",
          xd_last_error());
    xd_tokdata_close(d);
    memset(used, 0, sizeof used);
    ctx[0] = ctx[1] = 0;
    m = match_records(t, path_in("inst_split/math.tok"), used, ctx);
    m += match_records(t, path_in("inst_split/lang.tok"), used, ctx);
    CHECK(m == N_RECORDS - 1, "data split: %d of %d documents with their masks", m, N_RECORDS - 1);
    o.domain_by = XD_DOMAIN_NONE;

    /* refused: a record without the prompt field (naming the line), a non-string,
     * text input, the prompt field also the text field */
    WRITE("inst_bad.jsonl", "{\"prompt\": \"a\", \"text\": \"b\"}\n{\"text\": \"c\"}\n");
    o.inputs = (const char *[]){path_in("inst_bad.jsonl")};
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 &&
              contains(xd_last_error(), "inst_bad.jsonl: line 2: prompt field \"prompt\" is "
                                        "missing (--prompt-field prompt)"),
          "missing prompt field: %s", xd_last_error());
    WRITE("inst_bad2.jsonl", "{\"prompt\": 3, \"text\": \"b\"}\n");
    o.inputs = (const char *[]){path_in("inst_bad2.jsonl")};
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 &&
              contains(xd_last_error(), "inst_bad2.jsonl: line 1: prompt field \"prompt\" is an "
                                        "integer, expected a string"),
          "non-string prompt field: %s", xd_last_error());
    o.inputs = (const char *[]){path_in("a.txt")};
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 &&
              contains(xd_last_error(), "a.txt: --prompt-field prompt needs JSONL records"),
          "text input: %s", xd_last_error());
    o.inputs = in;
    o.prompt_field = "text";
    CHECK(xd_tokdata_prep(t, &o, out, NULL) == -1 &&
              contains(xd_last_error(), "--prompt-field text is also the text field"),
          "prompt field = text field: %s", xd_last_error());
    CHECK(match_records(t, out, (int[N_RECORDS]){0}, (uint64_t[2]){0, 0}) == N_RECORDS - 1,
          "after the failures the output is intact");
}

/* The CLI: --prompt-field writes what the library does, info counts the
 * context tokens, echo refuses instruction data. */
static void test_prompt_cli(void) {
    char args[4096], out[16384];
    const char *tiny = FIXTURE("tiny-llama.gguf");
    const char *bin = path_in("inst_cli.bin");
    snprintf(args, sizeof args,
             "data prep --tokenizer %s %s -o %s --prompt-field prompt --seed 3 --val-frac 0.3",
             tiny, path_in("inst.jsonl"), bin);
    int rc = run_cli(args, out, sizeof out, 0);
    CHECK(rc == 0 && test_same_file(bin, path_in("inst.bin")),
          "cli prep --prompt-field: status %d, same bytes as the library: %s", rc, out);
    xd_tokdata *d = xd_tokdata_open(bin);
    uint64_t ct = d ? xd_tokdata_masked_tokens(d, XD_SPLIT_TRAIN) : 0,
             cv = d ? xd_tokdata_masked_tokens(d, XD_SPLIT_VAL) : 0;
    xd_tokdata_close(d);
    char want[128];
    snprintf(want, sizeof want, "context tokens  %llu (train %llu, validation %llu;",
             (unsigned long long)(ct + cv), (unsigned long long)ct, (unsigned long long)cv);
    snprintf(args, sizeof args, "data info %s", bin);
    rc = run_cli(args, out, sizeof out, 0);
    CHECK(rc == 0 && contains(out, want) && contains(out, "(context mask)"),
          "data info: %d: wants '%s': %s", rc, want, out);
    snprintf(args, sizeof args, "data echo %s --tokenizer %s -o %s", bin, tiny,
             path_in("inst_echo.bin"));
    rc = run_cli(args, out, sizeof out, 1);
    CHECK(rc == 1 && contains(out, "inst_cli.bin: has a context mask; echo works on plain text "
                                   "data") && !exists(path_in("inst_echo.bin")),
          "data echo on masked data: %d: %s", rc, out);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/xd_tokdata_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_corpus();
    init_inputs();
    xd_tokenizer *tiny = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    CHECK(tiny != NULL, "load tiny tokenizer: %s", xd_last_error());
    if (!tiny) return test_summary("tokdata");
    xd_tokenizer *json = xd_tokenizer_load(FIXTURE("tiny_tokenizer"));
    CHECK(json != NULL, "load tokenizer.json: %s", xd_last_error());

    test_prep_matches("tiny-llama", tiny);
    if (json) test_prep_matches("tokenizer.json (no EOS)", json);
    test_special("tiny-llama", tiny);
    test_bom(tiny);
    test_determinism(tiny);
    test_many_docs(tiny);
    test_sampler_hand();
    CHECK(prep(tiny, corpus_inputs, 4, XD_DOCSEP_LINE, 1, 0.3, 0, path_in("resume.bin"), NULL) == 0,
          "prep for resume");
    test_cursor_resume(path_in("resume.bin"));
    test_bad_prep(tiny);
    test_corrupt(tiny);
    test_cli(tiny);
    test_mask_hand();
    test_mask_corrupt();
    test_prompt_prep(tiny);
    test_prompt_cli();

    const char *teacher = teacher_path();
    if (access(teacher, R_OK) == 0) {
        xd_tokenizer *smol = xd_tokenizer_load(teacher);
        CHECK(smol != NULL, "load teacher tokenizer: %s", xd_last_error());
        if (smol) {
            test_prep_matches("SmolLM2", smol);
            test_special("SmolLM2", smol);
            xd_tokdata *d = xd_tokdata_open(path_in("tiny.bin"));
            CHECK(d && xd_tokdata_check_tokenizer(d, smol) == -1 &&
                      contains(xd_last_error(), "does not match"),
                  "tiny data vs SmolLM2 tokenizer refused: %s", xd_last_error());
            xd_tokdata_close(d);
        }
        xd_tokenizer_free(smol);
    } else {
        printf("skip: teacher %s not found; SmolLM2 tokenizer checks skipped\n", teacher);
    }
    xd_tokenizer_free(tiny);
    xd_tokenizer_free(json);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    free_paths();
    return test_summary("tokdata");
}
