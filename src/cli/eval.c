/* xdistill eval MODEL --suite DIR -o RESULTS.json [--tasks a,b] [--max-examples N]
 *                [--no-bos] [--chat] [--fewshot K] [--ctx N] [--stride S] [--seed S]
 *                [--bootstrap B] [--threads N] [--adapter DIR] [--log-samples FILE]
 * Scores a teacher or a student on a suite (docs/design.md, "Evaluation"): writes the results
 * JSON atomically and prints one line per task. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/dist.h"
#include "core/error.h"
#include "io/atomic.h"
#include "model/lora.h"
#include "eval/results.h"
#include "eval/run.h"
#include "eval/tasks.h"
#include "xdistill.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: xdistill eval MODEL --suite DIR -o RESULTS.json [options]\n"
            "  --tasks a,b        only these tasks of the suite\n"
            "  --max-examples N   at most N examples per task (the first N)\n"
            "  --no-bos           do not prepend BOS (default: prepend when the tokenizer has one)\n"
            "  --chat             wrap contexts and prompts in the ChatML template\n"
            "  --fewshot K        K solved examples of the same task before each (default 0)\n"
            "  --ctx N            context window in tokens (default: the model's)\n"
            "  --stride S         perplexity windows every S tokens (default ctx/2)\n"
            "  --seed S           bootstrap and few-shot seed (default: the suite's)\n"
            "  --bootstrap B      bootstrap resamples (default 1000)\n"
            "  --threads N        compute threads\n"
            "  --weights W        a GGUF's weights: fp32 (default), gguf (its own quantised\n"
            "                     blocks, as generate decodes) or gguf-all (every product on them)\n"
            "  --adapter DIR      a LoRA adapter (PEFT's files) folded into the model's weights\n"
            "                     first (as `xdistill lora merge` does, in memory)\n"
            "  --log-samples FILE every scored example as one JSON line: task, line, score,\n"
            "                     and the output and target (generate), pred and answer\n"
            "                     (choice) or nll and tokens (perplexity)\n");
}

/* The samples array as JSON lines, written atomically. */
static int write_samples(const char *path, json_t *a) {
    xd_afile f;
    if (xd_afile_open(&f, path)) return -1;
    size_t i;
    json_t *s;
    json_array_foreach(a, i, s) {
        char *line = json_dumps(s, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17));
        int bad = !line || xd_afile_write(&f, line, strlen(line)) || xd_afile_write(&f, "\n", 1);
        free(line);
        if (bad) {
            xd_afile_abort(&f);
            return xd_err("%s: cannot write the samples", path);
        }
    }
    return xd_afile_commit(&f);
}

