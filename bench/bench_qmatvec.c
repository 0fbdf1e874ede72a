/* Quantised matrix-vector products on ggml's blocks (kernels/quant.h; issue 17) against
 * fp32 cblas_sgemv on the same weights dequantised, at decoding's shapes of SmolLM2-135M
 * (576 × 576, 1536 × 576, 576 × 1536, and the 49152 × 576 LM head; the K-quants only
 * where the columns are a multiple of 256), one thread and all.
 * Prints one JSON line per type and shape: µs per product, the weight bytes read per
 * second, and the speed-up over sgemv (median of REPS timed runs after a warm-up).
 *
 *   build/bench/bench_qmatvec [THREADS]          (the rows run in parallel over THREADS) */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bench_common.h"
#include "core/ggml_type.h"
#include "core/rng.h"
#include "io/ggml_types.h"
#include "kernels/quant.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *core = bench_blas_core(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    xd_set_threads(threads);
    const uint32_t types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K};
    const int shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    enum { REPS = 15 };
    xd_rng r;
    xd_rng_seed(&r, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
        float *wf = malloc((size_t)rows * cols * sizeof *wf);
        for (int j = 0; j < cols; j++) x[j] = (float)xd_rng_uniform(&r) - 0.5f;
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            size_t wb = xd_q_row_bytes(types[t], cols);
            if (!wb) continue; /* K-quants need a multiple of 256 columns (576 is not) */
            uint8_t *W = malloc(wb * (size_t)rows);
            for (size_t i = 0; i < wb * (size_t)rows; i++) W[i] = (uint8_t)xd_rng_u64(&r);
            /* finite scales: every block's fp16 fields to 0x2000 (≈ 0.0078) */
            size_t be, bb;
            xd_ggml_type_block(types[t], &be, &bb);
            for (size_t b = 0; b < wb * (size_t)rows / bb; b++) {
                uint8_t *p = W + b * bb;
                uint16_t h = 0x2000;
                if (types[t] == GGML_Q6_K) memcpy(p + 208, &h, 2);
                else {
                    memcpy(p, &h, 2);
                    if (types[t] == GGML_Q4_1 || types[t] == GGML_Q4_K) memcpy(p + 2, &h, 2);
                }
            }
            xd_ggml_dequantize(types[t], W, wf, (int64_t)rows * cols);
            double tq[REPS], tf[REPS];
            void *scratch = malloc(xd_q_row_bytes((uint32_t)xd_qdot_act_type(types[t]), cols));
            for (int k = -1; k < REPS; k++) {
                double t0 = bench_now();
                xd_qmatvec(types[t], W, rows, cols, x, y, scratch);
                double t1 = bench_now();
                cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, wf, cols, x, 1, 0.0f, y, 1);
                double t2 = bench_now();
                if (k >= 0) tq[k] = t1 - t0, tf[k] = t2 - t1;
            }
            qsort(tq, REPS, sizeof *tq, cmp_d);
            qsort(tf, REPS, sizeof *tf, cmp_d);
            double q = tq[REPS / 2], f = tf[REPS / 2];
            printf("{\"type\":\"%s\",\"rows\":%d,\"cols\":%d,\"threads\":%d,\"us\":%.1f,"
                   "\"weight_gb_s\":%.2f,\"sgemv_us\":%.1f,\"sgemv_gb_s\":%.2f,\"speedup\":%.2f,"
                   "\"blas\":\"%s\"}\n", xd_ggml_type_name(types[t]), rows, cols, threads, q * 1e6,
                   (double)wb * rows / q / 1e9, f * 1e6, (double)rows * cols * 4 / f / 1e9, f / q, core);
            free(scratch);
            free(W);
        }
        free(x), free(y), free(wf);
    }
    return 0;
}
