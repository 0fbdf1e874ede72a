/* Teacher top-k logit files (src/io/topk_logits.h) and `xdistill teacher-logits`
 * (the fp16 conversion they store with is tests/test_f16.c's):
 *  - hashes and the top-k selection (against a full sort, ties included);
 *  - the format: round trip, resume at the library level (unflushed rows
 *    dropped), mismatching headers naming both values, corrupt and truncated
 *    files, bad rows;
 *  - the CLI: SIGKILL at random moments and rerun gives the same bytes as an
 *    uninterrupted run, a finished run says so, mismatches are refused, and
 *    the stored top-k equal the teacher's logits computed with xd_forward. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/f16.h"
#include "core/hash.h"
#include "io/tokdata.h"
#include "io/topk_logits.h"
#include "model/model.h"
#include "cli_util.h"
#include "test.h"
#include "xdistill.h"

static char dir[256];

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


/* ---- hashes and top-k ------------------------------------------------------------------ */

static void test_hash(void) {
    size_t n = (20u << 20) + 13; /* several 8 MB chunks and a ragged tail */
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t h1 = xd_hash64(b, n, 7), h2 = xd_hash64(b, n, 7);
    CHECK(h1 == h2, "hash not deterministic");
    b[n - 1] ^= 1;
    CHECK(xd_hash64(b, n, 7) != h1, "a flipped bit in the tail was not seen");
    b[n - 1] ^= 1;
    b[9 << 20] ^= 0x80;
    CHECK(xd_hash64(b, n, 7) != h1, "a flipped bit in chunk 1 was not seen");
    b[9 << 20] ^= 0x80;
    CHECK(xd_hash64(b, n, 8) != h1, "the seed does not matter");
    uint8_t z[16] = {0};
    CHECK(xd_hash64(z, 15, 0) != xd_hash64(z, 16, 0), "length not hashed");
    CHECK(xd_hash64(z, 0, 0) != xd_hash64(z, 1, 0), "length 0 vs 1");
    /* the thread count does not matter: 1 and 3 threads (whatever the run's count is) */
    int th = xd_get_threads();
    xd_set_threads(1);
    uint64_t h_one = xd_hash64(b, n, 7);
    xd_set_threads(3);
    uint64_t h_three = xd_hash64(b, n, 7);
    xd_set_threads(th);
    CHECK(h_one == h1 && h_three == h1, "hash differs with 1 or 3 threads");
    free(b);

    /* the data hash covers the train split only: documents, boundaries and ids */
    enum { NTOK = 3 * (1 << 20) + 77 }; /* several 1M-token chunks */
    int32_t *ids = malloc(NTOK * sizeof *ids);
    for (int i = 0; i < NTOK; i++) ids[i] = (int32_t)((unsigned)i * 2654435761u % 1000u);
    uint64_t off[4] = {0, 1000000, 3000000, NTOK};
    char p[512];
    uint64_t hs[5];
    for (int v = 0; v < 5; v++) {
        snprintf(p, sizeof p, "%s/h%d.tok", dir, v);
        uint64_t o2[4];
        memcpy(o2, off, sizeof o2);
        if (v == 1) ids[NTOK - 1] ^= 1;          /* validation token: same hash */
        if (v == 2) ids[NTOK - 1] ^= 1, ids[2500000] ^= 1; /* a train token */
        if (v == 3) ids[2500000] ^= 1, o2[1] = 1000001; /* a train boundary */
        int ntrain = v == 4 ? 3 : 2;                /* the split itself */
        CHECK(xd_tokdata_write(p, 1000, 0x42, 0, 1, ids, o2, 3, (uint64_t)ntrain) == 0, "%s",
              xd_last_error());
        xd_tokdata *d = xd_tokdata_open(p);
        hs[v] = d ? xd_topk_data_hash(d) : 0;
        if (v == 0) {
            xd_set_threads(1);
            CHECK(d && xd_topk_data_hash(d) == hs[0], "data hash differs with 1 thread");
            xd_set_threads(3);
            CHECK(d && xd_topk_data_hash(d) == hs[0], "data hash differs with 3 threads");
            xd_set_threads(th);
        }
        xd_tokdata_close(d);
        unlink(p);
    }
    CHECK(hs[1] == hs[0], "a validation token changed the data hash");
    CHECK(hs[2] != hs[0] && hs[3] != hs[0] && hs[4] != hs[0] && hs[2] != hs[3],
          "a train token / boundary / the split did not change the data hash");
    free(ids);
}

