/* Writers: safetensors, config.json, tokenizer.json, whole models, and the
 * atomic file / directory commits under them (including every injected
 * failure point of a model save). Scratch files live in a mkdtemp directory
 * that is removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "core/f16.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "io/tokenizer_gguf.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

static char g_tmp[256];

static const char *tmp_path(const char *name) {
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 1024, "%s/%s", g_tmp, name);
    return b;
}

static int exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Entries of dir whose name contains ".tmp." or ".old." (leftovers). */
static int leftovers(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.") || strstr(de->d_name, ".old.")) {
            fprintf(stderr, "  leftover: %s/%s\n", dir, de->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    fclose(f);
    return b;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* ---- safetensors ---------------------------------------------------------- */

static void test_safetensors(void) {
    float a[15], b[7], c[6], s = 3.25f;
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.37f - 2.0f;
    for (int i = 0; i < 7; i++) b[i] = 1.0f / (float)(i + 1);
    for (int i = 0; i < 6; i++) c[i] = (float)(i - 3) * 1.0001f;
    c[5] = 1.00390625f; /* a bf16 tie: 1 + 2^-8 rounds to even (1.0) */
    st_write_tensor ts[] = {
        {"z.f32", ST_F32, 2, {3, 5}, a},
        {"b.half", ST_F16, 1, {7}, b},
        {"a.bf16", ST_BF16, 2, {2, 3}, c},
        {"scalar", ST_F32, 0, {0}, &s},
        {"empty", ST_F32, 2, {0, 4}, NULL},
    };
    const char *p = tmp_path("t.safetensors");
    CHECK(xd_st_write(p, ts, 5, "{\"format\": \"pt\", \"note\": \"x\"}") == 0, "xd_st_write: %s", xd_last_error());
    size_t len = 0;
    char *raw = slurp(p, &len);
    CHECK(raw && len >= 8, "read back %s", p);
    if (raw) {
        uint64_t hl = 0;
        memcpy(&hl, raw, 8);
        CHECK((8 + hl) % 8 == 0, "header length %llu leaves the data unaligned", (unsigned long long)hl);
        /* keys in name order, metadata first */
        const char *h = raw + 8;
        const char *order[] = {"\"__metadata__\"", "\"a.bf16\"", "\"b.half\"", "\"empty\"", "\"scalar\"", "\"z.f32\""};
        const char *prev = h;
        for (int i = 0; i < 6; i++) {
            const char *q = strstr(h, order[i]);
            CHECK(q && q >= prev, "header order: %s", order[i]);
            if (q) prev = q;
        }
        CHECK(h[hl - 1] == ' ' || h[hl - 1] == '}', "header padding");
    }
    free(raw);
    st_set *st = xd_st_open(p);
    CHECK(st != NULL, "xd_st_open: %s", xd_last_error());
    if (st) {
        CHECK(st->n_tensors == 5, "%d tensors", st->n_tensors);
        const st_tensor *t = xd_st_find(st, "z.f32");
        float out[16];
        CHECK(t && t->dtype == ST_F32 && t->n_dims == 2 && t->shape[0] == 3 && t->shape[1] == 5, "z.f32 meta");
        if (t) {
            xd_st_to_f32(st, t, out);
            CHECK(memcmp(out, a, sizeof a) == 0, "z.f32 data");
            CHECK(((const uint8_t *)t->data - st->maps[0]) % 4 == 0, "f32 data not 4-aligned");
        }
        t = xd_st_find(st, "b.half");
        CHECK(t && t->dtype == ST_F16 && t->n_dims == 1 && t->shape[0] == 7, "b.half meta");
        if (t) {
            xd_st_to_f32(st, t, out);
            int ok = 1;
            for (int i = 0; i < 7; i++) ok &= out[i] == xd_fp16_to_fp32(xd_fp32_to_fp16(b[i]));
            CHECK(ok, "f16 data");
        }
        t = xd_st_find(st, "a.bf16");
        CHECK(t && t->dtype == ST_BF16 && t->shape[0] == 2 && t->shape[1] == 3, "a.bf16 meta");
        if (t) {
            xd_st_to_f32(st, t, out);
            int ok = 1;
            for (int i = 0; i < 6; i++) ok &= fabsf(out[i] - c[i]) <= fabsf(c[i]) * (1.0f / 256);
            CHECK(ok && out[5] == 1.0f, "bf16 data (rounded to nearest even): %g", (double)out[5]);
        }
        t = xd_st_find(st, "scalar");
        CHECK(t && t->n_dims == 0 && t->nbytes == 4, "scalar meta");
        if (t) {
            xd_st_to_f32(st, t, out);
            CHECK(out[0] == 3.25f, "scalar value");
        }
        t = xd_st_find(st, "empty");
        CHECK(t && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 4, "empty tensor");
        xd_st_close(st);
    }
    CHECK(leftovers(g_tmp) == 0, "leftovers after xd_st_write");

    /* bad input: nothing written, the old file stays */
    size_t before_len = 0;
    char *before = slurp(p, &before_len);
    st_write_tensor dup[] = {{"x", ST_F32, 1, {1}, a}, {"x", ST_F32, 1, {1}, b}};
    CHECK(xd_st_write(p, dup, 2, NULL) == -1 && strstr(xd_last_error(), "'x' is given twice") &&
              strstr(xd_last_error(), p), "duplicate: %s", xd_last_error());
    st_write_tensor bad[] = {{"", ST_F32, 1, {1}, a}};
    CHECK(xd_st_write(p, bad, 1, NULL) == -1 && strstr(xd_last_error(), "empty name"), "empty name: %s", xd_last_error());
    bad[0] = (st_write_tensor){"n", ST_F32, 1, {4}, NULL};
    CHECK(xd_st_write(p, bad, 1, NULL) == -1 && strstr(xd_last_error(), "no data"), "no data: %s", xd_last_error());
    bad[0] = (st_write_tensor){"n", ST_F32, 2, {4, -1}, a};
    CHECK(xd_st_write(p, bad, 1, NULL) == -1 && strstr(xd_last_error(), "negative"), "negative: %s", xd_last_error());
    bad[0] = (st_write_tensor){"n", ST_F32, 1, {1}, a};
    CHECK(xd_st_write(p, bad, 1, "{\"n\": 3}") == -1 && strstr(xd_last_error(), "__metadata__.n"),
          "metadata value: %s", xd_last_error());
    CHECK(xd_st_write(p, bad, 1, "[1]") == -1 && strstr(xd_last_error(), "__metadata__"), "metadata array: %s",
          xd_last_error());
    /* an injected ENOSPC while writing the data */
    xd_atomic_inject_fault(3, ENOSPC);
    CHECK(xd_st_write(p, ts, 5, NULL) == -1 && strstr(xd_last_error(), "No space left on device") &&
              strstr(xd_last_error(), p), "ENOSPC: %s", xd_last_error());
    xd_atomic_inject_fault(0, 0);
    size_t after_len = 0;
    char *after = slurp(p, &after_len);
    CHECK(before && after && before_len == after_len && !memcmp(before, after, before_len),
          "failed writes changed %s", p);
    free(before);
    free(after);
    CHECK(leftovers(g_tmp) == 0, "leftovers after failed xd_st_write");
    /* missing directory */
    const char *nodir = tmp_path("no/such/dir/x.safetensors");
    CHECK(xd_st_write(nodir, ts, 1, NULL) == -1 && strstr(xd_last_error(), nodir) &&
              strstr(xd_last_error(), "No such file or directory"), "missing dir: %s", xd_last_error());
}

/* ---- config.json ------------------------------------------------------------ */

static int cfg_same(const xd_config *a, const xd_config *b, const char *what) {
    int ok = 1;
#define F(f)                                                                                  \
    if (a->f != b->f) {                                                                       \
        fprintf(stderr, "  %s: %s differs: %g vs %g\n", what, #f, (double)a->f, (double)b->f); \
        ok = 0;                                                                               \
    }
    F(arch) F(n_layer) F(d_model) F(n_head) F(n_kv_head) F(head_dim) F(d_ff) F(vocab_size)
    F(max_ctx) F(rope_theta) F(norm_eps) F(tied_embeddings) F(qkv_bias) F(qk_norm) F(post_norms)
    F(rope_scale_factor) F(rope_low_freq_factor) F(rope_high_freq_factor) F(rope_orig_ctx)
#undef F
    return ok;
}

static const char *TINY[] = {"tiny-llama", "tiny-llama-sharded", "tiny-llama3rope", "tiny-olmo2",
                             "tiny-qwen2", "tiny-qwen2-bf16", "tiny-qwen3"};
#define N_TINY (int)(sizeof TINY / sizeof *TINY)

/* F64 tensors: written bit for bit, read back exactly by xd_st_to_f64 (also from F32),
 * rounded to nearest by xd_st_to_f32; placed first (the widest dtype) and 8-aligned. */
static void test_safetensors_f64(void) {
    double d[5] = {1.0 / 3.0, -2.5e-300, 1e300, 0.1, -0.0};
    float f[2] = {0.75f, -3.5f};
    st_write_tensor ts[] = {{"d", ST_F64, 1, {5}, d}, {"f", ST_F32, 1, {2}, f}};
    const char *p = tmp_path("f64.safetensors");
    CHECK(xd_st_write(p, ts, 2, NULL) == 0, "write F64: %s", xd_last_error());
    st_set *st = xd_st_open(p);
    CHECK(st != NULL, "open F64: %s", xd_last_error());
    if (!st) return;
    const st_tensor *t = xd_st_find(st, "d"), *u = xd_st_find(st, "f");
    double back[5], fb[2];
    float r[5];
    CHECK(t && t->dtype == ST_F64 && !strcmp(xd_st_dtype_name(t->dtype), "F64") &&
              ((const uint8_t *)t->data - st->maps[0]) % 8 == 0, "F64 meta and alignment");
    if (t && u) {
        CHECK(xd_st_to_f64(st, t, back) == 0 && memcmp(back, d, sizeof d) == 0, "F64 bits");
        CHECK(xd_st_to_f32(st, t, r) == 0 && r[0] == (float)d[0] && r[3] == 0.1f && r[1] == -0.0f,
              "F64 to F32 rounding");
        CHECK(xd_st_to_f64(st, u, fb) == 0 && fb[0] == 0.75 && fb[1] == -3.5, "F32 to F64");
    }
    xd_st_close(st);
    st_write_tensor bad = {"x", ST_F64, 1, {2}, NULL};
    CHECK(xd_st_write(tmp_path("bad64.safetensors"), &bad, 1, NULL) < 0 &&
              strstr(xd_last_error(), "no data"), "F64 without data: %s", xd_last_error());
}

static void test_config(void) {
    for (int i = 0; i < N_TINY; i++) {
        char src[1024];
        snprintf(src, sizeof src, "%s/tests/fixtures/%s/config.json", XD_SOURCE_DIR, TINY[i]);
        xd_config a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        const char *out = tmp_path("config.json");
        CHECK(xd_hf_config_load(src, &a) == 0, "%s: %s", src, xd_last_error());
        CHECK(xd_hf_config_save(&a, out) == 0, "save %s: %s", TINY[i], xd_last_error());
        CHECK(xd_hf_config_load(out, &b) == 0, "reload %s: %s", TINY[i], xd_last_error());
        CHECK(cfg_same(&a, &b, TINY[i]), "%s: config changed in the round trip", TINY[i]);
        char *text = slurp(out, NULL);
        CHECK(text && strstr(text, "\"rms_norm_eps\": 1e-0"), "%s: eps not in shortest form", TINY[i]);
        CHECK(text && strstr(text, "\"rope_theta\": 10000.0"), "%s: rope_theta form", TINY[i]);
        CHECK(text && (strstr(text, "\"attention_bias\"") != NULL) == (a.arch != XD_ARCH_QWEN2),
              "%s: attention_bias presence", TINY[i]);
        CHECK(text && (strstr(text, "\"rope_scaling\"") != NULL) == (a.rope_scale_factor > 0),
              "%s: rope_scaling presence", TINY[i]);
        free(text);
    }
    CHECK(leftovers(g_tmp) == 0, "leftovers after config saves");

    /* extra fields override and add */
    xd_config c;
    CHECK(xd_hf_config_load(FIXTURE("tiny-qwen3/config.json"), &c) == 0, "load: %s", xd_last_error());
    json_t *extra = json_pack("{s:s, s:[s], s:f, s:{s:i}}", "model_type", "xd_student", "architectures",
                              "XdStudentForCausalLM", "slstm_ratio", 0.25, "student", "n_mlstm", 3);
    const char *out = tmp_path("student.json");
    CHECK(xd_hf_config_save_ex(&c, extra, out) == 0, "save_ex: %s", xd_last_error());
    json_t *j = json_load_file(out, 0, NULL);
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "model_type")), "xd_student"), "model_type override");
    CHECK(j && !strcmp(json_string_value(json_array_get(json_object_get(j, "architectures"), 0)),
                       "XdStudentForCausalLM"), "architectures override");
    CHECK(j && json_real_value(json_object_get(j, "slstm_ratio")) == 0.25, "extra real");
    CHECK(j && json_integer_value(json_object_get(json_object_get(j, "student"), "n_mlstm")) == 3, "extra object");
    CHECK(j && json_integer_value(json_object_get(j, "hidden_size")) == c.d_model, "base fields kept");
    json_decref(j);
    json_t *notobj = json_integer(3);
    CHECK(xd_hf_config_save_ex(&c, notobj, out) == -1 && strstr(xd_last_error(), "extra"), "extra not an object");
    json_decref(notobj);
    json_decref(extra);

    /* what config.json cannot say */
    xd_config bad = c;
    bad.arch = XD_ARCH_LLAMA;
    CHECK(xd_hf_config_save(&bad, out) == -1 && strstr(xd_last_error(), "qk_norm") && strstr(xd_last_error(), out),
          "qk_norm on llama: %s", xd_last_error());
    bad = c;
    bad.qkv_bias = 1;
    CHECK(xd_hf_config_save(&bad, out) == -1 && strstr(xd_last_error(), "qkv_bias"), "bias on qwen3: %s", xd_last_error());
    bad = c;
    bad.n_kv_head = 3;
    CHECK(xd_hf_config_save(&bad, out) == -1 && strstr(xd_last_error(), "n_kv_head"), "kv heads: %s", xd_last_error());
    CHECK(xd_hf_config_save(&c, tmp_path("nodir/config.json")) == -1 &&
              strstr(xd_last_error(), "nodir/config.json") && strstr(xd_last_error(), "No such file"),
          "missing dir: %s", xd_last_error());

    /* shortest reals, Python's layout */
    json_t *r = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:[]}", "a", 1e-6, "b", 10000.0, "c", 0.1,
                          "d", 1.5e-5, "e", 1e16, "f", -0.0, "g");
    char *txt = xd_hf_json_pretty(r);
    CHECK(txt && !strcmp(txt, "{\n  \"a\": 1e-06,\n  \"b\": 10000.0,\n  \"c\": 0.1,\n  \"d\": 1.5e-05,\n"
                              "  \"e\": 1e+16,\n  \"f\": -0.0,\n  \"g\": []\n}\n"),
          "pretty JSON:\n%s", txt ? txt : "(null)");
    free(txt);
    json_decref(r);
}

