/* Issue 7: `xdistill merge --search` (Stage III: λ tuned on a dev suite).
 *
 * Experts are tiny students of tests/fixtures/tiny-llama.gguf (window 4) with
 * one base_hash: A as converted, B and C = A plus strong noise on the mixer
 * and MLP weights (they score much worse). The dev suite: "pick", a choice
 * task whose answers are A's own choices (so A scores 1), and two perplexity
 * tasks. Everything below is checked against computations made here:
 *  - the candidates are every (k_1/N, …, k_K/N) with Σ k_i = N, listed in the
 *    documented order (nested loops here), C(N+K−1, K−1) of them (K = 2, 3);
 *  - each candidate's objective (mean / recovery / c:ALPHA) recomputed from
 *    its listed scores; the chosen one has the largest (earliest on ties:
 *    two copies of A make every candidate tie);
 *  - OUT is byte for byte a plain `merge` with the chosen λ, which puts the
 *    most weight on A;
 *  - λ = (1, 0): its scores and mean equal `xdistill eval A` exactly;
 *  - resume: a search stopped after 4 candidates (XD_MERGE_SEARCH_STOP_AFTER,
 *    the CLI's test hook) and then given a torn fifth line, as a kill in the
 *    middle of a write leaves it, is rerun: it skips exactly those 4 (the torn
 *    line is dropped) and ends identical to an uninterrupted search; a resume
 *    file of another search starts over;
 *  - bad input: --grid 0, c:0.7, recovery / c without --teacher-results,
 *    teacher results of another suite, settings or task set, weights with
 *    --search, a missing suite, too many candidates: clear errors, exit 2 for
 *    usage and 1 otherwise, nothing written. */
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "core/rng.h"
#include "eval/scoring.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

#define TEACHER XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf"

static char dir[256], out[65536];

/* ---- helpers -------------------------------------------------------------------- */

static const char *P(const char *name) { /* dir/name, 16 slots in rotation */
    static char buf[16][1024];
    static int r;
    r = (r + 1) % 16;
    snprintf(buf[r], sizeof buf[r], "%s/%s", dir, name);
    return buf[r];
}

static int exists(const char *name) { return access(P(name), F_OK) == 0; }

/* `xdistill` with the arguments printf'ed; stderr and stdout into out. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_cli_run(args, out, sizeof out, TEST_CLI_BOTH);
}

static json_t *load_json(const char *name) {
    json_error_t je;
    json_t *j = json_load_file(P(name), 0, &je);
    CHECK(j != NULL, "%s: %s", name, je.text);
    return j;
}

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(P(name), "w");
    CHECK(f != NULL, "cannot write %s", name);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void append_json(const char *name, json_t *o) {
    FILE *f = fopen(P(name), "a");
    char *s = json_dumps(o, JSON_COMPACT);
    if (f && s) fprintf(f, "%s\n", s);
    free(s);
    if (f) fclose(f);
    json_decref(o);
}

static double binom(int n, int r) {
    double c = 1;
    for (int i = 1; i <= r; i++) c = c * (n - r + i) / i;
    return c;
}

/* ---- the experts and the suite -------------------------------------------------- */

/* dir/name = the student with base weights plus N(0, sigma²) noise on every
 * weight. */
static void save_expert(xd_model *s, const float *base, double sigma, uint64_t seed, const char *name) {
    memcpy(s->arena, base, s->arena_floats * sizeof(float));
    xd_weight *ws;
    int nw;
    CHECK(xd_model_weights(s, &ws, &nw) == 0, "weights");
    xd_rng r;
    xd_rng_seed(&r, seed);
    for (int j = 0; sigma > 0 && j < nw; j++) {
        for (int64_t e = 0; e < ws[j].rows * ws[j].cols; e++) ws[j].ptr[e] += (float)(sigma * xd_rng_normal(&r));
    }
    free(ws);
    s->cfg.base_hash = 0x0123456789abcdefull;
    CHECK(xd_model_save(s, P(name)) == 0, "save %s: %s", name, xd_last_error());
}

static const char *const CTX[] = {"The cat sat on the", "Once upon a time there was a",
                                  "The capital of France is", "Two plus two is",
                                  "She opened the door and saw", "In the morning we drink"};
