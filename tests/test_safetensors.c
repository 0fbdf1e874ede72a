/* safetensors reader and config.json parser, checked against the fixtures that
 * tests/ref/make_tiny_models.py wrote with HF transformers (tensors.json lists
 * every tensor's name, dtype, shape and first values), plus damaged copies of
 * them that must be refused with an error naming the file. */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "test.h"

static const char *models[] = {"tiny-llama", "tiny-llama-sharded", "tiny-llama3rope",
                               "tiny-qwen2", "tiny-qwen2-bf16",    "tiny-qwen3",
                               "tiny-olmo2"};
#define N_MODELS (int)(sizeof models / sizeof *models)

/* ---- file helpers -------------------------------------------------------- */

static char tmp_root[256];

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n && fwrite(b, 1, n, f) != n) { perror(path); exit(2); }
    fclose(f);
}

static void write_text(const char *path, const char *s) { write_all(path, s, strlen(s)); }

/* A fresh empty directory under the test's temp root. */
static const char *new_dir(const char *name) {
    static char buf[8][512];
    static int k;
    char *d = buf[k++ % 8];
    snprintf(d, 512, "%s/%s", tmp_root, name);
    CHECK(mkdir(d, 0700) == 0, "mkdir %s", d);
    return d;
}

static const char *join(const char *dir, const char *file) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", dir, file);
    return p;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* A safetensors file: u64 header length, header text, data. */
static void write_st(const char *path, const char *header, const void *data, size_t n) {
    size_t h = strlen(header);
    uint8_t *b = malloc(8 + h + n + 1);
    uint64_t h64 = h;
    memcpy(b, &h64, 8);
    memcpy(b + 8, header, h);
    if (n) memcpy(b + 8 + h, data, n);
    write_all(path, b, 8 + h + n);
    free(b);
}

/* The error of the last call must mention `file` and `what`. */
#define CHECK_ERR(file, what)                                                              \
    do {                                                                                   \
        const char *e_ = xd_last_error();                                                  \
        if (getenv("XD_TEST_VERBOSE")) fprintf(stderr, "expected error: %s\n", e_);         \
        CHECK(e_ && strstr(e_, (file)) && strstr(e_, (what)), "error '%s' should name '%s' " \
              "and say '%s'", e_ ? e_ : "(null)", (file), (what));                         \
    } while (0)

/* ---- the fixtures as written --------------------------------------------- */

static st_dtype dtype_of(const char *torch_name) {
    if (!strcmp(torch_name, "bfloat16")) return ST_BF16;
    if (!strcmp(torch_name, "float16")) return ST_F16;
    return ST_F32;
}

