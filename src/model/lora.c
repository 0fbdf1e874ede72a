/* LoRA adapters bound to a model (lora.h). */
#include "lora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

static const char *const target_path[XD_LORA_NT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",    "self_attn.igate",
    "self_attn.fgate"};

#define TARGET_LIST "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
#define MODULE_LIST "self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, " \
                    "mlp.gate_proj, mlp.up_proj, mlp.down_proj"

int xd_lora_targets_check(const xd_model *m, unsigned targets) {
    if (m->cfg.student) return 0;
    for (int t = XD_LORA_IGATE; t < XD_LORA_NT; t++)
        if (targets & (1u << t))
            return xd_err("target module '%s' is a student's mixer gate; %s is not a student "
                          "(available: " TARGET_LIST ")", xd_lora_target_name(t),
                          m->path[0] ? m->path : "the model");
    return 0;
}

const char *xd_lora_target_name(int t) {
    return t >= 0 && t < XD_LORA_NT ? strchr(target_path[t], '.') + 1 : "?";
}

int xd_lora_target_parse(const char *s) {
    size_t n = strlen(s);
    for (int t = 0; t < XD_LORA_NT; t++) {
        const char *name = xd_lora_target_name(t);
        /* "q_proj" or the short form "q" (the name without "_proj") */
        if (!strcmp(s, name) || (n > 0 && n + 5 == strlen(name) && !strncmp(s, name, n))) return t;
    }
    return xd_err("target module '%s' does not exist; available: " TARGET_LIST " (or q, k, v, o, "
                  "gate, up, down), and for a student igate, fgate", s);
}

void xd_lora_module_path(char *buf, size_t cap, int l, int t) {
    snprintf(buf, cap, "model.layers.%d.%s", l, target_path[t]);
}

float *xd_lora_base_weight(const xd_model *m, int l, int t, int *in, int *out) {
    const xd_config *c = &m->cfg;
    const xd_layer *L = &m->layers[l];
    int d = c->d_model, qd = c->n_head * c->head_dim, kvd = c->n_kv_head * c->head_dim;
    int ff = c->d_ff, nh = c->n_head;
    switch (t) {
    case XD_LORA_IGATE: *in = d; *out = nh; return L->w_ig;
    case XD_LORA_FGATE: *in = d; *out = nh; return L->w_fg;
    case XD_LORA_Q: *in = d; *out = qd; return L->wq;
    case XD_LORA_K: *in = d; *out = kvd; return L->wk;
    case XD_LORA_V: *in = d; *out = kvd; return L->wv;
    case XD_LORA_O: *in = qd; *out = d; return L->wo;
    case XD_LORA_GATE: *in = d; *out = ff; return L->w_gate;
    case XD_LORA_UP: *in = d; *out = ff; return L->w_up;
    default: *in = ff; *out = d; return L->w_down;
    }
}

