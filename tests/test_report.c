/* `xdistill compare` and its HTML report (src/eval/report.h): loading and
 * refusing results files, WINTIE.json, HTML escaping and self-containment,
 * the CLI, and a rendering in headless Chromium whose screenshot must show
 * every plot with data in it. Without Chromium only that last check prints
 * SKIP; everything else is still asserted. */
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "eval/report.h"
#include "test.h"
#include "xdistill.h"

#define OUT XD_BINARY_DIR "/test_report.out"

/* ---- synthetic inputs ----------------------------------------------------- */

typedef struct {
    const char *name, *type, *metric;
    double chance; /* < 0: null */
    int long_context;
    double teacher, student, swa;
} task_def;

/* Student wins or ties on arc_easy, lambada_cloze (tie) and mqar_16W (teacher
 * 0): C_0 = 3/8. Thresholds α_b: 0, 0.0244 (1 − 0.40/0.41), 0.0143 (1/70),
 * 0, 0.0727, 0.0816, 0, 0.0385 → the 4th smallest is α* = 1/70. */
static const task_def kTasks[] = {
    {"arc_easy", "choice", "acc", 0.25, 0, 0.62, 0.63, 0.58},
    {"hellaswag", "choice", "acc", 0.25, 0, 0.41, 0.40, 0.38},
    {"piqa", "choice", "acc", 0.5, 0, 0.70, 0.69, 0.66},
    {"lambada_cloze", "generate", "exact", -1, 0, 0.35, 0.35, 0.30},
    {"wikitext_ppl", "perplexity", "inv_ppl", -1, 0, 0.055, 0.051, 0.047},
    {"passkey_4W", "generate", "contains", -1, 1, 0.98, 0.90, 0.05},
    {"mqar_16W", "generate", "exact", -1, 1, 0.0, 0.02, 0.0},
    {"cloze_long <b>&\"'", "choice", "acc", 0.25, 1, 0.52, 0.50, 0.30},
};
#define N_TASKS (sizeof kTasks / sizeof *kTasks)

typedef struct {
    int role;              /* 0 teacher, 1 student, 2 SWA */
    const char *suite;     /* NULL: "builtin" */
    int fewshot;
    size_t n_tasks;        /* 0: all */
    const char *piqa_metric;
    int bad_score;         /* write -1 as task 1's score */
    int student_flag;      /* -1: from the role */
    int reverse;           /* write the tasks in reverse order */
} res_opts;

static void write_results(const char *path, res_opts o) {
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    int student = o.student_flag >= 0 ? o.student_flag : o.role > 0;
    static const char *const model[3] = {"SmolLM2-135M-Instruct.Q4_1.gguf", "out/student/model",
                                         "out/student-swa/model"};
    fprintf(f, "{\"xdistill_results\":1,\"model\":\"%s\",\"student\":%s,\"window\":%s,\"suite\":\"%s\","
               "\"suite_dir\":\"suites/builtin\",\"settings\":{\"bos\":true,\"chat\":false,\"fewshot\":%d,"
               "\"max_ctx\":4096,\"bootstrap\":1000,\"seed\":7},\"tasks\":[",
            model[o.role], student ? "true" : "false", o.role ? "512" : "null",
            o.suite ? o.suite : "builtin", o.fewshot);
    size_t n = o.n_tasks ? o.n_tasks : N_TASKS;
    for (size_t j = 0; j < n; j++) {
        size_t i = o.reverse ? n - 1 - j : j;
        const task_def *t = &kTasks[i];
        double s = o.role == 0 ? t->teacher : o.role == 1 ? t->student : t->swa;
        if (o.bad_score && i == 1) s = -1;
        double h = strcmp(t->metric, "inv_ppl") ? 0.04 : 0.003, lo = s - h < 0 ? 0 : s - h;
        char name[64], chance[32];
        size_t k = 0;
        for (const char *c = t->name; *c && k + 3 < sizeof name; c++) { /* JSON-escape the quote */
            if (*c == '"' || *c == '\\') name[k++] = '\\';
            name[k++] = *c;
        }
        name[k] = 0;
        if (t->chance < 0) snprintf(chance, sizeof chance, "null");
        else snprintf(chance, sizeof chance, "%g", t->chance);
        fprintf(f, "%s{\"name\":\"%s\",\"type\":\"%s\",\"metric\":\"%s\",\"score\":%.17g,\"ci_low\":%.17g,"
                   "\"ci_high\":%.17g,\"n\":500,\"seconds\":3.5,\"chance\":%s,\"acc_norm\":%.17g,"
                   "\"ppl\":null,\"long_context\":%s}",
                j ? "," : "", name, t->type,
                !strcmp(t->name, "piqa") && o.piqa_metric ? o.piqa_metric : t->metric, s, lo, s + h,
                chance, s, t->long_context ? "true" : "false");
    }
    fprintf(f, "],\"seconds\":%d}\n", 100 + 10 * o.role);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
}

