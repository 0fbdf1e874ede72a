/* `xdistill tasks make`: the suite's layout and formats (docs/tasks.md), the
 * generators' answers (spot-checked against the sources), determinism for a
 * seed, and clear errors for bad options and missing sources.
 *
 * Needs the Debian packages the built-in suite reads (`make test` installs
 * them): bible-kjv, bible-kjv-text, wordnet-base (and base-files). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "eval/taskgen_int.h"
#include "io/atomic.h"
#include "test.h"

#ifndef SEED /* -D overrides, for sweeps by hand */
#define SEED 7
#endif
#ifndef N
#define N 6
#endif
#ifndef WIN
#define WIN 64
#endif

static char root[64];
static tg_corpus kjv, lic;
static tg_wordnet wn;

static int file_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int path_exists(const char *p) {
    struct stat st;
    return !stat(p, &st);
}

static int run(const char *args, char *out, size_t cap) { return test_cli_run(args, out, cap, 1); }

static size_t approx(const char *s) { return tg_approx_str(s); }

static const char *str(json_t *o, const char *k) {
    return json_string_value(json_object_get(o, k));
}

/* ---- spot checks of the generators ------------------------------------------- */

static void check_passkey(const char *task, json_t *ex, int mult2 /* 2 x multiple of W */) {
    const char *p = str(ex, "prompt"), *t = str(ex, "target");
    char key[64];
    snprintf(key, sizeof key, "The pass key is %s. Remember it.", t);
    CHECK(strlen(t) == 5 && strspn(t, "0123456789") == 5, "%s: target '%s' is not 5 digits", task,
          t);
    const char *at = strstr(p, key);
    CHECK(at != NULL, "%s: the prompt lacks '%s'", task, key);
    const char *q = "What is the pass key? The pass key is";
    CHECK(strlen(p) >= strlen(q) && !strcmp(p + strlen(p) - strlen(q), q), "%s: prompt ends '%s'",
          task, p + (strlen(p) > 40 ? strlen(p) - 40 : 0));
    CHECK(!strcmp(str(ex, "match"), "contains"), "%s: match", task);
    size_t total = approx(p);
    /* at most mult2/2 W tokens, unless the key sentence, the question and (long
     * variants) 1.5 W tokens between them need more */
    size_t least = mult2 > 2 ? (size_t)xd_tg_far_gap(WIN) + 20 : 30;
    CHECK(total * 2 <= (size_t)mult2 * WIN || total <= least, "%s: %zu tokens for %d/2 W", task,
          total, mult2);
    if (mult2 > 2 && at) {
        CHECK(approx(at + strlen(key)) >= (size_t)xd_tg_far_gap(WIN),
              "%s: the key is only %zu tokens before the end", task, approx(at + strlen(key)));
        CHECK(total * 4 >= (size_t)mult2 * WIN, "%s: %zu tokens, too short for %d/2 W", task, total,
              mult2);
    }
}

static void check_arith(json_t *ex) {
    const char *p = str(ex, "prompt"), *t = str(ex, "target");
    CHECK(!strcmp(str(ex, "match"), "exact"), "arithmetic: match");
    int lines = 0;
    for (const char *l = strchr(p, '\n'); l; l = strchr(l, '\n')) {
        l++;
        unsigned a, b, c;
        int k = sscanf(l, "%u + %u = %u", &a, &b, &c);
        if (k == 3)
            CHECK(a + b == c, "arithmetic: shot %u + %u = %u", a, b, c);
        else if (k == 2) {
            CHECK(a >= 1 && a <= 30 && b >= 1 && b <= 9, "arithmetic: operands %u %u", a, b);
            CHECK((unsigned)atoi(t) == a + b, "arithmetic: %u + %u, target %s", a, b, t);
        }
        lines += k >= 2;
    }
    CHECK(lines == 4, "arithmetic: %d sums in the prompt", lines);
}

