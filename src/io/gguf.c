/* GGUF reader. Layout (little-endian):
 *   u32 magic "GGUF" | u32 version (2,3) | u64 n_tensors | u64 n_kv
 *   n_kv × { string key | u32 type | value }
 *   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data
 * A string is u64 length + bytes; an array is u32 elem type + u64 count + elements. */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/error.h"
#include "ggml_types.h"
#include "mapfile.h"

typedef struct {
    const gguf_file *g;
    uint64_t pos;
    char what[192]; /* what is being read, for messages */
} cursor;

static void set_what(cursor *c, const char *fmt, const char *name) {
    snprintf(c->what, sizeof c->what, fmt, name);
}

static int need(cursor *c, uint64_t n) {
    if (n > c->g->size || c->pos > c->g->size - n)
        return xd_err("%s: %s: truncated file: needs %llu bytes at offset %llu, file has %zu",
                      c->g->path, c->what, (unsigned long long)n, (unsigned long long)c->pos,
                      c->g->size);
    return 0;
}

static int rd(cursor *c, void *dst, size_t n) {
    if (need(c, n)) return -1;
    memcpy(dst, c->g->map + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v) { return rd(c, v, 4); }
static int rd_u64(cursor *c, uint64_t *v) { return rd(c, v, 8); }

static int rd_str(cursor *c, gguf_str *s) {
    uint64_t n;
    if (rd_u64(c, &n)) return -1;
    if (need(c, n)) return -1;
    s->ptr = (const char *)c->g->map + c->pos;
    s->len = n;
    c->pos += n;
    return 0;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *kv_type_names[GGUF_T_COUNT] = {"uint8", "int8",  "uint16", "int16", "uint32",
                                                   "int32", "float32", "bool", "string", "array",
                                                   "uint64", "int64", "float64"};

const char *xd_gguf_type_name(uint32_t t) { return t < GGUF_T_COUNT ? kv_type_names[t] : "invalid"; }

/* Reads one scalar of type t into kv->v (integers widened, floats to double). */
static int rd_scalar(cursor *c, uint32_t t, gguf_kv *kv) {
    uint8_t b[8] = {0};
    size_t n = scalar_size(t);
    if (rd(c, b, n)) return -1;
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_BOOL: kv->v.u = b[0]; break;
    case GGUF_T_INT8: kv->v.i = (int8_t)b[0]; break;
    case GGUF_T_UINT16: { uint16_t x; memcpy(&x, b, 2); kv->v.u = x; break; }
    case GGUF_T_INT16: { int16_t x; memcpy(&x, b, 2); kv->v.i = x; break; }
    case GGUF_T_UINT32: { uint32_t x; memcpy(&x, b, 4); kv->v.u = x; break; }
    case GGUF_T_INT32: { int32_t x; memcpy(&x, b, 4); kv->v.i = x; break; }
    case GGUF_T_FLOAT32: { float x; memcpy(&x, b, 4); kv->v.f = x; break; }
    case GGUF_T_UINT64: memcpy(&kv->v.u, b, 8); break;
    case GGUF_T_INT64: memcpy(&kv->v.i, b, 8); break;
    case GGUF_T_FLOAT64: memcpy(&kv->v.f, b, 8); break;
    default: return -1;
    }
    return 0;
}

static int rd_kv(cursor *c, gguf_kv *kv, uint64_t idx) {
    char key[128];
    snprintf(c->what, sizeof c->what, "metadata entry %llu key", (unsigned long long)idx);
    if (rd_str(c, &kv->key)) return -1;
    xd_gguf_str_copy(kv->key, key, sizeof key);
    set_what(c, "metadata '%s'", key);
    if (rd_u32(c, &kv->type)) return -1;
    if (kv->type == GGUF_T_STRING) return rd_str(c, &kv->v.s);
    if (kv->type == GGUF_T_ARRAY) {
        if (rd_u32(c, &kv->arr_type) || rd_u64(c, &kv->arr_n)) return -1;
        if (kv->arr_type == GGUF_T_STRING) {
            /* each element takes at least 8 bytes: bound the count before allocating */
            if (kv->arr_n > (c->g->size - c->pos) / 8)
                return xd_err("%s: metadata '%s': array of %llu strings cannot fit in the file",
                              c->g->path, key, (unsigned long long)kv->arr_n);
            kv->arr_strs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof(gguf_str));
            if (!kv->arr_strs) return xd_err("%s: out of memory for '%s'", c->g->path, key);
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if (rd_str(c, &kv->arr_strs[i])) return -1;
            return 0;
        }
        size_t es = scalar_size(kv->arr_type);
        if (!es)
            return xd_err("%s: metadata '%s': unsupported array element type %u (expected a "
                          "scalar or string type)", c->g->path, key, kv->arr_type);
        if (kv->arr_n > (c->g->size - c->pos) / es)
            return xd_err("%s: metadata '%s': array of %llu elements runs past the end of file",
                          c->g->path, key, (unsigned long long)kv->arr_n);
        kv->arr_data = c->g->map + c->pos;
        c->pos += kv->arr_n * es;
        return 0;
    }
    if (!scalar_size(kv->type))
        return xd_err("%s: metadata '%s': unknown value type %u (expected 0..12)", c->g->path, key,
                      kv->type);
    return rd_scalar(c, kv->type, kv);
}

