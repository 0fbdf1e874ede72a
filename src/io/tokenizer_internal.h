/* Read access to a tokenizer's contents beyond the public API, for the
 * tokenizer.json writer (tokenizer_write.c). Implemented in tokenizer.c. */
#ifndef XD_TOKENIZER_INTERNAL_H
#define XD_TOKENIZER_INTERNAL_H

#include <stdint.h>

#include "xdistill.h"

/* XD_TOKEN_* of token id, or -1 when id is out of range. */
int xd_tokenizer_token_type(const xd_tokenizer *t, int32_t id);
/* Whether the model wants a BOS token in front (tokenizer.ggml.add_bos_token
 * / add_bos_token); encode itself never adds one. */
int xd_tokenizer_add_bos(const xd_tokenizer *t);

/* One BPE merge as the tokenizer holds it: the two parts (pointers into the
 * tokenizer, valid while it lives) and the rank (index of its line in the
 * merge list it was built from). */
typedef struct {
    int32_t rank;
    const char *left, *right;
} xd_tok_merge;

/* Every distinct merge (a pair listed twice keeps its first rank; lines
 * without a separating space are not merges), in no particular order.
 * *out is malloc'ed; the caller frees it. */
int xd_tokenizer_merges(const xd_tokenizer *t, xd_tok_merge **out, int *n);

#endif
