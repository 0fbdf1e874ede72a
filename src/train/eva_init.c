/* EVA's activation pass and adapter (eva_init.h).
 *
 * DETERMINISM. The forward's matrix products are threaded BLAS calls, so the
 * activations (and through them the components) may differ in their last bits
 * between thread counts. Each input group's PCA update runs on one thread
 * (eva.h), groups in parallel, so nothing else depends on the thread count. */
#include "eva_init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"
#include "model/lora.h"
#include "train.h"
#include "train_model.h"

void xd_eva_defaults(xd_eva_opts *o) {
    memset(o, 0, sizeof *o);
    o->targets = XD_LORA_LINEAR_TARGETS;
    o->r = 8;
    o->alpha = 8;
    o->rho = 2;
    o->tau = 0.99;
    o->max_steps = 100;
    o->batch = 4;
    o->seq = 256;
    o->adjust_alpha = 1;
}

void xd_eva_state_free(xd_eva_state *s) {
    xd_eva_free_list(s->pca, s->names, s->n);
    memset(s, 0, sizeof *s);
}

/* Which input a target reads: 0 the attention input (q, k, v, and a student's
 * igate, fgate), 1 the attention output (o), 2 the MLP input (gate, up), 3 the
 * MLP hidden state (down). */
static int input_of(int t) {
    static const int g[XD_LORA_NT] = {0, 0, 0, 1, 2, 2, 3, 0, 0};
    return g[t];
}

/* One target layer in PEFT's module order (layer by layer; q, k, v, o, gate, up, down). */
typedef struct {
    int l, t, in, out; /* the layer's input and output features */
    int owner;       /* index of the first entry with the same input */
    int cap;         /* rint(rho · r), then the group's largest */
    char path[96];
} entry;

static int entries_of(const xd_model *m, const xd_eva_opts *o, entry **out, int *n_out) {
    if (o->r < 1) return xd_err("EVA: --r %d: the rank must be >= 1", o->r);
    if (!(o->rho >= 1 && o->rho <= 1e3)) return xd_err("EVA: rho %g: expected 1 <= rho <= 1000", o->rho);
    if (!(o->tau >= 0 && o->tau <= 1)) return xd_err("EVA: tau %g: expected 0 <= tau <= 1", o->tau);
    if (!(o->targets & ((1u << XD_LORA_NT) - 1))) return xd_err("EVA: no target module chosen");
    if (xd_lora_targets_check(m, o->targets)) return -1;
    entry *e = calloc((size_t)m->cfg.n_layer * XD_LORA_NT, sizeof *e);
    if (!e) return xd_err("out of memory");
    int n = 0, cap = (int)rint(o->rho * o->r);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int t = 0; t < XD_LORA_NT; t++) {
            if (!(o->targets & (1u << t))) continue;
            entry *x = &e[n];
            x->l = l;
            x->t = t;
            xd_lora_base_weight(m, l, t, &x->in, &x->out);
            xd_lora_module_path(x->path, sizeof x->path, l, t);
            x->owner = n;
            for (int j = n - 1; j >= 0 && e[j].l == l; j--)
                if (input_of(e[j].t) == input_of(t)) x->owner = e[j].owner;
            x->cap = cap;
            if (cap > x->in) {
                xd_err("EVA: rint(rho·r) = %d components exceed the %d input features of %s; "
                       "lower --r or rho", cap, x->in, x->path);
                free(e);
                return -1;
            }
            n++;
        }
    *out = e;
    *n_out = n;
    return 0;
}

/* The input rows of entry x's layer in the trainer's saved activations. */
static const float *input_rows(const xd_trainer_model *tm, const entry *x) {
    const xd_layer_acts *a = &tm->acts[x->l];
    switch (input_of(x->t)) {
    case 0: return a->h1 ? a->h1 : a->x_in;
    case 1: return a->att;
    case 2: return a->h2 ? a->h2 : a->x_mid;
    default: return a->sw;
    }
}

/* Ranks for the entries from their owners' explained-variance ratios. */
static int distribute(const entry *e, int n, xd_ipca *const *pca, const xd_eva_opts *o,
                      int *rank, double *alpha) {
    xd_eva_layer *L = calloc((size_t)n, sizeof *L);
    if (!L) return xd_err("out of memory");
    for (int i = 0; i < n; i++) {
        const xd_ipca *p = pca[e[i].owner];
        L[i] = (xd_eva_layer){p->explained_variance_ratio, p->k, o->r, o->alpha, e[i].owner};
    }
    int rc = xd_eva_rank_distribution(L, n, o->rho, rank, alpha);
    free(L);
    return rc;
}

