/* Labelled JSONL data (labeled.h). */
#include "labeled.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "jsonl.h"

/* The records while reading: values kept as text, numbered at the end. */
typedef struct {
    xd_labeled *d;
    const char *text_field;
    const char *pair_field;   /* NULL: no counterfactual texts */
    int64_t cap;
    char **raw;   /* [cap][1 + n_attr]: the label's then each attribute's value text */
} reader;

/* The value text of a label or attribute field (a string, or an integer's decimal text). */
static char *value_text(const char *path, unsigned long line, json_t *o, const char *what,
                        const char *field) {
    json_t *v = json_object_get(o, field);
    char buf[32];
    if (!v) return xd_err("%s: line %lu: %s field \"%s\" is missing", path, line, what, field), NULL;
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return xd_err("%s: line %lu: %s field \"%s\" is %s, expected a non-empty string or an "
                      "integer", path, line, what, field,
                      json_is_string(v) ? "empty" : xd_json_type_name(v)), NULL;
    return strdup(json_string_value(v));
}

/* o's field as a non-empty string, or NULL with an error naming the file, line and field. */
static const char *string_field(const char *path, unsigned long line, json_t *o, const char *what,
                                const char *field) {
    json_t *t = json_object_get(o, field);
    if (t && json_is_string(t) && json_string_length(t) > 0) return json_string_value(t);
    return xd_err("%s: line %lu: %s field \"%s\" is %s, expected a non-empty string", path, line,
                  what, field, !t ? "missing" : json_is_string(t) ? "empty" : xd_json_type_name(t)),
           NULL;
}

static int add_record(void *ctx, const char *path, unsigned long line, json_t *o) {
    reader *r = ctx;
    xd_labeled *d = r->d;
    int cols = 1 + d->n_attr;
    if (!json_is_object(o))
        return xd_err("%s: line %lu: expected a JSON object, found %s", path, line,
                      xd_json_type_name(o));
    const char *text = string_field(path, line, o, "text", r->text_field);
    if (!text) return -1;
    if (d->n == r->cap) {
        int64_t nc = r->cap ? 2 * r->cap : 256;
        char **tx = realloc(d->text, (size_t)nc * sizeof *tx);
        if (tx) d->text = tx;
        unsigned long *ln = realloc(d->line, (size_t)nc * sizeof *ln);
        if (ln) d->line = ln;
        char **rw = realloc(r->raw, (size_t)(nc * cols) * sizeof *rw);
        if (rw) r->raw = rw;
        char **pt = r->pair_field ? realloc(d->pair_text, (size_t)nc * sizeof *pt) : NULL;
        if (pt) d->pair_text = pt;
        if (!tx || !ln || !rw || (r->pair_field && !pt)) return xd_err("out of memory");
        r->cap = nc;
    }
    char **row = r->raw + d->n * cols;
    for (int c = 0; c < cols; c++) row[c] = NULL;
    d->text[d->n] = strdup(text);
    d->line[d->n] = line;
    if (r->pair_field) d->pair_text[d->n] = NULL;
    d->n++; /* counted now, so that a failure below frees what was taken */
    if (!d->text[d->n - 1]) return xd_err("out of memory");
    if (r->pair_field) {
        const char *c = string_field(path, line, o, "counterfactual", r->pair_field);
        if (!c) return -1;
        if (!(d->pair_text[d->n - 1] = strdup(c))) return xd_err("out of memory");
    }
    if (!(row[0] = value_text(path, line, o, "label", d->label.field))) return -1;
    for (int a = 0; a < d->n_attr; a++)
        if (!(row[1 + a] = value_text(path, line, o, "attribute", d->attr[a].field))) return -1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted distinct values of column c, and each record's index among them. */
static int number_column(const reader *r, int c, xd_label_column *col) {
    const xd_labeled *d = r->d;
    int cols = 1 + d->n_attr;
    char **v = malloc((size_t)(d->n ? d->n : 1) * sizeof *v);
    col->id = malloc((size_t)(d->n ? d->n : 1) * sizeof *col->id);
    if (!v || !col->id) {
        free(v);
        return xd_err("out of memory");
    }
    for (int64_t i = 0; i < d->n; i++) v[i] = r->raw[i * cols + c];
    qsort(v, (size_t)d->n, sizeof *v, cmp_str);
    int k = 0;
    for (int64_t i = 0; i < d->n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1])) v[k++] = v[i];
    col->classes = malloc((size_t)(k ? k : 1) * sizeof *col->classes);
    if (!col->classes) {
        free(v);
        return xd_err("out of memory");
    }
    for (int i = 0; i < k; i++) col->classes[i] = strdup(v[i]);
    col->n_classes = k;
    for (int i = 0; i < k; i++)
        if (!col->classes[i]) {
            free(v);
            return xd_err("out of memory");
        }
    for (int64_t i = 0; i < d->n; i++) {
        char *key = r->raw[i * cols + c];
        char **hit = bsearch(&key, col->classes, (size_t)k, sizeof *col->classes, cmp_str);
        col->id[i] = (int32_t)(hit - col->classes);
    }
    free(v);
    return 0;
}

static void free_column(xd_label_column *c) {
    for (int i = 0; i < c->n_classes; i++) free(c->classes[i]);
    free(c->classes);
    free(c->id);
    free(c->field);
    memset(c, 0, sizeof *c);
}

