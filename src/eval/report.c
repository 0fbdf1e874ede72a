/* The HTML report of `xdistill compare` (report.h): one self-contained page,
 * plots as inline SVG (svg.h), every text escaped. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eval/report.h"
#include "eval/svg.h"

#define C_TEACHER XD_REPORT_C_TEACHER
#define C_STUDENT XD_REPORT_C_STUDENT
#define C_SWA XD_REPORT_C_SWA
#define C_REF 0xc44e52u
#define C_DARK 0x222222u
#define C_CE 0x8172b3u
#define C_KL 0x937860u
#define C_VKL 0xda8bc3u

typedef struct {
    xd_sbuf *b;
    xd_report_plots *plots;
    int n_plots;
} ctx;

/* Plot i's background: a light blue-grey, different for each of the first 64
 * plots (r and g step through 8 values each). */
static unsigned plot_bg(int i) {
    i %= XD_REPORT_MAX_PLOTS;
    return (unsigned)(0xf0 + i % 8) << 16 | (unsigned)(0xf4 + i / 8 % 8) << 8 | 0xfau;
}

static void plot_begin(ctx *x, xd_svg *p, xd_svg_opts *o) {
    o->bg = plot_bg(x->n_plots);
    if (x->plots && x->n_plots < XD_REPORT_MAX_PLOTS) {
        x->plots->plot[x->n_plots].bg = o->bg;
        snprintf(x->plots->plot[x->n_plots].title, sizeof x->plots->plot[x->n_plots].title, "%s",
                 o->title ? o->title : "");
        x->plots->n = x->n_plots + 1;
    }
    x->n_plots++;
    xd_svg_begin(p, x->b, o);
}

/* ---- number formatting ---------------------------------------------------- */

static void put_num(xd_sbuf *b, double v, const char *fmt) {
    if (isfinite(v)) xd_sb_printf(b, fmt, v);
    else xd_sb_puts(b, "—");
}

/* A whole count with thousands separators ("12,000,000"); "—" when not finite. */
static void put_count(xd_sbuf *b, double v) {
    if (!isfinite(v) || fabs(v) >= 1e18) { put_num(b, v, "%.3g"); return; }
    char d[32], o[48];
    int n = snprintf(d, sizeof d, "%.0f", fabs(v)), k = 0;
    if (v < 0) o[k++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) o[k++] = ',';
        o[k++] = d[i];
    }
    o[k] = 0;
    xd_sb_puts(b, o);
}

static void put_ci(xd_sbuf *b, const xd_cmp_task *t) {
    put_num(b, t->score, "%.4f");
    if (isfinite(t->ci_low) && isfinite(t->ci_high))
        xd_sb_printf(b, " <span class=\"ci\">[%.4f, %.4f]</span>", t->ci_low, t->ci_high);
}

static void put_recovery(xd_sbuf *b, double r) {
    if (isfinite(r)) xd_sb_printf(b, "%.1f%%", 100 * r);
    else if (isinf(r)) xd_sb_puts(b, "∞ (A_T = 0)");
    else xd_sb_puts(b, "n/a (0/0)");
}

/* ---- plots ---------------------------------------------------------------- */

static const char *const kTaskNote = " †";

