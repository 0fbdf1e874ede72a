/* 16-bit floats: IEEE 754 binary16 ("fp16": 1 sign, 5 exponent bits with bias
 * 15, 10 mantissa bits) and bfloat16 ("bf16": the top 16 bits of a binary32,
 * 1 sign, 8 exponent bits with bias 127, 7 mantissa bits). The one
 * implementation of these conversions in xdistill: the GGUF and safetensors
 * readers and writers, the teacher top-k logit files and the bf16 compute
 * path all use it.
 *
 * fp16 → fp32 and bf16 → fp32 are exact (every 16-bit value is a float; NaN
 * payloads are kept, shifted into the float's top mantissa bits).
 *
 * fp32 → fp16 (xd_fp32_to_fp16), round to nearest, ties to even:
 *   - |x| >= 65520 (65504, the largest half, plus half an ulp: the tie goes to
 *     the even inf) and ±inf give ±inf;
 *   - results below 2^-14 are fp16 subnormals (multiples of 2^-24), rounded the
 *     same way; |x| <= 2^-25 gives ±0 (2^-25 itself ties to the even 0); float
 *     subnormals therefore give ±0;
 *   - ±0 keeps its sign;
 *   - NaN gives a quiet NaN of the same sign keeping the top 9 payload bits
 *     below the quiet bit: 0x7e00 | sign | (mantissa >> 13 & 0x1ff). This is
 *     what the F16C instruction vcvtps2ph does, and numpy's float16 for every
 *     quiet NaN (torch canonicalises every NaN to 0x7e00 | sign; all agree on
 *     the default NaN 0x7fc00000 → 0x7e00).
 *
 * fp32 → bf16 (xd_fp32_to_bf16), round to nearest, ties to even, on the bits:
 *   (u + 0x7fff + (u >> 16 & 1)) >> 16:
 *   - float subnormals are kept and rounded like any other value (to a bf16
 *     subnormal, or to ±0 or the smallest normal); this is torch's
 *     tensor.to(torch.bfloat16) and ml_dtypes' (numpy) bfloat16, so a
 *     safetensors bf16 file holds what PyTorch would have written. The
 *     AVX512-BF16 instructions vcvtneps2bf16 / vcvtne2ps2bf16 differ exactly
 *     there: they treat denormal inputs as zero regardless of MXCSR (Intel SDM),
 *     which is why xdistill does not use them (the bf16 matmul operands are
 *     converted by xd_fp32_to_bf16_n, which the compiler vectorises);
 *   - values that round above the largest finite bf16 (|x| >= 0x1.ffp127 …
 *     FLT_MAX) give ±inf; ±inf and ±0 are kept;
 *   - NaN gives a quiet NaN of the same sign keeping the top 6 payload bits:
 *     (u >> 16) | 0x40, as vcvtneps2bf16 does (torch canonicalises every NaN to
 *     0x7fc0, ml_dtypes to 0x7fc0 | sign; all agree on the default NaN
 *     0x7fc00000 → 0x7fc0).
 *
 * The array forms read and write through memcpy, so the 16-bit side may be
 * unaligned (a tensor inside a mapped file). */
#ifndef XD_F16_H
#define XD_F16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t xd_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static inline float xd_bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static inline float xd_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) /* ±0 or subnormal: m · 2^-24, exact in float */
        return xd_bits_f32(xd_f32_bits((float)m * 0x1p-24f) | sign);
    if (e == 31) return xd_bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN */
    return xd_bits_f32(sign | ((e - 15u + 127u) << 23) | (m << 13));
}

static inline uint16_t xd_fp32_to_fp16(float x) {
    uint32_t u = xd_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top 9 payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x1ffu));
    if (a >= 0x477ff000u) /* >= 65520 = 65504 + half an ulp: the tie goes to even = inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* >= 2^-14: a normal half */
        uint32_t e = (a >> 23) - 127u + 15u, m = a & 0x7fffffu;
        uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1fffu;
        /* a carry out of the mantissa bumps the exponent, which is exactly right
         * (at most to 0x7bff + 1 = 0x7c00, excluded by the inf test above) */
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to 0 (2^-25 is a tie, to even 0) */
    /* subnormal half: round(|x| · 2^24) with |x| = m · 2^(e - 150), m with its
     * implicit bit; |x| · 2^24 = m / 2^(126 - e), 14 <= 126 - e <= 24 */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, s = 126u - e;
    uint32_t h = m >> s, rest = m & ((1u << s) - 1u), halfway = 1u << (s - 1u);
    if (rest > halfway || (rest == halfway && (h & 1u))) h++; /* may reach 0x400: min normal */
    return (uint16_t)(sign | h);
}

static inline float xd_bf16_to_fp32(uint16_t h) { return xd_bits_f32((uint32_t)h << 16); }

static inline uint16_t xd_fp32_to_bf16(float x) {
    uint32_t u = xd_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* One fp16 value at a possibly unaligned address (a field inside a quantised block). */
static inline float xd_fp16_load(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return xd_fp16_to_fp32(h);
}
static inline void xd_fp16_store(void *p, float x) {
    uint16_t h = xd_fp32_to_fp16(x);
    memcpy(p, &h, 2);
}

/* Array forms: n values; the 16-bit side may be unaligned. */
void xd_fp16_to_fp32_n(float *dst, const void *src, size_t n);
void xd_bf16_to_fp32_n(float *dst, const void *src, size_t n);
void xd_fp32_to_fp16_n(void *dst, const float *src, size_t n);
void xd_fp32_to_bf16_n(void *dst, const float *src, size_t n);

#endif
