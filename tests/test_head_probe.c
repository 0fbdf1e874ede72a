/* The retrieval-head probe (model/head_probe.h) and the forward's attention
 * observer (model/attn_observer.h):
 *  1. probes: deterministic for a seed, exactly the asked length, the
 *     needle's value where recorded and beyond the window, formats, kinds and
 *     depths varied; a length too short is refused naming --lengths;
 *  2. the observer changes no logit (bit-identical with and without) and
 *     refuses a student;
 *  3. the scorer on tiny-llama against independent computations:
 *     - layer 0, from the weights (embedding, RMSNorm, W_Q, W_K, RoPE) in
 *       double: score, argmax hit and beyond-window mass within 1e-5 (the
 *       forward's q and k are fp32);
 *     - layer 1, from q and K captured by the test's own observer over the
 *       same calls, in double: within 1e-12 (only summation order differs);
 *     - a head with W_Q = 0 attends uniformly: score mean 1/(t+1), mass
 *       (t−W−S+1)/(t+1), exactly (1e-12);
 *  4. the ranking: sorted, deterministic, the JSON file; errors for bad
 *     options, a student, and a teacher that answers nothing;
 *  5. the CLI's errors name the option or the file;
 *  6. the real teacher (when installed): 3 short probes, answered, and a head
 *     that retrieves. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "model/attn_observer.h"
#include "model/head_probe.h"
#include "model/model.h"
#include "model/student.h"
#include "test.h"
#include "xdistill.h"

#define TINY FIXTURE("tiny-llama.gguf")

static int same_probe(const xd_probe *a, const xd_probe *b) {
    return a->n_tokens == b->n_tokens && a->n_answer == b->n_answer &&
           a->value_pos == b->value_pos && a->format == b->format && a->kind == b->kind &&
           !memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) &&
           !strcmp(a->value, b->value) && !strcmp(a->question, b->question);
}

static char *decode(const xd_tokenizer *t, const int32_t *ids, int n) {
    char *s = NULL;
    size_t len;
    if (xd_tokenizer_decode(t, ids, (size_t)n, &s, &len)) return NULL;
    return s;
}

/* ---- 1. probes -------------------------------------------------------------------- */

static void check_probes(const xd_tokenizer *t, const char *name, int W, const int *lengths, int nl,
                         int N) {
    int fmt_seen[XD_PROBE_FORMATS] = {0}, kind_seen[XD_PROBE_KINDS] = {0}, bad = 0;
    double dmin = 1, dmax = 0;
    for (int i = 0; i < N; i++) {
        int len = lengths[i % nl];
        xd_probe p, q, other;
        int rc = xd_probe_make(t, len, W, 42, i, &p);
        CHECK(rc == 0, "%s probe %d: %s", name, i, xd_last_error());
        if (rc) continue;
        CHECK(xd_probe_make(t, len, W, 42, i, &q) == 0 && same_probe(&p, &q),
              "%s probe %d: not deterministic", name, i);
        CHECK(xd_probe_make(t, len, W, 43, i, &other) == 0 && !same_probe(&p, &other),
              "%s probe %d: seed 43 gives the same probe", name, i);
        xd_probe_free(&q);
        xd_probe_free(&other);
        bad += p.n_tokens != len;
        /* the value's tokens are the answer's, decode to " V", and lie beyond the window */
        bad += memcmp(p.tokens + p.value_pos, p.answer, (size_t)p.n_answer * sizeof *p.answer) != 0;
        bad += (p.n_tokens - 1) - (p.value_pos + p.n_answer - 1) < W;
        bad += !(p.needle_pos <= p.value_pos &&
                 p.value_pos + p.n_answer <= p.needle_pos + p.needle_len);
        char *v = decode(t, p.answer, p.n_answer), *text = decode(t, p.tokens, p.n_tokens);
        char want[64];
        snprintf(want, sizeof want, " %s", p.value);
        CHECK(v && !strcmp(v, want), "%s probe %d: value decodes to '%s', not '%s'", name, i,
              v ? v : "(null)", want);
        /* the prompt ends with the question; none of the eval suite's fillers */
        CHECK(text && strstr(text, "\n\nQuestion: ") && strstr(text, p.question) &&
                  !strcmp(text + strlen(text) - strlen(p.question), p.question) &&
                  !strstr(text, "pass key") && !strstr(text, "grass is green"),
              "%s probe %d: text '%s'", name, i, text ? text : "(null)");
        /* a number's digits occur nowhere else, except in distractor values of a key = value block */
        if (p.kind == XD_PROBE_NUMBER && p.format != 2 && text)
            CHECK(strstr(text, p.value) && !strstr(strstr(text, p.value) + 1, p.value),
                  "%s probe %d: value %s occurs twice", name, i, p.value);
        free(v);
        free(text);
        fmt_seen[p.format]++;
        kind_seen[p.kind]++;
        if (p.depth < dmin) dmin = p.depth;
        if (p.depth > dmax) dmax = p.depth;
        xd_probe_free(&p);
    }
    CHECK(bad == 0, "%s: %d length/position violations", name, bad);
    int nf = 0, nk = 0;
    for (int f = 0; f < XD_PROBE_FORMATS; f++) nf += fmt_seen[f] > 0;
    for (int k = 0; k < XD_PROBE_KINDS; k++) nk += kind_seen[k] > 0;
    CHECK(nf == XD_PROBE_FORMATS, "%s: only %d formats in %d probes", name, nf, N);
    CHECK(nk == XD_PROBE_KINDS, "%s: only %d kinds in %d probes", name, nk, N);
    CHECK(dmin < 0.25 && dmax > 0.75, "%s: depths only in [%.2f, %.2f]", name, dmin, dmax);
    printf("%s: %d probes, %d formats, %d kinds, depths %.2f…%.2f\n", name, N, nf, nk, dmin, dmax);
}

