/* bench_student — constant-memory decoding of the xLSTM hybrid student
 * against its teacher (issue 5, criterion 4), in one process:
 *
 *   bench_student [--model GGUF] [--threads N] [--window W] [--sinks S]
 *                 [--ctx 16384] [--gen 16384] [--decode 32] [--text FILE]
 *                 [--global-heads FILE.json:K[g] [--global-kv bfloat16|int8|int4|k8v4|float32]]
 *                 [--student-prefill 1] [--sparse-cache ROWS] [--quant q4_1|q8_0|...]
 *                 [--kv float32|bfloat16] [--teacher 0] [--student-decode N]
 *
 * 1. Teacher: prefill --ctx tokens (the tokenised --text, repeated) into its
 *    KV cache in pieces of 512, then greedy-decode --decode tokens: its decode
 *    tok/s at that context (median per-token time).
 * 2. Student (converted in memory from the same teacher, --window/--sinks):
 *    prefill 512 tokens, then greedy-generate token by token up to --gen
 *    tokens in all, recording the current RSS (/proc/self/statm) at 512 and
 *    at --gen tokens, and the per-token time of the last --decode tokens:
 *    its decode tok/s at that context. The student's state stays
 *    xd_student_kv_bytes whatever the length.
 * The student's mixer parameters are the fresh conversion's (speed and
 * memory do not depend on their values). --global-heads keeps the K best heads
 * (Kg: KV groups) of a ranking saved by `xdistill heads -o` as global heads;
 * their state grows with the length, so --student-prefill 1 fills the
 * student's state by prefilling --ctx tokens instead of generating --gen. --quant writes the
 * student as GGUF of that type (xd_model_save_gguf: its products' matrices in blocks, the
 * mixer fp32) and decodes it on its blocks (XD_WEIGHTS_GGUF). --kv: the teacher's cache and the
 * student's window rows (xd_kv_create_typed; default float32). --teacher 0 skips step 1
 * (bench/run_long.sh measures the teacher with bench_infer). --student-decode: how many of
 * the student's last tokens are timed (default --decode; a median over more tokens is
 * steadier on a shared machine).
 * One JSON object per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bench_common.h"
#include "core/ggml_type.h"
#include "io/ggml_types.h"
#include "kernels/quant.h"
#include "model/head_probe.h"
#include "model/model.h"
#include "model/student.h"
#include "xdistill.h"

static void die(const char *what) {
    fprintf(stderr, "bench_student: %s: %s\n", what, xd_last_error());
    exit(1);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Prefill ids[0..n) in pieces of 512; logits of the last position into out. */
static void prefill(const xd_model *m, xd_kv *kv, const int32_t *ids, int n, float *out) {
    for (int at = 0; at < n; at += 512) {
        int len = n - at < 512 ? n - at : 512;
        if (xd_forward(m, kv, ids + at, len, at + len == n ? out : NULL, 0)) die("prefill");
    }
}

/* Greedy decoding of n tokens from `last` logits; per-token seconds into t. */
static void decode(const xd_model *m, xd_kv *kv, float *logits, int n, double *t) {
    int V = xd_model_config(m)->vocab_size;
    for (int i = 0; i < n; i++) {
        int32_t tok = argmax(logits, V);
        double t0 = bench_now();
        if (xd_forward(m, kv, &tok, 1, logits, 0)) die("decode");
        if (t) t[i] = bench_now() - t0;
    }
}

