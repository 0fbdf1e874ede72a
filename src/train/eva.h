/* The math of EVA (explained-variance adaptation, HF PEFT's init_lora_weights="eva";
 * docs/design.md, "EVA (initialisation math)"): an incremental PCA of each adapted
 * layer's input, PEFT's convergence test, the rank redistribution with its alpha
 * rescaling, and a state file. Nothing here hooks a model or trains a LoRA.
 *
 * Incremental PCA (xd_ipca), as PEFT's utils/incremental_pca.py (a torch port of
 * sklearn's IncrementalPCA): the first batch is centred on its mean and decomposed;
 * every later one decomposes the stack
 *     [ S_prev[i] * components_prev[i]            (k rows)
 *       X - mean(X)                               (n rows)
 *       sqrt(n_seen / n_total * n) * (mean_prev - mean(X))   (1 row) ]
 * and keeps the first k right singular vectors (components, unit rows), singular
 * values S, explained variance S^2/(n_total-1) and ratio S^2 / sum(var * n_total),
 * var the running population variance per column (Chan's update, as PEFT). With
 * k = d (or data whose centred rank is <= k) nothing is truncated and the state equals
 * the full-data PCA of every row seen; with k < d it is PEFT's approximation.
 *
 * Differences from PEFT: PEFT runs torch.svd_lowrank (randomized, q = 2k, 4 power
 * iterations, seed 42), its first step in float32; here every step is an exact
 * eigen-decomposition in double (LAPACK dsyevr, the top k pairs), so components agree with PEFT's up to
 * the randomized method's error (|cos| >= 0.999 on the test fixture where explained
 * variances are separated; near-tied components may rotate within their span).
 * Signs follow PEFT's _svd_flip (u_based_decision=False): each component is multiplied
 * by the sign of its largest-|.| entry; on ties the first such entry (lowest index)
 * decides, as torch.argmax. Results do not depend on the thread count. */
#ifndef XD_EVA_H
#define XD_EVA_H

#include <stdint.h>

typedef struct {
    int d, k;            /* input features; components kept (1 <= k <= d) */
    int64_t n_seen;      /* rows seen */
    int steps;           /* updates done */
    double *mean;        /* [d] running mean */
    double *var;         /* [d] running population variance */
    double *components;  /* [k][d] unit rows, largest-|.| entry positive */
    double *singular;    /* [k] singular values (grow like sqrt(n_seen)) */
    double *explained_variance;       /* [k] S^2 / (n_seen - 1) */
    double *explained_variance_ratio; /* [k] S^2 / total centred sum of squares */
    double *prev;        /* [k][d] the components before the last update */
    double *cos;         /* [k] signed cosine of each component with the previous one;
                            valid from the second step (steps >= 2) */
} xd_ipca;

/* A state for inputs of d features keeping k components. NULL + error when d <= 0,
 * k <= 0 or k > d (PEFT raises for k > in_features). */
xd_ipca *xd_ipca_new(int d, int k);
void xd_ipca_free(xd_ipca *p);

/* Adds a minibatch X [n][width] (float rows, the layer input after masking: kept
 * tokens only). Errors: width != d, any non-finite value, n < 1, and n < k on the first
 * step (the first SVD is of the batch alone). On error the state is unchanged.
 * PEFT's SVDHook skips (for that layer) every batch with fewer than k rows, at any step;
 * a PEFT-compatible driver must skip those itself. From the second step on, smaller
 * batches are valid here (the stack still has k + n + 1 rows). */
int xd_ipca_update(xd_ipca *p, const float *X, int64_t n, int64_t width);

/* The top k right singular vectors (out [k][d], orthonormal rows) and singular
 * values (sv [k], descending) of M [m][d] in double, from the eigen-decomposition
 * of the smaller Gram matrix (MᵀM or MMᵀ); serial BLAS/LAPACK: call it on one
 * thread for results that do not depend on the thread count. */
int xd_top_right_singular(const double *M, int m, int d, int k, double *out, double *sv);

/* ---- convergence -------------------------------------------------------------------- */

/* cos[i] = <a_i, b_i> / (|a_i| |b_i|) for k rows of d (signed, as torch's
 * cosine_similarity; 0 when a row is zero). */
