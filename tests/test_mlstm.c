/* The mLSTM cell (src/kernels/mlstm.h):
 *  1. the three forms agree — parallel (double inside), chunkwise, recurrent —
 *     on Hedgehog-like features, gates ĩ, f̃ ~ U[−20, 20], T = 1, 63, 64, 65,
 *     200 (chunk 64, and 16), with and without an initial state and document
 *     boundaries, and their final states agree;
 *  2. stateful use: the chunkwise form over T in pieces with the state
 *     carried equals one piece (forward and backward: dinit of a piece feeds
 *     dfinal of the one before); chunkwise prefill + recurrent decode equals
 *     the parallel form;
 *  3. finite differences of a float64 re-implementation of the mLSTM's parallel
 *     form (written here, independently of the library) against the
 *     chunkwise backward, for every input, gates in [−8, 8], with documents,
 *     an initial state and a loss on the final state;
 *  4. against PyTorch float64 autograd (tests/ref/make_mlstm_fixture.py):
 *     forward and every gradient within 1e-4 relative (max |diff| / max |ref|
 *     per tensor; h also per row). fp32 against fp64 with O(T) sums: ~1e-6
 *     expected (measured ≤ 6e-7); a detached m alone moves gradients by
 *     ≥ 1e-4 (case B, ε = 1e-6, dĩ) and by O(1) in case C (ε = 0.05);
 *  5. accumulation, NULL gradients, thread-count independence (1, 2 and 3
 *     threads, bit for bit: by construction, mlstm_chunk.c — every sgemm
 *     runs on one thread inside an OpenMP region; also at d_φ = 128, where
 *     sgemms called outside the regions would be split over the threads and,
 *     with OpenBLAS's Haswell or Zen kernels, round differently);
 *  6. a timing line (T=512, H=9, d_φ=128, d_v=64).
 *
 * AGREEMENT TOLERANCE. Error = per (token, head) row, max_j |a_j − b_j| /
 * max_j |b_j| (rows span 1e-9 … 1 in magnitude with extreme gates, so a
 * global max would hide the small rows), ≤ 1e-4. The forms compute the same
 * function except: (i) fp32 rounding (chunkwise and recurrent; the parallel
 * form is double inside), expected ~1e-6; (ii) the recurrent form's m_0 = 0,
 * which changes h only through ε·e^{m}: in true units h = N/(max(|Z|, 1) +
 * ε e^{m}) and the m_0 = 0 term wins only when m ≤ 0 for both choices, so the
 * relative effect is ≤ ε = 1e-6 (mlstm.h, "Agreement"). Features are
 * non-negative, as the Hedgehog map makes them: with signed features q̂ᵀn can
 * cancel to ~0 and h becomes ill-conditioned, which would test conditioning,
 * not the forms. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdistill.h"
#include "fixture_util.h"
#include "io/safetensors.h"
#include "kernels/mlstm.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t g_rng = 0x6A09E667F3BCC908ull;

static uint64_t rnd64(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double urand(double lo, double hi) {
    return lo + (hi - lo) * ((rnd64() >> 11) * (1.0 / 9007199254740992.0));
}

static double nrand(void) { /* Box–Muller */
    double u = urand(1e-12, 1), v = urand(0, 1);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static float *rbuf(size_t n, double lo, double hi) {
    float *x = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)urand(lo, hi);
    return x;
}

/* Hedgehog-like rows: φ(u) = [softmax(u); softmax(−u)], u ~ N(0, 1.5²) */
static float *hedgehog(int64_t rows, int dphi) {
    float *x = fbuf((size_t)rows * dphi);
    int half = dphi / 2;
    for (int64_t r = 0; r < rows; r++) {
        double u[512], mp = -1e300, mn = -1e300, sp = 0, sn = 0;
        for (int j = 0; j < half; j++) {
            u[j] = 1.5 * nrand();
            mp = u[j] > mp ? u[j] : mp;
            mn = -u[j] > mn ? -u[j] : mn;
        }
        for (int j = 0; j < half; j++) sp += exp(u[j] - mp), sn += exp(-u[j] - mn);
        for (int j = 0; j < half; j++) {
            x[r * dphi + j] = (float)(exp(u[j] - mp) / sp);
            x[r * dphi + half + j] = (float)(exp(-u[j] - mn) / sn);
        }
    }
    return x;
}

/* one problem: inputs, doc_start, optional initial state */
typedef struct {
    int64_t T;
    xd_mlstm_cfg cfg;
    float *q, *k, *v, *ig, *fg;
    int32_t *doc;
    float *C0, *n0, *m0;
    xd_mlstm_in in;
    xd_mlstm_state init;
} prob;

static int64_t csz_of(const xd_mlstm_cfg *c) { return (int64_t)c->H * c->dphi * c->dv; }

static xd_mlstm_state state_alloc(const xd_mlstm_cfg *c) {
    xd_mlstm_state s = {fbuf((size_t)csz_of(c)), fbuf((size_t)c->H * c->dphi), fbuf((size_t)c->H)};
    return s;
}
static void state_free(xd_mlstm_state *s) { free(s->C), free(s->n), free(s->m); }

