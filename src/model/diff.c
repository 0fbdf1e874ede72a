/* Sparse weight diffs (diff.h). */
#include "diff.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "io/safetensors.h"

void xd_diff_free(xd_diff *d) {
    if (!d) return;
    for (int i = 0; i < d->n_parts; i++) {
        free(d->parts[i].idx);
        free(d->parts[i].val);
    }
    free(d->parts);
    free(d->name);
    free(d);
}

int64_t xd_diff_nnz(const xd_diff *d) {
    int64_t n = 0;
    for (int i = 0; i < d->n_parts; i++) n += d->parts[i].nnz;
    return n;
}

int64_t xd_diff_bytes(const xd_diff *d) { return xd_diff_nnz(d) * (int64_t)(sizeof(int32_t) + sizeof(float)); }

static int part_by_name(const void *a, const void *b) {
    return strcmp((*(const xd_diff_part *const *)a)->name, (*(const xd_diff_part *const *)b)->name);
}

uint64_t xd_diff_hash(const xd_diff *d) {
    /* in name order: a diff built in the model's order and one read back from its file
     * (tensors sorted by name) hash alike */
    const xd_diff_part **ps = malloc((size_t)d->n_parts * sizeof *ps + 1);
    if (!ps) return 0;
    for (int i = 0; i < d->n_parts; i++) ps[i] = &d->parts[i];
    qsort(ps, (size_t)d->n_parts, sizeof *ps, part_by_name);
    uint64_t h = XD_FNV1A64_INIT;
    for (int i = 0; i < d->n_parts; i++) {
        const xd_diff_part *p = ps[i];
        h = xd_fnv1a64(h, p->name, strlen(p->name) + 1);
        h = xd_fnv1a64(h, &p->size, sizeof p->size);
        h = xd_hash64(p->idx, (size_t)p->nnz * sizeof *p->idx, h);
        h = xd_hash64(p->val, (size_t)p->nnz * sizeof *p->val, h);
    }
    free(ps);
    return h;
}

static xd_diff *diff_new(const char *name, uint64_t hash, int cap) {
    xd_diff *d = calloc(1, sizeof *d);
    if (d) d->parts = calloc((size_t)(cap > 0 ? cap : 1), sizeof *d->parts);
    if (d) d->name = strdup(name);
    if (!d || !d->parts || !d->name) {
        xd_diff_free(d);
        return xd_err("out of memory"), NULL;
    }
    d->base_hash = hash;
    return d;
}

xd_diff *xd_diff_from_dense(const xd_model *m, const char *name, const float *delta) {
    if (!name || !*name) return xd_err("a diff needs a name (\"task\" or the attribute)"), NULL;
    xd_weight *w;
    int n;
    if (xd_model_weights(m, &w, &n)) return NULL;
    xd_diff *d = diff_new(name, xd_model_teacher_hash(m), n);
    for (int i = 0; d && i < n; i++) {
        const float *src = delta + (w[i].ptr - m->arena);
        int64_t size = w[i].rows * w[i].cols, nnz = 0;
        for (int64_t j = 0; j < size; j++) nnz += src[j] != 0.0f;
        if (!nnz) continue;
        if (size > INT32_MAX) {
            xd_err("diff: weight %s has %lld elements, more than int32 indices address", w[i].hf,
                   (long long)size);
            xd_diff_free(d);
            d = NULL;
            break;
        }
        xd_diff_part *p = &d->parts[d->n_parts++];
        snprintf(p->name, sizeof p->name, "%s", w[i].hf);
        p->size = size;
        p->nnz = nnz;
        p->idx = malloc((size_t)nnz * sizeof *p->idx);
        p->val = malloc((size_t)nnz * sizeof *p->val);
        if (!p->idx || !p->val) {
            xd_err("out of memory");
            xd_diff_free(d);
            d = NULL;
            break;
        }
        for (int64_t j = 0, k = 0; j < size; j++)
            if (src[j] != 0.0f) {
                p->idx[k] = (int32_t)j;
                p->val[k++] = src[j];
            }
    }
    free(w);
    return d;
}

