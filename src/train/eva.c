/* The math of EVA (eva.h): incremental PCA, convergence, rank redistribution,
 * state file.
 *
 * DECOMPOSITION. Each update needs the first k right singular vectors and singular
 * values of the stack M [m][d] (m = n rows on the first step, k + n + 1 later). We take
 * them from a symmetric eigen-decomposition (LAPACK dsyevr, MRRR, the top k pairs only) of the
 * smaller Gram matrix instead of an SVD of M (dgesdd):
 *   d <= m: G = MᵀM [d][d]; its eigenvectors are the right singular vectors, λ = S².
 *   m <  d: G = MMᵀ [m][m]; v = Mᵀu normalised, re-orthogonalised (modified Gram-Schmidt)
 *           against the components before it; a direction with no mass left (data of
 *           centred rank < k) is completed with the first standard basis vector that
 *           is independent of the earlier ones, so the rows stay orthonormal.
 * Why: only k ≪ min(m, d) vectors are needed; the Gram matrix costs min(m,d)² memory
 * and one dsyrk, while dgesdd on an m×d stack (m ~ tokens per batch, thousands) needs
 * workspace of order m·d plus U. The price is squaring the condition number: an
 * eigenvalue is accurate to ~eps·λ_max, so a kept component is accurate to
 * ~eps·λ_max / gap(λ). EVA keeps the LARGEST components, whose gaps are a fair fraction
 * of λ_max, so this costs nothing measurable (the test holds 1e-9 against numpy's SVD);
 * components with S² below ~1e-13·S_max² (never among those EVA assigns) would lose
 * digits.
 *
 * DETERMINISM. The dsyrk/dgemv/dsyevr calls run inside an active OpenMP region on one
 * thread (`single`), where the OpenMP build of OpenBLAS (the only one xdistill accepts,
 * src/core/threads.c) runs single-threaded; with one thread allowed the region is
 * inactive and OpenBLAS has one thread anyway. So the bits depend on the operands only,
 * not on the thread count (tests/test_eva.c runs 1 and 2 threads). The rest is serial
 * code with a fixed summation order. */
#include "train/eva.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"
#include "io/safetensors.h"

/* LAPACK (Fortran symbol from OpenBLAS; there is no lapacke.h). The trailing hidden
 * string lengths of the gfortran ABI are passed explicitly. */
extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n,
                    double *a, const int *lda, const double *vl, const double *vu, const int *il,
                    const int *iu, const double *abstol, int *m, double *w, double *z,
                    const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
                    const int *liwork, int *info, size_t jobz_len, size_t range_len,
                    size_t uplo_len);

/* ---- state ----------------------------------------------------------------------- */

xd_ipca *xd_ipca_new(int d, int k) {
    if (d <= 0) return xd_err("eva: input features d = %d; expected d >= 1", d), NULL;
    if (k <= 0) return xd_err("eva: components k = %d; expected k >= 1", k), NULL;
    if (k > d)
        return xd_err("eva: components k = %d > input features d = %d; expected 1 <= k <= d "
                      "(rint(rho * r) must not exceed the layer's in_features)", k, d),
               NULL;
    xd_ipca *p = calloc(1, sizeof *p);
    if (!p) return xd_err("eva: out of memory"), NULL;
    p->d = d;
    p->k = k;
    size_t kd = (size_t)k * d;
    p->mean = calloc((size_t)d, sizeof(double));
    p->var = calloc((size_t)d, sizeof(double));
    p->components = calloc(kd, sizeof(double));
    p->prev = calloc(kd, sizeof(double));
    p->singular = calloc((size_t)k, sizeof(double));
    p->explained_variance = calloc((size_t)k, sizeof(double));
    p->explained_variance_ratio = calloc((size_t)k, sizeof(double));
    p->cos = calloc((size_t)k, sizeof(double));
    if (!p->mean || !p->var || !p->components || !p->prev || !p->singular ||
        !p->explained_variance || !p->explained_variance_ratio || !p->cos) {
        xd_ipca_free(p);
        return xd_err("eva: out of memory (d = %d, k = %d)", d, k), NULL;
    }
    return p;
}

void xd_ipca_free(xd_ipca *p) {
    if (!p) return;
    free(p->mean);
    free(p->var);
    free(p->components);
    free(p->prev);
    free(p->singular);
    free(p->explained_variance);
    free(p->explained_variance_ratio);
    free(p->cos);
    free(p);
}