static const char *const CH[][3] = {{" mat", " hat", " dog"},       {" king", " frog", " house"},
                                    {" Paris", " Rome", " Berlin"}, {" four", " five", " six"},
                                    {" a ghost", " her friend", " nothing"}, {" tea", " coffee", " water"}};
static const char *const TXT_A[] = {"The quick brown fox jumps over the lazy dog.",
                                    "A journey of a thousand miles begins with a single step."};
static const char *const TXT_B[] = {"All that glitters is not gold.", "Knowledge is power, and time is money."};

/* suite "dev": pick (answers = A's choices), ppl_a, ppl_b; suite "other":
 * the same tasks under another name. */
static void make_suites(void) {
    xd_model *a = xd_model_load(P("A"));
    CHECK(a != NULL, "load A: %s", xd_last_error());
    if (!a) exit(1);
    xd_eval_settings st;
    xd_eval_settings_default(&st, a);
    xd_scorer *sc = xd_scorer_create(a, &st);
    for (size_t i = 0; i < sizeof CTX / sizeof *CTX; i++) {
        double ll[3];
        int cut, best = 0;
        CHECK(xd_score_choices(sc, CTX[i], CH[i], 3, ll, NULL, &cut) == 0, "score: %s", xd_last_error());
        for (int c = 1; c < 3; c++)
            if (ll[c] > ll[best]) best = c;
        json_t *ch = json_array();
        for (int c = 0; c < 3; c++) json_array_append_new(ch, json_string(CH[i][c]));
        append_json("dev/pick.jsonl", json_pack("{s:s, s:s, s:o, s:i}", "type", "choice", "context",
                                                CTX[i], "choices", ch, "answer", best));
    }
    xd_scorer_free(sc);
    xd_model_free(a);
    for (int i = 0; i < 2; i++) {
        append_json("dev/ppl_a.jsonl", json_pack("{s:s}", "text", TXT_A[i]));
        append_json("dev/ppl_b.jsonl", json_pack("{s:s}", "text", TXT_B[i]));
    }
    const char *tasks = "\"tasks\": [\n"
                        " {\"name\": \"pick\", \"file\": \"pick.jsonl\", \"type\": \"choice\"},\n"
                        " {\"name\": \"ppl_a\", \"file\": \"ppl_a.jsonl\", \"type\": \"perplexity\"},\n"
                        " {\"name\": \"ppl_b\", \"file\": \"ppl_b.jsonl\", \"type\": \"perplexity\"}]}\n";
    char text[1024];
    snprintf(text, sizeof text, "{\"name\": \"dev\", \"seed\": 7, %s", tasks);
    write_text("dev/suite.json", text);
    snprintf(text, sizeof text, "{\"name\": \"other\", \"seed\": 7, \"tasks\": [\n"
             " {\"name\": \"pick\", \"file\": \"%s/dev/pick.jsonl\", \"type\": \"choice\"},\n"
             " {\"name\": \"ppl_a\", \"file\": \"%s/dev/ppl_a.jsonl\", \"type\": \"perplexity\"},\n"
             " {\"name\": \"ppl_b\", \"file\": \"%s/dev/ppl_b.jsonl\", \"type\": \"perplexity\"}]}\n",
             dir, dir, dir);
    write_text("other/suite.json", text);
}

/* The scores of an `xdistill eval` results file, in its task order. */
static int result_scores(const char *name, double *s, int cap) {
    json_t *j = load_json(name);
    json_t *tasks = json_object_get(j, "tasks");
    int n = 0;
    for (size_t i = 0; i < json_array_size(tasks) && n < cap; i++)
        s[n++] = json_number_value(json_object_get(json_array_get(tasks, i), "score"));
    json_decref(j);
    return n;
}

/* ---- checking a search.json ------------------------------------------------------- */

enum { OBJ_MEAN, OBJ_RECOVERY, OBJ_C };

/* The objective from the scores, written from the definitions in docs/distill.md. */
static void ref_objective(int obj, double alpha, const double *s, const double *t, int n, double *val,
                          double *rec) {
    double sum = 0, r = 0, wins = 0;
    for (int i = 0; i < n; i++) {
        sum += s[i];
        if (t) {
            r += t[i] == 0 ? 1.0 : s[i] / t[i];
            wins += s[i] >= (1 - alpha - 1e-12) * t[i];
        }
    }
    *rec = r / n;
    *val = obj == OBJ_MEAN ? sum / n : obj == OBJ_RECOVERY ? r / n : wins / n;
}

