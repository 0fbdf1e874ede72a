/* Model object: weight layout in one fp32 arena, config checks, loading dispatch. */
#include "model.h"
#include "qweights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/hfconfig.h"
#include "core/file.h"

const char *xd_arch_name(xd_arch a) {
    switch (a) {
    case XD_ARCH_LLAMA: return "llama";
    case XD_ARCH_QWEN2: return "qwen2";
    case XD_ARCH_QWEN3: return "qwen3";
    case XD_ARCH_OLMO2: return "olmo2";
    }
    return "unknown";
}

static const char *const KV_DTYPE_NAMES[] = {"float32", "bfloat16", "int8", "int4", "k8v4"};

const char *xd_kv_dtype_name(int dtype) {
    return dtype >= 0 && dtype <= XD_KV_K8V4 ? KV_DTYPE_NAMES[dtype] : "unknown";
}

/* The command line's short names (convert --global-kv), in the same order. */
static const char *const KV_DTYPE_SHORT[] = {"f32", "bf16", "int8", "int4", "k8v4"};

int xd_kv_dtype_parse(const char *name, int *dtype) {
    for (int i = 0; i <= XD_KV_K8V4; i++)
        if (name && (!strcmp(name, KV_DTYPE_NAMES[i]) || !strcmp(name, KV_DTYPE_SHORT[i])))
            return *dtype = i, 0;
    return -1;
}

/* Hands out n floats from *cur (or only counts when base is NULL). */
static float *take(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur += n;
    return p;
}

size_t xd_model_layout(const xd_config *c, xd_model *m, float *base) {
    size_t cur = 0, d = (size_t)c->d_model, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd, ff = (size_t)c->d_ff;
    size_t V = (size_t)c->vocab_size;
    m->embed = take(base, &cur, V * d);
    m->final_norm = take(base, &cur, d);
    m->lm_head = c->tied_embeddings ? m->embed : take(base, &cur, V * d);
    for (int l = 0; l < c->n_layer; l++) {
        xd_layer *L = &m->layers[l];
        memset(L, 0, sizeof *L);
        if (!c->post_norms) L->attn_norm = take(base, &cur, d);
        L->wq = take(base, &cur, qd * d);
        L->wk = take(base, &cur, kvd * d);
        L->wv = take(base, &cur, kvd * d);
        L->wo = take(base, &cur, d * qd);
        if (c->qkv_bias) {
            L->bq = take(base, &cur, qd);
            L->bk = take(base, &cur, kvd);
            L->bv = take(base, &cur, kvd);
        }
        if (c->qk_norm == XD_QKNORM_HEAD) {
            L->q_norm = take(base, &cur, hd);
            L->k_norm = take(base, &cur, hd);
        } else if (c->qk_norm == XD_QKNORM_FULL) {
            L->q_norm = take(base, &cur, qd);
            L->k_norm = take(base, &cur, kvd);
        }
        if (c->post_norms) L->post_attn_norm = take(base, &cur, d);
        else L->ffn_norm = take(base, &cur, d);
        L->w_gate = take(base, &cur, ff * d);
        L->w_up = take(base, &cur, ff * d);
        L->w_down = take(base, &cur, d * ff);
        if (c->post_norms) L->post_ffn_norm = take(base, &cur, d);
        if (c->student) {
            size_t nh = (size_t)c->n_head;
            L->fmq_A = take(base, &cur, nh * hd * hd);
            L->fmq_b = take(base, &cur, nh * hd);
            L->fmk_A = take(base, &cur, nh * hd * hd); /* one map per query head (GQA: */
            L->fmk_b = take(base, &cur, nh * hd);      /* each reads its group's key) */
            L->w_ig = take(base, &cur, 2 * nh * d);
            L->w_fg = L->w_ig ? L->w_ig + nh * d : NULL;
            L->b_ig = take(base, &cur, 2 * nh);
            L->b_fg = L->b_ig ? L->b_ig + nh : NULL;
            L->w_mix = take(base, &cur, nh * 3 * hd);
            L->b_mix = take(base, &cur, nh);
        }
    }
    return cur;
}

