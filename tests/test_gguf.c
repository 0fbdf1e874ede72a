/* GGUF reader and dequantisation.
 * - every block type dequantises exactly as gguf-py does (fixture from
 *   tests/ref/make_gguf_fixtures.py; Q8_K, which gguf-py cannot dequantise, as
 *   ggml's own C code does; the script checks that both agree bit for bit on
 *   every type): bit-identical, tolerance 0 (why it is exact: the comment at
 *   the top of src/io/ggml_types.c).
 * - fp16 conversion is exact for all 65536 half values (round trip).
 * - tiny GGUF models (llama with llama.cpp's q/k permutation, qwen2 with
 *   biases) give the HF reference logits (1e-4, see test_models_tiny.c).
 * - a tiny llama stored as mixed k-quant files are (ffn_down in Q2_K, Q3_K,
 *   IQ4_XS, q/k/up/embeddings in IQ4_NL, quantised by ggml) loads with exactly
 *   the weights gguf-py dequantises from it and gives HF's logits on them.
 * - corrupt files (truncated anywhere, bad magic/version, absurd counts,
 *   lengths, dims, offsets, types, unknown architecture, missing keys) fail
 *   with a message naming the file, and never crash (run under ASan+UBSan);
 *   a ggml type we do not read (IQ2_XXS) is named in the error.
 * - general.alignment = 1 with tensors at odd addresses loads the same
 *   weights, without a misaligned read (UBSan). */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "core/f16.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

static void test_quant_blocks(void) {
    json_error_t je;
    json_t *root = json_load_file(FIXTURE("quant_blocks.json"), 0, &je);
    CHECK(root != NULL, "quant_blocks.json: %s", je.text);
    if (!root) return;
    const char *name;
    json_t *e;
    int n_types = 0;
    json_object_foreach(root, name, e) {
        int type = (int)json_integer_value(json_object_get(e, "type"));
        int n = (int)json_integer_value(json_object_get(e, "n"));
        const char *hex = json_string_value(json_object_get(e, "hex"));
        size_t nb = strlen(hex) / 2, be, bb;
        CHECK(xd_ggml_type_block((uint32_t)type, &be, &bb) == 0 && nb == (size_t)n / be * bb,
              "%s: %zu bytes for %d elements", name, nb, n);
        CHECK(strcmp(xd_ggml_type_name((uint32_t)type), name) == 0, "%s named %s", name,
              xd_ggml_type_name((uint32_t)type));
        unsigned char *raw = malloc(nb);
        for (size_t i = 0; i < nb; i++) sscanf(hex + 2 * i, "%2hhx", &raw[i]);
        float *out = malloc((size_t)n * sizeof(float));
        CHECK(xd_ggml_dequantize((uint32_t)type, raw, out, n) == 0, "%s: %s", name, xd_last_error());
        json_t *vals = json_object_get(e, "values");
        double worst = 0;
        int differ = 0;
        for (int i = 0; i < n; i++) {
            double ref = json_real_value(json_array_get(vals, (size_t)i));
            if ((float)ref != out[i]) differ++;
            if (fabs(out[i] - ref) > worst) worst = fabs(out[i] - ref);
        }
        CHECK(differ == 0, "%s: %d of %d values differ from the reference, max abs err %g", name,
              differ, n, worst);
        n_types++;
        free(raw);
        free(out);
    }
    CHECK(n_types == 15, "%d types in quant_blocks.json", n_types);
    json_decref(root);
    float tmp[32];
    CHECK(xd_ggml_dequantize(GGML_Q4_0, tmp, tmp, 31) == -1, "partial block accepted");
    CHECK(xd_ggml_dequantize(99, tmp, tmp, 32) == -1, "unknown type accepted");
    /* a type ggml has but we do not read: named, with what we do read */
    CHECK(xd_ggml_dequantize(GGML_IQ2_XXS, tmp, tmp, 32) == -1 &&
              strstr(xd_last_error(), "IQ2_XXS") && strstr(xd_last_error(), "Q3_K"),
          "IQ2_XXS: %s", xd_last_error());
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

/* m's logits on ref's tokens are ref's logits (1e-4). */
static void check_logits(const xd_model *m, const char *what, json_t *r) {
    json_t *toks = json_object_get(r, "tokens"), *logits = json_object_get(r, "logits");
    int n = (int)json_array_size(toks), V = xd_model_config(m)->vocab_size;
    int32_t ids[64];
    CHECK(n > 0 && n <= 64 && (int)json_array_size(logits) == n, "%s: %d reference tokens", what, n);
    if (n <= 0 || n > 64) return;
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(toks, (size_t)i));
    float *out = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(m, n);
    CHECK(xd_forward(m, kv, ids, n, out, 1) == 0, "forward: %s", xd_last_error());
    double worst = 0;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < V; j++) {
            double d = fabs(out[(size_t)t * V + j] -
                            json_real_value(json_array_get(json_array_get(logits, (size_t)t), (size_t)j)));
            if (!(d <= worst)) worst = d == d ? d : INFINITY; /* NaN fails */
        }
    CHECK(worst <= 1e-4, "%s: max |logit diff| %g vs HF", what, worst);
    printf("%-16s max abs diff vs HF %.2e\n", what, worst);
    free(out);
    xd_kv_free(kv);
}

