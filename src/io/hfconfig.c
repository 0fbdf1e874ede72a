/* HF config.json → xd_config. Each architecture's defaults are those of its
 * transformers configuration class, so a field left out means what it means
 * to HF. Features our forward pass does not implement (biases on the output
 * or MLP projections, sliding windows, rope types other than default and
 * llama3, partial rotary) are refused with an error rather than ignored. */
#include "hfconfig.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"

#define MAX_SIZE (1 << 24) /* widths, heads, layers, vocabulary */
#define MAX_CTX (1 << 30)

typedef struct {
    const char *hf_name;    /* architectures[0] */
    const char *model_type; /* model_type, if present, must agree */
    xd_arch arch;
    int default_head_dim;   /* 0: hidden_size / num_attention_heads */
    int default_max_ctx;
    float default_eps;
} arch_info;

static const arch_info archs[] = {
    {"LlamaForCausalLM", "llama", XD_ARCH_LLAMA, 0, 2048, 1e-6f},
    {"Qwen2ForCausalLM", "qwen2", XD_ARCH_QWEN2, 0, 32768, 1e-6f},
    {"Qwen3ForCausalLM", "qwen3", XD_ARCH_QWEN3, 128, 32768, 1e-6f},
    {"Olmo2ForCausalLM", "olmo2", XD_ARCH_OLMO2, 0, 2048, 1e-5f},
};
#define N_ARCHS (int)(sizeof archs / sizeof *archs)
#define ARCH_LIST "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Olmo2ForCausalLM"

/* Where fields are read from: the file, a dotted prefix for nested objects
 * ("rope_parameters."), and the object. */
typedef struct {
    const char *path, *prefix;
    const json_t *obj;
} src;

