/* Per-example scoring: choice log-likelihoods, greedy generation, windowed
 * perplexity (the token rules are in scoring.h). */
#include "eval/scoring.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { LOGIT_ROWS = 256 }; /* positions whose logits one forward call returns */

struct xd_scorer {
    const xd_model *m;
    const xd_tokenizer *t;
    xd_eval_settings st;
    int V;      /* logits per position */
    int n_gen;  /* ids greedy decoding may pick: min(V, tokenizer size) */
    int student;
    int bos_id, eos_id;
    xd_kv *kv;
    int kv_cap;
    /* the state after the last choice context (choices of one example share it) */
    xd_kv *ctx_kv;
    int ctx_cap;
    int32_t *ctx_ids;
    int ctx_n; /* tokens in ctx_kv; 0: none */
    float *logits; /* LOGIT_ROWS × V */
    double row_nll[LOGIT_ROWS];
    int32_t *head, *tail; /* ChatML wrapper ids */
    size_t n_head, n_tail;
};

void xd_eval_settings_default(xd_eval_settings *st, const xd_model *m) {
    const xd_tokenizer *t = xd_model_tokenizer(m);
    st->bos = t && xd_tokenizer_bos(t) >= 0;
    st->chat = 0;
    st->fewshot = 0;
    st->max_ctx = xd_model_config(m)->max_ctx;
    if (st->max_ctx < 2) st->max_ctx = 2;
    st->stride = st->max_ctx / 2 > 0 ? st->max_ctx / 2 : 1;
}

void xd_scorer_free(xd_scorer *s) {
    if (!s) return;
    xd_kv_free(s->kv);
    xd_kv_free(s->ctx_kv);
    free(s->ctx_ids);
    free(s->logits);
    free(s->head);
    free(s->tail);
    free(s);
}

static int has_piece(const xd_tokenizer *t, const int32_t *ids, size_t n, const char *piece) {
    for (size_t i = 0; i < n; i++) {
        const char *p = xd_tokenizer_piece(t, ids[i]);
        if (p && !strcmp(p, piece)) return 1;
    }
    return 0;
}

xd_scorer *xd_scorer_create(const xd_model *m, const xd_eval_settings *st) {
    const xd_tokenizer *t = xd_model_tokenizer(m);
    if (!t) { xd_err("eval: the model has no tokenizer"); return NULL; }
    if (st->max_ctx < 2 || st->stride < 1 || st->stride > st->max_ctx || st->fewshot < 0) {
        xd_err("eval: settings need max_ctx >= 2, 1 <= stride <= max_ctx and fewshot >= 0 "
               "(max_ctx %d, stride %d, fewshot %d)", st->max_ctx, st->stride, st->fewshot);
        return NULL;
    }
    if (st->bos && xd_tokenizer_bos(t) < 0) {
        xd_err("eval: BOS requested but the tokenizer has no BOS token (use --no-bos)");
        return NULL;
    }
    xd_scorer *s = calloc(1, sizeof *s);
    if (!s) { xd_err("eval: out of memory"); return NULL; }
    s->m = m;
    s->t = t;
    s->st = *st;
    s->V = xd_model_config(m)->vocab_size;
    s->n_gen = xd_tokenizer_n_tokens(t) < s->V ? xd_tokenizer_n_tokens(t) : s->V;
    s->student = xd_model_config(m)->student;
    s->bos_id = xd_tokenizer_bos(t);
    s->eos_id = xd_tokenizer_eos(t);
    if (!(s->logits = malloc((size_t)LOGIT_ROWS * (size_t)s->V * sizeof(float)))) {
        xd_err("eval: out of memory");
        goto fail;
    }
    if (st->chat) {
        static const char head[] = "<|im_start|>user\n", tail[] = "<|im_end|>\n<|im_start|>assistant\n";
        if (xd_tokenizer_encode(t, head, strlen(head), 1, &s->head, &s->n_head) ||
            xd_tokenizer_encode(t, tail, strlen(tail), 1, &s->tail, &s->n_tail))
            goto fail;
        if (!s->n_head || !has_piece(t, s->head, 1, "<|im_start|>") ||
            !has_piece(t, s->tail, s->n_tail, "<|im_end|>")) {
            xd_err("eval: --chat: the tokenizer has no ChatML tokens <|im_start|> / <|im_end|>");
            goto fail;
        }
    }
    return s;
fail:
    xd_scorer_free(s);
    return NULL;
}