int xd_config_validate(const xd_config *c, const char *src) {
#define POS(f, lim)                                                                         \
    if (c->f <= 0 || c->f > (lim))                                                          \
        return xd_err("%s: %s = %d is out of range (expected 1..%d)", src, #f, (int)c->f,   \
                      (int)(lim));
    POS(n_layer, 4096);
    POS(d_model, 1 << 16);
    POS(n_head, 1024);
    POS(n_kv_head, 1024);
    POS(head_dim, 4096);
    POS(d_ff, 1 << 20);
    POS(vocab_size, 1 << 22);
#undef POS
    if (c->n_head % c->n_kv_head)
        return xd_err("%s: n_head = %d is not a multiple of n_kv_head = %d", src, c->n_head,
                      c->n_kv_head);
    if (c->head_dim % 2)
        return xd_err("%s: head_dim = %d must be even for RoPE", src, c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return xd_err("%s: rope_theta = %g must be positive", src, c->rope_theta);
    if (!(c->norm_eps > 0) || c->norm_eps > 1)
        return xd_err("%s: rms_norm_eps = %g is out of range (expected (0, 1])", src, c->norm_eps);
    if (c->max_ctx <= 0)
        return xd_err("%s: context length %d must be positive", src, c->max_ctx);
    if (c->student) {
        if (c->window < 1)
            return xd_err("%s: window = %d is out of range (expected >= 1)", src, c->window);
        if (c->sinks < 0 || c->sinks > (1 << 20))
            return xd_err("%s: sinks = %d is out of range (expected 0..%d)", src, c->sinks, 1 << 20);
        if (c->chunk < 1 || c->chunk > 4096)
            return xd_err("%s: chunk_size = %d is out of range (expected 1..4096)", src, c->chunk);
        if (!(c->mlstm_scale > 0) || !isfinite(c->mlstm_scale))
            return xd_err("%s: mlstm_scale = %g must be positive", src, c->mlstm_scale);
        if (!(c->mlstm_eps > 0) || c->mlstm_eps > 1)
            return xd_err("%s: mlstm_eps = %g is out of range (expected (0, 1])", src, c->mlstm_eps);
        if (!(c->gate_softcap >= 0) || !isfinite(c->gate_softcap))
            return xd_err("%s: gate_softcap = %g must be >= 0 (0 = off)", src, c->gate_softcap);
        if (c->global_kv_dtype < XD_KV_F32 || c->global_kv_dtype > XD_KV_K8V4)
            return xd_err("%s: global_kv_dtype = %d is not a key/value type (expected %d..%d: "
                          "float32, bfloat16, int8, int4, k8v4)", src, c->global_kv_dtype, XD_KV_F32, XD_KV_K8V4);
        if (c->memory_rule != XD_MEMORY_MLSTM && c->memory_rule != XD_MEMORY_DELTA)
            return xd_err("%s: memory_rule = %d is not a memory rule (expected %d: mlstm or %d: "
                          "gated delta)", src, c->memory_rule, XD_MEMORY_MLSTM, XD_MEMORY_DELTA);
        if (c->sparse_cache < 0 || c->sparse_cache > (1 << 20))
            return xd_err("%s: sparse_cache = %d is out of range (expected 0..%d rows)", src,
                          c->sparse_cache, 1 << 20);
        long long leave = (long long)c->max_ctx - c->sinks - c->window; /* rows that can leave */
        if (c->sparse_cache && c->max_ctx > 0 && c->sparse_cache > leave)
            return xd_err("%s: sparse_cache = %d is larger than the context: of max_ctx = %d "
                          "positions at most %lld ever leave the window (%d) and the sinks (%d)",
                          src, c->sparse_cache, c->max_ctx, leave > 0 ? leave : 0LL, c->window,
                          c->sinks);
        if (c->sparse_cache && c->memory_rule != XD_MEMORY_MLSTM)
            return xd_err("%s: sparse_cache = %d needs the mLSTM memory (it ranks rows by the "
                          "mLSTM's recall); memory_rule is gated_delta", src, c->sparse_cache);
    }
    return xd_global_heads_check(c, src);
}

int xd_model_init_rope(xd_model *m) {
    const xd_config *c = &m->cfg;
    int half = c->head_dim / 2;
    if (m->rope_inv_freq) return 0;
    m->rope_inv_freq = malloc(sizeof(float) * (size_t)half);
    if (!m->rope_inv_freq) return xd_err("out of memory");
    for (int i = 0; i < half; i++) {
        /* as in HF: inv_freq = 1 / theta^(2i/hd), in float32 */
        float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        if (c->rope_scale_factor > 0) {
            /* Llama-3 scaling: low frequencies divided by factor, high kept,
             * a smooth blend between (wavelengths relative to the original context). */
            float lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            float orig = (float)c->rope_orig_ctx, f = c->rope_scale_factor;
            float wavelen = 2.0f * (float)M_PI / inv;
            float lo_wl = orig / lo, hi_wl = orig / hi;
            if (wavelen > lo_wl) inv = inv / f;
            else if (wavelen >= hi_wl) {
                float s = (orig / wavelen - lo) / (hi - lo);
                inv = (1 - s) * inv / f + s * inv;
            }
        }
        m->rope_inv_freq[i] = inv;
    }
    return 0;
}

xd_model *xd_model_load(const char *path) { return xd_model_load_weights(path, XD_WEIGHTS_FP32); }

int xd_weights_mode_parse(const char *s) {
    return !strcmp(s, "fp32") ? XD_WEIGHTS_FP32 : !strcmp(s, "gguf") ? XD_WEIGHTS_GGUF
         : !strcmp(s, "gguf-all") ? XD_WEIGHTS_GGUF_ALL : -1;
}

xd_model *xd_model_load_weights(const char *path, xd_weights_mode mode) {
    if (mode < XD_WEIGHTS_FP32 || mode > XD_WEIGHTS_GGUF_ALL)
        return xd_err("xd_model_load_weights: weights mode %d (expected 0, 1 or 2)", (int)mode), NULL;
    xd_model *m = calloc(1, sizeof *m);
    if (!m) { xd_err("out of memory"); return NULL; }
    snprintf(m->path, sizeof m->path, "%s", path);
    int rc = xd_is_dir(path) ? xd_model_load_hf(m, path) : xd_model_load_gguf(m, path, mode);
    if (!rc) rc = xd_model_init_rope(m);
    if (rc) {
        xd_model_free(m);
        return NULL;
    }
    return m;
}

void xd_model_free(xd_model *m) {
    if (!m) return;
    xd_tokenizer_free(m->tok);
    xd_qweights_free(m);
    free(m->arena);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m);
}

