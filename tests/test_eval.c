/* The evaluation engine and `xdistill eval` (docs/design.md, "Evaluation") on the tiny teacher
 * (tests/fixtures/tiny-llama.gguf: byte-level tokenizer, BOS = EOS, random
 * weights, max_ctx 128):
 *  - choice: log-likelihoods recomputed here from one plain xd_forward with
 *    an independent log-softmax (tol 1e-4 nats), acc and acc_norm from them
 *    (exact), a context longer than max_ctx cut on the left;
 *  - generate: a target equal to the model's greedy output (computed here
 *    token by token) matches exactly, a wrong one does not, a substring
 *    matches with "contains"; stop strings cut the output;
 *  - perplexity: one-window NLL recomputed here (tol 1e-6 relative), a text
 *    longer than max_ctx equals xd_perplexity (same windows);
 *  - bootstrap: CI of known data, contains the score, deterministic;
 *  - results JSON: the contract's fields, identical across two runs (after
 *    dropping the "seconds" fields), the CLI's scores equal the library's;
 *  - malformed suites and task files: errors name the file, line and field;
 *  - a student (convert) through the CLI. */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "core/progress.h"
#include "eval/bootstrap.h"
#include "eval/results.h"
#include "eval/run.h"
#include "eval/scoring.h"
#include "eval/tasks.h"
#include "test.h"
#include "xdistill.h"

#define TEACHER XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf"

static char dir[256], out[65536];
static xd_model *M;
static const xd_tokenizer *T;
static int V, BOS;

/* ---- helpers ------------------------------------------------------------------ */

/* |a − b| ≤ rel · max(1, |b|) */
static int near_rel(double a, double b, double rel) {
    return fabs(a - b) <= rel * (fabs(b) > 1 ? fabs(b) : 1);
}

static void write_text(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) { CHECK(0, "cannot write %s", p); return; }
    fputs(text, f);
    fclose(f);
}

/* Appends one JSON object (compact, one line) to DIR/name; the reference is stolen. */
static void append_json(const char *name, json_t *o) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "a");
    char *s = json_dumps(o, JSON_COMPACT);
    CHECK(f && s, "append to %s", p);
    if (f && s) fprintf(f, "%s\n", s);
    free(s);
    if (f) fclose(f);
    json_decref(o);
}

static int32_t *enc(const char *s, size_t *n) {
    int32_t *ids = NULL;
    CHECK(xd_tokenizer_encode(T, s, strlen(s), 0, &ids, n) == 0, "encode: %s", xd_last_error());
    return ids;
}

/* −log softmax(row)[target], written here independently of xd_token_nll */
static double ref_nll(const float *row, int target) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < V; i++) s += exp(row[i] - mx);
    return mx + log(s) - row[target];
}

/* Σ −log p(seq[j] | seq[<j]) for j in [first, n), from one forward with all logits */
static double ref_range(const int32_t *seq, int n, int first) {
    float *lg = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(M, n);
    double s = NAN;
    if (lg && kv && xd_forward(M, kv, seq, n, lg, 1) == 0) {
        s = 0;
        for (int j = first; j < n; j++) s += ref_nll(lg + (size_t)(j - 1) * V, seq[j]);
    }
    free(lg);
    xd_kv_free(kv);
    return s;
}

/* log-likelihood of choice after context: [BOS] + encode(context + choice), the
 * choice tokens being those after encode(context) (checked to be a prefix);
 * keep: cut to the last `keep` tokens after BOS when longer (0 = no cut) */
static double ref_choice(const char *context, const char *choice, int keep) {
    size_t nc, nw;
    char *joint = malloc(strlen(context) + strlen(choice) + 1);
    strcpy(joint, context);
    strcat(joint, choice);
    int32_t *c = enc(context, &nc), *w = enc(joint, &nw);
    int prefix = nc < nw && !memcmp(c, w, nc * sizeof *c);
    CHECK(prefix, "test data: encode(context) is not a prefix for choice '%s'", choice);
    int32_t *seq = malloc((nw + 1) * sizeof *seq);
    seq[0] = BOS;
    memcpy(seq + 1, w, nw * sizeof *w);
    int n = (int)nw + 1, first = (int)nc + 1;
    if (keep && n > keep) { /* keep BOS, drop the oldest tokens after it */
        int drop = n - keep;
        memmove(seq + 1, seq + 1 + drop, (size_t)(n - 1 - drop) * sizeof *seq);
        n = keep;
        first -= drop;
    }
    double ll = -ref_range(seq, n, first);
    free(seq);
    free(c);
    free(w);
    free(joint);
    return ll;
}

/* greedy continuation of [BOS] + prompt, token by token (stops at EOS) */
static char *ref_greedy(const char *prompt, int max_tokens) {
    size_t n;
    int32_t *p = enc(prompt, &n), *seq = malloc((n + 1 + (size_t)max_tokens) * sizeof *seq);
    seq[0] = BOS;
    memcpy(seq + 1, p, n * sizeof *p);
    int len = (int)n + 1, gen = 0, eos = xd_tokenizer_eos(T), nt = xd_tokenizer_n_tokens(T);
    float *lg = malloc((size_t)V * sizeof(float));
    for (; gen < max_tokens; gen++) {
        xd_kv *kv = xd_kv_create(M, len); /* a fresh full forward every step */
        xd_forward(M, kv, seq, len, lg, 0);
        xd_kv_free(kv);
        int best = 0;
        for (int i = 1; i < (nt < V ? nt : V); i++)
            if (lg[i] > lg[best]) best = i;
        if (best == eos) break;
        seq[len++] = best;
    }
    char *text = NULL;
    size_t tl;
    CHECK(xd_tokenizer_decode(T, seq + n + 1, (size_t)gen, &text, &tl) == 0, "decode");
    free(lg);
    free(seq);
    free(p);
    return text;
}