static int64_t n_elems(const st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

static float *tensor_f32(const st_set *s, const char *name) {
    const st_tensor *t = xd_st_find(s, name);
    if (!t) return NULL;
    float *v = malloc((size_t)n_elems(t) * sizeof *v + 1);
    if (xd_st_to_f32(s, t, v)) { free(v); return NULL; }
    return v;
}

static void check_model_tensors(const char *model) {
    char dir[512], list[600];
    snprintf(dir, sizeof dir, FIXTURE("%s"), model);
    snprintf(list, sizeof list, "%s/tensors.json", dir);
    json_error_t jerr;
    json_t *rows = json_load_file(list, 0, &jerr);
    CHECK(json_is_array(rows), "%s: %s", list, jerr.text);
    st_set *s = xd_st_open_dir(dir);
    CHECK(s != NULL, "xd_st_open_dir(%s): %s", dir, xd_last_error());
    if (!s || !rows) { xd_st_close(s); json_decref(rows); return; }
    CHECK(s->n_tensors == (int)json_array_size(rows), "%s: %d tensors, tensors.json lists %zu",
          model, s->n_tensors, json_array_size(rows));
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        const char *name = json_string_value(json_object_get(r, "name"));
        const st_tensor *t = xd_st_find(s, name);
        CHECK(t != NULL, "%s: tensor %s not found", model, name);
        if (!t) continue;
        CHECK(t->dtype == dtype_of(json_string_value(json_object_get(r, "dtype"))),
              "%s: %s: dtype %s", model, name, xd_st_dtype_name(t->dtype));
        const char *file = json_string_value(json_object_get(r, "file"));
        const char *path = s->paths[t->file];
        CHECK(strlen(path) >= strlen(file) && !strcmp(path + strlen(path) - strlen(file), file),
              "%s: %s is in %s, expected %s", model, name, path, file);
        json_t *shape = json_object_get(r, "shape");
        CHECK(t->n_dims == (int)json_array_size(shape), "%s: %s: n_dims %d", model, name,
              t->n_dims);
        for (int d = 0; d < t->n_dims && d < (int)json_array_size(shape); d++)
            CHECK(t->shape[d] == json_integer_value(json_array_get(shape, d)),
                  "%s: %s: shape[%d] = %lld", model, name, d, (long long)t->shape[d]);
        float *v = tensor_f32(s, name);
        CHECK(v != NULL, "%s: %s: xd_st_to_f32: %s", model, name, xd_last_error());
        json_t *first = json_object_get(r, "first");
        for (size_t k = 0; v && k < json_array_size(first); k++)
            CHECK(v[k] == (float)json_number_value(json_array_get(first, k)),
                  "%s: %s[%zu] = %.9g, expected %.9g", model, name, k, v[k],
                  json_number_value(json_array_get(first, k)));
        free(v);
    }
    xd_st_close(s);
    json_decref(rows);
}

/* Every tensor of a and b must hold the same values (to a relative tolerance). */
static void check_same_weights(const char *a, const char *b, float rel) {
    char da[512], db[512];
    snprintf(da, sizeof da, FIXTURE("%s"), a);
    snprintf(db, sizeof db, FIXTURE("%s"), b);
    st_set *sa = xd_st_open_dir(da);
    st_set *sb = xd_st_open_dir(db);
    CHECK(sa && sb, "open %s / %s: %s", a, b, xd_last_error());
    if (sa && sb) {
        CHECK(sa->n_tensors == sb->n_tensors, "%s has %d tensors, %s %d", a, sa->n_tensors, b,
              sb->n_tensors);
        int bad = 0;
        for (int i = 0; i < sa->n_tensors; i++) {
            const st_tensor *ta = &sa->tensors[i], *tb = xd_st_find(sb, ta->name);
            if (!tb || n_elems(ta) != n_elems(tb)) { bad++; continue; }
            float *va = tensor_f32(sa, ta->name), *vb = tensor_f32(sb, ta->name);
            for (int64_t k = 0; va && vb && k < n_elems(ta); k++)
                if (fabsf(va[k] - vb[k]) > rel * fabsf(va[k])) { bad++; break; }
            free(va);
            free(vb);
        }
        CHECK(bad == 0, "%s vs %s: %d tensors differ", a, b, bad);
    }
    xd_st_close(sa);
    xd_st_close(sb);
}

/* ---- config.json --------------------------------------------------------- */

static int load_cfg(const char *model, xd_config *c) {
    char p[512];
    snprintf(p, sizeof p, FIXTURE("%s/config.json"), model);
    int rc = xd_hf_config_load(p, c);
    CHECK(rc == 0, "xd_hf_config_load(%s): %s", p, xd_last_error());
    return rc;
}

static void check_common(const xd_config *c, const char *m) {
    CHECK(c->n_layer == 2 && c->d_model == 48 && c->n_head == 4 && c->n_kv_head == 2 &&
          c->d_ff == 80 && c->vocab_size == 260 && c->max_ctx == 128,
          "%s: sizes %d %d %d %d %d %d %d", m, c->n_layer, c->d_model, c->n_head, c->n_kv_head,
          c->d_ff, c->vocab_size, c->max_ctx);
    CHECK(c->rope_theta == 10000.0f, "%s: rope_theta %g", m, c->rope_theta);
}

