/* Hybrid-mixer ops (src/kernels/hybrid_ops.h): Hedgehog feature map, gate
 * soft-cap, branch mix.
 *
 *  1. forward against a hand-written double reference (separate loops, no
 *     BLAS), strided inputs (u inside a wider buffer, q/k/v inside one fused
 *     qkv buffer), GQA sharing (maps/heads reading one head of u, k, v);
 *  2. every backward against central finite differences of that double
 *     reference (see fd_tensor for step and tolerance);
 *  3. A = identity, a = 0: φ = [softmax(u); softmax(−u)] against a hand loop;
 *  4. the mix forced to one branch (b_o = −1e4 / +1e4): o == 0 (1) exactly,
 *     out == hs (hm) bit for bit, even with NaN/Inf/−0 in the other branch,
 *     and the backward exact (dhs == dout, all gate gradients 0);
 *  5. accumulation (backward twice = 2×), each gradient alone = its value
 *     with all of them, all-NULL gradients, padding columns untouched;
 *  6. bit-identical results with 1, 2 and 3 threads (OpenMP and OpenBLAS):
 *     true by construction (hybrid_ops.h), not by luck of the BLAS kernel —
 *     with the old top-level sgemms this failed under the Haswell, Zen and
 *     Sandybridge kernels of OpenBLAS 0.3.21 (OPENBLAS_CORETYPE=Haswell
 *     reproduces it on an AVX-512 machine), not under the AVX-512 ones;
 *  7. PyTorch float64 autograd (tests/ref/make_hybrid_ref.py), rel ≤ 1e-5;
 *  8. the window-exact rule (xd_mix_exact_window): rows below the limit, by
 *     document position (training) or by pos0 + t (decoding), become hs bit
 *     for bit with o = 0, the others stay the mix bit for bit; the backward
 *     then gives those rows dhs = dout and nothing else, and the gate
 *     gradients equal the backward of the other rows alone (whose values
 *     section 2 checks against finite differences). */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdistill.h"
#include "core/rng.h"
#include "fixture_util.h"
#include "io/safetensors.h"
#include "kernels/hybrid_ops.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------------------- */

static xd_rng g_rng;

static double urand(double lo, double hi) { return lo + (hi - lo) * xd_rng_uniform(&g_rng); }

static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static float *rbuf(size_t n, double lo, double hi) {
    float *x = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)urand(lo, hi);
    return x;
}

static float *nbuf(size_t n, double sd) {
    float *x = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * xd_rng_normal(&g_rng));
    return x;
}

static float *fdup(const float *x, size_t n) {
    float *y = fbuf(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double *to_d(const float *x, size_t n) {
    double *y = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* max |a − b| / max(max|b|, tiny): error relative to the tensor's scale */
static double tens_rel(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return m / (s > 1e-30 ? s : 1e-30);
}

static double g_fd_worst_tens, g_fd_worst_elem;

/* ---- finite differences -------------------------------------------------------------
 * The loss L = Σ R ⊙ forward_ref(params) is evaluated by the test's own double
 * reference (no rounding to float anywhere), so a central difference with step
 * h = 1e-5 has truncation error O(h²·f''') ≈ 1e-10 and rounding error
 * ≈ 1e-16·|L|/h ≈ 1e-11·|L| — far below what is checked. The analytic
 * gradient comes from the float op: its own rounding is ~1e-7 relative to the
 * size of the terms summed. Check per element
 *     |a − n| ≤ 1e-5·|n| + 1e-5·max|n|   (max over the tensor)
 * i.e. 1e-5 relative, with an absolute floor at the tensor's scale for
 * elements whose gradient cancels to ≈ 0. A wrong formula gives O(1). The
 * reference reads its parameters from double arrays (exact copies of the
 * float inputs) that are perturbed in place. */
typedef double (*loss_fn)(void *ctx);

static void fd_tensor(const char *what, double *p, const float *grad, size_t n, loss_fn f,
                      void *ctx, const size_t *idx /* NULL: 0..n−1 */) {
    const double h = 1e-5;
    double *num = malloc(n * sizeof(double));
    double scale = 0;
    for (size_t c = 0; c < n; c++) {
        size_t i = idx ? idx[c] : c;
        double v = p[i];
        p[i] = v + h;
        double lp = f(ctx);
        p[i] = v - h;
        double lm = f(ctx);
        p[i] = v;
        num[c] = (lp - lm) / (2 * h);
        scale = fmax(scale, fabs(num[c]));
    }
    double worst = 0, worst_t = 0;
    size_t worst_i = 0;
    int ok = 1;
    for (size_t c = 0; c < n; c++) {
        size_t i = idx ? idx[c] : c;
        double a = grad[i], d = fabs(a - num[c]);
        double e = d / (fabs(num[c]) + scale + 1e-300); /* ≤ 1e-5 ⇔ the bound above */
        if (d > 1e-5 * fabs(num[c]) + 1e-5 * scale) ok = 0;
        if (e > worst) worst = e, worst_i = c;
        worst_t = fmax(worst_t, d / (scale > 1e-300 ? scale : 1e-300));
    }
    printf("  FD %-26s max|a−n|/max|n| %.1e  (%zu coords, max|n| %.2g)\n", what, worst_t, n,
           scale);
    CHECK(ok, "FD %s: element %zu: %g vs %g", what, worst_i,
          (double)grad[idx ? idx[worst_i] : worst_i], num[worst_i]);
    g_fd_worst_tens = fmax(g_fd_worst_tens, worst_t);
    g_fd_worst_elem = fmax(g_fd_worst_elem, worst);
    free(num);
}

/* ---- double references ----------------------------------------------------------------- */

/* phi [n][nmap][2hd] = [softmax(uA + a); softmax(−(uA + a))], u row stride ldu */
static void ref_hedgehog(double *phi, const double *u, int ldu, const double *A, const double *a,
                         int n, int nmap, int nu, int hd) {
    int per = nmap / nu;
    double *z = malloc((size_t)hd * sizeof(double));
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nmap; h++) {
            const double *ur = u + (size_t)t * ldu + (size_t)(h / per) * hd;
            const double *Ah = A + (size_t)h * hd * hd;
            double *out = phi + ((size_t)t * nmap + h) * 2 * hd;
            for (int j = 0; j < hd; j++) {
                double s = a ? a[(size_t)h * hd + j] : 0;
                for (int i = 0; i < hd; i++) s += ur[i] * Ah[(size_t)i * hd + j];
                z[j] = s;
            }
            for (int sign = 0; sign < 2; sign++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < hd; j++) mx = fmax(mx, sign ? -z[j] : z[j]);
                for (int j = 0; j < hd; j++) sum += exp((sign ? -z[j] : z[j]) - mx);
                for (int j = 0; j < hd; j++)
                    out[sign * hd + j] = exp((sign ? -z[j] : z[j]) - mx) / sum;
            }
        }
    free(z);
}

/* out [n][nh][hd], o [n][nh] (either may be NULL) */
static void ref_mix(double *out, double *o, const double *hm, const double *hs, const double *q,
                    int ldq, const double *k, int ldk, const double *v, int ldv,
                    const double *w, const double *b, int n, int nh, int nkv, int hd) {
    int per = nh / nkv;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            int g = h / per;
            const double *wh = w + (size_t)h * 3 * hd;
            double s = b[h];
            for (int j = 0; j < hd; j++)
                s += wh[j] * q[(size_t)t * ldq + (size_t)h * hd + j] +
                     wh[hd + j] * k[(size_t)t * ldk + (size_t)g * hd + j] +
                     wh[2 * hd + j] * v[(size_t)t * ldv + (size_t)g * hd + j];
            double og = 1 / (1 + exp(-s));
            if (o) o[(size_t)t * nh + h] = og;
            if (out)
                for (int d = 0; d < hd; d++) {
                    size_t i = ((size_t)t * nh + h) * hd + d;
                    out[i] = og * hm[i] + (1 - og) * hs[i];
                }
        }
}