static void bars_plot(ctx *x, const xd_cmp *c) {
    size_t n = c->n;
    int m = c->swa ? 3 : 2;
    double ymax = 0;
    size_t maxlen = 0;
    const xd_cmp_results *who[3] = {c->teacher, c->student, c->swa};
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < m; k++) {
            const xd_cmp_task *t = &who[k]->tasks[k == 0 ? i : k == 1 ? c->si[i] : c->wi[i]];
            if (t->score > ymax) ymax = t->score;
            if (isfinite(t->ci_high) && t->ci_high > ymax) ymax = t->ci_high;
        }
        size_t l = strlen(c->teacher->tasks[i].name);
        if (l > maxlen) maxlen = l;
    }
    if (maxlen > 28) maxlen = 28;
    double y0 = 0, y1 = ymax > 0 ? ymax : 1;
    if (y1 <= 1) y1 = 1;
    else xd_svg_nice_range(&y0, &y1, 5);
    int width = 1140, plot_w = width - 80;
    int rotate = n > 1 && (double)plot_w / (double)n < 7.0 * (double)maxlen + 8;
    xd_svg_opts o = {.width = width, .title = "Scores per task (bootstrap 95% CI whiskers)",
                     .ylabel = "score (higher is better)", .x0 = 0, .x1 = (double)n, .y0 = y0, .y1 = y1,
                     .x_categorical = 1};
    o.bottom = rotate ? 36 + (int)(0.62 * 6.5 * (double)maxlen) : 40;
    o.height = 300 + o.bottom;
    xd_svg p;
    plot_begin(x, &p, &o);
    double bw = 0.8 / m;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < m; k++) {
            const xd_cmp_task *t = &who[k]->tasks[k == 0 ? i : k == 1 ? c->si[i] : c->wi[i]];
            static const char *const role[3] = {"teacher", "student", "SWA-only"};
            static const unsigned col[3] = {C_TEACHER, C_STUDENT, C_SWA};
            char tip[256];
            if (isfinite(t->ci_low) && isfinite(t->ci_high))
                snprintf(tip, sizeof tip, "%s — %s: %.4f [%.4f, %.4f]", t->name, role[k], t->score,
                         t->ci_low, t->ci_high);
            else snprintf(tip, sizeof tip, "%s — %s: %.4f", t->name, role[k], t->score);
            double xa = (double)i + 0.1 + bw * k;
            xd_svg_bar(&p, xa, xa + bw, t->score, t->ci_low, t->ci_high, col[k], tip);
        }
        const xd_cmp_task *tt = &c->teacher->tasks[i];
        if (isfinite(tt->chance)) xd_svg_mark(&p, (double)i + 0.04, (double)i + 0.96, tt->chance, C_DARK);
        char label[160];
        size_t l = strlen(tt->name);
        if (l > 28) snprintf(label, sizeof label, "%.26s…%s", tt->name, tt->long_context ? kTaskNote : "");
        else snprintf(label, sizeof label, "%s%s", tt->name, tt->long_context ? kTaskNote : "");
        xd_svg_xcat(&p, (double)i + 0.5, label, rotate);
    }
    const char *names[4] = {"teacher", "student", "SWA-only baseline", "chance"};
    unsigned cols[4] = {C_TEACHER, C_STUDENT, C_SWA, C_DARK};
    int dashed[4] = {0, 0, 0, 1};
    if (!c->swa) { names[2] = names[3]; cols[2] = cols[3]; dashed[2] = 1; }
    xd_svg_legend(&p, (size_t)m + 1, names, cols, dashed);
    xd_svg_end(&p);
}

/* C_α as the exact step function: constant between the task thresholds. */
static void c_alpha_line(xd_svg *p, const xd_wintie *w, unsigned color, int dashed) {
    size_t cap = 2 * w->n + 2, k = 0;
    double *xs = malloc(cap * sizeof *xs), *ys = malloc(cap * sizeof *ys), *t = malloc(w->n * sizeof *t);
    if (!xs || !ys || !t) { free(xs); free(ys); free(t); return; }
    memcpy(t, w->threshold, w->n * sizeof *t);
    for (size_t i = 1; i < w->n; i++) /* insertion sort: n is small */
        for (size_t j = i; j > 0 && t[j - 1] > t[j]; j--) { double s = t[j]; t[j] = t[j - 1]; t[j - 1] = s; }
    double prev = xd_wintie_c(w, 0);
    xs[k] = 0; ys[k++] = prev;
    for (size_t i = 0; i < w->n; i++) {
        if (t[i] <= 0 || t[i] > w->alpha_max || (i && t[i] == t[i - 1])) continue;
        xs[k] = t[i]; ys[k++] = prev;
        prev = xd_wintie_c(w, t[i]);
        xs[k] = t[i]; ys[k++] = prev;
    }
    xs[k] = w->alpha_max; ys[k++] = prev;
    xd_svg_line(p, xs, ys, k, color, 2.5, dashed, 0);
    free(xs); free(ys); free(t);
}