static void test_fixture_configs(void) {
    xd_config c;
    if (!load_cfg("tiny-llama", &c)) {
        check_common(&c, "llama");
        CHECK(c.arch == XD_ARCH_LLAMA && c.head_dim == 12 && c.tied_embeddings == 1 &&
              c.qkv_bias == 0 && c.qk_norm == XD_QKNORM_NONE && c.post_norms == 0 &&
              c.rope_scale_factor == 0, "llama flags");
        CHECK(c.norm_eps == 1e-6f, "llama eps %g", c.norm_eps);
    }
    if (!load_cfg("tiny-llama3rope", &c)) {
        check_common(&c, "llama3rope");
        CHECK(c.rope_scale_factor == 8 && c.rope_low_freq_factor == 1 &&
              c.rope_high_freq_factor == 4 && c.rope_orig_ctx == 64, "llama3 rope %g %g %g %d",
              c.rope_scale_factor, c.rope_low_freq_factor, c.rope_high_freq_factor,
              c.rope_orig_ctx);
        CHECK(c.norm_eps == 1e-5f, "llama3rope eps %g", c.norm_eps);
    }
    const char *qwen2s[] = {"tiny-qwen2", "tiny-qwen2-bf16"};
    for (int i = 0; i < 2; i++)
        if (!load_cfg(qwen2s[i], &c)) {
            check_common(&c, qwen2s[i]);
            CHECK(c.arch == XD_ARCH_QWEN2 && c.head_dim == 12 && c.tied_embeddings == 0 &&
                  c.qkv_bias == 1 && c.qk_norm == XD_QKNORM_NONE && c.post_norms == 0,
                  "%s flags", qwen2s[i]);
        }
    if (!load_cfg("tiny-qwen3", &c)) {
        check_common(&c, "qwen3");
        CHECK(c.arch == XD_ARCH_QWEN3 && c.head_dim == 16 && c.tied_embeddings == 0 &&
              c.qkv_bias == 0 && c.qk_norm == XD_QKNORM_HEAD && c.post_norms == 0, "qwen3 flags");
    }
    if (!load_cfg("tiny-olmo2", &c)) {
        check_common(&c, "olmo2");
        CHECK(c.arch == XD_ARCH_OLMO2 && c.head_dim == 12 && c.tied_embeddings == 0 &&
              c.qkv_bias == 0 && c.qk_norm == XD_QKNORM_FULL && c.post_norms == 1, "olmo2 flags");
    }
}

/* Configs as older transformers wrote them, and HF defaults for absent fields. */
static void test_synthetic_configs(void) {
    const char *d = new_dir("cfg-good");
    const char *p = join(d, "config.json");
    xd_config c;

    /* Llama 3.2 style: top-level rope_theta, scaling in rope_scaling */
    write_text(p, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
                  "\"hidden_size\":2048,\"num_hidden_layers\":16,\"num_attention_heads\":32,"
                  "\"num_key_value_heads\":8,\"intermediate_size\":8192,\"vocab_size\":128256,"
                  "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,"
                  "\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":32.0,"
                  "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
                  "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
                  "\"tie_word_embeddings\":true,\"head_dim\":64}");
    CHECK(xd_hf_config_load(p, &c) == 0, "llama3.2: %s", xd_last_error());
    CHECK(c.rope_theta == 500000.0f && c.rope_scale_factor == 32 && c.rope_orig_ctx == 8192 &&
          c.head_dim == 64 && c.n_kv_head == 8 && c.tied_embeddings && c.max_ctx == 131072,
          "llama3.2 fields");

    /* absent fields take the architecture's HF defaults */
    write_text(p, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":96,"
                  "\"vocab_size\":300,\"rope_scaling\":null,\"head_dim\":null}");
    CHECK(xd_hf_config_load(p, &c) == 0, "llama defaults: %s", xd_last_error());
    CHECK(c.n_kv_head == 4 && c.head_dim == 16 && c.rope_theta == 10000.0f &&
          c.norm_eps == 1e-6f && c.tied_embeddings == 0 && c.max_ctx == 2048 &&
          c.rope_scale_factor == 0, "llama defaults: kv %d hd %d theta %g eps %g", c.n_kv_head,
          c.head_dim, c.rope_theta, c.norm_eps);
    write_text(p, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":96,"
                  "\"vocab_size\":300,\"rope_parameters\":{\"rope_type\":\"default\","
                  "\"rope_theta\":1000000.0}}");
    CHECK(xd_hf_config_load(p, &c) == 0, "qwen3 defaults: %s", xd_last_error());
    CHECK(c.head_dim == 128 && c.rope_theta == 1e6f && c.max_ctx == 32768, "qwen3 defaults");
    write_text(p, "{\"model_type\":\"olmo2\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                  "\"num_attention_heads\":4,\"intermediate_size\":96,\"vocab_size\":300,"
                  "\"rope_theta\":500000}");
    CHECK(xd_hf_config_load(p, &c) == 0, "olmo2 by model_type: %s", xd_last_error());
    CHECK(c.arch == XD_ARCH_OLMO2 && c.norm_eps == 1e-5f && c.rope_theta == 500000.0f,
          "olmo2 defaults");
}

