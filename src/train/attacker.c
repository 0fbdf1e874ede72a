/* The post-hoc attacker (attacker.h). */
#include "attacker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "kernels/train_ops.h"
#include "model/clf_head.h"
#include "optim.h"

#define MAX_HEADS 16

void xd_attack_defaults(xd_attack_opts *o) {
    *o = (xd_attack_opts){5, 1, 40, 64, 0.3f, 1e-4f, 0.01f, 1};
}

/* Softmax of one row of K logits added into acc. */
static void add_softmax(double *acc, const float *z, int K) {
    double mx = z[0], s = 0;
    for (int k = 1; k < K; k++) if (z[k] > mx) mx = z[k];
    for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
    for (int k = 0; k < K; k++) acc[k] += exp((double)z[k] - mx) / s;
}

int xd_attack_fit(xd_head *h, int heads, float *param, size_t np, const float *X,
                  const int32_t *y, int n, int d, int K, const xd_attack_opts *o) {
    int B = o->batch < n ? o->batch : n, rc = -1;
    float *grad = calloc(np, sizeof(float)), *xb = malloc((size_t)B * d * sizeof(float));
    int32_t *yb = malloc((size_t)B * sizeof *yb);
    int *order = malloc((size_t)n * sizeof *order);
    xd_head g[MAX_HEADS]; /* h with gradients into grad */
    xd_head_acts a[MAX_HEADS];
    memset(a, 0, sizeof a);
    xd_adamw opt = {0};
    if (heads > MAX_HEADS) return xd_err("attacker: %d heads (at most %d)", heads, MAX_HEADS);
    if (!grad || !xb || !yb || !order || xd_adamw_init(&opt, np, 0.9f, 0.999f, 1e-8f)) {
        xd_err("attacker: out of memory");
        goto done;
    }
    for (int k = 0; k < heads; k++) {
        g[k] = h[k];
        size_t at = (size_t)(h[k].W[0] - param); /* the head's block of param */
        if (xd_head_layout(&g[k], h[k].in, h[k].hidden, h[k].n_out, h[k].n_hidden, h[k].dropout,
                           param + at, grad + at) ||
            xd_head_acts_alloc(&a[k], &g[k], B))
            goto done;
    }
    xd_rng rg;
    xd_rng_seed(&rg, o->seed);
    for (int i = 0; i < n; i++) order[i] = i;
    uint64_t step = 0;
    for (int e = 0; e < o->epochs; e++) {
        for (int i = n - 1; i > 0; i--) {
            int j = (int)xd_rng_below(&rg, (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int b0 = 0; b0 < n; b0 += B) {
            int nb = n - b0 < B ? n - b0 : B;
            for (int r = 0; r < nb; r++) {
                memcpy(xb + (size_t)r * d, X + (size_t)order[b0 + r] * d, (size_t)d * sizeof(float));
                yb[r] = y[order[b0 + r]];
            }
            memset(grad, 0, np * sizeof(float));
            step++;
            for (int k = 0; k < heads; k++) {
                float *lg = (float *)xd_head_forward(&g[k], &a[k], xb, nb, 1,
                                                     xd_mix64(o->seed ^ (step * MAX_HEADS + (uint64_t)k)));
                /* the mean over the batch and the heads */
                xd_cross_entropy(lg, lg, yb, nb, K, 1.0f / ((float)nb * (float)heads));
                xd_head_backward(&g[k], &a[k], lg, NULL, nb);
            }
            xd_adamw_begin_step(&opt);
            xd_adamw_update(&opt, param, grad, 0, np, o->lr, o->weight_decay, 1.0f);
        }
    }
    rc = 0;
done:
    for (int k = 0; k < heads; k++) xd_head_acts_free(&a[k]);
    xd_adamw_free(&opt);
    free(grad), free(xb), free(yb), free(order);
    return rc;
}

int xd_attack(const float *Xtr, const int32_t *ytr, int ntr, const float *Xte, int nte, int d,
              int K, const xd_attack_opts *o, int32_t *pred) {
    if (o->heads < 1 || o->heads > MAX_HEADS || o->epochs < 1 || o->batch < 1 || ntr < 1 ||
        K < 2 || !(o->lr > 0))
        return xd_err("attacker: %d heads (1 .. %d), %d epochs, batch %d, %d examples, %d "
                      "classes, lr %g: out of range", o->heads, MAX_HEADS, o->epochs, o->batch,
                      ntr, K, o->lr);
    for (int i = 0; i < ntr; i++)
        if (ytr[i] < 0 || ytr[i] >= K)
            return xd_err("attacker: label %d of example %d is outside [0, %d)", ytr[i], i, K);
    int64_t per = xd_head_n_params(d, d, K, o->n_hidden);
    size_t np = (size_t)per * o->heads;
    int B = o->batch < nte ? o->batch : nte, rc = -1;
    if (B < 1) B = 1;
    float *param = calloc(np, sizeof(float));
    double *sum = malloc((size_t)B * K * sizeof *sum); /* the heads' summed softmax */
    xd_head h[MAX_HEADS];
    xd_head_acts a[MAX_HEADS];
    memset(a, 0, sizeof a);
    if (!param || !sum) {
        xd_err("attacker: out of memory");
        goto done;
    }
    for (int k = 0; k < o->heads; k++) {
        if (xd_head_layout(&h[k], d, d, K, o->n_hidden, o->dropout, param + (size_t)k * per, NULL) ||
            xd_head_acts_alloc(&a[k], &h[k], B))
            goto done;
        xd_head_init(&h[k], xd_mix64(o->seed * 0x100 + (uint64_t)k + 1));
    }
    if (xd_attack_fit(h, o->heads, param, np, Xtr, ytr, ntr, d, K, o)) goto done;
    for (int b0 = 0; b0 < nte; b0 += B) {
        int nb = nte - b0 < B ? nte - b0 : B;
        memset(sum, 0, (size_t)nb * K * sizeof *sum);
        for (int k = 0; k < o->heads; k++) {
            const float *lg = xd_head_forward(&h[k], &a[k], Xte + (size_t)b0 * d, nb, 0, 0);
            for (int r = 0; r < nb; r++) add_softmax(sum + (size_t)r * K, lg + (size_t)r * K, K);
        }
        for (int r = 0; r < nb; r++) {
            int best = 0;
            for (int c = 1; c < K; c++)
                if (sum[(size_t)r * K + c] > sum[(size_t)r * K + best]) best = c;
            pred[b0 + r] = best;
        }
    }
    rc = 0;
done:
    for (int k = 0; k < o->heads; k++) xd_head_acts_free(&a[k]);
    free(param), free(sum);
    return rc;
}
