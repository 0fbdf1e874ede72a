/* LoRA on the engine: a PEFT adapter (io/peft_adapter.h) bound to a loaded
 * model. Binding checks that every module of the adapter is a linear layer of
 * the model with the adapter's shapes, and copies A and B into one flat
 * parameter arena (and, for training, a gradient arena of the same layout),
 * so the optimiser and the checkpoints see one vector, as for full training.
 *
 * Targets are the seven linear layers of every decoder block, named as HF
 * and PEFT name them: self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj
 * ("model.layers.L.self_attn.q_proj"). A student has the same seven (its
 * mixer reads q, k, v and writes through o_proj) and two more, its mixer's gate
 * projections self_attn.igate and self_attn.fgate ([nh][d] each: the input and
 * forget gate pre-activations, before the soft-cap). The layer computes
 *   y = W x + scaling · B (A x)           (docs/design.md, "LoRA on the engine") */
#ifndef XD_LORA_H
#define XD_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "io/peft_adapter.h"
#include "model/model.h"

enum { XD_LORA_Q, XD_LORA_K, XD_LORA_V, XD_LORA_O, XD_LORA_GATE, XD_LORA_UP, XD_LORA_DOWN,
       XD_LORA_IGATE, XD_LORA_FGATE, XD_LORA_NT };
/* The seven linear layers every model has (the default targets); the mixer's
 * gate projections (IGATE, FGATE) exist only in a student. */
#define XD_LORA_LINEAR_TARGETS ((1u << XD_LORA_IGATE) - 1)
#define XD_LORA_MIXER_TARGETS ((1u << XD_LORA_IGATE) | (1u << XD_LORA_FGATE))

/* 0 when model m has every target in the mask; else an error naming the first
 * mixer target asked of a model that is not a student. */
int xd_lora_targets_check(const xd_model *m, unsigned targets);

/* PEFT's short name of a target ("q_proj", ..., "down_proj", "igate", "fgate"). */
const char *xd_lora_target_name(int t);
/* The target named s: "q_proj" or its short form "q" (also "gate", "up", "down"),
 * or a student's "igate", "fgate".
 * -1 with an error listing the available names. */
int xd_lora_target_parse(const char *s);
/* The module path of target t in layer l: "model.layers.L.self_attn.q_proj". */
void xd_lora_module_path(char *buf, size_t cap, int l, int t);
/* The layer and target of a module path ("model.layers.3.mlp.up_proj"), or -1
 * with an error naming src, the module and the model's modules. */
int xd_lora_locate(const xd_model *m, const char *src, const char *module, int *l, int *t);
/* The base weight [out][in] of target t in layer l, with its features (NULL for
 * a gate target of a model that is not a student). */
float *xd_lora_base_weight(const xd_model *m, int l, int t, int *in, int *out);

/* One adapted linear layer on the engine. */
typedef struct {
    int rank;           /* 0: this layer has no adapter */
    int in, out;
    float scaling;
    float *A, *B;       /* [rank][in], [out][rank]: into the set's parameter arena */
    float *dA, *dB;     /* the same into the gradient arena (NULL without one) */
} xd_lora_lin;

typedef struct xd_lora_set {
    xd_lora_adapter *ad;       /* the adapter it was bound from (not owned) */
    int n_layer;
    xd_lora_lin *lin;          /* [n_layer][XD_LORA_NT] */
    float *param, *grad;       /* every module's A then B, in the adapter's module order */
    size_t n_param;
    int max_rank;
} xd_lora_set;

/* Binds adapter a to model m: every module must be a target of m (else an
 * error naming the module and the model's available modules) with A [r][in]
 * and B [out][r] of the base layer's features. with_grads: also a zeroed
 * gradient arena. */
int xd_lora_bind(xd_lora_set *s, const xd_model *m, xd_lora_adapter *a, int with_grads);
void xd_lora_unbind(xd_lora_set *s);
/* The set's tensors as weight entries into its parameter arena, named as in
 * PEFT's file ("base_model.model.<module>.lora_A.weight", then lora_B),
 * for the optimiser and the checkpoints (allocated; the caller frees). */
int xd_lora_weights(const xd_lora_set *s, xd_weight **out, int *n);
/* Stores the set's parameters into its adapter and writes it to dir (PEFT files). */
int xd_lora_set_save(xd_lora_set *s, const char *dir);

/* The adapter of target t in layer l, or NULL (no set, or not adapted). */
static inline const xd_lora_lin *xd_lora_get(const xd_lora_set *s, int l, int t) {
    if (!s || l >= s->n_layer) return NULL;
    const xd_lora_lin *x = &s->lin[(size_t)l * XD_LORA_NT + t];
    return x->rank > 0 ? x : NULL;
}

/* Copies the set's parameters back into the modules of a (the adapter it was
 * bound from, or one with the same modules and ranks). */
int xd_lora_store(const xd_lora_set *s, xd_lora_adapter *a);
/* Copies the parameters of a (same modules and ranks as the set's) into the set. */
int xd_lora_fetch(xd_lora_set *s, const xd_lora_adapter *a, const char *what);

/* A new adapter for m with every layer's targets (mask: bit t for target t)
 * at rank r and alpha; A and B zero. base_model is recorded in the config,
 * m's weights hash as base_hash. */
xd_lora_adapter *xd_lora_for_model(const xd_model *m, const char *base_model, unsigned targets,
                                   int r, double alpha, int use_rslora);
/* PEFT's default initialisation (init_lora_weights=True): A from
 * kaiming_uniform_(a=√5), i.e. U(−1/√in, 1/√in), and B = 0, so the adapted
 * model starts as the base. Seeded with core/rng.h. */
void xd_lora_init_random(xd_lora_adapter *a, uint64_t seed);

/* When the adapter records the hash of the base it was made for (base_hash),
 * checks that m is that base: -1 with an error naming src, both hashes and what
 * to do. An adapter without one (PEFT's) passes. */
int xd_lora_check_base(const xd_lora_adapter *a, const xd_model *m, const char *src);

/* Folds every module into m's weights: W += scaling · B·A (sign = −1 takes it
 * out again). The adapter must fit m (as xd_lora_bind checks). */
int xd_lora_merge(xd_model *m, const xd_lora_adapter *a, float sign);

#endif
