/* End-to-end finite-difference check of the model backward (issue 4,
 * criterion 1) on the 2-layer tiny models of every architecture — Llama
 * (tied, GQA), Qwen2 (biases), Qwen3 (per-head q/k norm), OLMo-2 (post-norms,
 * full q/k norm) — and on Llama with a sliding window + sinks over two packed
 * documents per row (the student's attention mask), and on xLSTM hybrid
 * students converted from them (issue 5: the mixer — SWA + sinks, Hedgehog
 * feature maps, gates, chunkwise mLSTM, mix — inside the whole model, with
 * packed documents; the mixer's new parameters randomised so that every
 * gradient is non-trivial; also with global heads and with the gated delta rule as
 * the memory, issue 13). A student's
 * training forward must also give the logits of its inference forward (an
 * independent code path for the SWA branch, the global heads and the
 * decoding state).
 *
 * For each weight tensor we take its 3 largest-|grad| coordinates and 3
 * random ones and compare dL/dθ with (L(θ+h) − L(θ−h)) / 2h, h = 1e-3.
 * L is the mean cross-entropy (~5.6) computed in fp32 with a double sum:
 * its rounding noise is ~1e-6, i.e. ~1e-3 in the FD quotient, so we require
 * |analytic − fd| ≤ 3e-3 + 3e-2·|fd|. A wrong backward is off by O(|grad|). */
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "xdistill.h"
#include "model/model.h"
#include "student_util.h"
#include "test.h"
#include "train/train_model.h"

enum { B = 2, T = 12 };

static int32_t tok[B * T], tgt[B * T], pos[B * T], ds[B * T];
static int use_docs;

static double loss_of(xd_trainer_model *tm) {
    double s;
    int64_t n;
    xd_tm_step(tm, tok, tgt, use_docs ? pos : NULL, use_docs ? ds : NULL, 0, 0, &s, &n);
    return s / (double)n;
}

/* Global heads of the next student_of (docs/design.md, "Global heads"). */
static int n_global;
static xd_head_ref global[8];
/* The memory rule of the next student_of (docs/design.md, "Gated delta rule"). */
static int memory_rule = XD_MEMORY_MLSTM;

/* A student of the tiny model `name` with its mixer parameters randomised. */
static xd_model *student_of(const char *name, int window, int sinks, int chunk) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    xd_model *t = xd_model_load(dir);
    if (!t) return NULL;
    xd_student_opts o;
    xd_student_defaults(&o);
    o.window = window;
    o.sinks = sinks;
    o.chunk = chunk;
    o.n_global_heads = n_global;
    memcpy(o.global_heads, global, sizeof global);
    o.global_kv_dtype = XD_KV_F32; /* training computes fp32; the inference it is compared with too */
    o.memory_rule = memory_rule;
    xd_model *m = xd_student_convert(t, &o);
    xd_model_free(t);
    if (!m) return NULL;
    test_randomise_mixer(m, 7);
    return m;
}

/* The training forward's logits (one document per row) against the
 * inference forward's, row by row. */
static void student_forward_agrees(xd_trainer_model *tm) {
    double s;
    int64_t n;
    xd_tm_step(tm, tok, NULL, NULL, NULL, 0, 0, &s, &n); /* forward only: x_norm */
    int V = tm->m->cfg.vocab_size, d = tm->m->cfg.d_model;
    xd_linear(tm->logits, tm->x_norm, tm->m->lm_head, NULL, B * T, d, V);
    float *out = malloc((size_t)T * V * sizeof(float));
    double worst = 0;
    for (int b = 0; b < B; b++) {
        xd_kv *kv = xd_kv_create(tm->m, T);
        CHECK(xd_forward(tm->m, kv, tok + b * T, T, out, 1) == 0, "forward: %s", xd_last_error());
        for (size_t i = 0; i < (size_t)T * V; i++) {
            double e = fabs((double)out[i] - (double)tm->logits[(size_t)b * T * V + i]);
            if (!(e <= worst)) worst = e;
        }
        xd_kv_free(kv);
    }
    printf("student training vs inference forward: max |logit diff| %.2e (tol 1e-4)\n", worst);
    CHECK(worst <= 1e-4, "student training forward differs from inference: %g", worst);
    free(out);
}

