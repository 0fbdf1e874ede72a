/* Packed token data: writer (data prep), reader (mmap + full validation) and
 * the deterministic batch sampler. Format: see tokdata.h and docs/data.md. */
#include "atomic.h"
#include "tokdata.h"
#include "jsonl.h"
#include "tokdata_internal.h"
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/error.h"
#include "../core/file.h"
#include "../core/log.h"
#include "../core/mem.h"
#include "../core/rng.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tokdata.c reads and writes little-endian files with native loads; port it first"
#endif

typedef unsigned long long ull;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned token_bytes_for(uint32_t vocab) { return vocab <= 65536u ? 2u : 4u; }

/* ---- header ------------------------------------------------------------------ */


static void encode_header(uint8_t h[XD_TOKDATA_HEADER_BYTES], const xd_tokdata_header *x) {
    memset(h, 0, XD_TOKDATA_HEADER_BYTES);
    memcpy(h, XD_TOKDATA_MAGIC, 8);
    xd_put_u32(h + 8, x->version);
    xd_put_u32(h + 12, x->vocab_size);
    xd_put_u64(h + 16, x->tokenizer_hash);
    xd_put_u64(h + 24, x->n_docs);
    xd_put_u64(h + 32, x->n_train_docs);
    xd_put_u64(h + 40, x->n_tokens);
    xd_put_u32(h + 48, x->token_bytes);
    xd_put_u32(h + 52, x->flags);
    xd_put_u64(h + 56, x->shuffle_seed);
}

static void decode_header(const uint8_t *h, xd_tokdata_header *x) {
    x->version = xd_get_u32(h + 8);
    x->vocab_size = xd_get_u32(h + 12);
    x->tokenizer_hash = xd_get_u64(h + 16);
    x->n_docs = xd_get_u64(h + 24);
    x->n_train_docs = xd_get_u64(h + 32);
    x->n_tokens = xd_get_u64(h + 40);
    x->token_bytes = xd_get_u32(h + 48);
    x->flags = xd_get_u32(h + 52);
    x->shuffle_seed = xd_get_u64(h + 56);
}

/* ---- atomic writer -------------------------------------------------------------- */

/* The domain table after the tokens (tokdata.h): pad to 8, n_domains,
 * reserved, the names, pad to 4, one u32 per document. */
static int write_domain_table(xd_afile *f, const xd_tokdata_header *h, const xd_doc_source *s,
                              uint32_t *buf, size_t chunk) {
    static const uint8_t zeros[8] = {0};
    uint64_t pos = XD_TOKDATA_HEADER_BYTES + 8 * (h->n_docs + 1) + h->token_bytes * h->n_tokens;
    if (xd_afile_write(f, zeros, (size_t)((8 - pos % 8) % 8))) return -1;
    uint32_t head[2] = {s->n_names, 0};
    if (xd_afile_write(f, head, sizeof head)) return -1;
    size_t names_bytes = 0;
    for (uint32_t i = 0; i < s->n_names; i++) {
        uint32_t len = (uint32_t)strlen(s->names[i]);
        if (xd_afile_write(f, &len, 4) || xd_afile_write(f, s->names[i], len)) return -1;
        names_bytes += 4 + len;
    }
    if (xd_afile_write(f, zeros, (4 - names_bytes % 4) % 4)) return -1;
    size_t k = 0;
    for (uint64_t d = 0; d < h->n_docs; d++) {
        uint64_t i = s->order ? s->order[d] : d;
        buf[k++] = s->src_dom ? s->src_dom[i] : 0;
        if (k == chunk) {
            if (xd_afile_write(f, buf, k * 4)) return -1;
            k = 0;
        }
    }
    return xd_afile_write(f, buf, k * 4);
}

/* The context mask at the very end (tokdata.h): each document's bytes in
 * output order, straight from the source. */
static int write_mask(xd_afile *f, const xd_tokdata_header *h, const xd_doc_source *s) {
    for (uint64_t d = 0; d < h->n_docs; d++) {
        uint64_t i = s->order ? s->order[d] : d;
        if (xd_afile_write(f, s->src_mask + s->src_off[i], s->src_off[i + 1] - s->src_off[i]))
            return -1;
    }
    return 0;
}

int xd_tokdata_write_docs(const char *path, const xd_tokdata_header *h, const xd_doc_source *s) {
    if ((h->flags & XD_TOKDATA_FLAG_MASK) && !s->src_mask)
        return xd_err("%s: flags: bit 2 (context mask) is set, but there is no mask to write",
                      path);
    xd_afile f;
    if (xd_afile_open(&f, path)) return -1;
    enum { CHUNK = 1 << 16 };
    uint8_t hdr[XD_TOKDATA_HEADER_BYTES];
    uint64_t *obuf = malloc(CHUNK * sizeof *obuf);
    uint8_t *tbuf = malloc(CHUNK * 4);
    int rc = -1;
    if (!obuf || !tbuf) { xd_err("out of memory"); goto done; }
    encode_header(hdr, h);
    if (xd_afile_write(&f, hdr, sizeof hdr)) goto done;
    /* offsets */
    uint64_t acc = 0;
    size_t k = 0;
    obuf[k++] = 0;
    for (uint64_t d = 0; d < h->n_docs; d++) {
        uint64_t i = s->order ? s->order[d] : d;
        acc += s->src_off[i + 1] - s->src_off[i];
        obuf[k++] = acc;
        if (k == CHUNK) {
            if (xd_afile_write(&f, obuf, k * 8)) goto done;
            k = 0;
        }
    }
    if (xd_afile_write(&f, obuf, k * 8)) goto done;
    /* tokens, converted to token_bytes */
    k = 0;
    for (uint64_t d = 0; d < h->n_docs; d++) {
        uint64_t i = s->order ? s->order[d] : d;
        for (uint64_t j = s->src_off[i]; j < s->src_off[i + 1]; j++) {
            uint32_t v = s->src_bytes == 2 ? ((const uint16_t *)s->src)[j]
                                           : ((const uint32_t *)s->src)[j];
            if (h->token_bytes == 2) {
                uint16_t w = (uint16_t)v;
                memcpy(tbuf + 2 * k, &w, 2);
            } else memcpy(tbuf + 4 * k, &v, 4);
            if (++k == CHUNK) {
                if (xd_afile_write(&f, tbuf, k * h->token_bytes)) goto done;
                k = 0;
            }
        }
    }
    if (xd_afile_write(&f, tbuf, k * h->token_bytes)) goto done;
    if ((h->flags & XD_TOKDATA_FLAG_DOMAINS) &&
        write_domain_table(&f, h, s, (uint32_t *)tbuf, CHUNK))
        goto done;
    if ((h->flags & XD_TOKDATA_FLAG_MASK) && write_mask(&f, h, s)) goto done;
    rc = xd_afile_commit(&f);
done:
    if (rc) xd_afile_abort(&f);
    free(obuf);
    free(tbuf);
    return rc;
}

