/* Packed token data for training: `xdistill data prep` writes it, the trainer
 * mmaps it and samples batches from it. The format is specified in
 * docs/data.md; in short (all integers little-endian):
 *
 *   offset  size  field
 *        0     8  magic "XDTOKENS"
 *        8     4  u32 version (1)
 *       12     4  u32 vocab_size      tokenizer's token count; every id is < vocab_size
 *       16     8  u64 tokenizer_hash  xd_tokenizer_hash() of the tokenizer that made the ids
 *       24     8  u64 n_docs          >= 1
 *       32     8  u64 n_train_docs    docs [0, n_train_docs) are train, the rest validation
 *       40     8  u64 n_tokens
 *       48     4  u32 token_bytes     2 if vocab_size <= 65536, else 4
 *       52     4  u32 flags           bit 0: every document ends with the EOS token;
 *                                     bit 1: a domain table follows the tokens;
 *                                     bit 2: a context mask ends the file
 *       56     8  u64 shuffle_seed    the --seed of the shuffle (informational)
 *       64  8(n_docs+1)               u64 doc_offsets: doc d is tokens [off[d], off[d+1]);
 *                                     off[0] = 0, strictly increasing, off[n_docs] = n_tokens
 *        …  token_bytes * n_tokens    the token ids (u16 or u32)
 *
 * Optional domain table (flags bit 1), right after the tokens:
 *        …  0-7  zero bytes up to a multiple of 8
 *        …     8  u32 n_domains (1 … 65536), u32 reserved (0)
 *        …     …  n_domains names: u32 length (1 … 64), the bytes
 *                 ([A-Za-z0-9._-], not starting with '.'; distinct)
 *        …  0-3  zero bytes up to a multiple of 4
 *        …  4 n_docs  u32 doc_domain: document d belongs to domain doc_domain[d]
 *
 * Optional context mask (flags bit 2), at the very end of the file (after
 * the tokens and after the domain table when there is one), no padding:
 *        …  n_tokens  u8 mask: 1 if token i is context only (an instruction's
 *                     prompt: no loss predicts it, EVA does not read its
 *                     position), else 0; no other value
 *
 * Without the table the file size is exactly 64 + 8 (n_docs + 1) +
 * token_bytes n_tokens (+ n_tokens with the mask); with it, the table (and
 * the mask after it) ends the file. Each split is a
 * contiguous range of the token array: train = tokens [0, off[n_train_docs]),
 * validation = [off[n_train_docs], n_tokens). */
#ifndef XD_TOKDATA_H
#define XD_TOKDATA_H

#include <stddef.h>
#include <stdint.h>

#include "xdistill.h"

#define XD_TOKDATA_MAGIC "XDTOKENS"
#define XD_TOKDATA_VERSION 1u
#define XD_TOKDATA_HEADER_BYTES 64u
#define XD_TOKDATA_FLAG_EOS 1u     /* documents end with the tokenizer's EOS token */
#define XD_TOKDATA_FLAG_DOMAINS 2u /* a domain table follows the tokens */
#define XD_TOKDATA_FLAG_MASK 4u    /* a context mask of n_tokens bytes ends the file */
#define XD_TOKDATA_MAX_DOMAINS 65536u
#define XD_TOKDATA_MAX_DOMAIN_NAME 64u

/* ---- writing: data prep ----------------------------------------------------- */

typedef enum {
    XD_DOCSEP_FILE = 0, /* each text file is one document */
    XD_DOCSEP_BLANK,    /* paragraphs: runs of non-blank lines, split at blank lines */
    XD_DOCSEP_LINE,     /* each non-blank line is one document */
} xd_docsep;

/* Where a document's domain comes from (data prep --domain). */
typedef enum {
    XD_DOMAIN_NONE = 0, /* no domain table */
    XD_DOMAIN_FILE,     /* the input file's name without directory and last extension */
    XD_DOMAIN_FIELD,    /* a string field of the JSONL record (domain_arg) */
    XD_DOMAIN_RULE,     /* the first rule of the file domain_arg whose regex matches the text */
} xd_domain_by;

