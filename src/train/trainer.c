/* The training loop shared by pretrain and finetune: micro-batches with
 * gradient accumulation, global grad-norm clipping, AdamW with warm-up +
 * cosine LR, periodic validation and checkpoints, a progress bar and a JSONL
 * log. Deterministic for a given thread count on one machine (the linear
 * layers' threaded sgemms may round differently with another thread count or
 * CPU: see train_ops.c), so a resumed run with the same thread count
 * reproduces an uninterrupted one exactly. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "grad_sync.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/progress.h"
#include "io/atomic.h"
#include "io/topk_logits.h"
#include "lora_init.h"
#include "model/lora.h"
#include "model/model.h"
#include "optim.h"
#include "train.h"
#include "train_model.h"

void xd_train_defaults(xd_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 100;
    o->batch = 4;
    o->seq = 128;
    o->accum = 1;
    o->lr = 1e-3f;
    o->min_lr = 1e-5f;
    o->warmup = 10;
    o->weight_decay = 0.1f;
    o->clip = 1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->eval_windows = 64;
    o->log_every = 1;
    o->kind = "train";
    o->overlap_comm = 1;
}

static int groups_init(xd_param_groups *g, const xd_model *m, const char *const *train_only,
                       int n_train_only, const char *const *freeze, int n_freeze) {
    memset(g, 0, sizeof *g);
    if (xd_model_weights(m, &g->w, &g->n)) return -1;
    g->train = calloc((size_t)g->n, 1);
    g->decay = calloc((size_t)g->n, 1);
    if (!g->train || !g->decay) return xd_err("out of memory");
    int n_train = 0;
    for (int i = 0; i < g->n; i++) {
        g->train[i] = n_train_only == 0;
        for (int f = 0; f < n_train_only; f++)
            if (strstr(g->w[i].hf, train_only[f])) g->train[i] = 1;
        for (int f = 0; f < n_freeze; f++)
            if (strstr(g->w[i].hf, freeze[f])) g->train[i] = 0;
        /* matrices and embeddings decay; not norms, biases or the feature
         * maps (initialised to the identity, which decay would pull to 0) */
        g->decay[i] = g->w[i].ndim == 2 && !strstr(g->w[i].hf, "feature_map");
        n_train += g->train[i];
    }
    if (!n_train)
        return xd_err(n_train_only ? "no parameter of the model is trainable (is it a student?)"
                                   : "--freeze: every parameter is frozen, nothing to train");
    return 0;
}

int xd_groups_init(xd_param_groups *g, const xd_model *m, const char *const *freeze, int n_freeze) {
    return groups_init(g, m, NULL, 0, freeze, n_freeze);
}

int xd_groups_lora(xd_param_groups *g, const xd_lora_set *s) {
    memset(g, 0, sizeof *g);
    if (xd_lora_weights(s, &g->w, &g->n)) return -1;
    g->train = malloc((size_t)g->n + 1);
    g->decay = malloc((size_t)g->n + 1);
    if (!g->train || !g->decay) return xd_err("out of memory");
    memset(g->train, 1, (size_t)g->n);
    memset(g->decay, 1, (size_t)g->n);
    if (!g->n) return xd_err("the adapter has no module: nothing to train");
    return 0;
}

int xd_groups_from_opts(xd_param_groups *g, const xd_model *m, const xd_train_opts *o) {
    return groups_init(g, m, o->train_only, o->n_train_only, o->freeze, o->n_freeze);
}

void xd_groups_free(xd_param_groups *g) {
    free(g->w);
    free(g->train);
    free(g->decay);
    memset(g, 0, sizeof *g);
}

/* The arenas the optimiser works on: an objective's own (g->param), the
 * model's weights and gradients, or with LoRA the adapters' (groups' entries
 * point into the first). */
static float *param_arena(const xd_trainer_model *tm, const xd_param_groups *g) {
    return g->param ? g->param : tm->lora ? tm->lora->param : tm->m->arena;
}
static float *grad_arena(const xd_trainer_model *tm, const xd_param_groups *g) {
    return g->param ? g->grad : tm->lora ? tm->lora->grad : tm->grad_arena;
}

/* Global L2 norm of the trainable gradients. */
static double grad_norm(const xd_trainer_model *tm, const xd_param_groups *g) {
    double s = 0;
    float *param = param_arena(tm, g), *grad = grad_arena(tm, g);
    for (int i = 0; i < g->n; i++)
        if (g->train[i])
            s += xd_sumsq(grad + (g->w[i].ptr - param), (size_t)(g->w[i].rows * g->w[i].cols));
    return sqrt(s);
}

