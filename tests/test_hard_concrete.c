/* DiffPruning's mask math (src/kernels/hard_concrete.h; issue 15, criterion 2):
 *  - against PyTorch float64 autograd (tests/ref/make_diffprune_fixture.py): the
 *    hard-concrete sample and its gradient, the eval-time mask, the expected L0 and its
 *    gradient, gradient reversal. Tolerance 2e-6 absolute on masks and L0 terms (our s is
 *    computed in double and rounded to fp32, then s̄ in fp32: a few ulps of values <= 1.5),
 *    1e-5 on gradients (fp32 products of factors <= 3);
 *  - every backward against central differences of its forward (h = 1e-3 in fp32: ~1e-4
 *    rounding noise in the quotient, so |analytic − fd| <= 2e-3 + 1e-2·|fd|), skipping the
 *    points within 2h·(r−l) of a clamp, where the one-sided kinks make FD meaningless;
 *  - magnitude pruning keeps exactly round(share·n) entries, the largest |w|, ties by index;
 *  - the uniforms: in [eps, 1 − eps], and a stream offset skips exactly that many draws. */
#include <string.h>

#include "fixture_util.h"
#include "kernels/hard_concrete.h"
#include "test.h"
#include "xdistill.h"

#define L_ (-1.5f)
#define R_ (1.5f)

static double max_abs_diff(const float *a, const float *b, int n) {
    double e = 0;
    for (int i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > e) e = fabs((double)a[i] - b[i]);
    return e;
}

static double sample_loss(const float *la, const float *u, const float *dz, int n) {
    float z[128], s[128];
    xd_hc_sample_forward(z, s, la, u, n, L_, R_);
    double L = 0;
    for (int i = 0; i < n; i++) L += (double)dz[i] * z[i];
    return L;
}

static void test_against_torch(void) {
    st_set *s = xd_st_open(XD_SOURCE_DIR "/tests/fixtures/diffprune_ref.safetensors");
    CHECK(s != NULL, "fixture: %s", xd_last_error());
    if (!s) return;
    enum { N = 96 };
    float *la = test_st_floats(s, "log_alpha", N), *u = test_st_floats(s, "u", N);
    float *dz = test_st_floats(s, "dz", N), *zt = test_st_floats(s, "z_train", N);
    float *dlt = test_st_floats(s, "dla_train", N), *ze = test_st_floats(s, "z_eval", N);
    float *l0 = test_st_floats(s, "l0", 1), *dl0 = test_st_floats(s, "dla_l0", N);
    float *gdy = test_st_floats(s, "grl_dy", N), *gdx = test_st_floats(s, "grl_dx", N);
    float *lam = test_st_floats(s, "grl_lambda", 1);
    CHECK(la && u && dz && zt && dlt && ze && l0 && dl0 && gdy && gdx && lam, "fixture tensors");
    if (la && u && dz && zt && dlt && ze && l0 && dl0 && gdy && gdx && lam) {
        float z[N], sv[N], d[N] = {0}, e[N], dl[N] = {0}, dx[N] = {0};
        xd_hc_sample_forward(z, sv, la, u, N, L_, R_);
        xd_hc_sample_backward(d, dz, sv, N, L_, R_);
        xd_hc_eval_mask(e, la, N, L_, R_);
        double ours = xd_hc_expected_l0(la, N, L_, R_, dl, 1.0f);
        xd_grad_reverse_backward(dx, gdy, N, lam[0]);
        double ez = max_abs_diff(z, zt, N), ed = max_abs_diff(d, dlt, N);
        double ee = max_abs_diff(e, ze, N), el = max_abs_diff(dl, dl0, N);
        double eg = max_abs_diff(dx, gdx, N);
        int zeros = 0, ones = 0;
        for (int i = 0; i < N; i++) zeros += z[i] == 0, ones += z[i] == 1;
        printf("vs PyTorch: sample %.1e, its gradient %.1e, eval mask %.1e, L0 %.6f vs %.6f, "
               "its gradient %.1e, reversal %.1e (%d zeros, %d ones, %d inside)\n", ez, ed, ee,
               ours, l0[0], el, eg, zeros, ones, N - zeros - ones);
        CHECK(ez <= 2e-6 && ee <= 2e-6, "masks: %g %g", ez, ee);
        CHECK(ed <= 1e-5 && el <= 1e-5 && eg <= 1e-6, "gradients: %g %g %g", ed, el, eg);
        CHECK(fabs(ours - l0[0]) <= 1e-6 * l0[0] + 1e-5, "L0 %g vs %g", ours, l0[0]);
        CHECK(zeros > 5 && ones > 5 && N - zeros - ones > 5, "the fixture covers both clamps");
        /* central differences of each forward */
        const float h = 1e-3f;
        int checked = 0, bad = 0;
        for (int i = 0; i < N; i++) {
            float sb = sv[i] * (R_ - L_) + L_;
            if (fabsf(sb) < 2 * h * (R_ - L_) || fabsf(sb - 1) < 2 * h * (R_ - L_)) continue;
            float keep = la[i];
            la[i] = keep + h;
            double lp = sample_loss(la, u, dz, N), l0p = xd_hc_expected_l0(la, N, L_, R_, NULL, 0);
            la[i] = keep - h;
            double lm = sample_loss(la, u, dz, N), l0m = xd_hc_expected_l0(la, N, L_, R_, NULL, 0);
            la[i] = keep;
            double fd = (lp - lm) / (2.0 * h), fd0 = (l0p - l0m) / (2.0 * h);
            if (fabs(d[i] - fd) > 2e-3 + 1e-2 * fabs(fd)) bad++;
            if (fabs(dl[i] - fd0) > 2e-3 + 1e-2 * fabs(fd0)) bad++;
            checked += 2;
        }
        /* reversal: the backward is −λ times the central difference of its forward (the
         * identity) under L = Σ dy·y, at x = z (any point: the forward is linear) */
        for (int i = 0; i < N; i++) {
            double yp = z[i] + h, ym = z[i] - h; /* identity forward of x ± h */
            double fd = ((double)gdy[i] * yp - (double)gdy[i] * ym) / (2.0 * h);
            if (fabs(dx[i] - (-lam[0] * fd)) > 1e-5 * (1 + fabs(fd))) bad++;
            checked++;
        }
        printf("central differences: %d coordinates, %d off\n", checked, bad);
        CHECK(bad == 0 && checked > 100, "%d of %d coordinates disagree", bad, checked);
    }
    free(la), free(u), free(dz), free(zt), free(dlt), free(ze), free(l0), free(dl0), free(gdy),
        free(gdx), free(lam);
    xd_st_close(s);
}

