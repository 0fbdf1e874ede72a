/* Synthetic probes (generate tasks): pass key retrieval at 0.5, 2 and 8
 * times the window, multi-query associative recall, delayed copy and
 * addition. Every number and word comes from the task's RNG; lengths are in
 * approximate tokens (xd_tg_approx_tokens). In the long variants the fact to
 * retrieve lies at least xd_tg_far_gap(W) = 1.5 W tokens before the end of the
 * prompt, beyond a sliding window of W. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/taskgen_int.h"

static const char *const WORDS[] = {
    "apple",  "arrow",  "baker",  "basket", "beach",  "bell",   "berry",  "bird",     "blanket",
    "boat",   "bone",   "book",   "bottle", "box",    "bread",  "brick",  "bridge",   "brush",
    "bucket", "cabin",  "cake",   "camel",  "candle", "car",    "card",   "carpet",   "castle",
    "cat",    "chain",  "chair",  "cheese", "cherry", "chest",  "circle", "city",     "clock",
    "cloud",  "coat",   "coin",   "corn",   "cow",    "crown",  "cup",    "desk",     "dog",
    "door",   "dragon", "drum",   "duck",   "eagle",  "egg",    "engine", "farm",     "feather",
    "fence",  "field",  "fish",   "flag",   "flower", "forest", "fork",   "fox",      "frog",
    "garden", "gate",   "ghost",  "glass",  "glove",  "goat",   "gold",   "grape",    "hammer",
    "hat",    "hill",   "honey",  "horse",  "house",  "island", "jacket", "jar",      "kettle",
    "key",    "king",   "kite",   "knife",  "ladder", "lake",   "lamp",   "leaf",     "lemon",
    "lion",   "lock",   "map",    "market", "mirror", "monkey", "moon",   "mountain", "mouse",
    "nail",   "needle", "nest",   "oak",    "ocean",  "onion",  "orange", "owl",      "paper",
    "parrot", "pearl",  "pencil", "pepper", "piano",  "pillow", "pipe",   "planet",   "plate",
    "pocket", "potato", "queen",  "rabbit", "rain",   "ring",   "river",  "road",     "robot",
    "rock",   "rope",   "rose",   "sail",   "salt",   "sand",   "ship",   "shoe",     "silver",
    "snake",  "sock",   "spoon",  "star",   "stone",  "storm",  "sugar",  "table",    "tent",
    "tiger",  "tower",  "train",  "tree",   "truck",  "violin", "wagon",  "wall",     "whale",
    "wheel",  "window", "wolf",   "wool",   "zebra",
};
#define N_WORDS (sizeof WORDS / sizeof *WORDS)

/* The classic pass key filler, one sentence at a time. */
static const char *const FILL[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.",
                                   "Here we go.", "There and back again."};
#define N_FILL (sizeof FILL / sizeof *FILL)

/* Bytes of filler sentence i. */
static size_t fill_len(size_t i) { return strlen(FILL[i % N_FILL]); }

/* Tokens of n bytes without digits. */
static size_t toks(size_t n) { return (n + 3) / 4; }

/* Appends filler sentences [from, to) of the cycle, each after a space
 * unless the buffer is empty or ends a line. */
static int add_fill(xd_sbuf *b, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) {
        if (b->n && b->s[b->n - 1] != '\n' && xd_sb_add(b, " ", 1)) return -1;
        if (xd_sb_puts(b, FILL[i % N_FILL])) return -1;
    }
    return 0;
}

/* The number of filler sentences (from `start` of the cycle, joined by
 * spaces) that, followed by `extra` more bytes, make at least `tokens`. */
static size_t fill_for(size_t start, size_t extra, size_t tokens) {
    size_t n = 0, bytes = extra;
    while (toks(bytes) < tokens) {
        bytes += fill_len(start + n) + (n > 0);
        n++;
    }
    return n;
}

/* ---- pass key ------------------------------------------------------------------ */

/* The prompt is the sentences fill[0..j), KEY, fill[j..F), Q joined by
 * spaces; its length is at most num/den W tokens (or the minimum: KEY and Q),
 * and in the long variants the text after KEY has at least 1.5 W tokens. */