static void c_alpha_plot(ctx *x, const xd_cmp *c) {
    const xd_wintie *w = &c->wt;
    xd_svg_opts o = {.width = 560, .height = 350, .title = "Win-and-tie: C_α over α",
                     .xlabel = "α (tolerance: win or tie when A_S ≥ (1−α)·A_T)", .ylabel = "C_α",
                     .x0 = 0, .x1 = w->alpha_max, .y0 = 0, .y1 = 1};
    xd_svg p;
    plot_begin(x, &p, &o);
    xd_svg_hline(&p, 0.5, C_REF, 1, "C_α = 0.5");
    if (c->swa) c_alpha_line(&p, &c->swa_wt, C_SWA, 1);
    c_alpha_line(&p, w, C_STUDENT, 0);
    xd_svg_points(&p, w->grid_alpha, w->grid_c, (size_t)w->n_grid, C_STUDENT, 1.6);
    char lab[96];
    if (w->has_alpha_star) {
        snprintf(lab, sizeof lab, "α* = %.3g", w->alpha_star);
        xd_svg_vline(&p, w->alpha_star, C_DARK, 1, lab);
        double ax = w->alpha_star, ay = xd_wintie_c(w, w->alpha_star);
        xd_svg_points(&p, &ax, &ay, 1, C_DARK, 5);
    } else {
        snprintf(lab, sizeof lab, "α* none: C_α < 0.5 for every α ≤ %g", w->alpha_max);
        xd_svg_text(&p, w->alpha_max / 2, 0.75, lab, C_REF, "middle");
    }
    const char *names[2] = {"student", "SWA-only baseline"};
    unsigned cols[2] = {C_STUDENT, C_SWA};
    int dashed[2] = {0, 1};
    xd_svg_legend(&p, c->swa ? 2 : 1, names, cols, dashed);
    xd_svg_end(&p);
}

static void series_range(const xd_cmp_series *s, int logy, double *x0, double *x1, double *y0,
                         double *y1) {
    for (size_t i = 0; s && i < s->n; i++) {
        if (!isfinite(s->x[i]) || !isfinite(s->y[i]) || (logy && s->y[i] <= 0)) continue;
        if (s->x[i] < *x0) *x0 = s->x[i];
        if (s->x[i] > *x1) *x1 = s->x[i];
        if (s->y[i] < *y0) *y0 = s->y[i];
        if (s->y[i] > *y1) *y1 = s->y[i];
    }
}

/* One training-curve plot of the given series (NULL entries skipped). */
static void curves_plot(ctx *x, const char *title, const char *ylabel, const xd_cmp_series *const *s,
                        const unsigned *cols, const char *const *names, size_t n, int logy,
                        size_t n_legend) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) series_range(s[i], logy, &x0, &x1, &y0, &y1);
    if (!(x1 >= x0)) return; /* nothing to plot */
    if (x1 == x0) x1 = x0 + 1;
    if (logy) xd_svg_log_range(&y0, &y1);
    else xd_svg_nice_range(&y0, &y1, 5);
    xd_svg_nice_range(&x0, &x1, 6);
    xd_svg_opts o = {.width = 560, .height = 310, .title = title, .xlabel = "step", .ylabel = ylabel,
                     .x0 = x0, .x1 = x1, .y0 = y0, .y1 = y1, .logy = logy};
    xd_svg p;
    plot_begin(x, &p, &o);
    const char *ln[16];
    unsigned lc[16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i]) continue;
        xd_svg_line(&p, s[i]->x, s[i]->y, s[i]->n, cols[i], 2, 0, 1500);
        if (s[i]->n <= 60) xd_svg_points(&p, s[i]->x, s[i]->y, s[i]->n, cols[i], 2.5);
        if (names[i] && k < 16) { ln[k] = names[i]; lc[k++] = cols[i]; }
    }
    xd_svg_legend(&p, k < n_legend ? k : n_legend, ln, lc, NULL);
    xd_svg_end(&p);
}

