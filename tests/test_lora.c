/* LoRA on the engine (src/model/lora.h, the LoRA op in kernels/train_ops.h,
 * its use in train/train_model.c and the trainer), issue 14 criterion 1 and 4:
 *  - the op's backward against central differences;
 *  - PEFT's logits with its own adapters on tiny-llama (tests/fixtures/peft/
 *    logits.safetensors, tests/ref/make_peft_fixture.py, PEFT 0.21.2): the
 *    training forward with the adapter beside the layers, and the inference
 *    forward after xd_lora_merge, both within 1e-4 of the largest logit (PEFT
 *    computes the same fp32 products in another order: ~1e-6 apart); PEFT's
 *    PiSSA adapter converted to a LoRA (rank 2r) and an EVA adapter included;
 *  - PiSSA: our initialisation against PEFT's, and our conversion;
 *  - the whole model's adapter gradients against central differences, on a
 *    teacher and on students (the mixer behind q, k, v and o), the base
 *    receiving no gradient;
 *  - training through xd_train: the loss falls, the base weights stay
 *    bit-identical, OUT/adapter loads back with the trained values;
 *  - bad input: rank 0, an unknown target, an adapter of another base. */
#include <cblas.h>
#include <jansson.h>
#include <string.h>

#include "core/rng.h"
#include "fixture_util.h"
#include "io/atomic.h"
#include "io/peft_adapter.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"
#include "model/lora.h"
#include "model/model.h"
#include "cli_util.h"
#include "student_util.h"
#include "test.h"
#include "train/lora_init.h"
#include "train/train.h"
#include "train/train_model.h"
#include "xdistill.h"

static void fill(xd_rng *r, float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * (2 * xd_rng_uniform(r) - 1));
}

/* ---- the op alone: L = Σ w ⊙ y is linear in each of x, A, B, so central
 * differences are exact up to fp32 rounding (~1e-6 relative here, h = 0.5). */
static double op_loss(const float *w, const float *y0, const float *x, const float *A,
                      const float *B, float s, int n, int in, int out, int r) {
    float *y = malloc((size_t)n * out * sizeof(float)), *ax = malloc((size_t)n * r * sizeof(float));
    memcpy(y, y0, (size_t)n * out * sizeof(float));
    xd_lora_forward(y, ax, x, A, B, s, n, in, out, r);
    double L = 0;
    for (int i = 0; i < n * out; i++) L += (double)w[i] * y[i];
    free(y);
    free(ax);
    return L;
}

static void test_op_fd(void) {
    enum { n = 5, in = 7, out = 6, r = 3 };
    const float s = 1.7f;
    xd_rng g;
    xd_rng_seed(&g, 11);
    float x[n * in], A[r * in], B[out * r], y0[n * out], w[n * out], ax[n * r], y[n * out];
    fill(&g, x, n * in, 1);
    fill(&g, A, r * in, 1);
    fill(&g, B, out * r, 1);
    fill(&g, y0, n * out, 1);
    fill(&g, w, n * out, 1);
    float dx[n * in] = {0}, dA[r * in] = {0}, dB[out * r] = {0}, dax[n * r];
    memcpy(y, y0, sizeof y);
    xd_lora_forward(y, ax, x, A, B, s, n, in, out, r);
    /* forward against a double transcription of y0 + s·B(A x) */
    double worst_f = 0;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = y0[i * out + o];
            for (int k = 0; k < r; k++) {
                double u = 0;
                for (int j = 0; j < in; j++) u += (double)A[k * in + j] * x[i * in + j];
                acc += s * (double)B[o * r + k] * u;
            }
            if (fabs(acc - y[i * out + o]) > worst_f) worst_f = fabs(acc - y[i * out + o]);
        }
    CHECK(worst_f < 1e-5, "LoRA forward off by %g", worst_f);
    xd_lora_backward(dx, dA, dB, dax, w, x, ax, A, B, s, n, in, out, r);
    struct { float *p, *g; int n; const char *name; } vars[] = {
        {x, dx, n * in, "dx"}, {A, dA, r * in, "dA"}, {B, dB, out * r, "dB"}};
    const float h = 0.5f;
    int bad = 0, checked = 0;
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < vars[v].n; i++) {
            float save = vars[v].p[i];
            vars[v].p[i] = save + h;
            double lp = op_loss(w, y0, x, A, B, s, n, in, out, r);
            vars[v].p[i] = save - h;
            double lm = op_loss(w, y0, x, A, B, s, n, in, out, r);
            vars[v].p[i] = save;
            double fd = (lp - lm) / (2.0 * h);
            if (fabs(fd - vars[v].g[i]) > 1e-4 * (1 + fabs(fd))) {
                bad++;
                fprintf(stderr, "%s[%d]: analytic %g vs fd %g\n", vars[v].name, i, vars[v].g[i], fd);
            }
            checked++;
        }
    CHECK(bad == 0, "LoRA op backward: %d of %d disagree with finite differences", bad, checked);
    printf("LoRA op: forward max err %.1e vs double; backward %d coordinates vs central "
           "differences\n", worst_f, checked);
}

