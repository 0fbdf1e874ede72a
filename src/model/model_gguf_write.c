/* A teacher-architecture model as a GGUF file (model.h: xd_model_save_gguf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/ggml_type.h"
#include "io/ggml_types.h"
#include "io/gguf_write.h"
#include "io/tokenizer_internal.h"
#include "kernels/quant.h"
#include "model.h"
#include "qweights.h"

typedef struct {
    const xd_model *m;
    xd_weight *w;      /* the tensors in the order added; rope: index n_w */
    int n_w;
    uint32_t *type;    /* per tensor */
    float *rope;       /* [hd/2] rope_freqs.weight, or NULL */
    float *tmp;        /* the largest weight, permuted */
} writer;

static int fill(void *ctx, int i, void *buf, size_t nbytes) {
    writer *wr = ctx;
    (void)nbytes;
    if (i == wr->n_w) { /* rope_freqs.weight */
        memcpy(buf, wr->rope, (size_t)wr->m->cfg.head_dim / 2 * sizeof(float));
        return 0;
    }
    const xd_weight *w = &wr->w[i];
    const float *src = w->ptr;
    const xd_config *c = &wr->m->cfg;
    if (xd_gguf_permuted(c, w)) {
        xd_gguf_permute_rows(wr->tmp, src, w->rows / c->head_dim, c->head_dim,
                             (size_t)w->cols * sizeof(float));
        src = wr->tmp;
    }
    size_t rb = xd_quantize_row_bytes(wr->type[i], w->cols);
    for (int64_t r = 0; r < w->rows; r++)
        if (xd_quantize_row(wr->type[i], src + r * w->cols, w->cols, (char *)buf + (size_t)r * rb))
            return xd_err_prefix("tensor '%s'", w->gguf);
    return 0;
}

/* The tokenizer's GGUF metadata (what io/tokenizer_gguf.c reads). */
static int put_tokenizer(xd_gguf_out *o, const xd_tokenizer *t) {
    int n = xd_tokenizer_n_tokens(t), nm = 0, rc = -1;
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    int32_t *types = malloc((size_t)n * sizeof *types);
    xd_tok_merge *mg = NULL;
    char **merges = NULL;
    if (!pieces || !types) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        pieces[i] = xd_tokenizer_piece(t, i);
        types[i] = xd_tokenizer_token_type(t, i);
    }
    if (xd_tokenizer_merges(t, &mg, &nm)) goto done;
    /* in rank order: a rank is the merge's line in the list it came from */
    int32_t max_rank = -1;
    for (int i = 0; i < nm; i++) max_rank = mg[i].rank > max_rank ? mg[i].rank : max_rank;
    int *at = malloc((size_t)(max_rank + 1 > 0 ? max_rank + 1 : 1) * sizeof *at);
    merges = calloc((size_t)(nm > 0 ? nm : 1), sizeof *merges);
    if (!at || !merges) { free(at); xd_err("out of memory"); goto done; }
    for (int r = 0; r <= max_rank; r++) at[r] = -1;
    for (int i = 0; i < nm; i++) at[mg[i].rank] = i;
    int k = 0;
    for (int r = 0; r <= max_rank; r++) {
        if (at[r] < 0) continue;
        const xd_tok_merge *x = &mg[at[r]];
        size_t len = strlen(x->left) + strlen(x->right) + 2;
        if (!(merges[k] = malloc(len))) { free(at); xd_err("out of memory"); goto done; }
        snprintf(merges[k++], len, "%s %s", x->left, x->right);
    }
    free(at);
    if (xd_gguf_out_str(o, "tokenizer.ggml.model", "gpt2") ||
        xd_gguf_out_str(o, "tokenizer.ggml.pre", xd_tokenizer_pre(t)) ||
        xd_gguf_out_strs(o, "tokenizer.ggml.tokens", pieces, (uint64_t)n) ||
        xd_gguf_out_i32s(o, "tokenizer.ggml.token_type", types, (uint64_t)n) ||
        xd_gguf_out_strs(o, "tokenizer.ggml.merges", (const char *const *)merges, (uint64_t)k) ||
        (xd_tokenizer_bos(t) >= 0 && xd_gguf_out_u32(o, "tokenizer.ggml.bos_token_id", (uint32_t)xd_tokenizer_bos(t))) ||
        (xd_tokenizer_eos(t) >= 0 && xd_gguf_out_u32(o, "tokenizer.ggml.eos_token_id", (uint32_t)xd_tokenizer_eos(t))) ||
        xd_gguf_out_bool(o, "tokenizer.ggml.add_bos_token", xd_tokenizer_add_bos(t)))
        goto done;
    rc = 0;