static void test_generator(const xd_tokenizer *bytes, const xd_tokenizer *bpe) {
    int l1[] = {224, 256, 301, 400}, l2[] = {150, 190, 240};
    check_probes(bytes, "byte tokenizer", 16, l1, 4, 36);
    check_probes(bpe, "BPE tokenizer", 24, l2, 3, 36);
    /* different indices, different probes */
    xd_probe a, b;
    CHECK(xd_probe_make(bytes, 256, 16, 7, 0, &a) == 0 && xd_probe_make(bytes, 256, 16, 7, 1, &b) == 0 &&
              !same_probe(&a, &b), "probes 0 and 1 are the same");
    xd_probe_free(&a);
    xd_probe_free(&b);
    /* too short: 90 bytes cannot hold the instruction, the needle and the question */
    CHECK(xd_probe_make(bytes, 90, 16, 7, 0, &a) == -1 && strstr(xd_last_error(), "too short") &&
              strstr(xd_last_error(), "--lengths"), "short length: '%s'", xd_last_error());
    CHECK(a.tokens == NULL, "a failed probe holds tokens");
    CHECK(xd_probe_make(bytes, 256, 0, 7, 0, &a) == -1 && strstr(xd_last_error(), "window"),
          "window 0: '%s'", xd_last_error());
}

/* ---- 2. the observer -------------------------------------------------------------- */

typedef struct {
    int calls, layers_seen;
    int64_t pos0_sum;
} count_obs;

static int count_fn(void *u, const xd_attn_view *v) {
    count_obs *c = u;
    c->calls++;
    c->layers_seen |= 1 << v->layer;
    c->pos0_sum += v->pos0;
    return 0;
}

static int stop_fn(void *u, const xd_attn_view *v) {
    (void)u;
    (void)v;
    return 1;
}

static void test_observer_bits(xd_model *m) {
    const xd_config *c = xd_model_config(m);
    int V = c->vocab_size, n = 150;
    int32_t ids[151];
    for (int i = 0; i < n + 1; i++) ids[i] = (int32_t)((i * 37 + 11) % 256);
    float *a = malloc((size_t)(n + 1) * V * sizeof(float)), *b = malloc((size_t)(n + 1) * V * sizeof(float));
    xd_kv *k1 = xd_kv_create(m, n + 1), *k2 = xd_kv_create(m, n + 1);
    count_obs co = {0, 0, 0};
    xd_attn_observer obs = {count_fn, &co};
    /* prefill of n, then one decode step, with and without the observer */
    CHECK(xd_forward(m, k1, ids, n, a, 1) == 0 && xd_forward(m, k1, ids + n, 1, a + (size_t)n * V, 0) == 0,
          "forward: %s", xd_last_error());
    CHECK(xd_forward_observed(m, k2, ids, n, b, 1, &obs) == 0 &&
              xd_forward_observed(m, k2, ids + n, 1, b + (size_t)n * V, 0, &obs) == 0,
          "observed forward: %s", xd_last_error());
    CHECK(!memcmp(a, b, (size_t)(n + 1) * V * sizeof(float)), "the observer changed the logits");
    CHECK(!memcmp(k1->k, k2->k, (size_t)c->n_layer * (n + 1) * k1->kv_dim * sizeof(float)) &&
              !memcmp(k1->v, k2->v, (size_t)c->n_layer * (n + 1) * k1->kv_dim * sizeof(float)),
          "the observer changed the cache");
    CHECK(co.calls == 2 * c->n_layer && co.layers_seen == (1 << c->n_layer) - 1 &&
              co.pos0_sum == (int64_t)n * c->n_layer,
          "observer calls %d, layers %#x, pos0 sum %lld", co.calls, co.layers_seen,
          (long long)co.pos0_sum);
    /* an observer that stops the forward makes it fail */
    xd_attn_observer stop = {stop_fn, NULL};
    xd_kv_reset(k2);
    CHECK(xd_forward_observed(m, k2, ids, 4, b, 0, &stop) == -1 && strstr(xd_last_error(), "observer"),
          "stopping observer: '%s'", xd_last_error());
    xd_kv_free(k1);
    xd_kv_free(k2);
    free(a);
    free(b);
}

/* ---- 3. the scorer against independent computations ------------------------------- */

/* A hand-built probe: the bytes of text, the value the bytes at value_pos … +m−1. */
static xd_probe hand_probe(const char *text, int value_pos, int m) {
    xd_probe p;
    memset(&p, 0, sizeof p);
    p.n_tokens = (int)strlen(text);
    p.tokens = malloc((size_t)p.n_tokens * sizeof *p.tokens);
    for (int i = 0; i < p.n_tokens; i++) p.tokens[i] = (unsigned char)text[i];
    p.n_answer = m;
    p.answer = malloc((size_t)m * sizeof *p.answer);
    memcpy(p.answer, p.tokens + value_pos, (size_t)m * sizeof *p.answer);
    p.value_pos = p.needle_pos = value_pos;
    p.needle_len = m;
    return p;
}

