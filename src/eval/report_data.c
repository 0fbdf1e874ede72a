/* compare's inputs and outputs other than HTML (report.h): results files,
 * training logs, the ledger, the comparability checks and WINTIE.json. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eval/report.h"
#include "io/atomic.h"

/* ---- helpers -------------------------------------------------------------- */

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A JSON value as short text for error messages. */
static void show(const json_t *v, char *buf, size_t cap) {
    if (!v) { snprintf(buf, cap, "absent"); return; }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!s) { snprintf(buf, cap, "?"); return; }
    if (strlen(s) > 80) memcpy(s + 72, "...", 4);
    snprintf(buf, cap, "%s", s);
    free(s);
}

static const char *kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Optional number field: NaN when absent (or null if null_ok). */
static int opt_num(const char *path, const char *field, const json_t *o, const char *key,
                   int null_ok, double *out) {
    json_t *v = json_object_get(o, key);
    *out = NAN;
    if (!v || (null_ok && json_is_null(v))) return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return xd_err("%s: %s.%s: expected a number%s, found %s", path, field, key,
                      null_ok ? " or null" : "", kind(v));
    *out = json_number_value(v);
    return 0;
}

static int opt_str(const char *path, const char *field, const json_t *o, const char *key,
                   char **out) {
    json_t *v = json_object_get(o, key);
    if (v && !json_is_string(v))
        return xd_err("%s: %s%s%s: expected a string, found %s", path, field, *field ? "." : "", key,
                      kind(v));
    *out = dupstr(v ? json_string_value(v) : "");
    return *out ? 0 : xd_err("out of memory");
}

/* A whole JSON file; `what` names it in the errors ("the results file"). */
static json_t *load_json(const char *path, const char *what) {
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (o) return o;
    if (je.line < 0) xd_err("%s: cannot read %s (%s)", path, what, je.text);
    else xd_err("%s: not valid JSON at line %d, column %d: %s", path, je.line, je.column, je.text);
    return NULL;
}

/* ---- results files -------------------------------------------------------- */

void xd_cmp_results_free(xd_cmp_results *r) {
    for (size_t i = 0; r->tasks && i < r->n_tasks; i++) {
        free(r->tasks[i].name);
        free(r->tasks[i].type);
        free(r->tasks[i].metric);
    }
    free(r->tasks);
    free(r->path);
    free(r->model);
    free(r->suite);
    free(r->suite_dir);
    json_decref((json_t *)r->settings);
    memset(r, 0, sizeof *r);
}

static int load_task(xd_cmp_task *t, const char *path, size_t i, const json_t *o) {
    char field[48];
    snprintf(field, sizeof field, "tasks[%zu]", i);
    if (!json_is_object(o)) return xd_err("%s: %s: expected an object, found %s", path, field, kind(o));
    json_t *name = json_object_get(o, "name"), *score = json_object_get(o, "score");
    if (!json_is_string(name) || !*json_string_value(name))
        return xd_err("%s: %s.name: expected a non-empty string, found %s", path, field,
                      name ? kind(name) : "nothing");
    if (!(t->name = dupstr(json_string_value(name)))) return xd_err("out of memory");
    if (opt_str(path, field, o, "type", &t->type) || opt_str(path, field, o, "metric", &t->metric))
        return -1;
    if (!score) return xd_err("%s: %s.score (task '%s'): missing; expected a number", path, field, t->name);
    if (!json_is_number(score) || !isfinite(json_number_value(score)) || json_number_value(score) < 0) {
        char v[96];
        show(score, v, sizeof v);
        return xd_err("%s: %s.score (task '%s'): expected a finite score >= 0 (higher is better), "
                      "found %s", path, field, t->name, v);
    }
    t->score = json_number_value(score);
    double n;
    if (opt_num(path, field, o, "ci_low", 1, &t->ci_low) || opt_num(path, field, o, "ci_high", 1, &t->ci_high) ||
        opt_num(path, field, o, "n", 1, &n) || opt_num(path, field, o, "seconds", 1, &t->seconds) ||
        opt_num(path, field, o, "chance", 1, &t->chance) ||
        opt_num(path, field, o, "acc_norm", 1, &t->acc_norm) || opt_num(path, field, o, "ppl", 1, &t->ppl))
        return -1;
    if (!isnan(n) && (n < 0 || n != floor(n)))
        return xd_err("%s: %s.n: expected a whole number of examples, found %g", path, field, n);
    t->n = isnan(n) ? -1 : (long long)n;
    json_t *lc = json_object_get(o, "long_context");
    if (lc && !json_is_boolean(lc))
        return xd_err("%s: %s.long_context: expected true or false, found %s", path, field, kind(lc));
    t->long_context = lc && json_is_true(lc);
    return 0;
}