static void check_model(const char *name, int window, int sinks, int docs, int student) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    xd_model *m = student ? student_of(name, window, sinks, 4) : xd_model_load(dir);
    CHECK(m != NULL, "%s: %s", name, xd_last_error());
    if (!m) return;
    xd_trainer_model tm;
    CHECK(xd_tm_init(&tm, m, B, T) == 0, "init");
    tm.window = student ? 0 : window;
    tm.sinks = student ? 0 : sinks;
    use_docs = docs;
    xd_rng r;
    xd_rng_seed(&r, 42);
    int V = m->cfg.vocab_size;
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(xd_rng_u64(&r) % (uint64_t)V);
        tgt[i] = i % 7 == 3 ? -1 : (int32_t)(xd_rng_u64(&r) % (uint64_t)V); /* some ignored */
        int t = i % T, start = docs && t >= 5 ? 5 : 0; /* second document from position 5 */
        ds[i] = start;
        pos[i] = t - start;
    }
    if (student) student_forward_agrees(&tm);
    int n_valid = 0;
    for (int i = 0; i < B * T; i++) n_valid += tgt[i] >= 0;
    xd_tm_zero_grad(&tm);
    double s;
    int64_t n;
    xd_tm_step(&tm, tok, tgt, docs ? pos : NULL, docs ? ds : NULL, 1, 1.0f / (float)n_valid, &s, &n);
    xd_weight *ws;
    int nw;
    xd_model_weights(m, &ws, &nw);
    int checked = 0, bad = 0;
    double worst = 0;
    const float h = 1e-3f;
    for (int w = 0; w < nw; w++) {
        int64_t cnt = ws[w].rows * ws[w].cols;
        float *p = ws[w].ptr, *g = tm.grad_arena + (ws[w].ptr - m->arena);
        int64_t idx[6];
        for (int k = 0; k < 3; k++) { /* the largest gradients, distinct */
            int64_t best = -1;
            for (int64_t i = 0; i < cnt; i++) {
                int used = 0;
                for (int j = 0; j < k; j++) used |= idx[j] == i;
                if (!used && (best < 0 || fabsf(g[i]) > fabsf(g[best]))) best = i;
            }
            idx[k] = best < 0 ? 0 : best;
        }
        for (int k = 3; k < 6; k++) idx[k] = (int64_t)(xd_rng_u64(&r) % (uint64_t)cnt);
        for (int k = 0; k < 6; k++) {
            float save = p[idx[k]];
            p[idx[k]] = save + h;
            double lp = loss_of(&tm);
            p[idx[k]] = save - h;
            double lm = loss_of(&tm);
            p[idx[k]] = save;
            double fd = (lp - lm) / (2.0 * h), an = g[idx[k]], err = fabs(an - fd);
            double tol = 3e-3 + 3e-2 * fabs(fd);
            if (err > tol) {
                bad++;
                fprintf(stderr, "%s %s[%lld]: analytic %g vs fd %g\n", name, ws[w].hf,
                        (long long)idx[k], an, fd);
            }
            if (err / (fabs(fd) + 1e-2) > worst) worst = err / (fabs(fd) + 1e-2);
            checked++;
        }
    }
    CHECK(bad == 0, "%s: %d of %d coordinates disagree with finite differences", name, bad, checked);
    printf("%-12s%s window %d sinks %d docs %d global heads %d: %d coordinates, worst "
           "err/(|fd|+1e-2) %.2e\n", name,
           !student ? "" : memory_rule == XD_MEMORY_DELTA ? " student (delta)" : " student",
           window, sinks, docs, student ? n_global : 0, checked, worst);
    free(ws);
    xd_tm_free(&tm);
    xd_model_free(m);
}

int main(void) {
    check_model("tiny-llama", 0, 0, 0, 0);
    check_model("tiny-qwen2", 0, 0, 0, 0);
    check_model("tiny-qwen3", 0, 0, 0, 0);
    check_model("tiny-olmo2", 0, 0, 0, 0);
    check_model("tiny-llama", 3, 2, 1, 0);
    check_model("tiny-llama", 3, 2, 1, 1);
    check_model("tiny-qwen3", 5, 1, 1, 1);
    check_model("tiny-olmo2", 4, 0, 0, 1);
    check_model("tiny-qwen2", 2, 2, 1, 1);
    /* global heads: full attention pinned as the head's output (two sharing a KV head) */
    n_global = 3;
    global[0] = (xd_head_ref){0, 1};
    global[1] = (xd_head_ref){1, 2};
    global[2] = (xd_head_ref){1, 3};
    check_model("tiny-llama", 3, 2, 1, 1);
    n_global = 1;
    global[0] = (xd_head_ref){1, 0};
    check_model("tiny-qwen3", 2, 1, 0, 1);
    n_global = 0;
    /* the gated delta rule as the recurrent memory, with and without documents */
    memory_rule = XD_MEMORY_DELTA;
    check_model("tiny-llama", 3, 2, 1, 1);
    check_model("tiny-qwen2", 2, 2, 0, 1);
    memory_rule = XD_MEMORY_MLSTM;
    return test_summary("test_train_fd");
}
