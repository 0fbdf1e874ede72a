/* GGUF v3 writer (gguf_write.h). */
#include "gguf_write.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/ggml_type.h"
#include "core/mem.h"
#include "core/strbuf.h"
#include "io/atomic.h"
#include "io/gguf.h"

#define ALIGN 32

typedef struct {
    char name[128];
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    size_t off, nbytes;
} out_tensor;

struct xd_gguf_out {
    xd_sbuf kv;      /* the metadata entries, serialised */
    uint64_t n_kv;
    out_tensor *t;
    int n_t;
    size_t cap_t;
    size_t data_bytes; /* the data section so far: each tensor at a multiple of ALIGN */
};

xd_gguf_out *xd_gguf_out_new(void) {
    xd_gguf_out *o = calloc(1, sizeof *o);
    if (!o) xd_err("out of memory");
    return o;
}

void xd_gguf_out_free(xd_gguf_out *o) {
    if (!o) return;
    xd_sb_free(&o->kv);
    free(o->t);
    free(o);
}

static void put(xd_sbuf *b, const void *p, size_t n) { xd_sb_add(b, p, n); }
static void put_u32(xd_sbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(xd_sbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(xd_sbuf *b, const char *s) {
    uint64_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

static int key(xd_gguf_out *o, const char *k, uint32_t type) {
    put_str(&o->kv, k);
    put_u32(&o->kv, type);
    o->n_kv++;
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_str(xd_gguf_out *o, const char *k, const char *v) {
    if (key(o, k, GGUF_T_STRING)) return -1;
    put_str(&o->kv, v);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_u32(xd_gguf_out *o, const char *k, uint32_t v) {
    if (key(o, k, GGUF_T_UINT32)) return -1;
    put_u32(&o->kv, v);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_u64(xd_gguf_out *o, const char *k, uint64_t v) {
    if (key(o, k, GGUF_T_UINT64)) return -1;
    put_u64(&o->kv, v);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_f32(xd_gguf_out *o, const char *k, float v) {
    if (key(o, k, GGUF_T_FLOAT32)) return -1;
    put(&o->kv, &v, 4);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_bool(xd_gguf_out *o, const char *k, int v) {
    if (key(o, k, GGUF_T_BOOL)) return -1;
    uint8_t b = v != 0;
    put(&o->kv, &b, 1);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_strs(xd_gguf_out *o, const char *k, const char *const *v, uint64_t n) {
    if (key(o, k, GGUF_T_ARRAY)) return -1;
    put_u32(&o->kv, GGUF_T_STRING);
    put_u64(&o->kv, n);
    for (uint64_t i = 0; i < n; i++) put_str(&o->kv, v[i]);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_i32s(xd_gguf_out *o, const char *k, const int32_t *v, uint64_t n) {
    if (key(o, k, GGUF_T_ARRAY)) return -1;
    put_u32(&o->kv, GGUF_T_INT32);
    put_u64(&o->kv, n);
    put(&o->kv, v, n * 4);
    return o->kv.err ? -1 : 0;
}

int xd_gguf_out_tensor(xd_gguf_out *o, const char *name, uint32_t type, int n_dims,
                       const int64_t *ne) {
    size_t be, bb;
    if (strlen(name) >= sizeof o->t[0].name)
        return xd_err("GGUF writer: tensor name '%s' is longer than %zu bytes", name,
                      sizeof o->t[0].name - 1);
    if (n_dims < 1 || n_dims > 4 || xd_ggml_type_block(type, &be, &bb))
        return xd_err("GGUF writer: tensor '%s': %d dimensions of type %u (expected 1 .. 4 of a "
                      "known type)", name, n_dims, type);
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= ne[i];
    if (ne[0] <= 0 || ne[0] % (int64_t)be)
        return xd_err("GGUF writer: tensor '%s': rows of %lld elements are not a multiple of "
                      "type %u's block of %zu", name, (long long)ne[0], type, be);
    if (xd_grow((void **)&o->t, &o->cap_t, (size_t)o->n_t + 1, sizeof *o->t)) return -1;
    out_tensor *t = &o->t[o->n_t++];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, strlen(name));
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->ne[i] = ne[i];
    t->nbytes = (size_t)(n / (int64_t)be) * bb;
    t->off = o->data_bytes;
    o->data_bytes += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    return 0;
}

int xd_gguf_out_write(xd_gguf_out *o, const char *path, xd_gguf_fill fill, void *ctx) {
    if (o->kv.err) return xd_err("GGUF writer: %s: out of memory", path);
    xd_sbuf h = {0};
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)o->n_t);
    put_u64(&h, o->n_kv);
    if (o->kv.n) put(&h, o->kv.s, o->kv.n);
    for (int i = 0; i < o->n_t; i++) {
        const out_tensor *t = &o->t[i];
        put_str(&h, t->name);
        put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, t->type);
        put_u64(&h, (uint64_t)t->off);
    }
    static const char zeros[ALIGN];
    if (h.n % ALIGN) put(&h, zeros, ALIGN - h.n % ALIGN);
    if (h.err) { xd_sb_free(&h); return xd_err("GGUF writer: %s: out of memory", path); }
    size_t most = 0;
    for (int i = 0; i < o->n_t; i++) most = o->t[i].nbytes > most ? o->t[i].nbytes : most;
    void *buf = malloc(most + ALIGN);
    xd_afile a;
    int rc = buf ? xd_afile_open(&a, path) : xd_err("GGUF writer: out of memory for %zu bytes", most);
    if (!rc) rc = xd_afile_write(&a, h.s, h.n);
    for (int i = 0; i < o->n_t && !rc; i++) {
        const out_tensor *t = &o->t[i];
        size_t pad = (t->nbytes + ALIGN - 1) / ALIGN * ALIGN - t->nbytes;
        memset((char *)buf + t->nbytes, 0, pad);
        if (fill(ctx, i, buf, t->nbytes)) {
            xd_afile_abort(&a);
            rc = -1;
            break;
        }
        rc = xd_afile_write(&a, buf, t->nbytes + pad);
    }
    if (!rc) rc = xd_afile_commit(&a);
    free(buf);
    xd_sb_free(&h);
    return rc;
}