static int gen_passkey(const tg_ctx *c, xd_rng *r, tg_task *t, int num, int den) {
    size_t budget = (size_t)c->window * (size_t)num / (size_t)den;
    size_t need_after = num > den ? (size_t)xd_tg_far_gap(c->window) : 0;
    static const char Q[] = "What is the pass key? The pass key is";
    xd_sbuf p = {0}, key_s = {0}, target = {0};
    size_t *ok = NULL;
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        unsigned key = 10000u + (unsigned)xd_rng_below(r, 90000);
        xd_sb_clear(&key_s);
        xd_sb_clear(&target);
        if ((rc = xd_sb_printf(&key_s, "The pass key is %u. Remember it.", key)) ||
            (rc = xd_sb_printf(&target, "%u", key)))
            break;
        size_t key_other = key_s.n - 5, q_bytes = 1 + strlen(Q); /* " " + Q */
        size_t n_fill = 0, fill_bytes = 0;                       /* with a space each */
        while (5 + toks(key_other + fill_bytes + fill_len(n_fill) + 1 + q_bytes) <= budget)
            fill_bytes += fill_len(n_fill++) + 1;
        size_t after = fill_bytes + q_bytes; /* bytes after KEY when j = 0 */
        while (toks(after) < need_after) after += fill_len(n_fill++) + 1;
        free(ok);
        if (!(ok = malloc((n_fill + 1) * sizeof *ok))) {
            rc = xd_err("out of memory");
            break;
        }
        size_t n_ok = 0;
        for (size_t j = 0; j <= n_fill; j++) {
            if (toks(after) >= need_after) ok[n_ok++] = j;
            if (j < n_fill) after -= fill_len(j) + 1;
        }
        size_t j = ok[xd_rng_below(r, n_ok)];
        xd_sb_clear(&p);
        rc = add_fill(&p, 0, j);
        if (!rc && p.n) rc = xd_sb_add(&p, " ", 1);
        if (!rc) rc = xd_sb_puts(&p, key_s.s);
        if (!rc) rc = add_fill(&p, j, n_fill);
        if (!rc) rc = xd_sb_printf(&p, " %s", Q);
        if (!rc) rc = xd_tg_emit_generate(t, p.s, target.s, 8, "contains");
    }
    free(ok);
    xd_sb_free(&p);
    xd_sb_free(&key_s);
    xd_sb_free(&target);
    return rc;
}

int xd_tg_gen_passkey_half(const tg_ctx *c, xd_rng *r, tg_task *t) {
    return gen_passkey(c, r, t, 1, 2);
}
int xd_tg_gen_passkey_2w(const tg_ctx *c, xd_rng *r, tg_task *t) { return gen_passkey(c, r, t, 2, 1); }
int xd_tg_gen_passkey_8w(const tg_ctx *c, xd_rng *r, tg_task *t) { return gen_passkey(c, r, t, 8, 1); }

/* ---- multi-query associative recall ---------------------------------------------- */

#define RECALL_ANSWERED 3
#define RECALL_MAX_PAIRS 64

/* Distinct words: the first k of a shuffled list. */
static void pick_words(xd_rng *r, size_t *w, size_t k) {
    size_t all[N_WORDS];
    for (size_t i = 0; i < N_WORDS; i++) all[i] = i;
    xd_tg_shuffle(r, all, N_WORDS);
    memcpy(w, all, k * sizeof *w);
}

static tg_len len_sum(tg_len a, tg_len b) {
    return (tg_len){a.digits + b.digits, a.other + b.other};
}

/* HEAD, the pairs "word: 123" (spanning 2 W tokens, 8 at least), filler if
 * needed, ASK, 3 answered queries, then the asked word; the asked pair ends
 * at least 1.5 W tokens before the asked word. */
int xd_tg_gen_recall(const tg_ctx *c, xd_rng *r, tg_task *t) {
    static const char HEAD[] = "Remember the number that goes with each word.\n";
    static const char ASK[] = "Now the words again, with their numbers.\n";
    size_t gap = (size_t)xd_tg_far_gap(c->window);
    xd_sbuf p = {0}, line = {0}, target = {0};
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        size_t w[RECALL_MAX_PAIRS], k = 0;
        tg_len len[RECALL_MAX_PAIRS], pairs = {0, 0};
        unsigned val[RECALL_MAX_PAIRS];
        pick_words(r, w, RECALL_MAX_PAIRS);
        while (k < RECALL_MAX_PAIRS && (k < 8 || tg_len_tokens(pairs) < 2 * (size_t)c->window)) {
            int dup;
            do { /* distinct 3-digit values */
                val[k] = 100u + (unsigned)xd_rng_below(r, 900);
                dup = 0;
                for (size_t i = 0; i < k; i++) dup |= val[i] == val[k];
            } while (dup);
            xd_sb_clear(&line);
            if ((rc = xd_sb_printf(&line, "%s: %u\n", WORDS[w[k]], val[k]))) break;
            len[k] = (tg_len){0, 0};
            tg_len_add(&len[k], line.s);
            pairs = len_sum(pairs, len[k++]);
        }
        if (rc) break;
        size_t idx[RECALL_MAX_PAIRS], *ans = idx; /* the first 3 of a shuffle are answered */
        for (size_t i = 0; i < k; i++) idx[i] = i;
        xd_tg_shuffle(r, idx, k);
        tg_len tail = {0, 0};
        tg_len_add(&tail, ASK);
        for (int i = 0; i < RECALL_ANSWERED; i++) tail = len_sum(tail, len[ans[i]]);
        tg_len after[RECALL_MAX_PAIRS]; /* from the end of pair i to the asked word */
        for (size_t i = k; i-- > 0;) {
            after[i] = tail;
            tail = len_sum(tail, len[i]);
        }
        int answered[RECALL_MAX_PAIRS] = {0};
        for (int i = 0; i < RECALL_ANSWERED; i++) answered[ans[i]] = 1;
        size_t first = 0;
        while (answered[first]) first++;
        /* filler "s1 s2 ... sF\n" between the pairs and ASK when too near */
        size_t n_fill = 0;
        tg_len fill = {0, 0};
        if (tg_len_tokens(after[first]) < gap) {
            size_t rest = after[first].other + 1;
            n_fill = fill_for(0, rest, gap > after[first].digits ? gap - after[first].digits : 0);
            for (size_t i = 0; i < n_fill; i++) fill.other += fill_len(i) + (i > 0);
            fill.other++;
        }
        size_t cand[RECALL_MAX_PAIRS], n_cand = 0;
        for (size_t i = 0; i < k; i++)
            if (!answered[i] && tg_len_tokens(len_sum(after[i], fill)) >= gap) cand[n_cand++] = i;
        size_t q = cand[xd_rng_below(r, n_cand)];
        xd_sb_clear(&p);
        rc = xd_sb_puts(&p, HEAD);
        for (size_t i = 0; i < k && !rc; i++)
            rc = xd_sb_printf(&p, "%s: %u\n", WORDS[w[i]], val[i]);
        if (!rc && n_fill) rc = add_fill(&p, 0, n_fill) || xd_sb_add(&p, "\n", 1) ? -1 : 0;
        if (!rc) rc = xd_sb_puts(&p, ASK);
        for (int i = 0; i < RECALL_ANSWERED && !rc; i++)
            rc = xd_sb_printf(&p, "%s: %u\n", WORDS[w[ans[i]]], val[ans[i]]);
        if (!rc) rc = xd_sb_printf(&p, "%s:", WORDS[w[q]]);
        xd_sb_clear(&target);
        if (!rc) rc = xd_sb_printf(&target, "%u", val[q]);
        if (!rc) rc = xd_tg_emit_generate(t, p.s, target.s, 5, "contains");
    }
    xd_sb_free(&p);
    xd_sb_free(&line);
    xd_sb_free(&target);
    return rc;
}