static const float *sort_vals;
static int cmp_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (sort_vals[i] != sort_vals[j]) return sort_vals[i] > sort_vals[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static void test_select(void) {
    enum { V = 300 };
    float x[V], vals[V];
    int32_t ids[V], all[V];
    uint64_t s = 99;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < V; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 20 - 10);
            if (round % 2) x[i] = floorf(x[i]); /* many ties */
            all[i] = i;
        }
        int k = round == 0 ? V : round == 1 ? 1 : 1 + round * 7 % 64;
        CHECK(xd_topk_select(x, V, k, ids, vals) == 0, "select: %s", xd_last_error());
        sort_vals = x;
        qsort(all, V, sizeof *all, cmp_desc);
        int ok = 1;
        for (int j = 0; j < k; j++) ok &= ids[j] == all[j] && vals[j] == x[all[j]];
        CHECK(ok, "round %d: top-%d differs from a full sort", round, k);
    }
    x[123] = NAN;
    CHECK(xd_topk_select(x, V, 10, ids, vals) == -1 && contains(xd_last_error(), "123"),
          "NaN: %s", xd_last_error());
    CHECK(xd_topk_select(x, V, 0, ids, vals) == -1, "k = 0 accepted");
}

/* ---- the format ---------------------------------------------------------------------------- */

enum { FK = 5, FT = 3 };

/* Synthetic row r: position t has ids (r·7 + t·3 + j·11) mod vocab (distinct
 * for j < 5 as 11 is coprime to the vocab sizes used) with logits
 * descending, some needing rounding. */
static void synth_row(uint64_t r, uint32_t vocab, int32_t *ids, float *vals) {
    for (int t = 0; t < FT; t++)
        for (int j = 0; j < FK; j++) {
            ids[t * FK + j] = (int32_t)((r * 7 + (uint64_t)t * 3 + (uint64_t)j * 11) % vocab);
            vals[t * FK + j] = 12.3456789f - 2.1f * (float)j - 0.37f * (float)t + 0.01f * (float)r;
        }
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static xd_topk_header hdr(uint32_t vocab, uint64_t rows, uint64_t th, uint64_t dh) {
    xd_topk_header h;
    xd_topk_header_init(&h, FK, vocab, FT, 2, rows, th, dh, 0xabcdefull);
    return h;
}

static int write_rows(xd_topk_writer *w, uint64_t from, uint64_t n, uint32_t vocab) {
    int32_t ids[FT * FK];
    float v[FT * FK];
    for (uint64_t r = from; r < from + n; r++) {
        synth_row(r, vocab, ids, v);
        if (xd_topk_writer_append(w, ids, v, 1)) return -1;
    }
    return 0;
}

static void test_round_trip(uint32_t vocab) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt%u.topk", dir, vocab);
    xd_topk_header h = hdr(vocab, 4, 0x1111, 0x2222);
    xd_topk_writer *w = xd_topk_writer_open(path, &h);
    CHECK(w && xd_topk_writer_rows(w) == 0 && !xd_topk_writer_done(w), "open: %s", xd_last_error());
    if (!w) return;
    CHECK(write_rows(w, 0, 2, vocab) == 0 && xd_topk_writer_flush(w) == 0, "%s", xd_last_error());
    CHECK(write_rows(w, 2, 2, vocab) == 0, "%s", xd_last_error());
    CHECK(xd_topk_writer_finish(w) == 0, "finish: %s", xd_last_error());
    xd_topk_writer_close(w);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", path);
    CHECK(access(partial, F_OK) != 0, "%s left behind", partial);

    xd_topk *f = xd_topk_open(path);
    CHECK(f != NULL, "reopen: %s", xd_last_error());
    if (!f) return;
    const xd_topk_header *g = xd_topk_header_of(f);
    uint32_t ib = vocab <= 65536 ? 2 : 4;
    CHECK(g->k == FK && g->seq == FT && g->vocab_size == vocab && g->id_bytes == ib &&
              g->n_rows == 4 && g->rows_total == 4 && g->batch == 2 && g->teacher_hash == 0x1111 &&
              g->data_hash == 0x2222 && g->tokenizer_hash == 0xabcdef,
          "header fields differ after the round trip");
    struct stat st;
    stat(path, &st);
    CHECK((uint64_t)st.st_size == 128 + 4ull * FT * FK * (ib + 2), "size %lld",
          (long long)st.st_size);
    int32_t ids[4 * FT * FK], want_ids[FT * FK];
    float v[4 * FT * FK], want_v[FT * FK];
    CHECK(xd_topk_read_rows(f, 0, 4, ids, v) == 0, "read: %s", xd_last_error());
    int ok = 1;
    for (int r = 0; r < 4; r++) {
        synth_row((uint64_t)r, vocab, want_ids, want_v);
        for (int i = 0; i < FT * FK; i++)
            ok &= ids[r * FT * FK + i] == want_ids[i] &&
                  v[r * FT * FK + i] == xd_fp16_to_fp32(xd_fp32_to_fp16(want_v[i]));
    }
    CHECK(ok, "rows differ after the round trip (vocab %u)", vocab);
    CHECK(xd_topk_read_rows(f, 3, 1, ids, v) == 0 && ids[0] == (int32_t)((3 * 7) % vocab),
          "read row 3 alone");
    CHECK(xd_topk_read_rows(f, 3, 2, ids, v) == -1 && contains(xd_last_error(), "out of range"),
          "rows past the end: %s", xd_last_error());
    xd_topk_close(f);

    /* reopening the finished file for the same header: done */
    w = xd_topk_writer_open(path, &h);
    CHECK(w && xd_topk_writer_done(w) && xd_topk_writer_rows(w) == 4, "done: %s", xd_last_error());
    xd_topk_writer_close(w);
    /* another teacher: refused, naming both hashes and the file */
    xd_topk_header h2 = hdr(vocab, 4, 0x9999, 0x2222);
    w = xd_topk_writer_open(path, &h2);
    CHECK(!w && contains(xd_last_error(), path) && contains(xd_last_error(), "teacher_hash") &&
              contains(xd_last_error(), "0x0000000000001111") &&
              contains(xd_last_error(), "0x0000000000009999"),
          "teacher mismatch: %s", xd_last_error());
    xd_topk_writer_close(w);
    printf("round trip (vocab %u, %u-byte ids): ok\n", vocab, ib);
}

