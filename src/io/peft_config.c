/* adapter_config.json (a PEFT LoraConfig): read with PEFT's defaults and
 * matching rules, written the way PEFT writes it (peft_internal.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/error.h"
#include "hfconfig.h"
#include "peft_internal.h"

/* A field that is absent or null counts as not given. */
static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* null, false, "", [] and {}: what PEFT writes for a feature that is off. */
static int is_off(const json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return 1;
    if (json_is_string(v)) return json_string_length(v) == 0;
    if (json_is_array(v)) return json_array_size(v) == 0;
    if (json_is_object(v)) return json_object_size(v) == 0;
    return 0;
}

/* v as compact JSON for a message, cut to fit. */
static const char *show(const json_t *v, char *buf, size_t cap) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, cap, "%s", s ? s : "?");
    if (s && strlen(s) >= cap && cap > 4) strcpy(buf + cap - 4, "...");
    free(s);
    return buf;
}

static char *dup_str(const char *s) {
    char *d = strdup(s);
    if (!d) xd_err("out of memory");
    return d;
}

/* ---- fields -------------------------------------------------------------- */

static int get_bool(const char *path, const char *prefix, const json_t *o, const char *key,
                    int def, int *out) {
    const json_t *v = field(o, key);
    if (!v) { *out = def; return 0; }
    if (!json_is_boolean(v))
        return xd_err("%s: %s%s: expected true or false", path, prefix, key);
    *out = json_is_true(v);
    return 0;
}

static int get_number(const char *path, const char *prefix, const json_t *o, const char *key,
                      double def, double lo, double hi, double *out) {
    const json_t *v = field(o, key);
    if (!v) { *out = def; return 0; }
    if (!json_is_number(v)) return xd_err("%s: %s%s: expected a number", path, prefix, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return xd_err("%s: %s%s: %g is out of range (expected %g .. %g)", path, prefix, key, x,
                      lo, hi);
    *out = x;
    return 0;
}

static int get_rank(const char *path, const char *what, const json_t *v, int *out) {
    if (!json_is_integer(v)) return xd_err("%s: %s: expected an integer rank", path, what);
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > XD_LORA_MAX_RANK)
        return xd_err("%s: %s: %lld is out of range (expected 1 .. %d)", path, what,
                      (long long)x, XD_LORA_MAX_RANK);
    *out = (int)x;
    return 0;
}

/* Features the engine does not reproduce: each must be off (is_off). */
static const struct {
    const char *key, *what;
} refused[] = {
    {"use_dora", "DoRA (weight-decomposed LoRA)"},
    {"fan_in_fan_out", "fan_in_fan_out (weights stored [in, out], GPT-2's Conv1D)"},
    {"lora_bias", "a bias on lora_B"},
    {"use_qalora", "QALoRA"},
    {"modules_to_save", "fully trained copies of modules (modules_to_save)"},
    {"trainable_token_indices", "trainable token embeddings"},
    {"layer_replication", "layer replication"},
    {"target_parameters", "LoRA on nn.Parameter tensors"},
    {"layers_to_transform", "selecting layers by index"},
    {"layers_pattern", "selecting layers by index"},
    {"megatron_config", "Megatron parallel layers"},
    {"loftq_config", "LoftQ (it rewrites the base weights)"},
    {"corda_config", "CorDA (it rewrites the base weights)"},
    {"lora_ga_config", "LoRA-GA (it rewrites the base weights)"},
    {"alora_invocation_tokens", "activated LoRA"},
    {"use_bdlora", "block-diagonal LoRA"},
    {"arrow_config", "Arrow routing"},
    {"velora_config", "VeLoRA"},
    {"monteclora_config", "MonteCLoRA"},
    {"kasa_config", "KaSA"},
};

static int refuse_features(const char *path, const json_t *root) {
    char buf[64];
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        const json_t *v = json_object_get(root, refused[i].key);
        if (!is_off(v))
            return xd_err("%s: %s: %s is not supported: %s (expected %s)", path, refused[i].key,
                          show(v, buf, sizeof buf), refused[i].what,
                          json_is_boolean(v) ? "false" : "null");
    }
    const json_t *b = field(root, "bias");
    if (b && (!json_is_string(b) || strcmp(json_string_value(b), "none")))
        return xd_err("%s: bias: %s is not supported: biases trained with the adapter "
                      "(expected \"none\")", path, show(b, buf, sizeof buf));
    const json_t *t = field(root, "task_type");
    if (t && (!json_is_string(t) || strcmp(json_string_value(t), "CAUSAL_LM")))
        return xd_err("%s: task_type: %s is not supported (expected \"CAUSAL_LM\" or null)", path,
                      show(t, buf, sizeof buf));
    return 0;
}