int xd_cmp_results_load(xd_cmp_results *r, const char *path) {
    memset(r, 0, sizeof *r);
    json_t *o = load_json(path, "the results file");
    if (!o) return -1;
    int rc = -1;
    if (!(r->path = dupstr(path))) { xd_err("out of memory"); goto done; }
    json_t *ver = json_object_get(o, "xdistill_results");
    if (!json_is_object(o) || !ver) {
        xd_err("%s: not an xdistill results file (the field \"xdistill_results\" is missing; expected "
               "the output of `xdistill eval`)", path);
        goto done;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        char v[96];
        show(ver, v, sizeof v);
        xd_err("%s: xdistill_results: expected 1 (the version this xdistill reads), found %s", path, v);
        goto done;
    }
    json_t *suite = json_object_get(o, "suite"), *settings = json_object_get(o, "settings"),
           *tasks = json_object_get(o, "tasks"), *student = json_object_get(o, "student"),
           *window = json_object_get(o, "window");
    if (!json_is_string(suite)) {
        xd_err("%s: suite: expected the suite's name (a string), found %s", path, suite ? kind(suite) : "nothing");
        goto done;
    }
    if (!json_is_object(settings)) {
        xd_err("%s: settings: expected an object, found %s", path, settings ? kind(settings) : "nothing");
        goto done;
    }
    if (!json_is_array(tasks) || !json_array_size(tasks)) {
        xd_err("%s: tasks: expected a non-empty array, found %s", path,
               !tasks ? "nothing" : json_is_array(tasks) ? "an empty array" : kind(tasks));
        goto done;
    }
    if (student && !json_is_boolean(student)) {
        xd_err("%s: student: expected true or false, found %s", path, kind(student));
        goto done;
    }
    r->student = student ? json_is_true(student) : -1;
    if (window && !json_is_null(window) && (!json_is_integer(window) || json_integer_value(window) < 0)) {
        xd_err("%s: window: expected a whole number of tokens or null, found %s", path, kind(window));
        goto done;
    }
    r->window = json_is_integer(window) ? (long long)json_integer_value(window) : -1;
    if (!(r->suite = dupstr(json_string_value(suite)))) { xd_err("out of memory"); goto done; }
    if (opt_str(path, "", o, "model", &r->model) || opt_str(path, "", o, "suite_dir", &r->suite_dir) ||
        opt_num(path, "results", o, "seconds", 1, &r->seconds))
        goto done;
    r->settings = json_incref(settings);
    r->n_tasks = json_array_size(tasks);
    if (!(r->tasks = calloc(r->n_tasks, sizeof *r->tasks))) { xd_err("out of memory"); goto done; }
    for (size_t i = 0; i < r->n_tasks; i++) {
        if (load_task(&r->tasks[i], path, i, json_array_get(tasks, i))) goto done;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(r->tasks[j].name, r->tasks[i].name)) {
                xd_err("%s: tasks[%zu].name: task '%s' appears twice (also tasks[%zu])", path, i,
                       r->tasks[i].name, j);
                goto done;
            }
    }
    rc = 0;
done:
    json_decref(o);
    if (rc) xd_cmp_results_free(r);
    return rc;
}

long xd_cmp_results_find(const xd_cmp_results *r, const char *name) {
    for (size_t i = 0; i < r->n_tasks; i++)
        if (!strcmp(r->tasks[i].name, name)) return (long)i;
    return -1;
}

