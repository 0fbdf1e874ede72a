/* 16-bit float conversions (src/core/f16.h), the one implementation used by
 * the GGUF / safetensors readers and writers, the top-k logit files and the
 * bf16 compute path:
 *  - fp16: edge values (±0, subnormals, 65504, overflow to inf, NaN, ties to
 *    even), every half round-tripped, and random floats checked to round to
 *    the nearest half (and against the compiler's _Float16 where it has one);
 *  - bf16: hand-computed cases (±0, float subnormals kept and rounded as
 *    torch / ml_dtypes do, not flushed as vcvtne2ps2bf16 would, inf, NaN,
 *    ties, overflow to inf) and every upper half with its critical lower
 *    halves checked against the nearest bf16 computed in double;
 *  - the array forms equal the scalar ones on unaligned buffers. */
#include <stdint.h>
#include <string.h>

#include "core/f16.h"
#include "core/rng.h"
#include "test.h"

/* ---- fp16 ------------------------------------------------------------------------------ */

static void test_f16_edges(void) {
    const struct { float x; uint16_t h; const char *what; } c[] = {
        {0.0f, 0x0000, "+0"},
        {-0.0f, 0x8000, "-0"},
        {1.0f, 0x3c00, "1"},
        {-2.0f, 0xc000, "-2"},
        {0.1f, 0x2e66, "0.1"},
        {65504.0f, 0x7bff, "max half 65504"},
        {-65504.0f, 0xfbff, "-65504"},
        {65519.99609375f, 0x7bff, "just below 65520 rounds down to 65504"},
        {65520.0f, 0x7c00, "65520: the tie goes to even = inf"},
        {1e6f, 0x7c00, "overflow -> inf"},
        {-1e6f, 0xfc00, "overflow -> -inf"},
        {INFINITY, 0x7c00, "inf"},
        {-INFINITY, 0xfc00, "-inf"},
        {0x1p-14f, 0x0400, "min normal 2^-14"},
        {0x1p-24f, 0x0001, "min subnormal 2^-24"},
        {-0x1p-24f, 0x8001, "-2^-24"},
        {1023 * 0x1p-24f, 0x03ff, "max subnormal"},
        {1023.5f * 0x1p-24f, 0x0400, "tie max subnormal / min normal -> even (0x400)"},
        {0x1p-25f, 0x0000, "2^-25: tie between 0 and 2^-24 -> even 0"},
        {0x1.000002p-25f, 0x0001, "just above 2^-25"},
        {3 * 0x1p-25f, 0x0002, "1.5 * 2^-24: tie -> even 2"},
        {5 * 0x1p-25f, 0x0002, "2.5 * 2^-24: tie -> even 2"},
        {1e-45f, 0x0000, "float subnormal -> 0"},
        {-1e-45f, 0x8000, "-float subnormal -> -0"},
        {1.0f + 0x1p-11f, 0x3c00, "1 + half ulp: tie -> even 1"},
        {1.0f + 3 * 0x1p-11f, 0x3c02, "1 + 1.5 ulp: tie -> even"},
        {0x1.002002p+0f, 0x3c01, "just above the tie"},
        {2047.0f, 0x67ff, "2047 exact"},
        {2049.0f, 0x6800, "2049: tie between 2048 and 2050 -> 2048"},
        {2051.0f, 0x6802, "2051: tie -> 2052"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint16_t h = xd_fp32_to_fp16(c[i].x);
        CHECK(h == c[i].h, "f32_to_f16(%a) = 0x%04x, expected 0x%04x (%s)", (double)c[i].x, h,
              c[i].h, c[i].what);
    }
    /* NaN keeps its sign and stays NaN */
    uint16_t hn = xd_fp32_to_fp16(NAN), hm = xd_fp32_to_fp16(-NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) && !(hn & 0x8000), "NaN -> 0x%04x", hn);
    CHECK((hm & 0x7c00) == 0x7c00 && (hm & 0x3ff) && (hm & 0x8000), "-NaN -> 0x%04x", hm);
    /* a signalling NaN with only low payload bits must still give a NaN (quiet) */
    float snan;
    uint32_t sb = 0x7f800001u;
    memcpy(&snan, &sb, 4);
    CHECK(xd_fp32_to_fp16(snan) == 0x7e00, "sNaN -> 0x%04x", xd_fp32_to_fp16(snan));
    /* half -> float */
    CHECK(xd_fp16_to_fp32(0x0001) == 0x1p-24f, "0x0001");
    CHECK(xd_fp16_to_fp32(0x03ff) == 1023 * 0x1p-24f, "0x03ff");
    CHECK(xd_fp16_to_fp32(0x7bff) == 65504.0f, "0x7bff");
    CHECK(xd_fp16_to_fp32(0x3555) == 0.333251953125f, "0x3555");
    CHECK(isinf(xd_fp16_to_fp32(0x7c00)) && xd_fp16_to_fp32(0x7c00) > 0, "0x7c00");
    CHECK(isinf(xd_fp16_to_fp32(0xfc00)) && xd_fp16_to_fp32(0xfc00) < 0, "0xfc00");
    CHECK(isnan(xd_fp16_to_fp32(0x7e00)) && isnan(xd_fp16_to_fp32(0xfe01)), "NaN halves");
    CHECK(xd_fp16_to_fp32(0x8000) == 0 && signbit(xd_fp16_to_fp32(0x8000)), "-0");
    /* every half round-trips */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = xd_fp16_to_fp32((uint16_t)h);
        uint16_t back = xd_fp32_to_fp16(f);
        int nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (nan ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000))
                : back != h)
            bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
}

