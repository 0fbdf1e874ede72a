/* The Stage II loss kernel (src/kernels/distill_loss.h):
 *  - a case worked out by hand (V = 4, k = 2);
 *  - KL = 0 (and a zero gradient) when the student's full softmax equals the
 *    renormalised teacher top-k (very negative / -inf logits elsewhere);
 *  - the gradient against central differences, both of an independent
 *    double-precision implementation of the loss (h = 1e-5) and of the
 *    kernel's own returned loss (fp32 inputs, h = 2^-6), tolerances 1e-6 / 1e-4;
 *  - PyTorch float64 autograd (tests/fixtures/distill_loss_ref.json, made by
 *    tests/ref/make_distill_loss_ref.py), relative error <= 1e-5;
 *  - aliasing dlogits = logits, dlogits = NULL, and the CE-only case equal to
 *    xd_cross_entropy. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "kernels/distill_loss.h"
#include "kernels/train_ops.h"
#include "test.h"

/* ---- an independent double-precision reference ------------------------------ */

static double ref_loss(const double *z, const int32_t *targets, const int32_t *ids,
                       const float *tl, int n, int V, int k, double w_ce, double w_kl,
                       double *ce_out, double *kl_out) {
    double loss = 0, ces = 0, kls = 0;
    for (int r = 0; r < n; r++) {
        const double *zr = z + (size_t)r * V;
        double m = zr[0], s = 0;
        for (int i = 1; i < V; i++) m = fmax(m, zr[i]);
        for (int i = 0; i < V; i++) s += exp(zr[i] - m);
        double lse = m + log(s);
        int y = targets ? targets[r] : -1;
        if (y >= 0 && y < V) {
            double ce = lse - zr[y];
            ces += ce;
            loss += w_ce * ce;
        }
        if (!ids) continue;
        double tm = -INFINITY, ts = 0;
        int any = 0;
        for (int j = 0; j < k; j++)
            if (ids[r * k + j] >= 0 && ids[r * k + j] < V) tm = fmax(tm, tl[r * k + j]), any = 1;
        if (!any) continue;
        for (int j = 0; j < k; j++)
            if (ids[r * k + j] >= 0 && ids[r * k + j] < V) ts += exp(tl[r * k + j] - tm);
        double kl = 0;
        for (int j = 0; j < k; j++) {
            int id = ids[r * k + j];
            if (id < 0 || id >= V) continue;
            double lp = tl[r * k + j] - tm - log(ts);
            kl += exp(lp) * (lp - (zr[id] - lse));
        }
        kls += kl;
        loss += w_kl * kl;
    }
    if (ce_out) *ce_out = ces;
    if (kl_out) *kl_out = kls;
    return loss;
}

