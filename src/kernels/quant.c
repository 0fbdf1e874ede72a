/* Quantised block dot products, scalar references (quant.h). Blocks are read byte by
 * byte as io/ggml_types.c reads them (little-endian fp16 scales, packed codes). */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/f16.h"
#include "core/ggml_type.h"

int xd_qdot_act_type(uint32_t wtype) {
    switch (wtype) {
    case GGML_Q4_0: case GGML_Q5_0: case GGML_Q8_0: return GGML_Q8_0;
    case GGML_Q4_1: case GGML_Q5_1: return GGML_Q8_1;
    case GGML_Q4_K: case GGML_Q5_K: case GGML_Q6_K: return GGML_Q8_K;
    default: return -1;
    }
}

size_t xd_q_row_bytes(uint32_t type, int64_t n) {
    size_t be, bb;
    if (type == GGML_Q8_1) be = 32, bb = 36; /* an activation type only: not in files */
    else if (xd_ggml_type_block(type, &be, &bb) || be < 32) return 0;
    return n % (int64_t)be ? 0 : (size_t)(n / (int64_t)be) * bb;
}

/* ---- activations ---------------------------------------------------------------------- */

/* Q8_0 / Q8_1 block of 32: d = max|x| / 127, q = round(x / d) (nearest, ties away from 0);
 * Q8_1 also s = d · Σ q. */
static void quant_q8_32(const float *x, uint8_t *b, int with_sum) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int8_t *qs = (int8_t *)(b + (with_sum ? 4 : 2));
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        qs[j] = (int8_t)roundf(x[j] * id);
        sum += qs[j];
    }
    xd_fp16_store(b, d);
    if (with_sum) xd_fp16_store(b + 2, d * (float)sum);
}

/* Q8_K block of 256, as ggml: max = the element of largest |x| (sign kept), iscale =
 * −127 / max, q = min(127, round(iscale · x)), d = 1 / iscale; bsums of every 16. */
static void quant_q8_k(const float *x, uint8_t *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < 256; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    int8_t *qs = (int8_t *)(b + 4);
    int16_t bs[16];
    if (amax == 0.0f) {
        float z = 0;
        memcpy(b, &z, 4);
        memset(qs, 0, 256);
        memset(b + 260, 0, 32);
        return;
    }
    float iscale = -127.0f / max;
    for (int j = 0; j < 256; j++) {
        int v = (int)lrintf(iscale * x[j]); /* round half to even, as ggml's nearest_int */
        qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += qs[16 * g + j];
        bs[g] = (int16_t)s;
    }
    float d = 1.0f / iscale;
    memcpy(b, &d, 4);
    memcpy(b + 260, bs, sizeof bs);
}

static int use_avx2(void);
#if defined(__x86_64__)
static void quant_q8_32_avx2(const float *x, uint8_t *b, int with_sum);
#endif

int xd_quantize_act(uint32_t act, const float *x, int64_t n, void *out) {
    uint8_t *o = out;
    int64_t blk = act == GGML_Q8_K ? 256 : 32;
    if (act != GGML_Q8_0 && act != GGML_Q8_1 && act != GGML_Q8_K)
        return xd_err("quantise: type %u is not an activation type (Q8_0, Q8_1, Q8_K)", act);
    if (n % blk) return xd_err("quantise: %lld elements is not a multiple of %lld", (long long)n, (long long)blk);
    size_t bb = xd_q_row_bytes(act, blk);
    for (int64_t i = 0; i < n / blk; i++, o += bb, x += blk) {
        if (act == GGML_Q8_K) quant_q8_k(x, o);
#if defined(__x86_64__)
        else if (use_avx2()) quant_q8_32_avx2(x, o, act == GGML_Q8_1);
#endif
        else quant_q8_32(x, o, act == GGML_Q8_1);
    }
    return 0;
}

/* ---- the integer sums of one block pair: scalar, and AVX2 chosen at run time ------------ */

/* Which kernels run: 1 AVX2 (+ FMA, F16C; when the CPU has them), 0 scalar. */
static int g_isa = -1;

void xd_quant_set_scalar(int scalar) { xd_quant_set_isa(scalar ? 0 : -1); }

static int g_isa_cap = 2;

void xd_quant_set_isa(int level) { g_isa = -1, g_isa_cap = level < 0 ? 2 : level; }

