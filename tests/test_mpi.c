/* Data parallelism over MPI (src/core/dist.h, docs/scale.md) through the CLI on tiny-llama,
 * with `mpirun --oversubscribe -np N` (Open MPI; the runner allows root, see CMakeLists.txt):
 *  - N ranks with the global batch B equal one process with batch B, and one process with
 *    batch B/N × --accum N: per-step loss, grad norm and validation loss within 1e-6
 *    relative, final weights within 1e-4 (below);
 *  - the same N twice: bit-identical logs (loss, grad norm) and model files; and the same
 *    with the gradient reduction overlapped with the backward (the default) or after it;
 *  - --stop-at with N ranks, then --resume with another N (and with one process), equals
 *    the uninterrupted run within the same tolerances;
 *  - pretrain (all weights), LoRA (adapters), distill stage1 (the mixer only: the
 *    trainable tensors are reduced in runs) and stage2 (each rank reads its rows of the
 *    teacher's logits);
 *  - teacher-logits with 2 and 3 ranks: the single process's file, byte for byte; eval:
 *    the same results JSON apart from the timings, the same --log-samples lines;
 *  - merge --search deals its candidates to the ranks: the same search.json (timings aside)
 *    and merge as one process; stopped with 2 ranks and resumed with 3, the same;
 *  - a command that does not run over ranks (inspect) refuses mpirun;
 *  - two hosts: 2 ranks in two network namespaces made by the test, over TCP, equal one
 *    process (skipped, saying why, where namespaces cannot be made);
 *  - a rank killed mid-run: mpirun stops the job and names the rank; the checkpoint left is
 *    complete and resumes with 3 ranks;
 *  - bad input: a batch not divisible by the ranks, more ranks than rows, a rank whose data
 *    or model differ from rank 0's (stopped before any step), a launcher's environment
 *    without a loadable MPI, and (in a build without MPI) mpirun on it.
 * Tolerances: a rank sums its rows' gradients and the ranks' sums are added in rank order,
 * where one process adds all rows in one pass: the same terms in another order, so each
 * float differs by a few ulps (≈1e-7 relative). AdamW divides by √v, so where a gradient
 * is near 0 that relative difference becomes an absolute one of up to lr per step; measured
 * after 10 steps of lr 3e-3: 1.0e-5 (2 ranks) and 1.9e-5 (3 ranks) at most, against weights
 * that move by ~1e-2, hence 1e-4.
 * Without mpirun on PATH the multi-rank checks are skipped and say so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_util.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

static char dir[256];

/* Runs a shell command line; its stderr and stdout go to out. Returns the exit status. */
static int sh(const char *cmd, char *out, size_t cap) {
    char full[20000];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = 0, k;
    while (p && n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0) n += k;
    if (p) {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {}
    }
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* `mpirun -np N xdistill ARGS` (LeakSanitizer off in the ranks: Open MPI's own allocations
 * outlive MPI_Finalize). */
static int mpi(int np, const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe -np %d %s %s", np,
             test_cli_path(), args);
    return sh(cmd, out, cap);
}

static int one(const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", test_cli_path(), args);
    return sh(cmd, out, cap);
}

/* The numbers of log.jsonl: per step, loss, grad_norm and (or NAN) val_loss. */
typedef struct {
    int n;
    double loss[64], gn[64], val[64];
} run_log;

