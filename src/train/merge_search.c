/* Stage III: the search for the merge weights on a dev suite (merge_search.h). */
#include "train/merge_search.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/log.h"
#include "core/hash.h"
#include "core/progress.h"
#include "eval/report.h"
#include "eval/results.h"
#include "eval/run.h"
#include "eval/tasks.h"
#include "eval/wintie.h"
#include "io/atomic.h"
#include "io/hfconfig.h"
#include "xdistill.h"

typedef unsigned long long ull;

#define MS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

typedef struct {
    int *kv;         /* [k] k_i, Σ = grid */
    double *scores;  /* [n_tasks] suite order */
    double obj, tie; /* objective, tie-break (c: mean recovery; else 0) */
    double rec;      /* mean recovery (NaN without a teacher) */
    double seconds;
    int done, resumed;
} cand;

typedef struct {
    const char *const *in;
    int k;
    const xd_msearch_opts *o;
    char out[XD_APATH_MAX], tmp[XD_APATH_MAX], jsonl[XD_APATH_MAX], cdir[XD_APATH_MAX];
    xd_suite suite;
    int suite_loaded;
    xd_cmp_results teacher;
    double *tscores;       /* teacher score per suite task, or NULL */
    uint64_t *hashes;      /* the experts' weights hashes */
    xd_eval_opts eo;       /* evaluation options of every candidate */
    json_t *settings;      /* eo as the results files write it */
    json_t *tok_hash;      /* the tokenizer hash as the results files write it */
    json_t *key;           /* the resume header's key */
    cand *c;
    long n;
    FILE *log;             /* OUT.search.jsonl, appending */
    long n_logged;         /* candidate lines in it */
} search;

/* ---- small helpers ------------------------------------------------------------ */

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static int fmt_path(char *out, const char *a, const char *b) {
    if ((size_t)snprintf(out, XD_APATH_MAX, "%s%s", a, b) >= XD_APATH_MAX)
        return xd_err("%s%s: path too long", a, b);
    return 0;
}

/* Hash of a file's bytes (64 KiB blocks, chained). */
static int hash_file(const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return xd_err("%s: %s", path, strerror(errno));
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) *h = xd_hash64(buf, n, *h);
    int bad = ferror(f);
    fclose(f);
    return bad ? xd_err("%s: read error", path) : 0;
}

/* The objective's name as search.json and the header write it. */
static void objective_name(const xd_msearch_opts *o, char *buf, size_t cap) {
    if (o->objective == XD_MSEARCH_C) snprintf(buf, cap, "c:%.17g", o->alpha);
    else snprintf(buf, cap, "%s", o->objective == XD_MSEARCH_RECOVERY ? "recovery" : "mean");
}

void xd_msearch_defaults(xd_msearch_opts *o) {
    memset(o, 0, sizeof *o);
    o->grid = 4;
    o->objective = XD_MSEARCH_MEAN;
    o->progress = 1;
}

int xd_msearch_parse_objective(const char *s, xd_msearch_objective *obj, double *alpha) {
    *alpha = 0;
    if (!strcmp(s, "mean")) *obj = XD_MSEARCH_MEAN;
    else if (!strcmp(s, "recovery")) *obj = XD_MSEARCH_RECOVERY;
    else if (!strncmp(s, "c:", 2)) {
        char *end = NULL;
        errno = 0;
        double a = strtod(s + 2, &end);
        if (!s[2] || *end || errno == ERANGE || !(a >= 0 && a <= XD_WT_ALPHA_MAX))
            return xd_err("--objective %s: ALPHA of c:ALPHA must be a number in [0, %g]", s,
                          XD_WT_ALPHA_MAX);
        *obj = XD_MSEARCH_C;
        *alpha = a;
    } else
        return xd_err("--objective %s: expected mean, recovery or c:ALPHA", s);
    return 0;
}

double xd_msearch_count(int k, int grid) {
    /* C(N+i, i) for i = 1 … K−1; every step's value is an integer */
    double c = 1;
    for (int i = 1; i < k; i++) c = c * (grid + i) / i;
    return c;
}

/* The composition after kv in reverse lexicographic order (merge_search.h):
 * the last k_j > 0 with j < K−1 gives one unit to k_{j+1}, which also takes
 * everything after it. Returns 0 when kv was the last one. */