/* Retrieval score, hit and mass of one head from scores s[j] = scale·q·k_j, j = 0 … t. */
static void head_stats(const double *s, int64_t t, int64_t target, int W, int S, double *score,
                       double *hit, double *mass, int *counted) {
    double mx = s[0];
    int64_t am = 0;
    for (int64_t j = 1; j <= t; j++)
        if (s[j] > mx) { mx = s[j]; am = j; }
    double Z = 0, far = 0;
    for (int64_t j = 0; j <= t; j++) Z += exp(s[j] - mx);
    for (int64_t j = 0; j <= t; j++)
        if (j >= S && t - j >= W) far += exp(s[j] - mx);
    *mass += far / Z;
    if (t - target >= W) {
        *score += exp(s[target] - mx) / Z;
        *hit += am == target;
        (*counted)++;
    }
}

/* Layer 0's q and k from the weights, in double: x = embed[tok], RMSNorm, W x, RoPE
 * (the angle rounded to float as the forward does). */
static void layer0_qk(const xd_model *m, int32_t tok, int64_t pos, double *q, double *k) {
    const xd_config *c = &m->cfg;
    int d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    const float *e = m->embed + (size_t)tok * d;
    const xd_layer *L = &m->layers[0];
    double ss = 0, x[1024];
    for (int i = 0; i < d; i++) ss += (double)e[i] * e[i];
    double r = 1.0 / sqrt(ss / d + (double)c->norm_eps);
    for (int i = 0; i < d; i++) x[i] = (double)e[i] * r * L->attn_norm[i];
    for (int o = 0; o < qd + kvd; o++) {
        const float *w = o < qd ? L->wq + (size_t)o * d : L->wk + (size_t)(o - qd) * d;
        double acc = 0;
        for (int i = 0; i < d; i++) acc += (double)w[i] * x[i];
        if (o < qd) q[o] = acc;
        else k[o - qd] = acc;
    }
    for (int pass = 0; pass < 2; pass++) {
        double *v = pass ? k : q;
        int nh = pass ? c->n_kv_head : c->n_head;
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) {
                float a = (float)pos * m->rope_inv_freq[i];
                double cs = cos((double)a), sn = sin((double)a);
                double x0 = v[h * hd + i], x1 = v[h * hd + i + hd / 2];
                v[h * hd + i] = x0 * cs - x1 * sn;
                v[h * hd + i + hd / 2] = x1 * cs + x0 * sn;
            }
    }
}

/* Captures one layer's q rows (answer queries) and the K cache at each call. */
typedef struct {
    int layer, head, W, S;
    const xd_probe *p;
    double score, hit, mass;
    int counted;
} capture;

static int capture_fn(void *u, const xd_attn_view *v) {
    capture *c = u;
    if (v->layer != c->layer) return 0;
    int hd = v->head_dim, g = v->n_head / v->n_kv_head, kvd = v->n_kv_head * hd;
    int64_t q0 = c->p->n_tokens - 1;
    double *s = malloc((size_t)(v->pos0 + v->n) * sizeof *s);
    for (int r = 0; r < v->n; r++) {
        int64_t t = v->pos0 + r;
        if (t < q0 || t >= q0 + c->p->n_answer) continue;
        const float *q = v->q + (size_t)r * v->n_head * hd + (size_t)c->head * hd;
        for (int64_t j = 0; j <= t; j++) {
            const float *k = v->k + (size_t)j * kvd + (size_t)(c->head / g) * hd;
            double acc = 0;
            for (int i = hd - 1; i >= 0; i--) acc += (double)q[i] * k[i]; /* another order */
            s[j] = acc / sqrt((double)hd);
        }
        head_stats(s, t, c->p->value_pos + (t - q0), c->W, c->S, &c->score, &c->hit, &c->mass,
                   &c->counted);
    }
    free(s);
    return 0;
}

