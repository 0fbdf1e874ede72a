/* Quantised block dot products (src/kernels/quant.h) against an independent reference:
 * the weight blocks and the quantised activation dequantised by io/ggml_types.c (itself
 * checked against gguf-py in test_gguf.c) and multiplied in double. Random blocks of
 * every type (codes and sub-block scales random, fp16 scales in a safe range), 8 rows of
 * 1024 columns.
 *  - Activation quantisation: |x − d·q| ≤ |d|/2 per element, |q| ≤ 127, Q8_1's s = d·Σq
 *    (in fp16), Q8_K's block sums.
 *  - xd_qdot vs the double reference: the block sums are exact integers; what differs is
 *    fp32 rounding of the scale products and the running sum (within 2e-7 · Σ|w·a|;
 *    measured ≤ 2.1e-8), and for Q4_1 / Q5_1 the min term, which ggml (and so xd_qdot)
 *    takes from Q8_1's s = d·Σq stored in fp16: up to 2^-11 · |m·s| more per block.
 *  - the kernels chosen at run time (AVX2 for every type; AVX512-VNNI for the 32-element
 *    ones where the CPU has it), and the AVX2 ones forced, within 1e-6 · Σ|w·a| of the
 *    scalar references (the same exact integer sums; the float sum in 8 lanes instead of
 *    block order; measured ≤ 1e-7);
 *  - xd_qmatvec = xd_qdot row by row, exactly; and within the activation's quantisation
 *    error (Σ|w|·|d_a|/2 per block) of the fp32 product W·x.
 *  - Bad input: a type without a dot product, columns not a multiple of the block.
 *  - Against ggml's own kernels (test_ggml, below). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/f16.h"
#include "core/rng.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "test.h"
#include "xdistill.h"

enum { ROWS = 8, COLS = 1024 };

static void put_f16(uint8_t *p, float x) {
    uint16_t h = xd_fp32_to_fp16(x);
    memcpy(p, &h, 2);
}

/* Random blocks of type t for n elements: random bytes, then the fp16 scales set to
 * values in [lo, hi) (dmin-like fields too). */
static void random_blocks(uint32_t t, uint8_t *b, int64_t n, xd_rng *r) {
    size_t be, bb;
    xd_ggml_type_block(t, &be, &bb);
    for (int64_t i = 0; i < (int64_t)(n / (int64_t)be * (int64_t)bb); i++) b[i] = (uint8_t)xd_rng_u64(r);
    for (int64_t k = 0; k < n / (int64_t)be; k++) {
        uint8_t *x = b + k * bb;
        float d = 0.002f + 0.02f * (float)xd_rng_uniform(r), m = -0.05f + 0.1f * (float)xd_rng_uniform(r);
        switch (t) {
        case GGML_Q4_0: case GGML_Q5_0: case GGML_Q8_0: put_f16(x, d); break;
        case GGML_Q4_1: case GGML_Q5_1: put_f16(x, d); put_f16(x + 2, m); break;
        case GGML_Q4_K: case GGML_Q5_K: put_f16(x, d); put_f16(x + 2, fabsf(m)); break;
        case GGML_Q6_K: put_f16(x + 208, d); break;
        }
    }
}

/* The activation blocks back to fp32 (Q8_1: d·q; its s is checked apart). */
static void deq_act(uint32_t act, const uint8_t *a, float *out, int64_t n) {
    if (act != GGML_Q8_1) {
        xd_ggml_dequantize(act, a, out, n);
        return;
    }
    for (int64_t k = 0; k < n / 32; k++, a += 36) {
        uint16_t h;
        memcpy(&h, a, 2);
        float d = xd_fp16_to_fp32(h);
        for (int j = 0; j < 32; j++) out[32 * k + j] = d * (float)((const int8_t *)(a + 4))[j];
    }
}