void xd_eva_cosines(const double *a, const double *b, int k, int d, double *cos);

enum { XD_EVA_RUNNING = 0, XD_EVA_CONVERGED = 1, XD_EVA_CAPPED = 2 };

/* A layer whose first n_assigned components are used (its current rank; PEFT checks
 * converged[:rank_dist[layer]]) is CONVERGED when n_assigned == 0 (an empty all() is
 * true in PEFT too), or when it has had >= 2 steps and every cos[i] >= tau for
 * i < n_assigned. Otherwise it is CAPPED when max_steps > 0 and steps >= max_steps
 * (PEFT has no cap and loops until convergence), else RUNNING. -1 + error when tau is
 * outside [0, 1] or n_assigned outside [0, k]. */
int xd_eva_check(const xd_ipca *p, int n_assigned, double tau, int max_steps);

/* ---- rank redistribution ------------------------------------------------------------ */

/* One target layer, in the model's module order (named_modules). */
typedef struct {
    const double *ratio; /* the explained-variance ratios of this layer's input, in component
                            order (descending); read only for owners */
    int n_ratio;         /* how many; must be >= the layer's cap */
    int r;               /* the configured rank (r, or its rank_pattern entry); > 0 */
    double alpha;        /* the configured alpha (lora_alpha or alpha_pattern) */
    int owner;           /* the first layer (lowest index) with the same input; itself if none */
} xd_eva_layer;

/* PEFT's _get_rank_distribution + _load_eva_state_dict's alpha:
 * - cap of a layer = rint(rho * r) (Python's round: halves to even), then the largest
 *   cap of its group of layers sharing an input;
 * - candidates: for every layer in PEFT's layer_hook_map order (owners in module order,
 *   then the other members of each group, groups by their owner's order, members in
 *   module order), its owner's ratio[0 .. cap) — a shared input appears once per layer;
 * - the budget sum(r) largest candidates are chosen, in the order of torch's CPU
 *   argsort(descending=True) (xd_eva_argsort_desc, ties included); rank = the number
 *   chosen per layer;
 * - then, for each non-owner in that order, if its owner's rank is below its own, the
 *   two are swapped (the owner ends with its group's largest rank; total unchanged);
 * - alpha_out = alpha * (rank / r) (PEFT: alpha *= new_rank / r; alpha when rank == r,
 *   0 when rank == 0, where PEFT removes the adapter).
 * rho > 1000 is not clamped here (PEFT clamps it to max_param_dim // r; the caller can).
 * Errors: n < 1, r <= 0, rho < 1 or not finite, a bad owner (out of range, or one that
 * is not its own owner, or after the layer), n_ratio below the cap, non-finite ratios. */
int xd_eva_rank_distribution(const xd_eva_layer *layers, int n, double rho, int *rank,
                             double *alpha_out);

/* torch.argsort(v, descending=True) as PyTorch computes it on the CPU (not stable:
 * libstdc++'s std::sort of (value, index) pairs), so exact ties come out in torch's
 * order; xd_eva_rank_distribution sorts its candidates this way. NaNs are not
 * expected. */
int xd_eva_argsort_desc(const double *v, int64_t n, int64_t *idx);

/* PEFT's _svd_flip on one row: multiplies it by the sign of its largest-|.| entry
 * (the first on ties); a zero row is left as is. */
void xd_eva_flip_sign(double *row, int d);

/* ---- state file ----------------------------------------------------------------------- */

/* Saves n layer states with their names (module paths; unique, non-empty) to a
 * .safetensors file (atomic write). Per layer "<name>.<field>" for mean, var, components,
 * singular, explained_variance, explained_variance_ratio, prev, cos and counts
 * ([position in the list, n_seen, steps]), every tensor F64; metadata {"format":
 * "xdistill-eva", "version": "2"}. A load gives back bit-identical states, in the saved
 * order. */
int xd_eva_save(const char *path, xd_ipca *const *layers, const char *const *names, int n);
/* Loads what xd_eva_save wrote: *layers and *names (n of each, malloc'd; free with
 * xd_eva_free_list). Errors name the file and the tensor. */
int xd_eva_load(const char *path, xd_ipca ***layers, char ***names, int *n);
void xd_eva_free_list(xd_ipca **layers, char **names, int n);

#endif
