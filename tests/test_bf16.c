/* The optional bf16 compute path (xd_set_compute): the default is fp32 and
 * bit-identical to plain sgemm; the parallel fp32 → bf16 conversion gives
 * core/f16.h's rounding (round to nearest even, subnormals kept as torch
 * does, quiet NaNs) on every element, vector body and tail; in bf16 mode the
 * linear forward and backward agree with fp32 within bf16 rounding (and
 * with an exact product of the bf16-rounded operands to fp32 accuracy); a
 * training step of the tiny models stays close to fp32 and never uses a
 * stale bf16 copy of a weight after the weight changed. */
#include <cblas.h>
#include <stdint.h>
#include <string.h>

#include "core/f16.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"
#include "model/model.h"
#include "test.h"
#include "train/train_model.h"

static xd_rng rng;

static float *rnd(size_t n, float lo, float hi) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)xd_rng_uniform(&rng);
    return p;
}

static float *copy(const float *a, size_t n) {
    float *p = malloc(n * sizeof(float));
    memcpy(p, a, n * sizeof(float));
    return p;
}

static float max_abs(const float *a, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
    return m;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        d = e > d ? e : d;
    }
    float m = max_abs(b, n);
    return m > 0 ? d / m : d;
}

/* reference rounding, written independently of core/f16.h */
static uint16_t ref_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
    /* subnormals round like the rest (as torch does), not flushed to zero */
    if (exp == 0xff && man) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    uint32_t lower = u & 0xffff, upper = u >> 16;
    if (lower > 0x8000 || (lower == 0x8000 && (upper & 1))) upper++;
    return (uint16_t)upper;
}

static float bf16_of(float f) {
    uint32_t u = (uint32_t)ref_bf16(f) << 16;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

static void test_rounding(void) {
    size_t n = 200003; /* > the parallel threshold, not a multiple of 32 */
    float *x = rnd(n, -4, 4);
    const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-40f, -1e-40f, 1.17549435e-38f,
                             3.4e38f, -3.4e38f, INFINITY, -INFINITY, NAN, -NAN,
                             1.00390625f /* 1 + 2^-8: a tie, rounds to even (1) */,
                             1.01171875f /* 1 + 3·2^-8: a tie, rounds up */};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < ns; i++) {
        x[i] = special[i];         /* in the vector body */
        x[n - 1 - i] = special[i]; /* and in the scalar tail */
    }
    for (size_t i = ns; i < 2000; i++) { /* exact ties and near-ties */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u & 0xffff0000u) | (uint32_t[]){0x8000, 0x7fff, 0x8001}[i % 3];
        memcpy(&x[i], &u, 4);
    }
    uint16_t *h = malloc(n * sizeof(uint16_t));
    xd_bf16_from_f32(h, x, (int64_t)n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (h[i] != ref_bf16(x[i])) {
            if (bad++ < 5)
                fprintf(stderr, "bf16(%a) = %04x, expected %04x\n", x[i], h[i], ref_bf16(x[i]));
        }
    CHECK(bad == 0, "%zu of %zu roundings differ from round-to-nearest-even", bad, n);
    /* short inputs (scalar path only) agree too */
    uint16_t h7[7];
    xd_bf16_from_f32(h7, x, 7);
    CHECK(!memcmp(h7, h, sizeof h7), "short conversion");
    float *back = malloc(n * sizeof(float));
    xd_bf16_to_fp32_n(back, h, n);
    CHECK(back[2] == 1.0f && back[13] == 1.0f && back[14] == 1.015625f, "to_f32: %g %g %g",
          back[2], back[13], back[14]);
    free(x), free(h), free(back);
}

/* ---- linear, one shape: default fp32 = sgemm bit for bit; bf16 close ---- */

typedef struct {
    int n, in, out;
} shape;

