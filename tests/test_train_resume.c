/* Training runs through the CLI on a tiny model:
 *  - a run killed with SIGKILL (several times, at random points, often in
 *    the middle of writing a checkpoint) and resumed ends with exactly the
 *    loss and the weights of an uninterrupted run, and OUT/checkpoint always
 *    names a complete checkpoint; for pretraining, for LoRA (PiSSA) and for
 *    DiffPruning (debias task: two phases, each its own checkpoints);
 *  - bad input: data from another tokenizer, a config with impossible
 *    shapes, a NaN/Inf loss (stops with a clear message, the last good
 *    checkpoint is kept). */
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/hfconfig.h"
#include "io/tokdata.h"
#include "model/model.h"
#include "train/train.h"
#include "cli_util.h"
#include "test.h"
#include "xdistill.h"

static char dir[256];

static const char *cli(void) { return test_cli_path(); }

static int run(const char *args, char *err, size_t cap) {
    return test_cli_run(args, err, cap, TEST_CLI_STDERR);
}

/* Where a run keeps its log and checkpoints: OUT itself, or (debias) OUT/mask then
 * OUT/fixmask; the last one holds the final log. */
static const char *phases[2] = {"", NULL};

/* The last log line's "loss" field as text (bitwise comparison). */
static void last_loss(const char *out, char *buf, size_t cap) {
    char p[512];
    snprintf(p, sizeof p, "%s%s/log.jsonl", out, phases[1] ? phases[1] : phases[0]);
    size_t n;
    char *s = test_slurp(p, &n);
    buf[0] = 0;
    if (!s) return;
    char *last = strstr(s, "\"step\":");
    for (char *q = last; q; q = strstr(q + 1, "\"step\":")) last = q;
    char *l = last ? strstr(last, "\"loss\":") : NULL;
    if (l) {
        size_t k = strcspn(l + 7, ",}");
        snprintf(buf, cap, "%.*s", (int)k, l + 7);
    }
    free(s);
}

static const char *train_args(const char *out, int resume) {
    static char a[2048];
    snprintf(a, sizeof a,
             "pretrain --config %s/tests/fixtures/tiny-llama/config.json --tokenizer "
             "%s/tests/fixtures/tiny-llama.gguf --data %s/data.tok -o %s --steps 300 --batch 2 "
             "--seq 16 --lr 3e-3 --warmup 4 --save-every 1 --eval-every 10 --eval-windows 4 "
             "--seed 5%s",
             XD_SOURCE_DIR, XD_SOURCE_DIR, dir, out, resume ? " --resume" : "");
    return a;
}

/* LoRA fine-tuning of tiny-llama with PiSSA (its residual base and initial
 * adapter are recomputed on resume and must come out bit for bit the same). */
static const char *lora_args(const char *out, int resume) {
    static char a[2048];
    snprintf(a, sizeof a,
             "lora %s/tests/fixtures/tiny-llama.gguf --data %s/data.tok -o %s --steps 300 "
             "--batch 2 --seq 16 --lr 3e-3 --warmup 4 --save-every 1 --eval-every 10 "
             "--eval-windows 4 --r 3 --targets q,v,o,down --init pissa%s",
             XD_SOURCE_DIR, dir, out, resume ? " --resume" : "");
    return a;
}

/* Labelled JSONL for debias: a label that the words predict, an attribute. */
static void make_labeled(void) {
    static const char *words[4][3] = {{"red", "green", "blue"}, {"cat", "dog", "cow"},
                                      {"one", "two", "six"}, {"sun", "moon", "star"}};
    char p[400];
    snprintf(p, sizeof p, "%s/lab.jsonl", dir);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL, "cannot write %s", p);
    if (!f) return;
    for (int i = 0; i < 48; i++) {
        int c = i % 4;
        fprintf(f, "{\"text\": \"the %s %s and %s\", \"label\": \"c%d\", \"g\": \"%s\"}\n",
                words[c][i % 3], words[(c + 1) % 4][(i / 3) % 3], words[c][(i + 1) % 3], c,
                i % 5 < 2 ? "a" : "b");
    }
    fclose(f);
}

