/* The global-head list of a student's config (docs/design.md, "Global heads"):
 * its order and its checks, shared by the config reader and writer (io) and by
 * conversion and the head probe (model). */
#include <stdint.h>
#include <stdlib.h>

#include "../core/error.h"
#include "hfconfig.h"

static int cmp_head_ref(const void *a, const void *b) {
    const xd_head_ref *x = a, *y = b;
    return x->layer != y->layer ? (x->layer > y->layer) - (x->layer < y->layer)
                                : (x->head > y->head) - (x->head < y->head);
}

void xd_head_refs_sort(xd_head_ref *h, int n) {
    if (n > 1) qsort(h, (size_t)n, sizeof *h, cmp_head_ref);
}

int xd_global_heads_check(const xd_config *c, const char *src) {
    int n = c->n_global_heads;
    if (!n) return 0;
    if (!c->student)
        return xd_err("%s: global_heads: only a student has global heads (got %d)", src, n);
    if (n < 0 || n > XD_MAX_GLOBAL_HEADS)
        return xd_err("%s: global_heads: %d heads (expected at most %d)", src, n,
                      XD_MAX_GLOBAL_HEADS);
    if ((int64_t)n > (int64_t)c->n_layer * c->n_head)
        return xd_err("%s: global_heads: %d heads, more than the model has (%d layers x %d "
                      "heads)", src, n, c->n_layer, c->n_head);
    for (int i = 0; i < n; i++) {
        const xd_head_ref *h = &c->global_heads[i];
        if (h->layer < 0 || h->layer >= c->n_layer || h->head < 0 || h->head >= c->n_head)
            return xd_err("%s: global_heads[%d]: layer %d head %d is outside the model "
                          "(expected layer 0..%d, head 0..%d)", src, i, h->layer, h->head,
                          c->n_layer - 1, c->n_head - 1);
        if (i && cmp_head_ref(&c->global_heads[i - 1], h) >= 0)
            return xd_err("%s: global_heads[%d]: layer %d head %d %s (expected sorted by "
                          "layer, then head, each head once)", src, i, h->layer, h->head,
                          cmp_head_ref(&c->global_heads[i - 1], h) ? "is out of order"
                                                                   : "is given twice");
    }
    return 0;
}
