/* xdistill teacher-logits TEACHER --data DATA --seq T (--rows N | --tokens N) -o LOGITS
 *                        [--topk K] [--batch B] [--flush-secs S] [--threads N] [--quiet]
 * Runs the teacher's packed-document forward over the first N stream rows of
 * the data's train split and stores its top-k logits per position for Stage II
 * (format: src/io/topk_logits.h). Resumable: a killed run leaves LOGITS.partial,
 * and the same command continues it; the result is byte-identical to an
 * uninterrupted run.
 *
 * Under mpirun the batches are dealt to the ranks in turn (batch j to rank j mod N, each
 * computed exactly as one process computes it) and rank 0 writes them in order, so the
 * file is byte-identical to a single process's, and a run can be resumed with any number
 * of ranks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/tokdata.h"
#include "io/topk_logits.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "train/train_model.h"
#include "xdistill.h"

static const char USAGE[] =
    "usage: xdistill teacher-logits TEACHER --data DATA --seq T (--rows N | --tokens N) -o LOGITS\n"
    "                              [--topk K] [--batch B] [--flush-secs S] [--threads N] [--quiet]\n"
    "  --topk K     logits kept per position (default 256)\n"
    "  --seq T      tokens per row; Stage II must train with the same --seq\n"
    "  --rows N     stream rows of the train split to cover (rows 0 .. N-1)\n"
    "  --tokens N   or: enough rows for N tokens (ceil(N / T) rows)\n"
    "  --batch B    rows per teacher forward (default 1); the last bits of the logits\n"
    "               can depend on B, so a resumed run must use the same B\n"
    "  --flush-secs S  commit the rows written (fsync) at most every S seconds\n"
    "               (default 5; 0: after every batch); a kill loses at most that\n"
    "A killed run leaves LOGITS.partial; rerun the same command to continue it.\n";

typedef struct {
    const char *teacher, *data, *out;
    int k, T, B, threads, verbose;
    uint64_t rows, tokens;
    float flush_secs;
} opts;

/* Top-k of each of the n positions' logits [n][V] into ids / vals [n][k], in
 * parallel. On a NaN, the error names the teacher, the row and the position. */
static int select_all(const float *logits, int n, int V, int k, int T, uint64_t row0,
                      const char *teacher, int32_t *ids, float *vals) {
    long bad = -1;
    char msg[256] = "";
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        if (xd_topk_select(logits + (size_t)i * V, V, k, ids + (size_t)i * k,
                           vals + (size_t)i * k)) {
#pragma omp critical
            if (bad < 0 || i < bad) {
                bad = i;
                snprintf(msg, sizeof msg, "%s", xd_last_error());
            }
        }
    if (bad >= 0)
        return xd_err("%s: row %" PRIu64 ", position %ld: %s (the teacher's forward is broken)",
                      teacher, row0 + (uint64_t)(bad / T), bad % T, msg);
    return 0;
}

