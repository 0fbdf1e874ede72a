/* A GGUF model on its own blocks (XD_WEIGHTS_GGUF, model/qweights.h) against the same file
 * loaded as fp32, on tests/fixtures/tiny-kquant.gguf: its weights mix types the kernels
 * take (Q4_0 attn_v, Q8_0 attn_output, Q5_1 ffn_gate) with types they do not (IQ4_NL,
 * Q2_K, Q3_K: dequantised to fp32 as before), so both paths meet in one forward.
 *  - Prefill (20 tokens): the products on dequantised tiles are the fp32 numbers summed in
 *    another blocking: every position's logits within 1e-5 · max |logit|.
 *  - Decoding token by token: one token's products on the blocks, with the activation
 *    quantised to 8 bits per block (one block per row at d_model 32: a coarse scale):
 *    the logits within 5% of max |logit| (measured 2.0%; a wrong block, row order or type
 *    moves them by their own size), top-1 the same on ≥ 90% of the steps (measured 20/20).
 *  - XD_WEIGHTS_GGUF_ALL runs the prompt's rows on the blocks one at a time: each row
 *    equals the decode step's logits within 1e-5 · max |logit| (the attention sums the
 *    same cache in another order).
 *  - A typed KV cache (bf16, int8) against the fp32 one (bounds below), its copy, and a
 *    copy between caches of different types refused.
 *  - A file cut short inside its blocks is refused at load.
 *  - What needs fp32 weights (training, saving, conversion to a student) is refused,
 *    naming --weights fp32; an unknown mode is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "model/qweights.h"
#include "test.h"
#include "train/train_model.h"
#include "xdistill.h"

#define MODEL XD_SOURCE_DIR "/tests/fixtures/tiny-kquant.gguf"

enum { N = 20 };

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static int argmax(const float *a, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (a[i] > a[b]) b = i;
    return b;
}

int main(void) {
    xd_model *f = xd_model_load(MODEL), *q = xd_model_load_weights(MODEL, XD_WEIGHTS_GGUF),
             *qa = xd_model_load_weights(MODEL, XD_WEIGHTS_GGUF_ALL);
    CHECK(f && q && qa, "load: %s", xd_last_error());
    if (!f || !q || !qa) return test_summary("test_quant_model");
    /* the kept blocks: 3 layers × (attn_v, attn_output, ffn_gate) */
    CHECK(q->q && q->q->n == 9, "%d weights on blocks, expected 9", q->q ? q->q->n : 0);
    int V = f->cfg.vocab_size;
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 37 + 11) % 256);
    float *lf = malloc((size_t)N * V * sizeof(float)), *lq = malloc((size_t)N * V * sizeof(float)),
          *la = malloc((size_t)N * V * sizeof(float)), *step = malloc((size_t)N * V * sizeof(float));
    xd_kv *kf = xd_kv_create(f, N), *kq = xd_kv_create(q, N), *ka = xd_kv_create(qa, N);
    CHECK(xd_forward(f, kf, ids, N, lf, 1) == 0 && xd_forward(q, kq, ids, N, lq, 1) == 0 &&
              xd_forward(qa, ka, ids, N, la, 1) == 0, "prefill: %s", xd_last_error());
    double amax = max_abs(lf, (size_t)N * V);
    double dt = test_max_abs_diff(lf, lq, (size_t)N * V);
    CHECK(dt <= 1e-5 * amax, "prefill on tiles: largest logit difference %.3g of %.3g", dt, amax);
    /* decoding: a fresh cache, one token at a time */
    xd_kv_free(kq);
    kq = xd_kv_create(q, N);
    int agree = 0;
    for (int t = 0; t < N; t++) {
        CHECK(xd_forward(q, kq, ids + t, 1, step + (size_t)t * V, 0) == 0, "decode: %s", xd_last_error());
        agree += argmax(step + (size_t)t * V, V) == argmax(lf + (size_t)t * V, V);
    }
    double dd = test_max_abs_diff(lf, step, (size_t)N * V);
    CHECK(dd <= 0.05 * amax, "decoding on blocks: largest logit difference %.3g of %.3g", dd, amax);
    CHECK(agree >= 0.9 * N, "top-1 the same on %d of %d steps", agree, N);
    double da = test_max_abs_diff(la, step, (size_t)N * V);
    CHECK(da <= 1e-5 * amax, "every row on blocks vs decoding: %.3g of %.3g", da, amax);
    printf("tiny-kquant on its blocks: prefill on tiles %.2g, decoding %.2g (%.2f%%; top-1 %d/%d), "
           "rows on blocks vs decoding %.2g, of max |logit| %.3g\n", dt, dd, 100 * dd / amax, agree,
           N, da, amax);

    /* a typed KV cache (bf16, int8): the same model, its keys/values rounded once when
     * stored; prompt and decoding against the fp32 cache. bf16 keeps 8 significant bits
     * (relative error ≤ 2^-9 per value): logits within 1% of max |logit|; int8 (per 32, a
     * scale max/127): within 5% (measured below) */
    static const int dts[2] = {XD_KV_BF16, XD_KV_INT8};
    static const double tol[2] = {0.01, 0.05};
    for (int k = 0; k < 2; k++) {
        xd_kv *kt = xd_kv_create_typed(f, N, dts[k]);
        CHECK(kt != NULL, "typed cache: %s", xd_last_error());
        if (!kt) continue;
        CHECK(xd_forward(f, kt, ids, N / 2, la, 1) == 0, "typed prefill: %s", xd_last_error());
        double dp = test_max_abs_diff(lf, la, (size_t)(N / 2) * V);
        double dd2 = 0;
        xd_kv *kc = xd_kv_create_typed(f, N, dts[k]);
        for (int t = N / 2; t < N; t++) {
            CHECK(xd_forward(f, kt, ids + t, 1, la, 0) == 0, "typed decode: %s", xd_last_error());
            dd2 = fmax(dd2, test_max_abs_diff(lf + (size_t)t * V, la, (size_t)V));
        }
        /* a copy continues exactly like the original */
        CHECK(kc && xd_kv_copy(kc, kt) == 0 && xd_kv_pos(kc) == N, "copy: %s", xd_last_error());
        CHECK(xd_kv_copy(kc, kf) != 0 && strstr(xd_last_error(), "different types"),
              "copy across types: %s", xd_last_error());
        CHECK(dp <= tol[k] * amax && dd2 <= tol[k] * amax, "%s cache: prompt %.3g, decoding %.3g "
              "of %.3g", xd_kv_dtype_name(dts[k]), dp, dd2, amax);
        printf("%s KV cache vs float32: prompt logits within %.2g, decoding %.2g (of %.3g)\n",
               xd_kv_dtype_name(dts[k]), dp, dd2, amax);
        xd_kv_free(kt);
        xd_kv_free(kc);
    }
    CHECK(xd_kv_create_typed(f, N, 9) == NULL && strstr(xd_last_error(), "type 9"), "type 9: %s",
          xd_last_error());

    /* what needs fp32 weights */
    xd_trainer_model tm;
    CHECK(xd_tm_init(&tm, q, 1, 8) != 0 && strstr(xd_last_error(), "--weights fp32") &&
              strstr(xd_last_error(), "training"), "training on blocks: %s", xd_last_error());
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/xd_quant_model_%d", (int)getpid());
    CHECK(xd_model_save(q, dir) != 0 && strstr(xd_last_error(), "--weights fp32") &&
              access(dir, F_OK) != 0, "saving: %s", xd_last_error());
    xd_student_opts so;
    xd_student_defaults(&so);
    xd_model *s = xd_student_convert(q, &so);
    CHECK(s == NULL && strstr(xd_last_error(), "--weights fp32"), "conversion: %s", xd_last_error());
    xd_model_free(s);
    /* a file cut short inside its blocks is refused at load, on blocks as in fp32 */
    char cut[64], cmd[256];
    snprintf(cut, sizeof cut, "/tmp/xd_quant_cut_%d.gguf", (int)getpid());
    snprintf(cmd, sizeof cmd, "head -c $(($(stat -c %%s %s) - 100)) %s > %s", MODEL, MODEL, cut);
    CHECK(system(cmd) == 0, "cannot make %s", cut);
    xd_model *bad = xd_model_load_weights(cut, XD_WEIGHTS_GGUF);
    CHECK(bad == NULL && strstr(xd_last_error(), cut), "truncated file on blocks: %s", xd_last_error());
    xd_model_free(bad);
    unlink(cut);
    CHECK(xd_model_load_weights(MODEL, (xd_weights_mode)7) == NULL &&
              strstr(xd_last_error(), "weights mode 7"), "mode 7: %s", xd_last_error());
    CHECK(xd_weights_mode_parse("gguf") == XD_WEIGHTS_GGUF && xd_weights_mode_parse("q4") < 0,
          "parse");
    xd_kv_free(kf);
    xd_kv_free(kq);
    xd_kv_free(ka);
    free(lf), free(lq), free(la), free(step);
    xd_model_free(f);
    xd_model_free(q);
    xd_model_free(qa);
    return test_summary("test_quant_model");
}
