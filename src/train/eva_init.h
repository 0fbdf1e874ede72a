/* EVA on the engine (docs/design.md, "EVA on the engine"): the activation pass
 * that feeds src/train/eva.h's incremental PCA from a model's forward, PEFT's
 * loop around it, and the adapter it gives.
 *
 * Per target linear layer the input rows of the kept tokens go into an
 * incremental PCA of k = rint(ρ·r) components. A position is kept iff its own
 * input token is not a context token of the data's context mask (PEFT keeps
 * position i iff labels[i] != -100, and HF's labels are the inputs with -100
 * on the prompt; the loss shifts them later), so without a mask every
 * position is kept. Layers that read the same input share one PCA (q, k, v
 * read the attention norm's output, gate and up the MLP norm's; the first
 * selected of each group owns it, with the group's largest k). After
 * every forward pass the ranks are redistributed (xd_eva_rank_distribution
 * over the explained-variance ratios) and a layer stops updating once the
 * cosines of its assigned components to the previous step are all >= τ, or at
 * max_steps updates; a layer whose share grows again resumes, as in PEFT. The
 * pass ends when every layer has stopped. A = the first rank components of
 * the layer's input, B = 0; layers left at rank 0 get no adapter; alpha is
 * rescaled by rank / r. */
#ifndef XD_EVA_INIT_H
#define XD_EVA_INIT_H

#include <stdint.h>

#include "eva.h"
#include "io/peft_adapter.h"
#include "io/tokdata.h"
#include "model/model.h"

typedef struct {
    unsigned targets;   /* bit t for lora.h's target t */
    int r;              /* rank per layer before redistribution (the budget is r × layers) */
    double alpha;
    int use_rslora;
    double rho;         /* cap per layer: rint(rho · r) (PEFT's default 2) */
    double tau;         /* convergence threshold on the cosines (0.99) */
    int max_steps;      /* updates per layer at most (PEFT has no cap) */
    int batch, seq;     /* rows × tokens per forward pass */
    int adjust_alpha;   /* alpha · rank / r (PEFT's adjust_scaling_factors, default on) */
} xd_eva_opts;

/* PEFT's defaults: rho 2, tau 0.99, adjust_alpha on; max_steps 100, batch 4 × 256. */
void xd_eva_defaults(xd_eva_opts *o);

/* The PCA state of every input group (named by its owner's module path). */
typedef struct {
    int n;
    xd_ipca **pca;
    char **names;
} xd_eva_state;

void xd_eva_state_free(xd_eva_state *s);

typedef struct {
    int passes;           /* forward passes */
    int64_t tokens_seen;  /* input positions of those passes */
    int64_t tokens_kept;  /* of which kept: input token not a context token */
    int groups, converged, capped; /* input groups; how they stopped */
    double seconds, pca_seconds;
} xd_eva_report;

/* Runs the activation pass of m over the train split of data (from its start)
 * and fills st. Errors: data shorter than one batch (naming the file), a cap
 * k above a layer's input features, a group that never received k kept rows
 * within max_steps passes. */
int xd_eva_collect(xd_model *m, const xd_tokdata *data, const xd_eva_opts *o, xd_eva_state *st,
                   xd_eva_report *rep);

/* The EVA adapter for m from a state (collected, or loaded with xd_eva_load for
 * another r or rho: no forward pass; the state must hold rint(rho · r)
 * components per group). base_model is recorded in adapter_config.json, with
 * init_lora_weights "eva" and eva_config {rho, tau, ...}. NULL + error. */
xd_lora_adapter *xd_eva_adapter(const xd_model *m, const char *base_model, const xd_eva_state *st,
                                const xd_eva_opts *o);

#endif