/* The expected candidates in the documented order: k_1 from N down, then k_2, … */
static int expected_k(int k, int grid, int *kv) {
    int n = 0;
    if (k == 2)
        for (int a = grid; a >= 0; a--) kv[n * 2] = a, kv[n * 2 + 1] = grid - a, n++;
    else
        for (int a = grid; a >= 0; a--)
            for (int b = grid - a; b >= 0; b--) kv[n * 3] = a, kv[n * 3 + 1] = b, kv[n * 3 + 2] = grid - a - b, n++;
    return n;
}

typedef struct {
    int n, chosen, n_tasks;
    double lambda[8];  /* the chosen λ */
    double obj0_scores[8];
} search_summary;

/* Checks name/search.json of a search of k experts on grid N; fills sum. */
static void check_search(const char *name, int k, int grid, int obj, double alpha, const double *teacher,
                         search_summary *sum) {
    char p[300];
    snprintf(p, sizeof p, "%s/search.json", name);
    json_t *j = load_json(p);
    if (!j) return;
    json_t *cands = json_object_get(j, "candidates");
    int n = (int)json_array_size(cands), nt = (int)json_array_size(json_object_get(j, "tasks"));
    int want = (int)binom(grid + k - 1, k - 1), kv[600];
    CHECK(n == want, "%s: %d candidates, expected C(%d, %d) = %d", name, n, grid + k - 1, k - 1, want);
    CHECK(expected_k(k, grid, kv) == want, "test: expected_k");
    CHECK(json_integer_value(json_object_get(j, "grid")) == grid, "%s: grid", name);
    int bad_k = 0, bad_sum = 0, bad_obj = 0, best = -1;
    double best_v = -INFINITY, best_r = -INFINITY;
    for (int i = 0; i < n && i < want; i++) {
        json_t *c = json_array_get(cands, (size_t)i), *ck = json_object_get(c, "k"),
               *cl = json_object_get(c, "lambda"), *cs = json_object_get(c, "scores");
        double lsum = 0, s[8], v, r;
        for (int e = 0; e < k; e++) {
            long long ke = json_integer_value(json_array_get(ck, (size_t)e));
            double le = json_number_value(json_array_get(cl, (size_t)e));
            bad_k += ke != kv[i * k + e] || le != (double)ke / grid;
            lsum += le;
        }
        bad_sum += fabs(lsum - 1) > 1e-12;
        for (int t = 0; t < nt && t < 8; t++) s[t] = json_number_value(json_array_get(cs, (size_t)t));
        ref_objective(obj, alpha, s, teacher, nt, &v, &r);
        double got = json_number_value(json_object_get(c, "objective"));
        /* the same sums in the same order: equal, not only close */
        bad_obj += got != v;
        if (teacher) bad_obj += json_number_value(json_object_get(c, "recovery")) != r;
        if (i == 0)
            for (int t = 0; t < nt && t < 8; t++) sum->obj0_scores[t] = s[t];
        if (v > best_v || (obj == OBJ_C && v == best_v && r > best_r)) best = i, best_v = v, best_r = r;
    }
    CHECK(bad_k == 0, "%s: %d λ / k entries differ from the documented order", name, bad_k);
    CHECK(bad_sum == 0, "%s: %d candidates whose λ does not sum to 1", name, bad_sum);
    CHECK(bad_obj == 0, "%s: %d objectives differ from the recomputation", name, bad_obj);
    int chosen = (int)json_integer_value(json_object_get(j, "chosen"));
    CHECK(chosen == best, "%s: chosen %d, but the best (earliest on ties) is %d", name, chosen, best);
    json_t *lam = json_object_get(j, "lambda");
    for (int e = 0; e < k; e++) sum->lambda[e] = json_number_value(json_array_get(lam, (size_t)e));
    CHECK(json_equal(lam, json_object_get(json_array_get(cands, (size_t)chosen), "lambda")),
          "%s: lambda is the chosen candidate's", name);
    sum->n = n;
    sum->chosen = chosen;
    sum->n_tasks = nt;
    printf("%s: %d candidates, chosen #%d λ = (%g, %g%s) objective %.6g\n", name, n, chosen, sum->lambda[0],
           sum->lambda[1], k > 2 ? ", ..." : "", best_v);
    json_decref(j);
}