static int ascii_printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x7f || ((unsigned char)*s < 0x20 && *s != '\n')) return 0;
    return 1;
}

static json_t *choice_ex(const char *ctx, const char *const *ch, int n, int answer) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(ch[i]));
    return json_pack("{s:s, s:s, s:o, s:i}", "type", "choice", "context", ctx, "choices", a,
                     "answer", answer);
}

/* ---- the suite ------------------------------------------------------------------ */

static const char *const CTX[] = {
    "The cat sat on the", "Once upon a time there was a", "The capital of France is",
    "Two plus two is", "She opened the door and saw", "In the morning we drink",
    "The best way to learn is", "My favourite colour is",
};
static const char *const CH[][3] = {
    {" mat", " hat", " dog"}, {" king", " frog", " house"}, {" Paris", " Rome", " Berlin"},
    {" four", " five", " six"}, {" a ghost", " her friend", " nothing"}, {" tea", " coffee", " water"},
    {" practice", " reading", " sleep"}, {" blue", " red", " green"},
};
#define N_CHOICE 8
static char long_ctx[4096];
static char *greedy_out[3];
static const char *prompt_used[3];
static const char *const PROMPTS[] = {
    "the cat sat on the", "hello world, this is", "one two three four", "Question: what is up? Answer:",
    "abc def ghi", "It was a dark", "We", "x = 1; y =", "Knock knock.", "The rain in Spain",
    "0123", "Mary had a little", "To be or not", "A", "zz", "(", "Tom and Jerry", "red green"};
static const char *PPL_TEXT[] = {
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    NULL, /* long: filled in main */
};
static char long_text[8192];

static void make_suite(void) {
    write_text("suite.json",
               "{\"name\": \"tiny\", \"seed\": 42, \"tasks\": [\n"
               " {\"name\": \"pick\", \"file\": \"pick.jsonl\", \"type\": \"choice\", \"description\": \"d\"},\n"
               " {\"name\": \"pick4\", \"file\": \"pick.jsonl\", \"type\": \"choice\", \"chance\": 0.25, \"max_examples\": 4},\n"
               " {\"name\": \"gen\", \"file\": \"gen.jsonl\", \"type\": \"generate\"},\n"
               " {\"name\": \"genc\", \"file\": \"genc.jsonl\", \"type\": \"generate\"},\n"
               " {\"name\": \"ppl\", \"file\": \"ppl.jsonl\", \"type\": \"perplexity\", \"long_context\": true}\n"
               "]}\n");
    for (int i = 0; i < N_CHOICE; i++) append_json("pick.jsonl", choice_ex(CTX[i], CH[i], 3, (i * 7) % 3));
    /* a context longer than max_ctx (128 tokens): cut on the left */
    long_ctx[0] = 0;
    for (int i = 0; i < 12; i++) strcat(long_ctx, "the end of the story is near. ");
    strcat(long_ctx, "The end");
    append_json("pick.jsonl", choice_ex(long_ctx, (const char *const[]){" is", " was", " of"}, 3, 0));
    write_text("gen.jsonl", "\n"); /* a blank line is skipped */
    /* greedy outputs as exact targets (the first three usable prompts), one wrong */
    int k = 0;
    for (size_t i = 0; i < sizeof PROMPTS / sizeof *PROMPTS && k < 3; i++) {
        char *g = ref_greedy(PROMPTS[i], 6);
        int ok = g && ascii_printable(g);
        char *tr = g;
        while (ok && (*tr == ' ' || *tr == '\n')) tr++;
        if (ok && *tr) {
            printf("greedy(\"%s\") = \"%s\"\n", PROMPTS[i], g);
            prompt_used[k] = PROMPTS[i];
            append_json("gen.jsonl", json_pack("{s:s, s:s, s:s, s:i, s:s}", "type", "generate",
                                               "prompt", PROMPTS[i], "target", g, "max_tokens", 6,
                                               "match", "exact"));
            append_json("genc.jsonl", json_pack("{s:s, s:s, s:s%, s:i, s:s}", "type", "generate",
                                                "prompt", PROMPTS[i], "target", tr, strlen(tr) < 2 ? strlen(tr) : (size_t)2,
                                                "max_tokens", 6, "match", "contains"));
            greedy_out[k++] = g;
        } else {
            free(g);
        }
    }
    CHECK(k == 3, "only %d prompts with a printable greedy output", k);
    append_json("gen.jsonl", json_pack("{s:s, s:s, s:i, s:s}", "prompt", PROMPTS[0], "target",
                                       "definitely not this", "max_tokens", 6, "match", "exact"));
    append_json("genc.jsonl", json_pack("{s:s, s:s, s:i, s:s}", "prompt", PROMPTS[0], "target",
                                        "zzzzqqqq", "max_tokens", 6, "match", "contains"));
    long_text[0] = 0;
    for (int i = 0; i < 8; i++)
        strcat(long_text, "Many words make a long text; the window slides over it in steps. ");
    PPL_TEXT[2] = long_text;
    for (int i = 0; i < 3; i++)
        append_json("ppl.jsonl", json_pack("{s:s, s:s}", "type", "perplexity", "text", PPL_TEXT[i]));
}

