/* `xdistill tasks make`: runs every task generator with its own seeded RNG and
 * writes the suite directory (one JSONL file per task + suite.json)
 * atomically. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "eval/taskgen.h"
#include "eval/taskgen_int.h"
#include "io/atomic.h"

#define SUITE_NAME "xdistill-builtin"

typedef struct {
    const char *name, *file, *type;
    tg_gen_fn gen;
    int choices;      /* choice tasks: the number of choices (chance = 1 / choices) */
    int long_context; /* 1 / 0 by construction; -1: the texts are longer than W */
    const char *metric; /* NULL: the type's; "acc_norm" where choices differ much in length */
} task_spec;

static const task_spec TASKS[] = {
    {"wordnet_define", "wordnet_define.jsonl", "choice", xd_tg_gen_wordnet_define, 4, 0, NULL},
    {"wordnet_gloss", "wordnet_gloss.jsonl", "choice", xd_tg_gen_wordnet_gloss, 4, 0, "acc_norm"},
    {"kjv_cloze_near", "kjv_cloze_near.jsonl", "choice", xd_tg_gen_cloze_near, 4, 0, NULL},
    {"kjv_cloze_far", "kjv_cloze_far.jsonl", "choice", xd_tg_gen_cloze_far, 4, 1, NULL},
    {"ppl_kjv", "ppl_kjv.jsonl", "perplexity", xd_tg_gen_ppl_kjv, 0, -1, NULL},
    {"ppl_licenses", "ppl_licenses.jsonl", "perplexity", xd_tg_gen_ppl_licenses, 0, -1, NULL},
    {"passkey_0.5w", "passkey_0.5w.jsonl", "generate", xd_tg_gen_passkey_half, 0, 0, NULL},
    {"passkey_2w", "passkey_2w.jsonl", "generate", xd_tg_gen_passkey_2w, 0, 1, NULL},
    {"passkey_8w", "passkey_8w.jsonl", "generate", xd_tg_gen_passkey_8w, 0, 1, NULL},
    {"assoc_recall", "assoc_recall.jsonl", "generate", xd_tg_gen_recall, 0, 1, NULL},
    {"copy", "copy.jsonl", "generate", xd_tg_gen_copy, 0, 1, NULL},
    {"arithmetic", "arithmetic.jsonl", "generate", xd_tg_gen_arith, 0, 0, NULL},
};
#define N_TASKS (sizeof TASKS / sizeof *TASKS)

/* One line on what the task measures, with its sizes for this window. */
static void describe(const char *name, int w, char *out, size_t cap) {
    int gap = xd_tg_far_gap(w);
    if (!strcmp(name, "wordnet_define"))
        snprintf(out, cap,
                 "WordNet: which of 4 words has this definition (most frequent sense "
                 "of common nouns, verbs, adjectives); short context");
    else if (!strcmp(name, "wordnet_gloss"))
        snprintf(out, cap, "WordNet: which of 4 definitions belongs to this word; short context");
    else if (!strcmp(name, "kjv_cloze_near"))
        snprintf(out, cap,
                 "King James Bible: which of 4 names comes next; the name was mentioned "
                 "earlier in a context of at most %d tokens (inside the window)",
                 xd_tg_cloze_near_cap(w));
    else if (!strcmp(name, "kjv_cloze_far"))
        snprintf(out, cap,
                 "King James Bible: which of 4 names comes next; its previous mention "
                 "is at least %d tokens back (beyond the window of %d), in a context "
                 "of at most %d tokens from the chapter's start",
                 gap, w, xd_tg_cloze_far_cap(w));
    else if (!strcmp(name, "ppl_kjv"))
        snprintf(out, cap,
                 "perplexity (score 1/PPL) on King James Bible passages of ~%d tokens "
                 "(in-domain if the student was distilled on the KJV)",
                 xd_tg_ppl_len(w));
    else if (!strcmp(name, "ppl_licenses"))
        snprintf(out, cap,
                 "perplexity (score 1/PPL) on ~%d-token passages of the license texts "
                 "in /usr/share/common-licenses (out of domain)",
                 xd_tg_ppl_len(w));
    else if (!strcmp(name, "passkey_0.5w"))
        snprintf(out, cap,
                 "pass key retrieval: a 5-digit key in ~%d tokens of filler (0.5 W), "
                 "all inside the window",
                 w / 2);
    else if (!strcmp(name, "passkey_2w") || !strcmp(name, "passkey_8w"))
        snprintf(out, cap,
                 "pass key retrieval: a 5-digit key in ~%d tokens of filler (%s W), at "
                 "least %d tokens before the question",
                 (name[8] - '0') * w, name + 8, gap);
    else if (!strcmp(name, "assoc_recall"))
        snprintf(out, cap,
                 "multi-query associative recall: word-number pairs spanning ~%d tokens, "
                 "3 answered queries, then one for a pair at least %d tokens back",
                 2 * w, gap);
    else if (!strcmp(name, "copy"))
        snprintf(out, cap,
                 "delayed copy: repeat a list of 8 random words given at least %d tokens "
                 "earlier",
                 gap);
    else if (!strcmp(name, "arithmetic"))
        snprintf(out, cap, "addition of 2-3 digit numbers after 3 solved examples; exact match");
    else
        snprintf(out, cap, "%s", name);
}