/* ---- PEFT's logits with its adapters on tiny-llama */
static xd_model *load_fixture(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", XD_SOURCE_DIR, name);
    xd_model *m = xd_model_load(dir);
    CHECK(m != NULL, "%s: %s", name, xd_last_error());
    return m;
}

static double rel_diff(const float *a, const float *ref, size_t n) {
    double e = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= e)) e = d;
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    }
    return e / (mx > 0 ? mx : 1);
}

/* PEFT's logits (fixture file `file`, one tensor per adapter name) against ours with
 * the adapters of tests/fixtures/peft/<name>, beside the layers and merged. */
static void peft_logits(const char *file, const char *const *names, int n_names,
                        const char *who) {
    char fp[512];
    snprintf(fp, sizeof fp, "%s/tests/fixtures/peft/%s", XD_SOURCE_DIR, file);
    st_set *s = xd_st_open(fp);
    CHECK(s != NULL, "logits fixture: %s", xd_last_error());
    if (!s) return;
    const st_tensor *ti = xd_st_find(s, "ids");
    int T = ti ? (int)ti->shape[ti->n_dims - 1] : 0;
    float *idf = test_st_floats(s, "ids", T);
    xd_model *m = load_fixture("tiny-llama");
    if (!m || !idf) goto done;
    int V = m->cfg.vocab_size, d = m->cfg.d_model;
    int32_t ids[64];
    for (int i = 0; i < T && i < 64; i++) ids[i] = (int32_t)idf[i];
    float *out = malloc((size_t)T * V * sizeof(float));
    for (int k = 0; k < n_names; k++) {
        float *ref = test_st_floats(s, names[k], (int64_t)T * V);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/peft/%s", XD_SOURCE_DIR, names[k]);
        xd_lora_adapter *a = xd_lora_load(dir);
        CHECK(ref && a, "%s: %s", names[k], xd_last_error());
        if (!ref || !a) { free(ref); xd_lora_free(a); continue; }
        /* the adapter beside the layers, in the training forward */
        xd_lora_set ls;
        xd_trainer_model tm;
        CHECK(xd_lora_bind(&ls, m, a, 0) == 0, "bind %s: %s", names[k], xd_last_error());
        CHECK(xd_tm_init_lora(&tm, m, &ls, 1, T) == 0, "init: %s", xd_last_error());
        double sum;
        int64_t nv;
        xd_tm_step(&tm, ids, NULL, NULL, NULL, 0, 0, &sum, &nv);
        xd_linear(tm.logits, tm.x_norm, m->lm_head, NULL, T, d, V);
        double e_side = rel_diff(tm.logits, ref, (size_t)T * V);
        xd_tm_free(&tm);
        xd_lora_unbind(&ls);
        /* merged into the weights, in the inference forward; unmerged gives the base back */
        float *w0 = malloc(m->arena_floats * sizeof(float));
        memcpy(w0, m->arena, m->arena_floats * sizeof(float));
        CHECK(xd_lora_merge(m, a, 1.0f) == 0, "merge: %s", xd_last_error());
        xd_kv *kv = xd_kv_create(m, T);
        CHECK(xd_forward(m, kv, ids, T, out, 1) == 0, "forward: %s", xd_last_error());
        xd_kv_free(kv);
        double e_merged = rel_diff(out, ref, (size_t)T * V);
        CHECK(xd_lora_merge(m, a, -1.0f) == 0, "unmerge: %s", xd_last_error());
        double back = 0;
        for (size_t i = 0; i < m->arena_floats; i++)
            if (fabs(m->arena[i] - w0[i]) > back) back = fabs(m->arena[i] - w0[i]);
        memcpy(m->arena, w0, m->arena_floats * sizeof(float));
        free(w0);
        printf("%-9s (%s) vs PEFT's logits: beside the layers %.2e, merged %.2e of the largest "
               "logit (tol 1e-4); unmerge restores the base to %.1e\n", names[k], who, e_side,
               e_merged, back);
        CHECK(e_side <= 1e-4, "%s: training forward with LoRA differs from PEFT by %g", names[k], e_side);
        CHECK(e_merged <= 1e-4, "%s: merged forward differs from PEFT by %g", names[k], e_merged);
        CHECK(back <= 1e-5, "%s: unmerge leaves %g", names[k], back);
        free(ref);
        xd_lora_free(a);
    }
    free(out);
done:
    free(idf);
    xd_model_free(m);
    xd_st_close(s);
}

