/* bench_train — training throughput (forward + backward + AdamW) of the
 * teacher architecture, the engine's own step (issue 4, criterion 5).
 *
 *   bench_train [--model PATH] [--threads N] [--batch B] [--seq T]
 *               [--steps N] [--warmup N] [--fwd-reps N] [--text FILE]
 *               [--tokens-out FILE] [--ops 0|1] [--op-reps N] [--bf16]
 *
 * --bf16: xd_set_compute(XD_COMPUTE_BF16), the matrix products of the
 * forward and backward in bf16 with fp32 accumulation (oneDNN); weights,
 * gradients and AdamW stay fp32. The xd_train line says "compute":"bf16".
 *
 * One training step is exactly what xd_train does per optimiser step with
 * accum = 1: xd_tm_zero_grad, xd_tm_step (forward + cross-entropy + backward,
 * grad_scale = 1/n_valid so the loss is the mean), xd_optimizer_step (global
 * grad-norm clip 1.0, then AdamW lr 1e-4, betas 0.9/0.95, eps 1e-8, weight
 * decay 0.1 on matrices and embeddings only). Each phase is timed on its
 * own; tokens/s = B·T / median step time (after --warmup untimed steps).
 * The forward alone (xd_tm_step with backward = 0, loss included) is timed in
 * --fwd-reps extra runs after the training steps, so that
 * backward ≈ bench_median(forward+backward) − bench_median(forward). The grad-norm part
 * of the optimiser step is timed apart as one xd_sumsq over the gradients.
 *
 * Token ids: the tokenisation of --text (repeated), B rows of T+1 ids
 * (inputs = ids[0..T), targets = ids[1..T]); written to --tokens-out, one
 * per line, for bench/torch_train.py. Peak RSS: getrusage ru_maxrss.
 * others_cpu_s / _frac: CPU time other processes used during the timed
 * steps (machine busy time from /proc/stat minus ours), to flag disturbed
 * runs on a shared machine.
 * One JSON object per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/train_ops.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/train.h"
#include "train/train_model.h"
#include "bench_common.h"
#include "xdistill.h"

static double min_of(const double *x, int n) {
    double m = x[0];
    for (int i = 1; i < n; i++) m = x[i] < m ? x[i] : m;
    return m;
}

static void die(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, xd_last_error());
    exit(1);
}

/* ---- --ops: every kernel of one training step timed alone ----------------
 * The same calls, shapes and call counts as xd_tm_step / xd_optimizer_step
 * for this config (B·T rows), on the layer-0 weights, each run once to warm
 * up and then --op-reps times; ms/step = median ms × calls per step. The
 * linear backward is split into its dx and dW sgemms. Lines
 * {"bench":"xd_op","phase":..,"op":..,...}; the sum is compared with the
 * measured step by bench/run_train.sh. */
static int op_reps = 5;


static double time_op_once(void (*fn)(void *), void *ctx) {
    double a = bench_now();
    fn(ctx);
    return bench_now() - a;
}

static void report_op(const char *phase, const char *op, const char *shape, int calls,
                      double flops, void (*fn)(void *), void *ctx) {
    double t[64];
    int r = op_reps < 64 ? op_reps : 64;
    fn(ctx);
    for (int i = 0; i < r; i++) t[i] = time_op_once(fn, ctx);
    double med = bench_median(t, r);
    printf("{\"bench\":\"xd_op\",\"phase\":\"%s\",\"op\":\"%s\",\"shape\":\"%s\",\"calls\":%d,"
           "\"ms\":%.4f,\"ms_step\":%.2f,\"gflops\":%.1f}\n",
           phase, op, shape, calls, med * 1e3, med * 1e3 * calls,
           flops > 0 ? flops / med / 1e9 : 0.0);
    fflush(stdout);
}

typedef struct {
    int n, in, out, V, T, B, nh, nkv, hd;
    float eps, scale;
    float *x, *y, *dy, *dx, *W, *dW, *w, *dw, *g, *u, *h, *dg, *du;
    float *q, *k, *v, *att, *probs, *dq, *dk, *dv, *datt;
    float *logits, *inv_freq;
    int32_t *pos, *tok, *tgt;
    float *pa, *ga; size_t na; /* arena */
    xd_adamw *opt;
    double sink;
} op_ctx;

