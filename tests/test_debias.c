/* Modular DiffPruning debiasing (issue 15):
 *  - classification heads: the forward by hand, every backward (with dropout, hidden tanh
 *    layer) against central differences of L = Σ c ⊙ logits (fp32 products of small
 *    values: h = 1e-2, |analytic − fd| <= 1e-3 + 1e-2·|fd|);
 *  - the metrics by hand: accuracy, balanced accuracy, TPR-GAP RMS;
 *  - the post-hoc attacker finds a separable attribute and is at chance on a random one;
 *  - the whole objective's gradients on tiny-llama (hard-concrete mask with log α spread
 *    around 0, adversary through gradient reversal, L0 term) against central differences
 *    of F = (Σ task CE − λ·Σ adversary CE)/B + l0_weight·E[L0] for the diff's w and log α
 *    (with the confusion objective (Σ task CE + λ·Σ CE of the adversary to uniform)/B + …),
 *    of the task CE for the task head and of the adversary CE for its heads (fp32 model:
 *    the largest-magnitude coordinates, h = 1e-2, |analytic − fd| <= 2e-4 + 5e-2·|fd|);
 *  - through the CLI: the fixed-mask phase keeps exactly the pruned entries (the diff's
 *    indices are the top round(share·n) of |z̄ ⊙ w| at the phase boundary), stacking on
 *    demand, and bad input (missing fields, a class absent from training, sparsity out of
 *    range, a diff of another model, an attribute diff without its task diff). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "core/rng.h"
#include "eval/fairness.h"
#include "io/labeled.h"
#include "io/safetensors.h"
#include "kernels/hard_concrete.h"
#include "kernels/mmd.h"
#include "kernels/pair_dist.h"
#include "model/clf_head.h"
#include "model/diff.h"
#include "model/model.h"
#include "train/attacker.h"
#include "train/clf_data.h"
#include "train/debias.h"
#include "train/train_model.h"
#include "test.h"
#include "xdistill.h"

static char dir[256];

/* ---- heads ------------------------------------------------------------------------------ */

static double head_loss(const xd_head *h, xd_head_acts *a, const float *x, int n, const float *c,
                        uint64_t seed) {
    const float *lg = xd_head_forward(h, a, x, n, 1, seed);
    double L = 0;
    for (int i = 0; i < n * h->n_out; i++) L += (double)c[i] * lg[i];
    return L;
}

static void test_head(void) {
    /* by hand: no hidden layer, no dropout: logits = W·x + b */
    float p[2 * 3 + 2] = {1, 2, 3, -1, 0, 0.5f, 0.25f, -2}, x[3] = {1, -1, 2};
    xd_head h;
    xd_head_acts a;
    CHECK(xd_head_layout(&h, 3, 0, 2, 0, 0.0f, p, NULL) == 0 && xd_head_acts_alloc(&a, &h, 1) == 0,
          "layout");
    const float *lg = xd_head_forward(&h, &a, x, 1, 1, 7);
    CHECK(fabsf(lg[0] - 5.25f) < 1e-6f && fabsf(lg[1] - (-1 + 1 - 2)) < 1e-6f, "by hand: %g %g",
          lg[0], lg[1]);
    xd_head_acts_free(&a);

    /* backward with a hidden tanh layer and dropout 0.3 (the same masks: the same seed) */
    enum { IN = 5, HID = 4, OUT = 3, N = 6 };
    int64_t np = xd_head_n_params(IN, HID, OUT, 1);
    CHECK(np == HID * IN + HID + OUT * HID + OUT, "parameter count %lld", (long long)np);
    float *par = malloc((size_t)np * sizeof(float)), *gr = calloc((size_t)np, sizeof(float));
    float xs[N * IN], dx[N * IN], c[N * OUT];
    CHECK(xd_head_layout(&h, IN, HID, OUT, 1, 0.3f, par, gr) == 0 && xd_head_acts_alloc(&a, &h, N) == 0,
          "layout 2");
    xd_head_init(&h, 3);
    for (int i = 0; i < N * IN; i++) xs[i] = (float)sin(0.7 * i + 0.1);
    for (int i = 0; i < N * OUT; i++) c[i] = (float)cos(1.3 * i);
    memset(dx, 0, sizeof dx);
    head_loss(&h, &a, xs, N, c, 11);
    xd_head_backward(&h, &a, c, dx, N);
    int bad = 0, checked = 0, dropped = 0;
    for (int i = 0; i < N * IN; i++) dropped += a.keep[0][i] == 0.0f;
    const float eps = 1e-2f;
    for (int64_t i = 0; i < np + N * IN; i++) {
        float *v = i < np ? &par[i] : &xs[i - np];
        float keep = *v;
        *v = keep + eps;
        double lp = head_loss(&h, &a, xs, N, c, 11);
        *v = keep - eps;
        double lm = head_loss(&h, &a, xs, N, c, 11);
        *v = keep;
        double fd = (lp - lm) / (2 * eps), an = i < np ? gr[i] : dx[i - np];
        bad += fabs(an - fd) > 1e-3 + 1e-2 * fabs(fd);
        checked++;
    }
    CHECK(bad == 0, "head backward: %d of %d coordinates disagree with central differences", bad,
          checked);
    CHECK(dropped > 0, "dropout 0.3 dropped nothing");
    CHECK(xd_head_layout(&h, IN, HID, OUT, 1, 1.0f, par, gr) < 0, "dropout 1 accepted");
    xd_head_acts_free(&a);
    free(par);
    free(gr);
    printf("heads: forward by hand, %d coordinates vs central differences (%d inputs dropped)\n",
           checked, dropped);
}

/* ---- metrics ------------------------------------------------------------------------------ */

