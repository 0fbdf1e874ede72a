/* safetensors reader: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32"|"F16"|"BF16", "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}} and the raw data. Files are mmap'ed; every offset is
 * checked. A set of shards (model.safetensors.index.json) is opened as one. */
#ifndef XD_SAFETENSORS_H
#define XD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "atomic.h"

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I32 } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[8];
    const void *data;
    uint64_t nbytes;
    int file; /* index into st_set.files */
} st_tensor;

typedef struct {
    int n_files;
    char **paths;
    const uint8_t **maps;
    size_t *sizes;
    int n_tensors;
    st_tensor *tensors;
    int n_meta;               /* the string values of "__metadata__" (all files) */
    char **meta_keys, **meta_values;
} st_set;

/* Opens a single .safetensors file. NULL + xd_last_error() on failure. */
st_set *xd_st_open(const char *path);
/* Opens a HF model directory: model.safetensors, or the shards listed in
 * model.safetensors.index.json. */
st_set *xd_st_open_dir(const char *dir);
void xd_st_close(st_set *s);
const st_tensor *xd_st_find(const st_set *s, const char *name);
/* The "__metadata__" string value of key (the first file that has it), or NULL. */
const char *xd_st_meta(const st_set *s, const char *key);
/* Converts a tensor to fp32 into dst (n elements = product of shape; F64 is
 * rounded to nearest). */
int xd_st_to_f32(const st_set *s, const st_tensor *t, float *dst);
/* Converts a tensor to fp64 into dst (exact for every dtype). */
int xd_st_to_f64(const st_set *s, const st_tensor *t, double *dst);
/* Copies an I32 tensor into dst; -1 with an error naming the file and tensor otherwise. */
int xd_st_to_i32(const st_set *s, const st_tensor *t, int32_t *dst);
const char *xd_st_dtype_name(st_dtype d);

/* ---- writer (safetensors_write.c) ---------------------------------------- */

/* One tensor to write: data holds the product of shape's n_dims (0..8) entries:
 * floats, stored as dtype (F16 / BF16 are rounded to nearest even); with dtype
 * F64 doubles, with I32 int32 values, stored as they are. */
typedef struct {
    const char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[8];
    const void *data; /* float; double for ST_F64, int32_t for ST_I32 */
} st_write_tensor;

/* Writes a .safetensors file atomically (PATH.tmp.<pid>, fsync, rename).
 * The header lists the tensors sorted by name, after "__metadata__" when
 * metadata_json (a JSON object of string values, or NULL) is given, and is
 * padded with spaces so the data section starts 8-byte aligned; the data are
 * contiguous, wider dtypes first, then by name. Names must be unique and
 * non-empty. Errors name path and the tensor. */
int xd_st_write(const char *path, const st_write_tensor *ts, int n, const char *metadata_json);

/* ---- streaming writer (safetensors_stream.c) ------------------------------ */

/* Writes an F32-only .safetensors file one tensor at a time, so that only
 * the tensor being written has to be in memory: xd_st_stream_begin takes the
 * names and shapes (data ignored; dtype must be ST_F32), writes the header
 * (the same layout xd_st_write makes: tensors sorted by name, header padded to
 * 8 bytes) to PATH.tmp.<pid>; then xd_st_stream_next gives the index (into the
 * caller's array) of the tensor to write next, and xd_st_stream_put writes its
 * data; xd_st_stream_end commits atomically once every tensor was put. On any
 * error the temporary file is removed (xd_st_stream_abort is safe to call
 * again). */
typedef struct {
    xd_afile f;
    int n, next;
    int *order;      /* caller indices in name order */
    uint64_t *bytes; /* by caller index */
} st_stream;

int xd_st_stream_begin(st_stream *s, const char *path, const st_write_tensor *ts, int n,
                    const char *metadata_json);
int xd_st_stream_next(const st_stream *s); /* -1 when all are written */
/* order[0 .. n): the indices of ts in the order st_stream writes them (by name). */
void xd_st_stream_order(const st_write_tensor *ts, int n, int *order);
int xd_st_stream_put(st_stream *s, const float *data);
int xd_st_stream_end(st_stream *s);
void xd_st_stream_abort(st_stream *s);

#endif