static void check_activation(uint32_t act, const float *x, const uint8_t *a, int64_t n) {
    int64_t blk = act == GGML_Q8_K ? 256 : 32;
    size_t bb = xd_q_row_bytes(act, blk);
    int bad = 0;
    for (int64_t k = 0; k < n / blk; k++, a += bb) {
        float d;
        const int8_t *q;
        if (act == GGML_Q8_K) {
            memcpy(&d, a, 4);
            q = (const int8_t *)(a + 4);
        } else {
            uint16_t h;
            memcpy(&h, a, 2);
            d = xd_fp16_to_fp32(h);
            q = (const int8_t *)(a + (act == GGML_Q8_1 ? 4 : 2));
        }
        int sum = 0;
        for (int j = 0; j < blk; j++) {
            double err = fabs((double)x[k * blk + j] - (double)d * q[j]);
            /* d is rounded to fp16 for Q8_0/Q8_1: up to 127·|Δd| more */
            double tol = fabs(d) / 2 * (1 + 1e-6) + (act == GGML_Q8_K ? 0 : 127 * fabs(d) * 0x1p-11);
            if (err > tol || q[j] < -127) bad++;
            sum += q[j];
        }
        if (act == GGML_Q8_1) { /* s from the fp32 d (max|x| / 127), as ggml */
            float amax = 0;
            for (int j = 0; j < blk; j++) amax = fmaxf(amax, fabsf(x[k * blk + j]));
            uint16_t h;
            memcpy(&h, a + 2, 2);
            CHECK(h == xd_fp32_to_fp16(amax / 127.0f * (float)sum), "Q8_1 block %lld: s", (long long)k);
        }
        if (act == GGML_Q8_K)
            for (int g = 0; g < 16; g++) {
                int16_t bs;
                memcpy(&bs, a + 260 + 2 * g, 2);
                int s = 0;
                for (int j = 0; j < 16; j++) s += q[16 * g + j];
                CHECK(bs == s, "Q8_K block %lld: bsums[%d] %d vs %d", (long long)k, g, bs, s);
            }
    }
    CHECK(bad == 0, "activation type %u: %d elements off by more than d/2", act, bad);
}