static unsigned hue(double t) { /* t in [0,1] → a saturated colour from blue to red */
    double h = 240 - 240 * t, s = 0.75, v = 0.8, cc = v * s;
    double hp = h / 60, xx = cc * (1 - fabs(fmod(hp, 2) - 1)), r = 0, g = 0, b = 0;
    if (hp < 1) { r = cc; g = xx; }
    else if (hp < 2) { r = xx; g = cc; }
    else if (hp < 3) { g = cc; b = xx; }
    else if (hp < 4) { g = xx; b = cc; }
    else { r = xx; b = cc; }
    double mm = v - cc;
    return (unsigned)lround((r + mm) * 255) << 16 | (unsigned)lround((g + mm) * 255) << 8 |
           (unsigned)lround((b + mm) * 255);
}

static void log_plots(ctx *x, const xd_cmp_log *l) {
    const char *base = strrchr(l->path, '/');
    base = base ? base + 1 : l->path;
    char title[160];
    {
        const xd_cmp_series *s[2] = {xd_cmp_log_series(l, "loss"), xd_cmp_log_series(l, "val_loss")};
        const unsigned cols[2] = {C_STUDENT, C_TEACHER};
        const char *const names[2] = {"loss (train)", "val_loss"};
        snprintf(title, sizeof title, "%.100s: loss", base);
        if (s[0] || s[1]) curves_plot(x, title, "loss", s, cols, names, 2, 0, 2);
    }
    {
        const xd_cmp_series *s[3] = {xd_cmp_log_series(l, "ce"), xd_cmp_log_series(l, "kl"),
                                     xd_cmp_log_series(l, "val_kl")};
        const unsigned cols[3] = {C_CE, C_KL, C_VKL};
        const char *const names[3] = {"ce", "kl", "val_kl"};
        snprintf(title, sizeof title, "%.100s: CE and top-k KL", base);
        if (s[0] || s[1]) curves_plot(x, title, "nats per token", s, cols, names, 3, 0, 3);
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *key = pass ? "val_layer_mse" : "layer_mse";
        size_t L = 0;
        char name[64];
        for (;; L++) {
            snprintf(name, sizeof name, "%s[%zu]", key, L);
            if (!xd_cmp_log_series(l, name) || L >= 256) break;
        }
        if (!L) continue;
        const xd_cmp_series **s = calloc(L, sizeof *s);
        unsigned *cols = calloc(L, sizeof *cols);
        const char **names = calloc(L, sizeof *names);
        char (*lab)[32] = calloc(L, sizeof *lab);
        if (s && cols && names && lab) {
            size_t shown[3] = {0, L / 2, L - 1};
            for (size_t i = 0; i < L; i++) {
                snprintf(name, sizeof name, "%s[%zu]", key, i);
                s[i] = xd_cmp_log_series(l, name);
                cols[i] = hue(L > 1 ? (double)i / (double)(L - 1) : 0);
            }
            /* legend: first, middle and last layer, listed first */
            size_t nl = L >= 3 ? 3 : L;
            const xd_cmp_series **s2 = calloc(L, sizeof *s2);
            unsigned *c2 = calloc(L, sizeof *c2);
            if (s2 && c2) {
                size_t k = 0;
                for (size_t j = 0; j < nl; j++) {
                    snprintf(lab[j], sizeof lab[j], "layer %zu", shown[j]);
                    names[k] = lab[j];
                    s2[k] = s[shown[j]];
                    c2[k++] = cols[shown[j]];
                }
                for (size_t i = 0; i < L; i++)
                    if (i != shown[0] && i != shown[1] && i != shown[2]) { s2[k] = s[i]; c2[k++] = cols[i]; }
                snprintf(title, sizeof title, "%.100s: %s per layer", base,
                         pass ? "validation MSE" : "MSE");
                curves_plot(x, title, "MSE (log scale)", s2, c2, names, k, 1, nl);
            }
            free(s2);
            free(c2);
        }
        free(s);
        free(cols);
        free(names);
        free(lab);
    }
}

/* ---- page ----------------------------------------------------------------- */