const xd_config *xd_model_config(const xd_model *m) { return &m->cfg; }
const xd_tokenizer *xd_model_tokenizer(const xd_model *m) { return m->tok; }

size_t xd_model_n_params(const xd_model *m) { return m->arena_floats; }

/* Allocates the arena and lays the weights out in it. */
int xd_model_alloc(xd_model *m) {
    m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers);
    if (!m->layers) return xd_err("out of memory");
    xd_model tmp = *m;
    m->arena_floats = xd_model_layout(&m->cfg, &tmp, NULL);
    m->arena = malloc(m->arena_floats * sizeof(float));
    if (!m->arena)
        return xd_err("%s: cannot allocate %.1f MB for the weights", m->path,
                      (double)m->arena_floats * 4 / 1e6);
    xd_model_layout(&m->cfg, m, m->arena);
    return 0;
}

/* Appends one weight entry; `hf` and `gg` are printf formats taking the layer index. */
static void add_w(xd_weight *w, int *n, float *ptr, int64_t rows, int64_t cols, int ndim,
                  const char *hf, const char *gg, int layer) {
    if (!ptr) return;
    xd_weight *e = &w[(*n)++];
    snprintf(e->hf, sizeof e->hf, hf, layer);
    snprintf(e->gguf, sizeof e->gguf, gg, layer);
    e->ptr = ptr;
    e->ndim = ndim;
    e->rows = rows;
    e->cols = cols;
}