static void test_metrics(void) {
    /* 8 examples, 2 classes, attribute a in {0, 1} */
    const int32_t y[8] = {0, 0, 0, 0, 1, 1, 1, 1}, a[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    const int32_t pred[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    CHECK(fabs(xd_accuracy(pred, y, NULL, 8) - 6.0 / 8) < 1e-12, "accuracy");
    /* class 0: TPR a0 = 2/2, a1 = 1/2 -> gap 0.5; class 1: a0 = 1/2, a1 = 2/2 -> 0.5 */
    CHECK(fabs(xd_tpr_gap_rms(pred, y, 2, a, 2, NULL, 8) - 0.5) < 1e-12, "gap %g",
          xd_tpr_gap_rms(pred, y, 2, a, 2, NULL, 8));
    /* predicting a: recall of a=0 is 3/4 (pred 0 at 0,1,5), of a=1 is 3/4 (pred 1 at 3,6,7) */
    CHECK(fabs(xd_balanced_accuracy(pred, a, 2, NULL, 8) - 0.75) < 1e-12, "balanced");
    /* unbalanced: 3 of class 0 all right, 1 of class 1 wrong: balanced (1 + 0)/2 */
    const int32_t yb[4] = {0, 0, 0, 1}, pb[4] = {0, 0, 0, 0};
    CHECK(fabs(xd_balanced_accuracy(pb, yb, 2, NULL, 4) - 0.5) < 1e-12, "balanced 2");
    /* a resample (with repeats) through idx */
    const int idx[3] = {4, 4, 5};
    CHECK(fabs(xd_accuracy(pred, y, idx, 3) - 2.0 / 3) < 1e-12, "accuracy of a resample");
    /* three attribute values: gap = max − min over the values with examples */
    const int32_t y3[6] = {0, 0, 0, 0, 0, 0}, a3[6] = {0, 0, 1, 1, 2, 2}, p3[6] = {0, 0, 0, 1, 1, 1};
    CHECK(fabs(xd_tpr_gap_rms(p3, y3, 1, a3, 3, NULL, 6) - 1.0) < 1e-12, "gap 3 values");
    /* the attribute implied by the label: in the reference, label 0 goes with a = 1 (2 of
     * 3), label 1 with a = 0 (2 of 2), label 2 is unseen → 0. On the test (y 0 0 1 2,
     * a 1 0 0 1) the guesses are 1 1 0 0: a = 0 (examples 1, 2) is guessed 1, 0 → recall
     * 1/2; a = 1 (examples 0, 3) 1, 0 → 1/2; balanced accuracy 0.5 */
    const int32_t ry[5] = {0, 0, 0, 1, 1}, ra[5] = {1, 0, 1, 0, 0};
    const int32_t ty[4] = {0, 0, 1, 2}, ta[4] = {1, 0, 0, 1};
    int32_t lp[4];
    CHECK(xd_label_implied(ry, ra, 5, 3, 2, ty, 4, lp) == 0 && lp[0] == 1 && lp[1] == 1 &&
              lp[2] == 0 && lp[3] == 0, "label-implied guesses %d %d %d %d", lp[0], lp[1], lp[2], lp[3]);
    CHECK(fabs(xd_balanced_accuracy(lp, ta, 2, NULL, 4) - 0.5) < 1e-12, "label-implied leakage");
    /* a tie (one of each) goes to the lowest value */
    const int32_t ty2[1] = {0}, ry2[2] = {0, 0}, ra2[2] = {1, 0};
    CHECK(xd_label_implied(ry2, ra2, 2, 1, 2, ty2, 1, lp) == 0 && lp[0] == 0, "tie");
}

/* ---- the MMD term ---------------------------------------------------------------------------- */

static void test_mmd(void) {
    /* by hand: x = (1, 0), own group {(0, 0), (1, 1)}, other {(3, 0)}, γ = 1/2 (2γ = 1):
     * k to the own rows e^{-1/2} each, to the other e^{-2}: loss = e^{-1/2} − e^{-2};
     * ∂/∂x = mean_own −e^{-1/2}(x − a) + e^{-2}(x − b)
     *      = −½e^{-1/2}((1, 0) + (0, −1)) + e^{-2}(−2, 0) = (−½e^{-1/2} − 2e^{-2}, ½e^{-1/2});
     * scale 2 doubles it */
    const float x[2] = {1, 0}, same[4] = {0, 0, 1, 1}, other[2] = {3, 0}, g[1] = {0.5f};
    float dx[2] = {0, 0};
    double e1 = exp(-0.5), e2 = exp(-2.0);
    double l = xd_mmd_bank(dx, x, 2, same, 2, other, 1, g, 1, 2.0f);
    CHECK(fabs(l - (e1 - e2)) < 1e-12, "mmd by hand: %.9g, expected %.9g", l, e1 - e2);
    CHECK(fabs(dx[0] - 2 * (-0.5 * e1 - 2 * e2)) < 1e-6 && fabs(dx[1] - 2 * 0.5 * e1) < 1e-6,
          "mmd gradient by hand: %g %g", dx[0], dx[1]);
    CHECK(xd_mmd_bank(dx, x, 2, same, 2, other, 0, g, 1, 1.0f) == 0.0, "empty side");
    /* the invariance term by hand: pairs ((1, 2), (0, 0)) and ((1, 1), (1, 3)), d = 2:
     * loss = (1 + 4)/2 + (0 + 4)/2 = 4.5; ∂/∂a = (2/d)(a − b) = (1, 2) and (0, −2), ∂/∂b the
     * negatives, times scale 0.5 */
    const float pa[4] = {1, 2, 1, 1}, pb[4] = {0, 0, 1, 3};
    float da[4] = {0}, db[4] = {0};
    double pl = xd_pair_sq(da, db, pa, pb, 2, 2, 0.5f);
    const float want_da[4] = {0.5f, 1.0f, 0.0f, -1.0f};
    int pair_ok = fabs(pl - 4.5) < 1e-12;
    for (int i = 0; i < 4; i++) pair_ok &= da[i] == want_da[i] && db[i] == -want_da[i];
    CHECK(pair_ok, "invariance term by hand: %g, da (%g %g %g %g)", pl, da[0], da[1], da[2], da[3]);
    /* mean squared distance by hand: rows (0,0), (1,1), (3,0): 2, 9, 5 → 16/3 */
    const float rows[6] = {0, 0, 1, 1, 3, 0};
    CHECK(fabs(xd_mean_sq_dist(rows, 3, 2) - 16.0 / 3) < 1e-12, "mean squared distance");
    /* the gradient against central differences (d = 5, three bandwidths; double sums of
     * fp32 inputs: h = 1e-3, |analytic − fd| <= 1e-5 + 1e-3·|fd|) */
    enum { D = 5, NS = 3, NO = 4 };
    float xv[D], sv[NS * D], ov[NO * D], gv[3] = {0.05f, 0.2f, 0.8f}, dv[D] = {0};
    for (int i = 0; i < D; i++) xv[i] = (float)sin(1.1 * i + 0.3);
    for (int i = 0; i < NS * D; i++) sv[i] = (float)cos(0.7 * i);
    for (int i = 0; i < NO * D; i++) ov[i] = 0.5f + (float)sin(0.9 * i + 2.0);
    xd_mmd_bank(dv, xv, D, sv, NS, ov, NO, gv, 3, 1.0f);
    int bad = 0;
    for (int i = 0; i < D; i++) {
        float keep = xv[i];
        const float h = 1e-3f;
        xv[i] = keep + h;
        double lp = xd_mmd_bank(NULL, xv, D, sv, NS, ov, NO, gv, 3, 1.0f);
        xv[i] = keep - h;
        double lm = xd_mmd_bank(NULL, xv, D, sv, NS, ov, NO, gv, 3, 1.0f);
        xv[i] = keep;
        double fd = (lp - lm) / (2 * (double)h);
        bad += fabs(dv[i] - fd) > 1e-5 + 1e-3 * fabs(fd);
    }
    CHECK(bad == 0, "mmd gradient: %d of %d coordinates disagree with central differences", bad, D);
    /* the linear kernel by hand: own {(0,0),(2,0)} (mean (1,0)), other {(3,1)}, w = (1, 1/2),
     * x = (1,1): loss = (x − (2, 1/2))·W(μ_s − μ_o) = (−1, 1/2)·(−2, −1/2) = 7/4,
     * ∂loss/∂x = (−2, −1/2) */
    const float ls[4] = {0, 0, 2, 0}, lo[2] = {3, 1}, lw[2] = {1, 0.5f}, lx[2] = {1, 1};
    float ld[2] = {0, 0};
    double ll = xd_mmd_bank_linear(ld, lx, 2, ls, 2, lo, 1, lw, 1.0f);
    CHECK(fabs(ll - 1.75) < 1e-12 && ld[0] == -2.0f && ld[1] == -0.5f, "linear by hand: %g (%g, %g)",
          ll, ld[0], ld[1]);
    float wv[D];
    for (int i = 0; i < D; i++) wv[i] = 0.5f + 0.1f * (float)i, dv[i] = 0;
    xd_mmd_bank_linear(dv, xv, D, sv, NS, ov, NO, wv, 1.0f);
    bad = 0;
    for (int i = 0; i < D; i++) {
        float keep = xv[i];
        const float h = 1e-3f;
        xv[i] = keep + h;
        double lp = xd_mmd_bank_linear(NULL, xv, D, sv, NS, ov, NO, wv, 1.0f);
        xv[i] = keep - h;
        double lm = xd_mmd_bank_linear(NULL, xv, D, sv, NS, ov, NO, wv, 1.0f);
        xv[i] = keep;
        double fd = (lp - lm) / (2 * (double)h);
        bad += fabs(dv[i] - fd) > 1e-5 + 1e-3 * fabs(fd);
    }
    CHECK(bad == 0, "linear mmd gradient: %d of %d coordinates disagree", bad, D);
    printf("mmd term (Gaussian and linear kernels): by hand and %d coordinates each vs central "
           "differences\n", D);
}

/* ---- attacker ------------------------------------------------------------------------------ */

static void test_attacker(void) {
    enum { N = 400, D = 8 };
    float *x = malloc(N * D * sizeof(float));
    int32_t ys[N], yr[N], pred[N];
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i * D + j] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
        }
        ys[i] = x[i * D] + 0.5f * x[i * D + 1] > 0; /* separable */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        yr[i] = (int32_t)(s >> 63); /* unrelated to x */
    }
    xd_attack_opts o;
    xd_attack_defaults(&o);
    o.epochs = 60;
    o.lr = 1e-2f;
    /* train on the first half, test on the second */
    CHECK(xd_attack(x, ys, N / 2, x + N / 2 * D, N / 2, D, 2, &o, pred) == 0, "attack: %s",
          xd_last_error());
    double bs = xd_balanced_accuracy(pred, ys + N / 2, 2, NULL, N / 2);
    CHECK(xd_attack(x, yr, N / 2, x + N / 2 * D, N / 2, D, 2, &o, pred) == 0, "attack 2");
    double br = xd_balanced_accuracy(pred, yr + N / 2, 2, NULL, N / 2);
    CHECK(bs > 0.9, "separable attribute: balanced accuracy %.3f", bs);
    CHECK(br < 0.62 && br > 0.38, "random attribute: balanced accuracy %.3f", br);
    int32_t bad[2] = {0, 2};
    CHECK(xd_attack(x, bad, 2, x, 1, D, 2, &o, pred) < 0 && strstr(xd_last_error(), "label 2"),
          "bad label: %s", xd_last_error());
    printf("attacker: separable %.3f, random %.3f (balanced accuracy)\n", bs, br);
    free(x);
}

