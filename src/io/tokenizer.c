/* Byte-level BPE tokenizer (GPT-2 family), matching llama.cpp's output.
 *
 * encode(text):
 *   1. special/added tokens written literally in the text are split out first,
 *      longest token first, each one over every remaining raw fragment (this is
 *      llama.cpp's order; USER_DEFINED tokens are split out even when
 *      parse_special is off, CONTROL and UNKNOWN ones only when it is on);
 *   2. each raw fragment: invalid UTF-8 becomes U+FFFD, then the
 *      pre-tokenizer's regexes run in sequence, each splitting every piece of
 *      the previous stage into its matches and the gaps between them;
 *   3. each final piece (a "word"): its bytes become GPT-2 byte-level
 *      characters, one symbol per byte, and adjacent symbols are merged
 *      lowest merge rank first (leftmost on ties) using a binary heap;
 *   4. the symbols are looked up in the vocabulary.
 *
 * Strings are interned: every vocabulary entry, merge part and merge result
 * gets a symbol id (vocabulary entries keep their token id, the others get ids
 * >= n_tokens), so the merge loop compares integers, never strings. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/mem.h"
#include "xdistill.h"
#include "io/tokenizer_internal.h"

/* ---- pre-tokenizer regexes ------------------------------------------------ */

/* llama.cpp's notion of whitespace (the Unicode White_Space property); spelt
 * out because PCRE2's \s does not include U+0085 under every option set. */
#define WS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
           "\\x{202F}\\x{205F}\\x{3000}"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* Llama-3 (cl100k): contractions case-insensitive, numbers in groups of 3 */
static const char RE_LLAMA3[] =
    "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* Qwen2: as Llama-3 but single digits */
static const char RE_QWEN2[] =
    "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char RE_DIGIT[] = "\\p{N}";
static const char RE_NUMBERS[] = "\\p{N}+";
static const char RE_PUNCT[] = "[\\p{P}$+<=>^~|]+";
static const char RE_DIGITS3[] = "[0-9][0-9][0-9]";

#define MAX_STAGES 4

typedef struct {
    const char *name;
    const char *stages[MAX_STAGES]; /* NULL-terminated */
    int ignore_merges;              /* a word that is itself a token skips the merges */
} pre_kind;

/* Names as llama.cpp spells them in tokenizer.ggml.pre. "default" is
 * llama.cpp's fallback sequence, not plain GPT-2. */
static const pre_kind PRE_KINDS[] = {
    {"gpt2", {RE_GPT2}, 0},
    {"gpt-2", {RE_GPT2}, 0},
    {"olmo", {RE_GPT2}, 0},
    {"mpt", {RE_GPT2}, 0},
    {"default", {RE_PUNCT, RE_GPT2, RE_NUMBERS, RE_DIGITS3}, 0},
    {"smollm", {RE_DIGIT, RE_GPT2}, 0},
    {"starcoder", {RE_DIGIT, RE_GPT2}, 0},
    {"refact", {RE_DIGIT, RE_GPT2}, 0},
    {"codeshell", {RE_DIGIT, RE_GPT2}, 0},
    {"llama3", {RE_LLAMA3}, 1},
    {"llama-v3", {RE_LLAMA3}, 1},
    {"llama-bpe", {RE_LLAMA3}, 1},
    {"falcon3", {RE_LLAMA3}, 1},
    {"dbrx", {RE_LLAMA3}, 0},
    {"smaug-bpe", {RE_LLAMA3}, 0},
    {"qwen2", {RE_QWEN2}, 0},
    {"deepseek-r1-qwen", {RE_QWEN2}, 0},
    {"stablelm2", {RE_QWEN2}, 0},
    {"megrez", {RE_QWEN2}, 0},
};

static const pre_kind *find_pre(const char *name) {
    for (size_t i = 0; i < sizeof PRE_KINDS / sizeof PRE_KINDS[0]; i++)
        if (strcmp(PRE_KINDS[i].name, name) == 0) return &PRE_KINDS[i];
    return NULL;
}

/* ---- the tokenizer ------------------------------------------------------- */

typedef struct {
    uint32_t off, len; /* into the arena */
} span;

typedef struct {
    int32_t left, right; /* symbol ids; left == -1: empty slot */
    int32_t rank, result;
} merge_slot;

struct xd_tokenizer {
    int n_tokens;
    uint8_t *types;