/* A Stage I + Stage II style log: 200 steps, validation every 20. */
static void write_log(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    for (int st = 1; st <= 200; st++) {
        double loss = 3.0 * exp(-st / 60.0) + 0.6 + 0.03 * sin(st * 1.7);
        fprintf(f, "{\"step\":%d,\"loss\":%.6f,\"lr\":0.001,\"ce\":%.6f,\"kl\":%.6f,\"layer_mse\":[", st, loss,
                2.4 * exp(-st / 80.0) + 1.1, 0.9 * exp(-st / 50.0) + 0.12);
        for (int l = 0; l < 12; l++)
            fprintf(f, "%s%.6g", l ? "," : "", (0.4 + 0.25 * l) * exp(-st / (40.0 + 6 * l)) + 0.002 * (l + 1));
        fprintf(f, "]");
        if (st % 20 == 0) fprintf(f, ",\"val_loss\":%.6f,\"val_kl\":%.6f", loss + 0.08, 0.9 * exp(-st / 50.0) + 0.17);
        fprintf(f, "}\n");
    }
    fclose(f);
}

/* ---- library -------------------------------------------------------------- */

static int load_pair_check(const char *a, const char *b) {
    xd_cmp_results ra, rb;
    int rc = -1;
    if (xd_cmp_results_load(&ra, a)) return -2;
    if (!xd_cmp_results_load(&rb, b)) {
        rc = xd_cmp_results_check(&ra, &rb);
        xd_cmp_results_free(&rb);
    } else rc = -2;
    xd_cmp_results_free(&ra);
    return rc;
}