static void f_linear(void *p) { op_ctx *c = p; xd_linear(c->y, c->x, c->W, NULL, c->n, c->in, c->out); }
static void f_lin_dx(void *p) {
    op_ctx *c = p;
    xd_linear_backward(c->dx, NULL, NULL, c->dy, c->x, c->W, c->n, c->in, c->out);
}
static void f_lin_dw(void *p) {
    op_ctx *c = p;
    xd_linear_backward(NULL, c->dW, NULL, c->dy, c->x, c->W, c->n, c->in, c->out);
}
static void f_rms(void *p) { op_ctx *c = p; xd_rmsnorm(c->y, c->x, c->w, c->n, c->in, c->eps); }
static void f_rms_b(void *p) {
    op_ctx *c = p;
    xd_rmsnorm_backward(c->dx, c->dw, c->dy, c->x, c->w, c->n, c->in, c->eps);
}
static void f_rope_q(void *p) {
    op_ctx *c = p;
    xd_rope_pos(c->q, c->n, c->nh, c->hd, c->nh * c->hd, c->pos, c->inv_freq);
}
static void f_rope_k(void *p) {
    op_ctx *c = p;
    xd_rope_pos(c->k, c->n, c->nkv, c->hd, c->nkv * c->hd, c->pos, c->inv_freq);
}
static void f_rope_qb(void *p) {
    op_ctx *c = p;
    xd_rope_pos_backward(c->dq, c->n, c->nh, c->hd, c->nh * c->hd, c->pos, c->inv_freq);
}
static void f_rope_kb(void *p) {
    op_ctx *c = p;
    xd_rope_pos_backward(c->dk, c->n, c->nkv, c->hd, c->nkv * c->hd, c->pos, c->inv_freq);
}
static void f_attn(void *p) {
    op_ctx *c = p;
    int qd = c->nh * c->hd, kvd = c->nkv * c->hd;
    for (int b = 0; b < c->B; b++) {
        size_t r = (size_t)b * c->T;
        xd_attn_train_forward(c->att + r * qd, c->probs + (size_t)b * c->nh * c->T * c->T,
                              c->q + r * qd, c->k + r * kvd, c->v + r * kvd, c->T, c->nh,
                              c->nkv, c->hd, NULL, 0, 0);
    }
}
static void f_attn_b(void *p) {
    op_ctx *c = p;
    int qd = c->nh * c->hd, kvd = c->nkv * c->hd;
    for (int b = 0; b < c->B; b++) {
        size_t r = (size_t)b * c->T;
        xd_attn_train_backward(c->dq + r * qd, c->dk + r * kvd, c->dv + r * kvd, c->datt + r * qd,
                               c->probs + (size_t)b * c->nh * c->T * c->T, c->q + r * qd,
                               c->k + r * kvd, c->v + r * kvd, c->T, c->nh, c->nkv, c->hd);
    }
}
static void f_swiglu(void *p) { op_ctx *c = p; xd_swiglu_forward(c->h, c->g, c->u, (int64_t)c->n * c->out); }
static void f_swiglu_b(void *p) {
    op_ctx *c = p;
    xd_swiglu_backward(c->dg, c->du, c->dy, c->g, c->u, (int64_t)c->n * c->out);
}
static void f_add(void *p) { /* train_model.c's add_into (serial loop) */
    op_ctx *c = p;
    size_t nd = (size_t)c->n * c->in;
    for (size_t i = 0; i < nd; i++) c->y[i] = c->x[i] + c->dy[i];
}
static void f_layer_memops(void *p) { /* layer_backward's memsets and memcpys */
    op_ctx *c = p;
    size_t nd = (size_t)c->n * c->in, nf = (size_t)c->n * c->out;
    size_t nq = (size_t)c->n * c->nh * c->hd, nk = (size_t)c->n * c->nkv * c->hd;
    memset(c->dg, 0, nf * 4), memset(c->du, 0, nf * 4), memset(c->h, 0, nf * 4);
    memcpy(c->dx, c->dy, nd * 4), memset(c->y, 0, nd * 4), memset(c->y, 0, nd * 4);
    memset(c->datt, 0, nq * 4), memset(c->dq, 0, nq * 4), memset(c->dk, 0, nk * 4),
        memset(c->dv, 0, nk * 4);
    memcpy(c->dx, c->dy, nd * 4);
}
static void f_embed(void *p) { op_ctx *c = p; xd_embedding_forward(c->y, c->W, c->tok, c->n, c->in); }
static void f_embed_b(void *p) { op_ctx *c = p; xd_embedding_backward(c->dW, c->x, c->tok, c->n, c->in); }
static void f_ce(void *p) {
    op_ctx *c = p;
    c->sink += xd_cross_entropy(c->dy, c->logits, c->tgt, c->n, c->V, 1.0f / (float)c->n);
}
static void f_zero(void *p) { op_ctx *c = p; memset(c->ga, 0, c->na * sizeof(float)); }
static void f_sumsq(void *p) { op_ctx *c = p; c->sink += xd_sumsq(c->ga, c->na); }
static void f_adamw(void *p) {
    op_ctx *c = p;
    xd_adamw_update(c->opt, c->pa, c->ga, 0, c->na, 1e-4f, 0.1f, 0.999f);
}

