/* HF config.json → xd_config for the supported teacher architectures
 * (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Olmo2ForCausalLM). */
#ifndef XD_HFCONFIG_H
#define XD_HFCONFIG_H

#include "xdistill.h"

/* Parses path (a config.json). Errors name the file and the field. */
int hf_config_load(const char *path, xd_config *cfg);

#endif
