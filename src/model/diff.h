/* Sparse weight diffs as modules (DiffPruning; docs/design.md, "Sparse diffs"): a diff is
 * δ over a frozen base θ₀, stored per weight tensor as ascending flat indices and their
 * values. A model with a set of diffs applied is always MATERIALISED from θ₀ — never by
 * subtracting a diff in floating point — and the diffs are added in a canonical order
 * (by name), so applying and removing diffs in any order gives weights bit-identical to
 * θ₀ + Σ δ computed afresh, and removing every diff gives θ₀ exactly.
 *
 * File: safetensors with, per weight W that the diff touches, "W.idx" (I32 [nnz],
 * ascending, < the weight's element count) and "W.val" (F32 [nnz]); metadata
 * {"format": "xdistill-diff", "name": NAME, "base_hash": 16 hex digits, "sizes": JSON
 * object weight -> element count}, and "parent_hash" (16 hex digits) when set. */
#ifndef XD_DIFF_H
#define XD_DIFF_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    char name[96];  /* the weight's HF name (xd_weight.hf) */
    int64_t size;   /* the weight's element count */
    int64_t nnz;
    int32_t *idx;   /* ascending, < size */
    float *val;
} xd_diff_part;

typedef struct {
    char *name;          /* "task", or the attribute ("gender"); unique within a set */
    uint64_t base_hash;  /* xd_model_teacher_hash of θ₀ */
    uint64_t parent_hash; /* 0, or the xd_diff_hash of the diff this one was trained on
                           * (an attribute diff records its task diff) */
    int n_parts;
    xd_diff_part *parts; /* in the model's weight order */
} xd_diff;

/* The diff of the non-zero entries of delta (an arena of m's layout: delta[i] goes with
 * m->arena[i]); m holds θ₀ (its hash is recorded). NULL + error. */
xd_diff *xd_diff_from_dense(const xd_model *m, const char *name, const float *delta);
void xd_diff_free(xd_diff *d);
/* Non-zeros over all parts, and the file's payload in bytes (indices + values). */
int64_t xd_diff_nnz(const xd_diff *d);
int64_t xd_diff_bytes(const xd_diff *d);

/* A hash of the diff's content (names, sizes, indices, values; not its name or hashes), over
 * its parts in name order; 0 when out of memory. */
uint64_t xd_diff_hash(const xd_diff *d);

int xd_diff_save(const xd_diff *d, const char *path);
/* Reads and validates a diff file (every field named in errors). NULL + error. */
xd_diff *xd_diff_load(const char *path);

/* m->arena = θ₀ + Σ δ over the given diffs, added in the order of their names (the order
 * given does not matter), from theta0 (m->arena_floats values; may not alias m->arena).
 * Refuses (before touching m) a diff for another base (base_hash != the hash of θ₀ that the
 * caller passes), a part naming a weight m lacks or of another size, and two diffs of the
 * same name. n = 0 restores θ₀. */
int xd_diff_materialize(xd_model *m, const float *theta0, uint64_t base_hash,
                        const xd_diff *const *diffs, int n);

#endif