    /* interned strings, NUL-terminated in the arena */
    char *arena;
    size_t arena_len, arena_cap;
    span *syms;
    int n_syms;
    int32_t *str_slots; /* open addressing: symbol id or -1 */
    uint32_t str_mask;

    merge_slot *merges; /* open addressing on (left, right) */
    uint32_t merge_mask;
    int n_merges;

    /* GPT-2 byte-level mapping */
    char byte_chr[256][2];  /* UTF-8 of the character standing for each byte */
    uint8_t byte_chr_len[256];
    int16_t cpt_byte[324];  /* character (code point < 324) -> byte, or -1 */
    int32_t byte_sym[256];  /* symbol of each byte's character, or -1 */
    int32_t single_tok[256]; /* token whose text is exactly this one byte, or -1 */

    /* decoded bytes of each token */
    char *dec;
    span *dec_span;

    int32_t *specials; /* CONTROL / USER_DEFINED / UNKNOWN ids, longest text first */
    int n_specials;

    pcre2_code *re[MAX_STAGES];
    int n_re;
    int ignore_merges;

    char pre[64];
    int bos, eos, add_bos;
    uint64_t hash;
};

/* ---- hashing --------------------------------------------------------------- */

static uint32_t mix_pair(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- interned strings ---------------------------------------------------- */

static const char *sym_text(const xd_tokenizer *t, int32_t s) { return t->arena + t->syms[s].off; }

/* Slot holding string s[0..n) or the empty slot where it would go. */
static uint32_t str_slot(const xd_tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)xd_fnv1a64(XD_FNV1A64_INIT, s, n) & t->str_mask;
    for (;;) {
        int32_t id = t->str_slots[i];
        if (id < 0) return i;
        if (t->syms[id].len == n && memcmp(sym_text(t, id), s, n) == 0) return i;
        i = (i + 1) & t->str_mask;
    }
}

static int32_t str_find(const xd_tokenizer *t, const char *s, size_t n) {
    return t->str_slots[str_slot(t, s, n)];
}

/* Appends s to the arena as a new symbol (capacity is reserved up front). */
static int32_t sym_push(xd_tokenizer *t, const char *s, size_t n) {
    int32_t id = t->n_syms++;
    t->syms[id].off = (uint32_t)t->arena_len;
    t->syms[id].len = (uint32_t)n;
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    t->arena_len += n + 1;
    return id;
}

/* Symbol id of s, adding it if new. */
static int32_t str_intern(xd_tokenizer *t, const char *s, size_t n) {
    uint32_t slot = str_slot(t, s, n);
    if (t->str_slots[slot] < 0) t->str_slots[slot] = sym_push(t, s, n);
    return t->str_slots[slot];
}

/* ---- merges -------------------------------------------------------------- */

static const merge_slot *merge_find(const xd_tokenizer *t, int32_t a, int32_t b) {
    uint32_t i = mix_pair(a, b) & t->merge_mask;
    for (;;) {
        const merge_slot *m = &t->merges[i];
        if (m->left < 0) return NULL;
        if (m->left == a && m->right == b) return m;
        i = (i + 1) & t->merge_mask;
    }
}

/* Records a merge; the first occurrence of a pair keeps its rank. */
static void merge_add(xd_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    uint32_t i = mix_pair(a, b) & t->merge_mask;
    while (t->merges[i].left >= 0) {
        if (t->merges[i].left == a && t->merges[i].right == b) return;
        i = (i + 1) & t->merge_mask;
    }
    t->merges[i] = (merge_slot){a, b, rank, result};
}

/* "left right", split at the first space after the first byte (as llama.cpp). */
static int add_merge_line(xd_tokenizer *t, const char *m, int rank, char **tmp, size_t *tmp_cap) {
    size_t n = strlen(m);
    const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
    if (!sp) return 0; /* llama.cpp keeps such a line as an unusable pair */
    size_t nl = (size_t)(sp - m), nr = n - nl - 1;
    if (nr == 0) return 0;
    if (n > *tmp_cap) {
        char *p = realloc(*tmp, n);
        if (!p) return -1;
        *tmp = p;
        *tmp_cap = n;
    }
    int32_t a = str_intern(t, m, nl), b = str_intern(t, sp + 1, nr);
    memcpy(*tmp, m, nl);
    memcpy(*tmp + nl, sp + 1, nr);
    int32_t r = str_intern(t, *tmp, nl + nr);
    merge_add(t, a, b, rank, r);
    return 0;
}

