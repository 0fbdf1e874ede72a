/* Suite (suite.json) and JSONL task-file parsing; see tasks.h for the format. */
#include "eval/tasks.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *const type_names[] = {"choice", "generate", "perplexity"};

const char *xd_task_type_name(xd_task_type t) {
    return (unsigned)t < 3 ? type_names[t] : "?";
}

const char *xd_task_metric(const xd_task *t) {
    switch (t->type) {
    case XD_TASK_CHOICE: return t->acc_norm ? "acc_norm" : "acc";
    case XD_TASK_GENERATE:
        return t->n_ex && t->ex[0].match == XD_MATCH_CONTAINS ? "contains" : "exact";
    case XD_TASK_PERPLEXITY: return "inv_ppl";
    }
    return "?";
}

static int parse_type(const char *s, xd_task_type *t) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, type_names[i])) { *t = (xd_task_type)i; return 0; }
    return -1;
}

/* ---- one example ------------------------------------------------------------ */

/* Error "FILE:LINE: field "KEY": WHAT". */
#define EX_ERR(what, ...) xd_err("%s:%d: " what, path, line, __VA_ARGS__)

static int get_string(const json_t *o, const char *key, const char *path, int line,
                      int nonempty, char **out) {
    const json_t *v = json_object_get(o, key);
    if (!v) return EX_ERR("missing field \"%s\" (expected a string)", key);
    if (!json_is_string(v)) return EX_ERR("field \"%s\": expected a string", key);
    if (nonempty && !json_string_length(v))
        return EX_ERR("field \"%s\": expected a non-empty string", key);
    if (!(*out = strdup(json_string_value(v)))) return xd_err("out of memory");
    return 0;
}

static int get_int(const json_t *o, const char *key, const char *path, int line, long lo,
                   long hi, int *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) return EX_ERR("missing field \"%s\" (expected an integer in [%ld, %ld])", key, lo, hi);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return EX_ERR("field \"%s\": expected an integer in [%ld, %ld]", key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

/* An array of strings (each non-empty) into *out / *n. min: the fewest allowed. */
static int get_strings(const json_t *v, const char *key, const char *path, int line, int min,
                       char ***out, int *n) {
    if (!json_is_array(v))
        return EX_ERR("field \"%s\": expected an array of strings", key);
    size_t k = json_array_size(v);
    if (k < (size_t)min)
        return EX_ERR("field \"%s\": expected at least %d entries, has %zu", key, min, k);
    if (k > 1000000) return EX_ERR("field \"%s\": too many entries (%zu)", key, k);
    if (!(*out = calloc(k ? k : 1, sizeof **out))) return xd_err("out of memory");
    *n = (int)k;
    for (size_t i = 0; i < k; i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || !json_string_length(s))
            return EX_ERR("field \"%s\"[%zu]: expected a non-empty string", key, i);
        if (!((*out)[i] = strdup(json_string_value(s)))) return xd_err("out of memory");
    }
    return 0;
}

static void example_free(xd_example *e) {
    free(e->text);
    for (int i = 0; e->choices && i < e->n_choices; i++) free(e->choices[i]);
    free(e->choices);
    free(e->target);
    for (int i = 0; e->stop && i < e->n_stop; i++) free(e->stop[i]);
    free(e->stop);
    memset(e, 0, sizeof *e);
}