static void summary(const xd_eval_results *r) {
    printf("%-24s %-10s %-8s %8s  %-19s %6s %7s %8s\n", "task", "type", "metric", "score",
           "95% CI", "n", "chance", "seconds");
    for (int i = 0; i < r->n_tasks; i++) {
        const xd_task_result *t = &r->tasks[i];
        char ci[40], ch[16];
        snprintf(ci, sizeof ci, "[%.4f, %.4f]", t->ci_low, t->ci_high);
        if (isnan(t->chance)) snprintf(ch, sizeof ch, "-");
        else snprintf(ch, sizeof ch, "%.3f", t->chance);
        printf("%-24s %-10s %-8s %8.4f  %-19s %6d %7s %8.1f", t->task->name,
               xd_task_type_name(t->task->type), t->metric, t->score, ci, t->n, ch, t->seconds);
        if (t->task->type == XD_TASK_CHOICE) printf("  acc_norm %.4f", t->acc_norm);
        if (t->task->type == XD_TASK_PERPLEXITY) printf("  ppl %.4f", t->ppl);
        if (t->truncated) printf("  (%d cut to --ctx)", t->truncated);
        putchar('\n');
    }
    printf("total %.1f s\n", r->seconds);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *suite_dir = NULL, *out = NULL, *only = NULL, *adapter = NULL, *v;
    const char *samples_path = NULL;
    int max_examples = 0, no_bos = 0, chat = 0, fewshot = 0, ctx = 0, stride = 0, threads = 0, weights = XD_WEIGHTS_FP32;
    int bootstrap = 1000, have_seed = 0, r;
    uint64_t seed = 0;
    if (wants_help(argc, argv)) return usage(stdout), 0;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--suite", &v))) { if (r < 0) return 2; suite_dir = v; }
        else if ((r = take_opt(argc, argv, &i, "--adapter", &v))) { if (r < 0) return 2; adapter = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; out = v; }
        else if ((r = take_opt(argc, argv, &i, "--log-samples", &v))) {
            if (r < 0) return 2;
            samples_path = v;
        }
        else if ((r = take_opt(argc, argv, &i, "--tasks", &v))) { if (r < 0) return 2; only = v; }
        else if ((r = take_opt(argc, argv, &i, "--max-examples", &v))) {
            if (r < 0 || parse_int("--max-examples", v, 1, 1 << 30, &max_examples)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--fewshot", &v))) {
            if (r < 0 || parse_int("--fewshot", v, 0, 1024, &fewshot)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--ctx", &v))) {
            if (r < 0 || parse_int("--ctx", v, 2, 1 << 24, &ctx)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--stride", &v))) {
            if (r < 0 || parse_int("--stride", v, 1, 1 << 24, &stride)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--bootstrap", &v))) {
            if (r < 0 || parse_int("--bootstrap", v, 1, 1000000, &bootstrap)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &seed)) return 2;
            if (seed > (uint64_t)INT64_MAX) return cli_error("--seed: at most %lld", (long long)INT64_MAX), 2;
            have_seed = 1;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--weights", &v))) {
            if (r < 0 || parse_weights("--weights", v, &weights)) return 2;
        } else if (!strcmp(argv[i], "--no-bos")) no_bos = 1;
        else if (!strcmp(argv[i], "--chat")) chat = 1;
        else if (argv[i][0] == '-')
            return cli_error("eval: unknown option '%s'", argv[i]), usage(stderr), 2;
        else if (!model) model = argv[i];
        else return cli_error("eval: unexpected argument '%s'", argv[i]), usage(stderr), 2;
    }
    if (!model || !suite_dir || !out) return usage(stderr), 2;
    if (adapter && weights != XD_WEIGHTS_FP32)
        return cli_error("--adapter folds into fp32 weights: it needs --weights fp32"), 2;
    if (threads) xd_set_threads(threads);

    xd_suite suite;
    if (xd_suite_load(suite_dir, only, &suite)) return cli_lib_error();
    xd_model *m = xd_model_load_weights(model, (xd_weights_mode)weights);
    if (!m) { xd_suite_free(&suite); return cli_lib_error(); }
    if (adapter) {
        xd_lora_adapter *a = xd_lora_load(adapter);
        int bad = !a || xd_lora_check_base(a, m, adapter) || xd_lora_merge(m, a, 1.0f);
        xd_lora_free(a);
        if (bad) {
            xd_model_free(m);
            xd_suite_free(&suite);
            return cli_lib_error();
        }
    }
    xd_eval_opts o;
    xd_eval_opts_default(&o, m, &suite);
    o.max_examples = max_examples;
    o.bootstrap = bootstrap;
    if (have_seed) o.seed = seed;
    if (no_bos) o.settings.bos = 0;
    o.settings.chat = chat;
    o.settings.fewshot = fewshot;
    if (ctx) o.settings.max_ctx = ctx;
    o.settings.stride = stride ? stride : (o.settings.max_ctx / 2 > 0 ? o.settings.max_ctx / 2 : 1);
    int rc = 1;
    xd_eval_results res;
    if (o.settings.stride > o.settings.max_ctx) {
        cli_error("--stride %d must not exceed the context %d", o.settings.stride, o.settings.max_ctx);
        rc = 2;
        goto done;
    }
    if (samples_path && !(o.samples = json_array())) { cli_error("eval: out of memory"); goto done; }
    if (xd_eval_suite(m, model, &suite, &o, &res)) { cli_lib_error(); goto done; }
    /* under mpirun every rank holds the results; rank 0 writes them */
    if (xd_dist_rank() == 0 &&
        (xd_results_write(out, &res) || (samples_path && write_samples(samples_path, o.samples))))
        cli_lib_error();
    else {
        summary(&res);
        rc = 0;
    }
    xd_eval_results_free(&res);
done:
    json_decref(o.samples);
    xd_model_free(m);
    xd_suite_free(&suite);
    return rc;
}