static void check_copy(json_t *ex) {
    const char *p = str(ex, "prompt"), *t = str(ex, "target");
    const char *head = "Remember this list of words: ";
    CHECK(!strncmp(p, head, strlen(head)), "copy: prompt starts %.40s", p);
    const char *list = p + strlen(head), *end = strstr(list, ".\n");
    CHECK(end && (size_t)(end - list) == strlen(t) && !strncmp(list, t, strlen(t)),
          "copy: target '%s' is not the list", t);
    int words = 1;
    for (const char *c = t; *c; c++) words += *c == ' ';
    CHECK(words == 8, "copy: %d words", words);
    if (end)
        CHECK(approx(end + 2) >= (size_t)xd_tg_far_gap(WIN), "copy: list only %zu tokens back",
              approx(end + 2));
}

static void check_recall(json_t *ex) {
    const char *p = str(ex, "prompt"), *t = str(ex, "target");
    const char *ask = strstr(p, "Now the words again, with their numbers.\n");
    const char *last = strrchr(p, '\n');
    CHECK(ask && last, "assoc_recall: prompt layout");
    if (!ask || !last) return;
    char key[64], pat[80];
    snprintf(key, sizeof key, "%s", last + 1);
    size_t k = strlen(key);
    CHECK(k > 1 && key[k - 1] == ':', "assoc_recall: final query '%s'", key);
    key[k - 1] = 0;
    snprintf(pat, sizeof pat, "\n%s: ", key);
    const char *pair = strstr(p, pat);
    CHECK(pair && pair < ask, "assoc_recall: '%s' is not among the pairs", key);
    if (!pair) return;
    unsigned v = 0;
    sscanf(pair + strlen(pat), "%u", &v);
    CHECK(v == (unsigned)atoi(t), "assoc_recall: %s is %u, target %s", key, v, t);
    CHECK(approx(strchr(pair + 1, '\n') + 1) >= (size_t)xd_tg_far_gap(WIN),
          "assoc_recall: pair too near");
    /* the answered queries are right */
    for (const char *l = ask + strlen("Now the words again, with their numbers.\n"); l < last;
         l = strchr(l, '\n') + 1) {
        char w[64];
        unsigned a;
        if (sscanf(l, "%63[a-z]: %u", w, &a) != 2) continue;
        snprintf(pat, sizeof pat, "\n%s: %u\n", w, a);
        CHECK(strstr(p, pat) < ask, "assoc_recall: answered query %s: %u is wrong", w, a);
    }
}

static const tg_sense *wn_find(const char *lemma, const char *gloss) {
    for (size_t i = 0; i < wn.n; i++)
        if ((!lemma || !strcmp(wn.v[i].lemma, lemma)) && (!gloss || !strcmp(wn.v[i].gloss, gloss)))
            return &wn.v[i];
    return NULL;
}

/* the text between the first pair of double quotes of s */
static void quoted(const char *s, char *out, size_t cap) {
    const char *a = strchr(s, '"'), *b = a ? strrchr(s, '"') : NULL;
    snprintf(out, cap, "%.*s", a && b > a ? (int)(b - a - 1) : 0, a ? a + 1 : "");
}

static void check_wordnet(const char *task, json_t *ex, int by_gloss) {
    const char *ctx = str(ex, "context");
    json_t *ch = json_object_get(ex, "choices");
    int ans = (int)json_integer_value(json_object_get(ex, "answer"));
    char q[512];
    quoted(ctx, q, sizeof q);
    for (size_t i = 0; i < json_array_size(ch); i++) {
        const char *c = json_string_value(json_array_get(ch, i));
        CHECK(c[0] == ' ', "%s: choice '%s' lacks the leading space", task, c);
        const tg_sense *s = by_gloss ? wn_find(q, c + 1) : wn_find(c + 1, q);
        if ((int)i == ans)
            CHECK(s != NULL, "%s: the answer '%s' does not match '%s'", task, c, q);
        else
            CHECK(s == NULL, "%s: distractor '%s' also matches '%s'", task, c, q);
    }
}

