/* The GGUF writer (io/gguf_write.c, model/model_gguf_write.c) and `xdistill quantize`:
 *  - round trip: every tiny teacher (GGUF files and HF directories: llama with its q/k
 *    permutation, llama-3 RoPE scaling, qwen2 with biases, qwen3, olmo2) written as F32 and
 *    loaded back gives the same logits bit for bit (the Llama-3 RoPE divisors within one
 *    ulp of the frequencies: 1e-6 relative), the same configuration and tokenizer hash;
 *  - the quantisers: tiny-kquant written as Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 holds, for three
 *    weights (one of them Llama's permuted q), exactly the bytes gguf-py's quantisers make
 *    from the same fp32 values (tests/ref/make_quant_fixture.py), vectors stay F32; Q6_K,
 *    Q4_K and Q5_K rows equal ggml's own C quantize_row_q6_K_ref's / _q4_K_ref's / _q5_K_ref's;
 *  - a quantised file loads on its blocks (--weights gguf) and decodes;
 *  - a student (xdistill_hybrid, its own fields) round-trips bit for bit, prefill and
 *    decoding; as Q8_0 its mixer stays F32 and it runs on its blocks within 5% of the
 *    largest fp32 logit;
 *  - errors: a type whose block does not divide a row (naming the tensor), a type that
 *    cannot be written, a model without a tokenizer, a model held on its blocks, a failed write (nothing left at the path), bad CLI options. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "core/ggml_type.h"
#include "io/atomic.h"
#include "io/gguf.h"
#include "io/ggml_types.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "model/qweights.h"
#include "test.h"
#include "xdistill.h"

#define FIX XD_SOURCE_DIR "/tests/fixtures/"

static char dir[64];

static float *logits_of(const xd_model *m, int n) {
    int V = m->cfg.vocab_size;
    int32_t ids[16];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 29 + 7) % (V < 256 ? V : 256));
    float *lg = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(m, n);
    if (!lg || !kv || xd_forward(m, kv, ids, n, lg, 1)) {
        free(lg);
        lg = NULL;
    }
    xd_kv_free(kv);
    return lg;
}

static void round_trip(const char *src, double tol) {
    char out[128];
    snprintf(out, sizeof out, "%s/rt.gguf", dir);
    xd_model *a = xd_model_load(src);
    CHECK(a != NULL, "%s: %s", src, xd_last_error());
    if (!a) return;
    unlink(out);
    if (!a->tok) { /* the tiny HF directories have no tokenizer.json: a GGUF needs one */
        CHECK(xd_model_save_gguf(a, out, GGML_F32) != 0 && strstr(xd_last_error(), "no tokenizer") &&
                  access(out, F_OK) != 0, "%s without a tokenizer: %s", src, xd_last_error());
        a->tok = xd_tokenizer_load(FIX "tiny-llama.gguf"); /* the same 260 tokens */
    }
    CHECK(xd_model_save_gguf(a, out, GGML_F32) == 0, "%s: write: %s", src, xd_last_error());
    xd_model *b = xd_model_load(out);
    CHECK(b != NULL, "%s: read back: %s", src, xd_last_error());
    if (b) {
        const xd_config *x = &a->cfg, *y = &b->cfg;
        CHECK(x->arch == y->arch && x->n_layer == y->n_layer && x->d_model == y->d_model &&
                  x->n_head == y->n_head && x->n_kv_head == y->n_kv_head &&
                  x->head_dim == y->head_dim && x->d_ff == y->d_ff &&
                  x->vocab_size == y->vocab_size && x->norm_eps == y->norm_eps &&
                  x->rope_theta == y->rope_theta && x->tied_embeddings == y->tied_embeddings &&
                  x->qkv_bias == y->qkv_bias && x->qk_norm == y->qk_norm &&
                  x->post_norms == y->post_norms && x->max_ctx == y->max_ctx,
              "%s: the configuration changed", src);
        CHECK(xd_tokenizer_hash(a->tok) == xd_tokenizer_hash(b->tok), "%s: tokenizer hash", src);
        enum { N = 12 };
        float *la = logits_of(a, N), *lb = logits_of(b, N);
        CHECK(la && lb, "%s: forward: %s", src, xd_last_error());
        if (la && lb) {
            size_t n = (size_t)N * a->cfg.vocab_size;
            double d = test_max_abs_diff(la, lb, n), mx = 0;
            for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(la[i]));
            CHECK(tol == 0 ? memcmp(la, lb, n * sizeof(float)) == 0 : d <= tol * mx,
                  "%s: logits differ by %.3g (of %.3g)", src, d, mx);
            printf("round trip %-40s F32 GGUF: logits %s (%.2g)\n", src + strlen(FIX),
                   d == 0 ? "bit-identical" : "within tolerance", d);
        }
        free(la);
        free(lb);
    }
    xd_model_free(a);
    xd_model_free(b);
}

