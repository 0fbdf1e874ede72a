/* Labelled examples as model input (clf_data.h). */
#include "clf_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "io/tokenizer_internal.h"

static int tokenize(xd_clf_data *d, const xd_labeled *lab, char *const *text, const char *field,
                    const xd_tokenizer *tok, int max_len) {
    memset(d, 0, sizeof *d);
    d->lab = lab;
    d->n = lab->n;
    d->max_len = max_len;
    if (max_len < 1) return xd_err("--max-len %d: expected at least 1 token", max_len);
    d->off = malloc((size_t)(lab->n + 1) * sizeof *d->off);
    d->len = malloc((size_t)lab->n * sizeof *d->len + 1);
    d->ids = malloc((size_t)lab->n * max_len * sizeof *d->ids + 1);
    if (!d->off || !d->len || !d->ids) {
        xd_clf_data_free(d);
        return xd_err("out of memory for %lld examples", (long long)lab->n);
    }
    int bos = xd_tokenizer_add_bos(tok) ? xd_tokenizer_bos(tok) : -1;
    int64_t at = 0;
    for (int64_t i = 0; i < lab->n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (xd_tokenizer_encode(tok, text[i], strlen(text[i]), 0, &ids, &n)) {
            xd_clf_data_free(d);
            return xd_err_prefix("%s: line %lu: %s", lab->path, lab->line[i], field);
        }
        d->off[i] = at;
        int k = 0;
        if (bos >= 0) d->ids[at + k++] = bos;
        for (size_t j = 0; j < n && k < max_len; j++) d->ids[at + k++] = ids[j];
        d->n_cut += (int64_t)n + (bos >= 0) > max_len;
        free(ids);
        if (k == 0) {
            xd_clf_data_free(d);
            return xd_err("%s: line %lu: %s gives no token", lab->path, lab->line[i], field);
        }
        d->len[i] = k;
        at += k;
    }
    d->off[lab->n] = at;
    return 0;
}

int xd_clf_data_init(xd_clf_data *d, const xd_labeled *lab, const xd_tokenizer *tok, int max_len) {
    return tokenize(d, lab, lab->text, "the text", tok, max_len);
}

int xd_clf_data_init_pairs(xd_clf_data *d, const xd_labeled *lab, const xd_tokenizer *tok,
                           int max_len) {
    if (!lab->pair_text) return xd_err("%s: no counterfactual texts loaded", lab->path);
    char what[600];
    snprintf(what, sizeof what, "the counterfactual text (%s)", lab->pair_source);
    return tokenize(d, lab, lab->pair_text, what, tok, max_len);
}

void xd_clf_data_free(xd_clf_data *d) {
    free(d->ids);
    free(d->off);
    free(d->len);
    memset(d, 0, sizeof *d);
}

int64_t xd_clf_draw(const xd_clf_data *d, uint64_t seed, uint64_t k, int64_t *perm,
                    int64_t *epoch) {
    int64_t e = (int64_t)(k / (uint64_t)d->n);
    if (e != *epoch) {
        xd_rng g;
        xd_rng_seed(&g, xd_mix64(seed ^ xd_mix64((uint64_t)e + 1)));
        for (int64_t i = 0; i < d->n; i++) perm[i] = i;
        for (int64_t i = d->n - 1; i > 0; i--) {
            int64_t j = (int64_t)xd_rng_below(&g, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        *epoch = e;
    }
    return perm[k % (uint64_t)d->n];
}

void xd_clf_fill(const xd_clf_data *d, const int64_t *ex, int B, int T, int32_t *tok,
                 int32_t *pos, int32_t *ds, int32_t *len) {
    for (int b = 0; b < B; b++) {
        int64_t e = ex[b];
        int n = d->len[e];
        const int32_t *src = d->ids + d->off[e];
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            tok[i] = t < n ? src[t] : 0;
            pos[i] = t;
            ds[i] = 0;
        }
        len[b] = n;
    }
}

int xd_balance_weights(const int32_t *y, const int32_t *a, int64_t n, int C, int G, float *w) {
    int64_t *cell = calloc((size_t)C * G + C + G, sizeof *cell), *ny = cell + (size_t)C * G,
            *na = ny + C, total = 0;
    if (!cell) return xd_err("balancing weights: out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || a[i] < 0) continue;
        if (y[i] >= C || a[i] >= G) {
            free(cell);
            return xd_err("balancing weights: row %lld has label %d and attribute %d; expected "
                          "below %d and %d", (long long)i, y[i], a[i], C, G);
        }
        cell[(size_t)y[i] * G + a[i]]++, ny[y[i]]++, na[a[i]]++, total++;
    }
    for (int c = 0; c < C; c++)
        for (int g = 0; g < G; g++) {
            int64_t k = cell[(size_t)c * G + g];
            w[(size_t)c * G + g] = k ? (float)((double)ny[c] * (double)na[g] / (double)total / (double)k) : 0.0f;
        }
    free(cell);
    return 0;
}
