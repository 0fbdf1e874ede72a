/* LoRA initialisations (lora_init.h). */
#include "lora_init.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eva.h"
#include "model/lora.h"

int xd_lora_init_parse(const char *s, xd_lora_init_kind *kind) {
    if (!strcmp(s, "random") || !strcmp(s, "true")) *kind = XD_LORA_INIT_RANDOM;
    else if (!strcmp(s, "pissa")) *kind = XD_LORA_INIT_PISSA;
    else if (!strcmp(s, "eva")) *kind = XD_LORA_INIT_EVA;
    else return xd_err("'%s' is not an initialisation; expected random, pissa or eva", s);
    return 0;
}

/* PiSSA on one module: A, B from W's top-r singular triplets; W -= s·B·A. */
static int pissa_module(float *W, xd_lora_module *md) {
    int r = md->rank, in = (int)md->in, out = (int)md->out;
    double *M = malloc((size_t)out * in * sizeof(double)), *V = malloc((size_t)r * in * sizeof(double));
    double *sv = malloc((size_t)r * sizeof(double)), *u = malloc((size_t)out * sizeof(double));
    int rc = -1;
    if (!M || !V || !sv || !u) { xd_err("PiSSA: out of memory"); goto done; }
    for (size_t i = 0; i < (size_t)out * in; i++) M[i] = W[i];
    if (xd_top_right_singular(M, out, in, r, V, sv)) goto done;
    for (int k = 0; k < r; k++) {
        /* u_k = W v_k / σ_k; both factors carry √(σ_k / s) */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0, M, in, V + (size_t)k * in, 1, 0.0, u, 1);
        double root = sqrt(sv[k] / md->scaling), inv = sv[k] > 0 ? 1.0 / sv[k] : 0.0;
        for (int j = 0; j < in; j++) md->A[(size_t)k * in + j] = (float)(root * V[(size_t)k * in + j]);
        for (int o = 0; o < out; o++) md->B[(size_t)o * r + k] = (float)(root * u[o] * inv);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, -(float)md->scaling, md->B,
                r, md->A, in, 1.0f, W, in);
    rc = 0;
done:
    free(M), free(V), free(sv), free(u);
    return rc;
}

xd_lora_adapter *xd_lora_init(xd_model *m, const char *base_model, const xd_lora_init_opts *o) {
    if (o->kind == XD_LORA_INIT_EVA)
        return xd_err("EVA needs activations: use xd_eva_collect and xd_eva_adapter "
                      "(train/eva_init.h)"), NULL;
    xd_lora_adapter *a = xd_lora_for_model(m, base_model, o->targets, o->r, o->alpha, o->use_rslora);
    if (!a) return NULL;
    if (o->kind == XD_LORA_INIT_RANDOM) {
        xd_lora_init_random(a, o->seed);
        return a;
    }
    for (int i = 0; i < a->n_modules; i++) {
        xd_lora_module *md = &a->modules[i];
        int l, t, in, out;
        if (xd_lora_locate(m, "PiSSA", md->module, &l, &t) ||
            pissa_module(xd_lora_base_weight(m, l, t, &in, &out), md)) {
            xd_lora_free(a);
            return NULL;
        }
    }
    return a;
}

xd_lora_adapter *xd_lora_pissa_convert(const xd_lora_adapter *trained,
                                       const xd_lora_adapter *init) {
    if (trained->n_modules != init->n_modules)
        return xd_err("PiSSA conversion: %d modules against %d", trained->n_modules,
                      init->n_modules), NULL;
    double f = init->use_rslora ? sqrt(2.0) : 2.0; /* keeps alpha/r (alpha/√r) at rank 2r */
    xd_lora_adapter *c = xd_lora_new(trained->base_model, 2 * trained->r, f * trained->lora_alpha,
                                     trained->use_rslora);
    if (!c) return NULL;
    c->base_hash = init->base_hash; /* the original base, hashed before the residual */
    for (int i = 0; i < trained->n_modules; i++) {
        const xd_lora_module *x = &trained->modules[i], *x0 = &init->modules[i];
        if (strcmp(x->module, x0->module) || x->rank != x0->rank || x->in != x0->in ||
            x->out != x0->out) {
            xd_lora_free(c);
            return xd_err("PiSSA conversion: module '%s' does not match the initial '%s'",
                          x->module, x0->module), NULL;
        }
        int r = x->rank;
        int64_t in = x->in, out = x->out;
        xd_lora_module *y = xd_lora_add_module(c, x->module, 2 * r, in, out, f * x->alpha);
        if (!y) { xd_lora_free(c); return NULL; }
        memcpy(y->A, x->A, (size_t)(r * in) * sizeof(float));
        memcpy(y->A + (size_t)r * in, x0->A, (size_t)(r * in) * sizeof(float));
        for (int64_t o = 0; o < out; o++)
            for (int k = 0; k < r; k++) {
                y->B[o * 2 * r + k] = x->B[o * r + k];
                y->B[o * 2 * r + r + k] = -x0->B[o * r + k];
            }
    }
    return c;
}
