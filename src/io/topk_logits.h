/* A teacher's top-k logits for the train split of a token file (docs/design.md,
 * "Stage II"): `xdistill teacher-logits` writes it once, offline; Stage II reads
 * the rows of its batches from it.
 *
 * Layout (all integers little-endian; fp16 = IEEE 754 binary16):
 *
 *   offset  size  field
 *        0     8  magic "XDTOPK\0\0"
 *        8     4  u32 version (1)
 *       12     4  u32 k               logits kept per position, 1 <= k <= vocab_size
 *       16     4  u32 vocab_size      the teacher's logit count (its embedding rows); ids < it
 *       20     4  u32 seq             T: positions per row
 *       24     4  u32 id_bytes        2 if vocab_size <= 65536, else 4
 *       28     4  u32 batch           rows per teacher forward (--batch) of the run that wrote it
 *       32     8  u64 n_rows          rows stored (a complete file: n_rows == rows_total)
 *       40     8  u64 rows_total      rows asked for (--rows, or ceil(--tokens / T))
 *       48     8  u64 teacher_hash    xd_model_teacher_hash() of the teacher (src/model)
 *       56     8  u64 data_hash       xd_topk_data_hash() of the token file
 *       64     8  u64 tokenizer_hash  xd_tokenizer_hash() of the teacher's tokenizer (= the data's)
 *       72    56  reserved            0
 *      128     …  n_rows rows
 *
 * Row r is stream row r of the train split: the T input positions that
 * xd_tokdata_batch(XD_SPLIT_TRAIN, cursor = r T, B = 1, T) yields (stream
 * tokens [r T, r T + T); the stream wraps at the split's end). A row is T
 * position records of k (id_bytes + 2) bytes each; the record of input
 * position t is
 *     ids[k]     (u16 or u32)  the teacher's k largest logits at t, i.e. its
 *                              prediction of stream token r T + t + 1, sorted by
 *                              logit descending (equal logits: smaller id first)
 *     logits[k]  (fp16)        those logits, rounded to nearest even (core/f16.h); finite
 * so the file size is exactly 128 + n_rows · T · k · (id_bytes + 2). The logits
 * are those of the packed-document training forward (xd_tm_step, then the LM
 * head: attention never crosses a document boundary, positions restart at
 * each document), in fp32 compute.
 *
 * Hashes (64-bit, not cryptographic: they catch accidental mismatches):
 *   teacher_hash  the teacher's weight arena as loaded in fp32 (every weight,
 *                 the untied LM head included), its RoPE frequencies and the
 *                 config fields that change the logits (architecture, shapes,
 *                 RoPE theta and scaling, norm eps, tied head, biases, q/k
 *                 norm, post norms; not max_ctx). So the same weights give the
 *                 same hash whether read from an HF directory or an F32 GGUF;
 *                 a different quantisation gives another one.
 *   data_hash     of the token file's train split only: vocab_size,
 *                 tokenizer_hash, the number of train documents and tokens,
 *                 the train documents' offsets and the train token ids
 *                 (whatever the validation split holds, it does not matter).
 *
 * Writing is resumable: rows go to PATH.partial, whose header n_rows is
 * updated (after the rows themselves are fsync'ed) at every flush (the CLI
 * flushes after a whole batch, at most every --flush-secs); a rerun with the
 * same teacher, data, k, T, batch and rows_total continues from there, and
 * the finished file is renamed onto PATH. */
#ifndef XD_TOPK_LOGITS_H
#define XD_TOPK_LOGITS_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokdata.h"

#define XD_TOPK_MAGIC "XDTOPK\0\0" /* 8 bytes with the two NULs */
#define XD_TOPK_VERSION 1u
#define XD_TOPK_HEADER_BYTES 128u

typedef struct {
    uint32_t version, k, vocab_size, seq, id_bytes;
    uint32_t batch; /* the rows are computed B at a time, and the last bits of a
                     * row's logits can depend on B (BLAS blocking): resuming
                     * with another B would mix two roundings, so it is refused */
    uint64_t n_rows, rows_total;
    uint64_t teacher_hash, data_hash, tokenizer_hash;
} xd_topk_header;

/* ---- the data hash ----------------------------------------------------------------- */

/* See the top of this file for what it covers (built on core/hash.h's
 * xd_hash64). Reads the whole train split once; independent of the thread
 * count. The teacher hash is xd_model_teacher_hash (src/model: it hashes a model). */
uint64_t xd_topk_data_hash(const xd_tokdata *d);