/* name/ equals a plain merge of experts with the chosen λ, byte for byte. */
static void check_plain(const char *name, const char *const *experts, int k, const double *lam) {
    char args[2048];
    int n = snprintf(args, sizeof args, "merge -o %s", P("plain"));
    for (int e = 0; e < k; e++) n += snprintf(args + n, sizeof args - (size_t)n, " %s:%.17g", P(experts[e]), lam[e]);
    CHECK(test_cli_run(args, out, sizeof out, TEST_CLI_BOTH) == 0, "plain merge: %s", out);
    const char *files[] = {"model.safetensors", "config.json", "merge.json"};
    for (int f = 0; f < 3; f++) {
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/%s", name, files[f]);
        snprintf(b, sizeof b, "plain/%s", files[f]);
        CHECK(test_same_file(P(a), P(b)), "%s differs from the plain merge's", a);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", P("plain"));
    if (system(cmd)) {}
}

static void check_no_leftovers(const char *name) {
    char a[300], b[300];
    snprintf(a, sizeof a, "%s.search.jsonl", name);
    snprintf(b, sizeof b, "%s.search.tmp", name);
    CHECK(!exists(a) && !exists(b), "%s: the resume file or temporary directory is left", name);
}

/* ---- the tests --------------------------------------------------------------------- */

static double A_scores[8];
static int n_tasks;

static void test_mean_k2(void) {
    const char *ex[] = {"A", "B"};
    CHECK(run("merge -o %s --search %s %s %s", P("S2"), P("dev"), P("A"), P("B")) == 0, "search: %s", out);
    printf("%s", out);
    search_summary s = {0};
    check_search("S2", 2, 4, OBJ_MEAN, 0, NULL, &s);
    check_no_leftovers("S2");
    CHECK(s.lambda[0] > s.lambda[1], "S2: λ = (%g, %g): most weight should be on A", s.lambda[0], s.lambda[1]);
    check_plain("S2", ex, 2, s.lambda);
    /* λ = (1, 0) is candidate 0: `eval A`'s scores and mean, exactly */
    double mean = 0;
    int same = 1;
    for (int t = 0; t < n_tasks; t++) {
        mean += A_scores[t];
        same &= s.obj0_scores[t] == A_scores[t];
    }
    mean /= n_tasks;
    json_t *j = load_json("S2/search.json");
    double obj0 = json_number_value(json_object_get(json_array_get(json_object_get(j, "candidates"), 0), "objective"));
    CHECK(same, "λ = (1, 0): the scores differ from `xdistill eval A`");
    CHECK(obj0 == mean, "λ = (1, 0): mean %.17g, `eval A` mean %.17g", obj0, mean);
    printf("λ = (1, 0): mean %.17g = eval A's %.17g\n", obj0, mean);
    CHECK(json_integer_value(json_object_get(j, "n_evaluated")) == 5 &&
              json_integer_value(json_object_get(j, "n_resumed")) == 0,
          "S2: evaluated / resumed counts");
    CHECK(!strcmp(json_string_value(json_object_get(j, "objective")), "mean"), "S2: objective name");
    /* the experts' weights hashes (read before the search) are merge.json's */
    json_t *m = load_json("S2/merge.json");
    for (size_t e = 0; e < 2; e++) {
        const char *hs = json_string_value(json_object_get(json_array_get(json_object_get(j, "experts"), e), "weights_hash"));
        const char *hm = json_string_value(json_object_get(json_array_get(json_object_get(m, "inputs"), e), "weights_hash"));
        CHECK(hs && hm && !strcmp(hs, hm), "expert %zu: weights_hash %s in search.json, %s in merge.json", e,
              hs ? hs : "-", hm ? hm : "-");
    }
    json_decref(m);
    json_decref(j);
}

static void test_recovery_k3(double *teacher) {
    const char *ex[] = {"B", "A", "C"}; /* A in the middle */
    CHECK(run("merge -o %s --search %s --grid 3 --teacher-results %s %s %s %s", P("S3"), P("dev"),
              P("A.json"), P("B"), P("A"), P("C")) == 0,
          "search: %s", out);
    search_summary s = {0};
    check_search("S3", 3, 3, OBJ_RECOVERY, 0, teacher, &s);
    check_no_leftovers("S3");
    CHECK(s.lambda[1] > s.lambda[0] && s.lambda[1] > s.lambda[2], "S3: λ = (%g, %g, %g): most weight should be on A",
          s.lambda[0], s.lambda[1], s.lambda[2]);
    check_plain("S3", ex, 3, s.lambda);
}

static void test_c_alpha(double *teacher) {
    const char *ex[] = {"B", "A"};
    CHECK(run("merge -o %s --search %s --grid 2 --objective c:0.1 --teacher-results %s %s %s", P("SC"),
              P("dev"), P("A.json"), P("B"), P("A")) == 0,
          "search: %s", out);
    search_summary s = {0};
    check_search("SC", 2, 2, OBJ_C, 0.1, teacher, &s);
    CHECK(s.lambda[1] == 1, "SC: λ = (%g, %g): A alone has C_0.1 = 1 and recovery 1", s.lambda[0], s.lambda[1]);
    check_plain("SC", ex, 2, s.lambda);
}

/* Two copies of A: every candidate is A again (λ ∈ {0, 1/2, 1} are exact),
 * so every objective ties and the earliest candidate must win. */
static void test_ties(void) {
    CHECK(run("merge -o %s --search %s --grid 2 %s %s", P("ST"), P("dev"), P("A"), P("A2")) == 0, "search: %s", out);
    search_summary s = {0};
    check_search("ST", 2, 2, OBJ_MEAN, 0, NULL, &s);
    json_t *j = load_json("ST/search.json");
    json_t *c = json_object_get(j, "candidates");
    double o0 = json_number_value(json_object_get(json_array_get(c, 0), "objective"));
    int ties = 0;
    for (size_t i = 0; i < json_array_size(c); i++)
        ties += json_number_value(json_object_get(json_array_get(c, i), "objective")) == o0;
    CHECK(ties == 3 && s.chosen == 0, "ties: %d of 3 objectives equal, chosen %d (expected 0)", ties, s.chosen);
    json_decref(j);
}

/* Lines of a file (complete or not). */
static int count_lines(const char *name, int *torn) {
    size_t n;
    char *b = test_slurp(P(name), &n);
    int lines = 0;
    for (size_t i = 0; b && i < n; i++) lines += b[i] == '\n';
    *torn = b && n && b[n - 1] != '\n';
    free(b);
    return lines;
}

static void test_resume(void) {
    /* reference: uninterrupted */
    CHECK(run("merge -o %s --search %s --grid 3 %s %s %s", P("R0"), P("dev"), P("A"), P("B"), P("C")) == 0,
          "search: %s", out);
    /* interrupted after 4 candidates (the test hook), as a kill would leave it */
    setenv("XD_MERGE_SEARCH_STOP_AFTER", "4", 1);
    int rc = run("merge -o %s --search %s --grid 3 %s %s %s", P("R1"), P("dev"), P("A"), P("B"), P("C"));
    unsetenv("XD_MERGE_SEARCH_STOP_AFTER");
    int torn, lines = count_lines("R1.search.jsonl", &torn);
    CHECK(rc == 1 && strstr(out, "stopped after 4") && !exists("R1") && lines == 5 && !torn,
          "interrupted search: exit %d, %d lines: %s", rc, lines, out);
    /* then killed in the middle of writing candidate 5's line */
    FILE *f = fopen(P("R1.search.jsonl"), "a");
    if (f) {
        fputs("{\"index\":4,\"k\":[1,2,", f);
        fclose(f);
    }
    CHECK(run("merge -o %s --search %s --grid 3 %s %s %s", P("R1"), P("dev"), P("A"), P("B"), P("C")) == 0,
          "resumed search: %s", out);
    int resumed_lines = 0;
    for (const char *s = out; (s = strstr(s, "  resumed\n")); s++) resumed_lines++;
    CHECK(resumed_lines == 4, "stderr shows %d resumed candidates, not 4: %s", resumed_lines, out);
    CHECK(strstr(out, "1 unreadable line") != NULL, "the torn line is reported: %s", out);
    json_t *a = load_json("R0/search.json"), *b = load_json("R1/search.json");
    if (a && b) {
        json_t *ca = json_object_get(a, "candidates"), *cb = json_object_get(b, "candidates");
        int differ = json_array_size(ca) != 10 || json_array_size(cb) != 10, flags = 0;
        for (size_t i = 0; i < json_array_size(ca); i++) {
            json_t *x = json_array_get(ca, i), *y = json_array_get(cb, i);
            const char *keys[] = {"k", "lambda", "scores", "objective"};
            for (int q = 0; q < 4; q++) differ += !json_equal(json_object_get(x, keys[q]), json_object_get(y, keys[q]));
            flags += json_is_true(json_object_get(y, "resumed")) == (i < 4);
        }
        CHECK(!differ, "the resumed search's candidates differ from the uninterrupted one's");
        CHECK(flags == 10, "candidates 1..4 marked resumed, the others not (%d right)", flags);
        CHECK(json_integer_value(json_object_get(b, "n_resumed")) == 4 &&
                  json_integer_value(json_object_get(b, "n_evaluated")) == 6,
              "resumed %lld, evaluated %lld (expected 4, 6)", json_integer_value(json_object_get(b, "n_resumed")),
              json_integer_value(json_object_get(b, "n_evaluated")));
        CHECK(json_equal(json_object_get(a, "chosen"), json_object_get(b, "chosen")), "same choice");
    }
    json_decref(a);
    json_decref(b);
    CHECK(test_same_file(P("R0/model.safetensors"), P("R1/model.safetensors")), "resumed: another model");
    check_no_leftovers("R1");

    /* a resume file of another search: starts over */
    write_text("R2.search.jsonl", "{\"xdistill_merge_search\":1,\"key\":{\"grid\":99}}\n"
                                  "{\"index\":0,\"k\":[2,0],\"scores\":[1,1,1],\"seconds\":1}\n");
    CHECK(run("merge -o %s --search %s --grid 2 %s %s", P("R2"), P("dev"), P("A"), P("B")) == 0, "search: %s", out);
    CHECK(strstr(out, "starting over") != NULL && !strstr(out, "resumed\n"), "another header: %s", out);
    json_t *c = load_json("R2/search.json");
    CHECK(c && json_integer_value(json_object_get(c, "n_resumed")) == 0 &&
              json_integer_value(json_object_get(c, "n_evaluated")) == 3,
          "another header: nothing resumed");
    json_decref(c);
    check_no_leftovers("R2");
}

static void refuse(int want, const char *needle, const char *extra) {
    int rc = run("merge -o %s --search %s %s %s", P("X"), extra, P("A"), P("B"));
    CHECK(rc == want && strstr(out, needle), "'%s': exit %d (expected %d), no '%s' in: %s", extra, rc, want,
          needle, out);
    CHECK(!exists("X") && !exists("X.search.jsonl") && !exists("X.search.tmp"), "'%s' left files", extra);
    printf("refused (%d): %s", rc, out);
}

static void test_refusals(void) {
    char dev[300], t[1024];
    snprintf(dev, sizeof dev, "%s", P("dev"));
    snprintf(t, sizeof t, "%s --grid 0", dev);
    refuse(2, "--grid", t);
    snprintf(t, sizeof t, "%s --grid 65", dev);
    refuse(2, "[1, 64]", t);
    snprintf(t, sizeof t, "%s --objective c:0.7 --teacher-results %s", dev, P("A.json"));
    refuse(2, "ALPHA", t);
    snprintf(t, sizeof t, "%s --objective best", dev);
    refuse(2, "mean, recovery or c:ALPHA", t);
    snprintf(t, sizeof t, "%s --objective recovery", dev);
    refuse(2, "--teacher-results", t);
    snprintf(t, sizeof t, "%s --objective c:0.1", dev);
    refuse(2, "--teacher-results", t);
    snprintf(t, sizeof t, "%s/nope", dev);
    refuse(1, "nope", t);
    /* teacher results of another suite / settings / task set: compare's words */
    snprintf(t, sizeof t, "%s --teacher-results %s", dev, P("other.json"));
    refuse(1, "suite differs", t);
    snprintf(t, sizeof t, "%s --teacher-results %s", dev, P("fewshot.json"));
    refuse(1, "settings.fewshot", t);
    snprintf(t, sizeof t, "%s --teacher-results %s --tasks pick,ppl_a", dev, P("A.json"));
    refuse(1, "tasks differ", t);
    /* weights, too many candidates, search options without --search, a missing expert */
    int rc = run("merge -o %s --search %s %s:0.5 %s:0.5", P("X"), dev, P("A"), P("B"));
    CHECK(rc == 2 && strstr(out, "chooses the weights"), "weights with --search: %d %s", rc, out);
    printf("refused (%d): %s", rc, out);
    rc = run("merge -o %s --search %s --grid 64 %s %s %s", P("X"), dev, P("A"), P("B"), P("C"));
    CHECK(rc == 2 && strstr(out, "2145 candidates"), "too many candidates: %d %s", rc, out);
    printf("refused (%d): %s", rc, out);
    rc = run("merge -o %s --grid 3 %s %s", P("X"), P("A"), P("B"));
    CHECK(rc == 2 && strstr(out, "--grid needs --search"), "--grid without --search: %d %s", rc, out);
    printf("refused (%d): %s", rc, out);
    rc = run("merge -o %s --search %s %s %s", P("X"), dev, P("A"), P("nope"));
    CHECK(rc == 1 && strstr(out, "no such directory"), "missing expert: %d %s", rc, out);
    printf("refused (%d): %s", rc, out);
    CHECK(!exists("X") && !exists("X.search.jsonl") && !exists("X.search.tmp"), "refusals left files");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    double t0 = now();
    snprintf(dir, sizeof dir, "/tmp/xd_msearch_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    mkdir(P("dev"), 0755);
    mkdir(P("other"), 0755);

    xd_model *t = xd_model_load(TEACHER);
    CHECK(t != NULL, "load %s: %s", TEACHER, xd_last_error());
    if (!t) return 1;
    xd_student_opts so;
    xd_student_defaults(&so);
    so.window = 4;
    so.sinks = 1;
    so.chunk = 8;
    xd_model *s = xd_student_convert(t, &so);
    xd_model_free(t);
    CHECK(s != NULL, "convert: %s", xd_last_error());
    if (!s) return 1;
    float *base = malloc(s->arena_floats * sizeof(float));
    memcpy(base, s->arena, s->arena_floats * sizeof(float));
    save_expert(s, base, 0, 0, "A");
    save_expert(s, base, 1.0, 1, "B");
    save_expert(s, base, 1.0, 2, "C");
    save_expert(s, base, 0, 0, "A2");
    xd_model_free(s);
    free(base);
    make_suites();

    /* A's results: the mean of λ = (1, 0) and the teacher results of the
     * recovery and c searches; and three that are not comparable */
    CHECK(run("eval %s --suite %s -o %s", P("A"), P("dev"), P("A.json")) == 0, "eval A: %s", out);
    CHECK(run("eval %s --suite %s -o %s", P("B"), P("dev"), P("B.json")) == 0, "eval B: %s", out);
    CHECK(run("eval %s --suite %s -o %s", P("A"), P("other"), P("other.json")) == 0, "eval other: %s", out);
    CHECK(run("eval %s --suite %s --fewshot 1 -o %s", P("A"), P("dev"), P("fewshot.json")) == 0, "eval: %s", out);
    double b[8];
    n_tasks = result_scores("A.json", A_scores, 8);
    CHECK(n_tasks == 3 && result_scores("B.json", b, 8) == 3, "3 tasks in the results");
    printf("scores  A: %.4f %.4g %.4g   B: %.4f %.4g %.4g  (pick, ppl_a, ppl_b)\n", A_scores[0], A_scores[1],
           A_scores[2], b[0], b[1], b[2]);
    CHECK(A_scores[0] == 1, "A answers its own choices: pick = %g", A_scores[0]);
    printf("setup %.1f s\n", now() - t0);

    double t1 = now();
    test_mean_k2();
    printf("mean, K = 2: %.1f s\n", now() - t1);
    t1 = now();
    test_recovery_k3(A_scores);
    printf("recovery, K = 3: %.1f s\n", now() - t1);
    t1 = now();
    test_c_alpha(A_scores);
    printf("c:0.1: %.1f s\n", now() - t1);
    test_ties();
    t1 = now();
    test_resume();
    printf("resume: %.1f s\n", now() - t1);
    t1 = now();
    test_refusals();
    printf("refusals: %.1f s\n", now() - t1);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd)) {}
    printf("total %.1f s\n", now() - t0);
    return test_summary("test_merge_search");
}
