/* Tokenizer tests: llama.cpp reference encodings of the SmolLM2 teacher's
 * vocabulary (fixtures from tests/ref/make_tokenizer_fixture.py), the
 * tokenizer.json front-end against the `tokenizers` library, round trips,
 * speed, and error reporting. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/tokenizer_gguf.h"
#include "io/tokenizer_internal.h"
#include "test.h"
#include "xdistill.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Printable, truncated form of a fixture string for failure messages. */
static const char *show(const char *s, size_t n) {
    static char buf[200];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '\\' && c < 0x7f) buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
    }
    if (o + 8 >= sizeof buf) memcpy(buf + o, "...", 4);
    else buf[o] = 0;
    return buf;
}

/* ---- fixture lines --------------------------------------------------------- */

typedef struct {
    char *text;
    size_t len;
    int special;
    int valid_utf8; /* false for "hex" lines */
    char pre[32];   /* "" = the file's own */
    int32_t *ids;
    size_t n_ids;
} fixture_line;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses one JSONL line; returns 0 on success. */
static int parse_line(const char *line, fixture_line *f) {
    json_error_t err;
    memset(f, 0, sizeof *f);
    json_t *o = json_loads(line, JSON_ALLOW_NUL, &err);
    if (!o) return -1;
    const json_t *text = json_object_get(o, "text"), *hex = json_object_get(o, "hex");
    const json_t *ids = json_object_get(o, "ids"), *pre = json_object_get(o, "pre");
    if ((!json_is_string(text) && !json_is_string(hex)) || !json_is_array(ids)) {
        json_decref(o);
        return -1;
    }
    if (json_is_string(text)) {
        f->len = json_string_length(text);
        f->text = malloc(f->len + 1);
        memcpy(f->text, json_string_value(text), f->len + 1);
        f->valid_utf8 = 1;
    } else {
        const char *h = json_string_value(hex);
        f->len = strlen(h) / 2;
        f->text = malloc(f->len + 1);
        for (size_t i = 0; i < f->len; i++)
            f->text[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
        f->text[f->len] = 0;
    }
    f->special = json_is_true(json_object_get(o, "special"));
    if (json_is_string(pre)) snprintf(f->pre, sizeof f->pre, "%s", json_string_value(pre));
    f->n_ids = json_array_size(ids);
    f->ids = malloc((f->n_ids + 1) * sizeof(int32_t));
    for (size_t i = 0; i < f->n_ids; i++) f->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
    json_decref(o);
    return 0;
}

static void free_line(fixture_line *f) {
    free(f->text);
    free(f->ids);
}

/* Encodes f with t and compares with the reference; also checks the round
 * trip for valid UTF-8. Returns 1 if the ids matched. */
static int check_line(const xd_tokenizer *t, const fixture_line *f, const char *where) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = xd_tokenizer_encode(t, f->text, f->len, f->special, &ids, &n);
    CHECK(rc == 0, "%s: encode failed: %s", where, xd_last_error());
    if (rc) return 0;
    size_t k = 0;
    while (k < n && k < f->n_ids && ids[k] == f->ids[k]) k++;
    int same = n == f->n_ids && k == n;
    CHECK(same, "%s: ids differ for \"%s\" (pre %s, special %d): %zu vs %zu ids, first difference "
          "at %zu: got %d, want %d", where, show(f->text, f->len), f->pre[0] ? f->pre : "file",
          f->special, n, f->n_ids, k, k < n ? ids[k] : -1, k < f->n_ids ? f->ids[k] : -1);
    if (f->valid_utf8) {
        char *back = NULL;
        size_t blen = 0;
        rc = xd_tokenizer_decode(t, ids, n, &back, &blen);
        CHECK(rc == 0 && blen == f->len && memcmp(back, f->text, blen) == 0,
              "%s: decode(encode(s)) != s for \"%s\"", where, show(f->text, f->len));
        free(back);
    }
    free(ids);
    return same;
}

/* Tokenizers for the pre-tokenizer variants, built on demand. */
typedef struct {
    char pre[32];
    xd_tokenizer *t;
} variant;

