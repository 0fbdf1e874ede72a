/* The student's sparse cache (docs/design.md, "Sparse cache"; LoLA, arXiv 2505.23666):
 *  - xd_mlstm_readout equals the mLSTM step's output formula computed in double on a
 *    random state (tolerance 1e-5 of the largest output: fp32 sums of 2·hd products);
 *  - a cache that holds every row that leaves the window makes the SWA branch full
 *    causal attention: a SWA-only student (o == 0 exactly) decoding token by token then
 *    reproduces its teacher's logits (tolerance 1e-4 as the copy path of test_student.c:
 *    two attention kernels summing in different orders), and without the cache it does
 *    not; one prefill (read in pieces of 16 inside the mixer) equals calls of 16 tokens;
 *    the state's size grows by exactly the cache's rows and scores;
 *  - a small cache keeps the rows a reference computed here would keep: each row that
 *    leaves the window (read from the student's window buffer after the step) is scored
 *    in double from the student's mLSTM state after that step, by the mean over the
 *    layer's heads of ‖v − v̂(k)‖² (φ(k) and the readout written out here), and the
 *    reference keeps the top rows with the same replacement rule; the cached rows must be
 *    the reference's rows bit for bit (they are copies);
 *  - the window-exact rule extends to the cache (mixer randomised, mLSTM on): the output is
 *    the SWA branch alone, the teacher's attention, until a row has been dropped. A
 *    cache that never fills gives the teacher's logits at every position (decoding, one
 *    prefill, pieces of 7); a cache of 4 rows gives them below S + W + 4 in decoding and
 *    up to the end of the 16-token piece in which the first row was dropped in a prefill
 *    (that piece's queries still see the rows that left the window in it), and differs
 *    after; the state's cexact marks that position in every layer;
 *  - xd_kv_copy carries the cache (rows, scores, first drop) and xd_kv_reset clears it:
 *    a copy continues bit for bit like its original, whichever of the two had dropped a
 *    row, and a reset state reruns like a fresh one;
 *  - the config field round-trips through save/load, and bad values are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdistill.h"
#include "core/rng.h"
#include "kernels/mlstm.h"
#include "model/model.h"
#include "model/student.h"
#include "cli_util.h"
#include "student_util.h"
#include "test.h"

/* The teacher's logits [n][V] of ids, in one prefill (malloc'ed). */
static float *teacher_logits(const xd_model *t, const int32_t *ids, int n) {
    float *out = malloc((size_t)n * t->cfg.vocab_size * sizeof(float));
    xd_kv *kv = xd_kv_create(t, n);
    CHECK(out && kv && xd_forward(t, kv, ids, n, out, 1) == 0, "teacher: %s", xd_last_error());
    xd_kv_free(kv);
    return out;
}

/* ---- 1. the readout ------------------------------------------------------------ */
static void readout(void) {
    enum { H = 3, DPHI = 16, DV = 8, N = 5 };
    xd_mlstm_cfg mc = xd_mlstm_cfg_default(H, DPHI, DV);
    float C[H * DPHI * DV], nn[H * DPHI], m[H], phi[N * H * DPHI], out[N * DV];
    xd_rng g;
    xd_rng_seed(&g, 4);
    for (int i = 0; i < H * DPHI * DV; i++) C[i] = (float)xd_rng_normal(&g);
    for (int i = 0; i < H * DPHI; i++) nn[i] = (float)(0.2 * xd_rng_normal(&g));
    for (int i = 0; i < N * H * DPHI; i++) phi[i] = (float)xd_rng_uniform(&g) / DPHI;
    m[0] = 0.5f, m[1] = -3.0f, m[2] = 8.0f; /* normaliser from |n·φ| or from e^{−m} */
    xd_mlstm_state st = {C, nn, m};
    double worst = 0, big = 0;
    for (int h = 0; h < H; h++) {
        xd_mlstm_readout(out, DV, &st, h, phi + h * DPHI, H * DPHI, N, &mc);
        for (int t = 0; t < N; t++) {
            const float *q = phi + (t * H + h) * DPHI;
            double qn = 0, ref[DV] = {0};
            for (int y = 0; y < DPHI; y++) {
                qn += (double)q[y] * nn[h * DPHI + y];
                for (int x = 0; x < DV; x++) ref[x] += (double)q[y] * C[(h * DPHI + y) * DV + x];
            }
            double den = fmax(fabs(mc.scale * qn), exp(-(double)m[h])) + mc.eps;
            for (int x = 0; x < DV; x++) {
                double r = mc.scale * ref[x] / den;
                worst = fmax(worst, fabs(r - out[t * DV + x]));
                big = fmax(big, fabs(r));
            }
        }
    }
    printf("mLSTM readout vs double: %.2e of the largest output (tol 1e-5)\n", worst / big);
    CHECK(worst <= 1e-5 * big, "readout: %g of %g", worst, big);
}