static int next_candidate(int *kv, int k) {
    int j = k - 2;
    while (j >= 0 && kv[j] == 0) j--;
    if (j < 0) return 0;
    int rest = 0;
    for (int i = j + 1; i < k; i++) rest += kv[i], kv[i] = 0;
    kv[j]--;
    kv[j + 1] = rest + 1;
    return 1;
}

/* ---- objectives -------------------------------------------------------------- */

/* r = A_S / A_T, 1 where A_T = 0; NaN for a score that is not finite or < 0. */
static double recovery1(double a_s, double a_t) {
    if (!isfinite(a_s) || a_s < 0) return NAN;
    return a_t == 0 ? 1.0 : a_s / a_t;
}

static void objective(const search *s, cand *c) {
    int n = s->suite.n_tasks, finite = 1;
    double sum = 0, rec = 0, wins = 0;
    for (int t = 0; t < n; t++) {
        double a = c->scores[t];
        finite &= isfinite(a);
        sum += a;
        if (s->tscores) {
            rec += recovery1(a, s->tscores[t]);
            wins += xd_wt_win(a, s->tscores[t], s->o->alpha);
        }
    }
    c->rec = s->tscores ? rec / n : NAN;
    c->tie = 0;
    if (!finite) c->obj = NAN;
    else if (s->o->objective == XD_MSEARCH_MEAN) c->obj = sum / n;
    else if (s->o->objective == XD_MSEARCH_RECOVERY) c->obj = c->rec;
    else {
        c->obj = wins / n;
        c->tie = c->rec;
    }
}

/* a strictly better than b (b may be NULL: nothing yet); NaN never wins */
static int better(const cand *a, const cand *b) {
    if (isnan(a->obj)) return 0;
    if (!b || isnan(b->obj)) return 1;
    return a->obj > b->obj || (a->obj == b->obj && a->tie > b->tie);
}

/* ---- preparation -------------------------------------------------------------- */

int xd_msearch_check_opts(int k, const xd_msearch_opts *o) {
    if (k < 1) return xd_err("merge --search: no experts");
    if (!o->suite_dir) return xd_err("merge --search: no dev suite");
    if (o->grid < 1 || o->grid > XD_MSEARCH_GRID_MAX)
        return xd_err("merge --search: --grid %d: expected 1 to %d", o->grid, XD_MSEARCH_GRID_MAX);
    double n = xd_msearch_count(k, o->grid);
    if (n > XD_MSEARCH_MAX)
        return xd_err("merge --search: %d experts on grid %d make %.0f candidates (C(%d, %d)); at "
                      "most %d are searched: use a smaller --grid", k, o->grid, n,
                      o->grid + k - 1, k - 1, XD_MSEARCH_MAX);
    if (o->objective == XD_MSEARCH_C && !(o->alpha >= 0 && o->alpha <= XD_WT_ALPHA_MAX))
        return xd_err("merge --search: c:%g: ALPHA must be in [0, %g]", o->alpha, XD_WT_ALPHA_MAX);
    if (o->objective != XD_MSEARCH_MEAN && !o->teacher_results)
        return xd_err("merge --search: --objective %s needs --teacher-results (the teacher's "
                      "`xdistill eval` results on the dev suite)",
                      o->objective == XD_MSEARCH_C ? "c:ALPHA" : "recovery");
    if (o->max_examples < 0) return xd_err("merge --search: max_examples must be >= 0");
    return 0;
}

/* Candidates' results without scores (r->tasks malloc'ed), as `xdistill eval`
 * would write them, with the evaluation options of every candidate in s->eo.
 * The first expert stands in for every candidate: a merge has its
 * config.json and its tokenizer, which is all the settings depend on. */
static int stub_results(search *s, xd_eval_results *r) {
    memset(r, 0, sizeof *r);
    xd_model *m = xd_model_load(s->in[0]);
    if (!m) return xd_err_prefix("merge --search: %s", s->in[0]);
    xd_eval_opts_default(&s->eo, m, &s->suite);
    s->eo.max_examples = s->o->max_examples;
    s->eo.progress = 0;
    const xd_config *c = xd_model_config(m);
    r->model = s->in[0];
    r->student = c->student;
    r->window = c->window;
    r->sinks = c->sinks;
    r->tokenizer_hash = xd_model_tokenizer(m) ? xd_tokenizer_hash(xd_model_tokenizer(m)) : 0;
    xd_model_free(m);
    r->suite = &s->suite;
    r->opts = s->eo;
    if (!(r->tasks = calloc((size_t)s->suite.n_tasks, sizeof *r->tasks))) return xd_err("out of memory");
    r->n_tasks = s->suite.n_tasks;
    for (int t = 0; t < r->n_tasks; t++) {
        r->tasks[t].task = &s->suite.tasks[t];
        r->tasks[t].metric = xd_task_metric(&s->suite.tasks[t]);
    }
    return 0;
}