void xd_eva_flip_sign(double *row, int d) {
    int j = 0;
    double best = -1.0;
    for (int i = 0; i < d; i++)
        if (fabs(row[i]) > best) { /* strict: the first index wins ties (torch.argmax) */
            best = fabs(row[i]);
            j = i;
        }
    if (d > 0 && row[j] < 0)
        for (int i = 0; i < d; i++) row[i] = -row[i];
}

void xd_eva_cosines(const double *a, const double *b, int k, int d, double *cos) {
    for (int i = 0; i < k; i++) {
        const double *x = a + (size_t)i * d, *y = b + (size_t)i * d;
        double xy = 0, xx = 0, yy = 0;
        for (int j = 0; j < d; j++) {
            xy += x[j] * y[j];
            xx += x[j] * x[j];
            yy += y[j] * y[j];
        }
        cos[i] = xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0.0;
    }
}

/* ---- decomposition ------------------------------------------------------------------ */

int xd_top_right_singular(const double *M, int m, int d, int k, double *out, double *sv) {
    int nG = d <= m ? d : m, info = 0, lwork = -1, liwork = -1, iq = 0, found = 0;
    int il = nG - k + 1, iu = nG;
    double wq = 0, vl = 0, vu = 0, abstol = 0;
    if (k < 1 || k > nG) return xd_err("SVD: %d components of a %d x %d matrix", k, m, d);
    double *G = malloc((size_t)nG * nG * sizeof(double)), *w = malloc((size_t)nG * sizeof(double));
    double *Z = malloc((size_t)nG * k * sizeof(double));
    int *isuppz = malloc((size_t)2 * k * sizeof(int));
    if (!G || !w || !Z || !isuppz) {
        free(G), free(w), free(Z), free(isuppz);
        return xd_err("SVD: out of memory (Gram matrix %d x %d)", nG, nG);
    }
    /* row-major upper triangle = column-major lower triangle ('L' below) */
    if (d <= m)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, m, 1.0, M, d, 0.0, G, d);
    else
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, d, 1.0, M, d, 0.0, G, m);
    /* only the k largest eigenpairs (MRRR): the reduction to tridiagonal form is the
     * whole cost, where a full decomposition would also build every eigenvector */
    dsyevr_("V", "I", "L", &nG, G, &nG, &vl, &vu, &il, &iu, &abstol, &found, w, Z, &nG, isuppz,
            &wq, &lwork, &iq, &liwork, &info, 1, 1, 1);
    lwork = (int)wq;
    liwork = iq;
    double *work = malloc((size_t)(lwork > 1 ? lwork : 1) * sizeof(double));
    int *iwork = malloc((size_t)(liwork > 1 ? liwork : 1) * sizeof(int));
    if (!work || !iwork) {
        free(G), free(w), free(Z), free(isuppz), free(work), free(iwork);
        return xd_err("SVD: out of memory (dsyevr workspace)");
    }
    if (info == 0)
        dsyevr_("V", "I", "L", &nG, G, &nG, &vl, &vu, &il, &iu, &abstol, &found, w, Z, &nG,
                isuppz, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
    free(work);
    free(iwork);
    free(isuppz);
    free(G);
    if (info != 0 || found != k) {
        free(w), free(Z);
        return xd_err("SVD: LAPACK dsyevr failed (info = %d, %d of %d eigenpairs) on a %d x %d "
                      "Gram matrix", info, found, k, nG, nG);
    }
    G = Z; /* the eigenvectors, column j of k, ascending: the largest is the last */
    for (int i = 0; i < k; i++) {
        int j = k - 1 - i;
        sv[i] = w[j] > 0 ? sqrt(w[j]) : 0.0;
        double *v = out + (size_t)i * d;
        if (d <= m) {
            memcpy(v, G + (size_t)j * nG, (size_t)d * sizeof(double));
            continue;
        }
        cblas_dgemv(CblasRowMajor, CblasTrans, m, d, 1.0, M, d, G + (size_t)j * nG, 1, 0.0, v, 1);
        /* normalise, then modified Gram-Schmidt against the earlier rows (twice) */
        double nv = cblas_dnrm2(d, v, 1);
        int e = nv > 0 && isfinite(nv) ? -1 : 0; /* -1: the projected vector itself */
        if (e < 0) cblas_dscal(d, 1.0 / nv, v, 1);
        for (; e < d; e++) {
            if (e >= 0) { /* no direction left: the standard basis vector e */
                memset(v, 0, (size_t)d * sizeof(double));
                v[e] = 1.0;
            }
            for (int pass = 0; pass < 2; pass++)
                for (int q = 0; q < i; q++) {
                    const double *u = out + (size_t)q * d;
                    cblas_daxpy(d, -cblas_ddot(d, u, 1, v, 1), u, 1, v, 1);
                }
            double r = cblas_dnrm2(d, v, 1);
            if (r > 1e-6) { /* i < k <= d: some basis vector always passes */
                cblas_dscal(d, 1.0 / r, v, 1);
                break;
            }
        }
    }
    free(G);
    free(w);
    return 0;
}