static const char *debias_args(const char *out, int resume) {
    static char a[2048];
    snprintf(a, sizeof a,
             "debias task %s/tests/fixtures/tiny-llama.gguf --train %s/lab.jsonl --val "
             "%s/lab.jsonl --attr g --adv g -o %s --steps 300 --mask-steps 150 --batch 4 "
             "--max-len 12 --lr 1e-3 --save-every 1 --eval-every 50 --sparsity 0.1%s",
             XD_SOURCE_DIR, dir, dir, out, resume ? " --resume" : "");
    return a;
}

/* What the final output and each checkpoint hold: "model/model.safetensors", or
 * with LoRA "adapter/adapter_model.safetensors"; the final output of debias is
 * OUT/diff.safetensors, its checkpoints hold params.safetensors. */
static const char *weights_file = "model/model.safetensors";
static const char *ckpt_weights = "model/model.safetensors";

/* Every OUT/ckpt-* that is not a temporary holds all three parts. */
static void check_complete(const char *out) {
    char p[1024];
    for (int k = 0; k < 2 && phases[k]; k++) {
        snprintf(p, sizeof p, "%s%s/checkpoint", out, phases[k]);
        struct stat sb;
        /* the second phase has not started, or (debias) the first one is done and its
         * checkpoint dropped */
        if (phases[1] && lstat(p, &sb) != 0) continue;
        snprintf(p, sizeof p, "%s%s/checkpoint/state.json", out, phases[k]);
        CHECK(access(p, R_OK) == 0, "%s missing after a kill", p);
        snprintf(p, sizeof p, "%s%s/checkpoint/optimizer.safetensors", out, phases[k]);
        CHECK(access(p, R_OK) == 0, "%s missing after a kill", p);
        snprintf(p, sizeof p, "%s%s/checkpoint/%s", out, phases[k], ckpt_weights);
        CHECK(access(p, R_OK) == 0, "%s missing after a kill", p);
    }
}

static void make_data(void) {
    CHECK(test_cat_data(dir) == 0, "prep: %s", xd_last_error());
}

static void test_kill_resume(const char *(*train_args)(const char *, int), const char *tag) {
    char a[512], b[512], err[8192], la[64], lb[64];
    snprintf(a, sizeof a, "%s/%sA", dir, tag);
    snprintf(b, sizeof b, "%s/%sB", dir, tag);
    CHECK(run(train_args(a, 0), err, sizeof err) == 0, "uninterrupted run failed: %s", err);
    last_loss(a, la, sizeof la);
    CHECK(la[0] != 0, "no loss in A's log");

    srand((unsigned)time(NULL));
    int kills = 0;
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>&1", cli(), train_args(b, 1));
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        /* wait until a few more checkpoints exist, then kill at a random moment */
        usleep(20000 + (useconds_t)(rand() % 150000));
        int st;
        if (waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            kills++;
        }
        char p[600], q[600];
        snprintf(p, sizeof p, "%s%s/checkpoint", b, phases[0]);
        snprintf(q, sizeof q, "%s%s/checkpoint", b, phases[1] ? phases[1] : phases[0]);
        struct stat sb;
        if (lstat(p, &sb) == 0 || lstat(q, &sb) == 0) check_complete(b);
    }
    CHECK(run(train_args(b, 1), err, sizeof err) == 0, "resumed run failed: %s", err);
    last_loss(b, lb, sizeof lb);
    printf("%s: uninterrupted final loss %s, killed %d times and resumed: %s\n",
           train_args == lora_args ? "lora (PiSSA)" : train_args == debias_args ? "debias task"
                                                                                : "pretrain",
           la, kills, lb);
    CHECK(strcmp(la, lb) == 0, "final loss %s after resume differs from %s", lb, la);
    /* and the final weights are bit-identical */
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s", a, weights_file);
    snprintf(pb, sizeof pb, "%s/%s", b, weights_file);
    size_t na, nb;
    char *wa = test_slurp(pa, &na), *wb = test_slurp(pb, &nb);
    CHECK(wa && wb && na == nb && memcmp(wa, wb, na) == 0, "final weights differ after resume");
    free(wa);
    free(wb);
    /* the logs agree step by step too (the loss fields) */
    CHECK(kills >= 1, "no run was killed mid-training (machine too fast?)");
}