/* compare's comparability check of the teacher's results and r; the check
 * reads files, so r goes through OUT.search.tmp/check.json. */
static int check_teacher(const search *s, const xd_eval_results *r) {
    char path[XD_APATH_MAX], label[XD_APATH_MAX + 64];
    if (fmt_path(path, s->tmp, "/check.json")) return -1;
    xd_cmp_results cr;
    memset(&cr, 0, sizeof cr);
    int rc = -1;
    if (xd_results_write(path, r) || xd_cmp_results_load(&cr, path)) goto done;
    snprintf(label, sizeof label, "the candidates' results on %s", s->o->suite_dir);
    char *l = strdup(label);
    if (!l) { xd_err("out of memory"); goto done; }
    free(cr.path); /* errors name the suite, not the temporary file */
    cr.path = l;
    if (xd_cmp_results_check(&s->teacher, &cr)) {
        xd_err_prefix("merge --search: --teacher-results");
        goto done;
    }
    rc = 0;
done:
    xd_cmp_results_free(&cr);
    return rc;
}

/* The evaluation settings (s->eo, s->settings, s->tok_hash) and, with a
 * teacher, the comparability check, before anything is evaluated. */
static int eval_settings(search *s) {
    xd_eval_results r;
    if (stub_results(s, &r)) return -1;
    json_t *j = xd_results_json(&r);
    int rc = -1;
    if (j) {
        s->settings = json_incref(json_object_get(j, "settings"));
        s->tok_hash = json_incref(json_object_get(j, "tokenizer_hash"));
        rc = s->o->teacher_results ? check_teacher(s, &r) : 0;
    }
    json_decref(j);
    free(r.tasks);
    return rc;
}

/* Suite, teacher results, the experts' checks and hashes, the temporary
 * directory and the evaluation settings. */
static int prepare(search *s) {
    const xd_msearch_opts *o = s->o;
    if (xd_suite_load(o->suite_dir, o->tasks, &s->suite)) return xd_err_prefix("merge --search");
    s->suite_loaded = 1;
    if (o->teacher_results) {
        if (xd_cmp_results_load(&s->teacher, o->teacher_results)) return xd_err_prefix("merge --search");
        if (!(s->tscores = calloc((size_t)s->suite.n_tasks, sizeof *s->tscores))) return xd_err("out of memory");
    }
    if (!(s->hashes = calloc((size_t)s->k, sizeof *s->hashes))) return xd_err("out of memory");
    if (xd_merge_check(s->in, s->k, &o->merge, s->hashes)) return -1;
    if (xd_rmtree(s->tmp)) return -1;
    if (mkdir(s->tmp, 0755)) return xd_err("%s: cannot create: %s", s->tmp, strerror(errno));
    if (eval_settings(s)) return -1;
    for (int t = 0; s->tscores && t < s->suite.n_tasks; t++) /* present: checked above */
        s->tscores[t] = s->teacher.tasks[xd_cmp_results_find(&s->teacher, s->suite.tasks[t].name)].score;
    return 0;
}

