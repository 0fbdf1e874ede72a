/* Declarations and marker values of the ggml stand-in (ggml_standin.c). */
#ifndef XD_GGML_STANDIN_H
#define XD_GGML_STANDIN_H
#include <stddef.h>
#include <stdint.h>

#define STANDIN_FIND_TENSOR 4242
#define STANDIN_FIND_KEY 77
#define STANDIN_VALUE 3.5f
#define STANDIN_HF 9
#define STANDIN_HASH 0x5eed5eedull

const char *ggml_type_name(int type);
const char *gguf_type_name(int type);
int64_t gguf_find_tensor(const void *ctx, const char *name);
void *gguf_open(const char *path);
void gguf_close(void *ctx);
int64_t gguf_find(const void *ctx, const char *key);
size_t ggml_dequantize(int type, const void *src, float *dst, int64_t n);
void *st_open(const char *path);
const char *st_dtype_name(int dtype);
int hf_config_load(const char *dir, void *cfg);
void *tokenizer_from_gguf(const void *g);
uint64_t tg_hash(const char *s);
#endif
