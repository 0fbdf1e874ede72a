/* Hugging Face tokenizer.json front-end: a byte-level BPE model, its added
 * tokens and a pre-tokenizer we recognise (see pre_from_json). Special token
 * ids come from tokenizer_config.json beside it when there is one (a
 * malformed one is an error). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "xdistill.h"

/* Split patterns as they appear in tokenizer.json files. */
static const char *const GPT2_PATTERNS[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
static const char *const LLAMA3_PATTERNS[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const QWEN2_PATTERNS[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};

static int in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static const char *type_of(const json_t *o) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "";
}

/* json bool with a default when absent */
static int get_flag(const json_t *o, const char *key, int dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ByteLevel(use_regex = want_regex, no prefix space)? */
static int is_byte_level(const json_t *p, int want_regex) {
    return strcmp(type_of(p), "ByteLevel") == 0 && get_flag(p, "use_regex", 1) == want_regex &&
           !get_flag(p, "add_prefix_space", 0);
}

/* The Split pattern if p is an isolating regex Split, else NULL. */
static const char *split_regex(const json_t *p) {
    if (strcmp(type_of(p), "Split") != 0 || get_flag(p, "invert", 0)) return NULL;
    const char *beh = json_string_value(json_object_get(p, "behavior"));
    if (!beh || strcmp(beh, "Isolated") != 0) return NULL;
    return json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
}

/* Maps the pre_tokenizer section to one of the pre-tokenizer names:
 *   ByteLevel(use_regex)                              -> gpt2
 *   Sequence[Digits(individual_digits), ByteLevel]    -> smollm
 *   Sequence[Split(known regex), ByteLevel(no regex)] -> gpt2 / llama3 (dbrx) / qwen2 */
static const char *pre_from_json(const json_t *pre, int ignore_merges) {
    if (is_byte_level(pre, 1)) return "gpt2";
    if (strcmp(type_of(pre), "Sequence") != 0) return NULL;
    const json_t *seq = json_object_get(pre, "pretokenizers");
    if (!json_is_array(seq)) return NULL;
    size_t n = json_array_size(seq);
    const json_t *a = json_array_get(seq, 0), *b = json_array_get(seq, 1);
    if (n == 1 && is_byte_level(a, 1)) return "gpt2";
    if (n != 2) return NULL;
    if (strcmp(type_of(a), "Digits") == 0 && get_flag(a, "individual_digits", 0) && is_byte_level(b, 1))
        return "smollm";
    const char *re = split_regex(a);
    if (!re || !is_byte_level(b, 0)) return NULL;
    if (in_list(re, GPT2_PATTERNS)) return "gpt2";
    if (in_list(re, LLAMA3_PATTERNS)) return ignore_merges ? "llama3" : "dbrx";
    if (in_list(re, QWEN2_PATTERNS)) return "qwen2";
    return NULL;
}

/* Everything the spec points at, owned here. */
typedef struct {
    const char *path;
    int n_tokens;
    const char **tokens;
    int *types;
    int n_merges;
    char **merges;
    char **pads; /* "[PAD<id>]" names for ids nobody defined */
} json_vocab;

static void json_vocab_free(json_vocab *v) {
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    for (int i = 0; v->pads && i < v->n_tokens; i++) free(v->pads[i]);
    free(v->merges);
    free(v->pads);
    free(v->tokens);
    free(v->types);
}

/* A token id field: integer in [0, 2^24]. */
static int get_id(const json_t *v, const char *path, const char *field, const char *key, int *id) {
    json_int_t x = json_integer_value(v);
    if (!json_is_integer(v) || x < 0 || x > (1 << 24))
        return xd_err("%s: %s%s: expected a token id (integer 0..%d)", path, field, key, 1 << 24);
    *id = (int)x;
    return 0;
}

/* One pass over model.vocab and added_tokens for the largest id. */
static int count_tokens(const json_t *vocab, const json_t *added, const char *path, int *n) {
    const char *key;
    const json_t *v;
    int max = -1, id = 0;
    json_object_foreach((json_t *)vocab, key, v) {
        if (get_id(v, path, "model.vocab.", key, &id)) return -1;
        if (id > max) max = id;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        char field[64];
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        if (!json_is_object(a)) return xd_err("%s: %s: expected an object", path, field);
        if (get_id(json_object_get(a, "id"), path, field, ".id", &id)) return -1;
        if (!json_is_string(json_object_get(a, "content")))
            return xd_err("%s: %s.content: expected a string", path, field);
        if (id > max) max = id;
    }
    if (max < 0) return xd_err("%s: model.vocab: empty (expected the vocabulary)", path);
    *n = max + 1;
    return 0;
}

static int fill_tokens(json_vocab *jv, const json_t *vocab, const json_t *added) {
    const char *key;
    const json_t *v;
    int id = 0;
    jv->tokens = calloc((size_t)jv->n_tokens, sizeof(char *));
    jv->types = malloc((size_t)jv->n_tokens * sizeof(int));
    jv->pads = calloc((size_t)jv->n_tokens, sizeof(char *));
    if (!jv->tokens || !jv->types || !jv->pads) return xd_err("%s: out of memory", jv->path);
    for (int i = 0; i < jv->n_tokens; i++) jv->types[i] = XD_TOKEN_NORMAL;
    json_object_foreach((json_t *)vocab, key, v) {
        get_id(v, jv->path, "model.vocab.", key, &id); /* checked in count_tokens */
        if (jv->tokens[id])
            return xd_err("%s: model.vocab.%s: id %d already used by '%s'", jv->path, key, id,
                          jv->tokens[id]);
        jv->tokens[id] = key;
    }
    /* added tokens override the vocabulary entry with the same id */
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        get_id(json_object_get(a, "id"), jv->path, "", "", &id);
        jv->tokens[id] = json_string_value(json_object_get(a, "content"));
        jv->types[id] = get_flag(a, "special", 0) ? XD_TOKEN_CONTROL : XD_TOKEN_USER;
    }
    for (int i = 0; i < jv->n_tokens; i++) {
        if (jv->tokens[i]) continue;
        char name[32];
        snprintf(name, sizeof name, "[PAD%d]", i);
        if (!(jv->pads[i] = strdup(name))) return xd_err("%s: out of memory", jv->path);
        jv->tokens[i] = jv->pads[i];
        jv->types[i] = XD_TOKEN_UNUSED;
    }
    return 0;
}

/* model.merges: "a b" strings or [a, b] pairs, stored as "a b". */
static int fill_merges(json_vocab *jv, const json_t *merges) {
    size_t n = json_array_size(merges);
    if (n > (size_t)(INT32_MAX / 4)) return xd_err("%s: model.merges: too many entries", jv->path);
    jv->merges = calloc(n ? n : 1, sizeof(char *));
    if (!jv->merges) return xd_err("%s: out of memory", jv->path);
    jv->n_merges = (int)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a = NULL, *b = NULL;
        if (json_is_string(m)) {
            jv->merges[i] = strdup(json_string_value(m));
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   (a = json_string_value(json_array_get(m, 0))) &&
                   (b = json_string_value(json_array_get(m, 1)))) {
            size_t la = strlen(a), lb = strlen(b);
            if ((jv->merges[i] = malloc(la + lb + 2))) {
                memcpy(jv->merges[i], a, la);
                jv->merges[i][la] = ' ';
                memcpy(jv->merges[i] + la + 1, b, lb + 1);
            }
        } else {
            return xd_err("%s: model.merges[%zu]: expected \"left right\" or [\"left\", \"right\"]",
                          jv->path, i);
        }
        if (!jv->merges[i]) return xd_err("%s: out of memory", jv->path);
    }
    return 0;
}