/* ---- byte-level mapping -------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes take code points 256, 257, ... in byte order. */
static void init_byte_map(xd_tokenizer *t) {
    int next = 256;
    for (int i = 0; i < 324; i++) t->cpt_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = printable ? b : next++;
        t->cpt_byte[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->byte_chr[b][0] = (char)cp;
            t->byte_chr_len[b] = 1;
        } else {
            t->byte_chr[b][0] = (char)(0xC0 | (cp >> 6));
            t->byte_chr[b][1] = (char)(0x80 | (cp & 0x3F));
            t->byte_chr_len[b] = 2;
        }
    }
}

/* Lenient UTF-8 decode of one code point at s[i..n), as llama.cpp does it (no
 * overlong or surrogate checks). Returns the length, or 0 if invalid. */
static size_t utf8_decode_lenient(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
    uint8_t b = s[i];
    if (b < 0x80) { *cp = b; return 1; }
    size_t len = (b & 0x40) == 0 ? 0 : (b & 0x20) == 0 ? 2 : (b & 0x10) == 0 ? 3 : (b & 0x08) == 0 ? 4 : 0;
    if (len == 0 || i + len > n) return 0;
    uint32_t c = b & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i + k] & 0x3F);
    }
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Strict check (what PCRE2 accepts): no overlongs, surrogates or > U+10FFFF. */
static int utf8_is_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t c;
        size_t len = utf8_decode_lenient(s, n, i, &c);
        if (len == 0) return 0;
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* Rewrites s into out (capacity 3n) the way llama.cpp reads it: undecodable
 * bytes become U+FFFD one at a time and overlong forms are re-encoded.
 * Surrogates are kept (as llama.cpp does; *has_surrogates is set); code
 * points past U+10FFFF become U+FFFD (llama.cpp throws on them). */
static size_t utf8_repair(const uint8_t *s, size_t n, char *out, int *has_surrogates) {
    size_t i = 0, o = 0;
    *has_surrogates = 0;
    while (i < n) {
        uint32_t c;
        size_t len = utf8_decode_lenient(s, n, i, &c);
        if (len == 0) { c = 0xFFFD; len = 1; }
        if (c > 0x10FFFF) c = 0xFFFD;
        if (c >= 0xD800 && c <= 0xDFFF) *has_surrogates = 1;
        o += utf8_encode(c, out + o);
        i += len;
    }
    return o;
}

/* Byte-level text -> bytes. Characters outside the map are copied as-is. */
static size_t byte_level_decode(const xd_tokenizer *t, const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t c;
        size_t len = utf8_decode_lenient((const uint8_t *)s, n, i, &c);
        if (len == 0) {
            out[o++] = s[i++];
            continue;
        }
        if (c < 324 && t->cpt_byte[c] >= 0) out[o++] = (char)t->cpt_byte[c];
        else { memcpy(out + o, s + i, len); o += len; }
        i += len;
    }
    return o;
}

/* ---- construction -------------------------------------------------------- */

void xd_tokenizer_free(xd_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->types);
    free(t->arena);
    free(t->syms);
    free(t->str_slots);
    free(t->merges);
    free(t->dec);
    free(t->dec_span);
    free(t->specials);
    free(t);
}

static int compile_stages(xd_tokenizer *t, const pre_kind *k, const char *src) {
    uint32_t has_jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
    for (int i = 0; i < MAX_STAGES && k->stages[i]; i++) {
        int code;
        PCRE2_SIZE at;
        t->re[i] = pcre2_compile((PCRE2_SPTR)k->stages[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof msg);
            return xd_err("%s: tokenizer.ggml.pre: regex for '%s' failed to compile at %zu: %s", src,
                          k->name, (size_t)at, (const char *)msg);
        }
        t->n_re = i + 1;
        if (has_jit) pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    }
    return 0;
}

/* Specials are tried longest text first; ties by id for determinism. */
typedef struct {
    uint32_t len;
    int32_t id;
} len_id;