void xd_taskgen_defaults(xd_taskgen_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->window = 64;
    o->n = 40;
}

/* Refuses to replace anything that is not a suite (a file, or a non-empty
 * directory without suite.json). */
static int check_out_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st)) {
        if (errno == ENOENT) return 0;
        return xd_err("%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return xd_err("%s exists and is not a directory", dir);
    char p[XD_APATH_MAX + 16];
    snprintf(p, sizeof p, "%s/suite.json", dir);
    if (!stat(p, &st)) return 0;
    DIR *d = opendir(dir);
    if (!d) return xd_err("%s: %s", dir, strerror(errno));
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    if (!empty)
        return xd_err("%s is a non-empty directory without suite.json: not replacing it "
                      "(choose a new directory for the suite)",
                      dir);
    return 0;
}

static json_t *suite_json(const xd_taskgen_opts *o, const xd_taskgen_info *info) {
    json_t *root = json_object(), *tasks = json_array();
    if (!root || !tasks) goto fail;
    if (json_object_set_new(root, "name", json_string(SUITE_NAME)) ||
        json_object_set_new(root, "seed", json_integer((json_int_t)o->seed)) ||
        json_object_set_new(root, "window", json_integer(o->window)) ||
        json_object_set_new(root, "tasks", tasks))
        goto fail_root;
    for (size_t i = 0; i < N_TASKS; i++) {
        char desc[512];
        describe(info[i].name, o->window, desc, sizeof desc);
        json_t *t = json_object();
        if (!t || json_array_append_new(tasks, t) ||
            json_object_set_new(t, "name", json_string(info[i].name)) ||
            json_object_set_new(t, "file", json_string(info[i].file)) ||
            json_object_set_new(t, "type", json_string(info[i].type)) ||
            json_object_set_new(t, "chance", json_real(info[i].chance)) ||
            json_object_set_new(t, "long_context", json_boolean(info[i].long_context)) ||
            json_object_set_new(t, "description", json_string(desc)) ||
            json_object_set_new(t, "approx_tokens",
                                json_integer((json_int_t)(info[i].approx_tokens + 0.5))) ||
            json_object_set_new(t, "examples", json_integer(info[i].examples)) ||
            (TASKS[i].metric && json_object_set_new(t, "metric", json_string(TASKS[i].metric))))
            goto fail_root;
    }
    return root;
fail:
    json_decref(tasks);
fail_root:
    json_decref(root);
    xd_err("out of memory (suite.json)");
    return NULL;
}

static int write_suite(const char *out_dir, const xd_taskgen_opts *o, const tg_task *tasks,
                       const xd_taskgen_info *info) {
    xd_adir d;
    char p[XD_APATH_MAX + 64];
    if (xd_adir_begin(&d, out_dir)) return -1;
    for (size_t i = 0; i < N_TASKS; i++) {
        snprintf(p, sizeof p, "%s/%s", d.tmp, info[i].file);
        if (xd_write_file_atomic(p, tasks[i].jsonl.s, tasks[i].jsonl.n)) goto fail;
    }
    json_t *root = suite_json(o, info);
    if (!root) goto fail;
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    xd_sbuf b = {0};
    int rc = !text || xd_sb_puts(&b, text) || xd_sb_add(&b, "\n", 1);
    free(text);
    snprintf(p, sizeof p, "%s/suite.json", d.tmp);
    if (rc)
        xd_err("out of memory (suite.json)");
    else
        rc = xd_write_file_atomic(p, b.s, b.n);
    xd_sb_free(&b);
    if (rc) goto fail;
    return xd_adir_commit(&d);
fail:
    xd_adir_abort(&d);
    return -1;
}

int xd_tasks_make(const char *out_dir, const xd_taskgen_opts *o, xd_taskgen_info *info_out,
                  int *n_info) {
    if (o->window < 1 || o->window > XD_TASKGEN_MAX_WINDOW)
        return xd_err("window %d is not in [1, %d]", o->window, XD_TASKGEN_MAX_WINDOW);
    if (o->n < 1 || o->n > XD_TASKGEN_MAX_N)
        return xd_err("n %d is not in [1, %d]", o->n, XD_TASKGEN_MAX_N);
    if (o->seed > (uint64_t)INT64_MAX)
        return xd_err("seed %llu is above 2^63 - 1", (unsigned long long)o->seed);
    if (strlen(out_dir) + 64 >= XD_APATH_MAX) return xd_err("%s: path too long", out_dir);
    if (check_out_dir(out_dir) || xd_tg_check_sources(o->sources)) return -1;

    tg_corpus kjv = {0}, lic = {0};
    tg_wordnet wn = {0};
    tg_task tasks[N_TASKS];
    xd_taskgen_info info[N_TASKS];
    memset(tasks, 0, sizeof tasks);
    int rc = -1;
    if (xd_tg_load_kjv(&kjv, o->sources) || xd_tg_load_licenses(&lic, o->sources) ||
        xd_tg_load_wordnet(&wn, o->sources))
        goto done;
    tg_ctx c = {o->window, o->n, &kjv, &lic, &wn};
    for (size_t i = 0; i < N_TASKS; i++) {
        const task_spec *s = &TASKS[i];
        xd_rng r;
        xd_rng_seed(&r, o->seed ^ xd_fnv1a64_str(s->name));
        if (s->gen(&c, &r, &tasks[i])) {
            xd_err_prefix("task %s", s->name);
            goto done;
        }
        double mean = tasks[i].n ? tasks[i].tokens / (double)tasks[i].n : 0;
        info[i] = (xd_taskgen_info){s->name,
                                    s->file,
                                    s->type,
                                    (int)tasks[i].n,
                                    mean,
                                    s->choices ? 1.0 / s->choices : 0.0,
                                    s->long_context >= 0 ? s->long_context : mean > o->window};
    }
    if (write_suite(out_dir, o, tasks, info)) goto done;
    if (info_out) {
        for (size_t i = 0; i < N_TASKS && i < XD_TASKGEN_MAX_TASKS; i++) info_out[i] = info[i];
    }
    if (n_info) *n_info = (int)N_TASKS;
    rc = 0;
done:
    for (size_t i = 0; i < N_TASKS; i++) xd_sb_free(&tasks[i].jsonl);
    xd_tg_corpus_free(&kjv);
    xd_tg_corpus_free(&lic);
    xd_tg_wordnet_free(&wn);
    return rc;
}