/* docs: the document starts (besides 0), ndocs of them, ascending */
static void prob_make(prob *p, int64_t T, int H, int dphi, int dv, int L, double glo, double ghi,
                      const int *docs, int ndocs, int with_init) {
    memset(p, 0, sizeof *p);
    p->T = T;
    p->cfg = xd_mlstm_cfg_default(H, dphi, dv);
    p->cfg.chunk = L;
    p->q = hedgehog(T * H, dphi), p->k = hedgehog(T * H, dphi);
    p->v = rbuf((size_t)(T * H * dv), -1, 1);
    p->ig = rbuf((size_t)(T * H), glo, ghi), p->fg = rbuf((size_t)(T * H), glo, ghi);
    if (ndocs > 0) {
        p->doc = calloc((size_t)T, sizeof(int32_t));
        for (int64_t t = 0, d = 0, cur = 0; t < T; t++) {
            if (d < ndocs && docs[d] == t) cur = t, d++;
            p->doc[t] = (int32_t)cur;
        }
    }
    p->in = (xd_mlstm_in){p->q, p->k, p->v, p->ig, p->fg, p->doc};
    if (with_init) { /* a realistic state: the recurrent form over a 37-token prefix */
        int64_t P = 37;
        float *pq = hedgehog(P * H, dphi), *pk = hedgehog(P * H, dphi);
        float *pv = rbuf((size_t)(P * H * dv), -1, 1), *pi = rbuf((size_t)(P * H), -8, 8);
        float *pf = rbuf((size_t)(P * H), -8, 8), *ph = fbuf((size_t)(P * H * dv));
        p->init = state_alloc(&p->cfg);
        xd_mlstm_in pin = {pq, pk, pv, pi, pf, NULL};
        xd_mlstm_recurrent_forward(ph, &p->init, &pin, NULL, P, &p->cfg);
        p->C0 = p->init.C, p->n0 = p->init.n, p->m0 = p->init.m;
        free(pq), free(pk), free(pv), free(pi), free(pf), free(ph);
    }
}

static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->ig), free(p->fg), free(p->doc);
    if (p->C0) state_free(&p->init);
}

static const xd_mlstm_state *prob_init(const prob *p) { return p->C0 ? &p->init : NULL; }

/* max over rows of max_j |a − b| / max_j |b| (rows of length w) */
static double row_rel(const float *a, const float *b, int64_t rows, int w) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double md = 0, mb = 0;
        for (int j = 0; j < w; j++) {
            double d = fabs((double)a[r * w + j] - b[r * w + j]);
            md = d > md ? d : md;
            mb = fabs(b[r * w + j]) > mb ? fabs(b[r * w + j]) : mb;
        }
        double e = md / (mb > 1e-30 ? mb : 1e-30);
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* max |a − b| / max |b| */
static double tens_rel(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        md = d > md ? d : md;
        mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
    }
    return md / (mb > 1e-30 ? mb : 1e-30);
}

/* state a, rescaled to b's m (a·e^{m_a − m_b}), against b: per head, rel to max */
static double state_rel(const xd_mlstm_state *a, const xd_mlstm_state *b, const xd_mlstm_cfg *c) {
    int64_t csz = (int64_t)c->dphi * c->dv;
    double worst = 0;
    float *tmp = fbuf((size_t)(csz + c->dphi));
    for (int h = 0; h < c->H; h++) {
        float r = expf(a->m[h] - b->m[h]);
        for (int64_t x = 0; x < csz; x++) tmp[x] = r * a->C[h * csz + x];
        double e1 = tens_rel(tmp, b->C + h * csz, csz);
        for (int x = 0; x < c->dphi; x++) tmp[x] = r * a->n[(int64_t)h * c->dphi + x];
        double e2 = tens_rel(tmp, b->n + (int64_t)h * c->dphi, c->dphi);
        worst = e1 > worst ? e1 : worst;
        worst = e2 > worst ? e2 : worst;
    }
    free(tmp);
    return worst;
}

/* ---- 1. three forms ------------------------------------------------------------- */

static double g_worst_agree[3];

static void agree(int64_t T, int L, const int *docs, int ndocs, int with_init) {
    prob p;
    prob_make(&p, T, 3, 16, 8, L, -20, 20, docs, ndocs, with_init);
    const xd_mlstm_cfg *c = &p.cfg;
    int64_t nh = T * c->H * c->dv;
    float *hp = fbuf((size_t)nh), *hc = fbuf((size_t)nh), *hr = fbuf((size_t)nh);
    xd_mlstm_state fp = state_alloc(c), fc = state_alloc(c), fr = state_alloc(c);
    float *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    CHECK(xd_mlstm_parallel_forward(hp, &fp, &p.in, prob_init(&p), T, c) == 0, "parallel");
    CHECK(xd_mlstm_chunk_forward(hc, cache, &fc, &p.in, prob_init(&p), T, c) == 0, "chunk");
    CHECK(xd_mlstm_recurrent_forward(hr, &fr, &p.in, prob_init(&p), T, c) == 0, "recurrent");
    double e_cp = row_rel(hc, hp, T * c->H, c->dv), e_rp = row_rel(hr, hp, T * c->H, c->dv);
    double e_cr = row_rel(hc, hr, T * c->H, c->dv);
    double s_cp = state_rel(&fc, &fp, c), s_rp = state_rel(&fr, &fp, c);
    double dm = 0;
    for (int h = 0; h < c->H; h++) dm = fmax(dm, fabs(fc.m[h] - fp.m[h]));
    printf("  T=%3lld L=%2d docs=%d init=%d: h chunk~par %.1e rec~par %.1e chunk~rec %.1e | "
           "final state chunk~par %.1e rec~par %.1e, |dm| %.1e\n",
           (long long)T, L, ndocs, with_init, e_cp, e_rp, e_cr, s_cp, s_rp, dm);
    CHECK(e_cp <= 1e-4, "T=%lld chunk vs parallel %g", (long long)T, e_cp);
    CHECK(e_rp <= 1e-4, "T=%lld recurrent vs parallel %g", (long long)T, e_rp);
    CHECK(e_cr <= 1e-4, "T=%lld chunk vs recurrent %g", (long long)T, e_cr);
    CHECK(s_cp <= 1e-4 && s_rp <= 1e-4, "final states %g %g", s_cp, s_rp);
    CHECK(dm <= 1e-5, "final m chunk vs parallel differ by %g", dm);
    g_worst_agree[0] = fmax(g_worst_agree[0], e_cp);
    g_worst_agree[1] = fmax(g_worst_agree[1], e_rp);
    g_worst_agree[2] = fmax(g_worst_agree[2], e_cr);
    free(hp), free(hc), free(hr), free(cache);
    state_free(&fp), state_free(&fc), state_free(&fr);
    prob_free(&p);
}

