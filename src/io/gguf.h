/* GGUF v2/v3 reader: bounds-checked parse of the header, metadata and tensor
 * table of a memory-mapped file. Nothing is trusted: every count, length and
 * offset is checked against the file size before use. */
#ifndef XD_GGUF_H
#define XD_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum {
    GGUF_T_UINT8 = 0, GGUF_T_INT8, GGUF_T_UINT16, GGUF_T_INT16, GGUF_T_UINT32, GGUF_T_INT32,
    GGUF_T_FLOAT32, GGUF_T_BOOL, GGUF_T_STRING, GGUF_T_ARRAY, GGUF_T_UINT64, GGUF_T_INT64,
    GGUF_T_FLOAT64, GGUF_T_COUNT
};

typedef struct {
    const char *ptr; /* not NUL-terminated: points into the mapping */
    uint64_t len;
} gguf_str;

typedef struct {
    gguf_str key;
    uint32_t type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        gguf_str s;
    } v;
    /* arrays */
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* scalar arrays: packed elements */
    gguf_str *arr_strs;      /* string arrays: one entry per element (owned) */
} gguf_kv;

typedef struct {
    char name[128];
    uint32_t n_dims;
    int64_t ne[4];   /* ne[0] is the innermost (row length) dimension, as in ggml */
    uint32_t type;   /* ggml type id */
    uint64_t offset; /* relative to the data section */
    const void *data; /* map + data_offset + offset: with a small general.alignment (1, 2)
                       * not aligned for the tensor's type; read it with memcpy, never
                       * through a float / uint16_t pointer */
    uint64_t nbytes;
} gguf_tensor;

typedef struct {
    char path[512];
    const uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
} gguf_file;

/* Maps and parses path; returns NULL with xd_last_error() set on failure. */
gguf_file *xd_gguf_open(const char *path);
void xd_gguf_close(gguf_file *g);

const gguf_kv *xd_gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *xd_gguf_find_tensor(const gguf_file *g, const char *name);

/* Typed getters. Return 0 on success; -1 (with an error naming the file and
 * the key) if missing or of a type that cannot be converted. */
int xd_gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out);
int xd_gguf_get_f64(const gguf_file *g, const char *key, double *out);
int xd_gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);
/* Same, but leave *out unchanged and return 0 if the key is missing. */
int xd_gguf_opt_u64(const gguf_file *g, const char *key, uint64_t *out);
int xd_gguf_opt_f64(const gguf_file *g, const char *key, double *out);

/* Copies a gguf_str to a NUL-terminated buffer (truncating). */
void xd_gguf_str_copy(gguf_str s, char *buf, size_t cap);
int xd_gguf_str_eq(gguf_str s, const char *c);
const char *xd_gguf_type_name(uint32_t t);

#endif