static double field(const char *line, const char *key) {
    const char *p = strstr(line, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static int read_log(const char *out, run_log *r) {
    char p[512], line[4096];
    snprintf(p, sizeof p, "%s/%s/log.jsonl", dir, out);
    FILE *f = fopen(p, "r");
    memset(r, 0, sizeof *r);
    if (!f) return -1;
    while (fgets(line, sizeof line, f) && r->n < 64) {
        r->loss[r->n] = field(line, "\"loss\":");
        r->gn[r->n] = field(line, "\"grad_norm\":");
        r->val[r->n] = field(line, "\"val_loss\":");
        r->n++;
    }
    fclose(f);
    return 0;
}

static double rel(double a, double b) {
    if (isnan(a) && isnan(b)) return 0;
    return fabs(a - b) / fmax(fabs(b), 1e-30);
}

/* Every step of a within 1e-6 relative of b (loss, grad norm, validation loss). */
static void same_logs(const char *a, const char *b, const char *what) {
    run_log x, y;
    CHECK(!read_log(a, &x) && !read_log(b, &y), "%s: logs of %s and %s", what, a, b);
    CHECK(x.n == y.n && x.n > 0, "%s: %d vs %d log lines", what, x.n, y.n);
    double w = 0;
    for (int i = 0; i < x.n && i < y.n; i++) {
        w = fmax(w, rel(x.loss[i], y.loss[i]));
        w = fmax(w, rel(x.gn[i], y.gn[i]));
        w = fmax(w, rel(x.val[i], y.val[i]));
    }
    CHECK(w <= 1e-6, "%s: largest relative difference of loss / grad norm / val loss %.3g", what, w);
}

/* The weights of OUT/SUB (a model directory) against another's: max |a − b|. */
static double weight_diff(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    xd_model *x = xd_model_load(pa), *y = xd_model_load(pb);
    double w = INFINITY;
    if (x && y && x->arena_floats == y->arena_floats)
        w = test_max_abs_diff(x->arena, y->arena, x->arena_floats);
    xd_model_free(x);
    xd_model_free(y);
    return w;
}

/* The loss and grad-norm text of every log line (bitwise comparison of two runs). */
static void numbers_text(const char *out, char *buf, size_t cap) {
    char p[512], line[4096];
    snprintf(p, sizeof p, "%s/%s/log.jsonl", dir, out);
    FILE *f = fopen(p, "r");
    size_t n = 0;
    buf[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *l = strstr(line, "\"loss\":"), *g = strstr(line, "\"grad_norm\":");
        if (l && g && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%.*s|%.*s;", (int)strcspn(l, ","), l,
                                  (int)strcspn(g, ","), g);
    }
    if (f) fclose(f);
}

static char common[2048];

static const char *pre(const char *out, int batch, int accum, const char *extra) {
    static char a[4096];
    snprintf(a, sizeof a, "pretrain %s --batch %d --accum %d -o %s/%s %s", common, batch, accum,
             dir, out, extra);
    return a;
}

static void test_pretrain(void) {
    char err[16384];
    CHECK(one(pre("p1", 6, 1, ""), err, sizeof err) == 0, "pretrain, one process: %s", err);
    CHECK(one(pre("pa", 3, 2, ""), err, sizeof err) == 0, "pretrain --accum 2: %s", err);
    CHECK(one(pre("pa3", 2, 3, ""), err, sizeof err) == 0, "pretrain --accum 3: %s", err);
    CHECK(mpi(2, pre("p2", 6, 1, ""), err, sizeof err) == 0, "pretrain -np 2: %s", err);
    CHECK(mpi(3, pre("p3", 6, 1, ""), err, sizeof err) == 0, "pretrain -np 3: %s", err);
    CHECK(mpi(2, pre("p2b", 6, 1, ""), err, sizeof err) == 0, "pretrain -np 2 again: %s", err);
    same_logs("p2", "p1", "2 ranks vs one process, batch 6");
    same_logs("p3", "p1", "3 ranks vs one process, batch 6");
    same_logs("p2", "pa", "2 ranks vs --batch 3 --accum 2");
    same_logs("p3", "pa3", "3 ranks vs --batch 2 --accum 3");
    double w2 = weight_diff("p2/model", "p1/model"), w3 = weight_diff("p3/model", "p1/model");
    CHECK(w2 <= 1e-4 && w3 <= 1e-4, "final weights: 2 ranks %.3g, 3 ranks %.3g from one process", w2,
          w3);
    printf("pretrain: final weights vs one process: 2 ranks %.3g, 3 ranks %.3g\n", w2, w3);
    /* the same number of ranks twice: bit-identical */
    char a[8192], b[8192], fa[512], fb[512];
    numbers_text("p2", a, sizeof a);
    numbers_text("p2b", b, sizeof b);
    CHECK(a[0] && !strcmp(a, b), "2 ranks twice: the logs' loss and grad norm differ");
    snprintf(fa, sizeof fa, "%s/p2/model/model.safetensors", dir);
    snprintf(fb, sizeof fb, "%s/p2b/model/model.safetensors", dir);
    CHECK(test_same_file(fa, fb), "2 ranks twice: the model files differ");
    /* the reduction after the backward instead of overlapped with it: the same bits */
    CHECK(mpi(2, pre("p2n", 6, 1, "--overlap-comm 0"), err, sizeof err) == 0, "--overlap-comm 0: %s", err);
    numbers_text("p2n", b, sizeof b);
    snprintf(fb, sizeof fb, "%s/p2n/model/model.safetensors", dir);
    CHECK(a[0] && !strcmp(a, b) && test_same_file(fa, fb),
          "2 ranks, reduction overlapped or not: logs or model files differ");
    char lp[512];
    snprintf(lp, sizeof lp, "%s/p2/log.jsonl", dir);
    size_t ln;
    char *lt = test_slurp(lp, &ln);
    CHECK(lt && strstr(lt, "\"overlap\":true"), "the overlapped reduction was not used (log: %.200s)",
          lt ? lt : "none");
    free(lt);
    snprintf(lp, sizeof lp, "%s/p2n/log.jsonl", dir);
    lt = test_slurp(lp, &ln);
    CHECK(lt && strstr(lt, "\"overlap\":false"), "--overlap-comm 0 still overlapped");
    free(lt);
    /* only rank 0 writes: one summary line on stdout */
    char out[16384];
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe -np 2 %s %s 2>/dev/null",
             test_cli_path(), pre("p2c", 6, 1, ""));
    sh(cmd, out, sizeof out);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "\"kind\":\"pretrain\"")); p++) lines++;
    CHECK(lines == 1, "2 ranks: %d summary lines on stdout (expected rank 0's only): %s", lines, out);

    /* stopped with 2 ranks, resumed with 3; stopped with 3, resumed in one process */
    CHECK(mpi(2, pre("r23", 6, 1, "--stop-at 4"), err, sizeof err) == 0 &&
              strstr(err, "stopped after step 4"), "--stop-at 4 with 2 ranks: %s", err);
    char ck[512];
    snprintf(ck, sizeof ck, "%s/r23/model", dir);
    struct stat sb;
    CHECK(stat(ck, &sb) != 0, "a stopped run writes no final model");
    CHECK(mpi(3, pre("r23", 6, 1, "--resume"), err, sizeof err) == 0 &&
              strstr(err, "resuming from step 4"), "--resume with 3 ranks: %s", err);
    same_logs("r23", "p1", "stopped with 2 ranks at step 4, resumed with 3");
    CHECK(weight_diff("r23/model", "p1/model") <= 1e-4, "resumed across 2 → 3 ranks: weights");
    CHECK(mpi(3, pre("r31", 6, 1, "--stop-at 7"), err, sizeof err) == 0, "--stop-at 7, 3 ranks: %s", err);
    CHECK(one(pre("r31", 6, 1, "--resume"), err, sizeof err) == 0, "--resume, one process: %s", err);
    same_logs("r31", "p1", "stopped with 3 ranks at step 7, resumed in one process");
    CHECK(weight_diff("r31/model", "p1/model") <= 1e-4, "resumed across 3 → 1: weights");
}

