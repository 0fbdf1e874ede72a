/* Small ops of the hybrid mixer (docs/design.md, "Student layer"): the Hedgehog feature map,
 * the gate soft-cap and the output mix of the mLSTM and SWA branches.
 *
 * Conventions (as train_ops.h): each op is a plain forward and a backward
 * function; backward functions ACCUMULATE (+=) into every gradient they are
 * given and skip a NULL one. Tensors are row-major fp32, n = number of token
 * rows; offsets are 64-bit. A gradient has the layout of the tensor it
 * belongs to, row stride included (dq has q's stride ldq, ...). Gradients
 * must not alias inputs.
 *
 * Results are bit-identical whatever the number of OpenMP/OpenBLAS threads:
 * every output element is computed by one job in a fixed order; reductions
 * over rows use pieces fixed by n alone, added in a fixed order; every sgemm
 * multiplies one such piece and runs inside an active OpenMP region, where
 * OpenBLAS's OpenMP build (the one the project links) runs it on the calling
 * thread. This holds for one n: calls with different n (a prefill and the
 * same tokens one at a time) cut different pieces and agree to rounding. */
#ifndef XD_HYBRID_OPS_H
#define XD_HYBRID_OPS_H

#include <stdint.h>

/* ---- Hedgehog feature map ----------------------------------------------------
 * nmap maps of head dimension hd. Map h reads head g(h) = h / (nmap/nu) of u
 * (nu divides nmap: nu = nmap for queries; nu = nkv, nmap = nh gives every
 * query head its own map of its GQA group's key) and computes, for every
 * row t,
 *     z_j   = Σ_i u_i · A[h][i][j] + a[h][j]          (z = u·A + a; i = input
 *                                                      index, j = output index)
 *     φ     = [ softmax(z) ; softmax(−z) ]  ∈ R^{2·hd}
 * i.e. φ_j = e^{z_j − max z} / Σ_k e^{z_k − max z} and
 *      φ_{hd+j} = e^{min z − z_j} / Σ_k e^{min z − z_k}  (both max-subtracted:
 * no overflow for any finite z). A = identity and a = 0 give
 * φ = [softmax(u); softmax(−u)] exactly up to the softmax's own rounding.
 *
 * Layout: u row t, head g at u + t·ldu + g·hd (ldu ≥ nu·hd floats: u may be
 * q or k inside a wider buffer); A [nmap][hd][hd], a [nmap][hd] (or NULL: 0);
 * phi [n][nmap][2·hd] (contiguous, the mLSTM's φq/φk layout with
 * dphi = 2·hd). phi must not alias u. The forward keeps nothing besides phi:
 * the softmax backward needs only its output.
 *
 * Cost: per map, one [m×hd]·[hd×hd] sgemm per piece of m ≤ 128 rows forward,
 * two backward. */
void xd_hedgehog_forward(float *phi, const float *u, int ldu, const float *A, const float *a,
                         int n, int nmap, int nu, int hd);

/* Backward, with dφ = ∂L/∂phi [n][nmap][2·hd] and φ± the halves of phi:
 *     dz_j  = φ+_j (dφ+_j − φ+·dφ+) − φ−_j (dφ−_j − φ−·dφ−)
 *     du   += dz · A[h]ᵀ      (du_i += Σ_j dz_j A[h][i][j]; du has u's layout,
 *                              stride ldu; maps sharing a head of u add up)
 *     dA[h] += uᵀ · dz        (dA[h][i][j] += Σ_t u_{t,i} dz_{t,j})
 *     da[h] += Σ_t dz_t
 * dA and da are summed over pieces of 128 rows, added in piece order.
 * Returns 0, or −1 (xd_last_error) when its scratch (128·hd floats per
 * thread, plus ⌈n/128⌉·hd² floats for dA and ⌈n/128⌉·hd doubles for da)
 * cannot be had; nothing is then accumulated. */
int xd_hedgehog_backward(float *du, float *dA, float *da, const float *dphi, const float *phi,
                         const float *u, int ldu, const float *A, int n, int nmap, int nu, int hd);