static void test_type(uint32_t t, xd_rng *r) {
    int act = xd_qdot_act_type(t);
    size_t wb = xd_q_row_bytes(t, COLS), ab = xd_q_row_bytes((uint32_t)act, COLS);
    uint8_t *W = malloc(wb * ROWS), *a = malloc(ab);
    float *x = malloc(COLS * sizeof(float)), *wf = malloc((size_t)ROWS * COLS * sizeof(float));
    float *af = malloc(COLS * sizeof(float)), y[ROWS];
    random_blocks(t, W, (int64_t)ROWS * COLS, r);
    for (int j = 0; j < COLS; j++) x[j] = 4.0f * (float)xd_rng_uniform(r) - 2.0f;
    CHECK(xd_quantize_act((uint32_t)act, x, COLS, a) == 0, "quantise: %s", xd_last_error());
    check_activation((uint32_t)act, x, a, COLS);
    CHECK(xd_ggml_dequantize(t, W, wf, (int64_t)ROWS * COLS) == 0, "dequantise");
    deq_act((uint32_t)act, a, af, COLS);
    double worst = 0, worst_x = 0, worst_k = 0;
    CHECK(xd_qmatvec(t, W, ROWS, COLS, x, y, NULL) == 0, "qmatvec: %s", xd_last_error());
    for (int i = 0; i < ROWS; i++) {
        const float *w = wf + (size_t)i * COLS;
        double ref = 0, mag = 0, fx = 0, qerr = 0, smin = 0;
        if (act == GGML_Q8_1) /* the fp16 s: 2^-11 · |m_w · s_a| per block */
            for (int k = 0; k < COLS / 32; k++) {
                uint16_t hm, hs;
                memcpy(&hm, W + (size_t)i * wb + (size_t)k * (t == GGML_Q4_1 ? 20 : 24) + 2, 2);
                memcpy(&hs, a + (size_t)k * 36 + 2, 2);
                smin += fabs((double)xd_fp16_to_fp32(hm) * xd_fp16_to_fp32(hs)) * 0x1p-11;
            }
        for (int j = 0; j < COLS; j++) {
            ref += (double)w[j] * af[j];
            mag += fabs((double)w[j] * af[j]);
            fx += (double)w[j] * x[j];
            qerr += fabs((double)w[j]) * fabs((double)x[j] - af[j]);
        }
        float got = xd_qdot(t, W + (size_t)i * wb, a, COLS);
        xd_quant_set_scalar(1); /* the scalar integer sums: the same bits */
        float scalar = xd_qdot(t, W + (size_t)i * wb, a, COLS);
        xd_quant_set_isa(1); /* AVX2 at most (on a VNNI machine the run-time choice is VNNI) */
        float avx2 = xd_qdot(t, W + (size_t)i * wb, a, COLS);
        xd_quant_set_isa(-1);
        CHECK(fabs(scalar - avx2) <= 1e-6 * mag, "%s row %d: %.9g (AVX2) vs %.9g (scalar)",
              xd_ggml_type_name(t), i, avx2, scalar);
        /* the float sum in another order: each block term rounds once more or less */
        CHECK(fabs(scalar - got) <= 1e-6 * mag, "%s row %d: %.9g (run-time kernels) vs "
              "%.9g (scalar)", xd_ggml_type_name(t), i, got, scalar);
        if (fabs(scalar - got) / mag > worst_k) worst_k = fabs(scalar - got) / mag;
        double e = (fabs(got - ref) - smin) / mag;
        if (e > worst) worst = e;
        CHECK(e <= 2e-7, "%s row %d: qdot %.9g vs reference %.9g (relative to Σ|w·a| %.3g, "
              "after the fp16 min term's %.3g)", xd_ggml_type_name(t), i, got, ref, e, smin);
        CHECK(y[i] == got, "%s row %d: qmatvec %.9g vs qdot %.9g", xd_ggml_type_name(t), i, y[i], got);
        /* against the fp32 product: the activation's quantisation error, plus rounding */
        CHECK(fabs(y[i] - fx) <= qerr * (1 + 1e-5) + 2e-7 * mag + smin, "%s row %d: %.6g vs W·x %.6g (bound %.3g)",
              xd_ggml_type_name(t), i, y[i], fx, qerr);
        if (fabs(y[i] - fx) / (qerr + 1e-30) > worst_x) worst_x = fabs(y[i] - fx) / (qerr + 1e-30);
    }
    printf("%-5s x %-4s: (|qdot − reference| − fp16 min term) / Σ|w·a| ≤ %.2g; run-time kernels vs "
           "scalar ≤ %.2g; |W·x − qmatvec| ≤ %.2f of the activation's quantisation bound\n",
           xd_ggml_type_name(t), xd_ggml_type_name((uint32_t)act), worst, worst_k, worst_x);
    free(W), free(a), free(x), free(wf), free(af);
}

/* A scalar array of the fixture's metadata: its elements and count (NULL if missing). */
static const uint8_t *fx_array(const gguf_file *g, const char *key, uint32_t type, uint64_t *n) {
    const gguf_kv *kv = xd_gguf_find(g, key);
    if (!kv || kv->type != GGUF_T_ARRAY || kv->arr_type != type) return NULL;
    *n = kv->arr_n;
    return kv->arr_data;
}

/* Against ggml itself (tests/fixtures/ggml_dot.gguf, tests/ref/make_ggml_dot_fixture.py:
 * llama-cpp-python's libggml-cpu, its from_float and vec_dot on this CPU type):
 *  - our quantisation of the activation equals ggml's blocks: the same scales, codes
 *    within 1 (ggml's SIMD from_float multiplies by 127/max where the reference divides by
 *    d, and rounds ties to even: a code may differ by one where x·id sits at .5);
 *  - our xd_qdot of ggml's weight blocks with ggml's own activation blocks equals ggml's
 *    vec_dot within 1e-6 · Σ|w·a| (the same exact integer sums, summed in another order). */
