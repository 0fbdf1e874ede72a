/* Win-and-tie arithmetic (src/eval/wintie.h) on hand-computed cases. */
#include <math.h>
#include <string.h>

#include "eval/wintie.h"
#include "test.h"
#include "xdistill.h"

#define N(a) (sizeof(a) / sizeof *(a))

static int compute(xd_wintie *w, const double *s, const double *t, size_t n) {
    return xd_wintie_compute(w, s, t, n, XD_WT_ALPHA_MAX, XD_WT_GRID);
}

/* The grid point of α = g/100. */
static double grid_c(const xd_wintie *w, int g) { return w->grid_c[g]; }

static void test_ties(void) {
    /* Equal scores tie at α = 0, including ones that are not exact in binary. */
    const double s[] = {0.5, 0.25, 0.7, 0.1}, t[] = {0.5, 0.25, 0.7, 0.1};
    xd_wintie w;
    CHECK(!compute(&w, s, t, N(s)), "%s", xd_last_error());
    for (size_t i = 0; i < N(s); i++) {
        CHECK(w.threshold[i] == 0, "tie %zu: α_b %g", i, w.threshold[i]);
        CHECK(w.recovery[i] == 1, "tie %zu: recovery %g", i, w.recovery[i]);
        CHECK(w.win0[i] == 1, "tie %zu counts at α = 0", i);
    }
    CHECK(w.c0 == 1 && w.wins0 == 4 && w.lossless, "C_0 %g", w.c0);
    CHECK(w.has_alpha_star && w.alpha_star == 0, "α* %g", w.alpha_star);
    for (int g = 0; g < w.n_grid; g++) CHECK(w.grid_c[g] == 1, "C at grid %d: %g", g, w.grid_c[g]);
    char v[512];
    xd_wintie_verdict(&w, v, sizeof v);
    CHECK(!strcmp(v, "LOSSLESS: C_0 = 1 ≥ 0.5 (4 of 4 tasks won or tied; α* = 0)"), "verdict '%s'", v);
    xd_wintie_free(&w);

    /* A tie up to rounding: 0.1 + 0.2 = 0.30000000000000004 as the teacher,
     * 0.3 as the student: A_S/A_T = 1 − 2.2e-16, still a tie at α = 0. */
    double s1 = 0.3, t1 = 0.1 + 0.2;
    CHECK(s1 < t1, "the case needs A_S < A_T in binary");
    CHECK(xd_wt_threshold(s1, t1) == 0, "α_b %g", xd_wt_threshold(s1, t1));
    CHECK(xd_wt_win(s1, t1, 0), "a tie up to rounding counts at α = 0");
    /* A student above the teacher wins at α = 0 with α_b clipped to 0. */
    CHECK(xd_wt_threshold(0.9, 0.6) == 0, "α_b of a win %g", xd_wt_threshold(0.9, 0.6));
    CHECK_NEAR(xd_wt_recovery(0.9, 0.6), 1.5, 1e-15, "recovery of a win");
    /* A real loss, however small, is not a tie: 1e-9 below the teacher. */
    CHECK(!xd_wt_win(0.5 - 1e-9, 0.5, 0), "1e-9 below is a loss at α = 0");
    CHECK(xd_wt_win(0.5 - 1e-9, 0.5, 2.1e-9), "... and a win at α = 2.1e-9");
}