/* ---- 2. a cache that holds everything ---------------------------------------------- */
static xd_model *student_of(xd_model *t, int window, int sinks, int cache, int swa_only) {
    xd_student_opts o;
    xd_student_defaults(&o);
    o.window = window;
    o.sinks = sinks;
    o.chunk = 8;
    o.swa_only = swa_only;
    o.sparse_cache = cache;
    o.exact_in_window = 0;
    xd_model *s = xd_student_convert(t, &o);
    CHECK(s != NULL, "convert: %s", xd_last_error());
    return s;
}

static void full_recall(const char *name) {
    xd_model *t = test_load_fixture(name);
    if (!t) return;
    enum { N = 40, W = 5, S = 2 };
    int V = t->cfg.vocab_size;
    int32_t ids[N];
    test_rand_ids(ids, N, V, 9);
    float *ref = teacher_logits(t, ids, N), *got = malloc((size_t)N * V * sizeof(float));
    xd_model *with = student_of(t, W, S, N, 1), *without = student_of(t, W, S, 0, 1);
    if (with && without) {
        CHECK(test_run_pieces(with, ids, N, NULL, 0, N, got) == 0, "decode: %s", xd_last_error());
        double e = test_max_abs_diff(got, ref, (size_t)N * V);
        CHECK(test_run_pieces(without, ids, N, NULL, 0, N, got) == 0, "decode: %s", xd_last_error());
        double e0 = test_max_abs_diff(got, ref, (size_t)N * V);
        printf("%-11s SWA-only student, W %d, cache of %d rows, token by token: max |diff| vs "
               "the teacher %.2e (tol 1e-4); without the cache %.2e\n", name, W, N, e, e0);
        CHECK(e <= 1e-4, "%s: a cache holding every row gives %g off the teacher", name, e);
        CHECK(e0 > 1e-2, "%s: without the cache the student matches its teacher (%g)", name, e0);
        /* one call reads its tokens in pieces of 16 inside the mixer, carrying the mLSTM
         * state and the cache between them: the same as calls of 16 tokens (tolerance 1e-4:
         * the chunkwise mLSTM over a piece against its recurrent steps) */
        float *one = malloc((size_t)N * V * sizeof(float));
        CHECK(test_run_pieces(with, ids, N, (int[]){N}, 1, N, one) == 0 &&
                  test_run_pieces(with, ids, N, (int[]){16}, 1, N, got) == 0,
              "prefill: %s", xd_last_error());
        double ep = test_max_abs_diff(one, got, (size_t)N * V);
        CHECK(test_run_pieces(without, ids, N, (int[]){N}, 1, N, one) == 0, "prefill");
        double ep0 = test_max_abs_diff(one, got, (size_t)N * V);
        printf("%-11s the same, one prefill vs calls of 16 tokens: %.2e (tol 1e-4); the student "
               "without the cache is %.2e away\n", name, ep, ep0);
        CHECK(ep <= 1e-4, "%s: one prefill vs pieces of 16: %g", name, ep);
        CHECK(ep0 > 1e-2, "%s: the cache changes nothing in a prefill (%g)", name, ep0);
        free(one);
        /* a bfloat16 window without sinks: every row the student keeps is a window row (the
         * cache takes them from the window as stored), rounded as the teacher's bfloat16 KV
         * cache rounds its rows, so token by token the two agree as in fp32 (1e-4) but for
         * the rounding's steps (test_student.c): tol 1e-4 + 0.05 of the teacher's own
         * bf16-vs-fp32 gap */
        xd_model *w0 = student_of(t, W, 0, N, 1);
        float *tb = malloc((size_t)N * V * sizeof(float));
        if (w0 && tb) {
            CHECK(test_run_pieces_typed(t, XD_KV_BF16, ids, N, NULL, 0, N, tb) == 0 &&
                      test_run_pieces_typed(w0, XD_KV_BF16, ids, N, NULL, 0, N, got) == 0,
                  "bf16 decode: %s", xd_last_error());
            double gap = test_max_abs_diff(tb, ref, (size_t)N * V);
            double eb = test_max_abs_diff(got, tb, (size_t)N * V), tol = 1e-4 + 0.05 * gap;
            printf("%-11s the same without sinks, bfloat16 window vs the teacher's bfloat16 "
                   "cache, token by token: %.2e (tol %.1e; bf16 vs fp32 teacher %.2e)\n", name,
                   eb, tol, gap);
            CHECK(gap > 0 && eb <= tol, "%s: bf16 window %g off the bf16 teacher", name, eb);
        }
        free(tb);
        xd_model_free(w0);
        /* the state: the cache's rows (keys and values) and scores, no more */
        xd_kv *a = xd_kv_create(with, 1), *b = xd_kv_create(without, 1);
        const xd_config *c = &with->cfg;
        size_t expect = 4 * (size_t)c->n_layer * (2 * (size_t)N * c->n_kv_head * c->head_dim + N);
        CHECK(a && b && xd_student_kv_bytes(a) - xd_student_kv_bytes(b) == expect,
              "%s: the cache adds %zu bytes, expected %zu", name,
              a && b ? xd_student_kv_bytes(a) - xd_student_kv_bytes(b) : 0, expect);
        CHECK(xd_student_state_bytes(c, 1000) - xd_student_state_bytes(&without->cfg, 1000) == expect,
              "%s: xd_student_state_bytes leaves the cache out", name);
        xd_kv_free(a);
        xd_kv_free(b);
    }
    xd_model_free(with);
    xd_model_free(without);
    xd_model_free(t);
    free(ref);
    free(got);
}

