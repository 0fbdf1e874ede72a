/* Tests of the student: its mixer's new parameters moved away from their
 * initial values (A = I, zero gates and mix), so that every term of the
 * layer (feature maps, both gates, the mix) contributes and is tested. */
#ifndef XD_TEST_STUDENT_UTIL_H
#define XD_TEST_STUDENT_UTIL_H

#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "model/model.h"
#include "test.h"

/* n token ids in [0, V), drawn from seed. */
/* tests/fixtures/NAME loaded (a failed check when it cannot be). */
static inline xd_model *test_load_fixture(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    xd_model *m = xd_model_load(dir);
    CHECK(m != NULL, "load %s: %s", dir, xd_last_error());
    return m;
}

static inline void test_rand_ids(int32_t *ids, int n, int V, uint64_t seed) {
    xd_rng r;
    xd_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(xd_rng_u64(&r) % (uint64_t)V);
}

static inline void test_randomise_mixer(xd_model *m, uint64_t seed) {
    xd_rng r;
    xd_rng_seed(&r, seed);
    const xd_config *c = &m->cfg;
    int nh = c->n_head, hd = c->head_dim, d = c->d_model;
    for (int l = 0; l < c->n_layer; l++) {
        xd_layer *L = &m->layers[l];
        for (size_t i = 0; i < (size_t)nh * hd * hd; i++) {
            L->fmq_A[i] += (float)(0.4 * (xd_rng_uniform(&r) - 0.5));
            L->fmk_A[i] += (float)(0.4 * (xd_rng_uniform(&r) - 0.5));
        }
        for (size_t i = 0; i < (size_t)nh * hd; i++) {
            L->fmq_b[i] = (float)(0.2 * (xd_rng_uniform(&r) - 0.5));
            L->fmk_b[i] = (float)(0.2 * (xd_rng_uniform(&r) - 0.5));
        }
        for (size_t i = 0; i < (size_t)2 * nh * d; i++) L->w_ig[i] = (float)(0.6 * (xd_rng_uniform(&r) - 0.5));
        for (int h = 0; h < 2 * nh; h++) L->b_ig[h] += (float)(xd_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < (size_t)nh * 3 * hd; i++) L->w_mix[i] = (float)(0.6 * (xd_rng_uniform(&r) - 0.5));
        for (int h = 0; h < nh; h++) L->b_mix[h] = (float)(xd_rng_uniform(&r) - 0.5);
    }
}

/* All-position logits of ids through m in pieces of the given sizes (np = 0:
 * one token at a time), in a state of type dtype (xd_kv_create_typed) created with
 * capacity cap (a student's state grows past it where it must). */
static inline int test_run_pieces_typed(const xd_model *m, int dtype, const int32_t *ids, int n,
                                        const int *pieces, int np, int cap, float *out) {
    xd_kv *kv = xd_kv_create_typed(m, cap, dtype);
    if (!kv) return -1;
    int V = xd_model_config(m)->vocab_size, at = 0, rc = 0;
    for (int i = 0; at < n && !rc; i++) {
        int len = np ? pieces[i % np] : 1;
        if (len > n - at) len = n - at;
        rc = xd_forward(m, kv, ids + at, len, out + (size_t)at * V, 1);
        at += len;
    }
    xd_kv_free(kv);
    return rc;
}

/* The same in an fp32 state (teacher: cache). */
static inline int test_run_pieces(const xd_model *m, const int32_t *ids, int n, const int *pieces,
                                  int np, int cap, float *out) {
    return test_run_pieces_typed(m, XD_KV_F32, ids, n, pieces, np, cap, out);
}

/* max |logit difference| over every position of n seeded random tokens (one prefill)
 * through a and b, e.g. a student and the same student saved and loaded again; -1 when a
 * forward fails. */
static inline double test_logits_gap(const xd_model *a, const xd_model *b, int n, uint64_t seed) {
    int V = xd_model_config(a)->vocab_size;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *la = malloc((size_t)n * V * sizeof *la), *lb = malloc((size_t)n * V * sizeof *lb);
    if (ids) test_rand_ids(ids, n, V, seed);
    double gap = -1;
    if (ids && la && lb && test_run_pieces(a, ids, n, &n, 1, n, la) == 0 &&
        test_run_pieces(b, ids, n, &n, 1, n, lb) == 0)
        gap = test_max_abs_diff(la, lb, (size_t)n * V);
    free(ids);
    free(la);
    free(lb);
    return gap;
}

#endif