/* ---- checks --------------------------------------------------------------------- */

static const xd_task_result *find(const xd_eval_results *r, const char *name) {
    for (int i = 0; i < r->n_tasks; i++)
        if (!strcmp(r->tasks[i].task->name, name)) return &r->tasks[i];
    return NULL;
}

static void check_library(xd_eval_results *res, xd_suite *suite) {
    CHECK(xd_suite_load(dir, NULL, suite) == 0, "suite: %s", xd_last_error());
    CHECK(suite->n_tasks == 5 && suite->seed == 42 && !strcmp(suite->name, "tiny"), "suite fields");
    xd_eval_opts o;
    xd_eval_opts_default(&o, M, suite);
    o.progress = 0;
    CHECK(o.settings.bos == 1 && o.settings.max_ctx == 128 && o.settings.stride == 64 &&
              o.seed == 42 && o.bootstrap == 1000,
          "defaults: bos %d max_ctx %d stride %d", o.settings.bos, o.settings.max_ctx,
          o.settings.stride);
    double t0 = xd_now();
    CHECK(xd_eval_suite(M, TEACHER, suite, &o, res) == 0, "eval: %s", xd_last_error());
    printf("library eval of 5 tasks: %.2f s\n", xd_now() - t0);
    if (res->n_tasks != 5) return;

    /* choice: independent log-likelihoods */
    const xd_task_result *pick = find(res, "pick"), *pick4 = find(res, "pick4");
    int right = 0, right_norm = 0, n = N_CHOICE + 1;
    double maxerr = 0;
    xd_scorer *sc = xd_scorer_create(M, &o.settings);
    for (int i = 0; i < n; i++) {
        const char *ctx = i < N_CHOICE ? CTX[i] : long_ctx;
        const char *const *ch = i < N_CHOICE ? CH[i] : (const char *const[]){" is", " was", " of"};
        int answer = i < N_CHOICE ? (i * 7) % 3 : 0, best = 0, bestn = 0;
        double ll[3], lln[3], got[3];
        int cut;
        CHECK(xd_score_choices(sc, ctx, ch, 3, got, NULL, &cut) == 0, "score: %s", xd_last_error());
        CHECK(cut == (i == N_CHOICE), "example %d truncated = %d", i, cut);
        /* the choices share the context's state; scored alone (a fresh scorer each) they
         * must come out the same bit for bit */
        for (int c = 0; c < 3; c++) {
            xd_scorer *one = xd_scorer_create(M, &o.settings);
            double solo = NAN;
            int cut1;
            CHECK(one && xd_score_choices(one, ctx, ch + c, 1, &solo, NULL, &cut1) == 0,
                  "score alone: %s", xd_last_error());
            CHECK(solo == got[c], "example %d choice %d: %.17g alone, %.17g after the others", i, c,
                  solo, got[c]);
            xd_scorer_free(one);
        }
        for (int c = 0; c < 3; c++) {
            ll[c] = ref_choice(ctx, ch[c], 128);
            lln[c] = ll[c] / (double)strlen(ch[c]);
            if (fabs(ll[c] - got[c]) > maxerr) maxerr = fabs(ll[c] - got[c]);
            if (ll[c] > ll[best]) best = c;
            if (lln[c] > lln[bestn]) bestn = c;
        }
        right += best == answer;
        right_norm += bestn == answer;
    }
    xd_scorer_free(sc);
    printf("choice: max |loglik − reference| = %.2e (tol 1e-4); acc %d/%d, acc_norm %d/%d\n",
           maxerr, right, n, right_norm, n);
    CHECK(maxerr < 1e-4, "choice log-likelihoods differ from the reference by %g", maxerr);
    CHECK(pick && pick->n == n && pick->score == (double)right / n &&
              pick->acc_norm == (double)right_norm / n,
          "pick: acc %g (expected %g), acc_norm %g (expected %g)", pick ? pick->score : -1,
          (double)right / n, pick ? pick->acc_norm : -1, (double)right_norm / n);
    CHECK(pick && pick->truncated == 1 && fabs(pick->chance - 1.0 / 3) < 1e-12,
          "pick: truncated %d, chance %g", pick ? pick->truncated : -1, pick ? pick->chance : -1);
    CHECK(pick4 && pick4->n == 4 && pick4->chance == 0.25, "pick4: max_examples / chance");
    CHECK(pick && !strcmp(pick->metric, "acc"), "pick metric");

    /* generate: the greedy targets match, the wrong ones do not */
    const xd_task_result *gen = find(res, "gen"), *genc = find(res, "genc");
    CHECK(gen && gen->n == 4 && fabs(gen->score - 0.75) < 1e-12 && !strcmp(gen->metric, "exact"),
          "gen: score %g n %d (expected 0.75 of 4)", gen ? gen->score : -1, gen ? gen->n : -1);
    CHECK(genc && fabs(genc->score - 0.75) < 1e-12 && !strcmp(genc->metric, "contains"),
          "genc: score %g (expected 0.75)", genc ? genc->score : -1);
    sc = xd_scorer_create(M, &o.settings);
    char *g = NULL;
    int cut;
    CHECK(xd_score_generate(sc, PROMPTS[0], 6, NULL, 0, &g, &cut) == 0 && g, "generate");
    if (g && greedy_out[0]) {
        char *ref = ref_greedy(PROMPTS[0], 6);
        CHECK(!strcmp(g, ref), "greedy: '%s' vs reference '%s'", g, ref);
        /* a stop string: the output is cut before its first occurrence */
        if (strlen(ref) >= 2) {
            char stop[2] = {ref[1], 0};
            const char *stops[] = {"\x01\x02", stop};
            char *g2 = NULL;
            CHECK(xd_score_generate(sc, PROMPTS[0], 6, stops, 2, &g2, &cut) == 0, "generate stop");
            size_t at = (size_t)(strchr(ref, ref[1]) - ref);
            CHECK(g2 && strlen(g2) == at && !strncmp(g2, ref, at), "stop '%s': '%s' (from '%s')",
                  stop, g2 ? g2 : "", ref);
            free(g2);
        }
        free(ref);
    }
    free(g);
    CHECK(xd_output_matches("  Paris \n", "Paris", XD_MATCH_EXACT) &&
              !xd_output_matches("Paris is", "Paris", XD_MATCH_EXACT) &&
              xd_output_matches("Paris is", "Paris", XD_MATCH_CONTAINS) &&
              !xd_output_matches("paris", "Paris", XD_MATCH_CONTAINS) &&
              xd_output_matches("\t", "", XD_MATCH_EXACT) &&
              xd_output_matches(" 6\n\nThe final", "6", XD_MATCH_EXACT) && /* first line */
              !xd_output_matches(" 6 7\n", "6", XD_MATCH_EXACT) &&
              !xd_output_matches("\n\n6", "7", XD_MATCH_EXACT),
          "match rules");

    /* perplexity: independent NLL of the one-window texts, xd_perplexity for the long one */
    double nll_sum = 0, tok_sum = 0, worst = 0;
    for (int i = 0; i < 3; i++) {
        double nll, ref;
        int64_t k;
        int win;
        CHECK(xd_score_text(sc, PPL_TEXT[i], &nll, &k, &win) == 0, "score_text: %s", xd_last_error());
        size_t nt;
        int32_t *ids = enc(PPL_TEXT[i], &nt), *seq = malloc((nt + 1) * sizeof *seq);
        seq[0] = BOS;
        memcpy(seq + 1, ids, nt * sizeof *ids);
        size_t scored;
        if (nt + 1 <= 128) {
            ref = ref_range(seq, (int)nt + 1, 1);
            scored = nt;
            CHECK(!win, "text %d: one window expected", i);
        } else {
            CHECK(xd_perplexity(M, seq, nt + 1, 128, 64, 0, &ref, &scored) == 0, "xd_perplexity");
            CHECK(win, "text %d (%zu tokens): several windows expected", i, nt + 1);
        }
        CHECK((size_t)k == scored, "text %d: %lld tokens scored, reference %zu", i, (long long)k, scored);
        if (fabs(nll - ref) / ref > worst) worst = fabs(nll - ref) / ref;
        nll_sum += nll;
        tok_sum += (double)k;
        free(ids);
        free(seq);
    }
    xd_scorer_free(sc);
    const xd_task_result *ppl = find(res, "ppl");
    printf("perplexity: max relative NLL difference %.2e (tol 1e-6); ppl %.4f\n", worst,
           exp(nll_sum / tok_sum));
    CHECK(worst < 1e-6, "perplexity NLL differs by %g (relative)", worst);
    CHECK(ppl && fabs(ppl->score - exp(-nll_sum / tok_sum)) < 1e-9 * ppl->score &&
              fabs(ppl->ppl * ppl->score - 1) < 1e-12 && ppl->tokens == (int64_t)tok_sum &&
              ppl->truncated == 1 && !strcmp(ppl->metric, "inv_ppl") && isnan(ppl->chance),
          "ppl task: score %g vs %g", ppl ? ppl->score : -1, exp(-nll_sum / tok_sum));

    /* every CI contains its score */
    for (int i = 0; i < res->n_tasks; i++) {
        const xd_task_result *t = &res->tasks[i];
        printf("  %-6s %-8s %.4f [%.4f, %.4f] n %d\n", t->task->name, t->metric, t->score,
               t->ci_low, t->ci_high, t->n);
        CHECK(t->ci_low <= t->score && t->score <= t->ci_high, "%s: CI [%g, %g] misses %g",
              t->task->name, t->ci_low, t->ci_high, t->score);
    }

    /* few-shot: runs, deterministic, needs enough examples; chat needs ChatML tokens */
    xd_eval_opts f = o;
    f.settings.fewshot = 2;
    xd_task_result a, b;
    sc = xd_scorer_create(M, &f.settings);
    CHECK(xd_eval_task(sc, &suite->tasks[0], &f, &a) == 0 && xd_eval_task(sc, &suite->tasks[0], &f, &b) == 0 &&
              a.score == b.score && a.ci_low == b.ci_low && a.acc_norm == b.acc_norm,
          "few-shot: %s", xd_last_error());
    f.settings.fewshot = 9;
    CHECK(xd_eval_task(sc, &suite->tasks[0], &f, &a) == -1 && strstr(xd_last_error(), "pick.jsonl:1") &&
              strstr(xd_last_error(), "--fewshot 9"),
          "too many shots: %s", xd_last_error());
    xd_scorer_free(sc);
    f.settings.fewshot = 0;
    f.settings.chat = 1;
    CHECK(xd_scorer_create(M, &f.settings) == NULL && strstr(xd_last_error(), "ChatML"),
          "chat without ChatML tokens: %s", xd_last_error());
}

