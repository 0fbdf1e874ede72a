/* The retrieval-head probe: synthetic needle-in-a-haystack probes, per-head
 * retrieval scores from the teacher's own attention, and the ranking
 * (model/head_probe.h; docs/distill.md, "Choosing global heads"). */
#include "head_probe.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_observer.h"
#include "core/error.h"
#include "io/hfconfig.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "io/atomic.h"
#include "model.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof *(a)))

/* ---- the grammar's words ------------------------------------------------------------ */

static const char *const NAMES[] = {
    "Maria", "Tomas", "Lena", "Ivan", "Priya", "Marco", "Olga", "Kenji", "Amara", "Felix",
    "Nadia", "Oscar", "Ruth", "Diego", "Hana", "Pavel", "Sofia", "Jonas", "Leila", "Bruno",
    "Ines", "Yusuf", "Clara", "Emil"};
static const char *const PLACES[] = {
    "bakery", "harbour", "library", "market", "garden", "attic", "cellar", "station",
    "workshop", "orchard", "museum", "kitchen", "greenhouse", "lighthouse", "square", "barn",
    "studio", "pier", "warehouse", "courtyard", "meadow", "theatre"};
static const char *const OBJECTS[] = {
    "basket", "lantern", "kettle", "ladder", "bicycle", "umbrella", "teapot", "blanket",
    "compass", "suitcase", "violin", "hammer", "notebook", "candle", "mirror", "wagon",
    "bucket", "scarf", "clock", "shovel"};
static const char *const ADJS[] = {
    "wooden", "small", "old", "heavy", "bright", "dusty", "narrow", "quiet",
    "broken", "shiny", "crooked", "warm", "damp", "tidy", "faded", "sturdy"};
static const char *const COLORS[] = {"blue", "red", "green", "yellow", "white",
                                     "black", "orange", "purple", "grey", "brown"};
/* past tense, base form */
static const char *const VERBS[][2] = {
    {"carried", "carry"}, {"painted", "paint"},   {"repaired", "repair"}, {"cleaned", "clean"},
    {"moved", "move"},    {"sold", "sell"},       {"found", "find"},      {"dropped", "drop"},
    {"polished", "polish"}, {"borrowed", "borrow"}, {"hid", "hide"},      {"wrapped", "wrap"},
    {"measured", "measure"}, {"opened", "open"},  {"lifted", "lift"},     {"washed", "wash"},
    {"traded", "trade"},  {"sketched", "sketch"}, {"weighed", "weigh"},   {"returned", "return"}};
static const char *const PREPS[] = {"near", "behind", "inside", "beside", "across", "under",
                                    "outside", "past"};
static const char *const TIMES[] = {"morning", "evening", "spring", "winter",
                                    "weekend", "holiday", "harvest", "afternoon"};
static const char *const WEATHER[] = {"rain", "storm", "snow", "frost", "heatwave", "fog", "wind"};
static const char *const GOES[] = {"walks", "cycles", "hurries", "wanders", "drives", "strolls"};

/* values of kind XD_PROBE_WORD: none of them is a filler word */
static const char *const KEYWORDS[] = {
    "marmalade", "quartz",   "falcon",  "origami",   "saffron",  "tundra",   "velvet",
    "zephyr",    "cobalt",   "juniper", "mosaic",    "nectar",   "paprika",  "quiver",
    "rhubarb",   "sequoia",  "tangerine", "walnut",  "yarrow",   "basalt",   "cinnamon",
    "dynamo",    "emerald",  "fjord",   "gazebo",    "hazelnut", "igloo",    "jasmine",
    "kayak",     "lagoon",   "meteor",  "nutmeg",    "obsidian", "pelican",  "quinoa",
    "raven",     "sapphire", "turquoise", "vortex",  "pistachio"};
static const char *const NOUNS[XD_PROBE_KINDS][3] = {
    {"number", "PIN", "code"}, {"password", "word", "codeword"}, {"code", "ID", "key"}};
static const char *const THINGS[] = {"locker", "mailbox", "safe", "storage unit", "garage",
                                     "bike lock"};
static const char *const TITLES[] = {"Settings file", "Inventory record", "Config",
                                     "Registry entry"};
static const char HEADER[] = "Read the story below and answer the question at the end. Story:";

static const char *pick(xd_rng *r, const char *const *list, int n) {
    return list[xd_rng_below(r, (uint64_t)n)];
}
#define PICK(r, list) pick((r), (list), N_OF(list))

/* One filler sentence, with its leading space (or a paragraph break); none
 * when it starts a line. */