static void test_lora_and_stage1(void) {
    char err[16384], a[4096];
    const char *lo = "lora " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf --r 4 --targets q,v "
                     "--steps 8 --seq 16 --lr 3e-3 --warmup 2 --eval-every 4 --eval-windows 8 "
                     "--seed 3 --threads 1 --batch 4";
    snprintf(a, sizeof a, "%s --data %s/data.tok -o %s/l1", lo, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "lora, one process: %s", err);
    snprintf(a, sizeof a, "%s --data %s/data.tok -o %s/l2", lo, dir, dir);
    CHECK(mpi(2, a, err, sizeof err) == 0, "lora -np 2: %s", err);
    same_logs("l2", "l1", "LoRA: 2 ranks vs one process");

    /* Stage I of a tiny student: only the mixer trains */
    snprintf(a, sizeof a, "convert " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf -o %s/student "
             "--window 4 --sinks 1", dir);
    CHECK(one(a, err, sizeof err) == 0, "convert: %s", err);
    const char *s1 = "distill stage1 --teacher " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf "
                     "--steps 6 --seq 16 --batch 4 --lr 1e-2 --warmup 2 --eval-windows 8 --threads 1";
    snprintf(a, sizeof a, "%s --student %s/student --data %s/data.tok -o %s/s1", s1, dir, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "stage1, one process: %s", err);
    snprintf(a, sizeof a, "%s --student %s/student --data %s/data.tok -o %s/s2", s1, dir, dir, dir);
    CHECK(mpi(2, a, err, sizeof err) == 0, "stage1 -np 2: %s", err);
    same_logs("s2", "s1", "stage 1: 2 ranks vs one process");
    double w = weight_diff("s2/model", "s1/model");
    CHECK(w <= 1e-4, "stage 1: final weights differ by %.3g", w);
}