/* The reader's rule for the context mask: every byte is 0 or 1. */
static int check_mask_bytes(const char *path, const uint8_t *mask, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (mask[i] > 1)
            return xd_err("%s: context mask: byte at token %llu is %u, expected 0 or 1", path,
                          (ull)i, mask[i]);
    return 0;
}

int xd_tokdata_write(const char *path, uint32_t vocab_size, uint64_t tokenizer_hash,
                     uint32_t flags, uint64_t shuffle_seed, const int32_t *ids,
                     const uint64_t *doc_offsets, uint64_t n_docs, uint64_t n_train_docs) {
    return xd_tokdata_write_mask(path, vocab_size, tokenizer_hash, flags, shuffle_seed, ids,
                                 doc_offsets, n_docs, n_train_docs, NULL);
}

int xd_tokdata_write_mask(const char *path, uint32_t vocab_size, uint64_t tokenizer_hash,
                          uint32_t flags, uint64_t shuffle_seed, const int32_t *ids,
                          const uint64_t *doc_offsets, uint64_t n_docs, uint64_t n_train_docs,
                          const uint8_t *ctx_mask) {
    if (!path || !doc_offsets || (!ids && n_docs))
        return xd_err("tokdata: write: invalid arguments");
    if (vocab_size == 0) return xd_err("%s: vocab_size: 0, expected > 0", path);
    if (n_docs == 0) return xd_err("%s: n_docs: 0 documents (empty corpus), expected >= 1", path);
    if (n_train_docs > n_docs)
        return xd_err("%s: n_train_docs: %llu exceeds n_docs %llu", path, (ull)n_train_docs,
                      (ull)n_docs);
    if (flags & ~(XD_TOKDATA_FLAG_EOS | XD_TOKDATA_FLAG_MASK))
        return xd_err("%s: flags: unknown bits 0x%x (xd_tokdata_write writes no domain table)", path,
                      flags);
    if ((flags & XD_TOKDATA_FLAG_MASK) && !ctx_mask)
        return xd_err("%s: flags: bit 2 (context mask) is set, but no mask was given", path);
    if (ctx_mask) flags |= XD_TOKDATA_FLAG_MASK;
    if (doc_offsets[0] != 0)
        return xd_err("%s: doc_offsets[0]: %llu, expected 0", path, (ull)doc_offsets[0]);
    for (uint64_t d = 0; d < n_docs; d++)
        if (doc_offsets[d + 1] <= doc_offsets[d])
            return xd_err("%s: doc_offsets[%llu]: %llu, expected more than doc_offsets[%llu] = "
                          "%llu (documents are not empty)",
                          path, (ull)(d + 1), (ull)doc_offsets[d + 1], (ull)d, (ull)doc_offsets[d]);
    uint64_t n_tokens = doc_offsets[n_docs];
    for (uint64_t i = 0; i < n_tokens; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab_size)
            return xd_err("%s: tokens[%llu]: id %d, expected 0 <= id < vocab_size %u", path, (ull)i,
                          ids[i], vocab_size);
    if (ctx_mask && check_mask_bytes(path, ctx_mask, n_tokens)) return -1;
    xd_tokdata_header h = {XD_TOKDATA_VERSION, vocab_size, token_bytes_for(vocab_size), flags,
                           tokenizer_hash, n_docs, n_train_docs, n_tokens, shuffle_seed};
    xd_doc_source s = {ids, 4, doc_offsets, NULL, NULL, NULL, 0, ctx_mask};
    return xd_tokdata_write_docs(path, &h, &s);
}

/* ---- prep: reading the inputs ------------------------------------------------------ */

void xd_prep_defaults(xd_prep_opts *o) {
    memset(o, 0, sizeof *o);
    o->field = "text";
    o->doc_sep = XD_DOCSEP_FILE;
    o->seed = 1;
    o->val_frac = 0.05;
}

/* A document waiting to be tokenized: text[off, off + len) of the arena,
 * whose first plen bytes are its prompt (0 without a prompt field). */
typedef struct {
    size_t off, len, plen;
    uint32_t dom;
} pending_doc;

/* Documents waiting to be tokenized, and the tokenized corpus so far. */
typedef struct {
    const xd_tokenizer *t;
    const xd_prep_opts *o;
    int threads;
    int32_t eos;
    uint32_t vocab;
    unsigned tb; /* token bytes in memory (= in the file) */
    /* pending documents: text copied into one arena */
    char *text;
    size_t text_len, text_cap;
    pending_doc *pend;
    size_t n_pending, cap_pending;
    /* corpus */
    uint8_t *tok;          /* tb bytes per token */
    size_t n_tok, cap_tok; /* in tokens */
    uint8_t *mask;         /* with a prompt field: the context byte of each token */
    size_t cap_mask;
    uint64_t *off;         /* off[0..n_docs] */
    size_t n_docs, cap_off;
    uint32_t *dom;         /* dom[0..n_docs): domain ids (domain_by != NONE) */
    size_t cap_dom;
    xd_domain_set domains;
    xd_domain_rules *rules; /* domain_by RULE */
    uint64_t n_empty, bytes_in;
    /* progress */
    double t0, last_print;
    int open; /* progress was reported, not yet the final report */
} prep_state;

enum { PENDING_BYTES = 1 << 20, PENDING_DOCS = 4096 };

/* A progress report (no known total, no bar) at most every 0.5 s, and the
 * final one. */
static void progress(prep_state *p, int final) {
    if (!p->o->verbose || !xd_log_enabled()) return;
    double now = wall_s();
    if (!final && now - p->last_print < 0.5) return;
    p->last_print = now;
    p->open = !final;
    double dt = now - p->t0;
    char detail[160], msg[192];
    snprintf(detail, sizeof detail, "%zu documents, %zu tokens, %.2f MB of text, %.0f tokens/s",
             p->n_docs, p->n_tok, (double)p->bytes_in / 1e6, dt > 0 ? (double)p->n_tok / dt : 0.0);
    snprintf(msg, sizeof msg, "data prep: %s", detail);
    xd_progress_info info = {"data prep", (int64_t)p->n_tok, 0, 0, dt, -1, detail, msg, final};
    xd_log_progress(&info, msg);
}

/* A pending document is one encoding job, or two with a prompt field: the
 * prompt (context) first, then the completion, tokenized separately. */
static int n_parts(const prep_state *p) { return p->o->prompt_field ? 2 : 1; }

/* The text of job j: part j % n_parts of pending document j / n_parts. */
static void part_text(const prep_state *p, size_t j, const char **s, size_t *n) {
    int np = n_parts(p);
    const pending_doc *q = &p->pend[j / (size_t)np];
    int prompt = np == 2 && j % 2 == 0;
    *s = p->text + q->off + (prompt ? 0 : q->plen);
    *n = prompt ? q->plen : q->len - q->plen;
}

/* Appends m ids (checked against the vocabulary) to the corpus, each with the
 * context byte ctx when the corpus has a mask. */