static void test_resume_lib(void) {
    const uint32_t vocab = 300;
    char a[512], b[512], bp[600];
    snprintf(a, sizeof a, "%s/straight.topk", dir);
    snprintf(b, sizeof b, "%s/resumed.topk", dir);
    snprintf(bp, sizeof bp, "%s.partial", b);
    xd_topk_header h = hdr(vocab, 5, 1, 2);
    xd_topk_writer *w = xd_topk_writer_open(a, &h);
    CHECK(w && write_rows(w, 0, 5, vocab) == 0 && xd_topk_writer_finish(w) == 0, "%s",
          xd_last_error());
    xd_topk_writer_close(w);

    /* 2 rows committed, a third appended but never flushed: a crash */
    w = xd_topk_writer_open(b, &h);
    CHECK(w && write_rows(w, 0, 2, vocab) == 0 && xd_topk_writer_flush(w) == 0 &&
              write_rows(w, 2, 1, vocab) == 0, "%s", xd_last_error());
    /* while it is open, a second writer is locked out */
    xd_topk_writer *w2 = xd_topk_writer_open(b, &h);
    CHECK(!w2 && contains(xd_last_error(), "another process"), "lock: %s", xd_last_error());
    xd_topk_writer_close(w2);
    xd_topk_writer_close(w);
    /* a mismatching partial is refused, naming both values */
    xd_topk_header hd = hdr(vocab, 5, 1, 3);
    w = xd_topk_writer_open(b, &hd);
    CHECK(!w && contains(xd_last_error(), bp) && contains(xd_last_error(), "data_hash") &&
              contains(xd_last_error(), "0x0000000000000002") &&
              contains(xd_last_error(), "0x0000000000000003"),
          "data mismatch: %s", xd_last_error());
    xd_topk_header hb = h;
    hb.batch = 3;
    w = xd_topk_writer_open(b, &hb);
    CHECK(!w && contains(xd_last_error(), "batch 2 does not match this run's 3 (--batch)"),
          "batch mismatch: %s", xd_last_error());
    xd_topk_header hk = h;
    hk.k = 4;
    w = xd_topk_writer_open(b, &hk);
    CHECK(!w && contains(xd_last_error(), "k 5 does not match this run's 4 (--topk)"),
          "k mismatch: %s", xd_last_error());
    /* the resume continues at row 2 (the unflushed row is dropped) */
    w = xd_topk_writer_open(b, &h);
    CHECK(w && xd_topk_writer_rows(w) == 2, "resume at %llu: %s",
          w ? (unsigned long long)xd_topk_writer_rows(w) : 0ull, xd_last_error());
    struct stat st;
    stat(bp, &st);
    CHECK((uint64_t)st.st_size == 128 + 2ull * FT * FK * 4, "partial not cut back: %lld",
          (long long)st.st_size);
    CHECK(w && write_rows(w, 2, 3, vocab) == 0, "%s", xd_last_error());
    CHECK(w && write_rows(w, 5, 1, vocab) == -1 && contains(xd_last_error(), "rows_total"),
          "a row too many: %s", xd_last_error());
    CHECK(w && xd_topk_writer_finish(w) == 0, "%s", xd_last_error());
    xd_topk_writer_close(w);
    size_t na, nb;
    char *ba = slurp(a, &na), *bb = slurp(b, &nb);
    CHECK(ba && bb && na == nb && memcmp(ba, bb, na) == 0, "resumed file differs");
    free(ba);
    free(bb);

    /* rows the writer refuses */
    char c[512];
    snprintf(c, sizeof c, "%s/bad.topk", dir);
    w = xd_topk_writer_open(c, &h);
    int32_t ids[FT * FK];
    float v[FT * FK];
    synth_row(0, vocab, ids, v);
    ids[1 * FK + 2] = 300;
    CHECK(xd_topk_writer_append(w, ids, v, 1) == -1 &&
              contains(xd_last_error(), "row 0, position 1, slot 2: id 300"),
          "id range: %s", xd_last_error());
    synth_row(0, vocab, ids, v);
    ids[2 * FK + 4] = ids[2 * FK + 0];
    CHECK(xd_topk_writer_append(w, ids, v, 1) == -1 && contains(xd_last_error(), "twice"),
          "duplicate: %s", xd_last_error());
    synth_row(0, vocab, ids, v);
    v[3] = 100;
    CHECK(xd_topk_writer_append(w, ids, v, 1) == -1 && contains(xd_last_error(), "descending"),
          "order: %s", xd_last_error());
    synth_row(0, vocab, ids, v);
    v[0] = 70000;
    CHECK(xd_topk_writer_append(w, ids, v, 1) == -1 && contains(xd_last_error(), "fp16"),
          "overflow: %s", xd_last_error());
    CHECK(xd_topk_writer_finish(w) == -1 && contains(xd_last_error(), "only 0 of 5"),
          "early finish: %s", xd_last_error());
    xd_topk_writer_close(w);
}