static void test_tiny_gguf(const char *gguf, const char *hf) {
    char path[1024], ref[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", XD_SOURCE_DIR, gguf);
    snprintf(ref, sizeof ref, "%s/tests/fixtures/%s/reference.json", XD_SOURCE_DIR, hf);
    xd_model *m = xd_model_load(path);
    CHECK(m != NULL, "%s: %s", gguf, xd_last_error());
    json_t *r = json_load_file(ref, 0, NULL);
    CHECK(r != NULL, "%s missing", ref);
    if (m && r) check_logits(m, gguf, r);
    xd_model_free(m);
    json_decref(r);
}

/* tiny-kquant.gguf: the file holds the types the reference says, and the
 * loaded weights (HF layout, q/k un-permuted) are exactly gguf-py's. */
static void test_tiny_kquant(void) {
    const char *path = FIXTURE("tiny-kquant.gguf");
    json_t *r = json_load_file(FIXTURE("tiny-kquant.json"), 0, NULL);
    gguf_file *g = xd_gguf_open(path);
    xd_model *m = xd_model_load(path);
    CHECK(r && g && m, "tiny-kquant: %s", xd_last_error());
    if (!r || !g || !m) { json_decref(r); xd_gguf_close(g); xd_model_free(m); return; }
    const char *name;
    json_t *ty;
    int seen[64] = {0}, n_new = 0;
    json_object_foreach(json_object_get(r, "types"), name, ty) {
        const gguf_tensor *t = xd_gguf_find_tensor(g, name);
        CHECK(t && strcmp(xd_ggml_type_name(t->type), json_string_value(ty)) == 0,
              "%s: stored as %s, expected %s", name, t ? xd_ggml_type_name(t->type) : "(missing)",
              json_string_value(ty));
        if (t && t->type < 64) seen[t->type] = 1;
    }
    n_new = seen[GGML_Q2_K] + seen[GGML_Q3_K] + seen[GGML_IQ4_NL] + seen[GGML_IQ4_XS];
    CHECK(n_new == 4, "tiny-kquant holds %d of the 4 new types", n_new);
    xd_weight *ws = NULL;
    int nw = 0, checked = 0, differ = 0;
    CHECK(xd_model_weights(m, &ws, &nw) == 0, "weights: %s", xd_last_error());
    json_t *samples = json_object_get(r, "weights");
    for (int i = 0; i < nw; i++) {
        json_t *s = json_object_get(samples, ws[i].gguf);
        CHECK(s != NULL, "%s: no reference", ws[i].gguf);
        if (!s) continue;
        json_t *idx = json_object_get(s, "index"), *val = json_object_get(s, "values");
        for (size_t k = 0; k < json_array_size(idx); k++) {
            json_int_t at = json_integer_value(json_array_get(idx, k));
            float ref = (float)json_real_value(json_array_get(val, k));
            CHECK(at >= 0 && at < ws[i].rows * ws[i].cols, "%s: index %lld", ws[i].gguf,
                  (long long)at);
            if (at < 0 || at >= ws[i].rows * ws[i].cols) continue;
            if (ws[i].ptr[at] != ref) {
                if (differ++ < 5)
                    fprintf(stderr, "%s[%lld] = %.9g, gguf-py %.9g\n", ws[i].gguf, (long long)at,
                            ws[i].ptr[at], ref);
            }
            checked++;
        }
    }
    CHECK(nw == (int)json_object_size(samples), "%d weights, %zu in the reference", nw,
          json_object_size(samples));
    CHECK(differ == 0 && checked >= 29 * 30, "%d of %d sampled weights differ from gguf-py", differ,
          checked);
    check_logits(m, "tiny-kquant.gguf", r);
    free(ws);
    xd_model_free(m);
    xd_gguf_close(g);
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
    /* a type ggml defines that we do not read: the error names it and the tensor */
    MUTATE("tensor type IQ2_XXS", "unsupported ggml type 16 (IQ2_XXS)",
           put_u32(b + info + 20, GGML_IQ2_XXS));
    CHECK(strstr(xd_last_error(), "blk.0.attn_q.weight") && strstr(xd_last_error(), "Q2_K"),
          "IQ2_XXS error: %s", xd_last_error());
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

/* ---- general.alignment = 1 ------------------------------------------------ */

typedef struct {
    unsigned char *b;
    size_t n, cap;
} gbuf;

static void gb_put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = 2 * (g->n + n);
        g->b = realloc(g->b, g->cap);
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void gb_u32(gbuf *g, uint32_t v) { gb_put(g, &v, 4); }
static void gb_u64(gbuf *g, uint64_t v) { gb_put(g, &v, 8); }
static void gb_str(gbuf *g, const char *s, size_t n) {
    gb_u64(g, n);
    gb_put(g, s, n);
}

/* tiny-llama.gguf rewritten with general.alignment = 1, an odd data offset,
 * every tensor at an odd address and an extra F32 rope_freqs.weight: the
 * tensors' bytes are not aligned for their types. It loads (under UBSan:
 * without a misaligned read) to exactly the weights of the original file,
 * and the rope frequencies are divided by the stored values. */
static void test_alignment_1(void) {
    const char *src = FIXTURE("tiny-llama.gguf");
    size_t n;
    unsigned char *orig = slurp(src, &n);
    gguf_file *g = xd_gguf_open(src);
    xd_model *m0 = xd_model_load(src);
    CHECK(orig && g && m0, "tiny-llama.gguf: %s", xd_last_error());
    if (!orig || !g || !m0) goto out;
    CHECK(!xd_gguf_find(g, "general.alignment") && !xd_gguf_find_tensor(g, "rope_freqs.weight"),
          "tiny-llama.gguf already has general.alignment or rope_freqs");
    int half = xd_model_config(m0)->head_dim / 2;
    /* the key/value section is copied as it is: it ends where the first tensor's info begins */
    const char *t0 = g->tensors[0].name;
    unsigned char pat[8 + 128];
    uint64_t l0 = strlen(t0);
    memcpy(pat, &l0, 8);
    memcpy(pat + 8, t0, l0);
    const unsigned char *info0 = memmem(orig + 24, n - 24, pat, 8 + l0);
    CHECK(info0 != NULL, "first tensor info not found");
    if (!info0) goto out;

    float *freqs = malloc((size_t)half * sizeof *freqs);
    for (int i = 0; i < half; i++) freqs[i] = 1.0f + 0.25f * (float)i;
    size_t infos = 0; /* bytes of the tensor infos, rope_freqs' included */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        infos += 8 + strlen(g->tensors[i].name) + 4 + 8 * g->tensors[i].n_dims + 4 + 8;
    infos += 8 + strlen("rope_freqs.weight") + 4 + 8 + 4 + 8;
    static const char key_al[] = "general.alignment", key_pad[] = "test.pad";
    size_t head = 24 + (size_t)(info0 - (orig + 24)) + (8 + strlen(key_al) + 4 + 4) +
                  (8 + strlen(key_pad) + 4 + 8);
    size_t pad = (head + 1 + infos) % 2 ? 1 : 2; /* the data section starts at an odd offset */

    gbuf o = {0};
    uint64_t n_tensors = g->n_tensors + 1, n_kv = g->n_kv + 2;
    gb_put(&o, orig, 8); /* magic, version */
    gb_u64(&o, n_tensors);
    gb_u64(&o, n_kv);
    gb_put(&o, orig + 24, (size_t)(info0 - (orig + 24)));
    gb_str(&o, key_al, strlen(key_al));
    gb_u32(&o, 4); /* uint32 */
    gb_u32(&o, 1);
    gb_str(&o, key_pad, strlen(key_pad));
    gb_u32(&o, 8); /* string */
    gb_str(&o, "xx", pad);
    uint64_t off = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        gb_str(&o, t->name, strlen(t->name));
        gb_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) gb_u64(&o, (uint64_t)t->ne[d]);
        gb_u32(&o, t->type);
        gb_u64(&o, off);
        off += t->nbytes;
    }
    gb_str(&o, "rope_freqs.weight", strlen("rope_freqs.weight"));
    gb_u32(&o, 1);
    gb_u64(&o, (uint64_t)half);
    gb_u32(&o, GGML_F32);
    gb_u64(&o, off);
    size_t data_offset = o.n;
    CHECK(data_offset % 2 == 1, "data offset %zu is even", data_offset);
    for (uint64_t i = 0; i < g->n_tensors; i++) gb_put(&o, g->tensors[i].data, g->tensors[i].nbytes);
    gb_put(&o, freqs, (size_t)half * sizeof *freqs);
    snprintf(tmp_path, sizeof tmp_path, "/tmp/xd_test_gguf_al1_%d.gguf", (int)getpid());
    write_file(o.b, o.n);

    gguf_file *g1 = xd_gguf_open(tmp_path);
    CHECK(g1 != NULL, "alignment 1: %s", xd_last_error());
    if (g1) {
        CHECK(g1->alignment == 1 && g1->data_offset == data_offset, "alignment %llu, data offset %llu",
              (unsigned long long)g1->alignment, (unsigned long long)g1->data_offset);
        const gguf_tensor *rf = xd_gguf_find_tensor(g1, "rope_freqs.weight");
        CHECK(rf && (uintptr_t)rf->data % 4 != 0, "rope_freqs.weight is aligned after all");
        xd_gguf_close(g1);
    }
    xd_model *m1 = xd_model_load(tmp_path);
    CHECK(m1 != NULL, "alignment 1: %s", xd_last_error());
    if (m1) {
        CHECK(m1->arena_floats == m0->arena_floats &&
                  !memcmp(m1->arena, m0->arena, m0->arena_floats * sizeof(float)),
              "alignment 1: the weights differ from the original file's");
        int bad = 0;
        for (int i = 0; i < half; i++) bad += m1->rope_inv_freq[i] != m0->rope_inv_freq[i] / freqs[i];
        CHECK(bad == 0, "alignment 1: %d of %d rope frequencies are not the original / rope_freqs", bad,
              half);
    }
    xd_model_free(m1);
    unlink(tmp_path);
    free(o.b);
    free(freqs);
out:
    xd_model_free(m0);
    xd_gguf_close(g);
    free(orig);
}

int main(void) {
    test_fp16();
    test_quant_blocks();
    test_tiny_gguf("tiny-llama.gguf", "tiny-llama");
    test_tiny_gguf("tiny-qwen2.gguf", "tiny-qwen2");
    test_tiny_kquant();
    test_corrupt();
    test_alignment_1();
    return test_summary("test_gguf");
}