/* ---- tokenizer.json ---------------------------------------------------------- */

/* The ids of t and u agree on every text of a JSONL fixture (lines whose
 * "pre" is want_pre; NULL: lines without one). Returns the lines compared. */
static int same_encodings(const xd_tokenizer *t, const xd_tokenizer *u, const char *jsonl,
                          const char *want_pre, const char *what) {
    FILE *f = fopen(jsonl, "r");
    CHECK(f != NULL, "cannot open %s", jsonl);
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, JSON_ALLOW_NUL, NULL);
        const char *pre = json_string_value(json_object_get(o, "pre"));
        const json_t *text = json_object_get(o, "text");
        if (!o || !json_is_string(text) || (want_pre ? !pre || strcmp(pre, want_pre) : pre != NULL)) {
            json_decref(o);
            continue;
        }
        int special = json_is_true(json_object_get(o, "special"));
        const json_t *want = json_object_get(o, "ids");
        int32_t *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        int rc = xd_tokenizer_encode(t, json_string_value(text), json_string_length(text), special, &x, &nx) |
                 xd_tokenizer_encode(u, json_string_value(text), json_string_length(text), special, &y, &ny);
        int ok = rc == 0 && nx == ny && (!nx || !memcmp(x, y, nx * sizeof *x)) && nx == json_array_size(want);
        for (size_t i = 0; ok && i < nx; i++) ok = x[i] == json_integer_value(json_array_get(want, i));
        if (!ok && bad++ < 3) fprintf(stderr, "  %s: line %d differs\n", what, n + 1);
        free(x);
        free(y);
        json_decref(o);
        n++;
    }
    free(line);
    fclose(f);
    CHECK(bad == 0, "%s: %d of %d strings encode differently after the round trip", what, bad, n);
    return n;
}