static int differs(const xd_cmp_results *a, const xd_cmp_results *b, const char *field,
                   const json_t *va, const json_t *vb, const char *why) {
    char sa[96], sb[96];
    show(va, sa, sizeof sa);
    show(vb, sb, sizeof sb);
    return xd_err("%s and %s cannot be compared: %s differs: %s in %s, %s in %s (%s)", a->path, b->path,
                  field, sa, a->path, sb, b->path, why);
}

static int task_missing(const xd_cmp_results *a, const xd_cmp_results *b, const char *name) {
    return xd_err("%s and %s cannot be compared: tasks differ: task '%s' is in %s but not in %s "
                  "(%zu tasks in %s, %zu in %s; score both with the same suite)", a->path, b->path, name,
                  a->path, b->path, a->n_tasks, a->path, b->n_tasks, b->path);
}

int xd_cmp_results_check(const xd_cmp_results *a, const xd_cmp_results *b) {
    if (strcmp(a->suite, b->suite)) {
        json_t *sa = json_string(a->suite), *sb = json_string(b->suite);
        differs(a, b, "suite", sa, sb, "score both on the same suite");
        json_decref(sa);
        json_decref(sb);
        return -1;
    }
    const char *why = "teacher and student must be scored with the same settings";
    const char *key;
    json_t *v;
    char field[96];
    json_object_foreach((json_t *)a->settings, key, v) {
        json_t *w = json_object_get(b->settings, key);
        snprintf(field, sizeof field, "settings.%s", key);
        if (!w || !json_equal(v, w)) return differs(a, b, field, v, w, why);
    }
    json_object_foreach((json_t *)b->settings, key, v) {
        if (!json_object_get(a->settings, key)) {
            snprintf(field, sizeof field, "settings.%s", key);
            return differs(a, b, field, NULL, v, why);
        }
    }
    for (size_t i = 0; i < a->n_tasks; i++)
        if (xd_cmp_results_find(b, a->tasks[i].name) < 0) return task_missing(a, b, a->tasks[i].name);
    for (size_t i = 0; i < b->n_tasks; i++)
        if (xd_cmp_results_find(a, b->tasks[i].name) < 0) return task_missing(b, a, b->tasks[i].name);
    for (size_t i = 0; i < a->n_tasks; i++) {
        const xd_cmp_task *ta = &a->tasks[i], *tb = &b->tasks[xd_cmp_results_find(b, ta->name)];
        const char *what = strcmp(ta->type, tb->type) ? "type" : strcmp(ta->metric, tb->metric) ? "metric" : NULL;
        if (what) {
            json_t *sa = json_string(*what == 't' ? ta->type : ta->metric),
                   *sb = json_string(*what == 't' ? tb->type : tb->metric);
            snprintf(field, sizeof field, "task '%.60s' %s", ta->name, what);
            differs(a, b, field, sa, sb, "score both with the same suite");
            json_decref(sa);
            json_decref(sb);
            return -1;
        }
    }
    return 0;
}

/* ---- training logs -------------------------------------------------------- */

void xd_cmp_log_free(xd_cmp_log *l) {
    for (size_t i = 0; l->series && i < l->n_series; i++) {
        free(l->series[i].x);
        free(l->series[i].y);
    }
    free(l->series);
    free(l->path);
    memset(l, 0, sizeof *l);
}

const xd_cmp_series *xd_cmp_log_series(const xd_cmp_log *l, const char *name) {
    for (size_t i = 0; i < l->n_series; i++)
        if (!strcmp(l->series[i].name, name)) return &l->series[i];
    return NULL;
}