static int parse_example(const json_t *o, xd_task_type type, const char *task, const char *path,
                         int line, xd_example *e) {
    memset(e, 0, sizeof *e);
    e->line = line;
    if (!json_is_object(o)) return EX_ERR("expected a JSON object, one example per line%s", "");
    const json_t *tv = json_object_get(o, "type");
    if (tv) {
        xd_task_type t;
        if (!json_is_string(tv) || parse_type(json_string_value(tv), &t))
            return EX_ERR("field \"type\": expected \"choice\", \"generate\" or \"perplexity\"%s",
                          "");
        if (t != type)
            return EX_ERR("field \"type\" is \"%s\", but task '%s' is a %s task (suite.json); "
                          "every example of a task file has the task's type",
                          type_names[t], task, type_names[type]);
    }
    switch (type) {
    case XD_TASK_CHOICE: {
        if (get_string(o, "context", path, line, 0, &e->text)) return -1;
        const json_t *c = json_object_get(o, "choices");
        if (!c) return EX_ERR("missing field \"%s\" (expected an array of >= 2 strings)", "choices");
        if (get_strings(c, "choices", path, line, 2, &e->choices, &e->n_choices)) return -1;
        if (!json_object_get(o, "answer"))
            return EX_ERR("missing field \"answer\" (expected the index of the right choice, "
                          "an integer in [0, %d])", e->n_choices - 1);
        return get_int(o, "answer", path, line, 0, e->n_choices - 1, &e->answer);
    }
    case XD_TASK_GENERATE: {
        if (get_string(o, "prompt", path, line, 0, &e->text) ||
            get_string(o, "target", path, line, 0, &e->target) ||
            get_int(o, "max_tokens", path, line, 1, 1 << 20, &e->max_tokens))
            return -1;
        const json_t *m = json_object_get(o, "match");
        if (!m) return EX_ERR("missing field \"%s\" (expected \"exact\" or \"contains\")", "match");
        const char *ms = json_string_value(m);
        if (!ms || (strcmp(ms, "exact") && strcmp(ms, "contains")))
            return EX_ERR("field \"%s\": expected \"exact\" or \"contains\"", "match");
        e->match = strcmp(ms, "exact") ? XD_MATCH_CONTAINS : XD_MATCH_EXACT;
        const json_t *st = json_object_get(o, "stop");
        if (json_is_string(st)) {
            if (!json_string_length(st))
                return EX_ERR("field \"%s\": expected a non-empty string", "stop");
            if (!(e->stop = calloc(1, sizeof *e->stop)) ||
                !(e->stop[0] = strdup(json_string_value(st))))
                return xd_err("out of memory");
            e->n_stop = 1;
        } else if (st && get_strings(st, "stop", path, line, 0, &e->stop, &e->n_stop)) {
            return -1;
        }
        return 0;
    }
    case XD_TASK_PERPLEXITY:
        return get_string(o, "text", path, line, 1, &e->text);
    }
    return xd_err("%s:%d: unknown task type", path, line);
}

/* ---- one task file ---------------------------------------------------------- */

void xd_task_free(xd_task *t) {
    for (int i = 0; t->ex && i < t->n_ex; i++) example_free(&t->ex[i]);
    free(t->ex);
    free(t->name);
    free(t->file);
    free(t->path);
    free(t->description);
    memset(t, 0, sizeof *t);
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

int xd_task_file_load(const char *path, xd_task_type type, const char *task, xd_task *t) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return xd_err("%s: cannot open the task file of task '%s': %s", path, task,
                      strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n_cap = 0;
    ssize_t len;
    int line = 0, rc = 0;
    t->ex = NULL;
    t->n_ex = 0;
    while (!rc && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (blank(buf, (size_t)len)) continue;
        if (memchr(buf, 0, (size_t)len)) {
            rc = xd_err("%s:%d: the line contains a NUL byte (expected a JSON object)", path, line);
            break;
        }
        json_error_t je;
        json_t *o = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        if (!o) {
            rc = xd_err("%s:%d: invalid JSON at column %d: %s", path, line, je.column, je.text);
            break;
        }
        if ((size_t)t->n_ex == n_cap) {
            size_t nc = n_cap ? 2 * n_cap : 64;
            xd_example *ne = realloc(t->ex, nc * sizeof *ne);
            if (!ne) { json_decref(o); rc = xd_err("out of memory"); break; }
            t->ex = ne;
            n_cap = nc;
        }
        xd_example *e = &t->ex[t->n_ex];
        rc = parse_example(o, type, task, path, line, e);
        if (!rc && type == XD_TASK_GENERATE && t->n_ex && e->match != t->ex[0].match)
            rc = xd_err("%s:%d: field \"match\" is \"%s\" but line %d's is \"%s\"; one task "
                        "uses one match rule", path, line,
                        e->match == XD_MATCH_EXACT ? "exact" : "contains", t->ex[0].line,
                        t->ex[0].match == XD_MATCH_EXACT ? "exact" : "contains");
        if (rc) example_free(e);
        else t->n_ex++;
        json_decref(o);
    }
    if (!rc && ferror(f)) rc = xd_err("%s: read error after line %d: %s", path, line, strerror(errno));
    if (!rc && !t->n_ex) rc = xd_err("%s: no examples (expected one JSON object per line)", path);
    free(buf);
    fclose(f);
    if (rc) {
        for (int i = 0; i < t->n_ex; i++) example_free(&t->ex[i]);
        free(t->ex);
        t->ex = NULL;
        t->n_ex = 0;
    }
    return rc;
}

/* ---- suite.json ------------------------------------------------------------- */

void xd_suite_free(xd_suite *s) {
    for (int i = 0; s->tasks && i < s->n_tasks; i++) xd_task_free(&s->tasks[i]);
    free(s->tasks);
    free(s->name);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

/* Is name one of the comma-separated entries of list? */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 1;
        p += k + (e != NULL);
    }
    return 0;
}

