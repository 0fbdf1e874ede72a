/* safetensors reader. Layout:
 *   u64 LE header length N | N bytes of JSON | data section (rest of the file)
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * with offsets relative to the data section; "__metadata__" holds free-form strings.
 * Every file is mmap'ed and every number in the header is checked before use. */
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.h"
#include "../core/f16.h"
#include "mapfile.h"

#define ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB of JSON */
#define ST_MAX_DIM (1ull << 40)    /* larger dimensions or element counts are absurd */
#define ST_MAX_DIMS 8

static const char *dtype_names[] = {"F32", "F16", "BF16", "F64", "I32"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 4};

const char *xd_st_dtype_name(st_dtype d) {
    return (unsigned)d < sizeof dtype_names / sizeof *dtype_names ? dtype_names[d] : "invalid";
}

static int parse_dtype(const char *s, st_dtype *d) {
    for (int i = 0; i < (int)(sizeof dtype_names / sizeof *dtype_names); i++)
        if (!strcmp(s, dtype_names[i])) { *d = (st_dtype)i; return 0; }
    return -1;
}

/* ---- the set: growable arrays of files and tensors ----------------------- */

static st_set *set_new(void) {
    st_set *s = calloc(1, sizeof *s);
    if (!s) xd_err("out of memory");
    return s;
}

void xd_st_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        if (s->maps && s->maps[i]) munmap((void *)s->maps[i], s->sizes[i]);
        if (s->paths) free(s->paths[i]);
    }
    for (int i = 0; i < s->n_tensors; i++) free(s->tensors[i].name);
    for (int i = 0; i < s->n_meta; i++) free(s->meta_keys[i]), free(s->meta_values[i]);
    free(s->meta_keys);
    free(s->meta_values);
    free(s->paths);
    free((void *)s->maps);
    free(s->sizes);
    free(s->tensors);
    free(s);
}

/* Appends an empty file slot; returns its index or -1. */
static int set_add_file(st_set *s, const char *path) {
    int n = s->n_files + 1;
    char **paths = realloc(s->paths, n * sizeof *paths);
    if (paths) s->paths = paths;
    const uint8_t **maps = realloc((void *)s->maps, n * sizeof *maps);
    if (maps) s->maps = maps;
    size_t *sizes = realloc(s->sizes, n * sizeof *sizes);
    if (sizes) s->sizes = sizes;
    if (!paths || !maps || !sizes) return xd_err("%s: out of memory", path);
    s->paths[n - 1] = strdup(path);
    s->maps[n - 1] = NULL;
    s->sizes[n - 1] = 0;
    s->n_files = n;
    if (!s->paths[n - 1]) return xd_err("%s: out of memory", path);
    return n - 1;
}

static st_tensor *set_add_tensor(st_set *s, int *cap, const char *path) {
    if (s->n_tensors == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        st_tensor *t = realloc(s->tensors, ncap * sizeof *t);
        if (!t) { xd_err("%s: out of memory", path); return NULL; }
        s->tensors = t;
        *cap = ncap;
    }
    st_tensor *t = &s->tensors[s->n_tensors++];
    memset(t, 0, sizeof *t);
    return t;
}

/* ---- one file ------------------------------------------------------------ */

/* A JSON integer in [0, max]. */
static int get_u64(const json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max) return -1;
    *out = (uint64_t)x;
    return 0;
}

/* Fills t from its header entry; data is [begin, end) of a data section of
 * `avail` bytes starting at `data`. */