static int has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static void test_refusals(void) {
    const char *e;
    CHECK(load_pair_check(OUT "/teacher.json", OUT "/student_fewshot.json") == -1, "fewshot differs");
    e = xd_last_error();
    CHECK(has(e, "teacher.json") && has(e, "student_fewshot.json") && has(e, "settings.fewshot") &&
          has(e, "0 in ") && has(e, "5 in "), "settings error: %s", e);
    CHECK(load_pair_check(OUT "/teacher.json", OUT "/student_suite.json") == -1, "suite differs");
    e = xd_last_error();
    CHECK(has(e, "suite differs") && has(e, "\"builtin\"") && has(e, "\"other\"") && has(e, "student_suite.json"),
          "suite error: %s", e);
    CHECK(load_pair_check(OUT "/teacher.json", OUT "/student_tasks.json") == -1, "task sets differ");
    e = xd_last_error();
    CHECK(has(e, "tasks differ") && has(e, "'cloze_long") && has(e, "teacher.json") && has(e, "student_tasks.json") &&
          has(e, "8 tasks") && has(e, "7 in"), "task-set error: %s", e);
    CHECK(load_pair_check(OUT "/student_tasks.json", OUT "/teacher.json") == -1, "task sets differ (reverse)");
    CHECK(load_pair_check(OUT "/teacher.json", OUT "/student_metric.json") == -1, "metric differs");
    e = xd_last_error();
    CHECK(has(e, "task 'piqa' metric") && has(e, "\"acc\"") && has(e, "\"acc_norm\""), "metric error: %s", e);
    CHECK(load_pair_check(OUT "/teacher.json", OUT "/student.json") == 0, "compatible: %s", xd_last_error());

    xd_cmp_results r;
    CHECK(xd_cmp_results_load(&r, OUT "/bad_score.json") == -1, "negative score refused");
    e = xd_last_error();
    CHECK(has(e, "bad_score.json") && has(e, "tasks[1].score") && has(e, "hellaswag") && has(e, ">= 0"),
          "score error: %s", e);
    CHECK(xd_cmp_results_load(&r, OUT "/not_results.json") == -1 && has(xd_last_error(), "xdistill_results"),
          "not a results file: %s", xd_last_error());
    CHECK(xd_cmp_results_load(&r, OUT "/bad.json") == -1 && has(xd_last_error(), "bad.json: not valid JSON"),
          "bad JSON: %s", xd_last_error());
    CHECK(xd_cmp_results_load(&r, OUT "/missing.json") == -1 && has(xd_last_error(), "missing.json"),
          "missing file: %s", xd_last_error());

    xd_cmp_log l;
    CHECK(xd_cmp_log_load(&l, OUT "/log_bad.jsonl") == -1 && has(xd_last_error(), "log_bad.jsonl:3: not valid JSON"),
          "bad log line: %s", xd_last_error());
    CHECK(xd_cmp_log_load(&l, OUT "/log_nostep.jsonl") == -1 && has(xd_last_error(), "log_nostep.jsonl:1:") &&
          has(xd_last_error(), "\"step\""), "log without step: %s", xd_last_error());
    xd_cmp_ledger g;
    CHECK(xd_cmp_ledger_load(&g, OUT "/ledger_bad.json") == -1 && has(xd_last_error(), "ledger_bad.json: stages"),
          "bad ledger: %s", xd_last_error());

    /* swapped: a student file as TEACHER, a teacher file as STUDENT */
    xd_cmp_results rt, rs;
    CHECK(!xd_cmp_results_load(&rt, OUT "/student.json") && !xd_cmp_results_load(&rs, OUT "/teacher.json"), "load");
    xd_cmp c;
    CHECK(xd_cmp_build(&c, &rt, &rs, NULL, NULL, 0, NULL) == -1 && has(xd_last_error(), "swapped"),
          "swapped files: %s", xd_last_error());
    xd_cmp_results_free(&rt);
    xd_cmp_results_free(&rs);
}

static void test_logs_and_ledger(void) {
    xd_cmp_log l;
    CHECK(!xd_cmp_log_load(&l, OUT "/log.jsonl"), "%s", xd_last_error());
    CHECK(l.n_lines == 200, "records %zu", l.n_lines);
    const xd_cmp_series *s = xd_cmp_log_series(&l, "loss"), *v = xd_cmp_log_series(&l, "val_loss"),
                        *m = xd_cmp_log_series(&l, "layer_mse[11]");
    CHECK(s && s->n == 200 && s->x[0] == 1 && s->x[199] == 200, "loss series");
    CHECK(v && v->n == 10 && v->x[0] == 20, "val_loss series (every 20 steps)");
    CHECK(m && m->n == 200 && !xd_cmp_log_series(&l, "layer_mse[12]"), "12 per-layer MSE series");
    xd_cmp_log_free(&l);
    xd_cmp_ledger g;
    CHECK(!xd_cmp_ledger_load(&g, OUT "/ledger.json"), "%s", xd_last_error());
    CHECK(g.n_stages == 3 && !strcmp(g.stages[1].name, "stage1") && g.stages[1].tokens == 4e6 &&
          isnan(g.stages[2].tokens), "ledger contents");
    xd_cmp_ledger_free(&g);
}