/* A config that must be refused; the error names the file and `what`. */
static void bad_config(const char *json, const char *what) {
    static int k;
    char name[32];
    snprintf(name, sizeof name, "cfg-bad-%d", k++);
    const char *p = join(new_dir(name), "config.json");
    write_text(p, json);
    xd_config c;
    xd_err_clear();
    CHECK(xd_hf_config_load(p, &c) == -1, "config should fail (%s): %s", what, json);
    CHECK_ERR(p, what);
}

#define SIZES "\"hidden_size\":64,\"num_hidden_layers\":2,\"intermediate_size\":96," \
              "\"vocab_size\":300"

static void test_bad_configs(void) {
    bad_config("{\"architectures\":[\"MistralForCausalLM\"]," SIZES ",\"num_attention_heads\":4}",
               "architectures: 'MistralForCausalLM' is not supported (expected one of");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,"
               "\"num_attention_heads\":4,\"intermediate_size\":96,\"vocab_size\":300}",
               "hidden_size: missing");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":-4}",
               "num_attention_heads");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":0}",
               "num_attention_heads");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"num_key_value_heads\":3}", "num_key_value_heads");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":5}",
               "does not divide hidden_size");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\","
               "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":96,"
               "\"vocab_size\":300}", "hidden_size: expected an integer");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"rms_norm_eps\":-1}", "rms_norm_eps");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"tie_word_embeddings\":1}", "tie_word_embeddings");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", "yarn");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
               "rope_scaling.low_freq_factor: missing");
    bad_config("{\"architectures\":[\"Qwen3ForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"attention_bias\":true}", "attention_bias");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"mistral\"," SIZES
               ",\"num_attention_heads\":4}", "model_type");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"]," SIZES ",\"num_attention_heads\":4,"
               "\"hidden_act\":\"gelu\"}", "hidden_act");
    bad_config("{\"architectures\":[\"LlamaForCausalLM\"],\n\"hidden_size\": 64,,\n}",
               "line 2");
    bad_config("[1, 2]", "object");
    bad_config("", "malformed JSON");
    xd_config c;
    const char *missing = join(tmp_root, "no-such-dir/config.json");
    CHECK(xd_hf_config_load(missing, &c) == -1, "missing config.json should fail");
    CHECK_ERR(missing, "cannot open");
}

/* ---- damaged safetensors ------------------------------------------------- */

static uint8_t *orig;      /* tiny-llama/model.safetensors */
static size_t orig_n;
static uint64_t orig_hlen;