static void test_ggml(void) {
    gguf_file *g = xd_gguf_open(XD_SOURCE_DIR "/tests/fixtures/ggml_dot.gguf");
    CHECK(g != NULL, "fixture: %s", xd_last_error());
    if (!g) return;
    static const char *const names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
    static const uint32_t types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0,
                                     GGML_Q4_K, GGML_Q5_K, GGML_Q6_K};
    char key[64];
    double worst = 0;
    int codes_off = 0, n_codes = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t nw = 0, nx = 0, na = 0, nd = 0, act = 0;
        snprintf(key, sizeof key, "%s.w", names[k]);
        const uint8_t *w = fx_array(g, key, GGUF_T_UINT8, &nw);
        snprintf(key, sizeof key, "%s.x", names[k]);
        const uint8_t *xb = fx_array(g, key, GGUF_T_FLOAT32, &nx);
        snprintf(key, sizeof key, "%s.a", names[k]);
        const uint8_t *a = fx_array(g, key, GGUF_T_UINT8, &na);
        snprintf(key, sizeof key, "%s.dot", names[k]);
        const uint8_t *db = fx_array(g, key, GGUF_T_FLOAT32, &nd);
        snprintf(key, sizeof key, "%s.act", names[k]);
        CHECK(w && xb && a && db && xd_gguf_get_u64(g, key, &act) == 0 &&
                  (int)act == xd_qdot_act_type(types[k]), "%s: fixture entries", names[k]);
        if (!w || !xb || !a || !db) continue;
        int64_t cols = (int64_t)nx, rows = (int64_t)nd;
        size_t wb = xd_q_row_bytes(types[k], cols), ab = xd_q_row_bytes((uint32_t)act, cols);
        CHECK(wb * (size_t)rows == nw && ab == na, "%s: sizes", names[k]);
        float *x = malloc((size_t)cols * sizeof(float)), *wf = malloc((size_t)cols * sizeof(float)),
              *af = malloc((size_t)cols * sizeof(float));
        uint8_t *mine = malloc(ab);
        memcpy(x, xb, (size_t)cols * sizeof(float));
        /* the activation: same blocks, codes within one */
        CHECK(xd_quantize_act((uint32_t)act, x, cols, mine) == 0, "quantise");
        size_t be = act == GGML_Q8_K ? 256 : 32, bb = ab / ((size_t)cols / be);
        size_t qoff = act == GGML_Q8_K ? 4 : act == GGML_Q8_1 ? 4 : 2;
        int scales_same = 1;
        for (size_t b = 0; b < (size_t)cols / be; b++) {
            const uint8_t *p = mine + b * bb, *q = a + b * bb;
            scales_same &= memcmp(p, q, act == GGML_Q8_K ? 4 : 2) == 0;
            for (size_t j = 0; j < be; j++) {
                int d = (int)(int8_t)p[qoff + j] - (int)(int8_t)q[qoff + j];
                CHECK(abs(d) <= 1, "%s: code %zu of block %zu: %d vs ggml %d", names[k], j, b,
                      (int8_t)p[qoff + j], (int8_t)q[qoff + j]);
                codes_off += d != 0;
                n_codes++;
            }
        }
        CHECK(scales_same, "%s: activation scales differ from ggml's", names[k]);
        deq_act((uint32_t)act, a, af, cols);
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *wr = w + (size_t)r * wb;
            float ref;
            memcpy(&ref, db + 4 * r, 4);
            xd_ggml_dequantize(types[k], wr, wf, cols);
            double mag = 0;
            for (int64_t j = 0; j < cols; j++) mag += fabs((double)wf[j] * af[j]);
            float got = xd_qdot(types[k], wr, a, cols);
            double e = fabs((double)got - ref) / mag;
            worst = e > worst ? e : worst;
            CHECK(e <= 1e-6, "%s row %lld: xd_qdot %.9g vs ggml's vec_dot %.9g (Σ|w·a| %.4g)",
                  names[k], (long long)r, got, ref, mag);
        }
        free(x), free(wf), free(af), free(mine);
    }
    printf("against ggml's vec_dot (libggml-cpu, 8 types): |xd_qdot − ggml| ≤ %.2g · Σ|w·a|; "
           "activation codes differing by one: %d of %d\n", worst, codes_off, n_codes);
    xd_gguf_close(g);
}