/* The id of the special token named by key in tokenizer_config.json
 * ("bos_token": "<s>", or {"content": "<s>", ...} as transformers writes
 * AddedToken; absent or null: -1). Another type, or a name that is not a
 * token of the vocabulary, is an error naming the file and the key. */
static int config_token(const json_t *cfg, const char *key, const json_vocab *jv, const char *cfg_path,
                        int *id) {
    const json_t *v = json_object_get(cfg, key);
    *id = -1;
    if (!v || json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    if (json_is_object(v) && !(s = json_string_value(json_object_get(v, "content"))))
        return xd_err("%s: %s.content: expected the token's text (a string)", cfg_path, key);
    if (!s)
        return xd_err("%s: %s: expected a token (a string, {\"content\": string, ...} or null), "
                      "got %s", cfg_path, key, json_is_array(v) ? "an array"
                                                : json_is_boolean(v) ? "a boolean" : "a number");
    for (int i = jv->n_tokens - 1; i >= 0; i--)
        if (strcmp(jv->tokens[i], s) == 0) {
            *id = i;
            return 0;
        }
    return xd_err("%s: %s: \"%.64s\" is not a token of %s (neither in model.vocab nor in "
                  "added_tokens)", cfg_path, key, s, jv->path);
}

/* bos / eos / add_bos from tokenizer_config.json next to path. No such file:
 * none (-1, -1, 0); one that cannot be read or is malformed: an error naming
 * it and the field. */
static int read_config(const char *path, const json_vocab *jv, int *bos, int *eos, int *add_bos) {
    char cfg_path[4096];
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path + 1) : 0;
    *bos = *eos = -1;
    *add_bos = 0;
    if (snprintf(cfg_path, sizeof cfg_path, "%.*stokenizer_config.json", dir, path) >= (int)sizeof cfg_path)
        return xd_err("%s: path too long", path);
    struct stat st;
    if (stat(cfg_path, &st) && errno == ENOENT) return 0; /* optional */
    /* as reals: model_max_length is often 1e30, too big for json_int_t */
    json_error_t jerr;
    json_t *cfg = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!cfg) {
        if (jerr.line < 0) return xd_err("%s: cannot read: %s", cfg_path, jerr.text);
        return xd_err("%s:%d:%d: malformed JSON: %s", cfg_path, jerr.line, jerr.column, jerr.text);
    }
    int rc = 0;
    const json_t *ab = json_object_get(cfg, "add_bos_token");
    if (!json_is_object(cfg))
        rc = xd_err("%s: top level: expected an object", cfg_path);
    else if (ab && !json_is_boolean(ab) && !json_is_null(ab))
        rc = xd_err("%s: add_bos_token: expected true or false (or null)", cfg_path);
    else if (config_token(cfg, "bos_token", jv, cfg_path, bos) ||
             config_token(cfg, "eos_token", jv, cfg_path, eos))
        rc = -1;
    else
        *add_bos = json_is_true(ab);
    json_decref(cfg);
    return rc;
}

