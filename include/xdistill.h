/* xdistill — public API.
 *
 * Conventions: functions that can fail return 0 on success and -1 on failure
 * (or NULL for constructors); the failure text, naming the file, the field and
 * what was expected, is then available from xd_last_error(). Library code never
 * exits the process. */
#ifndef XDISTILL_H
#define XDISTILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function declared in this header is the public API and is exported from
 * libxdistill.so; the library is compiled with hidden visibility, so nothing
 * else is (tests/check_exports.sh checks both). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ---- errors -------------------------------------------------------------- */

/* Text of the most recent error on this thread ("" if none). */
const char *xd_last_error(void);

/* ---- logging ------------------------------------------------------------- */

/* The library writes nothing to stdout or stderr by itself: every message it
 * has for a person (progress of long work, notices, warnings) goes to the
 * callback installed with xd_set_log, and without one it is dropped. Errors
 * are not logged: they are returned (xd_last_error). */
typedef enum {
    XD_LOG_PROGRESS = 1, /* the state of long work (training, data prep, perplexity,
                          * evaluation), reported again and again as it advances;
                          * `progress` describes it */
    XD_LOG_INFO = 2,     /* a notice: what was done or decided ("resuming from step 40",
                          * "merge: 2 experts ... -> DIR", one line per merge candidate) */
    XD_LOG_WARN = 3,     /* something worth a look; the work goes on ("the tokenizer has no
                          * EOS token", lines of a resume log that were dropped) */
} xd_log_level;

/* One report of long work (level XD_LOG_PROGRESS). A run of reports for one
 * piece of work shares the label and ends with a report with done = 1. */
typedef struct {
    const char *label;   /* the work: "pretrain", "stage2", "data prep", "ppl", an eval task */
    int64_t step, total; /* done so far, of total (steps, examples, tokens); total 0: not known */
    int64_t first;       /* the step this run began at (> 0 when it resumed) */
    double elapsed;      /* seconds since this run began */
    double eta;          /* estimated seconds to go; < 0 when not known */
    const char *detail;  /* the numbers of the moment, e.g. "loss 3.2100 | lr 1.00e-03 |
                          * 1234 tok/s"; "" when none */
    const char *status;  /* the whole state as one line for a display redrawn in place
                          * (e.g. with a bar): no newline, no control characters */
    int done;            /* 1: the last report of this work (a line redrawn in place can
                          * be ended now) */
} xd_progress_info;

/* level: an xd_log_level. msg: the message as one self-contained log line,
 * without a trailing newline (for XD_LOG_PROGRESS the plain form of the
 * state, e.g. "pretrain: step 10/100 (10%) loss 3.2100 | ... | elapsed 0:05,
 * ETA 0:45"). progress: the report for XD_LOG_PROGRESS, NULL for the other
 * levels. Both pointers are valid only during the call.
 *
 * The callback runs on the thread that called the library function that
 * logs (never on an OpenMP worker), synchronously: the work waits for it. It
 * must not call back into the library. Progress is reported at most about
 * ten times a second per piece of work, plus its done report; a callback
 * that writes a log file may keep fewer (the CLI keeps one every 5 s when
 * stderr is not a terminal). */
typedef void (*xd_log_fn)(void *user, int level, const char *msg, const xd_progress_info *progress);

/* Installs fn (called with user) for every later message of the process;
 * NULL (the default) drops them all. Not synchronised with work already
 * running on other threads: set it before starting any. */
void xd_set_log(xd_log_fn fn, void *user);

/* ---- model configuration ------------------------------------------------- */

typedef enum {
    XD_ARCH_LLAMA = 0, /* Llama, SmolLM2 (tied embeddings, GQA) */
    XD_ARCH_QWEN2,     /* q/k/v bias */
    XD_ARCH_QWEN3,     /* per-head RMSNorm on q and k */
    XD_ARCH_OLMO2,     /* post-attention / post-MLP norms, q/k norm over the full projection */
} xd_arch;

typedef enum {
    XD_QKNORM_NONE = 0,
    XD_QKNORM_HEAD, /* RMSNorm over each head's head_dim (Qwen3) */
    XD_QKNORM_FULL, /* RMSNorm over the whole q (n_head*head_dim) / k projection (OLMo-2) */
} xd_qknorm;

/* One attention head: layer and query head, both 0-based. */
typedef struct {
    int16_t layer, head;
} xd_head_ref;