/* ---- the objective's gradients ------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* 40 records: the label follows the words, the attribute g partly follows the label. */
static void write_data(const char *path, int n, int with_b) {
    static const char *w[4][3] = {{"red", "green", "blue"}, {"cat", "dog", "cow"},
                                  {"one", "two", "six"}, {"sun", "moon", "star"}};
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    for (int i = 0; i < n; i++) {
        int c = with_b ? i % 4 : (i % 4 == 1 ? 0 : i % 4);
        /* cf: a counterfactual text, the middle word swapped for another class's */
        fprintf(f, "{\"text\": \"%s %s then %s\", \"label\": \"c%d\", \"g\": \"%s\", "
                "\"cf\": \"%s %s then %s\"}\n",
                w[c][i % 3], w[(c + 1) % 4][(i / 3) % 3], w[c][(i + 2) % 3], c,
                (i % 4 < 2) ^ (i % 7 == 0) ? "x" : "y", w[c][i % 3], w[(c + 2) % 4][(i / 3) % 3],
                w[c][(i + 2) % 3]);
    }
    fclose(f);
}

/* Balancing weights by hand: labels {0,0,0,1,1}, attribute {0,0,1,1,1} (a row with −1 is not
 * counted): N = 5, N_y = {3, 2}, N_a = {2, 3}; cells (0,0) 2, (0,1) 1, (1,1) 2, (1,0) none.
 * w = (N_y·N_a/N)/N_ya: (0,0) 6/5/2 = 0.6, (0,1) 9/5/1 = 1.8, (1,0) 0, (1,1) 6/5/2 = 0.6.
 * Under them the joint is the product of the marginals: Σ_cell N_ya·w = N_y·N_a/N. */
static void test_balance_weights(void) {
    const int32_t y[6] = {0, 0, 0, 1, 1, 1}, a[6] = {0, 0, 1, 1, 1, -1};
    float w[4];
    CHECK(xd_balance_weights(y, a, 6, 2, 2, w) == 0, "balance: %s", xd_last_error());
    const float want[4] = {0.6f, 1.8f, 0.0f, 0.6f};
    for (int i = 0; i < 4; i++)
        CHECK(fabsf(w[i] - want[i]) < 1e-6f, "balance weight %d: %g, expected %g", i, w[i], want[i]);
    const int32_t bad[1] = {2};
    CHECK(xd_balance_weights(bad, a, 1, 2, 2, w) < 0 && strstr(xd_last_error(), "label 2"),
          "a label out of range: %s", xd_last_error());
}