static void test_peft_logits(void) {
    const char *const peft_written[] = {"lora", "rslora", "pissa", "eva"};
    peft_logits("logits.safetensors", peft_written, 4, "written by PEFT");
    /* adapters written by xdistill, loaded by PeftModel.from_pretrained for the fixture
     * (tests/ref/make_peft_fixture.py --xd; their files are checked in test_peft_adapter) */
    const char *const xd_written[] = {"xd_eva", "xd_pissa", "xd_rslora"};
    peft_logits("xd_logits.safetensors", xd_written, 3, "written by xdistill");
}

/* Logits of m (+ the adapter beside the layers when a) on ids[T], into out [T][V]. */
static void logits_of(xd_model *m, xd_lora_adapter *a, const int32_t *ids, int T, float *out) {
    xd_lora_set ls;
    xd_trainer_model tm;
    int V = m->cfg.vocab_size, d = m->cfg.d_model;
    CHECK(!a || xd_lora_bind(&ls, m, a, 0) == 0, "bind: %s", xd_last_error());
    CHECK(xd_tm_init_lora(&tm, m, a ? &ls : NULL, 1, T) == 0, "init: %s", xd_last_error());
    double sum;
    int64_t nv;
    xd_tm_step(&tm, ids, NULL, NULL, NULL, 0, 0, &sum, &nv);
    xd_linear(out, tm.x_norm, m->lm_head, NULL, T, d, V);
    xd_tm_free(&tm);
    if (a) xd_lora_unbind(&ls);
}

/* ---- PiSSA: our initialisation against PEFT's (scaling·B0·A0 of two modules: the
 * same best rank-r part, whatever the singular vectors' signs; PEFT's SVD is fp32,
 * ours double: ~1e-6 apart, tolerance 1e-4 of the largest entry), and the conversion:
 * after A, B move, the original base + the converted rank-2r adapter gives the
 * trained model's logits (residual base + adapter), within 1e-4 of the largest. */
