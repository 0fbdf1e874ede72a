/* fp32 compute kernels. Matrices are row-major; "rows" are tokens. */
#ifndef XD_KERNELS_H
#define XD_KERNELS_H

#include <stdint.h>

/* y[n][out] = x[n][in] · W[out][in]ᵀ (+ b[out]); BLAS sgemm (sgemv for n = 1). */
void xd_linear(float *y, const float *x, const float *W, const float *b, int n, int in, int out);

/* y = x / sqrt(mean(x²) + eps) · w, for n rows of length dim (y may alias x). */
void xd_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps);

/* Rotary embedding (HF half-split layout) on n rows of n_heads×hd values;
 * row i sits at position pos0 + i; stride = floats between rows. */
void xd_rope(float *x, int n, int n_heads, int hd, int stride, int64_t pos0,
             const float *inv_freq);

/* g = silu(g) ⊙ u over n elements. */
void xd_swiglu(float *g, const float *u, int64_t n);

/* Causal GQA attention of n queries (positions pos0..pos0+n-1) over the
 * keys/values at positions 0..pos0+n-1 of one layer's cache.
 *   q   [n][n_head·hd]      out [n][n_head·hd]
 *   k,v [T][n_kv·hd]        (T ≥ pos0 + n)
 * scale = 1/sqrt(hd). Returns -1 if scratch memory cannot be had. */
int xd_attention(float *out, const float *q, const float *k, const float *v, int n,
                  int64_t pos0, int n_head, int n_kv, int hd);

/* In-place softmax of a row of length n. */
void xd_softmax(float *x, int n);

#endif
