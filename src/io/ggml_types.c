/* ggml block formats and dequantisation to fp32. Block layouts follow ggml's
 * ggml-common.h; each block stores fp16 scale(s) and packed integer codes:
 *   Q4_0  32 el, 18 B: d, qs[16]            x = (q - 8)·d
 *   Q4_1  32 el, 20 B: d, m, qs[16]         x = q·d + m
 *   Q5_0  32 el, 22 B: d, qh[4], qs[16]     x = (q5 - 16)·d   (5th bit from qh)
 *   Q5_1  32 el, 24 B: d, m, qh[4], qs[16]  x = q5·d + m
 *   Q8_0  32 el, 34 B: d, qs[32] (int8)     x = q·d
 *   IQ4_NL 32 el, 18 B: d, qs[16]           x = d·K[q], K = the 16 non-linear levels
 *                      (−127 … 113, kvalues_iq4nl); element j < 16 is the low nibble of
 *                      qs[j], element j + 16 its high nibble (as Q4_0)
 *   Q2_K 256 el, 84 B: scales[16], qs[64], d, dmin
 *                      16 sub-blocks of 16: scales[s] = sc (low nibble) | m (high nibble);
 *                      x = d·sc·q − dmin·m, q the 2-bit code
 *   Q3_K 256 el, 110 B: hmask[32], qs[64], scales[12], d
 *                      16 sub-blocks of 16 with 6-bit scales stored +32: the low 4 bits of
 *                      scale s are the low (s < 8) or high (s ≥ 8) nibble of scales[s % 8],
 *                      the top 2 bits are bits 2⌊s/4⌋.. of scales[8 + s % 4];
 *                      x = d·(sc − 32)·(q2 − (hbit ? 0 : 4)), q2 the 2-bit code
 *   Q2_K/Q3_K code layout: element 128n + 32j + 16h + l (n < 2, j < 4, h < 2, l < 16) is
 *                      bits 2j..2j+1 of qs[32n + 16h + l], in sub-block 8n + 2j + h; Q3_K's
 *                      high bit is bit 4n + j of hmask[16h + l]
 *   Q4_K 256 el, 144 B: d, dmin, scales[12] (6-bit sc/min × 8), qs[128]
 *                      x = d·sc_j·q − dmin·m_j for sub-block j of 32
 *   Q5_K 256 el, 176 B: as Q4_K plus qh[32] for the 5th bit
 *   Q6_K 256 el, 210 B: ql[128], qh[64], scales[16] (int8), d   x = d·sc·(q6 − 32)
 *   IQ4_XS 256 el, 136 B: d, scales_h (u16), scales_l[4], qs[128]
 *                      8 sub-blocks of 32 with 6-bit scales stored +32: low nibble
 *                      (ib even) or high nibble (ib odd) of scales_l[ib/2], top 2 bits
 *                      = bits 2ib, 2ib+1 of scales_h; x = d·(sc − 32)·K[q], the codes of
 *                      sub-block ib packed in qs[16ib..16ib+15] as IQ4_NL's
 *   Q8_K 256 el, 292 B: d (fp32!), qs[256] (int8), bsums[16] (int16, unused here)
 *                      x = d·q; ggml's activation type, rare in files
 * Exactness: a product of an fp16 scale (11-bit significand) with the integer sub-block
 * scale and code needs at most 23 bits (Q6_K: 11 + 7 + 5), so it is exact in fp32 in any
 * order and with or without FMA contraction; only adding a min (Q4_1, Q5_1, Q2_K, Q4_K,
 * Q5_K) rounds, once, and Q8_K's fp32 d times its code rounds once. The results are
 * therefore bit-identical to gguf-py's and ggml's (tests/test_gguf.c checks all types). */
#include "ggml_types.h"

#include <string.h>

#include "../core/error.h"
#include "../core/f16.h"

