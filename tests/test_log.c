/* Logging (xd_set_log): the library's messages reach the installed callback,
 * and without one the library writes nothing to stdout or stderr.
 * - data prep (verbose), a short training run with --resume and no
 *   checkpoint, and perplexity (verbose) on the tiny Llama: progress reports
 *   (label, counts, status line, msg, a final done report), the INFO notice
 *   "no checkpoint in ..., starting from step 0", the WARN for a tokenizer
 *   without EOS; every message on the calling thread, one line each (no
 *   newline, no control characters: the callback decides how to show them).
 * - the same calls with no callback: fds 1 and 2, redirected to a file
 *   around them, stay empty. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/tokdata.h"
#include "test.h"
#include "train/train.h"
#include "xdistill.h"

static char g_dir[64];

static const char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

/* ---- what the callback saw ------------------------------------------------ */

enum { MAX_MSG = 4096 };
static struct {
    int level;
    char msg[256], label[32], status[256];
    int64_t step, total;
    int done;
} g_log[MAX_MSG];
static int g_n, g_wrong_thread, g_bad_text, g_bad_progress;
static pthread_t g_main;

static int clean_line(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

static void on_log(void *user, int level, const char *msg, const xd_progress_info *p) {
    (*(int *)user)++;
    if (!pthread_equal(pthread_self(), g_main)) g_wrong_thread++;
    if (!msg || !clean_line(msg)) g_bad_text++;
    if ((level == XD_LOG_PROGRESS) != (p != NULL)) g_bad_progress++;
    if (p && (!p->label || !p->status || !p->detail || !clean_line(p->status))) g_bad_progress++;
    if (g_n == MAX_MSG) return;
    g_log[g_n].level = level;
    snprintf(g_log[g_n].msg, sizeof g_log[g_n].msg, "%s", msg ? msg : "");
    if (p) {
        snprintf(g_log[g_n].label, sizeof g_log[g_n].label, "%s", p->label ? p->label : "");
        snprintf(g_log[g_n].status, sizeof g_log[g_n].status, "%s", p->status ? p->status : "");
        g_log[g_n].step = p->step;
        g_log[g_n].total = p->total;
        g_log[g_n].done = p->done;
    }
    g_n++;
}

/* index of the first message of this level containing needle (label for
 * progress), from `from`; -1 if none */
static int find(int from, int level, const char *needle) {
    for (int i = from; i < g_n; i++)
        if (g_log[i].level == level &&
            strstr(level == XD_LOG_PROGRESS ? g_log[i].label : g_log[i].msg, needle))
            return i;
    return -1;
}

/* The first run of reports of label: counts only grow, it ends with a done report. */
static void check_progress_run(const char *label, int64_t want_total) {
    int first = find(0, XD_LOG_PROGRESS, label), n = 0, n_done = 0, last = -1;
    CHECK(first >= 0, "%s: no progress report", label);
    if (first < 0) return;
    int64_t prev = -1;
    for (int i = first; i < g_n; i++) {
        if (g_log[i].level != XD_LOG_PROGRESS || strcmp(g_log[i].label, label)) continue;
        n++;
        n_done += g_log[i].done;
        CHECK(g_log[i].step >= prev, "%s: step %lld after %lld", label, (long long)g_log[i].step,
              (long long)prev);
        CHECK(g_log[i].total == want_total, "%s: total %lld, expected %lld", label,
              (long long)g_log[i].total, (long long)want_total);
        CHECK(strstr(g_log[i].msg, label) == g_log[i].msg, "%s: msg '%s' does not start with the label",
              label, g_log[i].msg);
        CHECK(g_log[i].status[0] != 0, "%s: empty status", label);
        prev = g_log[i].step;
        last = i;
        if (g_log[i].done) break;
    }
    CHECK(n_done == 1 && g_log[last].done, "%s: %d done reports of %d, last done %d", label, n_done,
          n, g_log[last].done);
    printf("%-10s %d report(s), last: %s\n", label, n, g_log[last].msg);
}

/* ---- the library calls that log ------------------------------------------------ */

static void write_corpus(void) {
    FILE *f = fopen(path_in("c.txt"), "w");
    for (int i = 0; i < 120; i++)
        fprintf(f, "The quick brown fox %d jumps over the lazy dog. Paragraph %d.\n\n", i, i);
    fclose(f);
}

/* data prep, training (resume, nothing to resume) and perplexity, verbose */
static int run_all(const char *out_dir) {
    int rc = 0;
    xd_tokenizer *t = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    if (!t) return -1;
    xd_prep_opts po;
    xd_prep_defaults(&po);
    const char *in[] = {path_in("c.txt")};
    po.inputs = in;
    po.n_inputs = 1;
    po.doc_sep = XD_DOCSEP_BLANK;
    po.val_frac = 0.1;
    po.verbose = 1;
    rc |= xd_tokdata_prep(t, &po, path_in("data.tok"), NULL);
    xd_tokenizer_free(t);

    xd_model *m = xd_model_load(FIXTURE("tiny-llama"));
    xd_tokdata *d = xd_tokdata_open(path_in("data.tok"));
    if (!m || !d) rc = -1;
    if (m && d) {
        xd_train_opts o;
        xd_train_defaults(&o);
        o.steps = 3;
        o.batch = 2;
        o.seq = 16;
        o.eval_windows = 2;
        o.out_dir = out_dir;
        o.resume = 1;
        o.kind = "pretrain";
        rc |= xd_train(m, d, &o, NULL);
        /* perplexity over the first tokens of the data */
        const xd_tokdata_header *h = xd_tokdata_header_of(d);
        size_t n = h->n_tokens < 200 ? (size_t)h->n_tokens : 200;
        int32_t *ids = malloc(n * sizeof *ids);
        if (xd_tokdata_copy(d, 0, n, ids)) rc = -1;
        double nll;
        size_t scored;
        rc |= xd_perplexity(m, ids, n, 32, 16, 1, &nll, &scored);
        free(ids);
    }
    xd_tokdata_close(d);
    xd_model_free(m);
    return rc;
}

/* A tokenizer without EOS: data prep warns (XD_LOG_WARN) that documents run together. */
static int prep_without_eos(void) {
    xd_tokenizer *t = xd_tokenizer_load(FIXTURE("tiny_tokenizer"));
    if (!t) return -1;
    if (xd_tokenizer_eos(t) >= 0) {
        xd_tokenizer_free(t);
        return 1; /* the fixture has one: nothing to test */
    }
    xd_prep_opts po;
    xd_prep_defaults(&po);
    const char *in[] = {path_in("c.txt")};
    po.inputs = in;
    po.n_inputs = 1;
    po.verbose = 1;
    int rc = xd_tokdata_prep(t, &po, path_in("noeos.tok"), NULL);
    xd_tokenizer_free(t);
    return rc;
}

static void test_callback(void) {
    int calls = 0;
    g_n = 0;
    xd_set_log(on_log, &calls);
    int rc = run_all(path_in("train1"));
    CHECK(rc == 0, "library calls: %s", xd_last_error());
    int warn = prep_without_eos();
    CHECK(warn == 0, "prep without EOS: %s", warn > 0 ? "the fixture has an EOS token" : xd_last_error());
    xd_set_log(NULL, NULL);
    CHECK(calls == g_n && g_n > 0 && g_n < MAX_MSG, "%d calls, %d recorded", calls, g_n);
    CHECK(g_wrong_thread == 0, "%d messages from another thread", g_wrong_thread);
    CHECK(g_bad_text == 0, "%d messages with a newline or control character", g_bad_text);
    CHECK(g_bad_progress == 0, "%d bad progress reports", g_bad_progress);

    check_progress_run("data prep", 0);
    check_progress_run("pretrain", 3);
    check_progress_run("ppl", 200);
    int i = find(0, XD_LOG_INFO, "no checkpoint in");
    CHECK(i >= 0 && strstr(g_log[i].msg, "pretrain: no checkpoint in ") &&
              strstr(g_log[i].msg, "train1, starting from step 0"),
          "resume notice: %s", i >= 0 ? g_log[i].msg : "(none)");
    /* the notice comes before the first training report */
    int p = find(0, XD_LOG_PROGRESS, "pretrain");
    CHECK(i >= 0 && p > i, "notice at %d, first training report at %d", i, p);
    int w = find(0, XD_LOG_WARN, "no EOS token");
    CHECK(w >= 0 && strstr(g_log[w].msg, "data prep: warning: "), "no-EOS warning: %s",
          w >= 0 ? g_log[w].msg : "(none)");
    /* a second run resumes: an INFO line naming the step */
    calls = 0;
    g_n = 0;
    xd_set_log(on_log, &calls);
    xd_model *m = xd_model_load(FIXTURE("tiny-llama"));
    xd_tokdata *d = xd_tokdata_open(path_in("data.tok"));
    if (m && d) {
        xd_train_opts o;
        xd_train_defaults(&o);
        o.steps = 3;
        o.batch = 2;
        o.seq = 16;
        o.eval_windows = 2;
        o.out_dir = path_in("train1");
        o.resume = 1;
        o.kind = "pretrain";
        CHECK(xd_train(m, d, &o, NULL) == 0, "resume: %s", xd_last_error());
    }
    xd_set_log(NULL, NULL);
    i = find(0, XD_LOG_INFO, "resuming");
    CHECK(i >= 0 && !strcmp(g_log[i].msg, "pretrain: resuming from step 3"), "resume: %s",
          i >= 0 ? g_log[i].msg : "(none)");
    xd_tokdata_close(d);
    xd_model_free(m);
}

/* ---- silence without a callback ---------------------------------------------------- */

static void test_silent(void) {
    fflush(stdout);
    fflush(stderr);
    char cap[256];
    snprintf(cap, sizeof cap, "%s", path_in("captured.txt"));
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int save1 = dup(1), save2 = dup(2);
    CHECK(fd >= 0 && save1 >= 0 && save2 >= 0, "cannot redirect");
    if (fd < 0 || save1 < 0 || save2 < 0) return;
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    int rc = run_all(path_in("train2"));
    int warn = prep_without_eos();
    fflush(stdout);
    fflush(stderr);
    dup2(save1, 1);
    dup2(save2, 2);
    close(save1);
    close(save2);
    CHECK(rc == 0 && warn >= 0, "library calls: %s", xd_last_error());
    struct stat st;
    CHECK(stat(cap, &st) == 0 && st.st_size == 0,
          "with no callback the library wrote %lld bytes to stdout/stderr", (long long)st.st_size);
    if (st.st_size > 0) {
        FILE *f = fopen(cap, "r");
        char buf[512];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        buf[n] = 0;
        fprintf(stderr, "they begin: %s\n", buf);
        if (f) fclose(f);
    }
}

int main(void) {
    g_main = pthread_self();
    snprintf(g_dir, sizeof g_dir, "/tmp/xd_log_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    write_corpus();
    test_silent(); /* first: nothing installed yet, the default */
    test_callback();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) {}
    return test_summary("test_log");
}