/* Corrupt copies of a good file: each must fail with a message naming the field. */
static void test_corrupt(void) {
    const uint32_t vocab = 300;
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/straight.topk", dir);
    snprintf(bad, sizeof bad, "%s/corrupt.topk", dir);
    size_t n;
    uint8_t *b = (uint8_t *)slurp(good, &n);
    CHECK(b && n > 128, "no good file");
    if (!b) return;
    uint8_t *c = malloc(n);
    struct { size_t off; uint8_t val; const char *want; } cases[] = {
        {0, 'Y', "magic"},
        {7, 1, "magic"},
        {8, 2, "version"},
        {12, 0, "k: 0"},        /* k = 5 -> 0 */
        {24, 4, "id_bytes: 4"}, /* 2 -> 4 */
        {28, 0, "batch: 0"},
        {33, 1, "n_rows"},      /* n_rows += 256 > rows_total */
        {100, 1, "reserved byte 100"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(c, b, n);
        c[cases[i].off] = cases[i].val;
        spit(bad, c, n);
        xd_topk *f = xd_topk_open(bad);
        CHECK(!f && contains(xd_last_error(), bad) && contains(xd_last_error(), cases[i].want),
              "byte %zu = %u: %s", cases[i].off, cases[i].val, xd_last_error());
        xd_topk_close(f);
    }
    spit(bad, b, n - 1);
    xd_topk *f = xd_topk_open(bad);
    CHECK(!f && contains(xd_last_error(), "file size") && contains(xd_last_error(), "truncated"),
          "truncated: %s", xd_last_error());
    spit(bad, b, 100);
    f = xd_topk_open(bad);
    CHECK(!f && contains(xd_last_error(), "header"), "short: %s", xd_last_error());
    /* bad records are found when read: id, NaN, order */
    size_t rec = FK * 4, row = FT * rec;
    int32_t ids[FT * FK];
    float v[FT * FK];
    memcpy(c, b, n);
    uint16_t big = 300;
    memcpy(c + 128 + row + rec * 2, &big, 2); /* row 1, position 2, slot 0 */
    spit(bad, c, n);
    f = xd_topk_open(bad);
    CHECK(f && xd_topk_read_rows(f, 0, 1, ids, v) == 0, "row 0 is fine");
    CHECK(f && xd_topk_read_rows(f, 1, 1, ids, v) == -1 &&
              contains(xd_last_error(), "row 1, position 2, slot 0: id 300"),
          "bad id: %s", xd_last_error());
    xd_topk_close(f);
    memcpy(c, b, n);
    uint16_t nan = 0x7e00;
    memcpy(c + 128 + FK * 2 + 2 * 3, &nan, 2); /* row 0, position 0, slot 3 */
    spit(bad, c, n);
    f = xd_topk_open(bad);
    CHECK(f && xd_topk_read_rows(f, 0, 1, ids, v) == -1 && contains(xd_last_error(), "NaN") &&
              contains(xd_last_error(), "slot 3"),
          "NaN: %s", xd_last_error());
    xd_topk_close(f);
    memcpy(c, b, n);
    uint16_t hi = xd_fp32_to_fp16(1000.0f);
    memcpy(c + 128 + FK * 2 + 2 * 4, &hi, 2); /* slot 4 above slot 3 */
    spit(bad, c, n);
    f = xd_topk_open(bad);
    CHECK(f && xd_topk_read_rows(f, 0, 1, ids, v) == -1 && contains(xd_last_error(), "descending"),
          "order: %s", xd_last_error());
    xd_topk_close(f);
    /* an id twice at one position (logits still descending): refused, naming both slots */
    memcpy(c, b, n);
    uint16_t id1;
    memcpy(&id1, c + 128 + row + rec * 1 + 2 * 1, 2); /* row 1, position 1, slot 1 */
    memcpy(c + 128 + row + rec * 1 + 2 * 3, &id1, 2); /* ... its slot 3 */
    spit(bad, c, n);
    f = xd_topk_open(bad);
    char want[96];
    snprintf(want, sizeof want, "row 1, position 1, slot 3: id %u repeats slot 1", (unsigned)id1);
    CHECK(f && xd_topk_read_rows(f, 0, 1, ids, v) == 0, "row 0 is fine: %s", xd_last_error());
    int32_t ids2[2 * FT * FK];
    float v2[2 * FT * FK];
    CHECK(f && xd_topk_read_rows(f, 0, 2, ids2, v2) == -1 && contains(xd_last_error(), bad) &&
              contains(xd_last_error(), want),
          "repeated id: %s", xd_last_error());
    /* the next read of good rows is not disturbed by what the failed one saw */
    CHECK(f && xd_topk_read_rows(f, 2, 2, ids2, v2) == 0, "rows 2-3 after the failure: %s",
          xd_last_error());
    xd_topk_close(f);
    /* a truncated partial file cannot be resumed */
    char p[600];
    snprintf(p, sizeof p, "%s/trunc.topk.partial", dir);
    memcpy(c, b, n);
    spit(p, c, n - 7); /* claims 5 rows, holds 4 and a bit */
    snprintf(p, sizeof p, "%s/trunc.topk", dir);
    xd_topk_header h = hdr(vocab, 5, 1, 2);
    xd_topk_writer *w = xd_topk_writer_open(p, &h);
    CHECK(!w && contains(xd_last_error(), "truncated"), "truncated partial: %s", xd_last_error());
    xd_topk_writer_close(w);
    free(b);
    free(c);
}

/* ---- the CLI ----------------------------------------------------------------------------- */

static int run(const char *args, char *out, size_t cap) {
    return test_cli_run(args, out, cap, TEST_CLI_BOTH);
}

static const char *TEACHER = XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf";
enum { CT = 16, CK = 16, CROWS = 400, CB = 4 };

static void make_data(const char *name, int variant) {
    char txt[512], out[512];
    snprintf(txt, sizeof txt, "%s/%s.txt", dir, name);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 60; i++)
        fprintf(f, "the cat sat on the mat number %d and then the %s ran to the hat.\n\n", i % 7,
                variant ? "fox" : "dog");
    fprintf(f, "a short one.\n\n");
    fclose(f);
    snprintf(out, sizeof out, "%s/%s.tok", dir, name);
    CHECK(test_prep_text(TEACHER, txt, out, 0.1) == 0, "prep: %s", xd_last_error());
}

