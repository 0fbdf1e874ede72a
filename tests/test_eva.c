/* The math of EVA (src/train/eva.h) against tests/fixtures/eva_ref.{safetensors,json}
 * (tests/ref/make_eva_fixture.py: numpy float64 references and HF PEFT's own
 * IncrementalPCA and _get_rank_distribution).
 *
 * Tolerances, and why:
 * - Incremental PCA vs the fixture's numpy port of the same algorithm (exact SVD, float64)
 *   and, for l0 (k = d: nothing truncated), vs the full-data PCA of all rows seen: 1e-9
 *   absolute on unit components and relative on mean (to the data scale), variance,
 *   singular values, explained variance and ratio. Both sides compute the same
 *   quantities in double from the same float32 rows; they differ by rounding, which for a
 *   component is ~eps·λ_max/gap (our Gram route; numpy's SVD ~eps·σ_max/gap_σ): about
 *   1e-13 for the separated components compared (relative gap > 5%, the fixture's `sep`);
 *   1e-9 leaves four orders of margin without hiding a wrong formula (a wrong mean
 *   correction or variance update is off by >1e-3 here). Near-tied components are not
 *   compared one by one (any rotation within their span is equally right).
 * - PEFT's components (torch.svd_lowrank, seed 42; first step float32): |cos| >= 0.999
 *   where separated, the bound the brief set for a randomized method (on this fixture
 *   PEFT's q = 2k oversampling and 4 power iterations give ≥ 0.9999997).
 * - Rank distribution and alpha: exact (integers; alpha is one multiplication and one
 *   division in double, as Python does it).
 * - Save/load: bit-identical. Threads: bit-identical with 1 and 2 threads. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "test.h"
#include "train/eva.h"
#include "xdistill.h"

static st_set *fx;

/* A float64 tensor stored as F32 pairs; n doubles (malloc'd). */
static double *f64(const char *name, int64_t n) {
    const st_tensor *t = xd_st_find(fx, name);
    if (!t || t->nbytes != (uint64_t)n * 8) {
        fprintf(stderr, "fixture tensor %s missing or of the wrong size\n", name);
        exit(2);
    }
    double *x = malloc((size_t)n * 8);
    memcpy(x, t->data, (size_t)n * 8);
    return x;
}

static float *f32(const char *name, int64_t *rows, int d) {
    const st_tensor *t = xd_st_find(fx, name);
    if (!t || t->dtype != ST_F32 || t->n_dims != 2 || t->shape[1] != d) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        exit(2);
    }
    *rows = t->shape[0];
    float *x = malloc((size_t)t->nbytes);
    memcpy(x, t->data, (size_t)t->nbytes);
    return x;
}

static double max_rel(const double *a, const double *b, int n, double scale) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double s = scale > 0 ? scale : fmax(fabs(b[i]), 1e-300);
        m = fmax(m, fabs(a[i] - b[i]) / s);
    }
    return m;
}

typedef struct {
    const char *name;
    int d, k, steps;
} layer_spec;
static const layer_spec LAYERS[3] = {{"l0", 16, 16, 4}, {"l1", 24, 6, 5}, {"l2", 32, 8, 4}};

