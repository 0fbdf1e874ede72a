/* Evaluating a debiased classifier (debias_eval.h). */
#include "debias_eval.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"
#include "core/strbuf.h"
#include "eval/bootstrap.h"
#include "eval/fairness.h"
#include "eval/report.h"
#include "eval/svg.h"
#include "train/train_model.h"

void xd_debias_eval_defaults(xd_debias_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->pool = XD_POOL_LAST;
    o->batch = 16;
    xd_attack_defaults(&o->attack);
    o->boot = 1000;
    o->level = 0.95;
    o->seed = 1;
}

int xd_debias_encode(xd_model *m, const xd_clf_data *data, xd_pool_mode pool, int batch,
                     const xd_head *head, float *rep, int32_t *pred) {
    int B = batch, T = data->max_len, d = m->cfg.d_model, rc = -1;
    xd_trainer_model tm;
    xd_head_acts ha;
    memset(&ha, 0, sizeof ha);
    size_t BT = (size_t)B * T;
    int32_t *tok = malloc(BT * sizeof *tok), *pos = malloc(BT * sizeof *pos),
            *ds = malloc(BT * sizeof *ds), *len = malloc((size_t)B * sizeof *len);
    int64_t *ex = malloc((size_t)B * sizeof *ex);
    float *pooled = malloc((size_t)B * d * sizeof(float));
    if (xd_tm_init_ex(&tm, m, B, T, 0)) goto out;
    if (!tok || !pos || !ds || !len || !ex || !pooled || (head && xd_head_acts_alloc(&ha, head, B))) {
        xd_err("encode: out of memory");
        goto done;
    }
    for (int64_t e0 = 0; e0 < data->n; e0 += B) {
        int n = data->n - e0 < B ? (int)(data->n - e0) : B;
        for (int b = 0; b < B; b++) ex[b] = b < n ? e0 + b : e0;
        xd_clf_fill(data, ex, B, T, tok, pos, ds, len);
        double s;
        int64_t c;
        if (xd_tm_step(&tm, tok, NULL, pos, ds, 0, 0.0f, &s, &c) ||
            xd_pool_forward(pooled, tm.x_norm, len, B, T, d, pool))
            goto done;
        memcpy(rep + (size_t)e0 * d, pooled, (size_t)n * d * sizeof(float));
        if (!head) continue;
        const float *lg = xd_head_forward(head, &ha, pooled, n, 0, 0);
        for (int b = 0; b < n; b++) pred[e0 + b] = xd_head_argmax(lg + (size_t)b * head->n_out, head->n_out);
    }
    rc = 0;
done:
    xd_tm_free(&tm);
out:
    xd_head_acts_free(&ha);
    free(tok), free(pos), free(ds), free(len), free(ex), free(pooled);
    return rc;
}

/* Statistics of a bootstrap resample of the test examples. */
typedef struct {
    const int32_t *pred, *y, *a;
    int C, A;
} stat_ctx;

static double stat_acc(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_accuracy(s->pred, s->y, idx, n);
}
static double stat_bacc(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_balanced_accuracy(s->pred, s->a, s->A, idx, n);
}
static double stat_gap(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_tpr_gap_rms(s->pred, s->y, s->C, s->a, s->A, idx, n);
}

static int with_ci(xd_boot_fn f, stat_ctx *c, int n, const xd_debias_eval_opts *o, uint64_t salt,
                   xd_ci *out) {
    out->value = f(NULL, n, c);
    return xd_bootstrap_ci_fn(f, c, n, o->boot, o->seed ^ salt, o->level, &out->lo, &out->hi);
}

