/* A post-hoc attacker (DiffPruning debiasing: leakage): an ensemble of MLP heads
 * (model/clf_head.h) trained afresh on frozen representations to predict a protected
 * attribute, as the peer's adv_attack (CPJKU/ModularizedDebiasing): the heads train
 * together on the mean of their cross-entropies with AdamW (torch's defaults but lr), in
 * shuffled mini-batches; the prediction on new representations is the argmax of the heads'
 * mean softmax. Deterministic for a seed. */
#ifndef XD_ATTACKER_H
#define XD_ATTACKER_H

#include <stddef.h>
#include <stdint.h>

#include "model/clf_head.h"

typedef struct {
    int heads, n_hidden, epochs, batch;
    float dropout, lr, weight_decay;
    uint64_t seed;
} xd_attack_opts;

/* 5 heads of one hidden layer, dropout 0.3, 40 epochs of batches of 64, lr 1e-4, wd 0.01. */
void xd_attack_defaults(xd_attack_opts *o);

/* Trains on Xtr [ntr][d] with labels ytr in [0, K) and writes pred [nte] for Xte [nte][d].
 * -1 with an error on bad options or labels. */
int xd_attack(const float *Xtr, const int32_t *ytr, int ntr, const float *Xte, int nte, int d,
              int K, const xd_attack_opts *o, int32_t *pred);

/* Trains heads h[0 … heads) (laid out with their parameters inside param[0 … np), which
 * holds nothing else; their own gradient pointers are not used) on X [n][d] with labels y in
 * [0, K), as xd_attack trains its own: o's epochs, batch, lr, weight decay and seed, AdamW
 * started afresh. The heads keep their initialisation's values as the start. -1 with an
 * error when out of memory or given more than 16 heads. */
int xd_attack_fit(xd_head *h, int heads, float *param, size_t np, const float *X,
                  const int32_t *y, int n, int d, int K, const xd_attack_opts *o);

#endif