void xd_labeled_free(xd_labeled *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) free(d->text[i]);
    free(d->text);
    for (int64_t i = 0; d->pair_text && i < d->n; i++) free(d->pair_text[i]);
    free(d->pair_text);
    free(d->pair_source);
    free(d->line);
    free_column(&d->label);
    for (int a = 0; a < d->n_attr; a++) free_column(&d->attr[a]);
    free(d->attr);
    free(d->path);
    memset(d, 0, sizeof *d);
}

/* d->pair_source, where the counterfactual texts came from: "what" then "name". */
static int pair_source(xd_labeled *d, const char *what, const char *name) {
    size_t n = strlen(what) + strlen(name) + 4;
    if (!(d->pair_source = malloc(n))) return xd_err("out of memory");
    snprintf(d->pair_source, n, "%s%s", what, name);
    return 0;
}

int xd_labeled_load(const char *path, const char *text_field, const char *label_field,
                    const char *const *attr_fields, int n_attr, xd_labeled *out) {
    return xd_labeled_load_pairs(path, text_field, NULL, label_field, attr_fields, n_attr, out);
}

int xd_labeled_load_pairs(const char *path, const char *text_field, const char *pair_field,
                          const char *label_field, const char *const *attr_fields, int n_attr,
                          xd_labeled *out) {
    memset(out, 0, sizeof *out);
    if (!text_field || !label_field || n_attr < 0)
        return xd_err("%s: labelled data needs a text field and a label field", path);
    reader r = {out, text_field, pair_field, 0, NULL};
    int rc = -1;
    out->path = strdup(path);
    out->label.field = strdup(label_field);
    out->n_attr = n_attr;
    out->attr = calloc((size_t)(n_attr ? n_attr : 1), sizeof *out->attr);
    if (!out->path || !out->label.field || !out->attr) { xd_err("out of memory"); goto done; }
    for (int a = 0; a < n_attr; a++)
        if (!(out->attr[a].field = strdup(attr_fields[a]))) { xd_err("out of memory"); goto done; }
    if (xd_jsonl_each(path, add_record, &r)) goto done;
    if (out->n == 0) { xd_err("%s: no records", path); goto done; }
    if (pair_field) {
        char q[512];
        snprintf(q, sizeof q, "\"%s\"", pair_field);
        if (pair_source(out, "field ", q)) goto done;
    }
    if (number_column(&r, 0, &out->label)) goto done;
    for (int a = 0; a < n_attr; a++)
        if (number_column(&r, 1 + a, &out->attr[a])) goto done;
    if (out->label.n_classes < 2) {
        xd_err("%s: label field \"%s\": %d class; a classifier needs at least 2", path,
               label_field, out->label.n_classes);
        goto done;
    }
    rc = 0;
done:
    for (int64_t i = 0; r.raw && i < out->n * (1 + n_attr); i++) free(r.raw[i]);
    free(r.raw);
    if (rc) xd_labeled_free(out);
    return rc;
}

int xd_labeled_swap_pairs(xd_labeled *d, const xd_swap_list *s, int64_t *n_changed) {
    if (d->pair_text) return xd_err("%s: counterfactual texts already loaded", d->path);
    if (!(d->pair_text = calloc((size_t)d->n, sizeof *d->pair_text))) return xd_err("out of memory");
    if (pair_source(d, "the text with the swaps of ", s->path)) return -1;
    int64_t changed = 0;
    for (int64_t i = 0; i < d->n; i++) {
        int k;
        if (!(d->pair_text[i] = xd_swap_apply(s, d->text[i], &k))) return xd_err("out of memory");
        changed += k > 0;
    }
    if (n_changed) *n_changed = changed;
    return 0;
}

/* other's column renumbered with train's classes. */
static int align_column(const xd_labeled *other, const xd_label_column *tc, xd_label_column *oc,
                        const char *what) {
    int32_t *map = malloc((size_t)(oc->n_classes ? oc->n_classes : 1) * sizeof *map);
    if (!map) return xd_err("out of memory");
    for (int i = 0; i < oc->n_classes; i++) {
        char *key = oc->classes[i];
        char **hit = bsearch(&key, tc->classes, (size_t)tc->n_classes, sizeof *tc->classes, cmp_str);
        if (!hit) {
            int64_t first = 0;
            while (first < other->n && oc->id[first] != i) first++;
            xd_err("%s: line %lu: %s field \"%s\": class \"%s\" has no examples in the training "
                   "split", other->path, other->line[first], what, oc->field, key);
            free(map);
            return -1;
        }
        map[i] = (int32_t)(hit - tc->classes);
    }
    for (int64_t k = 0; k < other->n; k++) oc->id[k] = map[oc->id[k]];
    for (int i = 0; i < oc->n_classes; i++) free(oc->classes[i]);
    free(oc->classes);
    oc->classes = malloc((size_t)tc->n_classes * sizeof *oc->classes);
    if (!oc->classes) { oc->n_classes = 0; free(map); return xd_err("out of memory"); }
    oc->n_classes = tc->n_classes;
    int bad = 0;
    for (int i = 0; i < tc->n_classes; i++) bad |= !(oc->classes[i] = strdup(tc->classes[i]));
    free(map);
    return bad ? xd_err("out of memory") : 0;
}

int xd_labeled_align(const xd_labeled *train, xd_labeled *other) {
    if (other->n_attr != train->n_attr)
        return xd_err("%s: %d attribute fields, the training data has %d", other->path,
                      other->n_attr, train->n_attr);
    if (align_column(other, &train->label, &other->label, "label")) return -1;
    for (int a = 0; a < train->n_attr; a++)
        if (align_column(other, &train->attr[a], &other->attr[a], "attribute")) return -1;
    return 0;
}