int xd_debias_evaluate(xd_model *m, const xd_head *head, const xd_clf_data *train,
                       const xd_clf_data *test, const xd_debias_eval_opts *o,
                       xd_debias_result *res) {
    memset(res, 0, sizeof *res);
    const xd_labeled *tl = train->lab, *sl = test->lab;
    if (tl->n_attr > XD_DEBIAS_MAX_ATTR)
        return xd_err("debias eval: at most %d attributes", XD_DEBIAS_MAX_ATTR);
    int d = m->cfg.d_model, ntr = (int)train->n, nte = (int)test->n, rc = -1;
    if (o->attack_train_max > 0 && ntr > o->attack_train_max) ntr = o->attack_train_max;
    float *rtr = malloc((size_t)ntr * d * sizeof(float)), *rte = malloc((size_t)nte * d * sizeof(float));
    int32_t *pred = malloc((size_t)nte * sizeof *pred), *apred = malloc((size_t)nte * sizeof *apred);
    xd_clf_data sub = *train;
    sub.n = ntr;
    if (!rtr || !rte || !pred || !apred) { xd_err("debias eval: out of memory"); goto done; }
    double t0 = xd_now();
    if (xd_debias_encode(m, test, o->pool, o->batch, head, rte, pred) ||
        xd_debias_encode(m, &sub, o->pool, o->batch, NULL, rtr, NULL))
        goto done;
    res->encode_s = xd_now() - t0;
    res->n_test = nte;
    res->n_train = ntr;
    stat_ctx c = {pred, sl->label.id, NULL, tl->label.n_classes, 0};
    if (with_ci(stat_acc, &c, nte, o, 0x41, &res->task_acc)) goto done;
    t0 = xd_now();
    for (int a = 0; a < tl->n_attr; a++) {
        snprintf(res->attr[a].field, sizeof res->attr[a].field, "%s", tl->attr[a].field);
        int A = tl->attr[a].n_classes;
        res->attr[a].n_classes = A;
        xd_attack_opts ao = o->attack;
        ao.seed = o->attack.seed * 131 + (uint64_t)a;
        if (xd_attack(rtr, tl->attr[a].id, ntr, rte, nte, d, A, &ao, apred)) goto done;
        stat_ctx la = {apred, NULL, sl->attr[a].id, 0, A};
        stat_ctx ga = {pred, sl->label.id, sl->attr[a].id, tl->label.n_classes, A};
        if (with_ci(stat_bacc, &la, nte, o, 0x4c00 + (uint64_t)a, &res->attr[a].leakage) ||
            with_ci(stat_gap, &ga, nte, o, 0x4700 + (uint64_t)a, &res->attr[a].tpr_gap))
            goto done;
        /* the label alone, guessed from the attacker's split (all of it) */
        if (xd_label_implied(tl->label.id, tl->attr[a].id, (int)train->n, tl->label.n_classes, A,
                             sl->label.id, nte, apred)) {
            xd_err("debias eval: out of memory");
            goto done;
        }
        stat_ctx ll = {apred, NULL, sl->attr[a].id, 0, A};
        if (with_ci(stat_bacc, &ll, nte, o, 0x4b00 + (uint64_t)a, &res->attr[a].label_leakage))
            goto done;
        res->n_attr = a + 1;
    }
    res->attack_s = xd_now() - t0;
    rc = 0;
done:
    free(rtr), free(rte), free(pred), free(apred);
    return rc;
}

/* ---- results as JSON ------------------------------------------------------------------- */

static json_t *ci_json(const xd_ci *c) {
    return json_pack("{s:f, s:f, s:f}", "value", c->value, "lo", c->lo, "hi", c->hi);
}

char *xd_debias_result_json(const xd_debias_result *r) {
    json_t *j = json_object(), *at = json_object(), *with = json_array();
    json_object_set_new(j, "format", json_string("xdistill-debias-eval"));
    json_object_set_new(j, "task", json_string(r->task));
    char buf[sizeof r->with];
    snprintf(buf, sizeof buf, "%s", r->with);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(with, json_string(t));
    json_object_set_new(j, "with", with);
    json_object_set_new(j, "mode", json_string(r->mode));
    json_object_set_new(j, "n_test", json_integer(r->n_test));
    json_object_set_new(j, "n_attack_train", json_integer(r->n_train));
    json_object_set_new(j, "task_accuracy", ci_json(&r->task_acc));
    if (r->nonzeros >= 0) {
        json_object_set_new(j, "nonzeros", json_integer(r->nonzeros));
        json_object_set_new(j, "diff_bytes", json_integer(r->diff_bytes));
    }
    json_object_set_new(j, "dense_bytes", json_integer(r->dense_bytes));
    for (int k = 0; k < r->n_attr; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "chance", json_real(1.0 / r->attr[k].n_classes));
        json_object_set_new(o, "classes", json_integer(r->attr[k].n_classes));
        json_object_set_new(o, "leakage", ci_json(&r->attr[k].leakage));
        json_object_set_new(o, "tpr_gap_rms", ci_json(&r->attr[k].tpr_gap));
        json_object_set_new(o, "label_leakage", ci_json(&r->attr[k].label_leakage));
        json_object_set_new(at, r->attr[k].field, o);
    }
    json_object_set_new(j, "attributes", at);
    json_object_set_new(j, "encode_s", json_real(r->encode_s));
    json_object_set_new(j, "attack_s", json_real(r->attack_s));
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!txt) xd_err("out of memory");
    return txt;
}

static const char *str_or_empty(json_t *v) { return json_is_string(v) ? json_string_value(v) : ""; }

static int ci_load(json_t *o, const char *path, const char *field, xd_ci *c) {
    json_t *v = json_object_get(o, "value"), *lo = json_object_get(o, "lo"),
           *hi = json_object_get(o, "hi");
    if (!json_is_number(v) || !json_is_number(lo) || !json_is_number(hi))
        return xd_err("%s: field \"%s\": expected {\"value\", \"lo\", \"hi\"} numbers", path, field);
    *c = (xd_ci){json_number_value(v), json_number_value(lo), json_number_value(hi)};
    return 0;
}

