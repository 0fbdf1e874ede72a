/* ggml block formats and dequantisation to fp32. Block layouts follow ggml's
 * ggml-common.h; each block stores fp16 scale(s) and packed integer codes:
 *   Q4_0  32 el, 18 B: d, qs[16]            x = (q - 8)·d
 *   Q4_1  32 el, 20 B: d, m, qs[16]         x = q·d + m
 *   Q5_0  32 el, 22 B: d, qh[4], qs[16]     x = (q5 - 16)·d   (5th bit from qh)
 *   Q5_1  32 el, 24 B: d, m, qh[4], qs[16]  x = q5·d + m
 *   Q8_0  32 el, 34 B: d, qs[32] (int8)     x = q·d
 *   Q4_K 256 el, 144 B: d, dmin, scales[12] (6-bit sc/min × 8), qs[128]
 *                      x = d·sc_j·q − dmin·m_j for sub-block j of 32
 *   Q5_K 256 el, 176 B: as Q4_K plus qh[32] for the 5th bit
 *   Q6_K 256 el, 210 B: ql[128], qh[64], scales[16] (int8), d   x = d·sc·(q6 − 32) */
#include "ggml_types.h"

#include <string.h>

#include "../core/error.h"

float xd_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; mant <<= 1; } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000 | (mant << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t xd_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* round to nearest even */
    return (uint16_t)h;
}

float xd_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return xd_fp16_to_fp32(h);
}

int ggml_type_block(uint32_t type, size_t *be, size_t *bb) {
    switch (type) {
    case GGML_F32: *be = 1; *bb = 4; return 0;
    case GGML_F16: case GGML_BF16: *be = 1; *bb = 2; return 0;
    case GGML_Q4_0: *be = 32; *bb = 18; return 0;
    case GGML_Q4_1: *be = 32; *bb = 20; return 0;
    case GGML_Q5_0: *be = 32; *bb = 22; return 0;
    case GGML_Q5_1: *be = 32; *bb = 24; return 0;
    case GGML_Q8_0: *be = 32; *bb = 34; return 0;
    case GGML_Q4_K: *be = 256; *bb = 144; return 0;
    case GGML_Q5_K: *be = 256; *bb = 176; return 0;
    case GGML_Q6_K: *be = 256; *bb = 210; return 0;
    default: *be = *bb = 0; return -1;
    }
}

const char *ggml_type_name(uint32_t type) {
    switch (type) {
    case GGML_F32: return "F32";
    case GGML_F16: return "F16";
    case GGML_BF16: return "BF16";
    case GGML_Q4_0: return "Q4_0";
    case GGML_Q4_1: return "Q4_1";
    case GGML_Q5_0: return "Q5_0";
    case GGML_Q5_1: return "Q5_1";
    case GGML_Q8_0: return "Q8_0";
    case GGML_Q8_1: return "Q8_1";
    case GGML_Q2_K: return "Q2_K";
    case GGML_Q3_K: return "Q3_K";
    case GGML_Q4_K: return "Q4_K";
    case GGML_Q5_K: return "Q5_K";
    case GGML_Q6_K: return "Q6_K";
    case GGML_Q8_K: return "Q8_K";
    default: return "unknown";
    }
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
    float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0 / Q5_1: low nibbles in qs, 5th bits in the 32-bit qh (bit j for element j). */
static void deq_q5(const uint8_t *b, float *y, int has_min) {
    float d = f16_at(b), m = has_min ? f16_at(b + 2) : 0.0f;
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
    float d = f16_at(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

static void deq_q4_k(const uint8_t *b, float *y) {
    float d = f16_at(b), dmin = f16_at(b + 2);
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
    float d = f16_at(b), dmin = f16_at(b + 2);
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
    float d = f16_at(b + 208);
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

int ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    size_t be, bb;
    if (ggml_type_block(type, &be, &bb))
        return xd_err("cannot dequantise ggml type %u (%s)", type, ggml_type_name(type));
    if (n % (int64_t)be)
        return xd_err("dequantise %s: %lld elements is not a multiple of the block size %zu",
                      ggml_type_name(type), (long long)n, be);
    const uint8_t *p = src;
    int64_t nb = n / (int64_t)be;
    switch (type) {
    case GGML_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case GGML_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = f16_at(p + 2 * i);
        return 0;
    case GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = xd_bf16_to_fp32(h);
        }
        return 0;
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
        }
    }
    return 0;
}
