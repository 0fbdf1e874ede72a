/* Training checkpoints. Layout under OUT:
 *   OUT/ckpt-STEP/model/         config.json, model.safetensors, tokenizer.json
 *                                (with LoRA: OUT/ckpt-STEP/adapter/, PEFT's two files; the
 *                                frozen base is not saved)
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
/* lora: NULL for full training; else the bound adapters that train (their
 * moments are the optimiser's). */
int xd_ckpt_save(const char *out_dir, const xd_model *m, struct xd_lora_set *lora,
                 const xd_adamw *opt, const xd_ckpt_state *st);
/* Loads OUT/checkpoint into m (same architecture) or the bound adapters,
 * opt and st. */
int xd_ckpt_load(const char *out_dir, xd_model *m, struct xd_lora_set *lora, xd_adamw *opt,
                 xd_ckpt_state *st);
/* 1 if OUT/checkpoint exists. */
int xd_ckpt_exists(const char *out_dir);

#endif