/* Most global heads a student can have (docs/design.md, "Global heads"). */
#define XD_MAX_GLOBAL_HEADS 1024

/* Types of the keys/values a decoding state keeps for its global heads. */
typedef enum {
    XD_KV_F32 = 0,
    XD_KV_BF16 = 1,
    XD_KV_INT8 = 2,
    XD_KV_INT4 = 3,
    XD_KV_K8V4 = 4 /* keys as XD_KV_INT8, values as XD_KV_INT4 */
} xd_kv_dtype;

typedef struct {
    xd_arch arch;
    int n_layer;
    int d_model;
    int n_head;
    int n_kv_head;
    int head_dim;
    int d_ff;
    int vocab_size;      /* rows of the embedding matrix (may exceed the tokenizer's count) */
    int max_ctx;         /* trained context length */
    float rope_theta;
    float norm_eps;
    int tied_embeddings; /* LM head shares the token embedding */
    int qkv_bias;        /* q, k, v projections carry a bias (Qwen2) */
    xd_qknorm qk_norm;
    int post_norms;      /* OLMo-2: norms after attention and MLP, none before */
    /* Llama-3 rope scaling; factor == 0 means none */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    /* xLSTM hybrid student (docs/design.md, "Student layer"); student == 0: a plain transformer.
     * Every attention layer is then the hybrid mixer: sliding-window + sink
     * attention and an mLSTM on Hedgehog feature maps (d_φ = 2·head_dim),
     * mixed per head by a sigmoid gate. */
    int student;
    int window;         /* sliding window W (keys t−W+1 … t), ≥ 1 */
    int sinks;          /* sink tokens S (keys 0 … S−1 of the document), ≥ 0 */
    int chunk;          /* chunk length of the chunkwise mLSTM (training, prefill) */
    float mlstm_scale;  /* s applied to φ(q) (default 1/√d_φ) */
    float mlstm_eps;    /* ε of the mLSTM normaliser (default 1e-6) */
    float gate_softcap; /* gate pre-activations g → c·tanh(g/c); 0 = off (default 15) */
    /* Positions below sinks + window (the window still holds every earlier token of the
     * document) take the SWA branch alone, the teacher's attention exactly; the mLSTM
     * branch and the mix serve later positions (docs/design.md, "Mix"). config.json
     * "exact_in_window" (absent: false, students written before it). */
    int exact_in_window;
    uint64_t teacher_hash; /* the teacher it was converted from (xd_model_teacher_hash); 0 = unknown */
    uint64_t base_hash;    /* the Stage I checkpoint its Stage II started from (hash of that
                            * student's weight arena, set by `distill stage2`); 0 = none.
                            * `merge` only averages experts of one base. */
    /* Global heads (docs/design.md, "Global heads"): query heads kept as the teacher's full
     * causal attention (the mixer's output for them is that attention; their mLSTM branch
     * and mix gate are unused). Sorted by (layer, head), no duplicates, layer < n_layer,
     * head < n_head; config.json "global_heads": [[layer, head], ...]. */
    int n_global_heads;
    xd_head_ref global_heads[XD_MAX_GLOBAL_HEADS];
    /* The type of the global heads' keys/values in the decoding state (xd_kv_dtype): fp32,
     * bf16 (half the bytes), int8 with an fp16 scale per 32 values (0.27 of fp32) or 4-bit
     * codes with an fp16 scale per 32 values (0.14 of fp32), or int8 keys with 4-bit values
     * (k8v4); the attention reads them widened to fp32. config.json "global_kv_dtype":
     * "float32" | "bfloat16" | "int8" | "int4" | "k8v4" (absent: float32). Training is fp32
     * whatever the type. */
    int global_kv_dtype;
    /* The recurrent branch's memory (docs/design.md, "Gated delta rule"): XD_MEMORY_MLSTM
     * (the mLSTM's additive update, default) or XD_MEMORY_DELTA (the gated delta rule: the
     * same gates, feature maps and state size, but each write first erases what the key
     * held). config.json "memory_rule": "mlstm" | "gated_delta" (absent: mlstm). */
    int memory_rule;
    /* A bounded sparse cache beside the window (docs/design.md, "Sparse cache"; LoLA,
     * arXiv 2505.23666): per layer, up to this many key/value rows that left the window,
     * kept by how badly the recurrent state recalls them, and attended with the sinks and
     * the window by the SWA branch; 0 = none. Decoding only (training does not use it);
     * mLSTM memory only. config.json "sparse_cache" (absent: 0). */
    int sparse_cache;
} xd_config;

