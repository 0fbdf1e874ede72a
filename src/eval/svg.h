/* A small SVG plotting module for the HTML report (report.h): HTML escaping
 * into a text buffer (core/strbuf.h), and plots made of axes with "nice" ticks, polylines, points, bars
 * with error whiskers, reference lines and a legend. Everything is written as
 * inline SVG (no scripts, no external fonts or styles), so the page works
 * offline.
 *
 * Colours are 0xRRGGBB. Each plot fills its plotting area with a caller-chosen
 * background colour, which lets a test find the plot in a screenshot. */
#ifndef XD_SVG_H
#define XD_SVG_H

#include <stddef.h>

#include "core/strbuf.h"

/* ---- text ------------------------------------------------------------------- */

/* Appends s escaped for HTML/XML text and quoted attribute values
 * (& < > " ' become entities; other bytes, UTF-8 included, pass unchanged;
 * control characters other than tab and newline become U+FFFD). */
void xd_sb_esc(xd_sbuf *b, const char *s);

/* ---- plots ---------------------------------------------------------------- */

typedef struct {
    int width, height;            /* whole SVG, pixels */
    const char *title;            /* drawn above the plot; may be NULL */
    const char *xlabel, *ylabel;  /* may be NULL */
    double x0, x1, y0, y1;        /* data range shown (x1 > x0, y1 > y0; y0 > 0 when logy) */
    int logy;                     /* logarithmic y axis */
    int x_categorical;            /* no numeric x ticks (labels come from xd_svg_xcat) */
    int bottom;                   /* bottom margin in pixels; 0: default (48) */
    unsigned bg;                  /* plotting-area fill */
} xd_svg_opts;

typedef struct {
    xd_sbuf *b;
    xd_svg_opts o;
    double left, right, top, bottom; /* plotting area, pixels */
} xd_svg;

/* Widens [*lo, *hi] outwards to multiples of a 1-2-5 step giving about n
 * intervals; returns the step. An empty range (lo == hi) is widened first. */
double xd_svg_nice_range(double *lo, double *hi, int n);
/* Widens [*lo, *hi] (both > 0) to whole decades. */
void xd_svg_log_range(double *lo, double *hi);

/* Opens <svg>, fills the plotting area, draws grid, ticks, tick labels, axis
 * labels and the title. */
void xd_svg_begin(xd_svg *p, xd_sbuf *b, const xd_svg_opts *o);
/* Data to pixel coordinates (values outside the range are clamped to it). */
double xd_svg_px(const xd_svg *p, double x);
double xd_svg_py(const xd_svg *p, double y);
/* A polyline through (x[i], y[i]); a non-finite point (or y <= 0 on a log
 * axis) breaks the line. At most max_pts points are drawn (evenly thinned,
 * the last one kept); 0 means all. */
void xd_svg_line(xd_svg *p, const double *x, const double *y, size_t n, unsigned color,
                 double width, int dashed, size_t max_pts);
/* Filled circles of radius r at the finite points. */
void xd_svg_points(xd_svg *p, const double *x, const double *y, size_t n, unsigned color, double r);
/* A horizontal / vertical line across the plot, with an optional label. */
void xd_svg_hline(xd_svg *p, double y, unsigned color, int dashed, const char *label);
void xd_svg_vline(xd_svg *p, double x, unsigned color, int dashed, const char *label);
/* A bar over [xa, xb] from the bottom of the axis to y, and a whisker from lo
 * to hi where both are finite; tip (may be NULL) becomes a hover tooltip. */
void xd_svg_bar(xd_svg *p, double xa, double xb, double y, double lo, double hi, unsigned color,
                const char *tip);
/* A short horizontal mark over [xa, xb] at y (e.g. chance level). */
void xd_svg_mark(xd_svg *p, double xa, double xb, double y, unsigned color);
/* A category label under the x axis at x, slanted when rotate is set. */
void xd_svg_xcat(xd_svg *p, double x, const char *label, int rotate);
/* Text at data coordinates (anchor: "start", "middle" or "end"). */
void xd_svg_text(xd_svg *p, double x, double y, const char *text, unsigned color, const char *anchor);
/* A legend in one row above the plot's right corner (dashed may be NULL). */
void xd_svg_legend(xd_svg *p, size_t n, const char *const *names, const unsigned *colors,
                   const int *dashed);
void xd_svg_end(xd_svg *p);

#endif
