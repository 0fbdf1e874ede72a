/* Teacher top-k logit files: the data hash, top-k selection, the
 * mmap reader and the resumable writer. Format: see topk_logits.h. */
#include "topk_logits.h"
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.h"
#include "../core/f16.h"
#include "../core/hash.h"
#include "../core/mem.h"
#include "atomic.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "topk_logits.c reads and writes little-endian files with native loads; port it first"
#endif

typedef unsigned long long ull;

/* ---- the data hash ------------------------------------------------------------------ */

/* Token ids [from, from + n) as u32, hashed in blocks of 4096 (a stack
 * buffer, so nothing here can fail) chained in order. */
static uint64_t hash_tokens(const xd_tokdata *d, uint64_t from, uint64_t n, uint64_t seed) {
    enum { TB = 4096 };
    int32_t buf[TB];
    uint64_t h = seed;
    for (uint64_t o = 0; o < n; o += TB) {
        uint64_t len = n - o < TB ? n - o : TB;
        xd_tokdata_copy(d, from + o, len, buf);
        h = xd_mix64(h ^ xd_hash64_block(buf, (size_t)len * 4, seed + o));
    }
    return h;
}

uint64_t xd_topk_data_hash(const xd_tokdata *d) {
    const xd_tokdata_header *hd = xd_tokdata_header_of(d);
    const uint64_t *off = xd_tokdata_doc_offsets(d);
    uint64_t nd = hd->n_train_docs, begin = xd_tokdata_split_begin(d, XD_SPLIT_TRAIN);
    uint64_t nt = xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN);
    uint64_t w[] = {0x3141544144445844ull /* "DXDDATA1" */, hd->vocab_size, hd->tokenizer_hash,
                    nd, nt};
    uint64_t h = xd_hash64(w, sizeof w, 0);
    /* the train documents' offsets, relative to the split's start */
    for (uint64_t i = 0; i <= nd; i++) h = xd_mix64(h ^ (off[i] - begin)) + i;
    /* the train ids, in chunks of 1M tokens hashed in parallel and chained in order */
    enum { TC = 1 << 20 };
    uint64_t nc = (nt + TC - 1) / TC, *hc = malloc((nc ? nc : 1) * sizeof *hc), h0 = h;
    if (hc) {
#pragma omp parallel for schedule(dynamic, 1)
        for (long c = 0; c < (long)nc; c++) {
            uint64_t o = (uint64_t)c * TC;
            hc[c] = hash_tokens(d, begin + o, nt - o < TC ? nt - o : TC, h0 + (uint64_t)c);
        }
    }
    for (uint64_t c = 0; c < nc; c++) { /* without hc (out of memory): the same, serially */
        uint64_t o = c * TC;
        h = xd_mix64(h ^ (hc ? hc[c] : hash_tokens(d, begin + o, nt - o < TC ? nt - o : TC, h0 + c)));
    }
    free(hc);
    return h;
}

/* ---- top-k selection ----------------------------------------------------------------
 * A binary min-heap of the k best so far, its root the worst of them: lower
 * value, or equal value and larger id. Ids are scanned in increasing order, so
 * a later logit equal to the root is never better and only a strictly larger
 * one replaces it. Popping the root k times leaves the array sorted best
 * first. */

static int worse(float va, int32_t ia, float vb, int32_t ib) {
    return va < vb || (va == vb && ia > ib);
}

static void sift_down(float *v, int32_t *id, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(v[l], id[l], v[w], id[w])) w = l;
        if (r < n && worse(v[r], id[r], v[w], id[w])) w = r;
        if (w == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[w], id[i] = id[w];
        v[w] = tv, id[w] = ti;
        i = w;
    }
}