/* the cloze context followed by " NAME" occurs in the KJV */
static void check_cloze(const char *task, json_t *ex, int far) {
    const char *ctx = str(ex, "context");
    json_t *ch = json_object_get(ex, "choices");
    const char *name = json_string_value(
        json_array_get(ch, (size_t)json_integer_value(json_object_get(ex, "answer"))));
    size_t n = strlen(ctx), k = strlen(name);
    char *want = malloc(n + k + 1);
    memcpy(want, ctx, n);
    memcpy(want + n, name, k + 1);
    const char *at = strstr(kjv.s, want);
    CHECK(at != NULL, "%s: '...%s' + '%s' is not KJV text", task, ctx + (n > 60 ? n - 60 : 0),
          name);
    if (at) {
        char nx = at[n + k];
        CHECK(!((nx >= 'a' && nx <= 'z') || (nx >= 'A' && nx <= 'Z')),
              "%s: '%s' is part of a longer word", task, name);
    }
    /* the name's last mention in the context (as a whole word) */
    const char *m = NULL;
    for (const char *p = strstr(ctx, name + 1); p; p = strstr(p + 1, name + 1)) {
        char before = p > ctx ? p[-1] : ' ', after = p[k - 1];
        if (!isalpha((unsigned char)before) && !isalpha((unsigned char)after)) m = p;
    }
    CHECK(m != NULL, "%s: '%s' is not in the context", task, name);
    /* the generator counts the space before the answer too: allow 1 token */
    if (m && far)
        CHECK(approx(m + k - 1) + 1 >= (size_t)xd_tg_far_gap(WIN) &&
                  approx(ctx) <= (size_t)xd_tg_cloze_far_cap(WIN),
              "%s: last mention %zu tokens back, context %zu", task, approx(m + k - 1),
              approx(ctx));
    if (!far)
        CHECK(approx(ctx) <= (size_t)xd_tg_cloze_near_cap(WIN), "%s: context of %zu tokens", task,
              approx(ctx));
    free(want);
}

static void check_ppl(const char *task, json_t *ex, const tg_corpus *c) {
    const char *t = str(ex, "text");
    CHECK(strstr(c->s, t) != NULL, "%s: passage is not source text: %.60s", task, t);
    CHECK(approx(t) >= (size_t)xd_tg_ppl_len(WIN), "%s: passage of %zu tokens", task, approx(t));
}

/* ---- the suite's format -------------------------------------------------------- */

static int check_example(const char *task, const char *type, json_t *ex, double chance) {
    const char *t = str(ex, "type");
    CHECK(t && !strcmp(t, type), "%s: example type %s, declared %s", task, t ? t : "(none)", type);
    if (!t || strcmp(t, type)) return 0;
    if (!strcmp(type, "choice")) {
        json_t *ch = json_object_get(ex, "choices"), *a = json_object_get(ex, "answer");
        CHECK(json_object_size(ex) == 4 && str(ex, "context") && json_is_array(ch) &&
                  json_is_integer(a),
              "%s: choice fields", task);
        size_t k = json_array_size(ch);
        CHECK(k >= 2 && json_integer_value(a) >= 0 && (size_t)json_integer_value(a) < k,
              "%s: answer %lld of %zu choices", task, (long long)json_integer_value(a), k);
        CHECK(k && fabs(chance - 1.0 / (double)k) < 1e-9, "%s: chance %g for %zu choices", task,
              chance, k);
        for (size_t i = 0; i < k; i++) {
            CHECK(json_is_string(json_array_get(ch, i)), "%s: choice %zu", task, i);
            for (size_t j = 0; j < i; j++)
                CHECK(strcmp(json_string_value(json_array_get(ch, i)),
                             json_string_value(json_array_get(ch, j))),
                      "%s: choices %zu and %zu are equal", task, i, j);
        }
    } else if (!strcmp(type, "generate")) {
        const char *m = str(ex, "match");
        json_t *mt = json_object_get(ex, "max_tokens");
        CHECK(json_object_size(ex) == 5 && str(ex, "prompt") && str(ex, "target") &&
                  *str(ex, "target") && json_is_integer(mt) && json_integer_value(mt) >= 1 && m &&
                  (!strcmp(m, "exact") || !strcmp(m, "contains")),
              "%s: generate fields", task);
    } else {
        CHECK(json_object_size(ex) == 2 && str(ex, "text") && *str(ex, "text"),
              "%s: perplexity fields", task);
    }
    return 1;
}