static int rd_tensor(cursor *c, gguf_tensor *t, uint64_t idx) {
    gguf_str name;
    snprintf(c->what, sizeof c->what, "tensor %llu name", (unsigned long long)idx);
    if (rd_str(c, &name)) return -1;
    if (name.len >= sizeof t->name)
        return xd_err("%s: tensor %llu: name of %llu bytes is too long (max %zu)", c->g->path,
                      (unsigned long long)idx, (unsigned long long)name.len, sizeof t->name - 1);
    xd_gguf_str_copy(name, t->name, sizeof t->name);
    set_what(c, "tensor '%s'", t->name);
    if (rd_u32(c, &t->n_dims)) return -1;
    if (t->n_dims < 1 || t->n_dims > 4)
        return xd_err("%s: tensor '%s': n_dims = %u, expected 1..4", c->g->path, t->name,
                      t->n_dims);
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne)) return -1;
        if (ne == 0 || ne > (1ull << 40) || nel > (1ull << 40) / ne)
            return xd_err("%s: tensor '%s': dimension %u = %llu is absurd", c->g->path, t->name,
                          d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        nel *= ne;
    }
    if (rd_u32(c, &t->type) || rd_u64(c, &t->offset)) return -1;
    size_t be, bb;
    if (xd_ggml_type_block(t->type, &be, &bb))
        return xd_err("%s: tensor '%s': unsupported ggml type %u (%s), expected one of %s",
                      c->g->path, t->name, t->type, xd_ggml_type_name(t->type),
                      xd_ggml_supported_types());
    if (t->ne[0] % (int64_t)be)
        return xd_err("%s: tensor '%s': row length %lld is not a multiple of the %s block (%zu)",
                      c->g->path, t->name, (long long)t->ne[0], xd_ggml_type_name(t->type), be);
    t->nbytes = nel / be * bb;
    return 0;
}