/* $XD_TOK_FIXTURE replaces the committed fixture (for ad-hoc stress files). */
static void test_gguf_fixture(const gguf_file *g, const xd_tokenizer *base) {
    const char *path = getenv("XD_TOK_FIXTURE");
    if (!path || !*path) path = FIXTURE("tokenizer_smollm2.jsonl");
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL, "cannot open %s", path);
    if (!fp) return;
    variant vars[8];
    int n_vars = 0, lines = 0, matched = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        fixture_line f;
        char where[64];
        snprintf(where, sizeof where, "tokenizer_smollm2.jsonl:%d", lines + 1);
        lines++;
        if (parse_line(line, &f)) {
            CHECK(0, "%s: unparsable fixture line", where);
            continue;
        }
        const xd_tokenizer *t = base;
        if (f.pre[0]) {
            int v = 0;
            while (v < n_vars && strcmp(vars[v].pre, f.pre)) v++;
            if (v == n_vars && n_vars < 8) {
                snprintf(vars[v].pre, sizeof vars[v].pre, "%s", f.pre);
                vars[v].t = xd_tokenizer_from_gguf_pre(g, f.pre);
                CHECK(vars[v].t != NULL, "pre '%s': %s", f.pre, xd_last_error());
                n_vars++;
            }
            t = v < n_vars ? vars[v].t : NULL;
        }
        if (t) matched += check_line(t, &f, where);
        free_line(&f);
    }
    free(line);
    fclose(fp);
    for (int v = 0; v < n_vars; v++) xd_tokenizer_free(vars[v].t);
    printf("llama.cpp fixture: %d/%d strings match\n", matched, lines);
    CHECK(lines >= 250, "fixture has only %d lines", lines);
}

static void test_api(const xd_tokenizer *t, const gguf_file *g) {
    CHECK(xd_tokenizer_n_tokens(t) == 49152, "n_tokens %d", xd_tokenizer_n_tokens(t));
    CHECK(xd_tokenizer_bos(t) == 1 && xd_tokenizer_eos(t) == 2, "bos %d eos %d", xd_tokenizer_bos(t),
          xd_tokenizer_eos(t));
    CHECK(strcmp(xd_tokenizer_pre(t), "smollm") == 0, "pre %s", xd_tokenizer_pre(t));
    CHECK(strcmp(xd_tokenizer_piece(t, 2), "<|im_end|>") == 0, "piece 2: %s", xd_tokenizer_piece(t, 2));
    CHECK(xd_tokenizer_piece(t, -1) == NULL && xd_tokenizer_piece(t, 49152) == NULL, "piece out of range");

    /* token 216 is "Ġ" in the vocabulary: a space once decoded */
    char buf[16];
    int n = xd_tokenizer_token_bytes(t, 216, buf, sizeof buf);
    CHECK(n == 1 && buf[0] == ' ', "token_bytes(216) = %d", n);
    CHECK(strcmp(xd_tokenizer_piece(t, 216), "\xc4\xa0") == 0, "piece(216)");
    CHECK(xd_tokenizer_token_bytes(t, 216, buf, 0) == -1, "token_bytes with a small buffer");
    n = xd_tokenizer_token_bytes(t, 1, buf, sizeof buf); /* control token: verbatim */
    CHECK(n == 12 && memcmp(buf, "<|im_start|>", 12) == 0, "token_bytes(1) = %d", n);
    CHECK(xd_tokenizer_token_bytes(t, 99999, buf, sizeof buf) == -1, "token_bytes out of range");

    int32_t bad[2] = {5, 49152};
    char *text = NULL;
    CHECK(xd_tokenizer_decode(t, bad, 2, &text, NULL) == -1 && strstr(xd_last_error(), "49152"),
          "decode out of range: %s", xd_last_error());

    /* empty text */
    int32_t *ids = NULL;
    size_t n_ids = 5;
    CHECK(xd_tokenizer_encode(t, "", 0, 1, &ids, &n_ids) == 0 && n_ids == 0, "empty encode");
    free(ids);

    /* the hash: stable across loads, sensitive to the pre-tokenizer */
    xd_tokenizer *t2 = xd_tokenizer_from_gguf(g), *t3 = xd_tokenizer_from_gguf_pre(g, "gpt2");
    CHECK(t2 && t3, "reload: %s", xd_last_error());
    if (t2 && t3) {
        CHECK(xd_tokenizer_hash(t) == xd_tokenizer_hash(t2) && xd_tokenizer_hash(t) != 0, "hash unstable");
        CHECK(xd_tokenizer_hash(t) != xd_tokenizer_hash(t3), "hash ignores pre");
    }
    xd_tokenizer_free(t2);
    xd_tokenizer_free(t3);
}

