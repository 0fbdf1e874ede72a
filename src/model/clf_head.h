/* Classification heads on a pooled encoder output (DiffPruning debiasing; docs/design.md,
 * "Debiasing"): an MLP of n_hidden tanh layers of width `hidden`, then a linear layer to
 * n_out classes, with dropout before every linear layer in training, as the peer's ClfHead
 * (CPJKU/ModularizedDebiasing, src/models/model_heads.py): the task head has no hidden
 * layer, each adversary or attacker one. Parameters live in a caller's arena (the
 * trainer's own parameters), gradients in a second arena of the same layout. Dropout keeps
 * a unit with probability 1 − p and scales it by 1/(1 − p) (inverted dropout, as torch);
 * its masks come from core/rng.h seeded by the caller, so a resumed run draws the same. */
#ifndef XD_CLF_HEAD_H
#define XD_CLF_HEAD_H

#include <stddef.h>
#include <stdint.h>

#define XD_HEAD_MAX_LAYERS 3

typedef struct {
    int in, hidden, n_out, n_hidden; /* n_hidden <= XD_HEAD_MAX_LAYERS − 1 */
    float dropout;                   /* in [0, 1) */
    float *W[XD_HEAD_MAX_LAYERS], *b[XD_HEAD_MAX_LAYERS];   /* [out_l][in_l], [out_l] */
    float *dW[XD_HEAD_MAX_LAYERS], *db[XD_HEAD_MAX_LAYERS]; /* NULL: frozen */
} xd_head;

/* Saved activations for up to B rows (xd_head_acts_alloc / _free). */
typedef struct {
    int B;
    float *x[XD_HEAD_MAX_LAYERS];    /* the input of linear layer l, after dropout [B][in_l] */
    float *keep[XD_HEAD_MAX_LAYERS]; /* dropout scale per unit: 0 or 1/(1 − p) [B][in_l] */
    float *h[XD_HEAD_MAX_LAYERS];    /* tanh outputs of the hidden layers [B][hidden] */
    float *logits;                   /* [B][n_out] */
    float *dy, *dh;                  /* backward scratch [B][max width] */
} xd_head_acts;

/* The number of floats of the parameters (W and b of every layer). */
int64_t xd_head_n_params(int in, int hidden, int n_out, int n_hidden);
/* Sets h's shape and points W/b into params (dW/db into grads, or NULL). -1 on a bad shape
 * or dropout. */
int xd_head_layout(xd_head *h, int in, int hidden, int n_out, int n_hidden, float dropout,
                   float *params, float *grads);
/* torch.nn.Linear's default initialisation: W and b uniform in ±1/sqrt(in_l). */
void xd_head_init(xd_head *h, uint64_t seed);
/* The i-th parameter tensor (i < 2·(n_hidden + 1)): "PREFIX.l.weight" / "PREFIX.l.bias",
 * its pointer and shape, for checkpoints and files. */
void xd_head_tensor(const xd_head *h, int i, const char *prefix, char *name, size_t cap,
                    float **ptr, int64_t *rows, int64_t *cols, int *ndim);

/* The head's tensors (names PREFIX.l.weight / .bias) as a safetensors file, written
 * atomically; and read back into h's parameters (shapes as h's: errors name the file and
 * the tensor). */
int xd_head_save(const xd_head *h, const char *prefix, const char *path);
int xd_head_load(const xd_head *h, const char *prefix, const char *path);

int xd_head_acts_alloc(xd_head_acts *a, const xd_head *h, int B);
void xd_head_acts_free(xd_head_acts *a);
/* logits = head(x) for n <= a->B rows; train != 0 applies dropout with masks drawn from
 * seed (eval: no dropout). Returns a->logits. */
const float *xd_head_forward(const xd_head *h, xd_head_acts *a, const float *x, int n, int train,
                             uint64_t seed);
/* The predicted class of one row of logits: the first of the largest. */
int xd_head_argmax(const float *logits, int n_out);
/* Given dlogits [n][n_out]: accumulates dW/db (unless frozen) and dx [n][in] (NULL: not
 * needed) (+=). */
void xd_head_backward(const xd_head *h, xd_head_acts *a, const float *dlogits, float *dx, int n);

#endif