static int cmp_len_id(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int collect_specials(xd_tokenizer *t) {
    len_id *tmp = malloc((size_t)t->n_tokens * sizeof(len_id));
    t->specials = malloc((size_t)t->n_tokens * sizeof(int32_t));
    if (!tmp || !t->specials) { free(tmp); return -1; }
    int n = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        int ty = t->types[i];
        if (ty == XD_TOKEN_CONTROL || ty == XD_TOKEN_USER || ty == XD_TOKEN_UNKNOWN)
            tmp[n++] = (len_id){t->syms[i].len, i};
    }
    qsort(tmp, (size_t)n, sizeof(len_id), cmp_len_id);
    for (int i = 0; i < n; i++) t->specials[i] = tmp[i].id;
    t->n_specials = n;
    free(tmp);
    return 0;
}

static int validate_spec(const xd_tokenizer_spec *s, const char *src) {
    if (s->n_tokens <= 0 || !s->tokens)
        return xd_err("%s: tokens: expected a non-empty vocabulary, got %d entries", src, s->n_tokens);
    if (s->n_merges < 0 || (s->n_merges > 0 && !s->merges))
        return xd_err("%s: merges: expected an array of %d strings", src, s->n_merges);
    uint64_t bytes = 0;
    for (int i = 0; i < s->n_tokens; i++) {
        if (!s->tokens[i]) return xd_err("%s: tokens[%d]: expected a string, got NULL", src, i);
        bytes += strlen(s->tokens[i]) + 32;
        if (s->token_types && (s->token_types[i] < 0 || s->token_types[i] > XD_TOKEN_BYTE))
            return xd_err("%s: token_type[%d]: expected 0..6, got %d", src, i, s->token_types[i]);
    }
    for (int i = 0; i < s->n_merges; i++) {
        if (!s->merges[i]) return xd_err("%s: merges[%d]: expected a string, got NULL", src, i);
        bytes += 2 * strlen(s->merges[i]) + 4;
    }
    if (bytes > UINT32_MAX) return xd_err("%s: tokens: vocabulary too large (%llu bytes)", src,
                                          (unsigned long long)bytes);
    if (s->bos_id < -1 || s->bos_id >= s->n_tokens)
        return xd_err("%s: bos_token_id: %d out of range [0, %d)", src, s->bos_id, s->n_tokens);
    if (s->eos_id < -1 || s->eos_id >= s->n_tokens)
        return xd_err("%s: eos_token_id: %d out of range [0, %d)", src, s->eos_id, s->n_tokens);
    return 0;
}

static uint64_t spec_hash(const xd_tokenizer_spec *s, const char *pre) {
    uint64_t h = XD_FNV1A64_INIT;
    for (int i = 0; i < s->n_tokens; i++) h = xd_fnv1a64(h, s->tokens[i], strlen(s->tokens[i]) + 1);
    for (int i = 0; i < s->n_tokens; i++) {
        uint8_t ty = s->token_types ? (uint8_t)s->token_types[i] : XD_TOKEN_NORMAL;
        h = xd_fnv1a64(h, &ty, 1);
    }
    for (int i = 0; i < s->n_merges; i++) h = xd_fnv1a64(h, s->merges[i], strlen(s->merges[i]) + 1);
    return xd_fnv1a64(h, pre, strlen(pre) + 1);
}

/* Interns the vocabulary: token i gets symbol id i; for duplicate texts the
 * later id wins lookups (llama.cpp's token_to_id). */
static void intern_vocab(xd_tokenizer *t, const xd_tokenizer_spec *s) {
    char empty[32];
    for (int i = 0; i < s->n_tokens; i++) {
        const char *w = s->tokens[i];
        if (!*w) { /* llama.cpp renames empty tokens */
            snprintf(empty, sizeof empty, "[EMPTY_%d]", i);
            w = empty;
        }
        size_t n = strlen(w);
        uint32_t slot = str_slot(t, w, n);
        t->str_slots[slot] = sym_push(t, w, n);
    }
}

/* Decoded bytes of every token: NORMAL (and other plain) tokens through the
 * byte-level map, CONTROL / USER_DEFINED / UNKNOWN tokens verbatim. */
static int build_decoded(xd_tokenizer *t) {
    size_t total = 0;
    for (int i = 0; i < t->n_tokens; i++) total += t->syms[i].len;
    t->dec = malloc(total + 1);
    t->dec_span = malloc((size_t)t->n_tokens * sizeof(span));
    if (!t->dec || !t->dec_span) return -1;
    size_t o = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        const char *w = sym_text(t, i);
        size_t n = t->syms[i].len, m;
        int ty = t->types[i];
        if (ty == XD_TOKEN_CONTROL || ty == XD_TOKEN_USER || ty == XD_TOKEN_UNKNOWN) {
            memcpy(t->dec + o, w, n);
            m = n;
        } else {
            m = byte_level_decode(t, w, n, t->dec + o);
        }
        t->dec_span[i] = (span){(uint32_t)o, (uint32_t)m};
        o += m;
    }
    return 0;
}