static void test_pissa(void) {
    st_set *s = xd_st_open(XD_SOURCE_DIR "/tests/fixtures/peft/logits.safetensors");
    xd_model *m = load_fixture("tiny-llama");
    if (!s || !m) { xd_st_close(s); xd_model_free(m); return; }
    float *w0 = malloc(m->arena_floats * sizeof(float));
    memcpy(w0, m->arena, m->arena_floats * sizeof(float));
    xd_lora_init_opts io = {XD_LORA_INIT_PISSA, XD_LORA_LINEAR_TARGETS, 4, 8.0, 0, 1};
    xd_lora_adapter *a = xd_lora_init(m, "tiny-llama", &io);
    CHECK(a != NULL, "pissa init: %s", xd_last_error());
    if (!a) goto done;
    const char *mods[] = {"model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"};
    for (int k = 0; k < 2; k++) {
        const xd_lora_module *md = xd_lora_find(a, mods[k]);
        char nm[128];
        snprintf(nm, sizeof nm, "pissa_delta.%s", mods[k]);
        int64_t n = md ? md->out * md->in : 0;
        float *ref = md ? test_st_floats(s, nm, n) : NULL, *dw = calloc((size_t)n + 1, sizeof(float));
        CHECK(ref != NULL, "%s missing", nm);
        if (ref) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)md->out, (int)md->in,
                        md->rank, (float)md->scaling, md->B, md->rank, md->A, (int)md->in, 0.0f,
                        dw, (int)md->in);
            double e = rel_diff(dw, ref, (size_t)n);
            printf("PiSSA init of %s: scaling*B*A vs PEFT's %.2e of the largest entry\n",
                   mods[k], e);
            CHECK(e <= 1e-4, "%s: PiSSA's initial product differs from PEFT's by %g", mods[k], e);
        }
        free(ref);
        free(dw);
    }
    /* the base now holds the residual: base + adapter = the original function */
    enum { T = 8 };
    const int32_t ids[T] = {1, 17, 42, 259, 100, 7, 200, 3};
    int V = m->cfg.vocab_size;
    float *l0 = malloc((size_t)T * V * sizeof(float)), *l1 = malloc((size_t)T * V * sizeof(float));
    float *l2 = malloc((size_t)T * V * sizeof(float));
    xd_lora_adapter *a0 = xd_lora_copy(a);
    xd_rng g;
    xd_rng_seed(&g, 5);
    for (int i = 0; i < a->n_modules; i++) { /* a stand-in for training */
        xd_lora_module *md = &a->modules[i];
        for (int64_t j = 0; j < md->rank * md->in; j++) md->A[j] += (float)(0.05 * xd_rng_normal(&g));
        for (int64_t j = 0; j < md->out * md->rank; j++) md->B[j] += (float)(0.05 * xd_rng_normal(&g));
    }
    logits_of(m, a, ids, T, l1); /* trained: residual base + adapter */
    xd_lora_adapter *c = xd_lora_pissa_convert(a, a0);
    CHECK(c && c->r == 8 && c->lora_alpha == 16.0, "converted: rank 2r, alpha 2*alpha: %s",
          c ? "wrong" : xd_last_error());
    memcpy(m->arena, w0, m->arena_floats * sizeof(float)); /* the original base */
    logits_of(m, NULL, ids, T, l0);
    if (c) {
        logits_of(m, c, ids, T, l2);
        double e = rel_diff(l2, l1, (size_t)T * V), moved = rel_diff(l0, l1, (size_t)T * V);
        printf("PiSSA converted to LoRA on the original base vs the trained model: %.2e of the "
               "largest logit (training moved them by %.2f)\n", e, moved);
        CHECK(e <= 1e-4 && moved > 1e-2, "PiSSA conversion: %g (moved %g)", e, moved);
    }
    free(l0), free(l1), free(l2);
    xd_lora_free(c);
    xd_lora_free(a0);
    xd_lora_free(a);
done:
    free(w0);
    xd_model_free(m);
    xd_st_close(s);
}

/* ---- whole-model adapter gradients against central differences. L is the
 * mean cross-entropy in fp32 with a double sum (~1e-6 noise, ~1e-3 in the FD
 * quotient at h = 1e-3), so |analytic − fd| ≤ 3e-3 + 3e-2·|fd| as in
 * test_train_fd.c; a wrong backward is off by O(|grad|). */
enum { FB = 2, FT = 10 };

static double fd_loss(xd_trainer_model *tm, const int32_t *tok, const int32_t *tgt) {
    double s;
    int64_t n;
    xd_tm_step(tm, tok, tgt, NULL, NULL, 0, 0, &s, &n);
    return s / (double)n;
}