static void test_scorer(xd_model *m) {
    const xd_config *c = &m->cfg;
    int H = c->n_head, LH = c->n_layer * H, W = 24, S = 4;
    /* the needle "7305" at bytes 30 … 33, the answer queries at 119 … 122 */
    const char *text = "Some words first. The code is 7305 and then a long stretch of filler "
                       "text that keeps going on and on. What is the code? ";
    xd_probe p = hand_probe(text, 30, 4);
    CHECK(p.n_tokens == 120 && p.tokens[30] == '7' && p.answer[3] == '5', "hand probe layout");
    double *sc = malloc((size_t)LH * 3 * sizeof(double)), *hit = sc + LH, *mass = hit + LH;
    int ok = -1;
    CHECK(xd_probe_score(m, NULL, &p, W, S, sc, hit, mass, &ok) == 0, "score: %s", xd_last_error());
    CHECK(ok == 0 || ok == 1, "correct flag %d", ok);
    for (int i = 0; i < LH; i++)
        CHECK(sc[i] >= 0 && sc[i] <= 1 && mass[i] >= 0 && mass[i] <= 1 + 1e-12 && hit[i] >= 0 &&
                  hit[i] <= 1, "head %d: score %g, mass %g, hit %g", i, sc[i], mass[i], hit[i]);

    /* layer 0, every head, from the weights */
    int T = p.n_tokens + p.n_answer - 1, hd = c->head_dim, qd = H * hd, kvd = c->n_kv_head * hd;
    int32_t *seq = malloc((size_t)T * sizeof *seq);
    memcpy(seq, p.tokens, (size_t)p.n_tokens * sizeof *seq);
    memcpy(seq + p.n_tokens, p.answer, (size_t)(p.n_answer - 1) * sizeof *seq);
    double *Q = malloc((size_t)T * qd * sizeof *Q), *K = malloc((size_t)T * kvd * sizeof *K);
    for (int t = 0; t < T; t++) layer0_qk(m, seq[t], t, Q + (size_t)t * qd, K + (size_t)t * kvd);
    double worst = 0, *s = malloc((size_t)T * sizeof *s);
    for (int h = 0; h < H; h++) {
        double r_s = 0, r_h = 0, r_m = 0;
        int cnt = 0;
        for (int i = 0; i < p.n_answer; i++) {
            int64_t t = p.n_tokens - 1 + i;
            for (int64_t j = 0; j <= t; j++) {
                double acc = 0;
                for (int e = 0; e < hd; e++)
                    acc += Q[(size_t)t * qd + (size_t)h * hd + e] *
                           K[(size_t)j * kvd + (size_t)(h / (H / c->n_kv_head)) * hd + e];
                s[j] = acc / sqrt((double)hd);
            }
            head_stats(s, t, p.value_pos + i, W, S, &r_s, &r_h, &r_m, &cnt);
        }
        CHECK(cnt == p.n_answer, "all answer tokens are beyond the window");
        r_s /= cnt;
        r_h /= cnt;
        r_m /= p.n_answer;
        double e = fmax(fabs(r_s - sc[h]), fabs(r_m - mass[h]));
        if (e > worst) worst = e;
        CHECK(fabs(r_s - sc[h]) <= 1e-5 && fabs(r_m - mass[h]) <= 1e-5 && r_h == hit[h],
              "layer 0 head %d: score %.8f vs %.8f, mass %.8f vs %.8f, hit %g vs %g", h, sc[h], r_s,
              mass[h], r_m, hit[h], r_h);
    }
    printf("scorer vs weights (layer 0, %d heads): max abs diff %.2e (tol 1e-5)\n", H, worst);

    /* layer 1, head 3, from the observer's q and K over the same calls */
    capture cap = {1, 3, W, S, &p, 0, 0, 0, 0};
    xd_attn_observer obs = {capture_fn, &cap};
    xd_kv *kv = xd_kv_create(m, T);
    CHECK(xd_forward_observed(m, kv, p.tokens, p.n_tokens, NULL, 0, &obs) == 0, "%s", xd_last_error());
    for (int i = 0; i + 1 < p.n_answer; i++)
        CHECK(xd_forward_observed(m, kv, &p.answer[i], 1, NULL, 0, &obs) == 0, "%s", xd_last_error());
    int at = 1 * H + 3;
    CHECK(cap.counted == p.n_answer, "counted %d", cap.counted);
    CHECK(fabs(cap.score / cap.counted - sc[at]) <= 1e-12 &&
              fabs(cap.mass / p.n_answer - mass[at]) <= 1e-12 && cap.hit / cap.counted == hit[at],
          "layer 1 head 3: score %.15f vs %.15f, mass %.15f vs %.15f", sc[at],
          cap.score / cap.counted, mass[at], cap.mass / p.n_answer);
    printf("scorer vs observer (layer 1 head 3): %.3e, %.3e (tol 1e-12)\n",
           fabs(cap.score / cap.counted - sc[at]), fabs(cap.mass / p.n_answer - mass[at]));

    /* W_Q = 0 for layer 1 head 2: uniform attention, known in closed form */
    xd_layer *L1 = &m->layers[1];
    size_t rows = (size_t)hd * c->d_model;
    float *saved = malloc(rows * sizeof *saved);
    memcpy(saved, L1->wq + 2 * rows, rows * sizeof *saved);
    memset(L1->wq + 2 * rows, 0, rows * sizeof *saved);
    CHECK(xd_probe_score(m, kv, &p, W, S, sc, hit, mass, &ok) == 0, "score: %s", xd_last_error());
    memcpy(L1->wq + 2 * rows, saved, rows * sizeof *saved);
    double us = 0, um = 0;
    for (int i = 0; i < p.n_answer; i++) {
        int64_t t = p.n_tokens - 1 + i;
        us += 1.0 / (double)(t + 1);
        um += (double)(t - W - S + 1) / (double)(t + 1);
    }
    us /= p.n_answer;
    um /= p.n_answer;
    at = 1 * H + 2;
    CHECK(fabs(sc[at] - us) <= 1e-12 && fabs(mass[at] - um) <= 1e-12 && hit[at] == 0,
          "uniform head: score %.15f vs %.15f, mass %.15f vs %.15f, hit %g", sc[at], us, mass[at],
          um, hit[at]);
    /* a cache too small is refused, not overrun */
    xd_kv *small = xd_kv_create(m, 16);
    CHECK(xd_probe_score(m, small, &p, W, S, sc, hit, mass, &ok) == -1, "small cache accepted");
    xd_kv_free(small);
    xd_kv_free(kv);
    free(saved);
    free(s);
    free(Q);
    free(K);
    free(seq);
    free(sc);
    xd_probe_free(&p);
}