/* 0 scalar, 1 AVX2 + FMA + F16C, 2 also AVX512-VL and AVX512-VNNI (vpdpbusd on 256 bits) */
static int isa(void) {
#if defined(__x86_64__)
    if (g_isa < 0) {
        __builtin_cpu_init();
        unsigned a, b, c, d; /* F16C: CPUID leaf 1, ECX bit 29 (clang 14 has no "f16c" here) */
        int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
        int level = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
        /* AVX512-VNNI: CPUID leaf 7, ECX bit 11; AVX512-VL: EBX bit 31 (and the OS saves
         * the ZMM state: __builtin_cpu_supports checks that for avx512f) */
        if (level && __builtin_cpu_supports("avx512f") && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
            (c >> 11 & 1) && (b >> 31 & 1))
            level = 2;
        g_isa = level < g_isa_cap ? level : g_isa_cap;
    }
    return g_isa;
#else
    return 0;
#endif
}

static int use_avx2(void) { return isa() >= 1; }

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float f16_avx(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* quant_q8_32 on eight lanes, the same bytes: the lanes' max of |x|, then roundf (nearest,
 * ties away from 0) as trunc(y + copysign(0.5 − 2⁻²⁵, y)), exact for |y| < 2²³ (here ≤ 127):
 * the sum rounds up to the next integer iff |y|'s fraction is ≥ 0.5. */
AVX2 static void quant_q8_32_avx2(const float *x, uint8_t *b, int with_sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float d = _mm_cvtss_f32(h) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0x1.fffffep-2f);
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 y = _mm256_mul_ps(v[i], vid);
        y = _mm256_add_ps(y, _mm256_or_ps(half, _mm256_and_ps(sign, y)));
        q[i] = _mm256_cvttps_epi32(y);
    }
    /* int32 → int8 in order: packs interleave 128-bit lanes, the permute puts them back */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(b + (with_sum ? 4 : 2)), p);
    xd_fp16_store(b, d);
    if (with_sum) {
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        xd_fp16_store(b + 2, d * (float)_mm_cvtsi128_si32(t));
    }
}

/* The 32 nibble codes of qs[16] (low nibbles first) as 32 unsigned bytes. */
AVX2 static __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

/* 8 int32 partial sums of Σ u_j·s_j, u unsigned (≤ 127), s signed: maddubs cannot
 * saturate (2·127·128 < 2^15). */
AVX2 static __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The exact integer part of one 32-element block pair: 8 int32 partial sums of Σ c·q (q: the
 * activation's codes). Signed × signed bytes as |c| · (q with c's sign). Made for AVX2
 * (dot_us8) and for AVX512-VNNI (dot_us8_vnni: one vpdpbusd). */
#define ISUM_Q4_0(T, NAME, DOT)                                                                 \
    T static inline __m256i NAME(const uint8_t *w, const uint8_t *q) {                         \
        __m256i y = _mm256_loadu_si256((const __m256i *)q);                                    \
        __m256i c = _mm256_sub_epi8(nibbles(w + 2), _mm256_set1_epi8(8));                       \
        return DOT(_mm256_sign_epi8(c, c), _mm256_sign_epi8(y, c));                            \
    }
#define ISUM_Q4_1(T, NAME, DOT)                                                                 \
    T static inline __m256i NAME(const uint8_t *w, const uint8_t *q) {                         \
        return DOT(nibbles(w + 4), _mm256_loadu_si256((const __m256i *)q));                    \
    }
#define ISUM_Q8_0(T, NAME, DOT)                                                                 \
    T static inline __m256i NAME(const uint8_t *w, const uint8_t *q) {                         \
        __m256i x = _mm256_loadu_si256((const __m256i *)(w + 2));                              \
        __m256i y = _mm256_loadu_si256((const __m256i *)q);                                    \
        return DOT(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));                            \
    }

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

