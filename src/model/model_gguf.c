/* Loading a teacher from a GGUF file: hyper-parameters from the metadata,
 * every tensor dequantised to fp32 into the model's arena. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "io/hfconfig.h"
#include "io/tokenizer_gguf.h"
#include "model.h"
#include "qweights.h"

static const struct { const char *name; xd_arch arch; } known[] = {
    {"llama", XD_ARCH_LLAMA}, {"qwen2", XD_ARCH_QWEN2}, {"qwen3", XD_ARCH_QWEN3},
    {"olmo2", XD_ARCH_OLMO2}};

const char *xd_arch_gguf_name(xd_arch a) {
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].arch == a) return known[i].name;
    return NULL;
}

static int arch_from_name(const gguf_file *g, gguf_str s, xd_arch *a) {
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (xd_gguf_str_eq(s, known[i].name)) { *a = known[i].arch; return 0; }
    char buf[64];
    xd_gguf_str_copy(s, buf, sizeof buf);
    return xd_err("%s: general.architecture: '%s' is not supported (expected llama, qwen2, "
                  "qwen3 or olmo2)", g->path, buf);
}

/* Reads "<arch>.<key>" as an int in [1, max]. */
static int get_int(const gguf_file *g, const char *arch, const char *key, int *out, int opt) {
    char full[128];
    uint64_t v = (uint64_t)*out;
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (opt ? xd_gguf_opt_u64(g, full, &v) : xd_gguf_get_u64(g, full, &v)) return -1;
    if (v == 0 || v > (1u << 30))
        return xd_err("%s: metadata '%s' = %llu is out of range", g->path, full,
                      (unsigned long long)v);
    *out = (int)v;
    return 0;
}

static int get_float(const gguf_file *g, const char *arch, const char *key, float *out, int opt) {
    char full[128];
    double v = *out;
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (opt ? xd_gguf_opt_f64(g, full, &v) : xd_gguf_get_f64(g, full, &v)) return -1;
    *out = (float)v;
    return 0;
}

int xd_gguf_linear_name(const char *gguf) {
    static const char *const tails[] = {".attn_q.weight", ".attn_k.weight", ".attn_v.weight",
                                        ".attn_output.weight", ".ffn_gate.weight", ".ffn_up.weight",
                                        ".ffn_down.weight"};
    if (!strcmp(gguf, "token_embd.weight") || !strcmp(gguf, "output.weight")) return 1;
    size_t n = strlen(gguf);
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        size_t k = strlen(tails[i]);
        if (!strncmp(gguf, "blk.", 4) && n > k && !strcmp(gguf + n - k, tails[i])) return 1;
    }
    return 0;
}

/* "<arch>.<key>" as a string into buf; opt: missing leaves buf. */
static int get_string(const gguf_file *g, const char *arch, const char *key, char *buf, size_t cap,
                      int opt) {
    char full[128];
    gguf_str s;
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (opt && !xd_gguf_find(g, full)) return 0;
    if (xd_gguf_get_str(g, full, &s)) return -1;
    xd_gguf_str_copy(s, buf, cap);
    return 0;
}

