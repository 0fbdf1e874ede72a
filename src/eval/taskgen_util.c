/* Task generator helpers: token estimate, shuffle, sizes,
 * and the writers of one JSONL example per line. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/taskgen_int.h"

/* ---- estimates, RNG, sizes -------------------------------------------------- */

size_t xd_tg_approx_tokens(const char *s, size_t n) {
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) digits += s[i] >= '0' && s[i] <= '9';
    return digits + (n - digits + 3) / 4;
}

void xd_tg_shuffle(xd_rng *r, size_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)xd_rng_below(r, i), t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

int xd_tg_far_gap(int w) { return w + (w + 1) / 2; }
int xd_tg_cloze_far_cap(int w) { return 8 * w > 64 ? 8 * w : 64; }
int xd_tg_cloze_near_cap(int w) { return 3 * w / 4 > 8 ? 3 * w / 4 : 8; }
int xd_tg_ppl_len(int w) {
    int n = 4 * w;
    return n < 128 ? 128 : n > 1024 ? 1024 : n;
}

/* ---- JSONL writers ----------------------------------------------------------- */

static int set_str(json_t *o, const char *key, const char *s, size_t n) {
    json_t *v = json_stringn(s, n);
    if (!v) return xd_err("task text for \"%s\" is not valid UTF-8: %.60s", key, s);
    return json_object_set_new(o, key, v) ? xd_err("out of memory") : 0;
}

static int append_line(tg_task *t, json_t *o, size_t tokens) {
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line) return xd_err("out of memory (JSON line)");
    int rc = xd_sb_puts(&t->jsonl, line);
    free(line);
    if (rc || xd_sb_add(&t->jsonl, "\n", 1)) return -1;
    t->n++;
    t->tokens += (double)tokens;
    return 0;
}

int xd_tg_emit_choice(tg_task *t, const char *context, const char *const *choices, int k, int answer) {
    json_t *o = json_object(), *arr = json_array();
    size_t longest = 0;
    if (!o || !arr) goto oom;
    if (set_str(o, "type", "choice", 6) || set_str(o, "context", context, strlen(context)))
        goto fail;
    for (int i = 0; i < k; i++) {
        json_t *v = json_string(choices[i]);
        if (!v) {
            xd_err("choice is not valid UTF-8: %.60s", choices[i]);
            goto fail;
        }
        if (json_array_append_new(arr, v)) goto oom;
        size_t a = tg_approx_str(choices[i]);
        if (a > longest) longest = a;
    }
    if (json_object_set_new(o, "choices", arr)) {
        arr = NULL;
        goto oom;
    }
    arr = NULL;
    if (json_object_set_new(o, "answer", json_integer(answer))) goto oom;
    return append_line(t, o, tg_approx_str(context) + longest);
oom:
    xd_err("out of memory (JSON)");
fail:
    json_decref(arr);
    json_decref(o);
    return -1;
}

int xd_tg_emit_generate(tg_task *t, const char *prompt, const char *target, int max_tokens,
                     const char *match) {
    json_t *o = json_object();
    if (!o) return xd_err("out of memory (JSON)");
    if (set_str(o, "type", "generate", 8) || set_str(o, "prompt", prompt, strlen(prompt)) ||
        set_str(o, "target", target, strlen(target)) ||
        json_object_set_new(o, "max_tokens", json_integer(max_tokens)) ||
        set_str(o, "match", match, strlen(match))) {
        json_decref(o);
        return -1;
    }
    return append_line(t, o, tg_approx_str(prompt) + tg_approx_str(target));
}

int xd_tg_emit_perplexity(tg_task *t, const char *text, size_t len) {
    json_t *o = json_object();
    if (!o) return xd_err("out of memory (JSON)");
    if (set_str(o, "type", "perplexity", 10) || set_str(o, "text", text, len)) {
        json_decref(o);
        return -1;
    }
    return append_line(t, o, xd_tg_approx_tokens(text, len));
}