double xd_optimizer_step(xd_trainer_model *tm, const xd_param_groups *g, xd_adamw *opt, float lr,
                         float weight_decay, float clip) {
    double gn = grad_norm(tm, g);
    if (!isfinite(gn)) return gn;
    float coef = clip > 0 ? xd_clip_coef(gn, clip) : 1.0f;
    xd_adamw_begin_step(opt);
    float *param = param_arena(tm, g), *grad = grad_arena(tm, g);
    for (int i = 0; i < g->n; i++) {
        if (!g->train[i]) continue;
        size_t off = (size_t)(g->w[i].ptr - param), n = (size_t)(g->w[i].rows * g->w[i].cols);
        float lri = g->lr_scale ? lr * g->lr_scale[i] : lr;
        xd_adamw_update(opt, param, grad, off, n, lri, g->decay[i] ? weight_decay : 0.0f, coef);
    }
    return gn;
}

int xd_val_batch(const xd_tokdata *data, int B, int T, uint64_t k0, uint64_t nw, xd_batch *bb) {
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        int32_t *tb = bb->tok + r, *gb = bb->tgt + r, *db = bb->ds + r, *pb = bb->pos + r;
        uint8_t *cb = bb->ctx + r;
        int n = k0 + (uint64_t)b < nw
                    ? xd_tokdata_window_ctx(data, XD_SPLIT_VAL, T, k0 + (uint64_t)b, bb->row, db,
                                            pb, bb->row_ctx)
                    : 0;
        if (n < 0) return -1;
        for (int t = 0; t < T; t++) {
            int ok = t + 1 < n;
            tb[t] = ok ? bb->row[t] : 0;
            gb[t] = ok && !bb->row_ctx[t + 1] ? bb->row[t + 1] : -1;
            cb[t] = ok ? bb->row_ctx[t] : 1; /* padding: read and predicted by nothing */
            if (!ok) { db[t] = 0; pb[t] = t; }
        }
    }
    return 0;
}

int xd_batch_alloc(xd_batch *bb, int B, int T) {
    size_t BT = (size_t)B * T, BT1 = (size_t)B * (T + 1);
    bb->row = malloc(BT1 * sizeof(int32_t));
    bb->tok = malloc(BT * sizeof(int32_t));
    bb->tgt = malloc(BT * sizeof(int32_t));
    bb->ds = malloc(BT * sizeof(int32_t));
    bb->pos = malloc(BT * sizeof(int32_t));
    bb->row_ctx = malloc(BT1);
    bb->ctx = malloc(BT);
    if (!bb->row || !bb->tok || !bb->tgt || !bb->ds || !bb->pos || !bb->row_ctx || !bb->ctx)
        return xd_err("out of memory");
    return 0;
}

void xd_batch_free(xd_batch *bb) {
    free(bb->row); free(bb->tok); free(bb->tgt); free(bb->ds); free(bb->pos);
    free(bb->row_ctx); free(bb->ctx);
    memset(bb, 0, sizeof *bb);
}

int xd_val_windows(const xd_tokdata *data, int T, int64_t max_windows, uint64_t *nw) {
    *nw = xd_tokdata_n_windows(data, XD_SPLIT_VAL, T);
    if (max_windows > 0 && (uint64_t)max_windows < *nw) *nw = (uint64_t)max_windows;
    if (*nw == 0)
        return xd_err("%s: the validation split has fewer than 2 tokens", xd_tokdata_path(data));
    return 0;
}

int xd_eval_loss(xd_trainer_model *tm, const xd_tokdata *data, int64_t max_windows, double *loss,
                 int64_t *n_tokens) {
    int B = tm->B, T = tm->T;
    uint64_t nw;
    if (xd_val_windows(data, T, max_windows, &nw)) return -1;
    xd_batch bb = {0};
    int rc = -1;
    double sum = 0;
    int64_t cnt = 0;
    if (xd_batch_alloc(&bb, B, T)) goto done;
    /* with several ranks, rank r takes every N-th batch of windows, from the r-th */
    uint64_t N = (uint64_t)xd_dist_size();
    for (uint64_t k0 = (uint64_t)xd_dist_rank() * B; k0 < nw; k0 += N * B) {
        if (xd_val_batch(data, B, T, k0, nw, &bb)) goto done;
        double s;
        int64_t c;
        if (xd_tm_step(tm, bb.tok, bb.tgt, bb.pos, bb.ds, 0, 0.0f, &s, &c)) goto done;
        sum += s;
        cnt += c;
    }
    if (xd_dist_sum_f64(&sum, 1) || xd_dist_sum_i64(&cnt, 1)) goto done;
    *loss = cnt ? sum / (double)cnt : 0;
    *n_tokens = cnt;
    rc = 0;
done:
    xd_batch_free(&bb);
    return rc;
}