/* A student's own fields (xdistill_hybrid.*; the writer: model_gguf_write.c). */
static int student_from_gguf(const gguf_file *g, const char *arch, xd_config *c) {
    char buf[64], full[128];
    uint64_t v = 0;
    double f;
    c->student = 1;
    c->mlstm_scale = 1.0f / sqrtf(2.0f * (float)c->head_dim);
    c->mlstm_eps = 1e-6f;
    c->gate_softcap = 15.0f;
    if (get_int(g, arch, "window", &c->window, 0) || get_int(g, arch, "chunk_size", &c->chunk, 0))
        return -1;
#define OPT_U(k, dst)                                                                                  do {                                                                                                   snprintf(full, sizeof full, "%s." k, arch);                                                        v = (uint64_t)(dst);                                                                               if (xd_gguf_opt_u64(g, full, &v)) return -1;                                                       if (v > (1u << 30)) return xd_err("%s: metadata '%s' = %llu is out of range", g->path,                                               full, (unsigned long long)v);                                    dst = (int)v;                                                                                  } while (0)
    OPT_U("sinks", c->sinks);
    OPT_U("sparse_cache", c->sparse_cache);
#undef OPT_U
    static const char *const fk[3] = {"mlstm_scale", "mlstm_eps", "gate_softcap"};
    float *fd[3] = {&c->mlstm_scale, &c->mlstm_eps, &c->gate_softcap};
    for (int i = 0; i < 3; i++) {
        snprintf(full, sizeof full, "%s.%s", arch, fk[i]);
        f = *fd[i];
        if (xd_gguf_opt_f64(g, full, &f)) return -1;
        *fd[i] = (float)f;
    }
    snprintf(full, sizeof full, "%s.exact_in_window", arch);
    const gguf_kv *ex = xd_gguf_find(g, full);
    if (ex && ex->type != GGUF_T_BOOL)
        return xd_err("%s: metadata '%s' is %s, expected a bool", g->path, full, xd_gguf_type_name(ex->type));
    c->exact_in_window = ex && ex->v.u != 0;
    snprintf(buf, sizeof buf, "hedgehog");
    if (get_string(g, arch, "feature_map", buf, sizeof buf, 1)) return -1;
    if (strcmp(buf, "hedgehog"))
        return xd_err("%s: metadata '%s.feature_map' = '%s' (expected \"hedgehog\")", g->path, arch, buf);
    snprintf(buf, sizeof buf, "mlstm");
    if (get_string(g, arch, "memory_rule", buf, sizeof buf, 1)) return -1;
    if (!strcmp(buf, "gated_delta")) c->memory_rule = XD_MEMORY_DELTA;
    else if (!strcmp(buf, "mlstm")) c->memory_rule = XD_MEMORY_MLSTM;
    else return xd_err("%s: metadata '%s.memory_rule' = '%s' (expected mlstm or gated_delta)", g->path, arch, buf);
    snprintf(buf, sizeof buf, "float32");
    if (get_string(g, arch, "global_kv_dtype", buf, sizeof buf, 1)) return -1;
    if (xd_kv_dtype_parse(buf, &c->global_kv_dtype))
        return xd_err("%s: metadata '%s.global_kv_dtype' = '%s' is not a key/value type", g->path, arch, buf);
    static const char *const hk[2] = {"teacher_hash", "base_hash"};
    uint64_t *hd[2] = {&c->teacher_hash, &c->base_hash};
    for (int i = 0; i < 2; i++) {
        snprintf(full, sizeof full, "%s.%s", arch, hk[i]);
        if (xd_gguf_opt_u64(g, full, hd[i])) return -1;
    }
    snprintf(full, sizeof full, "%s.global_heads", arch);
    const gguf_kv *gh = xd_gguf_find(g, full);
    if (gh) {
        if (gh->type != GGUF_T_ARRAY || gh->arr_type != GGUF_T_INT32 || gh->arr_n % 2 ||
            gh->arr_n / 2 > XD_MAX_GLOBAL_HEADS)
            return xd_err("%s: metadata '%s': expected an int32 array of (layer, head) pairs, at "
                          "most %d", g->path, full, XD_MAX_GLOBAL_HEADS);
        for (uint64_t i = 0; i < gh->arr_n / 2; i++) {
            int32_t lh[2];
            memcpy(lh, gh->arr_data + 8 * i, 8);
            if (lh[0] < 0 || lh[0] >= c->n_layer || lh[1] < 0 || lh[1] >= c->n_head)
                return xd_err("%s: metadata '%s'[%llu] = (%d, %d) is outside the model (expected "
                              "layer 0 .. %d, head 0 .. %d)", g->path, full, (unsigned long long)i,
                              lh[0], lh[1], c->n_layer - 1, c->n_head - 1);
            c->global_heads[i] = (xd_head_ref){(int16_t)lh[0], (int16_t)lh[1]};
        }
        c->n_global_heads = (int)(gh->arr_n / 2);
        xd_head_refs_sort(c->global_heads, c->n_global_heads);
    }
    return xd_global_heads_check(c, g->path);
}

