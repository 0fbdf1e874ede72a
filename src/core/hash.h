/* Non-cryptographic 64-bit hashes, the one implementation of each in xdistill.
 * They catch accidental mismatches (another tokenizer, teacher or data) and
 * derive seeds; they do not resist deliberate collisions. Their values are
 * stored in files (tokenizer_hash in token files, teacher_hash / base_hash in
 * student configs, the hashes of top-k logit files), so they must never
 * change: tests pin them. */
#ifndef XD_HASH_H
#define XD_HASH_H

#include <stddef.h>
#include <stdint.h>

/* ---- FNV-1a 64 ------------------------------------------------------------
 * h = XD_FNV1A64_INIT, then for every byte b: h = (h ^ b) · 0x100000001b3
 * (mod 2^64). Byte at a time, so hashing A then B continues exactly as
 * hashing A‖B: xd_fnv1a64(xd_fnv1a64(XD_FNV1A64_INIT, a, na), b, nb). Used for
 * the tokenizer hash, the per-task seeds of the evaluation and the task
 * generator, and hash-table slots. */
#define XD_FNV1A64_INIT 0xcbf29ce484222325ull

/* Continues h over the n bytes at p. */
uint64_t xd_fnv1a64(uint64_t h, const void *p, size_t n);
/* FNV-1a 64 of the NUL-terminated s (the NUL not included). */
uint64_t xd_fnv1a64_str(const char *s);

/* ---- the seeded 64-bit hash of large inputs --------------------------------
 * xd_hash64_block: four 64-bit lanes take the input's 8-byte little-endian
 * words in turn (lane = rotl((lane ^ w) · 0x9fb21c651e98df25, 29); a ragged
 * tail is one zero-padded word), each lane starting from seed ^ a constant;
 * the length and the lanes are then folded in with xd_mix64. Serial.
 *
 * xd_hash64: the input cut into 8 MiB chunks, chunk c hashed with
 * xd_hash64_block(seed + c) (in parallel over OpenMP threads), and the chunk
 * hashes chained in order into xd_mix64(seed ^ 0x6a09e667f3bcc909 ^ n), so
 * the value does not depend on the thread count. n = 0 is allowed. Used for
 * the teacher hash (model/model_hash.c), a student's base_hash, the merge
 * hashes and the data hash of top-k logit files. */
uint64_t xd_hash64(const void *data, size_t n, uint64_t seed);
uint64_t xd_hash64_block(const void *data, size_t n, uint64_t seed);

/* splitmix64's output function (Stafford's "Mix13"): a bijection of 64-bit
 * words with good avalanche; z ^= z >> 30, z *= 0xbf58476d1ce4e5b9,
 * z ^= z >> 27, z *= 0x94d049bb133111eb, z ^= z >> 31. The RNG's seeding and
 * splitmix64 step (core/rng.h) use it too. */
static inline uint64_t xd_mix64(uint64_t z) {
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
