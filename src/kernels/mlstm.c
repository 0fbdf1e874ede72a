/* The mLSTM cell (mlstm.h): configuration, the parallel reference form and
 * the recurrent (decoding) form. The chunkwise form is in mlstm_chunk.c. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mlstm.h"

xd_mlstm_cfg xd_mlstm_cfg_default(int H, int dphi, int dv) {
    xd_mlstm_cfg c;
    c.H = H, c.dphi = dphi, c.dv = dv, c.chunk = 64;
    c.scale = 1.0f / sqrtf((float)dphi);
    c.eps = 1e-6f;
    return c;
}

void xd_mlstm_state_zero(xd_mlstm_state *st, const xd_mlstm_cfg *cfg) {
    memset(st->C, 0, (size_t)cfg->H * cfg->dphi * cfg->dv * sizeof(float));
    memset(st->n, 0, (size_t)cfg->H * cfg->dphi * sizeof(float));
    memset(st->m, 0, (size_t)cfg->H * sizeof(float));
}

static inline double log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

static void state_copy(xd_mlstm_state *dst, const xd_mlstm_state *src, const xd_mlstm_cfg *cfg) {
    if (dst->C == src->C) return;
    memmove(dst->C, src->C, (size_t)cfg->H * cfg->dphi * cfg->dv * sizeof(float));
    memmove(dst->n, src->n, (size_t)cfg->H * cfg->dphi * sizeof(float));
    memmove(dst->m, src->m, (size_t)cfg->H * sizeof(float));
}

/* ---- parallel form ------------------------------------------------------------
 * Row t of head h, literally: for s from t down to doc(t),
 *   log D_ts = Σ_{r=s+1..t} lf_r + ĩ_s   (the sum accumulated as s decreases)
 * plus, for the first document with an initial state, the source
 * Σ_{r=0..t} lf_r + m_init with contents (C, n); m_t = the max;
 * C̃_ts = s·(q_t·k_s)·exp(log D_ts − m_t); h_t = Σ_s C̃_ts v_s / (max(|Σ_s C̃_ts|,
 * e^{−m_t}) + ε). All in double. The final state is row T−1's sums with
 * m = fl32(m_{T−1}). */

/* log weights la[ds..t] of row t (la[T]: the initial state's); returns m_t */
static double row_logw(double *la, int64_t *dsp, int *use_init, const xd_mlstm_in *in,
                       const xd_mlstm_state *init, int64_t T, int H, int64_t t, int hh) {
    int64_t ds = in->doc_start ? in->doc_start[t] : 0;
    if (ds < 0) ds = 0;
    if (ds > t) ds = t;
    double acc = 0, m = -INFINITY;
    for (int64_t s = t; s >= ds; s--) {
        la[s] = acc + in->ig[s * H + hh];
        if (la[s] > m) m = la[s];
        acc += log_sigmoid(in->fg[s * H + hh]);
    }
    *use_init = init && ds == 0;
    if (*use_init) {
        la[T] = acc + init->m[hh];
        if (la[T] > m) m = la[T];
    }
    *dsp = ds;
    return m;
}