static void spot_check(const char *task, json_t *ex) {
    if (!strcmp(task, "passkey_0.5w"))
        check_passkey(task, ex, 1);
    else if (!strcmp(task, "passkey_2w"))
        check_passkey(task, ex, 4);
    else if (!strcmp(task, "passkey_8w"))
        check_passkey(task, ex, 16);
    else if (!strcmp(task, "arithmetic"))
        check_arith(ex);
    else if (!strcmp(task, "copy"))
        check_copy(ex);
    else if (!strcmp(task, "assoc_recall"))
        check_recall(ex);
    else if (!strcmp(task, "wordnet_define"))
        check_wordnet(task, ex, 0);
    else if (!strcmp(task, "wordnet_gloss"))
        check_wordnet(task, ex, 1);
    else if (!strcmp(task, "kjv_cloze_near"))
        check_cloze(task, ex, 0);
    else if (!strcmp(task, "kjv_cloze_far"))
        check_cloze(task, ex, 1);
    else if (!strcmp(task, "ppl_kjv"))
        check_ppl(task, ex, &kjv);
    else if (!strcmp(task, "ppl_licenses"))
        check_ppl(task, ex, &lic);
    else
        CHECK(0, "unknown task %s (add its spot check)", task);
}

static void check_suite(const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/suite.json", dir);
    json_error_t jerr;
    json_t *s = json_load_file(p, 0, &jerr);
    CHECK(s != NULL, "%s: %s", p, jerr.text);
    if (!s) return;
    CHECK(str(s, "name") && !strcmp(str(s, "name"), "xdistill-builtin"), "suite name");
    CHECK(json_integer_value(json_object_get(s, "seed")) == SEED, "suite seed");
    CHECK(json_integer_value(json_object_get(s, "window")) == WIN, "suite window");
    json_t *tasks = json_object_get(s, "tasks");
    size_t nt = json_array_size(tasks);
    CHECK(nt >= 8, "%zu tasks", nt);
    int n_long = 0, n_short = 0, types[3] = {0};
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(tasks, i);
        const char *name = str(t, "name"), *file = str(t, "file"), *type = str(t, "type");
        json_t *lc = json_object_get(t, "long_context");
        double chance = json_number_value(json_object_get(t, "chance"));
        CHECK(name && file && type && json_is_boolean(lc) &&
                  json_is_number(json_object_get(t, "chance")) && str(t, "description") &&
                  *str(t, "description") &&
                  json_integer_value(json_object_get(t, "approx_tokens")) > 0 &&
                  json_integer_value(json_object_get(t, "examples")) == N,
              "task %zu: suite.json fields", i);
        if (!name || !file || !type) continue;
        types[!strcmp(type, "choice") ? 0 : !strcmp(type, "generate") ? 1 : 2]++;
        CHECK(!strcmp(type, "choice") || !strcmp(type, "generate") || !strcmp(type, "perplexity"),
              "%s: type %s", name, type);
        CHECK(strcmp(type, "choice") || chance > 0, "%s: chance %g", name, chance);
        json_is_true(lc) ? n_long++ : n_short++;
        snprintf(p, sizeof p, "%s/%s", dir, file);
        CHECK(file_exists(p), "%s: %s missing", name, p);
        char *data;
        size_t len;
        if (xd_read_file(p, &data, &len)) continue;
        CHECK(len && data[len - 1] == '\n', "%s: last line unterminated", name);
        size_t lines = 0;
        for (char *l = data; *l;) {
            char *e = strchr(l, '\n');
            size_t ll = e ? (size_t)(e - l) : strlen(l);
            json_t *ex = json_loadb(l, ll, 0, &jerr);
            CHECK(ex && json_is_object(ex), "%s line %zu: not a JSON object: %s", name, lines + 1,
                  jerr.text);
            if (ex && check_example(name, type, ex, chance)) spot_check(name, ex);
            json_decref(ex);
            lines++;
            l += ll + (e != NULL);
        }
        CHECK(lines == N, "%s: %zu lines", name, lines);
        free(data);
    }
    CHECK(n_long >= 4 && n_short >= 4, "%d long-context and %d short tasks", n_long, n_short);
    CHECK(types[0] >= 2 && types[1] >= 2 && types[2] >= 1, "task types %d %d %d", types[0],
          types[1], types[2]);
    json_decref(s);
}

