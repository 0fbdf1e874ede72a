/* Name cloze on the King James Bible (kjv_cloze_near, kjv_cloze_far).
 *
 * A "name" is a capitalised word (3+ letters) whose lower-case form never
 * occurs in the KJV (so Abraham and Jordan are names; God, Lord, Son are
 * not). An example takes an occurrence of a name and asks for it: the
 * context is the text before it, the choices are that name and three other
 * names, first those of the context, then those of the rest of the chapter,
 * then any KJV names. The name occurred before, inside the context:
 *   near: the whole context fits in 3/4 W tokens (the window sees it all);
 *   far:  the previous mention lies at least 1.5 W tokens back and the
 *         context, from the chapter's start where it fits (else from a verse
 *         start, possibly in the previous chapter), is at most 8 W tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "eval/taskgen_int.h"

#define IS_UP(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_LO(c) ((c) >= 'a' && (c) <= 'z')
#define IS_AL(c) (IS_UP(c) || IS_LO(c))

typedef struct {
    const char *w; /* first occurrence in the corpus */
    unsigned len;
    unsigned char lower, cap; /* seen in lower case / capitalised form */
    int name;                 /* name id, or -1 */
    size_t count;             /* capitalised occurrences */
} word_ent;

typedef struct {
    word_ent *t;
    size_t cap; /* power of two */
} word_tab;

typedef struct {
    size_t pos;
    unsigned len;
    int id;
    long prev; /* index of the previous occurrence of the same name, or -1 */
} occ;

typedef struct {
    const tg_corpus *c;
    word_tab tab;
    const char **name_w; /* per name id: spelling (pointer into the corpus) */
    unsigned *name_len;
    size_t *name_count;
    int n_names;
    occ *o;
    size_t n_occ;
    size_t *ch_lo; /* occurrences of chapter i: [ch_lo[i], ch_lo[i + 1]) */
} names;

/* FNV-1a 64 of the bytes with bit 0x20 set (ASCII letters lower-cased; eq_fold's equality). */
static uint64_t hash_fold(const char *s, unsigned n) {
    uint64_t h = XD_FNV1A64_INIT;
    for (unsigned i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(s[i] | 0x20);
        h = xd_fnv1a64(h, &c, 1);
    }
    return h;
}

static int eq_fold(const char *a, const char *b, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return 0;
    return 1;
}

/* Finds (or inserts) a word's entry; NULL when out of memory. */
static word_ent *tab_get(word_tab *t, const char *w, unsigned len, size_t *used) {
    if (2 * (*used + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1 << 14;
        word_ent *nt = calloc(cap, sizeof *nt);
        if (!nt) return NULL;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->t[i].w) continue;
            size_t h = (size_t)hash_fold(t->t[i].w, t->t[i].len) & (cap - 1);
            while (nt[h].w) h = (h + 1) & (cap - 1);
            nt[h] = t->t[i];
        }
        free(t->t);
        t->t = nt;
        t->cap = cap;
    }
    size_t h = (size_t)hash_fold(w, len) & (t->cap - 1);
    while (t->t[h].w && !(t->t[h].len == len && eq_fold(t->t[h].w, w, len)))
        h = (h + 1) & (t->cap - 1);
    if (!t->t[h].w) {
        t->t[h] = (word_ent){.w = w, .len = len, .name = -1};
        (*used)++;
    }
    return &t->t[h];
}

static int is_cap_form(const char *w, unsigned n) {
    if (!IS_UP(w[0])) return 0;
    for (unsigned i = 1; i < n; i++)
        if (!IS_LO(w[i])) return 0;
    return 1;
}

static int is_lower_form(const char *w, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        if (!IS_LO(w[i])) return 0;
    return 1;
}

static int stop_name(const char *w, unsigned n) {
    static const char *const stop[] = {"Amen", "Selah", "Alleluia", "Hosanna", "Hallelujah"};
    for (size_t i = 0; i < sizeof stop / sizeof *stop; i++)
        if (strlen(stop[i]) == n && !memcmp(stop[i], w, n)) return 1;
    return 0;
}

static void names_free(names *nm) {
    free(nm->tab.t);
    free(nm->name_w);
    free(nm->name_len);
    free(nm->name_count);
    free(nm->o);
    free(nm->ch_lo);
    memset(nm, 0, sizeof *nm);
}

#define NEXT_WORD(s, n, i, b)                                                                      \
    for (; i < n && !IS_AL(s[i]); i++) {}                                                          \
    for (b = i; i < n && IS_AL(s[i]); i++) {}