const char xd_report_css[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1160px;background:#fff}\n"
    "h1{font-size:24px;margin:0 0 12px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ccc}"
    "h3{font-size:15px;margin:14px 0 4px}\n"
    ".verdict{font-size:20px;font-weight:bold;padding:12px 16px;border-radius:6px;margin:8px 0}\n"
    ".ok{background:#e3f4e6;border:2px solid #2e8b57}.bad{background:#fbe6e6;border:2px solid #c44e52}\n"
    ".plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}\n"
    ".note{color:#555;font-size:13px;max-width:560px}\n"
    "table{border-collapse:collapse;font-size:13px}.wide{overflow-x:auto}td,th{padding:3px 6px;border-bottom:1px solid #ddd;"
    "text-align:right;vertical-align:top;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
    "th{background:#eee}.ci{color:#666;font-size:11px}.win{color:#2e8b57;font-weight:bold}.loss{color:#c44e52}\n"
    "code{background:#f1f1f1;padding:0 3px}\n";

static void kv_row(xd_sbuf *b, const char *k, const char *v) {
    xd_sb_puts(b, "<tr><td>");
    xd_sb_esc(b, k);
    xd_sb_puts(b, "</td><td style=\"text-align:left\">");
    xd_sb_esc(b, v);
    xd_sb_puts(b, "</td></tr>\n");
}

static void model_line(xd_sbuf *b, const char *role, const xd_cmp_results *r) {
    xd_sb_printf(b, "<li><b>%s</b>: <code>", role);
    xd_sb_esc(b, *r->model ? r->model : "(model not recorded)");
    xd_sb_puts(b, "</code>");
    if (r->window > 0) xd_sb_printf(b, ", window W = %lld", r->window);
    xd_sb_puts(b, " — results <code>");
    xd_sb_esc(b, r->path);
    xd_sb_puts(b, "</code></li>\n");
}

static void task_table(xd_sbuf *b, const xd_cmp *c) {
    xd_sb_puts(b, "<div class=\"wide\"><table><tr><th>task</th><th>type / metric</th><th>n</th><th>teacher [95% CI]</th>"
                  "<th>student [95% CI]</th>");
    if (c->swa) xd_sb_puts(b, "<th>SWA-only [95% CI]</th>");
    xd_sb_puts(b, "<th>recovery</th>");
    if (c->swa) xd_sb_puts(b, "<th>SWA recovery</th>");
    xd_sb_puts(b, "<th>α_b</th><th>1_0</th><th>chance</th></tr>\n");
    for (size_t i = 0; i < c->n; i++) {
        const xd_cmp_task *tt = &c->teacher->tasks[i], *ts = &c->student->tasks[c->si[i]];
        xd_sb_puts(b, "<tr><td>");
        xd_sb_esc(b, tt->name);
        if (tt->long_context) xd_sb_puts(b, kTaskNote);
        xd_sb_puts(b, "</td><td>");
        xd_sb_esc(b, *tt->type ? tt->type : "—");
        xd_sb_puts(b, " / ");
        xd_sb_esc(b, *tt->metric ? tt->metric : "—");
        xd_sb_puts(b, "</td><td>");
        if (tt->n >= 0) xd_sb_printf(b, "%lld", tt->n);
        else xd_sb_puts(b, "—");
        xd_sb_puts(b, "</td><td>");
        put_ci(b, tt);
        xd_sb_puts(b, "</td><td>");
        put_ci(b, ts);
        if (c->swa) {
            xd_sb_puts(b, "</td><td>");
            put_ci(b, &c->swa->tasks[c->wi[i]]);
        }
        xd_sb_puts(b, "</td><td>");
        put_recovery(b, c->wt.recovery[i]);
        if (c->swa) {
            xd_sb_puts(b, "</td><td>");
            put_recovery(b, c->swa_wt.recovery[i]);
        }
        xd_sb_printf(b, "</td><td>%.4f</td><td>%s</td><td>", c->wt.threshold[i],
                     c->wt.win0[i] ? "<span class=\"win\">✓</span>" : "<span class=\"loss\">✗</span>");
        put_num(b, tt->chance, "%.3g");
        xd_sb_puts(b, "</td></tr>\n");
    }
    xd_sb_puts(b, "</table></div>\n<p class=\"note\">† long-context task (longer than the student's "
                  "window). recovery = A_S / A_T (∞ or n/a where the teacher scored 0: such a task is "
                  "a win or tie at every α). α_b = max(0, 1 − A_S/A_T) is the tolerance at which the "
                  "task becomes a win or tie; 1_0 = ✓ when it is one at α = 0.</p>\n");
}

static void settings_table(xd_sbuf *b, const xd_cmp *c) {
    char v[256];
    xd_sb_puts(b, "<table>\n");
    kv_row(b, "suite", c->teacher->suite);
    if (*c->teacher->suite_dir) kv_row(b, "suite_dir", c->teacher->suite_dir);
    snprintf(v, sizeof v, "%zu", c->n);
    kv_row(b, "tasks", v);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)c->teacher->settings, key, val) {
        char *s = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
        char k[128];
        snprintf(k, sizeof k, "settings.%s", key);
        kv_row(b, k, s ? s : "?");
        free(s);
    }
    const xd_cmp_results *who[3] = {c->teacher, c->student, c->swa};
    const char *role[3] = {"teacher", "student", "SWA-only"};
    for (int i = 0; i < 3; i++) {
        if (!who[i]) continue;
        char k[64];
        snprintf(k, sizeof k, "%s evaluation time", role[i]);
        if (isfinite(who[i]->seconds)) {
            snprintf(v, sizeof v, "%.1f s", who[i]->seconds);
            kv_row(b, k, v);
        }
    }
    xd_sb_puts(b, "</table>\n");
}