int xd_topk_select(const float *logits, int V, int k, int32_t *ids, float *vals) {
    if (k < 1 || k > V) return xd_err("top-k: k = %d, expected 1 <= k <= %d", k, V);
    for (int j = 0; j < k; j++) {
        if (isnan(logits[j])) return xd_err("logit %d of %d is NaN", j, V);
        ids[j] = j;
        vals[j] = logits[j];
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(vals, ids, k, i);
    for (int j = k; j < V; j++) {
        float x = logits[j];
        if (x > vals[0]) {
            vals[0] = x;
            ids[0] = j;
            sift_down(vals, ids, k, 0);
        } else if (isnan(x)) return xd_err("logit %d of %d is NaN", j, V);
    }
    for (int n = k - 1; n > 0; n--) { /* heap sort: the worst goes to the back */
        float tv = vals[0];
        int32_t ti = ids[0];
        vals[0] = vals[n], ids[0] = ids[n];
        vals[n] = tv, ids[n] = ti;
        sift_down(vals, ids, n, 0);
    }
    return 0;
}

/* ---- header -------------------------------------------------------------------------- */


static uint32_t id_bytes_for(uint32_t vocab) { return vocab <= 65536u ? 2u : 4u; }

void xd_topk_header_init(xd_topk_header *h, uint32_t k, uint32_t vocab_size, uint32_t seq,
                         uint32_t batch, uint64_t rows_total, uint64_t teacher_hash,
                         uint64_t data_hash, uint64_t tokenizer_hash) {
    memset(h, 0, sizeof *h);
    h->version = XD_TOPK_VERSION;
    h->k = k;
    h->vocab_size = vocab_size;
    h->seq = seq;
    h->id_bytes = id_bytes_for(vocab_size);
    h->batch = batch;
    h->rows_total = rows_total;
    h->teacher_hash = teacher_hash;
    h->data_hash = data_hash;
    h->tokenizer_hash = tokenizer_hash;
}

static void encode_header(uint8_t b[XD_TOPK_HEADER_BYTES], const xd_topk_header *h) {
    memset(b, 0, XD_TOPK_HEADER_BYTES);
    memcpy(b, XD_TOPK_MAGIC, 8);
    xd_put_u32(b + 8, h->version);
    xd_put_u32(b + 12, h->k);
    xd_put_u32(b + 16, h->vocab_size);
    xd_put_u32(b + 20, h->seq);
    xd_put_u32(b + 24, h->id_bytes);
    xd_put_u32(b + 28, h->batch);
    xd_put_u64(b + 32, h->n_rows);
    xd_put_u64(b + 40, h->rows_total);
    xd_put_u64(b + 48, h->teacher_hash);
    xd_put_u64(b + 56, h->data_hash);
    xd_put_u64(b + 64, h->tokenizer_hash);
}

/* Decodes and validates a header; errors name `path` and the field. Sets
 * *row_bytes = seq · k · (id_bytes + 2) (checked against overflow). */
static int decode_header(const uint8_t *b, xd_topk_header *h, const char *path,
                         uint64_t *row_bytes) {
    if (memcmp(b, XD_TOPK_MAGIC, 8)) {
        char shown[9];
        for (int i = 0; i < 8; i++) shown[i] = b[i] >= 32 && b[i] < 127 ? (char)b[i] : '?';
        shown[8] = 0;
        return xd_err("%s: magic: found \"%s\", expected \"XDTOPK\" + two NUL bytes (not a "
                      "teacher top-k logits file; make one with `xdistill teacher-logits`)",
                      path, shown);
    }
    h->version = xd_get_u32(b + 8);
    h->k = xd_get_u32(b + 12);
    h->vocab_size = xd_get_u32(b + 16);
    h->seq = xd_get_u32(b + 20);
    h->id_bytes = xd_get_u32(b + 24);
    h->batch = xd_get_u32(b + 28);
    h->n_rows = xd_get_u64(b + 32);
    h->rows_total = xd_get_u64(b + 40);
    h->teacher_hash = xd_get_u64(b + 48);
    h->data_hash = xd_get_u64(b + 56);
    h->tokenizer_hash = xd_get_u64(b + 64);
    if (h->version != XD_TOPK_VERSION)
        return xd_err("%s: version: %u is not supported, expected %u", path, h->version,
                      XD_TOPK_VERSION);
    if (h->vocab_size == 0) return xd_err("%s: vocab_size: 0, expected > 0", path);
    if (h->k == 0 || h->k > h->vocab_size)
        return xd_err("%s: k: %u, expected 1 <= k <= vocab_size %u", path, h->k, h->vocab_size);
    if (h->seq == 0) return xd_err("%s: seq: 0, expected >= 1", path);
    if (h->id_bytes != id_bytes_for(h->vocab_size))
        return xd_err("%s: id_bytes: %u, expected %u for vocab_size %u", path, h->id_bytes,
                      id_bytes_for(h->vocab_size), h->vocab_size);
    if (h->batch == 0) return xd_err("%s: batch: 0, expected >= 1", path);
    for (unsigned i = 72; i < XD_TOPK_HEADER_BYTES; i++)
        if (b[i]) return xd_err("%s: reserved byte %u is not 0 (corrupt)", path, i);
    if (h->n_rows > h->rows_total)
        return xd_err("%s: n_rows: %llu exceeds rows_total %llu (corrupt)", path, (ull)h->n_rows,
                      (ull)h->rows_total);
    uint64_t rec = (uint64_t)h->k * (h->id_bytes + 2u); /* < 2^35 */
    if (rec > UINT64_MAX / h->seq) return xd_err("%s: seq x k: too large", path);
    *row_bytes = rec * h->seq;
    return 0;
}

static int same_header(const xd_topk_header *have, const xd_topk_header *want, const char *path,
                       const char *hint, int check_batch) {
#define HASH(f)                                                                                 \
    if (have->f != want->f)                                                                     \
        return xd_err("%s: " #f " 0x%016llx does not match this run's " #f " 0x%016llx (%s)",   \
                      path, (ull)have->f, (ull)want->f, hint);
#define NUM(f, opt)                                                                             \
    if (have->f != want->f)                                                                     \
        return xd_err("%s: " #f " %llu does not match this run's %llu" opt " (%s)", path,        \
                      (ull)have->f, (ull)want->f, hint);
    HASH(teacher_hash)
    HASH(data_hash)
    HASH(tokenizer_hash)
    NUM(vocab_size, "")
    NUM(k, " (--topk)")
    NUM(seq, " (--seq)")
    NUM(rows_total, " (--rows)")
    if (check_batch) { NUM(batch, " (--batch)") }
#undef HASH
#undef NUM
    return 0;
}

/* ---- reader ---------------------------------------------------------------------------- */

struct xd_topk {
    char *path;
    uint8_t *map;
    size_t size;
    xd_topk_header h;
    uint64_t row_bytes;
};

xd_topk *xd_topk_open(const char *path) {
    if (!path) { xd_err("topk: open: no path"); return NULL; }
    xd_topk *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        xd_err("out of memory");
        return NULL;
    }
    if (xd_map_file(path, XD_TOPK_HEADER_BYTES, "top-k logits file", &f->map, &f->size)) goto fail;
    if (decode_header(f->map, &f->h, path, &f->row_bytes)) goto fail;
    uint64_t body = f->size - XD_TOPK_HEADER_BYTES;
    if (f->h.n_rows > body / f->row_bytes || f->h.n_rows * f->row_bytes != body) {
        char want[32] = "more than 2^64";
        if (f->h.n_rows <= (UINT64_MAX - XD_TOPK_HEADER_BYTES) / f->row_bytes)
            snprintf(want, sizeof want, "%llu",
                     (ull)(XD_TOPK_HEADER_BYTES + f->h.n_rows * f->row_bytes));
        xd_err("%s: file size: %zu bytes, expected 128 + n_rows %llu x seq %u x k %u x (id_bytes "
               "%u + 2) = %s (truncated or corrupt)",
               path, f->size, (ull)f->h.n_rows, f->h.seq, f->h.k, f->h.id_bytes, want);
        goto fail;
    }
    return f;
fail:
    xd_topk_close(f);
    return NULL;
}