int xd_eva_collect(xd_model *m, const xd_tokdata *data, const xd_eva_opts *o, xd_eva_state *st,
                   xd_eva_report *rep) {
    memset(st, 0, sizeof *st);
    memset(rep, 0, sizeof *rep);
    if (o->batch < 1 || o->seq < 2 || o->max_steps < 1)
        return xd_err("EVA: batch %d x %d, max steps %d: expected >= 1, >= 2, >= 1", o->batch,
                      o->seq, o->max_steps);
    uint64_t have = xd_tokdata_split_tokens(data, XD_SPLIT_TRAIN), need = (uint64_t)o->batch * o->seq + 1;
    if (have < need)
        return xd_err("%s: the train split has %llu tokens, fewer than one EVA batch of %d x %d "
                      "(+1)", xd_tokdata_path(data), (unsigned long long)have, o->batch, o->seq);
    entry *e;
    int n;
    if (entries_of(m, o, &e, &n)) return -1;
    int B = o->batch, T = o->seq, BT = B * T, rc = -1;
    xd_ipca **pca = calloc((size_t)n, sizeof *pca);
    int *rank = malloc((size_t)n * sizeof(int)), *state = calloc((size_t)n, sizeof(int));
    int32_t *kept = malloc((size_t)BT * sizeof(int32_t));
    double *alpha = malloc((size_t)n * sizeof(double));
    xd_trainer_model tm;
    xd_batch bb = {0};
    memset(&tm, 0, sizeof tm);
    if (!pca || !rank || !state || !kept || !alpha) { xd_err("out of memory"); goto done; }
    int groups = 0;
    for (int i = 0; i < n; i++) {
        rank[i] = e[i].cap;
        if (e[i].owner == i && !(pca[i] = xd_ipca_new(e[i].in, e[i].cap))) goto done;
        groups += e[i].owner == i;
    }
    if (xd_tm_init_ex(&tm, m, B, T, 0) || xd_batch_alloc(&bb, B, T)) goto done;
    /* a group that has not had its first update yet cannot stop; passes are bounded
     * by max_steps + 1 beyond the last first update */
    uint64_t cursor = 0;
    double t0 = xd_now();
    xd_progress pr;
    xd_progress_start(&pr, "eva", 0, o->max_steps);
    for (int pass = 0;; pass++) {
        int running = 0, fresh = 0;
        for (int i = 0; i < n; i++) {
            if (e[i].owner != i) continue;
            if (pca[i]->steps == 0) { state[i] = XD_EVA_RUNNING; fresh++; }
            else if ((state[i] = xd_eva_check(pca[i], rank[i], o->tau, o->max_steps)) < 0) goto done;
            running += state[i] == XD_EVA_RUNNING;
        }
        if (!running) break;
        if (fresh && pass >= o->max_steps) {
            xd_err("%s: EVA: after %d passes %d input groups never had a batch with k = %d kept "
                   "tokens; use more --eva-batch rows or less masking", xd_tokdata_path(data),
                   pass, fresh, e[0].cap);
            goto done;
        }
        if (xd_train_batch(data, &cursor, B, T, &bb)) goto done;
        double s;
        int64_t nv;
        if (xd_tm_step(&tm, bb.tok, NULL, bb.pos, bb.ds, 0, 0, &s, &nv)) goto done;
        /* PEFT keeps position i iff labels[i] != -100: its own input token is not a
         * context token (the target, token i + 1, does not matter) */
        int nk = 0;
        for (int i = 0; i < BT; i++)
            if (!bb.ctx[i]) kept[nk++] = i;
        rep->passes++;
        rep->tokens_seen += BT;
        rep->tokens_kept += nk;
        double tp = xd_now();
        int err = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : err)
        for (int i = 0; i < n; i++) {
            if (e[i].owner != i || state[i] != XD_EVA_RUNNING || nk < pca[i]->k) continue;
            /* PEFT skips a batch with fewer rows than components for that layer */
            int d = e[i].in;
            const float *src = input_rows(&tm, &e[i]);
            float *X = malloc((size_t)nk * d * sizeof(float));
            if (!X) { err = 1; continue; }
            for (int j = 0; j < nk; j++)
                memcpy(X + (size_t)j * d, src + (size_t)kept[j] * d, (size_t)d * sizeof(float));
            err |= xd_ipca_update(pca[i], X, nk, d) != 0;
            free(X);
        }
        rep->pca_seconds += xd_now() - tp;
        if (err) { xd_err_prefix("EVA: incremental PCA"); goto done; }
        int ready = 1;
        for (int i = 0; i < n; i++) ready &= e[i].owner != i || pca[i]->steps > 0;
        if (ready && distribute(e, n, pca, o, rank, alpha)) goto done;
        char extra[96];
        snprintf(extra, sizeof extra, "%d of %d input groups updating | %d tokens kept", running,
                 groups, nk);
        xd_progress_update(&pr, pass + 1 < o->max_steps ? pass + 1 : o->max_steps, extra);
    }
    xd_progress_end(&pr);
    for (int i = 0; i < n; i++) {
        if (e[i].owner != i) continue;
        rep->groups++;
        rep->converged += state[i] == XD_EVA_CONVERGED;
        rep->capped += state[i] == XD_EVA_CAPPED;
    }
    rep->seconds = xd_now() - t0;
    st->pca = calloc((size_t)rep->groups, sizeof *st->pca);
    st->names = calloc((size_t)rep->groups, sizeof *st->names);
    if (!st->pca || !st->names) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        if (e[i].owner != i) continue;
        st->names[st->n] = strdup(e[i].path);
        st->pca[st->n++] = pca[i];
        pca[i] = NULL;
        if (!st->names[st->n - 1]) { xd_err("out of memory"); goto done; }
    }
    rc = 0;
