/* ggml tensor element types: names, the readable ones, and conversion to fp32 (the ids
 * and block sizes are core/ggml_type.h's; the fp16 / bf16 scalar conversions core/f16.h's). */
#ifndef XD_GGML_TYPES_H
#define XD_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "../core/ggml_type.h" /* the type ids and block sizes */

const char *xd_ggml_type_name(uint32_t type); /* "IQ2_XXS", ...; "unknown" past ggml's ids */
const char *xd_ggml_supported_types(void);    /* the readable types, for error messages */

/* Dequantise n elements (a multiple of the block size) of `type` to fp32. */
int xd_ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

#endif
