/* bench_infer — teacher inference speed through the public API.
 *
 *   bench_infer [--model PATH] [--threads N] [--text FILE] [--prefill N]
 *               [--ctx 128,1024,4096] [--decode N] [--reps N] [--tokens-out FILE]
 *               [--weights gguf|fp32|gguf-all] [--kv float32|bfloat16|int8]
 *
 * Measures, with the same token ids that bench/llamacpp_infer.py replays:
 *   - prefill: one xd_forward over N prompt tokens (logits of the last
 *     position only), after one warm-up run; best and median of --reps;
 *   - decode at context C: prefill C tokens (untimed, in chunks of 512), then
 *     --decode single-token xd_forward calls (last-position logits), timed
 *     together; tok/s = decode / total seconds;
 *   - foreign_cpu: the share of the machine's CPU time that other programs
 *     used during each measurement (0 = the machine was ours alone);
 *   - peak RSS (getrusage ru_maxrss) right after load, against the fp32 weight
 *     size (n_params × 4 bytes) and the file's size, and at the end (with the KV
 *     cache, whose size is reported apart).
 * --weights: how the GGUF's weights are held (xd_weights_mode; default gguf, the file's
 * own blocks, as `xdistill generate` does).
 * The ids are the tokenisation of --text (repeated if it is too short),
 * written to --tokens-out for the llama.cpp side. One JSON object per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "kernels/kernels.h"
#include "xdistill.h"

static void die(const char *what) {
    fprintf(stderr, "bench_infer: %s: %s\n", what, xd_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    const char *blas_core = bench_blas_core(argv);
    const char *model_path = bench_teacher_path();
    const char *text_path = "/usr/share/common-licenses/GPL-3";
    const char *tokens_out = NULL;
    const char *ctx_list = "128,1024,4096";
    int threads = 2, prefill = 512, decode = 64, reps = 3, weights = XD_WEIGHTS_GGUF;
    int kv_dtype = XD_KV_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) goto usage;
        if (!strcmp(a, "--model")) model_path = argv[++i];
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--kv")) {
            if (xd_kv_dtype_parse(argv[++i], &kv_dtype)) goto usage;
        } else if (!strcmp(a, "--weights")) {
            weights = xd_weights_mode_parse(argv[++i]);
            if (weights < 0) goto usage;
        }
        else if (!strcmp(a, "--text")) text_path = argv[++i];
        else if (!strcmp(a, "--prefill")) prefill = atoi(argv[++i]);
        else if (!strcmp(a, "--ctx")) ctx_list = argv[++i];
        else if (!strcmp(a, "--decode")) decode = atoi(argv[++i]);
        else if (!strcmp(a, "--reps")) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens-out")) tokens_out = argv[++i];
        else goto usage;
    }
    if (prefill <= 0 || decode <= 0 || reps < 0) goto usage;

    int ctxs[16], n_ctx = 0, max_ctx = prefill;
    for (const char *p = ctx_list; *p && n_ctx < 16;) {
        ctxs[n_ctx] = atoi(p);
        if (ctxs[n_ctx] <= 0) goto usage;
        if (ctxs[n_ctx] > max_ctx) max_ctx = ctxs[n_ctx];
        n_ctx++;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    int need = (max_ctx > prefill ? max_ctx : prefill) + decode;

    xd_set_threads(threads);
    double rss_before = xd_peak_rss_mib();
    double t0 = bench_now();
    xd_model *m = xd_model_load_weights(model_path, (xd_weights_mode)weights);
    if (!m) die("load");
    double t_load = bench_now() - t0;
    double rss_load = xd_peak_rss_mib(), rss_load_cur = xd_rss_mib();
    const xd_config *c = xd_model_config(m);
    size_t n_params = xd_model_n_params(m);
    double weights_mb = (double)n_params * 4.0 / 1048576.0;
    printf("{\"bench\":\"xd_load\",\"model\":\"%s\",\"threads\":%d,\"blas_core\":\"%s\","
           "\"n_params\":%zu,\"n_layer\":%d,\"d_model\":%d,\"vocab\":%d,\"load_s\":%.3f}\n",
           model_path, xd_get_threads(), blas_core, n_params, c->n_layer, c->d_model, c->vocab_size,
           t_load);
    struct stat st;
    double file_mb = stat(model_path, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
    printf("{\"bench\":\"xd_rss_load\",\"weights\":\"%s\",\"rss_peak_mb\":%.1f,"
           "\"rss_now_mb\":%.1f,\"rss_before_load_mb\":%.1f,\"fp32_weights_mb\":%.1f,"
           "\"ratio\":%.3f,\"file_mb\":%.1f,\"ratio_file\":%.3f}\n",
           weights == XD_WEIGHTS_FP32 ? "fp32" : weights == XD_WEIGHTS_GGUF ? "gguf" : "gguf-all",
           rss_load, rss_load_cur, rss_before, weights_mb, rss_load / weights_mb, file_mb,
           file_mb > 0 ? rss_load / file_mb : 0.0);
    fflush(stdout);

    /* token ids: the tokenised text, repeated until there are enough */
    size_t tlen = 0;
    char *text = bench_read_file(text_path, &tlen);
    int32_t *ids = malloc((size_t)need * sizeof *ids);
    if (!ids) die("out of memory");
    int have = 0;
    const char *source = "text";
    int32_t *enc = NULL;
    size_t n_enc = 0;
    const xd_tokenizer *tok = xd_model_tokenizer(m);
    if (text && tok && xd_tokenizer_encode(tok, text, tlen, 0, &enc, &n_enc) == 0 && n_enc > 0) {
        while (have < need) {
            for (size_t i = 0; i < n_enc && have < need; i++) ids[have++] = enc[i];
        }
    } else {
        source = "fixed";
        fprintf(stderr, "bench_infer: tokenising %s failed (%s); using fixed ids\n", text_path,
                xd_last_error());
        uint32_t s = 12345;
        while (have < need) {
            s = s * 1664525u + 1013904223u;
            ids[have++] = (int32_t)(1000 + (s >> 8) % 40000u);
        }
    }
    free(enc);
    free(text);
    for (int i = 0; i < need; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) ids[i] = ids[i] % c->vocab_size;
    if (tokens_out) {
        FILE *f = fopen(tokens_out, "w");
        if (!f) {
            fprintf(stderr, "bench_infer: cannot write %s\n", tokens_out);
            return 1;
        }
        for (int i = 0; i < need; i++) fprintf(f, "%d%c", ids[i], i + 1 < need ? ' ' : '\n');
        fclose(f);
    }
    printf("{\"bench\":\"xd_tokens\",\"source\":\"%s\",\"file\":\"%s\",\"n\":%d}\n", source,
           text_path, need);

    xd_kv *kv = xd_kv_create_typed(m, need, kv_dtype);
    if (!kv) die("kv");
    float *logits = malloc((size_t)c->vocab_size * sizeof(float));
    if (!logits) die("out of memory");

    /* prefill (--reps 0: not measured) */
    bench_cpu_mark cm;
    double fr;
    if (reps > 0) {
        xd_kv_reset(kv);
        if (xd_forward(m, kv, ids, prefill, logits, 0)) die("prefill warm-up");
        double *pt = malloc((size_t)reps * sizeof *pt);
        bench_mark(&cm);
        for (int r = 0; r < reps; r++) {
            xd_kv_reset(kv);
            double a = bench_now();
            if (xd_forward(m, kv, ids, prefill, logits, 0)) die("prefill");
            pt[r] = bench_now() - a;
        }
        fr = bench_others_frac(&cm);
        qsort(pt, (size_t)reps, sizeof *pt, bench_cmp_d);
        printf("{\"bench\":\"xd_prefill\",\"tokens\":%d,\"reps\":%d,\"best_s\":%.4f,"
               "\"median_s\":%.4f,\"tok_s\":%.1f,\"tok_s_median\":%.1f,\"foreign_cpu\":%.3f}\n",
               prefill, reps, pt[0], pt[reps / 2], prefill / pt[0], prefill / pt[reps / 2], fr);
        fflush(stdout);
        free(pt);
    }

    /* decode at each context */
    double *dt = malloc((size_t)decode * sizeof *dt);
    for (int ci = 0; ci < n_ctx; ci++) {
        int C = ctxs[ci];
        xd_kv_reset(kv);
        for (int p = 0; p < C; p += 512) {
            int n = C - p < 512 ? C - p : 512;
            if (xd_forward(m, kv, ids + p, n, p + n == C ? logits : NULL, 0)) die("ctx prefill");
        }
        bench_mark(&cm);
        double a = bench_now();
        for (int i = 0; i < decode; i++) {
            double b = bench_now();
            if (xd_forward(m, kv, ids + C + i, 1, logits, 0)) die("decode");
            dt[i] = bench_now() - b;
        }
        double total = bench_now() - a;
        fr = bench_others_frac(&cm);
        qsort(dt, (size_t)decode, sizeof *dt, bench_cmp_d);
        printf("{\"bench\":\"xd_decode\",\"ctx\":%d,\"tokens\":%d,\"total_s\":%.4f,"
               "\"tok_s\":%.2f,\"ms_per_tok_median\":%.3f,\"tok_s_median\":%.2f,"
               "\"ms_per_tok_min\":%.3f,\"foreign_cpu\":%.3f}\n",
               C, decode, total, decode / total, 1e3 * dt[decode / 2], 1.0 / dt[decode / 2],
               1e3 * dt[0], fr);
        fflush(stdout);
    }
    free(dt);
    double kv_mb = (double)c->n_layer * (double)need * c->n_kv_head *
                   (double)(xd_kv_row_bytes(xd_kv_key_type(kv_dtype), c->head_dim) +
                            xd_kv_row_bytes(xd_kv_value_type(kv_dtype), c->head_dim)) / 1048576.0;
    printf("{\"bench\":\"xd_rss_end\",\"rss_peak_mb\":%.1f,\"kv_tokens\":%d,\"kv_mb\":%.1f,"
           "\"rss_peak_less_kv_mb\":%.1f,\"kv_dtype\":\"%s\"}\n", xd_peak_rss_mib(), need, kv_mb, xd_peak_rss_mib() - kv_mb,
           xd_kv_dtype_name(kv_dtype));
    free(logits);
    free(ids);
    xd_kv_free(kv);
    xd_model_free(m);
    return 0;

usage:
    fprintf(stderr,
            "usage: %s [--model PATH] [--threads N] [--text FILE] [--prefill N] "
            "[--ctx 128,1024,4096] [--decode N] [--reps N] [--tokens-out FILE] "
            "[--weights gguf|fp32|gguf-all] [--kv float32|bfloat16|int8|int4|k8v4]\n",
            argv[0]);
    return 2;
}