/* What the scores of a candidate depend on, and how they are chosen. */
static json_t *make_key(const search *s) {
    const xd_msearch_opts *o = s->o;
    char path[XD_APATH_MAX], obj[64];
    uint64_t h_cfg = 0, h_suite = 0, h_teacher = 0;
    if (fmt_path(path, s->in[0], "/config.json") || hash_file(path, &h_cfg)) return NULL;
    if (fmt_path(path, s->suite.dir, "/suite.json") || hash_file(path, &h_suite)) return NULL;
    for (int t = 0; t < s->suite.n_tasks; t++)
        if (hash_file(s->suite.tasks[t].path, &h_suite)) return NULL;
    if (o->teacher_results && hash_file(o->teacher_results, &h_teacher)) return NULL;
    objective_name(o, obj, sizeof obj);
    json_t *key = json_object(), *ex = json_array(), *tasks = json_array();
    for (int i = 0; i < s->k; i++) json_array_append_new(ex, xd_json_hex64(s->hashes[i]));
    for (int t = 0; t < s->suite.n_tasks; t++) json_array_append_new(tasks, json_string(s->suite.tasks[t].name));
    json_object_set_new(key, "weights_hashes", ex);
    json_object_set_new(key, "config_hash", xd_json_hex64(h_cfg));
    json_object_set(key, "tokenizer_hash", s->tok_hash);
    json_object_set_new(key, "suite", json_string(s->suite.name));
    json_object_set_new(key, "suite_hash", xd_json_hex64(h_suite));
    json_object_set_new(key, "tasks", tasks);
    json_object_set(key, "settings", s->settings);
    json_object_set_new(key, "max_examples", json_integer(o->max_examples));
    json_object_set_new(key, "grid", json_integer(o->grid));
    json_object_set_new(key, "objective", json_string(obj));
    json_object_set_new(key, "teacher_results_hash", o->teacher_results ? xd_json_hex64(h_teacher) : json_null());
    json_object_set_new(key, "normalize", json_boolean(o->merge.normalize));
    json_object_set_new(key, "allow_unrelated", json_boolean(o->merge.allow_unrelated));
    return key;
}

/* ---- the resume file ---------------------------------------------------------- */

/* One candidate line back into s->c; 0 if it is not a valid line of this search. */
static int read_line(search *s, const char *line) {
    json_t *j = json_loads(line, 0, NULL);
    json_t *idx = json_object_get(j, "index"), *kv = json_object_get(j, "k"),
           *sc = json_object_get(j, "scores"), *sec = json_object_get(j, "seconds");
    int ok = json_is_integer(idx) && json_is_array(kv) && json_is_array(sc) && json_is_number(sec) &&
             json_integer_value(idx) >= 0 && json_integer_value(idx) < s->n &&
             json_array_size(kv) == (size_t)s->k && json_array_size(sc) == (size_t)s->suite.n_tasks;
    cand *c = ok ? &s->c[json_integer_value(idx)] : NULL;
    ok = ok && !c->done;
    for (int i = 0; ok && i < s->k; i++) {
        json_t *v = json_array_get(kv, (size_t)i);
        ok = json_is_integer(v) && json_integer_value(v) == c->kv[i];
    }
    for (int t = 0; ok && t < s->suite.n_tasks; t++) {
        json_t *v = json_array_get(sc, (size_t)t);
        ok = json_is_number(v) || json_is_null(v);
        if (ok) c->scores[t] = json_is_null(v) ? NAN : json_number_value(v);
    }
    if (ok) {
        c->seconds = json_number_value(sec);
        c->done = c->resumed = 1;
        objective(s, c);
    }
    json_decref(j);
    return ok;
}

/* Reads OUT.search.jsonl when its header's key is ours; then rewrites it as
 * the header and the lines kept, and opens it for appending. */