static void quantisers(void) {
    static const uint32_t types[] = {GGML_Q8_0, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1};
    static const char *const tnames[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"};
    static const char *const names[] = {"token_embd.weight", "blk.0.attn_q.weight",
                                        "blk.0.ffn_gate.weight"};
    xd_model *m = xd_model_load(FIX "tiny-kquant.gguf");
    gguf_file *ref = xd_gguf_open(FIX "quant_write_ref.gguf");
    CHECK(m && ref, "load: %s", xd_last_error());
    if (!m || !ref) { xd_model_free(m); if (ref) xd_gguf_close(ref); return; }
    char out[128], key[96];
    int same = 0;
    for (int t = 0; t < 5; t++) {
        snprintf(out, sizeof out, "%s/q_%s.gguf", dir, tnames[t]);
        CHECK(xd_model_save_gguf(m, out, types[t]) == 0, "write %s: %s", tnames[t], xd_last_error());
        gguf_file *g = xd_gguf_open(out);
        CHECK(g != NULL, "open %s: %s", out, xd_last_error());
        if (!g) continue;
        for (int k = 0; k < 3; k++) {
            snprintf(key, sizeof key, "%s/%s", tnames[t], names[k]);
            const gguf_tensor *a = xd_gguf_find_tensor(g, names[k]), *b = xd_gguf_find_tensor(ref, key);
            int ok = a && b && a->type == types[t] && a->nbytes == b->nbytes &&
                     memcmp(a->data, b->data, (size_t)a->nbytes) == 0;
            CHECK(ok, "%s: our bytes differ from gguf-py's", key);
            same += ok;
        }
        const gguf_tensor *norm = xd_gguf_find_tensor(g, "blk.0.attn_norm.weight");
        CHECK(norm && norm->type == GGML_F32, "%s: a norm is not F32", tnames[t]);
        xd_gguf_close(g);
        /* it loads on its blocks and decodes */
        xd_model *q = xd_model_load_weights(out, XD_WEIGHTS_GGUF);
        CHECK(q != NULL, "load %s on its blocks: %s", tnames[t], xd_last_error());
        float *lg = q ? logits_of(q, 4) : NULL;
        CHECK(lg != NULL && isfinite(lg[0]), "%s: forward on blocks: %s", tnames[t], xd_last_error());
        free(lg);
        xd_model_free(q);
    }
    printf("quantisers: %d of 15 tensors (5 types × 3 weights) byte-identical to gguf-py's\n", same);
    /* Q6_K, Q4_K and Q5_K, row by row (tiny-kquant's only rows of 256 are ffn_down's),
     * against ggml's C quantize_row_q6_K_ref / _q4_K_ref / _q5_K_ref, byte for byte */
    static const uint32_t kt[3] = {GGML_Q6_K, GGML_Q4_K, GGML_Q5_K};
    static const size_t kbytes[3] = {210, 144, 176};
    int k6 = 0, rows6 = 0;
    for (int t = 0; t < 3; t++)
        for (int l = 0; l < 2; l++) {
            const xd_layer *L = &m->layers[l];
            snprintf(key, sizeof key, "%s/blk.%d.ffn_down.weight", xd_ggml_type_name(kt[t]), l);
            const gguf_tensor *b = xd_gguf_find_tensor(ref, key);
            int64_t cols = m->cfg.d_ff, rows = m->cfg.d_model;
            size_t rb = kbytes[t] * (size_t)(cols / 256);
            uint8_t *row = malloc(rb);
            CHECK(b && b->nbytes == (uint64_t)rows * rb, "%s in the fixture", key);
            for (int64_t r = 0; b && r < rows; r++) {
                CHECK(xd_quantize_row(kt[t], L->w_down + r * cols, cols, row) == 0, "%s: %s", key,
                      xd_last_error());
                k6 += memcmp(row, (const uint8_t *)b->data + (size_t)r * rb, rb) == 0;
                rows6++;
            }
            free(row);
        }
    CHECK(rows6 > 0 && k6 == rows6, "K-quants: %d of %d rows byte-identical to ggml's", k6, rows6);
    printf("Q6_K, Q4_K and Q5_K: %d of %d rows byte-identical to ggml's C reference quantisers\n", k6,
           rows6);
    xd_gguf_close(ref);
    xd_model_free(m);
}

/* A student (tiny-llama with a window of 4, a sink, a global head in bf16, a sparse cache,
 * random mixer weights so every branch contributes) written as F32 and read back: the same
 * configuration, and the same logits bit for bit over a prompt and then decoding; written
 * as Q8_0 its mixer stays F32 and it decodes on its blocks. */
static void student(void) {
    xd_model *t = xd_model_load(FIX "tiny-llama.gguf");
    if (!t) { CHECK(0, "load: %s", xd_last_error()); return; }
    xd_student_opts so;
    xd_student_defaults(&so);
    so.window = 4;
    so.sinks = 1;
    so.chunk = 4;
    so.n_global_heads = 1;
    so.global_heads[0] = (xd_head_ref){1, 2};
    so.global_kv_dtype = XD_KV_BF16;
    so.sparse_cache = 3;
    xd_model *a = xd_student_convert(t, &so);
    CHECK(a != NULL, "convert: %s", xd_last_error());
    if (!a) { xd_model_free(t); return; }
    xd_weight *ws;
    int nw;
    CHECK(xd_model_weights(a, &ws, &nw) == 0, "weights");
    for (int i = 0; i < nw; i++) /* the mixer's parameters away from their initialisation */
        if (!xd_gguf_linear_name(ws[i].gguf) && ws[i].ndim == 2)
            for (int64_t j = 0; j < ws[i].rows * ws[i].cols; j++)
                ws[i].ptr[j] += 0.05f * (float)sin(0.37 * (double)j + i);
    free(ws);
    char out[128];
    snprintf(out, sizeof out, "%s/student.gguf", dir);
    CHECK(xd_model_save_gguf(a, out, GGML_F32) == 0, "write: %s", xd_last_error());
    xd_model *b = xd_model_load(out);
    CHECK(b != NULL, "read back: %s", xd_last_error());
    if (b) {
        const xd_config *x = &a->cfg, *y = &b->cfg;
        CHECK(y->student && x->arch == y->arch && x->window == y->window && x->sinks == y->sinks &&
                  x->chunk == y->chunk && x->mlstm_scale == y->mlstm_scale &&
                  x->mlstm_eps == y->mlstm_eps && x->gate_softcap == y->gate_softcap &&
                  x->exact_in_window == y->exact_in_window && x->memory_rule == y->memory_rule &&
                  x->sparse_cache == y->sparse_cache && x->teacher_hash == y->teacher_hash &&
                  x->base_hash == y->base_hash && x->n_global_heads == y->n_global_heads &&
                  y->global_heads[0].layer == 1 && y->global_heads[0].head == 2 &&
                  x->global_kv_dtype == y->global_kv_dtype,
              "student fields changed");
        enum { N = 12 };
        float *la = logits_of(a, N), *lb = logits_of(b, N);
        size_t n = (size_t)N * a->cfg.vocab_size;
        CHECK(la && lb && memcmp(la, lb, n * sizeof(float)) == 0, "student prefill logits differ");
        /* decoding, one token at a time past the window */
        xd_kv *ka = xd_kv_create(a, N), *kb = xd_kv_create(b, N);
        int same = 1;
        for (int i = 0; i < N && ka && kb; i++) {
            int32_t id = (int32_t)(i * 13 % 200);
            CHECK(xd_forward(a, ka, &id, 1, la, 0) == 0 && xd_forward(b, kb, &id, 1, lb, 0) == 0,
                  "decode: %s", xd_last_error());
            same &= memcmp(la, lb, (size_t)a->cfg.vocab_size * sizeof(float)) == 0;
        }
        CHECK(same, "student decoding logits differ");
        printf("student round trip (window 4, sink, global head in bf16, sparse cache) as F32 "
               "GGUF: logits bit-identical over a prompt and %d decode steps\n", N);
        xd_kv_free(ka);
        xd_kv_free(kb);
        free(la);
        free(lb);
    }
    xd_model_free(b);
    xd_model_free(a);
    xd_model_free(t);
    /* quantised: tiny-kquant's student (rows of 32) as Q8_0; its mixer stays F32 */
    t = xd_model_load(FIX "tiny-kquant.gguf");
    so.n_global_heads = 0;
    so.sparse_cache = 0;
    a = t ? xd_student_convert(t, &so) : NULL;
    CHECK(a != NULL, "convert tiny-kquant: %s", xd_last_error());
    snprintf(out, sizeof out, "%s/student_q8.gguf", dir);
    CHECK(a && xd_model_save_gguf(a, out, GGML_Q8_0) == 0, "write Q8_0: %s", xd_last_error());
    gguf_file *g = xd_gguf_open(out);
    const gguf_tensor *fm = g ? xd_gguf_find_tensor(g, "blk.0.fm_q.weight") : NULL,
                      *wq = g ? xd_gguf_find_tensor(g, "blk.0.attn_q.weight") : NULL;
    CHECK(fm && fm->type == GGML_F32 && wq && wq->type == GGML_Q8_0, "types: fm_q %d, attn_q %d",
          fm ? (int)fm->type : -1, wq ? (int)wq->type : -1);
    if (g) xd_gguf_close(g);
    xd_model *q = xd_model_load_weights(out, XD_WEIGHTS_GGUF);
    CHECK(q && q->cfg.student && q->q && q->q->n > 0, "student on its blocks: %s", xd_last_error());
    float *lq = q ? logits_of(q, 8) : NULL, *lf = a ? logits_of(a, 8) : NULL;
    if (lq && lf) {
        size_t n = (size_t)8 * a->cfg.vocab_size;
        double d = test_max_abs_diff(lq, lf, n), mx = 0;
        for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(lf[i]));
        /* Q8_0 weights (8 bits per element): a few per cent of the largest logit */
        CHECK(d <= 0.05 * mx, "Q8_0 student vs fp32: %.3g of %.3g", d, mx);
        printf("student as Q8_0 on its blocks vs fp32: largest logit difference %.2g of %.3g\n", d, mx);
    } else CHECK(0, "forward: %s", xd_last_error());
    free(lq);
    free(lf);
    xd_model_free(q);
    xd_model_free(a);
    xd_model_free(t);
}

