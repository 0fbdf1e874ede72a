/* xdistill command-line entry point: dispatches to one file per command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/dist.h"
#include "xdistill.h"

/* ranks: the command runs as one of several MPI ranks under mpirun (docs/scale.md);
 * the others refuse to, rather than have every rank write the same files. */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
    int ranks;
} commands[] = {
    {"inspect", cmd_inspect, "MODEL                      architecture, tensors, tokenizer", 0},
    {"tokenize", cmd_tokenize, "MODEL TEXT [--decode]      text to ids and pieces (or back)", 0},
    {"generate", cmd_generate, "MODEL -p PROMPT [-n N ...]  stream generated text", 0},
    {"pretrain", cmd_pretrain, "--config C --tokenizer M --data D -o DIR  train from scratch", 1},
    {"finetune", cmd_finetune, "MODEL --data D -o DIR     full fine-tune", 1},
    {"lora", cmd_lora, "MODEL --data D -o DIR [--r R --targets q,v --init pissa]  LoRA fine-tune (PEFT files); lora merge", 1},
    {"debias", cmd_debias, "task|attribute|eval MODEL ...  DiffPruning: sparse task and attribute diffs, on demand", 0},
    {"heads", cmd_heads, "TEACHER --window W [--probes N --lengths 2,4,8 -o F]  rank the retrieval heads", 0},
    {"convert", cmd_convert, "TEACHER -o STUDENT [--window W --sinks S]  build the xLSTM hybrid student", 0},
    {"distill", cmd_distill, "stage1|stage2 ...          distil the teacher into the student", 1},
    {"tasks", cmd_tasks, "make -o SUITE [--window W --n N]  write the built-in evaluation suite", 0},
    {"eval", cmd_eval, "MODEL --suite DIR -o RESULTS.json  score a teacher or student on a task suite", 1},
    {"compare", cmd_compare, "TEACHER.json STUDENT.json -o WINTIE.json [--report R.html]  win-and-tie verdict", 0},
    {"merge", cmd_merge, "-o OUT A[:w] B[:w] ... [--normalize] [--search SUITE]  weighted merge of Stage II experts", 1},
    {"ppl", cmd_ppl, "MODEL FILE [--ctx N]        perplexity of a text file", 0},
    {"quantize", cmd_quantize, "MODEL -o OUT.gguf [--type q8_0]  write a teacher or student as GGUF, its matrices quantised", 0},
    {"data", cmd_data, "prep|info|split|echo ...    pack text into token data; split it by domain; add echoes", 0},
    {"teacher-logits", cmd_teacher_logits, "TEACHER --data D --seq T --rows N -o F  top-k logits for Stage II", 1},
};

static void usage(FILE *f) {
    fprintf(f, "usage: xdistill COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-14s %s\n", "help [COMMAND]", "this list, or COMMAND's usage (as COMMAND --help)");
    fprintf(f, "  %-14s %s\n", "--version", "the version, the OpenBLAS build and the kernels it runs");
}

/* `xdistill help`, `xdistill -h` or `xdistill --help`: 1. Followed by a command name
 * (`xdistill help data`): 0, with *argv rewritten to `xdistill data --help`. */
static int help_request(int *argc, char ***argv) {
    static char help_opt[] = "--help";
    static char *rewritten[4];
    char **a = *argv;
    if (*argc < 2 || (strcmp(a[1], "help") && !is_help_arg(a[1]))) return 0;
    if (*argc < 3 || !strcmp(a[2], "help") || wants_help(*argc - 1, a + 1)) return 1;
    rewritten[0] = a[0];
    rewritten[1] = a[2];
    rewritten[2] = help_opt;
    *argc = 3;
    *argv = rewritten;
    return 0;
}

/* Two settings that the OpenMP and OpenBLAS libraries read when they load, before main, so
 * the tool re-executes itself once with them when it wants them and the user chose none:
 *
 * OMP_WAIT_POLICY=passive: OpenMP threads that spin-wait at barriers collapse when another
 * program shares the cores (measured: Stage I at 112 instead of 207 tok/s beside one busy
 * process), while sleeping waits cost ~5–10% on an idle machine. Only the training commands,
 * eval and heads (long prompts) and merge (--search evaluates, between serial merges:
 * spinning workers stalled it for seconds per candidate on 2 shared cores): their parallel
 * regions are long, while token-by-token decoding's many short ones lose a third of their
 * speed to sleeping waits (generate: 28.5 vs 44.0 tok/s). Not when OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set.
 *
 * OPENBLAS_CORETYPE: every command, when OpenBLAS runs its generic kernels on a CPU it does
 * not know (xd_blas_core_hint). Not when OPENBLAS_CORETYPE is set. */