static int parse_peft_type(const char *path, const json_t *root) {
    const json_t *v = field(root, "peft_type");
    char buf[64];
    if (!v) return xd_err("%s: peft_type: missing (expected \"LORA\")", path);
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))
        return xd_err("%s: peft_type: %s is not supported (expected \"LORA\")", path,
                      show(v, buf, sizeof buf));
    return 0;
}

/* true / false / a string; initialisations that rewrite the base weights are refused. */
static int parse_init(const char *path, const json_t *root, char **out) {
    static const char *const ok[] = {"gaussian", "eva", "orthogonal"};
    static const char *const rewrite[] = {"pissa", "olora", "corda", "loftq", "lora_ga"};
    const json_t *v = field(root, "init_lora_weights");
    char buf[64];
    if (!v || json_is_boolean(v))
        return (*out = dup_str(!v || json_is_true(v) ? "true" : "false")) ? 0 : -1;
    if (!json_is_string(v))
        return xd_err("%s: init_lora_weights: expected true, false or a string", path);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(s, ok[i])) return (*out = dup_str(s)) ? 0 : -1;
    for (size_t i = 0; i < sizeof rewrite / sizeof *rewrite; i++)
        if (!strncmp(s, rewrite[i], strlen(rewrite[i])))
            return xd_err("%s: init_lora_weights: %s is not supported: it rewrites the base "
                          "weights, so the adapter only fits that modified model (expected true, "
                          "false, \"gaussian\", \"eva\" or \"orthogonal\")", path,
                          show(v, buf, sizeof buf));
    return xd_err("%s: init_lora_weights: %s is not a known initialisation (expected true, false, "
                  "\"gaussian\", \"eva\" or \"orthogonal\")", path, show(v, buf, sizeof buf));
}

static int parse_eva(const char *path, const json_t *root, xd_lora_adapter *a) {
    static const char *const keys[] = {"rho", "tau", "use_label_mask", "label_mask_value",
                                       "whiten", "adjust_scaling_factors"};
    const json_t *e = field(root, "eva_config");
    if (!e) return 0;
    if (!json_is_object(e)) return xd_err("%s: eva_config: expected an object or null", path);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)e, k, v) {
        size_t i = 0;
        while (i < sizeof keys / sizeof *keys && strcmp(k, keys[i])) i++;
        if (i == sizeof keys / sizeof *keys)
            return xd_err("%s: eva_config.%s: unknown field (expected rho, tau, use_label_mask, "
                          "label_mask_value, whiten, adjust_scaling_factors)", path, k);
    }
    xd_eva_config *c = &a->eva;
    double lmv = 0;
    const json_t *lv = field(e, "label_mask_value");
    if (lv && !json_is_integer(lv))
        return xd_err("%s: eva_config.label_mask_value: expected an integer", path);
    if (get_number(path, "eva_config.", e, "rho", 2.0, 1.0, 1e9, &c->rho) ||
        get_number(path, "eva_config.", e, "tau", 0.99, 0.0, 1.0, &c->tau) ||
        get_number(path, "eva_config.", e, "label_mask_value", -100, -1e9, 1e9, &lmv) ||
        get_bool(path, "eva_config.", e, "use_label_mask", 1, &c->use_label_mask) ||
        get_bool(path, "eva_config.", e, "whiten", 0, &c->whiten) ||
        get_bool(path, "eva_config.", e, "adjust_scaling_factors", 1, &c->adjust_scaling_factors))
        return -1;
    c->label_mask_value = (int)lmv;
    a->has_eva = 1;
    return 0;
}

/* ---- regexes --------------------------------------------------------------- */