/* A fresh cache for `need` positions (reused when big enough). */
static int kv_fresh(xd_scorer *s, int need) {
    if (s->kv && (s->student || s->kv_cap >= need)) {
        xd_kv_reset(s->kv);
        return 0;
    }
    xd_kv_free(s->kv);
    int cap = s->student ? 1 : (need + 255) / 256 * 256;
    if (!s->student && cap > s->st.max_ctx && need <= s->st.max_ctx) cap = s->st.max_ctx;
    s->kv = xd_kv_create(s->m, cap);
    s->kv_cap = s->kv ? cap : 0;
    return s->kv ? 0 : -1;
}

/* s->kv (fresh, room for `need` positions) gets the state after ids[0..np).
 * With share, the state is kept in s->ctx_kv and the next call with the
 * same np ids copies it instead of running them again: the same forward
 * calls in the same order, so the same numbers bit for bit. */
static int prefix_state(xd_scorer *s, const int32_t *ids, int np, int need, int share) {
    if (kv_fresh(s, need)) return -1;
    if (np == 0) return 0;
    if (share && s->ctx_n == np && !memcmp(s->ctx_ids, ids, (size_t)np * sizeof *ids))
        return xd_kv_copy(s->kv, s->ctx_kv);
    if (xd_forward(s->m, s->kv, ids, np, NULL, 0)) return -1;
    if (!share) return 0;
    s->ctx_n = 0;
    if (!s->ctx_kv || (!s->student && s->ctx_cap < np)) {
        xd_kv_free(s->ctx_kv);
        s->ctx_cap = s->student ? 1 : s->kv_cap;
        if (!(s->ctx_kv = xd_kv_create(s->m, s->ctx_cap))) return -1;
    }
    int32_t *ci = realloc(s->ctx_ids, (size_t)np * sizeof *ci);
    if (!ci) return xd_err("eval: out of memory");
    s->ctx_ids = ci;
    if (xd_kv_copy(s->ctx_kv, s->kv)) return -1;
    memcpy(s->ctx_ids, ids, (size_t)np * sizeof *ids);
    s->ctx_n = np;
    return 0;
}

/* Runs ids[0..n−1) through a fresh cache and returns in *nll the sum of
 * −log p(ids[j] | ids[<j]) over j in [first, n), 1 <= first < n. With share,
 * the state after ids[0..first−1) is reused across calls (prefix_state). */
static int nll_range(xd_scorer *s, const int32_t *ids, int n, int first, int share, double *nll) {
    if (first < 1 || first >= n) return xd_err("eval: internal: bad scoring range %d of %d", first, n);
    if (prefix_state(s, ids, first - 1, n - 1, share)) return -1;
    double sum = 0;
    for (int p = first - 1; p < n - 1;) {
        int rows = n - 1 - p < LOGIT_ROWS ? n - 1 - p : LOGIT_ROWS;
        if (xd_forward(s->m, s->kv, ids + p, rows, s->logits, 1)) return -1;
        /* rows in parallel, summed in row order: the same total from the same
         * logits for any thread count (the logits come from the model's
         * threaded sgemms, which may round differently for another count) */
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            s->row_nll[r] = xd_token_nll(s->logits + (size_t)r * (size_t)s->V, s->V, ids[p + r + 1]);
        for (int r = 0; r < rows; r++) sum += s->row_nll[r];
        p += rows;
    }
    *nll = sum;
    return 0;
}

/* ---- token sequences -------------------------------------------------------- */

typedef struct {
    int32_t *ids;
    size_t n, cap;
} ids_buf;

static int push(ids_buf *b, const int32_t *ids, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n) nc *= 2;
        int32_t *ni = realloc(b->ids, nc * sizeof *ni);
        if (!ni) return xd_err("eval: out of memory");
        b->ids = ni;
        b->cap = nc;
    }
    if (n) memcpy(b->ids + b->n, ids, n * sizeof *ids);
    b->n += n;
    return 0;
}