/* ---- 1+2. Hedgehog: forward vs reference, FD --------------------------------------------- */

typedef struct {
    double *u, *A, *a, *phi;
    const float *R;
    int ldu, n, nmap, nu, hd;
} hh_ctx;

static double hh_loss(void *p) {
    hh_ctx *c = p;
    ref_hedgehog(c->phi, c->u, c->ldu, c->A, c->a, c->n, c->nmap, c->nu, c->hd);
    double L = 0;
    size_t cnt = (size_t)c->n * c->nmap * 2 * c->hd;
    for (size_t i = 0; i < cnt; i++) L += c->R[i] * c->phi[i];
    return L;
}

/* u is a view at column `off` of a [n][ldu] buffer holding nu heads */
static void hh_case(const char *name, int n, int nmap, int nu, int hd, int pad, double usd) {
    int ldu = nu * hd + pad, off = pad > 1 ? 2 : 0;
    size_t nbufu = (size_t)n * ldu, nA = (size_t)nmap * hd * hd, na = (size_t)nmap * hd;
    size_t nphi = (size_t)n * nmap * 2 * hd;
    float *ub = nbuf(nbufu, usd), *A = nbuf(nA, 0.4 / sqrt(hd)), *a = rbuf(na, -0.5, 0.5);
    for (int h = 0; h < nmap; h++)
        for (int i = 0; i < hd; i++) A[(size_t)h * hd * hd + (size_t)i * hd + i] += 1.0f;
    float *phi = fbuf(nphi), *R = rbuf(nphi, -1, 1);
    xd_hedgehog_forward(phi, ub + off, ldu, A, a, n, nmap, nu, hd);

    double *ubase = to_d(ub, nbufu); /* the whole buffer; the reference reads the view */
    hh_ctx c = {ubase + off, to_d(A, nA), to_d(a, na), malloc(nphi * sizeof(double)), R, ldu,
                n, nmap, nu, hd};
    hh_loss(&c); /* fills c.phi with the reference forward */
    /* per-element relative error of φ ≈ |Δz|, the fp32 error of z = u·A + a
     * (~1e-7·Σ|u_i A_ij|, up to ~5e-6 for the "large z" case): tol 1e-5 */
    double fe = 0;
    for (size_t i = 0; i < nphi; i++)
        fe = fmax(fe, fabs(phi[i] - c.phi[i]) / (fabs(c.phi[i]) + 1e-30));
    printf("  Hedgehog %s (n=%d, maps=%d, u heads=%d, hd=%d, ldu=%d): forward max rel err "
           "%.1e (tol 1e-5)\n",
           name, n, nmap, nu, hd, ldu, fe);
    CHECK(fe <= 1e-5, "hedgehog %s forward rel err %g", name, fe);

    /* gradients: du into a buffer with u's layout, pre-filled with noise
     * (accumulation and untouched padding are checked at once) */
    float *du0 = rbuf(nbufu, -1, 1), *du = fdup(du0, nbufu), *dA = fbuf(nA), *da = fbuf(na);
    int rc = xd_hedgehog_backward(du + off, dA, da, R, phi, ub + off, ldu, A, n, nmap, nu, hd);
    CHECK(rc == 0, "hedgehog backward rc %d", rc);
    size_t nidx = (size_t)n * nu * hd, *idx = malloc(nidx * sizeof(size_t));
    float *dun = fbuf(nbufu);
    int pad_ok = 1;
    for (int t = 0, c2 = 0; t < n; t++)
        for (int j = 0; j < ldu; j++) {
            size_t i = (size_t)t * ldu + j;
            if (j >= off && j < off + nu * hd) {
                idx[c2++] = i;
                dun[i] = du[i] - du0[i];
            } else pad_ok &= du[i] == du0[i];
        }
    CHECK(pad_ok, "hedgehog %s: du outside u's columns was written", name);
    /* perturb u's columns only, through the whole-buffer indices */
    fd_tensor("du", ubase, dun, nidx, hh_loss, &c, idx);
    fd_tensor("dA", c.A, dA, nA, hh_loss, &c, NULL);
    fd_tensor("da", c.a, da, na, hh_loss, &c, NULL);
    free(ub), free(A), free(a), free(phi), free(R), free(du0), free(du), free(dA), free(da);
    free(ubase), free(c.A), free(c.a), free(c.phi), free(idx), free(dun);
}