static int names_build(names *nm, const tg_corpus *c) {
    memset(nm, 0, sizeof *nm);
    nm->c = c;
    const char *s = c->s;
    size_t n = c->n, used = 0, b, cap_o = 0, name_cap = 0, doc = 0;
    long *last = NULL; /* per name id: its latest occurrence */
    /* pass 1: which spellings occur in lower case and capitalised */
    for (size_t i = 0; i < n;) {
        NEXT_WORD(s, n, i, b);
        if (i == b || i - b > 40) continue;
        unsigned len = (unsigned)(i - b);
        word_ent *e = tab_get(&nm->tab, s + b, len, &used);
        if (!e) goto oom;
        if (is_lower_form(s + b, len))
            e->lower = 1;
        else if (is_cap_form(s + b, len))
            e->cap = 1, e->count++;
    }
    /* pass 2: name occurrences, ids in order of first occurrence */
    if (!(nm->ch_lo = calloc(c->n_doc + 1, sizeof *nm->ch_lo))) goto oom;
    for (size_t i = 0; i < n;) {
        NEXT_WORD(s, n, i, b);
        while (doc < c->n_doc && b >= c->doc_end[doc]) nm->ch_lo[++doc] = nm->n_occ;
        if (i == b || i - b > 40) continue;
        unsigned len = (unsigned)(i - b);
        if (len < 3 || !is_cap_form(s + b, len) || stop_name(s + b, len)) continue;
        word_ent *e = tab_get(&nm->tab, s + b, len, &used);
        if (!e) goto oom;
        if (e->lower) continue;
        if (e->name < 0) {
            if ((size_t)nm->n_names == name_cap) {
                name_cap = name_cap ? 2 * name_cap : 1024;
                const char **nw = realloc(nm->name_w, name_cap * sizeof *nw);
                if (!nw) goto oom;
                nm->name_w = nw;
                unsigned *nl = realloc(nm->name_len, name_cap * sizeof *nl);
                if (!nl) goto oom;
                nm->name_len = nl;
                size_t *nc = realloc(nm->name_count, name_cap * sizeof *nc);
                if (!nc) goto oom;
                nm->name_count = nc;
                long *nlast = realloc(last, name_cap * sizeof *nlast);
                if (!nlast) goto oom;
                last = nlast;
            }
            e->name = nm->n_names++;
            nm->name_w[e->name] = e->w;
            nm->name_len[e->name] = e->len;
            nm->name_count[e->name] = e->count;
            last[e->name] = -1;
        }
        if (nm->n_occ == cap_o) {
            cap_o = cap_o ? 2 * cap_o : 1 << 15;
            occ *no = realloc(nm->o, cap_o * sizeof *no);
            if (!no) goto oom;
            nm->o = no;
        }
        nm->o[nm->n_occ] = (occ){b, len, e->name, last[e->name]};
        last[e->name] = (long)nm->n_occ++;
    }
    while (doc < c->n_doc) nm->ch_lo[++doc] = nm->n_occ;
    free(last);
    if (nm->n_names < 8) {
        names_free(nm);
        return xd_err("the King James Bible text has only %d names; is it complete?", nm->n_names);
    }
    return 0;
oom:
    free(last);
    names_free(nm);
    return xd_err("out of memory (KJV names)");
}

/* ---- one example -------------------------------------------------------------- */

static size_t line_start(const char *s, size_t p) {
    while (p && s[p - 1] != '\n') p--;
    return p;
}

static size_t approx(const char *s, size_t a, size_t b) { return xd_tg_approx_tokens(s + a, b - a); }

/* Context start for occurrence j of chapter ch, or (size_t)-1 if j is not a
 * valid target. */
static size_t context_start(const names *nm, size_t ch, size_t j, int far, int window) {
    const char *s = nm->c->s;
    const occ *o = &nm->o[j];
    size_t p = o->pos, beg = nm->c->doc_beg[ch], none = (size_t)-1;
    if (p <= beg || s[p - 1] != ' ' || o->prev < 0) return none;
    size_t q = nm->o[o->prev].pos, qend = q + nm->o[o->prev].len;
    if (far) {
        size_t gap = (size_t)xd_tg_far_gap(window), cap = (size_t)xd_tg_cloze_far_cap(window);
        /* approx(a, b) is at least (b - a) / 4: skip the exact count when far enough */
        if ((p - qend) / 4 < gap && approx(s, qend, p) < gap) return none;
        size_t lq = line_start(s, q);
        if (p - lq > 4 * cap + 4 || approx(s, lq, p) > cap) return none;
        if (beg <= lq && approx(s, beg, p) <= cap) return beg;
        size_t best = lq, x = lq;
        while (x > 0) { /* earlier verses while they fit; blank lines skipped */
            size_t z = line_start(s, x - 1);
            x = z;
            if (s[z] == '\n') continue;
            if (p - z > 4 * cap + 4 || approx(s, z, p) > cap) break;
            best = z;
        }
        return best;
    }
    size_t cap = (size_t)xd_tg_cloze_near_cap(window);
    if (q < beg || approx(s, q, p) > cap) return none;
    size_t x = p > beg + 4 * cap ? p - 4 * cap : beg;
    for (; x < q; x++)
        if ((x == beg || s[x - 1] == ' ' || s[x - 1] == '\n') && s[x] != ' ' && s[x] != '\n' &&
            approx(s, x, p) <= cap)
            return x;
    return q;
}