/* Opens a damaged file both ways (directory and file) and expects an error. */
static void expect_fail(const char *dir, const char *what) {
    const char *p = join(dir, "model.safetensors");
    xd_err_clear();
    st_set *s = xd_st_open(p);
    CHECK(s == NULL, "%s: xd_st_open should fail (%s)", p, what);
    CHECK_ERR(p, what);
    xd_st_close(s);
    xd_err_clear();
    s = xd_st_open_dir(dir);
    CHECK(s == NULL, "%s: xd_st_open_dir should fail (%s)", dir, what);
    CHECK_ERR("model.safetensors", what);
    xd_st_close(s);
}

static void bad_bytes(const void *b, size_t n, const char *what) {
    static int k;
    char name[32];
    snprintf(name, sizeof name, "st-bad-%d", k++);
    const char *d = new_dir(name);
    write_all(join(d, "model.safetensors"), b, n);
    expect_fail(d, what);
}

/* The original file with its header replaced by the JSON text `h`. */
static void bad_header(const char *h, const char *what) {
    size_t hl = strlen(h), dn = orig_n - 8 - orig_hlen;
    uint8_t *b = malloc(8 + hl + dn);
    uint64_t h64 = hl;
    memcpy(b, &h64, 8);
    memcpy(b + 8, h, hl);
    memcpy(b + 8 + hl, orig + 8 + orig_hlen, dn);
    bad_bytes(b, 8 + hl + dn, what);
    free(b);
}

/* The original header with one entry of the embedding tensor replaced. */
static void bad_entry(const char *key, json_t *value, const char *what) {
    json_t *h = json_loadb((const char *)orig + 8, orig_hlen, 0, NULL);
    json_t *e = json_object_get(h, "model.embed_tokens.weight");
    if (value) json_object_set_new(e, key, value);
    else json_object_del(e, key);
    char *txt = json_dumps(h, JSON_COMPACT);
    bad_header(txt, what);
    free(txt);
    json_decref(h);
}

static void test_bad_files(void) {
    char p[512];
    snprintf(p, sizeof p, FIXTURE("tiny-llama/model.safetensors"));
    orig = read_all(p, &orig_n);
    CHECK(orig && orig_n > 8, "read %s", p);
    if (!orig) return;
    memcpy(&orig_hlen, orig, 8);
    uint64_t data_n = orig_n - 8 - orig_hlen;
    uint8_t *b = malloc(orig_n);

    bad_bytes(orig, 5, "too small");
    bad_bytes(orig, 8 + orig_hlen / 2, "header length");                 /* cut in the header */
    bad_bytes(orig, orig_n - 100, "run past the data section");          /* cut in the data */
    memcpy(b, orig, orig_n);
    uint64_t big = orig_n;
    memcpy(b, &big, 8);
    bad_bytes(b, orig_n, "header length");                               /* longer than file */
    big = UINT64_MAX - 3;
    memcpy(b, &big, 8);
    bad_bytes(b, orig_n, "header length");                               /* wraps around */
    big = 0;
    memcpy(b, &big, 8);
    bad_bytes(b, orig_n, "header length");
    memcpy(b, orig, orig_n);
    memset(b + 8 + 20, '#', 10);
    bad_bytes(b, orig_n, "header JSON");                                 /* garbage JSON */
    bad_header("[1,2,3]", "not an object");
    bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "duplicate");
    bad_header("{\"a\":[]}", "not an object");

    bad_entry("dtype", json_string("F8"), "'model.embed_tokens.weight': dtype 'F8' is not "
              "supported");
    bad_entry("dtype", json_string("I64"), "dtype 'I64'");
    bad_entry("dtype", json_integer(0), "dtype");
    bad_entry("dtype", NULL, "dtype");
    bad_entry("shape", json_pack("[ii]", 260, 47), "need");            /* nbytes mismatch */
    bad_entry("shape", json_pack("[ii]", -260, 48), "shape[0]");
    bad_entry("shape", json_pack("[IIII]", (json_int_t)1 << 30, (json_int_t)1 << 30,
                                 (json_int_t)1 << 30, (json_int_t)1 << 30), "absurd");
    bad_entry("shape", json_pack("[iiiiiiiii]", 1, 1, 1, 1, 1, 1, 1, 1, 1), "dimensions");
    bad_entry("shape", json_string("260x48"), "shape");
    bad_entry("data_offsets", json_pack("[II]", (json_int_t)0, (json_int_t)data_n + 4),
              "run past the data section");
    bad_entry("data_offsets", json_pack("[II]", (json_int_t)data_n + 4, (json_int_t)data_n + 8),
              "run past the data section");
    bad_entry("data_offsets", json_pack("[ii]", 4000, 8), "end before begin");
    bad_entry("data_offsets", json_pack("[i]", 0), "data_offsets");
    bad_entry("data_offsets", json_pack("[ii]", -4, 8), "data_offsets");
    bad_entry("data_offsets", json_pack("[fi]", 0.5, 8), "data_offsets");
    bad_entry("data_offsets", NULL, "data_offsets");
    free(b);
    free(orig);

    const char *empty = new_dir("st-empty");
    xd_err_clear();
    CHECK(xd_st_open_dir(empty) == NULL, "empty dir should fail");
    CHECK_ERR(empty, "no model.safetensors");
}