const char *xd_ggml_type_name(uint32_t type) {
    /* every id ggml has defined, readable or not, so that errors can name it */
    static const char *const names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1",
        [8] = "Q8_0", [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K",
        [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS", [17] = "IQ2_XS",
        [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S",
        [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64",
        [29] = "IQ1_M", [30] = "BF16", [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4"};
    if (type < sizeof names / sizeof *names && names[type]) return names[type];
    return "unknown";
}

const char *xd_ggml_supported_types(void) {
    return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, "
           "Q6_K, Q8_K, IQ4_XS";
}

/* 6-bit scale and min of sub-block j (0..7) packed in the 12 scale bytes of Q4_K/Q5_K. */
static void k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b), m = xd_fp16_load(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0 / Q5_1: low nibbles in qs, 5th bits in the 32-bit qh (bit j for element j). */
static void deq_q5(const uint8_t *b, float *y, int has_min) {
    float d = xd_fp16_load(b), m = has_min ? xd_fp16_load(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh;
    memcpy(&qh, p, 4);
    const uint8_t *qs = p + 4;
    int off = has_min ? 0 : 16;
    for (int j = 0; j < 16; j++) {
        int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)(((qs[j] & 0xF) | h0) - off) * d + m;
        y[j + 16] = (float)(((qs[j] >> 4) | h1) - off) * d + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

/* The 16 levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl). */
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

static void deq_iq4_nl(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)iq4_levels[qs[j] & 0xF];
        y[j + 16] = d * (float)iq4_levels[qs[j] >> 4];
    }
}

static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *qs = b + 16;
    float d = xd_fp16_load(b + 80), dmin = xd_fp16_load(b + 82);
    for (int n = 0; n < 2; n++, qs += 32, scales += 8, y += 128)
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                int s = scales[2 * j + h];
                float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
                const uint8_t *q = qs + 16 * h;
                float *out = y + 32 * j + 16 * h;
                for (int l = 0; l < 16; l++) out[l] = dl * (float)((q[l] >> (2 * j)) & 3) - ml;
            }
}

/* 6-bit scale s (0..15) of a Q3_K block, stored with +32. */
static int q3_k_scale(const uint8_t *sc, int s) {
    int lo = s < 8 ? sc[s] & 0xF : sc[s - 8] >> 4;
    int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
    float d = xd_fp16_load(b + 108);
    for (int n = 0; n < 2; n++, qs += 32, y += 128)
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                float dl = d * (float)q3_k_scale(scales, 8 * n + 2 * j + h);
                const uint8_t *q = qs + 16 * h, *hm = hmask + 16 * h;
                int hbit = 4 * n + j;
                float *out = y + 32 * j + 16 * h;
                for (int l = 0; l < 16; l++) {
                    int v = ((q[l] >> (2 * j)) & 3) - ((hm[l] >> hbit) & 1 ? 0 : 4);
                    out[l] = dl * (float)v;
                }
            }
}

static void deq_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)qs[j];
}

static void deq_iq4_xs(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b);
    uint16_t sh;
    memcpy(&sh, b + 2, 2);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
        int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
        float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[j] = dl * (float)iq4_levels[qs[j] & 0xF];
            y[j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
        }
    }
}

static void deq_q4_k(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b), dmin = xd_fp16_load(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        int sc, m;
        k_scale_min(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) y[j + l] = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) y[j + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void deq_q5_k(const uint8_t *b, float *y) {
    float d = xd_fp16_load(b), dmin = xd_fp16_load(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        int sc, m;
        k_scale_min(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            y[j + l] = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            y[j + 32 + l] = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}

static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = xd_fp16_load(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

int xd_ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    size_t be, bb;
    if (xd_ggml_type_block(type, &be, &bb))
        return xd_err("cannot dequantise ggml type %u (%s): supported are %s", type,
                      xd_ggml_type_name(type), xd_ggml_supported_types());
    if (n % (int64_t)be)
        return xd_err("dequantise %s: %lld elements is not a multiple of the block size %zu",
                      xd_ggml_type_name(type), (long long)n, be);
    const uint8_t *p = src;
    int64_t nb = n / (int64_t)be;
    switch (type) {
    case GGML_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case GGML_F16: xd_fp16_to_fp32_n(dst, src, (size_t)n); return 0;
    case GGML_BF16: xd_bf16_to_fp32_n(dst, src, (size_t)n); return 0;
    default: break;
    }
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = p + (size_t)i * bb;
        float *y = dst + (size_t)i * be;
        switch (type) {
        case GGML_Q4_0: deq_q4_0(b, y); break;
        case GGML_Q4_1: deq_q4_1(b, y); break;
        case GGML_Q5_0: deq_q5(b, y, 0); break;
        case GGML_Q5_1: deq_q5(b, y, 1); break;
        case GGML_Q8_0: deq_q8_0(b, y); break;
        case GGML_Q4_K: deq_q4_k(b, y); break;
        case GGML_Q5_K: deq_q5_k(b, y); break;
        case GGML_Q6_K: deq_q6_k(b, y); break;
        case GGML_IQ4_NL: deq_iq4_nl(b, y); break;
        case GGML_Q2_K: deq_q2_k(b, y); break;
        case GGML_Q3_K: deq_q3_k(b, y); break;
        case GGML_Q8_K: deq_q8_k(b, y); break;
        case GGML_IQ4_XS: deq_iq4_xs(b, y); break;
        }
    }
    return 0;
}