VNNI static inline __m256i dot_us8_vnni(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

ISUM_Q4_0(AVX2, isum_q4_0_avx2, dot_us8)
ISUM_Q4_1(AVX2, isum_q4_1_avx2, dot_us8)
ISUM_Q8_0(AVX2, isum_q8_0_avx2, dot_us8)
ISUM_Q4_0(VNNI, isum_q4_0_vnni, dot_us8_vnni)
ISUM_Q4_1(VNNI, isum_q4_1_vnni, dot_us8_vnni)
ISUM_Q8_0(VNNI, isum_q8_0_vnni, dot_us8_vnni)
#endif


static int isum_q4(const uint8_t *qs, const int8_t *q, int off) {
    int s = 0;
    for (int j = 0; j < 16; j++) s += ((qs[j] & 0xF) - off) * q[j] + ((qs[j] >> 4) - off) * q[j + 16];
    return s;
}

static int isum_q8(const int8_t *x, const int8_t *y) {
    int s = 0;
    for (int j = 0; j < 32; j++) s += x[j] * y[j];
    return s;
}

/* ---- dot products, per block pair ------------------------------------------------------ */

/* The 32 codes of a Q4_0/Q4_1 block (low nibbles: elements 0..15, high: 16..31) and a
 * Q5_0/Q5_1 block (the 5th bit of element j is bit j of qh). */
static void codes4(const uint8_t *qs, int *c) {
    for (int j = 0; j < 16; j++) c[j] = qs[j] & 0xF, c[j + 16] = qs[j] >> 4;
}

static void codes5(const uint8_t *qh4, const uint8_t *qs, int *c) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    codes4(qs, c);
    for (int j = 0; j < 32; j++) c[j] |= (int)((qh >> j) & 1) << 4;
}

static int isum32(const int *c, int off, const int8_t *q) {
    int s = 0;
    for (int j = 0; j < 32; j++) s += (c[j] - off) * q[j];
    return s;
}

static float dot_q4_0(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 18, a += 34)
        sum += (float)isum_q4(w + 2, (const int8_t *)(a + 2), 8) * (xd_fp16_load(w) * xd_fp16_load(a));
    return sum;
}

static float dot_q4_1(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 20, a += 36) {
        int s = isum_q4(w + 4, (const int8_t *)(a + 4), 0);
        sum += (xd_fp16_load(w) * xd_fp16_load(a)) * (float)s + xd_fp16_load(w + 2) * xd_fp16_load(a + 2);
    }
    return sum;
}

static float dot_q5_0(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    int c[32];
    for (int64_t i = 0; i < nb; i++, w += 22, a += 34) {
        codes5(w + 2, w + 6, c);
        sum += (float)isum32(c, 16, (const int8_t *)(a + 2)) * (xd_fp16_load(w) * xd_fp16_load(a));
    }
    return sum;
}

static float dot_q5_1(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    int c[32];
    for (int64_t i = 0; i < nb; i++, w += 24, a += 36) {
        codes5(w + 4, w + 8, c);
        int s = isum32(c, 0, (const int8_t *)(a + 4));
        sum += (xd_fp16_load(w) * xd_fp16_load(a)) * (float)s + xd_fp16_load(w + 2) * xd_fp16_load(a + 2);
    }
    return sum;
}

static float dot_q8_0(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 34, a += 34)
        sum += (float)isum_q8((const int8_t *)(w + 2), (const int8_t *)(a + 2)) * (xd_fp16_load(w) * xd_fp16_load(a));
    return sum;
}

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's 12 scale bytes. */
static void k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: element 64n + l (n < 4, l < 32) is the low nibble of qs[32n + l], element
 * 64n + 32 + l its high nibble (sub-blocks 2n and 2n + 1); Q5_K's 5th bit of element
 * 64n + 32h + l is bit 2n + h of qh[l]. */
static float dot_qk45(const uint8_t *w, const uint8_t *a, int64_t nb, int five) {
    size_t bw = five ? 176 : 144;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += bw, a += 292) {
        float d = xd_fp16_load(w), dmin = xd_fp16_load(w + 2), da;
        memcpy(&da, a, 4);
        const uint8_t *scales = w + 4, *qh = w + 16, *qs = w + (five ? 48 : 16);
        const int8_t *q8 = (const int8_t *)(a + 4);
        int16_t bs[16];
        memcpy(bs, a + 260, sizeof bs);
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k_scale_min(j, scales, &sc, &m);
            int n = j / 2, h = j % 2, s = 0;
            for (int l = 0; l < 32; l++) {
                int c = h ? qs[32 * n + l] >> 4 : qs[32 * n + l] & 0xF;
                if (five) c |= ((qh[l] >> (2 * n + h)) & 1) << 4;
                s += c * q8[32 * j + l];
            }
            sumi += sc * s;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        sum += da * (d * (float)sumi - dmin * (float)summ);
    }
    return sum;
}