done:
    if (merges)
        for (int i = 0; i < nm; i++) free(merges[i]);
    free(merges);
    free(mg);
    free(pieces);
    free(types);
    return rc;
}

/* A student's own fields under xdistill_hybrid. (model_gguf.c reads them). */
static int put_student(xd_gguf_out *o, const xd_config *c, const char *base_arch) {
    char k[96];
#define K(name) (snprintf(k, sizeof k, XD_STUDENT_GGUF_ARCH "." name), k)
    int32_t gh[2 * XD_MAX_GLOBAL_HEADS];
    for (int i = 0; i < c->n_global_heads; i++)
        gh[2 * i] = c->global_heads[i].layer, gh[2 * i + 1] = c->global_heads[i].head;
    int rc = xd_gguf_out_str(o, K("base_architecture"), base_arch) ||
             xd_gguf_out_u32(o, K("window"), (uint32_t)c->window) ||
             xd_gguf_out_u32(o, K("sinks"), (uint32_t)c->sinks) ||
             xd_gguf_out_u32(o, K("chunk_size"), (uint32_t)c->chunk) ||
             xd_gguf_out_str(o, K("feature_map"), "hedgehog") ||
             xd_gguf_out_f32(o, K("mlstm_scale"), c->mlstm_scale) ||
             xd_gguf_out_f32(o, K("mlstm_eps"), c->mlstm_eps) ||
             xd_gguf_out_f32(o, K("gate_softcap"), c->gate_softcap) ||
             xd_gguf_out_bool(o, K("exact_in_window"), c->exact_in_window) ||
             xd_gguf_out_str(o, K("memory_rule"), c->memory_rule == XD_MEMORY_DELTA ? "gated_delta" : "mlstm") ||
             xd_gguf_out_u32(o, K("sparse_cache"), (uint32_t)c->sparse_cache) ||
             xd_gguf_out_u64(o, K("teacher_hash"), c->teacher_hash) ||
             xd_gguf_out_u64(o, K("base_hash"), c->base_hash) ||
             xd_gguf_out_i32s(o, K("global_heads"), gh, (uint64_t)(2 * c->n_global_heads)) ||
             xd_gguf_out_str(o, K("global_kv_dtype"), xd_kv_dtype_name(c->global_kv_dtype));
#undef K
    return rc ? -1 : 0;
}

