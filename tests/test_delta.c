/* The gated delta rule (src/kernels/delta.h):
 *  1. against PyTorch float64 autograd (tests/ref/make_delta_fixture.py, the rule written
 *     as in the paper with S = Mᵀ and I − βkkᵀ): h, every gradient, the final state and
 *     dinit within 1e-4 relative (max |diff| / max |ref| per tensor). fp32 against fp64
 *     over 70 steps of O(d) sums: ~1e-6 expected;
 *  2. finite differences (central, step 1e-5) of a float64 re-implementation written here
 *     from the per-token form, for every element of every input and of the initial state,
 *     with documents and a loss on the final state, against the backward: 1e-4 relative
 *     per tensor (fp32 backward against fp64 differences, truncation O(h²) ≈ 1e-10);
 *  3. stateful use and exact identities, bit for bit (one code path per token):
 *     forward over T = prefix + rest with the state carried = one call; token by token
 *     with xd_delta_step = one call; the chunk length changes nothing (h, final state and
 *     every gradient); a piece's dinit fed as the previous piece's dfinal gives the
 *     one-call gradients (to rounding: 1e-5);
 *  4. accumulation (+=), NULL gradients, and 1, 2 or 3 threads giving the same bits. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdistill.h"
#include "fixture_util.h"
#include "io/safetensors.h"
#include "kernels/delta.h"
#include "test.h"

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static double urand(double lo, double hi) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) / 9007199254740992.0;
}
static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static float *rbuf(size_t n, double lo, double hi) {
    float *x = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)urand(lo, hi);
    return x;
}
/* Hedgehog-like non-negative features: [softmax(u); softmax(−u)] per row of dphi */
static float *features(int64_t rows, int dphi) {
    float *x = fbuf((size_t)(rows * dphi));
    int half = dphi / 2;
    for (int64_t r = 0; r < rows; r++) {
        double u[256], sp = 0, sm = 0;
        for (int j = 0; j < half; j++) u[j] = urand(-2, 2), sp += exp(u[j]), sm += exp(-u[j]);
        for (int j = 0; j < half; j++) {
            x[r * dphi + j] = (float)(exp(u[j]) / sp);
            x[r * dphi + half + j] = (float)(exp(-u[j]) / sm);
        }
    }
    return x;
}
static double tens_rel(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0 ? md / mb : md;
}
static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* one problem: inputs, doc starts, an initial state, the loss weights */
typedef struct {
    int64_t T;
    xd_mlstm_cfg c;
    float *q, *k, *v, *ig, *fg, *M0, *Rh, *RM;
    int32_t *doc;
    xd_mlstm_in in;
} prob;

static void prob_make(prob *p, int64_t T, int H, int dphi, int dv, int L, const int *docs,
                      int nd, double glo, double ghi) {
    memset(p, 0, sizeof *p);
    p->T = T;
    p->c = xd_mlstm_cfg_default(H, dphi, dv);
    p->c.chunk = L;
    p->q = features(T * H, dphi);
    p->k = features(T * H, dphi);
    p->v = rbuf((size_t)(T * H * dv), -1, 1);
    p->ig = rbuf((size_t)(T * H), glo, ghi);
    p->fg = rbuf((size_t)(T * H), glo, ghi);
    p->M0 = rbuf((size_t)H * dphi * dv, -0.5, 0.5);
    p->Rh = rbuf((size_t)(T * H * dv), -1, 1);
    p->RM = rbuf((size_t)H * dphi * dv, -1, 1);
    p->doc = malloc((size_t)(T ? T : 1) * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        p->doc[t] = t ? p->doc[t - 1] : 0;
        for (int i = 0; i < nd; i++)
            if (docs[i] == t) p->doc[t] = (int32_t)t;
    }
    p->in = (xd_mlstm_in){p->q, p->k, p->v, p->ig, p->fg, p->doc};
}
static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->ig), free(p->fg), free(p->M0), free(p->Rh);
    free(p->RM), free(p->doc);
}

/* ---- 1. PyTorch ------------------------------------------------------------------------ */