static void test_zero_teacher(void) {
    /* (A_S, A_T): (0, 0) tie, (0.3, 0) win, (0.2, 0.4) α_b = 0.5, (0.1, 0.5) α_b = 0.8.
     * n = 4 needs 2: C_0 = 2/4 = 0.5 → lossless, α* = 0. C_α = 0.5 up to α < 0.5,
     * 0.75 at the grid's last point α = 0.5 exactly. */
    const double s[] = {0, 0.3, 0.2, 0.1}, t[] = {0, 0, 0.4, 0.5};
    xd_wintie w;
    CHECK(!compute(&w, s, t, N(s)), "%s", xd_last_error());
    CHECK(w.threshold[0] == 0 && w.threshold[1] == 0, "zero teacher: α_b %g %g", w.threshold[0], w.threshold[1]);
    CHECK(w.threshold[2] == 0.5, "α_b 0.2/0.4: %.17g", w.threshold[2]);
    CHECK_NEAR(w.threshold[3], 0.8, 1e-15, "α_b 0.1/0.5");
    CHECK(isnan(w.recovery[0]), "0/0 recovery is NaN (null in JSON): %g", w.recovery[0]);
    CHECK(isinf(w.recovery[1]) && w.recovery[1] > 0, "0.3/0 recovery is +inf: %g", w.recovery[1]);
    CHECK(w.recovery[2] == 0.5, "recovery %g", w.recovery[2]);
    CHECK(w.win0[0] && w.win0[1] && !w.win0[2] && !w.win0[3], "1_0: %d %d %d %d", w.win0[0], w.win0[1],
          w.win0[2], w.win0[3]);
    CHECK(w.c0 == 0.5 && w.lossless, "C_0 = %g exactly 0.5 is lossless", w.c0);
    CHECK(w.has_alpha_star && w.alpha_star == 0, "α* %g", w.alpha_star);
    CHECK(grid_c(&w, 49) == 0.5 && grid_c(&w, 50) == 0.75, "C_0.49 %g, C_0.5 %g", grid_c(&w, 49),
          grid_c(&w, 50));
    /* the zero-teacher tasks count at every α */
    for (int g = 0; g < w.n_grid; g++) CHECK(w.grid_c[g] >= 0.5, "grid %d: %g", g, w.grid_c[g]);
    xd_wintie_free(&w);
}

static void test_grid_edges(void) {
    /* thresholds: 0.5/1 → 0.5, 0.25/0.5 → 0.5, 0.1/1 → 0.9, 0.9/1 → 0.1 (0.1 up to
     * rounding). Sorted 0.1, 0.5, 0.5, 0.9; n = 4 needs 2 → α* = 0.5, exactly at
     * the grid's upper edge. C_0 = 0, C_0.1 = 0.25, C_0.49 = 0.25, C_0.5 = 0.75. */
    const double s[] = {0.5, 0.25, 0.1, 0.9}, t[] = {1, 0.5, 1, 1};
    xd_wintie w;
    CHECK(!compute(&w, s, t, N(s)), "%s", xd_last_error());
    CHECK(w.n_grid == 51 && w.grid_alpha[0] == 0 && w.grid_alpha[50] == 0.5, "grid ends %g %g",
          w.grid_alpha[0], w.grid_alpha[50]);
    CHECK(w.c0 == 0 && !w.lossless, "C_0 %g", w.c0);
    CHECK(grid_c(&w, 0) == 0, "C at α = 0: %g", grid_c(&w, 0));
    CHECK(grid_c(&w, 10) == 0.25, "C at α = 0.1: %g (the 0.9/1 task, α_b = 1 − 0.9 ≈ 0.1)", grid_c(&w, 10));
    CHECK(grid_c(&w, 49) == 0.25, "C at α = 0.49: %g", grid_c(&w, 49));
    CHECK(grid_c(&w, 50) == 0.75, "C at α = 0.5: %g", grid_c(&w, 50));
    CHECK(w.has_alpha_star && w.alpha_star == 0.5, "α* %.17g (exactly the upper edge)", w.alpha_star);
    char v[512];
    xd_wintie_verdict(&w, v, sizeof v);
    CHECK(!strcmp(v, "NOT LOSSLESS: C_0 = 0 < 0.5 (0 of 4 tasks won or tied); α* = 0.5"), "verdict '%s'", v);
    xd_wintie_free(&w);

    /* α* exactly at the lower edge 0: one tie and one loss of two tasks. */
    const double s2[] = {0.4, 0.3}, t2[] = {0.4, 0.6};
    CHECK(!compute(&w, s2, t2, N(s2)), "%s", xd_last_error());
    CHECK(w.c0 == 0.5 && w.lossless && w.alpha_star == 0, "C_0 %g α* %g", w.c0, w.alpha_star);
    CHECK(grid_c(&w, 49) == 0.5 && grid_c(&w, 50) == 1, "C_0.49 %g C_0.5 %g", grid_c(&w, 49), grid_c(&w, 50));
    xd_wintie_free(&w);
}