static void sentence(xd_rng *r, xd_sbuf *b, int line_start) {
    int para = xd_rng_below(r, 7) == 0;
    if (!line_start) xd_sb_puts(b, para ? "\n\n" : " ");
    int v = (int)xd_rng_below(r, (uint64_t)N_OF(VERBS));
    const char *n1 = PICK(r, NAMES), *n2 = PICK(r, NAMES);
    while (n2 == n1) n2 = PICK(r, NAMES);
    switch (xd_rng_below(r, 10)) {
    case 0:
        xd_sb_printf(b, "%s %s the %s %s %s the %s.", n1, VERBS[v][0], PICK(r, ADJS),
                     PICK(r, OBJECTS), PICK(r, PREPS), PICK(r, PLACES));
        break;
    case 1:
        xd_sb_printf(b, "In the %s, %s and %s %s a %s %s.", PICK(r, PLACES), n1, n2, VERBS[v][0],
                     PICK(r, ADJS), PICK(r, OBJECTS));
        break;
    case 2:
        xd_sb_printf(b, "%s said that the %s in the %s was %s.", n1, PICK(r, OBJECTS),
                     PICK(r, PLACES), PICK(r, ADJS));
        break;
    case 3:
        xd_sb_printf(b, "Every %s, %s %s to the %s with a %s.", PICK(r, TIMES), n1, PICK(r, GOES),
                     PICK(r, PLACES), PICK(r, OBJECTS));
        break;
    case 4:
        xd_sb_printf(b, "The %s %s the %s looked %s after the %s.", PICK(r, OBJECTS),
                     PICK(r, PREPS), PICK(r, PLACES), PICK(r, ADJS), PICK(r, WEATHER));
        break;
    case 5:
        xd_sb_printf(b, "Nobody in the %s knew why %s kept the %s %s.", PICK(r, PLACES), n1,
                     PICK(r, ADJS), PICK(r, OBJECTS));
        break;
    case 6:
        xd_sb_printf(b, "%s wanted to %s the %s before the %s was over.", n1, VERBS[v][1],
                     PICK(r, OBJECTS), PICK(r, TIMES));
        break;
    case 7:
        xd_sb_printf(b, "After the %s, the %s was %s and the %s was gone.", PICK(r, WEATHER),
                     PICK(r, PLACES), PICK(r, ADJS), PICK(r, OBJECTS));
        break;
    case 8:
        xd_sb_printf(b, "%s asked %s to bring the %s %s to the %s.", n1, n2, PICK(r, ADJS),
                     PICK(r, OBJECTS), PICK(r, PLACES));
        break;
    default:
        xd_sb_printf(b, "Later, %s %s the %s and walked home.", n1, VERBS[v][0], PICK(r, OBJECTS));
        break;
    }
}