static void check_fd(const char *name, int student) {
    xd_model *m = load_fixture(name);
    if (!m) return;
    if (student) {
        xd_student_opts o;
        xd_student_defaults(&o);
        o.window = 3;
        o.sinks = 1;
        o.chunk = 4;
        xd_model *st = xd_student_convert(m, &o);
        xd_model_free(m);
        CHECK(st != NULL, "convert %s: %s", name, xd_last_error());
        if (!st) return;
        m = st;
        test_randomise_mixer(m, 3);
    }
    /* a student's adapters also cover its mixer's gate projections (igate, fgate) */
    unsigned targets = student ? (1u << XD_LORA_NT) - 1 : XD_LORA_LINEAR_TARGETS;
    xd_lora_adapter *a = xd_lora_for_model(m, name, targets, 2, 5.0, student);
    CHECK(a != NULL, "adapter: %s", xd_last_error());
    if (!a) { xd_model_free(m); return; }
    xd_lora_init_random(a, 9);
    xd_rng g;
    xd_rng_seed(&g, 21);
    for (int i = 0; i < a->n_modules; i++) /* B ≠ 0, so that dA is not trivially zero */
        fill(&g, a->modules[i].B, (size_t)(a->modules[i].out * a->modules[i].rank), 0.3);
    xd_lora_set ls;
    xd_trainer_model tm;
    CHECK(xd_lora_bind(&ls, m, a, 1) == 0, "bind: %s", xd_last_error());
    CHECK(xd_tm_init_lora(&tm, m, &ls, FB, FT) == 0, "init: %s", xd_last_error());
    CHECK(tm.grad_arena && tm.grads.layers[0].wq == NULL, "the base must get no gradient arena");
    int32_t tok[FB * FT], tgt[FB * FT];
    int V = m->cfg.vocab_size, n_valid = 0;
    for (int i = 0; i < FB * FT; i++) {
        tok[i] = (int32_t)xd_rng_below(&g, (uint64_t)V);
        tgt[i] = i % 5 == 2 ? -1 : (int32_t)xd_rng_below(&g, (uint64_t)V);
        n_valid += tgt[i] >= 0;
    }
    xd_tm_zero_grad(&tm);
    double s;
    int64_t n;
    CHECK(xd_tm_step(&tm, tok, tgt, NULL, NULL, 1, 1.0f / (float)n_valid, &s, &n) == 0,
          "step: %s", xd_last_error());
    xd_weight *ws;
    int nw;
    xd_lora_weights(&ls, &ws, &nw);
    int bad = 0, checked = 0, gate_tensors = 0;
    const float h = 1e-3f;
    for (int w = 0; w < nw; w++) {
        int64_t cnt = ws[w].rows * ws[w].cols;
        float *p = ws[w].ptr, *gr = ls.grad + (ws[w].ptr - ls.param);
        if (strstr(ws[w].hf, "gate.lora") && strstr(ws[w].hf, "self_attn")) {
            /* a gate adapter: its gradient must not vanish (else the FD check below
             * would pass trivially with the adapter left out of forward and backward) */
            float mx = 0;
            for (int64_t j = 0; j < cnt; j++) mx = fmaxf(mx, fabsf(gr[j]));
            CHECK(mx > 1e-6f, "%s %s: zero gradient", name, ws[w].hf);
            gate_tensors++;
        }
        for (int k = 0; k < 4; k++) {
            int64_t i = k == 0 ? 0 : (int64_t)xd_rng_below(&g, (uint64_t)cnt);
            if (k == 1) /* the largest gradient */
                for (int64_t j = 0; j < cnt; j++) if (fabsf(gr[j]) > fabsf(gr[i])) i = j;
            float save = p[i];
            p[i] = save + h;
            double lp = fd_loss(&tm, tok, tgt);
            p[i] = save - h;
            double lm = fd_loss(&tm, tok, tgt);
            p[i] = save;
            double fd = (lp - lm) / (2.0 * h);
            if (fabs(gr[i] - fd) > 3e-3 + 3e-2 * fabs(fd)) {
                bad++;
                fprintf(stderr, "%s %s[%lld]: analytic %g vs fd %g\n", name, ws[w].hf,
                        (long long)i, gr[i], fd);
            }
            checked++;
        }
    }
    CHECK(bad == 0, "%s: %d of %d adapter coordinates disagree with finite differences", name,
          bad, checked);
    CHECK(gate_tensors == (student ? 4 * m->cfg.n_layer : 0), "%s: %d gate adapter tensors", name,
          gate_tensors);
    printf("%-11s%s LoRA on all %s projections (rank 2%s): %d coordinates vs central "
           "differences\n", name, student ? " student" : "", student ? "nine" : "seven",
           student ? ", rsLoRA" : "", checked);
    if (student) {
        /* the forward with the adapters beside the layers (gates included) = the
         * forward of the merged weights W + s·B·A (xd_lora_merge, a separate path) */
        enum { T = 8 };
        const int32_t ids[T] = {1, 17, 42, 25, 10, 7, 20, 3};
        int V = m->cfg.vocab_size;
        float *l1 = malloc((size_t)T * V * sizeof(float)), *l2 = malloc((size_t)T * V * sizeof(float));
        logits_of(m, a, ids, T, l1);
        CHECK(xd_lora_merge(m, a, 1.0f) == 0, "merge: %s", xd_last_error());
        logits_of(m, NULL, ids, T, l2);
        double e = rel_diff(l1, l2, (size_t)T * V);
        printf("%-11s student: adapters beside the layers vs merged: %.2e of the largest logit\n",
               name, e);
        CHECK(e <= 1e-5, "%s student: adapters vs merged differ by %g", name, e);
        free(l1), free(l2);
    }
    free(ws);
    xd_tm_free(&tm);
    xd_lora_unbind(&ls);
    xd_lora_free(a);
    xd_model_free(m);
}

