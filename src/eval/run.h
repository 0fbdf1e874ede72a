/* Running a suite's tasks on one model: per-example scoring (scoring.h),
 * few-shot contexts, per-task scores with bootstrap confidence intervals
 * (bootstrap.h), wall time, progress (XD_LOG_PROGRESS, xd_set_log). */
#ifndef XD_EVAL_RUN_H
#define XD_EVAL_RUN_H

#include <jansson.h>
#include <stdint.h>

#include "eval/scoring.h"
#include "eval/tasks.h"
#include "xdistill.h"

typedef struct {
    xd_eval_settings settings;
    uint64_t seed;    /* bootstrap resamples and few-shot picks (default: the suite's) */
    int bootstrap;    /* resamples B (default 1000) */
    int max_examples; /* at most this many examples per task; 0 = the suite's limits only */
    int progress;     /* progress reports (XD_LOG_PROGRESS), one run per task */
    int local;        /* 1: score every example here, even as one of several MPI ranks
                       * (each rank evaluating a model of its own); 0: under mpirun the
                       * ranks share the examples (core/dist.h) */
    json_t *samples;  /* when set (a JSON array), one object per scored example is
                       * appended: task, line, score; generate: output, target;
                       * choice: pred, answer, loglik; perplexity: nll, tokens */
} xd_eval_opts;

void xd_eval_opts_default(xd_eval_opts *o, const xd_model *m, const xd_suite *s);

typedef struct {
    const xd_task *task;
    const char *metric;       /* "acc", "exact", "contains", "inv_ppl" */
    int n;                    /* examples scored: the first n of the file */
    double score, ci_low, ci_high;
    double acc_norm, acc_norm_ci_low, acc_norm_ci_high; /* choice */
    double ppl;               /* perplexity: exp(Σ NLL / Σ tokens) = 1 / score */
    int64_t tokens;           /* perplexity: tokens scored */
    double chance;            /* the suite's, else (choice) mean of 1/#choices; NAN: none */
    int truncated;            /* examples whose context was cut to max_ctx (perplexity:
                               * texts scored in more than one window) */
    double seconds;
} xd_task_result;

/* Examples i: the few-shot picks are K distinct other examples of the same
 * file (never i itself), drawn with xd_rng seeded from (seed, task, i), so
 * the same for every model; each shot is its context + right answer (choice)
 * or prompt + target (generate) followed by "\n\n". Perplexity texts take no
 * shots. Errors of one example are prefixed with "FILE:LINE: ". */
int xd_eval_task(xd_scorer *sc, const xd_task *t, const xd_eval_opts *o, xd_task_result *r);

typedef struct {
    const char *model;        /* the path as given */
    int student, window, sinks;
    uint64_t tokenizer_hash;
    const xd_suite *suite;
    xd_eval_opts opts;
    xd_task_result *tasks;    /* one per suite task, in suite order */
    int n_tasks;
    double seconds;
} xd_eval_results;

/* Every task of s on m (r->tasks is malloc'ed; xd_eval_results_free). */
int xd_eval_suite(const xd_model *m, const char *model_path, const xd_suite *s,
                  const xd_eval_opts *o, xd_eval_results *r);
void xd_eval_results_free(xd_eval_results *r);

#endif