static void test_compare(xd_report_plots *plots) {
    xd_cmp_results rt, rs, rw;
    xd_cmp_log lg;
    xd_cmp_ledger ld;
    CHECK(!xd_cmp_results_load(&rt, OUT "/teacher.json"), "%s", xd_last_error());
    CHECK(!xd_cmp_results_load(&rs, OUT "/student.json"), "%s", xd_last_error());
    CHECK(!xd_cmp_results_load(&rw, OUT "/swa.json"), "%s", xd_last_error());
    CHECK(!xd_cmp_log_load(&lg, OUT "/log.jsonl"), "%s", xd_last_error());
    CHECK(!xd_cmp_ledger_load(&ld, OUT "/ledger.json"), "%s", xd_last_error());
    CHECK(!strcmp(rt.tasks[7].name, "cloze_long <b>&\"'"), "task name with markup read back: %s", rt.tasks[7].name);
    CHECK(isnan(rt.tasks[3].chance) && rt.tasks[0].chance == 0.25 && rt.window == -1 && rs.window == 512,
          "optional fields");
    xd_cmp c;
    if (xd_cmp_build(&c, &rt, &rs, &rw, &lg, 1, &ld)) {
        CHECK(0, "build: %s", xd_last_error());
        return;
    }
    CHECK(c.wt.wins0 == 3 && c.wt.c0 == 0.375 && !c.wt.lossless, "C_0 %g", c.wt.c0);
    CHECK_NEAR(c.wt.alpha_star, 1.0 / 70, 1e-15, "α* = 1 − 0.69/0.70");
    CHECK(!strcmp(c.verdict, "NOT LOSSLESS: C_0 = 0.375 < 0.5 (3 of 8 tasks won or tied); α* = 0.0143"),
          "verdict '%s'", c.verdict);
    CHECK(c.swa_wt.wins0 == 1, "SWA wins only the 0/0 task: %d", c.swa_wt.wins0);

    char *js = xd_cmp_wintie_json(&c);
    json_error_t je;
    json_t *o = js ? json_loads(js, 0, &je) : NULL;
    CHECK(o != NULL, "WINTIE.json parses: %s", js ? je.text : xd_last_error());
    if (o) {
        json_t *tasks = json_object_get(o, "tasks"), *wt = json_object_get(o, "wintie");
        CHECK(json_integer_value(json_object_get(o, "xdistill_wintie")) == 1, "version");
        CHECK(json_is_false(json_object_get(o, "lossless")), "lossless false");
        CHECK(json_real_value(json_object_get(o, "c_0")) == 0.375, "c_0");
        CHECK_NEAR(json_real_value(json_object_get(o, "alpha_star")), 1.0 / 70, 1e-12, "alpha_star");
        CHECK(json_array_size(tasks) == 8, "8 tasks");
        json_t *t6 = json_array_get(tasks, 6), *t7 = json_array_get(tasks, 7), *t2 = json_array_get(tasks, 2);
        CHECK(json_is_null(json_object_get(t6, "recovery")) && json_is_true(json_object_get(t6, "win_0")) &&
              json_real_value(json_object_get(t6, "alpha_b")) == 0, "zero-teacher task: recovery null, a win");
        CHECK(json_is_null(json_object_get(t6, "swa_recovery")), "0/0 SWA recovery null");
        CHECK(!strcmp(json_string_value(json_object_get(t7, "name")), "cloze_long <b>&\"'"), "name kept");
        CHECK_NEAR(json_real_value(json_object_get(t2, "recovery")), 0.69 / 0.70, 1e-11, "piqa recovery");
        CHECK(json_is_false(json_object_get(t2, "win_0")), "piqa lost at α = 0");
        CHECK_NEAR(json_real_value(json_object_get(json_object_get(t2, "student"), "ci_high")), 0.73, 1e-12, "CI");
        json_t *ga = json_object_get(wt, "alpha_grid"), *gc = json_object_get(wt, "c_alpha");
        CHECK(json_array_size(ga) == 51 && json_array_size(gc) == 51, "51-point grid");
        CHECK(json_real_value(json_array_get(ga, 0)) == 0 && json_real_value(json_array_get(ga, 50)) == 0.5, "grid ends");
        CHECK(json_real_value(json_array_get(gc, 1)) == 0.375 && json_real_value(json_array_get(gc, 2)) == 0.5,
              "C at 0.01 and 0.02 (α* = 0.0143 in between)");
        CHECK(json_real_value(json_array_get(gc, 50)) == 1, "C_0.5 = 1");
        CHECK(json_is_object(json_object_get(o, "swa_wintie")), "swa_wintie present");
        CHECK(json_is_true(json_object_get(json_object_get(o, "settings"), "bos")), "settings copied");
        json_decref(o);
    }
    free(js);

    char *html = xd_cmp_report_html(&c, plots);
    CHECK(html != NULL, "HTML: %s", xd_last_error());
    if (html) {
        CHECK(has(html, "<!DOCTYPE html>") && has(html, "<meta charset=\"utf-8\">"), "HTML5 page");
        CHECK(has(html, "cloze_long &lt;b&gt;&amp;&quot;&#39;") && !has(html, "<b>&\""), "task name escaped");
        CHECK(!has(html, "http:") && !has(html, "https:") && !has(html, "<script") && !has(html, "<link") &&
              !has(html, "src=") && !has(html, "url(") && !has(html, "@import"),
              "self-contained: no external resources or scripts");
        CHECK(has(html, "NOT LOSSLESS: C_0 = 0.375"), "verdict shown");
        CHECK(has(html, "∞ (A_T = 0)") && has(html, "n/a (0/0)"), "zero-teacher recoveries shown");
        CHECK(has(html, "stage1") && has(html, "4,000,000") && has(html, "settings.fewshot"), "ledger and settings tables");
        CHECK(plots->n == 5, "plots: bars, C_α, loss, CE/KL, per-layer MSE: %d", plots->n);
        for (int i = 0; i < plots->n; i++)
            for (int j = 0; j < i; j++) CHECK(plots->plot[i].bg != plots->plot[j].bg, "plot colours unique");
        size_t n_svg = 0;
        for (const char *p = html; (p = strstr(p, "<svg")); p++) n_svg++;
        CHECK(n_svg == 5, "5 inline SVGs: %zu", n_svg);
        CHECK(!xd_cmp_write_text(OUT "/report.html", html), "%s", xd_last_error());
        free(html);
    }
    xd_cmp_free(&c);

    /* without the optional inputs: 2 plots, notes instead of the sections */
    CHECK(!xd_cmp_build(&c, &rt, &rs, NULL, NULL, 0, NULL), "%s", xd_last_error());
    xd_report_plots p2;
    char *h2 = xd_cmp_report_html(&c, &p2);
    CHECK(h2 && p2.n == 2 && has(h2, "No training logs given") && has(h2, "No ledger given") &&
          !has(h2, "SWA-only baseline:"), "minimal report");
    free(h2);
    xd_cmp_free(&c);
    xd_cmp_results_free(&rt);
    xd_cmp_results_free(&rs);
    xd_cmp_results_free(&rw);
    xd_cmp_log_free(&lg);
    xd_cmp_ledger_free(&ld);
}