static void test_linear_shape(shape s, int have_bf16) {
    int n = s.n, in = s.in, out = s.out;
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = rnd(nx, -1, 1), *W = rnd(nw, -0.5f, 0.5f), *b = rnd(out, -1, 1);
    float *dy = rnd(ny, -1, 1), *dx0 = rnd(nx, -1, 1), *dW0 = rnd(nw, -1, 1);

    /* what the fp32 code did before the bf16 path existed */
    float *y_ref = malloc(ny * sizeof(float)), *yb_ref = malloc(ny * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 0.0f,
                y_ref, out);
    for (int i = 0; i < n; i++) memcpy(yb_ref + (size_t)i * out, b, out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 1.0f,
                yb_ref, out);
    float *dx_ref = copy(dx0, nx), *dW_ref = copy(dW0, nw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, W, in, 1.0f,
                dx_ref, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f,
                dW_ref, in);

    float *y = malloc(ny * sizeof(float)), *yb = malloc(ny * sizeof(float));
    float *dx = copy(dx0, nx), *dW = copy(dW0, nw);
    CHECK(xd_get_compute() == XD_COMPUTE_FP32, "fp32 mode");
    xd_linear(y, x, W, NULL, n, in, out);
    xd_linear(yb, x, W, b, n, in, out);
    xd_linear_backward(dx, dW, NULL, dy, x, W, n, in, out);
    CHECK(!memcmp(y, y_ref, ny * 4) && !memcmp(yb, yb_ref, ny * 4), "%dx%dx%d fp32 forward is sgemm bit for bit", n, out, in);
    CHECK(!memcmp(dx, dx_ref, nx * 4) && !memcmp(dW, dW_ref, nw * 4), "%dx%dx%d fp32 backward is sgemm bit for bit", n, out, in);

    if (have_bf16) {
        CHECK(xd_set_compute(XD_COMPUTE_BF16) == 0, "bf16 on: %s", xd_last_error());
        float *y16 = malloc(ny * sizeof(float)), *yb16 = malloc(ny * sizeof(float));
        float *dx16 = copy(dx0, nx), *dW16 = copy(dW0, nw), *dxo = copy(dx0, nx), *dWo = copy(dW0, nw);
        xd_linear(y16, x, W, NULL, n, in, out);
        xd_linear(yb16, x, W, b, n, in, out);
        xd_linear_backward(dx16, dW16, NULL, dy, x, W, n, in, out);
        xd_linear_backward(dxo, NULL, NULL, dy, x, W, n, in, out); /* one gradient at a time */
        xd_linear_backward(NULL, dWo, NULL, dy, x, W, n, in, out);
        double e_y = rel_diff(y16, y_ref, ny), e_yb = rel_diff(yb16, yb_ref, ny);
        /* the accumulated products alone: (dx16 - dx0) against (dx_ref - dx0) */
        float *p16 = malloc((nx > nw ? nx : nw) * sizeof(float)), *p32 = malloc((nx > nw ? nx : nw) * sizeof(float));
        for (size_t i = 0; i < nx; i++) p16[i] = dx16[i] - dx0[i], p32[i] = dx_ref[i] - dx0[i];
        double e_dx = rel_diff(p16, p32, nx);
        for (size_t i = 0; i < nw; i++) p16[i] = dW16[i] - dW0[i], p32[i] = dW_ref[i] - dW0[i];
        double e_dW = rel_diff(p16, p32, nw);
        printf("  %5dx%5dx%5d bf16 vs fp32, max|diff|/max|fp32|: y %.1e  y+b %.1e  dx %.1e  dW %.1e\n",
               n, out, in, e_y, e_yb, e_dx, e_dW);
        CHECK(e_y < 1e-2 && e_yb < 1e-2, "%dx%dx%d forward: %g %g", n, out, in, e_y, e_yb);
        CHECK(e_dx < 1e-2 && e_dW < 1e-2, "%dx%dx%d backward: %g %g", n, out, in, e_dx, e_dW);
        CHECK(e_y > 0, "bf16 mode really rounds (differs from fp32)");
        CHECK(!memcmp(dxo, dx16, nx * 4) && !memcmp(dWo, dW16, nw * 4),
              "dx alone / dW alone = both together");

        /* against the exact product of the rounded operands: fp32 accumulation */
        double worst = 0, scale = max_abs(y_ref, ny);
        for (int i = 0; i < n; i += (n > 64 ? 7 : 1))
            for (int j = 0; j < out; j += (out > 64 ? 5 : 1)) {
                double acc = 0;
                for (int k = 0; k < in; k++)
                    acc += (double)bf16_of(x[(size_t)i * in + k]) * bf16_of(W[(size_t)j * in + k]);
                double e = fabs(acc - y16[(size_t)i * out + j]) / scale;
                worst = e > worst ? e : worst;
            }
        CHECK(worst < 1e-5, "%dx%dx%d: bf16 product vs exact product of bf16 operands: %g", n, out, in, worst);

        /* back to fp32: the same bits as before */
        CHECK(xd_set_compute(XD_COMPUTE_FP32) == 0, "fp32 again");
        float *dx2 = copy(dx0, nx), *dW2 = copy(dW0, nw);
        xd_linear(y, x, W, NULL, n, in, out);
        xd_linear_backward(dx2, dW2, NULL, dy, x, W, n, in, out);
        CHECK(!memcmp(y, y_ref, ny * 4) && !memcmp(dx2, dx_ref, nx * 4) && !memcmp(dW2, dW_ref, nw * 4),
              "fp32 after bf16 is bit-identical");
        free(y16), free(yb16), free(dx16), free(dW16), free(dxo), free(dWo), free(p16), free(p32);
        free(dx2), free(dW2);
    }
    free(x), free(W), free(b), free(dy), free(dx0), free(dW0), free(y_ref), free(yb_ref);
    free(dx_ref), free(dW_ref), free(y), free(yb), free(dx), free(dW);
}

