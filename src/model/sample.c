/* Token sampling: greedy, temperature, top-k, top-p (nucleus). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "xdistill.h"

/* xorshift64* — small, fast and good enough for sampling. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) / (float)(1 << 24); }

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