static void test_bad_input(void) {
    char err[8192], args[4096], out[512];
    /* data made by another tokenizer (the config's vocabulary fits both) */
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/vocab512.json", dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":32,"
               "\"intermediate_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
               "\"num_key_value_heads\":2,\"vocab_size\":512,\"rms_norm_eps\":1e-5}");
    fclose(f);
    snprintf(out, sizeof out, "%s/C", dir);
    snprintf(args, sizeof args,
             "pretrain --config %s --tokenizer %s/tests/fixtures/tiny_tokenizer --data %s/data.tok "
             "-o %s --steps 2", cfg, XD_SOURCE_DIR, dir, out);
    int rc = run(args, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "tokenizer") && strstr(err, "data.tok"),
          "tokenizer mismatch: rc %d: %s", rc, err);

    /* impossible shapes */
    snprintf(cfg, sizeof cfg, "%s/bad.json", dir);
    f = fopen(cfg, "w");
    fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64,"
               "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":6,"
               "\"num_key_value_heads\":4,\"vocab_size\":260,\"rms_norm_eps\":1e-5}");
    fclose(f);
    snprintf(args, sizeof args, "pretrain --config %s --tokenizer %s/tests/fixtures/tiny-llama.gguf "
             "--data %s/data.tok -o %s --steps 2", cfg, XD_SOURCE_DIR, dir, out);
    rc = run(args, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "bad.json"), "bad shapes: rc %d: %s", rc, err);

    /* a diverging run: NaN/Inf stops with a message; the last checkpoint stays */
    snprintf(out, sizeof out, "%s/D", dir);
    snprintf(args, sizeof args,
             "pretrain --config %s/tests/fixtures/tiny-llama/config.json --tokenizer "
             "%s/tests/fixtures/tiny-llama.gguf --data %s/data.tok -o %s --steps 200 --batch 2 "
             "--seq 16 --lr 1e6 --warmup 0 --clip 0 --wd 0 --save-every 1",
             XD_SOURCE_DIR, XD_SOURCE_DIR, dir, out);
    rc = run(args, err, sizeof err);
    CHECK(rc == 1 && (strstr(err, "NaN") || strstr(err, "infinite")) && strstr(err, "checkpoint"),
          "divergence: rc %d: %s", rc, err);
    char p[600];
    snprintf(p, sizeof p, "%s/checkpoint", out);
    struct stat sb;
    if (strstr(err, "(step 0)") == NULL) {
        CHECK(lstat(p, &sb) == 0, "the last good checkpoint is gone");
        check_complete(out);
    }
}

/* --batch 1 --accum 2 sees the same rows as --batch 2 and averages the same
 * targets: equal losses up to summation order (1e-5 relative). --freeze
 * keeps the named weights bit-identical; finetune continues from a model. */