static void torch_case(const st_set *s, const char *cs, int has_init) {
    const int64_t T = 70;
    xd_mlstm_cfg c = xd_mlstm_cfg_default(2, 16, 8);
    c.chunk = 16;
    int64_t nq = T * 2 * 16, nv = T * 2 * 8, ng = T * 2, ns = 2 * 16 * 8;
    const char *names[] = {"q", "k", "v", "ig", "fg", "doc_start", "Rh", "h", "dq", "dk",
                           "dv", "dig", "dfg", "M0", "RM", "Mf", "dM0"};
    int64_t sizes[] = {nq, nq, nv, ng, ng, T, nv, nv, nq, nq, nv, ng, ng, ns, ns, ns, ns};
    float *x[17] = {0};
    int nx = has_init ? 17 : 13, ok = 1;
    for (int i = 0; i < nx; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s.%s", cs, names[i]);
        x[i] = test_st_floats(s, nm, sizes[i]);
        CHECK(x[i] != NULL, "fixture tensor %s", nm);
        ok = ok && x[i];
    }
    if (ok) {
        int32_t doc[70];
        for (int t = 0; t < T; t++) doc[t] = (int32_t)x[5][t];
        xd_mlstm_in in = {x[0], x[1], x[2], x[3], x[4], doc};
        float *h = fbuf((size_t)nv), *cache = fbuf((size_t)xd_delta_cache_floats(T, &c));
        float *fin = fbuf((size_t)ns), *dinit = fbuf((size_t)ns), *g[5];
        for (int i = 0; i < 5; i++) g[i] = fbuf((size_t)sizes[i]);
        xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
        const float *init = has_init ? x[13] : NULL;
        CHECK(xd_delta_forward(h, cache, fin, &in, init, T, &c) == 0, "forward");
        CHECK(xd_delta_backward(&G, has_init ? dinit : NULL, x[6], has_init ? x[14] : NULL,
                                cache, &in, init, T, &c) == 0, "backward");
        double e = tens_rel(h, x[7], nv);
        printf("  case %s: h %.1e", cs, e);
        CHECK(e <= 1e-4, "torch %s h: %g", cs, e);
        for (int i = 0; i < 5; i++) {
            e = tens_rel(g[i], x[8 + i], sizes[i]);
            printf(", %s %.1e", names[8 + i], e);
            CHECK(e <= 1e-4, "torch %s %s: %g", cs, names[8 + i], e);
        }
        if (has_init) {
            double ef = tens_rel(fin, x[15], ns), ed = tens_rel(dinit, x[16], ns);
            printf(", final state %.1e, dM0 %.1e", ef, ed);
            CHECK(ef <= 1e-4 && ed <= 1e-4, "torch %s state: %g %g", cs, ef, ed);
        }
        printf("\n");
        free(h), free(cache), free(fin), free(dinit);
        for (int i = 0; i < 5; i++) free(g[i]);
    }
    for (int i = 0; i < nx; i++) free(x[i]);
}

static void test_torch(void) {
    printf("PyTorch float64 + autograd (T=70, H=2, d_φ=16, d_v=8; chunk 16), tolerance 1e-4:\n");
    st_set *s = xd_st_open(FIXTURE("delta_ref.safetensors"));
    CHECK(s != NULL, "fixture: %s", xd_last_error());
    if (!s) return;
    torch_case(s, "A", 0);
    torch_case(s, "B", 1);
    xd_st_close(s);
}

/* ---- 2. finite differences of a float64 re-implementation ---------------------------------- */

/* loss = Σ h·Rh + Σ M_T·RM of the rule per token, in double: S_{t−1}ᵀ = M (d_φ × d_v),
 *   k̂ = k/‖k‖, pred = Mᵀk̂, M ← α(M − k̂ predᵀ·β) + β k̂ vᵀ, h = Mᵀq̂  (α(I − βk̂k̂ᵀ)ᵀ… as
 * the paper's S_t = αS(I − βkkᵀ) + βvkᵀ transposed). */