/* ---- 3. which rows a small cache keeps ---------------------------------------------- */
/* φ(k) of head h in double: z = k_g·A_h + a_h, φ = [softmax(z); softmax(−z)] */
static void phi_k(const xd_layer *L, int h, int hd, const float *k, double *phi) {
    double z[256], mx = -INFINITY, mn = INFINITY, s1 = 0, s2 = 0;
    for (int j = 0; j < hd; j++) {
        double a = L->fmk_b[(size_t)h * hd + j];
        for (int i = 0; i < hd; i++) a += (double)k[i] * L->fmk_A[((size_t)h * hd + i) * hd + j];
        z[j] = a;
        mx = fmax(mx, a);
        mn = fmin(mn, a);
    }
    for (int j = 0; j < hd; j++) {
        phi[j] = exp(z[j] - mx);
        phi[hd + j] = exp(mn - z[j]);
        s1 += phi[j];
        s2 += phi[hd + j];
    }
    for (int j = 0; j < hd; j++) {
        phi[j] /= s1;
        phi[hd + j] /= s2;
    }
}

static void selection(const char *name) {
    xd_model *t = test_load_fixture(name);
    if (!t) return;
    enum { N = 48, W = 3, S = 1, CAP = 4 };
    int V = t->cfg.vocab_size;
    int32_t ids[N];
    test_rand_ids(ids, N, V, 17);
    xd_model *s = student_of(t, W, S, CAP, 0);
    if (!s) { xd_model_free(t); return; }
    test_randomise_mixer(s, 5);
    const xd_config *c = &s->cfg;
    int L = c->n_layer, nh = c->n_head, hd = c->head_dim, kvd = c->n_kv_head * hd;
    int group = nh / c->n_kv_head, dphi = 2 * hd;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    /* the reference: per layer, the positions kept and their scores */
    int keep[64][CAP], nk[64] = {0};
    double ks[64][CAP];
    static float keepk[64][CAP][256]; /* the kept rows' keys (kvd ≤ 256 in the fixtures) */
    CHECK(L <= 64 && kvd <= 256, "fixture too large for the test's tables");
    double margin = INFINITY; /* the smallest gap between a decision's two scores */
    xd_kv *kv = xd_kv_create(s, 1);
    for (int p = 0; p < N; p++) {
        CHECK(xd_forward(s, kv, ids + p, 1, NULL, 0) == 0, "decode: %s", xd_last_error());
        int r = p - W + 1; /* the row that left the window with this step */
        if (r < S) continue;
        for (int l = 0; l < L; l++) {
            /* the row, still in the student's window buffer (rows from position wstart) */
            size_t at_row = ((size_t)l * 2 * W + (size_t)(r - kv->wstart)) * kvd;
            const float *K = (const float *)kv->rk + at_row, *Vr = (const float *)kv->rv + at_row;
            double err = 0, phi[512];
            for (int h = 0; h < nh; h++) {
                phi_k(&s->layers[l], h, hd, K + (h / group) * hd, phi);
                const float *C = kv->C + ((size_t)l * nh + h) * dphi * hd;
                const float *nv = kv->n + ((size_t)l * nh + h) * dphi;
                double qn = 0;
                for (int y = 0; y < dphi; y++) qn += phi[y] * nv[y];
                double den = fmax(fabs(mc.scale * qn), exp(-(double)kv->m[(size_t)l * nh + h])) + mc.eps;
                for (int x = 0; x < hd; x++) {
                    double o = 0;
                    for (int y = 0; y < dphi; y++) o += phi[y] * C[(size_t)y * hd + x];
                    double d = Vr[(h / group) * hd + x] - mc.scale * o / den;
                    err += d * d;
                }
            }
            err /= nh;
            if (nk[l] < CAP) {
                keep[l][nk[l]] = r;
                memcpy(keepk[l][nk[l]], K, (size_t)kvd * sizeof(float));
                ks[l][nk[l]++] = err;
                continue;
            }
            int at = 0;
            for (int j = 1; j < CAP; j++)
                if (ks[l][j] < ks[l][at]) at = j;
            margin = fmin(margin, fabs(err - ks[l][at]) / fmax(err, ks[l][at]));
            if (err > ks[l][at]) {
                keep[l][at] = r;
                memcpy(keepk[l][at], K, (size_t)kvd * sizeof(float));
                ks[l][at] = err;
            }
        }
    }
    /* the student's cached rows are the teacher's keys of the reference's positions */
    int bad = 0, replaced = 0;
    for (int l = 0; l < L; l++) {
        CHECK(kv->ccount[l] == CAP, "%s layer %d: %d cached rows", name, l, kv->ccount[l]);
        for (int j = 0; j < CAP; j++) {
            const float *row = kv->sk + ((size_t)l * (S + CAP) + S + j) * kvd;
            int found = 0;
            for (int i = 0; i < CAP; i++)
                found |= !memcmp(row, keepk[l][i], (size_t)kvd * sizeof(float));
            bad += !found;
        }
        for (int i = 0; i < CAP; i++) replaced += keep[l][i] >= S + CAP;
    }
    printf("%-11s cache of %d rows, W %d, %d positions: %d layers' kept rows vs the double "
           "reference: %d differ (%d of %d kept rows came by replacement; closest decision "
           "%.1e relative)\n", name, CAP, W, N, L, bad, replaced, L * CAP, margin);
    CHECK(bad == 0, "%s: %d cached rows are not the reference's", name, bad);
    CHECK(replaced > 0, "%s: no row was ever replaced: the test does not test the selection",
          name);
    xd_kv_free(kv);
    xd_model_free(s);
    xd_model_free(t);
}