/* A field that is absent or null counts as not given. */
static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An integer in [lo, hi]; `def` when absent unless required. */
static int get_int(const src *s, const char *key, int required, int def, int lo, int hi,
                   int *out) {
    const json_t *v = field(s->obj, key);
    if (!v) {
        if (required)
            return xd_err("%s: %s%s: missing (expected an integer)", s->path, s->prefix, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return xd_err("%s: %s%s: expected an integer", s->path, s->prefix, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return xd_err("%s: %s%s: %lld is out of range (expected %d .. %d)", s->path, s->prefix,
                      key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

/* A finite number > 0 (integers accepted); `def` when absent unless required. */
static int get_pos(const src *s, const char *key, int required, double def, double *out) {
    const json_t *v = field(s->obj, key);
    if (!v) {
        if (required)
            return xd_err("%s: %s%s: missing (expected a number)", s->path, s->prefix, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return xd_err("%s: %s%s: expected a number", s->path, s->prefix, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0 || x > 1e30)
        return xd_err("%s: %s%s: %g is impossible (expected a positive number)", s->path,
                      s->prefix, key, x);
    *out = x;
    return 0;
}

static int get_bool(const src *s, const char *key, int def, int *out) {
    const json_t *v = field(s->obj, key);
    if (!v) { *out = def; return 0; }
    if (!json_is_boolean(v))
        return xd_err("%s: %s%s: expected true or false", s->path, s->prefix, key);
    *out = json_is_true(v);
    return 0;
}

/* A student (docs/design.md, "File formats": its own model_type and fields) names the teacher
 * architecture it was converted from in "base_architecture"; everything
 * else about the transformer is read as for that architecture. */
#define STUDENT_TYPE "xdistill_hybrid"
#define STUDENT_ARCH "XdistillHybridForCausalLM"

static int is_student(const json_t *root) {
    const json_t *a = field(root, "architectures"), *mt = field(root, "model_type");
    if (json_is_string(mt) && !strcmp(json_string_value(mt), STUDENT_TYPE)) return 1;
    return json_is_array(a) && json_is_string(json_array_get(a, 0)) &&
           !strcmp(json_string_value(json_array_get(a, 0)), STUDENT_ARCH);
}

static int find_arch(const char *path, const json_t *root, const arch_info **out) {
    if (is_student(root)) {
        const json_t *b = field(root, "base_architecture");
        if (!b) return xd_err("%s: base_architecture: missing (a student config names its teacher's "
                              "architecture, one of " ARCH_LIST ")", path);
        if (!json_is_string(b))
            return xd_err("%s: base_architecture: expected a string (one of " ARCH_LIST ")", path);
        for (int i = 0; i < N_ARCHS; i++)
            if (!strcmp(json_string_value(b), archs[i].hf_name)) *out = &archs[i];
        if (!*out)
            return xd_err("%s: base_architecture: '%s' is not supported (expected one of " ARCH_LIST
                          ")", path, json_string_value(b));
        return 0;
    }
    const json_t *a = field(root, "architectures");
    const json_t *mt = field(root, "model_type");
    if (mt && !json_is_string(mt)) return xd_err("%s: model_type: expected a string", path);
    const char *name = NULL;
    if (a) {
        if (!json_is_array(a) || !json_array_size(a) || !json_is_string(json_array_get(a, 0)))
            return xd_err("%s: architectures: expected a non-empty array of strings", path);
        name = json_string_value(json_array_get(a, 0));
        for (int i = 0; i < N_ARCHS; i++)
            if (!strcmp(name, archs[i].hf_name)) *out = &archs[i];
    } else {
        if (!mt) return xd_err("%s: architectures: missing (expected one of " ARCH_LIST ")", path);
        name = json_string_value(mt);
        for (int i = 0; i < N_ARCHS; i++)
            if (!strcmp(name, archs[i].model_type)) *out = &archs[i];
    }
    if (!*out)
        return xd_err("%s: %s: '%s' is not supported (expected one of " ARCH_LIST ")", path,
                      a ? "architectures" : "model_type", name);
    if (mt && strcmp(json_string_value(mt), (*out)->model_type))
        return xd_err("%s: model_type: '%s' does not match architecture %s (expected '%s')", path,
                      json_string_value(mt), (*out)->hf_name, (*out)->model_type);
    return 0;
}

/* Fields that would change the computation in ways we do not implement. */
static int refuse_unsupported(const src *s, const arch_info *ai) {
    const json_t *act = field(s->obj, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return xd_err("%s: hidden_act: only \"silu\" is supported", s->path);
    int b = 0;
    if (ai->arch != XD_ARCH_QWEN2) { /* Qwen2's q/k/v bias is built in, not configured */
        if (get_bool(s, "attention_bias", 0, &b)) return -1;
        if (b)
            return xd_err("%s: attention_bias: true is not supported (it also puts a bias on "
                          "the output projection)", s->path);
    }
    if (get_bool(s, "mlp_bias", 0, &b)) return -1;
    if (b) return xd_err("%s: mlp_bias: true is not supported", s->path);
    if (get_bool(s, "use_sliding_window", 0, &b)) return -1;
    if (b) return xd_err("%s: use_sliding_window: true is not supported", s->path);
    const json_t *lt = field(s->obj, "layer_types");
    if (lt) {
        if (!json_is_array(lt)) return xd_err("%s: layer_types: expected an array", s->path);
        for (size_t i = 0; i < json_array_size(lt); i++) {
            const json_t *e = json_array_get(lt, i);
            if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention"))
                return xd_err("%s: layer_types[%zu]: only \"full_attention\" is supported",
                              s->path, i);
        }
    }
    return 0;
}

/* rope_theta and Llama-3 scaling. Older configs keep rope_theta at the top
 * level and the scaling in "rope_scaling"; transformers 5 writes one
 * "rope_parameters" object holding both. */
static int parse_rope(const src *top, xd_config *c) {
    const char *key = "rope_parameters";
    const json_t *rp = field(top->obj, key);
    if (!rp) rp = field(top->obj, key = "rope_scaling");
    if (rp && !json_is_object(rp)) return xd_err("%s: %s: expected an object", top->path, key);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", key);
    src r = {top->path, prefix, rp};

    double theta = 0, prf = 1;
    if (get_pos(top, "rope_theta", 0, 10000.0, &theta) ||
        get_pos(top, "partial_rotary_factor", 0, 1, &prf))
        return -1;
    if (rp && (get_pos(&r, "rope_theta", 0, theta, &theta) ||
               get_pos(&r, "partial_rotary_factor", 0, prf, &prf)))
        return -1;
    c->rope_theta = (float)theta;
    if (prf != 1)
        return xd_err("%s: partial_rotary_factor: %g is not supported (expected 1)", top->path,
                      prf);
    if (!rp) return 0;

    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)rp, k, v)
        if (json_is_object(v))
            return xd_err("%s: %s%s: rope parameters per layer type are not supported",
                          top->path, prefix, k);
    const json_t *ty = field(rp, "rope_type");
    if (!ty) ty = field(rp, "type");
    if (ty && !json_is_string(ty))
        return xd_err("%s: %srope_type: expected a string", top->path, prefix);
    const char *type = ty ? json_string_value(ty) : "default";
    if (!strcmp(type, "default")) return 0;
    if (strcmp(type, "llama3"))
        return xd_err("%s: %srope_type: '%s' is not supported (expected \"default\" or "
                      "\"llama3\")", top->path, prefix, type);

    double factor = 0, lo = 0, hi = 0;
    int orig = 0;
    if (get_int(top, "original_max_position_embeddings", 0, c->max_ctx, 1, MAX_CTX, &orig) ||
        get_int(&r, "original_max_position_embeddings", 0, orig, 1, MAX_CTX, &orig) ||
        get_pos(&r, "factor", 1, 0, &factor) || get_pos(&r, "low_freq_factor", 1, 0, &lo) ||
        get_pos(&r, "high_freq_factor", 1, 0, &hi))
        return -1;
    if (hi <= lo)
        return xd_err("%s: %shigh_freq_factor: %g must exceed low_freq_factor %g", top->path,
                      prefix, hi, lo);
    c->rope_scale_factor = (float)factor;
    c->rope_low_freq_factor = (float)lo;
    c->rope_high_freq_factor = (float)hi;
    c->rope_orig_ctx = orig;
    return 0;
}

static int parse_sizes(const src *s, const arch_info *ai, xd_config *c) {
    if (get_int(s, "hidden_size", 1, 0, 1, MAX_SIZE, &c->d_model) ||
        get_int(s, "num_hidden_layers", 1, 0, 1, MAX_SIZE, &c->n_layer) ||
        get_int(s, "num_attention_heads", 1, 0, 1, MAX_SIZE, &c->n_head) ||
        get_int(s, "num_key_value_heads", 0, c->n_head, 1, MAX_SIZE, &c->n_kv_head) ||
        get_int(s, "intermediate_size", 1, 0, 1, MAX_SIZE, &c->d_ff) ||
        get_int(s, "vocab_size", 1, 0, 1, MAX_SIZE, &c->vocab_size) ||
        get_int(s, "max_position_embeddings", 0, ai->default_max_ctx, 1, MAX_CTX, &c->max_ctx))
        return -1;
    if (c->n_head % c->n_kv_head)
        return xd_err("%s: num_key_value_heads: %d does not divide num_attention_heads %d",
                      s->path, c->n_kv_head, c->n_head);
    int def_hd = ai->default_head_dim;
    if (!def_hd) {
        if (!field(s->obj, "head_dim") && c->d_model % c->n_head)
            return xd_err("%s: num_attention_heads: %d does not divide hidden_size %d", s->path,
                          c->n_head, c->d_model);
        def_hd = c->d_model / c->n_head;
    }
    if (get_int(s, "head_dim", 0, def_hd, 1, MAX_SIZE, &c->head_dim)) return -1;
    if (c->head_dim % 2)
        return xd_err("%s: head_dim: %d is odd (rotary embeddings need an even head_dim)",
                      s->path, c->head_dim);
    if ((long long)c->n_head * c->head_dim > MAX_SIZE)
        return xd_err("%s: num_attention_heads x head_dim = %lld is absurd", s->path,
                      (long long)c->n_head * c->head_dim);
    double eps = 0;
    if (get_pos(s, "rms_norm_eps", 0, ai->default_eps, &eps)) return -1;
    if (eps >= 1)
        return xd_err("%s: rms_norm_eps: %g is impossible (expected < 1)", s->path, eps);
    c->norm_eps = (float)eps;
    return 0;
}

/* An optional "0x" + 16 hex digits field (teacher_hash, base_hash). */
static int get_hash(const src *s, const char *name, uint64_t *out) {
    const json_t *th = field(s->obj, name);
    if (!th) return 0;
    const char *hs = json_is_string(th) ? json_string_value(th) : "";
    char *end = NULL;
    unsigned long long v = strtoull(hs, &end, 16);
    if (strncmp(hs, "0x", 2) || !end || *end || strlen(hs) != 18)
        return xd_err("%s: %s: expected \"0x\" and 16 hex digits", s->path, name);
    *out = (uint64_t)v;
    return 0;
}

/* "global_heads": [[layer, head], ...] (docs/design.md, "Global heads"); absent, null or []:
 * none. Any order (kept sorted), each head once, inside the model. */
static int parse_global_heads(const src *s, xd_config *c) {
    const json_t *g = field(s->obj, "global_heads");
    if (!g) return 0;
    if (!json_is_array(g))
        return xd_err("%s: global_heads: expected an array of [layer, head] pairs", s->path);
    size_t n = json_array_size(g);
    if (n > XD_MAX_GLOBAL_HEADS)
        return xd_err("%s: global_heads: %zu heads (expected at most %d)", s->path, n,
                      XD_MAX_GLOBAL_HEADS);
    if ((long long)n > (long long)c->n_layer * c->n_head)
        return xd_err("%s: global_heads: %zu heads, more than the model has (expected at most "
                      "%d layers x %d heads)", s->path, n, c->n_layer, c->n_head);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(g, i);
        if (!json_is_array(e) || json_array_size(e) != 2 ||
            !json_is_integer(json_array_get(e, 0)) || !json_is_integer(json_array_get(e, 1)))
            return xd_err("%s: global_heads[%zu]: expected a pair [layer, head] of integers",
                          s->path, i);
        json_int_t l = json_integer_value(json_array_get(e, 0));
        json_int_t h = json_integer_value(json_array_get(e, 1));
        if (l < 0 || l >= c->n_layer)
            return xd_err("%s: global_heads[%zu]: layer %lld is out of range (expected 0 .. %d: "
                          "num_hidden_layers is %d)", s->path, i, (long long)l, c->n_layer - 1,
                          c->n_layer);
        if (h < 0 || h >= c->n_head)
            return xd_err("%s: global_heads[%zu]: head %lld is out of range (expected 0 .. %d: "
                          "num_attention_heads is %d)", s->path, i, (long long)h,
                          c->n_head - 1, c->n_head);
        c->global_heads[i] = (xd_head_ref){(int16_t)l, (int16_t)h};
    }
    xd_head_refs_sort(c->global_heads, (int)n);
    for (size_t i = 1; i < n; i++)
        if (c->global_heads[i].layer == c->global_heads[i - 1].layer &&
            c->global_heads[i].head == c->global_heads[i - 1].head)
            return xd_err("%s: global_heads: [%d, %d] is given twice (expected each head once)",
                          s->path, c->global_heads[i].layer, c->global_heads[i].head);
    c->n_global_heads = (int)n;
    return 0;
}

/* "global_kv_dtype": the decoding state's type for the global heads' keys/values;
 * absent or null: float32 (students written before it existed). */
static int parse_global_kv_dtype(const src *s, xd_config *c) {
    const json_t *dt = field(s->obj, "global_kv_dtype");
    c->global_kv_dtype = XD_KV_F32;
    if (!dt || json_is_null(dt)) return 0;
    const char *v = json_is_string(dt) ? json_string_value(dt) : "";
    if (xd_kv_dtype_parse(v, &c->global_kv_dtype))
        return xd_err("%s: global_kv_dtype: expected \"float32\", \"bfloat16\", \"int8\", "
                      "\"int4\" or \"k8v4\"", s->path);
    return 0;
}

/* The student's own fields (docs/design.md, "File formats"): window, sinks, chunk_size and
 * feature_map are required; the mLSTM scale and ε and the gate soft-cap
 * have defaults. */
static int parse_student(const src *s, xd_config *c) {
    const json_t *fm = field(s->obj, "feature_map");
    if (!fm) return xd_err("%s: feature_map: missing (expected \"hedgehog\")", s->path);
    if (!json_is_string(fm) || strcmp(json_string_value(fm), "hedgehog"))
        return xd_err("%s: feature_map: expected \"hedgehog\"", s->path);
    double scale = 0, eps = 0, cap = 0;
    const json_t *capv = field(s->obj, "gate_softcap");
    if (get_int(s, "window", 1, 0, 1, MAX_CTX, &c->window) ||
        get_int(s, "sinks", 1, 0, 0, MAX_CTX, &c->sinks) ||
        get_int(s, "chunk_size", 1, 0, 1, 4096, &c->chunk) ||
        get_pos(s, "mlstm_scale", 0, 1.0 / sqrt(2.0 * c->head_dim), &scale) ||
        get_pos(s, "mlstm_eps", 0, 1e-6, &eps))
        return -1;
    if (capv && json_is_number(capv) && json_number_value(capv) == 0) cap = 0;
    else if (get_pos(s, "gate_softcap", 0, 15.0, &cap)) return -1;
    if (eps >= 1) return xd_err("%s: mlstm_eps: %g is impossible (expected < 1)", s->path, eps);
    if (get_hash(s, "teacher_hash", &c->teacher_hash) || get_hash(s, "base_hash", &c->base_hash) ||
        parse_global_heads(s, c) || parse_global_kv_dtype(s, c))
        return -1;
    const json_t *ex = field(s->obj, "exact_in_window"); /* absent: false (older students) */
    if (ex && !json_is_boolean(ex) && !json_is_null(ex))
        return xd_err("%s: exact_in_window: expected true or false", s->path);
    c->exact_in_window = ex && json_is_true(ex);
    const json_t *mr = field(s->obj, "memory_rule"); /* absent: mlstm (older students) */
    c->memory_rule = XD_MEMORY_MLSTM;
    if (mr && !json_is_null(mr)) {
        const char *v = json_is_string(mr) ? json_string_value(mr) : "";
        if (!strcmp(v, "gated_delta")) c->memory_rule = XD_MEMORY_DELTA;
        else if (strcmp(v, "mlstm"))
            return xd_err("%s: memory_rule: expected \"mlstm\" or \"gated_delta\"", s->path);
    }
    if (get_int(s, "sparse_cache", 0, 0, 0, 1 << 20, &c->sparse_cache)) return -1;
    c->student = 1;
    c->mlstm_scale = (float)scale;
    c->mlstm_eps = (float)eps;
    c->gate_softcap = (float)cap;
    return 0;
}

int xd_hf_config_load(const char *path, xd_config *cfg) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file)
            return xd_err("%s: cannot open: %s", path, jerr.text);
        return xd_err("%s: malformed JSON at line %d, column %d: %s", path, jerr.line,
                      jerr.column, jerr.text);
    }
    int rc = -1;
    xd_config c;
    memset(&c, 0, sizeof c);
    const arch_info *ai = NULL;
    src s = {path, "", root};
    if (!json_is_object(root)) {
        xd_err("%s: expected a JSON object at the top level", path);
        goto done;
    }
    if (find_arch(path, root, &ai) || refuse_unsupported(&s, ai) || parse_sizes(&s, ai, &c) ||
        parse_rope(&s, &c) || get_bool(&s, "tie_word_embeddings", 0, &c.tied_embeddings))
        goto done;
    c.arch = ai->arch;
    c.qkv_bias = ai->arch == XD_ARCH_QWEN2;
    c.qk_norm = ai->arch == XD_ARCH_QWEN3   ? XD_QKNORM_HEAD
                : ai->arch == XD_ARCH_OLMO2 ? XD_QKNORM_FULL
                                            : XD_QKNORM_NONE;
    c.post_norms = ai->arch == XD_ARCH_OLMO2;
    if (is_student(root) && parse_student(&s, &c)) goto done;
    *cfg = c;
    rc = 0;
done:
    json_decref(root);
    return rc;
}