static void test_agreement(void) {
    printf("three forms (ĩ, f̃ ~ U[−20, 20], H=3, d_φ=16, d_v=8):\n");
    const int64_t Ts[] = {1, 63, 64, 65, 200};
    for (int i = 0; i < 5; i++) agree(Ts[i], 64, NULL, 0, 0);
    for (int i = 0; i < 5; i++) agree(Ts[i], 64, NULL, 0, 1);
    const int docs[] = {5, 64, 100, 127, 128, 129, 199};
    agree(200, 64, docs, 7, 0);
    agree(200, 64, docs, 7, 1);
    agree(200, 16, docs, 7, 1);
    agree(65, 1, docs, 1, 1); /* chunk of 1 token: all inter-chunk */
    agree(200, 200, docs, 7, 1); /* one chunk */
    printf("  worst: chunk~par %.1e, rec~par %.1e, chunk~rec %.1e (tolerance 1e-4)\n",
           g_worst_agree[0], g_worst_agree[1], g_worst_agree[2]);
}

/* ---- 2. stateful ------------------------------------------------------------------ */

static void test_pieces(void) {
    printf("stateful: pieces, prefill + decode\n");
    const int docs[] = {40, 150};
    prob p;
    prob_make(&p, 200, 3, 16, 8, 64, -20, 20, docs, 2, 1);
    const xd_mlstm_cfg *c = &p.cfg;
    int64_t T = p.T, vs = (int64_t)c->H * c->dv, qs = (int64_t)c->H * c->dphi, H = c->H;
    int64_t nh = T * vs;
    float *h1 = fbuf((size_t)nh), *h2 = fbuf((size_t)nh), *hp = fbuf((size_t)nh);
    float *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    xd_mlstm_state f1 = state_alloc(c), st = state_alloc(c);
    xd_mlstm_chunk_forward(h1, cache, &f1, &p.in, &p.init, T, c);
    xd_mlstm_parallel_forward(hp, NULL, &p.in, &p.init, T, c);

    /* forward in pieces 77 + 73 + 50 (state in place: final = the carried state) */
    const int64_t cut[] = {0, 77, 150, 200};
    memcpy(st.C, p.init.C, (size_t)csz_of(c) * sizeof(float));
    memcpy(st.n, p.init.n, (size_t)(H * c->dphi) * sizeof(float));
    memcpy(st.m, p.init.m, (size_t)H * sizeof(float));
    int32_t *dl = calloc((size_t)T, sizeof(int32_t));
    for (int piece = 0; piece < 3; piece++) {
        int64_t a = cut[piece], n = cut[piece + 1] - a;
        for (int64_t t = 0; t < n; t++) dl[t] = p.doc[a + t] > a ? p.doc[a + t] - (int32_t)a : 0;
        xd_mlstm_in in = {p.q + a * qs, p.k + a * qs, p.v + a * vs, p.ig + a * H, p.fg + a * H, dl};
        /* a piece starting on a document start resets: no initial state */
        int reset = p.doc[a] == a && a > 0;
        xd_mlstm_chunk_forward(h2 + a * vs, NULL, &st, &in, reset ? NULL : &st, n, c);
    }
    double e = row_rel(h2, h1, T * H, c->dv), es = state_rel(&st, &f1, c);
    printf("  chunkwise 77+73+50 vs one piece: h %.1e, final state %.1e\n", e, es);
    CHECK(e <= 1e-5 && es <= 1e-5, "pieces: h %g state %g", e, es);

    /* prefill 130 tokens (chunkwise), decode 70 (recurrent steps) */
    int64_t P = 130;
    xd_mlstm_in in = {p.q, p.k, p.v, p.ig, p.fg, p.doc};
    xd_mlstm_chunk_forward(h2, NULL, &st, &in, &p.init, P, c);
    for (int64_t t = P; t < T; t++)
        xd_mlstm_step(h2 + t * vs, &st, p.q + t * qs, p.k + t * qs, p.v + t * vs, p.ig + t * H,
                      p.fg + t * H, p.doc[t] == t, c);
    e = row_rel(h2, hp, T * H, c->dv);
    printf("  prefill 130 (chunkwise) + decode 70 (recurrent) vs parallel: %.1e\n", e);
    CHECK(e <= 1e-4, "prefill+decode %g", e);

    /* backward in pieces: 100 + 100 with the state carried, dinit → dfinal */
    float *dh = rbuf((size_t)nh, -1, 1);
    xd_mlstm_state dfin = state_alloc(c), dmid = state_alloc(c), dini1 = state_alloc(c),
                   dini2 = state_alloc(c);
    for (int64_t x = 0; x < csz_of(c); x++) dfin.C[x] = (float)urand(-1, 1);
    for (int64_t x = 0; x < H * c->dphi; x++) dfin.n[x] = (float)urand(-1, 1);
    for (int x = 0; x < H; x++) dfin.m[x] = (float)urand(-1, 1);
    float *g1[5], *g2[5];
    int64_t sz[5] = {T * qs, T * qs, T * vs, T * H, T * H};
    for (int i = 0; i < 5; i++) g1[i] = fbuf((size_t)sz[i]), g2[i] = fbuf((size_t)sz[i]);
    xd_mlstm_grads G1 = {g1[0], g1[1], g1[2], g1[3], g1[4]};
    CHECK(xd_mlstm_chunk_backward(&G1, &dini1, dh, &dfin, h1, cache, &p.in, &p.init, T, c) == 0,
          "backward");
    int64_t M = 100;
    xd_mlstm_state s1 = state_alloc(c);
    float *ca = fbuf((size_t)xd_mlstm_cache_floats(M, c));
    float *cb = fbuf((size_t)xd_mlstm_cache_floats(T - M, c));
    float *ha = fbuf((size_t)(M * vs)), *hb = fbuf((size_t)((T - M) * vs));
    for (int64_t t = 0; t < T - M; t++) dl[t] = p.doc[M + t] > M ? p.doc[M + t] - (int32_t)M : 0;
    xd_mlstm_in ina = {p.q, p.k, p.v, p.ig, p.fg, p.doc};
    xd_mlstm_in inb = {p.q + M * qs, p.k + M * qs, p.v + M * vs, p.ig + M * H, p.fg + M * H, dl};
    xd_mlstm_chunk_forward(ha, ca, &s1, &ina, &p.init, M, c);
    xd_mlstm_chunk_forward(hb, cb, NULL, &inb, &s1, T - M, c);
    xd_mlstm_grads Gb = {g2[0] + M * qs, g2[1] + M * qs, g2[2] + M * vs, g2[3] + M * H,
                         g2[4] + M * H};
    xd_mlstm_grads Ga = {g2[0], g2[1], g2[2], g2[3], g2[4]};
    CHECK(xd_mlstm_chunk_backward(&Gb, &dmid, dh + M * vs, &dfin, hb, cb, &inb, &s1, T - M, c) == 0,
          "backward b");
    CHECK(xd_mlstm_chunk_backward(&Ga, &dini2, dh, &dmid, ha, ca, &ina, &p.init, M, c) == 0,
          "backward a");
    const char *nm[5] = {"dq", "dk", "dv", "dig", "dfg"};
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        double r = tens_rel(g2[i], g1[i], sz[i]);
        worst = fmax(worst, r);
        CHECK(r <= 1e-5, "two-piece backward %s: %g", nm[i], r);
    }
    double ri = fmax(fmax(tens_rel(dini2.C, dini1.C, csz_of(c)),
                          tens_rel(dini2.n, dini1.n, H * c->dphi)),
                     tens_rel(dini2.m, dini1.m, H));
    printf("  backward 100+100 (dinit → dfinal) vs one piece: inputs %.1e, dinit %.1e\n", worst,
           ri);
    CHECK(ri <= 1e-5, "two-piece dinit %g", ri);

    for (int i = 0; i < 5; i++) free(g1[i]), free(g2[i]);
    free(h1), free(h2), free(hp), free(cache), free(dl), free(dh);
    free(ca), free(cb), free(ha), free(hb);
    state_free(&f1), state_free(&st), state_free(&dfin), state_free(&dmid), state_free(&dini1);
    state_free(&dini2), state_free(&s1);
    prob_free(&p);
}