/* Saves t under name/, reloads it and compares. Returns the reloaded tokenizer. */
static xd_tokenizer *tok_round_trip(const xd_tokenizer *t, const char *name) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(xd_tokenizer_save_json(t, path) == 0, "%s: save: %s", name, xd_last_error());
    xd_tokenizer *u = xd_tokenizer_load_json(path);
    CHECK(u != NULL, "%s: reload: %s", name, xd_last_error());
    if (!u) return NULL;
    CHECK(xd_tokenizer_n_tokens(u) == xd_tokenizer_n_tokens(t), "%s: n_tokens %d vs %d", name,
          xd_tokenizer_n_tokens(u), xd_tokenizer_n_tokens(t));
    CHECK(xd_tokenizer_bos(u) == xd_tokenizer_bos(t) && xd_tokenizer_eos(u) == xd_tokenizer_eos(t),
          "%s: bos/eos %d/%d vs %d/%d", name, xd_tokenizer_bos(u), xd_tokenizer_eos(u), xd_tokenizer_bos(t),
          xd_tokenizer_eos(t));
    CHECK(leftovers(dir) == 0, "%s: leftovers", name);
    return u;
}

static void test_tokenizer_json(void) {
    /* the committed HF tokenizer.json */
    xd_tokenizer *t = xd_tokenizer_load_json(FIXTURE("tiny_tokenizer/tokenizer.json"));
    CHECK(t != NULL, "tiny tokenizer: %s", xd_last_error());
    if (t) {
        xd_tokenizer *u = tok_round_trip(t, "tok_tiny");
        if (u) {
            CHECK(xd_tokenizer_hash(u) == xd_tokenizer_hash(t), "tiny tokenizer: hash changed");
            CHECK(!strcmp(xd_tokenizer_pre(u), xd_tokenizer_pre(t)), "tiny tokenizer: pre %s vs %s",
                  xd_tokenizer_pre(u), xd_tokenizer_pre(t));
            int n = same_encodings(t, u, FIXTURE("tiny_tokenizer/expected.jsonl"), NULL, "tiny tokenizer");
            CHECK(n > 10, "tiny tokenizer: only %d fixture strings", n);
        }
        xd_tokenizer_free(u);
        xd_tokenizer_free(t);
    }

    /* the tiny GGUF's tokenizer */
    t = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    CHECK(t != NULL, "tiny-llama.gguf tokenizer: %s", xd_last_error());
    if (t) {
        xd_tokenizer *u = tok_round_trip(t, "tok_tiny_gguf");
        CHECK(u && xd_tokenizer_hash(u) == xd_tokenizer_hash(t), "tiny-llama.gguf tokenizer: hash changed");
        xd_tokenizer_free(u);
        xd_tokenizer_free(t);
    }

    /* SmolLM2 and its pre-tokenizer variants */
    const char *tp = teacher_path();
    if (access(tp, R_OK)) {
        printf("SKIP SmolLM2 tokenizer round trip: %s not found\n", tp);
        return;
    }
    gguf_file *g = xd_gguf_open(tp);
    CHECK(g != NULL, "%s: %s", tp, xd_last_error());
    if (!g) return;
    const char *jsonl = FIXTURE("tokenizer_smollm2.jsonl");
    t = xd_tokenizer_from_gguf(g);
    CHECK(t != NULL, "SmolLM2 tokenizer: %s", xd_last_error());
    if (t) {
        xd_tokenizer *u = tok_round_trip(t, "tok_smollm2");
        if (u) {
            CHECK(xd_tokenizer_hash(u) == xd_tokenizer_hash(t), "SmolLM2: hash %016llx vs %016llx",
                  (unsigned long long)xd_tokenizer_hash(u), (unsigned long long)xd_tokenizer_hash(t));
            CHECK(!strcmp(xd_tokenizer_pre(u), "smollm"), "SmolLM2: pre %s", xd_tokenizer_pre(u));
            int n = same_encodings(t, u, jsonl, NULL, "SmolLM2");
            CHECK(n >= 300, "SmolLM2: only %d fixture strings", n);
            printf("SmolLM2 tokenizer.json round trip: hash %016llx, %d strings identical\n",
                   (unsigned long long)xd_tokenizer_hash(u), n);
        }
        xd_tokenizer_free(u);
        xd_tokenizer_free(t);
    }
    /* variants: aliases come back under the name they behave as */
    static const char *const VAR[][2] = {{"gpt-2", "gpt2"}, {"llama-bpe", "llama3"}, {"dbrx", "dbrx"}, {"qwen2", "qwen2"}};
    for (int v = 0; v < 4; v++) {
        xd_tokenizer *a = xd_tokenizer_from_gguf_pre(g, VAR[v][0]), *canon = xd_tokenizer_from_gguf_pre(g, VAR[v][1]);
        CHECK(a && canon, "pre %s: %s", VAR[v][0], xd_last_error());
        char name[64];
        snprintf(name, sizeof name, "tok_%s", VAR[v][1]);
        xd_tokenizer *u = a ? tok_round_trip(a, name) : NULL;
        if (u && canon) {
            CHECK(!strcmp(xd_tokenizer_pre(u), VAR[v][1]), "pre %s came back as %s", VAR[v][0], xd_tokenizer_pre(u));
            CHECK(xd_tokenizer_hash(u) == xd_tokenizer_hash(canon), "pre %s: hash differs from '%s'", VAR[v][0],
                  VAR[v][1]);
            int n = same_encodings(a, u, jsonl, VAR[v][0], VAR[v][0]);
            CHECK(n >= 100, "pre %s: only %d fixture strings", VAR[v][0], n);
        }
        xd_tokenizer_free(u);
        xd_tokenizer_free(a);
        xd_tokenizer_free(canon);
    }
    xd_tokenizer *d = xd_tokenizer_from_gguf_pre(g, "default");
    if (d) {
        const char *p = tmp_path("tok_default.json");
        CHECK(xd_tokenizer_save_json(d, p) == -1 && strstr(xd_last_error(), "'default'") && strstr(xd_last_error(), p),
              "pre 'default' should be refused: %s", xd_last_error());
        CHECK(!exists(p), "refused tokenizer left a file");
    }
    xd_tokenizer_free(d);
    xd_gguf_close(g);
}

