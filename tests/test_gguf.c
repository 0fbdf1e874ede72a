/* GGUF reader and dequantisation.
 * - every block type dequantises exactly as gguf-py does (fixture from
 *   tests/ref/make_gguf_fixtures.py); tolerance 1e-6 relative: both sides
 *   compute d·q (− m) in fp32, only the operation order may differ.
 * - fp16 conversion is exact for all 65536 half values (round trip).
 * - tiny GGUF models (llama with llama.cpp's q/k permutation, qwen2 with
 *   biases) give the HF reference logits (1e-4, see test_models_tiny.c).
 * - corrupt files (truncated anywhere, bad magic/version, absurd counts,
 *   lengths, dims, offsets, types, unknown architecture, missing keys) fail
 *   with a message naming the file, and never crash (run under ASan+UBSan). */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "io/ggml_types.h"
#include "io/gguf.h"
#include "test.h"
#include "xdistill.h"

static void test_quant_blocks(void) {
    json_error_t je;
    json_t *root = json_load_file(FIXTURE("quant_blocks.json"), 0, &je);
    CHECK(root != NULL, "quant_blocks.json: %s", je.text);
    if (!root) return;
    const char *name;
    json_t *e;
    json_object_foreach(root, name, e) {
        int type = (int)json_integer_value(json_object_get(e, "type"));
        int n = (int)json_integer_value(json_object_get(e, "n"));
        const char *hex = json_string_value(json_object_get(e, "hex"));
        size_t nb = strlen(hex) / 2;
        unsigned char *raw = malloc(nb);
        for (size_t i = 0; i < nb; i++) sscanf(hex + 2 * i, "%2hhx", &raw[i]);
        float *out = malloc((size_t)n * sizeof(float));
        CHECK(ggml_dequantize((uint32_t)type, raw, out, n) == 0, "%s: %s", name, xd_last_error());
        json_t *vals = json_object_get(e, "values");
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double ref = json_real_value(json_array_get(vals, (size_t)i));
            double d = fabs(out[i] - ref) / (fabs(ref) > 1 ? fabs(ref) : 1);
            if (d > worst) worst = d;
        }
        CHECK(worst <= 1e-6, "%s: max rel err %g", name, worst);
        free(raw);
        free(out);
    }
    json_decref(root);
    float tmp[32];
    CHECK(ggml_dequantize(GGML_Q4_0, tmp, tmp, 31) == -1, "partial block accepted");
    CHECK(ggml_dequantize(99, tmp, tmp, 32) == -1, "unknown type accepted");
}

static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = xd_fp16_to_fp32((uint16_t)h);
        if (f != f) continue; /* NaN payloads need not round-trip */
        if (xd_fp32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d fp16 values do not round-trip", bad);
    CHECK(xd_fp16_to_fp32(0x3c00) == 1.0f && xd_fp16_to_fp32(0xc000) == -2.0f &&
              xd_fp16_to_fp32(0x0001) == 5.960464477539063e-08f,
          "fp16 constants");
    CHECK(xd_fp32_to_fp16(1e6f) == 0x7c00, "overflow to inf");
    CHECK(xd_bf16_to_fp32(0x3f80) == 1.0f, "bf16 1.0");
}

static void test_tiny_gguf(const char *gguf, const char *hf) {
    char path[1024], ref[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", XD_SOURCE_DIR, gguf);
    snprintf(ref, sizeof ref, "%s/tests/fixtures/%s/reference.json", XD_SOURCE_DIR, hf);
    xd_model *m = xd_model_load(path);
    CHECK(m != NULL, "%s: %s", gguf, xd_last_error());
    json_t *r = json_load_file(ref, 0, NULL);
    CHECK(r != NULL, "%s missing", ref);
    if (!m || !r) { xd_model_free(m); json_decref(r); return; }
    json_t *toks = json_object_get(r, "tokens"), *logits = json_object_get(r, "logits");
    int n = (int)json_array_size(toks), V = xd_model_config(m)->vocab_size;
    int32_t ids[64];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(toks, (size_t)i));
    float *out = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(m, n);
    CHECK(xd_forward(m, kv, ids, n, out, 1) == 0, "forward: %s", xd_last_error());
    double worst = 0;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < V; j++) {
            double d = fabs(out[(size_t)t * V + j] -
                            json_real_value(json_array_get(json_array_get(logits, (size_t)t), (size_t)j)));
            if (d > worst) worst = d;
        }
    CHECK(worst <= 1e-4, "%s: max |logit diff| %g vs HF", gguf, worst);
    printf("%-16s max abs diff vs HF %.2e\n", gguf, worst);
    free(out);
    xd_kv_free(kv);
    xd_model_free(m);
    json_decref(r);
}

/* ---- corrupt files -------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static char tmp_path[256];

static void write_file(const unsigned char *b, size_t n) {
    FILE *f = fopen(tmp_path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Loading the mutated file must fail with an error that names it (and,
 * when given, mentions `want`). */