static int resume_open(search *s, xd_msearch_info *info) {
    json_t *hdr = json_object(), *paths = json_array();
    for (int i = 0; i < s->k; i++) json_array_append_new(paths, json_string(s->in[i]));
    json_object_set_new(hdr, "xdistill_merge_search", json_integer(1));
    json_object_set(hdr, "key", s->key);
    json_object_set_new(hdr, "paths", paths);
    char *text = json_dumps(hdr, MS_JSON_FLAGS);
    json_decref(hdr);
    size_t len = text ? strlen(text) : 0, cap = len + 2;
    char *keep = text ? malloc(cap) : NULL; /* header + kept lines */
    if (!keep) { free(text); return xd_err("out of memory"); }
    memcpy(keep, text, len);
    keep[len++] = '\n';
    free(text);

    FILE *f = fopen(s->jsonl, "r");
    char *line = NULL;
    size_t lcap = 0;
    long dropped = 0;
    if (f) {
        ssize_t n = getline(&line, &lcap, f);
        json_t *h = n > 0 ? json_loads(line, 0, NULL) : NULL;
        int same = h && json_equal(json_object_get(h, "key"), s->key);
        json_decref(h);
        if (!same) {
            info->restarted = 1;
            if (s->o->progress)
                xd_log(XD_LOG_WARN, "merge --search: %s was made by another search (other experts, "
                       "suite or options): starting over", s->jsonl);
        }
        while (same && (n = getline(&line, &lcap, f)) > 0) {
            int whole = line[n - 1] == '\n';
            if (!whole || !read_line(s, line)) { dropped++; continue; }
            if (len + (size_t)n + 1 > cap) {
                cap = 2 * (len + (size_t)n + 1);
                char *k2 = realloc(keep, cap);
                if (!k2) { free(keep); free(line); fclose(f); return xd_err("out of memory"); }
                keep = k2;
            }
            memcpy(keep + len, line, (size_t)n);
            len += (size_t)n;
            s->n_logged++;
        }
        fclose(f);
        if (dropped && s->o->progress)
            xd_log(XD_LOG_WARN, "merge --search: %s: %ld unreadable line(s) dropped", s->jsonl, dropped);
    } else if (errno != ENOENT) {
        free(keep);
        return xd_err("%s: %s", s->jsonl, strerror(errno));
    }
    free(line);
    int rc = xd_write_file_atomic(s->jsonl, keep, len);
    free(keep);
    if (rc) return -1;
    if (!(s->log = fopen(s->jsonl, "a"))) return xd_err("%s: %s", s->jsonl, strerror(errno));
    return 0;
}

/* Appends candidate i's line, flushed and fsync'ed. */
static int log_candidate(search *s, long i) {
    const cand *c = &s->c[i];
    json_t *j = json_object(), *kv = json_array(), *sc = json_array();
    for (int e = 0; e < s->k; e++) json_array_append_new(kv, json_integer(c->kv[e]));
    for (int t = 0; t < s->suite.n_tasks; t++) json_array_append_new(sc, num(c->scores[t]));
    json_object_set_new(j, "index", json_integer(i));
    json_object_set_new(j, "k", kv);
    json_object_set_new(j, "scores", sc);
    json_object_set_new(j, "seconds", json_real(c->seconds));
    char *text = json_dumps(j, MS_JSON_FLAGS);
    json_decref(j);
    if (!text) return xd_err("%s: out of memory", s->jsonl);
    int bad = fprintf(s->log, "%s\n", text) < 0 || fflush(s->log) || fsync(fileno(s->log));
    free(text);
    if (bad) return xd_err("%s: cannot append: %s", s->jsonl, strerror(errno));
    s->n_logged++;
    return 0;
}

/* ---- candidates ----------------------------------------------------------------- */

static void weights_of(const search *s, const cand *c, double *w) {
    for (int i = 0; i < s->k; i++) w[i] = (double)c->kv[i] / s->o->grid;
}

/* Merge, load, evaluate, free. */
static int eval_candidate(search *s, long i, double *w) {
    cand *c = &s->c[i];
    double t0 = xd_now();
    xd_merge_opts mo = s->o->merge;
    mo.verbose = 0;
    mo.extra_name = mo.extra_text = NULL;
    weights_of(s, c, w);
    if (xd_merge(s->in, w, s->k, &mo, s->cdir)) return xd_err_prefix("merge --search: candidate %ld", i + 1);
    xd_model *m = xd_model_load(s->cdir);
    if (!m) return xd_err_prefix("merge --search: candidate %ld", i + 1);
    xd_eval_results r;
    int rc = xd_eval_suite(m, s->cdir, &s->suite, &s->eo, &r);
    xd_model_free(m);
    if (rc) return xd_err_prefix("merge --search: evaluating candidate %ld", i + 1);
    for (int t = 0; t < s->suite.n_tasks; t++) c->scores[t] = r.tasks[t].score;
    xd_eval_results_free(&r);
    if (xd_rmtree(s->cdir)) return -1;
    c->seconds = xd_now() - t0;
    c->done = 1;
    objective(s, c);
    return 0;
}

/* Candidate i and (under mpirun, N ranks) the next N − 1 not yet done, one per rank: rank
 * j evaluates the j-th on its own (its evaluation not shared with the other ranks), and
 * the scores and times are then summed across ranks from zeros (exact), so every rank
 * holds every result of the round. One rank: candidate i alone, as always. */