static int append_ids(prep_state *p, const int32_t *ids, size_t m, uint8_t ctx) {
    if (xd_grow((void **)&p->tok, &p->cap_tok, p->n_tok + m, p->tb)) return -1;
    if (p->o->prompt_field && xd_grow((void **)&p->mask, &p->cap_mask, p->n_tok + m, 1))
        return -1;
    for (size_t j = 0; j < m; j++) {
        uint32_t v = (uint32_t)ids[j];
        if (ids[j] < 0 || v >= p->vocab)
            return xd_err("tokenizer produced id %d outside its vocabulary of %u", ids[j],
                          p->vocab);
        if (p->o->prompt_field) p->mask[p->n_tok] = ctx;
        if (p->tb == 2) ((uint16_t *)p->tok)[p->n_tok++] = (uint16_t)v;
        else ((uint32_t *)p->tok)[p->n_tok++] = v;
    }
    return 0;
}

/* Pending document i from its encoded parts: the prompt's tokens (context),
 * the text's, the EOS; a document without tokens is counted as empty. */
static int append_doc(prep_state *p, size_t i, int32_t *const *ids, const size_t *n_ids) {
    size_t np = (size_t)n_parts(p), m = 0;
    for (size_t k = 0; k < np; k++) m += n_ids[i * np + k];
    if (m == 0) {
        p->n_empty++;
        return 0;
    }
    for (size_t k = 0; k < np; k++)
        if (append_ids(p, ids[i * np + k], n_ids[i * np + k], np == 2 && k == 0)) return -1;
    if (p->eos >= 0 && append_ids(p, &p->eos, 1, 0)) return -1;
    if (xd_grow((void **)&p->off, &p->cap_off, p->n_docs + 2, sizeof *p->off) ||
        xd_grow((void **)&p->dom, &p->cap_dom, p->n_docs + 1, sizeof *p->dom))
        return -1;
    p->dom[p->n_docs] = p->pend[i].dom;
    p->off[++p->n_docs] = p->n_tok;
    return 0;
}

static int flush_pending(prep_state *p) {
    size_t n = p->n_pending * (size_t)n_parts(p); /* encoding jobs */
    if (!n) return 0;
    int32_t **ids = calloc(n, sizeof *ids);
    size_t *n_ids = calloc(n, sizeof *n_ids);
    char *failed = calloc(n, 1);
    if (!ids || !n_ids || !failed) {
        free(ids);
        free(n_ids);
        free(failed);
        return xd_err("out of memory");
    }
    /* Each text is tokenized on its own, so the result does not depend on the
     * threads. A failure leaves its slot marked; the first one (lowest index)
     * is encoded again on this thread for its message (xd_last_error is per
     * thread), so no lock is needed. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(p->threads)
    for (long j = 0; j < (long)n; j++) {
        const char *s;
        size_t len;
        part_text(p, (size_t)j, &s, &len);
        failed[j] = xd_tokenizer_encode(p->t, s, len, p->o->parse_special, &ids[j], &n_ids[j]) != 0;
    }
    int rc = 0;
    for (size_t j = 0; j < n && rc == 0; j++)
        if (failed[j]) {
            int32_t *again = NULL;
            size_t n_again = 0;
            const char *s;
            size_t len;
            part_text(p, j, &s, &len);
            rc = -1;
            if (xd_tokenizer_encode(p->t, s, len, p->o->parse_special, &again, &n_again) == 0) {
                free(again); /* cannot happen: encoding is deterministic */
                rc = xd_err("document %zu failed to tokenize on a worker thread",
                            j / (size_t)n_parts(p));
            }
        }
    free(failed);
    for (size_t i = 0; i < p->n_pending && rc == 0; i++) rc = append_doc(p, i, ids, n_ids);
    for (size_t j = 0; j < n; j++) free(ids[j]);
    free(ids);
    free(n_ids);
    p->n_pending = 0;
    p->text_len = 0;
    progress(p, 0);
    return rc;
}

/* Queues one document (copied): the prompt prompt[0 .. plen) (context; NULL
 * and 0 without a prompt field), then the text s[0 .. n), of domain
 * dname[0 .. dlen) (a valid name; ignored without --domain; with rules, the
 * rules decide on the prompt and text together). A document whose prompt and
 * text are both whitespace only is skipped. */
static int add_doc(prep_state *p, const char *prompt, size_t plen, const char *s, size_t n,
                   const char *dname, size_t dlen) {
    if (xd_is_blank(prompt, plen) && xd_is_blank(s, n)) {
        p->n_empty++;
        return 0;
    }
    if (xd_grow((void **)&p->text, &p->text_cap, p->text_len + plen + n + 1, 1) ||
        xd_grow((void **)&p->pend, &p->cap_pending, p->n_pending + 1, sizeof *p->pend))
        return -1;
    char *at = p->text + p->text_len;
    if (plen) memcpy(at, prompt, plen);
    memcpy(at + plen, s, n);
    uint32_t dom = 0;
    if (p->o->domain_by == XD_DOMAIN_RULE) {
        if (xd_domain_rules_match(p->rules, at, plen + n, &dname)) return -1;
        dlen = strlen(dname);
    }
    if (p->o->domain_by != XD_DOMAIN_NONE && xd_domain_set_intern(&p->domains, dname, dlen, &dom))
        return -1;
    p->pend[p->n_pending++] = (pending_doc){p->text_len, plen + n, plen, dom};
    p->text_len += plen + n;
    p->bytes_in += plen + n;
    if (p->text_len >= PENDING_BYTES || p->n_pending >= PENDING_DOCS) return flush_pending(p);
    return 0;
}

/* --domain file: the file's name without its directory and last extension
 * ("corpus/kjv.txt" -> "kjv"; "GPL-3" stays). */
static int file_domain(const xd_prep_opts *o, const char *path, const char **name, size_t *len) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    *name = b;
    *len = dot && dot > b ? (size_t)(dot - b) : strlen(b);
    if (o->domain_by != XD_DOMAIN_FILE) return 0;
    const char *why = xd_domain_name_problem(*name, *len);
    if (why)
        return xd_err("%s: domain name \"%.*s\" (from the file name, --domain file) %s; rename "
                      "the file or use --domain rule:FILE",
                      path, (int)(*len > 80 ? 80 : *len), *name, why);
    return 0;
}

static int prep_text(prep_state *p, const char *path) {
    char *buf = NULL;
    size_t len = 0, dlen;
    const char *dname;
    if (file_domain(p->o, path, &dname, &dlen)) return -1;
    if (xd_read_file(path, &buf, &len)) return -1;
    int rc = 0;
    const char *text = buf;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) text += 3, len -= 3; /* UTF-8 BOM */
    if (p->o->doc_sep == XD_DOCSEP_FILE) {
        rc = add_doc(p, NULL, 0, text, len, dname, dlen);
    } else {
        /* par_begin/par_end: the paragraph being collected (BLANK mode) */
        size_t i = 0, par_begin = 0, par_end = 0;
        int in_par = 0;
        while (i < len && rc == 0) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len, le = e; /* line [i, le) */
            if (le > i && text[le - 1] == '\r') le--;
            int blank = xd_is_blank(text + i, le - i);
            if (p->o->doc_sep == XD_DOCSEP_LINE) {
                if (!blank) rc = add_doc(p, NULL, 0, text + i, le - i, dname, dlen);
            } else if (blank) {
                if (in_par)
                    rc = add_doc(p, NULL, 0, text + par_begin, par_end - par_begin, dname, dlen);
                in_par = 0;
            } else {
                if (!in_par) par_begin = i;
                in_par = 1;
                par_end = le;
            }
            i = e + 1;
        }
        if (rc == 0 && in_par)
            rc = add_doc(p, NULL, 0, text + par_begin, par_end - par_begin, dname, dlen);
    }
    free(buf);
    return rc;
}

/* The string field `name` of record o in *v, or an error naming the file, the
 * line and the field: what it is ("field", "prompt field", "domain field")
 * and, when it is missing, the option that chose it (hint). */
static int string_field(const char *path, unsigned long lineno, json_t *o, const char *what,
                        const char *name, const char *hint, json_t **v) {
    *v = json_object_get(o, name);
    if (!*v)
        return xd_err("%s: line %lu: %s \"%s\" is missing (%s)", path, lineno, what, name, hint);
    if (!json_is_string(*v))
        return xd_err("%s: line %lu: %s \"%s\" is %s, expected a string", path, lineno, what, name,
                      xd_json_type_name(*v));
    return 0;
}

/* One JSONL record: its text, its prompt (--prompt-field) and its domain
 * (--domain field:NAME, else the file's name). */
static int prep_record(prep_state *p, const char *path, unsigned long lineno, json_t *o,
                       const char *fname, size_t flen) {
    const xd_prep_opts *po = p->o;
    const char *field = po->field && *po->field ? po->field : "text";
    if (!json_is_object(o))
        return xd_err("%s: line %lu: expected a JSON object, found %s", path, lineno,
                      xd_json_type_name(o));
    json_t *v, *pv = NULL, *dv;
    char hint[160];
    if (string_field(path, lineno, o, "field", field, "choose the field with --field", &v))
        return -1;
    if (po->prompt_field) {
        snprintf(hint, sizeof hint, "--prompt-field %.100s", po->prompt_field);
        if (string_field(path, lineno, o, "prompt field", po->prompt_field, hint, &pv)) return -1;
    }
    const char *dname = fname;
    size_t dlen = flen;
    if (po->domain_by == XD_DOMAIN_FIELD) {
        snprintf(hint, sizeof hint, "--domain field:%.100s", po->domain_arg);
        if (string_field(path, lineno, o, "domain field", po->domain_arg, hint, &dv)) return -1;
        dname = json_string_value(dv);
        dlen = json_string_length(dv);
        const char *why = xd_domain_name_problem(dname, dlen);
        if (why)
            return xd_err("%s: line %lu: domain field \"%s\": \"%.80s\" %s", path, lineno,
                          po->domain_arg, dname, why);
    }
    return add_doc(p, pv ? json_string_value(pv) : NULL, pv ? json_string_length(pv) : 0,
                   json_string_value(v), json_string_length(v), dname, dlen);
}

typedef struct {
    prep_state *p;
    const char *fname;
    size_t flen;
} jsonl_ctx;

static int prep_jsonl_record(void *ctx, const char *path, unsigned long lineno, json_t *o) {
    jsonl_ctx *c = ctx;
    return prep_record(c->p, path, lineno, o, c->fname, c->flen);
}

static int prep_jsonl(prep_state *p, const char *path) {
    jsonl_ctx c = {p, NULL, 0};
    if (file_domain(p->o, path, &c.fname, &c.flen)) return -1;
    return xd_jsonl_each(path, prep_jsonl_record, &c);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ---- prep: shuffle and write ------------------------------------------------------ */

static uint64_t val_docs(uint64_t n_docs, double frac) {
    if (frac <= 0 || n_docs < 2) return 0;
    double want = floor(frac * (double)n_docs + 0.5);
    uint64_t v = want >= (double)n_docs ? n_docs : (uint64_t)want;
    if (v < 1) v = 1;
    if (v > n_docs - 1) v = n_docs - 1;
    return v;
}

/* Domains whose documents were all empty after tokenization are removed
 * (ids renumbered, order of first appearance kept). */
static int drop_empty_domains(prep_state *p) {
    uint32_t n = p->domains.n, k = 0;
    uint32_t *map = calloc(n ? n : 1, sizeof *map);
    if (!map) return xd_err("out of memory");
    for (size_t d = 0; d < p->n_docs; d++) map[p->dom[d]] = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (map[i]) {
            p->domains.names[k] = p->domains.names[i];
            map[i] = k++;
        } else free(p->domains.names[i]);
    }
    p->domains.n = k;
    /* the hash index is stale now: drop it (a later intern would rebuild it, as n == cap) */
    free(p->domains.slot);
    p->domains.slot = NULL;
    p->domains.n_slot = 0;
    p->domains.cap = k;
    for (size_t d = 0; d < p->n_docs; d++) p->dom[d] = map[p->dom[d]];
    free(map);
    return 0;
}

/* The validation split per domain: each domain's last val_docs(n_d) documents
 * of the shuffled order. Reorders order[] to train documents then validation
 * documents, each in shuffled order (with one domain this is the plain
 * "last n_val of the shuffle"). */
static int stratify(prep_state *p, uint64_t *order, uint64_t *n_val_out) {
    size_t n = p->n_docs;
    uint32_t nd = p->o->domain_by == XD_DOMAIN_NONE ? 1 : p->domains.n;
    uint64_t *count = calloc(nd, sizeof *count), *want = calloc(nd, sizeof *want);
    uint64_t *tmp = malloc(n * sizeof *tmp);
    uint8_t *is_val = calloc(n, 1);
    int rc = -1;
    if (!count || !want || !tmp || !is_val) { xd_err("out of memory"); goto done; }
    /* without --domain every document's id is 0 (add_doc), one domain */
    for (size_t d = 0; d < n; d++) count[p->dom[d]]++;
    for (uint32_t k = 0; k < nd; k++) want[k] = val_docs(count[k], p->o->val_frac);
    uint64_t n_val = 0;
    for (size_t d = n; d-- > 0;) {
        uint32_t k = p->dom[order[d]];
        if (want[k]) {
            want[k]--;
            is_val[d] = 1;
            n_val++;
        }
    }
    size_t a = 0, b = n - n_val;
    for (size_t d = 0; d < n; d++) tmp[is_val[d] ? b++ : a++] = order[d];
    memcpy(order, tmp, n * sizeof *tmp);
    *n_val_out = n_val;
    rc = 0;
done:
    free(count);
    free(want);
    free(tmp);
    free(is_val);
    return rc;
}

/* --prompt-field: a named JSONL field other than the text's, and only JSONL inputs. */
static int check_prompt_field(const xd_prep_opts *o) {
    const char *pf = o->prompt_field, *field = o->field && *o->field ? o->field : "text";
    if (!pf) return 0;
    if (!*pf) return xd_err("data prep: --prompt-field: the field name is empty");
    if (!strcmp(pf, field))
        return xd_err("data prep: --prompt-field %s is also the text field (--field); the prompt "
                      "and the completion must be two fields", pf);
    for (int i = 0; i < o->n_inputs; i++)
        if (!o->jsonl && !ends_with(o->inputs[i], ".jsonl"))
            return xd_err("%s: --prompt-field %s needs JSONL records, but this input is read as "
                          "text (name it *.jsonl or pass --jsonl)",
                          o->inputs[i], pf);
    return 0;
}

int xd_tokdata_prep(const xd_tokenizer *t, const xd_prep_opts *o, const char *out_path,
                    xd_prep_stats *stats) {
    if (!t || !o || !out_path || !*out_path) return xd_err("data prep: invalid arguments");
    if (o->n_inputs < 1 || !o->inputs) return xd_err("data prep: no input files");
    if (!(o->val_frac >= 0 && o->val_frac < 1))
        return xd_err("data prep: val_frac: %g, expected 0 <= val_frac < 1", o->val_frac);
    if (o->doc_sep < XD_DOCSEP_FILE || o->doc_sep > XD_DOCSEP_LINE)
        return xd_err("data prep: doc_sep: %d is not one of file, blank, line", (int)o->doc_sep);
    if (o->domain_by < XD_DOMAIN_NONE || o->domain_by > XD_DOMAIN_RULE)
        return xd_err("data prep: domain_by: %d is not one of none, file, field, rule",
                      (int)o->domain_by);
    if ((o->domain_by == XD_DOMAIN_FIELD || o->domain_by == XD_DOMAIN_RULE) &&
        !(o->domain_arg && *o->domain_arg))
        return xd_err("data prep: --domain %s needs a %s", o->domain_by == XD_DOMAIN_FIELD ? "field" : "rule",
                      o->domain_by == XD_DOMAIN_FIELD ? "field name (field:NAME)" : "rules file (rule:FILE)");
    if (o->domain_by == XD_DOMAIN_FIELD)
        for (int i = 0; i < o->n_inputs; i++)
            if (!o->jsonl && !ends_with(o->inputs[i], ".jsonl"))
                return xd_err("%s: --domain field:%s needs JSONL records, but this input is read as "
                              "text (name it *.jsonl or pass --jsonl)",
                              o->inputs[i], o->domain_arg);
    if (check_prompt_field(o)) return -1;
    int vocab = xd_tokenizer_n_tokens(t);
    if (vocab <= 0) return xd_err("data prep: the tokenizer has no tokens");
    /* refuse to overwrite an input with the output */
    struct stat so, si;
    int out_exists = stat(out_path, &so) == 0;
    for (int i = 0; i < o->n_inputs; i++) {
        if (stat(o->inputs[i], &si))
            return xd_err("%s: cannot open: %s", o->inputs[i], strerror(errno));
        if (S_ISDIR(si.st_mode))
            return xd_err("%s: is a directory, expected a text or JSONL file", o->inputs[i]);
        if (out_exists && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return xd_err("%s: the output is also an input; refusing to overwrite it", out_path);
    }

    prep_state p = {0};
    p.t = t;
    p.o = o;
    p.threads = o->threads > 0 ? o->threads : xd_get_threads();
    p.eos = xd_tokenizer_eos(t);
    if (p.eos >= vocab) p.eos = -1;
    p.vocab = (uint32_t)vocab;
    p.tb = token_bytes_for(p.vocab);
    p.t0 = p.last_print = wall_s();
    uint64_t *order = NULL;
    int rc = -1;
    if (o->domain_by == XD_DOMAIN_RULE && !(p.rules = xd_domain_rules_load(o->domain_arg)))
        goto done;
    if (xd_grow((void **)&p.off, &p.cap_off, 1, sizeof *p.off)) goto done;
    p.off[0] = 0;
    if (o->verbose && p.eos < 0)
        xd_log(XD_LOG_WARN, "data prep: warning: the tokenizer has no EOS token; documents are "
                            "concatenated without a separator");
    for (int i = 0; i < o->n_inputs; i++) {
        const char *in = o->inputs[i];
        int r = o->jsonl || ends_with(in, ".jsonl") ? prep_jsonl(&p, in) : prep_text(&p, in);
        if (r) goto done;
    }
    if (flush_pending(&p)) goto done;
    progress(&p, 1);
    if (p.n_docs == 0) {
        xd_err("%s: empty corpus: the %d input file(s) (%s%s) hold no text to tokenize; nothing "
               "written",
               out_path, o->n_inputs, o->inputs[0], o->n_inputs > 1 ? ", ..." : "");
        goto done;
    }

    /* Fisher-Yates with splitmix64(seed) (core/rng.h): documents in shuffled order */
    if (!(order = malloc(p.n_docs * sizeof *order))) { xd_err("out of memory"); goto done; }
    for (size_t i = 0; i < p.n_docs; i++) order[i] = i;
    uint64_t rng = o->seed;
    for (size_t i = p.n_docs - 1; i > 0; i--) {
        uint64_t j = xd_splitmix64_below(&rng, (uint64_t)i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    if (o->domain_by != XD_DOMAIN_NONE && drop_empty_domains(&p)) goto done;
    uint64_t n_val;
    if (stratify(&p, order, &n_val)) goto done;
    uint32_t flags = (p.eos >= 0 ? XD_TOKDATA_FLAG_EOS : 0u) |
                     (o->domain_by != XD_DOMAIN_NONE ? XD_TOKDATA_FLAG_DOMAINS : 0u) |
                     (o->prompt_field ? XD_TOKDATA_FLAG_MASK : 0u);
    xd_tokdata_header h = {XD_TOKDATA_VERSION, p.vocab, p.tb, flags, xd_tokenizer_hash(t),
                           p.n_docs, p.n_docs - n_val, p.n_tok, o->seed};
    xd_doc_source src = {p.tok, p.tb, p.off, order, p.dom, (const char *const *)p.domains.names,
                         p.domains.n, p.mask};
    if (xd_tokdata_write_docs(out_path, &h, &src)) goto done;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->n_docs = h.n_docs;
        stats->n_train_docs = h.n_train_docs;
        stats->n_tokens = h.n_tokens;
        for (uint64_t d = 0; d < h.n_train_docs; d++)
            stats->n_train_tokens += p.off[order[d] + 1] - p.off[order[d]];
        stats->n_val_tokens = h.n_tokens - stats->n_train_tokens;
        stats->n_empty = p.n_empty;
        stats->bytes_in = p.bytes_in;
        stats->seconds = wall_s() - p.t0;
    }
    rc = 0;
done:
    if (rc && p.open) progress(&p, 1); /* the final report, ending a line redrawn in place */
    free(order);
    free(p.text);
    free(p.pend);
    free(p.tok);
    free(p.mask);
    free(p.off);
    free(p.dom);
    xd_domain_set_free(&p.domains);
    xd_domain_rules_free(p.rules);
    return rc;
}

/* ---- reader ------------------------------------------------------------------------ */

struct xd_tokdata {
    char *path;
    uint8_t *map;
    size_t size;
    xd_tokdata_header h;
    const uint64_t *off;
    const void *tok; /* u16 or u32 */
    uint32_t n_dom;  /* 0: no domain table */
    char **dom_names;
    const uint32_t *doc_dom;
    const uint8_t *mask;  /* the context mask (flags bit 2), or NULL */
    uint64_t n_masked[2]; /* context tokens of the train and validation splits */
};

/* No domain name twice: each is interned in a hash set (tokdata_domains.c),
 * O(n) for n names; a name whose id is not its index repeats an earlier one. */
static int check_unique_names(const xd_tokdata *d) {
    xd_domain_set seen = {0};
    int rc = 0;
    for (uint32_t i = 0; i < d->n_dom && !rc; i++) {
        uint32_t id;
        if (xd_domain_set_intern(&seen, d->dom_names[i], strlen(d->dom_names[i]), &id)) rc = -1;
        else if (id != i)
            rc = xd_err("%s: domain table: name %u \"%s\" repeats name %u", d->path, i,
                        d->dom_names[i], id);
    }
    xd_domain_set_free(&seen);
    return rc;
}

/* Reads the domain table that starts at byte pos (the end of the tokens) and
 * ends at byte size (the end of the file, or where the context mask starts).
 * Errors: "DATA: domain table: ...". */
static int parse_domain_table(xd_tokdata *d, uint64_t pos, uint64_t size) {
    const char *path = d->path;
    const char *before_mask = d->h.flags & XD_TOKDATA_FLAG_MASK
                                  ? ", before the context mask's n_tokens bytes" : "";
    pos += (8 - pos % 8) % 8;
    if (size < pos || size - pos < 8)
        return xd_err("%s: domain table: the file ends at byte %llu, before the table's header at "
                      "%llu (truncated or corrupt)", path, (ull)size, (ull)pos);
    uint32_t n = xd_get_u32(d->map + pos), reserved = xd_get_u32(d->map + pos + 4);
    if (n < 1 || n > XD_TOKDATA_MAX_DOMAINS)
        return xd_err("%s: domain table: n_domains %u, expected 1 ... %u", path, n,
                      XD_TOKDATA_MAX_DOMAINS);
    if (reserved) return xd_err("%s: domain table: reserved field %u, expected 0", path, reserved);
    pos += 8;
    if (!(d->dom_names = calloc(n, sizeof *d->dom_names))) return xd_err("out of memory");
    d->n_dom = n;
    uint64_t names_begin = pos;
    for (uint32_t i = 0; i < n; i++) {
        if (size - pos < 4)
            return xd_err("%s: domain table: name %u is cut off by the end of the file (truncated "
                          "or corrupt)", path, i);
        uint32_t len = xd_get_u32(d->map + pos);
        pos += 4;
        const char *name = (const char *)d->map + pos;
        if (len > size - pos)
            return xd_err("%s: domain table: name %u has length %u, past the end of the file "
                          "(truncated or corrupt)", path, i, len);
        const char *why = xd_domain_name_problem(name, len);
        if (why) return xd_err("%s: domain table: name %u %s", path, i, why);
        if (!(d->dom_names[i] = malloc(len + 1))) return xd_err("out of memory");
        memcpy(d->dom_names[i], name, len);
        d->dom_names[i][len] = 0;
        pos += len;
    }
    if (check_unique_names(d)) return -1;
    pos += (4 - (pos - names_begin) % 4) % 4;
    uint64_t need = 4 * d->h.n_docs;
    if (size < pos || size - pos != need)
        return xd_err("%s: domain table: %llu bytes of document domains after the names%s, "
                      "expected 4 * n_docs = %llu (truncated or corrupt)",
                      path, size < pos ? 0ull : (ull)(size - pos), before_mask, (ull)need);
    d->doc_dom = (const uint32_t *)(d->map + pos);
    for (uint64_t i = 0; i < d->h.n_docs; i++)
        if (d->doc_dom[i] >= n)
            return xd_err("%s: domain table: document %llu has domain %u, expected < n_domains %u",
                          path, (ull)i, d->doc_dom[i], n);
    return 0;
}

/* The context mask at mask (n_tokens bytes): every byte 0 or 1; counts the
 * context tokens of each split. */
static int read_mask(xd_tokdata *d, const uint8_t *mask) {
    if (check_mask_bytes(d->path, mask, d->h.n_tokens)) return -1;
    uint64_t val_begin = d->off[d->h.n_train_docs];
    for (uint64_t i = 0; i < d->h.n_tokens; i++) d->n_masked[i >= val_begin] += mask[i];
    d->mask = mask;
    return 0;
}

xd_tokdata *xd_tokdata_open(const char *path) {
    if (!path) { xd_err("tokdata: open: no path"); return NULL; }
    xd_tokdata *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        xd_err("out of memory");
        return NULL;
    }
    if (xd_map_file(path, XD_TOKDATA_HEADER_BYTES, "token file", &d->map, &d->size)) goto fail;
    if (memcmp(d->map, XD_TOKDATA_MAGIC, 8)) {
        char shown[9];
        for (int i = 0; i < 8; i++)
            shown[i] = d->map[i] >= 32 && d->map[i] < 127 ? (char)d->map[i] : '?';
        shown[8] = 0;
        xd_err("%s: magic: found \"%s\", expected \"" XD_TOKDATA_MAGIC
               "\" (not an xdistill token file; make one with `xdistill data prep`)",
               path, shown);
        goto fail;
    }
    xd_tokdata_header *h = &d->h;
    decode_header(d->map, h);
    if (h->version != XD_TOKDATA_VERSION) {
        xd_err("%s: version: %u is not supported, expected %u", path, h->version,
               XD_TOKDATA_VERSION);
        goto fail;
    }
    if (h->vocab_size == 0) { xd_err("%s: vocab_size: 0, expected > 0", path); goto fail; }
    if (h->token_bytes != token_bytes_for(h->vocab_size)) {
        xd_err("%s: token_bytes: %u, expected %u for vocab_size %u", path, h->token_bytes,
               token_bytes_for(h->vocab_size), h->vocab_size);
        goto fail;
    }
    if (h->flags & ~(XD_TOKDATA_FLAG_EOS | XD_TOKDATA_FLAG_DOMAINS | XD_TOKDATA_FLAG_MASK)) {
        xd_err("%s: flags: unknown bits 0x%x (expected only bits 0, 1 and 2)", path, h->flags);
        goto fail;
    }
    if (h->n_docs == 0) {
        xd_err("%s: n_docs: 0, expected >= 1 (empty corpus)", path);
        goto fail;
    }
    if (h->n_train_docs > h->n_docs) {
        xd_err("%s: n_train_docs: %llu exceeds n_docs %llu", path, (ull)h->n_train_docs,
               (ull)h->n_docs);
        goto fail;
    }
    /* exact size, with overflow-safe arithmetic */
    uint64_t body = (uint64_t)d->size - XD_TOKDATA_HEADER_BYTES;
    if (h->n_docs >= body / 8) {
        xd_err("%s: n_docs: %llu documents need %llu+ bytes of offsets, the file has %llu after "
               "the header (truncated or corrupt)",
               path, (ull)h->n_docs, h->n_docs < UINT64_MAX / 8 ? (ull)(8 * (h->n_docs + 1)) : 0ull,
               (ull)body);
        goto fail;
    }
    uint64_t off_bytes = 8 * (h->n_docs + 1), rest = body - off_bytes;
    int has_dom = (h->flags & XD_TOKDATA_FLAG_DOMAINS) != 0;
    int has_mask = (h->flags & XD_TOKDATA_FLAG_MASK) != 0;
    uint64_t per_token = h->token_bytes + (uint64_t)has_mask; /* the id, and its mask byte */
    if (h->n_tokens > rest / per_token || (!has_dom && h->n_tokens * per_token != rest)) {
        char want[32] = "more than 2^64";
        if (h->n_tokens <= (UINT64_MAX - off_bytes - 64) / per_token)
            snprintf(want, sizeof want, "%llu", (ull)(64 + off_bytes + h->n_tokens * per_token));
        xd_err("%s: file size: %zu bytes, expected %s64 + 8 * (n_docs + 1) + %u * n_tokens%s = %s "
               "for n_docs %llu, n_tokens %llu (truncated or corrupt)",
               path, d->size, has_dom ? "more than " : "", h->token_bytes,
               has_mask ? " + n_tokens (context mask)" : "", want, (ull)h->n_docs,
               (ull)h->n_tokens);
        goto fail;
    }
    /* the mask ends the file; a domain table lies between the tokens and it */
    uint64_t mask_at = (uint64_t)d->size - (has_mask ? h->n_tokens : 0);
    if (has_dom && parse_domain_table(d, XD_TOKDATA_HEADER_BYTES + off_bytes +
                                             h->n_tokens * h->token_bytes, mask_at))
        goto fail;
    d->off = (const uint64_t *)(d->map + XD_TOKDATA_HEADER_BYTES);
    d->tok = d->map + XD_TOKDATA_HEADER_BYTES + off_bytes;
    if (d->off[0] != 0) {
        xd_err("%s: doc_offsets[0]: %llu, expected 0", path, (ull)d->off[0]);
        goto fail;
    }
    for (uint64_t i = 1; i <= h->n_docs; i++)
        if (d->off[i] <= d->off[i - 1]) {
            xd_err("%s: doc_offsets[%llu]: %llu, expected more than doc_offsets[%llu] = %llu "
                   "(offsets must increase; corrupt file)",
                   path, (ull)i, (ull)d->off[i], (ull)(i - 1), (ull)d->off[i - 1]);
            goto fail;
        }
    if (d->off[h->n_docs] != h->n_tokens) {
        xd_err("%s: doc_offsets[%llu]: %llu, expected n_tokens = %llu", path, (ull)h->n_docs,
               (ull)d->off[h->n_docs], (ull)h->n_tokens);
        goto fail;
    }
    uint64_t bad = UINT64_MAX;
    uint32_t bad_id = 0;
    if (h->token_bytes == 2) {
        const uint16_t *tk = d->tok;
        if (h->vocab_size < 65536)
            for (uint64_t i = 0; i < h->n_tokens; i++)
                if (tk[i] >= h->vocab_size) { bad = i; bad_id = tk[i]; break; }
    } else {
        const uint32_t *tk = d->tok;
        for (uint64_t i = 0; i < h->n_tokens; i++)
            if (tk[i] >= h->vocab_size) { bad = i; bad_id = tk[i]; break; }
    }
    if (bad != UINT64_MAX) {
        xd_err("%s: tokens[%llu]: id %u, expected < vocab_size %u (corrupt file)", path, (ull)bad,
               bad_id, h->vocab_size);
        goto fail;
    }
    if (has_mask && read_mask(d, d->map + mask_at)) goto fail;
    return d;
fail:
    xd_tokdata_close(d);
    return NULL;
}

void xd_tokdata_close(xd_tokdata *d) {
    if (!d) return;
    if (d->map) munmap(d->map, d->size);
    for (uint32_t i = 0; d->dom_names && i < d->n_dom; i++) free(d->dom_names[i]);
    free(d->dom_names);
    free(d->path);
    free(d);
}

const xd_tokdata_header *xd_tokdata_header_of(const xd_tokdata *d) { return d ? &d->h : NULL; }
const char *xd_tokdata_path(const xd_tokdata *d) { return d ? d->path : NULL; }
const uint64_t *xd_tokdata_doc_offsets(const xd_tokdata *d) { return d ? d->off : NULL; }
const void *xd_tokdata_raw_tokens(const xd_tokdata *d) { return d ? d->tok : NULL; }
uint32_t xd_tokdata_n_domains(const xd_tokdata *d) { return d ? d->n_dom : 0; }
int xd_tokdata_has_mask(const xd_tokdata *d) { return d && d->mask; }
const uint8_t *xd_tokdata_context_mask(const xd_tokdata *d) { return d ? d->mask : NULL; }
uint64_t xd_tokdata_masked_tokens(const xd_tokdata *d, xd_split s) {
    return d && (s == XD_SPLIT_TRAIN || s == XD_SPLIT_VAL) ? d->n_masked[s] : 0;
}
const char *xd_tokdata_domain_name(const xd_tokdata *d, uint32_t i) {
    return d && i < d->n_dom ? d->dom_names[i] : NULL;
}
uint32_t xd_tokdata_doc_domain(const xd_tokdata *d, uint64_t doc) {
    return d && d->doc_dom && doc < d->h.n_docs ? d->doc_dom[doc] : 0;
}

int32_t xd_tokdata_token(const xd_tokdata *d, uint64_t i) {
    return d->h.token_bytes == 2 ? (int32_t)((const uint16_t *)d->tok)[i]
                                 : (int32_t)((const uint32_t *)d->tok)[i];
}

int xd_tokdata_copy(const xd_tokdata *d, uint64_t from, uint64_t n, int32_t *out) {
    if (!d || (!out && n) || from > d->h.n_tokens || n > d->h.n_tokens - from)
        return xd_err("%s: tokens [%llu, +%llu) out of range (n_tokens %llu)",
                      d ? d->path : "tokdata", (ull)from, (ull)n, d ? (ull)d->h.n_tokens : 0ull);
    for (uint64_t i = 0; i < n; i++) out[i] = xd_tokdata_token(d, from + i);
    return 0;
}

static uint64_t split_first_doc(const xd_tokdata *d, xd_split s) {
    return s == XD_SPLIT_TRAIN ? 0 : d->h.n_train_docs;
}
static uint64_t split_end_doc(const xd_tokdata *d, xd_split s) {
    return s == XD_SPLIT_TRAIN ? d->h.n_train_docs : d->h.n_docs;
}
uint64_t xd_tokdata_split_begin(const xd_tokdata *d, xd_split s) {
    return d->off[split_first_doc(d, s)];
}
uint64_t xd_tokdata_split_tokens(const xd_tokdata *d, xd_split s) {
    return d->off[split_end_doc(d, s)] - d->off[split_first_doc(d, s)];
}
uint64_t xd_tokdata_split_docs(const xd_tokdata *d, xd_split s) {
    return split_end_doc(d, s) - split_first_doc(d, s);
}

int xd_tokdata_check_tokenizer(const xd_tokdata *d, const xd_tokenizer *t) {
    if (!d || !t) return xd_err("tokdata: check_tokenizer: invalid arguments");
    uint64_t th = xd_tokenizer_hash(t);
    if (d->h.tokenizer_hash != th)
        return xd_err("%s: tokenizer hash 0x%016llx does not match the model's tokenizer 0x%016llx "
                      "(the data was made with another tokenizer; re-run data prep)",
                      d->path, (ull)d->h.tokenizer_hash, (ull)th);
    if ((int64_t)d->h.vocab_size != (int64_t)xd_tokenizer_n_tokens(t))
        return xd_err("%s: vocab_size %u does not match the model's tokenizer (%d tokens; re-run "
                      "data prep)",
                      d->path, d->h.vocab_size, xd_tokenizer_n_tokens(t));
    return 0;
}

/* ---- sampling ---------------------------------------------------------------------- */

/* Index of the document holding token g (binary search over the offsets). */
static uint64_t doc_of(const xd_tokdata *d, uint64_t g) {
    uint64_t lo = 0, hi = d->h.n_docs; /* off[lo] <= g < off[hi] */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (d->off[mid] <= g) lo = mid;
        else hi = mid;
    }
    return lo;
}

static int check_split(const xd_tokdata *d, xd_split s, int T, uint64_t need) {
    if (s != XD_SPLIT_TRAIN && s != XD_SPLIT_VAL)
        return xd_err("%s: split %d is neither train nor validation", d->path, (int)s);
    if (T < 1) return xd_err("%s: sequence length T = %d, expected >= 1", d->path, T);
    uint64_t L = xd_tokdata_split_tokens(d, s);
    if (L < need)
        return xd_err("%s: the %s split has %llu tokens, fewer than the %llu needed (T + 1 = %d); "
                      "use a shorter sequence or more data",
                      d->path, s == XD_SPLIT_TRAIN ? "train" : "validation", (ull)L, (ull)need,
                      T + 1);
    return 0;
}

/* Copies n stream tokens starting at split position q (wrapping at the split's
 * end) and their context bytes (ctx, when not NULL) and, for the first n - 1
 * of them, doc_start and pos. */
static void fill_row(const xd_tokdata *d, xd_split s, uint64_t q, int n, int32_t *tokens,
                     int32_t *doc_start, int32_t *pos, uint8_t *ctx) {
    uint64_t begin = xd_tokdata_split_begin(d, s), L = xd_tokdata_split_tokens(d, s);
    uint64_t first_doc = split_first_doc(d, s);
    uint64_t g = begin + q;
    uint64_t doc = doc_of(d, g), next = d->off[doc + 1];
    int32_t ds = 0;
    for (int t = 0; t < n; t++) {
        if (t > 0) {
            if (++q == L) { /* wrap: the split's first document starts here */
                q = 0;
                g = begin;
                doc = first_doc;
                next = d->off[doc + 1];
                ds = t;
            } else if (++g == next) {
                doc++;
                next = d->off[doc + 1];
                ds = t;
            }
        }
        tokens[t] = xd_tokdata_token(d, g);
        if (ctx) ctx[t] = d->mask ? d->mask[g] : 0;
        if (t < n - 1) {
            if (doc_start) doc_start[t] = ds;
            if (pos) pos[t] = t - ds;
        }
    }
}

int xd_tokdata_batch(const xd_tokdata *d, xd_split s, uint64_t *cursor, int B, int T,
                     int32_t *tokens, int32_t *doc_start, int32_t *pos) {
    return xd_tokdata_batch_ctx(d, s, cursor, B, T, tokens, doc_start, pos, NULL);
}

int xd_tokdata_batch_ctx(const xd_tokdata *d, xd_split s, uint64_t *cursor, int B, int T,
                         int32_t *tokens, int32_t *doc_start, int32_t *pos, uint8_t *ctx) {
    if (!d || !cursor || !tokens || B < 1) return xd_err("tokdata: batch: invalid arguments");
    if (check_split(d, s, T, (uint64_t)T + 1)) return -1;
    uint64_t L = xd_tokdata_split_tokens(d, s);
    for (int b = 0; b < B; b++) {
        uint64_t q = (*cursor % L + (uint64_t)b * (uint64_t)T % L) % L;
        size_t r = (size_t)b * (size_t)T, rr = r + (size_t)b; /* [B][T] and [B][T + 1] rows */
        fill_row(d, s, q, T + 1, tokens + rr, doc_start ? doc_start + r : NULL,
                 pos ? pos + r : NULL, ctx ? ctx + rr : NULL);
    }
    *cursor += (uint64_t)B * (uint64_t)T;
    return 0;
}

uint64_t xd_tokdata_epoch(const xd_tokdata *d, xd_split s, uint64_t cursor) {
    uint64_t L = d ? xd_tokdata_split_tokens(d, s) : 0;
    return L ? cursor / L : 0;
}

uint64_t xd_tokdata_n_windows(const xd_tokdata *d, xd_split s, int T) {
    if (!d || T < 1 || (s != XD_SPLIT_TRAIN && s != XD_SPLIT_VAL)) return 0;
    uint64_t L = xd_tokdata_split_tokens(d, s);
    return L < 2 ? 0 : (L - 1 + (uint64_t)T - 1) / (uint64_t)T;
}

int xd_tokdata_window(const xd_tokdata *d, xd_split s, int T, uint64_t k, int32_t *tokens,
                      int32_t *doc_start, int32_t *pos) {
    return xd_tokdata_window_ctx(d, s, T, k, tokens, doc_start, pos, NULL);
}

int xd_tokdata_window_ctx(const xd_tokdata *d, xd_split s, int T, uint64_t k, int32_t *tokens,
                          int32_t *doc_start, int32_t *pos, uint8_t *ctx) {
    if (!d || !tokens) return xd_err("tokdata: window: invalid arguments");
    if (check_split(d, s, T, 2)) return -1;
    uint64_t nw = xd_tokdata_n_windows(d, s, T), L = xd_tokdata_split_tokens(d, s);
    if (k >= nw)
        return xd_err("%s: window %llu out of range: the %s split has %llu windows of T = %d",
                      d->path, (ull)k, s == XD_SPLIT_TRAIN ? "train" : "validation", (ull)nw, T);
    uint64_t q = k * (uint64_t)T, n = L - q < (uint64_t)T + 1 ? L - q : (uint64_t)T + 1;
    fill_row(d, s, q, (int)n, tokens, doc_start, pos, ctx);
    return (int)n;
}