typedef struct {
    const char *const *inputs; /* text files, or JSONL (one JSON object per line) */
    int n_inputs;
    int jsonl;           /* 1: every input is JSONL; 0: those whose name ends in .jsonl */
    const char *field;   /* JSONL: the string field holding the text (NULL: "text") */
    xd_docsep doc_sep;   /* text files only; a JSONL line is always one document */
    uint64_t seed;       /* document shuffle */
    double val_frac;     /* fraction of documents for validation, in [0, 1) */
    int parse_special;   /* match control-token text in documents (xd_tokenizer_encode) */
    int threads;         /* tokenizer threads; 0: xd_get_threads() */
    int verbose;         /* progress (XD_LOG_PROGRESS) and warnings (XD_LOG_WARN) */
    xd_domain_by domain_by;
    const char *domain_arg; /* FIELD: the field name; RULE: the rules file */
    const char *prompt_field; /* JSONL only: a record's document is the tokens of this
                               * string field (context, mask 1), then those of `field`
                               * and the EOS (mask 0); NULL: no context mask */
} xd_prep_opts;

typedef struct {
    uint64_t n_docs, n_train_docs, n_tokens; /* as written */
    uint64_t n_train_tokens, n_val_tokens;
    uint64_t n_empty;    /* documents skipped: empty or whitespace only */
    uint64_t bytes_in;   /* text bytes tokenized */
    double seconds;      /* wall time of the whole prep */
} xd_prep_stats;

/* Defaults: field "text", doc_sep FILE, seed 1, val_frac 0.05, threads 0. */
void xd_prep_defaults(xd_prep_opts *o);

/* Tokenizes every document (no BOS; followed by EOS if the tokenizer has
 * one; with o->prompt_field, the prompt's tokens first, marked as context in
 * the file's context mask), shuffles the documents deterministically with
 * o->seed, and puts round(val_frac n_d) of each domain's n_d documents (at least 1 when
 * val_frac > 0 and n_d >= 2; never all) — its last ones in the shuffled
 * order — last as the validation split (without domains: one domain of all
 * documents). With o->domain_by the domain table is written. Writes out_path
 * atomically (out_path.tmp.<pid>, fsync, rename). The output does not depend on the
 * thread count. On error nothing is left at out_path.tmp.<pid> and an existing
 * out_path is untouched. stats may be NULL. */
int xd_tokdata_prep(const xd_tokenizer *t, const xd_prep_opts *o, const char *out_path,
                    xd_prep_stats *stats);

/* Writes a token file from documents already tokenized, in the given order
 * (no shuffle, no EOS added): doc d is ids[off[d] .. off[d+1]). Validates
 * like the reader (ids < vocab_size, offsets strictly increasing). Atomic
 * like xd_tokdata_prep. */
int xd_tokdata_write(const char *path, uint32_t vocab_size, uint64_t tokenizer_hash,
                     uint32_t flags, uint64_t shuffle_seed, const int32_t *ids,
                     const uint64_t *doc_offsets, uint64_t n_docs, uint64_t n_train_docs);
/* The same with a context mask: ctx_mask[i] (0 or 1) for every token i, or
 * NULL for a file without one. flags may hold XD_TOKDATA_FLAG_EOS, and
 * XD_TOKDATA_FLAG_MASK only together with a mask (it is set when one is given). */
int xd_tokdata_write_mask(const char *path, uint32_t vocab_size, uint64_t tokenizer_hash,
                          uint32_t flags, uint64_t shuffle_seed, const int32_t *ids,
                          const uint64_t *doc_offsets, uint64_t n_docs, uint64_t n_train_docs,
                          const uint8_t *ctx_mask);

/* ---- reading ------------------------------------------------------------------ */

typedef struct xd_tokdata xd_tokdata;

typedef enum { XD_SPLIT_TRAIN = 0, XD_SPLIT_VAL = 1 } xd_split;