/* Q6_K: element 128n + 32j + l (n < 2, j < 4, l < 32): low 4 bits from ql[64n + l]
 * (j = 0, 2) or ql[64n + 32 + l] (j = 1, 3), the low nibble for j < 2 and the high one
 * for j ≥ 2; high 2 bits at bits 2j of qh[32n + l]; the code is that minus 32. Its
 * sub-block of 16 is 8n + 2j + l / 16, with the int8 scale scales[8n + 2j + l / 16]. */
static float dot_q6_k(const uint8_t *w, const uint8_t *a, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++, w += 210, a += 292) {
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        float d = xd_fp16_load(w + 208), da;
        memcpy(&da, a, 4);
        const int8_t *q8 = (const int8_t *)(a + 4);
        int32_t sumi = 0;
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int half = 0; half < 2; half++) {
                    int s = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int lo = j & 1 ? ql[64 * n + 32 + l] : ql[64 * n + l];
                        lo = j & 2 ? lo >> 4 : lo & 15;
                        int hi = (qh[32 * n + l] >> (2 * j)) & 3;
                        s += ((lo | hi << 4) - 32) * q8[128 * n + 32 * j + l];
                    }
                    sumi += sc[8 * n + 2 * j + half] * s;
                }
        sum += da * d * (float)sumi;
    }
    return sum;
}

#if defined(__x86_64__)
/* ---- AVX2 rows of the 5-bit and K types ----------------------------------------------- */

/* The 32 bits of qh4 as 32 bytes, byte k = 0x10 where bit k is set (the 5th bit of code k). */
AVX2 static __m256i fifth_bits(const uint8_t *qh4) {
    uint32_t h;
    memcpy(&h, qh4, 4);
    /* byte k of the result starts as byte k / 8 of h (the shuffle works within each 128-bit
     * half, and both halves hold h's four bytes) */
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), pick);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull); /* bit k % 8 */
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

#define ISUM_Q5_0(T, NAME, DOT)                                                                 \
    T static inline __m256i NAME(const uint8_t *w, const uint8_t *q) {                         \
        __m256i c = _mm256_sub_epi8(_mm256_or_si256(nibbles(w + 6), fifth_bits(w + 2)),        \
                                    _mm256_set1_epi8(16));                                     \
        __m256i y = _mm256_loadu_si256((const __m256i *)q);                                    \
        return DOT(_mm256_sign_epi8(c, c), _mm256_sign_epi8(y, c));                            \
    }
#define ISUM_Q5_1(T, NAME, DOT)                                                                 \
    T static inline __m256i NAME(const uint8_t *w, const uint8_t *q) {                         \
        return DOT(_mm256_or_si256(nibbles(w + 8), fifth_bits(w + 4)),                         \
                   _mm256_loadu_si256((const __m256i *)q));                                    \
    }
ISUM_Q5_0(AVX2, isum_q5_0_avx2, dot_us8)
ISUM_Q5_1(AVX2, isum_q5_1_avx2, dot_us8)
ISUM_Q5_0(VNNI, isum_q5_0_vnni, dot_us8_vnni)
ISUM_Q5_1(VNNI, isum_q5_1_vnni, dot_us8_vnni)

/* A row of 32-element blocks against the activation a (codes at a + i·AB + AQ, its block
 * scales given as fp32: ad[i], and for Q8_1 as[i] = d·Σq): two blocks a step into two
 * accumulators of 8 lanes (the FMA chains overlap), one horizontal sum at the end (ggml's
 * way). The integer parts are exact; the float sum runs in another order than the scalar
 * reference's (test_quant_dot bounds the difference). MIN: the weight has a min m (at +2),
 * adding m·s per block. */