done:
    if (rc) xd_eva_state_free(st);
    for (int i = 0; pca && i < n; i++) xd_ipca_free(pca[i]);
    free(pca), free(rank), free(state), free(kept), free(alpha), free(e);
    xd_tm_free(&tm);
    xd_batch_free(&bb);
    return rc;
}

xd_lora_adapter *xd_eva_adapter(const xd_model *m, const char *base_model, const xd_eva_state *st,
                                const xd_eva_opts *o) {
    entry *e;
    int n;
    if (entries_of(m, o, &e, &n)) return NULL;
    xd_ipca **pca = calloc((size_t)n, sizeof *pca);
    int *rank = malloc((size_t)n * sizeof(int));
    double *alpha = malloc((size_t)n * sizeof(double));
    xd_lora_adapter *a = NULL;
    if (!pca || !rank || !alpha) { xd_err("out of memory"); goto fail; }
    for (int i = 0; i < n; i++) {
        if (e[i].owner != i) continue;
        for (int j = 0; j < st->n && !pca[i]; j++)
            if (!strcmp(st->names[j], e[i].path)) pca[i] = st->pca[j];
        if (!pca[i]) {
            xd_err("EVA state: no input group '%s' (the state was collected for other targets "
                   "or another model)", e[i].path);
            goto fail;
        }
        if (pca[i]->d != e[i].in || pca[i]->k < e[i].cap) {
            xd_err("EVA state: '%s' holds %d components of %d features; r = %d, rho = %g need "
                   "%d of %d (collect again)", e[i].path, pca[i]->k, pca[i]->d, o->r, o->rho,
                   e[i].cap, e[i].in);
            goto fail;
        }
        if (pca[i]->steps == 0) {
            xd_err("EVA state: '%s' has no update", e[i].path);
            goto fail;
        }
    }
    if (distribute(e, n, pca, o, rank, alpha)) goto fail;
    if (!(a = xd_lora_new(base_model, o->r, o->alpha, o->use_rslora))) goto fail;
    a->base_hash = xd_model_teacher_hash(m);
    free(a->init_lora_weights);
    if (!(a->init_lora_weights = strdup("eva"))) { xd_err("out of memory"); goto fail; }
    a->has_eva = 1;
    a->eva = (xd_eva_config){o->rho, o->tau, 1, -100, 0, o->adjust_alpha};
    for (int i = 0; i < n; i++) {
        if (rank[i] == 0) continue; /* no adapter, as PEFT */
        xd_lora_module *md = xd_lora_add_module(a, e[i].path, rank[i], e[i].in, e[i].out,
                                                o->adjust_alpha ? alpha[i] : o->alpha);
        if (!md) goto fail;
        const double *c = pca[e[i].owner]->components;
        for (size_t j = 0; j < (size_t)rank[i] * e[i].in; j++) md->A[j] = (float)c[j];
    }
    if (a->n_modules == 0) {
        xd_err("EVA: every layer got rank 0");
        goto fail;
    }
    free(e), free(pca), free(rank), free(alpha);
    return a;
fail:
    xd_lora_free(a);
    free(e), free(pca), free(rank), free(alpha);
    return NULL;
}