static int eval_round(search *s, long i, double *w) {
    int N = xd_dist_size(), me = xd_dist_rank(), T = s->suite.n_tasks;
    if (N == 1) return eval_candidate(s, i, w);
    long *idx = malloc((size_t)N * sizeof *idx);
    double *buf = calloc((size_t)N * (size_t)(T + 1), sizeof *buf);
    int n = 0, rc = -1;
    if (!idx || !buf) { xd_err("out of memory"); goto done; }
    for (long j = i; j < s->n && n < N; j++)
        if (!s->c[j].done) idx[n++] = j;
    if (me < n) {
        if (eval_candidate(s, idx[me], w)) goto done;
        double *mine = buf + (size_t)me * (T + 1);
        memcpy(mine, s->c[idx[me]].scores, (size_t)T * sizeof *mine);
        mine[T] = s->c[idx[me]].seconds;
    }
    if (xd_dist_sum_f64(buf, (size_t)N * (T + 1))) goto done;
    for (int j = 0; j < n; j++) {
        cand *c = &s->c[idx[j]];
        memcpy(c->scores, buf + (size_t)j * (T + 1), (size_t)T * sizeof *c->scores);
        c->seconds = buf[(size_t)j * (T + 1) + T];
        c->done = 1;
        objective(s, c);
    }
    rc = 0;
done:
    free(idx);
    free(buf);
    return rc;
}

/* Rank 0 read the resume file: every rank learns which candidates are done and their
 * scores. */
static int share_resumed(search *s) {
    if (xd_dist_size() == 1) return 0;
    int T = s->suite.n_tasks;
    double *buf = calloc((size_t)s->n * (size_t)(T + 2), sizeof *buf);
    if (!buf) return xd_err("out of memory");
    for (long i = 0; i < s->n && xd_dist_rank() == 0; i++) {
        double *b = buf + (size_t)i * (T + 2);
        b[0] = s->c[i].done;
        memcpy(b + 1, s->c[i].scores, (size_t)T * sizeof *b);
        b[T + 1] = s->c[i].seconds;
    }
    int rc = xd_dist_bcast(buf, (size_t)s->n * (T + 2) * sizeof *buf, 0);
    for (long i = 0; !rc && i < s->n && xd_dist_rank() > 0; i++) {
        const double *b = buf + (size_t)i * (T + 2);
        if (b[0] == 0) continue;
        cand *c = &s->c[i];
        memcpy(c->scores, b + 1, (size_t)T * sizeof *b);
        c->seconds = b[T + 1];
        c->done = c->resumed = 1;
        objective(s, c);
    }
    free(buf);
    return rc;
}

static void progress_line(const search *s, long i, long best) {
    const cand *c = &s->c[i];
    char obj[64];
    objective_name(s->o, obj, sizeof obj);
    char line[1024];
    size_t n = 0;
#define ADD(...) (void)(n < sizeof line && (n += (size_t)snprintf(line + n, sizeof line - n, __VA_ARGS__)))
    ADD("merge --search: %ld/%ld λ=(", i + 1, s->n);
    for (int e = 0; e < s->k; e++) ADD("%s%.4g", e ? ", " : "", (double)c->kv[e] / s->o->grid);
    ADD(") %s %.6g", obj, c->obj);
    if (s->o->objective == XD_MSEARCH_C) ADD(" (recovery %.6g)", c->rec);
    if (best >= 0) ADD("  best %.6g (#%ld)", s->c[best].obj, best + 1);
    if (c->resumed) ADD("  resumed");
    else ADD("  %.2f s", c->seconds);
#undef ADD
    xd_log(XD_LOG_INFO, "%s", line);
}

/* ---- search.json ---------------------------------------------------------------- */

static json_t *cand_json(const search *s, long i) {
    const cand *c = &s->c[i];
    json_t *j = json_object(), *kv = json_array(), *lam = json_array(), *sc = json_array();
    for (int e = 0; e < s->k; e++) {
        json_array_append_new(kv, json_integer(c->kv[e]));
        json_array_append_new(lam, json_real((double)c->kv[e] / s->o->grid));
    }
    for (int t = 0; t < s->suite.n_tasks; t++) json_array_append_new(sc, num(c->scores[t]));
    json_object_set_new(j, "index", json_integer(i));
    json_object_set_new(j, "k", kv);
    json_object_set_new(j, "lambda", lam);
    json_object_set_new(j, "scores", sc);
    json_object_set_new(j, "objective", num(c->obj));
    if (s->tscores) json_object_set_new(j, "recovery", num(c->rec));
    json_object_set_new(j, "seconds", json_real(c->seconds));
    json_object_set_new(j, "resumed", json_boolean(c->resumed));
    return j;
}