gguf_file *xd_gguf_open(const char *path) {
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) { xd_err("out of memory"); return NULL; }
    snprintf(g->path, sizeof g->path, "%s", path);
    uint8_t *map;
    if (xd_map_file(path, 24, "GGUF file", &map, &g->size)) { free(g); return NULL; }
    g->map = map;

    cursor c = {g, 0, "header"};
    uint32_t magic;
    rd_u32(&c, &magic);
    if (memcmp(g->map, "GGUF", 4)) {
        xd_err("%s: bad magic %02x%02x%02x%02x: expected \"GGUF\"", path, g->map[0], g->map[1],
               g->map[2], g->map[3]);
        goto fail;
    }
    rd_u32(&c, &g->version);
    if (g->version != 2 && g->version != 3) {
        xd_err("%s: GGUF version %u is not supported (expected 2 or 3)", path, g->version);
        goto fail;
    }
    rd_u64(&c, &g->n_tensors);
    rd_u64(&c, &g->n_kv);
    /* each kv takes ≥ 12 bytes, each tensor ≥ 24: bound counts before allocating */
    if (g->n_kv > g->size / 12 || g->n_tensors > g->size / 24) {
        xd_err("%s: header counts n_kv=%llu, n_tensors=%llu cannot fit in %zu bytes", path,
               (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, g->size);
        goto fail;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) { xd_err("%s: out of memory", path); goto fail; }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (rd_kv(&c, &g->kv[i], i)) goto fail;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (rd_tensor(&c, &g->tensors[i], i)) goto fail;

    g->alignment = 32;
    const gguf_kv *al = xd_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_T_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1))) {
            xd_err("%s: general.alignment must be a power-of-two uint32", path);
            goto fail;
        }
        g->alignment = al->v.u;
    }
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_offset > g->size) {
        xd_err("%s: data section starts at %llu, past the end of file (%zu bytes)", path,
               (unsigned long long)g->data_offset, g->size);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t avail = g->size - g->data_offset;
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            xd_err("%s: tensor '%s': data [%llu, +%llu) runs past the end of file "
                   "(data section has %llu bytes)", path, t->name,
                   (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                   (unsigned long long)avail);
            goto fail;
        }
        if (t->offset % g->alignment) {
            xd_err("%s: tensor '%s': offset %llu is not aligned to %llu", path, t->name,
                   (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto fail;
        }
        t->data = g->map + g->data_offset + t->offset;
    }
    return g;
fail:
    xd_gguf_close(g);
    return NULL;
}

void xd_gguf_close(gguf_file *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].arr_strs);
    free(g->kv);
    free(g->tensors);
    if (g->map) munmap((void *)g->map, g->size);
    free(g);
}

int xd_gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

void xd_gguf_str_copy(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
}

const gguf_kv *xd_gguf_find(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (xd_gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const gguf_tensor *xd_gguf_find_tensor(const gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int is_int(uint32_t t) {
    return t <= GGUF_T_INT32 || t == GGUF_T_BOOL || t == GGUF_T_UINT64 || t == GGUF_T_INT64;
}
static int is_signed(uint32_t t) {
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

int xd_gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = xd_gguf_find(g, key);
    if (!kv) return xd_err("%s: missing metadata '%s' (expected an integer)", g->path, key);
    if (!is_int(kv->type) || (is_signed(kv->type) && kv->v.i < 0))
        return xd_err("%s: metadata '%s' is %s, expected a non-negative integer", g->path, key,
                      xd_gguf_type_name(kv->type));
    *out = kv->v.u;
    return 0;
}

int xd_gguf_get_f64(const gguf_file *g, const char *key, double *out) {
    const gguf_kv *kv = xd_gguf_find(g, key);
    if (!kv) return xd_err("%s: missing metadata '%s' (expected a number)", g->path, key);
    if (kv->type == GGUF_T_FLOAT32 || kv->type == GGUF_T_FLOAT64) *out = kv->v.f;
    else if (is_int(kv->type)) *out = is_signed(kv->type) ? (double)kv->v.i : (double)kv->v.u;
    else return xd_err("%s: metadata '%s' is %s, expected a number", g->path, key,
                       xd_gguf_type_name(kv->type));
    return 0;
}

int xd_gguf_get_str(const gguf_file *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = xd_gguf_find(g, key);
    if (!kv) return xd_err("%s: missing metadata '%s' (expected a string)", g->path, key);
    if (kv->type != GGUF_T_STRING)
        return xd_err("%s: metadata '%s' is %s, expected a string", g->path, key,
                      xd_gguf_type_name(kv->type));
    *out = kv->v.s;
    return 0;
}

int xd_gguf_opt_u64(const gguf_file *g, const char *key, uint64_t *out) {
    return xd_gguf_find(g, key) ? xd_gguf_get_u64(g, key, out) : 0;
}

int xd_gguf_opt_f64(const gguf_file *g, const char *key, double *out) {
    return xd_gguf_find(g, key) ? xd_gguf_get_f64(g, key, out) : 0;
}