typedef struct {
    uint32_t version, vocab_size, token_bytes, flags;
    uint64_t tokenizer_hash, n_docs, n_train_docs, n_tokens, shuffle_seed;
} xd_tokdata_header;

/* mmaps and validates the whole file: header fields, the file size, the
 * offsets and every token id (< vocab_size). Errors name the file and field. */
xd_tokdata *xd_tokdata_open(const char *path);
void xd_tokdata_close(xd_tokdata *d);

const xd_tokdata_header *xd_tokdata_header_of(const xd_tokdata *d);
const char *xd_tokdata_path(const xd_tokdata *d);
/* doc_offsets[0 .. n_docs] (points into the mapping). */
const uint64_t *xd_tokdata_doc_offsets(const xd_tokdata *d);
/* Token i of the whole array (i < n_tokens; no check). */
int32_t xd_tokdata_token(const xd_tokdata *d, uint64_t i);
/* Copies tokens [from, from + n) into out; -1 if out of range. */
int xd_tokdata_copy(const xd_tokdata *d, uint64_t from, uint64_t n, int32_t *out);

/* The context mask (flags bit 2): xd_tokdata_has_mask is 1 when the file has
 * one; xd_tokdata_context_mask points at its n_tokens bytes in the mapping
 * (NULL without one); xd_tokdata_masked_tokens counts the context tokens of a
 * split (0 without a mask). */
int xd_tokdata_has_mask(const xd_tokdata *d);
const uint8_t *xd_tokdata_context_mask(const xd_tokdata *d);
uint64_t xd_tokdata_masked_tokens(const xd_tokdata *d, xd_split s);

/* The domain table: 0 domains when the file has none; names are
 * NUL-terminated; xd_tokdata_doc_domain is 0 for every document without one. */
uint32_t xd_tokdata_n_domains(const xd_tokdata *d);
const char *xd_tokdata_domain_name(const xd_tokdata *d, uint32_t i);
uint32_t xd_tokdata_doc_domain(const xd_tokdata *d, uint64_t doc);

/* data split: writes DIR/NAME.tok for each domain (all of them, or the n_only
 * names given), holding that domain's documents in the same order and the
 * same train/validation assignment, with a one-entry domain table. The
 * header fields other than the counts are copied. DIR is created if needed;
 * every file is written atomically. Fails if d has no domain table or a
 * name in only is not one of its domains. */
int xd_tokdata_split_domains(const xd_tokdata *d, const char *dir, const char *const *only,
                             int n_only);

/* ---- data echo: retrieval-bearing training data (tokdata_echo.c) ---------------- */

/* After each line of a train document (a line ends with a token whose text
 * holds a newline), with probability rate, repeat a line of the same
 * document that starts between min_gap and max_gap tokens back: the whole
 * line, or with probability span_frac a span of min_len .. max_span tokens
 * of it that also starts at least min_gap tokens back. Every echoed token
 * thus copies the token exactly d tokens earlier, min_gap <= d <= max_gap.
 * Lines shorter than min_len are not repeated; an echo ends with a line end. */
typedef struct {
    double rate;       /* [0, 1] */
    int min_gap;       /* >= 1; set it above the student's window */
    int max_gap;       /* >= min_gap */
    double span_frac;  /* [0, 1] */
    int min_len;       /* >= 1 */
    int max_span;      /* >= min_len */
    uint64_t seed;
} xd_echo_opts;

typedef struct {
    uint64_t n_echoes, echo_tokens;  /* echoes written and their tokens (line ends included) */
    uint64_t n_tokens_in, n_tokens_out;
} xd_echo_stats;

/* rate 0.25, min_gap 96, max_gap 2048, span_frac 0.5, min_len 3, max_span 32, seed 1. */
void xd_echo_defaults(xd_echo_opts *o);

/* Writes in's documents with echoes to out_path (atomically; validation
 * documents, the header fields and any domain table unchanged). t must be
 * the file's tokenizer. The output depends only on in, t and o. stats and
 * echo_mask may be NULL; *echo_mask (free it) gets one byte per output
 * token, 1 where the token belongs to an echo. A file with a context mask
 * (instruction data) is refused. */