/* ---- 4. exact until the cache drops a row --------------------------------------------- */
static double rows_diff(const float *a, const float *b, int V, int from, int to) {
    return to > from ? test_max_abs_diff(a + (size_t)from * V, b + (size_t)from * V,
                                    (size_t)(to - from) * V) : 0;
}

/* logits of ids[0, N) fed in calls of `piece` tokens (0: one call); cexact of layer 0 */
static int64_t run_calls(const xd_model *s, const int32_t *ids, int N, int piece, float *out) {
    xd_kv *kv = xd_kv_create(s, N);
    int V = s->cfg.vocab_size, ok = kv != NULL;
    for (int at = 0, len; ok && at < N; at += len) {
        len = piece && piece < N - at ? piece : N - at;
        ok = xd_forward(s, kv, ids + at, len, out + (size_t)at * V, 1) == 0;
    }
    CHECK(ok, "student forward: %s", xd_last_error());
    int64_t e = ok ? kv->cexact[0] : -1;
    for (int l = 1; ok && l < s->cfg.n_layer; l++)
        CHECK(kv->cexact[l] == e, "layer %d: cexact %lld, layer 0 %lld", l,
              (long long)kv->cexact[l], (long long)e);
    xd_kv_free(kv);
    return e;
}

static void exact_until_dropped(const char *name) {
    xd_model *t = test_load_fixture(name);
    if (!t) return;
    enum { N = 40, W = 5, S = 2, CAP = 4 };
    int V = t->cfg.vocab_size;
    int32_t ids[N];
    test_rand_ids(ids, N, V, 23);
    float *ref = teacher_logits(t, ids, N), *got = malloc((size_t)N * V * sizeof(float));
    xd_model *big = student_of(t, W, S, N, 0), *small = student_of(t, W, S, CAP, 0);
    if (big && small) {
        test_randomise_mixer(big, 3);
        test_randomise_mixer(small, 3);
        big->cfg.exact_in_window = small->cfg.exact_in_window = 1;
        /* tolerance 1e-4 as in full_recall: two attention kernels' summation orders */
        int64_t e1 = run_calls(big, ids, N, 1, got);
        double d1 = rows_diff(got, ref, V, 0, N);
        int64_t e2 = run_calls(big, ids, N, 0, got);
        double d2 = rows_diff(got, ref, V, 0, N);
        int64_t e3 = run_calls(big, ids, N, 7, got);
        double d3 = rows_diff(got, ref, V, 0, N);
        printf("%-11s randomised mixer, cache of %d rows (never full): max |diff| vs the "
               "teacher: decoding %.2e, one prefill %.2e, pieces of 7 %.2e (tol 1e-4)\n",
               name, N, d1, d2, d3);
        CHECK(d1 <= 1e-4 && d2 <= 1e-4 && d3 <= 1e-4, "%s: a cache that never fills is not "
              "the teacher (%g %g %g)", name, d1, d2, d3);
        CHECK(e1 == INT64_MAX && e2 == INT64_MAX && e3 == INT64_MAX,
              "%s: a cache that never fills marks a drop", name);
        /* a cache of CAP rows: the (CAP+1)-th row to leave the window (position S + CAP,
         * leaving once the query at S + CAP + W is next) is the first one dropped */
        int64_t x = S + CAP + W, xp = (x - 1) / 16 * 16 + 16; /* its piece's end */
        int64_t f1 = run_calls(small, ids, N, 1, got);
        double in1 = rows_diff(got, ref, V, 0, (int)x), out1 = rows_diff(got, ref, V, (int)x, N);
        int64_t f2 = run_calls(small, ids, N, 0, got);
        double in2 = rows_diff(got, ref, V, 0, (int)xp), out2 = rows_diff(got, ref, V, (int)xp, N);
        printf("%-11s cache of %d rows: decoding exact until %lld (expected %lld): %.2e, after "
               "%.2e; one prefill until %lld (expected %lld): %.2e, after %.2e\n", name, CAP,
               (long long)f1, (long long)x, in1, out1, (long long)f2, (long long)xp, in2, out2);
        CHECK(f1 == x && f2 == xp, "%s: the first drop marked at %lld / %lld", name,
              (long long)f1, (long long)f2);
        CHECK(in1 <= 1e-4 && in2 <= 1e-4, "%s: before the first drop %g / %g off the teacher",
              name, in1, in2);
        CHECK(out1 > 1e-2 && out2 > 1e-2, "%s: after the first drop still the teacher (%g / %g)",
              name, out1, out2);
    }
    xd_model_free(big);
    xd_model_free(small);
    xd_model_free(t);
    free(ref);
    free(got);
}