/* F at the current parameters: the trainer's step without the backward. */
static double objective(xd_objective *ob, xd_trainer_model *tm, xd_batch *bb, int B, int T,
                        float lambda, int confusion, float mmd_weight, float pair_weight,
                        double *task, double *adv) {
    uint64_t cur = 0;
    double loss, t, a, cf, mm, pr, l0;
    ob->begin_step(ob, tm, 3);
    ob->batch(ob, &cur, pair_weight > 0 ? 2 * B : B, T, bb);
    ob->step(ob, tm, bb, 0, 0, 1.0f / B, &loss);
    loss = 0;
    ob->end_step(ob, tm, 3, &loss); /* adds l0_weight·E[L0] */
    xd_debias_losses((xd_debias_run *)ob->ctx, &t, &a, &cf, &mm, &pr, &l0);
    *task = t / B;
    *adv = a / B;
    return t / B + (confusion ? lambda * cf / B : -lambda * a / B) + mmd_weight * mm / B +
           pair_weight * pr / B + loss;
}

static void test_objective_fd(int confusion, int conditional, int mmd, int tokens, int balance,
                              int pairs) {
    char p[400];
    snprintf(p, sizeof p, "%s/fd.jsonl", dir);
    write_data(p, 40, 1);
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf");
    CHECK(m != NULL, "load: %s", xd_last_error());
    if (!m) return;
    const char *attrs[1] = {"g"};
    xd_labeled lab;
    xd_clf_data data, pdata = {0};
    CHECK(xd_labeled_load_pairs(p, "text", pairs ? "cf" : NULL, "label", attrs, 1, &lab) == 0,
          "labels: %s", xd_last_error());
    CHECK(xd_clf_data_init(&data, &lab, xd_model_tokenizer(m), 12) == 0, "data: %s", xd_last_error());
    if (pairs) { /* the counterfactual texts ride in rows B .. 2B − 1 */
        CHECK(xd_clf_data_init_pairs(&pdata, &lab, xd_model_tokenizer(m), 12) == 0,
              "pairs: %s", xd_last_error());
        data.pair = &pdata;
    }
    enum { B = 4, T = 12 };
    const int rows = pairs ? 2 * B : B;
    xd_debias_opts o;
    xd_debias_defaults(&o);
    o.max_len = T;
    o.log_alpha_init = 0.0f; /* masks strictly between 0 and 1 for many entries */
    o.l0_weight = 1e-3f;
    o.head_dropout = o.adv_dropout = 0.0f;
    o.adv_attr = "g";
    o.adv_heads = 2;
    o.adv_lambda = 0.7f;
    o.adv_confusion = confusion;
    o.adv_conditional = conditional;
    o.adv_tokens = tokens;
    o.balance = balance;
    o.pool = XD_POOL_MEAN;
    o.mmd_weight = mmd ? 0.5f : 0.0f;
    o.mmd_linear = mmd == 2;
    o.mmd_bank = 6;
    o.pair_weight = pairs ? 0.8f : 0.0f;
    xd_train_opts to;
    xd_train_defaults(&to);
    to.batch = B;
    to.seq = T;
    float *theta0 = malloc(m->arena_floats * sizeof(float));
    memcpy(theta0, m->arena, m->arena_floats * sizeof(float));
    xd_debias_run *r = xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to);
    CHECK(r != NULL, "run: %s", xd_last_error());
    if (!r) return;
    xd_objective *ob = xd_debias_objective(r);
    xd_param_groups *g = ob->params;
    /* a conditional adversary's first layer reads d + the 4 label classes */
    for (int i = 0; i < g->n; i++)
        if (strstr(g->w[i].hf, "adversary.0.") && g->w[i].ndim == 2 && g->w[i].rows == m->cfg.d_model)
            CHECK(g->w[i].cols == m->cfg.d_model + (conditional ? 4 : 0), "%s: %lld inputs",
                  g->w[i].hf, (long long)g->w[i].cols);
    /* a non-zero diff: w small and varied (log α and the heads as initialised) */
    size_t n_w = 0;
    for (int i = 0; i < g->n; i++)
        if (!strncmp(g->w[i].hf, "diff.", 5)) n_w += (size_t)(g->w[i].rows * g->w[i].cols);
    for (size_t i = 0; i < n_w; i++) g->param[i] = 0.05f * (float)sin(0.37 * (double)i + 1.0);
    for (size_t i = 0; i < n_w; i++) g->param[n_w + i] = 1.5f * (float)sin(0.11 * (double)i);
    xd_trainer_model tm;
    xd_batch bb;
    CHECK(xd_tm_init(&tm, m, rows, T) == 0 && xd_batch_alloc(&bb, rows, T) == 0, "trainer");
    uint64_t cur = 0;
    double loss = 0;
    if (mmd) { /* fill the bank: the training steps' forwards over the data (no update) */
        for (int k = 0; k < 10; k++) {
            ob->begin_step(ob, &tm, 3);
            ob->batch(ob, &cur, rows, T, &bb);
            ob->step(ob, &tm, &bb, 0, 1, 1.0f / B, &loss);
        }
        cur = 0;
    }
    /* the analytic gradients, as the trainer computes them (then the bank as before: the
     * step pushed its rows, which the differences must not see) */
    float *saved = malloc(g->n_floats * sizeof(float));
    memcpy(saved, g->param, g->n_floats * sizeof(float));
    xd_tm_zero_grad(&tm);
    memset(g->grad, 0, g->n_floats * sizeof(float));
    ob->begin_step(ob, &tm, 3);
    ob->batch(ob, &cur, rows, T, &bb);
    ob->step(ob, &tm, &bb, 0, 1, 1.0f / B, &loss);
    ob->end_step(ob, &tm, 3, &loss);
    double mmd_sum, pair_sum, unused;
    xd_debias_losses(r, &unused, &unused, &unused, &mmd_sum, &pair_sum, &unused);
    if (mmd) CHECK(mmd_sum != 0.0, "the MMD term is 0: the bank holds no comparable rows");
    if (pairs) CHECK(pair_sum > 1e-6, "the invariance term is %g: the pairs are the same rows", pair_sum);
    memcpy(g->param, saved, g->n_floats * sizeof(float));
    free(saved);
    float *an = malloc(g->n_floats * sizeof(float));
    memcpy(an, g->grad, g->n_floats * sizeof(float));
    /* per group: the 6 coordinates of largest gradient magnitude */
    const char *groups[4] = {"diff.", "log_alpha.", "head.", "adversary."};
    int bad = 0, checked = 0;
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        size_t lo = (size_t)-1, hi = 0;
        for (int i = 0; i < g->n; i++)
            if (!strncmp(g->w[i].hf, groups[k], strlen(groups[k]))) {
                size_t off = (size_t)(g->w[i].ptr - g->param);
                if (off < lo) lo = off;
                if (off + (size_t)(g->w[i].rows * g->w[i].cols) > hi)
                    hi = off + (size_t)(g->w[i].rows * g->w[i].cols);
            }
        CHECK(hi > lo, "no %s tensors", groups[k]);
        int picked[6];
        for (int q = 0; q < 6; q++) {
            int best = -1;
            for (size_t i = lo; i < hi; i++) {
                int seen = 0;
                for (int z = 0; z < q; z++) seen |= picked[z] == (int)i;
                if (!seen && (best < 0 || fabsf(an[i]) > fabsf(an[best]))) best = (int)i;
            }
            picked[q] = best;
            float keep = g->param[best];
            const float h = 1e-2f;
            double tp, ap, tm_, am;
            g->param[best] = keep + h;
            double Fp = objective(ob, &tm, &bb, B, T, o.adv_lambda, confusion, o.mmd_weight, o.pair_weight, &tp, &ap);
            g->param[best] = keep - h;
            double Fm = objective(ob, &tm, &bb, B, T, o.adv_lambda, confusion, o.mmd_weight, o.pair_weight, &tm_, &am);
            g->param[best] = keep;
            /* the encoder's parameters follow F; each head its own loss */
            double fd = k < 2 ? (Fp - Fm) / (2 * h) : k == 2 ? (tp - tm_) / (2 * h) : (ap - am) / (2 * h);
            double err = fabs(an[best] - fd);
            if (err > worst) worst = err;
            if (err > 2e-4 + 5e-2 * fabs(fd)) {
                bad++;
                printf("  %s[%d]: analytic %.6g, central differences %.6g\n", groups[k], best,
                       an[best], fd);
            }
            checked++;
        }
    }
    CHECK(bad == 0, "objective: %d of %d coordinates disagree with central differences", bad,
          checked);
    printf("objective (mask, adversary %s%s%s%s%s%s, L0) on tiny-llama: %d coordinates vs central "
           "differences, worst |error| %.2g\n", confusion ? "confusion" : "reversed",
           tokens ? " on every token's row" : "", balance ? ", rows balanced" : "", conditional ? ", conditional on the label" : "",
           mmd == 2 ? ", linear MMD term" : mmd ? ", MMD term" : "",
           pairs ? ", counterfactual invariance" : "", checked, worst);
    free(an);
    if (balance) { /* the weights change the objective: the same parameters without them */
        double tb, ab, tu, au;
        objective(ob, &tm, &bb, B, T, o.adv_lambda, confusion, o.mmd_weight, o.pair_weight, &tb, &ab);
        o.balance = 0;
        xd_debias_run *u = xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to);
        CHECK(u != NULL, "run: %s", xd_last_error());
        if (u) {
            xd_objective *ou = xd_debias_objective(u);
            memcpy(ou->params->param, g->param, g->n_floats * sizeof(float));
            objective(ou, &tm, &bb, B, T, o.adv_lambda, confusion, o.mmd_weight, o.pair_weight, &tu, &au);
            CHECK(fabs(tb - tu) > 1e-4 * fabs(tu) && fabs(ab - au) > 1e-4 * fabs(au),
                  "balanced task %.6g / adversary %.6g vs unweighted %.6g / %.6g", tb, ab, tu, au);
            printf("rows balanced: task loss %.4f (unweighted %.4f), adversary %.4f (%.4f)\n", tb,
                   tu, ab, au);
            xd_debias_run_free(u);
        }
    }
    xd_batch_free(&bb);
    xd_tm_free(&tm);
    xd_debias_run_free(r);
    free(theta0);
    xd_clf_data_free(&data);
    xd_clf_data_free(&pdata);
    xd_labeled_free(&lab);
    xd_model_free(m);
}