int xd_tokdata_echo(const xd_tokdata *in, const xd_tokenizer *t, const xd_echo_opts *o,
                    const char *out_path, xd_echo_stats *stats, uint8_t **echo_mask);

/* First token index, token count and document count of a split. */
uint64_t xd_tokdata_split_begin(const xd_tokdata *d, xd_split s);
uint64_t xd_tokdata_split_tokens(const xd_tokdata *d, xd_split s);
uint64_t xd_tokdata_split_docs(const xd_tokdata *d, xd_split s);

/* 0 if the data was made with tokenizer t (same hash and vocabulary size),
 * else -1 with "DATA: tokenizer hash 0x… does not match the model's tokenizer
 * 0x… (the data was made with another tokenizer; re-run data prep)". */
int xd_tokdata_check_tokenizer(const xd_tokdata *d, const xd_tokenizer *t);

/* Unigram baselines in nats/token: the entropy of the train split's token
 * distribution, and the cross-entropy of the validation split under it
 * (add-one smoothed; NaN if there is no validation split). */
int xd_tokdata_unigram(const xd_tokdata *d, double *h_train, double *ce_val);

/* ---- batches -------------------------------------------------------------------- */

/* The split is read as an endless stream: its tokens, then again from its
 * first token, and so on. A cursor counts the stream tokens consumed so far
 * (it never wraps; save it in checkpoints to resume exactly): the epoch is
 * cursor / split_tokens, the position cursor % split_tokens.
 *
 * xd_tokdata_batch fills B rows; row b holds the T + 1 stream tokens starting
 * at *cursor + b T (inputs are row[0..T), targets row[1..T]), then advances
 * *cursor by B T. Per input position t (each array B x T, row-major, either
 * may be NULL):
 *   doc_start[t]  row index where token t's document starts, 0 if it started
 *                 before the row (a document includes its trailing EOS, so the
 *                 token after an EOS starts a new document);
 *   pos[t]        t - doc_start[t], the position within the document counted
 *                 from the row start.
 * The split must hold at least T + 1 tokens. Deterministic: a batch depends
 * only on the file, split, cursor, B and T. */
int xd_tokdata_batch(const xd_tokdata *d, xd_split s, uint64_t *cursor, int B, int T,
                     int32_t *tokens, int32_t *doc_start, int32_t *pos);
/* xd_tokdata_batch, and ctx [B][T + 1] (may be NULL): the context-mask byte of
 * every row token, laid out like tokens (0 everywhere when the file has no mask). */
int xd_tokdata_batch_ctx(const xd_tokdata *d, xd_split s, uint64_t *cursor, int B, int T,
                         int32_t *tokens, int32_t *doc_start, int32_t *pos, uint8_t *ctx);
uint64_t xd_tokdata_epoch(const xd_tokdata *d, xd_split s, uint64_t cursor);

/* Evaluation windows over a whole split, no wrapping: window k holds split
 * tokens [k T, min(k T + T + 1, split_tokens)), so every token but the first
 * is a target exactly once. xd_tokdata_n_windows is ceil((split_tokens - 1) / T)
 * (0 if the split has < 2 tokens). xd_tokdata_window fills tokens[0..n) and,
 * for the n - 1 inputs, doc_start and pos (as for batches; either may be
 * NULL), and returns n (2 <= n <= T + 1), or -1 if k is out of range. */
uint64_t xd_tokdata_n_windows(const xd_tokdata *d, xd_split s, int T);
int xd_tokdata_window(const xd_tokdata *d, xd_split s, int T, uint64_t k, int32_t *tokens,
                      int32_t *doc_start, int32_t *pos);
/* xd_tokdata_window, and ctx[0..n) (may be NULL): the context-mask byte of
 * each window token (0 when the file has no mask). */
int xd_tokdata_window_ctx(const xd_tokdata *d, xd_split s, int T, uint64_t k, int32_t *tokens,
                          int32_t *doc_start, int32_t *pos, uint8_t *ctx);

#endif