int main(int argc, char **argv) {
    const char *blas_core = bench_blas_core(argv);
    const char *model = bench_teacher_path(), *text = "/usr/share/common-licenses/GPL-3";
    int threads = 2, ctx = 16384, gen = 16384, ndec = 32, student_prefill = 0;
    int kv_dtype = XD_KV_F32, with_teacher = 1, sdec = 0;
    const char *gh_spec = NULL, *quant = NULL; /* quant: the student as GGUF of that type */
    xd_student_opts so;
    xd_student_defaults(&so);
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "bench_student: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--window")) so.window = atoi(v);
        else if (!strcmp(a, "--sinks")) so.sinks = atoi(v);
        else if (!strcmp(a, "--ctx")) ctx = atoi(v);
        else if (!strcmp(a, "--gen")) gen = atoi(v);
        else if (!strcmp(a, "--decode")) ndec = atoi(v);
        else if (!strcmp(a, "--text")) text = v;
        else if (!strcmp(a, "--global-heads")) gh_spec = v;
        else if (!strcmp(a, "--global-kv")) {
            if (xd_kv_dtype_parse(v, &so.global_kv_dtype)) {
                fprintf(stderr, "bench_student: --global-kv float32|bfloat16|int8|int4|k8v4\n");
                return 2;
            }
        }
        else if (!strcmp(a, "--student-prefill")) student_prefill = atoi(v);
        else if (!strcmp(a, "--sparse-cache")) so.sparse_cache = atoi(v);
        else if (!strcmp(a, "--quant")) quant = v;
        else if (!strcmp(a, "--teacher")) with_teacher = atoi(v);
        else if (!strcmp(a, "--student-decode")) sdec = atoi(v);
        else if (!strcmp(a, "--kv")) {
            if (xd_kv_dtype_parse(v, &kv_dtype) || (kv_dtype != XD_KV_F32 && kv_dtype != XD_KV_BF16)) {
                fprintf(stderr, "bench_student: --kv float32|bfloat16\n");
                return 2;
            }
        }
        else { fprintf(stderr, "bench_student: unknown option %s\n", a); return 2; }
    }
    if (!sdec) sdec = ndec;
    if (ctx < 1024 || gen < 1024 || ndec < 4 || ndec > 4096 || sdec < 4 || sdec > 4096) {
        fprintf(stderr, "bench_student: --ctx and --gen must be >= 1024, --decode and "
                        "--student-decode 4..4096\n");
        return 2;
    }
    xd_set_threads(threads);
    xd_model *t = xd_model_load(model);
    if (!t) die(model);
    const xd_config *c = xd_model_config(t);
    if (gh_spec) { /* FILE.json:K or FILE.json:Kg */
        char path[4096];
        const char *colon = strrchr(gh_spec, ':');
        if (!colon) { fprintf(stderr, "bench_student: --global-heads FILE.json:K[g]\n"); return 2; }
        snprintf(path, sizeof path, "%.*s", (int)(colon - gh_spec), gh_spec);
        int k = atoi(colon + 1), group = colon[strlen(colon) - 1] == 'g' ? c->n_head / c->n_kv_head : 0;
        so.n_global_heads = xd_head_ranking_load_top(path, k, group, c->n_layer, c->n_head, so.global_heads);
        if (so.n_global_heads < 0) die(path);
    }
    int V = c->vocab_size;
    size_t len = 0;
    char *txt = bench_read_file(text, &len);
    if (!txt) { fprintf(stderr, "bench_student: cannot read %s\n", text); return 1; }
    int32_t *base = NULL;
    size_t nbs = 0;
    if (xd_tokenizer_encode(xd_model_tokenizer(t), txt, len, 0, &base, &nbs) || nbs == 0)
        die("tokenize");
    int nb = (int)nbs;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)ctx);
    for (int i = 0; i < ctx; i++) ids[i] = base[i % nb];
    float *logits = malloc(sizeof(float) * (size_t)V);
    double *tt = malloc(sizeof(double) * (size_t)(ndec > sdec ? ndec : sdec));
    printf("{\"bench\":\"student_setup\",\"model\":\"%s\",\"threads\":%d,\"blas_core\":\"%s\","
           "\"window\":%d,\"sinks\":%d,"
           "\"ctx\":%d,\"gen\":%d,\"decode\":%d,\"text\":\"%s\",\"text_tokens\":%d,"
           "\"global_heads\":%d,\"global_kv\":\"%s\",\"student_prefill\":%d,\"sparse_cache\":%d,"
           "\"kv\":\"%s\",\"student_decode\":%d}\n",
           model, threads, blas_core, so.window, so.sinks, ctx, gen, ndec, text, nb, so.n_global_heads,
           xd_kv_dtype_name(so.global_kv_dtype), student_prefill, so.sparse_cache,
           xd_kv_dtype_name(kv_dtype), sdec);
    fflush(stdout);

    /* 1. teacher at ctx */
    bench_cpu_mark mk;
    double med_t = 0, others, t0;
    xd_kv *kv;
    if (with_teacher) {
        double rss0 = xd_rss_mib();
        kv = xd_kv_create_typed(t, ctx + ndec + 1, kv_dtype);
        if (!kv) die("teacher cache");
        t0 = bench_now();
        prefill(t, kv, ids, ctx, logits);
        double t_pre = bench_now() - t0;
        bench_mark(&mk);
        decode(t, kv, logits, ndec, tt);
        others = bench_others_frac(&mk);
        double rss_t = xd_rss_mib();
        med_t = bench_median(tt, ndec);
        printf("{\"bench\":\"teacher_decode\",\"ctx\":%d,\"prefill_s\":%.2f,\"decode_tok_s\":%.2f,"
               "\"rss_mb\":%.1f,\"kv_mb\":%.1f,\"others_cpu_frac\":%.4f}\n",
               ctx, t_pre, 1.0 / med_t, rss_t, rss_t - rss0, others);
        fflush(stdout);
        xd_kv_free(kv);
    }

    /* 2. student: generate up to gen tokens */
    xd_model *s = xd_student_convert(t, &so);
    if (!s) die("convert");
    xd_model_free(t);
    if (quant) { /* written as GGUF (its products' matrices in blocks) and decoded on them */
        uint32_t type = 0;
        while (type < GGML_TYPE_MAX && (!xd_quantize_writable(type) ||
                                        strcasecmp(quant, xd_ggml_type_name(type))))
            type++;
        char path[64];
        snprintf(path, sizeof path, "/tmp/bench_student_%d.gguf", (int)getpid());
        if (type == GGML_TYPE_MAX || xd_model_save_gguf(s, path, type)) die("--quant");
        xd_model_free(s);
        s = xd_model_load_weights(path, XD_WEIGHTS_GGUF);
        unlink(path); /* mapped: the pages stay until the model is freed */
        if (!s) die(path);
        printf("{\"bench\":\"student_quant\",\"type\":\"%s\"}\n", xd_ggml_type_name(type));
    }
    kv = xd_kv_create_typed(s, 1, kv_dtype);
    if (!kv) die("student state");
    t0 = bench_now();
    prefill(s, kv, ids, 512, logits);
    double rss_512 = xd_rss_mib(), t_gen0 = bench_now();
    printf("{\"bench\":\"student_rss\",\"tokens\":512,\"rss_mb\":%.1f,\"state_mb\":%.3f}\n", rss_512,
           (double)xd_student_kv_bytes(kv) / 1048576.0);
    fflush(stdout);
    if (student_prefill) { /* the rest of ctx as prefill (global heads: their state grows) */
        xd_kv_reset(kv);
        prefill(s, kv, ids, ctx, logits);
        gen = ctx + sdec;
    }
    for (int at = student_prefill ? gen : 512; at < gen - sdec;) {
        int n = gen - sdec - at < 1024 ? gen - sdec - at : 1024;
        decode(s, kv, logits, n, NULL);
        at += n;
        fprintf(stderr, "\rbench_student: student generated %d / %d tokens", at, gen);
    }
    fprintf(stderr, "\n");
    bench_mark(&mk);
    decode(s, kv, logits, sdec, tt);
    others = bench_others_frac(&mk);
    double rss_gen = xd_rss_mib(), med_s = bench_median(tt, sdec);
    printf("{\"bench\":\"student_rss\",\"tokens\":%d,\"rss_mb\":%.1f,\"state_mb\":%.3f,"
           "\"generate_s\":%.1f}\n",
           xd_kv_pos(kv), rss_gen, (double)xd_student_kv_bytes(kv) / 1048576.0,
           bench_now() - t_gen0);
    printf("{\"bench\":\"student_decode\",\"ctx\":%d,\"decode_tok_s\":%.2f,\"others_cpu_frac\":%.4f}\n",
           xd_kv_pos(kv) - sdec, 1.0 / med_s, others);
    char tdec[32] = "null", sp[32] = "null"; /* no teacher (--teacher 0): null */
    if (with_teacher) {
        snprintf(tdec, sizeof tdec, "%.2f", 1.0 / med_t);
        snprintf(sp, sizeof sp, "%.2f", med_t / med_s);
    }
    printf("{\"bench\":\"student_summary\",\"rss_512_mb\":%.1f,\"rss_gen_mb\":%.1f,\"rss_change\":%.4f,"
           "\"teacher_decode_tok_s\":%s,\"student_decode_tok_s\":%.2f,\"speedup\":%s,"
           "\"peak_rss_mb\":%.1f}\n",
           rss_512, rss_gen, (rss_gen - rss_512) / rss_512, tdec, 1.0 / med_s, sp, xd_peak_rss_mib());
    xd_kv_free(kv);
    xd_model_free(s);
    free(ids); free(base); free(txt); free(logits); free(tt);
    return 0;
}