/* Runs one layer's stream; with check, compares every step with the fixture. */
static xd_ipca *run_layer(const layer_spec *ls, int check) {
    xd_ipca *p = xd_ipca_new(ls->d, ls->k);
    CHECK(p != NULL, "xd_ipca_new(%d, %d): %s", ls->d, ls->k, xd_last_error());
    if (!p) exit(1);
    const int d = ls->d, k = ls->k;
    char nm[128];
    double worst_ipca = 0, worst_full = 0, min_cos_peft = 1;
    int compared = 0, skipped = 0;
    for (int t = 0; t < ls->steps; t++) {
        int64_t n;
        snprintf(nm, sizeof nm, "%s.x%d", ls->name, t);
        float *X = f32(nm, &n, d);
        int rc = xd_ipca_update(p, X, n, d);
        CHECK(rc == 0, "%s step %d: %s", ls->name, t, xd_last_error());
        free(X);
        if (!check) continue;
        CHECK(p->steps == t + 1, "steps %d", p->steps);
        /* sign convention and orthonormality of our own rows */
        for (int i = 0; i < k; i++) {
            const double *v = p->components + (size_t)i * d;
            int j = 0;
            for (int c = 1; c < d; c++)
                if (fabs(v[c]) > fabs(v[j])) j = c;
            CHECK(v[j] > 0, "%s step %d comp %d: largest |entry| %g is not positive", ls->name, t,
                  i, v[j]);
            for (int i2 = 0; i2 <= i; i2++) {
                double dot = 0;
                for (int c = 0; c < d; c++) dot += v[c] * p->components[(size_t)i2 * d + c];
                CHECK(fabs(dot - (i == i2)) < 1e-12, "%s step %d: <c%d, c%d> = %.17g", ls->name,
                      t, i, i2, dot);
            }
        }
        const char *refs[2] = {"ipca", "full"};
        for (int r = 0; r < (k == d ? 2 : 1); r++) {
#define REF(field, cnt) (snprintf(nm, sizeof nm, "%s.%s.%s%d", ls->name, refs[r], field, t), f64(nm, cnt))
            double *mean = REF("mean", d), *comp = REF("comp", (int64_t)k * d), *sv = REF("sv", k),
                   *ev = REF("ev", k), *ratio = REF("ratio", k);
            snprintf(nm, sizeof nm, "%s.sep%d", ls->name, t);
            const st_tensor *st = xd_st_find(fx, nm);
            const float *sep = st->data;
            double scale = 0;
            for (int j = 0; j < d; j++) scale = fmax(scale, fabs(mean[j]));
            double em = max_rel(p->mean, mean, d, scale);
            double es = max_rel(p->singular, sv, k, 0), ee = max_rel(p->explained_variance, ev, k, 0),
                   er = max_rel(p->explained_variance_ratio, ratio, k, 0);
            double ec = 0;
            for (int i = 0; i < k; i++) {
                if (!sep[i]) {
                    skipped += r == 0;
                    continue;
                }
                compared += r == 0;
                ec = fmax(ec, max_rel(p->components + (size_t)i * d, comp + (size_t)i * d, d, 1.0));
            }
            CHECK(em <= 1e-9 && es <= 1e-9 && ee <= 1e-9 && er <= 1e-9 && ec <= 1e-9,
                  "%s step %d vs %s: mean %.3g sv %.3g ev %.3g ratio %.3g comp %.3g (tol 1e-9)",
                  ls->name, t, refs[r], em, es, ee, er, ec);
            double e = fmax(fmax(em, es), fmax(fmax(ee, er), ec));
            if (r == 0) worst_ipca = fmax(worst_ipca, e);
            else worst_full = fmax(worst_full, e);
            if (r == 0) {
                double *var = REF("var", d);
                CHECK(max_rel(p->var, var, d, 0) <= 1e-9, "%s step %d var %.3g", ls->name, t,
                      max_rel(p->var, var, d, 0));
                free(var);
            }
            free(mean), free(comp), free(sv), free(ev), free(ratio);
        }
        /* PEFT's randomized components */
        snprintf(nm, sizeof nm, "%s.peft.comp%d", ls->name, t);
        double *pc = f64(nm, (int64_t)k * d);
        snprintf(nm, sizeof nm, "%s.sep%d", ls->name, t);
        const float *sep = xd_st_find(fx, nm)->data;
        double cs[64];
        xd_eva_cosines(p->components, pc, k, d, cs);
        for (int i = 0; i < k; i++)
            if (sep[i]) {
                CHECK(fabs(cs[i]) >= 0.999, "%s step %d comp %d: |cos| with PEFT %.9f < 0.999",
                      ls->name, t, i, fabs(cs[i]));
                min_cos_peft = fmin(min_cos_peft, fabs(cs[i]));
            }
        free(pc);
    }
    if (check)
        printf("%s (d=%d k=%d, %d steps): max err vs numpy IPCA %.2e; %d components compared, "
               "%d near-tied skipped; min |cos| vs PEFT %.9f\n",
               ls->name, d, k, ls->steps, worst_ipca, compared, skipped, min_cos_peft);
    if (check && k == d) printf("%s: max err vs full-data PCA %.2e\n", ls->name, worst_full);
    return p;
}

