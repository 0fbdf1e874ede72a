/* Scoring one example with one model; the same code scores teachers and
 * students (both are xd_model, run by xd_forward).
 *
 * Token sequences. With settings.bos every sequence starts with the
 * tokenizer's BOS. Task text is encoded literally (special-token text in it
 * is not matched). With settings.chat the context / prompt is wrapped in the
 * ChatML template as one user turn followed by the assistant header:
 *   <|im_start|>user\n CONTEXT <|im_end|>\n<|im_start|>assistant\n
 * (the template's own markers are special tokens).
 *
 * Choice continuations (log-likelihood of CHOICE given CONTEXT):
 *  - no chat: W = encode(CONTEXT + CHOICE), C = encode(CONTEXT); the choice
 *    tokens are W after the longest common prefix of W and C. When C is a
 *    prefix of W (the usual case: choices start with a space, and the
 *    pre-tokenizer attaches spaces to the next word) this is W[|C|:], as in
 *    lm-eval-harness; when BPE merges across the boundary (a context ending
 *    in a space, say) the merged token belongs to the choice. The sequence
 *    is [BOS] + W; log p is summed over the choice tokens only.
 *  - chat: the sequence is [BOS] + wrap(CONTEXT) + encode(CHOICE), and the
 *    choice tokens are encode(CHOICE).
 * Context length: a sequence longer than max_ctx loses its oldest context
 * tokens (BOS, when present, stays first); the choice tokens plus one
 * conditioning token must fit in max_ctx.
 *
 * Generation: greedy (argmax over the tokenizer's ids, lowest id on ties)
 * after [BOS] + PROMPT (chat-wrapped when chat), up to max_tokens tokens,
 * stopping at EOS or when a stop string appears (the output is cut before
 * it). A prompt longer than max_ctx − max_tokens loses its oldest tokens.
 *
 * Perplexity: [BOS] + encode(TEXT) in windows of max_ctx tokens every
 * `stride` tokens, each window scoring the tokens the previous one did not
 * (HF's convention, as xd_perplexity); the first token is never scored. */
#ifndef XD_EVAL_SCORING_H
#define XD_EVAL_SCORING_H

#include <stdint.h>

#include "eval/tasks.h"
#include "xdistill.h"

typedef struct {
    int bos;     /* prepend the tokenizer's BOS */
    int chat;    /* ChatML-wrap contexts and prompts (not perplexity texts) */
    int fewshot; /* solved examples prepended to each context / prompt */
    int max_ctx; /* tokens per forward window */
    int stride;  /* perplexity windows start every `stride` tokens (<= max_ctx) */
} xd_eval_settings;

/* Defaults for m: bos = the tokenizer has a BOS, no chat, no few-shot,
 * max_ctx = the model's trained context, stride = max_ctx / 2. */
void xd_eval_settings_default(xd_eval_settings *st, const xd_model *m);

typedef struct xd_scorer xd_scorer;

/* Checks the settings against m (BOS / ChatML tokens exist, ranges). The
 * scorer keeps one KV cache and one logits buffer across examples, and the
 * state after the last choice context (xd_kv_copy), reused by the choices
 * whose context tokens are the same: the same forward calls, so the same
 * log-likelihoods bit for bit as scoring each choice alone. */
xd_scorer *xd_scorer_create(const xd_model *m, const xd_eval_settings *st);
void xd_scorer_free(xd_scorer *s);

/* loglik[i] = Σ log p(choice i's tokens | context); n_tok[i] = how many
 * tokens were scored (may be NULL). *truncated = 1 when the context was cut. */
int xd_score_choices(xd_scorer *s, const char *context, const char *const *choices, int n,
                     double *loglik, int *n_tok, int *truncated);

/* The greedy continuation of prompt as text (malloc'ed, NUL-terminated). */
int xd_score_generate(xd_scorer *s, const char *prompt, int max_tokens,
                      const char *const *stop, int n_stop, char **output, int *truncated);

/* Summed NLL of text's tokens and their count; *windowed = 1 when it took
 * more than one window. */
int xd_score_text(xd_scorer *s, const char *text, double *nll, int64_t *n_tokens, int *windowed);

/* exact: the output's first line (after leading white space) and the target
 * are equal after trimming white space (space, \t, \n, \r, \v, \f) at both
 * ends; contains: target occurs in output. */
int xd_output_matches(const char *output, const char *target, xd_match match);

#endif