/* A rank killed mid-run: mpirun ends the job and names the rank; the checkpoint is a
 * complete one, which a run with another number of ranks resumes. */
static void test_rank_killed(void) {
    char log[512], ck[512], cmd[8192], err[16384];
    snprintf(log, sizeof log, "%s/killed.log", dir);
    snprintf(ck, sizeof ck, "%s/k/checkpoint", dir);
    snprintf(cmd, sizeof cmd, "exec mpirun --oversubscribe -np 2 %s %s > %s 2>&1", test_cli_path(),
             pre("k", 6, 1, "--steps 100000 --save-every 1"), log);
    /* --steps after common's: the later one counts */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct stat sb;
    for (int i = 0; i < 3000 && lstat(ck, &sb); i++) usleep(10000);
    usleep(300000);
    /* the ranks are mpirun's children: kill rank 1 */
    char q[128], out[256];
    snprintf(q, sizeof q, "for p in $(pgrep -P %d); do grep -qz '^OMPI_COMM_WORLD_RANK=1$' "
             "/proc/$p/environ && echo $p; done", (int)pid);
    sh(q, out, sizeof out);
    int victim = atoi(out);
    CHECK(victim > 0, "rank 1's process not found: %s", out);
    if (victim > 0) kill(victim, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    size_t n = 0;
    FILE *f = fopen(log, "r");
    if (f) {
        n = fread(err, 1, sizeof err - 1, f);
        fclose(f);
    }
    err[n] = 0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && strstr(err, "rank 1") && strstr(err, "signal 9"),
          "a killed rank: mpirun's status %d, its message: %s", WEXITSTATUS(st), err);
    char target[64] = "";
    ssize_t k = readlink(ck, target, sizeof target - 1);
    if (k > 0) target[k] = 0;
    long at = k > 5 ? atol(target + 5) : 0;
    CHECK(at > 0, "after the kill, %s names %s", ck, target);
    char extra[128];
    snprintf(extra, sizeof extra, "--steps 100000 --save-every 1 --resume --stop-at %ld", at + 2);
    CHECK(mpi(3, pre("k", 6, 1, extra), err, sizeof err) == 0 && strstr(err, "resuming from step"),
          "the killed run resumed with 3 ranks: %s", err);
}

/* Two hosts: ranks 0 and 1 in two network namespaces made here (a veth pair between them,
 * 10.213.0.1 and 10.213.0.2), Open MPI's TCP transport between them, its launcher reaching
 * the second "host" through an agent script that runs the command in that namespace (in
 * place of ssh). The run equals one process as on one host. Skipped (and says why) where
 * namespaces cannot be made (not root, or no permission). */