/* ---- gate soft-cap -------------------------------------------------------------
 * y = c·tanh(g/c) elementwise (c = 15 by default); c ≤ 0: identity (y = g).
 * Forward: y may alias g. Backward: dg += dy · (1 − tanh²(g/c)) =
 * dy / cosh²(g/c) (dg += dy for c ≤ 0); g is the forward's input. Computed
 * in double, rounded once. */
void xd_softcap_forward(float *y, const float *g, int64_t n, float c);
void xd_softcap_backward(float *dg, const float *dy, const float *g, int64_t n, float c);

/* ---- mix of the two branches ------------------------------------------------------
 * Per token t and head h, with g = h / (nh/nkv) the KV group of h (nkv
 * divides nh) and x = [q_{t,h}; k_{t,g}; v_{t,g}] ∈ R^{3·hd}:
 *     s        = w_o[h]·x + b_o[h]                  (dot in double)
 *     o[t][h]  = σ(s) = 1/(1 + e^{−s})              (double, rounded to float)
 *     out_{t,h} = o·hm_{t,h} + (1−o)·hs_{t,h}
 * Layout: q row t, head h at q + t·ldq + h·hd (ldq ≥ nh·hd); k, v likewise
 * with ldk, ldv ≥ nkv·hd (q, k, v may be views into one fused qkv buffer);
 * hm (mLSTM output), hs (SWA output), out: [n][nh][hd] contiguous;
 * w_o [nh][3·hd] ordered [w_q | w_k | w_v]; b_o [nh]; o [n][nh] is saved for
 * the backward (may be NULL when no backward follows). out may alias hm or
 * hs only when no backward follows (the backward needs both).
 *
 * EXACT ENDPOINTS. When o rounds to exactly 0.0f (σ(s) < 2^−150, i.e.
 * s ≲ −103.97; e.g. b_o = −1e4 with |w_o·x| < 9000) out is a bit-for-bit copy
 * of hs — whatever hm holds, NaN and ±0 included — so a student whose mix is
 * forced to the SWA branch reproduces the SWA output (the teacher, with a
 * full window) exactly; likewise o == 1.0f (s ≳ 17.3) copies hm. The
 * backward is then exact too: dhs += dout (o == 0) and the gate gradient
 * o·(1−o)·(…) is 0. */
void xd_mix_forward(float *out, float *o, const float *hm, const float *hs, const float *q,
                    int ldq, const float *k, int ldk, const float *v, int ldv, const float *w_o,
                    const float *b_o, int n, int nh, int nkv, int hd);

/* The window-exact rule (docs/design.md, "Mix"): rows whose position in their document is
 * below limit (= sinks + window: the SWA branch still sees every earlier token, so it is
 * the teacher's attention) take the SWA branch alone: out row = hs row bit for bit and
 * o = 0 (o may be NULL), so xd_mix_backward passes dout to hs only and gives the gate no
 * gradient there. Rows are [B][T] (row i = b·T + t) of nh·hd values; the position of
 * row i is t − doc_start[i] when doc_start is given (the training layout: the index of
 * its document's first row in its sequence), else pos0 + t (decoding, B = 1). */
void xd_mix_exact_window(float *out, float *o, const float *hs, int B, int T, int nh, int hd,
                         int64_t pos0, const int32_t *doc_start, int64_t limit);

/* Backward, with dout = ∂L/∂out [n][nh][hd] and o the forward's saved gate:
 *     dhm  += o·dout                 dhs += (1−o)·dout
 *     ds    = o(1−o) · Σ_d dout_d (hm_d − hs_d)    (= 0 exactly at o ∈ {0, 1})
 *     dq_{t,h} += ds·w_q[h]   dk_{t,g} += ds·w_k[h]   dv_{t,g} += ds·w_v[h]
 *     dw_o[h]  += Σ_t ds_t · x_t      db_o[h] += Σ_t ds_t
 * (heads of one KV group add up in dk, dv). dq, dk, dv have the strides of
 * q, k, v. Uses no scratch memory. */
void xd_mix_backward(float *dhm, float *dhs, float *dq, float *dk, float *dv, float *dw_o,
                     float *db_o, const float *dout, const float *o, const float *hm,
                     const float *hs, const float *q, int ldq, const float *k, int ldk,
                     const float *v, int ldv, const float *w_o, int n, int nh, int nkv, int hd);

#endif