/* ---- a training step of a tiny model: fp32 vs bf16 ---------------------- */

enum { B = 2, T = 16 };

static double step(xd_trainer_model *tm, const int32_t *tok, const int32_t *tgt, float scale) {
    double s = 0;
    int64_t n = 0;
    xd_tm_zero_grad(tm);
    CHECK(xd_tm_step(tm, tok, tgt, NULL, NULL, 1, scale, &s, &n) == 0, "step");
    return s / (double)n;
}

static void test_train_step(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    xd_model *m = xd_model_load(dir);
    CHECK(m != NULL, "%s: %s", name, xd_last_error());
    if (!m) return;
    xd_trainer_model tm;
    CHECK(xd_tm_init(&tm, m, B, T) == 0, "init");
    int32_t tok[B * T], tgt[B * T];
    int V = m->cfg.vocab_size;
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(xd_rng_u64(&rng) % (uint64_t)V);
        tgt[i] = (int32_t)(xd_rng_u64(&rng) % (uint64_t)V);
    }
    size_t ng = (size_t)(m->arena_floats);
    float scale = 1.0f / (B * T);
    double l32 = step(&tm, tok, tgt, scale);
    float *g32 = copy(tm.grad_arena, ng);
    CHECK(xd_set_compute(XD_COMPUTE_BF16) == 0, "bf16: %s", xd_last_error());
    double l16 = step(&tm, tok, tgt, scale);
    float *g16 = copy(tm.grad_arena, ng);
    double eg = rel_diff(g16, g32, ng);
    printf("  %-11s loss fp32 %.6f bf16 %.6f (rel %.1e), grads max|diff|/max|fp32| %.1e\n", name,
           l32, l16, fabs(l16 - l32) / l32, eg);
    CHECK(fabs(l16 - l32) <= 1e-2 * l32, "%s: loss %g vs %g", name, l16, l32);
    CHECK(eg < 3e-2, "%s: gradients %g", name, eg);

    /* change every weight (as an optimiser step does): the next bf16 step
     * must see the new weights, not the copies of the previous step */
    for (size_t i = 0; i < ng; i++) m->arena[i] *= 0.9f;
    double la = step(&tm, tok, tgt, scale);
    float *ga = copy(tm.grad_arena, ng);
    xd_set_compute(XD_COMPUTE_FP32); /* drops every bf16 buffer */
    double l32b = step(&tm, tok, tgt, scale);
    xd_set_compute(XD_COMPUTE_BF16);
    double lb = step(&tm, tok, tgt, scale); /* from scratch */
    CHECK(la == lb && !memcmp(ga, tm.grad_arena, ng * 4), "%s: bf16 step after a weight change "
          "(%.9g) = a fresh bf16 step (%.9g)", name, la, lb);
    CHECK(fabs(la - l32b) <= 1e-2 * l32b && fabs(la - l16) > 1e-6,
          "%s: the changed weights were used (%g vs fp32 %g, before %g)", name, la, l32b, l16);
    xd_set_compute(XD_COMPUTE_FP32);
    double l32c = step(&tm, tok, tgt, scale);
    CHECK(l32c == l32b, "%s: fp32 deterministic after bf16", name);
    free(g32), free(g16), free(ga);
    xd_tm_free(&tm);
    xd_model_free(m);
}

int main(void) {
    xd_rng_seed(&rng, 7);
    CHECK(xd_get_compute() == XD_COMPUTE_FP32, "the default compute mode is fp32");
    test_rounding();
    int have = xd_set_compute(XD_COMPUTE_BF16) == 0;
    if (!have) printf("bf16 compute unavailable (%s): fp32 checks only\n", xd_last_error());
    xd_set_compute(XD_COMPUTE_FP32);
    CHECK(xd_set_compute((xd_compute)7) != 0, "an unknown mode is refused");
    CHECK(xd_get_compute() == XD_COMPUTE_FP32, "and leaves the mode alone");
    const shape shapes[] = {{2, 3, 5}, {37, 53, 29}, {64, 96, 160}, {512, 576, 192}, {130, 1536, 576}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_linear_shape(shapes[i], have);
    if (have) {
        test_train_step("tiny-llama");
        test_train_step("tiny-qwen2");
        test_train_step("tiny-olmo2");
        xd_set_compute(XD_COMPUTE_FP32);
    }
    return test_summary("test_bf16");
}
