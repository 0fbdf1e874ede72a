/* An internal hook into the teacher's forward (model/forward.c) for probes
 * that need the attention itself, e.g. model/head_probe.c: once per layer,
 * after q and k are computed (q/k norm, RoPE) and the layer's KV cache holds
 * the new rows, the observer gets what it needs to compute every new query's
 * attention probabilities over all cached keys. Teachers only. Without an
 * observer (xd_forward) the forward runs exactly as before: one pointer test
 * per layer, the same bits. */
#ifndef XD_ATTN_OBSERVER_H
#define XD_ATTN_OBSERVER_H

#include <stdint.h>

#include "xdistill.h"

typedef struct {
    int layer;                      /* 0 … n_layer − 1 */
    int n;                          /* new query rows in this call */
    int64_t pos0;                   /* position of the first new row; keys 0 … pos0 + n − 1 are cached */
    int n_head, n_kv_head, head_dim; /* query head h reads key/value head h / (n_head / n_kv_head) */
    const float *q;                 /* [n][n_head·head_dim]: the queries as the attention uses
                                     * them (after the q norm and RoPE) */
    const float *k, *v;             /* the layer's cache: key/value of position j at
                                     * k + j·n_kv_head·head_dim (keys after the k norm and RoPE) */
    double scale;                   /* the attention's score scale, 1/√head_dim: probabilities are
                                     * softmax over j = 0 … t of scale·(q_t·k_j) (causal) */
} xd_attn_view;

/* Returns 0 to go on; non-zero stops the forward, which then fails (-1) with
 * the error the observer set (xd_err), or a generic one. The view and its
 * pointers are valid only during the call and must not be written. */
typedef int (*xd_attn_observe_fn)(void *user, const xd_attn_view *view);

typedef struct {
    xd_attn_observe_fn fn;
    void *user;
} xd_attn_observer;

/* xd_forward (xdistill.h) with an observer called once per layer, in layer
 * order, on the calling thread. obs == NULL is xd_forward. A student with an
 * observer is an error (its attention is the mixer's, not the teacher's). */
int xd_forward_observed(const xd_model *m, xd_kv *kv, const int32_t *tokens, int n, float *logits,
                        int all_logits, const xd_attn_observer *obs);

#endif
