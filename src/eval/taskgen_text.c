/* Perplexity tasks on real text (ppl_kjv, ppl_licenses): each document is cut
 * into consecutive passages of whole sentences or verses of at least
 * xd_tg_ppl_len(W) approximate tokens (a document's short remainder is
 * dropped), and the examples are n of these passages drawn without
 * replacement, so no two overlap. */
#include <stdlib.h>

#include "eval/taskgen_int.h"

typedef struct {
    size_t a, b;
} span;

/* A passage may end before position x if x starts a line or a sentence. */
static int cut_point(const char *s, size_t beg, size_t x) {
    if (x == beg || s[x] == '\n' || s[x] == ' ') return 0;
    if (s[x - 1] == '\n') return 1;
    return x >= beg + 2 && s[x - 1] == ' ' &&
           (s[x - 2] == '.' || s[x - 2] == '?' || s[x - 2] == '!');
}

static size_t trim_end(const char *s, size_t a, size_t b) {
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n')) b--;
    return b;
}

static int passages(const tg_corpus *c, size_t target, span **out, size_t *n_out) {
    size_t n = 0, cap = 0;
    span *v = NULL;
    for (size_t d = 0; d < c->n_doc; d++) {
        size_t a = c->doc_beg[d], end = c->doc_end[d], digits = 0, other = 0;
        for (size_t x = a; x <= end; x++) {
            if (x == end || cut_point(c->s, c->doc_beg[d], x)) {
                size_t b = trim_end(c->s, a, x); /* the trimmed bytes are blanks: "other" */
                if (b > a && digits + (other - (x - b) + 3) / 4 >= target) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 1024;
                        span *nv = realloc(v, cap * sizeof *nv);
                        if (!nv) {
                            free(v);
                            return xd_err("out of memory (passages)");
                        }
                        v = nv;
                    }
                    v[n++] = (span){a, b};
                    a = x;
                    digits = other = 0;
                }
            }
            if (x < end) {
                char ch = c->s[x];
                if (ch >= '0' && ch <= '9')
                    digits++;
                else
                    other++;
            }
        }
    }
    *out = v;
    *n_out = n;
    return 0;
}

static int gen_ppl(const tg_ctx *c, const tg_corpus *corp, const char *what, xd_rng *r,
                   tg_task *t) {
    span *v = NULL;
    size_t n = 0;
    if (passages(corp, (size_t)xd_tg_ppl_len(c->window), &v, &n)) return -1;
    if (n < (size_t)c->n) {
        free(v);
        return xd_err("%s gave only %zu passages of %d tokens, fewer than --n %d", what, n,
                      xd_tg_ppl_len(c->window), c->n);
    }
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx) {
        free(v);
        return xd_err("out of memory");
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    xd_tg_shuffle(r, idx, n);
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        span p = v[idx[e]];
        rc = xd_tg_emit_perplexity(t, corp->s + p.a, p.b - p.a);
    }
    free(idx);
    free(v);
    return rc;
}

int xd_tg_gen_ppl_kjv(const tg_ctx *c, xd_rng *r, tg_task *t) {
    return gen_ppl(c, c->kjv, "the King James Bible", r, t);
}

int xd_tg_gen_ppl_licenses(const tg_ctx *c, xd_rng *r, tg_task *t) {
    return gen_ppl(c, c->lic, "the license texts", r, t);
}