/* ---- CLI ------------------------------------------------------------------ */

static void test_cli(void) {
    char out[8192];
    int rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json -o " OUT "/cli_wintie.json --report "
                          OUT "/cli_report.html --logs " OUT "/log.jsonl --swa " OUT "/swa.json --ledger " OUT
                          "/ledger.json", out, sizeof out, 1);
    CHECK(rc == 0, "compare exit %d: %s", rc, out);
    CHECK(!strncmp(out, "NOT LOSSLESS: C_0 = 0.375 < 0.5 (3 of 8 tasks won or tied); α* = 0.0143\n",
                   strlen("NOT LOSSLESS: C_0 = 0.375 < 0.5 (3 of 8 tasks won or tied); α* = 0.0143\n")),
          "stdout: %s", out);
    struct stat st;
    CHECK(!stat(OUT "/cli_wintie.json", &st) && st.st_size > 1000, "WINTIE.json written");
    CHECK(!stat(OUT "/cli_report.html", &st) && st.st_size > 10000, "report written");

    /* tasks are matched by name, not position */
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student_reversed.json -o " OUT "/rev.json", out,
                      sizeof out, 1);
    CHECK(rc == 0 && !strncmp(out, "NOT LOSSLESS: C_0 = 0.375 < 0.5 (3 of 8 tasks won or tied); α* = 0.0143",
                              strlen("NOT LOSSLESS: C_0 = 0.375 < 0.5 (3 of 8 tasks won or tied); α* = 0.0143")),
          "reversed task order (%d): %s", rc, out);

    /* the teacher against itself: every task a tie */
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/teacher.json -o " OUT "/self.json", out, sizeof out, 1);
    CHECK(rc == 0 && !strncmp(out, "LOSSLESS: C_0 = 1 ≥ 0.5 (8 of 8 tasks won or tied; α* = 0)",
                              strlen("LOSSLESS: C_0 = 1 ≥ 0.5 (8 of 8 tasks won or tied; α* = 0)")),
          "self-comparison (%d): %s", rc, out);

    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student_fewshot.json -o " OUT "/x.json", out, sizeof out, 0);
    CHECK(rc == 1 && has(out, "settings.fewshot") && has(out, "teacher.json") && has(out, "student_fewshot.json"),
          "settings refused (%d): %s", rc, out);
    CHECK(stat(OUT "/x.json", &st) && errno == ENOENT, "nothing written on refusal");
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json -o " OUT "/x.json --swa " OUT
                      "/student_tasks.json", out, sizeof out, 0);
    CHECK(rc == 1 && has(out, "tasks differ") && has(out, "student_tasks.json"), "SWA task set refused (%d): %s", rc, out);
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json -o " OUT "/x.json --logs " OUT
                      "/log_bad.jsonl", out, sizeof out, 0);
    CHECK(rc == 1 && has(out, "log_bad.jsonl:3"), "bad log refused (%d): %s", rc, out);
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json", out, sizeof out, 0);
    CHECK(rc == 2 && has(out, "usage: xdistill compare"), "-o required (%d): %s", rc, out);
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json -o " OUT "/x.json --bogus", out, sizeof out, 0);
    CHECK(rc == 2 && has(out, "unknown option '--bogus'"), "unknown option (%d): %s", rc, out);
    rc = test_cli_run("compare " OUT "/teacher.json " OUT "/student.json -o /nonexistent-dir/w.json", out, sizeof out, 0);
    CHECK(rc == 1 && has(out, "/nonexistent-dir/w.json"), "unwritable output named (%d): %s", rc, out);
}

