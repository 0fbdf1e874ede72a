/* Classification heads (clf_head.h): dropout → linear (→ tanh) per layer. */
#include "clf_head.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"

static int n_layers(const xd_head *h) { return h->n_hidden + 1; }
static int in_of(const xd_head *h, int l) { return l == 0 ? h->in : h->hidden; }
static int out_of(const xd_head *h, int l) { return l == h->n_hidden ? h->n_out : h->hidden; }

int64_t xd_head_n_params(int in, int hidden, int n_out, int n_hidden) {
    int64_t n = 0;
    for (int l = 0; l <= n_hidden; l++) {
        int64_t i = l == 0 ? in : hidden, o = l == n_hidden ? n_out : hidden;
        n += o * i + o;
    }
    return n;
}

int xd_head_layout(xd_head *h, int in, int hidden, int n_out, int n_hidden, float dropout,
                   float *params, float *grads) {
    memset(h, 0, sizeof *h);
    if (in < 1 || n_out < 1 || n_hidden < 0 || n_hidden >= XD_HEAD_MAX_LAYERS ||
        (n_hidden > 0 && hidden < 1))
        return xd_err("classification head: in %d, hidden %d x %d, out %d: bad shape", in,
                      n_hidden, hidden, n_out);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return xd_err("classification head: dropout %g; expected a value in [0, 1)", dropout);
    *h = (xd_head){in, hidden, n_out, n_hidden, dropout, {0}, {0}, {0}, {0}};
    size_t off = 0;
    for (int l = 0; l < n_layers(h); l++) {
        size_t nw = (size_t)out_of(h, l) * in_of(h, l), nb = (size_t)out_of(h, l);
        h->W[l] = params + off;
        h->b[l] = params + off + nw;
        if (grads) {
            h->dW[l] = grads + off;
            h->db[l] = grads + off + nw;
        }
        off += nw + nb;
    }
    return 0;
}

void xd_head_init(xd_head *h, uint64_t seed) {
    xd_rng g;
    xd_rng_seed(&g, seed);
    for (int l = 0; l < n_layers(h); l++) {
        double bound = 1.0 / sqrt((double)in_of(h, l));
        size_t nw = (size_t)out_of(h, l) * in_of(h, l);
        for (size_t i = 0; i < nw; i++) h->W[l][i] = (float)((2 * xd_rng_uniform(&g) - 1) * bound);
        for (int i = 0; i < out_of(h, l); i++)
            h->b[l][i] = (float)((2 * xd_rng_uniform(&g) - 1) * bound);
    }
}

void xd_head_tensor(const xd_head *h, int i, const char *prefix, char *name, size_t cap,
                    float **ptr, int64_t *rows, int64_t *cols, int *ndim) {
    int l = i / 2, bias = i % 2;
    snprintf(name, cap, "%s.%d.%s", prefix, l, bias ? "bias" : "weight");
    *ptr = bias ? h->b[l] : h->W[l];
    *rows = bias ? 1 : out_of(h, l);
    *cols = bias ? out_of(h, l) : in_of(h, l);
    *ndim = bias ? 1 : 2;
}

int xd_head_save(const xd_head *h, const char *prefix, const char *path) {
    st_write_tensor ts[2 * XD_HEAD_MAX_LAYERS];
    char names[2 * XD_HEAD_MAX_LAYERS][64];
    int n = 2 * (h->n_hidden + 1);
    for (int i = 0; i < n; i++) {
        float *p;
        int64_t rows, cols;
        int nd;
        xd_head_tensor(h, i, prefix, names[i], sizeof names[i], &p, &rows, &cols, &nd);
        ts[i] = (st_write_tensor){names[i], ST_F32, nd, {nd == 2 ? rows : cols, cols}, p};
    }
    return xd_st_write(path, ts, n, NULL);
}

int xd_head_load(const xd_head *h, const char *prefix, const char *path) {
    st_set *s = xd_st_open(path);
    if (!s) return -1;
    int rc = 0;
    for (int i = 0; i < 2 * (h->n_hidden + 1) && !rc; i++) {
        char name[64];
        float *p;
        int64_t rows, cols;
        int nd;
        xd_head_tensor(h, i, prefix, name, sizeof name, &p, &rows, &cols, &nd);
        const st_tensor *t = xd_st_find(s, name);
        if (!t || t->n_dims != nd || t->shape[0] != (nd == 2 ? rows : cols) ||
            (nd == 2 && t->shape[1] != cols))
        {
            char shape[48];
            if (nd == 2) snprintf(shape, sizeof shape, "%lld, %lld", (long long)rows, (long long)cols);
            else snprintf(shape, sizeof shape, "%lld", (long long)cols);
            rc = xd_err("%s: tensor '%s' is missing or not of shape [%s]", path, name, shape);
        }
        else rc = xd_st_to_f32(s, t, p);
    }
    xd_st_close(s);
    return rc;
}