enum { XD_MEMORY_MLSTM = 0, XD_MEMORY_DELTA = 1 };

const char *xd_arch_name(xd_arch a);
/* "float32", "bfloat16", "int8", "int4", "k8v4" (config.json's global_kv_dtype); parse also
 * takes the command line's "f32" and "bf16": 0, or -1 for another name (no error set). */
const char *xd_kv_dtype_name(int dtype);
int xd_kv_dtype_parse(const char *name, int *dtype);

/* ---- tokenizer ----------------------------------------------------------- */

typedef struct xd_tokenizer xd_tokenizer;

enum { XD_TOKEN_NORMAL = 1, XD_TOKEN_UNKNOWN = 2, XD_TOKEN_CONTROL = 3, XD_TOKEN_USER = 4,
       XD_TOKEN_UNUSED = 5, XD_TOKEN_BYTE = 6 };

/* A tokenizer description in plain arrays; the GGUF and tokenizer.json
 * front-ends fill one and hand it to xd_tokenizer_create. */
typedef struct {
    int n_tokens;
    const char *const *tokens;  /* byte-level strings as in the vocabulary */
    const int *token_types;     /* XD_TOKEN_*; NULL: all normal */
    int n_merges;
    const char *const *merges;  /* "left right", rank = index */
    const char *pre;            /* pre-tokenizer name: "gpt2", "smollm", "llama3", "qwen2", ... */
    int bos_id, eos_id;         /* -1 if absent */
    int add_bos;
    const char *source;         /* file name, for error messages */
} xd_tokenizer_spec;

xd_tokenizer *xd_tokenizer_create(const xd_tokenizer_spec *spec);
void xd_tokenizer_free(xd_tokenizer *t);
/* Encode UTF-8 text. Special/added tokens written literally in the text are
 * matched when parse_special != 0. *ids is malloc'ed; the caller frees it. */
int xd_tokenizer_encode(const xd_tokenizer *t, const char *text, size_t len, int parse_special,
                        int32_t **ids, size_t *n_ids);
/* Decode ids back to UTF-8 bytes (malloc'ed, NUL-terminated). */
int xd_tokenizer_decode(const xd_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                        size_t *len);
/* Bytes of one token (decoded from byte-level form) appended to out; returns count or -1. */
int xd_tokenizer_token_bytes(const xd_tokenizer *t, int32_t id, char *out, size_t cap);
int xd_tokenizer_n_tokens(const xd_tokenizer *t);
const char *xd_tokenizer_piece(const xd_tokenizer *t, int32_t id); /* raw vocabulary string */
int xd_tokenizer_bos(const xd_tokenizer *t);
int xd_tokenizer_eos(const xd_tokenizer *t);
const char *xd_tokenizer_pre(const xd_tokenizer *t);
uint64_t xd_tokenizer_hash(const xd_tokenizer *t);

/* tokenizer.json (HF) front-end. bos / eos / add_bos come from
 * tokenizer_config.json in the same directory (bos_token, eos_token: a token
 * string, {"content": string, ...} or null; add_bos_token: true, false or
 * null); without that file there are none. A config that cannot be read, is
 * not valid JSON, has another type there, or names a token the vocabulary
 * lacks is an error naming the config file and the field. */
xd_tokenizer *xd_tokenizer_load_json(const char *path);
/* The tokenizer of a model: GGUF metadata, or DIR/tokenizer.json. */
xd_tokenizer *xd_tokenizer_load(const char *model_path);
/* Writes t as an HF tokenizer.json at path (BPE model, pre-tokenizer,
 * ByteLevel decoder, added tokens) plus tokenizer_config.json (bos, eos,
 * add_bos) in the same directory, each atomically. xd_tokenizer_load_json
 * reads it back to the same tokenizer (same xd_tokenizer_hash for
 * tokenizers built with a canonical pre-tokenizer name; llama.cpp aliases
 * come back as the name they behave as). Pre-tokenizer "default" has no
 * tokenizer.json form and is an error. */
int xd_tokenizer_save_json(const xd_tokenizer *t, const char *path);

/* ---- models --------------------------------------------------------------- */