void xd_topk_close(xd_topk *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    free(f);
}

const xd_topk_header *xd_topk_header_of(const xd_topk *f) { return f ? &f->h : NULL; }
const char *xd_topk_path(const xd_topk *f) { return f ? f->path : NULL; }

int xd_topk_read_rows(const xd_topk *f, uint64_t row, uint64_t n, int32_t *ids, float *logits) {
    if (!f || (n && (!ids || !logits))) return xd_err("topk: read_rows: invalid arguments");
    if (row > f->h.n_rows || n > f->h.n_rows - row)
        return xd_err("%s: rows [%llu, %llu) out of range: the file has %llu rows (make more with "
                      "`xdistill teacher-logits --rows`)",
                      f->path, (ull)row, (ull)(row + n), (ull)f->h.n_rows);
    uint32_t k = f->h.k, T = f->h.seq, ib = f->h.id_bytes, V = f->h.vocab_size;
    /* the ids seen at the current position: one bit per id, cleared again after each
     * position (O(k) per position whatever k and V; local, so reads stay thread-safe) */
    uint64_t *seen = n ? calloc(((size_t)V + 63) / 64, sizeof *seen) : NULL;
    if (n && !seen) return xd_err("%s: out of memory", f->path);
    int rc = 0;
    for (uint64_t r = 0; r < n && !rc; r++) {
        const uint8_t *p = f->map + XD_TOPK_HEADER_BYTES + (row + r) * f->row_bytes;
        for (uint32_t t = 0; t < T && !rc; t++) {
            const uint8_t *pl = p + (size_t)k * ib;
            size_t o = ((size_t)r * T + t) * k;
            float prev = INFINITY;
            for (uint32_t j = 0; j < k && !rc; j++) {
                uint32_t id;
                if (ib == 2) {
                    uint16_t s;
                    memcpy(&s, p + 2 * j, 2);
                    id = s;
                } else memcpy(&id, p + 4 * j, 4);
                uint16_t hv;
                memcpy(&hv, pl + 2 * j, 2);
                float x = xd_fp16_to_fp32(hv);
                if (id >= V) {
                    rc = xd_err("%s: row %llu, position %u, slot %u: id %u, expected < "
                                "vocab_size %u (corrupt file)",
                                f->path, (ull)(row + r), t, j, id, V);
                } else if ((seen[id / 64] >> (id % 64)) & 1) {
                    uint32_t first = 0;
                    while (first < j && ids[o + first] != (int32_t)id) first++;
                    rc = xd_err("%s: row %llu, position %u, slot %u: id %u repeats slot %u; "
                                "expected k distinct ids (corrupt file)",
                                f->path, (ull)(row + r), t, j, id, first);
                } else if (!isfinite(x)) {
                    rc = xd_err("%s: row %llu, position %u, slot %u: logit is %s, expected a "
                                "finite fp16 (corrupt file)",
                                f->path, (ull)(row + r), t, j, isnan(x) ? "NaN" : "infinite");
                } else if (x > prev) {
                    rc = xd_err("%s: row %llu, position %u, slot %u: logit %g exceeds the "
                                "previous slot's %g; expected descending (corrupt file)",
                                f->path, (ull)(row + r), t, j, x, prev);
                } else {
                    seen[id / 64] |= 1ull << (id % 64);
                    prev = x;
                    ids[o + j] = (int32_t)id;
                    logits[o + j] = x;
                }
            }
            for (uint32_t j = 0; j < k && !rc; j++) /* only this position's bits are set */
                seen[(uint32_t)ids[o + j] / 64] = 0;
            p += (size_t)k * (ib + 2u);
        }
    }
    free(seen);
    return rc;
}