#define ROW32(T, NAME, WB, AB, AQ, MIN, ISUM)                                                   \
    T static float NAME(const uint8_t *w, const uint8_t *a, int64_t nb, const float *ad,    \
                           const float *as) {                                                  \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                        \
        float m0 = 0, m1 = 0;                                                                  \
        int64_t i = 0;                                                                         \
        for (; i + 2 <= nb; i += 2, w += 2 * (WB)) {                                           \
            __m256i p0 = ISUM(w, a + (size_t)i * (AB) + (AQ));                                 \
            __m256i p1 = ISUM(w + (WB), a + (size_t)(i + 1) * (AB) + (AQ));                    \
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f16_avx(w) * ad[i]),  \
                                   acc0);                                                      \
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1),                                     \
                                   _mm256_set1_ps(f16_avx(w + (WB)) * ad[i + 1]), acc1);        \
            if (MIN) {                                                                         \
                m0 += f16_avx(w + 2) * as[i];                                                  \
                m1 += f16_avx(w + (WB) + 2) * as[i + 1];                                       \
            }                                                                                  \
        }                                                                                      \
        if (i < nb) {                                                                          \
            __m256i p0 = ISUM(w, a + (size_t)i * (AB) + (AQ));                                 \
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f16_avx(w) * ad[i]),  \
                                   acc0);                                                      \
            if (MIN) m0 += f16_avx(w + 2) * as[i];                                             \
        }                                                                                      \
        return hsum_ps(_mm256_add_ps(acc0, acc1)) + (m0 + m1);                                 \
    }

ROW32(AVX2, row_q4_0_avx2, 18, 34, 2, 0, isum_q4_0_avx2)
ROW32(AVX2, row_q4_1_avx2, 20, 36, 4, 1, isum_q4_1_avx2)
ROW32(AVX2, row_q5_0_avx2, 22, 34, 2, 0, isum_q5_0_avx2)
ROW32(AVX2, row_q5_1_avx2, 24, 36, 4, 1, isum_q5_1_avx2)
ROW32(AVX2, row_q8_0_avx2, 34, 34, 2, 0, isum_q8_0_avx2)
ROW32(VNNI, row_q4_0_vnni, 18, 34, 2, 0, isum_q4_0_vnni)
ROW32(VNNI, row_q4_1_vnni, 20, 36, 4, 1, isum_q4_1_vnni)
ROW32(VNNI, row_q5_0_vnni, 22, 34, 2, 0, isum_q5_0_vnni)
ROW32(VNNI, row_q5_1_vnni, 24, 36, 4, 1, isum_q5_1_vnni)
ROW32(VNNI, row_q8_0_vnni, 34, 34, 2, 0, isum_q8_0_vnni)

/* Q4_K / Q5_K (layout at dot_qk45): per sub-block of 32 the exact integer Σ c·q in 8 lanes
 * times its 6-bit scale, kept in int32 lanes over the block (|Σ| ≤ 8·63·31·127·32); the
 * min term from Q8_K's block sums, as the reference. */
#define ROW_QK45(T, NAME, DOT)                                                                       \
    T static float NAME(const uint8_t *w, const uint8_t *a, int64_t nb, int five) {                      \
        size_t bw = five ? 176 : 144;                                                                    \
        __m256 acc = _mm256_setzero_ps();                                                                \
        float mins = 0;                                                                                  \
        const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);                          \
        for (int64_t i = 0; i < nb; i++, w += bw, a += 292) {                                            \
            float d = f16_avx(w), dmin = f16_avx(w + 2), da;                                             \
            memcpy(&da, a, 4);                                                                           \
            const uint8_t *scales = w + 4, *qs = w + (five ? 48 : 16);                                   \
            const int8_t *q8 = (const int8_t *)(a + 4);                                                  \
            int16_t bs[16];                                                                              \
            memcpy(bs, a + 260, sizeof bs);                                                              \
            __m256i hv = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();  \
            __m256i sumi = _mm256_setzero_si256();                                                       \
            int32_t summ = 0;                                                                            \
            for (int n = 0; n < 4; n++) {                                                                \
                __m256i b = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));                          \
                for (int h = 0; h < 2; h++) {                                                            \
                    int j = 2 * n + h, sc, m;                                                            \
                    k_scale_min(j, scales, &sc, &m);                                                     \
                    __m256i c = _mm256_and_si256(h ? _mm256_srli_epi16(b, 4) : b, low4);                 \
                    if (five) /* bit j of qh[l] (a 16-bit shift leaves bit 0 of each byte its own) */    \
                        c = _mm256_or_si256(c, _mm256_slli_epi16(_mm256_and_si256(                       \
                                _mm256_srl_epi16(hv, _mm_cvtsi32_si128(j)), one), 4));                   \
                    __m256i p = DOT(c, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));              \
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, _mm256_set1_epi32(sc)));         \
                    summ += m * (bs[2 * j] + bs[2 * j + 1]);                                             \
                }                                                                                        \
            }                                                                                            \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(da * d), acc);                \
            mins += da * dmin * (float)summ;                                                             \
        }                                                                                                \
        return hsum_ps(acc) - mins;                                                                      \
    }                                                                                                    

