/* Pooling a sequence's hidden states into one vector per row, for a classification head
 * on an encoder (DiffPruning debiasing; docs/design.md, "DiffPruning (mask math)"): the
 * last real token's state, or the mean over the real tokens. Rows are T positions of
 * x [B·T][d]; row b has len[b] real tokens (1 <= len[b] <= T), the rest padding.
 * Backwards accumulate (+=). */
#ifndef XD_POOL_H
#define XD_POOL_H

#include <stdint.h>

typedef enum { XD_POOL_LAST = 0, XD_POOL_MEAN = 1 } xd_pool_mode;

/* out[b] = x[b, len[b] − 1] (LAST) or (1/len[b]) Σ_{t < len[b]} x[b, t] (MEAN, summed in
 * double). -1 with an error for a length outside [1, T]. */
int xd_pool_forward(float *out, const float *x, const int32_t *len, int B, int T, int d,
                    xd_pool_mode mode);
/* dx[b, t] += dout[b] at t = len[b] − 1 (LAST), or dout[b] / len[b] for t < len[b] (MEAN). */
void xd_pool_backward(float *dx, const float *dout, const int32_t *len, int B, int T, int d,
                      xd_pool_mode mode);

#endif