static void test_hedgehog_fd(void) {
    printf("Hedgehog feature map: forward vs double reference, backward vs FD\n");
    hh_case("q-like", 37, 4, 4, 8, 0, 1.5);
    hh_case("GQA k (strided)", 29, 6, 2, 8, 7, 1.5);
    hh_case("large z", 11, 2, 1, 16, 3, 8.0); /* z spans ±30: the max-subtraction matters */
    /* a few rows (decoding) take the loop instead of sgemm */
    hh_case("one row (GQA, strided)", 1, 6, 2, 8, 7, 1.5);
    hh_case("three rows", 3, 4, 4, 16, 0, 1.5);
}

/* ---- 3. identity map -------------------------------------------------------------------- */

static void test_hedgehog_identity(void) {
    int n = 20, nh = 3, hd = 16;
    size_t nu = (size_t)n * nh * hd, nphi = nu * 2;
    float *u = nbuf(nu, 3.0), *A = fbuf((size_t)nh * hd * hd), *a0 = fbuf((size_t)nh * hd);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd; i++) A[(size_t)h * hd * hd + (size_t)i * hd + i] = 1;
    float *phi = fbuf(nphi), *phi2 = fbuf(nphi);
    xd_hedgehog_forward(phi, u, nh * hd, A, a0, n, nh, nh, hd);
    xd_hedgehog_forward(phi2, u, nh * hd, A, NULL, n, nh, nh, hd);
    double worst = 0;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            const float *x = u + ((size_t)t * nh + h) * hd;
            const float *f = phi + ((size_t)t * nh + h) * 2 * hd;
            for (int sign = 0; sign < 2; sign++) { /* softmax(±x), hand loop in double */
                double e[64], sum = 0;
                for (int j = 0; j < hd; j++) sum += e[j] = exp(sign ? -(double)x[j] : x[j]);
                for (int j = 0; j < hd; j++) {
                    double r = e[j] / sum;
                    worst = fmax(worst, fabs(f[sign * hd + j] - r) / r);
                }
            }
        }
    printf("identity map: φ = [softmax(u); softmax(−u)], max rel err %.1e (tol 1e-6); "
           "a = NULL same bits as a = 0: %s\n",
           worst, same_bits(phi, phi2, nphi) ? "yes" : "NO");
    CHECK(worst <= 1e-6, "identity map rel err %g", worst);
    CHECK(same_bits(phi, phi2, nphi), "a = NULL differs from a = 0");
    free(u), free(A), free(a0), free(phi), free(phi2);
}

/* ---- 1+2. soft-cap ------------------------------------------------------------------------ */

typedef struct {
    double *g;
    const float *R;
    int n;
    double c;
} sc_ctx;

static double sc_loss(void *p) {
    sc_ctx *c = p;
    double L = 0;
    for (int i = 0; i < c->n; i++)
        L += c->R[i] * (c->c > 0 ? c->c * tanh(c->g[i] / c->c) : c->g[i]);
    return L;
}

static void test_softcap(void) {
    printf("soft-cap y = c·tanh(g/c)\n");
    int n = 64;
    float *g = rbuf((size_t)n, -60, 60), *R = rbuf((size_t)n, -1, 1);
    g[0] = 0, g[1] = 1e-3f, g[2] = 400.0f, g[3] = -1e4f; /* deep saturation: dg → 0 */
    for (int ci = 0; ci < 2; ci++) {
        float c = ci ? 0.0f : 15.0f;
        float *y = fbuf((size_t)n), *dg = fbuf((size_t)n);
        xd_softcap_forward(y, g, n, c);
        double fe = 0;
        for (int i = 0; i < n; i++) {
            double r = c > 0 ? c * tanh((double)g[i] / c) : g[i];
            fe = fmax(fe, fabs(y[i] - r) / (fabs(r) + 1e-30));
        }
        printf("  c=%g: forward max rel err %.1e (tol 1e-7)\n", c, fe);
        CHECK(fe <= 1e-7, "softcap c=%g forward %g", c, fe);
        if (c <= 0) CHECK(same_bits(y, g, (size_t)n), "softcap c=0 is not the identity");
        xd_softcap_backward(dg, R, g, n, c);
        sc_ctx cx = {to_d(g, (size_t)n), R, n, c};
        fd_tensor(c > 0 ? "softcap dg (c=15)" : "softcap dg (c=0)", cx.g, dg, (size_t)n, sc_loss,
                  &cx, NULL);
        /* in place */
        float *gi = fdup(g, (size_t)n);
        xd_softcap_forward(gi, gi, n, c);
        CHECK(same_bits(gi, y, (size_t)n), "softcap in place differs");
        /* accumulation */
        float *dg2 = fdup(dg, (size_t)n);
        xd_softcap_backward(dg2, R, g, n, c);
        int acc = 1;
        for (int i = 0; i < n; i++) acc &= dg2[i] == 2 * dg[i];
        CHECK(acc, "softcap backward does not accumulate");
        xd_softcap_backward(NULL, R, g, n, c);
        free(y), free(dg), free(cx.g), free(gi), free(dg2);
    }
    free(g), free(R);
}

