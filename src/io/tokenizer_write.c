/* Tokenizer → HF tokenizer.json (+ tokenizer_config.json beside it), in the
 * form tokenizer_json.c reads back to the same tokenizer and HF `tokenizers`
 * loads with the same encodings:
 *   model       BPE: vocab (id order), merges as [left, right] pairs in rank
 *               order, ignore_merges for the Llama-3 pre-tokenizer;
 *   pre         gpt2    ByteLevel(use_regex)
 *               smollm  Sequence[Digits(individual_digits), ByteLevel(use_regex)]
 *               llama3 / dbrx / qwen2
 *                       Sequence[Split(their regex, Isolated), ByteLevel(no regex)]
 *               (llama.cpp aliases are written as the name they behave as, so a
 *               "llama-bpe" tokenizer reads back as "llama3"; "default" has no
 *               tokenizer.json form and is an error);
 *   decoder     ByteLevel; post_processor TemplateProcessing adding BOS when
 *               the tokenizer says add_bos, else ByteLevel;
 *   added_tokens CONTROL (and UNKNOWN) tokens with special = true, USER
 *               tokens with special = false, all also in the vocab.
 * Token types without a tokenizer.json form: UNUSED tokens named "[PAD<id>]"
 * are left out (the reader recreates exactly those), except the last id,
 * which is written as a plain entry so the token count survives; other
 * UNUSED, BYTE and UNKNOWN tokens come back as NORMAL / CONTROL.
 * tokenizer_config.json holds bos_token, eos_token and add_bos_token. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic.h"
#include "io/tokenizer_internal.h"
#include "xdistill.h"

/* The Split regexes exactly as tokenizer_json.c recognises them. */
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* llama.cpp pre-tokenizer names → the name their tokenizer.json form reads back as. */
static const struct {
    const char *name, *canon;
} PRE_MAP[] = {
    {"gpt2", "gpt2"},     {"gpt-2", "gpt2"},       {"olmo", "gpt2"},      {"mpt", "gpt2"},
    {"smollm", "smollm"}, {"starcoder", "smollm"}, {"refact", "smollm"},  {"codeshell", "smollm"},
    {"llama3", "llama3"}, {"llama-v3", "llama3"},  {"llama-bpe", "llama3"}, {"falcon3", "llama3"},
    {"dbrx", "dbrx"},     {"smaug-bpe", "dbrx"},   {"qwen2", "qwen2"},    {"deepseek-r1-qwen", "qwen2"},
    {"stablelm2", "qwen2"}, {"megrez", "qwen2"},
};

static const char *canonical_pre(const char *pre) {
    for (size_t i = 0; i < sizeof PRE_MAP / sizeof *PRE_MAP; i++)
        if (!strcmp(pre, PRE_MAP[i].name)) return PRE_MAP[i].canon;
    return NULL;
}

static json_t *byte_level(int use_regex, int trim_offsets, int add_prefix_space) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", add_prefix_space,
                     "trim_offsets", trim_offsets, "use_regex", use_regex);
}

static json_t *pre_tokenizer(const char *canon) {
    if (!strcmp(canon, "gpt2")) return byte_level(1, 1, 0);
    if (!strcmp(canon, "smollm"))
        return json_pack("{s:s, s:[{s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type",
                         "Digits", "individual_digits", 1, byte_level(1, 1, 0));
    const char *re = !strcmp(canon, "qwen2") ? RE_QWEN2 : RE_LLAMA3;
    return json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence", "pretokenizers",
                     "type", "Split", "pattern", "Regex", re, "behavior", "Isolated", "invert", 0,
                     byte_level(0, 1, 0));
}

static int is_special_type(int ty) {
    return ty == XD_TOKEN_CONTROL || ty == XD_TOKEN_USER || ty == XD_TOKEN_UNKNOWN;
}

/* "[PAD<id>]": the name tokenizer_json.c gives an id nobody defined. */
static int is_pad_name(const char *s, int id) {
    char name[32];
    snprintf(name, sizeof name, "[PAD%d]", id);
    return !strcmp(s, name);
}