static int run(const opts *o) {
    int rc = 1;
    xd_model *m = NULL;
    xd_tokdata *d = NULL;
    xd_topk_writer *w = NULL;
    xd_trainer_model tm;
    int tm_ok = 0;
    int32_t *row = NULL, *tok = NULL, *ds = NULL, *pos = NULL, *ids = NULL, *all_ids = NULL;
    float *vals = NULL, *all_vals = NULL;
    size_t *id_bytes = NULL, *val_bytes = NULL;
    int N = xd_dist_size(), me = xd_dist_rank(), lead = me == 0;

    if (o->threads) xd_set_threads(o->threads);
    if (!(m = xd_model_load(o->teacher))) goto done;
    if (!xd_model_tokenizer(m)) {
        xd_err("%s: the teacher has no tokenizer (needed to check the data)", o->teacher);
        goto done;
    }
    if (!(d = xd_tokdata_open(o->data))) goto done;
    if (xd_tokdata_check_tokenizer(d, xd_model_tokenizer(m))) goto done;
    const xd_config *c = xd_model_config(m);
    int V = c->vocab_size, T = o->T, B = o->B, k = o->k;
    if (xd_tokdata_header_of(d)->vocab_size > (uint32_t)V) {
        xd_err("%s: vocabulary of %u tokens exceeds the teacher's %d", o->data,
               xd_tokdata_header_of(d)->vocab_size, V);
        goto done;
    }
    if (k > V) {
        xd_err("--topk %d exceeds the teacher's vocabulary of %d", k, V);
        goto done;
    }
    if (T > c->max_ctx) {
        xd_err("--seq %d exceeds the teacher's context length %d (%s)", T, c->max_ctx, o->teacher);
        goto done;
    }
    uint64_t split = xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN);
    if (split < (uint64_t)T + 1) {
        xd_err("%s: the train split has %" PRIu64 " tokens, fewer than --seq + 1 = %d", o->data,
               split, T + 1);
        goto done;
    }
    uint64_t rows = o->rows ? o->rows : (o->tokens + (uint64_t)T - 1) / (uint64_t)T;
    if (rows > UINT64_MAX / (uint64_t)T / 4) {
        xd_err("--rows %" PRIu64 " is too large", rows);
        goto done;
    }

    xd_topk_header h;
    xd_topk_header_init(&h, (uint32_t)k, (uint32_t)V, (uint32_t)T, (uint32_t)B, rows, xd_model_teacher_hash(m),
                        xd_topk_data_hash(d), xd_tokenizer_hash(xd_model_tokenizer(m)));
    if (xd_dist_check_same(h.teacher_hash, "teacher") ||
        xd_dist_check_same(h.data_hash, "token data (train split)"))
        goto done;
    /* rank 0 owns the file: where to start (and whether there is anything to do) */
    uint64_t start[2] = {0, 0}; /* rows done, complete */
    if (lead && !(w = xd_topk_writer_open(o->out, &h))) goto done;
    if (lead) {
        start[0] = xd_topk_writer_rows(w);
        start[1] = (uint64_t)xd_topk_writer_done(w);
    }
    if (xd_dist_bcast(start, sizeof start, 0)) goto done;
    if (start[1]) {
        printf("%s: already complete (%" PRIu64 " rows of %d tokens, top-%d); nothing to do\n",
               o->out, rows, T, k);
        rc = 0;
        goto done;
    }
    uint64_t r0 = start[0];
    if (o->verbose) {
        if (r0)
            fprintf(stderr, "teacher-logits: resuming %s.partial at row %" PRIu64 " of %" PRIu64
                            "\n", o->out, r0, rows);
        fprintf(stderr, "teacher-logits: %" PRIu64 " rows x %d tokens, top-%d of %d, %.1f MB\n",
                rows, T, k, V,
                (double)rows * T * k * (h.id_bytes + 2) / 1e6);
    }

    if (xd_tm_init_ex(&tm, m, B, T, 0)) goto done;
    tm_ok = 1;
    size_t BT = (size_t)B * T;
    row = malloc((BT + (size_t)B) * sizeof *row);
    tok = malloc(BT * sizeof *tok);
    ds = malloc(BT * sizeof *ds);
    pos = malloc(BT * sizeof *pos);
    ids = malloc(BT * (size_t)k * sizeof *ids);
    vals = malloc(BT * (size_t)k * sizeof *vals);
    id_bytes = calloc(2 * (size_t)N, sizeof *id_bytes);
    val_bytes = id_bytes ? id_bytes + N : NULL;
    if (N > 1 && lead) {
        all_ids = malloc((size_t)N * BT * (size_t)k * sizeof *all_ids);
        all_vals = malloc((size_t)N * BT * (size_t)k * sizeof *all_vals);
    }
    if (!row || !tok || !ds || !pos || !ids || !vals || !id_bytes ||
        (N > 1 && lead && (!all_ids || !all_vals))) {
        xd_err("out of memory");
        goto done;
    }
    xd_progress pr;
    xd_progress_start(&pr, "teacher-logits", (int64_t)r0, (int64_t)rows);
    double t0 = xd_now(), last_flush = t0;
    /* a round: N batches of B rows from row r, batch j on rank j */
    for (uint64_t r = r0; r < rows;) {
        /* the rows kept of batch j (the last round may be short), and of this rank's */
        uint64_t left = rows - r, round = 0, nw = 0, mine = r + (uint64_t)me * (uint64_t)B;
        for (int j = 0; j < N; j++) {
            uint64_t nj = left < (uint64_t)B ? left : (uint64_t)B;
            left -= nj;
            round += nj;
            if (j == me) nw = nj;
            id_bytes[j] = nj * (uint64_t)T * (uint64_t)k * sizeof *ids;
            val_bytes[j] = nj * (uint64_t)T * (uint64_t)k * sizeof *vals;
        }
        if (nw) {
            /* B stream rows from row `mine` (the last batch may compute rows it does not keep) */
            uint64_t cursor = mine * (uint64_t)T;
            if (xd_tokdata_batch(d, XD_SPLIT_TRAIN, &cursor, B, T, row, ds, pos)) goto done;
            for (int b = 0; b < B; b++)
                memcpy(tok + (size_t)b * T, row + (size_t)b * (T + 1), (size_t)T * sizeof *tok);
            /* forward only; with targets == NULL xd_tm_step stops at the final
             * norm (tm.x_norm), so the LM head is applied here */
            if (xd_tm_step(&tm, tok, NULL, pos, ds, 0, 0.0f, NULL, NULL)) goto done;
            xd_linear(tm.logits, tm.x_norm, m->lm_head, NULL, (int)BT, c->d_model, V);
            if (select_all(tm.logits, (int)(nw * (uint64_t)T), V, k, T, mine, o->teacher, ids, vals))
                goto done;
        }
        if (N == 1) {
            if (xd_topk_writer_append(w, ids, vals, nw)) goto done;
        } else {
            if (xd_dist_gather(ids, all_ids, id_bytes, 0) || xd_dist_gather(vals, all_vals, val_bytes, 0))
                goto done;
            /* packed in rank order = row order; one append per batch, as one process */
            size_t at = 0;
            for (int j = 0; lead && j < N && id_bytes[j]; j++) {
                uint64_t n_j = id_bytes[j] / ((uint64_t)T * (uint64_t)k * sizeof *ids);
                if (xd_topk_writer_append(w, all_ids + at, all_vals + at, n_j)) goto done;
                at += (size_t)n_j * T * (size_t)k;
            }
        }
        r += round;
        /* commits only ever follow whole batches, so a resume starts at a
         * multiple of B and groups the rows as an uninterrupted run does */
        if (lead && (o->flush_secs <= 0 || xd_now() - last_flush >= o->flush_secs)) {
            if (xd_topk_writer_flush(w)) goto done;
            last_flush = xd_now();
        }
        if (o->verbose) {
            char extra[64];
            double dt = xd_now() - t0;
            snprintf(extra, sizeof extra, "%.0f tok/s",
                     dt > 0 ? (double)(r - r0) * T / dt : 0.0);
            xd_progress_update(&pr, (int64_t)r, extra);
        }
    }
    if (o->verbose) xd_progress_end(&pr);
    if (lead && xd_topk_writer_finish(w)) goto done;
    if (xd_dist_barrier()) goto done;
    printf("%s: %" PRIu64 " rows of %d tokens, top-%d logits of %d (teacher 0x%016" PRIx64
           ", data 0x%016" PRIx64 ")\n",
           o->out, rows, T, k, V, h.teacher_hash, h.data_hash);
    rc = 0;