int xd_lora_locate(const xd_model *m, const char *src, const char *module, int *l, int *t) {
    int layer, used = 0;
    if (sscanf(module, "model.layers.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0 &&
        layer < m->cfg.n_layer)
        for (int k = 0; k < (m->cfg.student ? XD_LORA_NT : XD_LORA_IGATE); k++)
            if (!strcmp(module + used, target_path[k])) {
                *l = layer;
                *t = k;
                return 0;
            }
    return xd_err("%s: module '%s' is not a linear layer of the model (%d layers); available: "
                  "model.layers.0..%d.{" MODULE_LIST "%s}", src, module, m->cfg.n_layer,
                  m->cfg.n_layer - 1, m->cfg.student ? ", self_attn.igate, self_attn.fgate" : "");
}

int xd_lora_bind(xd_lora_set *s, const xd_model *m, xd_lora_adapter *a, int with_grads) {
    memset(s, 0, sizeof *s);
    const char *src = a->source ? a->source : "adapter";
    s->ad = a;
    s->n_layer = m->cfg.n_layer;
    s->lin = calloc((size_t)s->n_layer * XD_LORA_NT, sizeof *s->lin);
    /* slot[i]: module i's place in lin (the arena below follows the module order) */
    xd_lora_lin **slot = malloc((size_t)(a->n_modules > 0 ? a->n_modules : 1) * sizeof *slot);
    if (!s->lin || !slot) {
        free(slot);
        xd_lora_unbind(s);
        return xd_err("out of memory");
    }
    size_t total = 0;
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *md = &a->modules[i];
        int l, t, in, out;
        if (xd_lora_locate(m, src, md->module, &l, &t)) goto fail;
        xd_lora_base_weight(m, l, t, &in, &out);
        if (xd_lora_check_module(a, md->module, in, out)) goto fail;
        xd_lora_lin *x = slot[i] = &s->lin[(size_t)l * XD_LORA_NT + t];
        x->rank = md->rank;
        x->in = in;
        x->out = out;
        x->scaling = (float)md->scaling;
        total += (size_t)md->rank * (size_t)(in + out);
        if (md->rank > s->max_rank) s->max_rank = md->rank;
    }
    s->n_param = total;
    s->param = malloc((total ? total : 1) * sizeof(float));
    s->grad = with_grads ? calloc(total ? total : 1, sizeof(float)) : NULL;
    if (!s->param || (with_grads && !s->grad)) {
        free(slot);
        xd_lora_unbind(s);
        return xd_err("out of memory for %zu adapter parameters", total);
    }
    size_t off = 0;
    for (int i = 0; i < a->n_modules; i++) {
        xd_lora_lin *x = slot[i];
        size_t na = (size_t)x->rank * x->in, nb = (size_t)x->out * x->rank;
        x->A = s->param + off;
        x->B = x->A + na;
        if (s->grad) {
            x->dA = s->grad + off;
            x->dB = x->dA + na;
        }
        off += na + nb;
    }
    free(slot);
    return xd_lora_fetch(s, a, src);
fail:
    free(slot);
    xd_lora_unbind(s);
    return -1;
}

void xd_lora_unbind(xd_lora_set *s) {
    free(s->lin);
    free(s->param);
    free(s->grad);
    memset(s, 0, sizeof *s);
}

int xd_lora_weights(const xd_lora_set *s, xd_weight **out, int *n) {
    const xd_lora_adapter *a = s->ad;
    xd_weight *w = calloc((size_t)(2 * a->n_modules) + 1, sizeof *w);
    if (!w) return xd_err("out of memory");
    size_t off = 0;
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *md = &a->modules[i];
        for (int k = 0; k < 2; k++) {
            xd_weight *e = &w[2 * i + k];
            int n_hf = snprintf(e->hf, sizeof e->hf, "base_model.model.%s.lora_%c.weight",
                                md->module, k ? 'B' : 'A');
            if (n_hf < 0 || (size_t)n_hf >= sizeof e->hf) {
                free(w);
                return xd_err("adapter module name too long: '%s'", md->module);
            }
            e->ptr = s->param + off;
            e->ndim = 2;
            e->rows = k ? md->out : md->rank;
            e->cols = k ? md->rank : md->in;
            off += (size_t)(e->rows * e->cols);
        }
    }
    *out = w;
    *n = 2 * a->n_modules;
    return 0;
}

int xd_lora_set_save(xd_lora_set *s, const char *dir) {
    if (xd_lora_store(s, s->ad)) return -1;
    return xd_lora_save(s->ad, dir);
}

/* a has the modules and ranks of the adapter the set was bound from (their
 * order is the arena's order). */
static int same_modules(const xd_lora_set *s, const xd_lora_adapter *a, const char *what) {
    if (a->n_modules != s->ad->n_modules)
        return xd_err("%s: %d adapted modules, expected %d", what, a->n_modules, s->ad->n_modules);
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *x = &a->modules[i], *y = &s->ad->modules[i];
        if (strcmp(x->module, y->module) || x->rank != y->rank || x->in != y->in ||
            x->out != y->out)
            return xd_err("%s: module '%s' (rank %d, %lld -> %lld) where '%s' (rank %d, %lld -> "
                          "%lld) was expected", what, x->module, x->rank, (long long)x->in,
                          (long long)x->out, y->module, y->rank, (long long)y->in,
                          (long long)y->out);
    }
    return 0;
}

