/* Fairness metrics of a classifier's predictions (DiffPruning debiasing; docs/design.md,
 * "Debiasing"). Each takes the examples idx [n] (NULL: 0..n−1; repeats allowed, for the
 * bootstrap) of arrays indexed by example.
 *  - accuracy: the share of pred == y;
 *  - balanced accuracy: the mean over the classes present of their recall (chance 1/K: a
 *    post-hoc attacker's leakage of a protected attribute);
 *  - TPR-GAP RMS (De-Arteaga et al. 2019, as in Ravfogel et al. 2020): for each class y,
 *    TPR_{y,a} = P(pred = y | y, a) for each attribute value a with examples of y; the
 *    class's gap is max_a − min_a (|TPR_{y,a1} − TPR_{y,a2}| for two values); the RMS over
 *    the classes with examples in two or more attribute values.
 * And the leakage the task label alone implies: a protected attribute guessed from the
 * true label (the attribute value most frequent with that label in a reference split),
 * whose balanced accuracy is what any representation that encodes the label leaks
 * when the attribute is correlated with it. */
#ifndef XD_FAIRNESS_H
#define XD_FAIRNESS_H

#include <stdint.h>

double xd_accuracy(const int32_t *pred, const int32_t *y, const int *idx, int n);
double xd_balanced_accuracy(const int32_t *pred, const int32_t *y, int K, const int *idx, int n);
double xd_tpr_gap_rms(const int32_t *pred, const int32_t *y, int C, const int32_t *a, int A,
                      const int *idx, int n);
/* pred[i] for the n examples of labels y: the value of the attribute most frequent with
 * label y[i] among the m reference examples (ref_y, ref_a); ties and unseen labels go to
 * the lowest value. C labels, A attribute values. -1 when out of memory. */
int xd_label_implied(const int32_t *ref_y, const int32_t *ref_a, int m, int C, int A,
                     const int32_t *y, int n, int32_t *pred);

#endif