/* ---- 3. finite differences against a float64 parallel form ---------------------------
 * ref_loss: the mLSTM's parallel form in double, built differently from the
 * library's (prefix sums b_t and the full log D matrix), and the loss
 * L = Σ h·Rh + Σ C_T·RC + Σ n_T·Rn + Σ m_T·Rm.
 * Central differences in double on each input coordinate, step 1e-4: the
 * truncation error O(step²) is what limits (features are ~0.1, so a 1e-3
 * step is a 1% change: worst error 4.7e-5 at 1e-3, 1.1e-6 at 1e-4, the
 * same at 1e-5 — the floor is the fp32 analytic gradient). Error per
 * tensor = max |fd − analytic| / max |fd| ≤ 1e-5 (~10× the floor); a wrong
 * term gives O(1e-2 … 1). */
typedef struct {
    int64_t T;
    int H, dphi, dv;
    double scale, eps;
    const int32_t *doc;
    int has_init;
    double *x; /* all inputs, concatenated: q k v ig fg C0 n0 m0 */
    int64_t off[9];
    const float *Rh, *RC, *Rn, *Rm;
    int branch_b; /* rows in the exp(−m) branch, last evaluation */
} dref;

static double ref_loss(dref *r) {
    int64_t T = r->T;
    int H = r->H, D = r->dphi, V = r->dv;
    const double *q = r->x + r->off[0], *k = r->x + r->off[1], *v = r->x + r->off[2];
    const double *ig = r->x + r->off[3], *fg = r->x + r->off[4];
    const double *C0 = r->x + r->off[5], *n0 = r->x + r->off[6], *m0 = r->x + r->off[7];
    double *b = malloc((size_t)T * sizeof(double)), *lD = malloc((size_t)(T + 1) * sizeof(double));
    double loss = 0;
    r->branch_b = 0;
    for (int h = 0; h < H; h++) {
        double acc = 0;
        for (int64_t t = 0; t < T; t++) {
            double f = fg[t * H + h];
            acc += f >= 0 ? -log1p(exp(-f)) : f - log1p(exp(f));
            b[t] = acc;
        }
        for (int64_t t = 0; t < T; t++) {
            int64_t ds = r->doc ? r->doc[t] : 0;
            double m = -INFINITY;
            for (int64_t s = 0; s <= T; s++) {
                if (s < T) lD[s] = (s <= t && s >= ds) ? b[t] - b[s] + ig[s * H + h] : -INFINITY;
                else lD[s] = (r->has_init && ds == 0) ? b[t] + m0[h] : -INFINITY;
                if (lD[s] > m) m = lD[s];
            }
            double Z = 0, num[64] = {0};
            for (int64_t s = 0; s <= T; s++) {
                if (lD[s] == -INFINITY) continue;
                double w = exp(lD[s] - m);
                if (s < T) {
                    double qk = 0;
                    const double *qt = q + (t * H + h) * D, *ks = k + (s * H + h) * D;
                    for (int x = 0; x < D; x++) qk += qt[x] * ks[x];
                    double ct = r->scale * qk * w;
                    Z += ct;
                    for (int x = 0; x < V; x++) num[x] += ct * v[(s * H + h) * V + x];
                } else {
                    for (int y = 0; y < D; y++) {
                        double qw = r->scale * w * q[(t * H + h) * D + y];
                        Z += qw * n0[h * D + y];
                        for (int x = 0; x < V; x++) num[x] += qw * C0[((int64_t)h * D + y) * V + x];
                    }
                }
            }
            double em = exp(-m), den = (fabs(Z) >= em ? fabs(Z) : em) + r->eps;
            if (fabs(Z) < em) r->branch_b++;
            for (int x = 0; x < V; x++) loss += num[x] / den * r->Rh[(t * H + h) * V + x];
            if (t == T - 1 && r->RC) { /* the final state */
                loss += m * r->Rm[h];
                for (int64_t s = 0; s <= T; s++) {
                    if (lD[s] == -INFINITY) continue;
                    double w = exp(lD[s] - m);
                    for (int y = 0; y < D; y++) {
                        double ky = s < T ? k[(s * H + h) * D + y] : n0[h * D + y];
                        loss += w * ky * r->Rn[h * D + y];
                        for (int x = 0; x < V; x++) {
                            double kv = s < T ? ky * v[(s * H + h) * V + x]
                                              : C0[((int64_t)h * D + y) * V + x];
                            loss += w * kv * r->RC[((int64_t)h * D + y) * V + x];
                        }
                    }
                }
            }
        }
    }
    free(b), free(lD);
    return loss;
}

