/* A fresh model from a config: weights drawn as in GPT-2 / llm.c — N(0, 0.02)
 * for matrices and embeddings, the residual projections (W_O, W_down) scaled
 * by 1/sqrt(2·n_layer), norms at 1, biases at 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "train.h"

xd_model *xd_model_create(const xd_config *cfg, uint64_t seed) {
    if (xd_config_validate(cfg, "model config")) return NULL;
    xd_model *m = calloc(1, sizeof *m);
    if (!m) { xd_err("out of memory"); return NULL; }
    m->cfg = *cfg;
    snprintf(m->path, sizeof m->path, "(new model)");
    xd_weight *ws = NULL;
    int n = 0;
    if (xd_model_alloc(m) || xd_model_weights(m, &ws, &n) || xd_model_init_rope(m)) {
        free(ws);
        xd_model_free(m);
        return NULL;
    }
    xd_rng r;
    xd_rng_seed(&r, seed);
    float resid = 0.02f / sqrtf(2.0f * (float)cfg->n_layer);
    for (int i = 0; i < n; i++) {
        xd_weight *w = &ws[i];
        size_t cnt = (size_t)(w->rows * w->cols);
        if (w->ndim == 1) {
            float v = strstr(w->hf, "norm") ? 1.0f : 0.0f;
            for (size_t j = 0; j < cnt; j++) w->ptr[j] = v;
            continue;
        }
        float sd = strstr(w->hf, "o_proj") || strstr(w->hf, "down_proj") ? resid : 0.02f;
        for (size_t j = 0; j < cnt; j++) w->ptr[j] = (float)(sd * xd_rng_normal(&r));
    }
    free(ws);
    return m;
}