/* The activation blocks of the kernels chosen at run time (AVX2 on x86) equal the scalar
 * ones byte for byte: random blocks, and blocks whose x/d fall on halves k + 0.5 (roundf's
 * ties, away from zero) and just beside them. */
static void test_act_isa(xd_rng *r) {
    enum { N = 32 * 64 };
    static float x[N];
    static uint8_t a[2][N / 32 * 36];
    for (int i = 0; i < N; i++) x[i] = (float)(xd_rng_uniform(r) * 6 - 3);
    for (int b = 32; b < 64; b++) { /* max |x| = 127 so d = 1: x/d = x exactly */
        float *y = x + 32 * b;
        y[0] = b % 2 ? 127.0f : -127.0f;
        for (int j = 1; j < 32; j++) {
            float t = (float)((int)(xd_rng_u64(r) % 200) - 100) + 0.5f;
            y[j] = j % 3 == 0 ? t : j % 3 == 1 ? nextafterf(t, 0) : nextafterf(t, 2 * t);
        }
    }
    const uint32_t acts[] = {GGML_Q8_0, GGML_Q8_1};
    for (int k = 0; k < 2; k++) {
        for (int s = 0; s < 2; s++) {
            xd_quant_set_isa(s ? -1 : 0);
            CHECK(xd_quantize_act(acts[k], x, N, a[s]) == 0, "quantise");
        }
        xd_quant_set_isa(-1);
        size_t bytes = (size_t)N / 32 * (k ? 36 : 34);
        CHECK(!memcmp(a[0], a[1], bytes), "%s activation blocks: run-time kernels = scalar",
              k ? "Q8_1" : "Q8_0");
    }
}

int main(void) {
    test_ggml();
    xd_rng r;
    xd_rng_seed(&r, 17);
    const uint32_t types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0,
                              GGML_Q4_K, GGML_Q5_K, GGML_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) test_type(types[i], &r);
    test_act_isa(&r);
    /* an all-zero activation block quantises to d = 0 (no division by zero) */
    float z[256] = {0};
    uint8_t q[292];
    CHECK(xd_quantize_act(GGML_Q8_K, z, 256, q) == 0 && q[4] == 0, "zeros, Q8_K");
    CHECK(xd_quantize_act(GGML_Q8_0, z, 32, q) == 0 && q[2] == 0, "zeros, Q8_0");
    /* bad input */
    float x[64] = {0}, y[1];
    uint8_t w[64] = {0};
    CHECK(xd_qmatvec(GGML_Q2_K, w, 1, 256, x, y, NULL) == -1 && strstr(xd_last_error(), "not supported"),
          "Q2_K: %s", xd_last_error());
    CHECK(xd_qmatvec(GGML_Q8_0, w, 1, 48, x, y, NULL) == -1, "48 columns of Q8_0");
    CHECK(xd_quantize_act(GGML_Q8_0, x, 40, w) == -1 && strstr(xd_last_error(), "multiple"),
          "40 elements: %s", xd_last_error());
    CHECK(xd_quantize_act(GGML_Q4_0, x, 32, w) == -1, "Q4_0 is not an activation type");
    return test_summary("test_quant_dot");
}
