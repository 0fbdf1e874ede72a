/* The teacher hash (model.h): what a top-k logit file and a converted
 * student record of the model that made them. */
#include <string.h>

#include "core/f16.h"
#include "core/hash.h"
#include "model.h"

static uint64_t f2u(float x) { return xd_f32_bits(x); }

uint64_t xd_model_teacher_hash(const xd_model *m) {
    const xd_config *c = &m->cfg;
    uint64_t w[] = {
        0x3148434145545844ull, /* "DXTEACH1": a version tag of this definition */
        (uint64_t)c->arch, (uint64_t)c->n_layer, (uint64_t)c->d_model, (uint64_t)c->n_head,
        (uint64_t)c->n_kv_head, (uint64_t)c->head_dim, (uint64_t)c->d_ff,
        (uint64_t)c->vocab_size, f2u(c->rope_theta), f2u(c->norm_eps),
        (uint64_t)c->tied_embeddings, (uint64_t)c->qkv_bias, (uint64_t)c->qk_norm,
        (uint64_t)c->post_norms, f2u(c->rope_scale_factor), f2u(c->rope_low_freq_factor),
        f2u(c->rope_high_freq_factor), (uint64_t)c->rope_orig_ctx,
    };
    uint64_t h = xd_hash64(w, sizeof w, 0);
    h = xd_hash64(m->arena, m->arena_floats * sizeof(float), h);
    if (m->rope_inv_freq)
        h = xd_hash64(m->rope_inv_freq, (size_t)(c->head_dim / 2) * sizeof(float), h);
    return h;
}
