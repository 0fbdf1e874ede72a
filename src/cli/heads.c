/* xdistill heads TEACHER --window W [--sinks S] [--probes N] [--lengths 2,4,8] [--seed S]
 *                [--top K] [--score-all] [-o heads.json] [--threads N]
 * Ranks the teacher's query heads by how much they retrieve from beyond the
 * window (model/head_probe.h; docs/distill.md, "Choosing global heads"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/head_probe.h"
#include "xdistill.h"

#define MAX_LENGTHS 16

static const char USAGE[] =
    "usage: xdistill heads TEACHER --window W [--sinks S] [--probes N] [--lengths 2,4,8] "
    "[--seed S] [--top K] [--score-all] [-o heads.json] [--threads N]";

/* "2,4,8": multiples of the window */
static int parse_lengths(const char *s, int *mult, int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return cli_error("--lengths: '%s' is too long", s), -1;
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LENGTHS) return cli_error("--lengths: at most %d lengths", MAX_LENGTHS), -1;
        if (parse_int("--lengths", tok, 1, 4096, &mult[*n])) return -1;
        (*n)++;
    }
    if (!*n) return cli_error("--lengths: '%s' has no lengths (e.g. 2,4,8: multiples of --window)", s), -1;
    return 0;
}

int cmd_heads(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *model = NULL, *out = NULL, *v;
    int window = 0, top = 20, threads = 0, r, mult[MAX_LENGTHS] = {2, 4, 8}, n_mult = 3;
    xd_head_probe_opts o;
    xd_head_probe_defaults(&o);
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--window", &v))) {
            if (r < 0 || parse_int("--window", v, 1, 1 << 20, &window)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--sinks", &v))) {
            if (r < 0 || parse_int("--sinks", v, 0, 1 << 20, &o.sinks)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--probes", &v))) {
            if (r < 0 || parse_int("--probes", v, 1, 100000, &o.n_probes)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--lengths", &v))) {
            if (r < 0 || parse_lengths(v, mult, &n_mult)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &o.seed)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--top", &v))) {
            if (r < 0 || parse_int("--top", v, 1, 1 << 20, &top)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            out = v;
        } else if (!strcmp(argv[i], "--score-all")) o.score_all = 1;
        else if (argv[i][0] == '-') return cli_error("heads: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("heads: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model) return cli_error("%s", USAGE), 2;
    if (!window) return cli_error("heads: --window W is required (the student's window)\n%s", USAGE), 2;
    int lengths[MAX_LENGTHS];
    for (int i = 0; i < n_mult; i++) {
        if ((long)mult[i] * window > (1 << 24))
            return cli_error("--lengths: %d × --window %d tokens is too long", mult[i], window), 2;
        lengths[i] = mult[i] * window;
    }
    o.window = window;
    o.lengths = lengths;
    o.n_lengths = n_mult;
    if (threads && xd_set_threads(threads)) return cli_lib_error();
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    xd_head_ranking rk;
    if (xd_head_probe_rank(m, &o, &rk)) {
        xd_model_free(m);
        return cli_lib_error();
    }
    int rc = 0;
    if (out && xd_head_ranking_save(&rk, &o, model, out)) rc = cli_lib_error();
    cli_log_break();
    printf("teacher %s: window %d, sinks %d, %d probes of", model, window, o.sinks, rk.n_probes);
    for (int i = 0; i < n_mult; i++) printf("%s%d", i ? "," : " ", lengths[i]);
    printf(" tokens, seed %llu\n", (unsigned long long)o.seed);
    printf("teacher accuracy: %d/%d (%.1f%%); %d probes scored; %.1f s\n", rk.n_correct,
           rk.n_probes, 100.0 * rk.accuracy, rk.n_scored, rk.seconds);
    printf("%4s %5s %4s %8s %7s %8s\n", "rank", "layer", "head", "score", "argmax", "beyond");
    for (int i = 0; i < top && i < rk.n_heads; i++) {
        const xd_head_score *h = &rk.heads[i];
        printf("%4d %5d %4d %8.4f %7.3f %8.4f\n", i + 1, h->layer, h->head, h->score, h->hit,
               h->beyond_mass);
    }
    if (out && !rc) printf("wrote %s\n", out);
    xd_head_ranking_free(&rk);
    xd_model_free(m);
    return rc;
}