/* ---- 4. the ranking --------------------------------------------------------------- */

static void test_ranking(xd_model *m) {
    int lengths[] = {224, 256};
    xd_head_probe_opts o;
    xd_head_probe_defaults(&o);
    o.window = 16;
    o.n_probes = 5;
    o.lengths = lengths;
    o.n_lengths = 2;
    o.score_all = 1;
    xd_head_ranking a, b;
    CHECK(xd_head_probe_rank(m, &o, &a) == 0, "rank: %s", xd_last_error());
    CHECK(xd_head_probe_rank(m, &o, &b) == 0, "rank: %s", xd_last_error());
    const xd_config *c = xd_model_config(m);
    CHECK(a.n_heads == c->n_layer * c->n_head && a.n_probes == 5 && a.n_scored == 5,
          "%d heads, %d probes, %d scored", a.n_heads, a.n_probes, a.n_scored);
    int sorted = 1, seen[64] = {0};
    for (int i = 0; i < a.n_heads; i++) {
        const xd_head_score *h = &a.heads[i];
        seen[h->layer * c->n_head + h->head]++;
        if (i && (a.heads[i - 1].score < h->score ||
                  (a.heads[i - 1].score == h->score && a.heads[i - 1].beyond_mass < h->beyond_mass)))
            sorted = 0;
    }
    CHECK(sorted, "heads not sorted by score, then beyond-window mass");
    for (int i = 0; i < a.n_heads; i++) CHECK(seen[i] == 1, "head %d listed %d times", i, seen[i]);
    CHECK(!memcmp(a.heads, b.heads, (size_t)a.n_heads * sizeof *a.heads) &&
              !memcmp(a.probe_correct, b.probe_correct, 5 * sizeof(int)),
          "ranking not deterministic");
    CHECK(a.probe_length[0] == 224 && a.probe_length[1] == 256, "lengths used in turn");
    char path[256];
    snprintf(path, sizeof path, "/tmp/xd_test_heads_%d.json", (int)getpid());
    CHECK(xd_head_ranking_save(&a, &o, TINY, path) == 0, "save: %s", xd_last_error());
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL, "%s: %s", path, je.text);
    if (j) {
        json_t *hs = json_object_get(j, "heads");
        CHECK(json_integer_value(json_object_get(j, "window")) == 16 &&
                  json_integer_value(json_object_get(j, "probes")) == 5 &&
                  json_integer_value(json_object_get(j, "seed")) == 1234 &&
                  json_is_real(json_object_get(j, "teacher_accuracy")) &&
                  !strcmp(json_string_value(json_object_get(j, "teacher")), TINY) &&
                  json_array_size(hs) == (size_t)a.n_heads &&
                  json_array_size(json_object_get(j, "probe_results")) == 5,
              "heads.json fields");
        json_t *h0 = json_array_get(hs, 0);
        CHECK(json_integer_value(json_object_get(h0, "layer")) == a.heads[0].layer &&
                  json_integer_value(json_object_get(h0, "head")) == a.heads[0].head &&
                  fabs(json_real_value(json_object_get(h0, "score")) - a.heads[0].score) < 1e-9 &&
                  json_is_real(json_object_get(h0, "beyond_mass")),
              "heads.json first head");
        json_decref(j);
    }
    /* the K best as a global-head list (convert --global-heads FILE.json:K / auto:K):
     * the first K of the ranking, sorted by (layer, head), from memory and from the file */
    enum { K = 5 };
    xd_head_ref top[K], from_file[K];
    CHECK(xd_head_ranking_top(&a, K, 0, top) == K, "top: %s", xd_last_error());
    CHECK(xd_head_ranking_load_top(path, K, 0, c->n_layer, c->n_head, from_file) == K, "load top: %s",
          xd_last_error());
    int in_rank = 1, ordered = 1;
    for (int i = 0; i < K; i++) {
        int found = 0;
        for (int r = 0; r < K; r++) found |= a.heads[r].layer == top[i].layer && a.heads[r].head == top[i].head;
        in_rank &= found;
        if (i) ordered &= top[i - 1].layer < top[i].layer ||
                          (top[i - 1].layer == top[i].layer && top[i - 1].head < top[i].head);
    }
    CHECK(in_rank && ordered, "top %d: not the ranking's first %d heads in (layer, head) order", K, K);
    CHECK(!memcmp(top, from_file, sizeof top), "the file's top %d differs from the ranking's", K);
    { /* K KV groups (Kg): the first K distinct (layer, KV head) pairs of the ranking, each
       * with all its query heads, sorted; the same from the file */
        int grp = c->n_head / c->n_kv_head, G = 2;
        xd_head_ref gt[XD_MAX_GLOBAL_HEADS], gf[XD_MAX_GLOBAL_HEADS], want[XD_MAX_GLOBAL_HEADS];
        int nw = 0;
        for (int i = 0; i < a.n_heads && nw < G * grp; i++) {
            int l = a.heads[i].layer, g = a.heads[i].head / grp, seen = 0;
            for (int j = 0; j < nw; j++) seen |= want[j].layer == l && want[j].head / grp == g;
            for (int h = 0; !seen && h < grp; h++) want[nw++] = (xd_head_ref){(int16_t)l, (int16_t)(g * grp + h)};
        }
        /* hand sort by (layer, head) */
        for (int i = 0; i < nw; i++)
            for (int j = i + 1; j < nw; j++)
                if (want[j].layer < want[i].layer || (want[j].layer == want[i].layer && want[j].head < want[i].head)) {
                    xd_head_ref t = want[i];
                    want[i] = want[j];
                    want[j] = t;
                }
        int m = xd_head_ranking_top(&a, G, grp, gt), mf = xd_head_ranking_load_top(path, G, grp, c->n_layer, c->n_head, gf);
        CHECK(grp > 1 && m == G * grp && mf == m && !memcmp(gt, want, sizeof *gt * (size_t)nw) &&
                  !memcmp(gf, want, sizeof *gf * (size_t)nw),
              "top %d KV groups (group %d): %d / %d heads, expected %d: %s", G, grp, m, mf, nw, xd_last_error());
        int units = c->n_layer * c->n_kv_head;
        CHECK(xd_head_ranking_top(&a, units + 1, grp, gt) == -1 && strstr(xd_last_error(), "KV groups"),
              "more KV groups than the model has: %s", xd_last_error());
        printf("  top %d KV groups: %d heads (%d query heads per KV head), from the file the same\n", G, m, grp);
    }
    CHECK(xd_head_ranking_top(&a, 0, 0, top) == -1 && xd_head_ranking_top(&a, a.n_heads + 1, 0, top) == -1,
          "K out of range accepted");
    CHECK(xd_head_ranking_load_top(path, K, 0, 1, 1, from_file) == -1 && strstr(xd_last_error(), path) &&
              strstr(xd_last_error(), "heads["),
          "a ranking of a bigger model accepted: %s", xd_last_error());
    CHECK(xd_head_ranking_load_top("/nonexistent/heads.json", K, 0, c->n_layer, c->n_head, from_file) == -1 &&
              strstr(xd_last_error(), "/nonexistent/heads.json"),
          "missing ranking file: %s", xd_last_error());
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"heads\": 3}", f);
        fclose(f);
    }
    CHECK(xd_head_ranking_load_top(path, K, 0, c->n_layer, c->n_head, from_file) == -1 &&
              strstr(xd_last_error(), "\"heads\""),
          "a ranking without a heads array: %s", xd_last_error());
    unlink(path);
    xd_head_ranking_free(&a);
    xd_head_ranking_free(&b);

    /* errors naming the option */
    xd_head_ranking r;
    xd_head_probe_opts bad = o;
    bad.window = 0;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "--window"), "'%s'", xd_last_error());
    bad = o;
    bad.n_probes = 0;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "--probes"), "'%s'", xd_last_error());
    bad = o;
    bad.sinks = -1;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "--sinks"), "'%s'", xd_last_error());
    int short_len[] = {256, 100};
    bad = o;
    bad.lengths = short_len;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "too short") &&
              strstr(xd_last_error(), "--lengths"), "'%s'", xd_last_error());
    int win_len[] = {16};
    bad = o;
    bad.lengths = win_len;
    bad.n_lengths = 1;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "--lengths"), "'%s'", xd_last_error());
    /* random weights answer nothing: without score_all there is nothing to rank */
    bad = o;
    bad.score_all = 0;
    bad.n_probes = 2;
    CHECK(xd_head_probe_rank(m, &bad, &r) == -1 && strstr(xd_last_error(), "answered none"),
          "'%s'", xd_last_error());
}