int xd_lora_store(const xd_lora_set *s, xd_lora_adapter *a) {
    if (same_modules(s, a, a->source ? a->source : "adapter")) return -1;
    size_t off = 0;
    for (int i = 0; i < a->n_modules; i++) {
        xd_lora_module *md = &a->modules[i];
        size_t na = (size_t)md->rank * md->in, nb = (size_t)md->out * md->rank;
        memcpy(md->A, s->param + off, na * sizeof(float));
        memcpy(md->B, s->param + off + na, nb * sizeof(float));
        off += na + nb;
    }
    return 0;
}

int xd_lora_fetch(xd_lora_set *s, const xd_lora_adapter *a, const char *what) {
    if (same_modules(s, a, what)) return -1;
    size_t off = 0;
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *md = &a->modules[i];
        size_t na = (size_t)md->rank * md->in, nb = (size_t)md->out * md->rank;
        memcpy(s->param + off, md->A, na * sizeof(float));
        memcpy(s->param + off + na, md->B, nb * sizeof(float));
        off += na + nb;
    }
    return 0;
}

xd_lora_adapter *xd_lora_for_model(const xd_model *m, const char *base_model, unsigned targets,
                                   int r, double alpha, int use_rslora) {
    if (r <= 0) return xd_err("--r %d: the rank must be >= 1", r), NULL;
    if (!(targets & ((1u << XD_LORA_NT) - 1)))
        return xd_err("no target module chosen (--targets)"), NULL;
    if (xd_lora_targets_check(m, targets)) return NULL;
    xd_lora_adapter *a = xd_lora_new(base_model, r, alpha, use_rslora);
    if (!a) return NULL;
    a->base_hash = xd_model_teacher_hash(m);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int t = 0; t < XD_LORA_NT; t++) {
            if (!(targets & (1u << t))) continue;
            int in, out;
            char path[96];
            xd_lora_base_weight(m, l, t, &in, &out);
            xd_lora_module_path(path, sizeof path, l, t);
            if (r > in || r > out) {
                xd_lora_free(a);
                return xd_err("--r %d exceeds the features of %s (%d -> %d)", r, path, in, out),
                       NULL;
            }
            if (!xd_lora_add_module(a, path, r, in, out, alpha)) {
                xd_lora_free(a);
                return NULL;
            }
        }
    return a;
}

void xd_lora_init_random(xd_lora_adapter *a, uint64_t seed) {
    xd_rng g;
    xd_rng_seed(&g, seed);
    for (int i = 0; i < a->n_modules; i++) {
        xd_lora_module *md = &a->modules[i];
        double bound = 1.0 / sqrt((double)md->in);
        for (int64_t j = 0; j < (int64_t)md->rank * md->in; j++)
            md->A[j] = (float)((2 * xd_rng_uniform(&g) - 1) * bound);
        memset(md->B, 0, (size_t)(md->out * md->rank) * sizeof(float));
    }
}

int xd_lora_check_base(const xd_lora_adapter *a, const xd_model *m, const char *src) {
    if (!a->base_hash) return 0;
    uint64_t h = xd_model_teacher_hash(m);
    if (h == a->base_hash) return 0;
    return xd_err("%s: the adapter was made for another base model (weights hash %016llx; %s "
                  "has %016llx): use it with the model it was trained on", src,
                  (unsigned long long)a->base_hash, m->path[0] ? m->path : "the model",
                  (unsigned long long)h);
}

int xd_lora_merge(xd_model *m, const xd_lora_adapter *a, float sign) {
    const char *src = a->source ? a->source : "adapter";
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *md = &a->modules[i];
        int l, t, in, out;
        if (xd_lora_locate(m, src, md->module, &l, &t)) return -1;
        float *W = xd_lora_base_weight(m, l, t, &in, &out);
        if (xd_lora_check_module(a, md->module, in, out)) return -1;
        /* W[out][in] += sign·scaling · B[out][r] · A[r][in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, md->rank,
                    sign * (float)md->scaling, md->B, md->rank, md->A, in, 1.0f, W, in);
    }
    return 0;
}
