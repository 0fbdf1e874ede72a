/* Streaming F32 safetensors writer (see safetensors.h): header first, then
 * the tensors one by one in name order, so the data offsets tile the data
 * section in that order. Used by `merge`, which never holds a whole model. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "safetensors.h"

static const st_write_tensor *g_sort_ts; /* for the qsort comparator only */

static int cmp_idx(const void *a, const void *b) {
    return strcmp(g_sort_ts[*(const int *)a].name, g_sort_ts[*(const int *)b].name);
}

void xd_st_stream_order(const st_write_tensor *ts, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    g_sort_ts = ts;
    qsort(order, (size_t)n, sizeof *order, cmp_idx);
    g_sort_ts = NULL;
}

void xd_st_stream_abort(st_stream *s) {
    xd_afile_abort(&s->f);
    free(s->order);
    free(s->bytes);
    s->order = NULL;
    s->bytes = NULL;
}

int xd_st_stream_begin(st_stream *s, const char *path, const st_write_tensor *ts, int n,
                    const char *metadata_json) {
    memset(s, 0, sizeof *s);
    if (n < 1 || !ts) return xd_err("%s: streaming writer: no tensors", path);
    s->n = n;
    s->order = malloc((size_t)n * sizeof *s->order);
    s->bytes = malloc((size_t)n * sizeof *s->bytes);
    json_t *h = json_object();
    char *text = NULL;
    if (!s->order || !s->bytes || !h) { xd_err("%s: out of memory", path); goto fail; }
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &ts[i];
        if (!t->name || !*t->name || !strcmp(t->name, "__metadata__")) {
            xd_err("%s: tensor %d: empty or reserved name", path, i);
            goto fail;
        }
        if (t->dtype != ST_F32 || t->n_dims < 0 || t->n_dims > 8) {
            xd_err("%s: tensor '%s': the streaming writer takes F32 tensors of 0..8 dims", path, t->name);
            goto fail;
        }
        uint64_t nel = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if (t->shape[d] < 0) { xd_err("%s: tensor '%s': negative shape", path, t->name); goto fail; }
            nel *= (uint64_t)t->shape[d];
        }
        s->bytes[i] = nel * 4;
    }
    xd_st_stream_order(ts, n, s->order);
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        const st_write_tensor *t = &ts[s->order[k]];
        if (k && !strcmp(ts[s->order[k - 1]].name, t->name)) {
            xd_err("%s: tensor '%s' is given twice", path, t->name);
            goto fail;
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + s->bytes[s->order[k]]));
        if (!e || json_object_set_new(h, t->name, e)) { xd_err("%s: out of memory", path); goto fail; }
        off += s->bytes[s->order[k]];
    }
    if (metadata_json) {
        json_error_t je;
        json_t *m = json_loads(metadata_json, 0, &je);
        if (!m || !json_is_object(m)) {
            json_decref(m);
            xd_err("%s: __metadata__: expected a JSON object", path);
            goto fail;
        }
        json_object_set_new(h, "__metadata__", m);
    }
    text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) { xd_err("%s: out of memory", path); goto fail; }
    size_t len = strlen(text), pad = (8 - (8 + len) % 8) % 8;
    uint8_t le[8];
    for (int b = 0; b < 8; b++) le[b] = (uint8_t)((uint64_t)(len + pad) >> (8 * b));
    if (xd_afile_open(&s->f, path)) goto fail;
    if (xd_afile_write(&s->f, le, 8) || xd_afile_write(&s->f, text, len) ||
        (pad && xd_afile_write(&s->f, "        ", pad)))
        goto fail;
    free(text);
    json_decref(h);
    return 0;
fail:
    free(text);
    json_decref(h);
    xd_st_stream_abort(s);
    return -1;
}

int xd_st_stream_next(const st_stream *s) { return s->next < s->n ? s->order[s->next] : -1; }

int xd_st_stream_put(st_stream *s, const float *data) {
    if (s->next >= s->n) return xd_err("%s: every tensor was already written", s->f.path);
    uint64_t nb = s->bytes[s->order[s->next]];
    if (nb && xd_afile_write(&s->f, data, (size_t)nb)) {
        xd_st_stream_abort(s);
        return -1;
    }
    s->next++;
    return 0;
}

int xd_st_stream_end(st_stream *s) {
    if (s->next != s->n) {
        xd_err("%s: only %d of %d tensors were written", s->f.path, s->next, s->n);
        xd_st_stream_abort(s);
        return -1;
    }
    int rc = xd_afile_commit(&s->f);
    free(s->order);
    free(s->bytes);
    s->order = NULL;
    s->bytes = NULL;
    return rc;
}