/* On resume, keep only the log lines of steps the checkpoint has. */
static int trim_log(const char *path, int64_t max_step) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) { fclose(f); return xd_err("%s: cannot write: %s", tmp, strerror(errno)); }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"step\":");
        if (s && atoll(s + 7) > max_step) continue;
        fputs(line, o);
    }
    fclose(f);
    if (fclose(o) || rename(tmp, path)) return xd_err("%s: cannot rewrite the log", path);
    return 0;
}

int xd_train_batch(const xd_tokdata *data, uint64_t *cursor, int B, int T, xd_batch *bb) {
    if (xd_tokdata_batch_ctx(data, XD_SPLIT_TRAIN, cursor, B, T, bb->row, bb->ds, bb->pos,
                             bb->row_ctx))
        return -1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t, r = (size_t)b * (T + 1) + t;
            bb->tok[i] = bb->row[r];
            bb->ctx[i] = bb->row_ctx[r];
            /* no loss predicts a context token (docs/data.md, "Batches") */
            bb->tgt[i] = bb->row_ctx[r + 1] ? -1 : bb->row[r + 1];
        }
    return 0;
}

/* The trained adapter as OUT/adapter; PiSSA's as a LoRA of the original base. */
static int save_adapter(xd_lora_set *ls, const xd_lora_adapter *pissa0, const char *dir) {
    if (!pissa0) return xd_lora_set_save(ls, dir);
    if (xd_lora_store(ls, ls->ad)) return -1;
    xd_lora_adapter *c = xd_lora_pissa_convert(ls->ad, pissa0);
    int rc = c ? xd_lora_save(c, dir) : -1;
    xd_lora_free(c);
    return rc;
}

int xd_train_rows_per_rank(int batch) {
    int N = xd_dist_size();
    if (N > 1 && batch >= 1 && batch < N)
        return xd_err("--batch %d with %d ranks: every rank takes rows of the global batch, so "
                      "it needs at least %d rows (or fewer ranks)", batch, N, N);
    if (N > 1 && batch % N)
        return xd_err("--batch %d is not divisible by the %d ranks: the global batch is split "
                      "evenly among them (use a multiple of %d)", batch, N, N);
    return batch / N;
}

static int check_opts(const xd_train_opts *o) {
    int N = xd_dist_size();
    if (o->steps < 1) return xd_err("--steps %lld must be >= 1", (long long)o->steps);
    if (o->batch >= 1 && xd_train_rows_per_rank(o->batch) < 0) return -1;
    if (N > 1 && o->objective && o->objective->params)
        return xd_err("%s: this objective trains in one process only, not over %d MPI ranks",
                      o->kind, N);
    if (o->batch < 1 || o->seq < 2 || o->accum < 1)
        return xd_err("--batch %d, --seq %d, --accum %d: expected batch >= 1, seq >= 2, accum >= 1",
                      o->batch, o->seq, o->accum);
    if (!(o->lr > 0) || o->min_lr < 0 || o->min_lr > o->lr)
        return xd_err("--lr %g / --min-lr %g: expected 0 <= min-lr <= lr, lr > 0", o->lr, o->min_lr);
    if (o->warmup < 0 || o->weight_decay < 0 || o->clip < 0)
        return xd_err("--warmup, --wd and --clip must be >= 0");
    if (!o->out_dir) return xd_err("training needs an output directory (-o)");
    return 0;
}

/* The next micro-batch: the objective's own, or the token data's. */
static int next_batch(xd_objective *ob, const xd_tokdata *data, uint64_t *cursor, int B, int T,
                      xd_batch *bb) {
    return ob && ob->batch ? ob->batch(ob, cursor, B, T, bb)
                           : xd_train_batch(data, cursor, B, T, bb);
}