/* 1 if every file of a has a byte-identical copy in b */
static int same_files(const char *a, const char *b, int *n_differ, int *n_files) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd %s && ls", a);
    FILE *ls = popen(cmd, "r");
    char name[256];
    int same = 1;
    *n_differ = *n_files = 0;
    while (ls && fgets(name, sizeof name, ls)) {
        name[strcspn(name, "\n")] = 0;
        char pa[600], pb[600], *da = NULL, *db = NULL;
        size_t la = 0, lb = 0;
        snprintf(pa, sizeof pa, "%s/%s", a, name);
        snprintf(pb, sizeof pb, "%s/%s", b, name);
        int ok = !xd_read_file(pa, &da, &la) && !xd_read_file(pb, &db, &lb) && la == lb &&
                 !memcmp(da, db, la);
        (*n_files)++;
        if (!ok) {
            same = 0;
            (*n_differ)++;
        }
        free(da);
        free(db);
    }
    if (ls) pclose(ls);
    return same && *n_files > 0;
}

static void expect_error(const char *args, int status, const char *w1, const char *w2) {
    char out[8192];
    int rc = run(args, out, sizeof out);
    CHECK(rc == status, "'%s': status %d, expected %d: %s", args, rc, status, out);
    CHECK(strstr(out, "xdistill: error:") && strstr(out, w1) && (!w2 || strstr(out, w2)),
          "'%s': message lacks '%s' / '%s': %s", args, w1, w2 ? w2 : "", out);
}