/* Random byte soup (mostly invalid UTF-8) must not crash and must encode to
 * ids in range; valid random UTF-8 must round-trip. */
static void test_fuzz(const xd_tokenizer *t) {
    uint64_t s = 12345;
    char text[512];
    int ok = 1, round = 1;
    for (int iter = 0; iter < 400; iter++) {
        size_t n = 0, len = 1 + iter % 300;
        int valid = iter % 2;
        while (n < len) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            uint32_t r = (uint32_t)(s >> 33);
            if (!valid) { text[n++] = (char)r; continue; }
            static const uint32_t cps[] = {' ', '\n', '\t', 'a', 'Z', '7', '\'', '.', 0xe9, 0x301,
                                           0x4e2d, 0x1f600, 0x200d, 0xa0, 0x3000, 0x663, 0x85};
            uint32_t c = cps[r % (sizeof cps / sizeof cps[0])];
            if (c < 0x80) text[n++] = (char)c;
            else if (c < 0x800) { text[n++] = (char)(0xC0 | (c >> 6)); text[n++] = (char)(0x80 | (c & 63)); }
            else if (c < 0x10000) {
                text[n++] = (char)(0xE0 | (c >> 12));
                text[n++] = (char)(0x80 | ((c >> 6) & 63));
                text[n++] = (char)(0x80 | (c & 63));
            } else {
                text[n++] = (char)(0xF0 | (c >> 18));
                text[n++] = (char)(0x80 | ((c >> 12) & 63));
                text[n++] = (char)(0x80 | ((c >> 6) & 63));
                text[n++] = (char)(0x80 | (c & 63));
            }
        }
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (xd_tokenizer_encode(t, text, n, iter % 3 == 0, &ids, &n_ids)) { ok = 0; continue; }
        for (size_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= xd_tokenizer_n_tokens(t)) ok = 0;
        if (valid) {
            char *back = NULL;
            size_t blen = 0;
            if (xd_tokenizer_decode(t, ids, n_ids, &back, &blen) || blen != n || memcmp(back, text, n))
                round = 0;
            free(back);
        }
        free(ids);
    }
    CHECK(ok, "fuzz: encode failed or produced an out-of-range id");
    CHECK(round, "fuzz: valid UTF-8 did not round-trip");
}

/* Encode speed on a large text, and no quadratic blow-up on long words. */
static void test_speed(const xd_tokenizer *t) {
    const char *src = "/usr/share/common-licenses/GPL-3";
    char *base = NULL;
    size_t blen = 0;
    FILE *fp = fopen(src, "rb");
    if (fp) {
        fseek(fp, 0, SEEK_END);
        long sz = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        if (sz > 0 && (base = malloc((size_t)sz)) && fread(base, 1, (size_t)sz, fp) == (size_t)sz)
            blen = (size_t)sz;
        fclose(fp);
    }
    if (!blen) { /* synthetic prose when the license file is absent */
        static const char para[] = "The student model learns from the teacher's distribution; "
                                   "numbers like 3.14159 and 2024 appear too.\n\n";
        free(base);
        base = strdup(para);
        blen = strlen(para);
        src = "synthetic prose";
    }
    size_t reps = (4u << 20) / blen + 1, len = reps * blen;
    char *big = malloc(len);
    for (size_t i = 0; i < reps; i++) memcpy(big + i * blen, base, blen);
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = now_s();
    int rc = xd_tokenizer_encode(t, big, len, 0, &ids, &n);
    double dt = now_s() - t0;
    CHECK(rc == 0 && n > 0, "encode big: %s", xd_last_error());
    printf("encode speed: %zu bytes (%s x%zu) -> %zu tokens in %.3f s: %.2f M tokens/s, %.1f MB/s\n",
           len, src, reps, n, dt, (double)n / dt / 1e6, (double)len / dt / 1e6);
    free(ids);
    free(big);
    free(base);

    /* a 200000-byte single word and a 200000-byte whitespace run */
    len = 200000;
    big = malloc(len);
    const char *fills[] = {"a", "ab", " ", "7"};
    for (int f = 0; f < 4; f++) {
        size_t fl = strlen(fills[f]);
        for (size_t i = 0; i < len; i++) big[i] = fills[f][i % fl];
        t0 = now_s();
        rc = xd_tokenizer_encode(t, big, len, 0, &ids, &n);
        dt = now_s() - t0;
        CHECK(rc == 0 && dt < 2.0, "long run of '%s': %.3f s", fills[f], dt);
        free(ids);
    }
    free(big);
}