/* ---- 1+2. mix ------------------------------------------------------------------------------- */

typedef struct {
    double *qkv, *hm, *hs, *w, *b, *out;
    const float *R;
    int ld, n, nh, nkv, hd;
} mix_ctx;

static double mix_loss(void *p) {
    mix_ctx *c = p;
    const double *q = c->qkv, *k = q + (size_t)c->nh * c->hd, *v = k + (size_t)c->nkv * c->hd;
    ref_mix(c->out, NULL, c->hm, c->hs, q, c->ld, k, c->ld, v, c->ld, c->w, c->b, c->n, c->nh,
            c->nkv, c->hd);
    double L = 0;
    size_t cnt = (size_t)c->n * c->nh * c->hd;
    for (size_t i = 0; i < cnt; i++) L += c->R[i] * c->out[i];
    return L;
}

/* q, k, v are views into one fused [n][ld] buffer: q at 0, k at nh·hd,
 * v at (nh + nkv)·hd, ld = (nh + 2nkv)·hd + pad */
static void mix_case(const char *name, int n, int nh, int nkv, int hd, int pad, int saturate) {
    int ld = (nh + 2 * nkv) * hd + pad;
    size_t nqkv = (size_t)n * ld, no = (size_t)n * nh * hd, nw = (size_t)nh * 3 * hd;
    float *qkv = nbuf(nqkv, 1.0), *hm = nbuf(no, 1.0), *hs = nbuf(no, 1.0);
    float *w = nbuf(nw, 0.5 / sqrt(hd)), *b = rbuf((size_t)nh, -1, 1), *R = rbuf(no, -1, 1);
    if (saturate) b[0] = -1e4f, b[nh - 1] = 1e4f; /* one head forced to each branch */
    float *q = qkv, *k = qkv + (size_t)nh * hd, *v = k + (size_t)nkv * hd;
    float *out = fbuf(no), *o = fbuf((size_t)n * nh);
    xd_mix_forward(out, o, hm, hs, q, ld, k, ld, v, ld, w, b, n, nh, nkv, hd);

    mix_ctx c = {to_d(qkv, nqkv), to_d(hm, no), to_d(hs, no), to_d(w, nw), to_d(b, (size_t)nh),
                 malloc(no * sizeof(double)), R, ld, n, nh, nkv, hd};
    double *oref = malloc((size_t)n * nh * sizeof(double));
    mix_loss(&c);
    ref_mix(NULL, oref, c.hm, c.hs, c.qkv, ld, c.qkv + (size_t)nh * hd, ld,
            c.qkv + (size_t)(nh + nkv) * hd, ld, c.w, c.b, n, nh, nkv, hd);
    double fe = 0, oe = 0;
    for (size_t i = 0; i < no; i++)
        fe = fmax(fe, fabs(out[i] - c.out[i]) / (fabs(c.hm[i]) + fabs(c.hs[i]) + 1e-30));
    for (size_t i = 0; i < (size_t)n * nh; i++) 
        oe = fmax(oe, fabs(o[i] - oref[i]) / (oref[i] > 0 ? oref[i] : 1.0));
    printf("  mix %s (n=%d, nh=%d, nkv=%d, hd=%d, ld=%d): forward max err %.1e in out "
           "(rel. to |hm|+|hs|), %.1e in o (rel) (tol 1e-6)\n",
           name, n, nh, nkv, hd, ld, fe, oe);
    CHECK(fe <= 1e-6 && oe <= 1e-6, "mix %s forward %g %g", name, fe, oe);

    float *dqkv0 = rbuf(nqkv, -1, 1), *dqkv = fdup(dqkv0, nqkv);
    float *dhm = fbuf(no), *dhs = fbuf(no), *dw = fbuf(nw), *db = fbuf((size_t)nh);
    xd_mix_backward(dhm, dhs, dqkv, dqkv + (size_t)nh * hd, dqkv + (size_t)(nh + nkv) * hd, dw, db,
                    R, o, hm, hs, q, ld, k, ld, v, ld, w, n, nh, nkv, hd);
    size_t nin = (size_t)n * (nh + 2 * nkv) * hd, *idx = malloc(nin * sizeof(size_t)), ci = 0;
    float *dn = fbuf(nqkv);
    int pad_ok = 1;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < ld; j++) {
            size_t i = (size_t)t * ld + j;
            if (j < (nh + 2 * nkv) * hd) idx[ci++] = i, dn[i] = dqkv[i] - dqkv0[i];
            else pad_ok &= dqkv[i] == dqkv0[i];
        }
    CHECK(pad_ok, "mix %s: dqkv padding written", name);
    fd_tensor("dq,dk,dv (fused)", c.qkv, dn, nin, mix_loss, &c, idx);
    fd_tensor("dhm", c.hm, dhm, no, mix_loss, &c, NULL);
    fd_tensor("dhs", c.hs, dhs, no, mix_loss, &c, NULL);
    fd_tensor("dw_o", c.w, dw, nw, mix_loss, &c, NULL);
    fd_tensor("db_o", c.b, db, (size_t)nh, mix_loss, &c, NULL);
    free(qkv), free(hm), free(hs), free(w), free(b), free(R), free(out), free(o);
    free(c.qkv), free(c.hm), free(c.hs), free(c.w), free(c.b), free(c.out), free(oref);
    free(dqkv0), free(dqkv), free(dhm), free(dhs), free(dw), free(db), free(idx), free(dn);
}

static void test_mix_fd(void) {
    printf("mix: forward vs double reference, backward vs FD\n");
    mix_case("GQA 6/2, fused qkv", 13, 6, 2, 5, 3, 0);
    mix_case("MHA, one head per branch", 9, 4, 4, 6, 0, 1);
}