static int cmp_rank(const void *a, const void *b) {
    const xd_tok_merge *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* vocab + added_tokens */
static int build_vocab(const xd_tokenizer *t, const char *path, json_t *vocab, json_t *added) {
    int n = xd_tokenizer_n_tokens(t);
    for (int id = 0; id < n; id++) {
        int ty = xd_tokenizer_token_type(t, id);
        const char *s = xd_tokenizer_piece(t, id);
        if (ty == XD_TOKEN_UNUSED && is_pad_name(s, id) && id != n - 1) continue;
        const json_t *prev = json_object_get(vocab, s);
        if (prev && !is_special_type(ty))
            return xd_err("%s: token %d '%s' has the same text as token %lld; a tokenizer.json "
                          "vocabulary cannot hold both", path, id, s,
                          (long long)json_integer_value(prev));
        if (!prev && json_object_set_new(vocab, s, json_integer(id)))
            return xd_err("%s: token %d: cannot add it to the vocabulary (not UTF-8, or out of "
                          "memory)", path, id);
        if (is_special_type(ty)) {
            json_t *a = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s,
                                  "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                  "special", ty != XD_TOKEN_USER);
            if (!a || json_array_append_new(added, a))
                return xd_err("%s: token %d: cannot add it to added_tokens (not UTF-8, or out of "
                              "memory)", path, id);
        }
    }
    return 0;
}

static json_t *merges_json(const xd_tokenizer *t, const char *path) {
    xd_tok_merge *ms = NULL;
    int n = 0;
    if (xd_tokenizer_merges(t, &ms, &n)) return NULL;
    qsort(ms, (size_t)n, sizeof *ms, cmp_rank);
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        json_t *p = json_pack("[s, s]", ms[i].left, ms[i].right);
        if (!p || json_array_append_new(a, p)) {
            json_decref(a);
            a = NULL;
        }
    }
    free(ms);
    if (!a) xd_err("%s: out of memory", path);
    return a;
}

static json_t *post_processor(const xd_tokenizer *t) {
    int bos = xd_tokenizer_bos(t);
    if (!xd_tokenizer_add_bos(t) || bos < 0) return byte_level(1, 0, 1);
    const char *b = xd_tokenizer_piece(t, bos);
    return json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, "
                     "{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}",
                     "type", "TemplateProcessing",
                     "single", "SpecialToken", "id", b, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                     "pair", "SpecialToken", "id", b, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                     "SpecialToken", "id", b, "type_id", 1, "Sequence", "id", "B", "type_id", 1,
                     "special_tokens", b, "id", b, "ids", bos, "tokens", b);
}

static json_t *token_or_null(const xd_tokenizer *t, int id) {
    return id >= 0 ? json_string(xd_tokenizer_piece(t, id)) : json_null();
}

/* tokenizer_config.json in path's directory. */
static int write_config(const xd_tokenizer *t, const char *path) {
    char cfg[XD_APATH_MAX];
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path + 1) : 0;
    if (snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", dir, path) >= (int)sizeof cfg)
        return xd_err("%s: path too long", path);
    json_t *o = json_pack("{s:b, s:b, s:o, s:o, s:b, s:s}", "add_bos_token", xd_tokenizer_add_bos(t),
                          "add_eos_token", 0, "bos_token", token_or_null(t, xd_tokenizer_bos(t)),
                          "eos_token", token_or_null(t, xd_tokenizer_eos(t)),
                          "clean_up_tokenization_spaces", 0, "tokenizer_class",
                          "PreTrainedTokenizerFast");
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text) return xd_err("%s: out of memory", cfg);
    size_t n = strlen(text);
    int rc = -1;
    char *nl = realloc(text, n + 2);
    if (nl) {
        text = nl;
        text[n++] = '\n';
        text[n] = 0;
        rc = xd_write_file_atomic(cfg, text, n);
    } else {
        xd_err("%s: out of memory", cfg);
    }
    free(text);
    return rc;
}

int xd_tokenizer_save_json(const xd_tokenizer *t, const char *path) {
    if (!t || !path) return xd_err("xd_tokenizer_save_json: no tokenizer or path");
    const char *pre = xd_tokenizer_pre(t);
    const char *canon = canonical_pre(pre);
    if (!canon)
        return xd_err("%s: pre-tokenizer '%s' has no tokenizer.json form (supported: gpt2, smollm, "
                      "llama3, dbrx, qwen2 and their llama.cpp aliases)", path, pre);
    int rc = -1;
    char *text = NULL;
    json_t *vocab = json_object(), *added = json_array(), *merges = NULL, *root = NULL;
    if (!vocab || !added) {
        xd_err("%s: out of memory", path);
        goto done;
    }
    if (build_vocab(t, path, vocab, added) || !(merges = merges_json(t, path))) goto done;
    root = json_pack("{s:s, s:n, s:n, s:O, s:n, s:o, s:o, s:o, "
                     "s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}}",
                     "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                     "pre_tokenizer", pre_tokenizer(canon), "post_processor", post_processor(t),
                     "decoder", byte_level(1, 1, 1),
                     "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
                     "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges",
                     !strcmp(canon, "llama3"), "vocab", vocab, "merges", merges);
    if (!root) {
        xd_err("%s: out of memory building tokenizer.json", path);
        goto done;
    }
    /* insertion order is kept, so the vocabulary comes out in id order */
    text = json_dumps(root, JSON_INDENT(2));
    if (!text) {
        xd_err("%s: out of memory formatting tokenizer.json", path);
        goto done;
    }
    if (xd_write_file_atomic(path, text, strlen(text)) || write_config(t, path)) goto done;
    rc = 0;
done:
    free(text);
    json_decref(root);
    json_decref(vocab);
    json_decref(added);
    json_decref(merges);
    return rc;
}