static int has(const int *v, int n, int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

/* Three distractor name ids: names of [s0, p), then of the chapter, then any
 * name seen at least 3 times. */
static int pick_distractors(const names *nm, xd_rng *r, size_t ch, size_t j, size_t s0,
                            int out[3]) {
    int target = nm->o[j].id, got = 0;
    for (int pass = 0; pass < 2 && got < 3; pass++) {
        size_t lo = nm->ch_lo[ch], hi = nm->ch_lo[ch + 1];
        if (pass == 0) /* the context may reach into earlier chapters */
            while (lo > 0 && nm->o[lo - 1].pos >= s0) lo--;
        size_t cand_n = 0, *cand = malloc((hi - lo + 1) * sizeof *cand);
        if (!cand) return xd_err("out of memory");
        for (size_t k = lo; k < hi; k++) {
            int in_ctx = nm->o[k].pos >= s0 && k < j;
            if (in_ctx == (pass == 0) && nm->o[k].id != target) cand[cand_n++] = k;
        }
        xd_tg_shuffle(r, cand, cand_n);
        for (size_t k = 0; k < cand_n && got < 3; k++)
            if (!has(out, got, nm->o[cand[k]].id)) out[got++] = nm->o[cand[k]].id;
        free(cand);
    }
    for (int tries = 0; got < 3 && tries < 100000; tries++) {
        int id = (int)xd_rng_below(r, (uint64_t)nm->n_names);
        if (id != target && nm->name_count[id] >= 3 && !has(out, got, id)) out[got++] = id;
    }
    return got == 3 ? 0 : xd_err("KJV: too few names for distractors");
}

/* Examples go round the chapters in a shuffled order, one per chapter and
 * round (a target occurrence is used once), until n are made. */
static int gen_cloze(const tg_ctx *c, xd_rng *r, tg_task *t, int far) {
    names nm;
    if (names_build(&nm, c->kjv)) return -1;
    const tg_corpus *kc = c->kjv;
    size_t *order = malloc(kc->n_doc * sizeof *order), *cand = NULL, cand_cap = 0;
    unsigned char *used = calloc(nm.n_occ + 1, 1);
    xd_sbuf ctx = {0}, ch[4] = {{0}};
    int rc = order && used ? 0 : xd_err("out of memory");
    for (size_t i = 0; !rc && i < kc->n_doc; i++) order[i] = i;
    if (!rc) xd_tg_shuffle(r, order, kc->n_doc);
    for (size_t made = 1; !rc && made && t->n < (size_t)c->n;) { /* rounds */
        made = 0;
        for (size_t k = 0; !rc && k < kc->n_doc && t->n < (size_t)c->n; k++) {
            size_t chap = order[k], lo = nm.ch_lo[chap], hi = nm.ch_lo[chap + 1], n_cand = 0;
            if (hi - lo > cand_cap) {
                free(cand);
                cand_cap = hi - lo;
                if (!(cand = malloc(cand_cap * sizeof *cand))) {
                    rc = xd_err("out of memory");
                    break;
                }
            }
            for (size_t j = lo; j < hi; j++)
                if (!used[j] && context_start(&nm, chap, j, far, c->window) != (size_t)-1)
                    cand[n_cand++] = j;
            if (!n_cand) continue;
            size_t j = cand[xd_rng_below(r, n_cand)];
            size_t s0 = context_start(&nm, chap, j, far, c->window), p = nm.o[j].pos;
            used[j] = 1;
            made++;
            int d[3];
            if ((rc = pick_distractors(&nm, r, chap, j, s0, d))) break;
            int answer = (int)xd_rng_below(r, 4);
            const char *choices[4];
            for (int i = 0, m = 0; i < 4 && !rc; i++) {
                int id = i == answer ? nm.o[j].id : d[m++];
                xd_sb_clear(&ch[i]);
                rc = xd_sb_printf(&ch[i], " %.*s", (int)nm.name_len[id], nm.name_w[id]);
                choices[i] = ch[i].s;
            }
            xd_sb_clear(&ctx);
            if (!rc) rc = xd_sb_add(&ctx, kc->s + s0, p - 1 - s0);
            if (!rc) rc = xd_tg_emit_choice(t, ctx.s, choices, 4, answer);
        }
    }
    if (!rc && t->n < (size_t)c->n)
        rc = xd_err("the King James Bible gave only %zu %s-cloze examples with --window %d; "
                    "use a smaller --n",
                    t->n, far ? "far" : "near", c->window);
    free(cand);
    free(order);
    free(used);
    xd_sb_free(&ctx);
    for (int i = 0; i < 4; i++) xd_sb_free(&ch[i]);
    names_free(&nm);
    return rc;
}

int xd_tg_gen_cloze_near(const tg_ctx *c, xd_rng *r, tg_task *t) { return gen_cloze(c, r, t, 0); }
int xd_tg_gen_cloze_far(const tg_ctx *c, xd_rng *r, tg_task *t) { return gen_cloze(c, r, t, 1); }
