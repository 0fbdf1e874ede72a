/* Byte-level helpers, the one copy of each: little-endian loads and stores at
 * any alignment (the file formats are little-endian and so is every supported
 * host), and growing an array by doubling. */
#ifndef XD_MEM_H
#define XD_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Store / load a 32- or 64-bit value at p, which need not be aligned. */
static inline void xd_put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void xd_put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t xd_get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t xd_get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Makes *p (an array of *cap elements of `elem` bytes, possibly NULL) hold at
 * least `need` elements: the capacity doubles from max(*cap, 64) until it
 * does, the contents are kept. Returns 0, or -1 with "out of memory (N
 * bytes)" and *p, *cap untouched. */
int xd_grow(void **p, size_t *cap, size_t need, size_t elem);

/* This process's resident memory in MiB: now (/proc/self/statm) and its peak so far
 * (getrusage ru_maxrss); -1 where the system does not say. */
double xd_rss_mib(void);
double xd_peak_rss_mib(void);

#endif
