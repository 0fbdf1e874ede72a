/* Inline SVG plots (svg.h). */
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text ------------------------------------------------------------------- */

void xd_sb_esc(xd_sbuf *b, const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '&': xd_sb_puts(b, "&amp;"); break;
        case '<': xd_sb_puts(b, "&lt;"); break;
        case '>': xd_sb_puts(b, "&gt;"); break;
        case '"': xd_sb_puts(b, "&quot;"); break;
        case '\'': xd_sb_puts(b, "&#39;"); break;
        default:
            if ((*c < 0x20 && *c != '\t' && *c != '\n') || *c == 0x7f) xd_sb_puts(b, "\xef\xbf\xbd");
            else xd_sb_add(b, (const char *)c, 1);
        }
    }
}

/* ---- plots ---------------------------------------------------------------- */

#define C_AXIS 0x555555u
#define C_GRID 0xdededeu
#define C_TEXT 0x222222u
#define FONT "font-family=\"sans-serif\""

static double nice_step(double span, int n) {
    double raw = span / (n > 0 ? n : 1), mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

double xd_svg_nice_range(double *lo, double *hi, int n) {
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d;
        *hi += d;
    }
    double step = nice_step(*hi - *lo, n);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}

void xd_svg_log_range(double *lo, double *hi) {
    *lo = pow(10, floor(log10(*lo) + 1e-9));
    *hi = pow(10, ceil(log10(*hi) - 1e-9));
    if (!(*hi > *lo)) *hi = *lo * 10;
}

static void fmt_tick(char *buf, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v);
    if (v == 0) snprintf(buf, cap, "0");
    else if (a >= 1e6 || a < 1e-4) snprintf(buf, cap, "%.3g", v);
    else if (step >= 1) snprintf(buf, cap, "%.0f", v);
    else {
        int d = (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", d < 0 ? 0 : d > 8 ? 8 : d, v);
    }
}

static void rgb(char *buf, unsigned c) { snprintf(buf, 8, "#%06x", c & 0xffffffu); }

double xd_svg_px(const xd_svg *p, double x) {
    double t = (x - p->o.x0) / (p->o.x1 - p->o.x0);
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    return p->left + t * (p->right - p->left);
}

double xd_svg_py(const xd_svg *p, double y) {
    double t;
    if (p->o.logy) t = y > 0 ? (log10(y) - log10(p->o.y0)) / (log10(p->o.y1) - log10(p->o.y0)) : 0;
    else t = (y - p->o.y0) / (p->o.y1 - p->o.y0);
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    return p->bottom - t * (p->bottom - p->top);
}

static void ytick(xd_svg *p, double v, const char *label) {
    double y = xd_svg_py(p, v);
    char g[8], t[8];
    rgb(g, C_GRID);
    rgb(t, C_TEXT);
    xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                 p->left, y, p->right, y, g);
    xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\" text-anchor=\"end\" font-size=\"11\" "
                 "fill=\"%s\">", p->left - 6, y, t);
    xd_sb_esc(p->b, label);
    xd_sb_puts(p->b, "</text>\n");
}

static void xtick(xd_svg *p, double v, const char *label) {
    double x = xd_svg_px(p, v);
    char g[8], t[8];
    rgb(g, C_GRID);
    rgb(t, C_TEXT);
    xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                 x, p->top, x, p->bottom, g);
    xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" "
                 "fill=\"%s\">", x, p->bottom + 15, t);
    xd_sb_esc(p->b, label);
    xd_sb_puts(p->b, "</text>\n");
}