int xd_ipca_update(xd_ipca *p, const float *X, int64_t n, int64_t width) {
    if (!p || (!X && n > 0)) return xd_err("eva: update: no state or no batch");
    const int d = p->d, k = p->k;
    if (width != d)
        return xd_err("eva: batch width %lld; expected d = %d features per row", (long long)width,
                      d);
    if (n < 1) return xd_err("eva: batch has %lld rows; expected at least 1", (long long)n);
    if (p->steps == 0 && n < k)
        return xd_err("eva: first batch has %lld rows; expected at least k = %d (the first step "
                      "decomposes the batch alone)",
                      (long long)n, k);
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(X[i]))
            return xd_err("eva: batch row %lld, column %lld is %g; expected finite values",
                          (long long)(i / d), (long long)(i % d), (double)X[i]);
    const int first = p->steps == 0;
    const int64_t m64 = first ? n : (int64_t)k + n + 1;
    if (m64 > 0x7fffffff || (double)m64 * d > 1e15)
        return xd_err("eva: batch of %lld rows is too large", (long long)n);
    const int m = (int)m64;
    double *M = malloc((size_t)m * d * sizeof(double));
    double *bsum = calloc((size_t)d, sizeof(double)), *bm = calloc((size_t)d, sizeof(double));
    double *mean = malloc((size_t)d * sizeof(double)), *var = malloc((size_t)d * sizeof(double));
    double *comp = malloc((size_t)k * d * sizeof(double)), *sv = malloc((size_t)k * sizeof(double));
    if (!M || !bsum || !bm || !mean || !var || !comp || !sv) {
        free(M), free(bsum), free(bm), free(mean), free(var), free(comp), free(sv);
        return xd_err("eva: out of memory (stack %d x %d)", m, d);
    }
    /* running mean and variance: PEFT's _incremental_mean_and_var (sklearn's Chan update) */
    const double nb = (double)n, ns = (double)p->n_seen, nt = ns + nb;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) bsum[j] += (double)X[i * d + j];
    for (int j = 0; j < d; j++) {
        double last_sum = first ? 0.0 : p->mean[j] * ns;
        double T = bsum[j] / nb, c = 0, sq = 0;
        for (int64_t i = 0; i < n; i++) {
            double t = (double)X[i * d + j] - T;
            c += t;
            sq += t * t;
        }
        double unnorm = sq - c * c / nb;
        mean[j] = (last_sum + bsum[j]) / nt;
        bm[j] = T;
        if (first)
            var[j] = unnorm / nt;
        else {
            double lo = ns / nb, dd = last_sum / lo - bsum[j];
            var[j] = (p->var[j] * ns + unnorm + lo / nt * dd * dd) / nt;
        }
    }
    /* the stack */
    double *row = M;
    if (!first) {
        for (int i = 0; i < k; i++, row += d)
            for (int j = 0; j < d; j++) row[j] = p->singular[i] * p->components[(size_t)i * d + j];
    }
    const double *centre = first ? mean : bm; /* first step: the running mean = batch mean */
    for (int64_t i = 0; i < n; i++, row += d)
        for (int j = 0; j < d; j++) row[j] = (double)X[i * d + j] - centre[j];
    if (!first) {
        double f = sqrt(ns / nt * nb);
        for (int j = 0; j < d; j++) row[j] = f * (p->mean[j] - bm[j]);
    }
    int rc = 0;
    const int nth = omp_get_max_threads() > 1 ? 2 : 1;