static void test_student_refused(void) {
    xd_model *t = xd_model_load(TINY);
    xd_student_opts so;
    xd_student_defaults(&so);
    so.window = 8;
    xd_model *s = t ? xd_student_convert(t, &so) : NULL;
    CHECK(s != NULL, "convert: %s", xd_last_error());
    if (s) {
        int lengths[] = {256};
        xd_head_probe_opts o;
        xd_head_probe_defaults(&o);
        o.window = 16;
        o.lengths = lengths;
        o.n_lengths = 1;
        xd_head_ranking r;
        CHECK(xd_head_probe_rank(s, &o, &r) == -1 && strstr(xd_last_error(), TINY) &&
                  strstr(xd_last_error(), "student"), "student: '%s'", xd_last_error());
        xd_kv *kv = xd_kv_create(s, 8);
        count_obs co = {0, 0, 0};
        xd_attn_observer obs = {count_fn, &co};
        int32_t ids[2] = {1, 2};
        CHECK(xd_forward_observed(s, kv, ids, 2, NULL, 0, &obs) == -1 &&
                  strstr(xd_last_error(), "student") && co.calls == 0,
              "observer on a student: '%s'", xd_last_error());
        xd_kv_free(kv);
    }
    xd_model_free(s);
    xd_model_free(t);
}

/* convert --global-heads FILE.json:fit --state-budget FRAC@T: the student's whole decoding
 * state at T tokens (xd_student_state_bytes) stays within FRAC of the teacher's fp32 KV
 * cache at T (2·n_layer·n_kv_head·head_dim floats per token), and one more KV group would
 * not fit; the groups are the ranking's best. Then the options' errors. */