static double g_fd_worst;

static void fd_case(const char *name, const int *docs, int ndocs, int with_init, int with_dfinal,
                    float eps) {
    prob p;
    int64_t T = 20;
    prob_make(&p, T, 2, 8, 4, 8, -8, 8, docs, ndocs, with_init);
    p.cfg.eps = eps;
    const xd_mlstm_cfg *c = &p.cfg;
    int H = c->H, D = c->dphi, V = c->dv;
    int64_t nq = T * H * D, nv = T * H * V, ng = T * H, ncs = (int64_t)H * D * V;
    float *h = fbuf((size_t)nv), *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    float *Rh = rbuf((size_t)nv, -1, 1);
    xd_mlstm_state fin = state_alloc(c), dfin = state_alloc(c), dini = state_alloc(c);
    for (int64_t x = 0; x < ncs; x++) dfin.C[x] = (float)urand(-1, 1);
    for (int64_t x = 0; x < (int64_t)H * D; x++) dfin.n[x] = (float)urand(-1, 1);
    for (int x = 0; x < H; x++) dfin.m[x] = (float)urand(-1, 1);
    xd_mlstm_chunk_forward(h, cache, &fin, &p.in, prob_init(&p), T, c);
    float *g[8];
    int64_t sz[8] = {nq, nq, nv, ng, ng, ncs, (int64_t)H * D, H};
    for (int i = 0; i < 5; i++) g[i] = fbuf((size_t)sz[i]);
    g[5] = dini.C, g[6] = dini.n, g[7] = dini.m;
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    CHECK(xd_mlstm_chunk_backward(&G, with_init ? &dini : NULL, Rh, with_dfinal ? &dfin : NULL, h,
                                  cache, &p.in, prob_init(&p), T, c) == 0, "backward");
    /* the double reference */
    dref r = {0};
    r.T = T, r.H = H, r.dphi = D, r.dv = V, r.scale = c->scale, r.eps = c->eps;
    r.doc = p.doc, r.has_init = with_init;
    r.off[0] = 0;
    for (int i = 0; i < 8; i++) r.off[i + 1] = r.off[i] + sz[i];
    r.x = calloc((size_t)r.off[8], sizeof(double));
    const float *src[8] = {p.q, p.k, p.v, p.ig, p.fg, p.C0, p.n0, p.m0};
    int nin = with_init ? 8 : 5;
    for (int i = 0; i < nin; i++)
        for (int64_t j = 0; j < sz[i]; j++) r.x[r.off[i] + j] = src[i][j];
    r.Rh = Rh;
    if (with_dfinal) r.RC = dfin.C, r.Rn = dfin.n, r.Rm = dfin.m;
    double L0 = ref_loss(&r);
    int bb = r.branch_b;
    /* the C forward's loss against the reference's */
    double Lc = 0;
    for (int64_t j = 0; j < nv; j++) Lc += (double)h[j] * Rh[j];
    if (with_dfinal) {
        for (int64_t j = 0; j < ncs; j++) Lc += (double)fin.C[j] * dfin.C[j];
        for (int64_t j = 0; j < (int64_t)H * D; j++) Lc += (double)fin.n[j] * dfin.n[j];
        for (int j = 0; j < H; j++) Lc += (double)fin.m[j] * dfin.m[j];
    }
    printf("  FD %-34s loss C %.9f ref %.9f; %d of %lld rows in the exp(−m) branch\n", name, Lc, L0,
           bb, (long long)(T * H));
    CHECK(fabs(Lc - L0) <= 1e-5 * (fabs(L0) + 1), "%s: loss %g vs %g", name, Lc, L0);
    const char *hs = getenv("XD_FD_H");
    const double step = hs && *hs ? atof(hs) : 1e-4;
    const char *nm[8] = {"dq", "dk", "dv", "dig", "dfg", "dC0", "dn0", "dm0"};
    for (int i = 0; i < nin; i++) {
        double md = 0, mn = 0;
        int64_t wi = 0;
        for (int64_t j = 0; j < sz[i]; j++) {
            double *xp = r.x + r.off[i] + j, x0 = *xp;
            *xp = x0 + step;
            double lp = ref_loss(&r);
            *xp = x0 - step;
            double lm = ref_loss(&r);
            *xp = x0;
            double num = (lp - lm) / (2 * step), d = fabs(num - g[i][j]);
            if (d > md) md = d, wi = j;
            mn = fabs(num) > mn ? fabs(num) : mn;
        }
        double e = md / (mn > 1e-30 ? mn : 1e-30);
        g_fd_worst = fmax(g_fd_worst, e);
        printf("     %-4s max|fd − analytic| / max|fd| = %.1e  (max|fd| %.2e)\n", nm[i], e, mn);
        CHECK(e <= 1e-5, "FD %s %s: %g at %lld", name, nm[i], e, (long long)wi);
    }
    free(r.x), free(h), free(cache), free(Rh);
    for (int i = 0; i < 5; i++) free(g[i]);
    state_free(&fin), state_free(&dfin), state_free(&dini);
    prob_free(&p);
}