/* ---- models ------------------------------------------------------------------- */

/* Logits of a few tokens. */
static float *logits_of(const xd_model *m, int *n_out) {
    int32_t ids[] = {1, 7, 42, 3, 99, 5};
    int n = 6, V = xd_model_config(m)->vocab_size;
    for (int i = 0; i < n; i++) ids[i] %= V;
    float *out = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(m, 16);
    if (!out || !kv || xd_forward(m, kv, ids, n, out, 1)) {
        free(out);
        out = NULL;
    }
    xd_kv_free(kv);
    *n_out = n * V;
    return out;
}

/* Loads src, saves it to dst, reloads, compares everything. */
static void model_round_trip(const char *src, const char *dst, const char *what) {
    xd_model *a = xd_model_load(src);
    CHECK(a != NULL, "%s: load: %s", what, xd_last_error());
    if (!a) return;
    CHECK(xd_model_save(a, dst) == 0, "%s: save: %s", what, xd_last_error());
    xd_model *b = xd_model_load(dst);
    CHECK(b != NULL, "%s: reload: %s", what, xd_last_error());
    if (b) {
        CHECK(cfg_same(&a->cfg, &b->cfg, what), "%s: config differs", what);
        CHECK(a->arena_floats == b->arena_floats &&
                  !memcmp(a->arena, b->arena, a->arena_floats * sizeof(float)),
              "%s: weights differ (%zu vs %zu floats)", what, a->arena_floats, b->arena_floats);
        CHECK(!a->tok == !b->tok, "%s: tokenizer presence", what);
        if (a->tok && b->tok)
            CHECK(xd_tokenizer_hash(a->tok) == xd_tokenizer_hash(b->tok), "%s: tokenizer hash", what);
        int na = 0, nb = 0;
        float *la = logits_of(a, &na), *lb = logits_of(b, &nb);
        CHECK(la && lb && na == nb && !memcmp(la, lb, (size_t)na * sizeof(float)), "%s: logits differ", what);
        free(la);
        free(lb);
        char p[1200];
        snprintf(p, sizeof p, "%s/tokenizer.json", dst);
        CHECK(exists(p) == (a->tok != NULL), "%s: tokenizer.json presence", what);
    }
    xd_model_free(a);
    xd_model_free(b);
}

