/* Weight rows into ggml's blocks (quant.h, xd_quantize_row): ggml's reference quantisers
 * (quantize_row_*_ref in ggml-quants.c), which gguf-py's quants.py reproduces bit for bit;
 * tests/ref/make_quant_fixture.py records gguf-py's bytes and test_gguf_write compares.
 * Every product and sum is its own statement, so no compiler contracts one into an FMA
 * (the rounding must be fp32's, as numpy's). */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/f16.h"
#include "core/ggml_type.h"
#include "quant.h"

/* The element of largest |x| of n with its sign (the first of equals; 0 when all are 0),
 * as Q4_0 / Q5_0 and Q6_K's sub-blocks take it. */
static float signed_max(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    return max;
}

/* The 32 codes after the scales at p: 4-bit types qs[16] (element j the low nibble of
 * qs[j], element j + 16 the high one); 5-bit types first qh (bit j = the 5th bit of
 * element j), then qs. */
static void pack_codes(const uint8_t *q, uint8_t *p, int five) {
    uint8_t *qs = p + (five ? 4 : 0);
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
    if (five) {
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint32_t)(q[j] >> 4) << j;
        memcpy(p, &qh, 4);
    }
}

/* d = amax / 127, q = roundf(x / d) (as x · (1/d)) */
static void q8_0(const float *x, uint8_t *b) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    xd_fp16_store(b, d);
    for (int j = 0; j < 32; j++) {
        float t = x[j] * id;
        b[2 + j] = (uint8_t)(int8_t)roundf(t);
    }
}

/* Q4_0 / Q5_0: d = max / −2^(bits−1), q = min(2^bits − 1, trunc(x / d + 2^(bits−1) + 0.5)) */
static void q_sym(const float *x, uint8_t *b, int five) {
    float half = five ? 16.0f : 8.0f, d = signed_max(x, 32) / -half, id = d != 0.0f ? 1.0f / d : 0.0f;
    int top = five ? 31 : 15;
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        float t = x[j] * id;
        float u = t + (half + 0.5f);
        int v = (int)(int8_t)u;
        q[j] = (uint8_t)(v > top ? top : v);
    }
    xd_fp16_store(b, d);
    pack_codes(q, b + 2, five);
}

/* Q4_1 / Q5_1: d = (max − min) / (2^bits − 1), m = min, q = min(top, trunc((x − m) / d + 0.5)) */
static void q_affine(const float *x, uint8_t *b, int five) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
    int top = five ? 31 : 15;
    float d = (mx - mn) / (float)top, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        float s = x[j] - mn;
        float t = s * id;
        float u = t + 0.5f;
        int v = (int)(int8_t)u;
        q[j] = (uint8_t)(v > top ? top : v);
    }
    xd_fp16_store(b, d);
    xd_fp16_store(b + 2, mn);
    pack_codes(q, b + 4, five);
}

