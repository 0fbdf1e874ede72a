/* Dot products on ggml's quantised blocks (io/ggml_types.h has the layouts): a weight row
 * stays in the GGUF's own blocks, the activation row is quantised once to ggml's
 * companion type, and each block's dot product is an integer sum scaled by the blocks'
 * scales. The activation types (as ggml's quantize_row_q8_*):
 *   Q8_0  32 el, 34 B: d (fp16), qs[32]           d = max|x| / 127, q = round(x / d)
 *   Q8_1  32 el, 36 B: d, s (fp16), qs[32]         as Q8_0, s = d · Σ q (for the min terms)
 *   Q8_K 256 el, 292 B: d (fp32), qs[256], bsums[16] (int16, Σ q over each 16)
 *                       d = −max/127 where max is the element of largest |x| (its sign
 *                       kept), q = min(127, round(x / d))
 * Pairs: Q4_0, Q5_0, Q8_0 with Q8_0; Q4_1, Q5_1 with Q8_1; Q4_K, Q5_K, Q6_K with Q8_K.
 *
 * These are the scalar references, with ggml's formulas per block:
 *   Q4_0·Q8_0   d_w·d_a · Σ (q_w − 8)·q_a
 *   Q4_1·Q8_1   d_w·d_a · Σ q_w·q_a + m_w·s_a
 *   Q5_0 / Q5_1 as Q4_0 / Q4_1 with 5-bit codes (− 16 for Q5_0)
 *   Q8_0·Q8_0   d_w·d_a · Σ q_w·q_a
 *   Q4_K·Q8_K   d_a · (d_w · Σ_j sc_j · Σ_{sub-block j} q_w·q_a − dmin_w · Σ_j m_j · Σ_{j} q_a)
 *   Q5_K        as Q4_K with 5-bit codes
 *   Q6_K·Q8_K   d_a · d_w · Σ_j sc_j · Σ_{sub-block j of 16} (q_w − 32)·q_a
 * The integer sums are exact; the float sum over blocks runs in block order. */
#ifndef XD_QUANT_H
#define XD_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Every type's rows run on AVX2 (with FMA and F16C) where the CPU has them, chosen
 * at run time: the integer block sums are exact, the float sum goes over 8 lanes, so the
 * result differs from the scalar reference's block order by rounding only
 * (test_quant_dot states the bound). scalar != 0 forces the scalar references (tests,
 * benchmarks); 0 returns to the run-time choice. */
void xd_quant_set_scalar(int scalar);
/* The highest kernel level to use: 0 scalar, 1 AVX2, 2 AVX512-VNNI (vpdpbusd on 256-bit
 * vectors, every type); -1 the best the CPU has. */
void xd_quant_set_isa(int level);

/* The activation type a weight type pairs with (GGML_Q8_0, GGML_Q8_1 or GGML_Q8_K), or
 * -1 when the weight type has no block dot product here. */
int xd_qdot_act_type(uint32_t wtype);
/* Bytes of n elements (a multiple of the block size) of a quantised type, 0 if unknown. */
size_t xd_q_row_bytes(uint32_t type, int64_t n);

/* A weight row x [n] into blocks of type (kernels/quantize.c: ggml's reference quantisers,
 * bit for bit): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K; n a multiple of the
 * block.
 * 0, or -1 naming what does not fit. */
int xd_quantize_row(uint32_t type, const float *x, int64_t n, void *out);
/* Whether xd_quantize_row writes type; the bytes of a row of n (0: n does not fit). */
int xd_quantize_writable(uint32_t type);
size_t xd_quantize_row_bytes(uint32_t type, int64_t n);

/* x [n] (n a multiple of the activation type's block) into blocks of act_type. */
int xd_quantize_act(uint32_t act_type, const float *x, int64_t n, void *out);

/* Σ_i w_i·a_i over n elements: w in blocks of wtype, a in blocks of xd_qdot_act_type(wtype). */
float xd_qdot(uint32_t wtype, const void *w, const void *a, int64_t n);

/* y [rows] = W x for W [rows][cols] in blocks of wtype (rows stored one after another):
 * x is quantised once (into a scratch of xd_q_row_bytes(act type, cols) bytes, NULL:
 * allocated here), then every row's xd_qdot, the rows in parallel. */
int xd_qmatvec(uint32_t wtype, const void *W, int64_t rows, int64_t cols, const float *x,
               float *y, void *scratch);

#endif