static int same_state(const xd_ipca *a, const xd_ipca *b) {
    if (a->d != b->d || a->k != b->k || a->n_seen != b->n_seen || a->steps != b->steps) return 0;
    size_t d = (size_t)a->d, k = (size_t)a->k;
    return !memcmp(a->mean, b->mean, d * 8) && !memcmp(a->var, b->var, d * 8) &&
           !memcmp(a->components, b->components, k * d * 8) && !memcmp(a->prev, b->prev, k * d * 8) &&
           !memcmp(a->singular, b->singular, k * 8) &&
           !memcmp(a->explained_variance, b->explained_variance, k * 8) &&
           !memcmp(a->explained_variance_ratio, b->explained_variance_ratio, k * 8) &&
           !memcmp(a->cos, b->cos, k * 8);
}

/* ---- convergence ---------------------------------------------------------------------- */

static void test_convergence(void) {
    /* rows e0, e2 of R^4 against e0 rotated by theta in the (0,1) plane and e2 by -phi in
     * the (2,3) plane: the cosines are cos(theta) and cos(phi) */
    const double th = 0.1, ph = 0.3;
    double a[2 * 4] = {1, 0, 0, 0, 0, 0, 1, 0};
    double b[2 * 4] = {cos(th), sin(th), 0, 0, 0, 0, cos(ph), -sin(ph)};
    double c[2];
    xd_eva_cosines(b, a, 2, 4, c);
    CHECK(fabs(c[0] - cos(th)) < 1e-15 && fabs(c[1] - cos(ph)) < 1e-15, "cos %.17g %.17g", c[0],
          c[1]);
    double bneg[4] = {-1, 0, 0, 0};
    xd_eva_cosines(bneg, a, 1, 4, c);
    CHECK(c[0] == -1.0, "a sign flip gives cos -1 (signed, as PEFT): %g", c[0]);

    xd_ipca *p = xd_ipca_new(4, 2);
    memcpy(p->components, b, sizeof b);
    memcpy(p->prev, a, sizeof a);
    xd_eva_cosines(p->components, p->prev, 2, 4, p->cos);
    p->steps = 1;
    CHECK(xd_eva_check(p, 2, 0.5, 0) == XD_EVA_RUNNING, "the first step never converges");
    CHECK(xd_eva_check(p, 0, 0.99, 0) == XD_EVA_CONVERGED, "rank 0 counts as converged");
    p->steps = 2;
    /* cos(0.1) = 0.995, cos(0.3) = 0.955 */
    CHECK(xd_eva_check(p, 2, 0.99, 0) == XD_EVA_RUNNING, "0.955 < 0.99");
    CHECK(xd_eva_check(p, 1, 0.99, 0) == XD_EVA_CONVERGED, "only the assigned component counts");
    CHECK(xd_eva_check(p, 2, 0.95, 0) == XD_EVA_CONVERGED, "both >= 0.95");
    CHECK(xd_eva_check(p, 2, cos(ph), 0) == XD_EVA_CONVERGED, ">= tau, tau itself included");
    CHECK(xd_eva_check(p, 2, 0.99, 3) == XD_EVA_RUNNING, "below the cap");
    p->steps = 3;
    CHECK(xd_eva_check(p, 2, 0.99, 3) == XD_EVA_CAPPED, "at the cap");
    CHECK(xd_eva_check(p, 2, 0.95, 3) == XD_EVA_CONVERGED, "converged wins over the cap");
    CHECK(xd_eva_check(p, 2, 1.5, 0) == -1 && strstr(xd_last_error(), "expected 0 <= tau <= 1"),
          "tau 1.5: %s", xd_last_error());
    CHECK(xd_eva_check(p, 3, 0.9, 0) == -1 && strstr(xd_last_error(), "expected 0 .. k = 2"),
          "3 assigned of k=2: %s", xd_last_error());
    xd_ipca_free(p);

    /* end to end: the same batch again leaves the components where they are */
    int64_t n;
    float *X = f32("l1.x1", &n, 24);
    p = xd_ipca_new(24, 6);
    xd_ipca_update(p, X, n, 24);
    CHECK(xd_eva_check(p, 6, 0.0, 0) == XD_EVA_RUNNING, "one step: running");
    xd_ipca_update(p, X, n, 24);
    double mn = 1;
    for (int i = 0; i < 6; i++) mn = fmin(mn, p->cos[i]);
    CHECK(mn > 1 - 1e-12, "same batch twice: min cos %.17g", mn);
    CHECK(xd_eva_check(p, 6, 0.999999, 0) == XD_EVA_CONVERGED, "same batch twice converges");
    CHECK(xd_eva_check(p, 6, 1.0, 5) == XD_EVA_RUNNING || mn == 1.0, "tau 1 needs cos exactly 1");
    free(X);
    xd_ipca_free(p);

    /* the sign rule on ties: the first largest-|.| entry decides */
    double r1[4] = {-0.5, 0.5, 0.5, -0.5}, r2[3] = {0.2, -0.7, 0.7}, r3[2] = {0, 0};
    xd_eva_flip_sign(r1, 4);
    xd_eva_flip_sign(r2, 3);
    xd_eva_flip_sign(r3, 2);
    CHECK(r1[0] == 0.5 && r1[1] == -0.5, "tie: first entry made positive");
    CHECK(r2[0] == -0.2 && r2[1] == 0.7 && r2[2] == -0.7, "tie at 1,2: entry 1 made positive");
    CHECK(r3[0] == 0 && r3[1] == 0, "zero row unchanged");
}

