/* A GGUF's linear weights and embeddings on their own blocks (qweights.h). */
#include "qweights.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

int xd_qweights_takes(uint32_t type, int64_t cols) {
    return xd_qdot_act_type(type) >= 0 && xd_q_row_bytes(type, cols) > 0;
}

int xd_qweights_add(xd_model *m, const float *key, uint32_t type, int64_t rows, int64_t cols,
                    const uint8_t *src, int perm_hd) {
    size_t rb = xd_q_row_bytes(type, cols);
    if (!xd_qweights_takes(type, cols)) return xd_err("%s: type %u is not kept as blocks", m->path, type);
    if (!m->q && !(m->q = calloc(1, sizeof *m->q))) return xd_err("out of memory");
    xd_qweights *q = m->q;
    if (xd_grow((void **)&q->w, &q->cap, (size_t)q->n + 1, sizeof *q->w)) return -1;
    xd_qweight *w = &q->w[q->n];
    *w = (xd_qweight){key, type, rows, cols, src, NULL, perm_hd};
    /* a copy where a small general.alignment leaves the blocks' fp16 fields unaligned (the
     * kernels read them as uint16_t) */
    if ((uintptr_t)src % 16) {
        if (!(w->owned = malloc(rb * (size_t)rows))) return xd_err("out of memory");
        memcpy(w->owned, src, rb * (size_t)rows);
        w->data = w->owned;
    }
    q->n++;
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
    for (int i = 0; i < m->q->n; i++) free(m->q->w[i].owned);
    free(m->q->w);
    if (m->q->file) xd_gguf_close(m->q->file);
    free(m->q);
    m->q = NULL;
}

static const xd_qweight *find(const xd_qweights *q, const float *key) {
    int lo = 0, hi = q ? q->n - 1 : -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (q->w[mid].key == key) return &q->w[mid];
        if (q->w[mid].key < key) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static void dequant_rows(const xd_qweight *qw, int64_t r0, int64_t nr, float *dst) {
    size_t rb = xd_q_row_bytes(qw->type, qw->cols);
#pragma omp parallel for schedule(static) if (nr * qw->cols > 65536)
    for (int64_t r = 0; r < nr; r++) /* the type and the row length were checked at load */
        (void)xd_ggml_dequantize(qw->type, qw->data + (size_t)(r0 + r) * rb, dst + r * qw->cols,
                                 qw->cols);
}

/* Several rows: tiles of W dequantised (about 1 MB each, to stay in cache) and multiplied
 * by sgemm into y's columns. */
static int tiles(const xd_qweight *qw, float *y, const float *x, int n, int in, int out) {
    int64_t tr = 262144 / in;
    if (tr < 16) tr = 16;
    if (tr > out) tr = out;
    float *t = malloc((size_t)tr * in * sizeof(float));
    if (!t) return -1;
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t nr = out - r0 < tr ? out - r0 : tr;
        dequant_rows(qw, r0, nr, t);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)nr, in, 1.0f, x, in, t, in,
                    0.0f, y + r0, out);
    }
    free(t);
    return 0;
}

int xd_linear_model(const xd_model *m, float *y, const float *x, const float *W, const float *b,
                    int n, int in, int out) {
    const xd_qweight *qw = find(m->q, W);
    if (!qw || qw->cols != in || qw->rows != out) {
        xd_linear(y, x, W, b, n, in, out);
        return 0;
    }
    int done = 0;
    if (n == 1 || m->q->all_rows) {
        int r = 0;
        for (; r < n; r++) /* one quantised activation row at a time */
            if (xd_qmatvec(qw->type, qw->data, out, in, x + (size_t)r * in, y + (size_t)r * out, NULL))
                break;
        done = r == n;
    }
    /* the tiles need no quantised activations (and are the fallback if those fail) */
    if (!done && tiles(qw, y, x, n, in, out))
        return xd_err("out of memory for a tile of %s's weights", m->path);
    if (qw->perm_hd > 0) { /* Llama's q/k: each output row back to HF order */
        float *t = malloc((size_t)out * sizeof(float));
        if (!t) return xd_err("out of memory");
        for (int k = 0; k < n; k++) {
            float *yk = y + (size_t)k * out;
            xd_gguf_unpermute_rows(t, yk, out / qw->perm_hd, qw->perm_hd, sizeof(float));
            memcpy(yk, t, (size_t)out * sizeof(float));
        }
        free(t);
    }
    if (b)
        for (int k = 0; k < n; k++)
            for (int i = 0; i < out; i++) y[(size_t)k * out + i] += b[i];
    return 0;
}

void xd_model_embed_rows(const xd_model *m, float *x, const int32_t *tokens, int n) {
    int d = m->cfg.d_model;
    const xd_qweight *qw = find(m->q, m->embed);
    for (int i = 0; i < n; i++) {
        if (qw) dequant_rows(qw, tokens[i], 1, x + (size_t)i * d);
        else memcpy(x + (size_t)i * d, m->embed + (size_t)tokens[i] * d, (size_t)d * sizeof(float));
    }
}

int xd_model_require_fp32(const xd_model *m, const char *what) {
    if (!m->q) return 0;
    return xd_err("%s was loaded on its GGUF blocks (--weights gguf: no fp32 copy of its "
                  "quantised weights); %s needs fp32 weights (--weights fp32)", m->path, what);
}