int xd_diff_save(const xd_diff *d, const char *path) {
    int n = 2 * d->n_parts, rc = -1;
    st_write_tensor *ts = calloc((size_t)(n > 0 ? n : 1), sizeof *ts);
    char (*names)[112] = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    json_t *meta = json_object(), *sizes = json_object();
    char *sizes_txt = NULL, *meta_txt = NULL, hash[24];
    if (!ts || !names || !meta || !sizes) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < d->n_parts; i++) {
        const xd_diff_part *p = &d->parts[i];
        snprintf(names[2 * i], sizeof names[0], "%s.idx", p->name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.val", p->name);
        ts[2 * i] = (st_write_tensor){names[2 * i], ST_I32, 1, {p->nnz}, p->idx};
        ts[2 * i + 1] = (st_write_tensor){names[2 * i + 1], ST_F32, 1, {p->nnz}, p->val};
        json_object_set_new(sizes, p->name, json_integer((json_int_t)p->size));
    }
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->base_hash);
    sizes_txt = json_dumps(sizes, JSON_COMPACT | JSON_SORT_KEYS);
    if (!sizes_txt) { xd_err("out of memory"); goto done; }
    json_object_set_new(meta, "format", json_string("xdistill-diff"));
    json_object_set_new(meta, "name", json_string(d->name));
    json_object_set_new(meta, "base_hash", json_string(hash));
    json_object_set_new(meta, "sizes", json_string(sizes_txt));
    if (d->parent_hash) {
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->parent_hash);
        json_object_set_new(meta, "parent_hash", json_string(hash));
    }
    meta_txt = json_dumps(meta, JSON_COMPACT);
    if (!meta_txt) { xd_err("out of memory"); goto done; }
    rc = xd_st_write(path, ts, n, meta_txt);
done:
    free(ts), free(names), free(sizes_txt), free(meta_txt);
    json_decref(meta);
    json_decref(sizes);
    return rc;
}

/* One part from "W.idx" and "W.val"; sizes: the metadata's weight -> element count. */
static int load_part(const char *path, const st_set *s, const st_tensor *ti, const json_t *sizes,
                     xd_diff_part *p) {
    size_t len = strlen(ti->name) - 4; /* without ".idx" */
    if (len >= sizeof p->name) return xd_err("%s: tensor '%s': name too long", path, ti->name);
    memcpy(p->name, ti->name, len);
    p->name[len] = 0;
    char vn[112];
    snprintf(vn, sizeof vn, "%s.val", p->name);
    const st_tensor *tv = xd_st_find(s, vn);
    const json_t *sz = json_object_get(sizes, p->name);
    if (!tv) return xd_err("%s: tensor '%s' has no '%s'", path, ti->name, vn);
    if (!json_is_integer(sz) || json_integer_value(sz) < 1 || json_integer_value(sz) > INT32_MAX)
        return xd_err("%s: __metadata__.sizes: no element count in 1 .. 2^31-1 for '%s'", path,
                      p->name);
    if (ti->dtype != ST_I32 || tv->dtype != ST_F32 || ti->n_dims != 1 || tv->n_dims != 1 ||
        ti->shape[0] != tv->shape[0] || ti->shape[0] < 1)
        return xd_err("%s: '%s' and '%s': expected I32 [nnz] and F32 [nnz] of one length >= 1",
                      path, ti->name, vn);
    p->size = json_integer_value(sz);
    p->nnz = ti->shape[0];
    p->idx = malloc((size_t)p->nnz * sizeof *p->idx);
    p->val = malloc((size_t)p->nnz * sizeof *p->val);
    if (!p->idx || !p->val) return xd_err("out of memory");
    if (xd_st_to_i32(s, ti, p->idx) || xd_st_to_f32(s, tv, p->val)) return -1;
    for (int64_t k = 0; k < p->nnz; k++)
        if (p->idx[k] < 0 || p->idx[k] >= p->size || (k && p->idx[k] <= p->idx[k - 1]))
            return xd_err("%s: tensor '%s': index %lld at position %lld; expected ascending "
                          "indices in [0, %lld)", path, ti->name, (long long)p->idx[k],
                          (long long)k, (long long)p->size);
    return 0;
}