static const char *tl_args(const char *data, const char *out, int k, int B) {
    static char a[2048];
    snprintf(a, sizeof a, "teacher-logits %s --data %s/%s.tok --seq %d --rows %d --topk %d "
             "--batch %d --flush-secs 0 -o %s", TEACHER, dir, data, CT, CROWS, k, B, out);
    return a;
}

static void test_cli_kill_resume(void) {
    char a[512], b[512], bp[600], msg[16384];
    snprintf(a, sizeof a, "%s/A.topk", dir);
    snprintf(b, sizeof b, "%s/B.topk", dir);
    snprintf(bp, sizeof bp, "%s.partial", b);
    double t0 = now_s();
    int rc = run(tl_args("data", a, CK, CB), msg, sizeof msg);
    double dur = now_s() - t0;
    CHECK(rc == 0 && contains(msg, "teacher-logits"), "uninterrupted run: rc %d: %s", rc, msg);
    xd_topk *f = xd_topk_open(a);
    CHECK(f && xd_topk_header_of(f)->n_rows == CROWS, "A: %s", xd_last_error());
    xd_topk_close(f);

    /* Kill rounds: the first at a random moment of the first 5 ms (exec, model
     * load, hashing, creating the partial file), the others when the partial file
     * has grown past a random row count (polled every 0.2 ms, then 0-2 ms more:
     * the kill can land in a forward, a write or a flush). Progress-based, so
     * the kills land mid-run however fast or loaded the machine is. */
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const uint64_t row_bytes = (uint64_t)CT * CK * 4; /* 2-byte ids + fp16 */
    int kills = 0, mid = 0;
    uint64_t target = 0;
    for (int round = 0; round < 4; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>&1", test_cli_path(), tl_args("data", b, CK, CB));
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        int st, exited = 0;
        if (round == 0) usleep((useconds_t)(rand() % 5000));
        else {
            target += 1 + (uint64_t)rand() % (CROWS / 5);
            struct stat sb;
            while (!(exited = waitpid(pid, &st, WNOHANG) != 0) &&
                   !(stat(bp, &sb) == 0 && (uint64_t)sb.st_size >= 128 + target * row_bytes))
                usleep(200);
            if (!exited) usleep((useconds_t)(rand() % 2000));
        }
        if (!exited && waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            kills++;
            struct stat sb;
            if (stat(bp, &sb) == 0 && sb.st_size > 128) mid++;
        }
    }
    rc = run(tl_args("data", b, CK, CB), msg, sizeof msg);
    CHECK(rc == 0, "resumed run: rc %d: %s", rc, msg);
    CHECK(test_same_file(a, b), "killed %d times and resumed: the file differs from the "
          "uninterrupted run's", kills);
    CHECK(access(bp, F_OK) != 0, "%s left behind", bp);
    printf("CLI: uninterrupted run %.2f s; killed %d times (%d with rows written, the last "
           "after row ~%llu of %d) and resumed: identical bytes\n", dur, kills, mid,
           (unsigned long long)target, CROWS);
    CHECK(kills >= 1 && mid >= 1, "no run was killed mid-way (machine too fast?)");

    /* a rerun after completion says so and leaves the file alone */
    rc = run(tl_args("data", b, CK, CB), msg, sizeof msg);
    CHECK(rc == 0 && contains(msg, "already complete"), "rerun: rc %d: %s", rc, msg);
    CHECK(test_same_file(a, b), "rerun changed the file");
    /* ... also with another --batch (nothing is computed) */
    rc = run(tl_args("data", b, CK, 3), msg, sizeof msg);
    CHECK(rc == 0 && contains(msg, "already complete"), "rerun --batch 3: rc %d: %s", rc, msg);
}

