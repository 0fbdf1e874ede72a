/* Training ops (forward where the inference kernel does not already serve,
 * and every backward) for the point-wise, normalisation, embedding, linear
 * and loss layers; attention is in train_attention.c.
 *
 * Conventions (train_ops.h): backward functions ACCUMULATE (+=) into every
 * gradient they are given and skip a NULL one; xd_cross_entropy overwrites.
 *
 * Determinism. The reductions over rows coded here (db, dw, dE, the loss)
 * are split into pieces fixed by the shape, never by the thread count, and
 * combined in a fixed order: bit-identical whatever OMP_NUM_THREADS is; so
 * are the element-wise ops and the attention (train_attention.c). The two
 * products of xd_linear_backward (dW reduces over the n rows) are top-level
 * sgemms, or oneDNN matmuls in bf16 mode, split over the threads by the
 * library: the same call at the same thread count gives the same bits, but
 * another thread count may round differently (OpenBLAS 0.3.21 does, with
 * every kernel tried: test_linear_threads in tests/test_train_ops.c), as may
 * another CPU. They stay whole library calls because they are the training
 * step's largest products and xd_linear's forward has the same property
 * anyway: a training run is reproducible at a fixed thread count on one
 * machine, not across thread counts. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "train_ops.h"
#include "vmath.h"

/* ---- linear ---------------------------------------------------------------
 * y = x·Wᵀ + b, so with dy = ∂L/∂y:
 *   dx[n][in]   += dy[n][out] · W[out][in]
 *   dW[out][in] += dyᵀ[out][n] · x[n][in]
 *   db[out]     += Σ_rows dy
 * The two products are single sgemms (beta = 1 accumulates), or bf16 matmuls
 * with fp32 accumulation in XD_COMPUTE_BF16 mode (kernels.h). */
void xd_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int n, int in, int out) {
    if (n <= 0) return;
    int done = xd_bf16_active() && (dx || dW)
                   ? xd_bf16_linear_backward(dx, dW, dy, x, W, n, in, out) : 0;
    if (dx && !(done & 1))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, W, in,
                    1.0f, dx, in);
    if (dW && !(done & 2))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in,
                    1.0f, dW, in);
    if (db) {
        /* column chunks: each chunk sums all rows in row order, in double */
        enum { CB = 256 };
        int nchunk = (out + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((int64_t)n * out > 65536)
        for (int c = 0; c < nchunk; c++) {
            int j0 = c * CB, j1 = j0 + CB < out ? j0 + CB : out;
            double acc[CB];
            for (int j = j0; j < j1; j++) acc[j - j0] = 0;
            for (int i = 0; i < n; i++) {
                const float *r = dy + (int64_t)i * out;
                for (int j = j0; j < j1; j++) acc[j - j0] += r[j];
            }
            for (int j = j0; j < j1; j++) db[j] += (float)acc[j - j0];
        }
    }
}

/* ---- LoRA -----------------------------------------------------------------
 * y += s·u·Bᵀ with u = x·Aᵀ (saved as ax), so with dy = ∂L/∂y:
 *   dB[out][r]  += s · dyᵀ · u
 *   du[n][r]     = s · dy · B            (the scratch dax)
 *   dA[r][in]   += duᵀ · x
 *   dx[n][in]   += du · A
 * Every product is one sgemm in fp32 (also in bf16 mode: the adapters are
 * small next to the base layer). */
void xd_lora_forward(float *y, float *ax, const float *x, const float *A, const float *B,
                     float s, int n, int in, int out, int r) {
    if (n <= 0 || r <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, x, in, A, in, 0.0f, ax, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, r, s, ax, r, B, r, 1.0f, y, out);
}

void xd_lora_backward(float *dx, float *dA, float *dB, float *dax, const float *dy,
                      const float *x, const float *ax, const float *A, const float *B, float s,
                      int n, int in, int out, int r) {
    if (n <= 0 || r <= 0) return;
    if (dB)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, n, s, dy, out, ax, r, 1.0f,
                    dB, r);
    if (!dA && !dx) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, out, s, dy, out, B, r, 0.0f, dax, r);
    if (dA)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, 1.0f, dax, r, x, in, 1.0f,
                    dA, in);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, 1.0f, dax, r, A, in, 1.0f,
                    dx, in);
}

/* ---- RMSNorm --------------------------------------------------------------
 * y_j = w_j · x_j · r with r = (Σ_k x_k²/dim + eps)^(-1/2), ∂r/∂x_k = −r³·x_k/dim:
 *   dx_k = r·w_k·dy_k − (r³/dim) · x_k · Σ_j w_j·dy_j·x_j
 *   dw_j = Σ_rows dy_j · x_j · r
 * r is computed exactly as xd_rmsnorm does (sum of squares in double). */