typedef struct xd_model xd_model;

/* Load a model from a GGUF file or an HF directory (config.json + safetensors
 * [+ model.safetensors.index.json] + tokenizer.json). Weights are fp32. */
xd_model *xd_model_load(const char *path);
/* How a GGUF's quantised weights are held (HF directories: always fp32). */
typedef enum {
    XD_WEIGHTS_FP32 = 0,     /* every tensor dequantised to fp32 (what training needs) */
    XD_WEIGHTS_GGUF = 1,     /* the linear weights and embeddings of the types Q4_0, Q4_1,
                              * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K stay in the file's own
                              * blocks (mapped, never copied to fp32): one token's products
                              * run on the blocks with activations quantised as ggml does,
                              * several tokens' on dequantised tiles (sgemm), an embedding
                              * row is dequantised when looked up. For inference only:
                              * saving, hashing and training such a model are refused */
    XD_WEIGHTS_GGUF_ALL = 2, /* as XD_WEIGHTS_GGUF, and every product on the blocks, one
                              * row at a time (to measure the quantised activations'
                              * effect on perplexity) */
} xd_weights_mode;
xd_model *xd_model_load_weights(const char *path, xd_weights_mode mode);
/* Parses "fp32", "gguf" or "gguf-all" (the CLI's --weights); -1 for anything else. */
int xd_weights_mode_parse(const char *s);
void xd_model_free(xd_model *m);
/* Saves m as an HF directory: config.json, model.safetensors (fp32, HF
 * tensor names; a tied LM head is not stored) and, when the model has a
 * tokenizer, tokenizer.json + tokenizer_config.json. The directory is built
 * as DIR.tmp.<pid> and then put in DIR's place in one step, replacing a
 * previous DIR whole: DIR is always either the complete old or the complete
 * new model. On failure DIR is untouched and nothing is left behind. */
int xd_model_save(const xd_model *m, const char *dir);
const xd_config *xd_model_config(const xd_model *m);
const xd_tokenizer *xd_model_tokenizer(const xd_model *m);
size_t xd_model_n_params(const xd_model *m);

/* ---- the xLSTM hybrid student ------------------------------------------- */

typedef struct {
    int window;         /* sliding window W ≥ 1 (default 512) */
    int sinks;          /* sink tokens S ≥ 0 (default 4) */
    int chunk;          /* chunkwise mLSTM chunk length (default 64) */
    float gate_softcap; /* default 15; 0 = off */
    float mlstm_eps;    /* default 1e-6 */
    float mlstm_scale;  /* 0 = 1/√(2·head_dim) */
    int swa_only;       /* mix bias −1e4: o == 0 exactly, the mLSTM branch is off (the
                         * SWA-only baseline of the report) */
    int exact_in_window; /* xd_config.exact_in_window (default 1) */
    int n_global_heads; /* heads kept as full causal attention (xd_config); any order, no
                         * duplicates; default none */
    xd_head_ref global_heads[XD_MAX_GLOBAL_HEADS];
    int global_kv_dtype; /* their keys/values' type in the decoding state (xd_kv_dtype;
                          * default XD_KV_BF16) */
    int memory_rule;     /* xd_config.memory_rule (default XD_MEMORY_MLSTM) */
    int sparse_cache;    /* xd_config.sparse_cache: rows per layer (default 0: none) */
} xd_student_opts;

void xd_student_defaults(xd_student_opts *o);

/* Builds a student from a teacher (docs/design.md, "Conversion"): every teacher weight copied,
 * the mixer's new parameters initialised (feature maps A = I, a = 0; gate
 * projections 0, input-gate bias 0, forget-gate biases linspace(3, 6) over
 * the heads; mix weights 0 and bias 0, i.e. o = ½). The student takes over
 * the teacher's tokenizer (the teacher keeps none afterwards). The global
 * heads of o are sorted into the config. NULL on error (an option out of
 * range, a global head outside the model or given twice, out of memory). */
xd_model *xd_student_convert(xd_model *teacher, const xd_student_opts *o);

/* KV-cache inference state for one sequence. For a student it is the
 * constant-size decoding state (window + sinks + mLSTM state) and
 * max_tokens does not limit the length; a student with global heads also
 * keeps every key/value of their KV heads, in buffers that start at
 * max_tokens rows and double when full. */
