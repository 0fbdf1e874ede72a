/* bench_sgemm — OpenBLAS sgemm throughput on the teacher's prefill shapes
 * versus the machine's BLAS peak (a large square sgemm), plus the memory
 * bandwidth that bounds single-token decode (sgemv on the decode shapes and a
 * plain streaming read).
 *
 *   bench_sgemm [--threads N] [--tokens N] [--min-time S]
 *
 * The prefill shapes are exactly the calls xd_linear makes for SmolLM2-135M:
 * y[n×out] = x[n×in] · W[out×in]ᵀ  (RowMajor, NoTrans, Trans).
 * One JSON object per line on stdout. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);
void openblas_set_num_threads(int n);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Share of the machine's CPU time (incl. steal) that other programs used
 * between mark() and foreign(): 0 when the machine was ours alone. */
typedef struct { double wall, busy, self; } cpu_mark;

static void mark(cpu_mark *m) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    m->busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m->self = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
              (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    m->wall = now();
}

static double foreign(const cpu_mark *a) {
    cpu_mark b;
    mark(&b);
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    double fr = ((b.busy - a->busy) - (b.self - a->self)) / (ncpu * (b.wall - a->wall));
    return fr < 0 ? 0 : fr;
}

static double last_foreign; /* of the latest time_it */

static float *rand_buf(size_t n, unsigned seed) {
    float *p = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
    if (!p) {
        fprintf(stderr, "bench_sgemm: out of memory (%zu floats)\n", n);
        exit(1);
    }
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Time fn(ctx) repeatedly for at least min_time seconds (and at least 5 runs,
 * after 2 warm-up runs); return best and median seconds. */
typedef void (*run_fn)(void *);
static void time_it(run_fn fn, void *ctx, double min_time, double *best, double *median,
                    int *runs) {
    fn(ctx);
    fn(ctx);
    double t[4096];
    int n = 0;
    cpu_mark cm;
    mark(&cm);
    double start = now();
    while (n < 4096 && (n < 5 || now() - start < min_time)) {
        double t0 = now();
        fn(ctx);
        t[n++] = now() - t0;
    }
    last_foreign = foreign(&cm);
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    *best = t[0];
    *median = t[n / 2];
    *runs = n;
}

typedef struct {
    int m, n, k, transb;
    const float *A, *B;
    float *C;
} gemm_ctx;

static void run_gemm(void *p) {
    gemm_ctx *g = p;
    int ldb = g->transb ? g->k : g->n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g->transb ? CblasTrans : CblasNoTrans, g->m, g->n,
                g->k, 1.0f, g->A, g->k, g->B, ldb, 0.0f, g->C, g->n);
}

typedef struct {
    int rows, cols;
    const float *W, *x;
    float *y;
} gemv_ctx;

static void run_gemv(void *p) {
    gemv_ctx *g = p;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, g->rows, g->cols, 1.0f, g->W, g->cols, g->x, 1, 0.0f,
                g->y, 1);
}

typedef struct {
    const float *buf;
    size_t n;
    volatile float sink;
} read_ctx;

static void run_read(void *p) {
    read_ctx *r = p;
    const float *b = r->buf;
    size_t n = r->n;
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
        /* 4 × 16 independent sums: enough loads in flight to saturate memory */
        float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i += 64) {
            for (int j = 0; j < 16; j++) a0[j] += b[i + j];
            for (int j = 0; j < 16; j++) a1[j] += b[i + 16 + j];
            for (int j = 0; j < 16; j++) a2[j] += b[i + 32 + j];
            for (int j = 0; j < 16; j++) a3[j] += b[i + 48 + j];
        }
        for (int j = 0; j < 16; j++) total += a0[j] + a1[j] + a2[j] + a3[j];
    }
    r->sink = total;
}

/* Core clock under load, from a chain of dependent integer adds (1 cycle
 * each), run on every thread at once; returns the slowest thread's GHz. */