done:
    if (rc) cli_lib_error();
    xd_topk_writer_close(w);
    if (tm_ok) xd_tm_free(&tm);
    free(row);
    free(tok);
    free(ds);
    free(pos);
    free(ids);
    free(vals);
    free(all_ids);
    free(all_vals);
    free(id_bytes);
    xd_tokdata_close(d);
    xd_model_free(m);
    return rc;
}

int cmd_teacher_logits(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    opts o = {0};
    o.k = 256;
    o.B = 1;
    o.verbose = 1;
    o.flush_secs = 5;
    const char *v;
    int r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--data", &v))) {
            if (r < 0) return 2;
            o.data = v;
        } else if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            o.out = v;
        } else if ((r = take_opt(argc, argv, &i, "--topk", &v))) {
            if (r < 0 || parse_int("--topk", v, 1, 1 << 22, &o.k)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seq", &v))) {
            if (r < 0 || parse_int("--seq", v, 1, 1 << 20, &o.T)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--batch", &v))) {
            if (r < 0 || parse_int("--batch", v, 1, 4096, &o.B)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--flush-secs", &v))) {
            if (r < 0 || parse_float("--flush-secs", v, 0, 86400, &o.flush_secs)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &o.threads)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--rows", &v))) {
            if (r < 0 || parse_u64("--rows", v, &o.rows)) return 2;
            if (!o.rows) return cli_error("--rows: expected at least 1"), 2;
        } else if ((r = take_opt(argc, argv, &i, "--tokens", &v))) {
            if (r < 0 || parse_u64("--tokens", v, &o.tokens)) return 2;
            if (!o.tokens) return cli_error("--tokens: expected at least 1"), 2;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) o.verbose = 0;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_error("teacher-logits: unknown option '%s'", argv[i]), 2;
        else if (!o.teacher) o.teacher = argv[i];
        else return cli_error("teacher-logits: unexpected argument '%s'", argv[i]), 2;
    }
    if (o.rows && o.tokens) return cli_error("teacher-logits: give --rows or --tokens, not both"), 2;
    if (!o.teacher || !o.data || !o.out || !o.T || (!o.rows && !o.tokens)) {
        fputs(USAGE, stderr);
        return 2;
    }
    return run(&o);
}