static int log_add(xd_cmp_log *l, size_t *hint, const char *name, double x, double y) {
    size_t k = *hint < l->n_series && !strcmp(l->series[*hint].name, name) ? *hint : l->n_series;
    for (size_t i = 0; k == l->n_series && i < l->n_series; i++)
        if (!strcmp(l->series[i].name, name)) k = i;
    if (k == l->n_series) {
        if (l->n_series % 16 == 0) {
            xd_cmp_series *s = realloc(l->series, (l->n_series + 16) * sizeof *s);
            if (!s) return xd_err("out of memory");
            l->series = s;
        }
        memset(&l->series[k], 0, sizeof l->series[k]);
        snprintf(l->series[k].name, sizeof l->series[k].name, "%s", name);
        l->n_series++;
    }
    xd_cmp_series *s = &l->series[k];
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (nx) s->x = nx;
        double *ny = nx ? realloc(s->y, cap * sizeof *ny) : NULL;
        if (!ny) return xd_err("out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    *hint = k + 1;
    return 0;
}

int xd_cmp_log_load(xd_cmp_log *l, const char *path) {
    memset(l, 0, sizeof *l);
    FILE *f = fopen(path, "r");
    if (!f) return xd_err("%s: cannot open the training log", path);
    if (!(l->path = dupstr(path))) { fclose(f); return xd_err("out of memory"); }
    char *line = NULL;
    size_t cap = 0, lineno = 0, hint = 0;
    ssize_t len;
    int rc = -1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, 0, &je);
        if (!o) { xd_err("%s:%zu: not valid JSON (%s)", path, lineno, je.text); goto done; }
        json_t *step = json_object_get(o, "step");
        if (!json_is_object(o) || !json_is_number(step)) {
            xd_err("%s:%zu: expected a JSON object with a numeric \"step\", found %s", path, lineno,
                   !json_is_object(o) ? kind(o) : step ? "a non-numeric step" : "no step");
            json_decref(o);
            goto done;
        }
        double x = json_number_value(step);
        const char *key;
        json_t *v;
        int bad = 0;
        json_object_foreach(o, key, v) {
            if (!strcmp(key, "step")) continue;
            if (json_is_number(v)) bad |= log_add(l, &hint, key, x, json_number_value(v));
            else if (json_is_array(v))
                for (size_t i = 0; i < json_array_size(v); i++) {
                    json_t *e = json_array_get(v, i);
                    if (!json_is_number(e)) continue;
                    char name[64];
                    snprintf(name, sizeof name, "%.40s[%zu]", key, i);
                    bad |= log_add(l, &hint, name, x, json_number_value(e));
                }
        }
        json_decref(o);
        if (bad) goto done;
        l->n_lines++;
    }
    if (ferror(f)) { xd_err("%s: read error", path); goto done; }
    if (!l->n_lines) {
        xd_err("%s: no log records (expected JSON lines such as {\"step\":1,\"loss\":2.5})", path);
        goto done;
    }
    rc = 0;
done:
    free(line);
    fclose(f);
    if (rc) xd_cmp_log_free(l);
    return rc;
}

/* ---- ledger --------------------------------------------------------------- */

void xd_cmp_ledger_free(xd_cmp_ledger *g) {
    for (size_t i = 0; g->stages && i < g->n_stages; i++) free(g->stages[i].name);
    free(g->stages);
    free(g->path);
    memset(g, 0, sizeof *g);
}