int xd_debias_result_load(const char *path, xd_debias_result *r) {
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return xd_err("%s: line %d: %s", path, je.line, je.text);
    int rc = -1;
    const char *fmt = json_string_value(json_object_get(j, "format"));
    json_t *at = json_object_get(j, "attributes"), *with = json_object_get(j, "with");
    if (!fmt || strcmp(fmt, "xdistill-debias-eval")) {
        xd_err("%s: field \"format\": expected \"xdistill-debias-eval\" (a debias eval result)", path);
        goto done;
    }
    if (!json_is_object(at) || !json_is_array(with)) {
        xd_err("%s: field \"%s\" is missing or of the wrong type", path,
               json_is_object(at) ? "with" : "attributes");
        goto done;
    }
    snprintf(r->task, sizeof r->task, "%s", str_or_empty(json_object_get(j, "task")));
    snprintf(r->mode, sizeof r->mode, "%s", str_or_empty(json_object_get(j, "mode")));
    size_t i;
    json_t *v;
    json_array_foreach(with, i, v) {
        size_t l = strlen(r->with);
        snprintf(r->with + l, sizeof r->with - l, "%s%s", l ? "," : "", str_or_empty(v));
    }
    json_t *nz = json_object_get(j, "nonzeros");
    r->nonzeros = json_is_integer(nz) ? json_integer_value(nz) : -1;
    r->diff_bytes = json_integer_value(json_object_get(j, "diff_bytes"));
    r->dense_bytes = json_integer_value(json_object_get(j, "dense_bytes"));
    r->n_test = json_integer_value(json_object_get(j, "n_test"));
    r->n_train = json_integer_value(json_object_get(j, "n_attack_train"));
    if (ci_load(json_object_get(j, "task_accuracy"), path, "task_accuracy", &r->task_acc)) goto done;
    const char *k;
    json_object_foreach(at, k, v) {
        if (r->n_attr >= XD_DEBIAS_MAX_ATTR) {
            xd_err("%s: more than %d attributes", path, XD_DEBIAS_MAX_ATTR);
            goto done;
        }
        int a = r->n_attr;
        snprintf(r->attr[a].field, sizeof r->attr[a].field, "%s", k);
        json_t *nc = json_object_get(v, "classes");
        r->attr[a].n_classes = json_is_integer(nc) ? (int)json_integer_value(nc) : 2;
        char f[128];
        snprintf(f, sizeof f, "attributes.%s.leakage", k);
        if (ci_load(json_object_get(v, "leakage"), path, f, &r->attr[a].leakage)) goto done;
        snprintf(f, sizeof f, "attributes.%s.tpr_gap_rms", k);
        if (ci_load(json_object_get(v, "tpr_gap_rms"), path, f, &r->attr[a].tpr_gap)) goto done;
        /* optional (results made before it was reported): NaN */
        json_t *ll = json_object_get(v, "label_leakage");
        snprintf(f, sizeof f, "attributes.%s.label_leakage", k);
        if (!ll) r->attr[a].label_leakage = (xd_ci){NAN, NAN, NAN};
        else if (ci_load(ll, path, f, &r->attr[a].label_leakage)) goto done;
        r->n_attr++;
    }
    rc = 0;
done:
    json_decref(j);
    return rc;
}

/* ---- the HTML report ------------------------------------------------------------------- */

static const unsigned kColors[] = {0x4c72b0, 0xdd8452, 0x55a868, 0xc44e52, 0x8172b3, 0x937860};

/* Bars of one statistic per result (and per attribute: groups), with whiskers. */
static void bars(xd_sbuf *b, const char *title, const char *ylabel, const xd_debias_result *r,
                 const char *const *labels, int n, int which, double chance) {
    int na = which == 0 ? 1 : r[0].n_attr;
    double lo = 0, hi = 1;
    if (which == 2) {
        hi = 0.05;
        for (int i = 0; i < n; i++)
            for (int a = 0; a < r[i].n_attr; a++)
                if (r[i].attr[a].tpr_gap.hi > hi) hi = r[i].attr[a].tpr_gap.hi;
        xd_svg_nice_range(&lo, &hi, 5);
    }
    xd_svg_opts o = {120 + 70 * n * na, 300, title, NULL, ylabel, 0, (double)n, lo, hi, 0, 1, 110,
                     0xf7f7f7};
    xd_svg p;
    xd_svg_begin(&p, b, &o);
    for (int i = 0; i < n; i++) {
        for (int a = 0; a < na; a++) {
            const xd_ci *c = which == 0 ? &r[i].task_acc
                           : which == 1 ? &r[i].attr[a].leakage : &r[i].attr[a].tpr_gap;
            double w = 0.8 / na, x0 = i + 0.1 + a * w;
            char tip[160];
            snprintf(tip, sizeof tip, "%s%s%s: %.3f [%.3f, %.3f]", labels[i], which ? ", " : "",
                     which ? r[i].attr[a].field : "", c->value, c->lo, c->hi);
            xd_svg_bar(&p, x0, x0 + w * 0.9, c->value, c->lo, c->hi, kColors[a % 6], tip);
        }
        xd_svg_xcat(&p, i + 0.5, labels[i], 1);
    }
    if (chance > 0) xd_svg_hline(&p, chance, 0x333333, 1, "chance");
    if (which && na > 0) {
        const char *names[XD_DEBIAS_MAX_ATTR];
        unsigned cols[XD_DEBIAS_MAX_ATTR];
        for (int a = 0; a < na; a++) {
            names[a] = r[0].attr[a].field;
            cols[a] = kColors[a % 6];
        }
        xd_svg_legend(&p, (size_t)na, names, cols, NULL);
    }
    xd_svg_end(&p);
}