/* ---- 4. forced branch ------------------------------------------------------------------------ */

static void test_mix_forced(void) {
    int n = 33, nh = 6, nkv = 2, hd = 16, ldq = nh * hd, ldkv = nkv * hd;
    size_t no = (size_t)n * nh * hd, nw = (size_t)nh * 3 * hd;
    float *q = nbuf(no, 3.0), *k = nbuf((size_t)n * ldkv, 3.0), *v = nbuf((size_t)n * ldkv, 3.0);
    float *hm = nbuf(no, 1.0), *hs = nbuf(no, 1.0), *w = nbuf(nw, 1.0), *b = fbuf((size_t)nh);
    float *out = fbuf(no), *o = fbuf((size_t)n * nh), *dout = nbuf(no, 1.0);
    /* the unused branch holds garbage; the used one has signed zeros */
    hm[0] = NAN, hm[1] = INFINITY, hm[2] = -INFINITY, hm[3] = 3e38f;
    hs[4] = -0.0f, hs[5] = 0.0f, hs[6] = 1e-40f;
    for (int h = 0; h < nh; h++) b[h] = -1e4f;
    xd_mix_forward(out, o, hm, hs, q, ldq, k, ldkv, v, ldkv, w, b, n, nh, nkv, hd);
    int o0 = 1;
    for (size_t i = 0; i < (size_t)n * nh; i++) o0 &= o[i] == 0.0f && !signbit(o[i]);
    int is_hs = same_bits(out, hs, no);
    CHECK(o0, "b_o = -1e4 does not give o == 0");
    CHECK(is_hs, "b_o = -1e4: out is not hs bit for bit");
    float *dhm = fbuf(no), *dhs = fbuf(no), *dq = fbuf(no), *dk = fbuf((size_t)n * ldkv),
          *dv = fbuf((size_t)n * ldkv), *dw = fbuf(nw), *db = fbuf((size_t)nh);
    hm[0] = 1, hm[1] = 2, hm[2] = 3, hm[3] = 4; /* backward: 0·dout must be 0, not NaN */
    xd_mix_backward(dhm, dhs, dq, dk, dv, dw, db, dout, o, hm, hs, q, ldq, k, ldkv, v, ldkv, w,
                    n, nh, nkv, hd);
    int zero = 1;
    for (size_t i = 0; i < no; i++) zero &= dhm[i] == 0 && dq[i] == 0;
    for (size_t i = 0; i < (size_t)n * ldkv; i++) zero &= dk[i] == 0 && dv[i] == 0;
    for (size_t i = 0; i < nw; i++) zero &= dw[i] == 0;
    for (int h = 0; h < nh; h++) zero &= db[h] == 0;
    int dhs_ok = same_bits(dhs, dout, no);
    CHECK(dhs_ok, "forced SWA: dhs != dout");
    CHECK(zero, "forced SWA: a gate or mLSTM gradient is not 0");
    /* in place (decode): out aliasing hs */
    float *hs2 = fdup(hs, no);
    xd_mix_forward(hs2, NULL, hm, hs2, q, ldq, k, ldkv, v, ldkv, w, b, n, nh, nkv, hd);
    int inplace_ok = same_bits(hs2, hs, no);
    CHECK(inplace_ok, "forced SWA in place: out != hs");
    /* the other end: +1e4 copies hm, whatever hs holds */
    hs[7] = NAN, hm[8] = -0.0f;
    for (int h = 0; h < nh; h++) b[h] = 1e4f;
    xd_mix_forward(out, o, hm, hs, q, ldq, k, ldkv, v, ldkv, w, b, n, nh, nkv, hd);
    int o1 = 1;
    for (size_t i = 0; i < (size_t)n * nh; i++) o1 &= o[i] == 1.0f;
    CHECK(o1 && same_bits(out, hm, no), "b_o = +1e4: out is not hm bit for bit");
    int is_hm = same_bits(out, hm, no);
    printf("forced branch: b_o = -1e4 gives o == 0 %s, out == hs bit for bit %s (in place %s), "
           "dhs == dout %s, zero gate/mLSTM gradients %s; b_o = +1e4 gives o == 1 %s, "
           "out == hm bit for bit %s\n",
           o0 ? "yes" : "NO", is_hs ? "yes" : "NO", inplace_ok ? "yes" : "NO",
           dhs_ok ? "yes" : "NO", zero ? "yes" : "NO", o1 ? "yes" : "NO", is_hm ? "yes" : "NO");
    free(q), free(k), free(v), free(hm), free(hs), free(w), free(b), free(out), free(o), free(dout);
    free(dhm), free(dhs), free(dq), free(dk), free(dv), free(dw), free(db), free(hs2);
}

/* ---- 5+6. accumulation, NULLs, threads ------------------------------------------------------ */

typedef struct {
    int n, nmap, nu, hd, nh, nkv;
    float *u, *A, *a, *phi, *dphi;                         /* Hedgehog */
    float *q, *k, *v, *hm, *hs, *w, *b, *out, *o, *dout;   /* mix */
} sem_prob;

static void sem_make(sem_prob *p, int n, int hd, int nh, int nkv) {
    p->n = n, p->hd = hd, p->nmap = nh, p->nu = nkv, p->nh = nh, p->nkv = nkv;
    size_t nu = (size_t)n * nkv * hd, nq = (size_t)n * nh * hd;
    p->u = nbuf(nu, 1.5), p->A = nbuf((size_t)nh * hd * hd, 0.3), p->a = nbuf((size_t)nh * hd, 0.3);
    p->phi = fbuf(nq * 2), p->dphi = nbuf(nq * 2, 1.0);
    p->q = nbuf(nq, 1), p->k = nbuf(nu, 1), p->v = nbuf(nu, 1), p->hm = nbuf(nq, 1);
    p->hs = nbuf(nq, 1), p->w = nbuf((size_t)nh * 3 * hd, 0.1), p->b = nbuf((size_t)nh, 1);
    p->out = fbuf(nq), p->o = fbuf((size_t)n * nh), p->dout = nbuf(nq, 1);
}