/* ---- top-k selection -------------------------------------------------------------- */

/* The k largest of logits[0..V) into ids[0..k) / vals[0..k), sorted by value
 * descending, equal values by id ascending (so the result is unique).
 * 1 <= k <= V. Returns 0, or -1 with "logit J of V is NaN" if one is (the
 * caller adds where). O(V + k log k) when most logits are below the k-th. */
int xd_topk_select(const float *logits, int V, int k, int32_t *ids, float *vals);

/* ---- reading ------------------------------------------------------------------------- */

typedef struct xd_topk xd_topk;

/* Fills version and id_bytes from vocab_size; n_rows = 0. */
void xd_topk_header_init(xd_topk_header *h, uint32_t k, uint32_t vocab_size, uint32_t seq,
                         uint32_t batch, uint64_t rows_total, uint64_t teacher_hash,
                         uint64_t data_hash, uint64_t tokenizer_hash);

/* mmaps PATH and validates the header (magic, version, k, id_bytes, batch >= 1,
 * n_rows <= rows_total, reserved bytes zero) and the exact file size. Errors name the
 * file and the field. Rows are validated when read. */
xd_topk *xd_topk_open(const char *path);
void xd_topk_close(xd_topk *f);
const xd_topk_header *xd_topk_header_of(const xd_topk *f);
const char *xd_topk_path(const xd_topk *f);

/* Decodes rows [row, row + n) into ids / logits, each [n][T][k] (row-major).
 * Checks every record: id < vocab_size, no id twice at one position, logit
 * finite (not NaN or inf), logits non-increasing.
 * -1 (naming the file, row, position and slot) if a check fails or the rows
 * are out of range (row + n > n_rows). Thread-safe (read-only). */
int xd_topk_read_rows(const xd_topk *f, uint64_t row, uint64_t n, int32_t *ids, float *logits);

/* 0 if the file was made from this token file (data_hash and tokenizer_hash
 * match; computes xd_topk_data_hash(d)), else -1 naming both hashes. */
int xd_topk_check_data(const xd_topk *f, const xd_tokdata *d);
/* 0 if the file was made by the teacher whose xd_model_teacher_hash is
 * teacher_hash, else -1 naming both hashes, the file and `teacher` (its path). */
int xd_topk_check_teacher(const xd_topk *f, uint64_t teacher_hash, const char *teacher);

/* ---- writing (resumable) ------------------------------------------------------------- */

typedef struct xd_topk_writer xd_topk_writer;

/* Opens the output for h (its n_rows is ignored):
 *   - PATH exists: it is opened and validated; if its header equals h (k,
 *     vocab_size, seq, rows_total and the three hashes; batch may differ) and
 *     it is complete, the writer is "done" (xd_topk_writer_done() = 1, nothing
 *     to write); otherwise -1 naming the field, both values and PATH.
 *   - else PATH.partial exists: its header must equal h likewise, batch
 *     included (else -1 naming the field and both values); rows past its
 *     n_rows (written but never committed by a flush) are cut off and writing
 *     continues at n_rows.
 *   - else PATH.partial is created (atomically) with n_rows = 0.
 * PATH.partial is locked (flock) while open: a second writer gets an error. */
xd_topk_writer *xd_topk_writer_open(const char *path, const xd_topk_header *h);
/* Rows in the file so far (committed + appended): the next row to write. */
uint64_t xd_topk_writer_rows(const xd_topk_writer *w);
/* 1 if PATH was already complete when opened. */
int xd_topk_writer_done(const xd_topk_writer *w);
/* Appends n rows, ids / logits each [n][T][k] as xd_topk_select makes them.
 * Checks ids (in [0, vocab_size), distinct within a position), that the
 * logits are finite in fp16 and sorted descending; -1 naming the row,
 * position and slot if not (nothing of the n rows is kept then). The rows
 * count only after the next flush. */
int xd_topk_writer_append(xd_topk_writer *w, const int32_t *ids, const float *logits, uint64_t n);
/* Makes the appended rows durable: fsync of the rows, then header n_rows,
 * then fsync again. A crash at any point leaves a file that resumes at the
 * previous or the new n_rows. */
int xd_topk_writer_flush(xd_topk_writer *w);
/* All rows_total rows written: flush, close and rename PATH.partial onto
 * PATH (+ fsync of the directory). A no-op for a done writer. */
int xd_topk_writer_finish(xd_topk_writer *w);
/* Frees the writer (unlocks; PATH.partial stays for a later resume). */
void xd_topk_writer_close(xd_topk_writer *w);

#endif
