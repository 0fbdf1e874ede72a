/* The chunkwise mLSTM (mlstm.h): forward and backward.
 *
 * NOTATION, per head, for one chunk of n ≤ L tokens (local rows i, columns
 * j), entered with the state (C_c, n_c, m_c) (the initial state for chunk 0,
 * "no state" when there is none):
 *   lf_r = logsigmoid(f̃_r),  g_i = Σ_{r≤i} lf_r  (local, inclusive, double)
 *   a_ij = g_i − g_j + ĩ_j   for j visible from i (doc(i) ≤ j ≤ i)
 *   a_iˢ = g_i + m_c         the state's log weight, for rows that see it
 *                            (their document started before the chunk)
 *   m_i  = max(max_j a_ij, a_iˢ) = g_i + Mx_i,  Mx_i = max(max_j B_j, m_c),
 *          B_j = ĩ_j − g_j   (so W below needs no difference of large g's)
 *   W_ij = exp(a_ij − m_i) = exp(B_j − Mx_i),  wˢ_i = exp(m_c − Mx_i)
 *   S_ij = s·q_i·k_j,  P_ij = S_ij·W_ij
 *   num_i = Σ_j P_ij v_j + wˢ_i·s·q_iᵀC_c,  Z_i = Σ_j P_ij + wˢ_i·s·q_i·n_c
 *   den_i = max(|Z_i|, e^{−m_i}) + ε,  h_i = num_i / den_i
 * This is the parallel form (mlstm.h) with all earlier tokens folded into the
 * state. The state leaving the chunk is that of its last row e, with
 * m_{c+1} = fl32(m_e) (the value stored; any m is exact up to ε, and using
 * the stored value everywhere keeps the chunks consistent):
 *   Wᵒ_j = exp(a_ej − m_{c+1}),  wˢᵒ = exp(a_eˢ − m_{c+1})
 *   C_{c+1} = Σ_j Wᵒ_j k_j v_jᵀ + wˢᵒ C_c,  n_{c+1} = Σ_j Wᵒ_j k_j + wˢᵒ n_c.
 *
 * BACKWARD (dh_i given; dC, dn, dm of the state leaving the chunk given by
 * the chunk after it, or by dfinal):
 *   dnum_i = dh_i/den_i,  dden_i = −dh_i·h_i/den_i
 *   branch |Z_i| ≥ e^{−m_i}:  dZ_i = dden_i·sign(Z_i);  else dZ_i = 0 and
 *     dden_i reaches m_i through e^{−m_i}.
 *   dP_ij = dnum_i·v_j + dZ_i,  dv_j += Σ_i P_ij dnum_i
 *   dS_ij = dP_ij W_ij:  dq_i += s Σ_j dS_ij k_j,  dk_j += s Σ_i dS_ij q_i
 *   da_ij = dP_ij P_ij   (W = exp(a − m): ∂W/∂a = W)
 *   state:  dwˢ_i = s·q_iᵀC_c·dnum_i + s·q_i·n_c·dZ_i,  daˢ_i = wˢ_i dwˢ_i
 *           dq_i += s wˢ_i (C_c dnum_i + n_c dZ_i)
 *           dC_c += s Σ_i wˢ_i q_i dnum_iᵀ,  dn_c += s Σ_i wˢ_i dZ_i q_i
 *   m_i: the total derivative of h_i w.r.t. m_i (through every W_ij, wˢ_i
 *     and the e^{−m_i} branch) is exactly
 *         dm_i = −dnum_i·num_i − dZ_i·Z_i + [branch B]·(−dden_i e^{−m_i})
 *              = −ε·(dh_i·h_i)/den_i          (both branches: den − max = ε)
 *     which we use in closed form (no cancellation). m_i = max(...) passes
 *     dm_i to the argmax: da_{i,am} += dm_i (or daˢ_i when the state wins).
 *   leaving state, with dC, dn, dm given:
 *     dmᵗ = dm − ⟨C_{c+1}, dC⟩ − n_{c+1}·dn   (C_{c+1}, n_{c+1} ∝ e^{−m_{c+1}}),
 *       passed to the argmax of row e (m_{c+1} = m_e);
 *     daᵒ_j = Wᵒ_j (k_jᵀ dC v_j + k_j·dn),  dk_j += Wᵒ_j (dC v_j + dn),
 *     dv_j += Wᵒ_j dCᵀk_j,  daˢᵒ = wˢᵒ (⟨C_c, dC⟩ + n_c·dn),
 *     dC_c += wˢᵒ dC,  dn_c += wˢᵒ dn.
 *   gates: a_ij = g_i − g_j + ĩ_j and a_iˢ = g_i + m_c give
 *     dĩ_j += Σ_i da_ij (incl. daᵒ_j),  dg_i = Σ_j da_ij + daˢ_i − Σ_i' da_i'i
 *     (row e also gets Σ_j daᵒ_j + daˢᵒ),  dm_c = Σ_i daˢ_i + daˢᵒ,
 *     dlf_r = Σ_{i≥r} dg_i,  df̃_r += dlf_r·σ(−f̃_r).
 *
 * ORGANISATION. Forward: (1) per head, sequentially over chunks, the states
 * entering every chunk (one dφ×n×dv sgemm each) go to the cache; (2) every
 * (head, chunk) in parallel: S (sgemm), W, P·V (sgemm), the state term
 * (sgemm), den. Backward: (1) per head, backwards over chunks, dC_c, dn_c,
 * dm_c (two n×dφ×dv sgemms each; only per-row scalars of the intra-chunk
 * part are needed for them); (2) every (head, chunk) in parallel: recompute
 * S and W, then dP, dv, dq, dk (five sgemms) plus the state terms and the
 * gate gradients. Memory: the cache (states per chunk, two floats per
 * token·head) and per-chunk dC in the backward; O(L²) scratch per thread.
 * Each output element has one writer and a fixed summation order, and every
 * sgemm (its shape fixed by the chunk) is called inside an active OpenMP
 * region (no if clause), where OpenBLAS's OpenMP build runs it on the
 * calling thread (a top-level sgemm split over the threads may round
 * differently: hybrid_ops.c): results do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mlstm.h"
#include "vmath.h"

typedef struct {
    int H, dphi, dv, L, has_init;
    float s, eps;
    int64_t T, nch, qs, vs, csz; /* tokens, chunks, row strides, dphi·dv */
} dims;