static void ci_cell(xd_sbuf *b, const xd_ci *c) {
    xd_sb_printf(b, "<td>%.3f <span class=\"ci\">[%.3f, %.3f]</span></td>", c->value, c->lo, c->hi);
}

char *xd_debias_report_html(const xd_debias_result *r, const char *const *labels, int n) {
    if (n < 1) return xd_err("debias report: no results"), NULL;
    for (int i = 1; i < n; i++) {
        int same = r[i].n_attr == r[0].n_attr;
        for (int a = 0; same && a < r[0].n_attr; a++) same = !strcmp(r[i].attr[a].field, r[0].attr[a].field);
        if (!same)
            return xd_err("debias report: %s has other attributes than %s", labels[i], labels[0]), NULL;
    }
    xd_sbuf b = {0};
    xd_sb_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                     "<title>xdistill debiasing report</title>\n<style>\n%s</style>\n</head>\n<body>\n"
                     "<h1>xdistill: debiasing with sparse diffs</h1>\n", xd_report_css);
    xd_sb_puts(&b, "<p class=\"note\">Leakage is the balanced accuracy of a post-hoc attacker "
                   "trained on the representations (chance: 1/K; lower is better). TPR-GAP is "
                   "the RMS over classes of the gap in true-positive rate between the attribute's "
                   "values (lower is better). Brackets and whiskers: 95% bootstrap intervals over "
                   "the test examples.</p>\n<div class=\"wide\"><table>\n<tr><th>run</th><th>task "
                   "accuracy</th>");
    for (int a = 0; a < r[0].n_attr; a++) {
        xd_sb_puts(&b, "<th>leakage ");
        xd_sb_esc(&b, r[0].attr[a].field);
        xd_sb_puts(&b, "</th><th>TPR-GAP ");
        xd_sb_esc(&b, r[0].attr[a].field);
        xd_sb_puts(&b, "</th>");
    }
    xd_sb_puts(&b, "<th>non-zeros</th><th>diff MB (dense MB)</th></tr>\n");
    for (int i = 0; i < n; i++) {
        xd_sb_puts(&b, "<tr><td>");
        xd_sb_esc(&b, labels[i]);
        xd_sb_puts(&b, "</td>");
        ci_cell(&b, &r[i].task_acc);
        for (int a = 0; a < r[i].n_attr; a++) {
            ci_cell(&b, &r[i].attr[a].leakage);
            ci_cell(&b, &r[i].attr[a].tpr_gap);
        }
        if (r[i].nonzeros >= 0)
            xd_sb_printf(&b, "<td>%lld</td><td>%.1f (%.0f)</td></tr>\n", (long long)r[i].nonzeros,
                         r[i].diff_bytes / 1048576.0, r[i].dense_bytes / 1048576.0);
        else xd_sb_printf(&b, "<td>all</td><td>– (%.0f)</td></tr>\n", r[i].dense_bytes / 1048576.0);
    }
    xd_sb_puts(&b, "</table></div>\n<h2>Plots</h2>\n<div class=\"plots\">\n");
    double chance = r[0].n_attr ? 1.0 / r[0].attr[0].n_classes : 0;
    bars(&b, "task accuracy", "accuracy", r, labels, n, 0, 0);
    if (r[0].n_attr) {
        bars(&b, "leakage (post-hoc attacker)", "balanced accuracy", r, labels, n, 1, chance);
        bars(&b, "TPR-GAP (RMS over classes)", "gap", r, labels, n, 2, 0);
    }
    xd_sb_puts(&b, "</div>\n<p class=\"note\">Made by <code>xdistill debias report</code>. This "
                   "page is self-contained: no scripts, fonts or styles are fetched.</p>\n"
                   "</body>\n</html>\n");
    char *s = xd_sb_take(&b);
    if (!s) xd_err("out of memory writing the HTML report");
    return s;
}