/* Compiles "(?:PREFIX)(KEY)SUFFIX" anchored at the start (re.match / re.fullmatch). */
static pcre2_code *compile(const char *path, const char *field_name, const char *key,
                           const char *prefix, const char *suffix) {
    size_t n = strlen(prefix) + strlen(key) + strlen(suffix) + 3;
    char *pat = malloc(n);
    if (!pat) { xd_err("out of memory"); return NULL; }
    snprintf(pat, n, "%s(%s)%s", prefix, key, suffix);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_ANCHORED, &code, &at, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        xd_err("%s: %s: '%s' is not a valid regex: %s", path, field_name, key, (const char *)msg);
    }
    return re;
}

/* 1 match, 0 none, -1 error. */
static int matches(const pcre2_code *re, const char *s) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return xd_err("out of memory");
    int rc = pcre2_match(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return xd_err("matching '%s': %s", s, (const char *)msg);
}

/* ---- rank_pattern / alpha_pattern --------------------------------------- */

static void pattern_free(xd_peft_pattern *p) {
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    free((void *)p->keys);
    free((void *)p->values);
    free(p->re);
    memset(p, 0, sizeof *p);
}

/* Checks every value (a rank, or a finite alpha) and compiles every key. */
static int pattern_parse(const char *path, const json_t *root, const char *name, int ranks,
                         xd_peft_pattern *p) {
    const json_t *o = field(root, name);
    if (!o) return 0;
    if (!json_is_object(o))
        return xd_err("%s: %s: expected an object {module regex: %s}", path, name,
                      ranks ? "rank" : "alpha");
    size_t n = json_object_size(o);
    p->keys = calloc(n ? n : 1, sizeof *p->keys);
    p->values = calloc(n ? n : 1, sizeof *p->values);
    p->re = calloc(n ? n : 1, sizeof *p->re);
    if (!p->keys || !p->values || !p->re) return xd_err("out of memory");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) { /* jansson keeps the file's order */
        char what[320];
        snprintf(what, sizeof what, "%s['%.256s']", name, k);
        int r;
        if (ranks && get_rank(path, what, v, &r)) return -1;
        if (!ranks && (!json_is_number(v) || !isfinite(json_number_value(v))))
            return xd_err("%s: %s: expected a finite number", path, what);
        p->keys[p->n] = k;
        p->values[p->n] = v;
        if (!(p->re[p->n] = compile(path, name, k, "(.*\\.)?", "$"))) return -1;
        p->n++;
    }
    return 0;
}

/* The index of the first key matching module, -1 for none, -2 on error. */
static int pattern_find(const xd_peft_pattern *p, const char *module) {
    for (int i = 0; i < p->n; i++) {
        int m = matches(p->re[i], module);
        if (m < 0) return -2;
        if (m) return i;
    }
    return -1;
}

/* ---- target_modules / exclude_modules ------------------------------------- */

void xd_peft_names_free(xd_lora_names *s) {
    for (int i = 0; i < s->n; i++) free(s->names[i]);
    free(s->names);
    free(s->regex);
    memset(s, 0, sizeof *s);
}

/* A list of non-empty strings, or one string: a regex, or for target_modules
 * "all-linear". target_modules is required (PEFT's default depends on the
 * architecture). */