/* ---- rendering in headless Chromium --------------------------------------- */

typedef int (*uncompress_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long);

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes an 8-bit RGB or RGBA, non-interlaced PNG into RGB. zlib is loaded at
 * run time (libz.so.1 is on every Debian system). Returns NULL with why set. */
static unsigned char *png_rgb(const char *path, int *w, int *h, const char **why) {
    void *z = dlopen("libz.so.1", RTLD_NOW);
    uncompress_fn unz = z ? (uncompress_fn)dlsym(z, "uncompress") : NULL;
    if (!unz) { *why = "libz.so.1 not found"; return NULL; }
    FILE *f = fopen(path, "rb");
    if (!f) { *why = "no screenshot"; dlclose(z); return NULL; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)size), *idat = malloc((size_t)size), *raw = NULL, *rgb = NULL;
    size_t n_idat = 0;
    int ok = d && idat && fread(d, 1, (size_t)size, f) == (size_t)size && size > 33 &&
             !memcmp(d, "\x89PNG\r\n\x1a\n", 8);
    fclose(f);
    int bpp = 0;
    *why = "not a PNG of the expected kind";
    for (long i = 8; ok && i + 12 <= size;) {
        uint32_t len = be32(d + i);
        const unsigned char *type = d + i + 4, *data = d + i + 8;
        if (i + 12 + (long)len > size) { ok = 0; break; }
        if (!memcmp(type, "IHDR", 4)) {
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            bpp = data[9] == 2 ? 3 : data[9] == 6 ? 4 : 0;
            if (data[8] != 8 || !bpp || data[12] != 0) ok = 0;
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(idat + n_idat, data, len);
            n_idat += len;
        }
        i += 12 + (long)len;
    }
    unsigned long stride = (unsigned long)*w * (unsigned long)bpp, raw_len = (stride + 1) * (unsigned long)*h;
    if (ok && bpp && *w > 0 && *h > 0 && (raw = malloc(raw_len)) && (rgb = malloc((size_t)*w * *h * 3))) {
        unsigned long got = raw_len;
        if (unz(raw, &got, idat, n_idat) != 0 || got != raw_len) ok = 0;
        for (int y = 0; ok && y < *h; y++) { /* undo the per-row filters */
            unsigned char *row = raw + (size_t)y * (stride + 1) + 1, *prev = y ? row - stride - 1 : NULL;
            int ft = row[-1];
            for (unsigned long x = 0; x < stride; x++) {
                int a = x >= (unsigned long)bpp ? row[x - bpp] : 0, b = prev ? prev[x] : 0,
                    c = prev && x >= (unsigned long)bpp ? prev[x - bpp] : 0, pr = 0;
                if (ft == 1) pr = a;
                else if (ft == 2) pr = b;
                else if (ft == 3) pr = (a + b) / 2;
                else if (ft == 4) {
                    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                    pr = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
                } else if (ft != 0) ok = 0;
                row[x] = (unsigned char)(row[x] + pr);
            }
            for (int x = 0; x < *w; x++) memcpy(rgb + ((size_t)y * *w + x) * 3, row + (size_t)x * bpp, 3);
        }
    } else ok = 0;
    free(d);
    free(idat);
    free(raw);
    dlclose(z);
    if (!ok) { free(rgb); return NULL; }
    return rgb;
}