static dims make_dims(int64_t T, const xd_mlstm_cfg *cfg, int has_init) {
    dims d;
    d.H = cfg->H, d.dphi = cfg->dphi, d.dv = cfg->dv;
    d.L = cfg->chunk > 0 ? cfg->chunk : 64;
    d.s = cfg->scale, d.eps = cfg->eps, d.has_init = has_init;
    d.T = T, d.nch = T > 0 ? (T + d.L - 1) / d.L : 0;
    d.qs = (int64_t)d.H * d.dphi, d.vs = (int64_t)d.H * d.dv, d.csz = (int64_t)d.dphi * d.dv;
    return d;
}

int64_t xd_mlstm_cache_floats(int64_t T, const xd_mlstm_cfg *cfg) {
    dims d = make_dims(T, cfg, 0);
    return (d.nch + 1) * d.H * (d.csz + d.dphi + 1) + 2 * T * d.H;
}

/* the cache: Cs [nch+1][H][dphi][dv], ns [nch+1][H][dphi], ms [nch+1][H]
 * (the state entering chunk c; c = nch: the final state), den [T][H],
 * zsel [T][H] (sign(Z) in the |Z| branch, 0 in the e^{−m} branch). */
typedef struct {
    float *C, *n, *m, *den, *zsel;
} cache_t;

static cache_t cache_at(float *buf, const dims *d) {
    cache_t c;
    c.C = buf;
    c.n = c.C + (d->nch + 1) * d->H * d->csz;
    c.m = c.n + (d->nch + 1) * d->H * d->dphi;
    c.den = c.m + (d->nch + 1) * d->H;
    c.zsel = c.den + d->T * d->H;
    return c;
}

static inline double log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/* e^x for x ≤ 0 (the weights: a log weight minus the max; x may exceed 0 by
 * rounding, ~1e-6, which is fine), vectorisable:
 * x = n·ln2 + r with n = round(x·log2 e) (the 1.5·2^23 rounding trick),
 * ln2 split in two so that n·ln2_hi is exact, |r| ≤ ln2/2; e^r by its
 * Taylor polynomial to degree 7 (truncation ≤ 0.3466^8/8! = 5.3e-9), 2^n
 * from the exponent bits. Max relative error 7.9e-8 on [−87, 0], measured on
 * a 1e-5 grid (libm expf: 6.0e-8). Below −87 (weight < 1.6e-38): 0. */
static inline float exp_neg(float x) {
    const float log2e = 1.442695041f, ln2_hi = 0.693145751953125f, ln2_lo = 1.428606820e-6f;
    const float round_magic = 12582912.0f; /* 1.5·2^23 */
    float xc = x < -87.0f ? -87.0f : x;
    float n = (xc * log2e + round_magic) - round_magic;
    float r = (xc - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return x < -87.0f ? 0.0f : p * two_n;
}

/* Σ a in double, in 8 fixed lanes (as xd_dot_lanes) */
static double sum_f(const float *a, int64_t n) {
    double l[8] = {0}, s = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += a[i + j];
    for (; i < n; i++) s += a[i];
    return s + (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])));
}