static void test_cli_mismatch(void) {
    char a[512], c[512], msg[16384], want[64];
    snprintf(a, sizeof a, "%s/A.topk", dir);
    snprintf(c, sizeof c, "%s/C.topk", dir);
    /* the finished file, asked for other data: refused naming both data hashes */
    char dp[512];
    snprintf(dp, sizeof dp, "%s/data.tok", dir);
    xd_tokdata *d1 = xd_tokdata_open(dp);
    snprintf(dp, sizeof dp, "%s/data2.tok", dir);
    xd_tokdata *d2 = xd_tokdata_open(dp);
    CHECK(d1 && d2, "data: %s", xd_last_error());
    if (!d1 || !d2) return;
    uint64_t h1 = xd_topk_data_hash(d1), h2 = xd_topk_data_hash(d2);
    CHECK(h1 != h2, "two different token files with the same data hash");
    int rc = run(tl_args("data2", a, CK, CB), msg, sizeof msg);
    snprintf(want, sizeof want, "0x%016llx", (unsigned long long)h1);
    CHECK(rc == 1 && contains(msg, a) && contains(msg, "data_hash") && contains(msg, want),
          "other data: rc %d: %s", rc, msg);
    snprintf(want, sizeof want, "0x%016llx", (unsigned long long)h2);
    CHECK(contains(msg, want), "the new data's hash %s is not named: %s", want, msg);
    /* the reader's check against the token file */
    xd_topk *f = xd_topk_open(a);
    CHECK(f && xd_topk_check_data(f, d1) == 0, "check_data: %s", xd_last_error());
    CHECK(f && xd_topk_check_data(f, d2) == -1 && contains(xd_last_error(), "data_hash") &&
              contains(xd_last_error(), want),
          "check_data other: %s", xd_last_error());
    xd_model *m = xd_model_load(TEACHER);
    CHECK(f && m && xd_topk_check_teacher(f, xd_model_teacher_hash(m), TEACHER) == 0, "check_teacher: %s", xd_last_error());
    xd_model_free(m);
    xd_topk_close(f);
    xd_tokdata_close(d1);
    xd_tokdata_close(d2);

    /* a partial from another --topk */
    char cp[600];
    snprintf(cp, sizeof cp, "%s.partial", c);
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>&1", test_cli_path(), tl_args("data", c, 8, CB));
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct stat sb;
    for (int i = 0; i < 2000 && !(stat(cp, &sb) == 0 && sb.st_size > 128); i++) usleep(1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (access(c, F_OK) == 0) {
        printf("(the --topk 8 run finished before the kill; mismatch on the partial not tested)\n");
    } else {
        rc = run(tl_args("data", c, CK, CB), msg, sizeof msg);
        CHECK(rc == 1 && contains(msg, cp) && contains(msg, "k 8 does not match this run's 16"),
              "partial with another --topk: rc %d: %s", rc, msg);
        rc = run(tl_args("data", c, 8, 3), msg, sizeof msg);
        CHECK(rc == 1 && contains(msg, "batch 4 does not match this run's 3 (--batch)"),
              "partial with another --batch: rc %d: %s", rc, msg);
    }

    /* bad arguments and data */
    char args[4096];
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 200 --rows 3 -o %s/x",
             TEACHER, dir, dir);
    rc = run(args, msg, sizeof msg);
    CHECK(rc == 1 && contains(msg, "--seq 200") && contains(msg, "context"), "seq: %s", msg);
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 8 --rows 3 --topk 999 "
             "-o %s/x", TEACHER, dir, dir);
    rc = run(args, msg, sizeof msg);
    CHECK(rc == 1 && contains(msg, "--topk 999"), "topk: %s", msg);
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 8 -o %s/x", TEACHER,
             dir, dir);
    CHECK(run(args, msg, sizeof msg) == 2 && contains(msg, "usage"), "no --rows: %s", msg);
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 8 --rows 2 --tokens 9 "
             "-o %s/x", TEACHER, dir, dir);
    CHECK(run(args, msg, sizeof msg) == 2 && contains(msg, "not both"), "rows+tokens: %s", msg);
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 8 --rows 0 -o %s/x",
             TEACHER, dir, dir);
    CHECK(run(args, msg, sizeof msg) == 2 && contains(msg, "--rows"), "rows 0: %s", msg);
    /* data made by another tokenizer: tiny-llama's weights with tiny_tokenizer */
    snprintf(args, sizeof args, "mkdir -p %s/other && ln -sf %s/tests/fixtures/tiny-llama/config.json "
             "%s/tests/fixtures/tiny-llama/model.safetensors "
             "%s/tests/fixtures/tiny_tokenizer/tokenizer.json %s/other/",
             dir, XD_SOURCE_DIR, XD_SOURCE_DIR, XD_SOURCE_DIR, dir);
    CHECK(system(args) == 0, "%s", args);
    snprintf(args, sizeof args, "teacher-logits %s/other --data %s/data.tok --seq 8 --rows 3 "
             "-o %s/x", dir, dir, dir);
    rc = run(args, msg, sizeof msg);
    CHECK(rc == 1 && contains(msg, "tokenizer") && contains(msg, "data.tok"), "tokenizer: %s", msg);
    /* --tokens rounds up to whole rows */
    snprintf(args, sizeof args, "teacher-logits %s --data %s/data.tok --seq 8 --tokens 17 --topk 3 "
             "-q -o %s/tok.topk", TEACHER, dir, dir);
    rc = run(args, msg, sizeof msg);
    snprintf(args, sizeof args, "%s/tok.topk", dir);
    f = xd_topk_open(args);
    CHECK(rc == 0 && f && xd_topk_header_of(f)->n_rows == 3, "--tokens 17 --seq 8: rc %d %s", rc,
          msg);
    xd_topk_close(f);
}