/* ---- 5. copy and reset ----------------------------------------------------------------- */
static void copy_reset(const char *name) {
    xd_model *t = test_load_fixture(name);
    if (!t) return;
    enum { N = 40, W = 5, S = 2, CAP = 4, NR = 12 };
    int V = t->cfg.vocab_size;
    int32_t ids[N];
    test_rand_ids(ids, N, V, 29);
    xd_model *s = student_of(t, W, S, CAP, 0);
    float *a = malloc((size_t)NR * V * 4), *b = malloc((size_t)NR * V * 4);
    xd_kv *x = s ? xd_kv_create(s, 1) : NULL, *y = s ? xd_kv_create(s, 1) : NULL;
    CHECK(x && y, "create: %s", xd_last_error());
    if (x && y) {
        test_randomise_mixer(s, 7);
        s->cfg.exact_in_window = 1;
        /* prefixes of 8 (nothing dropped) and 24 tokens (rows dropped), each copied over a
         * state holding the other, then the same NR tokens in both */
        const int pre[2] = {8, 24};
        double e[2], er;
        for (int i = 0; i < 2; i++) {
            xd_kv_reset(x);
            xd_kv_reset(y);
            CHECK(xd_forward(s, x, ids, pre[i], NULL, 0) == 0 &&
                      xd_forward(s, y, ids + 3, pre[1 - i], NULL, 0) == 0,
                  "prefixes: %s", xd_last_error());
            CHECK((x->cexact[0] == INT64_MAX) == (i == 0) && (y->cexact[0] == INT64_MAX) == (i == 1),
                  "%s: the prefixes do not bracket the first drop", name);
            CHECK(xd_kv_copy(y, x) == 0, "copy: %s", xd_last_error());
            CHECK(xd_forward(s, x, ids + pre[i], NR, a, 1) == 0 &&
                      xd_forward(s, y, ids + pre[i], NR, b, 1) == 0,
                  "continue: %s", xd_last_error());
            e[i] = test_max_abs_diff(a, b, (size_t)NR * V);
        }
        /* reset then rerun, against a fresh state */
        xd_kv_reset(x);
        xd_kv *f = xd_kv_create(s, 1);
        CHECK(f && xd_forward(s, x, ids, NR, a, 1) == 0 && xd_forward(s, f, ids, NR, b, 1) == 0,
              "rerun: %s", xd_last_error());
        er = test_max_abs_diff(a, b, (size_t)NR * V);
        xd_kv_free(f);
        printf("%-11s cache of %d rows: a copied state continues %.1e / %.1e away (before / "
               "after the first drop), a reset one reruns %.1e away (bit for bit expected)\n",
               name, CAP, e[0], e[1], er);
        CHECK(e[0] == 0 && e[1] == 0 && er == 0, "%s: copy or reset loses state", name);
    }
    xd_kv_free(x);
    xd_kv_free(y);
    free(a);
    free(b);
    xd_model_free(s);
    xd_model_free(t);
}

