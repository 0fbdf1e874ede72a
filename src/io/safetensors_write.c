/* safetensors writer (the reader is safetensors.c):
 *   u64 LE header length N | N bytes of JSON, space-padded so 8 + N is a
 *   multiple of 8 | the tensors' bytes, back to back.
 * The Python library insists that the data_offsets tile the data section
 * exactly (no gaps), so alignment between tensors comes from their order:
 * 4-byte dtypes first, then 2-byte ones, each group by name. The file is
 * written through atomic.h, so PATH is either the old file or the new one. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "atomic.h"
#include "../core/f16.h"
#include "../core/strbuf.h"
#include "safetensors.h"

#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_ELEMS (1ull << 40)

static size_t dtype_bytes(st_dtype d) { return d == ST_F64 ? 8 : d == ST_F32 || d == ST_I32 ? 4 : 2; }

/* s as a JSON string literal. */
static void sb_json_string(xd_sbuf *b, const char *s) {
    json_t *j = json_string(s);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (d) xd_sb_puts(b, d);
    else b->err = 1;
    free(d);
    json_decref(j);
}

/* ---- the writer ------------------------------------------------------------ */

typedef struct {
    const st_write_tensor *t;
    uint64_t nbytes, begin;
} entry;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const entry *)a)->t->name, ((const entry *)b)->t->name);
}

static int cmp_layout(const void *a, const void *b) {
    const entry *x = a, *y = b;
    size_t bx = dtype_bytes(x->t->dtype), by = dtype_bytes(y->t->dtype);
    if (bx != by) return bx > by ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

/* Checks one tensor and computes its size in bytes. */
static int check_tensor(const char *path, int i, const st_write_tensor *t, uint64_t *nbytes) {
    if (!t->name || !*t->name) return xd_err("%s: tensor %d: empty name", path, i);
    if (!strcmp(t->name, "__metadata__"))
        return xd_err("%s: tensor %d: the name '__metadata__' is reserved", path, i);
    if ((unsigned)t->dtype > ST_I32)
        return xd_err("%s: tensor '%s': dtype %d is not one of F32, F16, BF16, F64, I32", path,
                      t->name, (int)t->dtype);
    if (t->n_dims < 0 || t->n_dims > 8)
        return xd_err("%s: tensor '%s': %d dimensions (expected 0..8)", path, t->name, t->n_dims);
    uint64_t nel = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] < 0)
            return xd_err("%s: tensor '%s': shape[%d] = %lld is negative", path, t->name, d,
                          (long long)t->shape[d]);
        uint64_t s = (uint64_t)t->shape[d];
        if (s && nel > ST_MAX_ELEMS / s)
            return xd_err("%s: tensor '%s': more than 2^40 elements", path, t->name);
        nel *= s;
    }
    if (nel && !t->data) return xd_err("%s: tensor '%s': no data", path, t->name);
    *nbytes = nel * dtype_bytes(t->dtype);
    return 0;
}

/* The __metadata__ object: string values only (as the format requires). */
static int metadata_text(const char *path, const char *json, char **out) {
    json_error_t je;
    json_t *m = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!m) return xd_err("%s: __metadata__: malformed JSON: %s", path, je.text);
    if (!json_is_object(m)) {
        json_decref(m);
        return xd_err("%s: __metadata__: expected a JSON object", path);
    }
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v)) {
            xd_err("%s: __metadata__.%s: expected a string (safetensors metadata values are "
                   "strings)", path, k);
            json_decref(m);
            return -1;
        }
    }
    *out = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(m);
    if (!*out) return xd_err("%s: out of memory", path);
    return 0;
}

/* The tensor's bytes in its dtype, through a bounce buffer for F16 / BF16. */
static int write_data(xd_afile *a, const st_write_tensor *t, uint64_t nbytes) {
    if (t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_I32)
        return xd_afile_write(a, t->data, (size_t)nbytes);
    const float *src = t->data;
    enum { CHUNK = 1 << 16 };
    uint64_t n = nbytes / 2;
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) {
        xd_afile_abort(a);
        return xd_err("%s: out of memory", a->path);
    }
    for (uint64_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;
        if (t->dtype == ST_F16) xd_fp32_to_fp16_n(buf, src + i, m);
        else xd_fp32_to_bf16_n(buf, src + i, m);
        if (xd_afile_write(a, buf, m * 2)) {
            free(buf);
            return -1;
        }
    }
    free(buf);
    return 0;
}

int xd_st_write(const char *path, const st_write_tensor *ts, int n, const char *metadata_json) {
    if (!path) return xd_err("xd_st_write: no path");
    if (n < 0 || (n > 0 && !ts)) return xd_err("%s: xd_st_write: invalid tensor list (%d)", path, n);
    entry *es = calloc((size_t)(n ? n : 1), sizeof *es);
    char *meta = NULL;
    xd_sbuf h = {0};
    int rc = -1;
    if (!es) { xd_err("%s: out of memory", path); goto done; }
    for (int i = 0; i < n; i++) {
        es[i].t = &ts[i];
        if (check_tensor(path, i, &ts[i], &es[i].nbytes)) goto done;
    }
    qsort(es, (size_t)n, sizeof *es, cmp_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(es[i - 1].t->name, es[i].t->name)) {
            xd_err("%s: tensor '%s' is given twice", path, es[i].t->name);
            goto done;
        }
    if (metadata_json && metadata_text(path, metadata_json, &meta)) goto done;

    /* offsets in layout order */
    qsort(es, (size_t)n, sizeof *es, cmp_layout);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        es[i].begin = off;
        off += es[i].nbytes;
    }
    /* header in name order */
    qsort(es, (size_t)n, sizeof *es, cmp_name);
    xd_sb_puts(&h, "{");
    if (meta) {
        xd_sb_puts(&h, "\"__metadata__\":");
        xd_sb_puts(&h, meta);
    }
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = es[i].t;
        if (i || meta) xd_sb_puts(&h, ",");
        sb_json_string(&h, t->name);
        xd_sb_puts(&h, ":{\"dtype\":\"");
        xd_sb_puts(&h, xd_st_dtype_name(t->dtype));
        xd_sb_puts(&h, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) {
            if (d) xd_sb_puts(&h, ",");
            xd_sb_printf(&h, "%llu", (unsigned long long)t->shape[d]);
        }
        xd_sb_puts(&h, "],\"data_offsets\":[");
        xd_sb_printf(&h, "%llu", (unsigned long long)es[i].begin);
        xd_sb_puts(&h, ",");
        xd_sb_printf(&h, "%llu", (unsigned long long)(es[i].begin + es[i].nbytes));
        xd_sb_puts(&h, "]}");
    }
    xd_sb_puts(&h, "}");
    while (!h.err && (8 + h.n) % 8) xd_sb_puts(&h, " "); /* (a failed append adds nothing) */
    if (h.err) { xd_err("%s: out of memory building the header", path); goto done; }
    if (h.n > ST_MAX_HEADER) {
        xd_err("%s: header of %zu bytes exceeds the format's 100 MB limit", path, h.n);
        goto done;
    }

    xd_afile a;
    if (xd_afile_open(&a, path)) goto done;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (xd_afile_write(&a, len8, 8) || xd_afile_write(&a, h.s, h.n)) goto done;
    qsort(es, (size_t)n, sizeof *es, cmp_layout);
    for (int i = 0; i < n; i++)
        if (write_data(&a, es[i].t, es[i].nbytes)) goto done; /* a is aborted on failure */
    rc = xd_afile_commit(&a);
done:
    free(es);
    free(meta);
    xd_sb_free(&h);
    return rc;
}
