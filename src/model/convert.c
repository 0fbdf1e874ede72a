/* Teacher → student conversion (docs/design.md, "Conversion"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/hfconfig.h"
#include "model.h"
#include "qweights.h"
#include "student.h"

void xd_student_defaults(xd_student_opts *o) {
    memset(o, 0, sizeof *o);
    o->window = 512;
    o->sinks = 4;
    o->chunk = 64;
    o->gate_softcap = 15.0f;
    o->exact_in_window = 1;
    o->mlstm_eps = 1e-6f;
    o->global_kv_dtype = XD_KV_BF16;
}

/* The new parameters' initial values (see xdistill.h). */
static void init_mixer(const xd_config *c, xd_layer *L, int swa_only) {
    int nh = c->n_head, hd = c->head_dim, d = c->d_model;
    size_t A = (size_t)nh * hd * hd;
    memset(L->fmq_A, 0, A * sizeof(float));
    memset(L->fmk_A, 0, A * sizeof(float));
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd; i++) {
            L->fmq_A[((size_t)h * hd + i) * hd + i] = 1.0f;
            L->fmk_A[((size_t)h * hd + i) * hd + i] = 1.0f;
        }
    memset(L->fmq_b, 0, (size_t)nh * hd * sizeof(float));
    memset(L->fmk_b, 0, (size_t)nh * hd * sizeof(float));
    memset(L->w_ig, 0, 2 * (size_t)nh * d * sizeof(float));
    for (int h = 0; h < nh; h++) {
        L->b_ig[h] = 0.0f;
        L->b_fg[h] = nh > 1 ? 3.0f + 3.0f * (float)h / (float)(nh - 1) : 3.0f;
    }
    memset(L->w_mix, 0, (size_t)nh * 3 * hd * sizeof(float));
    for (int h = 0; h < nh; h++) L->b_mix[h] = swa_only ? -1e4f : 0.0f;
}

/* o's global heads, checked against the teacher's shape, into c sorted (docs/design.md,
 * "Global heads"). Errors name the option and the head as layer:head. */
static int take_global_heads(xd_config *c, const xd_student_opts *o) {
    int n = o->n_global_heads;
    if (n < 0 || n > XD_MAX_GLOBAL_HEADS)
        return xd_err("convert: global heads: %d given (expected 0 .. %d)", n, XD_MAX_GLOBAL_HEADS);
    if ((int64_t)n > (int64_t)c->n_layer * c->n_head)
        return xd_err("convert: global heads: %d given, more than the model has (%d layers x %d "
                      "heads = %d)", n, c->n_layer, c->n_head, c->n_layer * c->n_head);
    for (int i = 0; i < n; i++) {
        xd_head_ref h = o->global_heads[i];
        if (h.layer < 0 || h.layer >= c->n_layer || h.head < 0 || h.head >= c->n_head)
            return xd_err("convert: global head %d:%d is outside the model (expected layer "
                          "0 .. %d, head 0 .. %d)", h.layer, h.head, c->n_layer - 1, c->n_head - 1);
        for (int j = 0; j < i; j++)
            if (o->global_heads[j].layer == h.layer && o->global_heads[j].head == h.head)
                return xd_err("convert: global head %d:%d is given twice (expected each head "
                              "once)", h.layer, h.head);
    }
    memcpy(c->global_heads, o->global_heads, (size_t)n * sizeof *c->global_heads);
    xd_head_refs_sort(c->global_heads, n);
    c->n_global_heads = n;
    return 0;
}

xd_model *xd_student_convert(xd_model *t, const xd_student_opts *o) {
    if (!t || !o) { xd_err("convert: no teacher or options"); return NULL; }
    if (t->cfg.student) { xd_err("%s: is already a student", t->path); return NULL; }
    if (xd_model_require_fp32(t, "converting it to a student")) return NULL;
    xd_model *s = calloc(1, sizeof *s);
    if (!s) { xd_err("out of memory"); return NULL; }
    memcpy(s->path, t->path, sizeof s->path); /* errors name the teacher it came from */
    s->cfg = t->cfg;
    s->cfg.student = 1;
    s->cfg.window = o->window;
    s->cfg.sinks = o->sinks;
    s->cfg.chunk = o->chunk;
    s->cfg.gate_softcap = o->gate_softcap;
    s->cfg.exact_in_window = o->exact_in_window != 0;
    s->cfg.memory_rule = o->memory_rule;
    s->cfg.sparse_cache = o->sparse_cache;
    s->cfg.mlstm_eps = o->mlstm_eps;
    s->cfg.global_kv_dtype = o->global_kv_dtype;
    s->cfg.teacher_hash = xd_model_teacher_hash(t); /* Stage II checks its logits against it */
    s->cfg.mlstm_scale = o->mlstm_scale > 0 ? o->mlstm_scale
                                            : 1.0f / sqrtf(2.0f * (float)t->cfg.head_dim);
    xd_weight *tw = NULL, *sw = NULL;
    int nt = 0, nsw = 0;
    if (take_global_heads(&s->cfg, o) || xd_config_validate(&s->cfg, "convert") || xd_model_alloc(s) ||
        xd_model_weights(t, &tw, &nt) || xd_model_weights(s, &sw, &nsw))
        goto fail;
    for (int i = 0; i < nt; i++) { /* the teacher's weights, by name */
        int j = 0;
        while (j < nsw && strcmp(sw[j].hf, tw[i].hf)) j++;
        if (j == nsw || sw[j].rows != tw[i].rows || sw[j].cols != tw[i].cols) {
            xd_err("convert: teacher tensor '%s' has no place in the student", tw[i].hf);
            goto fail;
        }
        memcpy(sw[j].ptr, tw[i].ptr, (size_t)(tw[i].rows * tw[i].cols) * sizeof(float));
    }
    for (int l = 0; l < s->cfg.n_layer; l++) init_mixer(&s->cfg, &s->layers[l], o->swa_only);
    if (xd_model_init_rope(s)) goto fail;
    s->tok = t->tok;
    t->tok = NULL;
    free(tw);
    free(sw);
    return s;
fail:
    free(tw);
    free(sw);
    xd_model_free(s);
    return NULL;
}
