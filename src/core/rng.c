#include "rng.h"

#include <math.h>

void xd_rng_seed(xd_rng *r, uint64_t seed) {
    /* splitmix64 scrambles small seeds into a well-mixed non-zero state */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r->s = (z ^ (z >> 31)) | 1;
}

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
