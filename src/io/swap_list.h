/* Word swap lists for counterfactual texts (counterfactual data augmentation, Lu et al.
 * 2020; Webster et al. 2020): a text told of the other gender is the text with each listed
 * word replaced (he → she, his → her, Mr → Ms, a first name → a name of the other gender).
 *
 * The file: one swap a line, "FROM TO" (two words separated by spaces or a tab); blank lines
 * and lines starting with '#' are skipped. A swap goes one way: a symmetric pair takes two
 * lines, and an ambiguous word picks one (her → his). A word is a run of ASCII letters or
 * bytes >= 0x80 (UTF-8 letters): "Sonya's" is the word "Sonya", then "'s". */
#ifndef XD_SWAP_LIST_H
#define XD_SWAP_LIST_H

#include <stdint.h>

typedef struct {
    char *path;
    int64_t n;
    char **from, **to; /* [n], sorted by from (strcmp) */
} xd_swap_list;

/* -1 with an error naming the file and the line: a line without exactly two words, a word
 * with other characters than letters, the same FROM twice; also a missing or empty file. */
int xd_swap_list_load(const char *path, xd_swap_list *s);
void xd_swap_list_free(xd_swap_list *s);

/* text with every listed word swapped (malloc'd; NULL on out of memory). A word is looked up
 * as written, then in lower case; in the second case the replacement takes the word's case
 * (first letter capital: "She" → "He"; every letter capital, two or more: "HE" → "SHE").
 * *n_swapped (may be NULL): the words replaced. */
char *xd_swap_apply(const xd_swap_list *s, const char *text, int *n_swapped);

#endif
