/* Task sources: finding them, and loading the King James Bible and the
 * license texts into corpora (WordNet is read by taskgen_wordnet.c). */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/taskgen_int.h"

#define KJV_DATA "/usr/lib/bible.data"
#define SYS_WORDNET "/usr/share/wordnet"
#define SYS_LICENSES "/usr/share/common-licenses"
#define KJV_PKGS "bible-kjv bible-kjv-text"

static const char *const WN_FILES[] = {"index.noun", "data.noun", "index.verb",
                                       "data.verb",  "index.adj", "data.adj"};

/* Finds an executable on $PATH; 0 and its path in out, or -1. */
static int find_program(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t k = strcspn(path, ":");
        if (k && (size_t)snprintf(out, cap, "%.*s/%s", (int)k, path, name) < cap && xd_is_file(out) &&
            !access(out, X_OK))
            return 0;
        path += k + (path[k] == ':');
    }
    return -1;
}

/* Appends a formatted line to the list of missing sources. */
static void XD_PRINTF(3, 4) add_missing(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    if (n + 1 < cap) vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

int xd_tg_check_sources(const char *src) {
    char p[4096], miss[2048] = "";
    if (!src) {
        if (find_program("bible", p, sizeof p))
            add_missing(miss, sizeof miss, "\n  the `bible` program (Debian package bible-kjv)");
        if (!xd_is_file(KJV_DATA))
            add_missing(miss, sizeof miss, "\n  " KJV_DATA " (Debian package bible-kjv-text)");
        for (size_t i = 0; i < sizeof WN_FILES / sizeof *WN_FILES; i++) {
            snprintf(p, sizeof p, SYS_WORDNET "/%s", WN_FILES[i]);
            if (!xd_is_file(p)) {
                add_missing(miss, sizeof miss, "\n  %s (Debian package wordnet-base)", p);
                break;
            }
        }
        if (!xd_is_dir(SYS_LICENSES))
            add_missing(miss, sizeof miss, "\n  " SYS_LICENSES "/ (Debian package base-files)");
        if (!*miss) return 0;
        return xd_err("task sources are missing:%s\ninstall them with `apt-get install -y "
                      "--no-install-recommends " KJV_PKGS " wordnet-base` (or pass --sources DIR, "
                      "see docs/tasks.md)",
                      miss);
    }
    if (!xd_is_dir(src)) return xd_err("--sources %s: no such directory", src);
    snprintf(p, sizeof p, "%s/kjv.txt", src);
    if (!xd_is_file(p))
        add_missing(
            miss, sizeof miss,
            "\n  %s: the King James Bible, one chapter a paragraph "
            "(write it with `scripts/kjv-corpus.sh %s`, which needs the Debian packages " KJV_PKGS
            ")",
            p, p);
    for (size_t i = 0; i < sizeof WN_FILES / sizeof *WN_FILES; i++) {
        snprintf(p, sizeof p, "%s/wordnet/%s", src, WN_FILES[i]);
        if (!xd_is_file(p)) {
            add_missing(miss, sizeof miss,
                        "\n  %s: WordNet 3.0 (link or copy " SYS_WORDNET
                        " from the Debian package wordnet-base to %s/wordnet)",
                        p, src);
            break;
        }
    }
    snprintf(p, sizeof p, "%s/licenses", src);
    if (!xd_is_dir(p))
        add_missing(miss, sizeof miss,
                    "\n  %s/: a directory of plain-text files for perplexity "
                    "(e.g. a link to " SYS_LICENSES ")",
                    p);
    if (!*miss) return 0;
    return xd_err("--sources %s lacks:%s", src, miss);
}

/* ---- corpus building ---------------------------------------------------------- */

typedef struct {
    xd_sbuf text;
    size_t *beg, *end, n, cap;
    int open; /* a document has lines */
} builder;

static int b_grow(builder *b) {
    if (b->n < b->cap) return 0;
    size_t cap = b->cap ? 2 * b->cap : 256;
    size_t *nb = realloc(b->beg, cap * sizeof *nb), *ne;
    if (!nb) return xd_err("out of memory (corpus)");
    b->beg = nb;
    if (!(ne = realloc(b->end, cap * sizeof *ne))) return xd_err("out of memory (corpus)");
    b->end = ne;
    b->cap = cap;
    return 0;
}

static int b_end_doc(builder *b) {
    if (!b->open) return 0;
    b->end[b->n++] = b->text.n;
    b->open = 0;
    return 0;
}

/* Adds one line (control characters become spaces, trailing blanks dropped)
 * to the current document, opening one if needed; sep joins it to the
 * previous line of the same document. */
static int b_add_line(builder *b, const char *s, size_t n, const char *sep) {
    while (n && (unsigned char)s[n - 1] <= ' ') n--;
    if (!n) return 0;
    if (b->open) {
        if (xd_sb_puts(&b->text, sep)) return -1;
    } else {
        if (b_grow(b) || (b->n && xd_sb_add(&b->text, "\n\n", 2))) return -1;
        b->beg[b->n] = b->text.n;
        b->open = 1;
    }
    size_t at = b->text.n;
    if (xd_sb_add(&b->text, s, n)) return -1;
    for (size_t i = at; i < b->text.n; i++)
        if ((unsigned char)b->text.s[i] < ' ' || b->text.s[i] == 0x7f) b->text.s[i] = ' ';
    return 0;
}

static int b_finish(builder *b, tg_corpus *c, const char *what) {
    if (b_end_doc(b)) goto fail;
    if (!b->n) {
        xd_err("%s: no text found", what);
        goto fail;
    }
    c->s = b->text.s;
    c->n = b->text.n;
    c->doc_beg = b->beg;
    c->doc_end = b->end;
    c->n_doc = b->n;
    return 0;
fail:
    xd_sb_free(&b->text);
    free(b->beg);
    free(b->end);
    return -1;
}

static void b_free(builder *b) {
    xd_sb_free(&b->text);
    free(b->beg);
    free(b->end);
}

void xd_tg_corpus_free(tg_corpus *c) {
    free(c->s);
    free(c->doc_beg);
    free(c->doc_end);
    memset(c, 0, sizeof *c);
}

/* ---- the King James Bible ------------------------------------------------------ */

/* kjv.txt: chapters are paragraphs (blank lines between), verses are lines. */
static int parse_paragraphs(builder *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        size_t k = i;
        while (k < e && (unsigned char)s[k] <= ' ') k++;
        if (k == e) {
            if (b_end_doc(b)) return -1;
        } else if (b_add_line(b, s + i, e - i, "\n"))
            return -1;
        i = e + 1;
    }
    return 0;
}

