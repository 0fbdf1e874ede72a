/* Reading reference fixtures (tests/ref/ scripts write them as safetensors). */
#ifndef XD_TEST_FIXTURE_UTIL_H
#define XD_TEST_FIXTURE_UTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

/* Tensor `name` of s as n floats (malloc'd; the caller frees), or NULL when it is missing
 * or does not hold exactly n elements. */
static inline float *test_st_floats(const st_set *s, const char *name, int64_t n) {
    const st_tensor *t = xd_st_find(s, name);
    if (!t) return NULL;
    int64_t cnt = 1;
    for (int i = 0; i < t->n_dims; i++) cnt *= t->shape[i];
    if (cnt != n) return NULL;
    float *x = calloc(n ? (size_t)n : 1, sizeof(float));
    if (x && xd_st_to_f32(s, t, x)) {
        free(x);
        return NULL;
    }
    return x;
}

#endif