/* Token data's checks (an objective that draws its own batches reads none). */
static int check_data(const xd_model *m, const xd_tokdata *data, const xd_train_opts *o) {
    if (o->objective && o->objective->batch)
        return o->objective->eval ? 0 : xd_err("training: an objective that draws its own "
                                                "batches must evaluate them too");
    if (!data) return xd_err("training: no token data");
    if (m->tok && xd_tokdata_check_tokenizer(data, m->tok)) return -1;
    if (xd_tokdata_header_of(data)->vocab_size > (uint32_t)m->cfg.vocab_size)
        return xd_err("%s: vocabulary of %u tokens exceeds the model's %d", xd_tokdata_path(data),
                      xd_tokdata_header_of(data)->vocab_size, m->cfg.vocab_size);
    if (xd_tokdata_split_tokens(data, XD_SPLIT_TRAIN) < (uint64_t)o->seq + 1)
        return xd_err("%s: the train split has %llu tokens, fewer than --seq + 1 = %d",
                      xd_tokdata_path(data),
                      (unsigned long long)xd_tokdata_split_tokens(data, XD_SPLIT_TRAIN), o->seq + 1);
    return 0;
}

/* Rows [rank·B, rank·B + B) of a micro-batch of the whole job's rows (no copy). */
static xd_batch rows_of(const xd_batch *bb, int rank, int B, int T) {
    size_t r = (size_t)rank * B * T, r1 = (size_t)rank * B * (T + 1);
    return (xd_batch){bb->row + r1, bb->tok + r, bb->tgt + r, bb->ds + r, bb->pos + r,
                      bb->row_ctx + r1, bb->ctx + r};
}

static void sync_layer(void *ctx, int layer) { xd_grad_sync_layer(ctx, layer); }

/* Before the first step of a job with several ranks: every rank must hold the same
 * weights (and adapters) and read the same data, or the job stops here. */
static int check_same_inputs(const xd_model *m, const xd_lora_set *ls, const xd_tokdata *data) {
    if (xd_dist_size() == 1) return 0;
    if (xd_dist_check_same(xd_model_teacher_hash(m), "model (weights and shapes)")) return -1;
    if (ls && xd_dist_check_same(xd_hash64(ls->param, ls->n_param * sizeof(float), 0),
                                 "adapter (its initial weights)"))
        return -1;
    if (data && xd_dist_check_same(xd_topk_data_hash(data), "token data (train split)"))
        return -1;
    return 0;
}