static char *search_json(const search *s, long chosen, const xd_msearch_info *info, double seconds) {
    const xd_msearch_opts *o = s->o;
    char obj[64];
    objective_name(o, obj, sizeof obj);
    json_t *j = json_object(), *ex = json_array(), *tasks = json_array(), *cands = json_array();
    for (int i = 0; i < s->k; i++)
        json_array_append_new(ex, json_pack("{s:s, s:o}", "path", s->in[i], "weights_hash", xd_json_hex64(s->hashes[i])));
    for (int t = 0; t < s->suite.n_tasks; t++) json_array_append_new(tasks, json_string(s->suite.tasks[t].name));
    json_object_set_new(j, "xdistill_merge_search", json_integer(1));
    json_object_set_new(j, "experts", ex);
    json_object_set_new(j, "suite", json_string(s->suite.name));
    json_object_set_new(j, "suite_dir", json_string(s->suite.dir));
    json_object_set_new(j, "tasks", tasks);
    json_object_set(j, "settings", s->settings);
    json_object_set_new(j, "max_examples", json_integer(o->max_examples));
    json_object_set_new(j, "objective", json_string(obj));
    if (o->objective == XD_MSEARCH_C) json_object_set_new(j, "alpha", json_real(o->alpha));
    json_object_set_new(j, "teacher_results", o->teacher_results ? json_string(o->teacher_results) : json_null());
    json_t *ts = json_null();
    if (s->tscores) {
        ts = json_array();
        for (int t = 0; t < s->suite.n_tasks; t++) json_array_append_new(ts, json_real(s->tscores[t]));
    }
    json_object_set_new(j, "teacher_scores", ts);
    json_object_set_new(j, "grid", json_integer(o->grid));
    json_object_set_new(j, "order", json_string("lambda_i = k_i/grid, sum k_i = grid; reverse "
                                                "lexicographic in (k_1, ..., k_K): k_1 = grid first"));
    for (long i = 0; i < s->n; i++) json_array_append_new(cands, cand_json(s, i));
    json_object_set_new(j, "candidates", cands);
    json_object_set_new(j, "chosen", json_integer(chosen));
    json_object_set(j, "lambda", json_object_get(json_array_get(cands, (size_t)chosen), "lambda"));
    json_object_set_new(j, "n_evaluated", json_integer(info->n_evaluated));
    json_object_set_new(j, "n_resumed", json_integer(info->n_resumed));
    json_object_set_new(j, "seconds", json_real(seconds));
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    size_t n = text ? strlen(text) : 0;
    char *t2 = text ? realloc(text, n + 2) : NULL;
    if (!t2) {
        free(text);
        xd_err("merge --search: cannot format search.json");
        return NULL;
    }
    memcpy(t2 + n, "\n", 2); /* a final newline */
    return t2;
}

/* ---- the search ----------------------------------------------------------------- */

static int alloc_candidates(search *s) {
    s->n = (long)xd_msearch_count(s->k, s->o->grid);
    if (!(s->c = calloc((size_t)s->n, sizeof *s->c))) return xd_err("out of memory");
    for (long i = 0; i < s->n; i++) {
        s->c[i].kv = calloc((size_t)s->k, sizeof *s->c[i].kv);
        s->c[i].scores = calloc((size_t)s->suite.n_tasks, sizeof *s->c[i].scores);
        if (!s->c[i].kv || !s->c[i].scores) return xd_err("out of memory");
        if (i) memcpy(s->c[i].kv, s->c[i - 1].kv, (size_t)s->k * sizeof *s->c[i].kv);
        else s->c[0].kv[0] = s->o->grid;
        if (i && !next_candidate(s->c[i].kv, s->k)) return xd_err("merge --search: internal: too few candidates");
    }
    return 0;
}

static void search_free(search *s) {
    for (long i = 0; s->c && i < s->n; i++) {
        free(s->c[i].kv);
        free(s->c[i].scores);
    }
    free(s->c);
    if (s->log) fclose(s->log);
    if (s->suite_loaded) xd_suite_free(&s->suite);
    xd_cmp_results_free(&s->teacher);
    free(s->tscores);
    free(s->hashes);
    json_decref(s->settings);
    json_decref(s->tok_hash);
    json_decref(s->key);
}