int xd_topk_check_data(const xd_topk *f, const xd_tokdata *d) {
    if (!f || !d) return xd_err("topk: check_data: invalid arguments");
    uint64_t th = xd_tokdata_header_of(d)->tokenizer_hash;
    if (f->h.tokenizer_hash != th)
        return xd_err("%s: tokenizer_hash 0x%016llx does not match %s's tokenizer_hash 0x%016llx "
                      "(the logits were made for data of another tokenizer)",
                      f->path, (ull)f->h.tokenizer_hash, xd_tokdata_path(d), (ull)th);
    uint64_t dh = xd_topk_data_hash(d);
    if (f->h.data_hash != dh)
        return xd_err("%s: data_hash 0x%016llx does not match %s's data_hash 0x%016llx (the "
                      "logits were made from other token data; rerun teacher-logits on it)",
                      f->path, (ull)f->h.data_hash, xd_tokdata_path(d), (ull)dh);
    return 0;
}

int xd_topk_check_teacher(const xd_topk *f, uint64_t teacher_hash, const char *teacher) {
    if (!f || !teacher) return xd_err("topk: check_teacher: invalid arguments");
    if (f->h.teacher_hash != teacher_hash)
        return xd_err("%s: teacher_hash 0x%016llx does not match %s's teacher_hash 0x%016llx "
                      "(the logits were made by another teacher)",
                      f->path, (ull)f->h.teacher_hash, teacher, (ull)teacher_hash);
    return 0;
}

