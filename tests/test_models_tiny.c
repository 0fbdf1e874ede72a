/* Forward pass of tiny random models of every supported architecture against
 * HF transformers (fixtures from tests/ref/make_tiny_models.py).
 * Tolerance: 1e-4 absolute on logits of magnitude ~1–10. Both sides are fp32;
 * differences come only from summation order (BLAS vs torch) over ≤ 100-term
 * dot products, ~1e-6 relative, so 1e-4 leaves a wide margin while any wrong
 * op (norm, rope layout, bias, GQA mapping) moves logits by ≥ 1e-2. */
#include <jansson.h>
#include <string.h>

#include "test.h"
#include "xdistill.h"

static double max_abs_diff(const float *a, json_t *row, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs(a[i] - json_real_value(json_array_get(row, (size_t)i)));
        if (d > m) m = d;
    }
    return m;
}

static void check_model(const char *name) {
    char dir[1024], ref[1100];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    snprintf(ref, sizeof ref, "%s/reference.json", dir);
    json_error_t je;
    json_t *r = json_load_file(ref, 0, &je);
    CHECK(r != NULL, "%s: %s", ref, je.text);
    if (!r) return;
    xd_model *m = xd_model_load(dir);
    CHECK(m != NULL, "load %s: %s", name, xd_last_error());
    if (!m) { json_decref(r); return; }
    json_t *toks = json_object_get(r, "tokens"), *logits = json_object_get(r, "logits");
    int n = (int)json_array_size(toks), V = xd_model_config(m)->vocab_size;
    int32_t ids[64];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(toks, (size_t)i));
    float *out = malloc((size_t)n * V * sizeof(float));

    /* batched prefill, all positions */
    xd_kv *kv = xd_kv_create(m, 64);
    CHECK(xd_forward(m, kv, ids, n, out, 1) == 0, "%s forward: %s", name, xd_last_error());
    double worst = 0;
    for (int t = 0; t < n; t++) {
        double d = max_abs_diff(out + (size_t)t * V, json_array_get(logits, (size_t)t), V);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 1e-4, "%s: prefill max |logit diff| %g > 1e-4", name, worst);
    printf("%-20s prefill max abs diff %.2e\n", name, worst);

    /* token-by-token decode through the cache must give the same logits,
     * and a split prefill (5 tokens, then the rest) too */
    xd_kv_reset(kv);
    worst = 0;
    for (int t = 0; t < n; t++) {
        CHECK(xd_forward(m, kv, &ids[t], 1, out, 0) == 0, "%s decode: %s", name, xd_last_error());
        double d = max_abs_diff(out, json_array_get(logits, (size_t)t), V);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 1e-4, "%s: decode max |logit diff| %g > 1e-4", name, worst);
    xd_kv_reset(kv);
    CHECK(xd_forward(m, kv, ids, 5, NULL, 0) == 0, "split prefill");
    CHECK(xd_forward(m, kv, ids + 5, n - 5, out, 1) == 0, "split prefill 2");
    worst = 0;
    for (int t = 5; t < n; t++) {
        double d = max_abs_diff(out + (size_t)(t - 5) * V, json_array_get(logits, (size_t)t), V);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 1e-4, "%s: split prefill max |logit diff| %g > 1e-4", name, worst);
    CHECK(xd_kv_pos(kv) == n, "cache position %d, expected %d", xd_kv_pos(kv), n);

    /* out-of-range token and cache overflow are errors, not crashes */
    int32_t bad = V;
    CHECK(xd_forward(m, kv, &bad, 1, out, 0) == -1 && strstr(xd_last_error(), "out of range"),
          "bad token id accepted: %s", xd_last_error());
    xd_kv *small = xd_kv_create(m, 4);
    CHECK(xd_forward(m, small, ids, 5, out, 0) == -1, "cache overflow accepted");
    xd_kv_free(small);
    xd_kv_free(kv);
    free(out);
    xd_model_free(m);
    json_decref(r);
}

int main(void) {
    const char *models[] = {"tiny-llama", "tiny-llama-sharded", "tiny-llama3rope", "tiny-qwen2",
                            "tiny-qwen2-bf16", "tiny-qwen3", "tiny-olmo2"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(models[i]);
    return test_summary("test_models_tiny");
}