static void budget_fit(const char *js, const char *dir) {
    static const struct {
        const char *kv, *budget;
    } cases[] = {{"bf16", "0.5@1024"}, {"int4", "0.5@1024"}, {"int8", "0.3@4096"}};
    char args[1200], out[4096], cfg[600];
    xd_model *t = xd_model_load(TINY);
    CHECK(t != NULL, "%s", xd_last_error());
    if (!t) return;
    const xd_config *tc = xd_model_config(t);
    for (int c = 0; c < 3; c++) {
        snprintf(args, sizeof args, "convert %s -o %s --window 8 --global-heads %s:fit --global-kv %s "
                 "--state-budget %s", TINY, dir, js, cases[c].kv, cases[c].budget);
        int rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
        CHECK(rc == 0 && strstr(out, "KV groups fit the state budget"), "%s: rc %d '%s'", args, rc, out);
        snprintf(cfg, sizeof cfg, "%s", dir);
        xd_model *s = xd_model_load(cfg);
        CHECK(s != NULL, "%s", xd_last_error());
        if (!s) continue;
        const xd_config *sc = xd_model_config(s);
        double frac = atof(cases[c].budget);
        int T = atoi(strchr(cases[c].budget, '@') + 1);
        double budget = frac * 8.0 * tc->n_layer * tc->n_kv_head * tc->head_dim * T;
        /* the groups kept: (layer, head / group size) pairs, each with all its query heads */
        int group = tc->n_head / tc->n_kv_head, pairs = sc->n_global_heads / group;
        size_t have = xd_student_state_bytes(sc, T);
        xd_config more = *sc; /* one more pair: a group not yet kept */
        for (int l = 0; l < more.n_layer && more.n_global_heads == sc->n_global_heads; l++)
            for (int g = 0; g < more.n_kv_head && more.n_global_heads == sc->n_global_heads; g++) {
                int kept = 0;
                for (int i = 0; i < sc->n_global_heads; i++)
                    kept |= sc->global_heads[i].layer == l && sc->global_heads[i].head / group == g;
                if (!kept) more.global_heads[more.n_global_heads++] = (xd_head_ref){l, g * group};
            }
        int all = tc->n_layer * tc->n_kv_head;
        size_t with_one_more = xd_student_state_bytes(&more, T);
        printf("  --global-heads FILE:fit --global-kv %s --state-budget %s: %d of %d KV groups, "
               "state %zu bytes of a %.0f budget (one more: %zu)\n", cases[c].kv, cases[c].budget,
               pairs, all, have, budget, with_one_more);
        CHECK(sc->n_global_heads == pairs * group && pairs >= 1, "%d heads: whole groups", sc->n_global_heads);
        CHECK(have <= budget && (pairs == all || with_one_more > budget),
              "%s: %d groups, %zu bytes (one more %zu) for a budget of %.0f", cases[c].kv, pairs,
              have, with_one_more, budget);
        xd_model_free(s);
    }
    xd_model_free(t);
    static const struct {
        const char *opts, *want;
    } bad[] = {
        {"--state-budget 0", "--state-budget"},
        {"--state-budget 1.5", "--state-budget"},
        {"--state-budget 0.1@x", "--state-budget @TOKENS"},
        /* the constant state alone: sinks, windows and mLSTM at one token */
        {"--state-budget 0.1@1", "alone exceeds 0.1 of the teacher's KV cache at 1 tokens"},
        /* bf16 rows take 1/8 of fp32's two rows, so 0.1 holds no group at a long length */
        {"--state-budget 0.1@1048576", "expected a larger --state-budget"},
    };
    for (int b = 0; b < 5; b++) {
        snprintf(args, sizeof args, "convert %s -o %s/never --window 8 --global-heads %s:fit %s",
                 TINY, dir, js, bad[b].opts);
        int rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
        CHECK(rc != 0 && strstr(out, bad[b].want), "%s: rc %d '%s'", bad[b].opts, rc, out);
    }
}

/* ---- 5. the CLI ------------------------------------------------------------------- */