/* ---- gates of one chunk ---------------------------------------------------- */

typedef struct {
    double *g, *B, *Mx, *m; /* [L] */
    float *ws;              /* [L] wˢ_i (0 for rows that do not see the state) */
    int *am, *d0, *sees;    /* [L] argmax column (−1: the state), first visible column */
} gates_t;

static size_t gates_bytes(int L) {
    return (size_t)L * (4 * sizeof(double) + sizeof(float) + 3 * sizeof(int));
}

static gates_t gates_at(void *p, int L) {
    gates_t G;
    G.g = p, G.B = G.g + L, G.Mx = G.B + L, G.m = G.Mx + L;
    G.ws = (float *)(G.m + L);
    G.am = (int *)(G.ws + L), G.d0 = G.am + L, G.sees = G.d0 + L;
    return G;
}

/* Gates of chunk c (tokens t0 … t0+n−1) of head h. The state is valid for
 * c > 0 or with an initial state; mc is its m. Returns the number of rows. */
static int chunk_gates(gates_t *G, const dims *d, const xd_mlstm_in *in, int h, int64_t c,
                       double mc) {
    int64_t t0 = c * d->L;
    int n = (int)(d->T - t0 < d->L ? d->T - t0 : d->L);
    int st_valid = c > 0 || d->has_init;
    double g = 0, M = -INFINITY;
    int amM = -1, prev = -1;
    for (int i = 0; i < n; i++) {
        int64_t t = t0 + i, ds = in->doc_start ? in->doc_start[t] : 0;
        if (ds < 0) ds = 0;
        if (ds > t) ds = t;
        g += log_sigmoid(in->fg[t * d->H + h]);
        G->g[i] = g;
        G->B[i] = (double)in->ig[t * d->H + h] - g;
        int d0 = ds > t0 ? (int)(ds - t0) : 0;
        G->d0[i] = d0;
        G->sees[i] = st_valid && (ds < t0 || ds == 0);
        if (d0 == prev) {
            if (G->B[i] > M) M = G->B[i], amM = i;
        } else { /* a document starts inside the chunk: rescan */
            M = -INFINITY;
            for (int j = d0; j <= i; j++)
                if (G->B[j] > M) M = G->B[j], amM = j;
            prev = d0;
        }
        double mx = M;
        int am = amM;
        if (G->sees[i] && mc > mx) mx = mc, am = -1;
        G->Mx[i] = mx;
        G->am[i] = am;
        G->m[i] = g + mx;
        G->ws[i] = G->sees[i] ? (float)exp(mc - mx) : 0.0f;
    }
    return n;
}

/* W_ij = exp(B_j − Mx_i) on the visible entries of row i, 0 elsewhere. */
static void build_W(float *W, const gates_t *G, int n) {
    for (int i = 0; i < n; i++) {
        float *row = W + (int64_t)i * n;
        int d0 = G->d0[i];
        double mx = G->Mx[i];
        for (int j = 0; j < d0; j++) row[j] = 0;
        for (int j = d0; j <= i; j++) row[j] = exp_neg((float)(G->B[j] - mx));
        for (int j = i + 1; j < n; j++) row[j] = 0;
    }
}

static int any_sees(const gates_t *G, int n) {
    for (int i = 0; i < n; i++)
        if (G->sees[i]) return 1;
    return 0;
}

/* ---- forward ----------------------------------------------------------------- */

/* Phase 1 for head h: the states entering chunks 1 … nch from the one
 * entering chunk 0 (already in the cache). Kw: [L][dphi] scratch. */
static void fwd_states(const dims *d, const cache_t *cc, const xd_mlstm_in *in, int h,
                       gates_t *G, float *Kw) {
    for (int64_t c = 0; c < d->nch; c++) {
        int64_t t0 = c * d->L, sc = c * d->H + h, sn = (c + 1) * d->H + h;
        double mc = cc->m[sc];
        int n = chunk_gates(G, d, in, h, c, mc), e = n - 1, j0 = G->d0[e], nn = n - j0;
        float mf = (float)G->m[e];
        double ge_mf = G->g[e] - (double)mf;
        float wso = G->sees[e] ? (float)exp(mc + ge_mf) : 0.0f;
        const float *Cc = cc->C + sc * d->csz, *nc = cc->n + sc * d->dphi;
        float *Cn = cc->C + sn * d->csz, *nN = cc->n + sn * d->dphi;
        cc->m[sn] = mf;
        for (int64_t x = 0; x < d->csz; x++) Cn[x] = wso * Cc[x]; /* wso = 0 clears */
        for (int x = 0; x < d->dphi; x++) nN[x] = wso * nc[x];
        for (int j = 0; j < nn; j++) {
            float w = exp_neg((float)(G->B[j0 + j] + ge_mf));
            const float *kj = in->k + (t0 + j0 + j) * d->qs + (int64_t)h * d->dphi;
            float *kw = Kw + (int64_t)j * d->dphi;
            for (int x = 0; x < d->dphi; x++) {
                kw[x] = w * kj[x];
                nN[x] += kw[x];
            }
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d->dphi, d->dv, nn, 1.0f, Kw,
                    d->dphi, in->v + (t0 + j0) * d->vs + (int64_t)h * d->dv, (int)d->vs, 1.0f,
                    Cn, d->dv);
    }
}

