/* xdistill tasks make -o SUITE [--seed S] [--window W] [--n N] [--sources DIR] [--quiet]
 * Writes the built-in evaluation suite (docs/tasks.md). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "eval/taskgen.h"
#include "xdistill.h"

static const char USAGE[] =
    "usage: xdistill tasks make -o SUITE [--seed S] [--window W] [--n N] [--sources DIR] "
    "[--quiet]\n"
    "  -o SUITE       output directory: suite.json + one JSONL file per task\n"
    "  --seed S       random seed (default 1); the same seed and sources give the same files\n"
    "  --window W     the student's attention window in tokens (default 64): long-context\n"
    "                 tasks are sized in multiples of it\n"
    "  --n N          examples per task (default 40)\n"
    "  --sources DIR  DIR/kjv.txt, DIR/wordnet/, DIR/licenses/ instead of the system's files\n"
    "                 (Debian packages bible-kjv, bible-kjv-text, wordnet-base, base-files)";

static int tasks_make(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    xd_taskgen_opts o;
    xd_taskgen_defaults(&o);
    const char *out = NULL, *v;
    int quiet = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            out = v;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &o.seed)) return 2;
            if (o.seed > (uint64_t)INT64_MAX)
                return cli_error("--seed: '%s' is above 2^63 - 1", v), 2;
        } else if ((r = take_opt(argc, argv, &i, "--window", &v))) {
            if (r < 0 || parse_int("--window", v, 1, XD_TASKGEN_MAX_WINDOW, &o.window)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--n", &v))) {
            if (r < 0 || parse_int("--n", v, 1, XD_TASKGEN_MAX_N, &o.n)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--sources", &v))) {
            if (r < 0) return 2;
            o.sources = v;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else {
            return cli_error("tasks make: unexpected argument '%s'\n%s", argv[i], USAGE), 2;
        }
    }
    if (!out) return cli_error("tasks make: -o SUITE is required\n%s", USAGE), 2;
    xd_taskgen_info info[XD_TASKGEN_MAX_TASKS];
    int n = 0;
    if (xd_tasks_make(out, &o, info, &n)) return cli_lib_error();
    if (quiet) return 0;
    double total = 0;
    printf("%-16s %-10s %8s %8s %5s %6s\n", "task", "type", "examples", "~tokens", "long",
           "chance");
    for (int i = 0; i < n; i++) {
        printf("%-16s %-10s %8d %8.0f %5s %6.2f\n", info[i].name, info[i].type, info[i].examples,
               info[i].approx_tokens, info[i].long_context ? "yes" : "no", info[i].chance);
        total += info[i].approx_tokens * info[i].examples;
    }
    printf("wrote %s: %d tasks, ~%.0f tokens in all (seed %llu, window %d)\n", out, n, total,
           (unsigned long long)o.seed, o.window);
    return 0;
}

int cmd_tasks(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "make")) return tasks_make(argc - 1, argv + 1);
    if (wants_help(argc, argv)) return cli_help(USAGE);
    return cli_error("%s", USAGE), 2;
}
