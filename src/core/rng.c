#include "rng.h"

#include <math.h>

#include "hash.h"

#define GOLDEN 0x9E3779B97F4A7C15ull

void xd_rng_seed(xd_rng *r, uint64_t seed) { r->s = xd_mix64(seed + GOLDEN) | 1; }

uint64_t xd_rng_u64(xd_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double xd_rng_uniform(xd_rng *r) { return (double)(xd_rng_u64(r) >> 11) * 0x1.0p-53; }

double xd_rng_normal(xd_rng *r) {
    double u1 = xd_rng_uniform(r), u2 = xd_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t xd_splitmix64(uint64_t *state) { return xd_mix64(*state += GOLDEN); }

/* [0, n) by rejection from next(st): accept x below lim = 2^64 - (2^64 mod n) */
static uint64_t below(uint64_t n, uint64_t (*next)(void *), void *st) {
    if (n <= 1) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = next(st);
    while (x >= lim);
    return x % n;
}

static uint64_t next_rng(void *st) { return xd_rng_u64(st); }
static uint64_t next_splitmix(void *st) { return xd_splitmix64(st); }

uint64_t xd_rng_below(xd_rng *r, uint64_t n) { return below(n, next_rng, r); }

uint64_t xd_splitmix64_below(uint64_t *state, uint64_t n) { return below(n, next_splitmix, state); }