/* ---- rank distribution ----------------------------------------------------------------- */

static void test_ranks(json_t *doc) {
    json_t *cases = json_object_get(doc, "rank_cases");
    size_t ci;
    json_t *c;
    int ncase = 0;
    json_array_foreach(cases, ci, c) {
        json_t *layers = json_object_get(c, "layers");
        int n = (int)json_array_size(layers);
        xd_eva_layer L[16];
        double rat[16][64];
        int rank[16];
        double alpha[16];
        for (int i = 0; i < n; i++) {
            L[i].r = (int)json_integer_value(json_array_get(json_object_get(c, "r"), i));
            L[i].alpha = json_number_value(json_array_get(json_object_get(c, "alpha"), i));
            L[i].owner = (int)json_integer_value(json_array_get(json_object_get(c, "owner"), i));
            json_t *rv = json_array_get(json_object_get(c, "ratios"), i);
            L[i].n_ratio = (int)json_array_size(rv);
            for (int j = 0; j < L[i].n_ratio; j++) rat[i][j] = json_real_value(json_array_get(rv, j));
            L[i].ratio = json_is_array(rv) ? rat[i] : NULL;
        }
        double rho = json_number_value(json_object_get(c, "rho"));
        int rc = xd_eva_rank_distribution(L, n, rho, rank, alpha);
        const char *name = json_string_value(json_object_get(c, "name"));
        CHECK(rc == 0, "%s: %s", name, xd_last_error());
        int same = 1, total = 0, budget = 0;
        for (int i = 0; i < n; i++) {
            int er = (int)json_integer_value(json_array_get(json_object_get(c, "ranks"), i));
            double ea = json_number_value(json_array_get(json_object_get(c, "alphas"), i));
            same &= rank[i] == er && alpha[i] == ea;
            total += rank[i];
            budget += L[i].r;
            if (rank[i] != er || alpha[i] != ea)
                fprintf(stderr, "  %s layer %d: rank %d (PEFT %d), alpha %.17g (PEFT %.17g)\n", name, i,
                        rank[i], er, alpha[i], ea);
        }
        CHECK(same, "%s: ranks/alphas differ from PEFT's", name);
        CHECK(total <= budget, "%s: %d > budget %d", name, total, budget);
        ncase++;
    }
    printf("rank distribution: %d PEFT cases, all compared exactly\n", ncase);

    /* alpha rescaling by hand: r=4, alpha=8; ratios so that layer 0 takes 6, layer 1 two,
     * layer 2 none */
    double a0[8] = {.5, .4, .3, .2, .15, .12, .01, .01}, a1[8] = {.25, .11, .01, 0, 0, 0, 0, 0},
           a2[8] = {.001, 0, 0, 0, 0, 0, 0, 0};
    xd_eva_layer L[3] = {{a0, 8, 4, 8.0, 0}, {a1, 8, 4, 8.0, 1}, {a2, 8, 4, 10.0, 2}};
    int rank[3];
    double al[3];
    CHECK(xd_eva_rank_distribution(L, 3, 2.0, rank, al) == 0, "%s", xd_last_error());
    CHECK(rank[0] == 8 && rank[1] == 3 && rank[2] == 1, "ranks %d %d %d", rank[0], rank[1], rank[2]);
    CHECK(al[0] == 16.0 && al[1] == 6.0 && al[2] == 2.5, "alphas %g %g %g", al[0], al[1], al[2]);
    CHECK(xd_eva_rank_distribution(L, 3, 1.5, rank, al) == 0, "%s", xd_last_error());
    /* the budget of 12 ends inside the zeros of layers 1 and 2: torch's argsort (not
     * stable) puts layer 2's last two zeros first, so PEFT gives 6 3 3 (a stable sort
     * would give 6 5 1) */
    CHECK(rank[0] == 6 && rank[1] == 3 && rank[2] == 3 && al[0] == 12.0 && al[2] == 7.5,
          "rho 1.5: ranks %d %d %d alpha %g %g", rank[0], rank[1], rank[2], al[0], al[2]);
    /* rho 1.125 * 4 = 4.5 rounds to 4 (half to even): no layer can exceed r */
    CHECK(xd_eva_rank_distribution(L, 3, 1.125, rank, al) == 0 && rank[0] == 4 && rank[1] == 4 &&
              rank[2] == 4 && al[2] == 10.0,
          "rho 1.125: %d %d %d", rank[0], rank[1], rank[2]);

    /* errors */
    xd_eva_layer B[3];
    memcpy(B, L, sizeof B);
    B[1].r = 0;
    CHECK(xd_eva_rank_distribution(B, 3, 2.0, rank, al) == -1 &&
              strstr(xd_last_error(), "r = 0; expected r >= 1"),
          "r 0: %s", xd_last_error());
    CHECK(xd_eva_rank_distribution(L, 3, 0.9, rank, al) == -1 &&
              strstr(xd_last_error(), "expected a finite rho >= 1"),
          "rho 0.9: %s", xd_last_error());
    CHECK(xd_eva_rank_distribution(L, 3, NAN, rank, al) == -1, "rho NaN");
    CHECK(xd_eva_rank_distribution(L, 3, 2.5, rank, al) == -1 &&
              strstr(xd_last_error(), "expected at least rint(rho * r) = 10"),
          "rho 2.5 needs 10 ratios: %s", xd_last_error());
    memcpy(B, L, sizeof B);
    B[2].owner = 1;
    B[1].owner = 0;
    CHECK(xd_eva_rank_distribution(B, 3, 2.0, rank, al) == -1 && strstr(xd_last_error(), "owner"),
          "chained owner: %s", xd_last_error());
    memcpy(B, L, sizeof B);
    B[0].owner = 2;
    CHECK(xd_eva_rank_distribution(B, 3, 2.0, rank, al) == -1, "owner after the layer");
    double an[8] = {.5, NAN, 0, 0, 0, 0, 0, 0};
    memcpy(B, L, sizeof B);
    B[1].ratio = an;
    CHECK(xd_eva_rank_distribution(B, 3, 2.0, rank, al) == -1 &&
              strstr(xd_last_error(), "expected finite"),
          "NaN ratio: %s", xd_last_error());
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_errors(void) {
    CHECK(!xd_ipca_new(0, 1) && strstr(xd_last_error(), "expected d >= 1"), "d 0: %s",
          xd_last_error());
    CHECK(!xd_ipca_new(4, 0) && strstr(xd_last_error(), "expected k >= 1"), "k 0: %s",
          xd_last_error());
    CHECK(!xd_ipca_new(4, 5) && strstr(xd_last_error(), "expected 1 <= k <= d"), "k > d: %s",
          xd_last_error());
    xd_ipca *p = xd_ipca_new(4, 3);
    float X[5 * 4];
    for (int i = 0; i < 20; i++) X[i] = (float)((i * 7) % 11) - 5.0f;
    CHECK(xd_ipca_update(p, X, 5, 3) == -1 && strstr(xd_last_error(), "expected d = 4"),
          "width: %s", xd_last_error());
    CHECK(xd_ipca_update(p, X, 2, 4) == -1 && strstr(xd_last_error(), "expected at least k = 3"),
          "first batch too small: %s", xd_last_error());
    CHECK(xd_ipca_update(p, X, 0, 4) == -1 && strstr(xd_last_error(), "expected at least 1"),
          "empty batch: %s", xd_last_error());
    X[9] = NAN;
    CHECK(xd_ipca_update(p, X, 5, 4) == -1 && strstr(xd_last_error(), "row 2, column 1") &&
              strstr(xd_last_error(), "expected finite"),
          "NaN: %s", xd_last_error());
    X[9] = INFINITY;
    CHECK(xd_ipca_update(p, X, 5, 4) == -1, "Inf refused");
    CHECK(p->steps == 0 && p->n_seen == 0, "a refused batch leaves the state unchanged");
    X[9] = 1.0f;
    CHECK(xd_ipca_update(p, X, 5, 4) == 0, "%s", xd_last_error());
    /* later steps accept fewer than k rows (the stack has k + n + 1 rows) */
    CHECK(xd_ipca_update(p, X, 1, 4) == 0 && p->steps == 2, "one row later: %s", xd_last_error());
    xd_ipca_free(p);
    /* a rank-deficient first batch (n = k = 3 rows: centred rank 2, m < d): still orthonormal */
    p = xd_ipca_new(5, 3);
    float Y[3 * 5] = {1, 2, 3, 4, 5, 2, 1, 0, 1, 2, 0, 0, 1, 1, 0};
    CHECK(xd_ipca_update(p, Y, 3, 5) == 0, "%s", xd_last_error());
    double worst = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double dot = 0;
            for (int c = 0; c < 5; c++) dot += p->components[i * 5 + c] * p->components[j * 5 + c];
            worst = fmax(worst, fabs(dot - (i == j)));
        }
    CHECK(worst < 1e-12 && p->singular[2] < 1e-6, "rank-deficient: orthonormality %.3g, s3 %g",
          worst, p->singular[2]);
    xd_ipca_free(p);
}

