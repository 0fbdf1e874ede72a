/* bench_kv_attention — the decoding kernel over a global head's compact cache
 * (xd_attention_kv with one query; kernels/attention_kv.c) on its own:
 *
 *   bench_kv_attention [--ctx 16384] [--heads 3] [--hd 64] [--threads 1] [--reps 200]
 *
 * One KV group of --heads query heads over --ctx stored positions, for each
 * key/value type (bf16, int8, int4, k8v4; f32 is xd_attention, the teacher's
 * own path). Rows are random in [−0.5, 0.5), queries in [0, 1). The time is the
 * mean of --reps calls after one warm-up call; ns_per_row is per stored
 * position (its key and its value). One JSON object per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "kernels/kernels.h"
#include "xdistill.h"

int main(int argc, char **argv) {
    const char *blas_core = bench_blas_core(argv);
    int T = 16384, NH = 3, HD = 64, threads = 1, reps = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        int v = atoi(argv[i + 1]);
        if (!strcmp(a, "--ctx")) T = v;
        else if (!strcmp(a, "--heads")) NH = v;
        else if (!strcmp(a, "--hd")) HD = v;
        else if (!strcmp(a, "--threads")) threads = v;
        else if (!strcmp(a, "--reps")) reps = v;
        else { fprintf(stderr, "bench_kv_attention: unknown option %s\n", a); return 2; }
    }
    if (argc % 2 == 0 || T < 1 || NH < 1 || HD < 1 || HD > 4096 || threads < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_kv_attention [--ctx N] [--heads N] [--hd N] [--threads N] [--reps N]\n");
        return 2;
    }
    if (xd_set_threads(threads)) { fprintf(stderr, "bench_kv_attention: %s\n", xd_last_error()); return 1; }
    static const int types[] = {XD_KV_F32, XD_KV_BF16, XD_KV_INT8, XD_KV_INT4, XD_KV_K8V4};
    float *x = malloc(sizeof(float) * (size_t)HD), *q = malloc(sizeof(float) * (size_t)NH * HD),
          *o = malloc(sizeof(float) * (size_t)NH * HD);
    char *K = malloc((size_t)T * 4 * HD), *V = malloc((size_t)T * 4 * HD);
    if (!x || !q || !o || !K || !V) { fprintf(stderr, "bench_kv_attention: out of memory\n"); return 1; }
    srand(1);
    for (int i = 0; i < NH * HD; i++) q[i] = (float)rand() / (float)RAND_MAX;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        int dt = types[t], kt = xd_kv_key_type(dt), vt = xd_kv_value_type(dt);
        size_t krb = xd_kv_row_bytes(kt, HD), vrb = xd_kv_row_bytes(vt, HD);
        for (int j = 0; j < T; j++) {
            for (int i = 0; i < HD; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
            xd_kv_row_store(kt, K + (size_t)j * krb, x, HD);
            for (int i = 0; i < HD; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
            xd_kv_row_store(vt, V + (size_t)j * vrb, x, HD);
        }
        if (xd_attention_kv(o, q, K, V, 1, T - 1, NH, 1, HD, dt)) { fprintf(stderr, "bench_kv_attention: out of memory\n"); return 1; }
        double t0 = bench_now();
        for (int r = 0; r < reps; r++) xd_attention_kv(o, q, K, V, 1, T - 1, NH, 1, HD, dt);
        double ms = (bench_now() - t0) * 1e3 / reps;
        printf("{\"bench\":\"kv_attention\",\"type\":\"%s\",\"ctx\":%d,\"heads\":%d,\"hd\":%d,"
               "\"threads\":%d,\"blas_core\":\"%s\",\"ms_per_call\":%.4f,\"ns_per_row\":%.2f,"
               "\"bytes_per_row\":%zu}\n",
               xd_kv_dtype_name(dt), T, NH, HD, threads, blas_core, ms, ms * 1e6 / T, krb + vrb);
        fflush(stdout);
    }
    free(x); free(q); free(o); free(K); free(V);
    return 0;
}