/* ---- delayed copy ----------------------------------------------------------------- */

#define COPY_WORDS 8

/* "Remember this list of words: LIST.\n", filler of at least 1.5 W tokens
 * with "\nRepeat the list of words:", which the model continues. */
int xd_tg_gen_copy(const tg_ctx *c, xd_rng *r, tg_task *t) {
    static const char ASK[] = "\nRepeat the list of words:";
    xd_sbuf p = {0}, target = {0};
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        size_t w[COPY_WORDS];
        pick_words(r, w, COPY_WORDS);
        xd_sb_clear(&target);
        for (int i = 0; i < COPY_WORDS && !rc; i++)
            rc = xd_sb_printf(&target, i ? " %s" : "%s", WORDS[w[i]]);
        size_t start = (size_t)xd_rng_below(r, N_FILL); /* where the filler cycle starts */
        size_t n_fill = fill_for(start, strlen(ASK), (size_t)xd_tg_far_gap(c->window));
        xd_sb_clear(&p);
        if (!rc) rc = xd_sb_printf(&p, "Remember this list of words: %s.\n", target.s);
        if (!rc) rc = add_fill(&p, start, start + n_fill);
        if (!rc) rc = xd_sb_puts(&p, ASK);
        if (!rc) rc = xd_tg_emit_generate(t, p.s, target.s, 2 * COPY_WORDS + 6, "contains");
    }
    xd_sb_free(&p);
    xd_sb_free(&target);
    return rc;
}

/* ---- addition ----------------------------------------------------------------------- */

#define ARITH_SHOTS 3

/* Small sums (a in 1..30, b in 1..9): within reach of a 135M teacher with
 * three shots (2–3 digit sums were not: SmolLM2-135M scored 0 of 20). */
static unsigned operand_a(xd_rng *r) { return 1u + (unsigned)xd_rng_below(r, 30); }
static unsigned operand_b(xd_rng *r) { return 1u + (unsigned)xd_rng_below(r, 9); }

int xd_tg_gen_arith(const tg_ctx *c, xd_rng *r, tg_task *t) {
    xd_sbuf p = {0}, target = {0};
    int rc = 0;
    for (int e = 0; e < c->n && !rc; e++) {
        xd_sb_clear(&p);
        rc = xd_sb_puts(&p, "Add the numbers.\n");
        for (int i = 0; i < ARITH_SHOTS && !rc; i++) {
            unsigned a = operand_a(r), b = operand_b(r);
            rc = xd_sb_printf(&p, "%u + %u = %u\n", a, b, a + b);
        }
        unsigned a = operand_a(r), b = operand_b(r);
        xd_sb_clear(&target);
        if (!rc) rc = xd_sb_printf(&p, "%u + %u =", a, b);
        if (!rc) rc = xd_sb_printf(&target, "%u", a + b);
        if (!rc) rc = xd_tg_emit_generate(t, p.s, target.s, 6, "exact");
    }
    xd_sb_free(&p);
    xd_sb_free(&target);
    return rc;
}