void xd_svg_begin(xd_svg *p, xd_sbuf *b, const xd_svg_opts *o) {
    memset(p, 0, sizeof *p);
    p->b = b;
    p->o = *o;
    if (!(p->o.x1 > p->o.x0)) p->o.x1 = p->o.x0 + 1;
    if (p->o.logy && !(p->o.y0 > 0)) p->o.y0 = 1e-6;
    if (!(p->o.y1 > p->o.y0)) p->o.y1 = p->o.logy ? p->o.y0 * 10 : p->o.y0 + 1;
    p->left = 64;
    p->right = o->width - 16;
    p->top = 46;
    p->bottom = o->height - (o->bottom > 0 ? o->bottom : 48);
    char bg[8], ax[8], tx[8];
    rgb(bg, o->bg);
    rgb(ax, C_AXIS);
    rgb(tx, C_TEXT);
    xd_sb_printf(b, "<svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" " FONT
                 " role=\"img\">\n", o->width, o->height, o->width, o->height);
    if (o->title) {
        xd_sb_puts(b, "<title>");
        xd_sb_esc(b, o->title);
        xd_sb_puts(b, "</title>\n");
        xd_sb_printf(b, "<text x=\"%.1f\" y=\"18\" font-size=\"14\" font-weight=\"bold\" fill=\"%s\">",
                     p->left, tx);
        xd_sb_esc(b, o->title);
        xd_sb_puts(b, "</text>\n");
    }
    xd_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                 p->left, p->top, p->right - p->left, p->bottom - p->top, bg);
    char lab[64];
    if (p->o.logy) {
        double l0 = log10(p->o.y0), l1 = log10(p->o.y1);
        int k0 = (int)ceil(l0 - 1e-9), k1 = (int)floor(l1 + 1e-9), few = l1 - l0 < 2.5;
        for (int k = k0 - 1; k <= k1; k++)
            for (int m = 1; m <= (few ? 5 : 1); m += (m == 1 ? 1 : 3)) {
                double v = m * pow(10, k);
                if (v < p->o.y0 * (1 - 1e-9) || v > p->o.y1 * (1 + 1e-9)) continue;
                if (k >= -3 && k <= 4) snprintf(lab, sizeof lab, "%g", v);
                else snprintf(lab, sizeof lab, "%de%d", m, k);
                ytick(p, v, lab);
            }
    } else {
        double step = nice_step(p->o.y1 - p->o.y0, 5);
        for (double v = ceil(p->o.y0 / step - 1e-9) * step; v <= p->o.y1 + step * 1e-9; v += step) {
            fmt_tick(lab, sizeof lab, v, step);
            ytick(p, v, lab);
        }
    }
    if (!o->x_categorical) {
        double step = nice_step(p->o.x1 - p->o.x0, (int)((p->right - p->left) / 90));
        for (double v = ceil(p->o.x0 / step - 1e-9) * step; v <= p->o.x1 + step * 1e-9; v += step) {
            fmt_tick(lab, sizeof lab, v, step);
            xtick(p, v, lab);
        }
    }
    xd_sb_printf(b, "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"%s\"/>\n", p->left, p->top,
                 p->bottom, p->right, ax);
    if (o->xlabel) {
        xd_sb_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\" fill=\"%s\">",
                     (p->left + p->right) / 2, o->height - 8, tx);
        xd_sb_esc(b, o->xlabel);
        xd_sb_puts(b, "</text>\n");
    }
    if (o->ylabel) {
        xd_sb_printf(b, "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\" "
                     "font-size=\"12\" fill=\"%s\">", (p->top + p->bottom) / 2, tx);
        xd_sb_esc(b, o->ylabel);
        xd_sb_puts(b, "</text>\n");
    }
}

static int point_ok(const xd_svg *p, double x, double y) {
    return isfinite(x) && isfinite(y) && (!p->o.logy || y > 0);
}

void xd_svg_line(xd_svg *p, const double *x, const double *y, size_t n, unsigned color,
                 double width, int dashed, size_t max_pts) {
    size_t stride = max_pts && n > max_pts ? (n + max_pts - 1) / max_pts : 1;
    char c[8];
    rgb(c, color);
    xd_sb_puts(p->b, "<path d=\"");
    int pen = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % stride && i != n - 1) continue;
        if (!point_ok(p, x[i], y[i])) { pen = 0; continue; }
        xd_sb_printf(p->b, "%s%.1f %.1f", pen ? "L" : "M", xd_svg_px(p, x[i]), xd_svg_py(p, y[i]));
        pen = any = 1;
    }
    if (!any) xd_sb_puts(p->b, "M0 0");
    xd_sb_printf(p->b, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-linejoin=\"round\"%s/>\n",
                 c, width, dashed ? " stroke-dasharray=\"6 4\"" : "");
}

void xd_svg_points(xd_svg *p, const double *x, const double *y, size_t n, unsigned color, double r) {
    char c[8];
    rgb(c, color);
    for (size_t i = 0; i < n; i++)
        if (point_ok(p, x[i], y[i]))
            xd_sb_printf(p->b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n",
                         xd_svg_px(p, x[i]), xd_svg_py(p, y[i]), r, c);
}

void xd_svg_hline(xd_svg *p, double y, unsigned color, int dashed, const char *label) {
    char c[8];
    rgb(c, color);
    double py = xd_svg_py(p, y);
    xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                 "stroke-width=\"1.5\"%s/>\n", p->left, py, p->right, py, c,
                 dashed ? " stroke-dasharray=\"6 4\"" : "");
    if (label) {
        xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" fill=\"%s\">",
                     p->right - 4, py - 4, c);
        xd_sb_esc(p->b, label);
        xd_sb_puts(p->b, "</text>\n");
    }
}