static void run_ops(xd_trainer_model *tm, xd_adamw *opt, const int32_t *inp, const int32_t *tgt) {
    const xd_model *m = tm->m;
    const xd_config *cf = &m->cfg;
    int n = tm->B * tm->T, d = cf->d_model, ff = cf->d_ff, V = cf->vocab_size, L = cf->n_layer;
    int hd = cf->head_dim, qd = cf->n_head * hd, kvd = cf->n_kv_head * hd;
    size_t big = (size_t)n * (ff > d ? ff : d);
    enum { NB = 17 };
    float *buf[NB];
    for (int i = 0; i < NB; i++) {
        buf[i] = malloc(big * sizeof(float));
        if (!buf[i]) die("out of memory");
        for (size_t j = 0; j < big; j++)
            buf[i][j] = (float)((j * 2654435761u + (unsigned)i) % 2001) * 1e-3f - 1.0f;
    }
    op_ctx c = {0};
    c.n = n, c.V = V, c.T = tm->T, c.B = tm->B, c.nh = cf->n_head, c.nkv = cf->n_kv_head, c.hd = hd;
    c.eps = cf->norm_eps;
    c.x = buf[0], c.y = buf[1], c.dy = buf[2], c.dx = buf[3], c.g = buf[4], c.u = buf[5];
    c.h = buf[6], c.dg = buf[7], c.du = buf[8], c.q = buf[9], c.k = buf[10], c.v = buf[11];
    c.att = buf[12], c.dq = buf[13], c.dk = buf[14], c.dv = buf[15], c.datt = buf[16];
    c.probs = tm->acts[0].probs; /* [B][nh][T][T], filled by the attention forward below */
    c.logits = tm->logits;
    c.dW = tm->grad_arena; /* gradients get garbage: the timed steps are over */
    float *dw = malloc((size_t)(ff > d ? ff : d) * sizeof(float));
    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    if (!dw || !pos) die("out of memory");
    c.dw = dw, c.pos = pos;
    c.w = m->layers[0].attn_norm;
    c.inv_freq = m->rope_inv_freq;
    c.tok = (int32_t *)inp, c.tgt = (int32_t *)tgt;
    for (int i = 0; i < n; i++) pos[i] = i % tm->T;
    c.pa = m->arena, c.ga = tm->grad_arena, c.na = m->arena_floats, c.opt = opt;
    char sh[96];
    double N = n;
    double busy0 = bench_machine_busy_s(), self0 = bench_self_cpu_s(), wall0 = bench_now();
#define LIN(name, IN, OUT, calls, Wp)                                                        \
    do {                                                                                    \
        c.in = IN, c.out = OUT, c.W = Wp;                                                   \
        snprintf(sh, sizeof sh, "%dx%dx%d", n, OUT, IN);                                    \
        report_op("forward", name " y=xW^T", sh, calls, 2 * N * IN * OUT, f_linear, &c);    \
    } while (0)
#define LINB(name, IN, OUT, calls, Wp)                                                      \
    do {                                                                                    \
        c.in = IN, c.out = OUT, c.W = Wp;                                                   \
        snprintf(sh, sizeof sh, "%dx%dx%d", n, IN, OUT);                                    \
        report_op("backward", name " dx=dy*W", sh, calls, 2 * N * IN * OUT, f_lin_dx, &c);  \
        snprintf(sh, sizeof sh, "%dx%dx%d", OUT, IN, n);                                    \
        report_op("backward", name " dW+=dy^T*x", sh, calls, 2 * N * IN * OUT, f_lin_dw, &c); \
    } while (0)
    const xd_layer *l0 = &m->layers[0];
    double attf = 4.0 * tm->B * c.nh * hd * (double)tm->T * (tm->T + 1) / 2; /* causal half */

    /* ---- forward */
    c.in = d, c.W = m->embed;
    snprintf(sh, sizeof sh, "%dx%d", n, d);
    report_op("forward", "embedding", sh, 1, 0, f_embed, &c);
    report_op("forward", "rmsnorm", sh, 2 * L + 1, 0, f_rms, &c);
    report_op("forward", "residual add (serial loop)", sh, 2 * L, 0, f_add, &c);
    LIN("q,o proj", d, qd, 2 * L, l0->wq);
    LIN("k,v proj", d, kvd, 2 * L, l0->wk);
    LIN("gate,up proj", d, ff, 2 * L, l0->w_gate);
    LIN("down proj", ff, d, L, l0->w_down);
    float *y_gen = c.y;
    c.y = tm->logits; /* [n][V] */
    LIN("lm_head", d, V, 1, m->lm_head);
    c.y = y_gen;
    report_op("forward", "rope q", "", L, 0, f_rope_q, &c);
    report_op("forward", "rope k", "", L, 0, f_rope_k, &c);
    snprintf(sh, sizeof sh, "B%d T%d nh%d nkv%d hd%d", tm->B, tm->T, c.nh, c.nkv, hd);
    report_op("forward", "attention", sh, L, attf, f_attn, &c);
    c.out = ff;
    snprintf(sh, sizeof sh, "%dx%d", n, ff);
    report_op("forward", "swiglu", sh, L, 0, f_swiglu, &c);
    /* the fused CE writes dlogits over the logits (as in xd_tm_step) */
    float *dy_gen = c.dy;
    c.dy = tm->logits;
    snprintf(sh, sizeof sh, "%dx%d", n, V);
    report_op("forward", "cross-entropy (+dlogits)", sh, 1, 0, f_ce, &c);

    /* ---- backward */
    c.in = d, c.out = V, c.W = m->lm_head; /* dy = dlogits */
    snprintf(sh, sizeof sh, "%dx%dx%d", n, d, V);
    report_op("backward", "lm_head dx=dy*W", sh, 1, 2 * N * d * V, f_lin_dx, &c);
    snprintf(sh, sizeof sh, "%dx%dx%d", V, d, n);
    report_op("backward", "lm_head dW+=dy^T*x", sh, 1, 2 * N * d * V, f_lin_dw, &c);
    c.dy = dy_gen;
    c.in = d;
    snprintf(sh, sizeof sh, "%dx%d", n, d);
    report_op("backward", "rmsnorm backward", sh, 2 * L + 1, 0, f_rms_b, &c);
    LINB("q,o proj", d, qd, 2 * L, l0->wq);
    LINB("k,v proj", d, kvd, 2 * L, l0->wk);
    LINB("gate,up proj", d, ff, 2 * L, l0->w_gate);
    LINB("down proj", ff, d, L, l0->w_down);
    c.out = ff;
    snprintf(sh, sizeof sh, "%dx%d", n, ff);
    report_op("backward", "swiglu backward", sh, L, 0, f_swiglu_b, &c);
    snprintf(sh, sizeof sh, "B%d T%d nh%d nkv%d hd%d", tm->B, tm->T, c.nh, c.nkv, hd);
    report_op("backward", "attention backward", sh, L, 2 * attf, f_attn_b, &c);
    report_op("backward", "rope q backward", "", L, 0, f_rope_qb, &c);
    report_op("backward", "rope k backward", "", L, 0, f_rope_kb, &c);
    c.in = d, c.out = ff;
    report_op("backward", "memset/memcpy of scratch (serial)", "", L, 0, f_layer_memops, &c);
    c.in = d;
    report_op("backward", "embedding backward", "", 1, 0, f_embed_b, &c);

    /* ---- optimiser step, over the whole arena */
    snprintf(sh, sizeof sh, "%zu floats", c.na);
    report_op("zero_grad", "memset of the gradients", sh, 1, 0, f_zero, &c);
    report_op("optimizer", "grad norm (xd_sumsq)", sh, 1, 0, f_sumsq, &c);
    report_op("optimizer", "AdamW update", sh, 1, 0, f_adamw, &c);
#undef LIN
#undef LINB
    double others = (bench_machine_busy_s() - busy0) - (bench_self_cpu_s() - self0);
    printf("{\"bench\":\"xd_ops_done\",\"wall_s\":%.2f,\"others_cpu_frac\":%.4f}\n",
           bench_now() - wall0,
           (others > 0 ? others : 0) / ((bench_now() - wall0) * (double)sysconf(_SC_NPROCESSORS_ONLN)));
    fflush(stdout);
    for (int i = 0; i < NB; i++) free(buf[i]);
    free(dw);
    free(pos);
}