static uint64_t rng_state = 0x1234567u;
static double urand(void) { /* [0, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- 1. by hand ------------------------------------------------------------------ */

static void test_hand(void) {
    /* V = 4, z = [0, ln 2, 0, ln 4]: e^z = [1, 2, 1, 4], Σ = 8,
     *   p_S = [1/8, 1/4, 1/8, 1/2], lse = ln 8.
     * Row 0: target y = 1, teacher top-2 ids [3, 1] with logits [ln 3, 0]:
     *   p̂ = [3/4, 1/4] on ids [3, 1].
     *   CE = -ln(1/4) = ln 4 = 1.3862943611
     *   KL = 3/4 (ln 3/4 - ln 1/2) + 1/4 (ln 1/4 - ln 1/4) = 3/4 ln 1.5 = 0.3040988236
     *   loss = 0.9 · 1.3862943611 + 0.1 · 0.3040988236 = 1.2780748074
     *   dz = (0.9 + 0.1) p_S - 0.9 onehot(1) - 0.1 p̂:
     *      [1/8, 1/4 - 0.9 - 0.025, 1/8, 1/2 - 0.075] = [0.125, -0.675, 0.125, 0.425]
     * Row 1: same z, no target (-1), same teacher: KL only,
     *   loss = 0.1 · 0.3040988236 = 0.0304098824
     *   dz = 0.1 (p_S - p̂) = [0.0125, 0.1 (1/4 - 1/4), 0.0125, 0.1 (1/2 - 3/4)]
     *      = [0.0125, 0, 0.0125, -0.025]
     * Row 2: target 3, no teacher (ids -1): CE = -ln(1/2) = ln 2 = 0.6931471806,
     *   loss = 0.9 ln 2 = 0.6238324625, dz = 0.9 (p_S - onehot(3)) = [0.1125, 0.225, 0.1125, -0.45]
     * Row 3: neither: loss 0, dz = 0.
     * Totals (scale = 1): CE sum = ln 4 + ln 2 = 2.0794415417, KL sum = 2 · 0.3040988236
     *   = 0.6081976472, loss = 1.2780748074 + 0.0304098824 + 0.6238324625 = 1.9323171523. */
    const float l2 = 0.69314718056f, l4 = 1.38629436112f, l3 = 1.09861228867f;
    float z[16] = {0, l2, 0, l4, 0, l2, 0, l4, 0, l2, 0, l4, 0, l2, 0, l4}, dz[16];
    int32_t tg[4] = {1, -1, 3, -1};
    int32_t ids[8] = {3, 1, 3, 1, -1, -1, -1, -1};
    float tl[8] = {l3, 0, l3, 0, 0, 0, 0, 0};
    double ce, kl, loss = xd_distill_loss(dz, z, tg, ids, tl, 4, 4, 2, 0.9f, 0.1f, 1.0f, &ce, &kl);
    /* fp32 inputs (ln 2 etc. rounded to float) and fp32 weights: 1e-6 */
    CHECK_NEAR(loss, 1.9323171523, 1e-6, "hand: loss");
    CHECK_NEAR(ce, 2.0794415417, 1e-6, "hand: CE sum");
    CHECK_NEAR(kl, 0.6081976472, 1e-6, "hand: KL sum");
    const double want[16] = {0.125, -0.675, 0.125, 0.425, 0.0125, 0, 0.0125, -0.025,
                             0.1125, 0.225, 0.1125, -0.45, 0, 0, 0, 0};
    double md = 0;
    for (int i = 0; i < 16; i++) md = fmax(md, fabs(dz[i] - want[i]));
    CHECK(md <= 1e-6, "hand: dlogits max error %g > 1e-6", md);
    CHECK(dz[12] == 0 && dz[13] == 0 && dz[14] == 0 && dz[15] == 0, "hand: row 3 not zeroed");
    printf("hand case: loss %.10f (want 1.9323171523), max |dlogits error| %.2e\n", loss, md);
}

/* ---- 2. KL = 0 when p_S equals p̂ ----------------------------------------------------- */

static void test_kl_zero(float elsewhere) {
    enum { V = 50, K = 5 };
    float z[V], dz[V], tl[K] = {3.5f, 2.25f, 2.0f, -1.0f, -4.0f};
    int32_t ids[K] = {17, 3, 42, 0, 29};
    for (int i = 0; i < V; i++) z[i] = elsewhere;
    for (int j = 0; j < K; j++) z[ids[j]] = tl[j] + 7.0f; /* a shift leaves softmax unchanged */
    double ce, kl, loss = xd_distill_loss(dz, z, NULL, ids, tl, 1, V, K, 0.9f, 1.0f, 1.0f, &ce, &kl);
    double md = 0;
    for (int i = 0; i < V; i++) md = fmax(md, fabs(dz[i]));
    printf("KL = 0 case (other logits %g): KL %.3e, max |dlogits| %.3e\n", elsewhere, kl, md);
    CHECK(fabs(kl) <= 1e-6 && fabs(loss) <= 1e-6 && ce == 0, "KL %g, loss %g (expected 0)", kl,
          loss);
    CHECK(md <= 1e-6, "gradient %g, expected 0", md);
    /* and a different student gives KL > 0 */
    z[17] -= 1.0f;
    xd_distill_loss(NULL, z, NULL, ids, tl, 1, V, K, 0.0f, 1.0f, 1.0f, NULL, &kl);
    CHECK(kl > 1e-3, "KL %g should be positive", kl);
}

/* ---- 3. finite differences --------------------------------------------------------------- */

enum { FN = 5, FV = 11, FK = 4 };

static void make_case(float *z, int32_t *tg, int32_t *ids, float *tl) {
    for (int i = 0; i < FN * FV; i++) z[i] = 2.0f * nrand();
    for (int r = 0; r < FN; r++) {
        tg[r] = (int32_t)(urand() * FV);
        /* distinct ids, teacher logits in any order */
        int used[FV] = {0};
        for (int j = 0; j < FK; j++) {
            int id;
            do id = (int)(urand() * FV); while (used[id]);
            used[id] = 1;
            ids[r * FK + j] = id;
            tl[r * FK + j] = 2.0f * nrand();
        }
    }
    tg[1] = -1;                           /* KL only */
    for (int j = 0; j < FK; j++) ids[2 * FK + j] = -1; /* CE only */
    ids[3 * FK + 3] = -1;                 /* a padding slot */
    tg[4] = ids[4 * FK + 1];              /* the target inside the top-k */
}

static void test_fd(void) {
    float z[FN * FV], dz[FN * FV], tl[FN * FK];
    int32_t tg[FN], ids[FN * FK];
    make_case(z, tg, ids, tl);
    const float w_ce = 0.9f, w_kl = 0.1f, scale = 0.7f;
    double ce, kl, loss = xd_distill_loss(dz, z, tg, ids, tl, FN, FV, FK, w_ce, w_kl, scale, &ce, &kl);

    /* (a) the kernel's loss equals the double reference */
    double zd[FN * FV], rce, rkl;
    for (int i = 0; i < FN * FV; i++) zd[i] = z[i];
    double rl = ref_loss(zd, tg, ids, tl, FN, FV, FK, w_ce, w_kl, &rce, &rkl);
    double el = fabs(loss - rl) / fabs(rl);
    CHECK(el <= 1e-6, "loss %.10g vs double reference %.10g: rel %g > 1e-6", loss, rl, el);
    CHECK(fabs(ce - rce) <= 1e-6 * fabs(rce) && fabs(kl - rkl) <= 1e-6 * fabs(rkl),
          "CE %g / KL %g vs %g / %g", ce, kl, rce, rkl);

    /* (b) dlogits against central differences of the double reference, h = 1e-5:
     * truncation ~h² and rounding ~1e-16/h, both << the fp32 gradient's
     * own rounding; tolerance 1e-6 absolute (gradients are O(0.1..1)) */
    double md = 0;
    for (int i = 0; i < FN * FV; i++) {
        const double h = 1e-5;
        double zi = zd[i];
        zd[i] = zi + h;
        double lp = ref_loss(zd, tg, ids, tl, FN, FV, FK, w_ce, w_kl, NULL, NULL);
        zd[i] = zi - h;
        double lm = ref_loss(zd, tg, ids, tl, FN, FV, FK, w_ce, w_kl, NULL, NULL);
        zd[i] = zi;
        md = fmax(md, fabs(scale * (lp - lm) / (2 * h) - dz[i]));
    }
    CHECK(md <= 1e-6, "dlogits vs double central differences: max error %g > 1e-6", md);
    printf("finite differences (double reference, h = 1e-5): max |error| %.2e (tol 1e-6)\n", md);

    /* (c) central differences of the kernel's own loss: fp32 inputs moved by
     * h = 2^-6 (exact in float for |z| < 2^17); its expf sums are good to
     * ~1e-7 relative in each term, mostly the same for z ± h, and the
     * truncation is h²/6·|f'''| ~ 1e-5: tolerance 1e-4 absolute. */
    double md2 = 0;
    for (int i = 0; i < FN * FV; i++) {
        const float h = 0x1p-6f;
        float zi = z[i];
        z[i] = zi + h;
        double lp = xd_distill_loss(NULL, z, tg, ids, tl, FN, FV, FK, w_ce, w_kl, 1.0f, NULL, NULL);
        z[i] = zi - h;
        double lm = xd_distill_loss(NULL, z, tg, ids, tl, FN, FV, FK, w_ce, w_kl, 1.0f, NULL, NULL);
        z[i] = zi;
        md2 = fmax(md2, fabs(scale * (lp - lm) / (2.0 * h) - dz[i]));
    }
    CHECK(md2 <= 1e-4, "dlogits vs the kernel's own central differences: max error %g > 1e-4", md2);
    printf("finite differences (kernel loss, fp32, h = 2^-6): max |error| %.2e (tol 1e-4)\n", md2);

    /* aliasing and loss-only agree bit for bit */
    float za[FN * FV];
    memcpy(za, z, sizeof za);
    double la = xd_distill_loss(za, za, tg, ids, tl, FN, FV, FK, w_ce, w_kl, scale, NULL, NULL);
    double ln = xd_distill_loss(NULL, z, tg, ids, tl, FN, FV, FK, w_ce, w_kl, scale, NULL, NULL);
    CHECK(la == loss && ln == loss && memcmp(za, dz, sizeof dz) == 0,
          "aliased / loss-only differ: %.17g %.17g %.17g", la, ln, loss);
}

/* ---- 4. CE only equals xd_cross_entropy ----------------------------------------------------- */

static void test_ce_only(void) {
    enum { N = 300, V = 97 };
    static float z[N * V], d1[N * V], d2[N * V];
    static int32_t tg[N];
    for (int i = 0; i < N * V; i++) z[i] = 3.0f * nrand();
    for (int r = 0; r < N; r++) tg[r] = r % 7 == 0 ? -1 : (int32_t)(urand() * V);
    double a = xd_distill_loss(d1, z, tg, NULL, NULL, N, V, 0, 1.0f, 0.1f, 0.01f, NULL, NULL);
    double b = xd_cross_entropy(d2, z, tg, N, V, 0.01f);
    double md = 0;
    for (int i = 0; i < N * V; i++) md = fmax(md, fabs(d1[i] - d2[i]));
    CHECK(fabs(a - b) <= 1e-9 * fabs(b), "CE only: %.12g vs xd_cross_entropy %.12g", a, b);
    CHECK(md <= 1e-9, "CE only: dlogits differ from xd_cross_entropy by %g", md);
}

/* ---- 5. PyTorch reference ----------------------------------------------------------------- */

static int get_floats(json_t *o, const char *key, float *out, size_t n) {
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || json_array_size(a) != n) return -1;
    for (size_t i = 0; i < n; i++) out[i] = (float)json_number_value(json_array_get(a, i));
    return 0;
}

