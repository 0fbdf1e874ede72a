/* Unigram baselines of a token file: what a model that ignores context can
 * reach, the yardstick a trained LM must beat. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "tokdata.h"

int xd_tokdata_unigram(const xd_tokdata *d, double *h_train, double *ce_val) {
    const xd_tokdata_header *h = xd_tokdata_header_of(d);
    uint64_t *cnt = calloc(h->vocab_size, sizeof *cnt);
    if (!cnt) return xd_err("out of memory");
    uint64_t b = xd_tokdata_split_begin(d, XD_SPLIT_TRAIN), n = xd_tokdata_split_tokens(d, XD_SPLIT_TRAIN);
    for (uint64_t i = 0; i < n; i++) cnt[xd_tokdata_token(d, b + i)]++;
    /* entropy of the train split's unigram distribution: −Σ p log p */
    double H = 0;
    for (uint32_t v = 0; v < h->vocab_size; v++)
        if (cnt[v]) {
            double p = (double)cnt[v] / (double)n;
            H -= p * log(p);
        }
    /* validation cross-entropy under the train unigram model, add-one smoothed
     * so unseen tokens have a finite cost */
    uint64_t vb = xd_tokdata_split_begin(d, XD_SPLIT_VAL), vn = xd_tokdata_split_tokens(d, XD_SPLIT_VAL);
    double ce = 0, denom = (double)n + h->vocab_size;
    for (uint64_t i = 0; i < vn; i++) ce -= log(((double)cnt[xd_tokdata_token(d, vb + i)] + 1) / denom);
    free(cnt);
    *h_train = H;
    *ce_val = vn ? ce / (double)vn : NAN;
    return 0;
}
