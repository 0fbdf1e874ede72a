/* Training checkpoints. Layout under OUT:
 *   OUT/ckpt-STEP/model/         config.json, model.safetensors, tokenizer.json
 *                                (with LoRA: OUT/ckpt-STEP/adapter/, PEFT's two files; the
 *                                frozen base is not saved)
 *                                (with an objective's own parameters: OUT/ckpt-STEP/
 *                                params.safetensors, its tensors by name)
 *   OUT/ckpt-STEP/optimizer.safetensors   AdamW moments ("NAME.exp_avg", "NAME.exp_avg_sq")
 *   OUT/ckpt-STEP/state.json     step, data cursor, optimiser step, options
 *   OUT/checkpoint -> ckpt-STEP  symlink, swapped atomically (rename)
 * A checkpoint directory is written as ckpt-STEP.tmp and renamed when
 * complete, then the symlink is swapped, then older checkpoints are removed:
 * a crash at any point leaves OUT/checkpoint naming a complete checkpoint. */
#ifndef XD_CHECKPOINT_H
#define XD_CHECKPOINT_H

#include <stdint.h>

#include "optim.h"
#include "xdistill.h"

typedef struct {
    int64_t step;        /* optimiser steps done */
    uint64_t cursor;     /* data cursor of the train split */
    int64_t tokens_seen;
    double elapsed;      /* seconds of training so far */
    /* options that must not change on resume */
    int batch, seq, accum;
    int64_t steps;
} xd_ckpt_state;

struct xd_lora_set;
struct xd_param_groups;
/* lora: NULL for full training; else the bound adapters that train (their
 * moments are the optimiser's). own: NULL, or an objective's own parameters
 * (train.h), which are then what is saved (the model is not). */
int xd_ckpt_save(const char *out_dir, const xd_model *m, struct xd_lora_set *lora,
                 const struct xd_param_groups *own, const xd_adamw *opt,
                 const xd_ckpt_state *st);
/* Loads OUT/checkpoint into m (same architecture), the bound adapters or the
 * objective's own parameters, opt and st. */
int xd_ckpt_load(const char *out_dir, xd_model *m, struct xd_lora_set *lora,
                 struct xd_param_groups *own, xd_adamw *opt, xd_ckpt_state *st);
/* An objective's own parameters (every tensor of the groups, by name, F32) as
 * a safetensors file, written atomically; and read back (each tensor must be
 * there with its element count; errors name the file and the tensor). */
int xd_params_save(const char *path, const struct xd_param_groups *own);
int xd_params_load(const char *path, struct xd_param_groups *own);
/* 1 if OUT/checkpoint exists. */
int xd_ckpt_exists(const char *out_dir);

#endif
