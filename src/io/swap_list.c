/* Word swap lists (swap_list.h). */
#include "swap_list.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/strbuf.h"

static int is_word_byte(unsigned char c) { return isalpha(c) || c >= 0x80; }

typedef struct {
    char *from, *to;
    unsigned long line;
} swap_entry;

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const swap_entry *)a)->from, ((const swap_entry *)b)->from);
}

void xd_swap_list_free(xd_swap_list *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) free(s->from[i]), free(s->to[i]);
    free(s->from);
    free(s->to);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* The next run of non-blank bytes in [*p, end) (NULL at the end of the line). */
static const char *next_field(const char **p, const char *end, size_t *len) {
    const char *a = *p;
    while (a < end && (*a == ' ' || *a == '\t' || *a == '\r')) a++;
    const char *b = a;
    while (b < end && *b != ' ' && *b != '\t' && *b != '\r') b++;
    *p = b;
    *len = (size_t)(b - a);
    return b > a ? a : NULL;
}

static int check_word(const char *path, unsigned long line, const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_word_byte((unsigned char)w[i]))
            return xd_err("%s: line %lu: '%.*s' is not one word (letters only; a word such as "
                          "\"Mr.\" is listed without its punctuation)", path, line, (int)n, w);
    return 0;
}

int xd_swap_list_load(const char *path, xd_swap_list *s) {
    memset(s, 0, sizeof *s);
    char *data = NULL;
    size_t len = 0;
    if (xd_read_file(path, &data, &len)) return -1;
    swap_entry *e = NULL;
    int64_t n = 0, cap = 0;
    int rc = -1;
    unsigned long line = 0;
    for (const char *p = data, *end = data + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        const char *q = p, *f[3];
        size_t fl[3];
        int k = 0;
        while (k < 3 && (f[k] = next_field(&q, eol, &fl[k]))) k++;
        p = eol + 1;
        if (k == 0 || f[0][0] == '#') continue;
        if (k != 2) {
            xd_err("%s: line %lu: expected two words (FROM TO), found %s", path, line,
                   k == 1 ? "one" : "more than two");
            goto done;
        }
        if (check_word(path, line, f[0], fl[0]) || check_word(path, line, f[1], fl[1])) goto done;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            swap_entry *ne = realloc(e, (size_t)cap * sizeof *e);
            if (!ne) { xd_err("out of memory"); goto done; }
            e = ne;
        }
        e[n].from = strndup(f[0], fl[0]);
        e[n].to = strndup(f[1], fl[1]);
        e[n].line = line;
        n++;
        if (!e[n - 1].from || !e[n - 1].to) { xd_err("out of memory"); goto done; }
    }
    if (n == 0) { xd_err("%s: no swaps (expected lines \"FROM TO\")", path); goto done; }
    qsort(e, (size_t)n, sizeof *e, cmp_entry);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(e[i].from, e[i - 1].from)) {
            unsigned long a = e[i].line < e[i - 1].line ? e[i].line : e[i - 1].line,
                          b = e[i].line < e[i - 1].line ? e[i - 1].line : e[i].line;
            xd_err("%s: line %lu: '%s' is swapped already on line %lu (one replacement a word)",
                   path, b, e[i].from, a);
            goto done;
        }
    s->path = strdup(path);
    s->from = malloc((size_t)n * sizeof *s->from);
    s->to = malloc((size_t)n * sizeof *s->to);
    if (!s->path || !s->from || !s->to) { xd_err("out of memory"); goto done; }
    for (int64_t i = 0; i < n; i++) s->from[i] = e[i].from, s->to[i] = e[i].to;
    s->n = n;
    n = 0; /* handed over */
    rc = 0;
done:
    for (int64_t i = 0; i < n; i++) free(e[i].from), free(e[i].to);
    free(e);
    free(data);
    if (rc) xd_swap_list_free(s);
    return rc;
}

static int cmp_word(const void *key, const void *elem) {
    return strcmp(key, *(char *const *)elem);
}

/* w's replacement, or NULL: a binary search of the sorted FROM words. */
static const char *lookup(const xd_swap_list *s, const char *w) {
    char **hit = bsearch(w, s->from, (size_t)s->n, sizeof *s->from, cmp_word);
    return hit ? s->to[hit - s->from] : NULL;
}

char *xd_swap_apply(const xd_swap_list *s, const char *text, int *n_swapped) {
    xd_sbuf b = {0};
    char word[256], low[256];
    int swapped = 0;
    for (const char *p = text; *p;) {
        if (!is_word_byte((unsigned char)*p)) {
            const char *q = p;
            while (*q && !is_word_byte((unsigned char)*q)) q++;
            xd_sb_add(&b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        const char *q = p;
        while (*q && is_word_byte((unsigned char)*q)) q++;
        size_t n = (size_t)(q - p);
        const char *to = NULL;
        int upper_first = 0, upper_all = 0;
        if (n < sizeof word) {
            memcpy(word, p, n);
            word[n] = 0;
            if (!(to = lookup(s, word))) {
                int caps = 0;
                for (size_t i = 0; i < n; i++) {
                    low[i] = (char)tolower((unsigned char)word[i]);
                    caps += isupper((unsigned char)word[i]) != 0;
                }
                low[n] = 0;
                if (strcmp(low, word) && (to = lookup(s, low))) {
                    upper_first = isupper((unsigned char)word[0]) != 0;
                    upper_all = n > 1 && caps == (int)n;
                }
            }
        }
        if (!to) {
            xd_sb_add(&b, p, n);
        } else {
            size_t at = b.n;
            xd_sb_puts(&b, to);
            if (!b.err && (upper_first || upper_all))
                for (size_t i = at; i < b.n; i++)
                    if (upper_all || i == at) b.s[i] = (char)toupper((unsigned char)b.s[i]);
            swapped++;
        }
        p = q;
    }
    if (n_swapped) *n_swapped = swapped;
    return xd_sb_take(&b);
}