typedef struct xd_kv xd_kv;
xd_kv *xd_kv_create(const xd_model *m, int max_tokens);
/* A teacher's cache whose keys/values are stored as dtype (xd_kv_dtype: XD_KV_F32 as
 * xd_kv_create, XD_KV_BF16 half the bytes, as llama.cpp's default f16 cache; INT8, INT4,
 * K8V4 less still): decoding reads the rows directly (kernels/attention_kv.c), a prompt
 * reads them widened. A student's window buffers take XD_KV_F32 or XD_KV_BF16 (others are
 * refused; sinks, sparse cache and mLSTM state stay fp32, its global heads have their own
 * xd_config.global_kv_dtype). An attention observer needs XD_KV_F32. */
xd_kv *xd_kv_create_typed(const xd_model *m, int max_tokens, int dtype);
void xd_kv_free(xd_kv *kv);
void xd_kv_reset(xd_kv *kv);
int xd_kv_pos(const xd_kv *kv);
/* dst becomes the state src holds (both made for the same model; a
 * teacher's dst needs max_tokens >= src's position; a student's grows as
 * needed): continuing either with the same tokens gives the same results bit
 * for bit. */
int xd_kv_copy(xd_kv *dst, const xd_kv *src);

/* Run n tokens starting at the cache's position, appending to it. If logits
 * is non-NULL it receives n*vocab floats when all_logits, else the last
 * position's vocab floats. */
int xd_forward(const xd_model *m, xd_kv *kv, const int32_t *tokens, int n, float *logits,
               int all_logits);

/* ---- evaluation ---------------------------------------------------------- */

/* −log softmax(logits)[target] (stable, in double). */
double xd_token_nll(const float *logits, int vocab, int target);
/* Sliding-window perplexity (HF convention): windows of ctx tokens every
 * stride tokens, each scoring the tokens the previous window did not.
 * Outputs the summed NLL and the number of scored tokens; ppl = exp(nll/n).
 * verbose: progress reports (XD_LOG_PROGRESS, label "ppl"). */
int xd_perplexity(const xd_model *m, const int32_t *ids, size_t n_ids, int ctx, int stride,
                  int verbose, double *nll, size_t *scored);

/* ---- sampling ------------------------------------------------------------ */

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} xd_sampler;

int xd_sample(const xd_sampler *s, float *logits, int vocab, uint64_t *rng_state);

/* ---- threads ------------------------------------------------------------- */

/* Number of threads used by BLAS and OpenMP (0 = all cores). Results are
 * reproducible at one thread count; another count may change the last bits
 * of the model's outputs (OpenBLAS splits its products over the threads, and
 * the split can change the rounding). Fails (-1, xd_last_error() says which
 * package to install) when the OpenBLAS loaded at run time is not the OpenMP
 * build: the threading relies on one OpenMP pool. */
int xd_set_threads(int n);
/* 0 when the OpenBLAS loaded at run time is the OpenMP build, else -1 with
 * the reason (the pthreads or serial build, and the package to install). */
int xd_check_blas(void);
int xd_get_threads(void);
/* The OpenBLAS core type a program should ask for (OPENBLAS_CORETYPE, read
 * when OpenBLAS loads) or NULL. Non-NULL only when the variable is unset and
 * OpenBLAS fell back to its generic Prescott kernels on a CPU it does not know
 * that has AVX-512 F/BW/DQ/VL ("SkylakeX") or AVX2 with FMA ("Haswell"). The
 * command-line tool re-executes itself once with it. */
const char *xd_blas_core_hint(void);

/* ---- compute precision --------------------------------------------------- */

typedef enum {
    XD_COMPUTE_FP32 = 0, /* default: every product in fp32 (OpenBLAS) */
    XD_COMPUTE_BF16 = 1, /* batched products (prefill, training forward and backward)
                          * with bf16 operands and fp32 accumulation (oneDNN);
                          * weights, gradients and the optimiser stay fp32 */
} xd_compute;

/* Process-wide. XD_COMPUTE_BF16 fails (-1) when the build has no oneDNN or
 * the CPU no bf16 matmul. One token at a time (decode) always runs in fp32.
 * Within one training step (xd_tm_step) each weight matrix is rounded to
 * bf16 once; the copies are dropped at the next step, so they never go
 * stale across optimiser steps. */
int xd_set_compute(xd_compute mode);
xd_compute xd_get_compute(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif
