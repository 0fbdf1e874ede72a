/* `xdistill data echo`: retrieval-bearing training data made from any token
 * file (docs/data.md "Echoes"). After a line of a train document, with
 * probability rate, a line seen earlier in the same document (or a span of
 * it) is repeated. The repeat starts between min_gap and max_gap tokens
 * after its source, so a model that predicts it well must read beyond a
 * window shorter than min_gap. This is the copying a teacher does by
 * induction (Olsson et al. 2022) and what a windowed student's memory has
 * to learn; plain text has little of it at distances beyond the window.
 * Validation documents are copied unchanged, so validation losses stay
 * comparable with the source file's. */
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/hash.h"
#include "../core/rng.h"
#include "tokdata_internal.h"

typedef unsigned long long ull;

void xd_echo_defaults(xd_echo_opts *o) {
    memset(o, 0, sizeof *o);
    o->rate = 0.25;
    o->min_gap = 96;
    o->max_gap = 2048;
    o->span_frac = 0.5;
    o->min_len = 3;
    o->max_span = 32;
    o->seed = 1;
}

static int check_opts(const xd_echo_opts *o) {
    if (!(o->rate >= 0 && o->rate <= 1))
        return xd_err("data echo: rate %g, expected 0 <= rate <= 1", o->rate);
    if (o->min_gap < 1) return xd_err("data echo: min_gap %d, expected >= 1", o->min_gap);
    if (o->max_gap < o->min_gap)
        return xd_err("data echo: max_gap %d, expected >= min_gap %d", o->max_gap, o->min_gap);
    if (!(o->span_frac >= 0 && o->span_frac <= 1))
        return xd_err("data echo: span_frac %g, expected 0 <= span_frac <= 1", o->span_frac);
    if (o->min_len < 1) return xd_err("data echo: min_len %d, expected >= 1", o->min_len);
    if (o->max_span < o->min_len)
        return xd_err("data echo: max_span %d, expected >= min_len %d", o->max_span, o->min_len);
    return 0;
}

/* A growing output: tokens (u32), and per token whether it is part of an echo. */
typedef struct {
    uint32_t *tok;
    uint8_t *mask;
    uint64_t n, cap;
} out_buf;

static int reserve(out_buf *b, uint64_t more) {
    if (b->n + more <= b->cap) return 0;
    uint64_t cap = b->cap ? b->cap : 1u << 16;
    while (cap < b->n + more) cap *= 2;
    uint32_t *t = realloc(b->tok, cap * sizeof *t);
    if (!t) return xd_err("out of memory");
    b->tok = t;
    uint8_t *m = realloc(b->mask, cap);
    if (!m) return xd_err("out of memory");
    b->mask = m;
    b->cap = cap;
    return 0;
}

static void append(out_buf *b, const uint32_t *src, uint64_t n, uint8_t echo) {
    memcpy(b->tok + b->n, src, n * sizeof *src);
    memset(b->mask + b->n, echo, n);
    b->n += n;
}

typedef struct {
    uint64_t start, len; /* in the output, relative to the document's first token */
} line_ref;

/* Echoes one train document: doc[0 .. n) in, appended to b. lines has room for n entries. */
static int echo_doc(const uint32_t *doc, uint64_t n, const uint8_t *is_end, const xd_echo_opts *o,
                    xd_rng *rng, out_buf *b, line_ref *lines, xd_echo_stats *st) {
    uint64_t base = b->n, n_lines = 0, first = 0; /* lines[first ..] may still be in range */
    for (uint64_t i = 0; i < n;) {
        uint64_t j = i;
        while (j < n && !is_end[doc[j]]) j++;
        int ended = j < n; /* the line ends with a line-end token (not the document's end) */
        uint64_t len = (ended ? j + 1 : j) - i;
        if (reserve(b, len)) return -1;
        lines[n_lines++] = (line_ref){b->n - base, len};
        append(b, doc + i, len, 0);
        i += len;
        if (!ended || i == n || xd_rng_uniform(rng) >= o->rate) continue;
        /* The lines that start between min_gap and max_gap tokens back: a contiguous range,
         * since starts increase. Lines shorter than min_len are redrawn (a few times). */
        uint64_t cur = b->n - base;
        while (first < n_lines && cur - lines[first].start > (uint64_t)o->max_gap) first++;
        uint64_t last = first; /* one past the last candidate */
        while (last < n_lines && cur - lines[last].start >= (uint64_t)o->min_gap) last++;
        if (last == first) continue;
        const line_ref *l = NULL;
        for (int tries = 0; tries < 8 && !l; tries++) {
            const line_ref *c = &lines[first + xd_rng_below(rng, last - first)];
            if (c->len >= (uint64_t)o->min_len) l = c;
        }
        if (!l) continue;
        const uint32_t *src = b->tok + base + l->start;
        uint64_t from = 0, take = l->len;
        if (xd_rng_uniform(rng) < o->span_frac && l->len > (uint64_t)o->min_len) {
            /* A span of min_len .. max_span tokens, starting at most cur - start - min_gap
             * tokens into the line, so that it too lies at least min_gap tokens back. */
            uint64_t hi = l->len < (uint64_t)o->max_span ? l->len : (uint64_t)o->max_span;
            take = (uint64_t)o->min_len + xd_rng_below(rng, hi - (uint64_t)o->min_len + 1);
            uint64_t max_from = l->len - take, room = cur - l->start - (uint64_t)o->min_gap;
            from = xd_rng_below(rng, (max_from < room ? max_from : room) + 1);
        }
        /* The echo ends with a line end: its own if it has one, else the one just written. */
        int own_end = is_end[src[from + take - 1]];
        uint32_t end_tok = doc[i - 1];
        if (reserve(b, take + 1)) return -1;
        src = b->tok + base + l->start; /* reserve may have moved the buffer */
        append(b, src + from, take, 1);
        if (!own_end) append(b, &end_tok, 1, 1);
        st->n_echoes++;
        st->echo_tokens += take + !own_end;
    }
    return 0;
}