static void check_bootstrap(void) {
    double ones[50], half[100], lo, hi, lo2, hi2;
    for (int i = 0; i < 50; i++) ones[i] = 1;
    for (int i = 0; i < 100; i++) half[i] = i % 2;
    CHECK(xd_bootstrap_ci(ones, NULL, 50, XD_BOOT_MEAN, 1000, 1, 0.95, &lo, &hi) == 0 && lo == 1 && hi == 1,
          "constant data: [%g, %g]", lo, hi);
    CHECK(xd_bootstrap_ci(half, NULL, 100, XD_BOOT_MEAN, 1000, 1, 0.95, &lo, &hi) == 0, "bootstrap");
    CHECK(xd_bootstrap_ci(half, NULL, 100, XD_BOOT_MEAN, 1000, 1, 0.95, &lo2, &hi2) == 0 &&
              lo == lo2 && hi == hi2, "bootstrap is not deterministic");
    /* binomial: SE = 0.05, the 95% interval ≈ 0.5 ± 0.098 */
    printf("bootstrap of 50/100: [%.4f, %.4f] (expected about [0.40, 0.60])\n", lo, hi);
    CHECK(lo > 0.38 && lo < 0.42 && hi > 0.58 && hi < 0.62, "50/100: [%g, %g]", lo, hi);
    CHECK(xd_bootstrap_ci(half, NULL, 100, XD_BOOT_MEAN, 1000, 2, 0.95, &lo2, &hi2) == 0 &&
              (lo != lo2 || hi != hi2), "another seed gives the same interval");
    double nll[3] = {10, 20, 30}, tok[3] = {5, 10, 15};
    CHECK(xd_bootstrap_ci(nll, tok, 3, XD_BOOT_INV_PPL, 1000, 1, 0.95, &lo, &hi) == 0 &&
              fabs(lo - exp(-2)) < 1e-12 && fabs(hi - exp(-2)) < 1e-12 &&
              fabs(xd_boot_point(nll, tok, 3, XD_BOOT_INV_PPL) - exp(-2)) < 1e-15,
          "inv_ppl of a constant ratio: [%g, %g]", lo, hi);
    CHECK(xd_bootstrap_ci(nll, tok, 0, XD_BOOT_MEAN, 1000, 1, 0.95, &lo, &hi) == -1, "n = 0");
}