static void test_prune(void) {
    enum { N = 1000 };
    float w[N];
    uint8_t keep[N];
    const double shares[] = {0.005, 0.05, 0.1, 0.333, 1.0, 1e-9};
    /* patterns: ±x permuted (pairs of ties), three values only (long runs of ties, the
     * selection's hard case), ascending, descending */
    for (int pat = 0; pat < 4; pat++)
    for (size_t k = 0; k < sizeof shares / sizeof *shares; k++) {
        for (int i = 0; i < N; i++)
            w[i] = pat == 0 ? (float)((i * 7919) % 1000 - 500) / 100.0f
                 : pat == 1 ? (float)((i * 31) % 3) - 1.0f
                 : pat == 2 ? (float)i / N : (float)(N - i) / N;
        int64_t want = (int64_t)llround(shares[k] * N), got = xd_magnitude_prune(keep, w, N, shares[k]);
        if (want < 1) want = 1;
        int64_t n = 0, bad = 0;
        float min_kept = 1e30f, max_dropped = -1;
        for (int i = 0; i < N; i++) {
            n += keep[i];
            if (keep[i] && fabsf(w[i]) < min_kept) min_kept = fabsf(w[i]);
            if (!keep[i] && fabsf(w[i]) > max_dropped) max_dropped = fabsf(w[i]);
        }
        /* among equal magnitudes at the boundary the lower index is kept */
        for (int i = 0; i < N; i++)
            for (int j = i + 1; j < N && keep[i] == 0; j++)
                bad += keep[j] && fabsf(w[j]) == fabsf(w[i]);
        CHECK(got == want && n == want && min_kept >= max_dropped && bad == 0,
              "pattern %d, share %g: kept %lld (returned %lld), want %lld; min kept %g, max "
              "dropped %g, %lld tie-order violations", pat, shares[k], (long long)n, (long long)got, (long long)want,
              min_kept, max_dropped, (long long)bad);
    }
    CHECK(xd_magnitude_prune(keep, w, N, 0.0) < 0 && strstr(xd_last_error(), "(0, 1]"),
          "share 0: %s", xd_last_error());
    CHECK(xd_magnitude_prune(keep, w, N, 1.5) < 0 && xd_magnitude_prune(keep, w, N, NAN) < 0,
          "share 1.5 and NaN refused");
    printf("magnitude pruning: exact counts at 6 shares x 4 patterns, the largest kept, ties by "
           "index\n");
}

static void test_uniforms(void) {
    enum { N = 5000 };
    static float a[N], b[N];
    xd_hc_uniforms(a, N, 42, 0);
    xd_hc_uniforms(b, N - 3, 42, 3);
    int in = 1;
    double mean = 0;
    for (int i = 0; i < N; i++) {
        in &= a[i] >= (float)XD_HC_EPS && a[i] <= (float)(1 - XD_HC_EPS);
        mean += a[i] / N;
    }
    CHECK(in && fabs(mean - 0.5) < 0.02, "uniforms in range (mean %g)", mean);
    CHECK(memcmp(a + 3, b, (N - 3) * sizeof(float)) == 0, "stream offset 3 = 3 draws skipped");
}

int main(void) {
    test_against_torch();
    test_prune();
    test_uniforms();
    return test_summary("test_hard_concrete");
}
