/* xdistill merge -o OUT [--normalize] [--allow-unrelated] A[:w] B[:w] ...
 *   Stage III (docs/design.md, "Stage III"): θ = Σ λ_i θ_i over K experts trained by
 *   `distill stage2` from one Stage I checkpoint, streamed tensor by tensor
 *   (train/merge.h says what is checked and how the sum is formed). Weights
 *   default to 1/K; given weights must be finite, ≥ 0 and sum to 1 (within
 *   1e-6) unless --normalize, which divides them by their sum.
 * xdistill merge -o OUT --search SUITE_DIR [--grid N] [--objective O]
 *                [--teacher-results T.json] [--tasks a,b] [--max-examples N] A B ...
 *   chooses λ on a dev suite first (train/merge_search.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "train/merge.h"
#include "core/dist.h"
#include "train/merge_search.h"
#include "xdistill.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: xdistill merge -o OUT [--normalize] [--allow-unrelated] EXPERT[:WEIGHT] ...\n"
            "       xdistill merge -o OUT --search SUITE_DIR [search options] EXPERT ...\n"
            "  EXPERT           an HF student directory from `distill stage2`\n"
            "  :WEIGHT          its weight λ (default: 1/K for every expert; give all or none)\n"
            "  --normalize      divide the weights by their sum (else they must sum to 1)\n"
            "  --allow-unrelated  merge experts without one common base_hash (Stage I checkpoint)\n"
            "search: evaluate every λ = (k_1/N, ..., k_K/N), k_i >= 0, Σ k_i = N, on the dev\n"
            "suite (as `xdistill eval` does), then write the merge with the best one and\n"
            "OUT/search.json; OUT.search.jsonl lets an interrupted search resume\n"
            "  --search DIR     the dev suite (suite.json)\n"
            "  --grid N         grid steps 1/N, N in [1, %d] (default 4); at most %d candidates\n"
            "  --objective O    mean (mean task score; the default without a teacher),\n"
            "                   recovery (mean A_S/A_T; the default with one), or c:ALPHA\n"
            "                   (win-and-tie C_α against the teacher, α in [0, 0.5]; ties by recovery)\n"
            "  --teacher-results T.json  the teacher's `xdistill eval` results on the suite\n"
            "  --tasks a,b      only these tasks of the suite\n"
            "  --max-examples N at most N examples per task (the first N)\n",
            XD_MSEARCH_GRID_MAX, XD_MSEARCH_MAX);
}

/* The options of --search; search = NULL when not given. */
typedef struct {
    const char *search, *grid, *objective, *teacher, *tasks, *max_examples;
} search_args;

/* 1 if argv[*i] is a search option (value stored), 0 if not, -1 on a missing value. */
static int take_search_opt(int argc, char **argv, int *i, search_args *a) {
    static const char *const names[] = {"--search", "--grid", "--objective", "--teacher-results",
                                        "--tasks", "--max-examples"};
    const char **slots[] = {&a->search, &a->grid, &a->objective, &a->teacher, &a->tasks, &a->max_examples};
    for (size_t j = 0; j < sizeof names / sizeof *names; j++) {
        int t = take_opt(argc, argv, i, names[j], slots[j]);
        if (t) return t;
    }
    return 0;
}

/* Options of a search into o; 2 on a usage error (printed), else 0. */
static int search_opts(const search_args *a, int k, int n_weighted, xd_msearch_opts *o) {
    if (!a->search) {
        const char *stray = a->grid ? "--grid" : a->objective ? "--objective" : a->teacher ? "--teacher-results"
                          : a->tasks ? "--tasks" : a->max_examples ? "--max-examples" : NULL;
        if (stray) return cli_error("merge: %s needs --search SUITE_DIR", stray), 2;
        return 0;
    }
    o->suite_dir = a->search;
    if (n_weighted)
        return cli_error("merge: --search chooses the weights: give the experts without ':WEIGHT' "
                         "(%d of %d have one)", n_weighted, k), 2;
    if (a->grid && parse_int("--grid", a->grid, 1, XD_MSEARCH_GRID_MAX, &o->grid)) return 2;
    if (a->max_examples && parse_int("--max-examples", a->max_examples, 1, 1 << 30, &o->max_examples))
        return 2;
    o->tasks = a->tasks;
    o->teacher_results = a->teacher;
    o->objective = a->teacher ? XD_MSEARCH_RECOVERY : XD_MSEARCH_MEAN;
    if (a->objective && xd_msearch_parse_objective(a->objective, &o->objective, &o->alpha))
        return cli_lib_error(), 2;
    if (xd_msearch_check_opts(k, o)) return cli_lib_error(), 2; /* usage errors, all of them */
    return 0;
}

