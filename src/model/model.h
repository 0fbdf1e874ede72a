/* The transformer teacher: fp32 weights in one arena, and the KV cache. */
#ifndef XD_MODEL_H
#define XD_MODEL_H

#include "xdistill.h"

/* Weights of one decoder layer. Matrices are row-major [out][in] (as in
 * PyTorch's nn.Linear and ggml). Optional tensors are NULL when absent. */
typedef struct {
    float *attn_norm;             /* [d] input norm (absent for OLMo-2) */
    float *wq, *wk, *wv, *wo;     /* [nh*hd][d], [nkv*hd][d], [nkv*hd][d], [d][nh*hd] */
    float *bq, *bk, *bv;          /* Qwen2 biases */
    float *q_norm, *k_norm;       /* [hd] (Qwen3) or [nh*hd]/[nkv*hd] (OLMo-2) */
    float *post_attn_norm;        /* OLMo-2: norm of the attention output */
    float *ffn_norm;              /* [d] pre-MLP norm (absent for OLMo-2) */
    float *w_gate, *w_up, *w_down; /* [ff][d], [ff][d], [d][ff] */
    float *post_ffn_norm;         /* OLMo-2: norm of the MLP output */
    /* student (cfg.student): the hybrid mixer's new parameters (docs/design.md, "Conversion") */
    float *fmq_A, *fmq_b;         /* Hedgehog map of q: A [nh][hd][hd] (z = u·A), bias [nh][hd] */
    float *fmk_A, *fmk_b;         /* Hedgehog map of k, one per query head (each reads its
                                   * KV group's key): [nh][hd][hd], [nh][hd] */
    float *w_ig, *w_fg;           /* gate projections [nh][d] each; w_fg = w_ig + nh·d, so
                                   * w_ig is also the stacked [2·nh][d] matrix (ĩ then f̃) */
    float *b_ig, *b_fg;           /* [nh] each; b_fg = b_ig + nh */
    float *w_mix, *b_mix;         /* mix gate: [nh][3·hd] over [q_h; k_g; v_g], [nh] */
} xd_layer;

struct xd_model {
    char path[512];
    xd_config cfg;
    xd_tokenizer *tok;
    float *arena;        /* every weight lives here */
    size_t arena_floats;
    float *embed;        /* [V][d] */
    float *final_norm;   /* [d] */
    float *lm_head;      /* [V][d]; == embed when tied */
    xd_layer *layers;
    float *rope_inv_freq; /* [hd/2] incl. Llama-3 scaling */
    struct xd_qweights *q; /* quantised copies for decoding (qweights.h), or NULL */
};

struct xd_kv {
    int max_tokens, pos;
    int n_layer, kv_dim;
    float *k, *v; /* [n_layer][max_tokens][kv_dim] (teacher, dtype XD_KV_F32) */
    int dtype;    /* teacher: the rows' type (xd_kv_dtype), not F32: rows in kb / vb;
                   * student: its window buffers' (F32 or BF16) */
    uint8_t *kb, *vb; /* [n_layer][max_tokens][n_kv] rows of xd_kv_row_bytes(key / value
                       * type, head_dim) bytes */
    size_t krb, vrb;  /* those row sizes */
    size_t kpos, vpos; /* teacher: bytes of one position's keys / values (any dtype) */
    /* student: a state of constant size, whatever the length (docs/design.md, "Decoding state") */
    int student, window, sinks, n_head, dphi, head_dim;
    float *sk, *sv;       /* sink keys/values [n_layer][sinks + scap][kv_dim]: positions
                           * 0..S−1, then the sparse cache's rows */
    int scap;             /* cfg.sparse_cache: rows of the sparse cache per layer */
    int *ccount;          /* [n_layer] rows of the sparse cache in use */
    float *cscore;        /* [n_layer][scap] each cached row's recall error */
    int64_t cpos;         /* the first position ≥ S not yet offered to the sparse cache */
    int64_t *cexact;      /* [n_layer] the first query position whose SWA branch misses an
                           * earlier row: the piece after the cache first dropped one
                           * (INT64_MAX: none dropped yet; docs/design.md, "Sparse cache") */
    void *rk, *rv;        /* window buffers [n_layer][2·window][kv_dim] of dtype (F32 or BF16):
                           * the last keys/values of positions ≥ S, contiguous; when full,
                           * the newest W−1 move to the front (amortised: one row copy per
                           * token) */
    int64_t wcount, wstart; /* window buffer: entries [0, wcount) hold positions wstart … */
    float *C, *n, *m;     /* mLSTM state [n_layer][nh][dphi][hd], [n_layer][nh][dphi], [n_layer][nh] */
    float *mx_scratch;    /* the mixer's scratch, grown to the largest call (mx_cap floats) */
    size_t mx_cap;
    /* student with global heads (docs/design.md, "Decoding state"): every key/value of each
     * KV head a global query head reads, per (layer, KV head) pair in the order of
     * cfg.global_heads; rows 0 … pos−1 used, gcap allocated (doubles when full) */
    int n_gkv;
    int64_t gcap;
    int gkv_dtype;        /* cfg.global_kv_dtype (xd_kv_dtype): key rows of its key row type,
                           * value rows of its value row type (xd_kv_key_type/_value_type) */
    void **gk, **gv;      /* [n_gkv] buffers of [gcap][head_dim] elements */
};

