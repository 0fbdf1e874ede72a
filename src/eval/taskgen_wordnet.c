/* WordNet definition tasks: parse WordNet 3.0's index.* and data.* files
 * (Debian package wordnet-base) and write the two multiple-choice tasks
 * wordnet_define (gloss -> word) and wordnet_gloss (word -> gloss).
 *
 * index.POS lines: lemma pos synset_cnt p_cnt [ptr_symbol x p_cnt] sense_cnt
 *   tagsense_cnt synset_offset [synset_offset ...]; the offsets are in order
 *   of frequency and are byte offsets into data.POS.
 * data.POS lines: offset lex_filenum ss_type w_cnt(hex) [word lex_id x w_cnt]
 *   p_cnt ... | gloss; the gloss is a definition, then "; "-separated quoted
 *   examples. Lines that start with two spaces are the license header. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/taskgen_int.h"

#define WN_MIN_GLOSS 15
#define WN_MAX_GLOSS 150
/* senses seen in the tagged corpus (index.* field tagsense_cnt): 2+ keeps common words */
#define WN_MIN_TAGGED 2

typedef struct {
    size_t lemma, gloss, synset;
    char pos;
} entry_off;

/* The n-th space-separated field of a line (n from 0), its length in *len. */
static const char *field(const char *line, int n, size_t *len) {
    const char *p = line;
    for (int i = 0;; i++) {
        while (*p == ' ') p++;
        if (!*p || *p == '\n') return NULL;
        size_t k = strcspn(p, " \n");
        if (i == n) {
            *len = k;
            return p;
        }
        p += k;
    }
}

static int plain_word(const char *s, size_t n) {
    if (n < 3 || n > 14) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z') return 0;
    return 1;
}

/* True if a word of the gloss gives the lemma away (shares its first
 * min(5, |lemma|) letters). */
static int gloss_leaks(const char *gloss, size_t glen, const char *lemma, size_t llen) {
    size_t need = llen < 5 ? llen : 5;
    for (size_t i = 0; i < glen;) {
        while (i < glen && !isalpha((unsigned char)gloss[i])) i++;
        size_t j = 0;
        while (i + j < glen && isalpha((unsigned char)gloss[i + j])) j++;
        size_t c = 0;
        while (c < j && c < llen && tolower((unsigned char)gloss[i + c]) == lemma[c]) c++;
        if (j && c >= need) return 1;
        i += j;
    }
    return 0;
}

/* Parses the data line at offset: the synset's words into pool as
 * "|w1|w2|" (lower case, '_' as ' ', adjective markers dropped) and the
 * definition part of the gloss. 0 if usable, 1 if skipped, -1 on error. */
static int parse_synset(const char *data, size_t dlen, long off, const char *lemma, size_t llen,
                        xd_sbuf *pool, entry_off *e) {
    if (off < 0 || (size_t)off >= dlen || (off && data[off - 1] != '\n')) return 1;
    const char *line = data + off;
    size_t k;
    const char *f = field(line, 3, &k);
    if (!f) return 1;
    int w_cnt = (int)strtol(f, NULL, 16);
    const char *eol = memchr(line, '\n', dlen - (size_t)off);
    if (!eol) eol = data + dlen;
    const char *bar = memmem(line, (size_t)(eol - line), " | ", 3);
    if (!bar || w_cnt < 1) return 1;
    const char *g = bar + 3, *ge = eol;
    const char *q = memchr(g, '"', (size_t)(ge - g));
    if (q) ge = q;
    while (ge > g && (ge[-1] == ' ' || ge[-1] == ';')) ge--;
    size_t glen = (size_t)(ge - g);
    if (glen < WN_MIN_GLOSS || glen > WN_MAX_GLOSS || gloss_leaks(g, glen, lemma, llen)) return 1;
    e->synset = pool->n;
    if (xd_sb_add(pool, "|", 1)) return -1;
    for (int i = 0; i < w_cnt; i++) {
        const char *w = field(line, 4 + 2 * i, &k);
        if (!w) return 1;
        for (size_t j = 0; j < k && w[j] != '('; j++) {
            char ch = w[j] == '_' ? ' ' : (char)tolower((unsigned char)w[j]);
            if (xd_sb_add(pool, &ch, 1)) return -1;
        }
        if (xd_sb_add(pool, "|", 1)) return -1;
    }
    if (xd_sb_add(pool, "", 1)) return -1; /* the string's NUL */
    e->gloss = pool->n;
    if (xd_sb_add(pool, g, glen) || xd_sb_add(pool, "", 1)) return -1;
    return 0;
}

static int load_pos(const char *dir, const char *pos, char code, xd_sbuf *pool, entry_off **v,
                    size_t *n, size_t *cap) {
    char path[4200];
    char *index = NULL, *data = NULL;
    size_t ilen, dlen;
    int rc = -1;
    snprintf(path, sizeof path, "%s/index.%s", dir, pos);
    if (xd_read_file(path, &index, &ilen)) goto done;
    snprintf(path, sizeof path, "%s/data.%s", dir, pos);
    if (xd_read_file(path, &data, &dlen)) goto done;
    for (char *line = index; *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        size_t llen, k;
        const char *lemma = field(line, 0, &llen), *f;
        if (line[0] != ' ' && lemma && plain_word(lemma, llen) && (f = field(line, 3, &k))) {
            int p_cnt = atoi(f);
            const char *tag = field(line, 5 + p_cnt, &k), *off = field(line, 6 + p_cnt, &k);
            if (tag && off && atoi(tag) >= WN_MIN_TAGGED) {
                entry_off e = {.pos = code};
                int r = parse_synset(data, dlen, strtol(off, NULL, 10), lemma, llen, pool, &e);
                if (r < 0) goto done;
                if (!r) {
                    e.lemma = pool->n;
                    if (xd_sb_add(pool, lemma, llen) || xd_sb_add(pool, "", 1)) goto done;
                    if (*n == *cap) {
                        size_t nc = *cap ? 2 * *cap : 4096;
                        entry_off *nv = realloc(*v, nc * sizeof *nv);
                        if (!nv) {
                            xd_err("out of memory (WordNet)");
                            goto done;
                        }
                        *v = nv;
                        *cap = nc;
                    }
                    (*v)[(*n)++] = e;
                }
            }
        }
        if (!eol) break;
        line = eol + 1;
    }
    rc = 0;
done:
    free(index);
    free(data);
    return rc;
}

