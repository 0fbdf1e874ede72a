/* Token sampling: greedy, temperature, top-k, top-p (nucleus). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"
#include "xdistill.h"

/* [0, 1) from the top 24 bits of one xorshift64* step (core/rng.h) on the
 * caller's raw state (generate starts it at --seed); a zero state, which
 * xorshift could not leave, starts at 0x9E3779B97F4A7C15 instead. */
static float rng_uniform(uint64_t *s) {
    xd_rng r = {*s ? *s : 0x9E3779B97F4A7C15ull};
    uint64_t x = xd_rng_u64(&r);
    *s = r.s;
    return (float)(x >> 40) / (float)(1 << 24);
}

typedef struct {
    float p;
    int id;
} cand;

static int by_prob_desc(const void *a, const void *b) {
    float pa = ((const cand *)a)->p, pb = ((const cand *)b)->p;
    return pa < pb ? 1 : pa > pb ? -1 : ((const cand *)a)->id - ((const cand *)b)->id;
}

int xd_sample(const xd_sampler *s, float *logits, int vocab, uint64_t *rng) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i; /* first maximum, as torch.argmax */
    if (s->temperature <= 0) return best;
    cand *c = malloc((size_t)vocab * sizeof *c);
    if (!c) return xd_err("sample: out of memory");
    double sum = 0;
    for (int i = 0; i < vocab; i++) {
        c[i].id = i;
        c[i].p = expf((logits[i] - logits[best]) / s->temperature);
        sum += c[i].p;
    }
    qsort(c, (size_t)vocab, sizeof *c, by_prob_desc);
    int n = vocab;
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    double kept = 0;
    for (int i = 0; i < n; i++) kept += c[i].p;
    if (s->top_p > 0 && s->top_p < 1) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += c[i].p;
            if (acc >= s->top_p * kept) { n = i + 1; break; }
        }
        kept = acc < kept ? acc : kept;
    }
    (void)sum;
    double r = rng_uniform(rng) * kept, acc = 0;
    int id = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) { id = c[i].id; break; }
    }
    free(c);
    return id;
}
