/* Instruction data in training (src/train/trainer.c, docs/data.md "Batches"):
 * with a context mask, xd_train_batch and xd_val_batch give each input's
 * context byte and set the target −1 where the next token is a context token
 * (checked by hand and against the stream arithmetic); a training step's loss
 * and the validation loss are the mean cross-entropy over the completion
 * targets only, checked against the inference forward (xd_forward +
 * xd_token_nll) on tiny-llama; a step whose targets are all context tokens
 * leaves the weights unchanged; Stage II's KL skips context targets too. */
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/tokdata.h"
#include "io/topk_logits.h"
#include "model/model.h"
#include "test.h"
#include "train/stage2.h"
#include "train/train.h"
#include "train/train_model.h"
#include "xdistill.h"

static char dir[] = "/tmp/xd_train_mask_XXXXXX";

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int eq32(const int32_t *a, const int32_t *b, int n) {
    return !memcmp(a, b, (size_t)n * sizeof *a);
}
#define ARR(...) ((const int32_t[]){__VA_ARGS__})
#define ARR8(...) ((const uint8_t[]){__VA_ARGS__})

/* train [10 11 12] [20 21] [30 31 32 33], validation [40 41 42] [50 51]; each
 * document starts with context tokens */
static const int32_t IDS[] = {10, 11, 12, 20, 21, 30, 31, 32, 33, 40, 41, 42, 50, 51};
static const uint64_t OFF[] = {0, 3, 5, 9, 12, 14};
static const uint8_t MASK[] = {1, 1, 0, /**/ 1, 0, /**/ 1, 1, 0, 0, /**/ 1, 0, 0, /**/ 1, 0};

/* Batches by hand: cursor 0 rows [10 11 12 20 21] [21 30 31 32 33], cursor 8
 * (wrapping) [33 10 11 12 20] [20 21 30 31 32]; a target is −1 where the
 * row's next token is a context token. */
static void test_train_batch_hand(const xd_tokdata *d) {
    xd_batch bb = {0};
    CHECK(xd_batch_alloc(&bb, 2, 4) == 0, "alloc");
    uint64_t cur = 0;
    CHECK(xd_train_batch(d, &cur, 2, 4, &bb) == 0, "batch: %s", xd_last_error());
    CHECK(eq32(bb.tok, ARR(10, 11, 12, 20, /**/ 21, 30, 31, 32), 8), "batch 1 inputs");
    CHECK(eq32(bb.tgt, ARR(-1, 12, -1, 21, /**/ -1, -1, 32, 33), 8), "batch 1 targets");
    CHECK(!memcmp(bb.ctx, ARR8(1, 1, 0, 1, /**/ 0, 1, 1, 0), 8), "batch 1 input context bytes");
    CHECK(xd_train_batch(d, &cur, 2, 4, &bb) == 0 && cur == 16, "batch 2");
    CHECK(eq32(bb.tok, ARR(33, 10, 11, 12, /**/ 20, 21, 30, 31), 8), "batch 2 inputs");
    CHECK(eq32(bb.tgt, ARR(-1, -1, 12, -1, /**/ 21, -1, -1, 32), 8), "batch 2 targets (wrap)");
    CHECK(!memcmp(bb.ctx, ARR8(0, 1, 1, 0, /**/ 1, 0, 1, 1), 8), "batch 2 input context bytes");
    xd_batch_free(&bb);

    /* validation windows of T = 3: [40 41 42 50] [50 51], then a padding row */
    CHECK(xd_batch_alloc(&bb, 3, 3) == 0, "alloc");
    CHECK(xd_val_batch(d, 3, 3, 0, 2, &bb) == 0, "val batch: %s", xd_last_error());
    CHECK(eq32(bb.tok, ARR(40, 41, 42, /**/ 50, 0, 0, /**/ 0, 0, 0), 9), "val inputs");
    CHECK(eq32(bb.tgt, ARR(41, 42, -1, /**/ 51, -1, -1, /**/ -1, -1, -1), 9), "val targets");
    CHECK(!memcmp(bb.ctx, ARR8(1, 0, 0, /**/ 1, 1, 1, /**/ 1, 1, 1), 9),
          "val context bytes (padding counts as context)");
    xd_batch_free(&bb);
}

/* Many batches against the stream: input t of row b is stream token
 * c0 + bT + t, its target the next one, −1 when that one is context. */