static void test_accum_freeze_finetune(void) {
    char err[8192], args[4096], a[512], b[512];
    const char *common = "--steps 6 --seq 16 --lr 3e-3 --warmup 2 --eval-windows 2 --seed 9";
    snprintf(a, sizeof a, "%s/E", dir);
    snprintf(b, sizeof b, "%s/F", dir);
    snprintf(args, sizeof args, "pretrain --config %s/tests/fixtures/tiny-llama/config.json "
             "--tokenizer %s/tests/fixtures/tiny-llama.gguf --data %s/data.tok -o %s %s --batch 2",
             XD_SOURCE_DIR, XD_SOURCE_DIR, dir, a, common);
    CHECK(run(args, err, sizeof err) == 0, "batch 2: %s", err);
    snprintf(args, sizeof args, "pretrain --config %s/tests/fixtures/tiny-llama/config.json "
             "--tokenizer %s/tests/fixtures/tiny-llama.gguf --data %s/data.tok -o %s %s --batch 1 "
             "--accum 2 --freeze embed_tokens", XD_SOURCE_DIR, XD_SOURCE_DIR, dir, b, common);
    CHECK(run(args, err, sizeof err) == 0, "accum 2: %s", err);
    /* the frozen embedding changes the trajectory after step 1: compare step 1 */
    char pa[600];
    snprintf(pa, sizeof pa, "%s/log.jsonl", a);
    size_t n;
    char *s1 = test_slurp(pa, &n);
    snprintf(pa, sizeof pa, "%s/log.jsonl", b);
    char *s2 = test_slurp(pa, &n);
    double l1 = s1 && strstr(s1, "\"loss\":") ? atof(strstr(s1, "\"loss\":") + 7) : -1;
    double l2 = s2 && strstr(s2, "\"loss\":") ? atof(strstr(s2, "\"loss\":") + 7) : -2;
    CHECK(fabs(l1 - l2) <= 1e-5 * fabs(l1), "step-1 loss with accum %g vs batch %g", l2, l1);
    free(s1);
    free(s2);
    /* frozen embedding: bit-identical to the fresh init of the same seed,
     * while the other weights moved */
    snprintf(pa, sizeof pa, "%s/model", b);
    xd_model *mb = xd_model_load(pa);
    xd_config cfg;
    CHECK(xd_hf_config_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama/config.json", &cfg) == 0, "cfg");
    xd_model *init = xd_model_create(&cfg, 9);
    CHECK(mb && init, "load: %s", xd_last_error());
    if (mb && init) {
        size_t ne = (size_t)cfg.vocab_size * cfg.d_model;
        CHECK(memcmp(mb->embed, init->embed, ne * sizeof(float)) == 0, "frozen embedding changed");
        CHECK(memcmp(mb->layers[0].wq, init->layers[0].wq,
                     (size_t)cfg.d_model * cfg.n_head * cfg.head_dim * sizeof(float)) != 0,
              "unfrozen weights did not train");
    }
    xd_model_free(mb);
    xd_model_free(init);
    /* finetune the pretrained model for 3 steps */
    snprintf(args, sizeof args, "finetune %s/model --data %s/data.tok -o %s/G --steps 3 --batch 2 "
             "--seq 16 --lr 1e-3 --warmup 1 --eval-windows 2", a, dir, dir);
    CHECK(run(args, err, sizeof err) == 0, "finetune: %s", err);
    snprintf(pa, sizeof pa, "%s/G/model/model.safetensors", dir);
    CHECK(access(pa, R_OK) == 0, "finetune wrote no model");
    snprintf(args, sizeof args, "finetune %s/model --data %s/data.tok -o %s/G2 --steps 3 --freeze .",
             a, dir, dir);
    CHECK(run(args, err, sizeof err) == 1 && strstr(err, "frozen"), "all frozen accepted: %s", err);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_resume_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    make_data();
    test_kill_resume(train_args, "");
    weights_file = ckpt_weights = "adapter/adapter_model.safetensors";
    test_kill_resume(lora_args, "lora");
    make_labeled();
    weights_file = "diff.safetensors";
    ckpt_weights = "params.safetensors";
    phases[0] = "/mask";
    phases[1] = "/fixmask";
    test_kill_resume(debias_args, "debias");
    phases[0] = "";
    phases[1] = NULL;
    weights_file = ckpt_weights = "model/model.safetensors";
    test_bad_input();
    test_accum_freeze_finetune();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd)) return 1;
    return test_summary("test_train_resume");
}