#pragma omp parallel num_threads(nth)
#pragma omp single
    rc = xd_top_right_singular(M, m, d, k, comp, sv);
    free(M);
    free(bsum);
    free(bm);
    if (rc) {
        free(mean), free(var), free(comp), free(sv);
        return -1;
    }
    for (int i = 0; i < k; i++) xd_eva_flip_sign(comp + (size_t)i * d, d);
    double total = 0;
    for (int j = 0; j < d; j++) total += var[j] * nt;
    memcpy(p->prev, p->components, (size_t)k * d * sizeof(double));
    memcpy(p->components, comp, (size_t)k * d * sizeof(double));
    memcpy(p->singular, sv, (size_t)k * sizeof(double));
    memcpy(p->mean, mean, (size_t)d * sizeof(double));
    memcpy(p->var, var, (size_t)d * sizeof(double));
    for (int i = 0; i < k; i++) {
        double s2 = sv[i] * sv[i];
        p->explained_variance[i] = nt > 1 ? s2 / (nt - 1) : 0.0;
        p->explained_variance_ratio[i] = total > 0 ? s2 / total : 0.0;
    }
    p->n_seen += n;
    p->steps++;
    if (p->steps >= 2)
        xd_eva_cosines(p->components, p->prev, k, d, p->cos);
    else
        memset(p->cos, 0, (size_t)k * sizeof(double));
    free(mean), free(var), free(comp), free(sv);
    return 0;
}

/* ---- convergence ---------------------------------------------------------------------- */

int xd_eva_check(const xd_ipca *p, int n_assigned, double tau, int max_steps) {
    if (!p) return xd_err("eva: check: no state");
    if (!(tau >= 0.0 && tau <= 1.0))
        return xd_err("eva: tau = %g; expected 0 <= tau <= 1", tau);
    if (n_assigned < 0 || n_assigned > p->k)
        return xd_err("eva: %d components assigned; expected 0 .. k = %d", n_assigned, p->k);
    if (n_assigned == 0) return XD_EVA_CONVERGED;
    if (p->steps >= 2) {
        int all = 1;
        for (int i = 0; i < n_assigned; i++) all &= p->cos[i] >= tau;
        if (all) return XD_EVA_CONVERGED;
    }
    if (max_steps > 0 && p->steps >= max_steps) return XD_EVA_CAPPED;
    return XD_EVA_RUNNING;
}

/* ---- rank redistribution --------------------------------------------------------------- */

typedef struct {
    double v;
    int layer, idx;
} cand;

/* torch.argsort(descending=True) on the CPU (not stable): PyTorch sorts (value, index)
 * pairs with std::sort and the comparator "a.value > b.value", and exact ties, which EVA
 * has whenever layers share an input (their candidates are the same ratios), come out in
 * the order libstdc++'s introsort leaves them. This is that algorithm, step for step
 * (bits/stl_algo.h and stl_heap.h: introsort loop with median-of-three pivots down to
 * 16 elements, heapsort past 2·floor(log2 n) levels, then the final insertion sort), so
 * PEFT's ranks come out identical, ties included (checked against torch 2.15 on
 * tie-heavy arrays: tests/test_eva.c, tests/test_eva_engine.c). */
static int gt(const cand *a, const cand *b) { return a->v > b->v; }
static void swap_c(cand *a, cand *b) { cand t = *a; *a = *b; *b = t; }

static void push_heap(cand *f, int64_t hole, int64_t top, cand v) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && gt(&f[parent], &v)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = v;
}

static void adjust_heap(cand *f, int64_t hole, int64_t len, cand v) {
    int64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (gt(&f[child], &f[child - 1])) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    push_heap(f, hole, top, v);
}

static void heap_sort(cand *f, int64_t len) {
    for (int64_t parent = (len - 2) / 2; len >= 2; parent--) { /* make_heap */
        adjust_heap(f, parent, len, f[parent]);
        if (parent == 0) break;
    }
    for (int64_t last = len - 1; last > 0; last--) { /* sort_heap: pop_heap each */
        cand v = f[last];
        f[last] = f[0];
        adjust_heap(f, 0, last, v);
    }
}