static void test_models(void) {
    char src[1024];
    for (int i = 0; i < N_TINY; i++) {
        snprintf(src, sizeof src, "%s/tests/fixtures/%s", XD_SOURCE_DIR, TINY[i]);
        model_round_trip(src, tmp_path("model"), TINY[i]);
    }
    model_round_trip(FIXTURE("tiny-llama.gguf"), tmp_path("model_gguf"), "tiny-llama.gguf");
    model_round_trip(FIXTURE("tiny-qwen2.gguf"), tmp_path("model_gguf2"), "tiny-qwen2.gguf");
    CHECK(leftovers(g_tmp) == 0, "leftovers after model saves");

    const char *tp = teacher_path();
    if (access(tp, R_OK)) {
        printf("SKIP SmolLM2 save/reload: %s not found\n", tp);
        return;
    }
    model_round_trip(tp, tmp_path("smollm2"), "SmolLM2");
    xd_rmtree(tmp_path("smollm2"));
    printf("SmolLM2 GGUF -> HF dir -> reload: identical weights and logits\n");
}

/* ---- atomicity --------------------------------------------------------------------- */

/* arch of the model saved in dir, or -1 if it does not load. */
static int saved_arch(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    xd_config c;
    if (xd_hf_config_load(p, &c)) return -1;
    xd_model *m = xd_model_load(dir);
    if (!m) return -1;
    xd_model_free(m);
    return (int)c.arch;
}