/* tiny-llama with 16 examples of an attribute "g" in DIR/file, the options of an attribute
 * diff's mask phase with 2 adversary heads, batches of 4 × 12 tokens, and θ₀. */
static xd_model *adv_setup(const char *file, xd_labeled *lab, xd_clf_data *data, xd_debias_opts *o,
                           xd_train_opts *to, float **theta0) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    write_data(p, 16, 1);
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf");
    const char *attrs[1] = {"g"};
    CHECK(m && xd_labeled_load(p, "text", "label", attrs, 1, lab) == 0 &&
              xd_clf_data_init(data, lab, xd_model_tokenizer(m), 12) == 0, "setup: %s", xd_last_error());
    xd_debias_defaults(o);
    o->max_len = 12;
    o->adv_attr = "g";
    o->adv_heads = 2;
    xd_train_defaults(to);
    to->batch = 4;
    to->seq = 12;
    *theta0 = malloc(m->arena_floats * sizeof(float));
    memcpy(*theta0, m->arena, m->arena_floats * sizeof(float));
    return m;
}

/* --adv-refit: at steps 1 + k·N the adversary heads are fitted afresh on the bank. A bank
 * whose two groups sit apart along one direction (rows ±2·e_0 + noise, written into the
 * run's own "mmd.bank" state) is read by the refitted heads at ≥ 0.95 accuracy on new rows
 * of the same kind, where the fresh initialisation alone is near chance; a second run refits
 * the same values; an empty bank leaves the fresh heads; --adv-conditional is refused. */