static void test_two_hosts(void) {
    char err[16384], cmd[8192], na[32], nb[32], agent[512];
    snprintf(na, sizeof na, "xd%da", (int)getpid());
    snprintf(nb, sizeof nb, "xd%db", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "ip netns add %s && ip netns add %s && ip link add v%s type veth peer name v%s && "
             "ip link set v%s netns %s && ip link set v%s netns %s && "
             "ip -n %s addr add 10.213.0.1/24 dev v%s && ip -n %s addr add 10.213.0.2/24 dev v%s && "
             "ip -n %s link set v%s up && ip -n %s link set v%s up && "
             "ip -n %s link set lo up && ip -n %s link set lo up",
             na, nb, na, nb, na, na, nb, nb, na, na, nb, nb, na, na, nb, nb, na, nb);
    if (geteuid() != 0 || sh(cmd, err, sizeof err) != 0) {
        printf("SKIP: two hosts in network namespaces: %s\n",
               geteuid() != 0 ? "not root (ip netns needs CAP_SYS_ADMIN)" : err);
        snprintf(cmd, sizeof cmd, "ip netns del %s; ip netns del %s", na, nb);
        sh(cmd, err, sizeof err);
        return;
    }
    snprintf(agent, sizeof agent, "%s/netns-agent.sh", dir);
    FILE *f = fopen(agent, "w");
    if (f) {
        fprintf(f, "#!/bin/sh\n# Open MPI's launcher agent: AGENT HOST COMMAND... runs COMMAND on "
                   "HOST (its namespace)\nhost=$1; shift\ncase \"$host\" in\n"
                   "  10.213.0.1) ns=%s ;;\n  10.213.0.2) ns=%s ;;\n"
                   "  *) echo \"netns-agent: unknown host $host\" >&2; exit 1 ;;\nesac\n"
                   "exec ip netns exec \"$ns\" /bin/sh -c \"$*\"\n", na, nb);
        fclose(f);
        chmod(agent, 0755);
    }
    snprintf(cmd, sizeof cmd,
             "ASAN_OPTIONS=detect_leaks=0 timeout 120 ip netns exec %s mpirun -np 2 "
             "--host 10.213.0.1:1,10.213.0.2:1 --mca plm_rsh_agent %s --mca btl tcp,self "
             "--mca btl_tcp_if_include 10.213.0.0/24 --mca oob_tcp_if_include 10.213.0.0/24 "
             "-x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x ASAN_OPTIONS "
             "-x OMP_NUM_THREADS %s %s",
             na, agent, test_cli_path(), pre("hosts", 6, 1, ""));
    int rc = sh(cmd, err, sizeof err);
    CHECK(rc == 0, "two hosts over TCP: %s", err);
    if (rc == 0) {
        same_logs("hosts", "p1", "2 ranks on two hosts (namespaces, TCP) vs one process");
        double w = weight_diff("hosts/model", "p1/model");
        CHECK(w <= 1e-4, "two hosts: final weights differ by %.3g", w);
        printf("two hosts (network namespaces, TCP): final weights vs one process %.3g\n", w);
    }
    snprintf(cmd, sizeof cmd, "ip netns del %s; ip netns del %s", na, nb);
    sh(cmd, err, sizeof err);
}

/* The JSON file without its "seconds" members (timings), at any depth. */
static json_t *without_timings(json_t *j) {
    if (json_is_object(j)) {
        json_object_del(j, "seconds");
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) without_timings(v);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) without_timings(json_array_get(j, i));
    }
    return j;
}