/* ---- training through xd_train */
static char dir[] = "/tmp/xd_lora_XXXXXX";

static void test_train(void) {
    char tok[512], out[512];
    snprintf(tok, sizeof tok, "%s/data.tok", dir);
    CHECK(test_cat_data(dir) == 0, "prep: %s", xd_last_error());
    xd_model *m = load_fixture("tiny-llama");
    xd_tokdata *d = xd_tokdata_open(tok);
    CHECK(d != NULL, "data: %s", xd_last_error());
    if (!m || !d) { xd_model_free(m); xd_tokdata_close(d); return; }
    float *w0 = malloc(m->arena_floats * sizeof(float));
    memcpy(w0, m->arena, m->arena_floats * sizeof(float));
    xd_lora_adapter *a = xd_lora_for_model(m, "tiny-llama", XD_LORA_LINEAR_TARGETS, 4, 8.0, 0);
    xd_lora_init_random(a, 1);
    xd_train_opts o;
    xd_train_defaults(&o);
    o.steps = 30;
    o.batch = 2;
    o.seq = 16;
    o.lr = 1e-2f;
    o.warmup = 2;
    o.eval_windows = 4;
    o.out_dir = out;
    o.lora = a;
    o.kind = "lora";
    snprintf(out, sizeof out, "%s/run", dir);
    xd_train_result res;
    CHECK(xd_train(m, d, &o, &res) == 0, "train: %s", xd_last_error());
    CHECK(memcmp(w0, m->arena, m->arena_floats * sizeof(float)) == 0,
          "the base weights changed under LoRA training");
    /* the first step's loss from the log against the last */
    char p[600];
    snprintf(p, sizeof p, "%s/log.jsonl", out);
    FILE *f = fopen(p, "r");
    char line[4096];
    double first = NAN;
    if (f && fgets(line, sizeof line, f)) {
        const char *l = strstr(line, "\"loss\":");
        if (l) first = atof(l + 7);
    }
    if (f) fclose(f);
    printf("LoRA training on tiny-llama: loss %.3f -> %.3f in 30 steps, base bit-identical\n",
           first, res.last_loss);
    CHECK(res.last_loss < 0.8 * first, "LoRA training did not lower the loss: %g -> %g", first,
          res.last_loss);
    snprintf(p, sizeof p, "%s/adapter", out);
    xd_lora_adapter *b = xd_lora_load(p);
    CHECK(b != NULL, "%s: %s", p, xd_last_error());
    if (b) {
        int same = b->n_modules == a->n_modules, nonzero = 0;
        for (int i = 0; same && i < b->n_modules; i++) {
            size_t nb = (size_t)(b->modules[i].out * b->modules[i].rank);
            same = !memcmp(a->modules[i].B, b->modules[i].B, nb * sizeof(float));
            for (size_t j = 0; j < nb; j++) nonzero += b->modules[i].B[j] != 0;
        }
        CHECK(same && nonzero > 0, "OUT/adapter: the trained B matrices (same %d, nonzero %d)",
              same, nonzero);
    }
    xd_lora_free(b);
    xd_lora_free(a);
    free(w0);
    xd_model_free(m);
    xd_tokdata_close(d);
}