/* Phase 2 for (head h, chunk c): h rows, den, zsel. S: [L][L], Qw: [L][dphi]. */
static void fwd_chunk(float *hout, const dims *d, const cache_t *cc, const xd_mlstm_in *in, int h,
                      int64_t c, gates_t *G, float *S, float *Qw, double *Z) {
    int64_t t0 = c * d->L, sc = c * d->H + h;
    int n = chunk_gates(G, d, in, h, c, cc->m[sc]);
    const float *Q = in->q + t0 * d->qs + (int64_t)h * d->dphi;
    const float *K = in->k + t0 * d->qs + (int64_t)h * d->dphi;
    const float *V = in->v + t0 * d->vs + (int64_t)h * d->dv;
    float *Ho = hout + t0 * d->vs + (int64_t)h * d->dv;
    float *W = S + (int64_t)n * n; /* second L×L block */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d->dphi, d->s, Q, (int)d->qs, K,
                (int)d->qs, 0.0f, S, n);
    build_W(W, G, n);
    for (int i = 0; i < n; i++) {
        float *srow = S + (int64_t)i * n;
        const float *wrow = W + (int64_t)i * n;
        for (int j = 0; j < n; j++) srow[j] *= wrow[j]; /* P */
        Z[i] = sum_f(srow, n);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d->dv, n, 1.0f, S, n, V, (int)d->vs,
                0.0f, Ho, (int)d->vs);
    if (any_sees(G, n)) {
        const float *Cc = cc->C + sc * d->csz, *nc = cc->n + sc * d->dphi;
        for (int i = 0; i < n; i++) {
            float w = d->s * G->ws[i];
            const float *qi = Q + (int64_t)i * d->qs;
            float *qw = Qw + (int64_t)i * d->dphi;
            for (int x = 0; x < d->dphi; x++) qw[x] = w * qi[x];
            Z[i] += xd_dot_lanes(qw, nc, d->dphi);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d->dv, d->dphi, 1.0f, Qw,
                    d->dphi, Cc, d->dv, 1.0f, Ho, (int)d->vs);
    }
    for (int i = 0; i < n; i++) {
        int64_t th = (t0 + i) * d->H + h;
        double em = exp(-G->m[i]), az = fabs(Z[i]);
        double den = (az >= em ? az : em) + d->eps;
        cc->den[th] = (float)den;
        cc->zsel[th] = az >= em ? (Z[i] >= 0 ? 1.0f : -1.0f) : 0.0f;
        float inv = (float)(1.0 / den);
        float *hr = Ho + (int64_t)i * d->vs;
        for (int x = 0; x < d->dv; x++) hr[x] *= inv;
    }
}

static void copy_state_in(const cache_t *cc, const dims *d, const xd_mlstm_state *init) {
    if (init) {
        memcpy(cc->C, init->C, (size_t)(d->H * d->csz) * sizeof(float));
        memcpy(cc->n, init->n, (size_t)d->H * d->dphi * sizeof(float));
        memcpy(cc->m, init->m, (size_t)d->H * sizeof(float));
    } else {
        memset(cc->C, 0, (size_t)(d->H * d->csz) * sizeof(float));
        memset(cc->n, 0, (size_t)d->H * d->dphi * sizeof(float));
        memset(cc->m, 0, (size_t)d->H * sizeof(float));
    }
}