/* teacher-logits and eval sharded over ranks give the single process's files */
static void test_sharded(void) {
    char err[16384], a[4096], p1[512], pn[512];
    const char *tl = "teacher-logits " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf --seq 16 "
                     "--rows 37 --batch 3 --topk 8 --threads 1";
    snprintf(a, sizeof a, "%s --data %s/data.tok -o %s/tl1.bin", tl, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "teacher-logits: %s", err);
    for (int n = 2; n <= 3; n++) {
        snprintf(a, sizeof a, "%s --data %s/data.tok -o %s/tl%d.bin", tl, dir, dir, n);
        CHECK(mpi(n, a, err, sizeof err) == 0, "teacher-logits -np %d: %s", n, err);
        snprintf(p1, sizeof p1, "%s/tl1.bin", dir);
        snprintf(pn, sizeof pn, "%s/tl%d.bin", dir, n);
        CHECK(test_same_file(p1, pn), "teacher-logits with %d ranks: not the single process's bytes", n);
    }
    snprintf(a, sizeof a, "tasks make -o %s/suite --window 16 --n 5", dir);
    CHECK(one(a, err, sizeof err) == 0, "tasks make: %s", err);
    const char *ev = "eval " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf --threads 1";
    snprintf(a, sizeof a, "%s --suite %s/suite -o %s/e1.json --log-samples %s/s1.jsonl", ev, dir, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "eval: %s", err);
    snprintf(p1, sizeof p1, "%s/e1.json", dir);
    json_t *r1 = without_timings(json_load_file(p1, 0, NULL));
    for (int n = 2; n <= 3; n++) {
        snprintf(a, sizeof a, "%s --suite %s/suite -o %s/e%d.json --log-samples %s/s%d.jsonl", ev,
                 dir, dir, n, dir, n);
        CHECK(mpi(n, a, err, sizeof err) == 0, "eval -np %d: %s", n, err);
        snprintf(pn, sizeof pn, "%s/e%d.json", dir, n);
        json_t *rn = without_timings(json_load_file(pn, 0, NULL));
        CHECK(r1 && rn && json_equal(r1, rn), "eval with %d ranks: results differ (timings aside)", n);
        json_decref(rn);
        snprintf(p1, sizeof p1, "%s/s1.jsonl", dir);
        snprintf(pn, sizeof pn, "%s/s%d.jsonl", dir, n);
        CHECK(test_same_file(p1, pn), "eval with %d ranks: --log-samples lines differ", n);
    }
    json_decref(r1);
    /* Stage II on those logits (the student of test_lora_and_stage1), with the teacher for
     * the validation KL: each rank reads its own rows of the logits file */
    const char *s2 = "distill stage2 --teacher " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf "
                     "--steps 4 --batch 4 --lr 1e-3 --warmup 1 --eval-windows 8 --threads 1";
    snprintf(a, sizeof a, "%s --student %s/student --logits %s/tl1.bin --data %s/data.tok -o %s/st1",
             s2, dir, dir, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "stage2, one process: %s", err);
    snprintf(a, sizeof a, "%s --student %s/student --logits %s/tl1.bin --data %s/data.tok -o %s/st2",
             s2, dir, dir, dir, dir);
    CHECK(mpi(2, a, err, sizeof err) == 0, "stage2 -np 2: %s", err);
    same_logs("st2", "st1", "stage 2: 2 ranks vs one process");
    double w = weight_diff("st2/model", "st1/model");
    CHECK(w <= 1e-4, "stage 2: final weights differ by %.3g", w);
    /* merge --search: candidates dealt to the ranks; search.json (timings aside) and the
     * merge as one process's; stopped with 2 ranks, resumed with 3 */
    const char *ms = "merge --grid 4";
    snprintf(a, sizeof a, "%s --search %s/suite -o %s/mg1 %s/st1/model %s/st2/model", ms, dir, dir, dir, dir);
    CHECK(one(a, err, sizeof err) == 0, "merge --search: %s", err);
    snprintf(p1, sizeof p1, "%s/mg1/search.json", dir);
    json_t *m1 = without_timings(json_load_file(p1, 0, NULL));
    for (int n = 2; n <= 4; n++) {
        if (n == 4) { /* stopped after 2 candidates with 2 ranks, resumed with 3 */
            snprintf(a, sizeof a, "XD_MERGE_SEARCH_STOP_AFTER=2 mpirun --oversubscribe -np 2 -x "
                     "XD_MERGE_SEARCH_STOP_AFTER %s %s --search %s/suite -o %s/mg4 %s/st1/model "
                     "%s/st2/model", test_cli_path(), ms, dir, dir, dir, dir);
            CHECK(sh(a, err, sizeof err) != 0 && strstr(err, "stopped after 2"), "stopped search: %s", err);
        }
        snprintf(a, sizeof a, "%s --search %s/suite -o %s/mg%d %s/st1/model %s/st2/model", ms, dir, dir,
                 n, dir, dir);
        CHECK(mpi(n == 4 ? 3 : n, a, err, sizeof err) == 0, "merge --search, %d: %s", n, err);
        snprintf(pn, sizeof pn, "%s/mg%d/search.json", dir, n);
        json_t *mn = without_timings(json_load_file(pn, 0, NULL));
        if (n == 4 && mn) { /* which were resumed is the only other difference */
            json_object_del(mn, "n_evaluated");
            json_object_del(mn, "n_resumed");
            for (size_t c = 0; c < json_array_size(json_object_get(mn, "candidates")); c++)
                json_object_del(json_array_get(json_object_get(mn, "candidates"), c), "resumed");
        }
        json_t *ref = json_deep_copy(m1);
        if (n == 4 && ref) {
            json_object_del(ref, "n_evaluated");
            json_object_del(ref, "n_resumed");
            for (size_t c = 0; c < json_array_size(json_object_get(ref, "candidates")); c++)
                json_object_del(json_array_get(json_object_get(ref, "candidates"), c), "resumed");
        }
        CHECK(ref && mn && json_equal(ref, mn), "merge --search (%s): search.json differs",
              n == 4 ? "stopped with 2 ranks, resumed with 3" : n == 2 ? "2 ranks" : "3 ranks");
        json_decref(mn);
        json_decref(ref);
        snprintf(p1, sizeof p1, "%s/mg1/model.safetensors", dir);
        snprintf(pn, sizeof pn, "%s/mg%d/model.safetensors", dir, n);
        CHECK(test_same_file(p1, pn), "merge --search (%d): the merged model differs", n);
    }
    json_decref(m1);
    /* a command that is not split among ranks says so */
    CHECK(mpi(2, "inspect " XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf", err, sizeof err) == 2 &&
              strstr(err, "'inspect' runs in one process"), "inspect under mpirun: %s", err);
}

static void test_bad_input(void) {
    char err[16384], a[16384];
    CHECK(mpi(2, pre("b1", 3, 1, ""), err, sizeof err) != 0 &&
              strstr(err, "--batch 3 is not divisible by the 2 ranks"), "odd batch: %s", err);
    CHECK(mpi(3, pre("b2", 2, 1, ""), err, sizeof err) != 0 &&
              strstr(err, "needs at least 3 rows"), "more ranks than rows: %s", err);
    /* rank 1 reads other data (MPMD: one command line per rank) */
    char txt[512], tok[512];
    snprintf(txt, sizeof txt, "%s/other.txt", dir);
    snprintf(tok, sizeof tok, "%s/other.tok", dir);
    FILE *f = fopen(txt, "w");
    for (int i = 0; f && i < 60; i++) fprintf(f, "a dog saw the cat number %d on the big hat.\n\n", i);
    if (f) fclose(f);
    CHECK(!test_prep_text(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf", txt, tok, 0.1), "other data");
    snprintf(a, sizeof a,
             "ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe -np 1 %s %s : -np 1 %s pretrain %s "
             "--batch 2 -o %s/b3 --data %s",
             test_cli_path(), pre("b3", 2, 1, ""), test_cli_path(), common, dir, tok);
    CHECK(sh(a, err, sizeof err) != 0 && strstr(err, "rank 1's token data (train split) differs") &&
              !strstr(err, "step 1/"), "a rank with other data: %s", err);
    snprintf(a, sizeof a,
             "ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe -np 1 %s %s : -np 1 %s %s --seed 6",
             test_cli_path(), pre("b4", 2, 1, ""), test_cli_path(), pre("b4", 2, 1, ""));
    CHECK(sh(a, err, sizeof err) != 0 && strstr(err, "rank 1's model (weights and shapes) differs"),
          "a rank with another model (seed): %s", err);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_mpi_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    CHECK(!test_cat_data(dir), "data: %s", xd_last_error());
    snprintf(common, sizeof common,
             "--config %s/tests/fixtures/tiny-llama/config.json --tokenizer "
             "%s/tests/fixtures/tiny-llama.gguf --data %s/data.tok --steps 10 --seq 16 --lr 3e-3 "
             "--warmup 2 --eval-every 5 --eval-windows 8 --seed 5 --threads 1",
             XD_SOURCE_DIR, XD_SOURCE_DIR, dir);
    char err[16384], a[8192];
    /* a launcher's environment without a usable MPI: a clear error, no crash (no mpirun
     * needed: the variable is what a launcher sets) */
#ifdef XD_TEST_HAVE_MPI
    const int built = 1; /* this build has libxdistill-mpi.so */
#else
    const int built = 0;
#endif
    if (built) {
        snprintf(a, sizeof a, "env OMPI_COMM_WORLD_SIZE=2 XD_MPI_PLUGIN=/nonexistent/libxdistill-mpi.so %s %s",
                 test_cli_path(), pre("e1", 2, 1, ""));
        CHECK(sh(a, err, sizeof err) == 1 && strstr(err, "MPI cannot be loaded") &&
                  strstr(err, "/nonexistent/libxdistill-mpi.so"), "no loadable plugin: %s", err);
    } else {
        snprintf(a, sizeof a, "env OMPI_COMM_WORLD_SIZE=2 %s %s", test_cli_path(), pre("e1", 2, 1, ""));
        CHECK(sh(a, err, sizeof err) == 1 && strstr(err, "built without MPI"), "no MPI build: %s", err);
    }
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        printf("SKIP: the checks with several ranks: mpirun is not installed (Debian package "
               "openmpi-bin; make test installs it)\n");
    } else if (built) {
        test_pretrain();
        test_lora_and_stage1();
        test_sharded();
        test_rank_killed();
        test_two_hosts();
        test_bad_input();
    } else { /* mpirun on a binary built without MPI */
        CHECK(mpi(2, pre("e2", 2, 1, ""), err, sizeof err) != 0 && strstr(err, "built without MPI"),
              "mpirun, no MPI build: %s", err);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd)) return 1;
    return test_summary("test_mpi");
}