int xd_train(xd_model *m, const xd_tokdata *data, const xd_train_opts *o, xd_train_result *res) {
    if (check_opts(o) || check_data(m, data, o)) return -1;
    /* With N ranks (core/dist.h) every rank draws the whole job's micro-batch of o->batch
     * rows, in the order one process draws it, and computes rows [rank·B, rank·B + B) of
     * it; the sums of the loss and of the gradients are reduced in rank order before the
     * (replicated, identical) optimiser step. Rank 0 writes the log and the checkpoints. */
    int N = xd_dist_size(), rank = xd_dist_rank(), lead = rank == 0;
    if (lead && xd_mkdir_p(o->out_dir)) return -1;
    if (xd_dist_barrier()) return -1;

    int Bg = o->batch, B = Bg / N, T = o->seq, rc = -1;
    xd_trainer_model tm;
    xd_param_groups g;
    xd_grad_sync *sync = NULL;
    xd_lora_set ls = {0}, *lora = o->lora ? &ls : NULL;
    xd_adamw opt = {0};
    xd_batch bb = {0};
    xd_objective *ob = o->objective;
    xd_param_groups *own = ob ? ob->params : NULL; /* the objective's parameters train */
    const xd_param_groups *gp = own ? own : &g;
    FILE *log = NULL;
    char log_path[1100];
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", o->out_dir);
    memset(&g, 0, sizeof g);
    memset(&tm, 0, sizeof tm);
    if (lora ? xd_lora_bind(&ls, m, o->lora, 1) || xd_tm_init_lora(&tm, m, &ls, B, T)
             : xd_tm_init(&tm, m, B, T))
        goto done;
    tm.window = o->window;
    tm.sinks = o->sinks;
    if ((own ? 0 : lora ? xd_groups_lora(&g, &ls) : xd_groups_from_opts(&g, m, o)) ||
        xd_adamw_init(&opt, own ? own->n_floats : lora ? ls.n_param : m->arena_floats, o->beta1,
                      o->beta2, o->eps) ||
        xd_batch_alloc(&bb, Bg, T))
        goto done;
    size_t BTg = (size_t)Bg * T;

    xd_ckpt_state st = {0, 0, 0, 0, Bg, T, o->accum, o->steps};
    if (o->resume && xd_ckpt_exists(o->out_dir)) {
        xd_ckpt_state old;
        if (xd_ckpt_load(o->out_dir, m, lora, own, &opt, &old)) goto done;
        if (old.batch != Bg || old.seq != T || old.accum != o->accum || old.steps != o->steps) {
            xd_err("%s/checkpoint: was made with --batch %d --seq %d --accum %d --steps %lld; "
                   "resume with the same options", o->out_dir, old.batch, old.seq, old.accum,
                   (long long)old.steps);
            goto done;
        }
        st = old;
        if (lead && trim_log(log_path, st.step)) goto done;
        xd_log(XD_LOG_INFO, "%s: resuming from step %lld", o->kind, (long long)st.step);
    } else if (o->resume) {
        xd_log(XD_LOG_INFO, "%s: no checkpoint in %s, starting from step 0", o->kind, o->out_dir);
    }
    if (check_same_inputs(m, lora, ob && ob->batch ? NULL : data)) goto done;
    /* several ranks: the gradient reduction, overlapped with the backward where asked and
     * the MPI library allows another thread (grad_sync.h) */
    if (N > 1 && !(sync = xd_grad_sync_new(gp, param_arena(&tm, gp), grad_arena(&tm, gp),
                                           m->cfg.n_layer, o->overlap_comm && xd_dist_serialized())))
        goto done;
    log = lead ? fopen(log_path, st.step ? "a" : "w") : NULL;
    if (lead && !log) { xd_err("%s: cannot write: %s", log_path, strerror(errno)); goto done; }

    xd_progress pr;
    xd_progress_start(&pr, o->kind, st.step, o->steps);
    double t_start = xd_now() - st.elapsed, loss = NAN, val = NAN;
    int64_t tok_run = 0;
    double t_run = xd_now();
    for (int64_t step = st.step; step < o->steps; step++) {
        float lr = xd_lr_schedule(step, o->steps, o->warmup, o->lr, o->min_lr);
        xd_tm_zero_grad(&tm);
        if (own) memset(own->grad, 0, own->n_floats * sizeof(float));
        if (ob && ob->begin_step && ob->begin_step(ob, &tm, step)) goto done;
        /* every target counts once in the mean over the whole step */
        double sum = 0;
        int64_t valid = 0;
        uint64_t c0 = st.cursor;
        for (int a = 0; a < o->accum; a++) {
            if (next_batch(ob, data, &st.cursor, Bg, T, &bb)) goto done;
            if (ob) valid += ob->count(ob, &bb, Bg, T);
            else
                for (size_t i = 0; i < BTg; i++) valid += bb.tgt[i] >= 0;
        }
        st.cursor = c0;
        /* A step whose every target is a context token (instruction data with
         * long prompts) has no loss terms: no gradient, no update, loss 0. */
        float scale = valid ? 1.0f / (float)valid : 0.0f;
        for (int a = 0; a < o->accum; a++) {
            double s;
            int64_t c;
            uint64_t row0 = st.cursor / (uint64_t)T + (uint64_t)rank * B;
            if (next_batch(ob, data, &st.cursor, Bg, T, &bb)) goto done;
            xd_batch mine = rows_of(&bb, rank, B, T);
            /* the last micro-batch's backward completes each layer's gradients (the
             * objectives make at most one backward through the layers per micro-batch:
             * CE and Stage II one, Stage I none, so its reduction waits for finish) */
            if (sync && xd_grad_sync_threaded(sync) && a == o->accum - 1) {
                tm.layer_done = sync_layer;
                tm.layer_done_ctx = sync;
            }
            int e = ob ? ob->step(ob, &tm, &mine, row0, 1, scale, &s)
                       : xd_tm_step(&tm, mine.tok, mine.tgt, mine.pos, mine.ds, 1, scale, &s, &c);
            tm.layer_done = NULL;
            if (e) {
                if (sync && xd_grad_sync_threaded(sync)) xd_grad_sync_finish(sync); /* idle the thread */
                goto done;
            }
            sum += s;
        }
        /* with overlap: the wait for what the backward left (t_comm: the part not hidden) */
        double t_comm = xd_now();
        if ((sync && xd_grad_sync_finish(sync)) || xd_dist_sum_f64(&sum, 1))
            goto done;
        t_comm = xd_now() - t_comm;
        loss = valid ? sum / (double)valid : 0.0;
        if (valid && ob && ob->end_step && ob->end_step(ob, &tm, step, &loss)) goto done;
        double gn = NAN;
        if (!valid) gn = 0.0;
        else if (isfinite(loss))
            gn = xd_optimizer_step(&tm, gp, &opt, lr, o->weight_decay, o->clip);
        if (!isfinite(loss) || !isfinite(gn)) {
            xd_err("step %lld: the %s is %s; training stopped. The last good checkpoint is "
                   "kept in %s/checkpoint (step %lld); lower --lr or check the data",
                   (long long)step + 1, isfinite(loss) ? "gradient norm" : "loss",
                   isnan(isfinite(loss) ? gn : loss) ? "NaN" : "infinite", o->out_dir,
                   (long long)(xd_ckpt_exists(o->out_dir) ? st.step : 0));
            goto done;
        }
        st.step = step + 1;
        st.tokens_seen += (int64_t)BTg * o->accum;
        tok_run += (int64_t)BTg * o->accum;
        double now = xd_now(), tps = (double)tok_run / (now - t_run);
        st.elapsed = now - t_start;
        int last = st.step == o->steps;
        int do_eval = last || (o->eval_every > 0 && st.step % o->eval_every == 0);
        char ev_json[2048] = "", st_json[2048] = "";
        if (do_eval) {
            int64_t nv;
            if (ob && ob->eval ? ob->eval(ob, &tm, data, o->eval_windows, &val, ev_json, sizeof ev_json)
                               : xd_eval_loss(&tm, data, o->eval_windows, &val, &nv))
                goto done;
        }
        if (ob && ob->log_extra) ob->log_extra(ob, st_json, sizeof st_json);
        if (log && o->log_every > 0 && (st.step % o->log_every == 0 || last || do_eval)) {
            fprintf(log, "{\"step\":%lld,\"loss\":%.8g,\"lr\":%.6g,\"grad_norm\":%.8g,"
                         "\"tokens\":%lld,\"tok_s\":%.1f,\"elapsed\":%.2f",
                    (long long)st.step, loss, lr, gn, (long long)st.tokens_seen, tps, st.elapsed);
            if (do_eval)
                fprintf(log, ",\"val_loss\":%.8g%s,\"rss_mib\":%.0f,\"peak_rss_mib\":%.0f", val,
                        ev_json, xd_rss_mib(), xd_peak_rss_mib());
            /* with several ranks: the step's reduction of the loss and gradients, seconds */
            if (N > 1)
                fprintf(log, ",\"ranks\":%d,\"allreduce_s\":%.4f,\"overlap\":%s", N, t_comm,
                        xd_grad_sync_threaded(sync) ? "true" : "false");
            fprintf(log, "%s}\n", st_json);
            fflush(log);
        }
        char extra[160], vs[32] = "";
        if (do_eval) snprintf(vs, sizeof vs, " val %.4f", val);
        snprintf(extra, sizeof extra, "loss %.4f%s | lr %.2e | %.0f tok/s", loss, vs, lr, tps);
        xd_progress_update(&pr, st.step, extra);
        int stop = !last && o->stop_at == st.step;
        if (lead && (last || stop || (o->save_every > 0 && st.step % o->save_every == 0))) {
            if (xd_ckpt_save(o->out_dir, m, lora, own, &opt, &st)) goto done;
        }
        if (stop) break;
    }
    xd_progress_end(&pr);
    char model_dir[1100];
    snprintf(model_dir, sizeof model_dir, "%s/%s", o->out_dir, lora ? "adapter" : "model");
    if (lead && st.step == o->steps && (ob && ob->save ? ob->save(ob, o->out_dir)
                 : lora         ? save_adapter(&ls, o->lora_pissa0, model_dir)
                                : xd_model_save(m, model_dir)))
        goto done;
    if (xd_dist_barrier()) goto done; /* the job ends when rank 0's files are complete */
    if (res) {
        res->steps_done = st.step;
        res->last_loss = loss;
        res->val_loss = val;
        res->seconds = xd_now() - t_run;
        res->tokens_per_s = res->seconds > 0 ? (double)tok_run / res->seconds : 0;
    }
    rc = 0;
done:
    xd_grad_sync_free(sync);
    if (log) fclose(log);
    xd_batch_free(&bb);
    xd_adamw_free(&opt);
    xd_groups_free(&g);
    xd_tm_free(&tm);
    xd_lora_unbind(&ls);
    return rc;
}