xd_tokenizer *xd_tokenizer_create(const xd_tokenizer_spec *spec) {
    if (!spec) { xd_err("tokenizer: no spec given"); return NULL; }
    const char *src = spec->source ? spec->source : "<tokenizer>";
    const char *pre = spec->pre && *spec->pre ? spec->pre : "default";
    if (validate_spec(spec, src)) return NULL;
    const pre_kind *kind = find_pre(pre);
    if (!kind) {
        xd_err("%s: tokenizer.ggml.pre: unknown pre-tokenizer '%s' (supported: gpt2, default, "
               "smollm, llama3/llama-bpe, dbrx, qwen2 and their llama.cpp aliases)", src, pre);
        return NULL;
    }

    xd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->n_tokens = spec->n_tokens;
    t->n_merges = spec->n_merges;
    t->bos = spec->bos_id;
    t->eos = spec->eos_id;
    t->add_bos = spec->add_bos;
    t->ignore_merges = kind->ignore_merges;
    snprintf(t->pre, sizeof t->pre, "%s", pre);
    t->hash = spec_hash(spec, pre);

    /* reserve everything up front: each merge adds at most three strings */
    size_t arena = 0;
    for (int i = 0; i < spec->n_tokens; i++) arena += strlen(spec->tokens[i]) + 24;
    for (int i = 0; i < spec->n_merges; i++) arena += 2 * strlen(spec->merges[i]) + 3;
    uint64_t max_syms = (uint64_t)spec->n_tokens + 3 * (uint64_t)spec->n_merges;
    if (max_syms > (1u << 28)) {
        xd_err("%s: tokens: vocabulary too large (%d tokens, %d merges)", src, spec->n_tokens,
               spec->n_merges);
        return NULL;
    }
    t->arena_cap = arena + 1;
    uint32_t str_cap = pow2_at_least(2 * max_syms), merge_cap = pow2_at_least(2 * (uint64_t)spec->n_merges);
    t->str_mask = str_cap - 1;
    t->merge_mask = merge_cap - 1;
    t->arena = malloc(t->arena_cap);
    t->syms = malloc(max_syms * sizeof(span));
    t->str_slots = malloc(str_cap * sizeof(int32_t));
    t->merges = malloc(merge_cap * sizeof(merge_slot));
    t->types = malloc((size_t)spec->n_tokens);
    if (!t->arena || !t->syms || !t->str_slots || !t->merges || !t->types) goto oom;
    memset(t->str_slots, 0xFF, str_cap * sizeof(int32_t));
    for (uint32_t i = 0; i < merge_cap; i++) t->merges[i].left = -1;
    for (int i = 0; i < spec->n_tokens; i++)
        t->types[i] = (uint8_t)(spec->token_types ? spec->token_types[i] : XD_TOKEN_NORMAL);

    intern_vocab(t, spec);
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (int i = 0; i < spec->n_merges; i++)
        if (add_merge_line(t, spec->merges[i], i, &tmp, &tmp_cap)) { free(tmp); goto oom; }
    free(tmp);

    init_byte_map(t);
    for (int b = 0; b < 256; b++) {
        t->byte_sym[b] = str_find(t, t->byte_chr[b], t->byte_chr_len[b]);
        char c = (char)b;
        int32_t s = str_find(t, &c, 1);
        t->single_tok[b] = s < t->n_tokens ? s : -1;
    }
    if (build_decoded(t)) goto oom;

    if (collect_specials(t)) goto oom;
    if (compile_stages(t, kind, src)) { xd_tokenizer_free(t); return NULL; }
    return t;
oom:
    xd_tokenizer_free(t);
    xd_err("%s: out of memory building the tokenizer", src);
    return NULL;
}

/* ---- encoding ------------------------------------------------------------ */

typedef struct {
    int32_t sym;        /* symbol id, -1 unknown character, -2 merged away */
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    uint32_t start, end; /* raw bytes of the word it covers */
} bpe_symbol;