int xd_head_acts_alloc(xd_head_acts *a, const xd_head *h, int B) {
    memset(a, 0, sizeof *a);
    a->B = B;
    int wmax = h->in > h->hidden ? h->in : h->hidden;
    if (h->n_out > wmax) wmax = h->n_out;
    int ok = 1;
    for (int l = 0; l < n_layers(h); l++) {
        a->x[l] = malloc((size_t)B * in_of(h, l) * sizeof(float));
        a->keep[l] = malloc((size_t)B * in_of(h, l) * sizeof(float));
        if (l < h->n_hidden) a->h[l] = malloc((size_t)B * h->hidden * sizeof(float));
        ok &= a->x[l] && a->keep[l] && (l >= h->n_hidden || a->h[l]);
    }
    a->logits = malloc((size_t)B * h->n_out * sizeof(float));
    a->dy = malloc((size_t)B * wmax * sizeof(float));
    a->dh = malloc((size_t)B * wmax * sizeof(float));
    if (!ok || !a->logits || !a->dy || !a->dh) {
        xd_head_acts_free(a);
        return xd_err("classification head: out of memory for %d rows", B);
    }
    return 0;
}

void xd_head_acts_free(xd_head_acts *a) {
    for (int l = 0; l < XD_HEAD_MAX_LAYERS; l++) {
        free(a->x[l]);
        free(a->keep[l]);
        free(a->h[l]);
    }
    free(a->logits);
    free(a->dy);
    free(a->dh);
    memset(a, 0, sizeof *a);
}

const float *xd_head_forward(const xd_head *h, xd_head_acts *a, const float *x, int n, int train,
                             uint64_t seed) {
    xd_rng g;
    xd_rng_seed(&g, seed);
    float p = train ? h->dropout : 0.0f, scale = 1.0f / (1.0f - p);
    const float *in = x;
    for (int l = 0; l < n_layers(h); l++) {
        size_t m = (size_t)n * in_of(h, l);
        for (size_t i = 0; i < m; i++) {
            float k = p > 0.0f ? (xd_rng_uniform(&g) >= p ? scale : 0.0f) : 1.0f;
            a->keep[l][i] = k;
            a->x[l][i] = in[i] * k;
        }
        float *y = l < h->n_hidden ? a->h[l] : a->logits;
        xd_linear(y, a->x[l], h->W[l], h->b[l], n, in_of(h, l), out_of(h, l));
        if (l < h->n_hidden) {
            for (size_t i = 0; i < (size_t)n * h->hidden; i++) y[i] = tanhf(y[i]);
            in = y;
        }
    }
    return a->logits;
}

int xd_head_argmax(const float *logits, int n_out) {
    int best = 0;
    for (int k = 1; k < n_out; k++)
        if (logits[k] > logits[best]) best = k;
    return best;
}

void xd_head_backward(const xd_head *h, xd_head_acts *a, const float *dlogits, float *dx, int n) {
    const float *dy = dlogits;
    for (int l = n_layers(h) - 1; l >= 0; l--) {
        size_t m = (size_t)n * in_of(h, l);
        int need_dx = l > 0 || dx;
        if (need_dx) memset(a->dh, 0, m * sizeof(float));
        xd_linear_backward(need_dx ? a->dh : NULL, h->dW[l], h->db[l], dy, a->x[l], h->W[l], n,
                           in_of(h, l), out_of(h, l));
        if (!need_dx) break;
        /* through the dropout; then, below the top, through tanh: d pre = d h · (1 − h²) */
        for (size_t i = 0; i < m; i++) a->dh[i] *= a->keep[l][i];
        if (l == 0) {
            for (size_t i = 0; i < m; i++) dx[i] += a->dh[i];
        } else {
            const float *hv = a->h[l - 1];
            for (size_t i = 0; i < m; i++) a->dy[i] = a->dh[i] * (1.0f - hv[i] * hv[i]);
            dy = a->dy;
        }
    }
}