/* Round to nearest, ties to even (the default rounding mode), as ggml's nearest_int. */
static int nearest(float x) { return (int)lrintf(x); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* A sub-block of n values on the symmetric grid −nmax … nmax−1 with one scale (ggml's
 * make_qx_quants, weights x²): start from scale = max/−nmax (max the element of largest
 * |x|), then try the 18 grids (nmax + 0.1·k)/−max, k = ±1 … ±9, each with its
 * least-squares scale Σwxl/Σwl², keeping the one with the largest (Σwxl)²/Σwl². L gets the
 * codes + nmax. Returns the scale (0 for an all-zero sub-block). */
static float sym_scale(int n, int nmax, const float *x, int8_t *L) {
    float max = signed_max(x, n);
    if (fabsf(max) < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        float t = iscale * x[i];
        int l = clampi(nearest(t), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        float wx = w * x[i];
        float wl = w * (float)l;
        sumlx += wx * (float)l;
        suml2 += wl * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        float step = 0.1f * (float)is;
        float grid = (float)nmax + step;
        iscale = -grid / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            float t = iscale * x[i];
            int l = clampi(nearest(t), -nmax, nmax - 1);
            float w = x[i] * x[i];
            float wx = w * x[i];
            float wl = w * (float)l;
            sumlx += wx * (float)l;
            suml2 += wl * (float)l;
        }
        float lhs = sumlx * sumlx, rhs = best * suml2;
        if (suml2 > 0 && lhs > rhs) {
            for (int i = 0; i < n; i++) {
                float t = iscale * x[i];
                L[i] = (int8_t)(nmax + clampi(nearest(t), -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q6_K (210 bytes per 256): 16 sub-blocks of 16, each its sym_scale on the 6-bit grid;
 * d = max_scale/−128 in fp16 and int8 sub-block scales round(scale/d) (at most 127); then
 * every code again as round(x / (d·scale)) in −32 … 31, stored + 32: low 4 bits in
 * ql[128], high 2 in qh[64] (layout at kernels/quant.c, dot_q6_k). */
static void q6_k(const float *x, uint8_t *b) {
    int8_t L[256];
    float scales[16], max_scale = 0, max_abs = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = sym_scale(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
    }
    memset(b, 0, 210);
    if (max_abs < 1e-15f) return;
    float iscale = -128.0f / max_scale;
    xd_fp16_store(b + 208, 1.0f / iscale);
    int8_t *sc = (int8_t *)(b + 192);
    for (int ib = 0; ib < 16; ib++) {
        float t = iscale * scales[ib];
        int v = nearest(t);
        sc[ib] = (int8_t)(v < 127 ? v : 127);
    }
    float d0 = xd_fp16_load(b + 208);
    for (int j = 0; j < 16; j++) {
        float d = d0 * (float)sc[j];
        if (d == 0) continue;
        for (int i = 0; i < 16; i++) {
            float t = x[16 * j + i] / d;
            L[16 * j + i] = (int8_t)(clampi(nearest(t), -32, 31) + 32);
        }
    }
    uint8_t *ql = b, *qh = b + 128;
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
}

/* A sub-block of n values on the grid 0 … nmax with a scale and a min, x ≈ scale·L − min
 * (ggml's make_qkx2_quants, weights w, min ≤ 0 kept at 0 or below): start from the range
 * (min, max); then try the grids iscale = (nmax + rmin + rdelta·k)/(max − min), k = 0 …
 * nstep, each with its weighted least-squares scale and min, keeping the one with the
 * smallest weighted squared error. The grid's range uses the best fit's min so far (as
 * ggml's does). L gets the codes; *neg_min = −min. Returns the scale. */
static float affine_scale(int n, int nmax, const float *x, const float *w, uint8_t *L,
                          float *neg_min, float rmin, float rdelta, int nstep) {
    uint8_t aux[32];
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        float wx = w[i] * x[i];
        sum_w += w[i];
        sum_x += wx;
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *neg_min = -mn;
        return 0;
    }
    float iscale = (float)nmax / (mx - mn), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        float t = iscale * (x[i] - mn);
        L[i] = (uint8_t)clampi(nearest(t), 0, nmax);
        float y = scale * (float)L[i];
        float diff = y + mn - x[i];
        float d2 = diff * diff;
        best += w[i] * d2;
    }
    for (int is = 0; is <= nstep; is++) {
        float step = rdelta * (float)is;
        float grid = rmin + step + (float)nmax;
        iscale = grid / (mx - mn); /* mn follows the best fit so far */
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            float t = iscale * (x[i] - mn);
            int l = clampi(nearest(t), 0, nmax);
            aux[i] = (uint8_t)l;
            float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        float p1 = sum_w * sum_l2, p2 = sum_l * sum_l;
        float D = p1 - p2;
        if (!(D > 0)) continue;
        float n1 = sum_w * sum_xl, n2 = sum_x * sum_l;
        float this_scale = (n1 - n2) / D;
        float m1 = sum_l2 * sum_x, m2 = sum_l * sum_xl;
        float this_min = (m1 - m2) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float y = this_scale * (float)aux[i];
            float diff = y + this_min - x[i];
            float d2 = diff * diff;
            err += w[i] * d2;
        }
        if (err < best) {
            memcpy(L, aux, (size_t)n);
            best = err;
            scale = this_scale;
            mn = this_min;
        }
    }
    *neg_min = -mn;
    return scale;
}

/* Q4_K (144 bytes per 256) and Q5_K (176): 8 sub-blocks of 32, each its affine_scale on the
 * 4-bit grid (ggml's rmin −1, 20 steps) or the 5-bit one (−0.5, 15 steps) with weights
 * |x| + rms(sub-block); d = max scale/63 and dmin = max min/63 in fp16, the 6-bit sub-block
 * scales and mins packed in 12 bytes (layout at kernels/quant.c, k_scale_min); then every
 * code again as round((x + dmin·m)/(d·sc)) in 0 … 15 (31). Q4_K packs code j + 32 of each
 * run of 64 as the high nibble of code j's byte; Q5_K the same with their fifth bits in
 * 32 bytes ahead of them (bit 2r of byte j for the r-th run's code j, bit 2r + 1 for j + 32). */
static void qk_affine(const float *x, uint8_t *b, int five) {
    const int nmax = five ? 31 : 15;
    uint8_t L[256];
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) {
            float sq = xs[l] * xs[l];
            sum_x2 += sq;
        }
        float av = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        scales[j] = five ? affine_scale(32, 31, xs, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15)
                         : affine_scale(32, 15, xs, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0, inv_min = max_min > 0 ? 63.0f / max_min : 0;
    uint8_t *sc = b + 4, ls[8], lm[8];
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        float ts = inv_scale * scales[j], tm = inv_min * mins[j];
        int a = nearest(ts), c = nearest(tm);
        ls[j] = (uint8_t)(a < 63 ? a : 63);
        lm[j] = (uint8_t)(c < 63 ? c : 63);
        if (j < 4) {
            sc[j] = ls[j];
            sc[j + 4] = lm[j];
        } else {
            sc[j + 4] = (uint8_t)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
            sc[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            sc[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    xd_fp16_store(b, max_scale / 63.0f);
    xd_fp16_store(b + 2, max_min / 63.0f);
    float d0 = xd_fp16_load(b), m0 = xd_fp16_load(b + 2);
    for (int j = 0; j < 8; j++) {
        float d = d0 * (float)ls[j];
        if (d == 0) continue;
        float dm = m0 * (float)lm[j];
        for (int i = 0; i < 32; i++) {
            float s = x[32 * j + i] + dm;
            float t = s / d;
            L[32 * j + i] = (uint8_t)clampi(nearest(t), 0, nmax);
        }
    }
    uint8_t *qh = b + 16, *q = b + (five ? 48 : 16);
    if (five) memset(qh, 0, 32);
    for (int j = 0, r = 0; j < 256; j += 64, q += 32, r++)
        for (int l = 0; l < 32; l++) {
            int lo = L[j + l], hi = L[j + l + 32];
            if (five) qh[l] |= (uint8_t)((lo >> 4) << (2 * r) | (hi >> 4) << (2 * r + 1));
            q[l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
        }
}

int xd_quantize_writable(uint32_t type) {
    return type == GGML_F32 || type == GGML_F16 || type == GGML_BF16 || type == GGML_Q8_0 ||
           type == GGML_Q4_0 || type == GGML_Q4_1 || type == GGML_Q5_0 || type == GGML_Q5_1 ||
           type == GGML_Q4_K || type == GGML_Q5_K || type == GGML_Q6_K;
}

size_t xd_quantize_row_bytes(uint32_t type, int64_t n) {
    size_t be, bb;
    if (!xd_quantize_writable(type) || xd_ggml_type_block(type, &be, &bb) || n % (int64_t)be) return 0;
    return (size_t)(n / (int64_t)be) * bb;
}

int xd_quantize_row(uint32_t type, const float *x, int64_t n, void *out) {
    uint8_t *o = out;
    if (!xd_quantize_writable(type))
        return xd_err("quantize: type %u cannot be written (expected F32, F16, BF16, Q8_0, Q4_0, "
                      "Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K)", type);
    switch (type) {
    case GGML_F32: memcpy(o, x, (size_t)n * sizeof(float)); return 0;
    case GGML_F16: xd_fp32_to_fp16_n(o, x, (size_t)n); return 0;
    case GGML_BF16: xd_fp32_to_bf16_n(o, x, (size_t)n); return 0;
    default: break;
    }
    if (type == GGML_Q6_K || type == GGML_Q4_K || type == GGML_Q5_K) {
        if (n % 256) return xd_err("quantize: %lld elements are not a multiple of the block (256)", (long long)n);
        size_t bb = xd_quantize_row_bytes(type, 256);
        for (int64_t i = 0; i < n / 256; i++)
            if (type == GGML_Q6_K) q6_k(x + 256 * i, o + bb * (size_t)i);
            else qk_affine(x + 256 * i, o + bb * (size_t)i, type == GGML_Q5_K);
        return 0;
    }
    size_t bb = xd_quantize_row_bytes(type, 32);
    if (n % 32) return xd_err("quantize: %lld elements are not a multiple of the block (32)", (long long)n);
    for (int64_t i = 0; i < n / 32; i++, x += 32, o += bb) {
        switch (type) {
        case GGML_Q8_0: q8_0(x, o); break;
        case GGML_Q4_0: q_sym(x, o, 0); break;
        case GGML_Q5_0: q_sym(x, o, 1); break;
        case GGML_Q4_1: q_affine(x, o, 0); break;
        default: q_affine(x, o, 1); break;
        }
    }
    return 0;
}