static int push_text(const xd_scorer *s, ids_buf *b, const char *text, size_t len) {
    int32_t *ids;
    size_t n;
    if (xd_tokenizer_encode(s->t, text, len, 0, &ids, &n)) return -1;
    int rc = push(b, ids, n);
    free(ids);
    return rc;
}

/* [BOS] (+ ChatML head) + text (+ ChatML tail) */
static int push_prompt(const xd_scorer *s, ids_buf *b, const char *text) {
    int32_t bos = s->bos_id;
    if (s->st.bos && push(b, &bos, 1)) return -1;
    if (s->st.chat && push(b, s->head, s->n_head)) return -1;
    if (push_text(s, b, text, strlen(text))) return -1;
    if (s->st.chat && push(b, s->tail, s->n_tail)) return -1;
    return 0;
}

/* Drops the oldest tokens after BOS until b has at most keep tokens;
 * *first (an index into b) moves with them. */
static void cut_left(const xd_scorer *s, ids_buf *b, size_t keep, int *first) {
    if (b->n <= keep) return;
    size_t drop = b->n - keep, at = s->st.bos ? 1 : 0;
    memmove(b->ids + at, b->ids + at + drop, (b->n - at - drop) * sizeof *b->ids);
    b->n = keep;
    if (first) *first -= (int)drop;
}

/* ---- choice ------------------------------------------------------------------ */

int xd_score_choices(xd_scorer *s, const char *context, const char *const *choices, int n,
                     double *loglik, int *n_tok, int *truncated) {
    int32_t *cids = NULL;
    size_t n_c = 0, clen = strlen(context);
    char *joint = NULL;
    ids_buf b = {0};
    int rc = -1;
    *truncated = 0;
    if (!s->st.chat && xd_tokenizer_encode(s->t, context, clen, 0, &cids, &n_c)) goto done;
    for (int i = 0; i < n; i++) {
        b.n = 0;
        int first;
        if (s->st.chat) {
            if (push_prompt(s, &b, context)) goto done;
            first = (int)b.n;
            if (push_text(s, &b, choices[i], strlen(choices[i]))) goto done;
        } else {
            size_t chl = strlen(choices[i]);
            char *nj = realloc(joint, clen + chl + 1);
            if (!nj) { xd_err("eval: out of memory"); goto done; }
            joint = nj;
            memcpy(joint, context, clen);
            memcpy(joint + clen, choices[i], chl + 1);
            int32_t bos = s->bos_id;
            if (s->st.bos && push(&b, &bos, 1)) goto done;
            size_t at = b.n;
            if (push_text(s, &b, joint, clen + chl)) goto done;
            size_t k = 0; /* longest common prefix of encode(context + choice) and encode(context) */
            while (k < n_c && at + k < b.n && b.ids[at + k] == cids[k]) k++;
            first = (int)(at + k);
        }
        int m = (int)b.n - first; /* choice tokens */
        if (m < 1) { xd_err("choice %d (\"%s\") encodes to no tokens", i, choices[i]); goto done; }
        if (first < 1) {
            xd_err("the context is empty and BOS is off: choice %d's first token has nothing "
                   "to be scored on", i);
            goto done;
        }
        if (b.n > (size_t)s->st.max_ctx) {
            if (m + 1 > s->st.max_ctx) {
                xd_err("choice %d has %d tokens; with one context token that exceeds max_ctx %d",
                       i, m, s->st.max_ctx);
                goto done;
            }
            cut_left(s, &b, (size_t)s->st.max_ctx, &first);
            *truncated = 1;
        }
        double nll;
        if (nll_range(s, b.ids, (int)b.n, first, 1, &nll)) goto done;
        loglik[i] = -nll;
        if (n_tok) n_tok[i] = m;
    }
    rc = 0;
done:
    free(cids);
    free(joint);
    free(b.ids);
    return rc;
}