static void sem_free(sem_prob *p) {
    free(p->u), free(p->A), free(p->a), free(p->phi), free(p->dphi), free(p->q), free(p->k);
    free(p->v), free(p->hm), free(p->hs), free(p->w), free(p->b), free(p->out), free(p->o);
    free(p->dout);
}

enum { NG = 10 }; /* du dA da | dhm dhs dq dk dv dw db */

static void sem_sizes(const sem_prob *p, size_t *sz) {
    size_t nu = (size_t)p->n * p->nkv * p->hd, nq = (size_t)p->n * p->nh * p->hd;
    size_t s[NG] = {nu, (size_t)p->nmap * p->hd * p->hd, (size_t)p->nmap * p->hd, nq, nq, nq, nu,
                    nu, (size_t)p->nh * 3 * p->hd, (size_t)p->nh};
    memcpy(sz, s, sizeof s);
}

/* forward then backward into g[] (NULL entries skipped) */
static int sem_run(sem_prob *p, float **g) {
    xd_hedgehog_forward(p->phi, p->u, p->nu * p->hd, p->A, p->a, p->n, p->nmap, p->nu, p->hd);
    int rc = xd_hedgehog_backward(g[0], g[1], g[2], p->dphi, p->phi, p->u, p->nu * p->hd, p->A,
                                  p->n, p->nmap, p->nu, p->hd);
    int lq = p->nh * p->hd, lkv = p->nkv * p->hd;
    xd_mix_forward(p->out, p->o, p->hm, p->hs, p->q, lq, p->k, lkv, p->v, lkv, p->w, p->b, p->n,
                   p->nh, p->nkv, p->hd);
    xd_mix_backward(g[3], g[4], g[5], g[6], g[7], g[8], g[9], p->dout, p->o, p->hm, p->hs, p->q,
                    lq, p->k, lkv, p->v, lkv, p->w, p->n, p->nh, p->nkv, p->hd);
    return rc;
}

static void test_semantics(void) {
    printf("accumulation, NULL gradients, thread-count independence\n");
    sem_prob p;
    sem_make(&p, 700, 32, 8, 2); /* large enough for threaded sgemms and loops */
    size_t sz[NG];
    sem_sizes(&p, sz);
    size_t nq = (size_t)p.n * p.nh * p.hd;
    float *a[NG], *b[NG];
    for (int i = 0; i < NG; i++) a[i] = fbuf(sz[i]), b[i] = fbuf(sz[i]);
    /* the argument (hybrid_ops.h) needs OpenBLAS's OpenMP build (2) or a
     * sequential one (0): the pthreads build (1) would split an sgemm called
     * inside an OpenMP region over its own threads */
    CHECK(openblas_get_parallel() != 1, "OpenBLAS is the pthreads build (%s): the kernels' "
          "thread-count independence needs the OpenMP one", openblas_get_config());
    int nth = xd_get_threads();
    xd_set_threads(1);
    sem_run(&p, a);
    float *phi1 = fdup(p.phi, nq * 2), *out1 = fdup(p.out, nq), *o1 = fdup(p.o, (size_t)p.n * p.nh);
    /* 2 threads split every loop in halves, 3 unevenly; n = 700 is 6 pieces
     * of 128 rows (the last one short) */
    for (int th = 2; th <= 3; th++) {
        for (int i = 0; i < NG; i++) memset(b[i], 0, sz[i] * sizeof(float));
        xd_set_threads(th);
        sem_run(&p, b);
        int same = same_bits(phi1, p.phi, nq * 2) && same_bits(out1, p.out, nq) &&
                   same_bits(o1, p.o, (size_t)p.n * p.nh);
        for (int i = 0; i < NG; i++) same &= same_bits(a[i], b[i], sz[i]);
        printf("  1 vs %d threads (n=%d, maps/heads=%d, kv=%d, hd=%d; OpenBLAS kernel %s): %s\n",
               th, p.n, p.nh, p.nkv, p.hd, openblas_get_corename(),
               same ? "bit-identical" : "DIFFERENT");
        CHECK(same, "1 and %d threads give different bits", th);
    }
    xd_set_threads(nth);
    /* twice = 2× (up to rounding: an sgemm with beta = 1, du's, need not add
     * its product to C in one rounding) */
    sem_run(&p, b);
    double acc = 0;
    for (int i = 0; i < NG; i++) {
        for (size_t j = 0; j < sz[i]; j++) a[i][j] *= 2;
        acc = fmax(acc, tens_rel(b[i], a[i], sz[i]));
        for (size_t j = 0; j < sz[i]; j++) a[i][j] /= 2;
    }
    printf("  backward twice vs 2× once: max rel %.1e (tol 1e-6)\n", acc);
    CHECK(acc <= 1e-6, "backward does not accumulate: %g", acc);
    /* each gradient alone equals its value with all of them */
    for (int i = 0; i < NG; i++) {
        float *only[NG] = {0};
        only[i] = fbuf(sz[i]);
        sem_run(&p, only);
        CHECK(same_bits(only[i], a[i], sz[i]), "gradient %d alone differs", i);
        free(only[i]);
    }
    float *none[NG] = {0};
    CHECK(sem_run(&p, none) == 0, "all-NULL backward");
    /* n = 0: nothing happens */
    xd_hedgehog_forward(NULL, NULL, 8, NULL, NULL, 0, 2, 2, 4);
    CHECK(xd_hedgehog_backward(a[0], a[1], a[2], NULL, NULL, NULL, 8, NULL, 0, 2, 2, 4) == 0,
          "n = 0");
    xd_mix_forward(NULL, NULL, NULL, NULL, NULL, 8, NULL, 8, NULL, 8, NULL, NULL, 0, 2, 1, 4);
    xd_mix_backward(a[3], a[4], NULL, NULL, NULL, a[8], a[9], NULL, NULL, NULL, NULL, NULL, 8,
                    NULL, 8, NULL, 8, NULL, 0, 2, 1, 4);
    for (int i = 0; i < NG; i++) free(a[i]), free(b[i]);
    free(phi1), free(out1), free(o1);
    sem_free(&p);
}