/* Q6_K (layout at dot_q6_k): the unsigned 6-bit codes u times q in 8 lanes (lanes 0–3 are
 * one sub-block of 16, lanes 4–7 the next, each times its int8 scale); the −32 offset as
 * 32 · Σ scale · (Q8_K's block sum), subtracted once per block: exact integers. */
#define ROW_Q6K(T, NAME, DOT)                                                                             \
    T static float NAME(const uint8_t *w, const uint8_t *a, int64_t nb) {                                     \
        __m256 acc = _mm256_setzero_ps();                                                                     \
        const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);                             \
        for (int64_t i = 0; i < nb; i++, w += 210, a += 292) {                                                \
            const int8_t *sc = (const int8_t *)(w + 192);                                                     \
            float d = f16_avx(w + 208), da;                                                                   \
            memcpy(&da, a, 4);                                                                                \
            const int8_t *q8 = (const int8_t *)(a + 4);                                                       \
            int16_t bs[16];                                                                                   \
            memcpy(bs, a + 260, sizeof bs);                                                                   \
            __m256i sumi = _mm256_setzero_si256();                                                            \
            int32_t off = 0;                                                                                  \
            for (int n = 0; n < 2; n++) {                                                                     \
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(w + 64 * n)),                               \
                        l1 = _mm256_loadu_si256((const __m256i *)(w + 64 * n + 32)),                          \
                        hv = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * n));                         \
                for (int j = 0; j < 4; j++) {                                                                 \
                    __m256i lo = j & 1 ? l1 : l0;                                                             \
                    lo = _mm256_and_si256(j & 2 ? _mm256_srli_epi16(lo, 4) : lo, low4);                       \
                    __m256i hi = _mm256_and_si256(_mm256_srl_epi16(hv, _mm_cvtsi32_si128(2 * j)), three);     \
                    __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));                                \
                    __m256i p = DOT(u, _mm256_loadu_si256((const __m256i *)(q8 + 128 * n + 32 * j)));         \
                    int k = 8 * n + 2 * j, s0 = sc[k], s1 = sc[k + 1];                                        \
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, _mm256_setr_epi32(s0, s0, s0, s0,     \
                                                                                          s1, s1, s1, s1)));  \
                    off += s0 * bs[k] + s1 * bs[k + 1];                                                       \
                }                                                                                             \
            }                                                                                                 \
            sumi = _mm256_sub_epi32(sumi, _mm256_setr_epi32(32 * off, 0, 0, 0, 0, 0, 0, 0));                  \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(da * d), acc);                     \
        }                                                                                                     \
        return hsum_ps(acc);                                                                                  \
    }                                                                                                         

ROW_QK45(AVX2, dot_qk45_avx2, dot_us8)
ROW_QK45(VNNI, dot_qk45_vnni, dot_us8_vnni)
ROW_Q6K(AVX2, dot_q6_k_avx2, dot_us8)
ROW_Q6K(VNNI, dot_q6_k_vnni, dot_us8_vnni)
#endif

typedef float (*row32_fn)(const uint8_t *, const uint8_t *, int64_t, const float *, const float *);

/* The AVX2 row kernel of a 32-element type (NULL: none, or no AVX2 here). */
static row32_fn row32_of(uint32_t wtype) {
#if defined(__x86_64__)
    if (isa() >= 2) switch (wtype) {
        case GGML_Q4_0: return row_q4_0_vnni;
        case GGML_Q4_1: return row_q4_1_vnni;
        case GGML_Q5_0: return row_q5_0_vnni;
        case GGML_Q5_1: return row_q5_1_vnni;
        case GGML_Q8_0: return row_q8_0_vnni;
        default: break;
        }
    if (use_avx2()) switch (wtype) {
        case GGML_Q4_0: return row_q4_0_avx2;
        case GGML_Q4_1: return row_q4_1_avx2;
        case GGML_Q5_0: return row_q5_0_avx2;
        case GGML_Q5_1: return row_q5_1_avx2;
        case GGML_Q8_0: return row_q8_0_avx2;
        default: break;
        }
#endif
    (void)wtype;
    return NULL;
}