static const char *find_chromium(void) {
    static char buf[4096];
    const char *env = getenv("XD_CHROMIUM");
    if (env && *env) return env;
    static const char *const names[] = {"chromium", "chromium-browser", "google-chrome"};
    const char *path = getenv("PATH");
    for (size_t k = 0; path && k < sizeof names / sizeof *names; k++)
        for (const char *p = path; *p;) {
            const char *e = strchr(p, ':');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, names[k]);
            if (n && access(buf, X_OK) == 0) return buf;
            p += n + (e ? 1 : 0);
        }
    return NULL;
}

static int near(const unsigned char *px, unsigned c, int tol) {
    return abs(px[0] - (int)(c >> 16 & 255)) <= tol && abs(px[1] - (int)(c >> 8 & 255)) <= tol &&
           abs(px[2] - (int)(c & 255)) <= tol;
}

static void test_render(const xd_report_plots *plots) {
    const char *chromium = find_chromium();
    if (!chromium) {
        printf("SKIP: rendering check: chromium is not installed (Debian package 'chromium'; or set "
               "XD_CHROMIUM)\n");
        return;
    }
    char cmd[8192];
    remove(OUT "/report.png");
    snprintf(cmd, sizeof cmd,
             "timeout 90 '%s' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
             "--no-first-run --force-device-scale-factor=1 "
             "--user-data-dir=" OUT "/chromium-profile --window-size=1200,2400 --screenshot=" OUT
             "/report.png file://" OUT "/report.html >" OUT "/chromium.log 2>&1", chromium);
    int st = system(cmd);
    CHECK(st == 0, "chromium exit status %d (see " OUT "/chromium.log)", st);
    int w = 0, h = 0;
    const char *why = "";
    unsigned char *img = png_rgb(OUT "/report.png", &w, &h, &why);
    CHECK(img != NULL, "screenshot decodes: %s", why);
    if (!img) return;
    CHECK(w == 1200 && h == 2400, "screenshot %dx%d", w, h);
    for (int i = 0; i < plots->n; i++) {
        unsigned bg = plots->plot[i].bg;
        int x0 = w, x1 = -1, y0 = h, y1 = -1;
        long n_bg = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (near(img + ((size_t)y * w + x) * 3, bg, 0)) {
                    n_bg++;
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
        const char *t = plots->plot[i].title;
        CHECK(n_bg > 20000 && x1 - x0 > 400 && y1 - y0 > 200, "plot %d '%s' on screen: %ld background pixels, "
              "%dx%d", i, t, n_bg, x1 - x0 + 1, y1 - y0 + 1);
        if (x1 < 0) continue;
        long data = 0, teacher = 0, student = 0, swa = 0;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                const unsigned char *px = img + ((size_t)y * w + x) * 3;
                int mx = px[0] > px[1] ? px[0] : px[1], mn = px[0] < px[1] ? px[0] : px[1];
                if (px[2] > mx) mx = px[2];
                if (px[2] < mn) mn = px[2];
                data += mx - mn >= 60; /* coloured: data, not the grey axes, grid and text */
                teacher += near(px, XD_REPORT_C_TEACHER, 0);
                student += near(px, XD_REPORT_C_STUDENT, 24);
                swa += near(px, XD_REPORT_C_SWA, 0);
            }
        printf("plot %d '%s': %dx%d at (%d,%d), %ld coloured pixels (teacher %ld, student %ld, SWA %ld)\n", i,
               t, x1 - x0 + 1, y1 - y0 + 1, x0, y0, data, teacher, student, swa);
        CHECK(data >= 300, "plot %d '%s' has data drawn: %ld coloured pixels", i, t, data);
        if (i == 0)
            CHECK(teacher >= 2000 && student >= 2000 && swa >= 500, "bars: teacher %ld, student %ld, SWA %ld px",
                  teacher, student, swa);
        if (i == 1) CHECK(student >= 150, "C_α curve: %ld student-coloured px", student);
        if (i == 2) CHECK(student >= 300, "training loss curve: %ld px", student);
    }
    /* outside the plots the page is not blank either (text, tables) */
    long dark = 0;
    for (long k = 0; k < (long)w * h; k++) dark += img[3 * k] < 100 && img[3 * k + 1] < 100 && img[3 * k + 2] < 100;
    CHECK(dark > 5000, "text on the page: %ld dark pixels", dark);
    free(img);
}