/* ---- the command line: EVA (the pass's JSON line, the state, its reuse for another r),
 * PiSSA, the merge of a trained adapter, bad input */
static void test_cli(void) {
    char a[2048], out[8192];
    const char *M = XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf";
    snprintf(a, sizeof a, "lora %s --data %s/data.tok -o %s/E --steps 5 --batch 2 --seq 16 "
             "--r 4 --init eva --eva-batch 2 --eva-seq 16", M, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDOUT) == 0 && strstr(out, "\"eva\":{") &&
              strstr(out, "\"rank_sum\":56,\"rank_budget\":56"), "lora --init eva: %s", out);
    char *e = strstr(out, "\"eva\":");
    printf("lora --init eva: %.*s\n", e ? (int)strcspn(e, "\n") : 0, e ? e : "");
    snprintf(a, sizeof a, "%s/E/adapter", dir);
    xd_lora_adapter *ad = xd_lora_load(a);
    CHECK(ad && !strcmp(ad->init_lora_weights, "eva") && ad->has_eva, "EVA adapter: %s",
          ad ? "config" : xd_last_error());
    xd_lora_free(ad);
    /* the saved state for r = 2, no forward pass: the budget is 2 x 14 */
    snprintf(a, sizeof a, "lora %s --data %s/data.tok -o %s/E2 --steps 2 --batch 2 --seq 16 "
             "--r 2 --init eva --eva-state %s/E/eva_state.safetensors", M, dir, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDOUT) == 0 && strstr(out, "\"passes\":0") &&
              strstr(out, "\"rank_sum\":28"), "lora --eva-state: %s", out);
    snprintf(a, sizeof a, "lora %s --data %s/data.tok -o %s/E3 --steps 2 --r 8 --init eva "
             "--eva-state %s/E/eva_state.safetensors", M, dir, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 1 && strstr(out, "collect again"),
          "a state too small: %s", out);
    /* EVA over data shorter than one batch */
    snprintf(a, sizeof a, "lora %s --data %s/data.tok -o %s/E4 --steps 2 --init eva "
             "--eva-batch 64 --eva-seq 4096", M, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 1 && strstr(out, "data.tok") &&
              strstr(out, "one EVA batch"), "short data: %s", out);
    /* PiSSA through the CLI, then merged: the merged model exists */
    snprintf(a, sizeof a, "lora %s --data %s/data.tok -o %s/P --steps 3 --batch 2 --seq 16 "
             "--r 2 --targets q,down --init pissa", M, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDOUT) == 0, "lora --init pissa: %s", out);
    snprintf(a, sizeof a, "lora merge %s %s/P/adapter -o %s/PM", M, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDOUT) == 0 && strstr(out, "\"modules\":4"),
          "lora merge: %s", out);
    /* the adapter records its base: another model of the same shapes is refused */
    snprintf(a, sizeof a, "lora merge %s/tests/fixtures/tiny-llama3rope %s/P/adapter -o %s/PX",
             XD_SOURCE_DIR, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 1 &&
              strstr(out, "another base model") && strstr(out, "P/adapter"),
          "an adapter of another base: %s", out);
    printf("another base: %.*s\n", (int)strcspn(out, "\n"), out);
    /* eval --adapter scores what the merged model scores (a perplexity task: a number
     * that moves with every weight) */
    snprintf(a, sizeof a, "%s/suite", dir);
    xd_mkdir_p(a);
    snprintf(a, sizeof a, "%s/suite/suite.json", dir);
    FILE *f = fopen(a, "w");
    fprintf(f, "{\"name\":\"s\",\"tasks\":[{\"name\":\"t\",\"file\":\"t.jsonl\",\"type\":\"perplexity\"}]}\n");
    fclose(f);
    snprintf(a, sizeof a, "%s/suite/t.jsonl", dir);
    f = fopen(a, "w");
    fprintf(f, "{\"text\":\"the cat sat on the mat and then the dog ran to the hat.\"}\n");
    fclose(f);
    double sc[3] = {0, 0, 0};
    const char *evals[3] = {"%s --adapter %s/P/adapter", "%s/PM%s", "%s%s"};
    for (int k = 0; k < 3; k++) {
        char model[1024], res[600];
        snprintf(model, sizeof model, evals[k], k == 1 ? dir : M, k == 0 ? dir : "");
        snprintf(res, sizeof res, "%s/r%d.json", dir, k);
        snprintf(a, sizeof a, "eval %s --suite %s/suite -o %s", model, dir, res);
        CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 0, "eval %d: %s", k, out);
        json_error_t je;
        json_t *j = json_load_file(res, 0, &je);
        sc[k] = json_number_value(json_object_get(json_array_get(json_object_get(j, "tasks"), 0), "score"));
        json_decref(j);
    }
    printf("eval: base %.6f, --adapter %.6f, merged model %.6f (1/perplexity)\n", sc[2], sc[0], sc[1]);
    CHECK(sc[0] > 0 && fabs(sc[0] - sc[1]) <= 1e-5 * sc[1] && fabs(sc[0] - sc[2]) > 1e-4 * sc[2],
          "eval --adapter %g vs merged %g (base %g)", sc[0], sc[1], sc[2]);
    snprintf(a, sizeof a, "eval %s --adapter %s/nope --suite %s/suite -o %s/r.json", M, dir, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 1 && strstr(out, "nope"),
          "eval with a missing adapter: %s", out);
}

