/* Labelled examples as model input (DiffPruning debiasing): each record's text tokenized
 * once (the tokenizer's BOS first when it adds one), cut to max_len tokens, one example per
 * batch row padded with token 0 after its end (causal attention: the padding changes no
 * real position's state, and pooling reads only real tokens). Training draws examples from
 * an endless stream of epochs, each a seeded permutation, so a cursor (examples drawn so
 * far) fixes every batch and a resumed run draws the same. */
#ifndef XD_CLF_DATA_H
#define XD_CLF_DATA_H

#include <stdint.h>

#include "io/labeled.h"
#include "kernels/pool.h"
#include "xdistill.h"

typedef struct xd_clf_data {
    const xd_labeled *lab;
    int64_t n;
    int max_len;
    int32_t *ids;   /* all examples' tokens */
    int64_t *off;   /* [n + 1] */
    int32_t *len;   /* [n] tokens kept (1 .. max_len) */
    int64_t n_cut;  /* examples longer than max_len */
    const struct xd_clf_data *pair; /* the same records' counterfactual texts (NULL: none) */
} xd_clf_data;

/* -1 with an error naming the file and line of a record whose text gives no token. */
int xd_clf_data_init(xd_clf_data *d, const xd_labeled *lab, const xd_tokenizer *tok, int max_len);
/* The same for lab->pair_text (xd_labeled_load_pairs); lab->n examples numbered as in
 * xd_clf_data_init's, so that d->pair of that data can point here. */
int xd_clf_data_init_pairs(xd_clf_data *d, const xd_labeled *lab, const xd_tokenizer *tok,
                           int max_len);
void xd_clf_data_free(xd_clf_data *d);

/* The example at position k (from 0) of the training stream: epoch k / n is a Fisher–Yates
 * permutation of 0..n−1 seeded by (seed, epoch). perm is the caller's cache [n] and *epoch
 * the epoch it holds (start with −1). */
int64_t xd_clf_draw(const xd_clf_data *d, uint64_t seed, uint64_t k, int64_t *perm,
                    int64_t *epoch);

/* Row b of B rows × T (T >= d->max_len) holds example ex[b]: tok (padding 0), pos = t,
 * ds = 0, len[b] its length. */
void xd_clf_fill(const xd_clf_data *d, const int64_t *ex, int B, int T, int32_t *tok,
                 int32_t *pos, int32_t *ds, int32_t *len);

/* Balancing weights (Kamiran & Calders 2012, "reweighing"; Han et al. 2021 on BIOS): for
 * labels y [n] in [0, C) and attribute values a [n] in [0, G), w[y·G + a] =
 * (N_y · N_a / n) / N_{y,a}, so that under the weighted examples the label and the
 * attribute are independent with their own frequencies kept (0 for a cell without
 * examples). Rows with y < 0 or a < 0 are not counted. -1 with an error on a value out of
 * range. */
int xd_balance_weights(const int32_t *y, const int32_t *a, int64_t n, int C, int G, float *w);

#endif