/* `bible -f` output: "Ge1:1 In the beginning ...", one verse a line; a new
 * book+chapter starts a new document. */
static int parse_bible_output(builder *b, const char *s, size_t n) {
    char prev[64] = "";
    size_t i = 0, verses = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        size_t sp = i;
        while (sp < e && s[sp] != ' ') sp++;
        size_t colon = i;
        while (colon < sp && s[colon] != ':') colon++;
        if (sp < e && colon < sp && colon - i < sizeof prev) {
            if (strncmp(prev, s + i, colon - i) || prev[colon - i]) {
                if (b_end_doc(b)) return -1;
                memcpy(prev, s + i, colon - i);
                prev[colon - i] = 0;
            }
            if (b_add_line(b, s + sp + 1, e - sp - 1, "\n")) return -1;
            verses++;
        }
        i = e + 1;
    }
    if (verses < 1000)
        return xd_err("the `bible` program printed %zu verses; is the Debian package "
                      "bible-kjv-text installed?",
                      verses);
    return 0;
}

int xd_tg_load_kjv(tg_corpus *c, const char *src) {
    builder b = {0};
    char *data = NULL, path[4096];
    size_t len;
    if (src) {
        snprintf(path, sizeof path, "%s/kjv.txt", src);
        if (xd_read_file(path, &data, &len) || parse_paragraphs(&b, data, len)) goto fail;
        free(data);
        return b_finish(&b, c, path);
    }
    char prog[4096], cmd[4200];
    if (find_program("bible", prog, sizeof prog) || strchr(prog, '\''))
        return xd_err("the `bible` program is missing: install the Debian packages " KJV_PKGS);
    snprintf(cmd, sizeof cmd, "'%s' -f gen1:1-rev22:21 </dev/null 2>/dev/null", prog);
    FILE *p = popen(cmd, "r");
    if (!p) return xd_err("cannot run %s: %s", prog, strerror(errno));
    int rc = xd_read_stream(p, "the output of `bible`", &data, &len);
    int st = pclose(p);
    if (rc) goto fail;
    if (st) {
        xd_err("`%s -f gen1:1-rev22:21` failed (status %d); is the Debian package "
               "bible-kjv-text installed?",
               prog, st);
        goto fail;
    }
    if (parse_bible_output(&b, data, len)) goto fail;
    free(data);
    return b_finish(&b, c, "the output of `bible`");
fail:
    free(data);
    b_free(&b);
    return -1;
}

/* ---- license texts ------------------------------------------------------------ */

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* One document per file: paragraphs with white space collapsed. */
static int add_license(builder *b, const char *s, size_t n) {
    xd_sbuf para = {0};
    int rc = 0;
    size_t i = 0;
    while (i <= n && !rc) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        size_t k = i;
        while (k < e && (unsigned char)s[k] <= ' ') k++;
        if (k == e) { /* blank line (or the end): the paragraph is complete */
            if (para.n) rc = b_add_line(b, para.s, para.n, "\n\n");
            xd_sb_clear(&para);
        } else {
            for (size_t j = i; j < e && !rc; j++) {
                int ws = (unsigned char)s[j] <= ' ';
                if (ws && (!para.n || para.s[para.n - 1] == ' ')) continue;
                rc = xd_sb_add(&para, ws ? " " : s + j, 1);
            }
            if (para.n && para.s[para.n - 1] != ' ') rc = rc ? rc : xd_sb_add(&para, " ", 1);
        }
        i = e + 1;
    }
    xd_sb_free(&para);
    return rc ? rc : b_end_doc(b);
}

int xd_tg_load_licenses(tg_corpus *c, const char *src) {
    char dir[4096], path[8192];
    if (src)
        snprintf(dir, sizeof dir, "%s/licenses", src);
    else
        snprintf(dir, sizeof dir, SYS_LICENSES);
    struct dirent **ents;
    int k = scandir(dir, &ents, NULL, by_name);
    if (k < 0) return xd_err("%s: cannot list: %s", dir, strerror(errno));
    builder b = {0};
    int rc = 0;
    for (int i = 0; i < k; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        /* regular files only: Debian's GPL, LGPL, GFDL are links to a version */
        if (!rc && ents[i]->d_name[0] != '.' && !lstat(path, &st) && S_ISREG(st.st_mode)) {
            char *data;
            size_t len;
            rc = xd_read_file(path, &data, &len);
            if (!rc) {
                rc = add_license(&b, data, len);
                free(data);
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (rc) {
        b_free(&b);
        return -1;
    }
    return b_finish(&b, c, dir);
}