int xd_model_weights(const xd_model *m, xd_weight **out, int *n_out) {
    const xd_config *c = &m->cfg;
    int64_t d = c->d_model, hd = c->head_dim, qd = (int64_t)c->n_head * hd;
    int64_t kvd = (int64_t)c->n_kv_head * hd, ff = c->d_ff, V = c->vocab_size;
    xd_weight *w = calloc((size_t)(3 + 26 * c->n_layer), sizeof *w);
    if (!w) return xd_err("out of memory");
    int n = 0;
    add_w(w, &n, m->embed, V, d, 2, "model.embed_tokens.weight", "token_embd.weight", 0);
    add_w(w, &n, m->final_norm, 1, d, 1, "model.norm.weight", "output_norm.weight", 0);
    if (!c->tied_embeddings)
        add_w(w, &n, m->lm_head, V, d, 2, "lm_head.weight", "output.weight", 0);
    int64_t qn = c->qk_norm == XD_QKNORM_FULL ? qd : hd, kn = c->qk_norm == XD_QKNORM_FULL ? kvd : hd;
    for (int l = 0; l < c->n_layer; l++) {
        const xd_layer *L = &m->layers[l];
#define P "model.layers.%d."
        add_w(w, &n, L->attn_norm, 1, d, 1, P "input_layernorm.weight", "blk.%d.attn_norm.weight", l);
        add_w(w, &n, L->wq, qd, d, 2, P "self_attn.q_proj.weight", "blk.%d.attn_q.weight", l);
        add_w(w, &n, L->wk, kvd, d, 2, P "self_attn.k_proj.weight", "blk.%d.attn_k.weight", l);
        add_w(w, &n, L->wv, kvd, d, 2, P "self_attn.v_proj.weight", "blk.%d.attn_v.weight", l);
        add_w(w, &n, L->wo, d, qd, 2, P "self_attn.o_proj.weight", "blk.%d.attn_output.weight", l);
        add_w(w, &n, L->bq, 1, qd, 1, P "self_attn.q_proj.bias", "blk.%d.attn_q.bias", l);
        add_w(w, &n, L->bk, 1, kvd, 1, P "self_attn.k_proj.bias", "blk.%d.attn_k.bias", l);
        add_w(w, &n, L->bv, 1, kvd, 1, P "self_attn.v_proj.bias", "blk.%d.attn_v.bias", l);
        add_w(w, &n, L->q_norm, 1, qn, 1, P "self_attn.q_norm.weight", "blk.%d.attn_q_norm.weight", l);
        add_w(w, &n, L->k_norm, 1, kn, 1, P "self_attn.k_norm.weight", "blk.%d.attn_k_norm.weight", l);
        add_w(w, &n, L->post_attn_norm, 1, d, 1, P "post_attention_layernorm.weight",
              "blk.%d.post_attention_norm.weight", l);
        add_w(w, &n, L->ffn_norm, 1, d, 1, P "post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", l);
        add_w(w, &n, L->w_gate, ff, d, 2, P "mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", l);
        add_w(w, &n, L->w_up, ff, d, 2, P "mlp.up_proj.weight", "blk.%d.ffn_up.weight", l);
        add_w(w, &n, L->w_down, d, ff, 2, P "mlp.down_proj.weight", "blk.%d.ffn_down.weight", l);
        add_w(w, &n, L->post_ffn_norm, 1, d, 1, P "post_feedforward_layernorm.weight",
              "blk.%d.post_ffw_norm.weight", l);
        int64_t nh = c->n_head;
        add_w(w, &n, L->fmq_A, nh * hd, hd, 2, P "self_attn.feature_map_q.weight", "blk.%d.fm_q.weight", l);
        add_w(w, &n, L->fmq_b, 1, nh * hd, 1, P "self_attn.feature_map_q.bias", "blk.%d.fm_q.bias", l);
        add_w(w, &n, L->fmk_A, nh * hd, hd, 2, P "self_attn.feature_map_k.weight", "blk.%d.fm_k.weight", l);
        add_w(w, &n, L->fmk_b, 1, nh * hd, 1, P "self_attn.feature_map_k.bias", "blk.%d.fm_k.bias", l);
        add_w(w, &n, L->w_ig, nh, d, 2, P "self_attn.igate.weight", "blk.%d.igate.weight", l);
        add_w(w, &n, L->b_ig, 1, nh, 1, P "self_attn.igate.bias", "blk.%d.igate.bias", l);
        add_w(w, &n, L->w_fg, nh, d, 2, P "self_attn.fgate.weight", "blk.%d.fgate.weight", l);
        add_w(w, &n, L->b_fg, 1, nh, 1, P "self_attn.fgate.bias", "blk.%d.fgate.bias", l);
        add_w(w, &n, L->w_mix, nh, 3 * hd, 2, P "self_attn.mix.weight", "blk.%d.mix.weight", l);
        add_w(w, &n, L->b_mix, 1, nh, 1, P "self_attn.mix.bias", "blk.%d.mix.bias", l);
#undef P
    }
    *out = w;
    *n_out = n;
    return 0;
}