/* A value of the kind, NUL-terminated in out (at least 24 bytes). */
static void make_value(xd_rng *r, int kind, char *out) {
    if (kind == XD_PROBE_NUMBER) {
        int len = 3 + (int)xd_rng_below(r, 5); /* 3 … 7 digits */
        out[0] = (char)('1' + xd_rng_below(r, 9));
        for (int i = 1; i < len; i++) out[i] = (char)('0' + xd_rng_below(r, 10));
        out[len] = 0;
    } else if (kind == XD_PROBE_WORD) {
        strcpy(out, PICK(r, KEYWORDS));
    } else { /* 4 … 6 capitals and digits (no 0/O, 1/I), both kinds present */
        static const char AL[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        int len = 4 + (int)xd_rng_below(r, 3), digits, letters;
        do {
            digits = letters = 0;
            for (int i = 0; i < len; i++) {
                out[i] = AL[xd_rng_below(r, sizeof AL - 1)];
                if (out[i] >= '0' && out[i] <= '9') digits++;
                else letters++;
            }
        } while (!digits || !letters);
        out[len] = 0;
    }
}

/* ---- token buffers ------------------------------------------------------------------ */

typedef struct {
    int32_t *v;
    int n;
    size_t cap;
} ibuf;

static int ib_push(ibuf *b, const int32_t *x, int n) {
    if (xd_grow((void **)&b->v, &b->cap, (size_t)b->n + (size_t)n, sizeof *b->v))
        return xd_err_prefix("head probe: ");
    if (n) memcpy(b->v + b->n, x, (size_t)n * sizeof *x);
    b->n += n;
    return 0;
}

/* Appends the tokens of text (no special tokens parsed). */
static int ib_text(ibuf *b, const xd_tokenizer *t, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (xd_tokenizer_encode(t, text, strlen(text), 0, &ids, &n)) return -1;
    int rc = ib_push(b, ids, (int)n);
    free(ids);
    return rc;
}

/* ---- probes ------------------------------------------------------------------------- */

void xd_probe_free(xd_probe *p) {
    if (!p) return;
    free(p->tokens);
    free(p->answer);
    free(p->value);
    free(p->question);
    memset(p, 0, sizeof *p);
}

/* The record around the value (pre, post), the question and the answer's lead. */
static void make_record(xd_rng *r, int format, int kind, const char *val, xd_sbuf *pre,
                        xd_sbuf *post, xd_sbuf *q) {
    const char *noun = NOUNS[kind][xd_rng_below(r, 3)];
    const char *n1 = PICK(r, NAMES), *n2 = PICK(r, NAMES);
    while (n2 == n1) n2 = PICK(r, NAMES);
    const char *place = PICK(r, PLACES), *obj = PICK(r, OBJECTS);
    switch (format) {
    case 0: {
        const char *thing = PICK(r, THINGS);
        xd_sb_printf(pre, " %s's %s %s:", n1, thing, noun);
        xd_sb_puts(post, ".");
        xd_sb_printf(q, "What is %s's %s %s?\nAnswer: %s's %s %s:", n1, thing, noun, n1, thing, noun);
        break;
    }
    case 1: {
        const char *color = PICK(r, COLORS);
        xd_sb_printf(pre, " Remember this: the %s for the %s door is", noun, color);
        xd_sb_puts(post, ".");
        xd_sb_printf(q, "What is the %s for the %s door?\nAnswer: The %s for the %s door is", noun,
                     color, noun, color);
        break;
    }
    case 2: { /* a block of key = value lines, the needle one of them */
        const char *title = PICK(r, TITLES);
        int lines = 3 + (int)xd_rng_below(r, 3), at = (int)xd_rng_below(r, (uint64_t)lines);
        const char *kp[5], *ko[5];
        for (int i = 0; i < lines; i++) { /* keys place_object, all different */
            int dup;
            do {
                kp[i] = PICK(r, PLACES);
                ko[i] = PICK(r, OBJECTS);
                dup = 0;
                for (int j = 0; j < i; j++) dup |= kp[j] == kp[i] || ko[j] == ko[i];
            } while (dup);
        }
        xd_sb_printf(pre, "\n\n%s:", title);
        for (int i = 0; i < lines; i++) {
            xd_sbuf *b = i <= at ? pre : post;
            xd_sb_printf(b, "\n%s_%s =", kp[i], ko[i]);
            if (i == at) continue;
            char other[24];
            do make_value(r, kind, other);
            while (!strcmp(other, val));
            xd_sb_printf(b, " %s", other);
        }
        xd_sb_puts(post, "\n");
        char lower[32];
        snprintf(lower, sizeof lower, "%s", title);
        lower[0] = (char)(lower[0] - 'A' + 'a');
        xd_sb_printf(q, "In the %s, what is %s_%s set to?\nAnswer: %s_%s =", lower, kp[at], ko[at],
                     kp[at], ko[at]);
        break;
    }
    case 3:
        xd_sb_printf(pre, " At the %s, %s received the %s", place, n1, noun);
        xd_sb_printf(post, " for the %s.", obj);
        xd_sb_printf(q, "What %s did %s receive at the %s?\nAnswer: At the %s, %s received the %s",
                     noun, n1, place, place, n1, noun);
        break;
    case 4:
        xd_sb_printf(pre, " A note on the %s in the %s said: the %s is", obj, place, noun);
        xd_sb_puts(post, ".");
        xd_sb_printf(q, "What %s did the note on the %s give?\nAnswer: The note on the %s said the %s is",
                     noun, obj, obj, noun);
        break;
    default:
        xd_sb_printf(pre, "\n\"What is the %s for the %s?\" asked %s. \"It is", noun, place, n1);
        xd_sb_printf(post, ",\" said %s.\n", n2);
        xd_sb_printf(q, "What is the %s for the %s, according to %s?\nAnswer: According to %s, "
                        "the %s for the %s is", noun, place, n2, n2, noun, place);
        break;
    }
}

/* One try: 0 made, 1 the record does not fit the length (*need: the length it
 * needs), -1 error. */
static int make_once(const xd_tokenizer *t, int length, int window, xd_rng r, int index,
                     xd_probe *p, int *need) {
    int format = (int)xd_rng_below(&r, XD_PROBE_FORMATS), kind = (int)xd_rng_below(&r, XD_PROBE_KINDS);
    char val[24], vtext[32];
    make_value(&r, kind, val);
    snprintf(vtext, sizeof vtext, " %s", val);
    xd_sbuf pre = {0}, post = {0}, q = {0}, qtext = {0}, s = {0};
    make_record(&r, format, kind, val, &pre, &post, &q);
    xd_sb_printf(&qtext, "\n\nQuestion: %s", q.s);
    ibuf head = {0}, tpre = {0}, tval = {0}, tpost = {0}, tq = {0}, out = {0}, sent = {0};
    int rc = -1;
    if (pre.err || post.err || q.err || qtext.err) goto done;
    int32_t bos = xd_tokenizer_bos(t);
    if (bos >= 0 && ib_push(&head, &bos, 1)) goto done;
    if (ib_text(&head, t, HEADER) || ib_text(&tpre, t, pre.s) || ib_text(&tval, t, vtext) ||
        ib_text(&tpost, t, post.s) || ib_text(&tq, t, qtext.s))
        goto done;
    if (tval.n < 1) { xd_err("head probe: the value '%s' has no tokens", val); goto done; }
    int needle = tpre.n + tval.n + tpost.n, fixed = head.n + needle + tq.n;
    int filler = length - fixed;
    /* the value's last token v_last = head + nb + pre + m − 1 must satisfy (length − 1) − v_last ≥ W */
    int nb_max = length - window - head.n - tpre.n - tval.n;
    if (filler < nb_max) nb_max = filler;
    if (nb_max < 0) {
        *need = head.n + tpre.n + tval.n + window;
        if (*need < fixed) *need = fixed;
        rc = 1;
        goto done;
    }
    /* depth: the filler before the needle is whole sentences, at most nb_max tokens
     * (≈ a uniform fraction of it); the rest of the filler follows the needle, cut to size */
    int target = (int)floor(xd_rng_uniform(&r) * (double)nb_max + 0.5), nb = 0;
    if (ib_push(&out, head.v, head.n)) goto done;
    for (;;) {
        xd_sb_clear(&s);
        sentence(&r, &s, 0);
        sent.n = 0;
        if (s.err || ib_text(&sent, t, s.s)) goto done;
        if (nb + sent.n > target) break;
        if (ib_push(&out, sent.v, sent.n)) goto done;
        nb += sent.n;
    }
    p->needle_pos = out.n;
    p->needle_len = needle;
    p->value_pos = out.n + tpre.n;
    if (ib_push(&out, tpre.v, tpre.n) || ib_push(&out, tval.v, tval.n) ||
        ib_push(&out, tpost.v, tpost.n))
        goto done;
    int na = filler - nb;
    if (post.n && post.s[post.n - 1] == '\n') { /* a new line: a sentence without the space */
        xd_sb_clear(&s);
        sentence(&r, &s, 1);
        sent.n = 0;
        if (s.err || ib_text(&sent, t, s.s)) goto done;
    }
    while (na > 0) { /* the sentence drawn last (it did not fit before) comes first */
        int k = sent.n < na ? sent.n : na;
        if (ib_push(&out, sent.v, k)) goto done;
        na -= k;
        if (!na) break;
        xd_sb_clear(&s);
        sentence(&r, &s, 0);
        sent.n = 0;
        if (s.err || ib_text(&sent, t, s.s)) goto done;
    }
    if (ib_push(&out, tq.v, tq.n)) goto done;
    if (out.n != length) { /* cannot happen */
        xd_err("head probe %d: built %d tokens instead of %d", index, out.n, length);
        goto done;
    }
    p->tokens = out.v;
    out.v = NULL;
    p->n_tokens = length;
    p->answer = tval.v;
    tval.v = NULL;
    p->n_answer = tval.n;
    p->format = format;
    p->kind = kind;
    p->depth = nb_max > 0 ? (double)nb / nb_max : 0;
    p->value = strdup(val);
    p->question = xd_sb_take(&q);
    if (!p->value || !p->question) {
        xd_err("head probe: out of memory");
        xd_probe_free(p);
        goto done;
    }
    rc = 0;
done:
    xd_sb_free(&pre); xd_sb_free(&post); xd_sb_free(&q); xd_sb_free(&qtext); xd_sb_free(&s);
    free(head.v); free(tpre.v); free(tval.v); free(tpost.v); free(tq.v); free(out.v); free(sent.v);
    return rc;
}

enum { PROBE_TRIES = 16 };

int xd_probe_make(const xd_tokenizer *t, int length, int window, uint64_t seed, int index,
                  xd_probe *p) {
    memset(p, 0, sizeof *p);
    if (!t) return xd_err("head probe: no tokenizer");
    if (window < 1) return xd_err("head probe: window = %d must be at least 1", window);
    if (length < 1) return xd_err("head probe: probe length %d must be positive (--lengths)", length);
    /* a record that does not fit the length is drawn again (another format, value, ...) */
    int least = 0;
    for (int a = 0; a < PROBE_TRIES; a++) {
        xd_rng r;
        xd_rng_seed(&r, xd_mix64(seed ^ xd_mix64(0x70726f6265ull + (uint64_t)index)) + (uint64_t)a);
        int need = 0, rc = make_once(t, length, window, r, index, p, &need);
        if (rc <= 0) return rc;
        if (!least || need < least) least = need;
    }
    return xd_err("head probe %d: a length of %d tokens is too short for window %d: the "
                  "instruction, a record and the question with the record's value %d tokens "
                  "before the answer need at least %d tokens in %d tries (--lengths)",
                  index, length, window, window, least, PROBE_TRIES);
}

/* ---- scores ------------------------------------------------------------------------- */

typedef struct {
    const xd_probe *p;
    int W, S, H;
    int64_t q0;                  /* the first answer query: the prompt's last position */
    double *score, *hit, *mass;  /* [n_layer·H] sums over the answer tokens */
    int *counted;                /* [n_layer·H] answer tokens counted in score / hit */
    double *buf;                 /* [T]: one row of probabilities */
    int64_t T;
} score_ctx;

static int observe(void *user, const xd_attn_view *v) {
    score_ctx *c = user;
    int64_t lo = v->pos0 > c->q0 ? v->pos0 : c->q0;
    int64_t hi = v->pos0 + v->n, qe = c->q0 + c->p->n_answer;
    if (hi > qe) hi = qe;
    if (lo >= hi) return 0;
    if (v->n_head != c->H || v->pos0 + v->n > c->T) return xd_err("head probe: unexpected attention shape");
    int hd = v->head_dim, group = v->n_head / v->n_kv_head;
    int64_t qd = (int64_t)v->n_head * hd, kvd = (int64_t)v->n_kv_head * hd;
    int W = c->W, S = c->S;
    /* serial: 30 layers × 9 heads × a few answer rows × a few hundred keys is ~0.1 s a probe */
    for (int h = 0; h < c->H; h++) {
        double *pr = c->buf;
        size_t at = (size_t)v->layer * (size_t)c->H + (size_t)h;
        const float *K = v->k + (int64_t)(h / group) * hd;
        for (int64_t t = lo; t < hi; t++) {
            const float *q = v->q + (t - v->pos0) * qd + (int64_t)h * hd;
            int64_t target = c->p->value_pos + (t - c->q0), am = 0;
            double mx = -INFINITY;
            for (int64_t j = 0; j <= t; j++) {
                const float *k = K + j * kvd;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[i] * (double)k[i];
                d *= v->scale;
                pr[j] = d;
                if (d > mx) { mx = d; am = j; }
            }
            double Z = 0, beyond = 0;
            for (int64_t j = 0; j <= t; j++) Z += (pr[j] = exp(pr[j] - mx));
            for (int64_t j = S; j <= t - W; j++) beyond += pr[j]; /* j ≥ S, t − j ≥ W */
            c->mass[at] += beyond / Z;
            if (t - target >= W) {
                c->score[at] += pr[target] / Z;
                c->hit[at] += am == target;
                c->counted[at]++;
            }
        }
    }
    return 0;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int xd_probe_score(const xd_model *m, xd_kv *kv, const xd_probe *p, int window, int sinks,
                   double *score, double *hit, double *mass, int *correct) {
    const xd_config *c = &m->cfg;
    if (c->student)
        return xd_err("head probe: %s is an xLSTM hybrid student; the probe needs a teacher", m->path);
    if (window < 1) return xd_err("head probe: window = %d must be at least 1", window);
    if (sinks < 0) return xd_err("head probe: sinks = %d must be at least 0", sinks);
    if (p->n_tokens < 1 || p->n_answer < 1 || p->value_pos < 0 ||
        p->value_pos + p->n_answer > p->n_tokens)
        return xd_err("head probe: malformed probe (%d tokens, value at %d, %d answer tokens)",
                      p->n_tokens, p->value_pos, p->n_answer);
    int T = p->n_tokens + p->n_answer - 1, LH = c->n_layer * c->n_head, rc = -1;
    xd_kv *own = NULL;
    if (!kv && !(kv = own = xd_kv_create(m, T))) return -1;
    score_ctx sc = {p, window, sinks, c->n_head, p->n_tokens - 1, score, hit, mass, NULL, NULL, T};
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    sc.counted = calloc((size_t)LH, sizeof *sc.counted);
    sc.buf = malloc((size_t)T * sizeof *sc.buf);
    if (!logits || !sc.counted || !sc.buf) { xd_err("head probe: out of memory"); goto done; }
    for (int i = 0; i < LH; i++) score[i] = hit[i] = mass[i] = 0;
    xd_kv_reset(kv);
    xd_attn_observer obs = {observe, &sc};
    if (xd_forward_observed(m, kv, p->tokens, p->n_tokens, logits, 0, &obs)) goto done;
    int ok = argmax(logits, c->vocab_size) == p->answer[0];
    for (int i = 0; i + 1 < p->n_answer; i++) {
        if (xd_forward_observed(m, kv, &p->answer[i], 1, logits, 0, &obs)) goto done;
        ok &= argmax(logits, c->vocab_size) == p->answer[i + 1];
    }
    for (int i = 0; i < LH; i++) {
        score[i] = sc.counted[i] ? score[i] / sc.counted[i] : 0;
        hit[i] = sc.counted[i] ? hit[i] / sc.counted[i] : 0;
        mass[i] /= p->n_answer;
    }
    *correct = ok;
    rc = 0;
done:
    free(logits);
    free(sc.counted);
    free(sc.buf);
    xd_kv_free(own);
    return rc;
}

/* ---- ranking ------------------------------------------------------------------------ */

void xd_head_probe_defaults(xd_head_probe_opts *o) {
    memset(o, 0, sizeof *o);
    o->window = 512;
    o->sinks = 4;
    o->n_probes = 24;
    o->seed = 1234;
}

void xd_head_ranking_free(xd_head_ranking *r) {
    if (!r) return;
    free(r->probe_length);
    free(r->probe_format);
    free(r->probe_kind);
    free(r->probe_correct);
    free(r->heads);
    memset(r, 0, sizeof *r);
}

static int cmp_heads(const void *a, const void *b) {
    const xd_head_score *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->beyond_mass != y->beyond_mass) return x->beyond_mass > y->beyond_mass ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (x->head > y->head) - (x->head < y->head);
}

int xd_head_probe_rank(const xd_model *m, const xd_head_probe_opts *o, xd_head_ranking *r) {
    memset(r, 0, sizeof *r);
    const xd_config *c = &m->cfg;
    if (c->student)
        return xd_err("heads: %s is an xLSTM hybrid student (window %d); the probe needs a "
                      "teacher: give the model it was converted from", m->path, c->window);
    if (!m->tok) return xd_err("heads: %s has no tokenizer", m->path);
    if (o->window < 1) return xd_err("heads: window = %d must be at least 1 (--window)", o->window);
    if (o->sinks < 0) return xd_err("heads: sinks = %d must be at least 0 (--sinks)", o->sinks);
    if (o->n_probes < 1) return xd_err("heads: probes = %d must be at least 1 (--probes)", o->n_probes);
    if (o->n_lengths < 1 || !o->lengths) return xd_err("heads: no probe lengths given (--lengths)");
    for (int i = 0; i < o->n_lengths; i++)
        if (o->lengths[i] <= o->window)
            return xd_err("heads: a probe length of %d tokens is not longer than the window %d: "
                          "no needle can lie beyond it (--lengths)", o->lengths[i], o->window);
    int N = o->n_probes, L = c->n_layer, H = c->n_head, LH = L * H, rc = -1, maxT = 0;
    xd_probe *pr = calloc((size_t)N, sizeof *pr);
    double *sum_s = calloc((size_t)LH * 6, sizeof(double));
    r->probe_length = calloc((size_t)N, sizeof(int));
    r->probe_format = calloc((size_t)N, sizeof(int));
    r->probe_kind = calloc((size_t)N, sizeof(int));
    r->probe_correct = calloc((size_t)N, sizeof(int));
    r->heads = calloc((size_t)LH, sizeof *r->heads);
    xd_kv *kv = NULL;
    if (!pr || !sum_s || !r->probe_length || !r->probe_format || !r->probe_kind ||
        !r->probe_correct || !r->heads) {
        xd_err("heads: out of memory");
        goto done;
    }
    double *sum_h = sum_s + LH, *sum_m = sum_h + LH, *ps = sum_m + LH, *ph = ps + LH, *pm = ph + LH;
    double t0 = xd_now();
    for (int i = 0; i < N; i++) { /* every probe first: a bad length fails before any work */
        int len = o->lengths[i % o->n_lengths];
        if (xd_probe_make(m->tok, len, o->window, o->seed, i, &pr[i])) goto done;
        int T = pr[i].n_tokens + pr[i].n_answer - 1;
        if (T > maxT) maxT = T;
        r->probe_length[i] = len;
        r->probe_format[i] = pr[i].format;
        r->probe_kind[i] = pr[i].kind;
    }
    if (c->max_ctx > 0 && maxT > c->max_ctx)
        xd_log(XD_LOG_WARN, "heads: probes of up to %d tokens exceed %s's trained context of %d",
               maxT, m->path, c->max_ctx);
    if (!(kv = xd_kv_create(m, maxT))) goto done;
    xd_progress pg;
    xd_progress_start(&pg, "heads", 0, N);
    int64_t toks = 0;
    for (int i = 0; i < N; i++) {
        int ok;
        if (xd_probe_score(m, kv, &pr[i], o->window, o->sinks, ps, ph, pm, &ok)) goto done;
        toks += pr[i].n_tokens + pr[i].n_answer - 1;
        r->probe_correct[i] = ok;
        r->n_correct += ok;
        if (ok || o->score_all) {
            r->n_scored++;
            for (int j = 0; j < LH; j++) {
                sum_s[j] += ps[j];
                sum_h[j] += ph[j];
                sum_m[j] += pm[j];
            }
        }
        char extra[96];
        snprintf(extra, sizeof extra, "answered %d/%d | %.0f tok/s", r->n_correct, i + 1,
                 (double)toks / (xd_now() - t0 + 1e-9));
        xd_progress_update(&pg, i + 1, extra);
    }
    xd_progress_end(&pg);
    r->n_layer = L;
    r->n_head = H;
    r->n_probes = N;
    r->n_heads = LH;
    r->accuracy = (double)r->n_correct / N;
    r->seconds = xd_now() - t0;
    if (!r->n_scored) {
        xd_err("heads: %s answered none of the %d probes: nothing to rank (--score-all ranks "
               "the heads on all probes anyway)", m->path, N);
        goto done;
    }
    for (int j = 0; j < LH; j++) {
        xd_head_score *h = &r->heads[j];
        h->layer = j / H;
        h->head = j % H;
        h->score = sum_s[j] / r->n_scored;
        h->hit = sum_h[j] / r->n_scored;
        h->beyond_mass = sum_m[j] / r->n_scored;
    }
    qsort(r->heads, (size_t)LH, sizeof *r->heads, cmp_heads);
    xd_log(XD_LOG_INFO, "heads: %s answered %d of %d probes (%.1f%%); ranked %d heads on %d "
           "probes in %.1f s", m->path, r->n_correct, N, 100.0 * r->accuracy, LH, r->n_scored,
           r->seconds);
    rc = 0;
done:
    if (rc) xd_head_ranking_free(r);
    for (int i = 0; pr && i < N; i++) xd_probe_free(&pr[i]);
    free(pr);
    free(sum_s);
    xd_kv_free(kv);
    return rc;
}

int xd_head_ranking_save(const xd_head_ranking *r, const xd_head_probe_opts *o,
                         const char *teacher, const char *path) {
    static const char *const FMT[XD_PROBE_FORMATS] = {"possessive", "door", "key_value",
                                                      "receipt", "note", "dialogue"};
    static const char *const KIND[XD_PROBE_KINDS] = {"number", "word", "code"};
    json_t *j = json_object(), *lens = json_array(), *probes = json_array(), *heads = json_array();
    if (!j || !lens || !probes || !heads) {
        json_decref(j); json_decref(lens); json_decref(probes); json_decref(heads);
        return xd_err("%s: out of memory", path);
    }
    json_object_set_new(j, "teacher", json_string(teacher ? teacher : ""));
    json_object_set_new(j, "window", json_integer(o->window));
    json_object_set_new(j, "sinks", json_integer(o->sinks));
    json_object_set_new(j, "probes", json_integer(r->n_probes));
    for (int i = 0; i < o->n_lengths; i++) json_array_append_new(lens, json_integer(o->lengths[i]));
    json_object_set_new(j, "lengths", lens);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    /* seeds go beyond JSON's exact integers: a number when it fits, else a string */
    json_object_set_new(j, "seed", o->seed <= (1ull << 53) ? json_integer((json_int_t)o->seed)
                                                           : json_string(seed));
    json_object_set_new(j, "teacher_accuracy", json_real(r->accuracy));
    json_object_set_new(j, "correct", json_integer(r->n_correct));
    json_object_set_new(j, "scored", json_integer(r->n_scored));
    json_object_set_new(j, "score_all", json_boolean(o->score_all));
    json_object_set_new(j, "seconds", json_real(r->seconds));
    for (int i = 0; i < r->n_probes; i++)
        json_array_append_new(probes, json_pack("{s:i, s:s, s:s, s:b}", "length", r->probe_length[i],
                                                "format", FMT[r->probe_format[i]], "kind",
                                                KIND[r->probe_kind[i]], "correct",
                                                r->probe_correct[i]));
    json_object_set_new(j, "probe_results", probes);
    for (int i = 0; i < r->n_heads; i++) {
        const xd_head_score *h = &r->heads[i];
        json_array_append_new(heads, json_pack("{s:i, s:i, s:f, s:f, s:f}", "layer", h->layer,
                                               "head", h->head, "score", h->score, "argmax",
                                               h->hit, "beyond_mass", h->beyond_mass));
    }
    json_object_set_new(j, "heads", heads);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!text) return xd_err("%s: cannot format the ranking", path);
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) { free(text); return xd_err("%s: out of memory", path); }
    memcpy(t2 + n, "\n", 2);
    int rc = xd_write_file_atomic(path, t2, n + 1);
    free(t2);
    return rc;
}