/* Random finite floats below 65520 in magnitude: the half is the nearest (ties
 * to an even mantissa), checked in double against its neighbours. */
static void test_f16_nearest(void) {
    uint64_t s = 88172645463325252ull;
    int bad = 0, n = 0, cmp = 0, bad_cmp = 0;
    for (int i = 0; i < 400000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint32_t u = (uint32_t)s;
        /* exponents spread over the half range and a bit beyond */
        uint32_t e = 96 + (uint32_t)((s >> 40) % 48); /* 2^-31 .. 2^16 */
        u = (u & 0x807fffffu) | (e << 23);
        if (i % 16 == 0) u = (u & 0xffffe000u) | 0x1000u; /* exact ties in the normal range */
        float x;
        memcpy(&x, &u, 4);
        if (!(fabsf(x) < 65520.0f)) continue;
        n++;
        uint16_t h = xd_fp32_to_fp16(x);
        double d = fabs((double)x - xd_fp16_to_fp32(h));
        for (int dd = -1; dd <= 1; dd += 2) {
            int nb = (int)(h & 0x7fff) + dd;
            if (nb < 0 || nb > 0x7bff) continue;
            double dn = fabs((double)x - xd_fp16_to_fp32((uint16_t)((h & 0x8000) | nb)));
            if (dn < d || (dn == d && (h & 1))) bad++;
        }
#if defined(__FLT16_MAX__)
        _Float16 ref = (_Float16)x;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        cmp++;
        bad_cmp += rb != h;
#endif
    }
    CHECK(bad == 0, "%d of %d random floats not rounded to the nearest half (ties to even)", bad, n);
    CHECK(bad_cmp == 0, "%d of %d differ from the compiler's _Float16", bad_cmp, cmp);
    printf("fp16: %d random floats rounded to nearest-even; %d compared with _Float16%s\n", n, cmp,
           cmp ? "" : " (the compiler has none)");
}

/* ---- bf16 ------------------------------------------------------------------------------ */

