/* LoRA options shared by `xdistill lora` and `distill stage2 --trainable lora`. */
#ifndef XD_LORA_ARGS_H
#define XD_LORA_ARGS_H

#include "train/eva_init.h"
#include "train/lora_init.h"
#include "train/train.h"

typedef struct {
    xd_lora_init_opts init;  /* rank, alpha, targets, initialisation */
    xd_eva_opts eva;         /* --init eva: rho, tau, step cap, batch (the rest from init) */
    const char *eva_state;   /* --eva-state FILE: a saved EVA state instead of a new pass */
} lora_cli_opts;

/* Defaults: rank 8, alpha 8 (PEFT's), all seven targets, random init, seed 1;
 * EVA as xd_eva_defaults. */
void lora_args_defaults(lora_cli_opts *o);
/* If argv[*i] is a LoRA option (--r, --alpha, --rslora, --targets, --init,
 * --lora-seed, --eva-*), parses it into o and returns 1; 0 if it is not one;
 * -1 on a bad value (error printed). */
int lora_arg(int argc, char **argv, int *i, lora_cli_opts *o);
extern const char *lora_args_usage;

/* The adapter for training m on data_path (o->lora set; PiSSA: m's weights
 * become the residual and *pissa0 receives a copy of the initial adapter,
 * o->lora_pissa0; EVA: the activation pass over the data, or the state of
 * --eva-state, whose state is saved as OUT/eva_state.safetensors and reported
 * on stdout as one JSON line). NULL + the library's error. The caller frees
 * both. */
xd_lora_adapter *lora_prepare(xd_model *m, const char *base_name, const lora_cli_opts *lc,
                              const char *data_path, xd_train_opts *o, xd_lora_adapter **pissa0);

#endif