/* ---- bad input */
static void test_errors(void) {
    xd_model *m = load_fixture("tiny-llama");
    if (!m) return;
    CHECK(xd_lora_for_model(m, "x", 1, 0, 8, 0) == NULL && strstr(xd_last_error(), "--r 0"),
          "rank 0: %s", xd_last_error());
    CHECK(xd_lora_target_parse("qkv_proj") < 0 && strstr(xd_last_error(), "qkv_proj") &&
              strstr(xd_last_error(), "gate_proj"), "unknown target: %s", xd_last_error());
    CHECK(xd_lora_target_parse("gate") == XD_LORA_GATE && xd_lora_target_parse("o_proj") == XD_LORA_O,
          "short and PEFT names");
    CHECK(xd_lora_target_parse("igate") == XD_LORA_IGATE && xd_lora_target_parse("fgate") ==
              XD_LORA_FGATE && xd_lora_target_parse("") < 0, "gate targets, empty name");
    CHECK(xd_lora_for_model(m, "x", 1u << XD_LORA_FGATE, 2, 4, 0) == NULL &&
              strstr(xd_last_error(), "fgate") && strstr(xd_last_error(), "not a student"),
          "a mixer gate on a teacher: %s", xd_last_error());
    printf("a mixer gate on a teacher: %s\n", xd_last_error());
    /* an adapter made for tiny-qwen3 (head_dim 16: q_proj 48 -> 64) on tiny-llama (48 -> 48) */
    xd_model *q = load_fixture("tiny-qwen3");
    if (q) {
        xd_lora_adapter *a = xd_lora_for_model(q, "tiny-qwen3", 1u << XD_LORA_Q, 2, 4, 0);
        xd_lora_set ls;
        CHECK(a && xd_lora_bind(&ls, m, a, 0) < 0 && strstr(xd_last_error(), "q_proj"),
              "another base's adapter: %s", xd_last_error());
        printf("another base's adapter: %s\n", xd_last_error());
        xd_lora_free(a);
        xd_model_free(q);
    }
    /* a module the model does not have (layer 7 of 2) */
    xd_lora_adapter *a = xd_lora_new("x", 2, 4, 0);
    xd_lora_add_module(a, "model.layers.7.self_attn.q_proj", 2, 48, 48, 4);
    xd_lora_set ls;
    CHECK(xd_lora_bind(&ls, m, a, 0) < 0 && strstr(xd_last_error(), "model.layers.7"),
          "missing layer: %s", xd_last_error());
    xd_lora_free(a);
    xd_model_free(m);
}

int main(void) {
    test_op_fd();
    test_peft_logits();
    test_pissa();
    check_fd("tiny-llama", 0);
    check_fd("tiny-qwen2", 0);
    check_fd("tiny-olmo2", 0);
    check_fd("tiny-qwen3", 1);
    check_fd("tiny-olmo2", 1);
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_train();
    test_cli();
    test_errors();
    if (t_fail == 0) xd_rmtree(dir);
    return test_summary("test_lora");
}
