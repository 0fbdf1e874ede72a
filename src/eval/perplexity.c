/* Perplexity with HF's sliding-window convention: windows of ctx tokens start
 * every `stride` tokens; each window scores only the tokens the previous one
 * did not (never its first token, which has no context). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "xdistill.h"

double xd_token_nll(const float *logits, int V, int target) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}

int xd_perplexity(const xd_model *m, const int32_t *ids, size_t L, int ctx, int stride,
                  int verbose, double *nll_out, size_t *scored_out) {
    if (ctx < 2 || stride < 1 || stride > ctx)
        return xd_err("perplexity: need 2 <= ctx and 1 <= stride <= ctx (got ctx %d, stride %d)",
                      ctx, stride);
    if (L < 2) return xd_err("perplexity: needs at least 2 tokens, has %zu", L);
    int V = xd_model_config(m)->vocab_size;
    xd_kv *kv = xd_kv_create(m, ctx);
    float *logits = malloc((size_t)ctx * (size_t)V * sizeof(float));
    int rc = -1;
    double nll = 0;
    size_t scored = 0, prev_end = 0;
    double t0 = xd_now(), last_report = 0;
    verbose = verbose && xd_log_enabled();
    if (!kv || !logits) { if (kv) xd_err("perplexity: out of memory"); goto done; }
    for (size_t begin = 0; begin < L; begin += (size_t)stride) {
        size_t end = begin + (size_t)ctx < L ? begin + (size_t)ctx : L;
        size_t n = end - begin, fresh = end - prev_end;
        size_t j0 = n - fresh < 1 ? 1 : n - fresh;
        xd_kv_reset(kv);
        if (xd_forward(m, kv, ids + begin, (int)n, logits, 1)) goto done;
        for (size_t j = j0; j < n; j++) /* logits at j-1 predict token j */
            nll += xd_token_nll(logits + (j - 1) * (size_t)V, V, ids[begin + j]);
        scored += n - j0;
        prev_end = end;
        double now = xd_now();
        if (verbose && (end == L || now - last_report >= 0.1)) {
            /* one line without a bar, as the CLI has always shown it */
            char msg[128], detail[64];
            snprintf(detail, sizeof detail, "running ppl %.4f", exp(nll / (double)scored));
            snprintf(msg, sizeof msg, "ppl: %zu/%zu tokens, %s", end, L, detail);
            double el = now - t0;
            xd_progress_info p = {"ppl", (int64_t)end, (int64_t)L, 0, el,
                                  el * (double)(L - end) / (double)end, detail, msg, end == L};
            xd_log_progress(&p, msg);
            last_report = now;
        }
        if (end == L) break;
    }
    *nll_out = nll;
    *scored_out = scored;
    rc = 0;
done:
    free(logits);
    xd_kv_free(kv);
    return rc;
}
