/* The suite runner: examples → per-task scores, confidence intervals, times. */
#include "eval/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "eval/bootstrap.h"

void xd_eval_opts_default(xd_eval_opts *o, const xd_model *m, const xd_suite *s) {
    memset(o, 0, sizeof *o);
    xd_eval_settings_default(&o->settings, m);
    o->seed = s ? s->seed : 0;
    o->bootstrap = 1000;
    o->progress = 1;
}

/* ---- few-shot contexts ------------------------------------------------------- */

/* The context (or prompt) of example i with K shots in front; returned in b. */
static int with_shots(const xd_task *t, int i, int K, uint64_t seed, xd_sbuf *b) {
    xd_sb_clear(b);
    if (xd_sb_puts(b, "")) return -1;
    if (K > 0 && t->type != XD_TASK_PERPLEXITY) {
        if (K > t->n_ex - 1)
            return xd_err("--fewshot %d needs at least %d examples in the task file (it has %d)",
                          K, K + 1, t->n_ex);
        int picks[64], *pk = K <= 64 ? picks : malloc((size_t)K * sizeof *pk);
        if (!pk) return xd_err("eval: out of memory");
        xd_rng r;
        xd_rng_seed(&r, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
        for (int k = 0; k < K;) {
            int j = (int)(xd_rng_u64(&r) % (uint64_t)t->n_ex), dup = j == i;
            for (int q = 0; q < k && !dup; q++) dup = pk[q] == j;
            if (!dup) pk[k++] = j;
        }
        int rc = 0;
        for (int k = 0; k < K && !rc; k++) {
            const xd_example *e = &t->ex[pk[k]];
            rc = xd_sb_puts(b, e->text) ||
                 xd_sb_puts(b, t->type == XD_TASK_CHOICE ? e->choices[e->answer] : e->target) ||
                 xd_sb_puts(b, "\n\n");
        }
        if (pk != picks) free(pk);
        if (rc) return -1;
    }
    return xd_sb_puts(b, t->ex[i].text);
}

/* ---- one task ------------------------------------------------------------------ */

static int examples_to_run(const xd_task *t, const xd_eval_opts *o);

/* out as a JSON string; when it is not valid UTF-8 (a generation cut inside
 * a character), every byte >= 0x80 is written as the text \xNN. */
static json_t *output_string(const char *out) {
    json_t *j = json_string(out);
    if (j) return j;
    xd_sbuf b = {0};
    int rc = xd_sb_puts(&b, "");
    for (const unsigned char *p = (const unsigned char *)out; *p && !rc; p++)
        rc = *p < 0x80 ? xd_sb_printf(&b, "%c", *p) : xd_sb_printf(&b, "\\x%02X", *p);
    j = rc ? NULL : json_string(b.s);
    xd_sb_free(&b);
    return j;
}

/* One example's record for o->samples (run.h). */
static int log_sample(const xd_eval_opts *o, const xd_task *t, const xd_example *e, double score,
                      json_t *extra) {
    json_t *s = json_pack("{s:s, s:i, s:f}", "task", t->name, "line", e->line, "score", score);
    if (!s || json_object_update(s, extra) || json_array_append_new(o->samples, s)) {
        json_decref(s);
        json_decref(extra);
        return xd_err("eval: out of memory");
    }
    json_decref(extra);
    return 0;
}

static int argmax_d(const double *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* With several ranks (core/dist.h): the sample records of examples start.., which rank
 * r appended for its examples i ≡ r (mod N) in order, gathered on rank 0 into o->samples
 * in example order. */
static int gather_samples(const xd_eval_opts *o, size_t start, int n) {
    int N = xd_dist_size(), me = xd_dist_rank(), rc = -1;
    json_t *mine = json_array(), **parts = calloc((size_t)N, sizeof *parts);
    char *text = NULL, *all = NULL;
    int64_t *len = calloc((size_t)N, sizeof *len);
    size_t *bytes = calloc((size_t)N, sizeof *bytes);
    if (!mine || !parts || !len || !bytes) { xd_err("eval: out of memory"); goto done; }
    for (size_t k = start; k < json_array_size(o->samples); k++)
        json_array_append(mine, json_array_get(o->samples, k));
    if (!(text = json_dumps(mine, JSON_COMPACT))) { xd_err("eval: out of memory"); goto done; }
    len[me] = (int64_t)strlen(text) + 1;
    if (xd_dist_sum_i64(len, (size_t)N)) goto done; /* every rank's length, on every rank */
    size_t total = 0;
    for (int r = 0; r < N; r++) total += bytes[r] = (size_t)len[r];
    if (me == 0 && !(all = malloc(total))) { xd_err("eval: out of memory"); goto done; }
    if (xd_dist_gather(text, all, bytes, 0)) goto done;
    if (me == 0) {
        size_t at = 0;
        for (int r = 0; r < N; r++, at += bytes[r - 1])
            if (!(parts[r] = json_loads(all + at, 0, NULL))) {
                xd_err("eval: rank %d's samples do not parse", r);
                goto done;
            }
        while (json_array_size(o->samples) > start) json_array_remove(o->samples, start);
        for (int i = 0; i < n; i++)
            if (json_array_append(o->samples, json_array_get(parts[i % N], (size_t)(i / N)))) {
                xd_err("eval: out of memory");
                goto done;
            }
    }
    rc = 0;
done:
    for (int r = 0; parts && r < N; r++) json_decref(parts[r]);
    free(parts);
    json_decref(mine);
    free(text);
    free(all);
    free(len);
    free(bytes);
    return rc;
}

int xd_eval_task(xd_scorer *sc, const xd_task *t, const xd_eval_opts *o, xd_task_result *r) {
    memset(r, 0, sizeof *r);
    r->task = t;
    r->metric = xd_task_metric(t);
    r->chance = t->chance;
    r->acc_norm = r->acc_norm_ci_low = r->acc_norm_ci_high = r->ppl = NAN;
    int n = examples_to_run(t, o);
    r->n = n;
    uint64_t seed = o->seed ^ xd_fnv1a64_str(t->name);
    double t0 = xd_now();
    double *num = calloc((size_t)n, sizeof *num), *den = calloc((size_t)n, sizeof *den);
    double *norm = calloc((size_t)n, sizeof *norm);
    int max_choices = 0;
    for (int i = 0; i < n; i++)
        if (t->ex[i].n_choices > max_choices) max_choices = t->ex[i].n_choices;
    double *ll = malloc((size_t)(max_choices ? max_choices : 1) * sizeof *ll);
    double *lln = malloc((size_t)(max_choices ? max_choices : 1) * sizeof *lln);
    xd_sbuf ctx = {0};
    char *out = NULL;
    int rc = -1;
    if (!num || !den || !norm || !ll || !lln) { xd_err("eval: out of memory"); goto done; }
    xd_progress pr = {0};
    if (o->progress) xd_progress_start(&pr, t->name, 0, n);
    double running = 0, running_nll = 0, inv_chance = 0;
    for (int i = 0; i < n && t->type == XD_TASK_CHOICE; i++) inv_chance += 1.0 / t->ex[i].n_choices;
    /* With N ranks, rank r scores the examples i ≡ r (mod N); each example is scored alone,
     * so its numbers do not depend on the split, and the per-example arrays are then summed
     * across ranks (every entry is one rank's value plus zeros: exact). */
    int N = o->local ? 1 : xd_dist_size(), me = o->local ? 0 : xd_dist_rank(), mine = 0;
    size_t samples0 = o->samples ? json_array_size(o->samples) : 0;
    for (int i = 0; i < n; i++) {
        const xd_example *e = &t->ex[i];
        int cut = 0;
        if (i % N != me) continue;
        mine++;
        if (with_shots(t, i, o->settings.fewshot, seed, &ctx)) goto fail_ex;
        switch (t->type) {
        case XD_TASK_CHOICE:
            if (xd_score_choices(sc, ctx.s, (const char *const *)e->choices, e->n_choices, ll,
                                 NULL, &cut))
                goto fail_ex;
            for (int c = 0; c < e->n_choices; c++)
                lln[c] = ll[c] / (double)strlen(e->choices[c]);
            num[i] = argmax_d(ll, e->n_choices) == e->answer;
            norm[i] = argmax_d(lln, e->n_choices) == e->answer;
            if (o->samples) {
                json_t *lls = json_array();
                for (int c = 0; lls && c < e->n_choices; c++)
                    if (json_array_append_new(lls, json_real(ll[c]))) break;
                if (log_sample(o, t, e, t->acc_norm ? norm[i] : num[i],
                               json_pack("{s:i, s:i, s:o*}", "pred",
                                         argmax_d(t->acc_norm ? lln : ll, e->n_choices),
                                         "answer", e->answer, "loglik", lls)))
                    goto fail_ex;
            }
            break;
        case XD_TASK_GENERATE:
            if (xd_score_generate(sc, ctx.s, e->max_tokens, (const char *const *)e->stop,
                                  e->n_stop, &out, &cut))
                goto fail_ex;
            num[i] = xd_output_matches(out, e->target, e->match);
            if (o->samples && log_sample(o, t, e, num[i],
                                         json_pack("{s:o, s:s}", "output", output_string(out), "target",
                                                   e->target)))
                goto fail_ex;
            free(out);
            out = NULL;
            break;
        case XD_TASK_PERPLEXITY: {
            int64_t k;
            if (xd_score_text(sc, ctx.s, &num[i], &k, &cut)) goto fail_ex;
            den[i] = (double)k;
            if (o->samples && log_sample(o, t, e, k ? exp(-num[i] / (double)k) : 0.0,
                                         json_pack("{s:f, s:I}", "nll", num[i], "tokens",
                                                   (json_int_t)k)))
                goto fail_ex;
            break;
        }
        }
        r->truncated += cut;
        if (o->progress) {
            char extra[64];
            if (t->type == XD_TASK_PERPLEXITY) {
                running += den[i];
                running_nll += num[i];
                snprintf(extra, sizeof extra, "ppl %.3f", exp(running_nll / running));
            } else {
                running += num[i];
                snprintf(extra, sizeof extra, "%s %.3f", r->metric, running / mine);
            }
            xd_progress_update(&pr, i + 1, extra);
        }
        continue;
    fail_ex:
        if (o->progress) xd_progress_end(&pr);
        xd_err_prefix("%s:%d: task '%s'", t->path, e->line, t->name);
        goto done;
    }
    if (o->progress) xd_progress_end(&pr);
    if (N > 1) {
        int64_t trunc = r->truncated;
        if (xd_dist_sum_f64(num, (size_t)n) || xd_dist_sum_f64(den, (size_t)n) ||
            xd_dist_sum_f64(norm, (size_t)n) || xd_dist_sum_i64(&trunc, 1) ||
            (o->samples && gather_samples(o, samples0, n)))
            goto done;
        r->truncated = (int)trunc;
    }
    xd_boot_stat stat = t->type == XD_TASK_PERPLEXITY ? XD_BOOT_INV_PPL : XD_BOOT_MEAN;
    r->score = xd_boot_point(num, den, n, stat);
    if (xd_bootstrap_ci(num, den, n, stat, o->bootstrap, seed, 0.95, &r->ci_low, &r->ci_high))
        goto done;
    if (t->type == XD_TASK_CHOICE) {
        r->acc_norm = xd_boot_point(norm, NULL, n, XD_BOOT_MEAN);
        if (xd_bootstrap_ci(norm, NULL, n, XD_BOOT_MEAN, o->bootstrap, seed, 0.95,
                            &r->acc_norm_ci_low, &r->acc_norm_ci_high))
            goto done;
        if (isnan(r->chance)) r->chance = inv_chance / n;
        if (t->acc_norm) { /* the task's score is the length-normalised accuracy */
            r->score = r->acc_norm;
            r->ci_low = r->acc_norm_ci_low;
            r->ci_high = r->acc_norm_ci_high;
        }
    }
    if (t->type == XD_TASK_PERPLEXITY) {
        r->ppl = 1.0 / r->score;
        for (int i = 0; i < n; i++) r->tokens += (int64_t)den[i];
    }
    r->seconds = xd_now() - t0;
    rc = 0;
done:
    free(num);
    free(den);
    free(norm);
    free(ll);
    free(lln);
    xd_sb_free(&ctx);
    free(out);
    return rc;
}

/* ---- the suite ------------------------------------------------------------------ */

void xd_eval_results_free(xd_eval_results *r) {
    free(r->tasks);
    r->tasks = NULL;
    r->n_tasks = 0;
}

static int examples_to_run(const xd_task *t, const xd_eval_opts *o) {
    int n = t->n_ex;
    if (t->max_examples && t->max_examples < n) n = t->max_examples;
    if (o->max_examples && o->max_examples < n) n = o->max_examples;
    return n;
}

/* What would fail only when a task's turn comes: checked before the first one. */
static int precheck(const xd_suite *s, const xd_eval_opts *o) {
    for (int i = 0; i < s->n_tasks; i++) {
        const xd_task *t = &s->tasks[i];
        int K = o->settings.fewshot;
        if (K > 0 && t->type != XD_TASK_PERPLEXITY && K > t->n_ex - 1)
            return xd_err("%s:%d: task '%s': --fewshot %d needs at least %d examples in the task "
                          "file (it has %d)", t->path, t->ex[0].line, t->name, K, K + 1, t->n_ex);
        int n = examples_to_run(t, o);
        for (int j = 0; t->type == XD_TASK_GENERATE && j < n; j++)
            if (t->ex[j].max_tokens >= o->settings.max_ctx)
                return xd_err("%s:%d: task '%s': max_tokens %d must be in [1, max_ctx %d) to "
                              "leave room for the prompt", t->path, t->ex[j].line, t->name,
                              t->ex[j].max_tokens, o->settings.max_ctx);
    }
    return 0;
}

int xd_eval_suite(const xd_model *m, const char *model_path, const xd_suite *s,
                  const xd_eval_opts *o, xd_eval_results *r) {
    memset(r, 0, sizeof *r);
    if (precheck(s, o)) return -1;
    const xd_config *c = xd_model_config(m);
    r->model = model_path;
    r->student = c->student;
    r->window = c->window;
    r->sinks = c->sinks;
    r->tokenizer_hash = xd_model_tokenizer(m) ? xd_tokenizer_hash(xd_model_tokenizer(m)) : 0;
    r->suite = s;
    r->opts = *o;
    if (!(r->tasks = calloc((size_t)s->n_tasks, sizeof *r->tasks))) return xd_err("eval: out of memory");
    xd_scorer *sc = xd_scorer_create(m, &o->settings);
    if (!sc) { xd_eval_results_free(r); return -1; }
    double t0 = xd_now();
    for (int i = 0; i < s->n_tasks; i++) {
        if (xd_eval_task(sc, &s->tasks[i], o, &r->tasks[i])) {
            xd_scorer_free(sc);
            xd_eval_results_free(r);
            return -1;
        }
        r->n_tasks++;
    }
    r->seconds = xd_now() - t0;
    xd_scorer_free(sc);
    return 0;
}