int main(void) {
    char out[8192], args[2048], a[128], b[128], c[128], d[128], src[128];
    /* the Debian sources must be installed: say so loudly if not */
    int have = file_exists("/usr/share/wordnet/index.noun") && file_exists("/usr/lib/bible.data") &&
               file_exists("/usr/bin/bible");
    CHECK(have,
          "the task sources are missing: apt-get install -y bible-kjv bible-kjv-text wordnet-base "
          "(make test installs them)");
    if (!have) return test_summary("test_tasks");
    snprintf(root, sizeof root, "/tmp/xd_tasks_XXXXXX");
    if (!mkdtemp(root)) return perror("mkdtemp"), 1;
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    snprintf(c, sizeof c, "%s/c", root);
    snprintf(d, sizeof d, "%s/d", root);
    snprintf(src, sizeof src, "%s/src", root);
    CHECK(!xd_tg_load_kjv(&kjv, NULL) && !xd_tg_load_licenses(&lic, NULL) && !xd_tg_load_wordnet(&wn, NULL),
          "loading the sources: %s", xd_last_error());

    /* a suite; its format and answers */
    snprintf(args, sizeof args, "tasks make -o %s --n %d --seed %d --window %d", a, N, SEED, WIN);
    int rc = run(args, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "wrote"), "tasks make: %d: %s", rc, out);
    check_suite(a);

    /* deterministic: the same seed gives the same bytes, another seed other examples */
    snprintf(args, sizeof args, "tasks make -o %s --n %d --seed %d --window %d --quiet", b, N, SEED,
             WIN);
    CHECK(run(args, out, sizeof out) == 0 && !*out, "second run (--quiet prints nothing): %s", out);
    int differ, files;
    CHECK(same_files(a, b, &differ, &files), "same seed: %d of %d files differ", differ, files);
    snprintf(args, sizeof args, "tasks make -o %s --n %d --seed %d --window %d --quiet", c, N,
             SEED + 1, WIN);
    CHECK(run(args, out, sizeof out) == 0, "third run: %s", out);
    same_files(a, c, &differ, &files);
    CHECK(differ == files, "another seed: only %d of %d files differ (suite.json included)", differ,
          files);
    /* re-making over an existing suite replaces it */
    snprintf(args, sizeof args, "tasks make -o %s --n %d --seed %d --window %d --quiet", c, N, SEED,
             WIN);
    CHECK(run(args, out, sizeof out) == 0 && same_files(a, c, &differ, &files),
          "replacing a suite: %s", out);

    /* --sources with kjv.txt from scripts/kjv-corpus.sh gives the same suite */
    snprintf(args, sizeof args,
             "mkdir -p %s && bash %s/scripts/kjv-corpus.sh %s/kjv.txt && ln -s /usr/share/wordnet "
             "%s/wordnet && "
             "ln -s /usr/share/common-licenses %s/licenses",
             src, XD_SOURCE_DIR, src, src, src);
    CHECK(system(args) == 0, "preparing %s", src);
    snprintf(args, sizeof args,
             "tasks make -o %s --n %d --seed %d --window %d --sources %s --quiet", d, N, SEED, WIN,
             src);
    CHECK(run(args, out, sizeof out) == 0, "--sources: %s", out);
    CHECK(same_files(a, d, &differ, &files), "--sources: %d of %d files differ from the system's",
          differ, files);

    /* bad options and missing sources */
    snprintf(args, sizeof args, "tasks make -o %s/x --window 0", root);
    expect_error(args, 2, "--window", "'0'");
    snprintf(args, sizeof args, "tasks make -o %s/x --n 0", root);
    expect_error(args, 2, "--n", "'0'");
    snprintf(args, sizeof args, "tasks make -o %s/x --seed -3", root);
    expect_error(args, 2, "--seed", NULL);
    snprintf(args, sizeof args, "tasks make -o %s/x --bogus", root);
    expect_error(args, 2, "--bogus", "usage");
    expect_error("tasks make --n 3", 2, "-o SUITE", NULL);
    expect_error("tasks frob", 2, "usage", NULL);
    snprintf(args, sizeof args, "tasks make -o %s/x --sources %s/nonexistent", root, root);
    expect_error(args, 1, "nonexistent", "no such directory");
    snprintf(args, sizeof args, "mkdir -p %s/empty", root);
    CHECK(system(args) == 0, "mkdir");
    snprintf(args, sizeof args, "tasks make -o %s/x --sources %s/empty", root, root);
    expect_error(args, 1, "kjv.txt", "wordnet-base");
    /* the KJV too short for the asked examples */
    snprintf(args, sizeof args,
             "mkdir -p %s/short && head -c 20000 %s/kjv.txt > %s/short/kjv.txt && "
             "ln -s /usr/share/wordnet %s/short/wordnet && ln -s /usr/share/common-licenses "
             "%s/short/licenses",
             root, src, root, root, root);
    CHECK(system(args) == 0, "short sources");
    snprintf(args, sizeof args, "tasks make -o %s/x --sources %s/short --n 200", root, root);
    expect_error(args, 1, "King James Bible", "--n");
    /* without the `bible` program on PATH, the error names the package */
    const char *path = getenv("PATH");
    char *saved = strdup(path ? path : "/usr/bin:/bin");
    setenv("PATH", "/nonexistent", 1);
    snprintf(args, sizeof args, "tasks make -o %s/x", root);
    expect_error(args, 1, "bible-kjv", "apt-get install");
    setenv("PATH", saved, 1);
    free(saved);
    /* a directory that is not a suite is never replaced */
    snprintf(args, sizeof args, "tasks make -o %s", src);
    expect_error(args, 1, "not replacing", NULL);
    snprintf(args, sizeof args, "%s/kjv.txt", src);
    CHECK(file_exists(args), "the refused directory was changed");
    snprintf(args, sizeof args, "%s/x", root);
    CHECK(!path_exists(args), "a failed run left %s", args);

    xd_tg_corpus_free(&kjv);
    xd_tg_corpus_free(&lic);
    xd_tg_wordnet_free(&wn);
    xd_rmtree(root);
    return test_summary("test_tasks");
}
