/* A stand-in for llama.cpp's libggml: functions with the names ggml and gguf
 * export (and the names xdistill's own internals had before they took the
 * xd_ prefix), each answering something recognisable. test_link_ggml links
 * this object together with xdistill: with a clash, the link fails on a
 * duplicate definition (static) or one library's calls land in the other's
 * function (shared), and the test sees the wrong answers. */
#include <stddef.h>
#include <stdint.h>

#include "ggml_standin.h"

const char *ggml_type_name(int type) { return type == 2 ? "standin-q4_0" : "standin"; }
const char *gguf_type_name(int type) { return type == 8 ? "standin-string" : "standin"; }
int64_t gguf_find_tensor(const void *ctx, const char *name) {
    (void)ctx;
    return name && name[0] ? STANDIN_FIND_TENSOR : -1;
}
void *gguf_open(const char *path) { (void)path; return NULL; }
void gguf_close(void *ctx) { (void)ctx; }
int64_t gguf_find(const void *ctx, const char *key) { (void)ctx; (void)key; return STANDIN_FIND_KEY; }
size_t ggml_dequantize(int type, const void *src, float *dst, int64_t n) {
    (void)type; (void)src;
    for (int64_t i = 0; i < n; i++) dst[i] = STANDIN_VALUE;
    return (size_t)n;
}
void *st_open(const char *path) { (void)path; return NULL; }
const char *st_dtype_name(int dtype) { (void)dtype; return "standin-dtype"; }
int hf_config_load(const char *dir, void *cfg) { (void)dir; (void)cfg; return STANDIN_HF; }
void *tokenizer_from_gguf(const void *g) { (void)g; return NULL; }
uint64_t tg_hash(const char *s) { (void)s; return STANDIN_HASH; }