/* ---- malformed input ------------------------------------------------------------ */

/* A one-task suite DIR/sub over file `name` with `content`; the load must fail
 * with all needles in the error. */
static void bad_task(const char *sub, const char *type, const char *content, const char *n1,
                     const char *n2, const char *n3) {
    char d[600], p[700];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/suite.json", sub);
    char sj[512];
    snprintf(sj, sizeof sj, "{\"name\":\"bad\",\"tasks\":[{\"name\":\"t\",\"file\":\"t.jsonl\",\"type\":\"%s\"}]}", type);
    write_text(p, sj);
    snprintf(p, sizeof p, "%s/t.jsonl", sub);
    write_text(p, content);
    xd_suite s;
    int rc = xd_suite_load(d, NULL, &s);
    const char *e = xd_last_error();
    CHECK(rc == -1 && strstr(e, n1) && (!n2 || strstr(e, n2)) && (!n3 || strstr(e, n3)),
          "%s: expected an error with '%s' '%s' '%s', got (rc %d) '%s'", sub, n1, n2 ? n2 : "",
          n3 ? n3 : "", rc, e);
    if (!rc) xd_suite_free(&s);
    else printf("  %s: %s\n", sub, e);
}

static void bad_suite(const char *sub, const char *suite_json, const char *only, const char *n1,
                      const char *n2) {
    char d[600], p[700];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0755);
    if (suite_json) {
        snprintf(p, sizeof p, "%s/suite.json", sub);
        write_text(p, suite_json);
    }
    snprintf(p, sizeof p, "%s/ok.jsonl", sub);
    write_text(p, "{\"text\":\"hello there\"}\n");
    xd_suite s;
    int rc = xd_suite_load(d, only, &s);
    const char *e = xd_last_error();
    CHECK(rc == -1 && strstr(e, n1) && (!n2 || strstr(e, n2)), "%s: expected '%s' '%s', got (rc %d) '%s'",
          sub, n1, n2 ? n2 : "", rc, e);
    if (!rc) xd_suite_free(&s);
    else printf("  %s: %s\n", sub, e);
}

