/* LoRA options shared by `xdistill lora` and `distill stage2 --trainable lora`. */
#ifndef XD_LORA_ARGS_H
#define XD_LORA_ARGS_H

#include "train/lora_init.h"
#include "train/train.h"

/* Defaults: rank 8, alpha 8 (PEFT's), all seven targets, random init, seed 1. */
void lora_args_defaults(xd_lora_init_opts *o);
/* If argv[*i] is a LoRA option (--r, --alpha, --rslora, --targets, --init,
 * --lora-seed), parses it into o and returns 1; 0 if it is not one; -1 on a
 * bad value (error printed). */
int lora_arg(int argc, char **argv, int *i, xd_lora_init_opts *o);
extern const char *lora_args_usage;

/* The adapter for training m (o->lora set; with PiSSA, m's weights become the
 * residual and *pissa0 receives a copy of the initial adapter, o->lora_pissa0).
 * NULL + the library's error. The caller frees both. */
xd_lora_adapter *lora_prepare(xd_model *m, const char *base_name, const xd_lora_init_opts *io,
                              xd_train_opts *o, xd_lora_adapter **pissa0);

#endif