/* The first k heads, or (group > 0) the first k distinct (layer, head / group) groups
 * expanded to their query heads, of `ranked` (n entries, best first); what names the
 * source in errors. Returns the count written to out (sorted), -1 on error. */
static int pick_heads(const xd_head_ref *ranked, int n, int k, int group, int n_head,
                      const char *what, xd_head_ref *out) {
    int units = group > 0 ? 0 : n; /* heads, or distinct groups in the ranking */
    for (int i = 0; group > 0 && i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = ranked[j].layer == ranked[i].layer && ranked[j].head / group == ranked[i].head / group;
        units += !seen;
    }
    int most = group > 0 ? XD_MAX_GLOBAL_HEADS / group : XD_MAX_GLOBAL_HEADS;
    if (most > units) most = units;
    if (k < 1 || k > most)
        return xd_err("%s: K = %d%s, expected 1 .. %d (the %s)", what, k, group > 0 ? "g" : "",
                      most, group > 0 ? "KV groups of its heads" : "ranking's heads");
    int m = 0;
    for (int i = 0, got = 0; i < n && got < k; i++) {
        if (group <= 0) {
            out[m++] = ranked[i];
            got++;
            continue;
        }
        int g = ranked[i].head / group, seen = 0;
        for (int j = 0; j < m && !seen; j++) seen = out[j].layer == ranked[i].layer && out[j].head / group == g;
        if (seen) continue;
        for (int h = g * group; h < (g + 1) * group && h < n_head; h++)
            out[m++] = (xd_head_ref){ranked[i].layer, (int16_t)h};
        got++;
    }
    xd_head_refs_sort(out, m);
    return m;
}

