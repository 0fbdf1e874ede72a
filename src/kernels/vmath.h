/* Vectorisable scalar math for the kernels.
 *
 * e^x written so that the compiler vectorises loops that call it (libm's
 * expf is a function call the vectoriser cannot see through without
 * -ffast-math). Cody–Waite reduction x = n·ln2 + r (n rounded with the
 * 1.5·2^23 trick), the Cephes expf polynomial for e^r on [−ln2/2, ln2/2],
 * and 2^n assembled in the exponent bits. Max relative error 8.5e-8
 * (≈ 1.4 ulp; glibc expf: 6e-8) over the range it handles. */
#ifndef XD_VMATH_H
#define XD_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^x for x in [−87, 88]: the caller clamps (n = round(x·log2 e) must stay
 * in [−126, 127] so that 2^n is a normal float). */
static inline float xd_exp_core(float x) {
    const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f;
    const float magic = 12582912.0f;
    float t = x * log2e + magic; /* n + magic, n = round(x·log2 e) */
    float n = t - magic;
    float r = x - n * c1 - n * c2;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t ti, bits;
    memcpy(&ti, &t, sizeof ti);
    bits = (ti - 0x4B400000u + 127u) << 23; /* the low bits of t hold n; 2^n */
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

/* e^x for x <= 0 (softmax arguments after subtracting the row max); below
 * −87 (e^x < 1.7e-38) it returns 0. */
static inline float xd_exp_le0(float x) {
    float e = xd_exp_core(x < -87.0f ? -87.0f : x);
    return x < -87.0f ? 0.0f : e;
}

/* 1/(1 + e^−x), the logistic sigmoid, for any finite x: e^−x is clamped to
 * [e^−87, e^88], so the result is exact to the rounding above for
 * |x| ≤ 87 and saturates within 1e-38 of 0 or 1 beyond. */
static inline float xd_sigmoid(float x) {
    float y = -x;
    y = y < -87.0f ? -87.0f : y;
    y = y > 88.0f ? 88.0f : y;
    return 1.0f / (1.0f + xd_exp_core(y));
}

/* max(m, x[0..n)) with 16 independent lanes, so that both GCC and clang
 * vectorise it without -ffast-math (x > m ? x : m is exactly the vector max
 * instruction's semantics; a NaN in x is skipped, as there). */
static inline float xd_max_of(const float *x, int64_t n, float m) {
    float lane[16];
    for (int l = 0; l < 16; l++) lane[l] = m;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < 16; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

/* Σ x[0..n) in double with 8 independent accumulators combined in a fixed
 * order (deterministic; no add latency chain). */
static inline double xd_sum_d(const float *x, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Σ a_i·b_i in double, in 8 fixed lanes: the compiler vectorises the lane loop without
 * -ffast-math, and the summation order is fixed whatever the ISA or the threads. */
static inline double xd_dot_lanes(const float *a, const float *b, int64_t n) {
    double l[8] = {0}, s = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += (double)a[i + j] * b[i + j];
    for (; i < n; i++) s += (double)a[i] * b[i];
    return s + (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])));
}

#endif
