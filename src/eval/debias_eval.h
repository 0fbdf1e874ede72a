/* Evaluating a debiased classifier (docs/design.md, "Debiasing"): the encoder (a model
 * with the chosen diffs materialised) and the task head on a test split: task accuracy,
 * and per protected attribute the leakage (the balanced accuracy of a fresh post-hoc
 * attacker, train/attacker.h, trained on the train split's representations and scored on
 * the test split's; chance 1/K) and the TPR-GAP RMS of the task predictions
 * (eval/fairness.h), each with a percentile-bootstrap interval over the test examples (the
 * attacker fixed). */
#ifndef XD_DEBIAS_EVAL_H
#define XD_DEBIAS_EVAL_H

#include <stdint.h>

#include "model/clf_head.h"
#include "train/attacker.h"
#include "train/clf_data.h"

#define XD_DEBIAS_MAX_ATTR 8

typedef struct {
    double value, lo, hi;
} xd_ci;

typedef struct {
    int64_t n_test, n_train;
    xd_ci task_acc;
    int n_attr;
    struct {
        char field[64];
        int n_classes;
        xd_ci leakage, tpr_gap;
        xd_ci label_leakage; /* the balanced accuracy of the attribute guessed from the
                              * true label alone (eval/fairness.h): the leakage that
                              * encoding the label implies on this test split */
    } attr[XD_DEBIAS_MAX_ATTR];
    double encode_s, attack_s;
    /* what was evaluated (filled by the caller; the JSON carries them) */
    char task[512];          /* the task run's directory */
    char with[256];          /* the attribute diffs stacked, comma-separated ("" none) */
    char mode[16];           /* "diff" or "full" */
    int64_t nonzeros;        /* of the diffs applied (-1: none, full fine-tuning) */
    int64_t diff_bytes, dense_bytes;
} xd_debias_result;

typedef struct {
    xd_pool_mode pool;
    int batch;            /* rows per forward */
    xd_attack_opts attack;
    int attack_train_max; /* train examples the attacker reads (0: all) */
    int boot;             /* bootstrap resamples */
    double level;         /* interval level (0.95) */
    uint64_t seed;
} xd_debias_eval_opts;

void xd_debias_eval_defaults(xd_debias_eval_opts *o);

/* The pooled representations rep [n][d] of every example of data, and (head != NULL) the
 * head's predictions pred [n]; forward only, in batches. */
int xd_debias_encode(xd_model *m, const xd_clf_data *data, xd_pool_mode pool, int batch,
                     const xd_head *head, float *rep, int32_t *pred);

/* m: the encoder as it is (diffs applied by the caller); test's labels aligned to train's
 * classes (xd_labeled_align). */
int xd_debias_evaluate(xd_model *m, const xd_head *head, const xd_clf_data *train,
                       const xd_clf_data *test, const xd_debias_eval_opts *o,
                       xd_debias_result *res);

/* The result as JSON text (docs/debias.md, "Metrics"), malloc'ed; and read back from such
 * a file (errors name the file and the field). */
char *xd_debias_result_json(const xd_debias_result *r);
int xd_debias_result_load(const char *path, xd_debias_result *r);

/* A self-contained HTML page comparing n results (labels: their names): a table and bar
 * plots of task accuracy, leakage and TPR-GAP per attribute with their intervals. */
char *xd_debias_report_html(const xd_debias_result *r, const char *const *labels, int n);

#endif