static void test_fd(void) {
    printf("finite differences (float64 parallel form, step 1e-4) vs chunkwise backward "
           "(T=20, H=2, d_φ=8, d_v=4, chunk 8, gates U[−8, 8]):\n");
    const int docs[] = {5, 8, 17}; /* inside a chunk, on a chunk start, inside the last */
    fd_case("one document, no state", NULL, 0, 0, 0, 1e-6f);
    fd_case("init + docs 5,8,17 + dfinal", docs, 3, 1, 1, 1e-6f);
    fd_case("docs 5,8,17 + dfinal", docs, 3, 0, 1, 1e-6f);
    const int doc1[] = {19};
    fd_case("init + doc 19 (last token)", doc1, 1, 1, 1, 1e-6f);
    /* ε = 0.05: h now depends on m visibly (ε·e^{m}), so the m path of the
     * backward (not detached, through the max) is checked for real */
    fd_case("ε=0.05, init + docs 5,8,17 + dfinal", docs, 3, 1, 1, 0.05f);
    printf("  worst FD error %.1e (tolerance 1e-5)\n", g_fd_worst);
}

/* ---- 4. PyTorch --------------------------------------------------------------------- */

static void torch_case(const st_set *s, const char *cs, int has_init) {
    const int64_t T = 70;
    xd_mlstm_cfg c = xd_mlstm_cfg_default(2, 16, 8);
    c.chunk = 16;
    int H = c.H;
    int64_t nq = T * H * c.dphi, nv = T * H * c.dv, ng = T * H, ncs = csz_of(&c);
    char nm[64];
#define GET(var, name, n)                                                 \
    snprintf(nm, sizeof nm, "%s.%s", cs, name);                           \
    float *var = test_st_floats(s, nm, n);                                        \
    CHECK(var != NULL, "fixture tensor %s", nm);                          \
    if (!var) return;
    GET(epsf, "eps", 1) GET(scalef, "scale", 1)
    c.eps = epsf[0], c.scale = scalef[0];
    free(epsf), free(scalef);
    GET(q, "q", nq) GET(k, "k", nq) GET(v, "v", nv) GET(ig, "ig", ng) GET(fg, "fg", ng)
    GET(docf, "doc_start", T) GET(Rh, "Rh", nv) GET(href, "h", nv) GET(dq, "dq", nq)
    GET(dk, "dk", nq) GET(dvr, "dv", nv) GET(dig, "dig", ng) GET(dfg, "dfg", ng)
    int32_t doc[70];
    for (int t = 0; t < T; t++) doc[t] = (int32_t)docf[t];
    xd_mlstm_in in = {q, k, v, ig, fg, doc};
    xd_mlstm_state init = {0}, dinit = {0}, dfin = {0}, fin = state_alloc(&c);
    float *Cf = NULL, *nf = NULL, *mf = NULL, *dC0 = NULL, *dn0 = NULL, *dm0 = NULL;
    if (has_init) {
        GET(C0, "C0", ncs) GET(n0, "n0", (int64_t)H * c.dphi) GET(m0, "m0", H)
        GET(RC, "RC", ncs) GET(Rn, "Rn", (int64_t)H * c.dphi) GET(Rm, "Rm", H)
        GET(Cf_, "Cf", ncs) GET(nf_, "nf", (int64_t)H * c.dphi) GET(mf_, "mf", H)
        GET(dC0_, "dC0", ncs) GET(dn0_, "dn0", (int64_t)H * c.dphi) GET(dm0_, "dm0", H)
        init = (xd_mlstm_state){C0, n0, m0};
        dfin = (xd_mlstm_state){RC, Rn, Rm};
        dinit = state_alloc(&c);
        Cf = Cf_, nf = nf_, mf = mf_, dC0 = dC0_, dn0 = dn0_, dm0 = dm0_;
    }
#undef GET
    float *h = fbuf((size_t)nv), *cache = fbuf((size_t)xd_mlstm_cache_floats(T, &c));
    float *g[5] = {fbuf((size_t)nq), fbuf((size_t)nq), fbuf((size_t)nv), fbuf((size_t)ng),
                   fbuf((size_t)ng)};
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    xd_mlstm_chunk_forward(h, cache, &fin, &in, has_init ? &init : NULL, T, &c);
    xd_mlstm_chunk_backward(&G, has_init ? &dinit : NULL, Rh, has_init ? &dfin : NULL, h, cache,
                            &in, has_init ? &init : NULL, T, &c);
    double eh = row_rel(h, href, T * H, c.dv), eht = tens_rel(h, href, nv);
    printf("  case %s (ε=%g): h rel %.1e (per row) %.1e (tensor)", cs, c.eps, eh, eht);
    CHECK(eh <= 1e-4, "torch %s h: %g", cs, eh);
    const float *ref[5] = {dq, dk, dvr, dig, dfg};
    int64_t sz[5] = {nq, nq, nv, ng, ng};
    const char *gn[5] = {"dq", "dk", "dv", "dig", "dfg"};
    for (int i = 0; i < 5; i++) {
        double e = tens_rel(g[i], ref[i], sz[i]);
        printf(", %s %.1e", gn[i], e);
        CHECK(e <= 1e-4, "torch %s %s: %g", cs, gn[i], e);
    }
    if (has_init) {
        double es = fmax(fmax(tens_rel(fin.C, Cf, ncs), tens_rel(fin.n, nf, (int64_t)H * c.dphi)),
                         tens_rel(fin.m, mf, H));
        double e1 = tens_rel(dinit.C, dC0, ncs), e2 = tens_rel(dinit.n, dn0, (int64_t)H * c.dphi);
        double e3 = tens_rel(dinit.m, dm0, H);
        printf(", final state %.1e, dC0 %.1e, dn0 %.1e, dm0 %.1e", es, e1, e2, e3);
        CHECK(es <= 1e-4 && e1 <= 1e-4 && e2 <= 1e-4 && e3 <= 1e-4, "torch %s state: %g %g %g %g",
              cs, es, e1, e2, e3);
        free(init.C), free(init.n), free(init.m), free(dfin.C), free(dfin.n), free(dfin.m);
        free(Cf), free(nf), free(mf), free(dC0), free(dn0), free(dm0);
        state_free(&dinit);
    }
    printf("\n");
    free(q), free(k), free(v), free(ig), free(fg), free(docf), free(Rh), free(href), free(dq);
    free(dk), free(dvr), free(dig), free(dfg), free(h), free(cache);
    for (int i = 0; i < 5; i++) free(g[i]);
    state_free(&fin);
}

