/* AdamW (Loshchilov & Hutter 2019) with decoupled weight decay and bias
 * correction, as torch.optim.AdamW; warm-up + cosine learning rate; global
 * grad-norm clipping as torch.nn.utils.clip_grad_norm_. */
#ifndef XD_OPTIM_H
#define XD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float beta1, beta2, eps;
    float *m, *v; /* first and second moments, one per parameter */
    size_t n;
    int64_t t;    /* steps taken */
} xd_adamw;

int xd_adamw_init(xd_adamw *o, size_t n, float beta1, float beta2, float eps);
void xd_adamw_free(xd_adamw *o);
/* Counts one optimiser step (call once per step, before the updates). */
void xd_adamw_begin_step(xd_adamw *o);
/* Updates params[off..off+n) from gscale·grads[off..) (gscale: the clip
 * coefficient, 1 = none; grads are not modified). */
void xd_adamw_update(xd_adamw *o, float *params, const float *grads, size_t off, size_t n,
                     float lr, float weight_decay, float gscale);

/* lr(s) = lr_max·(s+1)/warmup for s < warmup, then cosine from lr_max to
 * lr_min over the remaining total − warmup steps. */
float xd_lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr_max, float lr_min);

/* Sum of squares of g[0..n) in double. */
double xd_sumsq(const float *g, size_t n);
/* The factor clip_grad_norm_ applies: min(1, max_norm / (norm + 1e-6)). */
float xd_clip_coef(double norm, float max_norm);

#endif