static void test_adv_refit(void) {
    xd_labeled lab;
    xd_clf_data data;
    xd_debias_opts o;
    xd_train_opts to;
    float *theta0;
    xd_model *m = adv_setup("refit.jsonl", &lab, &data, &o, &to, &theta0);
    o.adv_refit = 2;
    o.mmd_bank = 32;
    int d = m->cfg.d_model;
    float *seen[2] = {NULL, NULL};
    size_t n = 0;
    xd_rng g;
    for (int run = 0; run < 3; run++) {
        xd_debias_run *r = xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to);
        CHECK(r != NULL, "run: %s", xd_last_error());
        if (!r) break;
        xd_objective *ob = xd_debias_objective(r);
        xd_param_groups *pg = ob->params;
        float *adv = NULL, *bank = NULL, *fill = NULL;
        int64_t n_cg = 0;
        for (int i = 0; i < pg->n; i++) {
            if (!strcmp(pg->w[i].hf, "adversary.0.0.weight")) adv = pg->w[i].ptr;
            if (!strcmp(pg->w[i].hf, "mmd.bank")) bank = pg->w[i].ptr;
            if (!strcmp(pg->w[i].hf, "mmd.bank_fill")) fill = pg->w[i].ptr, n_cg = pg->w[i].rows;
        }
        CHECK(adv && bank && fill && n_cg >= 2, "the heads and the bank in the run's state");
        if (!adv || !bank || !fill) { xd_debias_run_free(r); break; }
        n = (size_t)xd_head_n_params(d, d, 2, 1) * 2;
        xd_rng_seed(&g, 77);
        for (int64_t cg = 0; run < 2 && cg < n_cg; cg++) { /* group = cg % 2 */
            for (int i = 0; i < o.mmd_bank; i++) {
                float *x = bank + ((size_t)cg * o.mmd_bank + (size_t)i) * d;
                for (int j = 0; j < d; j++) x[j] = (float)(0.5 * xd_rng_normal(&g));
                x[0] += cg % 2 ? 2.0f : -2.0f;
            }
            fill[2 * cg] = (float)o.mmd_bank;
        }
        xd_trainer_model tm = {0};
        float *before = malloc(n * sizeof(float));
        memcpy(before, adv, n * sizeof(float));
        ob->begin_step(ob, &tm, 2);
        CHECK(memcmp(before, adv, n * sizeof(float)) == 0, "step 2 refit the heads");
        CHECK(ob->begin_step(ob, &tm, 3) == 0, "refit: %s", xd_last_error());
        /* the two heads, as laid out in the run, on 200 new rows */
        xd_head h[2];
        xd_head_acts a[2];
        memset(a, 0, sizeof a);
        int ok = 0;
        float *x = malloc((size_t)200 * d * sizeof(float));
        int32_t y[200];
        for (int i = 0; i < 200; i++) {
            y[i] = i % 2;
            for (int j = 0; j < d; j++) x[(size_t)i * d + j] = (float)(0.5 * xd_rng_normal(&g));
            x[(size_t)i * d] += y[i] ? 2.0f : -2.0f;
        }
        for (int k = 0; k < 2; k++) {
            xd_head_layout(&h[k], d, d, 2, 1, 0.3f, adv + (size_t)k * (n / 2), NULL);
            xd_head_acts_alloc(&a[k], &h[k], 200);
            const float *lg = xd_head_forward(&h[k], &a[k], x, 200, 0, 0);
            for (int i = 0; i < 200; i++) ok += xd_head_argmax(lg + (size_t)i * 2, 2) == y[i];
            xd_head_acts_free(&a[k]);
        }
        free(x);
        if (run < 2) {
            printf("adversary refit (run %d): the refitted heads read the bank's groups on new "
                   "rows at %.3f (≥ 0.95)\n", run, ok / 400.0);
            CHECK(ok >= 380, "refit heads: %d of 400", ok);
            seen[run] = malloc(n * sizeof(float));
            memcpy(seen[run], adv, n * sizeof(float));
        } else { /* an empty bank: fresh heads, not fitted */
            printf("adversary refit, empty bank: the fresh heads read those rows at %.3f\n", ok / 400.0);
            CHECK(ok < 300, "an empty bank's heads were fitted: %d of 400", ok);
        }
        free(before);
        xd_debias_run_free(r);
    }
    CHECK(seen[0] && seen[1] && memcmp(seen[0], seen[1], n * sizeof(float)) == 0,
          "the refitted heads differ between two runs");
    o.adv_conditional = 1;
    CHECK(!xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to) &&
              strstr(xd_last_error(), "--adv-refit"), "refit with a conditional adversary: %s",
          xd_last_error());
    o.adv_conditional = 0;
    o.adv_tokens = 1; /* the refit reads pooled rows: refused with token rows too */
    CHECK(!xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to) &&
              strstr(xd_last_error(), "--adv-tokens"), "refit with token rows: %s", xd_last_error());
    o.adv_tokens = 0;
    o.adv_refit = 0;
    o.adv_attr = NULL; /* a task run without an adversary has no attribute to balance against */
    o.balance = 1;
    CHECK(!xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to) &&
              strstr(xd_last_error(), "--balance"), "balance without an attribute: %s", xd_last_error());
    free(seen[0]);
    free(seen[1]);
    free(theta0);
    xd_clf_data_free(&data);
    xd_labeled_free(&lab);
    xd_model_free(m);
}

/* --adv-reset: the adversary heads start afresh at steps 1 + k·N (new values, unlike the
 * ones before, the same in a second run: a resumed run draws them again). */
static void test_adv_reset(void) {
    xd_labeled lab;
    xd_clf_data data;
    xd_debias_opts o;
    xd_train_opts to;
    float *theta0;
    xd_model *m = adv_setup("reset.jsonl", &lab, &data, &o, &to, &theta0);
    o.adv_reset = 2;
    float *seen[2] = {NULL, NULL};
    size_t lo = 0, n = 0;
    for (int run = 0; run < 2; run++) {
        xd_debias_run *r = xd_debias_run_new(m, theta0, XD_DEBIAS_PHASE_MASK, &o, &data, &data, NULL, &to);
        CHECK(r != NULL, "run: %s", xd_last_error());
        if (!r) break;
        xd_objective *ob = xd_debias_objective(r);
        xd_param_groups *g = ob->params;
        lo = (size_t)-1;
        size_t hi = 0;
        for (int i = 0; i < g->n; i++)
            if (!strncmp(g->w[i].hf, "adversary.", 10)) {
                size_t off = (size_t)(g->w[i].ptr - g->param), len = (size_t)(g->w[i].rows * g->w[i].cols);
                lo = off < lo ? off : lo;
                hi = off + len > hi ? off + len : hi;
            }
        n = hi - lo;
        float *before = malloc(n * sizeof(float));
        memcpy(before, g->param + lo, n * sizeof(float));
        xd_trainer_model tm = {0};
        ob->begin_step(ob, &tm, 2);
        CHECK(memcmp(before, g->param + lo, n * sizeof(float)) == 0, "step 2 reset the heads");
        ob->begin_step(ob, &tm, 3);
        int changed = 0;
        for (size_t i = 0; i < n; i++) changed += before[i] != g->param[lo + i];
        CHECK(changed > (int)(n / 2), "step 3: %d of %zu values new", changed, n);
        seen[run] = malloc(n * sizeof(float));
        memcpy(seen[run], g->param + lo, n * sizeof(float));
        free(before);
        xd_debias_run_free(r);
    }
    CHECK(seen[0] && seen[1] && memcmp(seen[0], seen[1], n * sizeof(float)) == 0,
          "the fresh heads differ between two runs");
    printf("adversary reset: the heads start afresh at step 3 (every 2), the same in a second run\n");
    free(seen[0]);
    free(seen[1]);
    free(theta0);
    xd_clf_data_free(&data);
    xd_labeled_free(&lab);
    xd_model_free(m);
}