static void test_torch(void) {
    printf("PyTorch float64 parallel form + autograd (T=70, H=2, d_φ=16, d_v=8; chunk 16), "
           "tolerance 1e-4:\n");
    st_set *s = xd_st_open(FIXTURE("mlstm_ref.safetensors"));
    CHECK(s != NULL, "fixture: %s", xd_last_error());
    if (!s) return;
    torch_case(s, "A", 0);
    torch_case(s, "B", 1);
    torch_case(s, "C", 1);
    xd_st_close(s);
}

/* ---- 5. accumulation, NULL gradients, threads ------------------------------------------ */

static void run_bwd(const prob *p, float **g, xd_mlstm_state *dini, const xd_mlstm_state *dfin,
                    const float *dh, float *h, float *cache) {
    xd_mlstm_chunk_forward(h, cache, NULL, &p->in, prob_init(p), p->T, &p->cfg);
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    xd_mlstm_chunk_backward(&G, dini, dh, dfin, h, cache, &p->in, prob_init(p), p->T, &p->cfg);
}

static void test_semantics(void) {
    printf("accumulation, NULL gradients, thread-count independence\n");
    const int docs[] = {30, 64, 99};
    prob p;
    prob_make(&p, 150, 3, 16, 8, 32, -20, 20, docs, 3, 1);
    const xd_mlstm_cfg *c = &p.cfg;
    int64_t T = p.T, nq = T * c->H * c->dphi, nv = T * c->H * c->dv, ng = T * c->H;
    int64_t sz[5] = {nq, nq, nv, ng, ng};
    float *dh = rbuf((size_t)nv, -1, 1), *h = fbuf((size_t)nv), *h2 = fbuf((size_t)nv);
    float *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    float *a[5], *b[5], *n1[5] = {0};
    for (int i = 0; i < 5; i++) a[i] = fbuf((size_t)sz[i]), b[i] = fbuf((size_t)sz[i]);
    xd_mlstm_state da = state_alloc(c), db = state_alloc(c);
    int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    run_bwd(&p, a, &da, NULL, dh, h, cache);
    for (int th = 2; th <= 3; th++) { /* an even and an uneven split of the jobs */
        for (int i = 0; i < 5; i++) memset(b[i], 0, (size_t)sz[i] * sizeof(float));
        memset(db.C, 0, (size_t)csz_of(c) * sizeof(float));
        memset(db.n, 0, (size_t)c->H * c->dphi * sizeof(float));
        memset(db.m, 0, (size_t)c->H * sizeof(float));
        omp_set_num_threads(th);
        run_bwd(&p, b, &db, NULL, dh, h2, cache);
        int same = memcmp(h, h2, (size_t)nv * sizeof(float)) == 0;
        for (int i = 0; i < 5; i++) same &= memcmp(a[i], b[i], (size_t)sz[i] * sizeof(float)) == 0;
        same &= memcmp(da.C, db.C, (size_t)csz_of(c) * sizeof(float)) == 0 &&
                memcmp(da.n, db.n, (size_t)c->H * c->dphi * sizeof(float)) == 0 &&
                memcmp(da.m, db.m, (size_t)c->H * sizeof(float)) == 0;
        CHECK(same, "1 thread and %d threads give different bits", th);
    }
    omp_set_num_threads(nth);
    /* a second backward adds the same again (up to rounding: dq is accumulated in
     * three steps, so x + x is not bit-exact) */
    run_bwd(&p, b, &db, NULL, dh, h2, cache);
    double acc = 0;
    for (int i = 0; i < 5; i++) {
        for (int64_t j = 0; j < sz[i]; j++) a[i][j] *= 2;
        acc = fmax(acc, tens_rel(b[i], a[i], sz[i]));
        for (int64_t j = 0; j < sz[i]; j++) a[i][j] /= 2;
    }
    for (int64_t j = 0; j < csz_of(c); j++) da.C[j] *= 2;
    for (int j = 0; j < c->H; j++) da.m[j] *= 2;
    acc = fmax(acc, fmax(tens_rel(db.C, da.C, csz_of(c)), tens_rel(db.m, da.m, c->H)));
    CHECK(acc <= 1e-6, "backward does not accumulate: %g", acc);
    /* each gradient alone equals its value with all of them */
    for (int i = 0; i < 5; i++) {
        float *only[5] = {0};
        only[i] = fbuf((size_t)sz[i]);
        run_bwd(&p, only, NULL, NULL, dh, h2, cache);
        CHECK(memcmp(only[i], a[i], (size_t)sz[i] * sizeof(float)) == 0,
              "gradient %d alone differs", i);
        free(only[i]);
    }
    run_bwd(&p, n1, NULL, NULL, dh, h2, cache); /* all NULL: nothing to do, no crash */
    for (int i = 0; i < 5; i++) free(a[i]), free(b[i]);
    free(dh), free(h), free(h2), free(cache);
    state_free(&da), state_free(&db);
    prob_free(&p);

    /* T = 0: final = init; backward passes dfinal to dinit */
    prob q;
    prob_make(&q, 0, 2, 8, 4, 8, -1, 1, NULL, 0, 1);
    xd_mlstm_state f = state_alloc(&q.cfg), d = state_alloc(&q.cfg), df = state_alloc(&q.cfg);
    float hz[1];
    xd_mlstm_chunk_forward(hz, NULL, &f, &q.in, &q.init, 0, &q.cfg);
    CHECK(memcmp(f.C, q.init.C, (size_t)csz_of(&q.cfg) * sizeof(float)) == 0 &&
              f.m[1] == q.init.m[1],
          "T=0 final != init");
    df.m[0] = 1.5f;
    xd_mlstm_grads G0 = {0};
    xd_mlstm_chunk_backward(&G0, &d, hz, &df, hz, NULL, &q.in, &q.init, 0, &q.cfg);
    CHECK(d.m[0] == 1.5f, "T=0 dinit.m %g", d.m[0]);
    state_free(&f), state_free(&d), state_free(&df);
    prob_free(&q);
}