/* The stored top-k against the teacher's logits from xd_forward: for rows
 * without a document boundary, one forward over the row; for rows with
 * boundaries, one forward per document piece (packing restarts positions and
 * attention at each document). */
static void test_cli_vs_forward(void) {
    char a[512], dp[512];
    snprintf(a, sizeof a, "%s/A.topk", dir);
    snprintf(dp, sizeof dp, "%s/data.tok", dir);
    xd_model *m = xd_model_load(TEACHER);
    xd_tokdata *d = xd_tokdata_open(dp);
    xd_topk *f = xd_topk_open(a);
    CHECK(m && d && f, "open: %s", xd_last_error());
    if (!m || !d || !f) return;
    const int V = xd_model_config(m)->vocab_size;
    CHECK(xd_topk_header_of(f)->vocab_size == (uint32_t)V, "vocab");
    CHECK(xd_topk_check_teacher(f, xd_model_teacher_hash(m), TEACHER) == 0, "teacher hash: %s", xd_last_error());
    xd_model *hf = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    if (hf) {
        printf("teacher hash: tiny-llama.gguf 0x%016llx, tiny-llama (HF) 0x%016llx%s\n",
               (unsigned long long)xd_model_teacher_hash(m),
               (unsigned long long)xd_model_teacher_hash(hf),
               xd_model_teacher_hash(m) == xd_model_teacher_hash(hf) ? " (same fp32 weights)" : "");
        xd_model_free(hf);
    }
    xd_kv *kv = xd_kv_create(m, CT);
    float *lg = malloc(sizeof(float) * (size_t)CT * V), *sorted = malloc(sizeof(float) * V);
    int32_t tok[CT + 1], ds[CT], pos[CT], ids[CT * CK], sid[CK];
    float v[CT * CK];
    int rows_single = 0, rows_multi = 0, exact = 0, total = 0;
    double max_rank_err = 0, max_excess = -1, max_logit_err = 0;
    for (uint64_t r = 0; r < 400; r++) {
        uint64_t cursor = r * CT;
        CHECK(xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cursor, 1, CT, tok, ds, pos) == 0, "batch");
        int single = 1;
        for (int t = 0; t < CT; t++) single &= ds[t] == 0;
        if (!single && r % 5) continue; /* every boundary row would be slow-ish; sample them */
        single ? rows_single++ : rows_multi++;
        /* forwards over each document piece of the row */
        for (int s = 0; s < CT;) {
            int e = s + 1;
            while (e < CT && ds[e] == ds[s]) e++;
            xd_kv_reset(kv);
            CHECK(xd_forward(m, kv, tok + s, e - s, lg + (size_t)s * V, 1) == 0, "forward: %s",
                  xd_last_error());
            s = e;
        }
        CHECK(xd_topk_read_rows(f, r, 1, ids, v) == 0, "read: %s", xd_last_error());
        for (int t = 0; t < CT; t++) {
            const float *l = lg + (size_t)t * V;
            CHECK(xd_topk_select(l, V, CK, sid, sorted) == 0, "select");
            for (int j = 0; j < CK; j++) {
                /* the j-th stored id has the j-th largest logit (up to near-ties) */
                max_rank_err = fmax(max_rank_err, fabs(l[ids[t * CK + j]] - sorted[j]));
                /* the stored fp16 is the logit rounded: half an fp16 ulp (<= 2^-11
                 * relative) plus 1e-5 for the two forwards' fp32 difference */
                double err = fabs(v[t * CK + j] - l[ids[t * CK + j]]);
                double tol = fabs(l[ids[t * CK + j]]) * 0x1p-11 + 1e-5;
                max_excess = fmax(max_excess, err - tol);
                max_logit_err = fmax(max_logit_err, err);
                exact += ids[t * CK + j] == sid[j];
                total++;
            }
        }
    }
    CHECK(rows_single > 10 && rows_multi > 5, "rows: %d single-document, %d with boundaries",
          rows_single, rows_multi);
    CHECK(max_rank_err <= 1e-4, "a stored id's logit is %g away from the same rank's", max_rank_err);
    CHECK(max_excess <= 0, "stored logits off by %g more than half an fp16 ulp + 1e-5",
          max_excess);
    printf("CLI vs xd_forward: %d single-document rows, %d rows with boundaries; %d of %d ids "
           "identical, rank logit error %.2e (tol 1e-4), max |fp16 - logit| %.2e (tol: half an "
           "fp16 ulp + 1e-5)\n", rows_single, rows_multi, exact, total, max_rank_err,
           max_logit_err);
    free(lg);
    free(sorted);
    xd_kv_free(kv);
    xd_topk_close(f);
    xd_tokdata_close(d);
    xd_model_free(m);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_topk_%d", (int)getpid());
    mkdir(dir, 0755);
    test_hash();
    test_select();
    test_round_trip(300);
    test_round_trip(70000);
    test_resume_lib();
    test_corrupt();
    make_data("data", 0);
    make_data("data2", 1);
    test_cli_kill_resume();
    test_cli_mismatch();
    test_cli_vs_forward();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_summary("test_topk_logits");
}