/* ---- through the CLI ------------------------------------------------------------------------ */

static int cli(const char *args, char *out, size_t cap) {
    return test_cli_run(args, out, cap, TEST_CLI_BOTH);
}

/* The fixed-mask phase kept exactly the pruned set: the diff's entries are the top
 * round(share·n) of |z̄ ⊙ w| of the mask phase's final parameters. */
static void check_pruned_set(const char *out, double share) {
    char p[4200];
    snprintf(p, sizeof p, "%s/mask/params.safetensors", out);
    st_set *s = xd_st_open(p);
    snprintf(p, sizeof p, "%s/diff.safetensors", out);
    xd_diff *d = xd_diff_load(p);
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf");
    CHECK(s && d && m, "pruned set: %s", xd_last_error());
    if (!s || !d || !m) return;
    xd_weight *ws;
    int nw;
    CHECK(xd_model_weights(m, &ws, &nw) == 0, "weights");
    int64_t n = 0;
    for (int i = 0; i < nw; i++)
        if (strncmp(ws[i].hf, "lm_head", 7)) n += ws[i].rows * ws[i].cols;
    float *v = malloc((size_t)n * sizeof(float)), *la = malloc((size_t)n * sizeof(float));
    uint8_t *keep = malloc((size_t)n);
    int64_t at = 0, *start = calloc((size_t)nw, sizeof *start);
    for (int i = 0; i < nw; i++) {
        if (!strncmp(ws[i].hf, "lm_head", 7)) continue;
        char nm[200];
        int64_t c = ws[i].rows * ws[i].cols;
        snprintf(nm, sizeof nm, "diff.%s", ws[i].hf);
        const st_tensor *tw = xd_st_find(s, nm);
        snprintf(nm, sizeof nm, "log_alpha.%s", ws[i].hf);
        const st_tensor *ta = xd_st_find(s, nm);
        CHECK(tw && ta && xd_st_to_f32(s, tw, v + at) == 0 && xd_st_to_f32(s, ta, la + at) == 0,
              "params: %s", ws[i].hf);
        start[i] = at;
        at += c;
    }
    float *z = malloc((size_t)n * sizeof(float));
    xd_hc_eval_mask(z, la, n, -1.5f, 1.5f);
    for (int64_t i = 0; i < n; i++) v[i] *= z[i];
    int64_t k = xd_magnitude_prune(keep, v, n, share), outside = 0;
    for (int q = 0; q < d->n_parts; q++) {
        int wi = -1;
        for (int i = 0; i < nw; i++)
            if (!strcmp(ws[i].hf, d->parts[q].name)) wi = i;
        CHECK(wi >= 0, "diff part %s is no weight", d->parts[q].name);
        if (wi < 0) continue;
        for (int64_t e = 0; e < d->parts[q].nnz; e++) outside += !keep[start[wi] + d->parts[q].idx[e]];
    }
    CHECK(xd_diff_nnz(d) == k && outside == 0 && k == llround(share * (double)n),
          "fixed mask: %lld non-zeros (%lld outside the pruned set), pruned %lld of %lld",
          (long long)xd_diff_nnz(d), (long long)outside, (long long)k, (long long)n);
    printf("fixed mask: the diff holds exactly the %lld pruned entries of %lld (share %g)\n",
           (long long)k, (long long)n, share);
    free(v), free(la), free(keep), free(start), free(z), free(ws);
    xd_model_free(m);
    xd_diff_free(d);
    xd_st_close(s);
}