static void test_never(void) {
    /* thresholds 0.7, 0.6, 0.55, 0.1 (up to rounding): the 2nd smallest, 0.55, is
     * beyond 0.5 → α* none; C_0 = 0, C_0.5 = 0.25. */
    const double s[] = {0.3, 0.4, 0.45, 0.9}, t[] = {1, 1, 1, 1};
    xd_wintie w;
    CHECK(!compute(&w, s, t, N(s)), "%s", xd_last_error());
    CHECK(!w.has_alpha_star && isnan(w.alpha_star), "α* none: %d %g", w.has_alpha_star, w.alpha_star);
    CHECK_NEAR(w.alpha_needed, 0.55, 1e-15, "α needed beyond the range");
    CHECK(w.c0 == 0 && grid_c(&w, 50) == 0.25, "C_0 %g C_0.5 %g", w.c0, grid_c(&w, 50));
    for (int g = 0; g < w.n_grid; g++) CHECK(w.grid_c[g] < 0.5, "grid %d: %g", g, w.grid_c[g]);
    char v[512];
    xd_wintie_verdict(&w, v, sizeof v);
    CHECK(!strncmp(v, "NOT LOSSLESS: C_0 = 0 < 0.5 (0 of 4 tasks won or tied); α* none", strlen("NOT LOSSLESS: C_0 = 0 < 0.5 (0 of 4 tasks won or tied); α* none")),
          "verdict '%s'", v);
    CHECK(strstr(v, "0.55 would be needed") != NULL, "verdict '%s'", v);
    xd_wintie_free(&w);
    /* the same with a wider range finds it */
    CHECK(!xd_wintie_compute(&w, s, t, N(s), 1.0, 101), "%s", xd_last_error());
    CHECK(w.has_alpha_star, "α* within [0, 1]");
    CHECK_NEAR(w.alpha_star, 0.55, 1e-15, "α* within [0, 1]");
    xd_wintie_free(&w);

    /* odd n = 5 needs 3: thresholds 0, 0, 0.3, 0.6, 0.7 → C_0 = 0.4, α* = 0.3 */
    const double s5[] = {0.5, 0.8, 0.7, 0.4, 0.3}, t5[] = {0.5, 0.7, 1, 1, 1};
    CHECK(!compute(&w, s5, t5, N(s5)), "%s", xd_last_error());
    CHECK(w.c0 == 0.4 && !w.lossless, "C_0 %g", w.c0);
    CHECK(w.has_alpha_star, "α*");
    CHECK_NEAR(w.alpha_star, 0.3, 1e-15, "α* (n = 5)");
    CHECK(grid_c(&w, 29) == 0.4 && grid_c(&w, 30) == 0.6, "C_0.29 %g C_0.3 %g", grid_c(&w, 29),
          grid_c(&w, 30));
    xd_wintie_free(&w);
}

static void test_float_edge(void) {
    /* A_S exactly (1 − α)·A_T in decimal. In doubles 0.75·0.8 rounds to
     * 0.6000000000000001 > 0.6, so the literal formula would call it a loss. */
    struct { double s, t, a; } e[] = {{0.6, 0.8, 0.25}, {0.21, 0.3, 0.3}, {0.81, 0.9, 0.1},
                                      {0.375, 0.5, 0.25}, {0.49, 0.7, 0.3}, {0.05, 0.1, 0.5}};
    int literal_losses = 0;
    for (size_t i = 0; i < N(e); i++) {
        CHECK(xd_wt_win(e[i].s, e[i].t, e[i].a), "%g vs %g at α %g must tie", e[i].s, e[i].t, e[i].a);
        CHECK(!xd_wt_win(e[i].s, e[i].t, e[i].a - 1e-9), "%g vs %g just below α %g is a loss", e[i].s,
              e[i].t, e[i].a);
        literal_losses += !(e[i].s >= (1 - e[i].a) * e[i].t);
    }
    CHECK(literal_losses >= 1, "the cases include one where the literal double formula fails (%d)",
          literal_losses);
    /* α* on such a boundary is the threshold itself and the grid agrees: tasks
     * (0.6, 0.8) α_b = 0.25, (0.21, 0.3) α_b = 0.3, (0.1, 1) 0.9, (0.2, 1) 0.8 →
     * α* = 0.3 (2nd smallest); the grid point α = 0.3 has C = 0.5, α = 0.29 0.25. */
    const double s[] = {0.6, 0.21, 0.1, 0.2}, t[] = {0.8, 0.3, 1, 1};
    xd_wintie w;
    CHECK(!compute(&w, s, t, N(s)), "%s", xd_last_error());
    CHECK_NEAR(w.threshold[0], 0.25, 1e-15, "α_b 0.6/0.8");
    CHECK_NEAR(w.alpha_star, 0.3, 1e-15, "α* on a decimal boundary");
    CHECK(grid_c(&w, 25) == 0.25 && grid_c(&w, 29) == 0.25 && grid_c(&w, 30) == 0.5,
          "C_0.25 %g C_0.29 %g C_0.3 %g", grid_c(&w, 25), grid_c(&w, 29), grid_c(&w, 30));
    CHECK(xd_wintie_c(&w, w.alpha_star) >= 0.5, "C(α*) %g", xd_wintie_c(&w, w.alpha_star));
    CHECK(xd_wintie_c(&w, w.alpha_star - 1e-9) < 0.5, "C(α* − 1e-9) %g", xd_wintie_c(&w, w.alpha_star - 1e-9));
    xd_wintie_free(&w);
}