static double ref_loss(const prob *p, const double *q, const double *k, const double *v,
                       const double *ig, const double *fg, const double *M0) {
    int H = p->c.H, D = p->c.dphi, V = p->c.dv;
    double loss = 0, *M = malloc((size_t)D * V * sizeof(double));
    for (int hh = 0; hh < H; hh++) {
        for (int i = 0; i < D * V; i++) M[i] = M0 ? M0[(size_t)hh * D * V + i] : 0;
        for (int64_t t = 0; t < p->T; t++) {
            if (t > 0 && p->doc[t] == t)
                for (int i = 0; i < D * V; i++) M[i] = 0;
            const double *qt = q + (t * H + hh) * D, *kt = k + (t * H + hh) * D;
            double nq = 1e-6, nk = 1e-6, pred[64] = {0};
            for (int j = 0; j < D; j++) nq += qt[j] * qt[j], nk += kt[j] * kt[j];
            nq = sqrt(nq), nk = sqrt(nk);
            double a = 1 / (1 + exp(-fg[t * H + hh])), b = 1 / (1 + exp(-ig[t * H + hh]));
            for (int j = 0; j < D; j++)
                for (int i = 0; i < V; i++) pred[i] += kt[j] / nk * M[j * V + i];
            for (int j = 0; j < D; j++)
                for (int i = 0; i < V; i++)
                    M[j * V + i] = a * (M[j * V + i] - b * kt[j] / nk * pred[i]) +
                                   b * kt[j] / nk * v[(t * H + hh) * V + i];
            for (int i = 0; i < V; i++) {
                double h = 0;
                for (int j = 0; j < D; j++) h += qt[j] / nq * M[j * V + i];
                loss += h * p->Rh[(t * H + hh) * V + i];
            }
        }
        for (int i = 0; i < D * V; i++) loss += M[i] * p->RM[(size_t)hh * D * V + i];
    }
    free(M);
    return loss;
}