/* ---- tokenizer.json -------------------------------------------------------- */

static void check_expected(const xd_tokenizer *t, const char *expected, const char *what) {
    FILE *fp = fopen(expected, "r");
    CHECK(fp != NULL, "cannot open %s", expected);
    if (!fp) return;
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, matched = 0;
    while (getline(&line, &cap, fp) > 0) {
        fixture_line f;
        char where[96];
        snprintf(where, sizeof where, "%s:%d", what, ++lines);
        if (parse_line(line, &f)) {
            CHECK(0, "%s: unparsable", where);
            continue;
        }
        matched += check_line(t, &f, where);
        free_line(&f);
    }
    free(line);
    fclose(fp);
    printf("%s: %d/%d strings match the tokenizers library\n", what, matched, lines);
    CHECK(lines >= 40, "%s: only %d lines", what, lines);
}

static char g_tmpdir[256];

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_tmpdir, name);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

/* Writes the tiny tokenizer.json with a modification applied. */
static const char *write_variant(const char *name, void (*edit)(json_t *root)) {
    json_t *root = json_load_file(FIXTURE("tiny_tokenizer/tokenizer.json"), 0, NULL);
    if (!root) return NULL;
    edit(root);
    const char *p = tmp_path(name);
    json_dump_file(root, p, JSON_INDENT(1));
    json_decref(root);
    return p;
}

static void edit_string_merges(json_t *root) {
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges"), *m;
    size_t i;
    json_array_foreach(merges, i, m) {
        if (!json_is_array(m)) continue;
        char buf[256];
        snprintf(buf, sizeof buf, "%s %s", json_string_value(json_array_get(m, 0)),
                 json_string_value(json_array_get(m, 1)));
        json_array_set_new(merges, i, json_string(buf));
    }
}
static void edit_no_vocab(json_t *root) { json_object_del(json_object_get(root, "model"), "vocab"); }
static void edit_wordpiece(json_t *root) {
    json_object_set_new(json_object_get(root, "model"), "type", json_string("WordPiece"));
}
static void edit_bad_merge(json_t *root) {
    json_array_set_new(json_object_get(json_object_get(root, "model"), "merges"), 3, json_integer(7));
}
static void edit_bad_id(json_t *root) {
    json_object_set_new(json_object_get(json_object_get(root, "model"), "vocab"), "zzz", json_integer(-4));
}
static void edit_whitespace_pre(json_t *root) {
    json_object_set_new(root, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
}
static void edit_bad_added(json_t *root) {
    json_object_set_new(json_array_get(json_object_get(root, "added_tokens"), 0), "id", json_string("x"));
}
/* Split(regex) + ByteLevel(use_regex=false), as Llama-3 / Qwen2 files have it */
static const char *g_split_regex;
static int g_ignore_merges;
static void edit_split(json_t *root) {
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "Regex", g_split_regex,
                                  "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                                  "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0));
    json_object_set_new(json_object_get(root, "model"), "ignore_merges", json_boolean(g_ignore_merges));
}

static void expect_json_error(const char *path, const char *what, const char *needle) {
    xd_tokenizer *t = path ? xd_tokenizer_load_json(path) : NULL;
    CHECK(path && !t && strstr(xd_last_error(), path) && strstr(xd_last_error(), needle),
          "%s: expected an error naming the file and '%s', got '%s'", what, needle,
          t ? "(loaded)" : xd_last_error());
    xd_tokenizer_free(t);
}