int xd_mlstm_chunk_forward(float *h, float *cache, xd_mlstm_state *final, const xd_mlstm_in *in,
                           const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg) {
    dims d = make_dims(T, cfg, init != NULL);
    float *own = NULL;
    if (!cache) {
        own = malloc((size_t)xd_mlstm_cache_floats(T, cfg) * sizeof(float));
        if (!own) return xd_err("mLSTM forward: out of memory for the chunk states (T=%lld)",
                                (long long)T);
        cache = own;
    }
    cache_t cc = cache_at(cache, &d);
    copy_state_in(&cc, &d, init);
    int L = d.L, fail = 0;
    size_t fl = (size_t)2 * L * L + (size_t)L * d.dphi;
#pragma omp parallel
    {
        char *scr = malloc(fl * sizeof(float) + (size_t)L * sizeof(double) + gates_bytes(L));
        if (!scr) {
#pragma omp atomic write
            fail = 1;
        }
        float *S = (float *)scr, *Qw = S + (size_t)2 * L * L;
        double *Z = (double *)(Qw + (size_t)L * d.dphi);
        gates_t G = gates_at(Z + L, L);
#pragma omp for schedule(dynamic)
        for (int hh = 0; hh < d.H; hh++)
            if (scr) fwd_states(&d, &cc, in, hh, &G, Qw);
#pragma omp for schedule(dynamic)
        for (int64_t job = 0; job < d.H * d.nch; job++) /* the long chunks first: all equal */
            if (scr) fwd_chunk(h, &d, &cc, in, (int)(job % d.H), job / d.H, &G, S, Qw, Z);
        free(scr);
    }
    if (!fail && final) {
        int64_t o = d.nch * d.H;
        if (T == 0 && !init) { /* nothing seen: the zero state */
            memset(final->C, 0, (size_t)(d.H * d.csz) * sizeof(float));
            memset(final->n, 0, (size_t)d.H * d.dphi * sizeof(float));
            memset(final->m, 0, (size_t)d.H * sizeof(float));
        } else {
            memmove(final->C, cc.C + o * d.csz, (size_t)(d.H * d.csz) * sizeof(float));
            memmove(final->n, cc.n + o * d.dphi, (size_t)d.H * d.dphi * sizeof(float));
            memmove(final->m, cc.m + o, (size_t)d.H * sizeof(float));
        }
    }
    free(own);
    return fail ? xd_err("mLSTM forward: out of memory for scratch") : 0;
}

/* ---- backward ------------------------------------------------------------------ */

typedef struct {
    float *dC, *dn;   /* [nch+1][H][dphi][dv], [nch+1][H][dphi]: ∂/∂ the state entering c */
    double *dmg;      /* [nch+1][H] ∂/∂m_c as used by chunk c (and later) */
    double *dmt;      /* [nch+1][H] total, incl. C_c, n_c ∝ e^{−m_c} */
    double *das;      /* [T][H] daˢ_i incl. the m routing */
    double *daso;     /* [nch][H] daˢᵒ incl. the m routing */
} bwd_t;

/* per-row backward scalars: dnum (n×dv, compact), hd = dh·h, dZ, dm */
static void row_grads(float *dnum, double *dZ, double *dm, const dims *d, const cache_t *cc,
                      const float *dh, const float *hout, int h, int64_t t0, int n) {
    for (int i = 0; i < n; i++) {
        int64_t th = (t0 + i) * d->H + h, o = (t0 + i) * d->vs + (int64_t)h * d->dv;
        double den = cc->den[th], hd = xd_dot_lanes(dh + o, hout + o, d->dv);
        const float *dhr = dh + o;
        float *dr = dnum + (int64_t)i * d->dv, inv = (float)(1.0 / den);
        for (int x = 0; x < d->dv; x++) dr[x] = dhr[x] * inv;
        dZ[i] = -hd / den * cc->zsel[th];
        dm[i] = -(double)d->eps * hd / den;
    }
}


/* Phase 1 for head h: dC, dn, dm of every chunk's entering state, and the
 * state parts daˢ, daˢᵒ of the gate gradients. scr: 3·L·dv floats + 2·L doubles. */