/* ---- 7. PyTorch ---------------------------------------------------------------------------- */

static double g_torch_worst;

static void torch_cmp(const char *what, const float *a, const float *r, size_t n) {
    double e = tens_rel(a, r, n);
    printf(" %s %.1e", what, e);
    CHECK(e <= 1e-5, "torch %s: %g", what, e);
    g_torch_worst = fmax(g_torch_worst, e);
}

static void test_torch(void) {
    /* sizes: must match tests/ref/make_hybrid_ref.py */
    const int n = 24, nmap = 4, nu = 2, hd = 8, nh = 4, nkv = 2, ng = 64;
    printf("PyTorch float64 autograd (tests/fixtures/hybrid_ref.safetensors), tol 1e-5 "
           "(max|a−r|/max|r| per tensor)\n");
    st_set *s = xd_st_open(FIXTURE("hybrid_ref.safetensors"));
    CHECK(s != NULL, "fixture: %s", xd_last_error());
    if (!s) return;
    size_t nuu = (size_t)n * nu * hd, nA = (size_t)nmap * hd * hd, na = (size_t)nmap * hd;
    size_t nphi = (size_t)n * nmap * 2 * hd, nq = (size_t)n * nh * hd, nkvs = (size_t)n * nkv * hd;
    size_t nw = (size_t)nh * 3 * hd;
    const char *names[] = {"hh.u", "hh.A", "hh.a", "hh.R", "hh.phi", "hh.du", "hh.dA", "hh.da",
                           "mix.q", "mix.k", "mix.v", "mix.hm", "mix.hs", "mix.w_o", "mix.b_o",
                           "mix.R", "mix.out", "mix.o", "mix.dq", "mix.dk", "mix.dv", "mix.dhm",
                           "mix.dhs", "mix.dw_o", "mix.db_o", "sc.g", "sc.R", "sc.y", "sc.dg"};
    size_t sizes[] = {nuu, nA, na, nphi, nphi, nuu, nA, na, nq, nkvs, nkvs, nq, nq, nw,
                      (size_t)nh, nq, nq, (size_t)n * nh, nq, nkvs, nkvs, nq, nq, nw,
                      (size_t)nh, (size_t)ng, (size_t)ng, (size_t)ng, (size_t)ng};
    enum { NT = sizeof names / sizeof names[0] };
    float *T[NT];
    int ok = 1;
    for (int i = 0; i < NT; i++) {
        T[i] = test_st_floats(s, names[i], sizes[i]);
        CHECK(T[i] != NULL, "fixture tensor %s", names[i]);
        ok &= T[i] != NULL;
    }
    xd_st_close(s);
    if (ok) {
        float *phi = fbuf(nphi), *du = fbuf(nuu), *dA = fbuf(nA), *da = fbuf(na);
        xd_hedgehog_forward(phi, T[0], nu * hd, T[1], T[2], n, nmap, nu, hd);
        xd_hedgehog_backward(du, dA, da, T[3], phi, T[0], nu * hd, T[1], n, nmap, nu, hd);
        printf("  hedgehog:");
        torch_cmp("phi", phi, T[4], nphi), torch_cmp("du", du, T[5], nuu);
        torch_cmp("dA", dA, T[6], nA), torch_cmp("da", da, T[7], na);
        printf("\n  mix:");
        float *out = fbuf(nq), *o = fbuf((size_t)n * nh), *dq = fbuf(nq), *dk = fbuf(nkvs),
              *dv = fbuf(nkvs), *dhm = fbuf(nq), *dhs = fbuf(nq), *dw = fbuf(nw),
              *db = fbuf((size_t)nh);
        xd_mix_forward(out, o, T[11], T[12], T[8], nh * hd, T[9], nkv * hd, T[10], nkv * hd,
                       T[13], T[14], n, nh, nkv, hd);
        xd_mix_backward(dhm, dhs, dq, dk, dv, dw, db, T[15], o, T[11], T[12], T[8], nh * hd, T[9],
                        nkv * hd, T[10], nkv * hd, T[13], n, nh, nkv, hd);
        torch_cmp("out", out, T[16], nq), torch_cmp("o", o, T[17], (size_t)n * nh);
        torch_cmp("dq", dq, T[18], nq), torch_cmp("dk", dk, T[19], nkvs);
        torch_cmp("dv", dv, T[20], nkvs), torch_cmp("dhm", dhm, T[21], nq);
        torch_cmp("dhs", dhs, T[22], nq), torch_cmp("dw_o", dw, T[23], nw);
        torch_cmp("db_o", db, T[24], (size_t)nh);
        printf("\n  soft-cap:");
        float *y = fbuf((size_t)ng), *dg = fbuf((size_t)ng);
        xd_softcap_forward(y, T[25], ng, 15.0f);
        xd_softcap_backward(dg, T[26], T[25], ng, 15.0f);
        torch_cmp("y", y, T[27], (size_t)ng), torch_cmp("dg", dg, T[28], (size_t)ng);
        printf("\n  worst %.1e\n", g_torch_worst);
        free(phi), free(du), free(dA), free(da), free(out), free(o), free(dq), free(dk), free(dv);
        free(dhm), free(dhs), free(dw), free(db), free(y), free(dg);
    }
    for (int i = 0; i < NT; i++) free(T[i]);
}