static void test_json(void) {
    const char *path = FIXTURE("tiny_tokenizer/tokenizer.json");
    xd_tokenizer *t = xd_tokenizer_load_json(path);
    CHECK(t != NULL, "load tiny tokenizer.json: %s", xd_last_error());
    if (t) {
        CHECK(strcmp(xd_tokenizer_pre(t), "smollm") == 0, "tiny pre: %s", xd_tokenizer_pre(t));
        check_expected(t, FIXTURE("tiny_tokenizer/expected.jsonl"), "tiny_tokenizer");
    }

    /* the same with "a b" string merges, and a tokenizer_config.json beside
     * it naming bos / eos (with the 1e30 model_max_length real files have) */
    write_file(tmp_path("tokenizer_config.json"),
               "{\"bos_token\": \"<|im_start|>\", \"eos_token\": {\"content\": \"<|im_end|>\"},\n"
               " \"add_bos_token\": false, \"model_max_length\": 1000000000000000019884624838656}\n");
    const char *p = write_variant("string_merges.json", edit_string_merges);
    xd_tokenizer *t2 = p ? xd_tokenizer_load_json(p) : NULL;
    CHECK(t2 != NULL, "string merges: %s", xd_last_error());
    if (t) CHECK(xd_tokenizer_bos(t) == -1 && xd_tokenizer_eos(t) == -1, "no config: bos/eos");
    if (t2) {
        CHECK(xd_tokenizer_bos(t2) == 1 && xd_tokenizer_eos(t2) == 2, "config: bos %d eos %d",
              xd_tokenizer_bos(t2), xd_tokenizer_eos(t2));
        check_expected(t2, FIXTURE("tiny_tokenizer/expected.jsonl"), "tiny_tokenizer (string merges)");
        CHECK(t && xd_tokenizer_hash(t) == xd_tokenizer_hash(t2), "merge formats hash differently");
    }
    xd_tokenizer_free(t2);
    xd_tokenizer_free(t);

    /* Split patterns map to the pre-tokenizer names */
    struct { const char *re; int ignore; const char *pre; } splits[] = {
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
         "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 1, "llama3"},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
         "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 0, "dbrx"},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
         "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 0, "qwen2"},
        {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0, "gpt2"},
    };
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        g_split_regex = splits[i].re;
        g_ignore_merges = splits[i].ignore;
        p = write_variant("split.json", edit_split);
        t = p ? xd_tokenizer_load_json(p) : NULL;
        CHECK(t && strcmp(xd_tokenizer_pre(t), splits[i].pre) == 0, "split %zu: want %s, got %s (%s)", i,
              splits[i].pre, t ? xd_tokenizer_pre(t) : "-", xd_last_error());
        xd_tokenizer_free(t);
    }
    g_split_regex = "\\w+";
    expect_json_error(write_variant("split_unknown.json", edit_split), "unknown split regex", "pre_tokenizer");

    /* errors */
    write_file(tmp_path("broken.json"), "{\n  \"model\": {\n    \"type\": \"BPE\",\n    \"vocab\": {\"a\": 0,,}\n");
    expect_json_error(tmp_path("broken.json"), "malformed JSON", ":4:");
    expect_json_error(tmp_path("missing.json"), "missing file", "missing.json");
    write_file(tmp_path("no_model.json"), "{\"version\": \"1.0\"}");
    expect_json_error(tmp_path("no_model.json"), "no model", "model");
    expect_json_error(write_variant("no_vocab.json", edit_no_vocab), "no vocab", "model.vocab");
    expect_json_error(write_variant("wordpiece.json", edit_wordpiece), "WordPiece", "model.type");
    expect_json_error(write_variant("bad_merge.json", edit_bad_merge), "bad merge", "model.merges[3]");
    expect_json_error(write_variant("bad_id.json", edit_bad_id), "negative id", "model.vocab.zzz");
    expect_json_error(write_variant("ws_pre.json", edit_whitespace_pre), "Whitespace pre", "pre_tokenizer");
    expect_json_error(write_variant("bad_added.json", edit_bad_added), "bad added", "added_tokens[0].id");
}

/* tokenizer_config.json beside tokenizer.json: absent is fine (no bos/eos);
 * present, it must be valid, and bos_token / eos_token / add_bos_token of the
 * right types naming tokens that exist, else an error naming the config file
 * and the field. */