static int config_from_gguf(const gguf_file *g, xd_config *c) {
    gguf_str as;
    char arch[32];
    memset(c, 0, sizeof *c);
    if (xd_gguf_get_str(g, "general.architecture", &as)) return -1;
    int student = xd_gguf_str_eq(as, XD_STUDENT_GGUF_ARCH);
    xd_gguf_str_copy(as, arch, sizeof arch);
    if (student) { /* the teacher's architecture it came from */
        char key[96];
        snprintf(key, sizeof key, "%s.base_architecture", arch);
        if (xd_gguf_get_str(g, key, &as)) return -1;
    }
    if (arch_from_name(g, as, &c->arch)) return -1;
    c->rope_theta = 10000.0f;
    c->max_ctx = 2048;
    if (get_int(g, arch, "block_count", &c->n_layer, 0) ||
        get_int(g, arch, "embedding_length", &c->d_model, 0) ||
        get_int(g, arch, "feed_forward_length", &c->d_ff, 0) ||
        get_int(g, arch, "attention.head_count", &c->n_head, 0) ||
        get_float(g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps, 0) ||
        get_float(g, arch, "rope.freq_base", &c->rope_theta, 1) ||
        get_int(g, arch, "context_length", &c->max_ctx, 1))
        return -1;
    c->n_kv_head = c->n_head;
    c->head_dim = c->d_model / c->n_head;
    if (get_int(g, arch, "attention.head_count_kv", &c->n_kv_head, 1) ||
        get_int(g, arch, "attention.key_length", &c->head_dim, 1))
        return -1;
    const gguf_tensor *emb = xd_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return xd_err("%s: missing tensor 'token_embd.weight'", g->path);
    if (emb->n_dims != 2 || emb->ne[0] != c->d_model)
        return xd_err("%s: tensor 'token_embd.weight' has shape [%lld, %lld], expected [%d, vocab]",
                      g->path, (long long)emb->ne[0], (long long)emb->ne[1], c->d_model);
    c->vocab_size = (int)emb->ne[1];
    c->tied_embeddings = xd_gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = xd_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = c->arch == XD_ARCH_QWEN3 ? XD_QKNORM_HEAD
               : c->arch == XD_ARCH_OLMO2 ? XD_QKNORM_FULL : XD_QKNORM_NONE;
    c->post_norms = c->arch == XD_ARCH_OLMO2;
    if (student && student_from_gguf(g, arch, c)) return -1;
    return xd_config_validate(c, g->path);
}

/* Row h·hd + j·hd/2 + i (HF order) is GGUF's row h·hd + 2i + j; to_gguf goes the other way. */
static void permute_rows(void *dst, const void *src, int64_t n_heads, int64_t hd, size_t row_bytes,
                         int to_gguf) {
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int64_t j = 0; j < 2; j++) {
                size_t hf = (size_t)(h * hd + j * hd / 2 + i), gg = (size_t)(h * hd + 2 * i + j);
                memcpy((char *)dst + (to_gguf ? gg : hf) * row_bytes,
                       (const char *)src + (to_gguf ? hf : gg) * row_bytes, row_bytes);
            }
}

void xd_gguf_unpermute_rows(void *dst, const void *src, int64_t n_heads, int64_t hd,
                            size_t row_bytes) {
    permute_rows(dst, src, n_heads, hd, row_bytes, 0);
}

int xd_gguf_permuted(const xd_config *c, const xd_weight *w) {
    return c->arch == XD_ARCH_LLAMA && w->ndim == 2 &&
           (strstr(w->gguf, "attn_q.") || strstr(w->gguf, "attn_k."));
}

void xd_gguf_permute_rows(void *dst, const void *src, int64_t n_heads, int64_t hd,
                          size_t row_bytes) {
    permute_rows(dst, src, n_heads, hd, row_bytes, 1);
}