static void check_malformed(void) {
    const char *ok = "{\"type\":\"choice\",\"context\":\"a\",\"choices\":[\" b\",\" c\",\" d\"],\"answer\":1}\n";
    char c[2048];
    snprintf(c, sizeof c, "%s%s{\"type\":\"choice\",\"context\":\"a\",\"choices\":[\" b\" \" c\"],\"answer\":0}\n", ok, ok);
    bad_task("b1", "choice", c, "b1/t.jsonl:3:", "invalid JSON", NULL);
    snprintf(c, sizeof c, "%s{\"type\":\"choice\",\"context\":\"a\",\"choices\":[\" b\",\" c\"]}\n", ok);
    bad_task("b2", "choice", c, "b2/t.jsonl:2:", "\"answer\"", "missing");
    snprintf(c, sizeof c, "%s\n%s{\"context\":\"a\",\"choices\":[\" b\",\" c\",\" d\"],\"answer\":3}\n", ok, ok);
    bad_task("b3", "choice", c, "b3/t.jsonl:4:", "\"answer\"", "[0, 2]");
    snprintf(c, sizeof c, "%s{\"type\":\"generate\",\"prompt\":\"a\",\"target\":\"b\",\"max_tokens\":3,\"match\":\"exact\"}\n", ok);
    bad_task("b4", "choice", c, "b4/t.jsonl:2:", "\"type\" is \"generate\"", "choice task");
    bad_task("b5", "choice", "{\"context\":\"a\",\"choices\":[],\"answer\":0}\n", "b5/t.jsonl:1:", "\"choices\"",
             "at least 2");
    bad_task("b6", "choice", "{\"context\":\"a\",\"choices\":[\" b\", 3],\"answer\":0}\n", "b6/t.jsonl:1:",
             "\"choices\"[1]", NULL);
    bad_task("b7", "choice", "{\"context\":\"a\",\"choices\":[\" b\",\" c\"],\"answer\":\"1\"}\n",
             "b7/t.jsonl:1:", "\"answer\"", "integer");
    bad_task("b8", "generate", "{\"prompt\":\"a\",\"target\":\"b\",\"match\":\"exact\"}\n", "b8/t.jsonl:1:",
             "\"max_tokens\"", NULL);
    bad_task("b9", "generate", "{\"prompt\":\"a\",\"target\":\"b\",\"max_tokens\":2,\"match\":\"fuzzy\"}\n",
             "b9/t.jsonl:1:", "\"match\"", "\"contains\"");
    bad_task("b10", "generate",
             "{\"prompt\":\"a\",\"target\":\"b\",\"max_tokens\":2,\"match\":\"exact\"}\n"
             "{\"prompt\":\"a\",\"target\":\"b\",\"max_tokens\":2,\"match\":\"contains\"}\n",
             "b10/t.jsonl:2:", "\"match\"", NULL);
    bad_task("b11", "perplexity", "{\"text\":\"\"}\n", "b11/t.jsonl:1:", "\"text\"", "non-empty");
    bad_task("b12", "perplexity", "[1, 2]\n", "b12/t.jsonl:1:", "JSON object", NULL);
    bad_task("b13", "perplexity", "\n\n", "b13/t.jsonl", "no examples", NULL);
    bad_task("b14", "choice", "{\"context\":\"a\",\"choices\":[\" b\",\" c\"],\"answer\":0} x\n",
             "b14/t.jsonl:1:", "invalid JSON", NULL);

    bad_suite("s1", NULL, NULL, "s1/suite.json", "cannot open");
    bad_suite("s2", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"nothere.jsonl\",\"type\":\"perplexity\"}]}",
              NULL, "s2/nothere.jsonl", "cannot open");
    bad_suite("s3", "{\"name\":\"x\",\n\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\"},]}",
              NULL, "s3/suite.json:2:", "invalid JSON");
    bad_suite("s4", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"ppl\"}]}", NULL,
              "s4/suite.json", "tasks[0]");
    bad_suite("s5", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\"},"
              "{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\"}]}", NULL, "s5/suite.json", "twice");
    bad_suite("s6", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\"}]}",
              "t,u", "no task named \"u\"", "the suite has: t");
    bad_suite("s7", "{\"tasks\":[]}", NULL, "s7/suite.json", "\"name\"");
    bad_suite("s8", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\",\"chance\":2}]}",
              NULL, "s8/suite.json", "\"chance\"");
    /* an unselected broken task does not matter */
    char d[600];
    snprintf(d, sizeof d, "%s/s9", dir);
    mkdir(d, 0755);
    write_text("s9/suite.json", "{\"name\":\"x\",\"tasks\":[{\"name\":\"t\",\"file\":\"ok.jsonl\",\"type\":\"perplexity\"},"
                                "{\"name\":\"u\",\"file\":\"missing.jsonl\",\"type\":\"perplexity\"}]}");
    write_text("s9/ok.jsonl", "{\"text\":\"hello there\"}\n");
    xd_suite s;
    CHECK(xd_suite_load(d, "t", &s) == 0 && s.n_tasks == 1, "--tasks t: %s", xd_last_error());
    xd_suite_free(&s);
}

/* ---- the CLI ---------------------------------------------------------------------- */

/* The results file with every "seconds" field removed, as compact text. */
static char *without_seconds(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK(j != NULL, "%s: %s", path, e.text);
    if (!j) return NULL;
    json_object_del(j, "seconds");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "tasks"), i, t) json_object_del(t, "seconds");
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

/* --log-samples: one line per scored example, in task order; per task, the mean of the
 * lines' scores (choice, generate) or exp(−Σ nll / Σ tokens) (perplexity) is the results
 * file's score (relative 1e-9: the same doubles summed in the same order, printed with 17
 * digits) */