static void test_cli(void) {
    char tr[400], va[400], args[4096], out[1 << 14];
    const char *M = XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf";
    snprintf(tr, sizeof tr, "%s/train.jsonl", dir);
    snprintf(va, sizeof va, "%s/val.jsonl", dir);
    write_data(tr, 48, 1);
    write_data(va, 16, 1);
    const char *common = "--attr g --steps 6 --mask-steps 3 --batch 4 --max-len 12 --lr 1e-3";
    snprintf(args, sizeof args, "debias task %s --train %s --val %s -o %s/T %s --sparsity 0.1", M,
             tr, va, dir, common);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "\"nonzero_share\""), "task: %s", out);
    snprintf(args, sizeof args, "%s/T", dir);
    check_pruned_set(args, 0.1);
    snprintf(args, sizeof args,
             "debias attribute %s --task %s/T --protect g --train %s --val %s --steps 4 "
             "--mask-steps 2 --batch 4 --lr 1e-3 --sparsity 0.1 --adv-lambda-fixed 2.5 --adv-tokens",
             M, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "\"task_diff_hash\"") &&
              strstr(out, "\"adversary_lambda_fixed_mask\":2.5") &&
              strstr(out, "\"adversary_reads\":\"tokens\""), "attribute: %s", out);
    /* counterfactual invariance alone (no adversary heads); a field missing, the weight alone */
    snprintf(args, sizeof args,
             "debias attribute %s --task %s/T --protect g --train %s --val %s --steps 4 "
             "--mask-steps 2 --batch 4 --lr 1e-3 --sparsity 0.1 --adv-heads 0 --cf-field cf "
             "--cf-weight 2 -o %s/Acf", M, dir, tr, va, dir);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "\"counterfactual\":\"field \\\"cf\\\"\"") &&
              strstr(out, "\"counterfactual_weight\":2"), "attribute --cf-field: %s", out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect g --train %s --val %s "
             "--steps 4 --cf-field nope -o %s/Acf2", M, dir, tr, va, dir);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "train.jsonl") && strstr(out, "line 1") &&
              strstr(out, "\"nope\""), "--cf-field of a missing field: %s", out);
    char swaps[400];
    snprintf(swaps, sizeof swaps, "%s/swaps.txt", dir);
    write_text(swaps, "cat dog\ndog cat\nred blue\n");
    snprintf(args, sizeof args,
             "debias attribute %s --task %s/T --protect g --train %s --val %s --steps 4 "
             "--mask-steps 2 --batch 4 --lr 1e-3 --sparsity 0.1 --cf-swap %s -o %s/Acf3", M, dir,
             tr, va, swaps, dir);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "swaps.txt") &&
              strstr(out, "\"counterfactual_weight\":1"), "attribute --cf-swap: %s", out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect g --train %s --val %s "
             "--cf-swap %s --cf-field cf", M, dir, tr, va, swaps);
    CHECK(cli(args, out, sizeof out) == 2 && strstr(out, "one way"), "--cf-swap and --cf-field: %s", out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect g --train %s --val %s "
             "--cf-weight 1", M, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 2 && strstr(out, "--cf-field"), "--cf-weight alone: %s", out);
    snprintf(args, sizeof args,
             "debias eval %s --task %s/T --with g --train %s --test %s --attack-epochs 3 "
             "--boot 50 -o %s/R.json", M, dir, tr, va, dir);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "\"leakage\"") && strstr(out, "\"tpr_gap_rms\""),
          "eval --with g: %s", out);
    /* the HTML report of eval results; a file that is no result is refused by name */
    snprintf(args, sizeof args, "debias report %s/R.json %s/R.json --labels a,b -o %s/rep.html", dir,
             dir, dir);
    CHECK(cli(args, out, sizeof out) == 0, "report: %s", out);
    snprintf(args, sizeof args, "%s/rep.html", dir);
    FILE *f = fopen(args, "r");
    char page[1 << 14] = "";
    if (f) {
        size_t got = fread(page, 1, sizeof page - 1, f);
        page[got] = 0;
        fclose(f);
    }
    CHECK(strstr(page, "<svg") && strstr(page, "leakage g"), "the report has no plot or table");
    snprintf(args, sizeof args, "debias report %s/T/debias.json -o %s/rep2.html", dir, dir);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "debias.json") && strstr(out, "format"),
          "report of a non-result: %s", out);
    /* a student (the xLSTM hybrid) as the encoder: its mixer's parameters get diffs too */
    snprintf(args, sizeof args, "convert %s -o %s/student --window 4 --sinks 1", M, dir);
    CHECK(cli(args, out, sizeof out) == 0, "convert: %s", out);
    snprintf(args, sizeof args, "debias task %s/student --train %s --val %s -o %s/TS %s", dir, tr,
             va, dir, common);
    CHECK(cli(args, out, sizeof out) == 0 && strstr(out, "\"nonzeros\""), "student task: %s", out);
    /* a second task diff: the attribute diff of the first is refused on it */
    snprintf(args, sizeof args, "debias task %s --train %s --val %s -o %s/T2 %s --seed 9", M, tr,
             va, dir, common);
    CHECK(cli(args, out, sizeof out) == 0, "task 2: %s", out);
    snprintf(args, sizeof args, "debias eval %s --task %s/T2 --with %s/T/attributes/g --train %s "
             "--test %s", M, dir, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "another task diff"),
          "attribute diff on another task diff: %s", out);
    snprintf(args, sizeof args, "debias eval %s --with g --train %s --test %s", M, tr, va);
    CHECK(cli(args, out, sizeof out) == 2 && strstr(out, "--task"), "--with without --task: %s", out);

    /* bad input: a missing label field, a class absent from training, sparsity range */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
    write_text(bad, "{\"text\": \"red cat\", \"label\": \"c0\", \"g\": \"x\"}\n"
                    "{\"text\": \"blue dog\", \"g\": \"y\"}\n");
    snprintf(args, sizeof args, "debias task %s --train %s --val %s -o %s/B %s", M, bad, va, dir, common);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "bad.jsonl") && strstr(out, "line 2") &&
              strstr(out, "\"label\""), "missing label: %s", out);
    snprintf(bad, sizeof bad, "%s/no_c1.jsonl", dir);
    write_data(bad, 24, 0); /* class c1 never appears */
    snprintf(args, sizeof args, "debias task %s --train %s --val %s -o %s/B %s", M, bad, va, dir, common);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "val.jsonl") && strstr(out, "c1") &&
              strstr(out, "training split"), "class without training examples: %s", out);
    const char *shares[3] = {"0", "1.5", "-0.1"};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "debias task %s --train %s --val %s -o %s/B %s --sparsity %s",
                 M, tr, va, dir, common, shares[k]);
        CHECK(cli(args, out, sizeof out) == 2 && strstr(out, "(0, 1]"), "sparsity %s: %s",
              shares[k], out);
    }
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect g --train %s --val %s "
             "--adv-objective flip", M, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 2 && strstr(out, "--adv-objective") &&
              strstr(out, "reverse or confusion"), "--adv-objective flip: %s", out);
    /* a diff made for another base: the same architecture, one weight changed */
    char other[400], cmd[2400];
    snprintf(other, sizeof other, "%s/other.gguf", dir);
    snprintf(cmd, sizeof cmd, "cp %s %s && printf '\\x7f' | dd of=%s bs=1 seek=$(($(stat -c %%s %s) - 3)) "
             "conv=notrunc 2>/dev/null", M, other, other, other);
    CHECK(system(cmd) == 0, "cannot make %s", other);
    snprintf(args, sizeof args, "debias eval %s --task %s/T --train %s --test %s", other, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "base"), "diff of another base: %s", out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect g --train %s --val %s "
             "--steps 4", other, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "base"), "attribute on another base: %s",
          out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/T --protect nope --train %s --val %s",
             M, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "nope"), "unknown attribute: %s", out);
    snprintf(args, sizeof args, "debias attribute %s --task %s/missing --protect g --train %s --val %s",
             M, dir, tr, va);
    CHECK(cli(args, out, sizeof out) == 1 && strstr(out, "missing/debias.json"), "no task dir: %s",
          out);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_debias_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_head();
    test_metrics();
    test_mmd();
    test_attacker();
    test_balance_weights();
    test_objective_fd(0, 0, 0, 0, 0, 0);
    test_objective_fd(1, 0, 0, 0, 0, 0);
    test_objective_fd(0, 1, 0, 0, 0, 0);
    test_objective_fd(0, 0, 1, 0, 0, 0);
    test_objective_fd(0, 0, 2, 0, 0, 0);
    test_objective_fd(0, 0, 0, 1, 0, 0);
    test_objective_fd(1, 0, 0, 1, 0, 0);
    test_objective_fd(0, 0, 0, 0, 1, 0);
    test_objective_fd(1, 0, 0, 1, 1, 0);
    test_objective_fd(0, 0, 0, 1, 0, 1);
    test_adv_reset();
    test_adv_refit();
    test_cli();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd)) return 1;
    return test_summary("test_debias");
}