/* An activation's per-block scales as fp32: Q8_0 / Q8_1 d into ad, Q8_1's s into as. */
static void act_scales(uint32_t act, const uint8_t *a, int64_t nb, float *ad, float *as) {
    size_t ab = act == GGML_Q8_1 ? 36 : 34;
    for (int64_t i = 0; i < nb; i++) {
        ad[i] = xd_fp16_load(a + (size_t)i * ab);
        if (act == GGML_Q8_1) as[i] = xd_fp16_load(a + (size_t)i * ab + 2);
    }
}

float xd_qdot(uint32_t wtype, const void *w, const void *a, int64_t n) {
    int64_t nb = n / (wtype == GGML_Q4_K || wtype == GGML_Q5_K || wtype == GGML_Q6_K ? 256 : 32);
    row32_fn row = row32_of(wtype);
    if (row) {
        float buf[512], *ad = nb <= 256 ? buf : malloc(2 * (size_t)nb * sizeof(float));
        if (ad) {
            act_scales((uint32_t)xd_qdot_act_type(wtype), a, nb, ad, ad + nb);
            float r = row(w, a, nb, ad, ad + nb);
            if (ad != buf) free(ad);
            return r;
        }
    }
#if defined(__x86_64__)
    if (isa() >= 2) switch (wtype) {
        case GGML_Q4_K: return dot_qk45_vnni(w, a, nb, 0);
        case GGML_Q5_K: return dot_qk45_vnni(w, a, nb, 1);
        case GGML_Q6_K: return dot_q6_k_vnni(w, a, nb);
        default: break;
        }
    if (use_avx2()) switch (wtype) {
        case GGML_Q4_K: return dot_qk45_avx2(w, a, nb, 0);
        case GGML_Q5_K: return dot_qk45_avx2(w, a, nb, 1);
        case GGML_Q6_K: return dot_q6_k_avx2(w, a, nb);
        default: break; /* the scalar reference */
        }
#endif
    switch (wtype) {
    case GGML_Q4_0: return dot_q4_0(w, a, nb);
    case GGML_Q4_1: return dot_q4_1(w, a, nb);
    case GGML_Q5_0: return dot_q5_0(w, a, nb);
    case GGML_Q5_1: return dot_q5_1(w, a, nb);
    case GGML_Q8_0: return dot_q8_0(w, a, nb);
    case GGML_Q4_K: return dot_qk45(w, a, nb, 0);
    case GGML_Q5_K: return dot_qk45(w, a, nb, 1);
    case GGML_Q6_K: return dot_q6_k(w, a, nb);
    default: return NAN;
    }
}

int xd_qmatvec(uint32_t wtype, const void *W, int64_t rows, int64_t cols, const float *x,
               float *y, void *scratch) {
    int act = xd_qdot_act_type(wtype);
    size_t wb = xd_q_row_bytes(wtype, cols), ab = act < 0 ? 0 : xd_q_row_bytes((uint32_t)act, cols);
    if (act < 0 || !wb || !ab)
        return xd_err("quantised matvec: type %u with %lld columns is not supported (a multiple "
                      "of its block)", wtype, (long long)cols);
    void *q = scratch ? scratch : malloc(ab);
    if (!q) return xd_err("out of memory");
    if (xd_quantize_act((uint32_t)act, x, cols, q)) {
        if (!scratch) free(q);
        return -1;
    }
    const uint8_t *Wb = W;
    row32_fn row = row32_of(wtype);
    int64_t nb = cols / 32;
    float *ad = row ? malloc(2 * (size_t)nb * sizeof(float)) : NULL;
    if (ad) { /* the activation's scales once for every row */
        act_scales((uint32_t)act, q, nb, ad, ad + nb);
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
        for (int64_t r = 0; r < rows; r++) y[r] = row(Wb + (size_t)r * wb, q, nb, ad, ad + nb);
        free(ad);
    } else {
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
        for (int64_t r = 0; r < rows; r++) y[r] = xd_qdot(wtype, Wb + (size_t)r * wb, q, cols);
    }
    if (!scratch) free(q);
    return 0;
}