/* ---- 8. the window-exact rule ----------------------------------------------------------- */

static void exact_case(const char *name, int B, int T, const int32_t *doc_start, int64_t pos0,
                       int64_t limit, const int *want_masked) {
    int nh = 4, nkv = 2, hd = 5, n = B * T, ldq = nh * hd, ldkv = nkv * hd;
    size_t no = (size_t)n * nh * hd, nw = (size_t)nh * 3 * hd, row = (size_t)nh * hd;
    float *q = nbuf(no, 1.0), *k = nbuf((size_t)n * ldkv, 1.0), *v = nbuf((size_t)n * ldkv, 1.0);
    float *hm = nbuf(no, 1.0), *hs = nbuf(no, 1.0), *w = nbuf(nw, 0.3), *b = rbuf((size_t)nh, -1, 1);
    float *mix = fbuf(no), *om = fbuf((size_t)n * nh), *out = fbuf(no), *o = fbuf((size_t)n * nh);
    float *dout = nbuf(no, 1.0), *dout0 = fdup(dout, no);
    xd_mix_forward(mix, om, hm, hs, q, ldq, k, ldkv, v, ldkv, w, b, n, nh, nkv, hd);
    xd_mix_forward(out, o, hm, hs, q, ldq, k, ldkv, v, ldkv, w, b, n, nh, nkv, hd);
    xd_mix_exact_window(out, o, hs, B, T, nh, hd, pos0, doc_start, limit);
    int rows_ok = 1, nmask = 0;
    for (int i = 0; i < n; i++) {
        const float *want = want_masked[i] ? hs : mix;
        rows_ok &= same_bits(out + i * row, want + i * row, row);
        for (int h = 0; h < nh; h++) rows_ok &= o[i * nh + h] == (want_masked[i] ? 0.0f : om[i * nh + h]);
        if (want_masked[i]) {
            nmask++;
            for (size_t j = 0; j < row; j++) dout0[i * row + j] = 0; /* for the reference below */
        }
    }
    /* backward of the rule vs the backward of the plain mix on the other rows alone */
    float *dhm = fbuf(no), *dhs = fbuf(no), *dq = fbuf(no), *dk = fbuf((size_t)n * ldkv);
    float *dv = fbuf((size_t)n * ldkv), *dw = fbuf(nw), *db = fbuf((size_t)nh);
    float *rhm = fbuf(no), *rhs = fbuf(no), *rq = fbuf(no), *rk = fbuf((size_t)n * ldkv);
    float *rv = fbuf((size_t)n * ldkv), *rw = fbuf(nw), *rb = fbuf((size_t)nh);
    xd_mix_backward(dhm, dhs, dq, dk, dv, dw, db, dout, o, hm, hs, q, ldq, k, ldkv, v, ldkv, w, n,
                    nh, nkv, hd);
    xd_mix_backward(rhm, rhs, rq, rk, rv, rw, rb, dout0, om, hm, hs, q, ldq, k, ldkv, v, ldkv, w,
                    n, nh, nkv, hd);
    int back_ok = same_bits(dq, rq, no) && same_bits(dk, rk, (size_t)n * ldkv) &&
                  same_bits(dv, rv, (size_t)n * ldkv) && same_bits(dw, rw, nw) &&
                  same_bits(db, rb, (size_t)nh);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < row; j++) {
            size_t x = i * row + j;
            back_ok &= want_masked[i] ? dhs[x] == dout[x] && dhm[x] == 0
                                      : dhs[x] == rhs[x] && dhm[x] == rhm[x];
        }
    printf("window-exact rule, %s: %d of %d rows take hs (bit for bit, o = 0), the others the mix "
           "%s; backward: dhs = dout there, the gate and q/k/v gradients those of the other rows "
           "alone %s\n", name, nmask, n, rows_ok ? "yes" : "NO", back_ok ? "yes" : "NO");
    CHECK(rows_ok, "exact window %s: rows", name);
    CHECK(back_ok, "exact window %s: backward", name);
    free(q), free(k), free(v), free(hm), free(hs), free(w), free(b), free(mix), free(om);
    free(out), free(o), free(dout), free(dout0), free(dhm), free(dhs), free(dq), free(dk);
    free(dv), free(dw), free(db), free(rhm), free(rhs), free(rq), free(rk), free(rv), free(rw);
    free(rb);
}

static void test_mix_exact_window(void) {
    /* training: 2 sequences of 6 rows; the first holds documents starting at rows 0 and 3,
     * the second one document from row 0; limit 2 (sinks + window): positions 0 and 1 */
    const int32_t ds[12] = {0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0};
    const int m1[12] = {1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0};
    exact_case("two sequences, a document boundary", 2, 6, ds, 0, 2, m1);
    /* decoding: a run of 5 tokens at positions 3 … 7, limit 5: positions 3 and 4 */
    const int m2[5] = {1, 1, 0, 0, 0};
    exact_case("a decoded run at position 3", 1, 5, NULL, 3, 5, m2);
    const int m3[4] = {0, 0, 0, 0};
    exact_case("a run past the limit", 1, 4, NULL, 9, 5, m3);
}

int main(void) {
    xd_rng_seed(&g_rng, 20240611);
    test_hedgehog_fd();
    test_hedgehog_identity();
    test_softcap();
    test_mix_fd();
    test_mix_forced();
    test_mix_exact_window();
    test_semantics();
    test_torch();
    printf("worst FD error: %.1e of max|n| per tensor, %.1e per element of |n|+max|n| "
           "(tolerance 1e-5)\n",
           g_fd_worst_tens, g_fd_worst_elem);
    return test_summary("test_hybrid_ops");
}
