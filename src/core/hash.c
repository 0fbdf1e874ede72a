/* The hashes of hash.h. */
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hash.c reads 8-byte words with native loads (their values are stored in files); port it first"
#endif

uint64_t xd_fnv1a64(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t xd_fnv1a64_str(const char *s) {
    uint64_t h = XD_FNV1A64_INIT;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t xd_hash64_block(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    const uint64_t K = 0x9fb21c651e98df25ull;
    uint64_t v[4] = {seed ^ 0x243f6a8885a308d3ull, seed ^ 0x13198a2e03707344ull,
                     seed ^ 0xa4093822299f31d0ull, seed ^ 0x082efa98ec4e6c89ull};
    size_t i = 0, w = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t x;
            memcpy(&x, p + i + 8 * l, 8);
            v[l] = rotl((v[l] ^ x) * K, 29);
        }
    for (; i < n; i += 8, w++) { /* tail: whole words, then one zero-padded word */
        uint64_t x = 0;
        memcpy(&x, p + i, n - i < 8 ? n - i : 8);
        v[w & 3] = rotl((v[w & 3] ^ x) * K, 29);
    }
    uint64_t h = xd_mix64(seed ^ ((uint64_t)n * 0xff51afd7ed558ccdull));
    for (int l = 0; l < 4; l++) h = xd_mix64(h ^ v[l]);
    return h;
}

enum { HASH_CHUNK = 8 << 20 };

uint64_t xd_hash64(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    size_t nc = n ? (n + HASH_CHUNK - 1) / HASH_CHUNK : 0;
    uint64_t h = xd_mix64(seed ^ 0x6a09e667f3bcc909ull ^ (uint64_t)n), *hc = NULL;
    if (nc > 1) hc = malloc(nc * sizeof *hc);
    if (hc) {
#pragma omp parallel for schedule(dynamic, 1)
        for (long c = 0; c < (long)nc; c++) {
            size_t o = (size_t)c * HASH_CHUNK, len = n - o < HASH_CHUNK ? n - o : HASH_CHUNK;
            hc[c] = xd_hash64_block(p + o, len, seed + (uint64_t)c);
        }
    }
    for (size_t c = 0; c < nc; c++) { /* without hc (one chunk, or out of memory): serially */
        size_t o = c * HASH_CHUNK, len = n - o < HASH_CHUNK ? n - o : HASH_CHUNK;
        h = xd_mix64(h ^ (hc ? hc[c] : xd_hash64_block(p + o, len, seed + (uint64_t)c)));
    }
    free(hc);
    return h;
}