xd_tokenizer *xd_tokenizer_load_json(const char *path) {
    json_error_t jerr;
    json_vocab jv = {.path = path};
    xd_tokenizer *t = NULL;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (jerr.line < 0) xd_err("%s: cannot read: %s", path, jerr.text);
        else xd_err("%s:%d:%d: malformed JSON: %s", path, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    const json_t *pre_tok = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(root)) { xd_err("%s: top level: expected an object", path); goto done; }
    if (!json_is_object(model)) { xd_err("%s: model: expected an object", path); goto done; }
    if (strcmp(type_of(model), "BPE") != 0) {
        xd_err("%s: model.type: expected \"BPE\", got \"%s\"", path, type_of(model));
        goto done;
    }
    if (!json_is_object(vocab)) { xd_err("%s: model.vocab: expected an object", path); goto done; }
    if (!json_is_array(merges)) { xd_err("%s: model.merges: expected an array", path); goto done; }
    if (added && !json_is_array(added) && !json_is_null(added)) {
        xd_err("%s: added_tokens: expected an array", path);
        goto done;
    }
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = json_string_value(json_object_get(model, affix[i]));
        if (s && *s) {
            xd_err("%s: model.%s: \"%s\" is not supported (byte-level BPE has none)", path, affix[i], s);
            goto done;
        }
    }
    const char *pre = pre_from_json(pre_tok, get_flag(model, "ignore_merges", 0));
    if (!pre) {
        xd_err("%s: pre_tokenizer: unsupported %s (expected ByteLevel, Sequence[Digits(individual_"
               "digits), ByteLevel] or Sequence[Split(GPT-2 / Llama-3 / Qwen2 regex), ByteLevel])",
               path, json_is_object(pre_tok) ? type_of(pre_tok) : "(none)");
        goto done;
    }
    if (count_tokens(vocab, added, path, &jv.n_tokens) || fill_tokens(&jv, vocab, added) ||
        fill_merges(&jv, merges))
        goto done;

    int bos, eos, add_bos;
    if (read_config(path, &jv, &bos, &eos, &add_bos)) goto done;
    xd_tokenizer_spec spec = {
        .n_tokens = jv.n_tokens, .tokens = jv.tokens, .token_types = jv.types,
        .n_merges = jv.n_merges, .merges = (const char *const *)jv.merges, .pre = pre,
        .bos_id = bos, .eos_id = eos, .add_bos = add_bos, .source = path,
    };
    t = xd_tokenizer_create(&spec);
done:
    json_vocab_free(&jv);
    json_decref(root);
    return t;
}
