#include "core/mem.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"

int xd_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return xd_err("out of memory (%zu elements of %zu bytes)", need, elem);
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return xd_err("out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return 0;
}
