/* Deterministic random numbers (splitmix64 seeding + xorshift64*), with a
 * state that fits in a checkpoint. */
#ifndef XD_RNG_H
#define XD_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s;
} xd_rng;

void xd_rng_seed(xd_rng *r, uint64_t seed);
uint64_t xd_rng_u64(xd_rng *r);
double xd_rng_uniform(xd_rng *r); /* [0, 1) */
double xd_rng_normal(xd_rng *r);  /* N(0, 1), Box–Muller */

#endif