static void test_train_batch_model(const xd_tokdata *d) {
    enum { B = 3, T = 5 };
    uint64_t L = 9, cur = 2;
    xd_batch bb = {0};
    CHECK(xd_batch_alloc(&bb, B, T) == 0, "alloc");
    int bad = 0, masked = 0;
    for (int step = 0; step < 20 && !bad; step++) {
        uint64_t c0 = cur;
        if (xd_train_batch(d, &cur, B, T, &bb)) { bad = 1; break; }
        for (int i = 0; i < B * T; i++) {
            uint64_t q = (c0 + (uint64_t)i) % L, n = (q + 1) % L;
            if (bb.tok[i] != IDS[q] || bb.ctx[i] != MASK[q]) bad = 2;
            if (bb.tgt[i] != (MASK[n] ? -1 : IDS[n])) bad = 3;
            masked += bb.tgt[i] < 0;
        }
    }
    CHECK(!bad && masked > 0, "xd_train_batch vs the stream: mismatch kind %d", bad);
    xd_batch_free(&bb);
}

/* A file without a mask: every target is the next token, no context byte. */
static void test_unmasked(void) {
    const char *p = path_in("plain.tok");
    CHECK(xd_tokdata_write(p, 100, 0, XD_TOKDATA_FLAG_EOS, 0, IDS, OFF, 5, 3) == 0, "write: %s",
          xd_last_error());
    xd_tokdata *d = xd_tokdata_open(p);
    xd_batch bb = {0};
    uint64_t cur = 0;
    CHECK(d && xd_batch_alloc(&bb, 2, 4) == 0 && xd_train_batch(d, &cur, 2, 4, &bb) == 0,
          "plain batch: %s", xd_last_error());
    CHECK(eq32(bb.tgt, ARR(11, 12, 20, 21, /**/ 30, 31, 32, 33), 8) &&
              !memcmp(bb.ctx, ARR8(0, 0, 0, 0, 0, 0, 0, 0), 8),
          "without a mask every target counts");
    xd_batch_free(&bb);
    xd_tokdata_close(d);
}

/* ---- losses on tiny-llama ----------------------------------------------------------- */

enum { N_TRAIN = 48, N_VAL = 25, SEQ = 8 };

/* Mean NLL over the completion targets of rows of SEQ + 1 stream tokens
 * (split tokens [first, first + n) at row starts starts[]), each row from a
 * fresh cache: the inference forward, one sequence per row. */
static double ref_loss(const xd_model *m, const int32_t *ids, const uint8_t *mask,
                       const uint64_t *starts, const int *lens, int n_rows, int64_t *count) {
    int V = xd_model_config(m)->vocab_size;
    xd_kv *kv = xd_kv_create(m, SEQ + 1);
    float *logits = malloc((size_t)SEQ * V * sizeof(float));
    double sum = 0;
    *count = 0;
    for (int r = 0; r < n_rows && kv && logits; r++) {
        const int32_t *row = ids + starts[r];
        int n = lens[r]; /* row tokens: n - 1 inputs */
        xd_kv_reset(kv);
        if (xd_forward(m, kv, row, n - 1, logits, 1)) {
            CHECK(0, "forward: %s", xd_last_error());
            break;
        }
        for (int t = 0; t + 1 < n; t++)
            if (!mask[starts[r] + (uint64_t)t + 1]) {
                sum += xd_token_nll(logits + (size_t)t * V, V, row[t + 1]);
                (*count)++;
            }
    }
    free(logits);
    xd_kv_free(kv);
    return *count ? sum / (double)*count : NAN;
}

static void run_train(xd_model *m, const char *data, const char *out, int steps,
                      xd_train_result *res) {
    xd_tokdata *d = xd_tokdata_open(data);
    xd_train_opts o;
    xd_train_defaults(&o);
    o.steps = steps;
    o.batch = 2;
    o.seq = SEQ;
    o.lr = 1e-3f;
    o.warmup = 0;
    o.eval_windows = 0; /* all */
    o.out_dir = out;
    o.kind = "finetune";
    CHECK(d && xd_train(m, d, &o, res) == 0, "train on %s: %s", data, xd_last_error());
    xd_tokdata_close(d);
}

/* One step: its loss is the mean over the completion targets of rows [0, 9)
 * and [8, 17); the validation loss (after the step) over windows [0, 9),
 * [8, 17), [16, 25) likewise. */