int xd_tg_load_wordnet(tg_wordnet *w, const char *src) {
    char dir[4096];
    if (src)
        snprintf(dir, sizeof dir, "%s/wordnet", src);
    else
        snprintf(dir, sizeof dir, "/usr/share/wordnet");
    static const char *const pos[] = {"noun", "verb", "adj"};
    static const char code[] = {'n', 'v', 'a'};
    xd_sbuf pool = {0};
    entry_off *v = NULL;
    size_t n = 0, cap = 0;
    memset(w, 0, sizeof *w);
    for (int i = 0; i < 3; i++)
        if (load_pos(dir, pos[i], code[i], &pool, &v, &n, &cap)) goto fail;
    if (n < 100) {
        xd_err("%s: only %zu usable WordNet entries (is it WordNet 3.0?)", dir, n);
        goto fail;
    }
    if (!(w->v = malloc(n * sizeof *w->v))) {
        xd_err("out of memory (WordNet)");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        w->v[i] =
            (tg_sense){pool.s + v[i].lemma, pool.s + v[i].gloss, pool.s + v[i].synset, v[i].pos};
    w->n = n;
    w->pool = pool.s;
    free(v);
    return 0;
fail:
    free(v);
    xd_sb_free(&pool);
    return -1;
}

void xd_tg_wordnet_free(tg_wordnet *w) {
    free(w->v);
    free(w->pool);
    memset(w, 0, sizeof *w);
}

/* ---- the two tasks --------------------------------------------------------------- */

static int in_synset(const char *synset, const char *lemma) {
    size_t k = strlen(lemma);
    for (const char *p = strstr(synset, lemma); p; p = strstr(p + 1, lemma))
        if (p[-1] == '|' && p[k] == '|') return 1;
    return 0;
}

/* Picks 3 distractor entries of the target's part of speech. by_gloss: the
 * choices are glosses (must differ), else lemmas (must differ). */
static int distractors(const tg_wordnet *w, xd_rng *r, size_t tgt, int by_gloss, size_t out[3]) {
    const tg_sense *t = &w->v[tgt];
    int got = 0;
    for (int tries = 0; got < 3 && tries < 100000; tries++) {
        size_t j = (size_t)xd_rng_below(r, w->n);
        const tg_sense *d = &w->v[j];
        if (d->pos != t->pos || in_synset(t->synset, d->lemma) || in_synset(d->synset, t->lemma))
            continue;
        int dup = by_gloss ? !strcmp(d->gloss, t->gloss) : !strcmp(d->lemma, t->lemma);
        for (int i = 0; i < got && !dup; i++)
            dup = by_gloss ? !strcmp(w->v[out[i]].gloss, d->gloss)
                           : !strcmp(w->v[out[i]].lemma, d->lemma);
        if (!dup) out[got++] = j;
    }
    return got == 3 ? 0 : xd_err("WordNet: no distractors found for \"%s\"", t->lemma);
}

static int gen_wordnet(const tg_ctx *c, xd_rng *r, tg_task *t, int by_gloss) {
    const tg_wordnet *w = c->wn;
    if ((size_t)c->n > w->n)
        return xd_err("WordNet has %zu usable words, fewer than --n %d", w->n, c->n);
    size_t *order = malloc(w->n * sizeof *order);
    if (!order) return xd_err("out of memory");
    for (size_t i = 0; i < w->n; i++) order[i] = i;
    xd_tg_shuffle(r, order, w->n);
    xd_sbuf ctx = {0}, ch[4] = {{0}};
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        size_t tgt = order[e], d[3];
        if ((rc = distractors(w, r, tgt, by_gloss, d))) break;
        int answer = (int)xd_rng_below(r, 4);
        const char *choices[4];
        for (int i = 0, k = 0; i < 4; i++) {
            const tg_sense *s = &w->v[i == answer ? tgt : d[k++]];
            xd_sb_clear(&ch[i]);
            rc = rc ? rc : xd_sb_printf(&ch[i], " %s", by_gloss ? s->gloss : s->lemma);
            choices[i] = ch[i].s;
        }
        xd_sb_clear(&ctx);
        const tg_sense *s = &w->v[tgt];
        rc = rc         ? rc
             : by_gloss ? xd_sb_printf(&ctx, "What does the word \"%s\" mean?\nAnswer:", s->lemma)
                        : xd_sb_printf(&ctx, "Which word means \"%s\"?\nAnswer:", s->gloss);
        if (!rc) rc = xd_tg_emit_choice(t, ctx.s, choices, 4, answer);
    }
    xd_sb_free(&ctx);
    for (int i = 0; i < 4; i++) xd_sb_free(&ch[i]);
    free(order);
    return rc;
}

int xd_tg_gen_wordnet_define(const tg_ctx *c, xd_rng *r, tg_task *t) {
    return gen_wordnet(c, r, t, 0);
}
int xd_tg_gen_wordnet_gloss(const tg_ctx *c, xd_rng *r, tg_task *t) { return gen_wordnet(c, r, t, 1); }