/* Element counts of every weight, computed from the config (so loaders and
 * the arena agree). Returns the total. */
size_t xd_model_layout(const xd_config *c, xd_model *m, float *base);

/* Checks a config for impossible shapes; errors name `source`. */
int xd_config_validate(const xd_config *c, const char *source);

/* One named weight of the model: the HF name, the GGUF name and its place in
 * the arena. Shapes follow PyTorch ([rows][cols]);
 * vectors have ndim = 1, rows = 1. */
typedef struct {
    char hf[96], gguf[64];
    float *ptr;
    int ndim;
    int64_t rows, cols; /* ndim == 1: rows = 1, cols = length */
} xd_weight;

/* Lists every weight of m (allocated; caller frees). Tied LM heads are not listed. */
int xd_model_weights(const xd_model *m, xd_weight **out, int *n);

/* Allocates the arena for m->cfg and lays the weights out in it. */
int xd_model_alloc(xd_model *m);

/* Loaders fill m->cfg, m->tok and the weights. */
int xd_model_load_gguf(xd_model *m, const char *path, xd_weights_mode mode);
int xd_model_load_hf(xd_model *m, const char *dir);

/* llama.cpp's converter permutes the rows of Llama's q/k projections so that RoPE rotates
 * adjacent pairs; we keep HF's half-split layout. Within each head of hd rows, GGUF row
 * 2i + j holds HF row j·hd/2 + i (i < hd/2, j ∈ {0, 1}). Rows of any type: row_bytes each
 * (fp32 rows, or a row of quantised blocks). model_gguf.c. */
void xd_gguf_unpermute_rows(void *dst, const void *src, int64_t n_heads, int64_t hd,
                            size_t row_bytes);
/* Whether GGUF stores w's rows permuted as above (Llama's q and k projections). */
int xd_gguf_permuted(const xd_config *c, const xd_weight *w);
/* The inverse: HF rows into GGUF's order (the GGUF writer). */
void xd_gguf_permute_rows(void *dst, const void *src, int64_t n_heads, int64_t hd,
                          size_t row_bytes);
/* A student's general.architecture in GGUF; its teacher's is xdistill_hybrid.base_architecture
 * and every hyper-parameter key has the xdistill_hybrid. prefix. */
#define XD_STUDENT_GGUF_ARCH "xdistill_hybrid"
/* Whether a GGUF tensor name is one of the products xd_linear_model runs (embedding, LM
 * head, q/k/v/output, gate/up/down): the weights that may stay in blocks. */
int xd_gguf_linear_name(const char *gguf);
/* "llama", "qwen2", "qwen3", "olmo2"; NULL for other architectures. */
const char *xd_arch_gguf_name(xd_arch a);
/* Writes m (fp32 weights) as a GGUF v3 file xd_model_load reads (and llama.cpp, for a
 * teacher architecture): general.architecture and its hyper-parameters, the tokenizer
 * (tokenizer.ggml.*), 1-D tensors as F32 and the products' matrices (xd_gguf_linear_name)
 * as `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K: kernels/quantize.c), Llama's
 * q/k rows in GGUF's order, a Llama-3 RoPE scaling as rope_freqs.weight. A student is
 * architecture xdistill_hybrid with its own fields (window, sinks, chunk_size, mlstm_*,
 * gate_softcap, exact_in_window, memory_rule, sparse_cache, teacher/base hash,
 * global_heads, global_kv_dtype) and its mixer's tensors in F32. Atomic (PATH.tmp.<pid>, then renamed). A
 * matrix whose rows are not a multiple of the type's block is an error naming it.
 * model_gguf_write.c. */
int xd_model_save_gguf(const xd_model *m, const char *path, uint32_t type);

/* Computes rope_inv_freq from cfg (theta, Llama-3 scaling) unless set. */
int xd_model_init_rope(xd_model *m);

/* The teacher hash (model_hash.c): core/hash.h's xd_hash64 over a tag and the
 * config fields that change the logits (architecture, shapes, RoPE theta and
 * scaling, norm eps, tied head, biases, q/k norm, post norms; not max_ctx),
 * chained over the weight arena as loaded in fp32 (every weight, the untied
 * LM head included) and the RoPE frequencies. So the same weights give the
 * same hash whether read from an HF directory or an F32 GGUF; another
 * quantisation gives another one. Top-k logit files (io/topk_logits.h) and
 * students (cfg.teacher_hash) store it; its value must never change. */
uint64_t xd_model_teacher_hash(const xd_model *m);

#endif