/* ---- 6. config -------------------------------------------------------------------- */
static void config(void) {
    xd_model *t = test_load_fixture("tiny-llama");
    if (!t) return;
    xd_model *s = student_of(t, 4, 1, 12, 0);
    char dir[] = "/tmp/xd_sc_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[600];
    snprintf(path, sizeof path, "%s/st", dir);
    CHECK(s && xd_model_save(s, path) == 0, "save: %s", xd_last_error());
    xd_model *back = xd_model_load(path);
    CHECK(back && back->cfg.sparse_cache == 12, "load: %s", back ? "sparse_cache lost" : xd_last_error());
    xd_model_free(back);
    char cfg[700], cmd[1500];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    static const char *const edits[][2] = {
        /* tiny-llama: max_ctx 128, window 4, sinks 1: at most 123 rows ever leave */
        {"s/\"sparse_cache\": 12/\"sparse_cache\": 124/", "larger than the context"},
        {"s/\"sparse_cache\": 124/\"sparse_cache\": -1/", "out of range"},
        {"s/\"sparse_cache\": -1/\"sparse_cache\": \"many\"/", "expected an integer"},
    };
    for (int e = 0; e < 3; e++) {
        snprintf(cmd, sizeof cmd, "sed -i '%s' %s", edits[e][0], cfg);
        CHECK(system(cmd) == 0, "sed");
        xd_model *x = xd_model_load(path);
        CHECK(!x && strstr(xd_last_error(), "sparse_cache") && strstr(xd_last_error(), edits[e][1]),
              "%s: %s", edits[e][0], x ? "accepted" : xd_last_error());
        printf("config edit %s: %s\n", edits[e][0], x ? "accepted" : xd_last_error());
        xd_model_free(x);
    }
    /* the command line */
    char out[4096];
    snprintf(cmd, sizeof cmd, "convert %s -o %s/c --window 4 --sparse-cache -3",
             FIXTURE("tiny-llama.gguf"), dir);
    CHECK(test_cli_run(cmd, out, sizeof out, TEST_CLI_STDERR) == 2 && strstr(out, "--sparse-cache"),
          "convert --sparse-cache -3: %s", out);
    snprintf(cmd, sizeof cmd, "convert %s -o %s/c --window 4 --sparse-cache 500",
             FIXTURE("tiny-llama.gguf"), dir);
    CHECK(test_cli_run(cmd, out, sizeof out, TEST_CLI_STDERR) != 0 &&
              strstr(out, "sparse_cache") && strstr(out, "larger than the context"),
          "convert --sparse-cache 500 (max_ctx 128): %s", out);
    snprintf(cmd, sizeof cmd, "convert %s -o %s/c --window 4 --sparse-cache 24",
             FIXTURE("tiny-llama.gguf"), dir);
    CHECK(test_cli_run(cmd, out, sizeof out, TEST_CLI_STDERR) == 0, "convert: %s", out);
    snprintf(cmd, sizeof cmd, "inspect %s/c", dir);
    CHECK(test_cli_run(cmd, out, sizeof out, TEST_CLI_STDOUT) == 0 &&
              strstr(out, "sparse cache: 24 rows per layer"), "inspect: %s", out);
    /* the delta rule has no normaliser to recall with: refused */
    xd_student_opts o;
    xd_student_defaults(&o);
    o.window = 4;
    o.sparse_cache = 8;
    o.memory_rule = XD_MEMORY_DELTA;
    xd_model *d = xd_student_convert(t, &o);
    CHECK(!d && strstr(xd_last_error(), "sparse_cache"), "delta + cache: %s",
          d ? "accepted" : xd_last_error());
    xd_model_free(d);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "rm");
    xd_model_free(s);
    xd_model_free(t);
}

int main(void) {
    xd_set_threads(2);
    readout();
    full_recall("tiny-llama");
    full_recall("tiny-qwen3");
    selection("tiny-llama");
    selection("tiny-olmo2");
    exact_until_dropped("tiny-llama");
    exact_until_dropped("tiny-qwen3");
    copy_reset("tiny-llama");
    config();
    return test_summary("test_sparse_cache");
}
