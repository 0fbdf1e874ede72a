/* GGUF v3 writer: metadata and tensors collected in memory order, written to PATH.tmp.<pid>
 * and renamed onto PATH (io/atomic.h), so PATH is the old file or the complete new one.
 * Tensor data is aligned to 32 bytes (general.alignment's default); ne[0] is the row
 * length, as the reader (gguf.h) and ggml have it. Errors latch: check the result of
 * xd_gguf_out_write (or of any call). */
#ifndef XD_GGUF_WRITE_H
#define XD_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct xd_gguf_out xd_gguf_out;

xd_gguf_out *xd_gguf_out_new(void);
void xd_gguf_out_free(xd_gguf_out *o);

int xd_gguf_out_str(xd_gguf_out *o, const char *key, const char *v);
int xd_gguf_out_u32(xd_gguf_out *o, const char *key, uint32_t v);
int xd_gguf_out_u64(xd_gguf_out *o, const char *key, uint64_t v);
int xd_gguf_out_f32(xd_gguf_out *o, const char *key, float v);
int xd_gguf_out_bool(xd_gguf_out *o, const char *key, int v);
/* Arrays: n strings; n int32. */
int xd_gguf_out_strs(xd_gguf_out *o, const char *key, const char *const *v, uint64_t n);
int xd_gguf_out_i32s(xd_gguf_out *o, const char *key, const int32_t *v, uint64_t n);
/* A tensor of ggml type `type`, n_dims ≤ 4 dimensions ne (ne[0]: the row length, a
 * multiple of the type's block). Its bytes come at write time, one tensor at a time. */
int xd_gguf_out_tensor(xd_gguf_out *o, const char *name, uint32_t type, int n_dims,
                       const int64_t *ne);
/* fill(ctx, i, buf, nbytes) writes tensor i's bytes (in the order they were added) into
 * buf; 0, or -1 with the error set (the file is then not written). */
typedef int (*xd_gguf_fill)(void *ctx, int i, void *buf, size_t nbytes);
int xd_gguf_out_write(xd_gguf_out *o, const char *path, xd_gguf_fill fill, void *ctx);

#endif