/* ---- writer ------------------------------------------------------------------------------ */

struct xd_topk_writer {
    char path[XD_APATH_MAX], partial[XD_APATH_MAX];
    int fd; /* PATH.partial, locked; -1 when done */
    xd_topk_header h;
    uint64_t row_bytes;
    uint64_t committed, written; /* rows counted in the header / in the file */
    int done;
    uint8_t *buf;
    size_t buf_cap;
    uint32_t *stamp, gen; /* duplicate-id check: stamp[id] == gen means seen */
};

static int pwrite_all(int fd, const void *data, size_t n, uint64_t off, const char *path) {
    const uint8_t *p = data;
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return xd_err("%s: write failed: %s", path, strerror(errno));
        }
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

static int fsync_parent(const char *path) {
    char tmp[XD_APATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    return xd_fsync_dir(dirname(tmp));
}

static const char HINT_DONE[] = "it holds logits made with other arguments; delete it or choose "
                                "another -o to compute new ones";
static const char HINT_PARTIAL[] = "the partial file was started with other arguments; rerun "
                                   "with those, or delete it to start over";

xd_topk_writer *xd_topk_writer_open(const char *path, const xd_topk_header *h) {
    if (!path || !*path || !h) { xd_err("topk: writer_open: invalid arguments"); return NULL; }
    xd_topk_header want = *h;
    want.n_rows = 0;
    want.version = XD_TOPK_VERSION;
    if (want.vocab_size == 0 || want.k == 0 || want.k > want.vocab_size || want.seq == 0 ||
        want.rows_total == 0 || want.batch == 0 || want.id_bytes != id_bytes_for(want.vocab_size)) {
        xd_err("%s: invalid header: k %u, vocab_size %u, seq %u, batch %u, rows_total %llu, "
               "id_bytes %u (expected 1 <= k <= vocab_size, seq, batch, rows_total >= 1)",
               path, want.k, want.vocab_size, want.seq, want.batch, (ull)want.rows_total,
               want.id_bytes);
        return NULL;
    }
    xd_topk_writer *w = calloc(1, sizeof *w);
    if (!w) { xd_err("out of memory"); return NULL; }
    w->fd = -1;
    w->h = want;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path ||
        snprintf(w->partial, sizeof w->partial, "%s.partial", path) >= (int)sizeof w->partial) {
        xd_err("%s: path too long", path);
        goto fail;
    }
    uint64_t rec = (uint64_t)want.k * (want.id_bytes + 2u);
    w->row_bytes = rec * want.seq;

    /* 1. a finished file */
    struct stat st;
    if (stat(path, &st) == 0) {
        xd_topk *f = xd_topk_open(path);
        if (!f) goto fail;
        int rc = same_header(&f->h, &want, path, HINT_DONE, 0);
        if (!rc && f->h.n_rows != f->h.rows_total)
            rc = xd_err("%s: n_rows %llu < rows_total %llu: incomplete (%s)", path,
                        (ull)f->h.n_rows, (ull)f->h.rows_total, HINT_DONE);
        xd_topk_close(f);
        if (rc) goto fail;
        w->done = 1;
        w->committed = w->written = want.rows_total;
        w->h.n_rows = want.rows_total;
        return w;
    } else if (errno != ENOENT) {
        xd_err("%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }

    /* 2. a partial file to resume, or 3. a new one */
    w->fd = open(w->partial, O_RDWR | O_CLOEXEC);
    if (w->fd < 0 && errno == ENOENT) {
        uint8_t hb[XD_TOPK_HEADER_BYTES];
        encode_header(hb, &want);
        if (xd_write_file_atomic(w->partial, hb, sizeof hb)) goto fail;
        w->fd = open(w->partial, O_RDWR | O_CLOEXEC);
    }
    if (w->fd < 0) {
        xd_err("%s: cannot open: %s", w->partial, strerror(errno));
        goto fail;
    }
    if (flock(w->fd, LOCK_EX | LOCK_NB)) {
        xd_err("%s: %s", w->partial,
               errno == EWOULDBLOCK ? "another process is writing it (locked)" : strerror(errno));
        goto fail;
    }
    struct stat sf, sp;
    if (fstat(w->fd, &sf) || stat(w->partial, &sp) || sf.st_ino != sp.st_ino ||
        sf.st_dev != sp.st_dev) {
        xd_err("%s: was replaced while being opened (another process is writing it?)",
               w->partial);
        goto fail;
    }
    uint8_t hb[XD_TOPK_HEADER_BYTES];
    ssize_t got = pread(w->fd, hb, sizeof hb, 0);
    if (got != (ssize_t)sizeof hb) {
        xd_err("%s: header: the file has %lld bytes, fewer than the %u-byte header (corrupt; "
               "delete it to start over)", w->partial, (long long)sf.st_size,
               XD_TOPK_HEADER_BYTES);
        goto fail;
    }
    xd_topk_header have;
    uint64_t rb;
    if (decode_header(hb, &have, w->partial, &rb) ||
        same_header(&have, &want, w->partial, HINT_PARTIAL, 1))
        goto fail;
    uint64_t need = XD_TOPK_HEADER_BYTES + have.n_rows * rb;
    if ((uint64_t)sf.st_size < need) {
        xd_err("%s: file size %lld is less than the %llu bytes its n_rows %llu need (truncated; "
               "delete it to start over)", w->partial, (long long)sf.st_size, (ull)need,
               (ull)have.n_rows);
        goto fail;
    }
    /* rows written after the last flush were never counted: drop them */
    if ((uint64_t)sf.st_size > need && ftruncate(w->fd, (off_t)need)) {
        xd_err("%s: cannot truncate to %llu bytes: %s", w->partial, (ull)need, strerror(errno));
        goto fail;
    }
    w->committed = w->written = have.n_rows;
    w->h.n_rows = have.n_rows;
    if (!(w->stamp = calloc(want.vocab_size, sizeof *w->stamp))) {
        xd_err("out of memory");
        goto fail;
    }
    return w;
fail:
    xd_topk_writer_close(w);
    return NULL;
}

uint64_t xd_topk_writer_rows(const xd_topk_writer *w) { return w ? w->written : 0; }
int xd_topk_writer_done(const xd_topk_writer *w) { return w ? w->done : 0; }

int xd_topk_writer_append(xd_topk_writer *w, const int32_t *ids, const float *logits, uint64_t n) {
    if (!w || (n && (!ids || !logits))) return xd_err("topk: append: invalid arguments");
    if (w->done || w->fd < 0) return xd_err("%s: already complete; nothing to append", w->path);
    if (n > w->h.rows_total - w->written)
        return xd_err("%s: appending %llu rows after %llu would exceed rows_total %llu",
                      w->partial, (ull)n, (ull)w->written, (ull)w->h.rows_total);
    if (n == 0) return 0;
    if (n > SIZE_MAX / w->row_bytes) return xd_err("%s: too many rows at once", w->partial);
    size_t bytes = (size_t)(n * w->row_bytes);
    if (bytes > w->buf_cap) {
        uint8_t *b = realloc(w->buf, bytes);
        if (!b) return xd_err("out of memory (%zu bytes)", bytes);
        w->buf = b;
        w->buf_cap = bytes;
    }
    uint32_t k = w->h.k, T = w->h.seq, ib = w->h.id_bytes, V = w->h.vocab_size;
    uint8_t *p = w->buf;
    for (uint64_t r = 0; r < n; r++)
        for (uint32_t t = 0; t < T; t++) {
            size_t o = ((size_t)r * T + t) * k;
            uint8_t *pl = p + (size_t)k * ib;
            if (++w->gen == 0) { /* wrapped: forget every stamp */
                memset(w->stamp, 0, (size_t)V * sizeof *w->stamp);
                w->gen = 1;
            }
            float prev = INFINITY;
            for (uint32_t j = 0; j < k; j++) {
                int32_t id = ids[o + j];
                unsigned long long row = (ull)(w->written + r);
                if (id < 0 || (uint32_t)id >= V)
                    return xd_err("%s: row %llu, position %u, slot %u: id %d, expected 0 <= id < "
                                  "vocab_size %u", w->partial, row, t, j, id, V);
                if (w->stamp[id] == w->gen)
                    return xd_err("%s: row %llu, position %u, slot %u: id %d appears twice",
                                  w->partial, row, t, j, id);
                w->stamp[id] = w->gen;
                uint16_t hv = xd_fp32_to_fp16(logits[o + j]);
                float x = xd_fp16_to_fp32(hv);
                if (!isfinite(x))
                    return xd_err("%s: row %llu, position %u, slot %u: logit %g does not fit fp16 "
                                  "(NaN, or |x| >= 65520)", w->partial, row, t, j, logits[o + j]);
                if (x > prev)
                    return xd_err("%s: row %llu, position %u, slot %u: logit %g exceeds the "
                                  "previous slot's %g; expected descending",
                                  w->partial, row, t, j, logits[o + j], prev);
                prev = x;
                if (ib == 2) {
                    uint16_t s = (uint16_t)id;
                    memcpy(p + 2 * j, &s, 2);
                } else {
                    uint32_t s = (uint32_t)id;
                    memcpy(p + 4 * j, &s, 4);
                }
                memcpy(pl + 2 * j, &hv, 2);
            }
            p += (size_t)k * (ib + 2u);
        }
    if (pwrite_all(w->fd, w->buf, bytes, XD_TOPK_HEADER_BYTES + w->written * w->row_bytes,
                   w->partial))
        return -1;
    w->written += n;
    return 0;
}

int xd_topk_writer_flush(xd_topk_writer *w) {
    if (!w) return xd_err("topk: flush: invalid arguments");
    if (w->done || w->written == w->committed) return 0;
    uint8_t nb[8];
    xd_put_u64(nb, w->written);
    /* the rows first, so the header never counts rows that are not on disk */
    if (fdatasync(w->fd)) return xd_err("%s: fsync failed: %s", w->partial, strerror(errno));
    if (pwrite_all(w->fd, nb, 8, 32, w->partial)) return -1;
    if (fdatasync(w->fd)) return xd_err("%s: fsync failed: %s", w->partial, strerror(errno));
    w->committed = w->written;
    w->h.n_rows = w->written;
    return 0;
}

int xd_topk_writer_finish(xd_topk_writer *w) {
    if (!w) return xd_err("topk: finish: invalid arguments");
    if (w->done) return 0;
    if (w->written != w->h.rows_total)
        return xd_err("%s: only %llu of %llu rows written; cannot finish", w->partial,
                      (ull)w->written, (ull)w->h.rows_total);
    if (xd_topk_writer_flush(w)) return -1;
    if (fsync(w->fd)) return xd_err("%s: fsync failed: %s", w->partial, strerror(errno));
    /* renamed while still locked, so no second writer can open it in between */
    if (rename(w->partial, w->path))
        return xd_err("%s: cannot rename to %s: %s", w->partial, w->path, strerror(errno));
    int rc = fsync_parent(w->path);
    close(w->fd);
    w->fd = -1;
    w->done = 1;
    return rc;
}

void xd_topk_writer_close(xd_topk_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    free(w->buf);
    free(w->stamp);
    free(w);
}
