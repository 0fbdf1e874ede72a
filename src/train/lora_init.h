/* Initialising a LoRA adapter for a model (docs/design.md, "LoRA on the engine"):
 *   random  PEFT's default (init_lora_weights=True): A Kaiming-uniform, B = 0;
 *   pissa   PiSSA (Meng et al. 2024; PEFT's init_lora_weights="pissa"): from the
 *           top-r singular triplets of each base weight W = U Σ Vᵀ,
 *             A = diag(√(σ/s)) V_rᵀ,  B = U_r diag(√(σ/s)),  s = the scaling,
 *           so s·B·A is W's best rank-r part, and the base keeps the residual
 *           W − s·B·A. Trained adapters are written as a plain LoRA of the original
 *           base with xd_lora_pissa_convert;
 *   eva     EVA: needs activations (not available yet). */
#ifndef XD_LORA_INIT_H
#define XD_LORA_INIT_H

#include <stdint.h>

#include "io/peft_adapter.h"
#include "model/model.h"

typedef enum { XD_LORA_INIT_RANDOM, XD_LORA_INIT_PISSA, XD_LORA_INIT_EVA } xd_lora_init_kind;

/* "random" (also "true", PEFT's name), "pissa" or "eva"; -1 with an error. */
int xd_lora_init_parse(const char *s, xd_lora_init_kind *kind);

typedef struct {
    xd_lora_init_kind kind;
    unsigned targets;   /* bit t for lora.h's target t */
    int r;
    double alpha;
    int use_rslora;
    uint64_t seed;      /* random */
} xd_lora_init_opts;

/* A new adapter for every block's targets of m, initialised as o->kind says
 * (PiSSA also rewrites m's weights to the residual). base_model is recorded
 * in adapter_config.json. NULL + error. */
xd_lora_adapter *xd_lora_init(xd_model *m, const char *base_model, const xd_lora_init_opts *o);

/* PiSSA's adapter after training (A, B; trained from init's A0, B0 on the
 * residual base) as a LoRA of the ORIGINAL base, as PEFT's
 * path_initial_model_for_weight_conversion does: the change
 *   s·B·A + (W − s·B0·A0) − W = s·(B·A − B0·A0)
 * is the rank-2r adapter A' = [A; A0], B' = [B, −B0] with the same scaling
 * (alpha doubled; ×√2 with rsLoRA). NULL + error. */
xd_lora_adapter *xd_lora_pissa_convert(const xd_lora_adapter *trained,
                                       const xd_lora_adapter *init);

#endif