/* ---- generation -------------------------------------------------------------- */

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int xd_score_generate(xd_scorer *s, const char *prompt, int max_tokens,
                      const char *const *stop, int n_stop, char **output, int *truncated) {
    ids_buf b = {0};
    char *out = NULL;
    size_t n_out = 0, cap = 0;
    int rc = -1;
    *output = NULL;
    *truncated = 0;
    if (max_tokens < 1 || max_tokens >= s->st.max_ctx) {
        xd_err("max_tokens %d must be in [1, max_ctx %d) to leave room for the prompt", max_tokens,
               s->st.max_ctx);
        goto done;
    }
    if (push_prompt(s, &b, prompt)) goto done;
    if (!b.n) { xd_err("the prompt is empty and BOS is off: nothing to generate from"); goto done; }
    size_t keep = (size_t)(s->st.max_ctx - max_tokens + 1);
    if (b.n > keep) {
        cut_left(s, &b, keep, NULL);
        *truncated = 1;
    }
    if (kv_fresh(s, (int)b.n + max_tokens - 1) ||
        xd_forward(s->m, s->kv, b.ids, (int)b.n, s->logits, 0))
        goto done;
    for (int k = 0; k < max_tokens; k++) {
        int32_t next = argmax(s->logits, s->n_gen);
        if (next == s->eos_id) break;
        char piece[512];
        int len = xd_tokenizer_token_bytes(s->t, next, piece, sizeof piece);
        if (len < 0) goto done;
        if (n_out + (size_t)len + 1 > cap) {
            size_t nc = cap ? 2 * cap : 256;
            while (nc < n_out + (size_t)len + 1) nc *= 2;
            char *no = realloc(out, nc);
            if (!no) { xd_err("eval: out of memory"); goto done; }
            out = no;
            cap = nc;
        }
        memcpy(out + n_out, piece, (size_t)len);
        n_out += (size_t)len;
        int stopped = 0;
        for (int i = 0; i < n_stop; i++) {
            const char *hit = memmem(out, n_out, stop[i], strlen(stop[i]));
            if (hit) { n_out = (size_t)(hit - out); stopped = 1; }
        }
        if (stopped) break;
        if (k + 1 < max_tokens && xd_forward(s->m, s->kv, &next, 1, s->logits, 0)) goto done;
    }
    if (!out && !(out = malloc(1))) { xd_err("eval: out of memory"); goto done; }
    out[n_out] = 0;
    *output = out;
    out = NULL;
    rc = 0;
done:
    free(out);
    free(b.ids);
    return rc;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int xd_output_matches(const char *output, const char *target, xd_match match) {
    if (match == XD_MATCH_CONTAINS) return strstr(output, target) != NULL;
    /* exact: the output's first line (after leading white space), trimmed —
     * a model that answers and then goes on to the next line still matches */
    while (*output && is_space(*output)) output++;
    size_t a = strcspn(output, "\n"), b = strlen(target);
    while (a && is_space(output[a - 1])) a--;
    while (b && is_space(target[b - 1])) b--;
    while (a && is_space(*output)) output++, a--;
    while (b && is_space(*target)) target++, b--;
    return a == b && !memcmp(output, target, a);
}

/* ---- perplexity -------------------------------------------------------------- */

int xd_score_text(xd_scorer *s, const char *text, double *nll_out, int64_t *n_tokens, int *windowed) {
    ids_buf b = {0};
    int32_t bos = s->bos_id;
    int rc = -1;
    *windowed = 0;
    if ((s->st.bos && push(&b, &bos, 1)) || push_text(s, &b, text, strlen(text))) goto done;
    if (b.n < 2) { xd_err("the text has %zu token(s); needs at least 2", b.n); goto done; }
    size_t L = b.n, ctx = (size_t)s->st.max_ctx, stride = (size_t)s->st.stride, prev_end = 0;
    double nll = 0;
    int64_t scored = 0;
    for (size_t begin = 0; begin < L; begin += stride) {
        size_t end = begin + ctx < L ? begin + ctx : L;
        size_t n = end - begin, fresh = end - prev_end;
        size_t j0 = n - fresh < 1 ? 1 : n - fresh;
        double w = 0;
        if (j0 < n && nll_range(s, b.ids + begin, (int)n, (int)j0, 0, &w)) goto done;
        if (j0 < n) scored += (int64_t)(n - j0);
        nll += w;
        prev_end = end;
        if (end == L) break;
        *windowed = 1;
    }
    *nll_out = nll;
    *n_tokens = scored;
    rc = 0;
done:
    free(b.ids);
    return rc;
}