static void median_to_first(cand *res, cand *a, cand *b, cand *c) {
    if (gt(a, b)) {
        if (gt(b, c)) swap_c(res, b);
        else if (gt(a, c)) swap_c(res, c);
        else swap_c(res, a);
    } else if (gt(a, c)) swap_c(res, a);
    else if (gt(b, c)) swap_c(res, c);
    else swap_c(res, b);
}

static void introsort_loop(cand *first, cand *last, int depth) {
    while (last - first > 16) {
        if (depth == 0) {
            heap_sort(first, last - first);
            return;
        }
        depth--;
        median_to_first(first, first + 1, first + (last - first) / 2, last - 1);
        cand *lo = first + 1, *hi = last; /* unguarded partition around *first */
        for (;;) {
            while (gt(lo, first)) lo++;
            hi--;
            while (gt(first, hi)) hi--;
            if (!(lo < hi)) break;
            swap_c(lo, hi);
            lo++;
        }
        introsort_loop(lo, last, depth);
        last = lo;
    }
}

static void linear_insert(cand *last) {
    cand v = *last, *next = last - 1;
    while (gt(&v, next)) {
        *last = *next;
        last = next--;
    }
    *last = v;
}

static void insertion_sort(cand *first, cand *last) {
    for (cand *i = first + 1; i < last; i++) {
        if (gt(i, first)) {
            cand v = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof(cand));
            *first = v;
        } else linear_insert(i);
    }
}

static void sort_like_torch(cand *c, int64_t n) {
    if (n < 2) return;
    int lg = 0;
    while (((int64_t)1 << (lg + 1)) <= n) lg++;
    introsort_loop(c, c + n, 2 * lg);
    if (n > 16) {
        insertion_sort(c, c + 16);
        for (cand *i = c + 16; i < c + n; i++) linear_insert(i);
    } else insertion_sort(c, c + n);
}

int xd_eva_argsort_desc(const double *v, int64_t n, int64_t *idx) {
    cand *c = malloc((size_t)(n > 0 ? n : 1) * sizeof(cand));
    if (!c) return xd_err("eva: out of memory");
    for (int64_t i = 0; i < n; i++) c[i] = (cand){v[i], 0, (int)i};
    sort_like_torch(c, n);
    for (int64_t i = 0; i < n; i++) idx[i] = c[i].idx;
    free(c);
    return 0;
}

int xd_eva_rank_distribution(const xd_eva_layer *L, int n, double rho, int *rank,
                             double *alpha_out) {
    if (!L || n < 1 || !rank) return xd_err("eva: rank distribution: %d layers; expected >= 1", n);
    if (!(rho >= 1.0) || !isfinite(rho))
        return xd_err("eva: rho = %g; expected a finite rho >= 1", rho);
    int *cap = calloc((size_t)n, sizeof(int)), *order = malloc((size_t)n * sizeof(int));
    if (!cap || !order) {
        free(cap), free(order);
        return xd_err("eva: out of memory");
    }
    int rc = 0;
    int64_t budget = 0, ncand = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (L[i].r <= 0)
            rc = xd_err("eva: layer %d: r = %d; expected r >= 1", i, L[i].r);
        else if (L[i].owner < 0 || L[i].owner > i || L[L[i].owner].owner != L[i].owner)
            rc = xd_err("eva: layer %d: owner %d; expected the index of the first layer with the "
                        "same input (0 .. %d, itself when none, an owner of itself)",
                        i, L[i].owner, i);
        else {
            double c = rint(rho * L[i].r); /* Python round(): halves to even (default rounding) */
            if (c > 1e9) rc = xd_err("eva: layer %d: rho * r = %g is too large", i, rho * L[i].r);
            else cap[i] = (int)c;
            budget += L[i].r;
        }
    }
    for (int i = 0; i < n && !rc; i++) /* a group's cap is its largest */
        if (cap[i] > cap[L[i].owner]) cap[L[i].owner] = cap[i];
    for (int i = 0; i < n && !rc; i++) {
        cap[i] = cap[L[i].owner];
        const xd_eva_layer *o = &L[L[i].owner];
        if (L[i].owner == i) {
            if (!o->ratio || o->n_ratio < cap[i])
                rc = xd_err("eva: layer %d: %d explained-variance ratios; expected at least "
                            "rint(rho * r) = %d (the state holds too few components for this rho)",
                            i, o->ratio ? o->n_ratio : 0, cap[i]);
            for (int j = 0; j < cap[i] && !rc; j++)
                if (!isfinite(o->ratio[j]))
                    rc = xd_err("eva: layer %d: ratio %d is %g; expected finite values", i, j,
                                o->ratio[j]);
        }
        ncand += cap[i];
    }
    /* layer_hook_map order: owners, then each group's other members */
    int no = 0;
    for (int i = 0; i < n && !rc; i++)
        if (L[i].owner == i) order[no++] = i;
    for (int g = 0; g < n && !rc; g++) {
        if (L[g].owner != g) continue;
        for (int i = g + 1; i < n; i++)
            if (L[i].owner == g) order[no++] = i;
    }
    cand *c = rc ? NULL : malloc((size_t)(ncand > 0 ? ncand : 1) * sizeof(cand));
    if (!rc && !c) rc = xd_err("eva: out of memory");
    if (!rc) {
        int64_t t = 0;
        for (int a = 0; a < n; a++) {
            int i = order[a];
            const double *r = L[L[i].owner].ratio;
            for (int j = 0; j < cap[i]; j++, t++) c[t] = (cand){r[j], i, (int)t};
        }
        sort_like_torch(c, ncand);
        for (int i = 0; i < n; i++) rank[i] = 0;
        for (int64_t t2 = 0; t2 < ncand && t2 < budget; t2++) rank[c[t2].layer]++;
        for (int a = 0; a < n; a++) { /* PEFT's fix-up, in equal_inputs_map order */
            int i = order[a], o = L[i].owner;
            if (o != i && rank[o] < rank[i]) {
                int tmp = rank[o];
                rank[o] = rank[i];
                rank[i] = tmp;
            }
        }
        if (alpha_out)
            for (int i = 0; i < n; i++)
                alpha_out[i] = rank[i] == L[i].r ? L[i].alpha
                                                 : L[i].alpha * ((double)rank[i] / L[i].r);
    }
    free(c);
    free(cap);
    free(order);
    return rc ? -1 : 0;
}