void xd_svg_vline(xd_svg *p, double x, unsigned color, int dashed, const char *label) {
    char c[8];
    rgb(c, color);
    double px = xd_svg_px(p, x);
    xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                 "stroke-width=\"1.5\"%s/>\n", px, p->top, px, p->bottom, c,
                 dashed ? " stroke-dasharray=\"6 4\"" : "");
    if (label) {
        int right_half = px > (p->left + p->right) / 2;
        xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"12\" fill=\"%s\">",
                     px + (right_half ? -5 : 5), p->top + 14, right_half ? "end" : "start", c);
        xd_sb_esc(p->b, label);
        xd_sb_puts(p->b, "</text>\n");
    }
}

void xd_svg_bar(xd_svg *p, double xa, double xb, double y, double lo, double hi, unsigned color,
                const char *tip) {
    char c[8], w[8];
    rgb(c, color);
    rgb(w, C_TEXT);
    double x0 = xd_svg_px(p, xa), x1 = xd_svg_px(p, xb), y0 = p->bottom;
    double yt = isfinite(y) ? xd_svg_py(p, y) : y0;
    xd_sb_puts(p->b, "<g>");
    if (tip) {
        xd_sb_puts(p->b, "<title>");
        xd_sb_esc(p->b, tip);
        xd_sb_puts(p->b, "</title>");
    }
    xd_sb_printf(p->b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", x0, yt,
                 x1 - x0, y0 - yt, c);
    if (isfinite(lo) && isfinite(hi)) {
        double xm = (x0 + x1) / 2, cw = (x1 - x0) * 0.25, ylo = xd_svg_py(p, lo), yhi = xd_svg_py(p, hi);
        xd_sb_printf(p->b, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"%s\" "
                     "stroke-width=\"1.5\" fill=\"none\"/>", xm, ylo, yhi, xm - cw, ylo, xm + cw,
                     xm - cw, yhi, xm + cw, w);
    }
    xd_sb_puts(p->b, "</g>\n");
}

void xd_svg_mark(xd_svg *p, double xa, double xb, double y, unsigned color) {
    char c[8];
    rgb(c, color);
    double py = xd_svg_py(p, y);
    xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                 "stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>\n", xd_svg_px(p, xa), py,
                 xd_svg_px(p, xb), py, c);
}

void xd_svg_xcat(xd_svg *p, double x, const char *label, int rotate) {
    char t[8];
    rgb(t, C_TEXT);
    double px = xd_svg_px(p, x);
    if (rotate)
        xd_sb_printf(p->b, "<text transform=\"translate(%.1f %.1f) rotate(-35)\" text-anchor=\"end\" "
                     "font-size=\"11\" fill=\"%s\">", px + 4, p->bottom + 14, t);
    else
        xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\" "
                     "fill=\"%s\">", px, p->bottom + 15, t);
    xd_sb_esc(p->b, label);
    xd_sb_puts(p->b, "</text>\n");
}

void xd_svg_text(xd_svg *p, double x, double y, const char *text, unsigned color, const char *anchor) {
    char c[8];
    rgb(c, color);
    xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"12\" fill=\"%s\">",
                 xd_svg_px(p, x), xd_svg_py(p, y), anchor, c);
    xd_sb_esc(p->b, text);
    xd_sb_puts(p->b, "</text>\n");
}

void xd_svg_legend(xd_svg *p, size_t n, const char *const *names, const unsigned *colors,
                   const int *dashed) {
    char c[8], t[8];
    rgb(t, C_TEXT);
    double x = p->left, y = 36;
    for (size_t i = 0; i < n; i++) {
        rgb(c, colors[i]);
        xd_sb_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                     "stroke-width=\"3\"%s/>", x, y - 4, x + 18, y - 4, c,
                     dashed && dashed[i] ? " stroke-dasharray=\"5 3\"" : "");
        xd_sb_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"%s\">", x + 23, y, t);
        xd_sb_esc(p->b, names[i]);
        xd_sb_puts(p->b, "</text>\n");
        x += 23 + 7.0 * (double)strlen(names[i]) + 16; /* ~7 px per character at 12 px */
    }
}

void xd_svg_end(xd_svg *p) { xd_sb_puts(p->b, "</svg>\n"); }