/* On random scores: α* is the smallest α with C_α >= 0.5, checked against the
 * formula A_S >= (1 − α)·A_T (docs/design.md, "Win-and-tie") evaluated directly just
 * above and below it. */
static void test_random(void) {
    unsigned long long r = 12345;
    for (int trial = 0; trial < 300; trial++) {
        double s[9], t[9];
        size_t n = 1 + (size_t)(trial % 9);
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            t[i] = (double)((r >> 33) % 1001) / 1000;
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            s[i] = (double)((r >> 33) % 1001) / 1000;
            if (trial % 4 == 0 && i % 2 == 0) s[i] = t[i]; /* ties */
        }
        xd_wintie w;
        if (compute(&w, s, t, n)) { CHECK(0, "%s", xd_last_error()); continue; }
        int ok_c0 = 0;
        for (size_t i = 0; i < n; i++) ok_c0 += s[i] >= t[i];
        CHECK(w.wins0 == ok_c0, "trial %d: wins at 0: %d vs %d", trial, w.wins0, ok_c0);
        CHECK(w.lossless == (w.has_alpha_star && w.alpha_star == 0), "trial %d: lossless ⇔ α* = 0", trial);
        double a = w.alpha_needed;
        int above = 0, below = 0;
        for (size_t i = 0; i < n; i++) {
            above += s[i] >= (1 - (a + 1e-9)) * t[i];
            below += a > 1e-9 && s[i] >= (1 - (a - 1e-9)) * t[i];
        }
        CHECK(2 * (size_t)above >= n, "trial %d: C just above α* %g is %d/%zu", trial, a, above, n);
        if (a > 1e-9) CHECK(2 * (size_t)below < n, "trial %d: C just below α* %g is %d/%zu", trial, a, below, n);
        for (int g = 0; g < w.n_grid; g++) {
            double al = w.grid_alpha[g];
            CHECK((w.grid_c[g] >= 0.5) == (w.has_alpha_star && al >= w.alpha_star - XD_WT_EPS),
                  "trial %d grid %d: C %g vs α* %g", trial, g, w.grid_c[g], w.alpha_star);
        }
        xd_wintie_free(&w);
    }
}

static void test_invalid(void) {
    xd_wintie w;
    const double ok[] = {0.5}, neg[] = {-0.1}, nan_[] = {NAN}, inf_[] = {INFINITY};
    CHECK(compute(&w, ok, ok, 0) && strstr(xd_last_error(), "no tasks"), "n = 0: %s", xd_last_error());
    CHECK(compute(&w, neg, ok, 1) && strstr(xd_last_error(), "student score -0.1"), "negative: %s",
          xd_last_error());
    CHECK(compute(&w, ok, nan_, 1) && strstr(xd_last_error(), "teacher score nan"), "NaN: %s", xd_last_error());
    CHECK(compute(&w, inf_, ok, 1) && strstr(xd_last_error(), "task 0"), "inf: %s", xd_last_error());
    CHECK(xd_wintie_compute(&w, ok, ok, 1, 0, 51), "alpha_max 0 refused");
    CHECK(xd_wintie_compute(&w, ok, ok, 1, 0.5, 1), "a 1-point grid refused");
    CHECK(isnan(xd_wt_threshold(-1, 1)) && !xd_wt_win(-1, 1, 1) && isnan(xd_wt_recovery(1, -1)),
          "primitives reject negative scores");
    /* one task: C is 0 or 1 */
    const double s1[] = {0.4}, t1[] = {0.5};
    CHECK(!compute(&w, s1, t1, 1), "%s", xd_last_error());
    CHECK(w.c0 == 0 && w.has_alpha_star, "n = 1");
    CHECK_NEAR(w.alpha_star, 0.2, 1e-15, "n = 1: α*");
    xd_wintie_free(&w);
}

int main(void) {
    test_ties();
    test_zero_teacher();
    test_grid_edges();
    test_never();
    test_float_edge();
    test_random();
    test_invalid();
    return test_summary("test_wintie");
}