/* ---- state file ------------------------------------------------------------------------ */

#define EVA_META "{\"format\": \"xdistill-eva\", \"version\": \"2\"}"
enum { NF = 9 };
static const char *const field_names[NF] = {"mean", "var", "components", "singular",
                                            "explained_variance", "explained_variance_ratio",
                                            "prev", "cos", "counts"};

/* field f of p: data pointer and shape */
static double *field(xd_ipca *p, int f, int *nd, int64_t *shape) {
    *nd = 1;
    shape[0] = p->k;
    switch (f) {
    case 0: shape[0] = p->d; return p->mean;
    case 1: shape[0] = p->d; return p->var;
    case 2: *nd = 2, shape[1] = p->d; return p->components;
    case 3: return p->singular;
    case 4: return p->explained_variance;
    case 5: return p->explained_variance_ratio;
    case 6: *nd = 2, shape[1] = p->d; return p->prev;
    case 7: return p->cos;
    default: shape[0] = 3; return NULL;
    }
}

int xd_eva_save(const char *path, xd_ipca *const *layers, const char *const *names, int n) {
    if (!path || n < 1 || !layers || !names)
        return xd_err("eva: save: %d layers; expected at least 1 with names", n);
    st_write_tensor *ts = calloc((size_t)n * NF, sizeof *ts);
    char **tn = calloc((size_t)n * NF, sizeof(char *));
    double *counts = calloc((size_t)n * 3, sizeof(double));
    int rc = 0;
    if (!ts || !tn || !counts) rc = xd_err("eva: out of memory");
    for (int i = 0; i < n && !rc; i++) {
        if (!layers[i] || !names[i] || !names[i][0]) {
            rc = xd_err("%s: layer %d has no state or an empty name", path, i);
            break;
        }
        counts[i * 3] = i;
        counts[i * 3 + 1] = (double)layers[i]->n_seen;
        counts[i * 3 + 2] = layers[i]->steps;
        for (int f = 0; f < NF && !rc; f++) {
            st_write_tensor *t = &ts[i * NF + f];
            size_t len = strlen(names[i]) + strlen(field_names[f]) + 2;
            tn[i * NF + f] = malloc(len);
            if (!tn[i * NF + f]) {
                rc = xd_err("eva: out of memory");
                break;
            }
            snprintf(tn[i * NF + f], len, "%s.%s", names[i], field_names[f]);
            double *data = field(layers[i], f, &t->n_dims, t->shape);
            t->name = tn[i * NF + f];
            t->dtype = ST_F64;
            t->data = data ? data : counts + i * 3;
        }
    }
    if (!rc) rc = xd_st_write(path, ts, n * NF, EVA_META);
    for (int i = 0; tn && i < n * NF; i++) free(tn[i]);
    free(tn);
    free(ts);
    free(counts);
    return rc ? -1 : 0;
}

