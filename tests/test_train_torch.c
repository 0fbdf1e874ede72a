/* The training engine against PyTorch on the tiny Llama (tied embeddings,
 * GQA), fixtures from tests/ref/make_train_fixture.py:
 *  1. loss and every parameter gradient of one step (batch 2 × 16):
 *     rel ≤ 1e-4 per tensor (max |diff| / max |ref|): fp32 on both sides,
 *     summation order differs (BLAS vs torch), ~1e-6 relative expected;
 *  2. 10 steps of clip + AdamW with warm-up + cosine LR: each step's loss
 *     and grad norm within 1e-4 relative, final parameters within 1e-4 of
 *     max |param| (rounding differences grow a little per step; torch vs an
 *     independent numpy run of the same formulas differ by 1.3e-6). */
#include <jansson.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"
#include "train/optim.h"
#include "train/train.h"
#include "train/train_model.h"

#define DIR XD_SOURCE_DIR "/tests/fixtures/train_ref/"

static json_t *steps_json;

/* batch k of the fixture: tokens [2][16] and targets [2][16] */
static void get_batch(int k, int32_t *tok, int32_t *tgt) {
    json_t *b = json_array_get(json_object_get(steps_json, "tokens"), (size_t)k);
    for (int r = 0; r < 2; r++) {
        json_t *row = json_array_get(b, (size_t)r);
        for (int t = 0; t < 16; t++) {
            tok[r * 16 + t] = (int32_t)json_integer_value(json_array_get(row, (size_t)t));
            tgt[r * 16 + t] = (int32_t)json_integer_value(json_array_get(row, (size_t)t + 1));
        }
    }
}

/* max |a − ref| / max |ref| over one tensor */
static double tensor_rel(const float *a, const st_set *s, const char *name, int64_t n) {
    const st_tensor *t = xd_st_find(s, name);
    if (!t) return 1e9;
    float *ref = malloc((size_t)n * sizeof(float));
    xd_st_to_f32(s, t, ref);
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]);
        if (d > md) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    free(ref);
    return md / (mr > 0 ? mr : 1);
}

int main(void) {
    json_error_t je;
    steps_json = json_load_file(DIR "steps.json", 0, &je);
    json_t *gj = json_load_file(DIR "grads.json", 0, &je);
    CHECK(steps_json && gj, "fixtures: %s", je.text);
    if (!steps_json || !gj) return test_summary("test_train_torch");
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    CHECK(m != NULL, "load: %s", xd_last_error());
    if (!m) return test_summary("test_train_torch");
    xd_trainer_model tm;
    CHECK(xd_tm_init(&tm, m, 2, 16) == 0, "init: %s", xd_last_error());
    int32_t tok[32], tgt[32];
    double sum;
    int64_t n;

    /* ---- 1. one step: loss and gradients */
    get_batch(0, tok, tgt);
    xd_tm_zero_grad(&tm);
    CHECK(xd_tm_step(&tm, tok, tgt, NULL, NULL, 1, 1.0f / 32, &sum, &n) == 0, "%s", xd_last_error());
    double ref_loss = json_real_value(json_object_get(gj, "loss"));
    CHECK(n == 32, "valid targets %lld", (long long)n);
    CHECK(fabs(sum / 32 - ref_loss) <= 1e-5 * ref_loss, "loss %.8f vs torch %.8f", sum / 32, ref_loss);
    printf("step-1 loss %.8f vs torch %.8f\n", sum / 32, ref_loss);
    st_set *gs = xd_st_open(DIR "grads.safetensors");
    CHECK(gs != NULL, "grads.safetensors: %s", xd_last_error());
    xd_weight *ws;
    int nw;
    xd_model_weights(m, &ws, &nw);
    double worst = 0;
    for (int i = 0; gs && i < nw; i++) {
        size_t off = (size_t)(ws[i].ptr - m->arena);
        double r = tensor_rel(tm.grad_arena + off, gs, ws[i].hf, ws[i].rows * ws[i].cols);
        CHECK(r <= 1e-4, "grad %s: rel err %g", ws[i].hf, r);
        if (r > worst) worst = r;
    }
    printf("gradients: %d tensors, worst rel err %.2e\n", nw, worst);
    xd_st_close(gs);

    /* ---- 2. ten AdamW steps with clipping and the LR schedule */
    xd_model_free(m);
    xd_tm_free(&tm);
    m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    xd_tm_init(&tm, m, 2, 16);
    xd_param_groups g;
    xd_adamw opt;
    CHECK(xd_groups_init(&g, m, NULL, 0) == 0, "groups");
    CHECK(xd_adamw_init(&opt, m->arena_floats, 0.9f, 0.95f, 1e-8f) == 0, "adamw");
    json_t *steps = json_object_get(steps_json, "steps");
    for (int s = 0; s < 10; s++) {
        json_t *js = json_array_get(steps, (size_t)s);
        float lr = xd_lr_schedule(s, 10, 3, 1e-2f, 1e-4f);
        double ref_lr = json_real_value(json_object_get(js, "lr"));
        CHECK(fabs(lr - ref_lr) <= 1e-7 * ref_lr + 1e-12, "step %d lr %.9g vs %.9g", s, lr, ref_lr);
        get_batch(s, tok, tgt);
        xd_tm_zero_grad(&tm);
        xd_tm_step(&tm, tok, tgt, NULL, NULL, 1, 1.0f / 32, &sum, &n);
        double gn = xd_optimizer_step(&tm, &g, &opt, lr, 0.1f, 1.0f);
        double rl = json_real_value(json_object_get(js, "loss"));
        double rg = json_real_value(json_object_get(js, "grad_norm"));
        CHECK(fabs(sum / 32 - rl) <= 1e-4 * rl, "step %d loss %.8f vs torch %.8f", s, sum / 32, rl);
        CHECK(fabs(gn - rg) <= 1e-4 * rg, "step %d grad norm %.8f vs torch %.8f", s, gn, rg);
        printf("step %d: loss %.7f (torch %.7f), grad norm %.6f (torch %.6f)\n", s, sum / 32, rl, gn, rg);
    }
    /* validation loss after training (batch 10) and the final parameters */
    get_batch(10, tok, tgt);
    xd_tm_step(&tm, tok, tgt, NULL, NULL, 0, 0, &sum, &n);
    double rv = json_real_value(json_object_get(steps_json, "val_loss_after"));
    if (rv == 0) rv = json_real_value(json_object_get(steps_json, "val_loss"));
    CHECK(fabs(sum / 32 - rv) <= 1e-4 * rv, "val loss %.8f vs torch %.8f", sum / 32, rv);
    st_set *fs = xd_st_open(DIR "final_params.safetensors");
    CHECK(fs != NULL, "final_params.safetensors: %s", xd_last_error());
    worst = 0;
    /* ws pointed into the first model's arena, which is freed: list again */
    free(ws);
    xd_model_weights(m, &ws, &nw);
    for (int i = 0; fs && i < nw; i++) {
        double r = tensor_rel(ws[i].ptr, fs, ws[i].hf, ws[i].rows * ws[i].cols);
        CHECK(r <= 1e-4, "final %s: rel err %g", ws[i].hf, r);
        if (r > worst) worst = r;
    }
    printf("after 10 steps: worst rel err of the parameters %.2e\n", worst);
    xd_st_close(fs);
    free(ws);
    xd_groups_free(&g);
    xd_adamw_free(&opt);
    xd_tm_free(&tm);
    xd_model_free(m);
    json_decref(steps_json);
    json_decref(gj);
    return test_summary("test_train_torch");
}
