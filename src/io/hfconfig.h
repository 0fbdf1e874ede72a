/* HF config.json → xd_config for the supported teacher architectures
 * (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Olmo2ForCausalLM). */
#ifndef XD_HFCONFIG_H
#define XD_HFCONFIG_H

#include <jansson.h>

#include "xdistill.h"

/* Parses path (a config.json). Errors name the file and the field. */
int xd_hf_config_load(const char *path, xd_config *cfg);

/* ---- writer (hfconfig_write.c) ------------------------------------------- */

/* Writes c as a config.json that HF transformers (4.4x and 5.x) loads for
 * its architecture and xd_hf_config_load reads back to the same xd_config:
 * architectures, model_type, the sizes, head_dim, rms_norm_eps, rope_theta
 * (top level and in rope_parameters; Llama-3 scaling also as rope_scaling),
 * tie_word_embeddings, attention_bias = false except for Qwen2 (whose q/k/v
 * bias is built into the model class), hidden_act, dtype float32. Floats are
 * written in their shortest round-trip form. The write is atomic. A config
 * the files cannot express (e.g. qkv_bias on a Llama) is an error. */
int xd_hf_config_save(const xd_config *c, const char *path);
/* Same, with the members of `extra` (a JSON object, or NULL) merged in last,
 * replacing fields of the same name (a student sets its own model_type,
 * architectures and fields this way). */
int xd_hf_config_save_ex(const xd_config *c, const json_t *extra, const char *path);

/* JSON text the way Python's json.dumps(obj, indent=2, sort_keys=True)
 * writes it (reals in shortest round-trip form, "1e-06", "10000.0"), with a
 * final newline; malloc'ed, NULL when out of memory or j holds a value JSON
 * cannot express. */
char *xd_hf_json_pretty(const json_t *j);
/* A 64-bit hash as JSON: the string "0x" + 16 lower-case hex digits (what
 * config.json, merge.json and search files hold; xd_hf_config_load reads it). */
json_t *xd_json_hex64(uint64_t h);

/* The global-head list of c (docs/design.md, "Global heads"): at most
 * XD_MAX_GLOBAL_HEADS, inside the model, sorted, no duplicates; a student's only.
 * Errors name `source` and the field global_heads. (hfconfig_heads.c) */
int xd_global_heads_check(const xd_config *c, const char *source);
/* Sorts by (layer, head). */
void xd_head_refs_sort(xd_head_ref *h, int n);

#endif