static void test_cli(void) {
    char out[8192], args[2048], dir[256], js[256];
    struct {
        const char *args, *want;
    } cases[] = {
        {"heads " TINY " --window 0", "--window"},
        {"heads " TINY " --window 16 --probes 0", "--probes"},
        {"heads " TINY " --window 16 --lengths 0", "--lengths"},
        {"heads " TINY " --window 16 --lengths 2,x", "--lengths"},
        {"heads " TINY " --window 16 --lengths 1", "--lengths"},
        {"heads " TINY " --window 16 --lengths 5", "too short"},
        {"heads " TINY " --lengths 8", "--window"},
        {"heads " TINY " --window 16 --bogus", "--bogus"},
        {"heads /nonexistent/model.gguf --window 16", "/nonexistent/model.gguf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = test_cli_run(cases[i].args, out, sizeof out, TEST_CLI_STDERR);
        CHECK(rc != 0 && strstr(out, cases[i].want), "`%s`: rc %d, '%s' lacks '%s'", cases[i].args,
              rc, out, cases[i].want);
    }
    /* a student given as the teacher: the error names its directory */
    snprintf(dir, sizeof dir, "/tmp/xd_test_heads_student_%d", (int)getpid());
    snprintf(args, sizeof args, "convert %s -o %s --window 8", TINY, dir);
    CHECK(test_cli_run(args, out, sizeof out, TEST_CLI_STDERR) == 0, "convert: %s", out);
    snprintf(args, sizeof args, "heads %s --window 16 --lengths 16", dir);
    int rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 1 && strstr(out, dir) && strstr(out, "student"), "student: rc %d '%s'", rc, out);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    CHECK(system(args) == 0, "rm");
    /* a run: the table on stdout, the JSON file */
    snprintf(js, sizeof js, "/tmp/xd_test_heads_cli_%d.json", (int)getpid());
    snprintf(args, sizeof args, "heads %s --window 16 --lengths 14,16 --probes 3 --top 4 --score-all -o %s",
             TINY, js);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDOUT);
    CHECK(rc == 0 && strstr(out, "teacher accuracy: ") && strstr(out, "rank layer head"),
          "heads: rc %d '%s'", rc, out);
    int rows = 0;
    for (const char *l = strstr(out, "rank layer head"); l && (l = strchr(l, '\n')); l++)
        rows += l[1] == ' ';
    CHECK(rows == 4, "%d table rows for --top 4", rows);
    json_t *j = json_load_file(js, 0, NULL);
    CHECK(j && json_array_size(json_object_get(j, "heads")) == 8 &&
              json_array_size(json_object_get(j, "lengths")) == 2 &&
              json_integer_value(json_array_get(json_object_get(j, "lengths"), 1)) == 256,
          "heads.json from the CLI");
    /* convert --global-heads FILE.json:K takes that ranking's best K */
    int l0 = (int)json_integer_value(json_object_get(json_array_get(json_object_get(j, "heads"), 0), "layer"));
    int h0 = (int)json_integer_value(json_object_get(json_array_get(json_object_get(j, "heads"), 0), "head"));
    json_decref(j);
    snprintf(args, sizeof args, "convert %s -o %s --window 8 --global-heads %s:1", TINY, dir, js);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc == 0, "convert --global-heads FILE:1: rc %d '%s'", rc, out);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    j = json_load_file(cfg, 0, NULL);
    json_t *g = json_object_get(j, "global_heads");
    CHECK(json_array_size(g) == 1 && json_integer_value(json_array_get(json_array_get(g, 0), 0)) == l0 &&
              json_integer_value(json_array_get(json_array_get(g, 0), 1)) == h0,
          "convert --global-heads FILE:1 did not keep the ranking's best head %d:%d", l0, h0);
    json_decref(j);
    snprintf(args, sizeof args, "convert %s -o %s --window 8 --global-heads %s:99", TINY, dir, js);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc != 0 && strstr(out, js), "K beyond the ranking: rc %d '%s'", rc, out);
    snprintf(args, sizeof args, "convert %s -o %s --window 8 --global-heads auto:x", TINY, dir);
    rc = test_cli_run(args, out, sizeof out, TEST_CLI_STDERR);
    CHECK(rc != 0 && strstr(out, "--global-heads K"), "auto:x: rc %d '%s'", rc, out);
    budget_fit(js, dir);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    CHECK(system(args) == 0, "rm");
    unlink(js);
}

/* ---- 6. the real teacher ---------------------------------------------------------- */

static void test_real_teacher(void) {
#ifdef UNDER_SANITIZER
    printf("real teacher: skipped under a sanitizer\n");
    return;
#endif
    if (access(teacher_path(), R_OK)) {
        printf("real teacher: skipped (%s not installed)\n", teacher_path());
        return;
    }
    xd_model *m = xd_model_load(teacher_path());
    CHECK(m != NULL, "%s", xd_last_error());
    if (!m) return;
    int lengths[] = {160};
    xd_head_probe_opts o;
    xd_head_probe_defaults(&o);
    o.window = 64;
    o.n_probes = 3;
    o.lengths = lengths;
    o.n_lengths = 1;
    xd_head_ranking r;
    int rc = xd_head_probe_rank(m, &o, &r);
    CHECK(rc == 0, "rank: %s", xd_last_error());
    if (!rc) {
        CHECK(r.n_correct >= 2, "SmolLM2 answered %d of 3 probes", r.n_correct);
        CHECK(r.heads[0].score > 0.3, "best head %d.%d retrieves only %.3f", r.heads[0].layer,
              r.heads[0].head, r.heads[0].score);
        printf("real teacher: answered %d/3; best head L%d.H%d score %.3f; %.1f s\n", r.n_correct,
               r.heads[0].layer, r.heads[0].head, r.heads[0].score, r.seconds);
        xd_head_ranking_free(&r);
    }
    xd_model_free(m);
}

int main(void) {
    xd_tokenizer *bytes = xd_tokenizer_load(TINY), *bpe = xd_tokenizer_load(FIXTURE("tiny_tokenizer"));
    CHECK(bytes && bpe, "tokenizers: %s", xd_last_error());
    if (bytes && bpe) test_generator(bytes, bpe);
    xd_tokenizer_free(bytes);
    xd_tokenizer_free(bpe);
    xd_model *m = xd_model_load(TINY);
    CHECK(m != NULL, "%s", xd_last_error());
    if (m) {
        test_observer_bits(m);
        test_scorer(m);
        test_ranking(m);
    }
    xd_model_free(m);
    test_student_refused();
    test_cli();
    test_real_teacher();
    return test_summary("test_head_probe");
}
