/* Array forms of the 16-bit float conversions (f16.h). Plain loops over the
 * inline scalar converters: the compiler vectorises them, and the results
 * are the scalar ones by construction. */
#include "f16.h"

void xd_fp16_to_fp32_n(float *dst, const void *src, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = xd_fp16_to_fp32(h);
    }
}

void xd_bf16_to_fp32_n(float *dst, const void *src, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = xd_bf16_to_fp32(h);
    }
}

void xd_fp32_to_fp16_n(void *dst, const float *src, size_t n) {
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = xd_fp32_to_fp16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

void xd_fp32_to_bf16_n(void *dst, const float *src, size_t n) {
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = xd_fp32_to_bf16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}