int main(int argc, char **argv) {
    const char *blas_core = bench_blas_core(argv);
    const char *model_path = bench_teacher_path();
    const char *text_path = "/usr/share/common-licenses/GPL-3";
    const char *tokens_out = NULL;
    int threads = 2, B = 1, T = 512, steps = 5, warmup = 1, fwd_reps = 3, ops = 0, bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--bf16")) {
            bf16 = 1;
            continue;
        }
        if (i + 1 >= argc) goto usage;
        if (!strcmp(a, "--model")) model_path = argv[++i];
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--batch")) B = atoi(argv[++i]);
        else if (!strcmp(a, "--seq")) T = atoi(argv[++i]);
        else if (!strcmp(a, "--steps")) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup")) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--fwd-reps")) fwd_reps = atoi(argv[++i]);
        else if (!strcmp(a, "--text")) text_path = argv[++i];
        else if (!strcmp(a, "--tokens-out")) tokens_out = argv[++i];
        else if (!strcmp(a, "--ops")) ops = atoi(argv[++i]);
        else if (!strcmp(a, "--op-reps")) op_reps = atoi(argv[++i]);
        else goto usage;
    }
    if (B <= 0 || T <= 1 || steps <= 0 || warmup < 0 || fwd_reps < 0) goto usage;

    xd_set_threads(threads);
    if (bf16 && xd_set_compute(XD_COMPUTE_BF16)) die("--bf16");
    const char *compute = bf16 ? "bf16" : "fp32";
    double rss_before = xd_peak_rss_mib();
    double t0 = bench_now();
    xd_model *m = xd_model_load(model_path);
    if (!m) die("load");
    double t_load = bench_now() - t0;
    double rss_load = xd_peak_rss_mib();
    const xd_config *c = xd_model_config(m);
    size_t n_params = xd_model_n_params(m);
    printf("{\"bench\":\"xd_load\",\"model\":\"%s\",\"threads\":%d,\"blas_core\":\"%s\","
           "\"n_params\":%zu,\"n_layer\":%d,\"d_model\":%d,\"n_head\":%d,\"n_kv_head\":%d,\"d_ff\":%d,"
           "\"vocab\":%d,\"tied\":%d,\"rope_theta\":%g,\"norm_eps\":%g,\"load_s\":%.3f,"
           "\"rss_before_load_mb\":%.1f,\"rss_peak_after_load_mb\":%.1f}\n",
           model_path, xd_get_threads(), blas_core, n_params, c->n_layer, c->d_model, c->n_head,
           c->n_kv_head, c->d_ff, c->vocab_size, c->tied_embeddings, c->rope_theta, c->norm_eps,
           t_load, rss_before, rss_load);
    fflush(stdout);

    /* token ids: B rows of T+1, the tokenised text repeated */
    size_t need = (size_t)B * (T + 1);
    int32_t *ids = malloc(need * sizeof *ids);
    if (!ids) die("out of memory");
    size_t tlen = 0, n_enc = 0, have = 0;
    char *text = bench_read_file(text_path, &tlen);
    int32_t *enc = NULL;
    const xd_tokenizer *tok = xd_model_tokenizer(m);
    const char *source = "text";
    if (text && tok && xd_tokenizer_encode(tok, text, tlen, 0, &enc, &n_enc) == 0 && n_enc > 0) {
        while (have < need)
            for (size_t i = 0; i < n_enc && have < need; i++) ids[have++] = enc[i];
    } else {
        source = "fixed";
        uint64_t s = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < need; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            ids[i] = (int32_t)(s % (uint64_t)c->vocab_size);
        }
    }
    free(enc);
    free(text);
    if (tokens_out) {
        FILE *f = fopen(tokens_out, "w");
        if (!f) { perror(tokens_out); return 1; }
        fprintf(f, "# B=%d T=%d rows of T+1 ids (%s)\n", B, T, source);
        for (size_t i = 0; i < need; i++) fprintf(f, "%d\n", ids[i]);
        fclose(f);
    }
    size_t BT = (size_t)B * T;
    int32_t *inp = malloc(BT * sizeof *inp), *tgt = malloc(BT * sizeof *tgt);
    if (!inp || !tgt) die("out of memory");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[(size_t)b * T + t] = ids[(size_t)b * (T + 1) + t];
            tgt[(size_t)b * T + t] = ids[(size_t)b * (T + 1) + t + 1];
        }

    /* the training state: gradients, activations, AdamW moments */
    xd_trainer_model tm;
    xd_param_groups g;
    xd_adamw opt = {0};
    if (xd_tm_init(&tm, m, B, T)) die("xd_tm_init");
    if (xd_groups_init(&g, m, NULL, 0)) die("groups");
    if (xd_adamw_init(&opt, m->arena_floats, 0.9f, 0.95f, 1e-8f)) die("adamw");
    printf("{\"bench\":\"xd_train_init\",\"batch\":%d,\"seq\":%d,\"tokens_source\":\"%s\","
           "\"params_mb\":%.1f,\"grads_mb\":%.1f,\"adam_mb\":%.1f,\"acts_mb\":%.1f,"
           "\"rss_now_mb\":%.1f}\n",
           B, T, source, (double)m->arena_floats * 4 / 1048576.0,
           (double)m->arena_floats * 4 / 1048576.0, (double)m->arena_floats * 8 / 1048576.0,
           (double)tm.act_floats * 4 / 1048576.0, xd_rss_mib());
    fflush(stdout);

    const float lr = 1e-4f, wd = 0.1f, clip = 1.0f;
    int total = warmup + steps;
    double *t_zero = calloc((size_t)total, sizeof(double)), *t_fb = calloc((size_t)total, sizeof(double));
    double *t_opt = calloc((size_t)total, sizeof(double)), *t_step = calloc((size_t)total, sizeof(double));
    double *t_fwd = calloc((size_t)(fwd_reps ? fwd_reps : 1), sizeof(double));
    if (!t_zero || !t_fb || !t_opt || !t_step || !t_fwd) die("out of memory");
    double busy0 = 0, self0 = 0, wall0 = 0;
    for (int s = 0; s < total; s++) {
        if (s == warmup) busy0 = bench_machine_busy_s(), self0 = bench_self_cpu_s(), wall0 = bench_now();
        double loss = 0, gn;
        int64_t nv = 0;
        double a = bench_now();
        xd_tm_zero_grad(&tm);
        double b = bench_now();
        if (xd_tm_step(&tm, inp, tgt, NULL, NULL, 1, 1.0f / (float)BT, &loss, &nv)) die("xd_tm_step");
        double e = bench_now();
        gn = xd_optimizer_step(&tm, &g, &opt, lr, wd, clip);
        double f = bench_now();
        t_zero[s] = b - a;
        t_fb[s] = e - b;
        t_opt[s] = f - e;
        t_step[s] = f - a;
        printf("{\"bench\":\"xd_train_step\",\"step\":%d,\"warmup\":%d,\"loss\":%.6f,"
               "\"grad_norm\":%.6f,\"zero_grad_s\":%.4f,\"fwd_bwd_s\":%.4f,\"optim_s\":%.4f,"
               "\"step_s\":%.4f,\"tok_s\":%.2f}\n",
               s, s < warmup, loss / (double)nv, gn, t_zero[s], t_fb[s], t_opt[s], t_step[s],
               (double)BT / t_step[s]);
        fflush(stdout);
    }
    double wall_t = bench_now() - wall0, others = (bench_machine_busy_s() - busy0) - (bench_self_cpu_s() - self0);
    if (others < 0) others = 0;
    for (int r = 0; r < fwd_reps; r++) {
        double loss = 0;
        int64_t nv = 0;
        double a = bench_now();
        if (xd_tm_step(&tm, inp, tgt, NULL, NULL, 0, 1.0f / (float)BT, &loss, &nv)) die("xd_tm_step");
        t_fwd[r] = bench_now() - a;
        printf("{\"bench\":\"xd_train_fwd\",\"rep\":%d,\"loss\":%.6f,\"fwd_s\":%.4f}\n", r,
               loss / (double)nv, t_fwd[r]);
        fflush(stdout);
    }
    /* the grad-norm reduction alone (one pass over every gradient) */
    double a = bench_now();
    volatile double ss = xd_sumsq(tm.grad_arena, m->arena_floats);
    double t_norm = bench_now() - a;
    (void)ss;

    const double *ts = t_step + warmup;
    double med = bench_median(ts, steps), best = min_of(ts, steps);
    double fb = bench_median(t_fb + warmup, steps), op = bench_median(t_opt + warmup, steps);
    double zg = bench_median(t_zero + warmup, steps);
    double fw = fwd_reps ? bench_median(t_fwd, fwd_reps) : -1;
    printf("{\"bench\":\"xd_train\",\"compute\":\"%s\",\"batch\":%d,\"seq\":%d,\"threads\":%d,\"steps\":%d,"
           "\"warmup\":%d,\"step_s_median\":%.4f,\"step_s_best\":%.4f,\"tok_s\":%.2f,"
           "\"tok_s_best\":%.2f,\"zero_grad_s\":%.4f,\"fwd_bwd_s\":%.4f,\"fwd_s\":%.4f,"
           "\"bwd_s\":%.4f,\"optim_s\":%.4f,\"grad_norm_pass_s\":%.4f,\"rss_peak_mb\":%.1f,"
           "\"rss_now_mb\":%.1f,\"others_cpu_s\":%.2f,\"others_cpu_frac\":%.4f}\n",
           compute, B, T, xd_get_threads(), steps, warmup, med, best, (double)BT / med, (double)BT / best,
           zg, fb, fw, fw >= 0 ? fb - fw : -1, op, t_norm, xd_peak_rss_mib(), xd_rss_mib(), others,
           others / (wall_t * (double)sysconf(_SC_NPROCESSORS_ONLN)));
    fflush(stdout);

    if (ops) run_ops(&tm, &opt, inp, tgt);

    free(t_zero), free(t_fb), free(t_opt), free(t_step), free(t_fwd);
    free(inp), free(tgt), free(ids);
    xd_adamw_free(&opt);
    xd_groups_free(&g);
    xd_tm_free(&tm);
    xd_model_free(m);
    return 0;
usage:
    fprintf(stderr,
            "usage: bench_train [--model PATH] [--threads N] [--batch B] [--seq T] [--steps N]\n"
            "                   [--warmup N] [--fwd-reps N] [--text FILE] [--tokens-out FILE]\n"
            "                   [--ops 0|1] [--op-reps N] [--bf16]\n");
    return 2;
}
