/* LoRA adapters in HuggingFace PEFT's file format: a directory holding
 *   adapter_config.json        the LoraConfig (peft_type "LORA", r, lora_alpha, ...)
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight  [rank][in]
 *                              base_model.model.<module>.lora_B.weight  [out][rank]
 * where <module> is the linear layer's path in the base model
 * ("model.layers.0.self_attn.q_proj"). The layer computes
 *   y = W x + scaling * B (A x),  scaling = alpha / rank  (alpha / sqrt(rank) with rsLoRA)
 * with rank and alpha per module: rank_pattern / alpha_pattern keys are regexes
 * matched PEFT's way, re.match(r"(.*\.)?(KEY)$", module), the first matching key in
 * the file's order winning; otherwise r / lora_alpha.
 *
 * Only the file layer: nothing here applies an adapter to a model. Configurations
 * the engine will not reproduce are refused with an error naming the file and
 * the field, never ignored (DoRA, biases, modules_to_save, fan_in_fan_out,
 * embedding LoRA, layer replication, QALoRA, target_parameters, initialisations
 * that rewrite the base weights such as PiSSA or LoftQ; docs/design.md,
 * "LoRA adapters (PEFT format)"). */
#ifndef XD_PEFT_ADAPTER_H
#define XD_PEFT_ADAPTER_H

#include <stdint.h>

/* One adapted linear layer. */
typedef struct {
    char *module;        /* path in the base model: "model.layers.0.self_attn.q_proj" */
    int rank;            /* rows of A, columns of B; > 0 */
    int64_t in, out;     /* the base layer's input and output features */
    double alpha;        /* from alpha_pattern or lora_alpha */
    double scaling;      /* alpha / rank, or alpha / sqrt(rank) with use_rslora */
    float *A;            /* [rank][in] */
    float *B;            /* [out][rank] */
} xd_lora_module;

/* eva_config of a LoraConfig (PEFT's EvaConfig); only kept here (the math of EVA is
 * src/train/eva.h). */
typedef struct {
    double rho, tau;
    int use_label_mask, label_mask_value, whiten, adjust_scaling_factors;
} xd_eva_config;

/* Names matched PEFT's way against module paths: a list (a name matches an entry
 * equal to it or ending in "." + entry), or one regex that must match the whole
 * name; "all-linear" (any case) stands for every linear layer. */
typedef struct {
    char **names;
    int n;
    char *regex; /* non-NULL: the string form (names unused) */
} xd_lora_names;

typedef struct {
    char *source;            /* the directory it was loaded from; NULL when built in memory */
    char *base_model;        /* base_model_name_or_path; NULL when null */
    int r;                   /* the default rank */
    double lora_alpha;       /* the default alpha (an integer in most files) */
    int use_rslora;
    double lora_dropout;     /* training only; kept so a saved file says the same */
    char *init_lora_weights; /* "true", "false", "gaussian", "eva" or "orthogonal" */
    xd_lora_names target_modules; /* empty when saving: the modules' paths are written */
    xd_lora_names exclude_modules;
    int has_eva;             /* eva_config was an object */
    xd_eva_config eva;
    int n_modules;
    xd_lora_module *modules; /* sorted by module path */
    uint64_t base_hash;      /* the base model's weights hash (model/model.h's
                              * xd_model_teacher_hash) the adapter was made for; 0 =
                              * unknown (PEFT's files). Kept in adapter_model.safetensors'
                              * metadata as "xdistill_base_hash" (16 hex digits), which
                              * PEFT ignores */
} xd_lora_adapter;

/* Reads DIR/adapter_config.json and DIR/adapter_model.safetensors (F32, F16 or
 * BF16 tensors; stored here as fp32). Every module's rank comes from its A/B
 * shapes and must agree with rank_pattern / r; alpha from alpha_pattern /
 * lora_alpha; every module must be one target_modules selects (and
 * exclude_modules does not). NULL + xd_last_error() naming the file, the field or
 * tensor, and what was expected. */
xd_lora_adapter *xd_lora_load(const char *dir);

/* Writes DIR atomically (src/io/atomic.h; an existing DIR is replaced as a
 * whole, files of its own included): adapter_config.json as PEFT writes it
 * (peft_type "LORA", task_type "CAUSAL_LM", rank_pattern / alpha_pattern holding
 * the full path of each module whose rank / alpha differs from r / lora_alpha)
 * and adapter_model.safetensors in F32. Checks first that every module is
 * consistent (rank > 0, finite values, scaling as computed from alpha and rank,
 * targeted by target_modules) and that the written patterns give each module its
 * rank and alpha back. */
int xd_lora_save(const xd_lora_adapter *a, const char *dir);

void xd_lora_free(xd_lora_adapter *a);

/* The module with this path, or NULL. */
const xd_lora_module *xd_lora_find(const xd_lora_adapter *a, const char *module);

/* Checks that the adapter's module at this path fits a base linear layer of
 * in -> out features (A [rank][in], B [out][rank]). -1 with an error naming the
 * module and both shapes, or saying it is missing. */
int xd_lora_check_module(const xd_lora_adapter *a, const char *module, int64_t in, int64_t out);

/* An empty adapter to fill in memory: init_lora_weights "true", no dropout, an
 * empty target_modules (xd_lora_save then writes the modules' paths). */
xd_lora_adapter *xd_lora_new(const char *base_model, int r, double lora_alpha, int use_rslora);

/* A copy of a's modules (paths, ranks, alphas, A, B) and of r, lora_alpha,
 * use_rslora, base_model and base_hash, as xd_lora_new makes it. NULL + error. */
xd_lora_adapter *xd_lora_copy(const xd_lora_adapter *a);

/* Adds a module: A and B zero-filled, scaling from alpha, rank and a->use_rslora.
 * The modules stay sorted (pointers into a->modules are invalidated). Refuses a
 * duplicate path, rank <= 0, in or out <= 0, a non-finite alpha. */
xd_lora_module *xd_lora_add_module(xd_lora_adapter *a, const char *module, int rank, int64_t in,
                                   int64_t out, double alpha);

/* PEFT's scaling for a module of this rank and alpha. */
double xd_lora_scaling(double alpha, int rank, int use_rslora);

#endif
