/* Labelled data for classification (DiffPruning debiasing; docs/data.md, "Labelled data"):
 * JSONL records with a text field, a label field and protected-attribute fields. A label
 * or attribute value is a string or an integer (read as its decimal text); a field's
 * classes are its distinct values in sorted (strcmp) order, so two files with the same
 * values number them alike. Errors name the file, the line and the field. */
#ifndef XD_LABELED_H
#define XD_LABELED_H

#include <stdint.h>

#include "swap_list.h"

typedef struct {
    char *field;      /* the JSONL field */
    int n_classes;
    char **classes;   /* sorted */
    int32_t *id;      /* [n records]: index into classes */
} xd_label_column;

typedef struct {
    char *path;
    int64_t n;               /* records */
    char **text;             /* [n] */
    char **pair_text;        /* [n] each record's counterfactual text (NULL: not loaded) */
    char *pair_source;       /* where they came from: field "F", or swaps of FILE */
    unsigned long *line;     /* [n] the line each record came from */
    xd_label_column label;
    int n_attr;
    xd_label_column *attr;   /* [n_attr] */
} xd_labeled;

/* Reads path; every record must have a non-empty string text_field and a label_field and
 * each attribute field holding a string or an integer. At least 2 label classes. -1 with an
 * error naming the file, the line and the field. */
int xd_labeled_load(const char *path, const char *text_field, const char *label_field,
                    const char *const *attr_fields, int n_attr, xd_labeled *out);
void xd_labeled_free(xd_labeled *d);

/* xd_labeled_load, and in the same pass each record's counterfactual text (pair_text): the
 * same text with the cues of a protected attribute swapped (names, pronouns), a non-empty
 * string in pair_field on every record (pair_field NULL: none, as xd_labeled_load). -1 with
 * an error naming the file, the line and the field. */
int xd_labeled_load_pairs(const char *path, const char *text_field, const char *pair_field,
                          const char *label_field, const char *const *attr_fields, int n_attr,
                          xd_labeled *out);

/* The counterfactual texts made from the texts by a word swap list (io/swap_list.h).
 * *n_changed (may be NULL): the records whose text had a word to swap. */
int xd_labeled_swap_pairs(xd_labeled *d, const xd_swap_list *s, int64_t *n_changed);

/* Renumbers other's label and attributes with train's classes (train must have the same
 * attribute fields). A value that train lacks is an error naming other's file, line and
 * field and saying that the class has no examples in the training split. */
int xd_labeled_align(const xd_labeled *train, xd_labeled *other);

#endif