int xd_mlstm_parallel_forward(float *h, xd_mlstm_state *final, const xd_mlstm_in *in,
                              const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg) {
    const int H = cfg->H, dphi = cfg->dphi, dv = cfg->dv;
    const int64_t qs = (int64_t)H * dphi, vs = (int64_t)H * dv, csz = (int64_t)dphi * dv;
    const double sc = cfg->scale, eps = cfg->eps;
    if (T <= 0) {
        if (final) {
            if (init) state_copy(final, init, cfg);
            else xd_mlstm_state_zero(final, cfg);
        }
        return 0;
    }
    /* the final state, in double, written to final once every head has read init */
    double *fin = final ? malloc((size_t)H * (csz + dphi + 1) * sizeof(double)) : NULL;
    if (final && !fin) return xd_err("mLSTM parallel form: out of memory");
    int fail = 0;
#pragma omp parallel
    {
        double *la = malloc((size_t)(T + 1) * sizeof(double));
        double *num = malloc((size_t)dv * sizeof(double));
        int ok = la && num;
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t job = 0; job < T * H; job++) {
            if (!ok) continue;
            int64_t t = T - 1 - job / H, ds; /* the long rows first */
            int hh = (int)(job % H), use_init;
            double m = row_logw(la, &ds, &use_init, in, init, T, H, t, hh);
            const float *qt = in->q + t * qs + (int64_t)hh * dphi;
            double Z = 0;
            for (int x = 0; x < dv; x++) num[x] = 0;
            for (int64_t s = ds; s <= t; s++) {
                const float *ks = in->k + s * qs + (int64_t)hh * dphi;
                const float *vv = in->v + s * vs + (int64_t)hh * dv;
                double qk = 0;
                for (int x = 0; x < dphi; x++) qk += (double)qt[x] * ks[x];
                double ct = sc * qk * exp(la[s] - m);
                Z += ct;
                for (int x = 0; x < dv; x++) num[x] += ct * vv[x];
            }
            if (use_init) {
                double w = sc * exp(la[T] - m);
                const float *C0 = init->C + hh * csz, *n0 = init->n + (int64_t)hh * dphi;
                for (int y = 0; y < dphi; y++) {
                    Z += w * qt[y] * n0[y];
                    for (int x = 0; x < dv; x++) num[x] += w * qt[y] * C0[(int64_t)y * dv + x];
                }
            }
            double em = exp(-m), den = (fabs(Z) >= em ? fabs(Z) : em) + eps;
            float *ht = h + t * vs + (int64_t)hh * dv;
            for (int x = 0; x < dv; x++) ht[x] = (float)(num[x] / den);
        }
        if (fin) {
#pragma omp for schedule(dynamic)
            for (int hh = 0; hh < H; hh++) {
                if (!ok) continue;
                int64_t t = T - 1, ds;
                int use_init;
                float mf = (float)row_logw(la, &ds, &use_init, in, init, T, H, t, hh);
                double *Cf = fin + hh * (csz + dphi + 1), *nf = Cf + csz;
                for (int64_t x = 0; x < csz + dphi; x++) Cf[x] = 0;
                Cf[csz + dphi] = mf;
                for (int64_t s = ds; s <= t; s++) {
                    double w = exp(la[s] - (double)mf);
                    const float *ks = in->k + s * qs + (int64_t)hh * dphi;
                    const float *vv = in->v + s * vs + (int64_t)hh * dv;
                    for (int y = 0; y < dphi; y++) {
                        nf[y] += w * ks[y];
                        for (int x = 0; x < dv; x++) Cf[(int64_t)y * dv + x] += w * ks[y] * vv[x];
                    }
                }
                if (use_init) {
                    double w = exp(la[T] - (double)mf);
                    for (int64_t x = 0; x < csz; x++) Cf[x] += w * init->C[hh * csz + x];
                    for (int y = 0; y < dphi; y++) nf[y] += w * init->n[(int64_t)hh * dphi + y];
                }
            }
        }
        free(la), free(num);
    }
    if (fin && !fail)
        for (int hh = 0; hh < H; hh++) {
            const double *Cf = fin + hh * (csz + dphi + 1);
            for (int64_t x = 0; x < csz; x++) final->C[hh * csz + x] = (float)Cf[x];
            for (int y = 0; y < dphi; y++) final->n[(int64_t)hh * dphi + y] = (float)Cf[csz + y];
            final->m[hh] = (float)Cf[csz + dphi];
        }
    free(fin);
    return fail ? xd_err("mLSTM parallel form: out of memory for scratch") : 0;
}

/* ---- recurrent form ------------------------------------------------------------ */