/* OUT without trailing slashes, and the names next to it. */
static int name_paths(search *s, const char *out_dir) {
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;
    if (!n || n >= sizeof s->out - 32) return xd_err("merge --search: bad output directory '%s'", out_dir);
    memcpy(s->out, out_dir, n);
    s->out[n] = 0;
    /* under mpirun each rank merges its candidates in a directory of its own */
    char tmp[32] = ".search.tmp";
    if (xd_dist_rank() > 0) snprintf(tmp, sizeof tmp, ".search.tmp.rank%d", xd_dist_rank());
    if (fmt_path(s->tmp, s->out, tmp) || fmt_path(s->jsonl, s->out, ".search.jsonl")) return -1;
    return fmt_path(s->cdir, s->tmp, "/candidate");
}

int xd_merge_search(const char *const *in, int k, const xd_msearch_opts *o, const char *out_dir,
                    xd_msearch_info *info_out) {
    search s;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.k = k;
    s.o = o;
    xd_msearch_info info;
    memset(&info, 0, sizeof info);
    info.chosen = -1;
    double t0 = xd_now(), *w = NULL;
    char *text = NULL;
    int rc = -1, made_tmp = 0;
    if (!o || !out_dir || !in) { xd_err("merge --search: no experts, options or output directory"); goto done; }
    if (xd_msearch_check_opts(k, o) || name_paths(&s, out_dir)) goto done;
    made_tmp = 1; /* prepare creates it */
    if (prepare(&s) || alloc_candidates(&s)) goto done;
    /* under mpirun: candidates dealt to the ranks (eval_round); rank 0 keeps the resume
     * file, writes search.json and the merge */
    int lead = xd_dist_rank() == 0;
    if (xd_dist_size() > 1) s.eo.local = 1;
    if (!(s.key = make_key(&s)) || (lead && resume_open(&s, &info)) || share_resumed(&s)) goto done;
    if (!(w = calloc((size_t)k, sizeof *w))) { xd_err("out of memory"); goto done; }
    info.n_candidates = (int)s.n;
    long best = -1;
    for (long i = 0; i < s.n; i++) {
        if (!s.c[i].done && eval_round(&s, i, w)) goto done;
        if (s.c[i].resumed) info.n_resumed++;
        else {
            if (lead && log_candidate(&s, i)) goto done;
            info.n_evaluated++;
        }
        if (better(&s.c[i], best >= 0 ? &s.c[best] : NULL)) best = i;
        if (o->progress) progress_line(&s, i, best);
        if (o->stop_after && info.n_evaluated == o->stop_after && !s.c[i].resumed) {
            xd_err("merge --search: stopped after %d evaluated candidates (stop_after); rerun to "
                   "resume from %s", o->stop_after, s.jsonl);
            goto done;
        }
    }
    if (best < 0) { xd_err("merge --search: no candidate has a finite objective"); goto done; }
    info.chosen = (int)best;
    if (lead) {
        if (!(text = search_json(&s, best, &info, xd_now() - t0))) goto done;
        xd_merge_opts mo = o->merge;
        mo.extra_name = "search.json";
        mo.extra_text = text;
        weights_of(&s, &s.c[best], w);
        if (xd_merge(in, w, k, &mo, s.out)) goto done;
        fclose(s.log);
        s.log = NULL;
        if (unlink(s.jsonl) && errno != ENOENT) {
            xd_err("%s: cannot delete: %s", s.jsonl, strerror(errno));
            goto done;
        }
    }
    if (xd_dist_barrier()) goto done;
    rc = 0;
done:
    /* a resume file with no finished candidate is of no use */
    if (rc && s.log && !s.n_logged) unlink(s.jsonl);
    if (made_tmp) {
        /* as io/atomic.h's old trees: once OUT is committed, a temporary
         * directory that cannot be deleted is not an error; nor may it hide
         * the error that ended the search */
        char err[1024];
        snprintf(err, sizeof err, "%s", xd_last_error());
        xd_rmtree(s.tmp);
        if (rc) xd_err("%s", err);
    }
    search_free(&s);
    free(w);
    free(text);
    if (info_out) *info_out = info;
    return rc;
}