static void test_atomic(void) {
    xd_model *qwen3 = xd_model_load(FIXTURE("tiny-qwen3"));
    xd_model *olmo = xd_model_load(FIXTURE("tiny-olmo2"));
    CHECK(qwen3 && olmo, "load: %s", xd_last_error());
    if (!qwen3 || !olmo) goto done;
    const char *D = tmp_path("ckpt");
    char marker[1200];
    snprintf(marker, sizeof marker, "%s/marker", D);

    /* saving over a directory replaces it whole */
    CHECK(xd_model_save(olmo, D) == 0, "save: %s", xd_last_error());
    spit(marker, "old");
    char withslash[1200];
    snprintf(withslash, sizeof withslash, "%s/", D);
    CHECK(xd_model_save(qwen3, withslash) == 0, "save over: %s", xd_last_error());
    CHECK(saved_arch(D) == XD_ARCH_QWEN3, "not replaced");
    CHECK(!exists(marker), "old directory's files survived the replacement");
    CHECK(leftovers(g_tmp) == 0, "leftovers after replacing");

    /* a missing parent: error naming it, nothing created */
    const char *deep = tmp_path("missing/parent/ckpt");
    CHECK(xd_model_save(qwen3, deep) == -1 && strstr(xd_last_error(), deep) &&
              strstr(xd_last_error(), "No such file or directory"), "missing parent: %s", xd_last_error());
    CHECK(!exists(tmp_path("missing")), "missing parent was created");

    /* a file where the directory should be is not clobbered */
    const char *file = tmp_path("a_file");
    spit(file, "x");
    CHECK(xd_model_save(qwen3, file) == -1 && strstr(xd_last_error(), "not a directory"), "file: %s",
          xd_last_error());
    CHECK(leftovers(g_tmp) == 0, "leftovers after refusals");

    /* every failure point of a save over an existing model: the old model
     * stays, or (only after the switch) the new one is complete; never a
     * mix, never leftovers. EINVAL at the exchange takes the two-rename
     * fallback, which must succeed. */
    xd_atomic_inject_fault(0, 0);
    CHECK(xd_model_save(olmo, D) == 0, "save: %s", xd_last_error());
    int n_ops = xd_atomic_inject_fault(0, 0);
    CHECK(n_ops >= 8, "only %d file-system operations counted in a save", n_ops);
    const int errs[] = {EIO, ENOSPC, EINVAL};
    int fallback_ok = 0, failures = 0;
    for (int e = 0; e < 3; e++)
        for (int k = 1; k <= n_ops; k++) {
            xd_atomic_inject_fault(0, 0);
            if (xd_model_save(olmo, D)) { CHECK(0, "reset save: %s", xd_last_error()); continue; }
            spit(marker, "old");
            xd_atomic_inject_fault(k, errs[e]);
            int rc = xd_model_save(qwen3, D);
            xd_atomic_inject_fault(0, 0);
            int arch = saved_arch(D);
            if (rc == 0) {
                CHECK(arch == XD_ARCH_QWEN3 && !exists(marker), "err %d op %d: success but not replaced", errs[e], k);
                if (errs[e] == EINVAL) fallback_ok++;
            } else {
                failures++;
                int after_switch = strstr(xd_last_error(), "may not be durable") != NULL;
                CHECK(strstr(xd_last_error(), D) && strstr(xd_last_error(), strerror(errs[e])),
                      "err %d op %d: unclear error: %s", errs[e], k, xd_last_error());
                if (after_switch) CHECK(arch == XD_ARCH_QWEN3 && !exists(marker), "op %d: switched but incomplete", k);
                else CHECK(arch == XD_ARCH_OLMO2 && exists(marker), "err %d op %d: old model damaged (%s)", errs[e], k,
                           xd_last_error());
            }
            CHECK(leftovers(g_tmp) == 0, "err %d op %d: leftovers", errs[e], k);
        }
    CHECK(failures >= 2 * n_ops - 2, "only %d injected failures were reported", failures);
    CHECK(fallback_ok >= 1, "the no-exchange fallback never completed a save");
    printf("atomic save: %d failure points x 3 errnos checked, %d fallback commits\n", n_ops, fallback_ok);

    /* a real mid-write failure: a file size limit (EFBIG) */
    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 32 << 10;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    xd_model_save(olmo, D);
    spit(marker, "old");
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    int rc = xd_model_save(qwen3, D);
    setrlimit(RLIMIT_FSIZE, &old_lim);
    signal(SIGXFSZ, old_sig);
    CHECK(rc == -1 && strstr(xd_last_error(), "File too large") && strstr(xd_last_error(), "model.safetensors"),
          "EFBIG: %s", xd_last_error());
    CHECK(saved_arch(D) == XD_ARCH_OLMO2 && exists(marker), "old model damaged by EFBIG");
    CHECK(leftovers(g_tmp) == 0, "leftovers after EFBIG");

    /* permissions: a read-only parent (root may write anywhere, so as root
     * the save runs in a child that has become nobody) */
    const char *ro = tmp_path("ro");
    mkdir(ro, 0755);
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/ckpt", ro);
    chmod(ro, 0555);
    chmod(g_tmp, 0755);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) || setuid(65534))) _exit(2);
        int r = xd_model_save(qwen3, sub);
        int good = r == -1 && strstr(xd_last_error(), "Permission denied") && strstr(xd_last_error(), sub);
        fprintf(good ? stdout : stderr, "EACCES: %s\n", xd_last_error());
        fflush(stdout);
        _exit(good ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2) printf("SKIP EACCES check: cannot drop root\n");
    else CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "EACCES: read-only parent not reported");
    CHECK(!exists(sub), "a save into a read-only directory created it");
    chmod(ro, 0755);
    chmod(g_tmp, 0700);

    /* recovery from a crash between the fallback's two renames */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char old_name[1200], tmp_name[1200];
    snprintf(old_name, sizeof old_name, "%s.old.%ld", D, (long)child);
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp.%ld", D, (long)child);
    CHECK(rename(D, old_name) == 0, "simulate crash");
    mkdir(tmp_name, 0755);
    CHECK(xd_adir_recover(D) == 2, "recover: %s", xd_last_error());
    CHECK(saved_arch(D) == XD_ARCH_OLMO2 && !exists(old_name) && !exists(tmp_name), "recover did not restore");
    CHECK(xd_adir_recover(D) == 0, "recover is idempotent");
    CHECK(leftovers(g_tmp) == 0, "leftovers after recover");

    /* single files: a failed rewrite keeps the old content */
    const char *f = tmp_path("note.txt");
    CHECK(xd_write_file_atomic(f, "one", 3) == 0, "write: %s", xd_last_error());
    xd_atomic_inject_fault(3, ENOSPC);
    CHECK(xd_write_file_atomic(f, "two", 3) == -1 && strstr(xd_last_error(), "No space left"), "fault: %s",
          xd_last_error());
    xd_atomic_inject_fault(0, 0);
    char *s = slurp(f, NULL);
    CHECK(s && !strcmp(s, "one"), "old content lost: %s", s ? s : "(none)");
    free(s);
    CHECK(leftovers(g_tmp) == 0, "leftovers after file fault");
done:
    xd_model_free(qwen3);
    xd_model_free(olmo);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/xd_writers_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror(g_tmp);
        return 1;
    }
    test_safetensors();
    test_safetensors_f64();
    test_config();
    test_tokenizer_json();
    test_models();
    test_atomic();
    if (xd_rmtree(g_tmp)) fprintf(stderr, "%s\n", xd_last_error());
    return test_summary("test_writers");
}