/* Small hand-made files: F16/BF16 conversion, unaligned data, scalars, empty
 * tensors, metadata, and duplicate names across shards. */
static void test_synthetic_files(void) {
    const char *d = new_dir("st-synth");
    /* 0: f16 [1, -2, 0.5, 65504]; 8: bf16 [3, -0.15625]; 12: f32 7.25 scalar */
    uint8_t data[16];
    const uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x7BFF}, bf[2] = {0x4040, 0xBE20};
    const float f = 7.25f;
    memcpy(data, h, 8);
    memcpy(data + 8, bf, 4);
    memcpy(data + 12, &f, 4);
    /* header of odd length: the data section starts unaligned */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                      "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]},"
                      "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[16,16]}}";
    CHECK(strlen(hdr) % 2 == 1, "header length should be odd");
    const char *p = join(d, "model.safetensors");
    write_st(p, hdr, data, sizeof data);
    st_set *s = xd_st_open_dir(d);
    CHECK(s != NULL, "synthetic: %s", xd_last_error());
    if (s) {
        CHECK(s->n_tensors == 4 && !xd_st_find(s, "__metadata__"), "synthetic: %d tensors",
              s->n_tensors);
        float v[4] = {0};
        const st_tensor *t = xd_st_find(s, "h");
        CHECK(t && t->dtype == ST_F16 && t->nbytes == 8, "h");
        if (t && !xd_st_to_f32(s, t, v))
            CHECK(v[0] == 1 && v[1] == -2 && v[2] == 0.5f && v[3] == 65504, "f16 %g %g %g %g",
                  v[0], v[1], v[2], v[3]);
        t = xd_st_find(s, "b");
        if (t && !xd_st_to_f32(s, t, v))
            CHECK(v[0] == 3 && v[1] == -0.15625f, "bf16 %g %g", v[0], v[1]);
        t = xd_st_find(s, "s");
        CHECK(t && t->n_dims == 0, "scalar");
        if (t && !xd_st_to_f32(s, t, v)) CHECK(v[0] == 7.25f, "scalar %g", v[0]);
        t = xd_st_find(s, "z");
        CHECK(t && t->n_dims == 2 && t->shape[0] == 0 && t->nbytes == 0, "empty tensor");
        CHECK(!xd_st_find(s, "nope") && !xd_st_find(s, ""), "xd_st_find of an absent name");
        CHECK(!strcmp(xd_st_dtype_name(ST_BF16), "BF16"), "dtype name");
    }
    xd_st_close(s);

    /* two shards both holding "w" */
    const char *d2 = new_dir("st-dup-shards");
    const char *one = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    const char *two = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_st(join(d2, "a.safetensors"), one, data, 4);
    write_st(join(d2, "b.safetensors"), two, data, 8);
    write_text(join(d2, "model.safetensors.index.json"),
               "{\"weight_map\":{\"w\":\"a.safetensors\",\"v\":\"b.safetensors\"}}");
    xd_err_clear();
    CHECK(xd_st_open_dir(d2) == NULL, "duplicate across shards should fail");
    CHECK_ERR("b.safetensors", "duplicate");
}