int xd_cmp_ledger_load(xd_cmp_ledger *g, const char *path) {
    memset(g, 0, sizeof *g);
    json_t *o = load_json(path, "the ledger");
    if (!o) return -1;
    int rc = -1;
    json_t *st = json_object_get(o, "stages");
    if (!(g->path = dupstr(path))) { xd_err("out of memory"); goto done; }
    if (!json_is_array(st)) {
        xd_err("%s: stages: expected an array of {\"name\",\"tokens\",\"seconds\"}, found %s", path,
               st ? kind(st) : "nothing");
        goto done;
    }
    g->n_stages = json_array_size(st);
    if (g->n_stages && !(g->stages = calloc(g->n_stages, sizeof *g->stages))) { xd_err("out of memory"); goto done; }
    for (size_t i = 0; i < g->n_stages; i++) {
        json_t *s = json_array_get(st, i);
        char field[48];
        snprintf(field, sizeof field, "stages[%zu]", i);
        if (!json_is_object(s)) { xd_err("%s: %s: expected an object, found %s", path, field, kind(s)); goto done; }
        json_t *name = json_object_get(s, "name");
        if (!json_is_string(name)) {
            xd_err("%s: %s.name: expected a string, found %s", path, field, name ? kind(name) : "nothing");
            goto done;
        }
        if (!(g->stages[i].name = dupstr(json_string_value(name)))) { xd_err("out of memory"); goto done; }
        if (opt_num(path, field, s, "tokens", 1, &g->stages[i].tokens) ||
            opt_num(path, field, s, "seconds", 1, &g->stages[i].seconds))
            goto done;
        if (g->stages[i].tokens < 0 || g->stages[i].seconds < 0) {
            xd_err("%s: %s: tokens and seconds must be >= 0", path, field);
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(o);
    if (rc) xd_cmp_ledger_free(g);
    return rc;
}

/* ---- the comparison ------------------------------------------------------- */

void xd_cmp_free(xd_cmp *c) {
    free(c->si);
    free(c->wi);
    xd_wintie_free(&c->wt);
    xd_wintie_free(&c->swa_wt);
    memset(c, 0, sizeof *c);
}

static int scores(const xd_cmp_results *r, const size_t *idx, size_t n, double **out) {
    if (!(*out = malloc(n * sizeof **out))) return xd_err("out of memory");
    for (size_t i = 0; i < n; i++) (*out)[i] = r->tasks[idx ? idx[i] : i].score;
    return 0;
}

int xd_cmp_build(xd_cmp *c, const xd_cmp_results *teacher, const xd_cmp_results *student,
                 const xd_cmp_results *swa, const xd_cmp_log *logs, size_t n_logs,
                 const xd_cmp_ledger *ledger) {
    memset(c, 0, sizeof *c);
    c->teacher = teacher;
    c->student = student;
    c->swa = swa;
    c->logs = logs;
    c->n_logs = n_logs;
    c->ledger = ledger;
    if (teacher->student == 1 && student->student == 0)
        return xd_err("%s is marked \"student\": true and %s \"student\": false: are TEACHER and STUDENT "
                      "swapped? (usage: xdistill compare TEACHER.json STUDENT.json ...)", teacher->path,
                      student->path);
    if (xd_cmp_results_check(teacher, student) || (swa && xd_cmp_results_check(teacher, swa))) return -1;
    c->n = teacher->n_tasks;
    c->si = malloc(c->n * sizeof *c->si);
    c->wi = malloc(c->n * sizeof *c->wi);
    if (!c->si || !c->wi) { xd_cmp_free(c); return xd_err("out of memory"); }
    for (size_t i = 0; i < c->n; i++) {
        c->si[i] = (size_t)xd_cmp_results_find(student, teacher->tasks[i].name);
        c->wi[i] = swa ? (size_t)xd_cmp_results_find(swa, teacher->tasks[i].name) : 0;
    }
    double *at = NULL, *as = NULL, *aw = NULL;
    int rc = -1;
    if (scores(teacher, NULL, c->n, &at) || scores(student, c->si, c->n, &as) ||
        (swa && scores(swa, c->wi, c->n, &aw)))
        goto done;
    if (xd_wintie_compute(&c->wt, as, at, c->n, XD_WT_ALPHA_MAX, XD_WT_GRID)) goto done;
    if (swa && xd_wintie_compute(&c->swa_wt, aw, at, c->n, XD_WT_ALPHA_MAX, XD_WT_GRID)) goto done;
    xd_wintie_verdict(&c->wt, c->verdict, sizeof c->verdict);
    rc = 0;
done:
    free(at);
    free(as);
    free(aw);
    if (rc) xd_cmp_free(c);
    return rc;
}

/* ---- WINTIE.json ---------------------------------------------------------- */

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *score_obj(const xd_cmp_task *t) {
    json_t *o = json_object();
    json_object_set_new(o, "score", json_real(t->score));
    json_object_set_new(o, "ci_low", num_or_null(t->ci_low));
    json_object_set_new(o, "ci_high", num_or_null(t->ci_high));
    if (t->n >= 0) json_object_set_new(o, "n", json_integer(t->n));
    return o;
}

static json_t *file_obj(const xd_cmp_results *r) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(r->path));
    json_object_set_new(o, "model", json_string(r->model));
    json_object_set_new(o, "window", r->window >= 0 ? json_integer(r->window) : json_null());
    json_object_set_new(o, "seconds", num_or_null(r->seconds));
    return o;
}