xd_diff *xd_diff_load(const char *path) {
    st_set *s = xd_st_open(path);
    if (!s) return NULL;
    const char *fmt = xd_st_meta(s, "format"), *name = xd_st_meta(s, "name");
    const char *hash = xd_st_meta(s, "base_hash"), *sizes_txt = xd_st_meta(s, "sizes");
    const char *parent = xd_st_meta(s, "parent_hash");
    xd_diff *d = NULL;
    json_t *sizes = NULL;
    char *end = NULL, *pend = NULL;
    unsigned long long h = hash ? strtoull(hash, &end, 16) : 0;
    unsigned long long ph = parent ? strtoull(parent, &pend, 16) : 0;
    if (!fmt || strcmp(fmt, "xdistill-diff"))
        xd_err("%s: __metadata__.format: '%s', expected 'xdistill-diff'", path, fmt ? fmt : "(none)");
    else if (!name || !*name)
        xd_err("%s: __metadata__.name: missing or empty", path);
    else if (!hash || strlen(hash) != 16 || *end)
        xd_err("%s: __metadata__.base_hash: '%s', expected 16 hex digits", path, hash ? hash : "(none)");
    else if (parent && (strlen(parent) != 16 || *pend))
        xd_err("%s: __metadata__.parent_hash: '%s', expected 16 hex digits", path, parent);
    else if (!sizes_txt || !(sizes = json_loads(sizes_txt, 0, NULL)) || !json_is_object(sizes))
        xd_err("%s: __metadata__.sizes: missing or not a JSON object", path);
    else if ((d = diff_new(name, h, s->n_tensors / 2 + 1))) {
        d->parent_hash = ph;
        for (int i = 0; i < s->n_tensors; i++) {
            const st_tensor *t = &s->tensors[i];
            size_t l = strlen(t->name);
            int is_idx = l > 4 && !strcmp(t->name + l - 4, ".idx");
            int is_val = l > 4 && !strcmp(t->name + l - 4, ".val");
            if (!is_idx && !is_val) {
                xd_err("%s: tensor '%s': expected only WEIGHT.idx and WEIGHT.val", path, t->name);
                goto fail;
            }
            if (is_val) {
                char in[112];
                snprintf(in, sizeof in, "%.*s.idx", (int)(l - 4), t->name);
                if (!xd_st_find(s, in)) {
                    xd_err("%s: tensor '%s' has no '%s'", path, t->name, in);
                    goto fail;
                }
                continue;
            }
            if (d->n_parts >= s->n_tensors / 2 + 1 ||
                load_part(path, s, t, sizes, &d->parts[d->n_parts++]))
                goto fail;
        }
    }
    json_decref(sizes);
    xd_st_close(s);
    return d;
fail:
    json_decref(sizes);
    xd_st_close(s);
    xd_diff_free(d);
    return NULL;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const xd_diff *const *)a)->name, (*(const xd_diff *const *)b)->name);
}

int xd_diff_materialize(xd_model *m, const float *theta0, uint64_t base_hash,
                        const xd_diff *const *diffs, int n) {
    xd_weight *w;
    int nw, rc = -1;
    if (xd_model_weights(m, &w, &nw)) return -1;
    const xd_diff **order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    size_t *off = NULL;
    int64_t total = 0;
    for (int k = 0; k < n; k++) total += diffs[k]->n_parts;
    off = malloc((size_t)(total > 0 ? total : 1) * sizeof *off);
    if (!order || !off) { xd_err("out of memory"); goto done; }
    /* the canonical order first; then every check, before m is touched; off[] follows the
     * parts in that order */
    if (n > 0) memcpy(order, diffs, (size_t)n * sizeof *order); /* diffs may be NULL when n = 0 */
    qsort(order, (size_t)n, sizeof *order, by_name);
    int64_t t = 0;
    for (int k = 0; k < n; k++) {
        const xd_diff *d = order[k];
        if (d->base_hash != base_hash) {
            xd_err("diff '%s' was made for another base model (hash %016llx; this one is "
                   "%016llx)", d->name, (unsigned long long)d->base_hash,
                   (unsigned long long)base_hash);
            goto done;
        }
        if (k && !strcmp(order[k - 1]->name, d->name)) { /* sorted: duplicates are adjacent */
            xd_err("two diffs named '%s'", d->name);
            goto done;
        }
        for (int i = 0; i < d->n_parts; i++, t++) {
            const xd_diff_part *p = &d->parts[i];
            int found = -1;
            for (int q = 0; q < nw && found < 0; q++)
                if (!strcmp(w[q].hf, p->name)) found = q;
            if (found < 0 || w[found].rows * w[found].cols != p->size) {
                xd_err("diff '%s': weight '%s' (%lld elements) %s", d->name, p->name,
                       (long long)p->size, found < 0 ? "is not in the model" : "has another size");
                goto done;
            }
            off[t] = (size_t)(w[found].ptr - m->arena);
        }
    }
    memcpy(m->arena, theta0, m->arena_floats * sizeof(float));
    t = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < order[k]->n_parts; i++, t++) {
            const xd_diff_part *p = &order[k]->parts[i];
            float *dst = m->arena + off[t];
            for (int64_t j = 0; j < p->nnz; j++) dst[p->idx[j]] += p->val[j];
        }
    rc = 0;
done:
    free(order);
    free(off);
    free(w);
    return rc;
}
