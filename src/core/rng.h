/* Deterministic random numbers, the one implementation in xdistill: xd_rng is
 * xorshift64* (Vigna) seeded through splitmix64, with a state that fits in a
 * checkpoint; xd_splitmix64 is the plain splitmix64 generator (Steele, Lea,
 * Flood), for the streams that were defined with it (data prep's shuffle).
 * Every output below is part of a file format or a reproducibility promise
 * (`data prep --seed`, `tasks make --seed`, `generate --seed`, checkpoints):
 * the sequences must never change. */
#ifndef XD_RNG_H
#define XD_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s; /* never 0 once seeded */
} xd_rng;

/* s = xd_mix64(seed + 0x9e3779b97f4a7c15) | 1 (core/hash.h): small seeds give
 * well-mixed, non-zero states. */
void xd_rng_seed(xd_rng *r, uint64_t seed);
/* xorshift64*: s ^= s >> 12, s ^= s << 25, s ^= s >> 27; returns
 * s · 0x2545f4914f6cdd1d. A zero state stays zero (xd_rng_seed never makes
 * one; callers that set s themselves must avoid it). */
uint64_t xd_rng_u64(xd_rng *r);
double xd_rng_uniform(xd_rng *r); /* [0, 1): the top 53 bits of xd_rng_u64 · 2^-53 */
double xd_rng_normal(xd_rng *r);  /* N(0, 1), Box–Muller from two xd_rng_uniform */
/* Uniform integer in [0, n) without modulo bias: draws xd_rng_u64 until it
 * is below the largest multiple of n (2^64 - (2^64 mod n)), returns it mod n.
 * n <= 1 returns 0 and draws nothing. */
uint64_t xd_rng_below(xd_rng *r, uint64_t n);

/* splitmix64: *state += 0x9e3779b97f4a7c15, returns xd_mix64(*state). Any
 * state, 0 included, is fine. */
uint64_t xd_splitmix64(uint64_t *state);
/* xd_rng_below's rejection on xd_splitmix64's outputs (n <= 1: 0, no draw). */
uint64_t xd_splitmix64_below(uint64_t *state, uint64_t n);

#endif
