/* The retrieval-head probe (issue 13, lever 1): which of a teacher's query
 * heads retrieve from far back, so that a student can keep them as full
 * ("global") attention while the others become sliding-window attention.
 * docs/distill.md, "Choosing global heads".
 *
 * 1. Probes (xd_probe_make): a synthetic document of an exact number of
 *    tokens in which one record (the needle) holds a value, followed by a
 *    question whose answer is that value. The filler comes from a small
 *    built-in sentence grammar (names, places, objects, actions); the value is
 *    a number of 3–7 digits, a word or an alphanumeric code; the record has
 *    one of six formats (below). The needle's value ends at least W tokens
 *    before the first answer query, so a window of W keys cannot see it.
 *    Everything is a function of (tokenizer, length, window, seed, index).
 *
 * 2. Scores (xd_probe_score): the teacher runs on the probe with the answer
 *    appended (teacher forcing: the prompt as one prefill, then the answer
 *    tokens one by one) and, per (layer, query head), for every answer token
 *    a_i, whose query is the position before it (t_i = prompt_len − 1 + i):
 *      - retrieval score: p(t_i → v_i), the attention probability on the
 *        needle's i-th value token (the copy source of a_i; Wu et al. 2024,
 *        "Retrieval Head Mechanistically Explains Long-Context Factuality",
 *        here with probabilities instead of their argmax hit), counted only
 *        when t_i − v_i ≥ W (beyond the window; true by construction);
 *      - argmax hit: 1 when v_i is that query's most attended key (their
 *        hard score);
 *      - beyond-window mass: Σ p(t_i → j) over keys j ≥ S with t_i − j ≥ W,
 *        the attention a student with W window keys and S sinks cannot give;
 *    each averaged over the answer tokens. Probabilities are computed in
 *    double: softmax over keys 0 … t of (q_t·k_j)/√head_dim, query head h
 *    reading key head h / (n_head / n_kv_head), exactly the teacher's
 *    attention (model/attn_observer.h gives the forward's q and K cache).
 *    The teacher answers a probe when its greedy token equals a_i at every
 *    answer position.
 *
 * 3. Ranking (xd_head_probe_rank): scores averaged over the probes the
 *    teacher answers (or all of them, score_all), heads sorted by retrieval
 *    score, then beyond-window mass, both descending, then (layer, head)
 *    ascending.
 *
 * Record formats (V = the value, tokenized on its own with a leading space,
 * exactly as the answer is):
 *   0 possessive:  "Maria's locker code: V."
 *                  Q "What is Maria's locker code?"  A "Maria's locker code: V"
 *   1 door:        "Remember this: the code for the blue door is V."
 *   2 key = value: a titled block of 3–5 lines "harbor_lantern = V" (the
 *                  others with values of the same kind), Q about one key
 *   3 receipt:     "At the bakery, Tomas received the code V for the kettle."
 *   4 note:        "A note on the ladder in the attic said: the code is V."
 *   5 dialogue:    "\"What is the code for the cellar?\" asked Lena. \"It is V,\" said Ivan."
 * ("code" is the kind's noun: "number", "PIN", "password", "word", "code",
 * "ID", ...). Each ends with "\n\nQuestion: …?\nAnswer: LEAD" and the answer
 * " V". A one-line instruction opens the document (after BOS when the
 * tokenizer has one). */
#ifndef XD_HEAD_PROBE_H
#define XD_HEAD_PROBE_H

#include <stdint.h>

#include "xdistill.h"

enum { XD_PROBE_FORMATS = 6, XD_PROBE_KINDS = 3 };
/* value kinds */
enum { XD_PROBE_NUMBER = 0, XD_PROBE_WORD = 1, XD_PROBE_CODE = 2 };

typedef struct {
    int32_t *tokens;   /* [n_tokens]: the prompt (the document up to the answer lead) */
    int n_tokens;      /* == the length asked for */
    int32_t *answer;   /* [n_answer]: the answer, " V" tokenized */
    int n_answer;
    int value_pos;     /* tokens[value_pos … value_pos + n_answer − 1] == answer: the needle's value */
    int needle_pos, needle_len; /* the record (the whole block for format 2) */
    int format, kind;  /* XD_PROBE_FORMATS, XD_PROBE_* */
    double depth;      /* where the needle lies in the room it had: 0 first … 1 last */
    char *value;       /* V */
    char *question;    /* "…?\nAnswer: LEAD": the prompt's end, after "\n\nQuestion: " */
} xd_probe;