static void bwd_states(const dims *d, const cache_t *cc, const bwd_t *bw, const xd_mlstm_in *in,
                       const float *dh, const float *hout, int h, gates_t *G, float *dnum,
                       float *R, float *D, double *dZ, double *dm) {
    for (int64_t c = d->nch - 1; c >= 0; c--) {
        int64_t t0 = c * d->L, sc = c * d->H + h, sn = (c + 1) * d->H + h;
        double mc = cc->m[sc];
        int n = chunk_gates(G, d, in, h, c, mc), e = n - 1;
        const float *Q = in->q + t0 * d->qs + (int64_t)h * d->dphi;
        const float *Cc = cc->C + sc * d->csz, *nc = cc->n + sc * d->dphi;
        const float *dCn = bw->dC + sn * d->csz, *dnn = bw->dn + sn * d->dphi;
        float *dCc = bw->dC + sc * d->csz, *dnc = bw->dn + sc * d->dphi;
        if (!(c > 0 || d->has_init)) { /* no state entering chunk 0 */
            for (int i = 0; i < n; i++) bw->das[(t0 + i) * d->H + h] = 0;
            bw->daso[sc] = 0;
            continue;
        }
        row_grads(dnum, dZ, dm, d, cc, dh, hout, h, t0, n);
        double ge_mf = G->g[e] - (double)cc->m[sn];
        double wso = G->sees[e] ? (float)exp(mc + ge_mf) : 0.0;
        /* R = s·Q C_c;  daˢ_i = wˢ_i (R_i·dnum_i + s q_i·n_c dZ_i)
         * (+ dm_i when the state is the max) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d->dv, d->dphi, d->s, Q,
                    (int)d->qs, Cc, d->dv, 0.0f, R, d->dv);
        double sum_das = 0;
        for (int x = 0; x < d->dphi; x++) dnc[x] = (float)wso * dnn[x];
        for (int i = 0; i < n; i++) {
            const float *qi = Q + (int64_t)i * d->qs;
            double ws = G->ws[i], das = 0;
            if (ws != 0) {
                double y = d->s * xd_dot_lanes(qi, nc, d->dphi);
                das = ws * (xd_dot_lanes(R + (int64_t)i * d->dv, dnum + (int64_t)i * d->dv, d->dv) +
                            y * dZ[i]);
                float wz = (float)(d->s * ws * dZ[i]);
                for (int x = 0; x < d->dphi; x++) dnc[x] += wz * qi[x];
            }
            if (G->am[i] < 0) das += dm[i];
            bw->das[(t0 + i) * d->H + h] = das;
            sum_das += das;
            float w = (float)(d->s * ws);
            float *Di = D + (int64_t)i * d->dv;
            const float *dni = dnum + (int64_t)i * d->dv;
            for (int x = 0; x < d->dv; x++) Di[x] = w * dni[x];
        }
        /* dC_c = s Σ wˢ_i q_i dnum_iᵀ + wˢᵒ dC_{c+1} */
        for (int64_t x = 0; x < d->csz; x++) dCc[x] = (float)wso * dCn[x];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d->dphi, d->dv, n, 1.0f, Q,
                    (int)d->qs, D, d->dv, 1.0f, dCc, d->dv);
        double daso = wso * (xd_dot_lanes(Cc, dCn, d->csz) + xd_dot_lanes(nc, dnn, d->dphi));
        if (G->am[e] < 0) daso += bw->dmt[sn];
        bw->daso[sc] = daso;
        bw->dmg[sc] = sum_das + daso;
        bw->dmt[sc] = bw->dmg[sc] - xd_dot_lanes(Cc, dCc, d->csz) - xd_dot_lanes(nc, dnc, d->dphi);
    }
}

/* Phase 2 for (head h, chunk c). */
typedef struct {
    float *S, *W, *dP, *dnum, *D, *KdC, *VdC;
    double *dZ, *dm, *rs, *dao, *cs;
} bscr_t;