static float f_of(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

static void test_bf16_edges(void) {
    const struct { uint32_t u; uint16_t h; const char *what; } c[] = {
        {0x00000000u, 0x0000, "+0"},
        {0x80000000u, 0x8000, "-0"},
        {0x3f800000u, 0x3f80, "1"},
        {0xc0000000u, 0xc000, "-2"},
        {0x3f808000u, 0x3f80, "1 + 2^-8: tie -> even 1"},
        {0x3f818000u, 0x3f82, "1 + 3 * 2^-8: tie -> even 0x3f82"},
        {0x3f808001u, 0x3f81, "just above the tie"},
        {0x3f807fffu, 0x3f80, "just below the tie"},
        {0x3dcccccdu, 0x3dcd, "0.1"},
        /* float subnormals are kept (torch, ml_dtypes), not flushed to zero */
        {0x000116c2u, 0x0001, "1e-40 -> bf16 subnormal 0x0001"},
        {0x800116c2u, 0x8001, "-1e-40 -> 0x8001"},
        {0x00000001u, 0x0000, "smallest float subnormal -> +0"},
        {0x80000001u, 0x8000, "-smallest float subnormal -> -0"},
        {0x00008000u, 0x0000, "2^-134: tie between 0 and 2^-133 -> even 0"},
        {0x00018000u, 0x0002, "3 * 2^-134: tie -> even 0x0002"},
        {0x00008001u, 0x0001, "just above 2^-134"},
        {0x007fffffu, 0x0080, "largest float subnormal -> min normal"},
        {0x007f7fffu, 0x007f, "largest bf16 subnormal"},
        {0x00800000u, 0x0080, "min normal 2^-126"},
        /* the top of the range */
        {0x7f7f0000u, 0x7f7f, "max bf16 0x1.fep127"},
        {0x7f7f7fffu, 0x7f7f, "just below the tie with inf"},
        {0x7f7f8000u, 0x7f80, "0x1.ffp127: tie -> even = inf"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX -> inf"},
        {0xff7fffffu, 0xff80, "-FLT_MAX -> -inf"},
        {0x7f800000u, 0x7f80, "inf"},
        {0xff800000u, 0xff80, "-inf"},
        /* NaN: quiet, sign and top payload bits kept */
        {0x7fc00000u, 0x7fc0, "default NaN"},
        {0xffc00000u, 0xffc0, "-NaN"},
        {0x7f800001u, 0x7fc0, "sNaN with a low payload bit -> quiet 0x7fc0"},
        {0x7f810000u, 0x7fc1, "sNaN with payload bit 16 -> 0x7fc1"},
        {0x7fffffffu, 0x7fff, "NaN, all payload bits: truncated, not rounded to inf"},
        {0xff8fffffu, 0xffcf, "-sNaN"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint16_t h = xd_fp32_to_bf16(f_of(c[i].u));
        CHECK(h == c[i].h, "fp32_to_bf16(0x%08x) = 0x%04x, expected 0x%04x (%s)", c[i].u, h, c[i].h,
              c[i].what);
    }
    CHECK(xd_bf16_to_fp32(0x3f80) == 1.0f && xd_bf16_to_fp32(0xc000) == -2.0f, "bf16 1, -2");
    CHECK(xd_bf16_to_fp32(0x0001) == 0x1p-133f, "bf16 0x0001 = 2^-133");
    CHECK(xd_bf16_to_fp32(0x8000) == 0 && signbit(xd_bf16_to_fp32(0x8000)), "bf16 -0");
    CHECK(isinf(xd_bf16_to_fp32(0x7f80)) && xd_bf16_to_fp32(0xff80) < 0, "bf16 inf");
    CHECK(isnan(xd_bf16_to_fp32(0x7fc1)) && isnan(xd_bf16_to_fp32(0xff81)), "bf16 NaN");
    /* every bf16 round-trips (NaNs: to a quiet NaN of the same sign) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = xd_fp32_to_bf16(xd_bf16_to_fp32((uint16_t)h));
        int nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan ? back != (h | 0x40) : back != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

/* Every upper half (sign, exponent, 7 mantissa bits) with the lower halves
 * where rounding decides (0, 1, just below / at / above the tie, 0xffff) and
 * a few random ones: the result is the nearest bf16 in double, ties to an
 * even mantissa, or inf past the tie above the largest finite value. */
static void test_bf16_nearest(void) {
    xd_rng r;
    xd_rng_seed(&r, 5);
    int bad = 0, n = 0;
    for (uint32_t up = 0; up < 65536; up++) {
        if ((up & 0x7f80) == 0x7f80) continue; /* inf / NaN: the edge cases above */
        uint32_t lows[12] = {0, 1, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff};
        for (int k = 8; k < 12; k++) lows[k] = (uint32_t)(xd_rng_u64(&r) & 0xffff);
        for (int k = 0; k < 12; k++) {
            uint32_t u = up << 16 | lows[k];
            float x = f_of(u);
            uint16_t h = xd_fp32_to_bf16(x);
            n++;
            /* candidates: the truncation and the next value away from zero */
            uint16_t lo = (uint16_t)up, hi = (uint16_t)(up + 1);
            double dl = fabs((double)x - xd_bf16_to_fp32(lo));
            double dh = (hi & 0x7fff) == 0x7f80 ? (fabs((double)x) >= 0x1.ffp127 ? 0 : INFINITY)
                                                : fabs((double)x - xd_bf16_to_fp32(hi));
            uint16_t want = dl < dh ? lo : dh < dl ? hi : (lo & 1) ? hi : lo;
            if (h != want) {
                if (bad++ < 5)
                    fprintf(stderr, "bf16(0x%08x) = 0x%04x, nearest 0x%04x\n", u, h, want);
            }
        }
    }
    CHECK(bad == 0, "%d of %d floats not rounded to the nearest bf16 (ties to even)", bad, n);
}

/* ---- array forms ------------------------------------------------------------------------- */

static void test_arrays(void) {
    enum { N = 1000 };
    float x[N], y[N], z[N];
    uint8_t raw[2 * N + 1], raw2[2 * N + 1];
    xd_rng r;
    xd_rng_seed(&r, 9);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)xd_rng_u64(&r);
        if (i % 7 == 0) u &= 0x807fffffu;  /* subnormals */
        if (i % 11 == 0) u |= 0x7f800000u; /* inf / NaN */
        x[i] = f_of(u);
    }
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *p = raw + 1; /* unaligned on purpose */
        if (pass == 0) xd_fp32_to_fp16_n(p, x, N);
        else xd_fp32_to_bf16_n(p, x, N);
        for (int i = 0; i < N; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad += h != (pass == 0 ? xd_fp32_to_fp16(x[i]) : xd_fp32_to_bf16(x[i]));
        }
        if (pass == 0) xd_fp16_to_fp32_n(y, p, N);
        else xd_bf16_to_fp32_n(y, p, N);
        for (int i = 0; i < N; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            z[i] = pass == 0 ? xd_fp16_to_fp32(h) : xd_bf16_to_fp32(h);
        }
        bad += memcmp(y, z, sizeof y) != 0;
    }
    CHECK(bad == 0, "%d array conversions differ from the scalar ones", bad);
    memset(raw2, 0xab, sizeof raw2);
    xd_fp32_to_bf16_n(raw2, x, 0);
    CHECK(raw2[0] == 0xab, "n = 0 writes nothing");
}

int main(void) {
    test_f16_edges();
    test_f16_nearest();
    test_bf16_edges();
    test_bf16_nearest();
    test_arrays();
    return test_summary("test_f16");
}