int xd_head_ranking_top(const xd_head_ranking *r, int k, int group, xd_head_ref *out) {
    xd_head_ref *ranked = malloc((size_t)r->n_heads * sizeof *ranked);
    if (!ranked) return xd_err("global heads: out of memory");
    for (int i = 0; i < r->n_heads; i++)
        ranked[i] = (xd_head_ref){(int16_t)r->heads[i].layer, (int16_t)r->heads[i].head};
    int m = pick_heads(ranked, r->n_heads, k, group, r->n_head, "global heads", out);
    free(ranked);
    return m;
}

int xd_head_probe_auto(const xd_model *teacher, int window, int sinks, int k, int group,
                       xd_head_ref *out) {
    const xd_config *c = &teacher->cfg;
    int units = group > 0 ? c->n_layer * (c->n_head / group) : c->n_layer * c->n_head;
    int most = group > 0 ? XD_MAX_GLOBAL_HEADS / group : XD_MAX_GLOBAL_HEADS;
    if (most > units) most = units;
    if (k < 1 || k > most) /* checked before the probe runs */
        return xd_err("global heads auto:%d%s: expected 1 .. %d (the teacher has %d %s)", k,
                      group > 0 ? "g" : "", most, units, group > 0 ? "KV groups" : "heads");
    xd_head_probe_opts o;
    xd_head_probe_defaults(&o);
    /* 2W, 4W and 8W tokens, but at least 256 + W: room for the instruction, a
     * record and the question with the value W tokens back (small windows) */
    int lengths[3];
    for (int i = 0; i < 3; i++) {
        long len = (2L << i) * window, least = 256L + window;
        lengths[i] = (int)(len > least ? (len < (1L << 24) ? len : 1L << 24) : least);
    }
    o.window = window;
    o.sinks = sinks;
    o.lengths = lengths;
    o.n_lengths = 3;
    xd_head_ranking r;
    if (xd_head_probe_rank(teacher, &o, &r)) return -1;
    int rc = xd_head_ranking_top(&r, k, group, out);
    xd_head_ranking_free(&r);
    return rc;
}

