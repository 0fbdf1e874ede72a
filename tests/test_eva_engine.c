/* EVA on the engine (src/train/eva_init.h; issue 14, criteria 2 and 3) against HF
 * PEFT 0.21's initialize_lora_eva_weights on tiny-llama with the same token batches
 * (tests/ref/make_eva_engine_fixture.py, tests/fixtures/eva_engine.safetensors):
 *  - the rank distribution, rank_pattern and alpha_pattern identical to PEFT's;
 *  - every component (row of A) equal to PEFT's up to sign, |cos| >= 0.999 where its
 *    explained variance is separated from its neighbours' by more than 5% (PEFT's SVD is
 *    randomized and fp32; near-tied components may rotate within their span);
 *  - the same ranks and components to |cos| >= 1 − 1e-6 at 1 and 2 threads (the
 *    forward's BLAS products may round differently; the PCA itself is thread-free);
 *  - with a context mask, exactly the positions whose input token is not context
 *    are kept (PEFT's labels != -100);
 *  - the saved state gives the same adapter without forward passes, and another r;
 *    a state too small for r·rho, and data shorter than one batch, are refused. */
#include <jansson.h>
#include <string.h>

#include "fixture_util.h"
#include "io/atomic.h"
#include "io/peft_adapter.h"
#include "io/tokdata.h"
#include "model/lora.h"
#include "model/model.h"
#include "test.h"
#include "train/eva_init.h"
#include "xdistill.h"

static char dir[64];

static xd_eva_opts fixture_opts(void) {
    xd_eva_opts o;
    xd_eva_defaults(&o);
    o.r = 4;
    o.alpha = 8;
    o.rho = 2;
    o.tau = 0.99;
    o.batch = 4;
    o.seq = 32;
    o.max_steps = 1000; /* PEFT has no cap */
    return o;
}

static double row_cos(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < d; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* The explained variance of component i of the group module m belongs to (the owner's
 * state), to decide whether it is separated from its neighbours. */
static const xd_ipca *owner_pca(const xd_eva_state *st, const char *module) {
    int l = -1;
    sscanf(module, "model.layers.%d.", &l);
    const char *grp = strstr(module, "q_proj") || strstr(module, "k_proj") || strstr(module, "v_proj")
                          ? "self_attn.q_proj"
                      : strstr(module, "gate_proj") || strstr(module, "up_proj") ? "mlp.gate_proj"
                                                                                  : strchr(module + 13, '.') + 1;
    char want[96];
    snprintf(want, sizeof want, "model.layers.%d.%s", l, grp);
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->names[i], want)) return st->pca[i];
    return NULL;
}

static int separated(const xd_ipca *p, int i) {
    const double *ev = p->explained_variance, gap = 0.05;
    if (i > 0 && ev[i - 1] - ev[i] <= gap * ev[i - 1]) return 0;
    if (i + 1 < p->k && ev[i] - ev[i + 1] <= gap * ev[i]) return 0;
    return 1;
}