static float rms_r(const float *x, int dim, float eps) {
    double ss = 0;
    for (int j = 0; j < dim; j++) ss += (double)x[j] * x[j];
    return (float)(1.0 / sqrt(ss / dim + eps));
}

/* dx for one row (accumulated); returns nothing, r given */
static void rms_row_dx(float *dx, const float *dy, const float *x, const float *w, int dim,
                       float r) {
    double dot = 0; /* Σ w⊙dy⊙x */
    for (int j = 0; j < dim; j++) dot += (double)w[j] * dy[j] * x[j];
    float c = (float)((double)r * r * r * dot / dim);
    for (int j = 0; j < dim; j++) dx[j] += r * w[j] * dy[j] - c * x[j];
}

void xd_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int n, int dim, float eps) {
    if (n <= 0 || (!dx && !dw)) return;
    enum { RB = 32 }; /* rows per piece of the dw reduction */
    int npiece = (n + RB - 1) / RB;
    float *part = dw ? calloc((size_t)npiece * dim, sizeof(float)) : NULL;
    if (dw && !part) {
        /* no memory for the per-piece partial sums: the same math, serially */
        for (int i = 0; i < n; i++) {
            const float *xi = x + (int64_t)i * dim, *dyi = dy + (int64_t)i * dim;
            float r = rms_r(xi, dim, eps);
            if (dx) rms_row_dx(dx + (int64_t)i * dim, dyi, xi, w, dim, r);
            for (int j = 0; j < dim; j++) dw[j] += dyi[j] * xi[j] * r;
        }
        return;
    }
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 16384)
    for (int p = 0; p < npiece; p++) {
        int i1 = (p + 1) * RB < n ? (p + 1) * RB : n;
        float *pp = part ? part + (size_t)p * dim : NULL;
        for (int i = p * RB; i < i1; i++) {
            const float *xi = x + (int64_t)i * dim, *dyi = dy + (int64_t)i * dim;
            float r = rms_r(xi, dim, eps);
            if (dx) rms_row_dx(dx + (int64_t)i * dim, dyi, xi, w, dim, r);
            if (pp)
                for (int j = 0; j < dim; j++) pp[j] += dyi[j] * xi[j] * r;
        }
    }
    if (dw) {
#pragma omp parallel for schedule(static) if ((int64_t)npiece * dim > 65536)
        for (int j = 0; j < dim; j++) {
            double acc = 0;
            for (int p = 0; p < npiece; p++) acc += part[(size_t)p * dim + j];
            dw[j] += (float)acc;
        }
        free(part);
    }
}

/* ---- RoPE with per-row positions -------------------------------------------
 * HF rotate_half layout: for i < hd/2 the pair (a, b) = (x_i, x_{i+hd/2}) is
 * rotated by θ = pos·inv_freq_i:
 *   forward   a' = a·cosθ − b·sinθ,   b' = b·cosθ + a·sinθ     (R(θ))
 *   backward  da = da'·cosθ + db'·sinθ, db = db'·cosθ − da'·sinθ  (R(θ)ᵀ = R(−θ))
 * The angle and the forward expressions are exactly those of xd_rope, so
 * pos = pos0 + t reproduces it bit for bit. */
static void rope_rows(float *x, int n, int n_heads, int hd, int stride, const int32_t *pos,
                      const float *inv_freq, int backward) {
    int half = hd / 2;
    enum { CH = 256 };
#pragma omp parallel for if (n > 16)
    for (int t = 0; t < n; t++) {
        float c[CH], s[CH];
        for (int i0 = 0; i0 < half; i0 += CH) {
            int i1 = i0 + CH < half ? i0 + CH : half;
            for (int i = i0; i < i1; i++) {
                float a = (float)pos[t] * inv_freq[i]; /* the angle in float32, as HF */
                c[i - i0] = cosf(a);
                s[i - i0] = sinf(a);
            }
            for (int h = 0; h < n_heads; h++) {
                float *v = x + (int64_t)t * stride + (int64_t)h * hd;
                if (!backward) {
                    for (int i = i0; i < i1; i++) {
                        float a = v[i], b = v[i + half];
                        v[i] = a * c[i - i0] - b * s[i - i0];
                        v[i + half] = b * c[i - i0] + a * s[i - i0];
                    }
                } else {
                    for (int i = i0; i < i1; i++) {
                        float a = v[i], b = v[i + half];
                        v[i] = a * c[i - i0] + b * s[i - i0];
                        v[i + half] = b * c[i - i0] - a * s[i - i0];
                    }
                }
            }
        }
    }
}