int xd_tokdata_echo(const xd_tokdata *in, const xd_tokenizer *t, const xd_echo_opts *o,
                    const char *out_path, xd_echo_stats *stats, uint8_t **echo_mask) {
    if (!in || !t || !o || !out_path) return xd_err("data echo: invalid arguments");
    if (echo_mask) *echo_mask = NULL;
    /* Where an echo of a prompt line would belong (context or completion) has
     * no single answer, so instruction data is not echoed. */
    if (xd_tokdata_has_mask(in))
        return xd_err("%s: has a context mask; echo works on plain text data",
                      xd_tokdata_path(in));
    if (check_opts(o) || xd_tokdata_check_tokenizer(in, t)) return -1;
    const xd_tokdata_header *h = xd_tokdata_header_of(in);
    const uint64_t *off = xd_tokdata_doc_offsets(in);
    uint32_t nv = h->vocab_size;
    xd_echo_stats st = {0};
    out_buf b = {0};
    uint64_t *noff = malloc((h->n_docs + 1) * sizeof *noff);
    uint8_t *is_end = calloc(nv, 1);
    uint32_t *doc = NULL, *dom = NULL;
    line_ref *lines = NULL;
    const char **names = NULL;
    uint64_t max_doc = 0;
    int rc = -1;
    if (!noff || !is_end) { xd_err("out of memory"); goto done; }
    /* Line ends: the tokens whose text holds a newline. */
    int n_tok = xd_tokenizer_n_tokens(t);
    for (uint32_t id = 0; id < nv && (int)id < n_tok; id++) {
        char piece[1024];
        int k = xd_tokenizer_token_bytes(t, (int32_t)id, piece, sizeof piece);
        if (k > 0) is_end[id] = memchr(piece, '\n', (size_t)k) != NULL;
    }
    for (uint64_t d = 0; d < h->n_docs; d++)
        if (off[d + 1] - off[d] > max_doc) max_doc = off[d + 1] - off[d];
    doc = malloc(max_doc * sizeof *doc);
    lines = malloc(max_doc * sizeof *lines);
    if (!doc || !lines) { xd_err("out of memory"); goto done; }
    noff[0] = 0;
    for (uint64_t d = 0; d < h->n_docs; d++) {
        uint64_t n = off[d + 1] - off[d];
        if (xd_tokdata_copy(in, off[d], n, (int32_t *)doc)) goto done;
        if (d >= h->n_train_docs) {
            if (reserve(&b, n)) goto done;
            append(&b, doc, n, 0);
        } else {
            /* One stream per document: the output does not depend on the order of work. */
            xd_rng rng;
            xd_rng_seed(&rng, o->seed ^ xd_mix64(d + 1));
            if (echo_doc(doc, n, is_end, o, &rng, &b, lines, &st)) goto done;
        }
        noff[d + 1] = b.n;
    }
    xd_tokdata_header oh = *h;
    oh.n_tokens = b.n;
    uint32_t nd = xd_tokdata_n_domains(in);
    if (nd) {
        dom = malloc(h->n_docs * sizeof *dom);
        names = malloc(nd * sizeof *names);
        if (!dom || !names) { xd_err("out of memory"); goto done; }
        for (uint64_t d = 0; d < h->n_docs; d++) dom[d] = xd_tokdata_doc_domain(in, d);
        for (uint32_t k = 0; k < nd; k++) names[k] = xd_tokdata_domain_name(in, k);
    }
    xd_doc_source s = {b.tok, 4, noff, NULL, dom, names, nd, NULL}; /* masked input is refused */
    if (xd_tokdata_write_docs(out_path, &oh, &s)) goto done;
    st.n_tokens_in = h->n_tokens;
    st.n_tokens_out = b.n;
    if (stats) *stats = st;
    if (echo_mask) {
        *echo_mask = b.mask;
        b.mask = NULL;
    }
    rc = 0;
done:
    free(b.tok);
    free(b.mask);
    free(noff);
    free(is_end);
    free(doc);
    free(lines);
    free(dom);
    free(names);
    return rc;
}