static int names_parse(const char *path, const json_t *root, const char *key, int target,
                       xd_lora_names *s, void **re) {
    const json_t *v = field(root, key);
    if (!v) {
        if (target)
            return xd_err("%s: %s: missing (expected a list of module names or a regex)", path,
                          key);
        return 0;
    }
    if (json_is_string(v)) {
        if (!(s->regex = dup_str(json_string_value(v)))) return -1;
        if (target && !strcasecmp(s->regex, "all-linear")) return 0; /* PEFT expands it */
        return (*re = compile(path, key, s->regex, "(?:", ")\\z")) ? 0 : -1;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (!n)
        return xd_err("%s: %s: expected a non-empty list of module names or a regex", path, key);
    if (!(s->names = calloc(n, sizeof *s->names))) return xd_err("out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || !json_string_length(e))
            return xd_err("%s: %s[%zu]: expected a module name (a non-empty string)", path, key, i);
        if (!(s->names[s->n] = dup_str(json_string_value(e)))) return -1;
        s->n++;
    }
    return 0;
}

/* PEFT's check_target_module_exists for one list or string. */
static int names_match(const xd_lora_names *s, const void *re, const char *module) {
    if (s->regex) return re ? matches(re, module) : 1; /* no re: target_modules all-linear */
    size_t lm = strlen(module);
    for (int i = 0; i < s->n; i++) {
        size_t le = strlen(s->names[i]);
        if (!strcmp(module, s->names[i])) return 1;
        if (lm > le && module[lm - le - 1] == '.' && !strcmp(module + lm - le, s->names[i]))
            return 1;
    }
    return 0;
}

int xd_peft_cfg_targets(const xd_peft_cfg *c, const xd_lora_adapter *a, const char *module,
                        const char **why) {
    int m = 0;
    if (a->exclude_modules.n || a->exclude_modules.regex) {
        if ((m = names_match(&a->exclude_modules, c->exclude_re, module)) < 0) return -1;
        if (m) { *why = "exclude_modules selects it"; return 0; }
    }
    if ((m = names_match(&a->target_modules, c->target_re, module)) < 0) return -1;
    if (!m) *why = "target_modules does not select it";
    return m;
}

/* ---- the whole config --------------------------------------------------- */

void xd_peft_cfg_free(xd_peft_cfg *c) {
    pattern_free(&c->rank);
    pattern_free(&c->alpha);
    pcre2_code_free(c->target_re);
    pcre2_code_free(c->exclude_re);
    c->target_re = c->exclude_re = NULL;
}

static int parse_fields(const char *path, const json_t *root, xd_lora_adapter *a, xd_peft_cfg *c) {
    if (!json_is_object(root)) return xd_err("%s: expected a JSON object (a LoraConfig)", path);
    if (parse_peft_type(path, root) || refuse_features(path, root)) return -1;
    const json_t *r = field(root, "r"), *bm = field(root, "base_model_name_or_path");
    a->r = 8; /* PEFT's defaults: r 8, lora_alpha 8 */
    if (r && get_rank(path, "r", r, &a->r)) return -1;
    if (get_number(path, "", root, "lora_alpha", 8, -1e30, 1e30, &a->lora_alpha) ||
        get_number(path, "", root, "lora_dropout", 0, 0, 1, &a->lora_dropout) ||
        get_bool(path, "", root, "use_rslora", 0, &a->use_rslora) ||
        parse_init(path, root, &a->init_lora_weights) || parse_eva(path, root, a))
        return -1;
    if (bm && !json_is_string(bm))
        return xd_err("%s: base_model_name_or_path: expected a string or null", path);
    if (bm && !(a->base_model = dup_str(json_string_value(bm)))) return -1;
    if (names_parse(path, root, "target_modules", 1, &a->target_modules, &c->target_re) ||
        names_parse(path, root, "exclude_modules", 0, &a->exclude_modules, &c->exclude_re))
        return -1;
    return pattern_parse(path, root, "rank_pattern", 1, &c->rank) ||
           pattern_parse(path, root, "alpha_pattern", 0, &c->alpha);
}

int xd_peft_cfg_parse(const char *path, const json_t *root, xd_lora_adapter *a, xd_peft_cfg *c) {
    memset(c, 0, sizeof *c);
    c->path = path;
    if (parse_fields(path, root, a, c)) {
        xd_peft_cfg_free(c);
        return -1;
    }
    return 0;
}

int xd_peft_cfg_resolve(const xd_peft_cfg *c, const xd_lora_adapter *a, const char *module,
                        int *rank, double *alpha, const char **rank_key, const char **alpha_key) {
    int ri = pattern_find(&c->rank, module), ai = pattern_find(&c->alpha, module);
    if (ri < -1 || ai < -1) return xd_err_prefix("%s", c->path);
    *rank = ri >= 0 ? (int)json_integer_value(c->rank.values[ri]) : a->r;
    *alpha = ai >= 0 ? json_number_value(c->alpha.values[ai]) : a->lora_alpha;
    *rank_key = ri >= 0 ? c->rank.keys[ri] : NULL;
    *alpha_key = ai >= 0 ? c->alpha.keys[ai] : NULL;
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* An integer when x is one (PEFT keeps 8 as 8 and 3.5 as 3.5). */
static json_t *number(double x) {
    if (x == floor(x) && fabs(x) < 9007199254740992.0) return json_integer((json_int_t)x);
    return json_real(x);
}

static json_t *names_json(const xd_lora_names *s, const xd_lora_adapter *a) {
    if (s->regex) return json_string(s->regex);
    json_t *l = json_array();
    int from_modules = s == &a->target_modules && !s->n; /* exactly the adapted modules */
    int n = from_modules ? a->n_modules : s->n;
    for (int i = 0; l && i < n; i++) {
        const char *name = from_modules ? a->modules[i].module : s->names[i];
        if (json_array_append_new(l, json_string(name))) {
            json_decref(l);
            return NULL;
        }
    }
    return l;
}

static json_t *eva_json(const xd_eva_config *e) {
    return json_pack("{s:f, s:f, s:b, s:i, s:b, s:b}", "rho", e->rho, "tau", e->tau,
                     "use_label_mask", e->use_label_mask, "label_mask_value", e->label_mask_value,
                     "whiten", e->whiten, "adjust_scaling_factors", e->adjust_scaling_factors);
}

static json_t *init_json(const char *s) {
    if (!strcmp(s, "true")) return json_true();
    if (!strcmp(s, "false")) return json_false();
    return json_string(s);
}

/* The modules whose rank / alpha differ from r / lora_alpha, by full path (as EVA writes them). */
static json_t *patterns_json(const xd_lora_adapter *a, int ranks) {
    json_t *o = json_object();
    for (int i = 0; o && i < a->n_modules; i++) {
        const xd_lora_module *m = &a->modules[i];
        json_t *v = NULL;
        if (ranks && m->rank != a->r) v = json_integer(m->rank);
        if (!ranks && m->alpha != a->lora_alpha) v = number(m->alpha);
        if (v && json_object_set_new(o, m->module, v)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static void set(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v || json_object_set_new(o, key, v)) *bad = 1;
}

/* The fields PEFT (v0.14 and later) writes; the ones for refused features at their "off" value. */
static json_t *config_json(const xd_lora_adapter *a) {
    int bad = 0;
    json_t *o = json_object();
    if (!o) return NULL;
    set(o, "peft_type", json_string("LORA"), &bad);
    set(o, "task_type", json_string("CAUSAL_LM"), &bad);
    set(o, "base_model_name_or_path", a->base_model ? json_string(a->base_model) : json_null(),
        &bad);
    set(o, "revision", json_null(), &bad);
    set(o, "inference_mode", json_true(), &bad);
    set(o, "auto_mapping", json_null(), &bad);
    set(o, "r", json_integer(a->r), &bad);
    set(o, "lora_alpha", number(a->lora_alpha), &bad);
    set(o, "lora_dropout", json_real(a->lora_dropout), &bad);
    set(o, "use_rslora", json_boolean(a->use_rslora), &bad);
    set(o, "init_lora_weights", init_json(a->init_lora_weights), &bad);
    set(o, "target_modules", names_json(&a->target_modules, a), &bad);
    if (a->exclude_modules.n || a->exclude_modules.regex)
        set(o, "exclude_modules", names_json(&a->exclude_modules, a), &bad);
    set(o, "rank_pattern", patterns_json(a, 1), &bad);
    set(o, "alpha_pattern", patterns_json(a, 0), &bad);
    set(o, "eva_config", a->has_eva ? eva_json(&a->eva) : json_null(), &bad);
    set(o, "bias", json_string("none"), &bad);
    set(o, "fan_in_fan_out", json_false(), &bad);
    set(o, "use_dora", json_false(), &bad);
    set(o, "lora_bias", json_false(), &bad);
    set(o, "modules_to_save", json_null(), &bad);
    set(o, "layers_to_transform", json_null(), &bad);
    set(o, "layers_pattern", json_null(), &bad);
    set(o, "layer_replication", json_null(), &bad);
    set(o, "megatron_config", json_null(), &bad);
    set(o, "megatron_core", json_string("megatron.core"), &bad);
    set(o, "loftq_config", json_object(), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *xd_peft_cfg_text(const xd_lora_adapter *a) {
    json_t *o = config_json(a);
    char *text = o ? xd_hf_json_pretty(o) : NULL; /* json.dumps(indent=2, sort_keys=True) */
    json_decref(o);
    if (!text) xd_err("out of memory formatting adapter_config.json");
    return text;
}