int xd_head_ranking_load_top(const char *path, int k, int group, int n_layer, int n_head,
                             xd_head_ref *out) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return xd_err("%s: %s (line %d, column %d): expected a ranking written by `xdistill heads -o`",
                          path, je.text, je.line, je.column);
    json_t *heads = json_object_get(j, "heads");
    int rc = 0;
    size_t n = json_array_size(heads);
    xd_head_ref *ranked = NULL;
    if (!json_is_array(heads) || n == 0)
        rc = xd_err("%s: field \"heads\": expected a non-empty array of {layer, head, ...}", path);
    else if (!(ranked = malloc(n * sizeof *ranked)))
        rc = xd_err("%s: out of memory", path);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *e = json_array_get(heads, i);
        json_t *l = json_object_get(e, "layer"), *h = json_object_get(e, "head");
        if (!json_is_integer(l) || !json_is_integer(h) || json_integer_value(l) < 0 ||
            json_integer_value(l) >= n_layer || json_integer_value(h) < 0 || json_integer_value(h) >= n_head)
            rc = xd_err("%s: heads[%zu]: expected integer layer 0 .. %d and head 0 .. %d (a ranking of "
                        "another model?)", path, i, n_layer - 1, n_head - 1);
        else
            ranked[i] = (xd_head_ref){(int16_t)json_integer_value(l), (int16_t)json_integer_value(h)};
    }
    json_decref(j);
    if (rc == 0) rc = pick_heads(ranked, (int)n, k, group, n_head, path, out);
    free(ranked);
    return rc;
}