static void expect_fail(const unsigned char *b, size_t n, const char *what, const char *want) {
    write_file(b, n);
    xd_model *m = xd_model_load(tmp_path);
    CHECK(m == NULL, "%s: corrupt file loaded", what);
    xd_model_free(m);
    CHECK(strstr(xd_last_error(), tmp_path) != NULL, "%s: error does not name the file: %s", what,
          xd_last_error());
    if (want)
        CHECK(strstr(xd_last_error(), want) != NULL, "%s: error '%s' lacks '%s'", what,
              xd_last_error(), want);
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static size_t find(const unsigned char *b, size_t n, const char *s) {
    const unsigned char *p = memmem(b, n, s, strlen(s));
    return p ? (size_t)(p - b) : 0;
}

static void test_corrupt(void) {
    size_t n;
    unsigned char *orig = slurp(FIXTURE("tiny-llama.gguf"), &n);
    CHECK(orig != NULL, "tiny-llama.gguf missing");
    if (!orig) return;
    unsigned char *b = malloc(n);
    snprintf(tmp_path, sizeof tmp_path, "/tmp/xd_test_gguf_%d.gguf", (int)getpid());

    /* truncated at every point of the metadata and tensor table, and in the data */
    size_t data_start = find(orig, n, "blk.1.ffn_norm.weight") + 64;
    int truncs = 0;
    for (size_t len = 0; len < n; len += (len < data_start ? 3 : 4099)) {
        memcpy(b, orig, len);
        write_file(b, len);
        xd_model *m = xd_model_load(tmp_path);
        if (m) { xd_model_free(m); CHECK(0, "truncated at %zu/%zu loaded", len, n); }
        truncs++;
    }
    CHECK(truncs > 100, "only %d truncations tried", truncs);

#define MUTATE(what, want, stmt) do { memcpy(b, orig, n); stmt; expect_fail(b, n, what, want); } while (0)
    MUTATE("magic", "magic", b[0] = 'X');
    MUTATE("version 1", "version", put_u32(b + 4, 1));
    MUTATE("version 99", "version", put_u32(b + 4, 99));
    MUTATE("n_tensors huge", "n_tensors", put_u64(b + 8, 1ull << 60));
    MUTATE("n_kv huge", "n_kv", put_u64(b + 16, 1ull << 61));
    MUTATE("key length huge", "truncated", put_u64(b + 24, 1ull << 62));
    size_t k = find(orig, n, "llama.block_count");
    MUTATE("missing block_count", "llama.block_count", b[k + 6] = 'X');
    size_t a = find(orig, n, "general.architecture");
    /* value: u32 type, u64 len, "llama" */
    MUTATE("unknown architecture", "architecture", memcpy(b + a + 20 + 12, "gpt5x", 5));
    MUTATE("arch value type", NULL, put_u32(b + a + 20, 4));
    k = find(orig, n, "llama.embedding_length");
    MUTATE("embedding length 0", "embedding_length", put_u32(b + k + 22 + 4, 0));
    k = find(orig, n, "llama.attention.head_count_kv");
    MUTATE("heads not dividing", "n_kv_head", put_u32(b + k + 29 + 4, 3));
    k = find(orig, n, "tokenizer.ggml.tokens");
    MUTATE("token array count huge", "tokenizer.ggml.tokens", put_u64(b + k + 21 + 4 + 4, 1ull << 59));
    /* tensor info: name, u32 n_dims, u64 ne[], u32 type, u64 offset */
    size_t t = find(orig, n, "blk.0.attn_q.weight");
    size_t info = t + strlen("blk.0.attn_q.weight");
    MUTATE("n_dims 7", "n_dims", put_u32(b + info, 7));
    MUTATE("dim absurd", "absurd", put_u64(b + info + 4, 1ull << 50));
    MUTATE("wrong shape", "shape", put_u64(b + info + 4, 32));
    MUTATE("tensor type 99", "type", put_u32(b + info + 20, 99));
    MUTATE("offset past end", "past the end", put_u64(b + info + 24, (uint64_t)n));
    MUTATE("misaligned offset", "aligned", put_u64(b + info + 24, 8));
    size_t e = find(orig, n, "token_embd.weight");
    MUTATE("missing tensor", "token_embd.weight", b[e] = 'X');
#undef MUTATE

    /* a missing file and a directory without config.json */
    CHECK(xd_model_load("/nonexistent/model.gguf") == NULL &&
              strstr(xd_last_error(), "/nonexistent/model.gguf"),
          "missing file: %s", xd_last_error());
    CHECK(xd_model_load("/tmp") == NULL && strstr(xd_last_error(), "config.json"),
          "dir without config: %s", xd_last_error());
    unlink(tmp_path);
    free(b);
    free(orig);
}

int main(void) {
    test_fp16();
    test_quant_blocks();
    test_tiny_gguf("tiny-llama.gguf", "tiny-llama");
    test_tiny_gguf("tiny-qwen2.gguf", "tiny-qwen2");
    test_corrupt();
    return test_summary("test_gguf");
}