void xd_mlstm_step(float *h, xd_mlstm_state *st, const float *q, const float *k, const float *v,
                   const float *ig, const float *fg, int reset, const xd_mlstm_cfg *cfg) {
    const int H = cfg->H, dphi = cfg->dphi, dv = cfg->dv;
    const int64_t csz = (int64_t)dphi * dv;
#pragma omp parallel for schedule(static) if ((int64_t)H * csz >= 65536)
    for (int hh = 0; hh < H; hh++) {
        double lf = log_sigmoid(fg[hh]), mo = st->m[hh], i = ig[hh];
        double mn = reset || i > lf + mo ? i : lf + mo;
        float mf = (float)mn;
        float fp = reset ? 0.0f : (float)exp(lf + mo - (double)mf);
        float ip = (float)exp(i - (double)mf);
        float *C = st->C + hh * csz, *n = st->n + (int64_t)hh * dphi;
        const float *qh = q + (int64_t)hh * dphi, *kh = k + (int64_t)hh * dphi;
        const float *vh = v + (int64_t)hh * dv;
        float *hh_out = h + (int64_t)hh * dv;
        double qn = 0;
        for (int x = 0; x < dv; x++) hh_out[x] = 0;
        for (int y = 0; y < dphi; y++) {
            float *Cr = C + (int64_t)y * dv, ik = ip * kh[y], qy = qh[y];
            for (int x = 0; x < dv; x++) {
                Cr[x] = fp * Cr[x] + ik * vh[x];
                hh_out[x] += qy * Cr[x];
            }
            n[y] = fp * n[y] + ik;
            qn += (double)qy * n[y];
        }
        st->m[hh] = mf;
        double em = exp(-(double)mf), aq = fabs(cfg->scale * qn);
        float inv = (float)(cfg->scale / ((aq >= em ? aq : em) + cfg->eps));
        for (int x = 0; x < dv; x++) hh_out[x] *= inv;
    }
}

void xd_mlstm_readout(float *h, int ldh, const xd_mlstm_state *st, int head, const float *phi,
                      int ldphi, int n, const xd_mlstm_cfg *cfg) {
    const int dphi = cfg->dphi, dv = cfg->dv;
    const float *C = st->C + (int64_t)head * dphi * dv, *nv = st->n + (int64_t)head * dphi;
    if (n <= 0) return;
    /* h[t] = Σ_y φ_t[y] C[y][·] for every row at once */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dv, dphi, 1.0f, phi, ldphi, C, dv,
                0.0f, h, ldh);
    double em = exp(-(double)st->m[head]);
    for (int t = 0; t < n; t++) {
        const float *q = phi + (int64_t)t * ldphi;
        double qn = 0;
        for (int y = 0; y < dphi; y++) qn += (double)q[y] * nv[y];
        double aq = fabs(cfg->scale * qn);
        float inv = (float)(cfg->scale / ((aq >= em ? aq : em) + cfg->eps));
        float *ht = h + (int64_t)t * ldh;
        for (int x = 0; x < dv; x++) ht[x] *= inv;
    }
}

int xd_mlstm_recurrent_forward(float *h, xd_mlstm_state *final, const xd_mlstm_in *in,
                               const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg) {
    const int H = cfg->H, dphi = cfg->dphi, dv = cfg->dv;
    xd_mlstm_state tmp = {NULL, NULL, NULL}, *st = final;
    if (!st) {
        tmp.C = malloc((size_t)H * dphi * dv * sizeof(float));
        tmp.n = malloc((size_t)H * dphi * sizeof(float));
        tmp.m = malloc((size_t)H * sizeof(float));
        if (!tmp.C || !tmp.n || !tmp.m) {
            free(tmp.C), free(tmp.n), free(tmp.m);
            return xd_err("mLSTM recurrent form: out of memory");
        }
        st = &tmp;
    }
    if (init) state_copy(st, init, cfg);
    else xd_mlstm_state_zero(st, cfg);
    const int64_t qs = (int64_t)H * dphi, vs = (int64_t)H * dv;
    for (int64_t t = 0; t < T; t++) {
        int reset = t > 0 && in->doc_start && in->doc_start[t] == t;
        xd_mlstm_step(h + t * vs, st, in->q + t * qs, in->k + t * qs, in->v + t * vs,
                      in->ig + t * H, in->fg + t * H, reset, cfg);
    }
    free(tmp.C), free(tmp.n), free(tmp.m);
    return 0;
}