/* Thread-count independence again, with sgemms large enough (up to
 * 64×64×128) that OpenBLAS would split them over the threads were they
 * called outside the OpenMP regions; with the Haswell or Zen kernels this
 * check then fails. h, the final state, every input gradient and dinit, bit
 * for bit, 1 thread against 2 and 3 (an even and an uneven split). */
enum { NLARGE = 12 }; /* h, 5 input gradients, dinit C, n, m, final state C, n, m */

static void large_run(float **r, const prob *p, const float *dh, const xd_mlstm_state *dfin,
                      float *cache, int th) {
    const xd_mlstm_cfg *c = &p->cfg;
    xd_mlstm_state dini = {r[6], r[7], r[8]}, fin = {r[9], r[10], r[11]};
    int nth = omp_get_max_threads();
    omp_set_num_threads(th);
    xd_mlstm_chunk_forward(r[0], cache, &fin, &p->in, &p->init, p->T, c);
    xd_mlstm_grads G = {r[1], r[2], r[3], r[4], r[5]};
    xd_mlstm_chunk_backward(&G, &dini, dh, dfin, r[0], cache, &p->in, &p->init, p->T, c);
    omp_set_num_threads(nth);
}

static void test_threads_large(void) {
    const int docs[] = {90};
    prob p;
    prob_make(&p, 200, 2, 128, 64, 64, -8, 8, docs, 1, 1);
    const xd_mlstm_cfg *c = &p.cfg;
    int64_t T = p.T, nq = T * c->H * c->dphi, nv = T * c->H * c->dv, ng = T * c->H;
    int64_t sz[NLARGE] = {nv, nq, nq, nv, ng, ng, csz_of(c), (int64_t)c->H * c->dphi, c->H,
                          csz_of(c), (int64_t)c->H * c->dphi, c->H};
    float *dh = rbuf((size_t)nv, -1, 1), *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    xd_mlstm_state dfin = state_alloc(c);
    for (int64_t x = 0; x < csz_of(c); x++) dfin.C[x] = (float)urand(-0.1, 0.1);
    float *r1[NLARGE], *rt[NLARGE];
    for (int i = 0; i < NLARGE; i++) r1[i] = fbuf((size_t)sz[i]), rt[i] = fbuf((size_t)sz[i]);
    large_run(r1, &p, dh, &dfin, cache, 1);
    int ok = 1;
    for (int th = 2; th <= 3; th++) {
        for (int i = 0; i < NLARGE; i++) memset(rt[i], 0, (size_t)sz[i] * sizeof(float));
        large_run(rt, &p, dh, &dfin, cache, th);
        int same = 1;
        for (int i = 0; i < NLARGE; i++)
            same &= memcmp(r1[i], rt[i], (size_t)sz[i] * sizeof(float)) == 0;
        CHECK(same, "T=200, d_phi=128, d_v=64, chunk 64: 1 and %d threads give different bits",
              th);
        ok &= same;
    }
    printf("thread-count independence, T=200 H=2 d_φ=128 d_v=64 chunk 64 (OpenBLAS kernel %s): "
           "1 vs 2 and 3 threads %s\n", openblas_get_corename(), ok ? "bit-identical" : "DIFFERENT");
    for (int i = 0; i < NLARGE; i++) free(r1[i]), free(rt[i]);
    state_free(&dfin);
    free(dh), free(cache);
    prob_free(&p);
}

/* ---- 6. timing ------------------------------------------------------------------------- */
#ifndef UNDER_SANITIZER /* timings under ASan mean nothing */

static void time_chunk(int64_t T, int H, int dphi, int dv, int L, int reps) {
    prob p;
    prob_make(&p, T, H, dphi, dv, L, -4, 6, NULL, 0, 0);
    const xd_mlstm_cfg *c = &p.cfg;
    int64_t nq = T * H * dphi, nv = T * H * dv, ng = T * H;
    float *h = fbuf((size_t)nv), *dh = rbuf((size_t)nv, -1, 1);
    float *cache = fbuf((size_t)xd_mlstm_cache_floats(T, c));
    float *g[5] = {fbuf((size_t)nq), fbuf((size_t)nq), fbuf((size_t)nv), fbuf((size_t)ng),
                   fbuf((size_t)ng)};
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    double bf = 1e9, bb = 1e9, bp = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        xd_mlstm_chunk_forward(h, cache, NULL, &p.in, NULL, T, c);
        double t1 = omp_get_wtime();
        xd_mlstm_chunk_backward(&G, NULL, dh, NULL, h, cache, &p.in, NULL, T, c);
        double t2 = omp_get_wtime();
        bf = fmin(bf, t1 - t0), bb = fmin(bb, t2 - t1);
    }
    double t0 = omp_get_wtime();
    xd_mlstm_parallel_forward(h, NULL, &p.in, NULL, T, c);
    bp = omp_get_wtime() - t0;
    printf("  timing: chunkwise T=%lld H=%d d_φ=%d d_v=%d L=%d, %d threads: forward %.2f ms, "
           "backward %.2f ms, total %.2f ms (best of %d); parallel form (double) %.0f ms\n",
           (long long)T, H, dphi, dv, L, omp_get_max_threads(), bf * 1e3, bb * 1e3, (bf + bb) * 1e3,
           reps, bp * 1e3);
    for (int i = 0; i < 5; i++) free(g[i]);
    free(h), free(dh), free(cache);
    prob_free(&p);
}
#endif

int main(void) {
    test_agreement();
    test_pieces();
    test_fd();
    test_torch();
    test_semantics();
    test_threads_large();
#ifndef UNDER_SANITIZER
    time_chunk(512, 9, 128, 64, 64, 5);
    if (getenv("XD_MLSTM_BENCH")) {
        time_chunk(512, 9, 128, 64, 32, 5);
        time_chunk(512, 9, 128, 64, 128, 5);
        time_chunk(2048, 9, 128, 64, 64, 3);
    }
#endif
    return test_summary("test_mlstm");
}