static void ledger_table(xd_sbuf *b, const xd_cmp_ledger *g) {
    xd_sb_puts(b, "<p>From <code>");
    xd_sb_esc(b, g->path);
    xd_sb_puts(b, "</code>.</p>\n<table><tr><th>stage</th><th>tokens</th><th>wall time</th>"
                  "<th>tokens/s</th></tr>\n");
    double tok = 0, sec = 0;
    int any_tok = 0, any_sec = 0;
    for (size_t i = 0; i < g->n_stages; i++) {
        const xd_cmp_stage *s = &g->stages[i];
        xd_sb_puts(b, "<tr><td>");
        xd_sb_esc(b, s->name);
        xd_sb_puts(b, "</td><td>");
        put_count(b, s->tokens);
        xd_sb_puts(b, "</td><td>");
        put_num(b, s->seconds, "%.1f s");
        xd_sb_puts(b, "</td><td>");
        put_num(b, s->seconds > 0 ? s->tokens / s->seconds : NAN, "%.1f");
        xd_sb_puts(b, "</td></tr>\n");
        if (isfinite(s->tokens)) { tok += s->tokens; any_tok = 1; }
        if (isfinite(s->seconds)) { sec += s->seconds; any_sec = 1; }
    }
    xd_sb_puts(b, "<tr><th>total</th><th>");
    put_count(b, any_tok ? tok : NAN);
    xd_sb_puts(b, "</th><th>");
    put_num(b, any_sec ? sec : NAN, "%.1f s");
    xd_sb_puts(b, "</th><th>");
    put_num(b, any_tok && sec > 0 ? tok / sec : NAN, "%.1f");
    xd_sb_puts(b, "</th></tr>\n</table>\n");
    if (any_sec && sec >= 3600) xd_sb_printf(b, "<p class=\"note\">Total wall time: %.2f hours.</p>\n", sec / 3600);
}