/* The adapter's patterns against PEFT's (tests/fixtures/eva_engine.json). */
static void check_patterns(const xd_lora_adapter *a) {
    char p[128];
    snprintf(p, sizeof p, "%s/adapter", dir);
    CHECK(xd_lora_save(a, p) == 0, "save: %s", xd_last_error());
    snprintf(p, sizeof p, "%s/adapter/adapter_config.json", dir);
    json_error_t je;
    json_t *ours = json_load_file(p, 0, &je);
    json_t *fx = json_load_file(XD_SOURCE_DIR "/tests/fixtures/eva_engine.json", 0, &je);
    const char *keys[] = {"rank_pattern", "alpha_pattern"};
    for (int k = 0; k < 2; k++) {
        json_t *ref = fx ? json_object_get(fx, keys[k]) : NULL;
        json_t *got = ours ? json_object_get(ours, keys[k]) : NULL;
        /* PEFT writes alphas as numbers that may be integers or floats: compare values */
        int same = ref && got && json_object_size(ref) == json_object_size(got);
        const char *key;
        json_t *v;
        json_object_foreach(ref, key, v) {
            json_t *w = json_object_get(got, key);
            same &= w && json_is_number(w) && json_number_value(w) == json_number_value(v);
        }
        char *rs = ref ? json_dumps(ref, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        char *gs = got ? json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        printf("%s: PEFT %s\n%*s  ours %s\n", keys[k], rs ? rs : "-", (int)strlen(keys[k]), "",
               gs ? gs : "-");
        CHECK(same, "%s differs from PEFT's", keys[k]);
        free(rs), free(gs);
    }
    json_decref(fx);
    json_decref(ours);
}

/* Ranks and components of a against PEFT's. */
static void check_against_peft(const xd_lora_adapter *a, const xd_eva_state *st, const st_set *s) {
    int n_peft = 0, ranks_ok = 1, checked = 0, bad = 0;
    double worst_sep = 1, worst_all = 1;
    for (int i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (strncmp(t->name, "A.", 2)) continue;
        n_peft++;
        const char *mod = t->name + 2;
        const xd_lora_module *md = xd_lora_find(a, mod);
        int rank = (int)t->shape[0], in = (int)t->shape[1];
        if (!md || md->rank != rank) {
            ranks_ok = 0;
            fprintf(stderr, "%s: PEFT rank %d, ours %d\n", mod, rank, md ? md->rank : 0);
            continue;
        }
        float *ref = test_st_floats(s, t->name, (int64_t)rank * in);
        const xd_ipca *p = owner_pca(st, mod);
        for (int r = 0; ref && p && r < rank; r++) {
            double c = fabs(row_cos(md->A + (size_t)r * in, ref + (size_t)r * in, in));
            if (c < worst_all) worst_all = c;
            if (!separated(p, r)) continue;
            checked++;
            if (c < worst_sep) worst_sep = c;
            if (c < 0.999) {
                bad++;
                fprintf(stderr, "%s component %d: |cos| %.6f with PEFT's\n", mod, r, c);
            }
        }
        CHECK(ref && p, "%s: fixture or state missing", mod);
        free(ref);
    }
    printf("vs PEFT: %d modules (ours %d), ranks %s; %d separated components, worst |cos| %.6f "
           "(all components: %.4f)\n", n_peft, a->n_modules, ranks_ok ? "identical" : "DIFFER",
           checked, worst_sep, worst_all);
    CHECK(n_peft == a->n_modules && ranks_ok, "rank distribution differs from PEFT's");
    CHECK(bad == 0 && checked >= n_peft, "%d of %d separated components below |cos| 0.999", bad,
          checked);
}

/* torch's CPU argsort(descending=True), ties included, on the fixture's arrays. */
static void test_argsort(void) {
    json_error_t je;
    json_t *fx = json_load_file(XD_SOURCE_DIR "/tests/fixtures/eva_engine.json", 0, &je);
    json_t *cases = fx ? json_object_get(fx, "argsort_desc") : NULL;
    size_t k;
    json_t *c;
    int n_ok = 0;
    json_array_foreach(cases, k, c) {
        json_t *v = json_object_get(c, "v"), *ix = json_object_get(c, "idx");
        int64_t n = (int64_t)json_array_size(v);
        double *x = malloc((size_t)n * sizeof(double));
        int64_t *got = malloc((size_t)n * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) x[i] = json_number_value(json_array_get(v, (size_t)i));
        int same = xd_eva_argsort_desc(x, n, got) == 0 && (int64_t)json_array_size(ix) == n;
        for (int64_t i = 0; same && i < n; i++)
            same = got[i] == json_integer_value(json_array_get(ix, (size_t)i));
        CHECK(same, "argsort of %lld values differs from torch's", (long long)n);
        n_ok += same;
        free(x), free(got);
    }
    printf("argsort(descending) with ties: %d of %zu arrays in torch's order\n", n_ok,
           json_array_size(cases));
    CHECK(json_array_size(cases) == 6, "fixture: %s", fx ? "no argsort cases" : je.text);
    json_decref(fx);
}

int main(void) {
    test_argsort();
    snprintf(dir, sizeof dir, "/tmp/xd_eva_engine_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    st_set *s = xd_st_open(XD_SOURCE_DIR "/tests/fixtures/eva_engine.safetensors");
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    CHECK(s && m, "fixtures: %s", xd_last_error());
    if (!s || !m) return test_summary("test_eva_engine");
    /* the token stream as one document: packed rows are PEFT's plain rows */
    const st_tensor *ts = xd_st_find(s, "stream");
    int64_t n = ts ? ts->shape[0] : 0;
    float *f = test_st_floats(s, "stream", n);
    int32_t *ids = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; f && i < n; i++) ids[i] = (int32_t)f[i];
    uint64_t off[2] = {0, (uint64_t)n};
    char data[128], small[128], state[128];
    snprintf(data, sizeof data, "%s/d.tok", dir);
    snprintf(small, sizeof small, "%s/small.tok", dir);
    snprintf(state, sizeof state, "%s/state.safetensors", dir);
    CHECK(f && xd_tokdata_write(data, 260, 0, 0, 0, ids, off, 1, 1) == 0, "write: %s", xd_last_error());
    uint64_t off_small[2] = {0, 100};
    CHECK(xd_tokdata_write(small, 260, 0, 0, 0, ids, off_small, 1, 1) == 0, "write: %s",
          xd_last_error());
    xd_tokdata *d = xd_tokdata_open(data);
    xd_eva_opts o = fixture_opts();
    xd_eva_state st2 = {0}, st1 = {0};
    xd_eva_report rep;
    int threads = xd_get_threads();
    xd_set_threads(2);
    CHECK(d && xd_eva_collect(m, d, &o, &st2, &rep) == 0, "collect: %s", xd_last_error());
    printf("EVA pass: %d forward passes, %lld tokens kept of %lld, %d input groups: %d converged, "
           "%d capped\n", rep.passes, (long long)rep.tokens_kept, (long long)rep.tokens_seen,
           rep.groups, rep.converged, rep.capped);
    CHECK(rep.groups == 8 && rep.converged == 8 && rep.tokens_kept == rep.tokens_seen &&
              rep.tokens_seen == (int64_t)rep.passes * o.batch * o.seq,
          "report: %d groups, %d converged", rep.groups, rep.converged);
    xd_lora_adapter *a = st2.n ? xd_eva_adapter(m, "tiny-llama", &st2, &o) : NULL;
    CHECK(a != NULL, "adapter: %s", xd_last_error());
    if (a) {
        check_against_peft(a, &st2, s);
        check_patterns(a);
    }
    /* one thread */
    xd_set_threads(1);
    CHECK(xd_eva_collect(m, d, &o, &st1, &rep) == 0, "collect (1 thread): %s", xd_last_error());
    xd_set_threads(threads);
    xd_lora_adapter *a1 = st1.n ? xd_eva_adapter(m, "tiny-llama", &st1, &o) : NULL;
    if (a && a1) {
        int same = a->n_modules == a1->n_modules;
        double worst = 1;
        for (int i = 0; same && i < a->n_modules; i++) {
            const xd_lora_module *x = &a->modules[i], *y = &a1->modules[i];
            same = x->rank == y->rank && !strcmp(x->module, y->module);
            for (int r = 0; same && r < x->rank; r++) {
                double c = row_cos(x->A + (size_t)r * x->in, y->A + (size_t)r * x->in, (int)x->in);
                if (c < worst) worst = c;
            }
        }
        printf("1 vs 2 threads: ranks %s, worst cos %.9f\n", same ? "identical" : "DIFFER", worst);
        CHECK(same && worst >= 1 - 1e-6, "thread counts disagree: cos %g", worst);
    }
    /* the state: saved, loaded, the same adapter; another r from it; r too large */
    CHECK(xd_eva_save(state, st2.pca, (const char *const *)st2.names, st2.n) == 0, "save: %s",
          xd_last_error());
    xd_eva_state ld = {0};
    CHECK(xd_eva_load(state, &ld.pca, &ld.names, &ld.n) == 0, "load: %s", xd_last_error());
    xd_lora_adapter *b = ld.n ? xd_eva_adapter(m, "tiny-llama", &ld, &o) : NULL;
    int same = a && b && a->n_modules == b->n_modules;
    for (int i = 0; same && i < a->n_modules; i++)
        same = a->modules[i].rank == b->modules[i].rank &&
               !memcmp(a->modules[i].A, b->modules[i].A,
                       (size_t)(a->modules[i].rank * a->modules[i].in) * sizeof(float));
    CHECK(same, "the reloaded state gives another adapter");
    xd_eva_opts o3 = o;
    o3.r = 3;
    xd_lora_adapter *c3 = ld.n ? xd_eva_adapter(m, "tiny-llama", &ld, &o3) : NULL;
    int total = 0;
    for (int i = 0; c3 && i < c3->n_modules; i++) total += c3->modules[i].rank;
    printf("from the saved state with r = 3: %d modules, rank sum %d (budget %d)\n",
           c3 ? c3->n_modules : 0, total, 3 * 14);
    CHECK(c3 && total == 3 * 14, "r = 3 from the state: %s", c3 ? "wrong budget" : xd_last_error());
    xd_eva_opts o8 = o;
    o8.r = 8;
    CHECK(xd_eva_adapter(m, "tiny-llama", &ld, &o8) == NULL &&
              strstr(xd_last_error(), "collect again"), "r = 8 from a state of 8 components: %s",
          xd_last_error());
    /* a context mask (every third token): a position is kept iff its own input token
     * is not context (PEFT: labels[i] != -100); pass p reads stream tokens
     * [p B T, (p + 1) B T) as inputs (rows of T from cursor 0, one document). The
     * stream starts with a context token and no later pass does, so keeping by the
     * target (the next token) would keep one more position. */
    int64_t BT = (int64_t)o.batch * o.seq, want_kept = 0, by_target = 0;
    uint8_t *mask = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) mask[i] = i == 0 || (i % 3 == 2 && i % BT != 0);
    char masked[128];
    snprintf(masked, sizeof masked, "%s/masked.tok", dir);
    CHECK(xd_tokdata_write_mask(masked, 260, 0, 0, 0, ids, off, 1, 1, mask) == 0, "write: %s",
          xd_last_error());
    xd_tokdata *dm = xd_tokdata_open(masked);
    xd_eva_state stm = {0};
    CHECK(dm && xd_eva_collect(m, dm, &o, &stm, &rep) == 0, "collect (masked): %s",
          xd_last_error());
    for (int64_t i = 0; i < rep.passes * BT; i++) {
        want_kept += !mask[i % n];
        by_target += !mask[(i + 1) % n];
    }
    printf("EVA with a context mask: %d passes, %lld of %lld positions kept (expected %lld)\n",
           rep.passes, (long long)rep.tokens_kept, (long long)rep.tokens_seen,
           (long long)want_kept);
    CHECK(rep.passes > 0 && rep.tokens_seen == rep.passes * BT && rep.tokens_kept == want_kept &&
              want_kept < rep.tokens_seen && by_target == want_kept + 1,
          "masked EVA: %lld kept, expected %lld", (long long)rep.tokens_kept, (long long)want_kept);
    xd_eva_state_free(&stm);
    xd_tokdata_close(dm);
    free(mask);
    /* data shorter than one batch */
    xd_tokdata *ds = xd_tokdata_open(small);
    xd_eva_state st3 = {0};
    CHECK(ds && xd_eva_collect(m, ds, &o, &st3, &rep) < 0 && strstr(xd_last_error(), "small.tok") &&
              strstr(xd_last_error(), "one EVA batch"), "short data: %s", xd_last_error());
    xd_tokdata_close(ds);
    xd_lora_free(a), xd_lora_free(a1), xd_lora_free(b), xd_lora_free(c3);
    xd_eva_state_free(&st1), xd_eva_state_free(&st2), xd_eva_state_free(&ld);
    xd_tokdata_close(d);
    free(ids), free(f);
    xd_model_free(m);
    xd_st_close(s);
    if (t_fail == 0) xd_rmtree(dir);
    return test_summary("test_eva_engine");
}