/* Probe `index` of the stream `seed`: n_tokens == length exactly, the value
 * beyond the window: (n_tokens − 1) − (value_pos + n_answer − 1) ≥ window.
 * Fails, naming the length, when the length leaves no room for that. */
int xd_probe_make(const xd_tokenizer *t, int length, int window, uint64_t seed, int index,
                  xd_probe *p);
void xd_probe_free(xd_probe *p);

typedef struct {
    int window;         /* W ≥ 1: keys the student's window sees (t − W < j ≤ t) */
    int sinks;          /* S ≥ 0: keys 0 … S−1, which the student always sees (default 4) */
    int n_probes;       /* ≥ 1 (default 24) */
    const int *lengths; /* probe lengths in tokens, used in turn (probe i: lengths[i % n]) */
    int n_lengths;      /* ≥ 1 */
    uint64_t seed;      /* default 1234 */
    int score_all;      /* 1: score the probes the teacher gets wrong as well (default 0) */
} xd_head_probe_opts;

/* window 512 (convert's default), sinks 4, 24 probes, no lengths (the
 * caller sets them, e.g. 2·W, 4·W, 8·W), seed 1234, score_all 0. */
void xd_head_probe_defaults(xd_head_probe_opts *o);

/* Scores one probe: per head (index layer·n_head + head) the means over
 * the answer tokens of the retrieval score, the argmax hit and the
 * beyond-window mass (each array n_layer·n_head); *correct = 1 when the
 * teacher's greedy answer is the value. kv: a teacher cache of at least
 * n_tokens + n_answer − 1 positions (reset here); NULL: one is made. */
int xd_probe_score(const xd_model *m, xd_kv *kv, const xd_probe *p, int window, int sinks,
                   double *score, double *hit, double *mass, int *correct);

typedef struct {
    int layer, head;
    double score;       /* mean retrieval score */
    double hit;         /* mean argmax hit */
    double beyond_mass; /* mean beyond-window mass */
} xd_head_score;

typedef struct {
    int n_layer, n_head;
    int n_probes, n_correct, n_scored;
    double accuracy;       /* n_correct / n_probes */
    int *probe_length, *probe_format, *probe_kind, *probe_correct; /* [n_probes] */
    xd_head_score *heads;  /* [n_heads], best first */
    int n_heads;           /* n_layer · n_head */
    double seconds;        /* wall time of the run */
} xd_head_ranking;

/* Generates the probes (all checked before any is run), scores them on the
 * teacher and ranks the heads. Errors: a student (naming its file), options
 * out of range (naming the field), a length too short, a teacher that
 * answers none of the probes (unless score_all). Progress: label "heads". */
int xd_head_probe_rank(const xd_model *teacher, const xd_head_probe_opts *o, xd_head_ranking *r);
void xd_head_ranking_free(xd_head_ranking *r);

/* Writes {teacher, window, sinks, probes, lengths, seed, teacher_accuracy,
 * correct, scored, seconds, probe_results: [{length, format, kind, correct}],
 * heads: [{layer, head, score, argmax, beyond_mass}, ...] best first}
 * atomically to path. */
int xd_head_ranking_save(const xd_head_ranking *r, const xd_head_probe_opts *o,
                         const char *teacher, const char *path);

/* The global-head list from a ranking, best first (sorted by (layer, head) into out, as the
 * config keeps it). group == 0: the K best query heads. group == n_head / n_kv_head (> 0):
 * the K best KV groups, i.e. the (layer, KV head) pairs in the order of their best query
 * head, each with every query head that reads it — the memory of a global head is its
 * pair's keys/values, so a group's other query heads cost no memory. Returns the number of
 * heads written (K, or K·group), -1 on error (K out of range). out holds
 * XD_MAX_GLOBAL_HEADS entries. */
int xd_head_ranking_top(const xd_head_ranking *r, int k, int group, xd_head_ref *out);

/* convert --global-heads auto:K (auto:Kg: K groups, group as above): ranks the teacher's
 * heads with the default probe for a student of window W and S sinks (24 probes of 2W, 4W
 * and 8W tokens, each at least 256 + W, seed 1234) and picks as xd_head_ranking_top. */
int xd_head_probe_auto(const xd_model *teacher, int window, int sinks, int k, int group,
                       xd_head_ref *out);

/* convert --global-heads FILE.json:K (FILE.json:Kg): the same from a ranking saved by
 * xd_head_ranking_save (`xdistill heads -o FILE.json`), checked against a model of n_layer
 * layers and n_head heads; errors name the file and field. */
int xd_head_ranking_load_top(const char *path, int k, int group, int n_layer, int n_head,
                             xd_head_ref *out);

#endif
