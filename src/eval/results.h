/* The results file of `xdistill eval` (read by `compare`):
 * {"xdistill_results":1, "model":PATH, "student":bool, "window":W, "sinks":S (students),
 *  "tokenizer_hash":"16 hex digits", "suite":NAME, "suite_dir":DIR,
 *  "settings":{"bos":bool,"chat":bool,"fewshot":K,"max_ctx":N,"bootstrap":B,"seed":S,
 *              "stride":N},
 *  "tasks":[{"name","type","metric","score","ci_low","ci_high","n","seconds",
 *            "chance" (number or null),"long_context",
 *            "acc_norm","acc_norm_ci_low","acc_norm_ci_high" (choice),
 *            "ppl","tokens" (perplexity),"truncated","file","description" (when given)}],
 *  "seconds":total}
 * Everything but the "seconds" fields is a function of the model, the suite
 * and the settings: two runs give the same file apart from those. */
#ifndef XD_EVAL_RESULTS_H
#define XD_EVAL_RESULTS_H

#include <jansson.h>

#include "eval/run.h"

json_t *xd_results_json(const xd_eval_results *r);
/* Writes the JSON (indented, keys in the order above) atomically. */
int xd_results_write(const char *path, const xd_eval_results *r);

#endif
