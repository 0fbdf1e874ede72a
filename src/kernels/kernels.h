/* fp32 compute kernels. Matrices are row-major; "rows" are tokens. */
#ifndef XD_KERNELS_H
#define XD_KERNELS_H

#include <stdint.h>

#include "xdistill.h"

/* y[n][out] = x[n][in] · W[out][in]ᵀ (+ b[out]); BLAS sgemm (sgemv for n = 1).
 * In XD_COMPUTE_BF16 mode (xd_set_compute) the n > 1 product runs in bf16
 * (bf16.c); n = 1 always stays fp32. */
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

/* Attention over a compact cache (kernels/attention_kv.c): rows of one
 * (position, KV head) in a row type (XD_KV_F32, _BF16, _INT8, _INT4 of
 * xdistill.h), xd_kv_row_bytes(type, hd) bytes each. Store
 * widens nothing: it rounds x once (bf16: to nearest even; int8: per block of
 * 32, an fp16 scale max|x|/127 and round(x/scale), as ggml's Q8_0; int4: the
 * row Walsh–Hadamard rotated, then ggml's Q4_0 blocks); load gives the stored
 * values as fp32 (exactly; int4 rotated back, to fp32 rounding). A cache's
 * dtype (xd_kv_dtype) gives the row types of its keys and of its values: k8v4
 * int8 keys and int4 values, any other dtype both itself. */
int xd_kv_key_type(int dtype);
int xd_kv_value_type(int dtype);
size_t xd_kv_row_bytes(int dtype, int hd);
void xd_kv_row_store(int dtype, void *dst, const float *x, int hd);
void xd_kv_row_load(int dtype, float *dst, const void *src, int hd);

/* xd_attention over a cache of type dtype (k, v: [pos0+n][n_kv] rows of its
 * key and value row types, the new rows included): the same function of the
 * loaded values. One query (n == 1, decoding; F32 from 1024 positions on) reads the rows directly,
 * widening them 16 at a time into an L1 buffer that serves every query head
 * of the group (AVX2 dot products and sums where there is AVX2), in fixed chunks of
 * positions, each with its own softmax, combined by their maxima and totals in
 * chunk order (the same result at any thread
 * count; not bit for bit xd_attention's, whose sgemv sums in another order);
 * more queries widen the cache to a temporary fp32 copy (F32: none) and call
 * xd_attention. Returns -1 when out of memory. */
int xd_attention_kv(float *out, const float *q, const void *k, const void *v, int n,
                    int64_t pos0, int n_head, int n_kv, int hd, int dtype);

/* One query per head (decoding) over the rows of nspan spans of a cache, as one softmax over
 * all of them (kernels/attention_kv.c): span s holds rows j < rows, each position's n_kv key
 * rows (row type kt) kstride bytes apart from the next position's, the values likewise (vt,
 * vstride). The rows are cut into chunks of `chunk` positions (1 … 512; others: 512), each
 * with its own softmax, combined in order by their maxima and totals: the result depends on
 * `chunk`, never on the thread count. q, out [n_head·hd]. Returns -1 when out of memory. */
typedef struct {
    const void *k, *v;
    int64_t rows;
    size_t kstride, vstride;
    int kt, vt;
} xd_kv_span;
int xd_attention_spans(float *out, const float *q, const xd_kv_span *spans, int nspan,
                       int n_head, int n_kv, int hd, int chunk);

/* Sliding-window + sink attention (the student's SWA branch) of n queries at
 * positions qpos0 … qpos0+n−1. The key at position kp is visible to the
 * query at position p iff kp ≤ p and (kp < sinks or p − kp < window or
 * kp ≥ from): `from` extends every query's window back to a fixed position
 * (the student's sparse cache passes the first row not yet offered to it;
 * INT64_MAX: the plain window). Keys
 * come in two segments, each [count][n_kv·hd] rows:
 *   ks, vs  the sink keys, positions 0 … ns−1 (ns ≤ sinks)
 *   kr, vr  a run of keys at positions r0 … r0+nr−1 (r0 ≥ sinks)
 * and together hold every key the queries can see (their own included).
 * q, out [n][n_head·hd]; scale 1/√hd. Returns -1 if scratch memory cannot
 * be had. */
int xd_attention_sinkwin(float *out, const float *q, int n, int64_t qpos0, const float *ks,
                         const float *vs, int ns, const float *kr, const float *vr, int64_t r0,
                         int64_t nr, int n_head, int n_kv, int hd, int window, int sinks,
                         int64_t from);
/* The same for one query at position p (decoding), the run's rows of row type rtype
 * (XD_KV_F32 or _BF16: a student's bfloat16 window), read in place by xd_attention_spans. */
int xd_attention_sinkwin_one(float *out, const float *q, int64_t p, const float *ks,
                             const float *vs, int ns, const void *kr, const void *vr, int rtype,
                             int64_t r0, int64_t nr, int n_head, int n_kv, int hd, int window,
                             int sinks, int64_t from);

/* In-place softmax of a row of length n. */
void xd_softmax(float *x, int n);

/* ---- bf16 compute (bf16.c; the matrix products need oneDNN: XD_HAVE_DNNL) */

/* xd_fp32_to_bf16_n (core/f16.h: round to nearest even, subnormals kept),
 * parallel over the threads for large n. Back to fp32: xd_bf16_to_fp32_n. */
void xd_bf16_from_f32(uint16_t *dst, const float *src, int64_t n);
/* 1 when xd_set_compute(XD_COMPUTE_BF16) is in force. */
int xd_bf16_active(void);
/* y (+)= x · Wᵀ with bf16 operands and fp32 accumulation (accumulate != 0:
 * added to y). Returns 0, or -1 when it did nothing (no oneDNN, no memory):
 * the caller then computes it in fp32. */
int xd_bf16_linear(float *y, const float *x, const float *W, int accumulate, int n, int in,
                   int out);
/* dx += dy · W and dW += dyᵀ · x (either may be NULL) with bf16 operands.
 * Returns a mask of the products done (1: dx, 2: dW); the caller does the
 * others in fp32. */
int xd_bf16_linear_backward(float *dx, float *dW, const float *dy, const float *x,
                            const float *W, int n, int in, int out);
/* Weight-copy scope: between begin and end each weight matrix is converted to
 * bf16 once and the copy reused; begin drops all copies (weights may have
 * changed since). xd_tm_step brackets one forward + backward with them. */
void xd_bf16_cache_begin(void);
void xd_bf16_cache_end(void);
/* Frees every bf16 buffer, copy and oneDNN primitive (xd_set_compute(FP32) does). */
void xd_bf16_release(void);

#endif