static int parse_tensor(const char *path, const char *name, const json_t *e, const uint8_t *data,
                        uint64_t avail, st_tensor *t) {
    if (!json_is_object(e))
        return xd_err("%s: tensor '%s': header entry is not an object (expected {\"dtype\", "
                      "\"shape\", \"data_offsets\"})", path, name);
    const json_t *jd = json_object_get(e, "dtype");
    if (!json_is_string(jd))
        return xd_err("%s: tensor '%s': dtype: missing or not a string", path, name);
    if (parse_dtype(json_string_value(jd), &t->dtype))
        return xd_err("%s: tensor '%s': dtype '%s' is not supported (expected F32, F16, BF16, F64 or I32)",
                      path, name, json_string_value(jd));

    const json_t *js = json_object_get(e, "shape");
    if (!json_is_array(js))
        return xd_err("%s: tensor '%s': shape: missing or not an array", path, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return xd_err("%s: tensor '%s': shape has %zu dimensions (expected at most %d)", path,
                      name, nd, ST_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t nel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t n;
        if (get_u64(json_array_get(js, d), ST_MAX_DIM, &n))
            return xd_err("%s: tensor '%s': shape[%zu] is not an integer in [0, 2^40]", path,
                          name, d);
        if (n && nel > ST_MAX_DIM / n)
            return xd_err("%s: tensor '%s': shape gives an absurd element count (over 2^40)",
                          path, name);
        t->shape[d] = (int64_t)n;
        nel *= n;
    }

    const json_t *jo = json_object_get(e, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        get_u64(json_array_get(jo, 0), UINT64_MAX >> 1, &begin) ||
        get_u64(json_array_get(jo, 1), UINT64_MAX >> 1, &end))
        return xd_err("%s: tensor '%s': data_offsets: expected [begin, end], two non-negative "
                      "integers", path, name);
    if (end < begin)
        return xd_err("%s: tensor '%s': data_offsets [%llu, %llu] end before begin", path, name,
                      (unsigned long long)begin, (unsigned long long)end);
    if (end > avail)
        return xd_err("%s: tensor '%s': data_offsets [%llu, %llu] run past the data section "
                      "(%llu bytes)", path, name, (unsigned long long)begin,
                      (unsigned long long)end, (unsigned long long)avail);
    uint64_t want = nel * dtype_sizes[t->dtype];
    if (end - begin != want)
        return xd_err("%s: tensor '%s': data_offsets span %llu bytes but shape and dtype %s "
                      "need %llu", path, name, (unsigned long long)(end - begin),
                      xd_st_dtype_name(t->dtype), (unsigned long long)want);
    t->data = data + begin;
    t->nbytes = want;
    return 0;
}

/* Keeps the string values of a "__metadata__" object (others are ignored). */
static int add_meta(st_set *s, const json_t *m) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (!json_is_string(v)) continue;
        char **nk = realloc(s->meta_keys, (size_t)(s->n_meta + 1) * sizeof(char *));
        if (!nk) return -1;
        s->meta_keys = nk;
        char **nv = realloc(s->meta_values, (size_t)(s->n_meta + 1) * sizeof(char *));
        if (!nv) return -1;
        s->meta_values = nv;
        char *a = strdup(k), *b = strdup(json_string_value(v));
        if (!a || !b) { free(a), free(b); return -1; }
        s->meta_keys[s->n_meta] = a;
        s->meta_values[s->n_meta++] = b;
    }
    return 0;
}

const char *xd_st_meta(const st_set *s, const char *key) {
    for (int i = 0; s && i < s->n_meta; i++)
        if (!strcmp(s->meta_keys[i], key)) return s->meta_values[i];
    return NULL;
}

/* Maps path and appends its tensors to s. */
static int add_file(st_set *s, int *cap, const char *path) {
    int fi = set_add_file(s, path);
    if (fi < 0) return -1;
    uint8_t *m;
    if (xd_map_file(path, 8, "safetensors file", &m, &s->sizes[fi])) return -1;
    s->maps[fi] = m;
    const uint8_t *map = m;
    size_t size = s->sizes[fi];

    uint64_t hlen;
    memcpy(&hlen, map, 8); /* little-endian host assumed, as in gguf.c */
    if (hlen > size - 8)
        return xd_err("%s: header length %llu runs past the end of the file (%zu bytes)", path,
                      (unsigned long long)hlen, size);
    if (hlen < 2 || hlen > ST_MAX_HEADER)
        return xd_err("%s: header length %llu is absurd (expected 2 .. %u bytes of JSON)", path,
                      (unsigned long long)hlen, ST_MAX_HEADER);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)map + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return xd_err("%s: header JSON, line %d, column %d: %s", path, jerr.line, jerr.column,
                      jerr.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = xd_err("%s: header JSON is not an object", path);
        goto done;
    }
    const uint8_t *data = map + 8 + hlen;
    uint64_t avail = size - 8 - hlen;
    const char *name;
    json_t *e;
    json_object_foreach(root, name, e) {
        if (!strcmp(name, "__metadata__")) {
            if (add_meta(s, e)) { rc = xd_err("%s: out of memory", path); goto done; }
            continue;
        }
        st_tensor *t = set_add_tensor(s, cap, path);
        if (!t) { rc = -1; goto done; }
        t->file = fi;
        if (parse_tensor(path, name, e, data, avail, t)) { rc = -1; goto done; }
        t->name = strdup(name);
        if (!t->name) { rc = xd_err("%s: out of memory", path); goto done; }
    }
done:
    json_decref(root);
    return rc;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts the tensors by name (xd_st_find bisects) and rejects a name that occurs twice. */
static int finish(st_set *s) {
    if (s->n_tensors > 1) qsort(s->tensors, s->n_tensors, sizeof *s->tensors, cmp_tensor);
    for (int i = 1; i < s->n_tensors; i++)
        if (!strcmp(s->tensors[i - 1].name, s->tensors[i].name))
            return xd_err("%s: tensor '%s' is also in %s (duplicate name)",
                          s->paths[s->tensors[i].file], s->tensors[i].name,
                          s->paths[s->tensors[i - 1].file]);
    return 0;
}

st_set *xd_st_open(const char *path) {
    st_set *s = set_new();
    int cap = 0;
    if (!s) return NULL;
    if (add_file(s, &cap, path) || finish(s)) {
        xd_st_close(s);
        return NULL;
    }
    return s;
}

