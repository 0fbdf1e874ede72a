#include "eval/results.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic.h"

/* A number, or null when it is not finite (JSON has no NaN). */
static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static int set(json_t *o, const char *k, json_t *v) {
    return v ? json_object_set_new(o, k, v) : -1;
}

static json_t *task_json(const xd_task_result *t) {
    json_t *o = json_object();
    const xd_task *k = t->task;
    int bad = !o;
    bad |= set(o, "name", json_string(k->name));
    bad |= set(o, "type", json_string(xd_task_type_name(k->type)));
    bad |= set(o, "metric", json_string(t->metric));
    bad |= set(o, "score", num(t->score));
    bad |= set(o, "ci_low", num(t->ci_low));
    bad |= set(o, "ci_high", num(t->ci_high));
    bad |= set(o, "n", json_integer(t->n));
    bad |= set(o, "seconds", json_real(t->seconds));
    bad |= set(o, "chance", num(t->chance));
    bad |= set(o, "long_context", json_boolean(k->long_context));
    if (k->type == XD_TASK_CHOICE) {
        bad |= set(o, "acc_norm", num(t->acc_norm));
        bad |= set(o, "acc_norm_ci_low", num(t->acc_norm_ci_low));
        bad |= set(o, "acc_norm_ci_high", num(t->acc_norm_ci_high));
    }
    if (k->type == XD_TASK_PERPLEXITY) {
        bad |= set(o, "ppl", num(t->ppl));
        bad |= set(o, "tokens", json_integer(t->tokens));
    }
    bad |= set(o, "truncated", json_integer(t->truncated));
    bad |= set(o, "file", json_string(k->file));
    if (k->description) bad |= set(o, "description", json_string(k->description));
    if (bad) { json_decref(o); return NULL; }
    return o;
}

json_t *xd_results_json(const xd_eval_results *r) {
    json_t *o = json_object(), *st = json_object(), *tasks = json_array();
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, r->tokenizer_hash);
    const xd_eval_settings *s = &r->opts.settings;
    int bad = !o || !st || !tasks;
    bad |= set(o, "xdistill_results", json_integer(1));
    bad |= set(o, "model", json_string(r->model));
    bad |= set(o, "student", json_boolean(r->student));
    if (r->student) {
        bad |= set(o, "window", json_integer(r->window));
        bad |= set(o, "sinks", json_integer(r->sinks));
    }
    bad |= set(o, "tokenizer_hash", json_string(hash));
    bad |= set(o, "suite", json_string(r->suite->name));
    bad |= set(o, "suite_dir", json_string(r->suite->dir));
    bad |= set(st, "bos", json_boolean(s->bos));
    bad |= set(st, "chat", json_boolean(s->chat));
    bad |= set(st, "fewshot", json_integer(s->fewshot));
    bad |= set(st, "max_ctx", json_integer(s->max_ctx));
    bad |= set(st, "bootstrap", json_integer(r->opts.bootstrap));
    bad |= set(st, "seed", json_integer((json_int_t)r->opts.seed));
    bad |= set(st, "stride", json_integer(s->stride));
    if (!bad) { bad |= json_object_set_new(o, "settings", st); st = NULL; }
    for (int i = 0; i < r->n_tasks && !bad; i++)
        bad |= json_array_append_new(tasks, task_json(&r->tasks[i]));
    if (!bad) { bad |= json_object_set_new(o, "tasks", tasks); tasks = NULL; }
    bad |= set(o, "seconds", json_real(r->seconds));
    json_decref(st);
    json_decref(tasks);
    if (bad) {
        json_decref(o);
        xd_err("eval: cannot build the results JSON (out of memory, or a name that is not UTF-8)");
        return NULL;
    }
    return o;
}

int xd_results_write(const char *path, const xd_eval_results *r) {
    json_t *o = xd_results_json(r);
    if (!o) return -1;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!s) return xd_err("%s: cannot format the results JSON", path);
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps' NUL becomes the final newline */
    int rc = xd_write_file_atomic(path, s, n + 1);
    free(s);
    if (rc) xd_err_prefix("writing the results");
    return rc;
}
