/* GGUF front-end of the tokenizer: checks tokenizer.ggml.* and fills an
 * xd_tokenizer_spec. Strings in the mapping are not NUL-terminated, so they
 * are copied into one buffer first. */
#include "io/tokenizer_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* NUL-terminated copies of a string array, all in one allocation. */
typedef struct {
    char *buf;
    const char **ptrs;
} str_table;

static void str_table_free(str_table *s) {
    free(s->buf);
    free(s->ptrs);
}

/* Looks up a string array; on a missing key returns 0 with *n = 0 when
 * optional, else fails. */
static int get_str_array(const gguf_file *g, const char *key, int optional, str_table *out, int *n) {
    const gguf_kv *kv = xd_gguf_find(g, key);
    *n = 0;
    if (!kv) {
        if (optional) return 0;
        return xd_err("%s: %s: missing (expected an array of strings)", g->path, key);
    }
    if (kv->type != GGUF_T_ARRAY || kv->arr_type != GGUF_T_STRING)
        return xd_err("%s: %s: is %s%s%s, expected an array of strings", g->path, key,
                      xd_gguf_type_name(kv->type), kv->type == GGUF_T_ARRAY ? " of " : "",
                      kv->type == GGUF_T_ARRAY ? xd_gguf_type_name(kv->arr_type) : "");
    if (kv->arr_n > (uint64_t)(INT32_MAX / 4))
        return xd_err("%s: %s: %llu entries, too many", g->path, key, (unsigned long long)kv->arr_n);
    uint64_t total = 0;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const gguf_str *s = &kv->arr_strs[i];
        if (memchr(s->ptr, 0, s->len))
            return xd_err("%s: %s[%llu]: contains a NUL byte", g->path, key, (unsigned long long)i);
        total += s->len + 1;
    }
    out->buf = malloc(total ? total : 1);
    out->ptrs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof(char *));
    if (!out->buf || !out->ptrs) {
        str_table_free(out);
        return xd_err("%s: %s: out of memory", g->path, key);
    }
    char *p = out->buf;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const gguf_str *s = &kv->arr_strs[i];
        memcpy(p, s->ptr, s->len);
        p[s->len] = 0;
        out->ptrs[i] = p;
        p += s->len + 1;
    }
    *n = (int)kv->arr_n;
    return 0;
}

/* tokenizer.ggml.token_type: int32 per token, 0..6. */
static int get_token_types(const gguf_file *g, int n_tokens, int **out) {
    const char *key = "tokenizer.ggml.token_type";
    const gguf_kv *kv = xd_gguf_find(g, key);
    *out = NULL;
    if (!kv) return 0; /* all normal */
    if (kv->type != GGUF_T_ARRAY || (kv->arr_type != GGUF_T_INT32 && kv->arr_type != GGUF_T_UINT32))
        return xd_err("%s: %s: is %s, expected an array of int32", g->path, key,
                      kv->type == GGUF_T_ARRAY ? xd_gguf_type_name(kv->arr_type) : xd_gguf_type_name(kv->type));
    if (kv->arr_n < (uint64_t)n_tokens)
        return xd_err("%s: %s: %llu entries, expected one per token (%d)", g->path, key,
                      (unsigned long long)kv->arr_n, n_tokens);
    int *types = malloc((size_t)n_tokens * sizeof(int));
    if (!types) return xd_err("%s: %s: out of memory", g->path, key);
    for (int i = 0; i < n_tokens; i++) {
        int32_t v;
        memcpy(&v, kv->arr_data + 4 * (size_t)i, 4); /* the mapping may be unaligned */
        if (v < 0 || v > XD_TOKEN_BYTE) {
            free(types);
            return xd_err("%s: %s[%d]: expected a token type 0..6, got %d", g->path, key, i, v);
        }
        types[i] = v;
    }
    *out = types;
    return 0;
}

/* Optional token id: -1 if absent, error if out of range. */
static int get_token_id(const gguf_file *g, const char *key, int n_tokens, int *out) {
    uint64_t v = UINT64_MAX;
    *out = -1;
    if (xd_gguf_opt_u64(g, key, &v)) return -1;
    if (v == UINT64_MAX) return 0;
    if (v >= (uint64_t)n_tokens)
        return xd_err("%s: %s: token id %llu out of range [0, %d)", g->path, key,
                      (unsigned long long)v, n_tokens);
    *out = (int)v;
    return 0;
}

xd_tokenizer *xd_tokenizer_from_gguf_pre(const gguf_file *g, const char *pre_override) {
    gguf_str model, pre_s;
    char pre[128] = "default";
    str_table tokens = {0}, merges = {0};
    int *types = NULL, n_tokens = 0, n_merges = 0, bos, eos;
    uint64_t add_bos = 0;
    xd_tokenizer *t = NULL;

    if (xd_gguf_get_str(g, "tokenizer.ggml.model", &model)) return NULL;
    if (!xd_gguf_str_eq(model, "gpt2")) {
        char m[64];
        xd_gguf_str_copy(model, m, sizeof m);
        xd_err("%s: tokenizer.ggml.model: '%s' is not supported (expected \"gpt2\", a byte-level BPE)",
               g->path, m);
        return NULL;
    }
    if (xd_gguf_find(g, "tokenizer.ggml.pre")) {
        if (xd_gguf_get_str(g, "tokenizer.ggml.pre", &pre_s)) return NULL;
        xd_gguf_str_copy(pre_s, pre, sizeof pre);
    }
    if (pre_override) snprintf(pre, sizeof pre, "%s", pre_override);

    if (get_str_array(g, "tokenizer.ggml.tokens", 0, &tokens, &n_tokens)) goto done;
    if (n_tokens == 0) {
        xd_err("%s: tokenizer.ggml.tokens: empty (expected the vocabulary)", g->path);
        goto done;
    }
    if (get_token_types(g, n_tokens, &types)) goto done;
    if (get_str_array(g, "tokenizer.ggml.merges", 0, &merges, &n_merges)) goto done;
    if (get_token_id(g, "tokenizer.ggml.bos_token_id", n_tokens, &bos) ||
        get_token_id(g, "tokenizer.ggml.eos_token_id", n_tokens, &eos) ||
        xd_gguf_opt_u64(g, "tokenizer.ggml.add_bos_token", &add_bos))
        goto done;

    xd_tokenizer_spec spec = {
        .n_tokens = n_tokens, .tokens = tokens.ptrs, .token_types = types,
        .n_merges = n_merges, .merges = merges.ptrs, .pre = pre,
        .bos_id = bos, .eos_id = eos, .add_bos = add_bos != 0, .source = g->path,
    };
    t = xd_tokenizer_create(&spec);
done:
    str_table_free(&tokens);
    str_table_free(&merges);
    free(types);
    return t;
}

xd_tokenizer *xd_tokenizer_from_gguf(const gguf_file *g) { return xd_tokenizer_from_gguf_pre(g, NULL); }