static void bwd_chunk(const xd_mlstm_grads *gr, const dims *d, const cache_t *cc, const bwd_t *bw,
                      int has_dout, const xd_mlstm_in *in, const float *dh, const float *hout,
                      int h, int64_t c, gates_t *G, const bscr_t *b) {
    int64_t t0 = c * d->L, sc = c * d->H + h, sn = (c + 1) * d->H + h;
    double mc = cc->m[sc];
    int n = chunk_gates(G, d, in, h, c, mc), e = n - 1;
    int64_t qo = t0 * d->qs + (int64_t)h * d->dphi, vo = t0 * d->vs + (int64_t)h * d->dv;
    const float *Q = in->q + qo, *K = in->k + qo, *V = in->v + vo;
    float *S = b->S, *W = b->W, *dP = b->dP, *dnum = b->dnum;
    int want_gates = gr->ig || gr->fg;
    row_grads(dnum, b->dZ, b->dm, d, cc, dh, hout, h, t0, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d->dphi, d->s, Q, (int)d->qs, K,
                (int)d->qs, 0.0f, S, n);
    build_W(W, G, n);
    for (int64_t x = 0; x < (int64_t)n * n; x++) S[x] *= W[x]; /* P */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d->dv, 1.0f, dnum, d->dv, V,
                (int)d->vs, 0.0f, dP, n);
    if (gr->v)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d->dv, n, 1.0f, S, n, dnum, d->dv,
                    1.0f, gr->v + vo, (int)d->vs);
    /* dS = (dP + dZ)·W into W, da = (dP + dZ)·P into dP */
    for (int i = 0; i < n; i++) {
        float *w = W + (int64_t)i * n, *p = S + (int64_t)i * n, *dp = dP + (int64_t)i * n;
        float z = (float)b->dZ[i];
        for (int j = 0; j < n; j++) {
            float g = dp[j] + z;
            dp[j] = g * p[j];
            w[j] = g * w[j];
        }
    }
    if (gr->q)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d->dphi, n, d->s, W, n, K,
                    (int)d->qs, 1.0f, gr->q + qo, (int)d->qs);
    if (gr->k)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d->dphi, n, d->s, W, n, Q,
                    (int)d->qs, 1.0f, gr->k + qo, (int)d->qs);
    /* the entering state's term: dq_i += s wˢ_i (C_c dnum_i + n_c dZ_i) */
    if (gr->q && any_sees(G, n)) {
        const float *Cc = cc->C + sc * d->csz, *nc = cc->n + sc * d->dphi;
        for (int i = 0; i < n; i++) {
            float w = G->ws[i];
            for (int x = 0; x < d->dv; x++)
                b->D[(int64_t)i * d->dv + x] = w * dnum[(int64_t)i * d->dv + x];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d->dphi, d->dv, d->s, b->D, d->dv,
                    Cc, d->dv, 1.0f, gr->q + qo, (int)d->qs);
        for (int i = 0; i < n; i++) {
            float wz = (float)(d->s * G->ws[i] * b->dZ[i]);
            float *dq = gr->q + qo + (int64_t)i * d->qs;
            for (int x = 0; x < d->dphi; x++) dq[x] += wz * nc[x];
        }
    }
    /* the leaving state's term (rows j0 … e of row e's document) */
    int j0 = G->d0[e], nn = n - j0;
    for (int j = 0; j < n; j++) b->dao[j] = 0;
    if (has_dout) {
        const float *dCn = bw->dC + sn * d->csz, *dnn = bw->dn + sn * d->dphi;
        double ge_mf = G->g[e] - (double)cc->m[sn];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, d->dv, d->dphi, 1.0f,
                    K + (int64_t)j0 * d->qs, (int)d->qs, dCn, d->dv, 0.0f, b->KdC, d->dv);
        if (gr->k)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nn, d->dphi, d->dv, 1.0f,
                        V + (int64_t)j0 * d->vs, (int)d->vs, dCn, d->dv, 0.0f, b->VdC, d->dphi);
        for (int jj = 0; jj < nn; jj++) {
            int j = j0 + jj;
            float wo = exp_neg((float)(G->B[j] + ge_mf));
            const float *kj = K + (int64_t)j * d->qs, *vj = V + (int64_t)j * d->vs;
            const float *kdc = b->KdC + (int64_t)jj * d->dv;
            b->dao[j] = wo * (xd_dot_lanes(kdc, vj, d->dv) + xd_dot_lanes(kj, dnn, d->dphi));
            if (gr->v) {
                float *dv = gr->v + vo + (int64_t)j * d->vs;
                for (int x = 0; x < d->dv; x++) dv[x] += wo * kdc[x];
            }
            if (gr->k) {
                float *dk = gr->k + qo + (int64_t)j * d->qs;
                const float *vdc = b->VdC + (int64_t)jj * d->dphi;
                for (int x = 0; x < d->dphi; x++) dk[x] += wo * (vdc[x] + dnn[x]);
            }
        }
        if (G->am[e] >= 0) b->dao[G->am[e]] += bw->dmt[sn];
    }
    if (!want_gates) return;
    /* row and column sums of da (with the m routing), in double:
     *   dĩ_j = cs_j,  dg_i = rs_i − cs_i */
    double *rs = b->rs, *cs = b->cs;
    for (int j = 0; j < n; j++) cs[j] = b->dao[j];
    for (int i = 0; i < n; i++) {
        const float *da = dP + (int64_t)i * n;
        int d0 = G->d0[i];
        for (int j = d0; j <= i; j++) cs[j] += da[j];
        double r = sum_f(da + d0, i - d0 + 1) + bw->das[(t0 + i) * d->H + h];
        if (G->am[i] >= 0) { /* da_{i,am} += dm_i */
            r += b->dm[i];
            cs[G->am[i]] += b->dm[i];
        }
        rs[i] = r;
    }
    double rowe = bw->daso[sc];
    for (int j = 0; j < n; j++) rowe += b->dao[j];
    rs[e] += rowe;
    if (gr->ig)
        for (int j = 0; j < n; j++) gr->ig[(t0 + j) * d->H + h] += (float)cs[j];
    if (gr->fg) {
        double suf = 0;
        for (int r = n - 1; r >= 0; r--) {
            suf += rs[r] - cs[r];
            double f = in->fg[(t0 + r) * d->H + h];
            gr->fg[(t0 + r) * d->H + h] += (float)(suf / (1.0 + exp(f)));
        }
    }
}