static void check_samples(const char *results) {
    char a[4096], path[600];
    snprintf(path, sizeof path, "%s/samples.jsonl", dir);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s/r3.json --log-samples %s", dir, dir, path);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "eval --log-samples: %s", out);
    json_error_t e;
    json_t *res = json_load_file(results, 0, &e), *tasks = json_object_get(res, "tasks");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "no samples file %s", path);
    char line[8192];
    size_t i, lines = 0, total = 0;
    json_t *t;
    json_array_foreach(tasks, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *type = json_string_value(json_object_get(t, "type"));
        int n = (int)json_integer_value(json_object_get(t, "n")), fields = 1;
        double sum = 0, nll = 0, tok = 0;
        total += (size_t)n;
        for (int k = 0; k < n && f && fgets(line, sizeof line, f); k++, lines++) {
            json_t *x = json_loads(line, 0, &e);
            fields &= x && !strcmp(json_string_value(json_object_get(x, "task")), name) &&
                      json_integer_value(json_object_get(x, "line")) > 0;
            if (!strcmp(type, "generate"))
                fields &= json_is_string(json_object_get(x, "output")) &&
                          json_is_string(json_object_get(x, "target"));
            if (!strcmp(type, "choice"))
                fields &= json_is_integer(json_object_get(x, "pred")) &&
                          json_is_array(json_object_get(x, "loglik"));
            sum += json_number_value(json_object_get(x, "score"));
            nll += json_number_value(json_object_get(x, "nll"));
            tok += json_number_value(json_object_get(x, "tokens"));
            json_decref(x);
        }
        double want = json_number_value(json_object_get(t, "score"));
        double got = !strcmp(type, "perplexity") ? exp(-nll / tok) : sum / n;
        CHECK(fields, "samples of task %s: missing fields", name);
        CHECK(fabs(got - want) <= 1e-9 * fmax(1, fabs(want)), "samples of task %s give %.17g, "
              "the results %.17g", name, got, want);
    }
    CHECK(f && !fgets(line, sizeof line, f) && lines == total, "samples: %zu lines, %zu examples",
          lines, total);
    printf("CLI eval --log-samples: %zu lines, per-task scores recomputed from them\n", lines);
    if (f) fclose(f);
    json_decref(res);
}

