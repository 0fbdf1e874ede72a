/* A GGUF teacher's linear weights and embeddings kept in the file's own blocks
 * (XD_WEIGHTS_GGUF, xdistill.h): one token's matrix-vector products run on the blocks
 * (kernels/quant.h) with activations quantised as ggml does, reading ~1/7 of the fp32 bytes
 * for Q4 types; several tokens' products run on dequantised tiles through sgemm; an
 * embedding row is dequantised when looked up. The fp32 arena's regions for these weights
 * are never written (malloc'ed pages that are never touched take no memory), so the
 * resident set is about the mapped file. Llama's q/k rows stay permuted as the file has
 * them: the products' outputs are un-permuted (a row of out floats, not the weights). */
#ifndef XD_QWEIGHTS_H
#define XD_QWEIGHTS_H

#include <stdint.h>

#include "model.h"

typedef struct {
    const float *key;      /* the fp32 weight in the arena it stands for (never written) */
    uint32_t type;         /* GGML_Q4_0 ... (kernels/quant.h pairs) */
    int64_t rows, cols;
    const uint8_t *data;   /* rows × xd_q_row_bytes(type, cols) in the GGUF's row order:
                            * into the mapped file, or `owned` */
    uint8_t *owned;        /* a copy of a tensor the file leaves misaligned, or NULL */
    int perm_hd;           /* > 0: Llama's q/k rows, permuted within heads of perm_hd rows;
                            * the products' outputs are put back in HF order */
} xd_qweight;

typedef struct xd_qweights {
    xd_qweight *w;         /* sorted by key once loading is done */
    int n;
    size_t cap;
    int all_rows;          /* XD_WEIGHTS_GGUF_ALL: every product on the blocks, row by row */
    void *file;            /* the gguf_file (io/gguf.h) kept open: `data` points into it */
} xd_qweights;

/* Whether the weight of [rows][cols] in a tensor of this type is kept as blocks. */
int xd_qweights_takes(uint32_t type, int64_t cols);
/* Adds the blocks of a [rows][cols] weight (src rows in GGUF order, inside the file kept in
 * m->q->file; perm_hd > 0: Llama's q/k permutation within heads of perm_hd rows, undone on
 * the outputs). 0, or -1. */
int xd_qweights_add(xd_model *m, const float *key, uint32_t type, int64_t rows, int64_t cols,
                    const uint8_t *src, int perm_hd);
void xd_qweights_sort(xd_model *m);
/* Frees the blocks and closes the file. */
void xd_qweights_free(xd_model *m);
/* y [n][out] = x W^T (+ b): on W's blocks when it has them (one token, or every row with
 * all_rows; else dequantised tiles and sgemm), otherwise xd_linear on the fp32 W.
 * 0, or -1 (out of memory for a tile). */
int xd_linear_model(const xd_model *m, float *y, const float *x, const float *W, const float *b,
                    int n, int in, int out);
/* x [n][d] = the embedding rows of tokens (ids checked by the caller). */
void xd_model_embed_rows(const xd_model *m, float *x, const int32_t *tokens, int n);
/* 0 when m's weights are fp32; else an error naming m and what needs them. */
int xd_model_require_fp32(const xd_model *m, const char *what);

#endif