typedef struct {
    int32_t rank, left, right; /* merge rank and positions of the pair */
    int32_t lsym, rsym, result;
} bpe_pair;

typedef struct {
    int32_t *ids;
    size_t n_ids, cap_ids;
    bpe_symbol *syms;
    size_t cap_syms;
    bpe_pair *heap;
    size_t n_heap, cap_heap;
    char *buf; /* byte-level text of a word */
    size_t cap_buf;
    pcre2_match_data *md;
} encoder;

static int push_id(encoder *e, int32_t id) {
    if (e->n_ids == e->cap_ids && xd_grow((void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof(int32_t)))
        return -1;
    e->ids[e->n_ids++] = id;
    return 0;
}

/* Heap ordered by (rank, left position): llama.cpp's merge order. */
static int pair_less(const bpe_pair *a, const bpe_pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(encoder *e, bpe_pair p) {
    if (xd_grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof(bpe_pair))) return -1;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_less(&p, &e->heap[up])) break;
        e->heap[i] = e->heap[up];
        i = up;
    }
    e->heap[i] = p;
    return 0;
}

static bpe_pair heap_pop(encoder *e) {
    bpe_pair top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) if the merges know it. */
static int queue_pair(const xd_tokenizer *t, encoder *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    int32_t a = e->syms[left].sym, b = e->syms[right].sym;
    if (a < 0 || b < 0) return 0;
    const merge_slot *m = merge_find(t, a, b);
    if (!m) return 0;
    return heap_push(e, (bpe_pair){m->rank, left, right, a, b, m->result});
}

/* Emits a finished symbol. A string that is not a token falls back to the
 * single-byte tokens of its byte-level text, skipping bytes with none (this
 * is llama.cpp's behaviour; it never happens with a complete vocabulary). */
static int emit_symbol(const xd_tokenizer *t, encoder *e, int32_t sym, const uint8_t *raw, size_t n) {
    if (sym >= 0 && sym < t->n_tokens) return push_id(e, sym);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < t->byte_chr_len[raw[i]]; k++) {
            int32_t id = t->single_tok[(uint8_t)t->byte_chr[raw[i]][k]];
            if (id >= 0 && push_id(e, id)) return -1;
        }
    return 0;
}

static int bpe_word(const xd_tokenizer *t, encoder *e, const uint8_t *w, size_t n) {
    if (n == 1) return emit_symbol(t, e, t->byte_sym[w[0]], w, 1);
    if (n > INT32_MAX / 2) return xd_err("tokenizer: word of %zu bytes is too long", n);
    if (t->ignore_merges) {
        if (xd_grow((void **)&e->buf, &e->cap_buf, 2 * n, 1)) return -1;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(e->buf + m, t->byte_chr[w[i]], t->byte_chr_len[w[i]]);
            m += t->byte_chr_len[w[i]];
        }
        int32_t s = str_find(t, e->buf, m);
        if (s >= 0 && s < t->n_tokens) return push_id(e, s);
    }
    if (xd_grow((void **)&e->syms, &e->cap_syms, n, sizeof(bpe_symbol))) return -1;
    for (size_t i = 0; i < n; i++)
        e->syms[i] = (bpe_symbol){t->byte_sym[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1,
                                  (uint32_t)i, (uint32_t)i + 1};
    e->n_heap = 0;
    for (size_t i = 1; i < n; i++)
        if (queue_pair(t, e, (int32_t)i - 1, (int32_t)i)) return -1;

    while (e->n_heap) {
        bpe_pair p = heap_pop(e);
        bpe_symbol *L = &e->syms[p.left], *R = &e->syms[p.right];
        /* stale: one side has merged with something else since queuing */
        if (L->sym != p.lsym || R->sym != p.rsym || L->next != p.right) continue;
        L->sym = p.result;
        L->end = R->end;
        L->next = R->next;
        if (R->next >= 0) e->syms[R->next].prev = p.left;
        R->sym = -2;
        if (queue_pair(t, e, L->prev, p.left) || queue_pair(t, e, p.left, L->next)) return -1;
    }
    for (int32_t i = 0; i >= 0; i = e->syms[i].next) {
        const bpe_symbol *s = &e->syms[i];
        if (emit_symbol(t, e, s->sym, w + s->start, s->end - s->start)) return -1;
    }
    return 0;
}