void xd_rope_pos(float *x, int n, int n_heads, int hd, int stride, const int32_t *pos,
                 const float *inv_freq) {
    rope_rows(x, n, n_heads, hd, stride, pos, inv_freq, 0);
}

void xd_rope_pos_backward(float *dx, int n, int n_heads, int hd, int stride, const int32_t *pos,
                          const float *inv_freq) {
    rope_rows(dx, n, n_heads, hd, stride, pos, inv_freq, 1);
}

/* ---- SwiGLU ----------------------------------------------------------------
 * h = silu(g)·u with silu(g) = g·σ(g), σ' = σ(1−σ):
 *   dg += dh · u · σ(g)·(1 + g·(1 − σ(g)))
 *   du += dh · g·σ(g) */
void xd_swiglu_forward(float *h, const float *g, const float *u, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * xd_sigmoid(g[i]) * u[i];
}

/* d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))). */
void xd_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                        int64_t n) {
    if (dg && du) {
#pragma omp parallel for simd if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            float sg = xd_sigmoid(g[i]);
            dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
            du[i] += dh[i] * g[i] * sg;
        }
    } else if (dg) {
#pragma omp parallel for simd if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            float sg = xd_sigmoid(g[i]);
            dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    } else if (du) {
#pragma omp parallel for simd if (n > 65536)
        for (int64_t i = 0; i < n; i++) du[i] += dh[i] * g[i] * xd_sigmoid(g[i]);
    }
}

/* ---- embedding -------------------------------------------------------------
 * x[i] = E[tok[i]]; dE[tok[i]] += dx[i]. A negative token (padding) gives a
 * zero row and no gradient. The backward is split over column chunks, so
 * repeated tokens never race and every dE entry sums its rows in order. */
void xd_embedding_forward(float *x, const float *E, const int32_t *tok, int n, int dim) {
#pragma omp parallel for if ((int64_t)n * dim > 65536)
    for (int i = 0; i < n; i++) {
        float *xi = x + (int64_t)i * dim;
        if (tok[i] < 0) memset(xi, 0, (size_t)dim * sizeof(float));
        else memcpy(xi, E + (int64_t)tok[i] * dim, (size_t)dim * sizeof(float));
    }
}

void xd_embedding_backward(float *dE, const float *dx, const int32_t *tok, int n, int dim) {
    if (!dE) return;
    enum { CB = 64 };
    int nchunk = (dim + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 65536)
    for (int c = 0; c < nchunk; c++) {
        int j0 = c * CB, j1 = j0 + CB < dim ? j0 + CB : dim;
        for (int i = 0; i < n; i++) {
            if (tok[i] < 0) continue;
            float *e = dE + (int64_t)tok[i] * dim;
            const float *d = dx + (int64_t)i * dim;
            for (int j = j0; j < j1; j++) e[j] += d[j];
        }
    }
}

/* ---- softmax cross-entropy ---------------------------------------------------
 * Per valid row with target y, m = max_j z_j (subtracted for stability):
 *   loss = log Σ_j exp(z_j − m) + m − z_y
 *   dz_j = scale · (exp(z_j − m)/Σ − [j = y])
 * Ignored rows (target < 0, or ≥ V, which would be out of range) get dz = 0.
 * dlogits may alias logits: z_y is read before the row is overwritten and
 * every other element is read before being written at the same index. */
double xd_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int n, int V,
                        float scale) {
    enum { NP = 64 }; /* fixed pieces: the loss sum does not depend on the thread count */
    double part[NP];
#pragma omp parallel for schedule(static) if (n > 1)
    for (int p = 0; p < NP; p++) {
        int64_t r0 = (int64_t)n * p / NP, r1 = (int64_t)n * (p + 1) / NP;
        double acc = 0;
        for (int64_t r = r0; r < r1; r++) {
            const float *z = logits + r * V;
            float *dz = dlogits + r * V;
            int y = targets[r];
            if (y < 0 || y >= V) {
                memset(dz, 0, (size_t)V * sizeof(float));
                continue;
            }
            float m = xd_max_of(z, V, z[0]);
            double zy = z[y];
            for (int j = 0; j < V; j++) dz[j] = xd_exp_le0(z[j] - m);
            double sum = xd_sum_d(dz, V);
            acc += log(sum) + m - zy;
            float k = (float)(scale / sum);
            for (int j = 0; j < V; j++) dz[j] *= k;
            dz[y] -= scale;
        }
        part[p] = acc;
    }
    double loss = 0;
    for (int p = 0; p < NP; p++) loss += part[p];
    return loss;
}
