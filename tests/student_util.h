/* Tests of the student: its mixer's new parameters moved away from their
 * initial values (A = I, zero gates and mix), so that every term of the
 * layer (feature maps, both gates, the mix) contributes and is tested. */
#ifndef XD_TEST_STUDENT_UTIL_H
#define XD_TEST_STUDENT_UTIL_H

#include "core/rng.h"
#include "model/model.h"

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

#endif