static void check_cli(const xd_eval_results *lib) {
    char a[4096], p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/r1.json", dir);
    snprintf(p2, sizeof p2, "%s/r2.json", dir);
    double t0 = xd_now();
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s", dir, p1);
    int rc = test_cli_run(a, out, sizeof out, 1);
    printf("CLI eval: %.2f s\n", xd_now() - t0);
    CHECK(rc == 0, "eval: %s", out);
    CHECK(strstr(out, "pick4") && strstr(out, "inv_ppl") && strstr(out, "acc_norm"), "summary table: %s", out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s", dir, p2);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "eval again: %s", out);
    char *s1 = without_seconds(p1), *s2 = without_seconds(p2);
    CHECK(s1 && s2 && !strcmp(s1, s2), "two runs differ:\n%s\n%s", s1, s2);
    free(s1);
    free(s2);

    /* the contract's fields, and the library's numbers */
    json_error_t e;
    json_t *j = json_load_file(p1, 0, &e), *st = json_object_get(j, "settings"), *tasks = json_object_get(j, "tasks");
    CHECK(json_integer_value(json_object_get(j, "xdistill_results")) == 1 &&
              !strcmp(json_string_value(json_object_get(j, "model")), TEACHER) &&
              json_is_false(json_object_get(j, "student")) && !json_object_get(j, "window") &&
              !strcmp(json_string_value(json_object_get(j, "suite")), "tiny") &&
              !strcmp(json_string_value(json_object_get(j, "suite_dir")), dir) &&
              json_is_number(json_object_get(j, "seconds")),
          "results header");
    CHECK(json_is_true(json_object_get(st, "bos")) && json_is_false(json_object_get(st, "chat")) &&
              json_integer_value(json_object_get(st, "fewshot")) == 0 &&
              json_integer_value(json_object_get(st, "max_ctx")) == 128 &&
              json_integer_value(json_object_get(st, "bootstrap")) == 1000 &&
              json_integer_value(json_object_get(st, "seed")) == 42,
          "settings");
    CHECK(json_array_size(tasks) == 5, "5 tasks");
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t) {
        const xd_task_result *r = i < (size_t)lib->n_tasks ? &lib->tasks[i] : NULL;
        const char *type = json_string_value(json_object_get(t, "type"));
        /* the CLI may run other OpenBLAS kernels than this process (it re-executes itself
         * with the CPU's own where OpenBLAS would fall back to generic ones, src/cli/main.c),
         * so the real numbers agree to fp32 rounding of the model's sums: relative 1e-5 */
#define NEAR(key, want) near_rel(json_real_value(json_object_get(t, key)), (want), 1e-5)
        int ok = r && type && !strcmp(json_string_value(json_object_get(t, "name")), r->task->name) &&
                 !strcmp(json_string_value(json_object_get(t, "metric")), r->metric) &&
                 NEAR("score", r->score) && NEAR("ci_low", r->ci_low) && NEAR("ci_high", r->ci_high) &&
                 json_integer_value(json_object_get(t, "n")) == r->n &&
                 json_is_number(json_object_get(t, "seconds")) &&
                 json_is_boolean(json_object_get(t, "long_context")) && json_object_get(t, "chance");
        if (ok && !strcmp(type, "choice"))
            ok = NEAR("acc_norm", r->acc_norm) && json_real_value(json_object_get(t, "chance")) == r->chance;
        else if (ok && !strcmp(type, "perplexity"))
            ok = NEAR("ppl", r->ppl) &&
                 json_is_true(json_object_get(t, "long_context")) &&
                 json_is_null(json_object_get(t, "chance"));
        else if (ok) ok = json_is_null(json_object_get(t, "chance")) && !json_object_get(t, "acc_norm");
        CHECK(ok, "task %zu of the results file differs from the library's", i);
#undef NEAR
    }
    json_decref(j);
    check_samples(p1);

    /* options */
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s --tasks ppl,pick --max-examples 2 --no-bos "
             "--ctx 64 --seed 5 --bootstrap 200 --threads 1", dir, p2);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "eval with options: %s", out);
    j = json_load_file(p2, 0, &e);
    st = json_object_get(j, "settings");
    tasks = json_object_get(j, "tasks");
    CHECK(json_array_size(tasks) == 2 && json_is_false(json_object_get(st, "bos")) &&
              json_integer_value(json_object_get(st, "max_ctx")) == 64 &&
              json_integer_value(json_object_get(st, "stride")) == 32 &&
              json_integer_value(json_object_get(st, "seed")) == 5 &&
              json_integer_value(json_object_get(st, "bootstrap")) == 200 &&
              !strcmp(json_string_value(json_object_get(json_array_get(tasks, 0), "name")), "pick") &&
              json_integer_value(json_object_get(json_array_get(tasks, 0), "n")) == 2,
          "options not applied");
    json_decref(j);

    /* errors through the CLI */
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s/b3 -o %s/x.json", dir, dir);
    rc = test_cli_run(a, out, sizeof out, 0);
    CHECK(rc == 1 && strstr(out, "b3/t.jsonl:4:") && strstr(out, "\"answer\""), "CLI malformed file (%d): %s", rc, out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s/nosuite -o %s/x.json", dir, dir);
    rc = test_cli_run(a, out, sizeof out, 0);
    CHECK(rc == 1 && strstr(out, "nosuite/suite.json"), "CLI missing suite (%d): %s", rc, out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s/x.json --chat", dir, dir);
    rc = test_cli_run(a, out, sizeof out, 0);
    CHECK(rc == 1 && strstr(out, "ChatML"), "CLI --chat (%d): %s", rc, out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s/x.json --ctx 8 --stride 9", dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 2 && strstr(out, "--stride"), "CLI --stride > --ctx: %s", out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s", dir);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 2 && strstr(out, "usage"), "CLI without -o: %s", out);
    snprintf(a, sizeof a, "eval " TEACHER " --suite %s -o %s/x.json --tasks gen --ctx 6", dir, dir);
    rc = test_cli_run(a, out, sizeof out, 0);
    CHECK(rc == 1 && strstr(out, "gen.jsonl:2:") && strstr(out, "max_tokens"), "max_tokens >= ctx (%d): %s", rc, out);
    snprintf(a, sizeof a, "%s/x.json", dir);
    CHECK(access(a, F_OK) != 0, "x.json written on failure");

    /* a student */
    snprintf(a, sizeof a, "convert " TEACHER " -o %s/S --window 4 --sinks 1 --chunk 8", dir);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "convert: %s", out);
    snprintf(a, sizeof a, "eval %s/S --suite %s -o %s/rs.json --tasks pick,gen,ppl --max-examples 3", dir, dir, dir);
    CHECK(test_cli_run(a, out, sizeof out, 1) == 0, "eval student: %s", out);
    snprintf(a, sizeof a, "%s/rs.json", dir);
    j = json_load_file(a, 0, &e);
    CHECK(j && json_is_true(json_object_get(j, "student")) &&
              json_integer_value(json_object_get(j, "window")) == 4 &&
              json_array_size(json_object_get(j, "tasks")) == 3 &&
              json_integer_value(json_object_get(json_object_get(j, "settings"), "max_ctx")) == 128,
          "student results: %s", j ? "fields" : e.text);
    json_decref(j);
}

int main(int argc, char **argv) {
    /* OpenMP threads that spin at barriers crawl when other programs share the
     * cores (this test: 25 s instead of 1.2 s on a busy 2-core machine); unless
     * a policy was chosen, rerun with sleeping waits, which the CLI runs started
     * here inherit (libgomp reads the policy when it loads, hence the exec) */
    if (argc == 1 && !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT") &&
        !setenv("OMP_WAIT_POLICY", "passive", 1))
        execv("/proc/self/exe", argv);
    double t_start = xd_now();
    snprintf(dir, sizeof dir, "/tmp/xd_eval_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    M = xd_model_load(TEACHER);
    if (!M) { fprintf(stderr, "load: %s\n", xd_last_error()); return 1; }
    T = xd_model_tokenizer(M);
    V = xd_model_config(M)->vocab_size;
    BOS = xd_tokenizer_bos(T);
    make_suite();

    xd_suite suite;
    xd_eval_results res = {0};
    check_library(&res, &suite);
    check_bootstrap();
    check_malformed();
    check_cli(&res);

    xd_eval_results_free(&res);
    xd_suite_free(&suite);
    for (int i = 0; i < 3; i++) free(greedy_out[i]);
    xd_model_free(M);
    char a[512];
    snprintf(a, sizeof a, "rm -rf %s", dir);
    CHECK(system(a) == 0, "cleanup");
    printf("test_eval: %.1f s\n", xd_now() - t_start);
    return test_summary("test_eval");
}