/* Splits s[0..n) with stage k's regex; matches and the gaps between them go
 * on to stage k+1, and after the last stage to BPE. The piece is the whole
 * subject, so lookarounds see its ends as the text's ends (as in llama.cpp).
 * raw holds the bytes to encode, aligned with s (they differ only where s
 * has a stand-in for a surrogate, which PCRE2 cannot take). */
static int split_stage(const xd_tokenizer *t, encoder *e, int k, const char *s, const char *raw,
                       size_t n) {
    if (k == t->n_re) return bpe_word(t, e, (const uint8_t *)raw, n);
    size_t gap = 0, from = 0;
    while (from < n) {
        int rc = pcre2_match(t->re[k], (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return xd_err("tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: step over one character */
            from = a + 1;
            while (from < n && ((uint8_t)s[from] & 0xC0) == 0x80) from++;
            continue;
        }
        if (a > gap && split_stage(t, e, k + 1, s + gap, raw + gap, a - gap)) return -1;
        if (split_stage(t, e, k + 1, s + a, raw + a, b - a)) return -1;
        gap = from = b;
    }
    if (n > gap && split_stage(t, e, k + 1, s + gap, raw + gap, n - gap)) return -1;
    return 0;
}

/* Plain text (no special tokens in it). */
static int encode_fragment(const xd_tokenizer *t, encoder *e, const char *s, size_t n) {
    if (n == 0) return 0;
    if (utf8_is_valid((const uint8_t *)s, n)) return split_stage(t, e, 0, s, s, n);
    if (n > SIZE_MAX / 6) return xd_err("tokenizer: text too long");
    int surrogates;
    char *fixed = malloc(6 * n); /* repaired text, then its copy for the regexes */
    if (!fixed) return xd_err("tokenizer: out of memory");
    size_t m = utf8_repair((const uint8_t *)s, n, fixed, &surrogates);
    char *split = fixed;
    if (surrogates) {
        /* the regexes see U+E000 (private use, also 3 bytes) in place of a
         * surrogate: neither is a letter, number or space */
        split = fixed + m;
        memcpy(split, fixed, m);
        for (size_t i = 0; i + 2 < m; i++)
            if ((uint8_t)split[i] == 0xED && (uint8_t)split[i + 1] >= 0xA0) {
                split[i] = (char)0xEE;
                split[i + 1] = (char)0x80;
                split[i + 2] = (char)0x80;
                i += 2;
            }
    }
    int rc = split_stage(t, e, 0, split, fixed, m);
    free(fixed);
    return rc;
}

typedef struct {
    size_t off, len;
    int32_t tok; /* -1: raw text */
} fragment;

/* Splits every raw fragment at each occurrence of special token id. */
static int split_special(const xd_tokenizer *t, const char *text, fragment **frags, size_t *n,
                         size_t *cap, fragment **tmp, size_t *tmp_cap, int32_t id) {
    const char *tok = sym_text(t, id);
    size_t tl = t->syms[id].len, m = 0;
    for (size_t i = 0; i < *n; i++) {
        fragment f = (*frags)[i];
        size_t pos = f.off, end = f.off + f.len;
        const char *hit;
        while (f.tok < 0 && pos < end && (hit = memmem(text + pos, end - pos, tok, tl))) {
            size_t at = (size_t)(hit - text);
            if (xd_grow((void **)tmp, tmp_cap, m + 2, sizeof(fragment))) return -1;
            if (at > pos) (*tmp)[m++] = (fragment){pos, at - pos, -1};
            (*tmp)[m++] = (fragment){at, tl, id};
            pos = at + tl;
        }
        if (xd_grow((void **)tmp, tmp_cap, m + 1, sizeof(fragment))) return -1;
        if (f.tok >= 0) (*tmp)[m++] = f;
        else if (end > pos) (*tmp)[m++] = (fragment){pos, end - pos, -1};
    }
    /* swap buffers */
    fragment *p = *frags;
    size_t c = *cap;
    *frags = *tmp;
    *cap = *tmp_cap;
    *tmp = p;
    *tmp_cap = c;
    *n = m;
    return 0;
}

int xd_tokenizer_encode(const xd_tokenizer *t, const char *text, size_t len, int parse_special,
                        int32_t **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len)) return xd_err("tokenizer: encode: invalid arguments");
    *ids = NULL;
    *n_ids = 0;
    encoder e = {0};
    fragment *frags = NULL, *tmp = NULL;
    size_t n_frags = 0, cap_frags = 0, cap_tmp = 0;
    int rc = -1;
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) {
        xd_err("tokenizer: out of memory");
        goto done;
    }
    if (xd_grow((void **)&frags, &cap_frags, 1, sizeof(fragment))) goto done;
    if (len) frags[n_frags++] = (fragment){0, len, -1};

    for (int i = 0; i < t->n_specials && n_frags; i++) {
        int32_t id = t->specials[i];
        if (!parse_special && t->types[id] != XD_TOKEN_USER) continue;
        if (split_special(t, text, &frags, &n_frags, &cap_frags, &tmp, &cap_tmp, id)) goto done;
    }
    for (size_t i = 0; i < n_frags; i++) {
        if (frags[i].tok >= 0 ? push_id(&e, frags[i].tok)
                              : encode_fragment(t, &e, text + frags[i].off, frags[i].len))
            goto done;
    }
    if (!e.ids && xd_grow((void **)&e.ids, &e.cap_ids, 1, sizeof(int32_t))) goto done;
    *ids = e.ids;
    *n_ids = e.n_ids;
    e.ids = NULL;
    rc = 0;