int xd_model_save_gguf(const xd_model *m, const char *path, uint32_t type) {
    const xd_config *c = &m->cfg;
    const char *base_arch = xd_arch_gguf_name(c->arch);
    const char *arch = c->student ? XD_STUDENT_GGUF_ARCH : base_arch;
    if (!base_arch)
        return xd_err("%s: architecture %d has no GGUF form (expected llama, qwen2, qwen3 or olmo2, "
                      "or a student of one)", m->path, (int)c->arch);
    if (xd_model_require_fp32(m, "writing a GGUF")) return -1;
    if (!m->tok) return xd_err("%s: no tokenizer: a GGUF file carries one", m->path);
    if (!xd_quantize_writable(type))
        return xd_err("%s: type %s cannot be written (expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                      "Q5_0, Q5_1, Q4_K, Q5_K or Q6_K)", path, xd_ggml_type_name(type));
    writer wr = {m, NULL, 0, NULL, NULL, NULL};
    xd_gguf_out *o = xd_gguf_out_new();
    int rc = -1;
    if (!o || xd_model_weights(m, &wr.w, &wr.n_w)) goto done;
    wr.type = malloc((size_t)(wr.n_w + 1) * sizeof *wr.type);
    int64_t most = 0;
    for (int i = 0; i < wr.n_w; i++) most = wr.w[i].rows * wr.w[i].cols > most ? wr.w[i].rows * wr.w[i].cols : most;
    wr.tmp = malloc((size_t)most * sizeof(float));
    if (!wr.type || !wr.tmp) { xd_err("out of memory"); goto done; }
    char key[96], name[sizeof m->path];
    const char *base = strrchr(m->path, '/');
    snprintf(name, sizeof name, "%s", base ? base + 1 : m->path);
#define KEY(k) (snprintf(key, sizeof key, "%s." k, arch), key)
    if (xd_gguf_out_str(o, "general.architecture", arch) || xd_gguf_out_str(o, "general.name", name) ||
        xd_gguf_out_u32(o, "general.alignment", 32) ||
        xd_gguf_out_u32(o, KEY("block_count"), (uint32_t)c->n_layer) ||
        xd_gguf_out_u32(o, KEY("context_length"), (uint32_t)c->max_ctx) ||
        xd_gguf_out_u32(o, KEY("embedding_length"), (uint32_t)c->d_model) ||
        xd_gguf_out_u32(o, KEY("feed_forward_length"), (uint32_t)c->d_ff) ||
        xd_gguf_out_u32(o, KEY("attention.head_count"), (uint32_t)c->n_head) ||
        xd_gguf_out_u32(o, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_head) ||
        xd_gguf_out_u32(o, KEY("attention.key_length"), (uint32_t)c->head_dim) ||
        xd_gguf_out_u32(o, KEY("attention.value_length"), (uint32_t)c->head_dim) ||
        xd_gguf_out_f32(o, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps) ||
        xd_gguf_out_f32(o, KEY("rope.freq_base"), c->rope_theta) ||
        xd_gguf_out_u32(o, KEY("vocab_size"), (uint32_t)c->vocab_size) ||
        put_tokenizer(o, m->tok) || (c->student && put_student(o, c, base_arch)))
        goto done;
#undef KEY
    for (int i = 0; i < wr.n_w; i++) {
        const xd_weight *w = &wr.w[i];
        /* the student's mixer (feature maps, gates, mix) stays F32: only the products
         * xd_linear_model runs are quantised */
        wr.type[i] = w->ndim == 2 && xd_gguf_linear_name(w->gguf) ? type : GGML_F32;
        int64_t ne[2] = {w->cols, w->rows};
        size_t be, bb;
        xd_ggml_type_block(wr.type[i], &be, &bb);
        if (w->cols % (int64_t)be) {
            xd_err("%s: tensor '%s' has rows of %lld, not a multiple of %s's block of %zu (choose "
                   "another --type)", m->path, w->gguf, (long long)w->cols,
                   xd_ggml_type_name(type), be);
            goto done;
        }
        if (xd_gguf_out_tensor(o, w->gguf, wr.type[i], w->ndim, ne)) goto done;
    }
    /* Llama-3 RoPE scaling: the per-frequency divisors the loader applies */
    int half = c->head_dim / 2, scaled = 0;
    if (!(wr.rope = malloc((size_t)half * sizeof(float)))) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        wr.rope[i] = inv / m->rope_inv_freq[i];
        scaled |= wr.rope[i] != 1.0f;
    }
    int64_t ne_r[1] = {half};
    if (scaled && xd_gguf_out_tensor(o, "rope_freqs.weight", GGML_F32, 1, ne_r)) goto done;
    rc = xd_gguf_out_write(o, path, fill, &wr);
done:
    xd_gguf_out_free(o);
    free(wr.w);
    free(wr.type);
    free(wr.rope);
    free(wr.tmp);
    return rc;
}