static void test_losses(void) {
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    CHECK(m != NULL, "tiny-llama: %s", xd_last_error());
    if (!m) return;
    int V = xd_model_config(m)->vocab_size;
    int32_t ids[N_TRAIN + N_VAL];
    uint8_t mask[N_TRAIN + N_VAL];
    uint64_t rng = 7;
    for (int i = 0; i < N_TRAIN + N_VAL; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (int32_t)((rng >> 33) % (uint64_t)(V - 3));
        mask[i] = i % 7 < 3; /* runs of 3 context tokens, then 4 completion tokens */
    }
    uint64_t off[3] = {0, N_TRAIN, N_TRAIN + N_VAL};
    const char *data = path_in("lm.tok");
    CHECK(xd_tokdata_write_mask(data, (uint32_t)V, 0, 0, 0, ids, off, 2, 1, mask) == 0,
          "write: %s", xd_last_error());
    uint64_t train_rows[2] = {0, SEQ};
    int train_lens[2] = {SEQ + 1, SEQ + 1};
    int64_t n_train;
    double want_train = ref_loss(m, ids, mask, train_rows, train_lens, 2, &n_train);
    xd_train_result res;
    run_train(m, data, path_in("run"), 1, &res);
    /* 16 targets: stream tokens 1 .. 16, of which 1, 2, 7, 8, 9, 14, 15, 16 are context */
    CHECK(n_train == 8, "completion targets in the step: %lld, expected 8", (long long)n_train);
    printf("one step: loss %.6f, over the 8 completion targets %.6f\n", res.last_loss, want_train);
    CHECK_NEAR(res.last_loss, want_train, 1e-4 * fabs(want_train), "step loss vs reference");
    uint64_t val_rows[3] = {N_TRAIN, N_TRAIN + SEQ, N_TRAIN + 2 * SEQ};
    int val_lens[3] = {SEQ + 1, SEQ + 1, N_VAL - 2 * SEQ};
    int64_t n_val;
    double want_val = ref_loss(m, ids, mask, val_rows, val_lens, 3, &n_val);
    printf("validation: loss %.6f, over its %lld completion targets %.6f\n", res.val_loss,
           (long long)n_val, want_val);
    CHECK(n_val > 0 && n_val < N_VAL - 1, "validation targets %lld", (long long)n_val);
    CHECK_NEAR(res.val_loss, want_val, 1e-4 * fabs(want_val), "validation loss vs reference");

    /* every train token context: no loss terms, no update; validation still runs */
    for (int i = 0; i < N_TRAIN; i++) mask[i] = 1;
    const char *all = path_in("all_ctx.tok");
    CHECK(xd_tokdata_write_mask(all, (uint32_t)V, 0, 0, 0, ids, off, 2, 1, mask) == 0, "write: %s",
          xd_last_error());
    float *w0 = malloc(m->arena_floats * sizeof(float));
    memcpy(w0, m->arena, m->arena_floats * sizeof(float));
    run_train(m, all, path_in("run_all"), 2, &res);
    CHECK(res.steps_done == 2 && res.last_loss == 0 && isfinite(res.val_loss),
          "all-context steps: %lld steps, loss %g, val %g", (long long)res.steps_done,
          res.last_loss, res.val_loss);
    CHECK(!memcmp(w0, m->arena, m->arena_floats * sizeof(float)),
          "steps without loss terms changed the weights");
    free(w0);
    xd_model_free(m);
}

/* ---- Stage II: no KL term predicts a context token ----------------------------------- */

enum { K = 4, B2 = 2 };

/* A top-k file for the first B2 rows of SEQ of data: at every position the
 * ids base + t .. base + t + K - 1 with logits 3, 2, 1, 0; positions listed in
 * alt[] (n_alt of them) get other ids and logits. */
static int write_topk(const char *path, const xd_tokdata *d, int V, const int *alt, int n_alt) {
    xd_topk_header h;
    xd_topk_header_init(&h, K, (uint32_t)V, SEQ, B2, B2, 0, xd_topk_data_hash(d), 0);
    int32_t ids[B2 * SEQ * K];
    float vals[B2 * SEQ * K];
    for (int i = 0; i < B2 * SEQ; i++) {
        int other = 0;
        for (int a = 0; a < n_alt; a++) other |= alt[a] == i;
        for (int j = 0; j < K; j++) {
            ids[i * K + j] = other ? 200 + j : 3 + i + j;
            vals[i * K + j] = other ? 8.0f - 5.0f * (float)j : 3.0f - (float)j;
        }
    }
    xd_topk_writer *w = xd_topk_writer_open(path, &h);
    int rc = w && xd_topk_writer_append(w, ids, vals, B2) == 0 && xd_topk_writer_finish(w) == 0;
    xd_topk_writer_close(w);
    return rc ? 0 : -1;
}