/* blocks: the 2-D weights of the types the kernels take stay in the file's blocks, and
 * their fp32 region of the arena is never written (qweights.h) */
static int load_tensor(const gguf_file *g, xd_model *m, const xd_weight *w, int blocks) {
    const gguf_tensor *t = xd_gguf_find_tensor(g, w->gguf);
    if (!t) return xd_err("%s: missing tensor '%s'", g->path, w->gguf);
    int ok = w->ndim == 1 ? (t->n_dims == 1 && t->ne[0] == w->cols)
                          : (t->n_dims == 2 && t->ne[0] == w->cols && t->ne[1] == w->rows);
    if (!ok)
        return xd_err("%s: tensor '%s' has shape [%lld, %lld] (ggml order), expected [%lld, %lld]",
                      g->path, w->gguf, (long long)t->ne[0], (long long)t->ne[1],
                      (long long)w->cols, (long long)(w->ndim == 1 ? 1 : w->rows));
    int64_t n = w->rows * w->cols;
    int permute = xd_gguf_permuted(&m->cfg, w);
    if (blocks && w->ndim == 2 && xd_gguf_linear_name(w->gguf) && xd_qweights_takes(t->type, w->cols))
        return xd_qweights_add(m, w->ptr, t->type, w->rows, w->cols, t->data,
                               permute ? m->cfg.head_dim : 0);
    if (!permute) return xd_ggml_dequantize(t->type, t->data, w->ptr, n) ? xd_err_prefix("%s: tensor '%s'", g->path, w->gguf) : 0;
    float *tmp = malloc((size_t)n * sizeof(float));
    if (!tmp) return xd_err("out of memory");
    int rc = xd_ggml_dequantize(t->type, t->data, tmp, n);
    if (!rc)
        xd_gguf_unpermute_rows(w->ptr, tmp, w->rows / m->cfg.head_dim, m->cfg.head_dim,
                               (size_t)w->cols * sizeof(float));
    free(tmp);
    return rc ? xd_err_prefix("%s: tensor '%s'", g->path, w->gguf) : 0;
}

/* Llama-3 GGUFs carry rope_freqs.weight: per-frequency divisors. */
static int apply_rope_freqs(const gguf_file *g, xd_model *m) {
    const gguf_tensor *t = xd_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return 0;
    int half = m->cfg.head_dim / 2;
    if (t->n_dims != 1 || t->ne[0] != half || t->type != GGML_F32)
        return xd_err("%s: tensor 'rope_freqs.weight' must be F32 [%d]", g->path, half);
    if (xd_model_init_rope(m)) return -1;
    const unsigned char *p = t->data; /* general.alignment may leave it unaligned for float */
    for (int i = 0; i < half; i++) {
        float f;
        memcpy(&f, p + 4 * (size_t)i, 4);
        if (!(f > 0)) return xd_err("%s: rope_freqs.weight[%d] = %g must be > 0", g->path, i, f);
        m->rope_inv_freq[i] /= f;
    }
    return 0;
}

int xd_model_load_gguf(xd_model *m, const char *path, xd_weights_mode mode) {
    gguf_file *g = xd_gguf_open(path);
    if (!g) return -1;
    xd_weight *ws = NULL;
    int nw = 0, rc = -1;
    if (config_from_gguf(g, &m->cfg)) goto done;
    if (!(m->tok = xd_tokenizer_from_gguf(g))) goto done;
    if (xd_model_alloc(m) || xd_model_weights(m, &ws, &nw)) goto done;
    for (int i = 0; i < nw; i++)
        if (load_tensor(g, m, &ws[i], mode != XD_WEIGHTS_FP32)) goto done;
    if (apply_rope_freqs(g, m)) goto done;
    if (m->q) { /* the blocks point into the mapping: the file stays open */
        xd_qweights_sort(m);
        m->q->all_rows = mode == XD_WEIGHTS_GGUF_ALL;
        m->q->file = g;
        g = NULL;
    }
    rc = 0;
done:
    free(ws);
    if (g) xd_gguf_close(g);
    return rc;
}