static double clock_ghz(void) {
    double ghz = 1e30;
#pragma omp parallel reduction(min : ghz)
    {
        const long iters = 200000000;
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            long n = iters, x = 0;
            double t0 = now();
            __asm__ volatile("1:\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "dec %1\n\tjnz 1b"
                             : "+r"(x), "+r"(n));
            double t = now() - t0;
            if (t < best) best = t;
        }
        double g = 8.0 * (double)iters / best / 1e9;
        if (g < ghz) ghz = g;
    }
    return ghz;
}

int main(int argc, char **argv) {
    int threads = 2, tokens = 512;
    double min_time = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) min_time = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--tokens N] [--min-time S]\n", argv[0]);
            return 2;
        }
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    printf("{\"bench\":\"sgemm_info\",\"threads\":%d,\"openblas_core\":\"%s\","
           "\"openblas_config\":\"%s\"}\n",
           threads, openblas_get_corename(), openblas_get_config());
    fflush(stdout);
#if defined(__x86_64__)
    {
        /* Zen 4: two 256-bit FMA pipes (AVX-512 is double-pumped) = 16 fp32
         * FMA = 32 FLOP per cycle per core; Skylake-SP/Ice Lake with two
         * 512-bit FMA units would be 64. */
        double ghz = clock_ghz();
        printf("{\"bench\":\"clock\",\"ghz_under_load\":%.2f,\"flop_per_cycle_core\":32,"
               "\"theoretical_gflops\":%.1f}\n",
               ghz, ghz * 32.0 * threads);
        fflush(stdout);
    }