/* The KL-only Stage II loss of the first micro-batch with the logits at path,
 * and its count of loss terms. */
static double stage2_loss(xd_model *m, const xd_tokdata *d, const char *path, int64_t *count) {
    xd_train_opts o;
    xd_train_defaults(&o);
    o.steps = 1;
    o.batch = B2;
    o.seq = SEQ;
    xd_stage2_opts so = {0.0f, 1.0f, NULL};
    xd_topk *f = xd_topk_open(path);
    xd_stage2 *s2 = f ? xd_stage2_create(f, m, d, &o, &so) : NULL;
    xd_trainer_model tm;
    memset(&tm, 0, sizeof tm);
    xd_batch bb = {0};
    double loss = NAN;
    uint64_t cur = 0;
    xd_objective *ob = s2 ? xd_stage2_objective(s2) : NULL;
    int ok = ob && xd_tm_init(&tm, m, B2, SEQ) == 0 && xd_batch_alloc(&bb, B2, SEQ) == 0 &&
             xd_train_batch(d, &cur, B2, SEQ, &bb) == 0;
    if (ok) {
        *count = ob->count(ob, &bb, B2, SEQ);
        ok = ob->step(ob, &tm, &bb, 0, 0, 0.0f, &loss) == 0;
    }
    CHECK(ok, "stage 2 with %s: %s", path, xd_last_error());
    xd_batch_free(&bb);
    xd_tm_free(&tm);
    xd_stage2_free(s2);
    xd_topk_close(f);
    return loss;
}

/* Teacher rows at positions whose target is a context token do not change the
 * loss (no KL there either); a row at a completion target does. */
static void test_stage2(void) {
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    xd_tokdata *d = xd_tokdata_open(path_in("lm.tok"));
    CHECK(m && d, "fixtures: %s", xd_last_error());
    if (!m || !d) { xd_model_free(m); xd_tokdata_close(d); return; }
    int V = xd_model_config(m)->vocab_size;
    /* positions i = b SEQ + t predict stream token i + 1; context: (i + 1) % 7 < 3 */
    int ctx_pos[16], n_ctx = 0, completion = -1;
    for (int i = 0; i < B2 * SEQ; i++) {
        if ((i + 1) % 7 < 3) ctx_pos[n_ctx++] = i;
        else if (completion < 0) completion = i;
    }
    const char *a = path_in("a.topk"), *b = path_in("b.topk"), *c = path_in("c.topk");
    CHECK(write_topk(a, d, V, NULL, 0) == 0 && write_topk(b, d, V, ctx_pos, n_ctx) == 0 &&
              write_topk(c, d, V, &completion, 1) == 0,
          "write top-k files: %s", xd_last_error());
    int64_t na = 0, nb = 0, nc = 0;
    double la = stage2_loss(m, d, a, &na), lb = stage2_loss(m, d, b, &nb),
           lc = stage2_loss(m, d, c, &nc);
    printf("stage 2 KL over %lld completion targets: %.6f; other teacher rows at the %d context "
           "targets: %.6f; at one completion target: %.6f\n", (long long)na, la, n_ctx, lb, lc);
    CHECK(na == 8 && nb == 8 && nc == 8, "loss terms %lld, expected 8", (long long)na);
    CHECK(la > 0 && la == lb, "the KL reads teacher rows at context targets: %g vs %g", la, lb);
    CHECK(lc != la, "a completion target's teacher row does not count: %g", lc);
    xd_tokdata_close(d);
    xd_model_free(m);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *p = path_in("hand.tok");
    CHECK(xd_tokdata_write_mask(p, 100, 0, XD_TOKDATA_FLAG_EOS, 0, IDS, OFF, 5, 3, MASK) == 0,
          "write: %s", xd_last_error());
    xd_tokdata *d = xd_tokdata_open(p);
    CHECK(d != NULL, "open: %s", xd_last_error());
    if (d) {
        test_train_batch_hand(d);
        test_train_batch_model(d);
        xd_tokdata_close(d);
    }
    test_unmasked();
    test_losses();
    test_stage2();
    if (t_fail == 0) xd_rmtree(dir);
    return test_summary("test_train_mask");
}
