/* adapter_config.json for peft_adapter.c: parsing with PEFT's rules, the
 * rank_pattern / alpha_pattern / target_modules matching, and the file xdistill
 * writes. Internal to src/io. */
#ifndef XD_PEFT_INTERNAL_H
#define XD_PEFT_INTERNAL_H

#include <jansson.h>

#include "peft_adapter.h"

#define XD_LORA_MAX_RANK (1 << 20) /* ranks (r, rank_pattern, tensors) are 1 .. this */

/* rank_pattern or alpha_pattern: its keys in the file's order, each compiled
 * as PEFT's re.match(r"(.*\.)?(KEY)$", module). */
typedef struct {
    int n;
    const char **keys;       /* point into the parsed JSON */
    const json_t **values;
    void **re;               /* pcre2_code * */
} xd_peft_pattern;

/* What matching a module needs, beyond the fields copied into xd_lora_adapter. */
typedef struct {
    const char *path;        /* adapter_config.json's path, for errors */
    xd_peft_pattern rank, alpha;
    void *target_re, *exclude_re; /* pcre2_code * of the string forms, or NULL */
} xd_peft_cfg;

/* Parses root (the object read from path): fills a's config fields (a's
 * strings are allocated; xd_lora_free frees them) and c. On failure c is freed. */
int xd_peft_cfg_parse(const char *path, const json_t *root, xd_lora_adapter *a, xd_peft_cfg *c);
void xd_peft_cfg_free(xd_peft_cfg *c);

/* The rank and alpha PEFT gives module; *rank_key / *alpha_key the pattern keys
 * used (NULL: r / lora_alpha). */
int xd_peft_cfg_resolve(const xd_peft_cfg *c, const xd_lora_adapter *a, const char *module,
                        int *rank, double *alpha, const char **rank_key, const char **alpha_key);

/* 1 when PEFT would put a LoRA layer on module (target_modules selects it and
 * exclude_modules does not), 0 when not (*why says which), -1 on a regex error. */
int xd_peft_cfg_targets(const xd_peft_cfg *c, const xd_lora_adapter *a, const char *module,
                        const char **why);

void xd_peft_names_free(xd_lora_names *s);

/* adapter_config.json's text for a (consistency is checked by the caller). */
char *xd_peft_cfg_text(const xd_lora_adapter *a);

#endif