#endif

    /* peak: large square sgemm, both layouts, best of several runs */
    double peak = 0;
    const int sq[] = {2048, 3072};
    for (size_t si = 0; si < sizeof sq / sizeof sq[0]; si++) {
        int N = sq[si];
        float *A = rand_buf((size_t)N * N, 1), *B = rand_buf((size_t)N * N, 2),
              *C = rand_buf((size_t)N * N, 3);
        for (int tb = 0; tb <= 1; tb++) {
            gemm_ctx g = {N, N, N, tb, A, B, C};
            double best, med;
            int runs;
            time_it(run_gemm, &g, min_time, &best, &med, &runs);
            double fl = 2.0 * N * (double)N * N;
            double gf = fl / best / 1e9;
            if (gf > peak) peak = gf;
            printf("{\"bench\":\"sgemm_peak\",\"m\":%d,\"n\":%d,\"k\":%d,\"transb\":%d,"
                   "\"runs\":%d,\"best_s\":%.6f,\"median_s\":%.6f,\"gflops\":%.1f,"
                   "\"gflops_median\":%.1f,\"foreign_cpu\":%.3f}\n",
                   N, N, N, tb, runs, best, med, gf, fl / med / 1e9, last_foreign);
            fflush(stdout);
        }
        free(A); free(B); free(C);
    }
    printf("{\"bench\":\"sgemm_peak_best\",\"gflops\":%.1f}\n", peak);

    /* the model's prefill shapes (SmolLM2-135M: d=576, kv=192, ff=1536, vocab=49152) */
    struct { const char *name; int out, in, per_layer; } shapes[] = {
        {"q,o", 576, 576, 2},      {"k,v", 192, 576, 2},      {"gate,up", 1536, 576, 2},
        {"down", 576, 1536, 1},    {"lm_head", 49152, 576, 0},
        /* not what src/ does today: q,k,v and gate,up each fused into one sgemm */
        {"qkv_fused", 960, 576, 0}, {"gate_up_fused", 3072, 576, 0},
    };
    double tot_flops = 0, tot_time = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int n = tokens, out = shapes[i].out, in = shapes[i].in;
        float *X = rand_buf((size_t)n * in, 4), *W = rand_buf((size_t)out * in, 5),
              *Y = rand_buf((size_t)n * out, 6);
        gemm_ctx g = {n, out, in, 1, X, W, Y};
        double best, med;
        int runs;
        time_it(run_gemm, &g, min_time, &best, &med, &runs);
        double fl = 2.0 * n * (double)out * in;
        printf("{\"bench\":\"sgemm_shape\",\"name\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,"
               "\"runs\":%d,\"best_s\":%.6f,\"median_s\":%.6f,\"gflops\":%.1f,"
               "\"gflops_median\":%.1f,\"pct_peak\":%.1f,\"pct_peak_median\":%.1f,"
               "\"foreign_cpu\":%.3f}\n",
               shapes[i].name, n, out, in, runs, best, med, fl / best / 1e9, fl / med / 1e9,
               100.0 * fl / best / 1e9 / peak, 100.0 * fl / med / 1e9 / peak, last_foreign);
        fflush(stdout);
        /* weighted by occurrences in a 30-layer prefill (the lm head runs on
         * the last row only, the fused shapes are alternatives: not counted) */
        if (shapes[i].per_layer) {
            tot_flops += 30.0 * shapes[i].per_layer * fl;
            tot_time += 30.0 * shapes[i].per_layer * best;
        }
        free(X); free(W); free(Y);
    }
    printf("{\"bench\":\"sgemm_layers_weighted\",\"gflops\":%.1f,\"pct_peak\":%.1f,"
           "\"time_s\":%.4f}\n",
           tot_flops / tot_time / 1e9, 100.0 * tot_flops / tot_time / 1e9 / peak, tot_time);
    fflush(stdout);

    /* decode: sgemv (one token) is memory bound; report GB/s of weight traffic */
    struct { const char *name; int rows, cols; } vshapes[] = {
        {"q,o", 576, 576}, {"gate,up", 1536, 576}, {"down", 576, 1536}, {"lm_head", 49152, 576},
    };
    for (size_t i = 0; i < sizeof vshapes / sizeof vshapes[0]; i++) {
        /* cycle over enough copies of the matrix (≥ 256 MB) that the L3 cache
         * cannot hold them, like the 30 layers of decode */
        size_t per = (size_t)vshapes[i].rows * vshapes[i].cols;
        int copies = (int)((256u << 20) / (per * 4)) + 1;
        float *W = rand_buf(per * (size_t)copies, 7), *x = rand_buf((size_t)vshapes[i].cols, 8),
              *y = rand_buf((size_t)vshapes[i].rows, 9);
        double best = 1e30, tsum = 0;
        int reps = 0;
        for (int warm = 0; warm < copies; warm++) {
            gemv_ctx g = {vshapes[i].rows, vshapes[i].cols, W + per * (size_t)warm, x, y};
            run_gemv(&g);
        }
        cpu_mark cm;
        mark(&cm);
        double start = now();
        while (reps < 3 || now() - start < min_time) {
            double t0 = now();
            for (int c = 0; c < copies; c++) {
                gemv_ctx g = {vshapes[i].rows, vshapes[i].cols, W + per * (size_t)c, x, y};
                run_gemv(&g);
            }
            double t = now() - t0;
            tsum += t;
            if (t < best) best = t;
            reps++;
        }
        double fr = foreign(&cm);
        double bytes = (double)per * 4.0 * copies;
        printf("{\"bench\":\"sgemv_decode\",\"name\":\"%s\",\"rows\":%d,\"cols\":%d,"
               "\"copies\":%d,\"gbps\":%.1f,\"gbps_mean\":%.1f,\"gflops\":%.1f,"
               "\"foreign_cpu\":%.3f}\n",
               vshapes[i].name, vshapes[i].rows, vshapes[i].cols, copies, bytes / best / 1e9,
               bytes * reps / tsum / 1e9, 2.0 * per * copies / best / 1e9, fr);
        fflush(stdout);
        free(W); free(x); free(y);
    }
    {
        size_t n = (size_t)128 << 20; /* 512 MB of floats */
        float *buf = rand_buf(n, 10);
        read_ctx r = {buf, n, 0};
        double best, med;
        int runs;
        time_it(run_read, &r, min_time, &best, &med, &runs);
        printf("{\"bench\":\"mem_read\",\"bytes\":%zu,\"runs\":%d,\"gbps\":%.1f,"
               "\"gbps_median\":%.1f,\"foreign_cpu\":%.3f}\n",
               n * 4, runs, (double)n * 4 / best / 1e9, (double)n * 4 / med / 1e9, last_foreign);
        free(buf);
    }
    return 0;
}
