/* Quantised copies of a teacher's linear weights, kept in the GGUF's own blocks for
 * decoding (issue 17, first step): one token's matrix-vector products run on the blocks
 * (kernels/quant.h) instead of the fp32 arena, reading ~1/7 of the bytes for Q4 types.
 * Made by the GGUF loader when XD_QUANT_DECODE=1 is set (an experiment for now: the fp32
 * arena stays, prefill and training use it; =2 routes every product through the blocks,
 * one row at a time, to measure perplexity); Llama's q/k rows are un-permuted as the fp32
 * weights are. */
#ifndef XD_QWEIGHTS_H
#define XD_QWEIGHTS_H

#include <stdint.h>

#include "model.h"

typedef struct {
    const float *key;  /* the fp32 weight in the arena it stands for */
    uint32_t type;     /* GGML_Q4_0 ... (kernels/quant.h pairs) */
    int64_t rows, cols;
    uint8_t *data;     /* rows × xd_q_row_bytes(type, cols), HF row order */
} xd_qweight;

typedef struct xd_qweights {
    xd_qweight *w;     /* sorted by key once loading is done */
    int n, cap;
    int all_rows;      /* XD_QUANT_DECODE=2 (set by the loader): every product on the
                        * blocks, not only one token's (to measure the perplexity) */
} xd_qweights;

/* Adds a copy of the blocks of a [rows][cols] weight (src rows in GGUF order; perm_hd > 0:
 * Llama's q/k permutation within heads of perm_hd rows, undone). 0, or -1. */
int xd_qweights_add(xd_model *m, const float *key, uint32_t type, int64_t rows, int64_t cols,
                    const uint8_t *src, int perm_hd);
void xd_qweights_sort(xd_model *m);
void xd_qweights_free(xd_model *m);
/* y [n][out] = x W^T (+ b): on W's blocks when n == 1 and a copy exists, else xd_linear. */
void xd_linear_model(const xd_model *m, float *y, const float *x, const float *W, const float *b,
                     int n, int in, int out);

#endif