int xd_mlstm_chunk_backward(const xd_mlstm_grads *g, xd_mlstm_state *dinit, const float *dh,
                            const xd_mlstm_state *dfinal, const float *h, const float *cache,
                            const xd_mlstm_in *in, const xd_mlstm_state *init, int64_t T,
                            const xd_mlstm_cfg *cfg) {
    dims d = make_dims(T, cfg, init != NULL);
    if (T <= 0) {
        if (dinit && init && dfinal) {
            for (int64_t x = 0; x < d.H * d.csz; x++) dinit->C[x] += dfinal->C[x];
            for (int64_t x = 0; x < (int64_t)d.H * d.dphi; x++) dinit->n[x] += dfinal->n[x];
            for (int x = 0; x < d.H; x++) dinit->m[x] += dfinal->m[x];
        }
        return 0;
    }
    cache_t cc = cache_at((float *)cache, &d);
    bwd_t bw;
    int64_t ns = (d.nch + 1) * d.H;
    bw.dC = malloc((size_t)(ns * d.csz + ns * d.dphi) * sizeof(float));
    bw.dmg = malloc((size_t)(3 * ns + T * d.H) * sizeof(double));
    if (!bw.dC || !bw.dmg) {
        free(bw.dC), free(bw.dmg);
        return xd_err("mLSTM backward: out of memory for the state gradients (T=%lld)",
                      (long long)T);
    }
    bw.dn = bw.dC + ns * d.csz;
    bw.dmt = bw.dmg + ns, bw.daso = bw.dmt + ns, bw.das = bw.daso + ns;
    /* the final state's gradient */
    int64_t o = d.nch * d.H;
    for (int hh = 0; hh < d.H; hh++) {
        float *dC = bw.dC + (o + hh) * d.csz, *dn = bw.dn + (o + hh) * d.dphi;
        if (dfinal) {
            memcpy(dC, dfinal->C + hh * d.csz, (size_t)d.csz * sizeof(float));
            memcpy(dn, dfinal->n + (int64_t)hh * d.dphi, (size_t)d.dphi * sizeof(float));
            bw.dmg[o + hh] = dfinal->m[hh];
        } else {
            memset(dC, 0, (size_t)d.csz * sizeof(float));
            memset(dn, 0, (size_t)d.dphi * sizeof(float));
            bw.dmg[o + hh] = 0;
        }
        bw.dmt[o + hh] = bw.dmg[o + hh] - xd_dot_lanes(cc.C + (o + hh) * d.csz, dC, d.csz) -
                         xd_dot_lanes(cc.n + (o + hh) * d.dphi, dn, d.dphi);
    }
    int L = d.L, fail = 0;
    int lw = d.dphi > d.dv ? d.dphi : d.dv;
    size_t fl = (size_t)3 * L * L + (size_t)4 * L * lw;
    size_t dl = (size_t)5 * L;
#pragma omp parallel
    {
        char *scr = malloc(fl * sizeof(float) + dl * sizeof(double) + gates_bytes(L));
        if (!scr) {
#pragma omp atomic write
            fail = 1;
        }
        bscr_t b;
        b.S = (float *)scr, b.W = b.S + (size_t)L * L, b.dP = b.W + (size_t)L * L;
        b.dnum = b.dP + (size_t)L * L, b.D = b.dnum + (size_t)L * lw;
        b.KdC = b.D + (size_t)L * lw, b.VdC = b.KdC + (size_t)L * lw;
        b.dZ = (double *)(b.VdC + (size_t)L * lw), b.dm = b.dZ + L, b.rs = b.dm + L,
        b.dao = b.rs + L, b.cs = b.dao + L;
        gates_t G = gates_at(b.cs + L, L);
#pragma omp for schedule(dynamic)
        for (int hh = 0; hh < d.H; hh++)
            if (scr) bwd_states(&d, &cc, &bw, in, dh, h, hh, &G, b.dnum, b.KdC, b.D, b.dZ, b.dm);
#pragma omp for schedule(dynamic)
        for (int64_t job = 0; job < d.H * d.nch; job++) {
            int64_t c = job / d.H;
            if (scr)
                bwd_chunk(g, &d, &cc, &bw, c < d.nch - 1 || dfinal, in, dh, h, (int)(job % d.H),
                          c, &G, &b);
        }
        free(scr);
    }
    if (!fail && dinit && init)
        for (int hh = 0; hh < d.H; hh++) {
            const float *dC = bw.dC + (int64_t)hh * d.csz, *dn = bw.dn + (int64_t)hh * d.dphi;
            for (int64_t x = 0; x < d.csz; x++) dinit->C[hh * d.csz + x] += dC[x];
            for (int x = 0; x < d.dphi; x++) dinit->n[(int64_t)hh * d.dphi + x] += dn[x];
            dinit->m[hh] += (float)bw.dmg[hh];
        }
    free(bw.dC), free(bw.dmg);
    return fail ? xd_err("mLSTM backward: out of memory for scratch") : 0;
}
