/* Stage III (docs/design.md, "Stage III"): choosing the merge weights λ on a dev suite
 * (`xdistill merge --search`), then writing the merge with the best λ.
 *
 * Candidates: every λ with λ_i = k_i / N, k_i ≥ 0 integers, Σ k_i = N
 * (N = grid), i.e. C(N+K−1, K−1) of them, in reverse lexicographic order of
 * (k_1, …, k_K): k_1 from N down to 0, for each k_2 from N − k_1 down to 0,
 * …, k_K the rest. Candidate 0 is λ = (1, 0, …, 0), the last (0, …, 0, 1);
 * K = 2, N = 4: (1,0) (.75,.25) (.5,.5) (.25,.75) (0,1). At most
 * XD_MSEARCH_MAX candidates.
 *
 * Each candidate: xd_merge of the inputs with weights k_i / N (as doubles,
 * with o->merge's normalize / allow_unrelated) into OUT.search.tmp/candidate,
 * xd_model_load, xd_eval_suite with the defaults of `xdistill eval`
 * (xd_eval_opts_default; o->tasks, o->max_examples), the objective; the model
 * is freed and the directory deleted before the next candidate, so one model
 * at most is in memory (the merge itself streams tensor by tensor).
 *
 * Objectives, higher is better; A_S = the candidate's score on a task, A_T =
 * the teacher's (o->teacher_results, an `xdistill eval` results file):
 *   mean      Σ A_S / n over the n tasks, in suite order;
 *   recovery  mean over tasks of r = A_S / A_T, where a task with A_T = 0
 *             counts r = 1 (nothing to recover; win-and-tie counts it a win or
 *             tie at every α). r is not capped: a task beyond the teacher
 *             counts above 1;
 *   c:ALPHA   C_α = mean over tasks of 1_α = [A_S ≥ (1 − α)·A_T] (wintie.h:
 *             xd_wt_win), ties in C_α broken by the mean recovery above.
 * If a task score is not finite the objective is NaN and the candidate never
 * wins (the search fails when no candidate has a finite objective). Ties (in
 * the objective and, for c, the tie-break) go to the earliest candidate.
 *
 * Teacher results must be comparable with the candidates' results exactly as
 * `compare` requires (xd_cmp_results_check: suite, settings, task names,
 * types and metrics); this is checked before any candidate is evaluated.
 *
 * Output: OUT, the ordinary merge (merge.h) with the chosen weights, holding
 * also OUT/search.json:
 *   {"xdistill_merge_search":1, "experts":[{"path","weights_hash"}],
 *    "suite", "suite_dir", "tasks":[names], "settings":{…as in results
 *    files}, "max_examples", "objective":"mean"|"recovery"|"c:ALPHA",
 *    "alpha" (c only), "teacher_results" (path or null), "teacher_scores"
 *    ([per task] or null), "grid":N, "order":"…",
 *    "candidates":[{"index","k":[k_i],"lambda":[k_i/N],"scores":[per task,
 *    suite order], "objective", "recovery" (with a teacher), "seconds",
 *    "resumed"}],
 *    "chosen":index, "lambda":[…], "n_evaluated", "n_resumed", "seconds"}
 * (scores are null when not finite).
 *
 * Resume: OUT.search.jsonl holds a header line {"xdistill_merge_search":1,
 * "key":{…}, "paths":[…]} — key: every expert's weights hash
 * (xd_merge_check), a hash of the first expert's config.json, the tokenizer
 * hash, the suite's name and a hash of suite.json and the task files, the
 * task names, the evaluation settings, max_examples, grid, objective, a hash
 * of the teacher results file, normalize and allow_unrelated — then one line
 * per finished candidate {"index","k","scores","seconds"}, each flushed and
 * fsync'ed. A rerun whose key equals the header's skips those candidates
 * (their scores are read back; the objective is recomputed from them); a
 * different key, or a file that cannot be read as one, starts over (said on
 * XD_LOG_WARN with o->progress). A torn last line is dropped. The file is deleted
 * once OUT is committed. */
#ifndef XD_MERGE_SEARCH_H
#define XD_MERGE_SEARCH_H

#include "train/merge.h"

#define XD_MSEARCH_MAX 500     /* candidates */
#define XD_MSEARCH_GRID_MAX 64 /* N */

typedef enum { XD_MSEARCH_MEAN = 0, XD_MSEARCH_RECOVERY, XD_MSEARCH_C } xd_msearch_objective;

typedef struct {
    xd_merge_opts merge;                /* normalize / allow_unrelated for every merge; verbose:
                                         * the final merge's line */
    const char *suite_dir;              /* the dev suite */
    const char *tasks;                  /* comma-separated subset of the suite; NULL = all */
    int max_examples;                   /* per task; 0 = the suite's limits */
    int grid;                           /* N in [1, XD_MSEARCH_GRID_MAX] */
    xd_msearch_objective objective;
    double alpha;                       /* c: α in [0, 0.5] */
    const char *teacher_results;        /* needed by recovery and c; NULL = none */
    int progress;                       /* one XD_LOG_INFO line per candidate */
    int stop_after;                     /* tests: fail once this many candidates were evaluated
                                         * by this run, as an interrupted search would (0: never) */
} xd_msearch_opts;

typedef struct {
    int n_candidates, n_evaluated, n_resumed;
    int chosen;      /* index of the chosen candidate */
    int restarted;   /* a resume file with another header was discarded */
} xd_msearch_info;

/* grid 4, objective mean, progress on, nothing else. */
void xd_msearch_defaults(xd_msearch_opts *o);

/* "mean", "recovery" or "c:ALPHA" with ALPHA a number in [0, 0.5]. */
int xd_msearch_parse_objective(const char *s, xd_msearch_objective *obj, double *alpha);

/* C(N+K−1, K−1) for k experts and grid N, as a double (exact below 2^53). */
double xd_msearch_count(int k, int grid);
/* The checks xd_merge_search makes of its options for k experts (grid, the
 * candidate count, α, a teacher for recovery and c): 0, or -1 with the error. */
int xd_msearch_check_opts(int k, const xd_msearch_opts *o);

/* The search (above). info may be NULL. */
int xd_merge_search(const char *const *inputs, int k, const xd_msearch_opts *o,
                    const char *out_dir, xd_msearch_info *info);

#endif