static void test_json_config(void) {
    char dir[600], tok[700], cfg[700];
    snprintf(dir, sizeof dir, "%s/cfg", g_tmpdir);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    json_t *root = json_load_file(FIXTURE("tiny_tokenizer/tokenizer.json"), 0, NULL);
    CHECK(root && json_dump_file(root, tok, 0) == 0, "cannot write %s", tok);
    json_decref(root);

    /* valid: null bos, an object eos, add_bos true */
    write_file(cfg, "{\"bos_token\": null, \"eos_token\": {\"content\": \"<|im_end|>\", \"lstrip\": false},"
                    " \"add_bos_token\": true, \"add_eos_token\": null}");
    xd_tokenizer *t = xd_tokenizer_load_json(tok);
    CHECK(t && xd_tokenizer_bos(t) == -1 && xd_tokenizer_eos(t) == 2 && xd_tokenizer_add_bos(t) == 1,
          "valid config: %s", t ? "wrong bos/eos/add_bos" : xd_last_error());
    xd_tokenizer_free(t);
    /* the keys absent: as no config */
    write_file(cfg, "{\"model_max_length\": 2048}");
    t = xd_tokenizer_load_json(tok);
    CHECK(t && xd_tokenizer_bos(t) == -1 && xd_tokenizer_eos(t) == -1 && xd_tokenizer_add_bos(t) == 0,
          "config without the keys: %s", t ? "wrong bos/eos/add_bos" : xd_last_error());
    xd_tokenizer_free(t);

    static const struct { const char *text, *want; } bad[] = {
        {"{\"bos_token\": \"<|im_start|>\",\n \"eos_token\": }", ":2:"},      /* malformed JSON */
        {"", "malformed JSON"},
        {"[\"<|im_start|>\"]", "expected an object"},
        {"{\"bos_token\": 1}", "bos_token: expected"},
        {"{\"eos_token\": [\"<|im_end|>\"]}", "eos_token: expected"},
        {"{\"eos_token\": {\"content\": 2}}", "eos_token.content: expected"},
        {"{\"bos_token\": {\"lstrip\": true}}", "bos_token.content: expected"},
        {"{\"add_bos_token\": \"yes\"}", "add_bos_token: expected true or false"},
        {"{\"add_bos_token\": 1}", "add_bos_token: expected true or false"},
        {"{\"bos_token\": \"<s>\"}", "bos_token: \"<s>\" is not a token"},
        {"{\"eos_token\": {\"content\": \"</s>\"}}", "eos_token: \"</s>\" is not a token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(cfg, bad[i].text);
        t = xd_tokenizer_load_json(tok);
        CHECK(!t && strstr(xd_last_error(), cfg) && strstr(xd_last_error(), bad[i].want),
              "config '%s': expected an error naming %s and '%s', got '%s'", bad[i].text, cfg,
              bad[i].want, t ? "(loaded)" : xd_last_error());
        xd_tokenizer_free(t);
    }
    /* the same through xd_tokenizer_load of the directory */
    t = xd_tokenizer_load(dir);
    CHECK(!t && strstr(xd_last_error(), cfg), "model dir with a bad config: %s",
          t ? "(loaded)" : xd_last_error());
    xd_tokenizer_free(t);
    /* unreadable (a directory in its place) */
    unlink(cfg);
    CHECK(mkdir(cfg, 0755) == 0, "mkdir %s", cfg);
    t = xd_tokenizer_load_json(tok);
    CHECK(!t && strstr(xd_last_error(), cfg), "config is a directory: %s", t ? "(loaded)" : xd_last_error());
    xd_tokenizer_free(t);
    rmdir(cfg);
    /* absent: fine */
    t = xd_tokenizer_load_json(tok);
    CHECK(t && xd_tokenizer_bos(t) == -1 && xd_tokenizer_eos(t) == -1, "no config: %s",
          t ? "bos/eos set" : xd_last_error());
    xd_tokenizer_free(t);
}

/* ---- spec and GGUF errors -------------------------------------------------- */

static void test_spec(void) {
    /* a toy vocabulary: merges apply by rank, leftmost first on ties */
    const char *tokens[] = {"a", "b", "c", "\xc4\xa0", "ab", "bc", "abc", "<s>", "aa", "aaa"};
    const int types[] = {1, 1, 1, 1, 1, 1, 1, 3, 1, 1};
    const char *merges[] = {"b c", "a b", "a bc", "a a", "aa a", "c c"};
    xd_tokenizer_spec spec = {.n_tokens = 10, .tokens = tokens, .token_types = types, .n_merges = 6,
                              .merges = merges, .pre = "gpt2", .bos_id = 7, .eos_id = -1,
                              .source = "toy"};
    xd_tokenizer *t = xd_tokenizer_create(&spec);
    CHECK(t != NULL, "toy: %s", xd_last_error());
    if (t) {
        struct { const char *text; int special; int n; int32_t ids[8]; } cases[] = {
            {"abc", 0, 1, {6}},         /* b c first (rank 0), then a bc */
            {"ab", 0, 1, {4}},
            {"aaaa", 0, 2, {8, 8}},     /* a a at 0, then at 2 (leftmost first) */
            {"aaa", 0, 1, {9}},
            {"a<s>b", 1, 3, {0, 7, 1}}, /* special token matched */
            {"a<s>b", 0, 2, {0, 1}},    /* not matched; '<' 's' '>' have no token: dropped */
            {"ab ab", 0, 3, {4, 3, 4}}, /* "Ġab" has no merge: Ġ + ab */
            {"cc", 0, 2, {2, 2}},       /* merge result "cc" is no token: one per byte */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            int rc = xd_tokenizer_encode(t, cases[i].text, strlen(cases[i].text), cases[i].special, &ids, &n);
            int same = rc == 0 && (int)n == cases[i].n;
            for (size_t k = 0; same && k < n; k++) same = ids[k] == cases[i].ids[k];
            CHECK(same, "toy '%s' (special %d): got %zu ids, first %d", cases[i].text, cases[i].special,
                  n, n ? ids[0] : -1);
            free(ids);
        }
        xd_tokenizer_free(t);
    }

    spec.pre = "no-such-pre";
    t = xd_tokenizer_create(&spec);
    CHECK(!t && strstr(xd_last_error(), "toy") && strstr(xd_last_error(), "tokenizer.ggml.pre") &&
          strstr(xd_last_error(), "no-such-pre"), "unknown pre: %s", xd_last_error());
    xd_tokenizer_free(t);
    spec.pre = "gpt2";
    spec.bos_id = 10;
    t = xd_tokenizer_create(&spec);
    CHECK(!t && strstr(xd_last_error(), "bos"), "bos out of range: %s", xd_last_error());
    xd_tokenizer_free(t);
    spec.bos_id = 7;
    const int bad_types[] = {1, 1, 1, 1, 1, 1, 1, 3, 1, 9};
    spec.token_types = bad_types;
    t = xd_tokenizer_create(&spec);
    CHECK(!t && strstr(xd_last_error(), "token_type[9]"), "bad type: %s", xd_last_error());
    xd_tokenizer_free(t);
}

/* Minimal GGUF writer for error cases. */
typedef struct {
    FILE *fp;
} gw;

static void gw_str(gw *w, const char *s) {
    uint64_t n = strlen(s);
    fwrite(&n, 8, 1, w->fp);
    fwrite(s, 1, n, w->fp);
}
static void gw_kv_str(gw *w, const char *k, const char *v) {
    uint32_t ty = 8;
    gw_str(w, k);
    fwrite(&ty, 4, 1, w->fp);
    gw_str(w, v);
}
static void gw_kv_u32(gw *w, const char *k, uint32_t v) {
    uint32_t ty = 4;
    gw_str(w, k);
    fwrite(&ty, 4, 1, w->fp);
    fwrite(&v, 4, 1, w->fp);
}
static void gw_kv_strs(gw *w, const char *k, const char *const *v, uint64_t n) {
    uint32_t ty = 9, sub = 8;
    gw_str(w, k);
    fwrite(&ty, 4, 1, w->fp);
    fwrite(&sub, 4, 1, w->fp);
    fwrite(&n, 8, 1, w->fp);
    for (uint64_t i = 0; i < n; i++) gw_str(w, v[i]);
}
static void gw_kv_i32s(gw *w, const char *k, const int32_t *v, uint64_t n) {
    uint32_t ty = 9, sub = 5;
    gw_str(w, k);
    fwrite(&ty, 4, 1, w->fp);
    fwrite(&sub, 4, 1, w->fp);
    fwrite(&n, 8, 1, w->fp);
    fwrite(v, 4, n, w->fp);
}

/* Writes a tokenizer-only GGUF; "skip" names a key to leave out, the
 * overrides change one value each. */
static const char *write_gguf(const char *name, const char *model, const char *pre, uint32_t bos,
                              uint64_t n_types, const char *skip) {
    static const char *tokens[] = {"a", "b", "ab", "\xc4\xa0", "<|x|>"};
    static const int32_t types[] = {1, 1, 1, 1, 3, 1};
    static const char *merges[] = {"a b"};
    const char *path = tmp_path(name);
    gw w = {fopen(path, "wb")};
    if (!w.fp) return path;
    uint32_t version = 3;
    uint64_t n_tensors = 0, n_kv = 6 - (skip != NULL);
    fwrite("GGUF", 1, 4, w.fp);
    fwrite(&version, 4, 1, w.fp);
    fwrite(&n_tensors, 8, 1, w.fp);
    fwrite(&n_kv, 8, 1, w.fp);
    if (!skip || strcmp(skip, "model")) gw_kv_str(&w, "tokenizer.ggml.model", model);
    if (!skip || strcmp(skip, "pre")) gw_kv_str(&w, "tokenizer.ggml.pre", pre);
    if (!skip || strcmp(skip, "tokens")) gw_kv_strs(&w, "tokenizer.ggml.tokens", tokens, 5);
    if (!skip || strcmp(skip, "types")) gw_kv_i32s(&w, "tokenizer.ggml.token_type", types, n_types);
    if (!skip || strcmp(skip, "merges")) gw_kv_strs(&w, "tokenizer.ggml.merges", merges, 1);
    if (!skip || strcmp(skip, "bos")) gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", bos);
    long pos = ftell(w.fp);
    for (; pos % 32; pos++) fputc(0, w.fp);
    fclose(w.fp);
    return path;
}

static void expect_gguf(const char *path, const char *what, const char *needle) {
    gguf_file *g = xd_gguf_open(path);
    CHECK(g != NULL, "%s: xd_gguf_open: %s", what, xd_last_error());
    if (!g) return;
    xd_tokenizer *t = xd_tokenizer_from_gguf(g);
    if (!needle) {
        CHECK(t != NULL, "%s: %s", what, xd_last_error());
        if (t) {
            int32_t *ids = NULL;
            size_t n = 0;
            int rc = xd_tokenizer_encode(t, "ab a<|x|>", 9, 1, &ids, &n);
            CHECK(rc == 0 && n == 4 && ids[0] == 2 && ids[1] == 3 && ids[2] == 0 && ids[3] == 4,
                  "%s: tiny gguf encode gave %zu ids", what, n);
            free(ids);
        }
    } else {
        CHECK(!t && strstr(xd_last_error(), path) && strstr(xd_last_error(), needle),
              "%s: expected an error naming the file and '%s', got '%s'", what, needle,
              t ? "(loaded)" : xd_last_error());
    }
    xd_tokenizer_free(t);
    xd_gguf_close(g);
}

static void test_gguf_errors(void) {
    expect_gguf(write_gguf("ok.gguf", "gpt2", "gpt2", 4, 5, NULL), "valid", NULL);
    expect_gguf(write_gguf("llama.gguf", "llama", "gpt2", 4, 5, NULL), "spm model", "tokenizer.ggml.model");
    expect_gguf(write_gguf("nomodel.gguf", "gpt2", "gpt2", 4, 5, "model"), "no model", "tokenizer.ggml.model");
    expect_gguf(write_gguf("pre.gguf", "gpt2", "klingon", 4, 5, NULL), "unknown pre", "tokenizer.ggml.pre");
    expect_gguf(write_gguf("bos.gguf", "gpt2", "gpt2", 5, 5, NULL), "bos out of range", "bos_token_id");
    expect_gguf(write_gguf("types.gguf", "gpt2", "gpt2", 4, 3, NULL), "short token_type", "token_type");
    expect_gguf(write_gguf("notok.gguf", "gpt2", "gpt2", 4, 5, "tokens"), "no tokens", "tokenizer.ggml.tokens");
    expect_gguf(write_gguf("nomerges.gguf", "gpt2", "gpt2", 4, 5, "merges"), "no merges", "tokenizer.ggml.merges");
}

int main(void) {
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/xd_test_tokenizer_XXXXXX");
    if (!mkdtemp(g_tmpdir)) snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp");

    test_spec();
    test_gguf_errors();
    test_json();
    test_json_config();

    const char *teacher = teacher_path();
    gguf_file *g = xd_gguf_open(teacher);
    if (!g) {
        fprintf(stderr, "test_tokenizer: teacher model %s not found (%s); `make test` installs it, or "
                "set XD_TEACHER\n", teacher, xd_last_error());
        CHECK(0, "teacher model missing");
    } else {
        xd_tokenizer *t = xd_tokenizer_from_gguf(g);
        CHECK(t != NULL, "xd_tokenizer_from_gguf: %s", xd_last_error());
        if (t) {
            test_api(t, g);
            test_gguf_fixture(g, t);
            test_fuzz(t);
            test_speed(t);
        }
        xd_tokenizer_free(t);
        xd_gguf_close(g);
    }

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (strncmp(g_tmpdir, "/tmp/xd_test_tokenizer_", 23) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_tmpdir);
    return test_summary("test_tokenizer");
}