static double *dcopy(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static double g_fd_worst;

static void fd_case(const char *name, const int *docs, int nd) {
    prob p;
    prob_make(&p, 37, 2, 8, 4, 8, docs, nd, -6, 6);
    int64_t T = p.T, nq = T * 2 * 8, nv = T * 2 * 4, ng = T * 2, ns = 2 * 8 * 4;
    float *h = fbuf((size_t)nv), *cache = fbuf((size_t)xd_delta_cache_floats(T, &p.c));
    float *g[6] = {fbuf((size_t)nq), fbuf((size_t)nq), fbuf((size_t)nv), fbuf((size_t)ng),
                   fbuf((size_t)ng), fbuf((size_t)ns)};
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    xd_delta_forward(h, cache, NULL, &p.in, p.M0, T, &p.c);
    xd_delta_backward(&G, g[5], p.Rh, p.RM, cache, &p.in, p.M0, T, &p.c);
    const float *src[6] = {p.q, p.k, p.v, p.ig, p.fg, p.M0};
    int64_t sz[6] = {nq, nq, nv, ng, ng, ns};
    const char *nm[6] = {"q", "k", "v", "ig", "fg", "init"};
    double *d[6];
    for (int i = 0; i < 6; i++) d[i] = dcopy(src[i], sz[i]);
    printf("  %s:", name);
    for (int i = 0; i < 6; i++) {
        float *fd = fbuf((size_t)sz[i]);
        for (int64_t e = 0; e < sz[i]; e++) {
            double x0 = d[i][e], step = 1e-5;
            d[i][e] = x0 + step;
            double lp = ref_loss(&p, d[0], d[1], d[2], d[3], d[4], d[5]);
            d[i][e] = x0 - step;
            double lm = ref_loss(&p, d[0], d[1], d[2], d[3], d[4], d[5]);
            d[i][e] = x0;
            fd[e] = (float)((lp - lm) / (2 * step));
        }
        double err = tens_rel(g[i], fd, sz[i]);
        printf(" d%s %.1e", nm[i], err);
        CHECK(err <= 1e-4, "FD %s d%s: %g", name, nm[i], err);
        g_fd_worst = fmax(g_fd_worst, err);
        free(fd);
    }
    printf("\n");
    for (int i = 0; i < 6; i++) free(d[i]), free(g[i]);
    free(h), free(cache);
    prob_free(&p);
}

static void test_fd(void) {
    printf("finite differences of a float64 re-implementation (T=37, H=2, d_φ=8, d_v=4, "
           "chunk 8, gates U[−6, 6], init + loss on the final state):\n");
    const int one[] = {0}, docs[] = {8, 13, 30};
    fd_case("one document", one, 1);
    fd_case("documents at 8 (a chunk start), 13, 30", docs, 3);
    printf("  worst FD error %.1e (tolerance 1e-4)\n", g_fd_worst);
}

/* ---- 3. pieces, steps, chunk length ------------------------------------------------------ */

static void test_identities(void) {
    printf("pieces, token steps and chunk length (bit for bit)\n");
    const int docs[] = {30, 64, 99};
    prob p;
    prob_make(&p, 150, 3, 32, 16, 64, docs, 3, -8, 8);
    int64_t T = p.T, H = 3, nv = T * H * 16, ns = H * 32 * 16, P = 77;
    float *h1 = fbuf((size_t)nv), *f1 = fbuf((size_t)ns), *h2 = fbuf((size_t)nv);
    float *S = fbuf((size_t)ns);
    xd_delta_forward(h1, NULL, f1, &p.in, p.M0, T, &p.c);
    /* two pieces, the state carried in place */
    memcpy(S, p.M0, (size_t)ns * sizeof(float));
    xd_delta_forward(h2, NULL, S, &p.in, S, P, &p.c);
    xd_mlstm_in rest = {p.q + P * H * 32, p.k + P * H * 32, p.v + P * H * 16, p.ig + P * H,
                        p.fg + P * H, NULL};
    int32_t *doc2 = malloc((size_t)(T - P) * sizeof(int32_t));
    for (int64_t t = P; t < T; t++) doc2[t - P] = p.doc[t] >= P ? p.doc[t] - (int32_t)P : 0;
    rest.doc_start = doc2;
    xd_delta_forward(h2 + P * H * 16, NULL, S, &rest, S, T - P, &p.c);
    CHECK(same_bits(h1, h2, nv) && same_bits(f1, S, ns), "pieces differ from one call");
    /* token steps */
    memcpy(S, p.M0, (size_t)ns * sizeof(float));
    int step_rc = 0;
    for (int64_t t = 0; t < T; t++)
        step_rc |= xd_delta_step(h2 + t * H * 16, S, p.q + t * H * 32, p.k + t * H * 32,
                                 p.v + t * H * 16, p.ig + t * H, p.fg + t * H,
                                 t > 0 && p.doc[t] == t, &p.c);
    CHECK(step_rc == 0, "step: %s", xd_last_error());
    CHECK(same_bits(h1, h2, nv) && same_bits(f1, S, ns), "steps differ from one call");
    /* chunk length: 64 (T not a multiple) vs 7 vs T, forward and backward */
    int Ls[3] = {64, 7, 150};
    float *ref[6] = {0};
    for (int li = 0; li < 3; li++) {
        xd_mlstm_cfg c = p.c;
        c.chunk = Ls[li];
        float *cache = fbuf((size_t)xd_delta_cache_floats(T, &c)), *g[6];
        int64_t sz[6] = {T * H * 32, T * H * 32, nv, T * H, T * H, ns};
        for (int i = 0; i < 6; i++) g[i] = fbuf((size_t)sz[i]);
        xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
        xd_delta_forward(h2, cache, NULL, &p.in, p.M0, T, &c);
        xd_delta_backward(&G, g[5], p.Rh, p.RM, cache, &p.in, p.M0, T, &c);
        CHECK(same_bits(h1, h2, nv), "chunk %d: h differs", Ls[li]);
        for (int i = 0; i < 6; i++) {
            if (li == 0) ref[i] = g[i];
            else {
                CHECK(same_bits(ref[i], g[i], sz[i]), "chunk %d: gradient %d differs", Ls[li], i);
                free(g[i]);
            }
        }
        free(cache);
    }
    /* backward in pieces: the second piece's dinit is the first piece's dfinal */
    {
        float *c1 = fbuf((size_t)xd_delta_cache_floats(P, &p.c));
        float *c2 = fbuf((size_t)xd_delta_cache_floats(T - P, &p.c));
        float *mid = fbuf((size_t)ns), *dmid = fbuf((size_t)ns), *g[6];
        int64_t sz[6] = {T * H * 32, T * H * 32, nv, T * H, T * H, ns};
        for (int i = 0; i < 6; i++) g[i] = fbuf((size_t)sz[i]);
        xd_delta_forward(h2, c1, mid, &p.in, p.M0, P, &p.c);
        xd_delta_forward(h2 + P * H * 16, c2, NULL, &rest, mid, T - P, &p.c);
        xd_mlstm_grads G2 = {g[0] + P * H * 32, g[1] + P * H * 32, g[2] + P * H * 16,
                             g[3] + P * H, g[4] + P * H};
        xd_delta_backward(&G2, dmid, p.Rh + P * H * 16, p.RM, c2, &rest, mid, T - P, &p.c);
        xd_mlstm_grads G1 = {g[0], g[1], g[2], g[3], g[4]};
        xd_delta_backward(&G1, g[5], p.Rh, dmid, c1, &p.in, p.M0, P, &p.c);
        double worst = 0;
        for (int i = 0; i < 6; i++) worst = fmax(worst, tens_rel(g[i], ref[i], sz[i]));
        printf("  backward in two pieces vs one call: %.1e (tolerance 1e-5)\n", worst);
        CHECK(worst <= 1e-5, "backward in pieces: %g", worst);
        for (int i = 0; i < 6; i++) free(g[i]);
        free(c1), free(c2), free(mid), free(dmid);
    }
    for (int i = 0; i < 6; i++) free(ref[i]);
    free(h1), free(f1), free(h2), free(S), free(doc2);
    prob_free(&p);
}

/* ---- 4. accumulation, NULL gradients, threads -------------------------------------------- */

static void run(const prob *p, float **g, float *dinit, float *h, float *cache) {
    xd_mlstm_grads G = {g[0], g[1], g[2], g[3], g[4]};
    xd_delta_forward(h, cache, NULL, &p->in, p->M0, p->T, &p->c);
    xd_delta_backward(&G, dinit, p->Rh, p->RM, cache, &p->in, p->M0, p->T, &p->c);
}

static void test_semantics(void) {
    printf("accumulation, NULL gradients, thread-count independence\n");
    const int docs[] = {40, 100};
    prob p;
    prob_make(&p, 130, 9, 128, 64, 64, docs, 2, -4, 6);
    int64_t T = p.T, H = 9, sz[6] = {T * H * 128, T * H * 128, T * H * 64, T * H, T * H,
                                       H * 128 * 64};
    float *h = fbuf((size_t)(T * H * 64)), *h1 = fbuf((size_t)(T * H * 64));
    float *cache = fbuf((size_t)xd_delta_cache_floats(T, &p.c)), *a[6], *b[6];
    for (int i = 0; i < 6; i++) a[i] = fbuf((size_t)sz[i]), b[i] = fbuf((size_t)sz[i]);
    int nt0 = omp_get_max_threads();
    omp_set_num_threads(1);
    run(&p, a, a[5], h1, cache);
    for (int nt = 2; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        for (int i = 0; i < 6; i++) memset(b[i], 0, (size_t)sz[i] * sizeof(float));
        run(&p, b, b[5], h, cache);
        int same = same_bits(h, h1, T * H * 64);
        for (int i = 0; i < 6; i++) same = same && same_bits(a[i], b[i], sz[i]);
        CHECK(same, "%d threads differ from 1", nt);
    }
    omp_set_num_threads(nt0);
    /* a second backward adds the same again: 2× (exact in binary floating point) */
    float *twice[6];
    for (int i = 0; i < 6; i++) twice[i] = b[i];
    xd_mlstm_grads G = {b[0], b[1], b[2], b[3], b[4]};
    xd_delta_backward(&G, b[5], p.Rh, p.RM, cache, &p.in, p.M0, T, &p.c);
    int acc = 1;
    for (int i = 0; i < 6; i++)
        for (int64_t e = 0; e < sz[i]; e++) acc = acc && twice[i][e] == 2 * a[i][e];
    CHECK(acc, "backward does not accumulate");
    /* NULL gradients: the rest unchanged */
    for (int i = 0; i < 6; i++) memset(b[i], 0, (size_t)sz[i] * sizeof(float));
    xd_mlstm_grads Gv = {NULL, NULL, b[2], NULL, NULL};
    xd_delta_backward(&Gv, NULL, p.Rh, p.RM, cache, &p.in, p.M0, T, &p.c);
    CHECK(same_bits(b[2], a[2], sz[2]), "dv alone differs");
    /* a gradient that is not trivially 0: the test above compares real values */
    double mx = 0;
    for (int64_t e = 0; e < sz[3]; e++) mx = fmax(mx, fabs(a[3][e]));
    CHECK(mx > 1e-3, "dig is ~0 (%g): the problem does not exercise β", mx);
    for (int i = 0; i < 6; i++) free(a[i]), free(b[i]);
    free(h), free(h1), free(cache);
    prob_free(&p);
}

int main(void) {
    test_torch();
    test_fd();
    test_identities();
    test_semantics();
    return test_summary("test_delta");
}
