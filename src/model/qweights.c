/* Quantised copies of the linear weights for decoding (qweights.h). */
#include "qweights.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

int xd_qweights_add(xd_model *m, const float *key, uint32_t type, int64_t rows, int64_t cols,
                    const uint8_t *src, int perm_hd) {
    size_t rb = xd_q_row_bytes(type, cols);
    if (!rb || xd_qdot_act_type(type) < 0) return 0; /* not a type the kernels take: fp32 */
    if (!m->q && !(m->q = calloc(1, sizeof *m->q))) return xd_err("out of memory");
    xd_qweights *q = m->q;
    if (q->n == q->cap) {
        int cap = q->cap ? 2 * q->cap : 64;
        xd_qweight *w = realloc(q->w, (size_t)cap * sizeof *w);
        if (!w) return xd_err("out of memory");
        q->w = w;
        q->cap = cap;
    }
    uint8_t *d = malloc(rb * (size_t)rows);
    if (!d) return xd_err("out of memory");
    if (perm_hd > 0) xd_gguf_unpermute_rows(d, src, rows / perm_hd, perm_hd, rb);
    else memcpy(d, src, rb * (size_t)rows);
    q->w[q->n++] = (xd_qweight){key, type, rows, cols, d};
    return 0;
}

static int by_key(const void *a, const void *b) {
    const float *x = ((const xd_qweight *)a)->key, *y = ((const xd_qweight *)b)->key;
    return x < y ? -1 : x > y;
}

void xd_qweights_sort(xd_model *m) {
    if (m->q) qsort(m->q->w, (size_t)m->q->n, sizeof *m->q->w, by_key);
}

void xd_qweights_free(xd_model *m) {
    if (!m->q) return;
    for (int i = 0; i < m->q->n; i++) free(m->q->w[i].data);
    free(m->q->w);
    free(m->q);
    m->q = NULL;
}

static const xd_qweight *find(const xd_qweights *q, const float *key) {
    int lo = 0, hi = q->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (q->w[mid].key == key) return &q->w[mid];
        if (q->w[mid].key < key) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void xd_linear_model(const xd_model *m, float *y, const float *x, const float *W, const float *b,
                     int n, int in, int out) {
    const xd_qweight *qw = m->q && (n == 1 || m->q->all_rows) ? find(m->q, W) : NULL;
    if (qw && qw->cols == in && qw->rows == out) {
        int r = 0;
        for (; r < n; r++) /* one quantised activation row at a time */
            if (xd_qmatvec(qw->type, qw->data, out, in, x + (size_t)r * in, y + (size_t)r * out, NULL))
                break;
        if (r == n) {
            if (b)
                for (int k = 0; k < n; k++)
                    for (int i = 0; i < out; i++) y[(size_t)k * out + i] += b[i];
            return;
        }
    }
    xd_linear(y, x, W, b, n, in, out);
}