int main(void) {
    xd_set_threads(2);
    fx = xd_st_open(FIXTURE("eva_ref.safetensors"));
    json_error_t je;
    json_t *doc = json_load_file(FIXTURE("eva_ref.json"), 0, &je);
    if (!fx || !doc) {
        fprintf(stderr, "fixtures: %s %s\n", fx ? "" : xd_last_error(), doc ? "" : je.text);
        return 2;
    }
    xd_ipca *st[3];
    for (int i = 0; i < 3; i++) st[i] = run_layer(&LAYERS[i], 1);

    /* determinism: 1 and 2 threads */
    omp_set_num_threads(1);
    for (int i = 0; i < 3; i++) {
        xd_ipca *q = run_layer(&LAYERS[i], 0);
        CHECK(same_state(st[i], q), "%s: 1 thread differs from 2 threads", LAYERS[i].name);
        xd_ipca_free(q);
    }
    omp_set_num_threads(2);
    printf("determinism: 1 and 2 threads give bit-identical states\n");

    test_convergence();
    test_ranks(doc);
    test_errors();

    /* save / load */
    char dir[] = "/tmp/xd_test_eva_XXXXXX", path[128];
    if (!mkdtemp(dir)) return 2;
    snprintf(path, sizeof path, "%s/eva_state.safetensors", dir);
    const char *names[3] = {"model.layers.1.mlp.down_proj", "model.layers.0.self_attn.q_proj",
                            "model.layers.0.mlp.gate_proj"};
    CHECK(xd_eva_save(path, st, names, 3) == 0, "save: %s", xd_last_error());
    xd_ipca **ld = NULL;
    char **ln = NULL;
    int nl = 0;
    CHECK(xd_eva_load(path, &ld, &ln, &nl) == 0, "load: %s", xd_last_error());
    CHECK(nl == 3, "%d layers", nl);
    for (int i = 0; i < nl && i < 3; i++) {
        CHECK(!strcmp(ln[i], names[i]), "order: %s vs %s", ln[i], names[i]);
        CHECK(same_state(ld[i], st[i]), "%s: not bit-identical after load", names[i]);
    }
    /* a new r and rho from the loaded state, without new forward passes */
    if (nl == 3) {
        xd_eva_layer A[3], B[3];
        for (int i = 0; i < 3; i++) {
            A[i] = (xd_eva_layer){st[i]->explained_variance_ratio, st[i]->k, 3, 6.0, i};
            B[i] = (xd_eva_layer){ld[i]->explained_variance_ratio, ld[i]->k, 3, 6.0, i};
        }
        int ra[3], rb[3];
        double aa[3], ab[3];
        CHECK(xd_eva_rank_distribution(A, 3, 2.0, ra, aa) == 0 &&
                  xd_eva_rank_distribution(B, 3, 2.0, rb, ab) == 0 && !memcmp(ra, rb, sizeof ra) &&
                  !memcmp(aa, ab, sizeof aa),
              "redistribution from the loaded state");
        /* the fixture's case "ipca r=3 rho=2.0" used the numpy IPCA's ratios */
        printf("ranks from the saved state (r=3, rho=2): %d %d %d\n", rb[0], rb[1], rb[2]);
    }
    xd_eva_free_list(ld, ln, nl);
    char p2[160];
    snprintf(p2, sizeof p2, "%s/dup.safetensors", dir);
    const char *dup[2] = {"a", "a"};
    CHECK(xd_eva_save(p2, st, dup, 2) == -1, "duplicate names refused");
    CHECK(xd_eva_load(FIXTURE("eva_ref.safetensors"), &ld, &ln, &nl) == -1 &&
              strstr(xd_last_error(), "not an EVA state file"),
          "not a state file: %s", xd_last_error());
    unlink(path);
    unlink(p2);
    rmdir(dir);

    for (int i = 0; i < 3; i++) xd_ipca_free(st[i]);
    xd_st_close(fx);
    json_decref(doc);
    return test_summary("test_eva");
}