static void test_torch(void) {
    json_error_t je;
    json_t *o = json_load_file(FIXTURE("distill_loss_ref.json"), 0, &je);
    CHECK(o != NULL, "distill_loss_ref.json: %s", je.text);
    if (!o) return;
    int n = (int)json_integer_value(json_object_get(o, "n"));
    int V = (int)json_integer_value(json_object_get(o, "V"));
    int k = (int)json_integer_value(json_object_get(o, "k"));
    float w_ce = (float)json_number_value(json_object_get(o, "w_ce"));
    float w_kl = (float)json_number_value(json_object_get(o, "w_kl"));
    float scale = (float)json_number_value(json_object_get(o, "scale"));
    float *z = malloc(sizeof(float) * (size_t)n * V), *dz = malloc(sizeof(float) * (size_t)n * V);
    float *want = malloc(sizeof(float) * (size_t)n * V), *tl = malloc(sizeof(float) * (size_t)n * k);
    float *tgf = malloc(sizeof(float) * (size_t)n), *idf = malloc(sizeof(float) * (size_t)n * k);
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)n), *ids = malloc(sizeof(int32_t) * (size_t)n * k);
    /* the expected gradient is read in double */
    double *wd = malloc(sizeof(double) * (size_t)n * V);
    int bad = get_floats(o, "logits", z, (size_t)n * V) || get_floats(o, "targets", tgf, (size_t)n) ||
              get_floats(o, "topk_ids", idf, (size_t)n * k) ||
              get_floats(o, "topk_logits", tl, (size_t)n * k) ||
              get_floats(o, "dlogits", want, (size_t)n * V);
    CHECK(!bad, "distill_loss_ref.json: missing or short arrays");
    if (!bad) {
        json_t *g = json_object_get(o, "dlogits");
        for (int i = 0; i < n * V; i++) wd[i] = json_number_value(json_array_get(g, (size_t)i));
        for (int r = 0; r < n; r++) tg[r] = (int32_t)tgf[r];
        for (int i = 0; i < n * k; i++) ids[i] = (int32_t)idf[i];
        double ce, kl, loss = xd_distill_loss(dz, z, tg, ids, tl, n, V, k, w_ce, w_kl, scale, &ce, &kl);
        double rl = json_number_value(json_object_get(o, "loss"));
        double rce = json_number_value(json_object_get(o, "ce_sum"));
        double rkl = json_number_value(json_object_get(o, "kl_sum"));
        double el = fabs(loss - rl) / fabs(rl), ec = fabs(ce - rce) / fabs(rce),
               ek = fabs(kl - rkl) / fabs(rkl);
        CHECK(el <= 1e-5 && ec <= 1e-5 && ek <= 1e-5, "loss/CE/KL rel errors %g %g %g > 1e-5", el,
              ec, ek);
        /* gradient: relative to the largest entry of its row (entries of a row
         * can cancel: p_S - p̂ at the teacher's ids), and elementwise for the
         * record over the entries >= 1e-6 of their row's largest (smaller ones,
         * e.g. e^-100, underflow to 0 in fp32) */
        double worst = 0, worst_elem = 0;
        for (int r = 0; r < n; r++) {
            double mx = 0;
            for (int i = 0; i < V; i++) mx = fmax(mx, fabs(wd[r * V + i]));
            for (int i = 0; i < V; i++) {
                double e = fabs(dz[r * V + i] - wd[r * V + i]);
                if (mx > 0) worst = fmax(worst, e / mx);
                else worst = fmax(worst, e);
                if (fabs(wd[r * V + i]) >= 1e-6 * mx) /* not an fp32 underflow */
                    worst_elem = fmax(worst_elem, e / fabs(wd[r * V + i]));
            }
        }
        CHECK(worst <= 1e-5, "dlogits vs torch: rel error %g > 1e-5", worst);
        printf("torch reference: loss %.10g vs %.10g (rel %.1e), CE rel %.1e, KL rel %.1e, "
               "dlogits rel (row max) %.1e, elementwise %.1e (tol 1e-5)\n",
               loss, rl, el, ec, ek, worst, worst_elem);
    }
    free(z), free(dz), free(want), free(tl), free(tgf), free(idf), free(tg), free(ids), free(wd);
    json_decref(o);
}

int main(void) {
    test_hand();
    test_kl_zero(-1e4f);
    test_kl_zero(-INFINITY);
    test_fd();
    test_ce_only();
    test_torch();
    return test_summary("test_distill_loss");
}