/* ---- a directory: one file or an index of shards ------------------------- */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A shard named in the index must be a plain file name inside the directory. */
static int bad_shard_name(const char *f) {
    return !*f || strchr(f, '/') || !strcmp(f, ".") || !strcmp(f, "..");
}

static st_set *open_index(const char *dir, const char *ipath) {
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file)
            xd_err("%s: cannot open: %s", ipath, jerr.text);
        else
            xd_err("%s: line %d, column %d: %s", ipath, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    st_set *s = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        xd_err("%s: weight_map: missing or not an object (expected {tensor name: shard file})",
               ipath);
        goto fail;
    }
    if (!(s = set_new())) goto fail;
    int cap = 0;
    const char *name;
    json_t *v;
    /* open each shard the first time the map mentions it */
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            xd_err("%s: weight_map: '%s': expected a shard file name (string)", ipath, name);
            goto fail;
        }
        const char *f = json_string_value(v);
        if (bad_shard_name(f)) {
            xd_err("%s: weight_map: '%s': shard '%s' is not a file name in %s", ipath, name, f,
                   dir);
            goto fail;
        }
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, f) >= sizeof path) {
            xd_err("%s: weight_map: '%s': shard path too long", ipath, name);
            goto fail;
        }
        int seen = 0;
        for (int i = 0; i < s->n_files && !seen; i++) seen = !strcmp(s->paths[i], path);
        if (seen) continue;
        if (!file_exists(path)) {
            xd_err("%s: weight_map: shard '%s' (holding '%s') is missing: %s: %s", ipath, f,
                   name, path, strerror(errno));
            goto fail;
        }
        if (add_file(s, &cap, path)) goto fail;
    }
    if (s->n_files == 0) {
        xd_err("%s: weight_map is empty (expected at least one tensor)", ipath);
        goto fail;
    }
    if (finish(s)) goto fail;
    /* every tensor of the map must be in the shard the map names */
    json_object_foreach(wm, name, v) {
        const st_tensor *t = xd_st_find(s, name);
        const char *f = json_string_value(v);
        const char *got = t ? strrchr(s->paths[t->file], '/') + 1 : NULL;
        if (!t || strcmp(got, f)) {
            xd_err("%s: weight_map: tensor '%s' should be in '%s' but %s%s", ipath, name, f,
                   t ? "is in " : "is in no shard", t ? got : "");
            goto fail;
        }
    }
    json_decref(root);
    return s;
fail:
    xd_st_close(s);
    json_decref(root);
    return NULL;
}

st_set *xd_st_open_dir(const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path) {
        xd_err("%s: directory path too long", dir);
        return NULL;
    }
    if (file_exists(path)) return xd_st_open(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (file_exists(path)) return open_index(dir, path);
    xd_err("%s: no model.safetensors or model.safetensors.index.json in this directory", dir);
    return NULL;
}

/* ---- access -------------------------------------------------------------- */

const st_tensor *xd_st_find(const st_set *s, const char *name) {
    int lo = 0, hi = s->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->tensors[mid].name, name);
        if (!c) return &s->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int xd_st_to_f32(const st_set *s, const st_tensor *t, float *dst) {
    const char *path = (t->file >= 0 && t->file < s->n_files) ? s->paths[t->file] : "?";
    if ((unsigned)t->dtype >= sizeof dtype_sizes / sizeof *dtype_sizes)
        return xd_err("%s: tensor '%s': invalid dtype %d", path, t->name, (int)t->dtype);
    uint64_t n = t->nbytes / dtype_sizes[t->dtype];
    const uint8_t *src = t->data; /* may be unaligned: read with memcpy */
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, src, n * 4);
        break;
    case ST_F16:
        xd_fp16_to_fp32_n(dst, src, (size_t)n);
        break;
    case ST_BF16:
        xd_bf16_to_fp32_n(dst, src, (size_t)n);
        break;
    case ST_F64:
        for (uint64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case ST_I32:
        return xd_err("%s: tensor '%s': I32 (integers), expected floating-point values", path,
                      t->name);
    }
    return 0;
}

int xd_st_to_i32(const st_set *s, const st_tensor *t, int32_t *dst) {
    const char *path = (t->file >= 0 && t->file < s->n_files) ? s->paths[t->file] : "?";
    if (t->dtype != ST_I32)
        return xd_err("%s: tensor '%s': %s, expected I32", path, t->name, xd_st_dtype_name(t->dtype));
    memcpy(dst, t->data, (size_t)t->nbytes);
    return 0;
}

int xd_st_to_f64(const st_set *s, const st_tensor *t, double *dst) {
    if (t->dtype != ST_F64) {
        uint64_t n = t->nbytes / dtype_sizes[t->dtype]; /* a valid dtype: checked at open */
        float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!tmp) return xd_err("out of memory");
        int rc = xd_st_to_f32(s, t, tmp);
        for (uint64_t i = 0; !rc && i < n; i++) dst[i] = tmp[i];
        free(tmp);
        return rc;
    }
    memcpy(dst, t->data, (size_t)t->nbytes); /* may be unaligned: memcpy */
    return 0;
}