#define TASK_ERR(what, ...) xd_err("%s: tasks[%zu]: " what, sj, i, __VA_ARGS__)

static int parse_task_entry(const json_t *o, const char *sj, size_t i, const char *dir,
                            xd_task *t) {
    memset(t, 0, sizeof *t);
    t->chance = NAN;
    if (!json_is_object(o)) return TASK_ERR("expected an object {\"name\", \"file\", \"type\", …}%s", "");
    const json_t *v = json_object_get(o, "name");
    if (!json_is_string(v) || !json_string_length(v) || strchr(json_string_value(v), ','))
        return TASK_ERR("field \"%s\": expected a non-empty string without commas", "name");
    if (!(t->name = strdup(json_string_value(v)))) return xd_err("out of memory");
    v = json_object_get(o, "file");
    if (!json_is_string(v) || !json_string_length(v))
        return TASK_ERR("(\"%s\") field \"file\": expected the task file's name (a string)", t->name);
    if (!(t->file = strdup(json_string_value(v)))) return xd_err("out of memory");
    size_t pn = strlen(dir) + strlen(t->file) + 2;
    if (!(t->path = malloc(pn))) return xd_err("out of memory");
    if (t->file[0] == '/') snprintf(t->path, pn, "%s", t->file);
    else snprintf(t->path, pn, "%s/%s", dir, t->file);
    v = json_object_get(o, "type");
    if (!json_is_string(v) || parse_type(json_string_value(v), &t->type))
        return TASK_ERR("(\"%s\") field \"type\": expected \"choice\", \"generate\" or "
                        "\"perplexity\"", t->name);
    if ((v = json_object_get(o, "chance")) && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0 && json_number_value(v) <= 1))
            return TASK_ERR("(\"%s\") field \"chance\": expected a number in [0, 1]", t->name);
        t->chance = json_number_value(v);
    }
    if ((v = json_object_get(o, "max_examples")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 30)
            return TASK_ERR("(\"%s\") field \"max_examples\": expected an integer >= 1", t->name);
        t->max_examples = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "description")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return TASK_ERR("(\"%s\") field \"description\": expected a string", t->name);
        if (!(t->description = strdup(json_string_value(v)))) return xd_err("out of memory");
    }
    if ((v = json_object_get(o, "long_context")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return TASK_ERR("(\"%s\") field \"long_context\": expected true or false", t->name);
        t->long_context = json_is_true(v);
    }
    if ((v = json_object_get(o, "metric")) && !json_is_null(v)) {
        const char *m = json_is_string(v) ? json_string_value(v) : "";
        if (t->type == XD_TASK_CHOICE && (!strcmp(m, "acc") || !strcmp(m, "acc_norm")))
            t->acc_norm = !strcmp(m, "acc_norm");
        else if (t->type == XD_TASK_CHOICE)
            return TASK_ERR("(\"%s\") field \"metric\": expected \"acc\" or \"acc_norm\"", t->name);
        else
            return TASK_ERR("(\"%s\") field \"metric\": only choice tasks choose a metric "
                            "(\"acc\" or \"acc_norm\")", t->name);
    }
    return 0;
}