char *xd_cmp_report_html(const xd_cmp *c, xd_report_plots *plots) {
    xd_sbuf b = {0};
    ctx x = {&b, plots, 0};
    if (plots) plots->n = 0;
    const xd_wintie *w = &c->wt;
    xd_sb_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>xdistill report: ");
    xd_sb_esc(&b, *c->student->model ? c->student->model : c->student->path);
    xd_sb_printf(&b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", xd_report_css);
    xd_sb_puts(&b, "<h1>xdistill: teacher vs student, win-and-tie</h1>\n");
    xd_sb_printf(&b, "<div class=\"verdict %s\">", w->lossless ? "ok" : "bad");
    xd_sb_esc(&b, c->verdict);
    xd_sb_puts(&b, "</div>\n<ul>\n");
    model_line(&b, "teacher", c->teacher);
    model_line(&b, "student", c->student);
    if (c->swa) model_line(&b, "SWA-only baseline", c->swa);
    size_t n_long = 0;
    for (size_t i = 0; i < c->n; i++) n_long += (size_t)c->teacher->tasks[i].long_context;
    xd_sb_puts(&b, "<li><b>suite</b>: ");
    xd_sb_esc(&b, c->teacher->suite);
    xd_sb_printf(&b, " (%zu tasks, %zu of them long-context)</li>\n</ul>\n", c->n, n_long);

    xd_sb_puts(&b, "<h2>Scores</h2>\n<div class=\"plots\">\n");
    bars_plot(&x, c);
    xd_sb_puts(&b, "</div>\n<h2>Win-and-tie</h2>\n<div class=\"plots\">\n");
    c_alpha_plot(&x, c);
    xd_sb_printf(&b, "<div class=\"note\"><p>For each task b, the student <i>wins or ties</i> at "
                     "tolerance α when A_S(b) ≥ (1−α)·A_T(b). C_α is the fraction of tasks won or "
                     "tied; the student is <b>lossless</b> when C_0 ≥ 0.5, and α* is the smallest α with "
                     "C_α ≥ 0.5 (computed exactly from the per-task thresholds α_b; dots: the %d-point "
                     "grid).</p><p>C_0 = %.4g (%d of %zu tasks); ", w->n_grid, w->c0, w->wins0, w->n);
    if (w->has_alpha_star) xd_sb_printf(&b, "α* = %.6g.", w->alpha_star);
    else xd_sb_printf(&b, "α* none within [0, %g] (%.4g would be needed).", w->alpha_max, w->alpha_needed);
    if (c->swa)
        xd_sb_printf(&b, " SWA-only baseline (mLSTM branch off): C_0 = %.4g, α* %s%.4g.", c->swa_wt.c0,
                     c->swa_wt.has_alpha_star ? "= " : "none; needed ",
                     c->swa_wt.has_alpha_star ? c->swa_wt.alpha_star : c->swa_wt.alpha_needed);
    xd_sb_puts(&b, "</p></div>\n</div>\n");

    xd_sb_puts(&b, "<h2>Training</h2>\n");
    if (!c->n_logs) xd_sb_puts(&b, "<p>No training logs given (<code>--logs</code>).</p>\n");
    for (size_t i = 0; i < c->n_logs; i++) {
        xd_sb_puts(&b, "<h3><code>");
        xd_sb_esc(&b, c->logs[i].path);
        xd_sb_printf(&b, "</code> (%zu records)</h3>\n<div class=\"plots\">\n", c->logs[i].n_lines);
        int before = x.n_plots;
        log_plots(&x, &c->logs[i]);
        if (x.n_plots == before) xd_sb_puts(&b, "<p>No loss, CE/KL or per-layer MSE fields in this log.</p>\n");
        xd_sb_puts(&b, "</div>\n");
    }

    xd_sb_puts(&b, "<h2>Per-task results</h2>\n");
    task_table(&b, c);
    xd_sb_puts(&b, "<h2>Settings</h2>\n<p>Teacher and student were scored with these settings "
                   "(compare refuses results whose settings differ).</p>\n");
    settings_table(&b, c);
    xd_sb_puts(&b, "<h2>Cost ledger</h2>\n");
    if (c->ledger) ledger_table(&b, c->ledger);
    else xd_sb_puts(&b, "<p>No ledger given (<code>--ledger</code>).</p>\n");
    xd_sb_puts(&b, "<p class=\"note\">Made by <code>xdistill compare</code>. This page is self-contained: "
                   "no scripts, fonts or styles are fetched.</p>\n</body>\n</html>\n");
    char *s = xd_sb_take(&b);
    if (!s) xd_err("out of memory writing the HTML report");
    return s;
}
