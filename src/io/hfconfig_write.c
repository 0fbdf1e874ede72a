/* xd_config → HF config.json (the reader is hfconfig.c). The file carries
 * every field xd_hf_config_load reads, explicitly, so nothing depends on a
 * default that differs between the reader, transformers 4.x and 5.x. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/strbuf.h"
#include "atomic.h"
#include "hfconfig.h"

/* ---- pretty JSON --------------------------------------------------------- */

/* Built in an xd_sbuf; b->err (set by a failed append, or here for a
 * non-finite number or a jansson failure) abandons the text. */

static void indent(xd_sbuf *b, int n) {
    static const char sp[] = "                                ";
    while (n > 0) {
        int k = n < 32 ? n : 32;
        xd_sb_add(b, sp, (size_t)k);
        n -= k;
    }
}

/* The shortest decimal that reads back as v, laid out as Python's repr. */
static void put_real(xd_sbuf *b, double v) {
    if (!isfinite(v)) { b->err = 1; return; }
    char e[40], out[64];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    int exp = atoi(strchr(e, 'e') + 1);
    if (exp >= -4 && exp < 16) {
        int dec = p - 1 - exp;
        snprintf(out, sizeof out, "%.*f", dec > 0 ? dec : 0, v);
        if (!strchr(out, '.')) strcat(out, ".0");
    } else {
        /* mantissa digits, then e-XX / e+XX with at least two exponent digits */
        char *m = e, *x = strchr(e, 'e');
        *x = 0;
        snprintf(out, sizeof out, "%se%c%02d", m, exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    xd_sb_puts(b, out);
}

static void put_string(xd_sbuf *b, const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (d) xd_sb_puts(b, d);
    else b->err = 1;
    free(d);
    json_decref(j);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void dump(xd_sbuf *b, const json_t *j, int ind) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(j), i = 0;
        if (!n) { xd_sb_puts(b, "{}"); return; }
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) { b->err = 1; return; }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) keys[i++] = k;
        qsort(keys, n, sizeof *keys, cmp_str);
        xd_sb_puts(b, "{\n");
        for (i = 0; i < n; i++) {
            indent(b, ind + 2);
            put_string(b, keys[i], strlen(keys[i]));
            xd_sb_puts(b, ": ");
            dump(b, json_object_get(j, keys[i]), ind + 2);
            xd_sb_puts(b, i + 1 < n ? ",\n" : "\n");
        }
        free(keys);
        indent(b, ind);
        xd_sb_puts(b, "}");
        return;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if (!n) { xd_sb_puts(b, "[]"); return; }
        xd_sb_puts(b, "[\n");
        for (size_t i = 0; i < n; i++) {
            indent(b, ind + 2);
            dump(b, json_array_get(j, i), ind + 2);
            xd_sb_puts(b, i + 1 < n ? ",\n" : "\n");
        }
        indent(b, ind);
        xd_sb_puts(b, "]");
        return;
    }
    case JSON_STRING: put_string(b, json_string_value(j), json_string_length(j)); return;
    case JSON_INTEGER: {
        char t[32];
        snprintf(t, sizeof t, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        xd_sb_puts(b, t);
        return;
    }
    case JSON_REAL: put_real(b, json_real_value(j)); return;
    case JSON_TRUE: xd_sb_puts(b, "true"); return;
    case JSON_FALSE: xd_sb_puts(b, "false"); return;
    case JSON_NULL: xd_sb_puts(b, "null"); return;
    }
}

char *xd_hf_json_pretty(const json_t *j) {
    xd_sbuf b = {0};
    if (!j) return NULL;
    dump(&b, j, 0);
    xd_sb_puts(&b, "\n");
    return xd_sb_take(&b); /* NULL if b.err */
}

/* ---- config.json ------------------------------------------------------------ */

/* f as the shortest decimal that reads back (through a double) as f. */
static json_t *real_f(float f) {
    char s[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)f);
        if ((float)strtod(s, NULL) == f) break;
    }
    return json_real(strtod(s, NULL));
}

static const char *const HF_NAMES[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                       "Olmo2ForCausalLM"};

/* What config.json can say: the per-architecture features are implied by the
 * architecture, and the numbers must be ones xd_hf_config_load accepts. */