int main(void) {
    mkdir(OUT, 0755);
    write_results(OUT "/teacher.json", (res_opts){.role = 0, .student_flag = -1});
    write_results(OUT "/student.json", (res_opts){.role = 1, .student_flag = -1});
    write_results(OUT "/swa.json", (res_opts){.role = 2, .student_flag = -1});
    write_results(OUT "/student_reversed.json", (res_opts){.role = 1, .reverse = 1, .student_flag = -1});
    write_results(OUT "/student_fewshot.json", (res_opts){.role = 1, .fewshot = 5, .student_flag = -1});
    write_results(OUT "/student_suite.json", (res_opts){.role = 1, .suite = "other", .student_flag = -1});
    write_results(OUT "/student_tasks.json", (res_opts){.role = 1, .n_tasks = 7, .student_flag = -1});
    write_results(OUT "/student_metric.json", (res_opts){.role = 1, .piqa_metric = "acc_norm", .student_flag = -1});
    write_results(OUT "/bad_score.json", (res_opts){.role = 1, .bad_score = 1, .student_flag = -1});
    write_text(OUT "/not_results.json", "{\"foo\": 1}\n");
    write_text(OUT "/bad.json", "{\"xdistill_results\": 1,\n");
    write_text(OUT "/log_bad.jsonl", "{\"step\":1,\"loss\":2}\n\n{\"step\":2,\"loss\":1.5\n");
    write_text(OUT "/log_nostep.jsonl", "{\"loss\":2}\n");
    write_text(OUT "/ledger.json", "{\"stages\":[{\"name\":\"convert\",\"tokens\":0,\"seconds\":2.5},"
                                   "{\"name\":\"stage1\",\"tokens\":4000000,\"seconds\":1800},"
                                   "{\"name\":\"eval\",\"seconds\":300}]}\n");
    write_text(OUT "/ledger_bad.json", "{\"stages\":{}}\n");
    remove(OUT "/missing.json");
    remove(OUT "/x.json");
    write_log(OUT "/log.jsonl");

    xd_report_plots plots = {0};
    test_refusals();
    test_logs_and_ledger();
    test_compare(&plots);
    test_cli();
    test_render(&plots);
    return test_summary("test_report");
}