static json_t *summary_obj(const xd_wintie *w) {
    json_t *o = json_object(), *ga = json_array(), *gc = json_array();
    for (int g = 0; g < w->n_grid; g++) {
        json_array_append_new(ga, json_real(w->grid_alpha[g]));
        json_array_append_new(gc, json_real(w->grid_c[g]));
    }
    json_object_set_new(o, "c_0", json_real(w->c0));
    json_object_set_new(o, "wins_0", json_integer(w->wins0));
    json_object_set_new(o, "lossless", json_boolean(w->lossless));
    json_object_set_new(o, "alpha_star", w->has_alpha_star ? json_real(w->alpha_star) : json_null());
    json_object_set_new(o, "alpha_needed", json_real(w->alpha_needed));
    json_object_set_new(o, "alpha_max", json_real(w->alpha_max));
    json_object_set_new(o, "alpha_grid", ga);
    json_object_set_new(o, "c_alpha", gc);
    return o;
}

char *xd_cmp_wintie_json(const xd_cmp *c) {
    json_t *o = json_object(), *tasks = json_array();
    json_object_set_new(o, "xdistill_wintie", json_integer(1));
    json_object_set_new(o, "verdict", json_string(c->verdict));
    json_object_set_new(o, "lossless", json_boolean(c->wt.lossless));
    json_object_set_new(o, "c_0", json_real(c->wt.c0));
    json_object_set_new(o, "alpha_star", c->wt.has_alpha_star ? json_real(c->wt.alpha_star) : json_null());
    json_object_set_new(o, "tie_eps", json_real(XD_WT_EPS));
    json_object_set_new(o, "suite", json_string(c->teacher->suite));
    json_object_set_new(o, "settings", json_deep_copy(c->teacher->settings));
    json_object_set_new(o, "teacher", file_obj(c->teacher));
    json_object_set_new(o, "student", file_obj(c->student));
    json_object_set_new(o, "swa", c->swa ? file_obj(c->swa) : json_null());
    for (size_t i = 0; i < c->n; i++) {
        const xd_cmp_task *tt = &c->teacher->tasks[i], *ts = &c->student->tasks[c->si[i]];
        json_t *t = json_object();
        json_object_set_new(t, "name", json_string(tt->name));
        json_object_set_new(t, "type", json_string(tt->type));
        json_object_set_new(t, "metric", json_string(tt->metric));
        json_object_set_new(t, "long_context", json_boolean(tt->long_context));
        json_object_set_new(t, "chance", num_or_null(tt->chance));
        json_object_set_new(t, "teacher", score_obj(tt));
        json_object_set_new(t, "student", score_obj(ts));
        json_object_set_new(t, "recovery", num_or_null(c->wt.recovery[i]));
        json_object_set_new(t, "alpha_b", json_real(c->wt.threshold[i]));
        json_object_set_new(t, "win_0", json_boolean(c->wt.win0[i]));
        if (c->swa) {
            json_object_set_new(t, "swa", score_obj(&c->swa->tasks[c->wi[i]]));
            json_object_set_new(t, "swa_recovery", num_or_null(c->swa_wt.recovery[i]));
            json_object_set_new(t, "swa_win_0", json_boolean(c->swa_wt.win0[i]));
        }
        json_array_append_new(tasks, t);
    }
    json_object_set_new(o, "tasks", tasks);
    json_object_set_new(o, "wintie", summary_obj(&c->wt));
    json_object_set_new(o, "swa_wintie", c->swa ? summary_obj(&c->swa_wt) : json_null());
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(o);
    if (!s) { xd_err("out of memory writing WINTIE.json"); return NULL; }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) { free(s); xd_err("out of memory"); return NULL; }
    t[n] = '\n';
    t[n + 1] = 0;
    return t;
}

int xd_cmp_write_text(const char *path, const char *text) {
    return xd_write_file_atomic(path, text, strlen(text)); /* its errors name the path */
}