int xd_suite_load(const char *dir, const char *only, xd_suite *s) {
    memset(s, 0, sizeof *s);
    char sj[4200];
    if ((size_t)snprintf(sj, sizeof sj, "%s/suite.json", dir) >= sizeof sj)
        return xd_err("%s: suite directory name too long", dir);
    FILE *f = fopen(sj, "rb");
    if (!f)
        return xd_err("%s: cannot open the suite file: %s (a suite is a directory with "
                      "suite.json)", sj, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) return xd_err("%s:%d: invalid JSON at column %d: %s", sj, je.line, je.column, je.text);
    int rc = -1;
    const json_t *v, *tasks;
    if (!json_is_object(root)) { xd_err("%s: expected a JSON object {\"name\", \"tasks\", …}", sj); goto done; }
    v = json_object_get(root, "name");
    if (!json_is_string(v) || !json_string_length(v)) {
        xd_err("%s: field \"name\": expected the suite's name (a non-empty string)", sj);
        goto done;
    }
    if (!(s->name = strdup(json_string_value(v))) || !(s->dir = strdup(dir))) {
        xd_err("out of memory");
        goto done;
    }
    if ((v = json_object_get(root, "seed")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            xd_err("%s: field \"seed\": expected a non-negative integer", sj);
            goto done;
        }
        s->seed = (uint64_t)json_integer_value(v);
    }
    tasks = json_object_get(root, "tasks");
    if (!json_is_array(tasks) || !json_array_size(tasks)) {
        xd_err("%s: field \"tasks\": expected a non-empty array of tasks", sj);
        goto done;
    }
    size_t nt = json_array_size(tasks);
    if (!(s->tasks = calloc(nt, sizeof *s->tasks))) { xd_err("out of memory"); goto done; }
    for (size_t i = 0; i < nt; i++) {
        xd_task *t = &s->tasks[s->n_tasks];
        if (parse_task_entry(json_array_get(tasks, i), sj, i, dir, t)) { xd_task_free(t); goto done; }
        for (int j = 0; j < s->n_tasks; j++)
            if (!strcmp(s->tasks[j].name, t->name)) {
                xd_err("%s: tasks[%zu]: task name \"%s\" is used twice", sj, i, t->name);
                xd_task_free(t);
                goto done;
            }
        if (only && !listed(only, t->name)) { xd_task_free(t); continue; }
        s->n_tasks++;
    }
    if (only) { /* every requested name must exist */
        for (const char *p = only; *p;) {
            const char *e = strchr(p, ',');
            size_t k = e ? (size_t)(e - p) : strlen(p);
            int found = 0;
            for (size_t i = 0; i < nt && !found; i++) {
                const char *nm = json_string_value(json_object_get(json_array_get(tasks, i), "name"));
                found = k == strlen(nm) && !strncmp(p, nm, k);
            }
            if (!found) {
                char names[512] = "";
                size_t w = 0;
                for (size_t i = 0; i < nt && w < sizeof names - 1; i++)
                    w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", i ? ", " : "",
                                          json_string_value(json_object_get(json_array_get(tasks, i), "name")));
                xd_err("%s: no task named \"%.*s\" (the suite has: %s)", sj, (int)k, p, names);
                goto done;
            }
            p += k + (e != NULL);
        }
        if (!s->n_tasks) { xd_err("--tasks: no task selected"); goto done; }
    }
    for (int i = 0; i < s->n_tasks; i++) {
        xd_task *t = &s->tasks[i];
        if (xd_task_file_load(t->path, t->type, t->name, t)) goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc) xd_suite_free(s);
    return rc;
}