static void errors(void) {
    char out[128];
    snprintf(out, sizeof out, "%s/err.gguf", dir);
    xd_model *m = xd_model_load(FIX "tiny-llama.gguf");
    if (!m) { CHECK(0, "load: %s", xd_last_error()); return; }
    CHECK(xd_model_save_gguf(m, out, GGML_Q8_0) != 0 && strstr(xd_last_error(), "token_embd.weight") &&
              strstr(xd_last_error(), "48") && strstr(xd_last_error(), "32") && access(out, F_OK) != 0,
          "rows of 48 as Q8_0: %s", xd_last_error());
    CHECK(xd_model_save_gguf(m, out, GGML_Q4_K) != 0 && strstr(xd_last_error(), "Q4_K"),
          "Q4_K: %s", xd_last_error());
    /* a failed write (the 2nd file operation: a write) leaves nothing at the path */
    xd_atomic_inject_fault(2, 28 /* ENOSPC */);
    CHECK(xd_model_save_gguf(m, out, GGML_F32) != 0 && access(out, F_OK) != 0,
          "failed write: %s", xd_last_error());
    xd_atomic_inject_fault(0, 0);
    xd_model_free(m);
    xd_model *q = xd_model_load_weights(FIX "tiny-kquant.gguf", XD_WEIGHTS_GGUF);
    CHECK(q && xd_model_save_gguf(q, out, GGML_F32) != 0 && strstr(xd_last_error(), "--weights fp32"),
          "on blocks: %s", xd_last_error());
    xd_model_free(q);
    /* the command */
    char args[512], o[4096];
    snprintf(args, sizeof args, "quantize %stiny-kquant.gguf -o %s/cli.gguf --type q4_1", FIX, dir);
    CHECK(test_cli_run(args, o, sizeof o, TEST_CLI_STDOUT) == 0 && strstr(o, "\"type\": \"Q4_1\""),
          "quantize: %s", o);
    snprintf(args, sizeof args, "quantize %stiny-kquant.gguf -o %s/cli.gguf --type q3_k", FIX, dir);
    CHECK(test_cli_run(args, o, sizeof o, 0) == 2 && strstr(o, "--type"), "--type q3_k: %s", o);
    snprintf(args, sizeof args, "quantize %stiny-kquant.gguf", FIX);
    CHECK(test_cli_run(args, o, sizeof o, 0) == 2, "no -o: %s", o);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_gguf_write_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    round_trip(FIX "tiny-llama.gguf", 0);
    round_trip(FIX "tiny-qwen2.gguf", 0);
    round_trip(FIX "tiny-kquant.gguf", 0);
    round_trip(FIX "tiny-llama", 0);
    round_trip(FIX "tiny-qwen3", 0);
    round_trip(FIX "tiny-olmo2", 0);
    round_trip(FIX "tiny-llama3rope", 1e-6);
    quantisers();
    student();
    errors();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd)) return 1;
    return test_summary("test_gguf_write");
}