void xd_eva_free_list(xd_ipca **layers, char **names, int n) {
    for (int i = 0; i < n; i++) {
        if (layers) xd_ipca_free(layers[i]);
        if (names) free(names[i]);
    }
    free(layers);
    free(names);
}

/* Copies tensor `name` (F64) of the expected shape into dst. */
static int read_f64(const st_set *s, const char *path, const char *name, int nd,
                    const int64_t *shape, double *dst) {
    const st_tensor *t = xd_st_find(s, name);
    if (!t) return xd_err("%s: tensor '%s' is missing", path, name);
    int ok = t->dtype == ST_F64 && t->n_dims == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == shape[i];
    if (!ok)
        return xd_err("%s: tensor '%s': expected F64 of shape [%lld%s%lld]", path, name,
                      (long long)shape[0], nd > 1 ? ", " : "", nd > 1 ? (long long)shape[1] : 0LL);
    return xd_st_to_f64(s, t, dst);
}

int xd_eva_load(const char *path, xd_ipca ***out_layers, char ***out_names, int *out_n) {
    st_set *s = xd_st_open(path);
    if (!s) return xd_err_prefix("eva: loading state %s: ", path);
    int n = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const char *nm = s->tensors[i].name;
        size_t l = strlen(nm);
        if (l > 7 && !strcmp(nm + l - 7, ".counts")) n++;
    }
    int rc = 0;
    xd_ipca **layers = NULL;
    char **names = NULL;
    if (n == 0) rc = xd_err("%s: no '<layer>.counts' tensor: not an EVA state file", path);
    if (!rc) {
        layers = calloc((size_t)n, sizeof *layers);
        names = calloc((size_t)n, sizeof *names);
        if (!layers || !names) rc = xd_err("eva: out of memory");
    }
    char buf[1024];
    for (int i = 0; i < s->n_tensors && !rc; i++) {
        const char *nm = s->tensors[i].name;
        size_t l = strlen(nm);
        if (!(l > 7 && !strcmp(nm + l - 7, ".counts"))) continue;
        double cnt[3];
        int64_t sh3 = 3;
        if ((rc = read_f64(s, path, nm, 1, &sh3, cnt))) break;
        int pos = (int)cnt[0];
        if (cnt[0] != pos || pos < 0 || pos >= n || names[pos] || l - 7 >= sizeof buf) {
            rc = xd_err("%s: tensor '%s': position %g is not a new index 0 .. %d", path, nm, cnt[0],
                        n - 1);
            break;
        }
        memcpy(buf, nm, l - 7);
        buf[l - 7] = 0;
        names[pos] = strdup(buf);
        char fn[1100];
        snprintf(fn, sizeof fn, "%s.components", buf);
        const st_tensor *c = xd_st_find(s, fn);
        if (!c || c->n_dims != 2) {
            rc = xd_err("%s: tensor '%s' is missing or not [k, d]", path, fn);
            break;
        }
        if (c->shape[0] > 0x7fffffff || c->shape[1] > 0x7fffffff ||
            !(layers[pos] = xd_ipca_new((int)c->shape[1], (int)c->shape[0]))) {
            rc = xd_err_prefix("%s: tensor '%s': ", path, fn);
            break;
        }
        xd_ipca *p = layers[pos];
        p->n_seen = (int64_t)cnt[1];
        p->steps = (int)cnt[2];
        for (int f = 0; f < NF - 1 && !rc; f++) {
            int nd;
            int64_t shape[8];
            double *dst = field(p, f, &nd, shape);
            snprintf(fn, sizeof fn, "%s.%s", buf, field_names[f]);
            rc = read_f64(s, path, fn, nd, shape, dst);
        }
    }
    xd_st_close(s);
    if (rc) {
        xd_eva_free_list(layers, names, n);
        return -1;
    }
    *out_layers = layers;
    *out_names = names;
    *out_n = n;
    return 0;
}