int cmd_merge(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage(stdout), 0;
    const char *out = NULL;
    xd_merge_opts o = {0, 0, 1, NULL, NULL};
    search_args sa = {0};
    int k = 0, n_weighted = 0, rc = 2;
    char **paths = calloc((size_t)argc, sizeof *paths);
    const char **in = calloc((size_t)argc, sizeof *in);
    double *w = calloc((size_t)argc, sizeof *w);
    if (!paths || !in || !w) { rc = cli_error("out of memory"); goto done; }
    for (int i = 1; i < argc; i++) {
        int t = take_opt(argc, argv, &i, "-o", &out);
        if (!t) t = take_search_opt(argc, argv, &i, &sa);
        if (t < 0) goto done;
        if (t) continue;
        if (!strcmp(argv[i], "--normalize")) o.normalize = 1;
        else if (!strcmp(argv[i], "--allow-unrelated")) o.allow_unrelated = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("merge: unknown option '%s'", argv[i]);
            usage(stderr);
            goto done;
        } else {
            if (!(paths[k] = strdup(argv[i]))) { rc = cli_error("out of memory"); goto done; }
            in[k] = paths[k];
            char *c = strrchr(paths[k++], ':'); /* counted now, so that an error frees it */
            if (c) {
                char *end = NULL;
                errno = 0;
                double v = strtod(c + 1, &end);
                if (c[1] == 0 || *end || errno == ERANGE) {
                    cli_error("merge: '%s': the weight after ':' is not a number", argv[i]);
                    goto done;
                }
                *c = 0;
                w[k - 1] = v;
                n_weighted++;
            }
        }
    }
    if (!out || !k) { usage(stderr); goto done; }
    xd_msearch_opts so;
    xd_msearch_defaults(&so);
    if (search_opts(&sa, k, n_weighted, &so)) goto done;
    if (n_weighted && n_weighted != k) {
        cli_error("merge: give a weight to every expert or to none (%d of %d have one)", n_weighted, k);
        goto done;
    }
    if (sa.search) {
        so.merge = o;
        /* a test hook: stop as if interrupted once N candidates were evaluated */
        const char *stop = getenv("XD_MERGE_SEARCH_STOP_AFTER");
        if (stop && parse_int("XD_MERGE_SEARCH_STOP_AFTER", stop, 0, XD_MSEARCH_MAX, &so.stop_after)) goto done;
        xd_msearch_info info;
        rc = xd_merge_search(in, k, &so, out, &info) ? cli_lib_error() : 0;
        if (!rc)
            printf("{\"kind\":\"merge\",\"experts\":%d,\"model\":\"%s\",\"search\":{\"candidates\":%d,"
                   "\"evaluated\":%d,\"resumed\":%d,\"chosen\":%d}}\n", k, out, info.n_candidates,
                   info.n_evaluated, info.n_resumed, info.chosen);
        goto done;
    }
    if (xd_dist_size() > 1) { /* one merge, one writer */
        cli_error("merge: without --search a merge runs in one process: start it without mpirun");
        goto done;
    }
    rc = xd_merge(in, n_weighted ? w : NULL, k, &o, out) ? cli_lib_error() : 0;
    if (!rc) printf("{\"kind\":\"merge\",\"experts\":%d,\"model\":\"%s\"}\n", k, out);
done:
    for (int i = 0; i < k; i++) free(paths[i]);
    free(paths);
    free(in);
    free(w);
    return rc;
}
