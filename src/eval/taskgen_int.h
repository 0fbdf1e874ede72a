/* Internal pieces shared by the task-suite generator (taskgen*.c):
 * buffers, the token estimate, RNG helpers, the example writers, the loaded
 * sources and the generators. See docs/tasks.md for what each task is. */
#ifndef XD_TASKGEN_INT_H
#define XD_TASKGEN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/file.h" /* xd_read_file, xd_is_dir, xd_is_file */
#include "core/rng.h"
#include "core/strbuf.h" /* the text buffers (xd_sbuf) */

/* Approximate token count of text: every ASCII digit is one token (as in
 * SmolLM2's and Llama-3's tokenizers, which split numbers into digits) and the
 * other bytes count 4 to a token (rounded up). On SmolLM2 this is within ±20%
 * of the real count on the suite's texts (docs/tasks.md). */
size_t xd_tg_approx_tokens(const char *s, size_t n);
static inline size_t tg_approx_str(const char *s);

/* The same estimate for text assembled from pieces: count the pieces' digits
 * and other bytes, then convert once (adding per-piece estimates would
 * round up every piece). */
typedef struct {
    size_t digits, other;
} tg_len;
static inline void tg_len_add(tg_len *l, const char *s) {
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9')
            l->digits++;
        else
            l->other++;
    }
}
static inline size_t tg_len_tokens(tg_len l) { return l.digits + (l.other + 3) / 4; }

/* Fisher–Yates shuffle of a[0..n). */
void xd_tg_shuffle(xd_rng *r, size_t *a, size_t n);

/* ---- one task's examples, as JSONL in memory ------------------------------ */
typedef struct {
    xd_sbuf jsonl;
    size_t n;      /* examples written */
    double tokens; /* sum of approximate tokens over the examples */
} tg_task;

/* Each appends one line; strings must be valid UTF-8. Return 0 or -1. */
int xd_tg_emit_choice(tg_task *t, const char *context, const char *const *choices, int k, int answer);
int xd_tg_emit_generate(tg_task *t, const char *prompt, const char *target, int max_tokens,
                     const char *match);
int xd_tg_emit_perplexity(tg_task *t, const char *text, size_t len);

/* ---- sources (taskgen_sources.c, taskgen_wordnet.c) -----------------------
 * A corpus is a list of documents inside one NUL-terminated string; document
 * i is s[doc_beg[i], doc_end[i]). Documents are separated by "\n\n". */
typedef struct {
    char *s;
    size_t n;
    size_t *doc_beg, *doc_end;
    size_t n_doc;
} tg_corpus;

/* One WordNet entry: a common single word with the gloss of its most frequent
 * sense and the words of that sense's synset ("|a|b|c|", lower case). */
typedef struct {
    const char *lemma, *gloss, *synset;
    char pos; /* 'n', 'v', 'a' */
} tg_sense;

typedef struct {
    tg_sense *v;
    size_t n;
    char *pool; /* storage of the strings */
} tg_wordnet;

/* The King James Bible: one document per chapter, one line per verse. The
 * default source is Debian's `bible` program (packages bible-kjv and
 * bible-kjv-text); with sources, SOURCES/kjv.txt (scripts/kjv-corpus.sh). */
int xd_tg_load_kjv(tg_corpus *c, const char *sources);
/* License texts: one document per regular file of /usr/share/common-licenses
 * (base-files) or SOURCES/licenses/, in name order; paragraphs with their
 * white space collapsed, separated by "\n\n". */
int xd_tg_load_licenses(tg_corpus *c, const char *sources);
/* WordNet 3.0 nouns, verbs and adjectives from /usr/share/wordnet
 * (wordnet-base) or SOURCES/wordnet/: index.* and data.* files. */
int xd_tg_load_wordnet(tg_wordnet *w, const char *sources);
/* Checks that every source exists before any work; the error names each
 * missing one and the Debian package that provides it. */
int xd_tg_check_sources(const char *sources);

void xd_tg_corpus_free(tg_corpus *c);
void xd_tg_wordnet_free(tg_wordnet *w);

/* ---- generators ------------------------------------------------------------ */
typedef struct {
    int window, n;
    const tg_corpus *kjv, *lic;
    const tg_wordnet *wn;
} tg_ctx;

/* Each writes c->n examples into t from r, or fails (-1) saying why. */
typedef int (*tg_gen_fn)(const tg_ctx *c, xd_rng *r, tg_task *t);

int xd_tg_gen_wordnet_define(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_wordnet_gloss(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_cloze_near(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_cloze_far(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_ppl_kjv(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_ppl_licenses(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_passkey_half(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_passkey_2w(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_passkey_8w(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_recall(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_copy(const tg_ctx *c, xd_rng *r, tg_task *t);
int xd_tg_gen_arith(const tg_ctx *c, xd_rng *r, tg_task *t);

/* Sizes shared by the generators and the task descriptions (in approximate
 * tokens, W = the window). */
int xd_tg_far_gap(int window);        /* distance a "far" fact lies back: 1.5 W */
int xd_tg_cloze_far_cap(int window);  /* far cloze context at most: 8 W */
int xd_tg_cloze_near_cap(int window); /* near cloze context at most: 3/4 W */
int xd_tg_ppl_len(int window);        /* perplexity text: 4 W in [128, 1024] */

static inline size_t tg_approx_str(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return xd_tg_approx_tokens(s, n);
}

#endif