static void choose_env(int argc, char **argv) {
    static const char *const training[] = {"pretrain", "finetune", "distill", "teacher-logits", "eval",
                                           "merge", "heads", "lora", "debias"};
    int train = 0, again = 0;
    for (size_t i = 0; argc > 1 && i < sizeof training / sizeof *training; i++)
        train |= !strcmp(argv[1], training[i]);
    if (train && !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT"))
        again |= !setenv("OMP_WAIT_POLICY", "passive", 1);
    const char *core = xd_blas_core_hint();
    if (core && !setenv("OPENBLAS_CORETYPE", core, 1)) /* the marker: for --version */
        again |= !setenv("XD_CHOSEN_OPENBLAS_CORETYPE", core, 1);
    if (again) execv("/proc/self/exe", argv);
    /* no re-execution, or it failed: carry on as loaded */
}

/* The library's messages (xd_set_log) go to stderr, one line each. Progress:
 * on a terminal one status line redrawn in place (\r … ESC[K), ended at the
 * work's done report; otherwise plain lines, at most one every 5 s plus the
 * first and the done one. */
static int g_tty;     /* stderr is a terminal */
static int g_open;    /* a status line is on the terminal, not yet ended */
static double g_last; /* when the last plain progress line was written; 0: none since done */

void cli_log_break(void) {
    if (!g_open) return;
    fputc('\n', stderr);
    g_open = 0;
}

static void cli_log(void *user, int level, const char *msg, const xd_progress_info *p) {
    (void)user;
    if (level == XD_LOG_PROGRESS && p) {
        if (g_tty) {
            fprintf(stderr, "\r%s\033[K%s", p->status, p->done ? "\n" : "");
            g_open = !p->done;
        } else {
            double now = now_s();
            if (p->done || g_last == 0 || now - g_last >= 5.0) {
                fprintf(stderr, "%s\n", msg);
                g_last = p->done ? 0 : now;
            }
        }
    } else {
        cli_log_break();
        fprintf(stderr, "%s\n", msg);
    }
    fflush(stderr);
}

void cli_log_install(void) {
    g_tty = isatty(STDERR_FILENO);
    xd_set_log(cli_log, NULL);
}

/* A command as one rank of an MPI job when mpirun started us (src/core/dist.h): only rank
 * 0 reports progress and information; errors come from every rank that has one, tagged
 * with the rank. A rank that fails ends the whole job (MPI_Abort), since the others would
 * otherwise wait for it forever in their next collective. */
static int run_ranked(int (*run)(int, char **), int ranks, int argc, char **argv) {
    if (xd_dist_init()) {
        fprintf(stderr, "xdistill: error: %s\n", xd_last_error());
        return 1;
    }
    /* lora merge writes one file: one process */
    if (xd_dist_size() > 1 && (!ranks || (!strcmp(argv[0], "lora") && argc > 1 &&
                                          !strcmp(argv[1], "merge")))) {
        fprintf(stderr, "xdistill (rank %d of %d): error: '%s%s%s' runs in one process: start it "
                "without mpirun (over MPI ranks: pretrain, finetune, lora, distill, "
                "teacher-logits, eval, merge --search)\n", xd_dist_rank(), xd_dist_size(), argv[0],
                ranks ? " " : "", ranks ? argv[1] : "");
        xd_dist_finalize();
        return 2;
    }
    if (xd_dist_size() > 1) {
        cli_set_rank(xd_dist_rank(), xd_dist_size());
        /* ranks that share a machine share its cores (--threads or OMP_NUM_THREADS win) */
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (local && atoi(local) > 1 && !getenv("OMP_NUM_THREADS") && cores > 0)
            xd_set_threads(cores / atoi(local) > 1 ? (int)(cores / atoi(local)) : 1);
        if (xd_dist_rank() != 0) { /* one summary, one progress bar: rank 0's */
            xd_set_log(NULL, NULL);
            if (!freopen("/dev/null", "w", stdout)) return 1;
        }
    }
    int rc = run(argc, argv);
    if (rc && xd_dist_size() > 1) {
        fflush(stdout);
        fflush(stderr);
        xd_dist_abort(rc);
    }
    xd_dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
    choose_env(argc, argv);
    cli_log_install();
    if (help_request(&argc, &argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version")) { /* and the BLAS it runs on, for bug reports */
        const char *chosen = getenv("XD_CHOSEN_OPENBLAS_CORETYPE"), *core = openblas_get_corename();
        printf("xdistill %s\n%s\nkernels: %s%s\n", XD_VERSION, openblas_get_config(), core,
               chosen && !strcmp(chosen, core)
                   ? " (chosen by xdistill: this OpenBLAS does not know the CPU and would run its "
                     "generic Prescott kernels; set OPENBLAS_CORETYPE to choose others)"
                   : "");
        return 0;
    }
    /* the threading relies on the OpenMP build of OpenBLAS: refuse any other before work starts */
    if (xd_check_blas()) {
        fprintf(stderr, "xdistill: error: %s\n", xd_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return run_ranked(commands[i].run, commands[i].ranks, argc - 1, argv + 1);
    fprintf(stderr, "xdistill: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