done:
    pcre2_match_data_free(e.md);
    free(e.ids);
    free(e.syms);
    free(e.heap);
    free(e.buf);
    free(frags);
    free(tmp);
    return rc;
}

/* ---- decoding and accessors ----------------------------------------------- */

int xd_tokenizer_decode(const xd_tokenizer *t, const int32_t *ids, size_t n_ids, char **text,
                        size_t *len) {
    if (!t || !text || (!ids && n_ids)) return xd_err("tokenizer: decode: invalid arguments");
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens)
            return xd_err("tokenizer: decode: ids[%zu] = %d out of range [0, %d)", i, ids[i],
                          t->n_tokens);
        total += t->dec_span[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) return xd_err("tokenizer: decode: out of memory (%zu bytes)", total);
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        span s = t->dec_span[ids[i]];
        memcpy(out + o, t->dec + s.off, s.len);
        o += s.len;
    }
    out[o] = 0;
    *text = out;
    if (len) *len = o;
    return 0;
}

int xd_tokenizer_token_bytes(const xd_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (!t || id < 0 || id >= t->n_tokens)
        return xd_err("tokenizer: token id %d out of range [0, %d)", id, t ? t->n_tokens : 0);
    span s = t->dec_span[id];
    if (s.len > cap) return xd_err("tokenizer: token %d needs %u bytes, buffer has %zu", id, s.len, cap);
    memcpy(out, t->dec + s.off, s.len);
    return (int)s.len;
}

int xd_tokenizer_n_tokens(const xd_tokenizer *t) { return t ? t->n_tokens : 0; }

const char *xd_tokenizer_piece(const xd_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_tokens) return NULL;
    return sym_text(t, id);
}

int xd_tokenizer_bos(const xd_tokenizer *t) { return t ? t->bos : -1; }
int xd_tokenizer_eos(const xd_tokenizer *t) { return t ? t->eos : -1; }
const char *xd_tokenizer_pre(const xd_tokenizer *t) { return t ? t->pre : NULL; }

/* FNV-1a 64 over the token texts (NUL-terminated), the token types, the merges
 * (NUL-terminated) and the pre-tokenizer name. */
uint64_t xd_tokenizer_hash(const xd_tokenizer *t) { return t ? t->hash : 0; }

/* ---- internal accessors (tokenizer_internal.h) ---------------------------- */

int xd_tokenizer_token_type(const xd_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_tokens ? t->types[id] : -1;
}

int xd_tokenizer_add_bos(const xd_tokenizer *t) { return t ? t->add_bos : 0; }

int xd_tokenizer_merges(const xd_tokenizer *t, xd_tok_merge **out, int *n) {
    int k = 0;
    *out = malloc((size_t)(t->n_merges ? t->n_merges : 1) * sizeof **out);
    if (!*out) return xd_err("tokenizer: out of memory listing %d merges", t->n_merges);
    for (uint32_t i = 0; i <= t->merge_mask && k < t->n_merges; i++) {
        const merge_slot *m = &t->merges[i];
        if (m->left >= 0) (*out)[k++] = (xd_tok_merge){m->rank, sym_text(t, m->left), sym_text(t, m->right)};
    }
    *n = k;
    return 0;
}