/* ---- damaged shard sets -------------------------------------------------- */

static const char *shards[] = {"model-00001-of-00004.safetensors",
                               "model-00002-of-00004.safetensors",
                               "model-00003-of-00004.safetensors",
                               "model-00004-of-00004.safetensors"};

/* A copy of tiny-llama-sharded, without shard `skip` (-1: all), with `index`
 * as its index (NULL: the original). */
static const char *sharded_copy(int skip, const char *index) {
    static int k;
    char name[32];
    snprintf(name, sizeof name, "sharded-%d", k++);
    const char *d = new_dir(name);
    for (int i = 0; i < 4; i++) {
        if (i == skip) continue;
        char src[512];
        snprintf(src, sizeof src, FIXTURE("tiny-llama-sharded/%s"), shards[i]);
        size_t n;
        uint8_t *b = read_all(src, &n);
        CHECK(b != NULL, "read %s", src);
        if (b) write_all(join(d, shards[i]), b, n);
        free(b);
    }
    if (index) {
        write_text(join(d, "model.safetensors.index.json"), index);
    } else {
        size_t n;
        uint8_t *b = read_all(FIXTURE("tiny-llama-sharded/model.safetensors.index.json"), &n);
        if (b) write_all(join(d, "model.safetensors.index.json"), b, n);
        free(b);
    }
    return d;
}

static void bad_shards(const char *d, const char *file, const char *what) {
    xd_err_clear();
    st_set *s = xd_st_open_dir(d);
    CHECK(s == NULL, "%s should fail (%s)", d, what);
    CHECK_ERR(file, what);
    xd_st_close(s);
}

static void test_bad_shards(void) {
    const char *d = sharded_copy(-1, NULL);
    st_set *s = xd_st_open_dir(d);
    CHECK(s && s->n_files == 4, "sharded copy opens: %s", xd_last_error());
    xd_st_close(s);

    bad_shards(sharded_copy(1, NULL), shards[1], "missing");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{\"model.norm.weight\":\"../x.safetensors\"}}"),
               "model.safetensors.index.json", "not a file name");
    bad_shards(sharded_copy(-1, "{\"weight_map\":[]}"), "model.safetensors.index.json",
               "weight_map");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{}}"), "model.safetensors.index.json", "empty");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{\"model.norm.weight\":7}}"),
               "model.safetensors.index.json", "shard file name");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{\"model.norm.weight\":"
                                "\"model-00001-of-00004.safetensors\",\"model.embed_tokens.weight\":"
                                "\"model-00004-of-00004.safetensors\"}}"),
               "model.safetensors.index.json", "should be in 'model-00001-of-00004.safetensors' "
               "but is in model-00004");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{\"model.nothere\":"
                                "\"model-00001-of-00004.safetensors\"}}"),
               "model.safetensors.index.json", "no shard");
    bad_shards(sharded_copy(-1, "{\"weight_map\":{\"a\":"), "model.safetensors.index.json",
               "line 1");
    /* a damaged shard is reported by its own name */
    d = sharded_copy(-1, NULL);
    write_all(join(d, shards[2]), "\x10\0\0\0\0\0\0\0{}", 10);
    bad_shards(d, shards[2], "header length");
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/xd-test-st-XXXXXX");
    if (!mkdtemp(tmp_root)) { perror("mkdtemp"); return 2; }

    for (int i = 0; i < N_MODELS; i++) check_model_tensors(models[i]);
    check_same_weights("tiny-llama", "tiny-llama-sharded", 0);
    check_same_weights("tiny-qwen2", "tiny-qwen2-bf16", 1.0f / 128);
    test_fixture_configs();
    test_synthetic_configs();
    test_bad_configs();
    test_bad_files();
    test_synthetic_files();
    test_bad_shards();

    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary("test_safetensors");
}