static int check_expressible(const xd_config *c, const char *path) {
    if ((unsigned)c->arch > XD_ARCH_OLMO2)
        return xd_err("%s: arch: %d is not a known architecture", path, (int)c->arch);
    const char *an = xd_arch_name(c->arch);
    int bias = c->arch == XD_ARCH_QWEN2, post = c->arch == XD_ARCH_OLMO2;
    xd_qknorm qk = c->arch == XD_ARCH_QWEN3   ? XD_QKNORM_HEAD
                   : c->arch == XD_ARCH_OLMO2 ? XD_QKNORM_FULL
                                              : XD_QKNORM_NONE;
    if (!!c->qkv_bias != bias)
        return xd_err("%s: qkv_bias = %d cannot be expressed for %s (its config implies %d)", path,
                      c->qkv_bias, an, bias);
    if (c->qk_norm != qk)
        return xd_err("%s: qk_norm = %d cannot be expressed for %s (its config implies %d)", path,
                      (int)c->qk_norm, an, (int)qk);
    if (!!c->post_norms != post)
        return xd_err("%s: post_norms = %d cannot be expressed for %s (its config implies %d)", path,
                      c->post_norms, an, post);
#define POS(f)                                                                                \
    if (c->f <= 0) return xd_err("%s: %s = %d must be positive", path, #f, (int)c->f);
    POS(n_layer) POS(d_model) POS(n_head) POS(n_kv_head) POS(head_dim) POS(d_ff) POS(vocab_size)
    POS(max_ctx)
#undef POS
    if (c->n_head % c->n_kv_head)
        return xd_err("%s: n_head = %d is not a multiple of n_kv_head = %d", path, c->n_head,
                      c->n_kv_head);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return xd_err("%s: rope_theta = %g must be a positive number", path, c->rope_theta);
    if (!(c->norm_eps > 0) || !(c->norm_eps < 1))
        return xd_err("%s: norm_eps = %g must be in (0, 1)", path, c->norm_eps);
    if (c->student && (c->window < 1 || c->sinks < 0 || c->chunk < 1 || c->chunk > 4096 ||
                       !(c->mlstm_scale > 0) || !(c->mlstm_eps > 0) || !(c->mlstm_eps < 1) ||
                       !(c->gate_softcap >= 0) || !isfinite(c->mlstm_scale) ||
                       !isfinite(c->gate_softcap)))
        return xd_err("%s: student fields (window %d, sinks %d, chunk %d, mlstm_scale %g, "
                      "mlstm_eps %g, gate_softcap %g) are invalid", path, c->window, c->sinks,
                      c->chunk, c->mlstm_scale, c->mlstm_eps, c->gate_softcap);
    if (xd_global_heads_check(c, path)) return -1;
    if (c->rope_scale_factor != 0) {
        if (!(c->rope_scale_factor > 0) || !isfinite(c->rope_scale_factor) ||
            !(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
            !isfinite(c->rope_high_freq_factor) || c->rope_orig_ctx <= 0)
            return xd_err("%s: Llama-3 rope scaling (factor %g, low_freq_factor %g, "
                          "high_freq_factor %g, original context %d) is invalid", path,
                          c->rope_scale_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                          c->rope_orig_ctx);
    }
    return 0;
}

/* Sets key to v (taking the reference); records a failure in *bad. */
static void set(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v || json_object_set_new(o, key, v)) *bad = 1;
}

static json_t *rope_object(const xd_config *c, int with_theta, int *bad) {
    json_t *r = json_object();
    if (!r) { *bad = 1; return NULL; }
    if (with_theta) set(r, "rope_theta", real_f(c->rope_theta), bad);
    set(r, "rope_type", json_string(c->rope_scale_factor > 0 ? "llama3" : "default"), bad);
    if (c->rope_scale_factor > 0) {
        set(r, "factor", real_f(c->rope_scale_factor), bad);
        set(r, "low_freq_factor", real_f(c->rope_low_freq_factor), bad);
        set(r, "high_freq_factor", real_f(c->rope_high_freq_factor), bad);
        set(r, "original_max_position_embeddings", json_integer(c->rope_orig_ctx), bad);
    }
    return r;
}

static json_t *config_json(const xd_config *c) {
    int bad = 0;
    json_t *o = json_object();
    if (!o) return NULL;
    set(o, "architectures", json_pack("[s]", HF_NAMES[c->arch]), &bad);
    set(o, "model_type", json_string(xd_arch_name(c->arch)), &bad);
    set(o, "hidden_size", json_integer(c->d_model), &bad);
    set(o, "intermediate_size", json_integer(c->d_ff), &bad);
    set(o, "num_hidden_layers", json_integer(c->n_layer), &bad);
    set(o, "num_attention_heads", json_integer(c->n_head), &bad);
    set(o, "num_key_value_heads", json_integer(c->n_kv_head), &bad);
    set(o, "head_dim", json_integer(c->head_dim), &bad);
    set(o, "vocab_size", json_integer(c->vocab_size), &bad);
    set(o, "max_position_embeddings", json_integer(c->max_ctx), &bad);
    set(o, "rms_norm_eps", real_f(c->norm_eps), &bad);
    /* transformers 4.x reads rope_theta + rope_scaling, 5.x rope_parameters
     * (and converts the older pair); all agree */
    set(o, "rope_theta", real_f(c->rope_theta), &bad);
    set(o, "rope_parameters", rope_object(c, 1, &bad), &bad);
    if (c->rope_scale_factor > 0) set(o, "rope_scaling", rope_object(c, 0, &bad), &bad);
    set(o, "tie_word_embeddings", json_boolean(c->tied_embeddings), &bad);
    set(o, "hidden_act", json_string("silu"), &bad);
    /* Qwen2's q/k/v bias is part of its model class; elsewhere attention_bias
     * would also add an o_proj bias we do not have */
    if (c->arch != XD_ARCH_QWEN2) set(o, "attention_bias", json_false(), &bad);
    set(o, "mlp_bias", json_false(), &bad);
    set(o, "torch_dtype", json_string("float32"), &bad);
    set(o, "dtype", json_string("float32"), &bad);
    if (c->student) { /* the student's own type and fields (hfconfig.c reads them) */
        set(o, "architectures", json_pack("[s]", "XdistillHybridForCausalLM"), &bad);
        set(o, "model_type", json_string("xdistill_hybrid"), &bad);
        set(o, "base_architecture", json_string(HF_NAMES[c->arch]), &bad);
        set(o, "window", json_integer(c->window), &bad);
        set(o, "sinks", json_integer(c->sinks), &bad);
        set(o, "chunk_size", json_integer(c->chunk), &bad);
        set(o, "feature_map", json_string("hedgehog"), &bad);
        set(o, "mlstm_scale", real_f(c->mlstm_scale), &bad);
        set(o, "mlstm_eps", real_f(c->mlstm_eps), &bad);
        set(o, "gate_softcap", real_f(c->gate_softcap), &bad);
        set(o, "exact_in_window", json_boolean(c->exact_in_window), &bad);
        set(o, "memory_rule",
            json_string(c->memory_rule == XD_MEMORY_DELTA ? "gated_delta" : "mlstm"), &bad);
        if (c->sparse_cache) set(o, "sparse_cache", json_integer(c->sparse_cache), &bad);
        if (c->teacher_hash) set(o, "teacher_hash", xd_json_hex64(c->teacher_hash), &bad);
        if (c->base_hash) set(o, "base_hash", xd_json_hex64(c->base_hash), &bad);
        json_t *g = json_array(); /* [[layer, head], ...], sorted */
        for (int i = 0; g && i < c->n_global_heads; i++)
            if (json_array_append_new(g, json_pack("[ii]", c->global_heads[i].layer,
                                                   c->global_heads[i].head)))
                bad = 1;
        set(o, "global_heads", g, &bad);
        if (c->n_global_heads)
            set(o, "global_kv_dtype", json_string(xd_kv_dtype_name(c->global_kv_dtype)), &bad);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int xd_hf_config_save_ex(const xd_config *c, const json_t *extra, const char *path) {
    if (!c || !path) return xd_err("xd_hf_config_save: no config or path");
    if (extra && !json_is_object(extra))
        return xd_err("%s: extra fields: expected a JSON object", path);
    if (check_expressible(c, path)) return -1;
    json_t *o = config_json(c);
    if (!o) return xd_err("%s: out of memory building config.json", path);
    int rc = -1;
    if (extra) {
        json_t *copy = json_deep_copy(extra);
        if (!copy || json_object_update(o, copy)) {
            json_decref(copy);
            xd_err("%s: out of memory merging the extra fields", path);
            goto done;
        }
        json_decref(copy);
    }
    char *text = xd_hf_json_pretty(o);
    if (!text) {
        xd_err("%s: cannot format config.json (out of memory, or a non-finite number in the "
               "extra fields)", path);
        goto done;
    }
    rc = xd_write_file_atomic(path, text, strlen(text));
    free(text);
done:
    json_decref(o);
    return rc;
}

int xd_hf_config_save(const xd_config *c, const char *path) { return xd_hf_config_save_ex(c, NULL, path); }

json_t *xd_json_hex64(uint64_t h) {
    char s[24];
    snprintf(s, sizeof s, "0x%016llx", (unsigned long long)h);
    return json_string(s);
}
