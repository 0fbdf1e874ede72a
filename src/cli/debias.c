/* xdistill debias task MODEL --train T --val V -o OUT [--label-field F --attr A,B ...]
 *   trains the task diff and the classification head (or, with --full, fine-tunes every
 *   weight: the baseline; --adv ATTR adds an adversary);
 * xdistill debias attribute MODEL --task DIR --protect ATTR --train T --val V [-o OUT]
 *   trains one attribute diff on the task diff (core, task diff and head frozen) with an
 *   adversary through gradient reversal; OUT defaults to DIR/attributes/ATTR;
 * xdistill debias eval MODEL --task DIR [--with ATTR[,ATTR]] --train T --test S [-o R]
 *   applies the diffs on demand and measures task accuracy, leakage and TPR-GAP;
 * xdistill debias report R.json... -o REPORT.html
 *   an HTML page comparing eval results (table and bar plots).
 * docs/debias.md has the options, files and metrics. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_args.h"
#include "core/error.h"
#include "core/log.h"
#include "eval/debias_eval.h"
#include "io/atomic.h"
#include "io/labeled.h"
#include "model/diff.h"
#include "train/debias.h"
#include "xdistill.h"

#define MAX_ATTR XD_DEBIAS_MAX_ATTR

static void usage(FILE *f) {
    fprintf(f,
            "usage: xdistill debias task MODEL --train T.jsonl --val V.jsonl -o OUT [options]\n"
            "       xdistill debias attribute MODEL --task DIR --protect ATTR --train T.jsonl "
            "--val V.jsonl [-o OUT]\n"
            "       xdistill debias eval MODEL --task DIR [--with ATTR[,ATTR]] --train T.jsonl "
            "--test S.jsonl [-o RESULT.json]\n"
            "       xdistill debias report RESULT.json... -o REPORT.html [--labels A,B,...]\n"
            "data (task):\n"
            "  --text-field F   the text (text)              --label-field F  the label (label)\n"
            "  --attr A[,B]     protected attribute fields   --max-len N      tokens per example (96)\n"
            "  --pool last|mean the encoder's output (last)\n"
            "DiffPruning:\n"
            "  --sparsity S     share of non-zeros the diff is pruned to, in (0, 1] (0.05)\n"
            "  --mask-steps N   steps with a learnt mask; the rest train with it fixed (--steps/2)\n"
            "  --l0 X           expected-L0 weight (1.25e-7)  --alpha-init X  initial log alpha (5)\n"
            "  --lr-alpha X     (0.1)   --lr-head X (1e-4)    --lr-adv X      (1e-4)\n"
            "  --full           task: fine-tune every weight instead of a diff (a baseline)\n"
            "  --adv ATTR       task: add an adversary on ATTR (with --full: the non-modular baseline)\n"
            "  --adv-heads N    (5; 0..16) --adv-lambda X (1)    --dropout X     heads' dropout (0.3)\n"
            "  --adv-lambda-fixed X  λ in the fixed-mask phase (default: --adv-lambda)\n"
            "  --adv-objective reverse|confusion  what the diff does against the adversary:\n"
            "                   reverse its cross-entropy (gradient reversal, the peer's) or\n"
            "                   push its output to uniform (default: reverse)\n"
            "  --adv-conditional  the adversary heads also read the task label, so the diff\n"
            "                   hides what tells the attribute beyond the label\n"
            "  --mmd X          also minimise X · a kernel two-sample term (MMD) between the\n"
            "                   attribute's groups within each class, against a bank of earlier\n"
            "                   rows (0: off; with --adv-heads 0 it replaces the adversary)\n"
            "  --mmd-bank N     rows kept per class and group in that bank (64)\n"
            "  --adv-tokens     the adversary heads read every token's final-norm output\n"
            "                   instead of the pooled representation\n"
            "  --balance        weight the training rows so that the label tells nothing of the\n"
            "                   attribute (task and adversary losses)\n"
            "  --cf-field F     each training record's counterfactual text in field F (the same\n"
            "                   text with the attribute's cues swapped: names, pronouns); the\n"
            "                   diff also pulls the two texts' representations together\n"
            "  --cf-swap FILE   or make them from the texts with a word swap list (lines\n"
            "                   \"FROM TO\": he she, his her, a name and one of the other gender)\n"
            "  --cf-weight X    weight of that invariance term (1 with --cf-field/--cf-swap)\n"
            "  --adv-reset N    the adversary heads start afresh every N steps (0: never)\n"
            "  --adv-refit N    every N steps the adversary heads are fitted afresh, as the\n"
            "                   post-hoc attacker, on a bank of recent representations\n"
            "                   (--mmd-bank rows per class and group; 0: never)\n"
            "  --mmd-kernel rbf|linear  Gaussian kernels (default) or linear on standardised\n"
            "                   features (the groups' means apart, as a linear probe reads them)\n"
            "  --seed S         (1)\n"
            "eval:\n"
            "  --with A[,B]     attribute diffs to stack: names under DIR/attributes, or directories\n"
            "  --attack-epochs N (40)  --attack-max N  train examples the attacker reads (all)\n"
            "  --boot N         bootstrap resamples (1000)    --batch N rows per forward (16)\n"
            "  --seed S         the attacker's initialisation and batches, the resamples (1)\n"
            "training options (defaults here: --lr 2e-5 --min-lr 0 --warmup 0 --wd 0 --batch 16):\n%s",
            train_args_usage);
}

/* Splits a comma list into at most max entries (pointers into buf, a copy of v). */
static int split_list(const char *opt, const char *v, char *buf, size_t cap, const char **out,
                      int max) {
    if (strlen(v) >= cap) return cli_error("%s: the list is longer than %zu bytes", opt, cap - 1), -1;
    memcpy(buf, v, strlen(v) + 1);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n >= max) return cli_error("%s: at most %d names", opt, max), -1;
        out[n++] = t;
    }
    if (!n) return cli_error("%s: expected a comma-separated list of names", opt), -1;
    return n;
}

typedef struct {
    const char *model, *train, *val, *test, *task, *protect, *text_field, *label_field, *out,
        *cf_field, *cf_swap;
    const char *attrs[MAX_ATTR], *with[MAX_ATTR];
    int n_attr, n_with, full, threads;
    char attr_buf[1024], with_buf[1024];
    xd_debias_opts d;
    xd_debias_eval_opts e;
    xd_train_opts o;
} args;

static int parse(int argc, char **argv, args *a, const char *cmd) {
    const char *v;
    int r, iv;
    for (int i = 1; i < argc; i++) {
#define STR(name, dst) if ((r = take_opt(argc, argv, &i, name, &v))) { if (r < 0) return -1; dst = v; continue; }
#define FLT(name, lo, hi, dst) if ((r = take_opt(argc, argv, &i, name, &v))) { if (r < 0 || parse_float(name, v, lo, hi, &dst)) return -1; continue; }
#define INT(name, lo, hi, dst) if ((r = take_opt(argc, argv, &i, name, &v))) { if (r < 0 || parse_int(name, v, lo, hi, &iv)) return -1; dst = iv; continue; }
        if (strcmp(cmd, "eval") && (r = train_arg(argc, argv, &i, &a->o, &a->threads))) {
            if (r < 0) return -1;
            continue;
        }
        STR("--train", a->train) STR("--val", a->val) STR("--test", a->test) STR("--task", a->task)
        STR("--protect", a->protect) STR("--text-field", a->text_field)
        STR("--label-field", a->label_field) STR("-o", a->out) STR("--adv", a->d.adv_attr)
        FLT("--l0", 0, 1e3, a->d.l0_weight) FLT("--alpha-init", -50, 50, a->d.log_alpha_init)
        FLT("--lr-alpha", 1e-12, 1e3, a->d.lr_alpha) FLT("--lr-head", 1e-12, 1e3, a->d.lr_head)
        FLT("--lr-adv", 1e-12, 1e3, a->d.lr_adv) FLT("--adv-lambda", 0, 1e3, a->d.adv_lambda)
        FLT("--adv-lambda-fixed", 0, 1e3, a->d.adv_lambda_fixed) FLT("--mmd", 0, 1e6, a->d.mmd_weight)
        if (strcmp(cmd, "eval")) {
            STR("--cf-field", a->cf_field) STR("--cf-swap", a->cf_swap)
            FLT("--cf-weight", 0, 1e6, a->d.pair_weight)
        }
        INT("--mmd-bank", 2, 4096, a->d.mmd_bank) INT("--adv-reset", 0, 1 << 30, a->d.adv_reset)
        INT("--adv-refit", 0, 1 << 30, a->d.adv_refit)
        INT("--max-len", 1, 1 << 16, a->d.max_len) INT("--adv-heads", 0, 16, a->d.adv_heads)
        INT("--attack-epochs", 1, 100000, a->e.attack.epochs)
        INT("--attack-max", 0, 1 << 30, a->e.attack_train_max) INT("--boot", 1, 1 << 24, a->e.boot)
        if (!strcmp(cmd, "eval")) {
            INT("--batch", 1, 1 << 16, a->e.batch) INT("--threads", 1, 1024, a->threads)
        }
        if ((r = take_opt(argc, argv, &i, "--adv-objective", &v))) {
            if (r < 0) return -1;
            if (strcmp(v, "reverse") && strcmp(v, "confusion"))
                return cli_error("--adv-objective: '%s' (expected reverse or confusion)", v), -1;
            a->d.adv_confusion = !strcmp(v, "confusion");
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--dropout", &v))) {
            if (r < 0 || parse_float("--dropout", v, 0, 0.99, &a->d.head_dropout)) return -1;
            a->d.adv_dropout = a->d.head_dropout;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--sparsity", &v))) {
            char *end;
            double s = r < 0 ? 0 : strtod(v, &end);
            if (r < 0) return -1;
            if (end == v || *end || !(s > 0.0 && s <= 1.0))
                return cli_error("--sparsity '%s': the share of non-zeros must be in (0, 1]", v), -1;
            a->d.share = s;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--mask-steps", &v))) {
            if (r < 0 || parse_int("--mask-steps", v, 1, 1 << 30, &iv)) return -1;
            a->d.mask_steps = iv;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_int("--seed", v, 0, 2147483647, &iv)) return -1;
            a->d.seed = (uint64_t)iv;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--pool", &v))) {
            if (r < 0) return -1;
            if (!strcmp(v, "last")) a->d.pool = XD_POOL_LAST;
            else if (!strcmp(v, "mean")) a->d.pool = XD_POOL_MEAN;
            else return cli_error("--pool '%s': expected last or mean", v), -1;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--attr", &v))) {
            if (r < 0 || (a->n_attr = split_list("--attr", v, a->attr_buf, sizeof a->attr_buf, a->attrs, MAX_ATTR)) < 0)
                return -1;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--with", &v))) {
            if (r < 0 || (a->n_with = split_list("--with", v, a->with_buf, sizeof a->with_buf, a->with, MAX_ATTR)) < 0)
                return -1;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--mmd-kernel", &v))) {
            if (r < 0) return -1;
            if (strcmp(v, "rbf") && strcmp(v, "linear"))
                return cli_error("--mmd-kernel: '%s' (expected rbf or linear)", v), -1;
            a->d.mmd_linear = !strcmp(v, "linear");
            continue;
        }
        if (!strcmp(argv[i], "--full")) { a->full = 1; continue; }
        if (!strcmp(argv[i], "--adv-conditional") && strcmp(cmd, "eval")) {
            a->d.adv_conditional = 1;
            continue;
        }
        if (!strcmp(argv[i], "--adv-tokens") && strcmp(cmd, "eval")) {
            a->d.adv_tokens = 1;
            continue;
        }
        if (!strcmp(argv[i], "--balance") && strcmp(cmd, "eval")) {
            a->d.balance = 1;
            continue;
        }
        if (argv[i][0] == '-') return cli_error("debias %s: unknown option '%s'", cmd, argv[i]), -1;
        if (a->model) return cli_error("debias %s: unexpected argument '%s'", cmd, argv[i]), -1;
        a->model = argv[i];
    }
    if (a->cf_field && a->cf_swap)
        return cli_error("--cf-field and --cf-swap: give the counterfactual texts one way"), -1;
    if (a->d.pair_weight >= 0 && !a->cf_field && !a->cf_swap)
        return cli_error("--cf-weight: needs the counterfactual texts (--cf-field F or --cf-swap "
                         "FILE)"), -1;
    if (a->d.pair_weight < 0) /* not given */
        a->d.pair_weight = a->cf_field || a->cf_swap ? 1.0f : 0.0f;
    if (a->o.stop_at)
        return cli_error("debias %s: --stop-at is not available (a run has two phases); stop it "
                         "any time and continue with --resume", cmd), -1;
    return 0;
}

/* ---- the task run's summary (OUT/debias.json) -------------------------------------------- */

typedef struct {
    json_t *root;
    const char *mode, *text_field, *label_field, *pool, *name;
    int max_len;
    const char *attrs[MAX_ATTR];
    int n_attr;
    char path[XD_APATH_MAX];
} summary;

static int summary_load(summary *s, const char *dir) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s/debias.json", dir);
    json_error_t je;
    s->root = json_load_file(s->path, 0, &je);
    if (!s->root) return cli_error("%s: %s (is %s the output of debias task?)", s->path, je.text, dir);
    json_t *at = json_object_get(s->root, "attributes");
    s->mode = json_string_value(json_object_get(s->root, "mode"));
    s->text_field = json_string_value(json_object_get(s->root, "text_field"));
    s->label_field = json_string_value(json_object_get(s->root, "label_field"));
    s->pool = json_string_value(json_object_get(s->root, "pool"));
    s->name = json_string_value(json_object_get(s->root, "name"));
    json_t *ml = json_object_get(s->root, "max_len");
    const char *bad = !s->mode ? "mode" : !s->text_field ? "text_field" : !s->label_field ? "label_field"
                    : !s->pool ? "pool" : !s->name ? "name" : !json_is_integer(ml) ? "max_len"
                    : !json_is_object(at) ? "attributes" : NULL;
    if (bad) return cli_error("%s: field \"%s\" is missing or of the wrong type", s->path, bad);
    s->max_len = (int)json_integer_value(ml);
    const char *k;
    json_t *val;
    json_object_foreach(at, k, val) {
        if (s->n_attr >= MAX_ATTR) return cli_error("%s: more than %d attributes", s->path, MAX_ATTR);
        s->attrs[s->n_attr++] = k;
    }
    return 0;
}

/* ---- shared loading ------------------------------------------------------------------------ */

typedef struct {
    xd_labeled lab[2];
    xd_clf_data data[2];
    xd_clf_data cf; /* the first file's counterfactual texts (data[0].pair) */
    int n;
} split_pair;

static void pair_free(split_pair *p) {
    xd_clf_data_free(&p->cf);
    for (int i = 0; i < p->n; i++) {
        xd_clf_data_free(&p->data[i]);
        xd_labeled_free(&p->lab[i]);
    }
    p->n = 0;
}

/* Loads two labelled files (the second aligned to the first's classes) and tokenizes them;
 * with cf_field or cf_swap (a swap list's path), the first file's counterfactual texts too. */
static int load_pair(split_pair *p, const char *first, const char *second, const char *text_field,
                     const char *label_field, const char *const *attrs, int n_attr,
                     const char *cf_field, const char *cf_swap, const xd_tokenizer *tok,
                     int max_len) {
    memset(p, 0, sizeof *p);
    const char *paths[2] = {first, second};
    for (int i = 0; i < 2; i++) {
        if (xd_labeled_load_pairs(paths[i], text_field, i == 0 && !cf_swap ? cf_field : NULL,
                                  label_field, attrs, n_attr, &p->lab[i]))
            return -1;
        p->n = i + 1;
        if (i == 1 && xd_labeled_align(&p->lab[0], &p->lab[1])) return -1;
    }
    for (int i = 0; i < 2; i++)
        if (xd_clf_data_init(&p->data[i], &p->lab[i], tok, max_len)) return -1;
    if (cf_swap) {
        xd_swap_list sw;
        int64_t changed = 0;
        if (xd_swap_list_load(cf_swap, &sw)) return -1;
        int rc = xd_labeled_swap_pairs(&p->lab[0], &sw, &changed);
        xd_swap_list_free(&sw);
        if (rc) return -1;
        xd_log(XD_LOG_INFO, "%s: %lld of %lld texts have a word of %s to swap", first,
               (long long)changed, (long long)p->lab[0].n, cf_swap);
    }
    if (cf_field || cf_swap) {
        if (xd_clf_data_init_pairs(&p->cf, &p->lab[0], tok, max_len)) return -1;
        p->data[0].pair = &p->cf;
    }
    return 0;
}

static xd_model *load_model(const char *path) {
    xd_model *m = xd_model_load(path);
    if (!m) return NULL;
    if (!xd_model_tokenizer(m)) {
        xd_model_free(m);
        xd_err("%s: the model has no tokenizer (needed for the texts)", path);
        return NULL;
    }
    return m;
}

static void print_summary(const char *out_dir) {
    char p[XD_APATH_MAX + 64];
    snprintf(p, sizeof p, "%s/debias.json", out_dir);
    json_t *j = json_load_file(p, 0, NULL);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(j);
}

static void train_defaults(args *a) {
    memset(a, 0, sizeof *a);
    xd_train_defaults(&a->o);
    a->o.lr = 2e-5f;
    a->o.min_lr = 0;
    a->o.warmup = 0;
    a->o.weight_decay = 0;
    a->o.beta2 = 0.999f;
    a->o.batch = 16;
    a->o.steps = 200;
    xd_debias_defaults(&a->d);
    a->d.pair_weight = -1.0f; /* --cf-weight not given */
    xd_debias_eval_defaults(&a->e);
    a->text_field = "text";
    a->label_field = "label";
}

static int finish_train_args(args *a) {
    a->o.seq = a->d.max_len;
    if (!a->d.mask_steps) a->d.mask_steps = a->o.steps / 2 > 0 ? a->o.steps / 2 : 1;
    if (a->d.mode == XD_DEBIAS_DIFF && a->o.steps < 2)
        return cli_error("--steps %lld: a diff needs at least 2 steps (the mask phase, then "
                         "the fixed-mask phase)", (long long)a->o.steps);
    if (a->threads) xd_set_threads(a->threads);
    return 0;
}

static int debias_task(int argc, char **argv) {
    args a;
    train_defaults(&a);
    if (parse(argc, argv, &a, "task")) return 2;
    if (!a.model || !a.train || !a.val || !a.out) return usage(stderr), 2;
    if (a.full) a.d.mode = XD_DEBIAS_FULL;
    a.d.text_field = a.text_field;
    a.o.out_dir = a.out;
    a.o.kind = "debias task";
    if (a.protect) return cli_error("debias task: --protect is for debias attribute"), 2;
    if (a.d.adv_attr) {
        int found = 0;
        for (int k = 0; k < a.n_attr; k++) found |= !strcmp(a.attrs[k], a.d.adv_attr);
        if (!found) return cli_error("--adv %s: not one of the --attr fields", a.d.adv_attr), 2;
    }
    if (finish_train_args(&a)) return 2;
    xd_model *m = load_model(a.model);
    split_pair p = {0};
    int rc = 1;
    xd_debias_frozen fz = {0};
    if (!m || load_pair(&p, a.train, a.val, a.text_field, a.label_field, a.attrs, a.n_attr,
                        a.cf_field, a.cf_swap, xd_model_tokenizer(m), a.d.max_len) ||
        xd_debias_train(m, &p.data[0], &p.data[1], &a.d, &fz, &a.o))
        cli_lib_error();
    else {
        print_summary(a.out);
        rc = 0;
    }
    pair_free(&p);
    xd_model_free(m);
    return rc;
}

/* The task head of DIR into a buffer laid out for h. */
static float *load_task_head(xd_head *h, const char *dir, int d, int n_classes) {
    float *buf = calloc((size_t)xd_head_n_params(d, d, n_classes, 0), sizeof(float));
    char p[XD_APATH_MAX + 64];
    snprintf(p, sizeof p, "%s/head.safetensors", dir);
    if (!buf || xd_head_layout(h, d, d, n_classes, 0, 0.0f, buf, NULL) ||
        xd_head_load(h, "head", p)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static xd_diff *load_diff_in(const char *dir) {
    char p[XD_APATH_MAX + 64];
    snprintf(p, sizeof p, "%s/diff.safetensors", dir);
    return xd_diff_load(p);
}

static int debias_attribute(int argc, char **argv) {
    args a;
    train_defaults(&a);
    if (parse(argc, argv, &a, "attribute")) return 2;
    if (!a.model || !a.task || !a.protect || !a.train || !a.val) return usage(stderr), 2;
    if (a.full || a.d.adv_attr || a.n_attr)
        return cli_error("debias attribute: --full, --adv and --attr belong to debias task (the "
                         "attribute run reads the task's fields from %s/debias.json)", a.task), 2;
    summary s;
    if (summary_load(&s, a.task)) return 1;
    char out[XD_APATH_MAX];
    if (!a.out) snprintf(out, sizeof out, "%s/attributes/%s", a.task, a.protect);
    else snprintf(out, sizeof out, "%s", a.out);
    int rc = 1, found = 0;
    for (int k = 0; k < s.n_attr; k++) found |= !strcmp(s.attrs[k], a.protect);
    xd_model *m = NULL;
    split_pair p = {0};
    xd_diff *task = NULL;
    float *head = NULL;
    xd_head h;
    if (strcmp(s.mode, "diff")) {
        cli_error("%s: the task run fine-tuned every weight (mode \"%s\"); attribute diffs stack "
                  "on a task diff", s.path, s.mode);
        goto done;
    }
    if (!found) {
        cli_error("--protect %s: not one of the task's attribute fields in %s", a.protect, s.path);
        goto done;
    }
    a.d.adv_attr = a.protect;
    a.d.name = a.protect;
    a.d.text_field = s.text_field;
    a.d.max_len = s.max_len;
    a.d.pool = !strcmp(s.pool, "mean") ? XD_POOL_MEAN : XD_POOL_LAST;
    a.o.out_dir = out;
    a.o.kind = "debias attribute";
    if (finish_train_args(&a)) { rc = 2; goto done; }
    m = load_model(a.model);
    if (!m || !(task = load_diff_in(a.task)) ||
        load_pair(&p, a.train, a.val, s.text_field, s.label_field, s.attrs, s.n_attr,
                  a.cf_field, a.cf_swap, xd_model_tokenizer(m), s.max_len) ||
        !(head = load_task_head(&h, a.task, m->cfg.d_model, p.lab[0].label.n_classes))) {
        cli_lib_error();
        goto done;
    }
    xd_debias_frozen fz = {task, head};
    if (xd_debias_train(m, &p.data[0], &p.data[1], &a.d, &fz, &a.o)) cli_lib_error();
    else {
        print_summary(out);
        rc = 0;
    }
done:
    free(head);
    xd_diff_free(task);
    pair_free(&p);
    xd_model_free(m);
    json_decref(s.root);
    return rc;
}

static int debias_eval(int argc, char **argv) {
    args a;
    train_defaults(&a);
    if (parse(argc, argv, &a, "eval")) return 2;
    if (a.n_with && !a.task)
        return cli_error("--with: an attribute diff is applied on its task diff; give --task DIR"), 2;
    if (!a.model || !a.task || !a.train || !a.test) return usage(stderr), 2;
    if (a.threads) xd_set_threads(a.threads);
    a.e.seed = a.e.attack.seed = a.d.seed; /* --seed: the attacker and the bootstrap */
    summary s;
    if (summary_load(&s, a.task)) return 1;
    int rc = 1, full = !strcmp(s.mode, "full");
    xd_model *m = NULL;
    split_pair p = {0};
    xd_diff *diffs[MAX_ATTR + 1] = {0};
    int nd = 0;
    float *head = NULL, *theta0 = NULL;
    xd_head h;
    xd_debias_result res;
    char p_model[XD_APATH_MAX];
    if (full && a.n_with) {
        cli_error("--with: %s was fine-tuned in full (mode \"full\"): it has no task diff to "
                  "stack attribute diffs on", a.task);
        goto done;
    }
    snprintf(p_model, sizeof p_model, "%s/model", a.task);
    m = load_model(full ? p_model : a.model);
    if (!m || load_pair(&p, a.train, a.test, s.text_field, s.label_field, s.attrs, s.n_attr, NULL,
                        NULL, xd_model_tokenizer(m), s.max_len) ||
        !(head = load_task_head(&h, a.task, m->cfg.d_model, p.lab[0].label.n_classes)))
        goto lib_fail;
    if (!full) {
        if (!(diffs[nd++] = load_diff_in(a.task))) goto lib_fail;
        uint64_t task_hash = xd_diff_hash(diffs[0]);
        for (int k = 0; k < a.n_with; k++) {
            char dir[XD_APATH_MAX];
            if (strchr(a.with[k], '/')) snprintf(dir, sizeof dir, "%s", a.with[k]);
            else snprintf(dir, sizeof dir, "%s/attributes/%s", a.task, a.with[k]);
            if (!(diffs[nd] = load_diff_in(dir))) goto lib_fail;
            if (diffs[nd]->parent_hash != task_hash) {
                cli_error("%s/diff.safetensors: the attribute diff '%s' was trained on another "
                          "task diff (parent_hash %016llx; %s/diff.safetensors is %016llx): "
                          "apply it with its own task diff", dir, diffs[nd]->name,
                          (unsigned long long)diffs[nd]->parent_hash, a.task,
                          (unsigned long long)task_hash);
                nd++;
                goto done;
            }
            nd++;
        }
        theta0 = malloc(m->arena_floats * sizeof(float));
        if (!theta0) { cli_error("out of memory"); goto done; }
        memcpy(theta0, m->arena, m->arena_floats * sizeof(float));
        if (xd_diff_materialize(m, theta0, xd_model_teacher_hash(m), (const xd_diff *const *)diffs, nd)) {
            xd_err_prefix("%s, with the diffs of %s", a.model, a.task);
            goto lib_fail;
        }
    }
    a.e.pool = !strcmp(s.pool, "mean") ? XD_POOL_MEAN : XD_POOL_LAST;
    if (xd_debias_evaluate(m, &h, &p.data[0], &p.data[1], &a.e, &res)) goto lib_fail;
    snprintf(res.task, sizeof res.task, "%s", a.task);
    snprintf(res.mode, sizeof res.mode, "%s", s.mode);
    for (int k = 0; k < a.n_with; k++) {
        size_t l = strlen(res.with);
        snprintf(res.with + l, sizeof res.with - l, "%s%s", l ? "," : "", diffs[k + 1]->name);
    }
    res.nonzeros = nd ? 0 : -1;
    for (int k = 0; k < nd; k++) res.nonzeros += xd_diff_nnz(diffs[k]);
    for (int k = 0; k < nd; k++) res.diff_bytes += xd_diff_bytes(diffs[k]);
    res.dense_bytes = (int64_t)(m->arena_floats * sizeof(float));
    char *txt = xd_debias_result_json(&res);
    if (!txt) goto lib_fail;
    printf("%s\n", txt);
    if (a.out && xd_write_file_atomic(a.out, txt, strlen(txt))) {
        free(txt);
        goto lib_fail;
    }
    free(txt);
    rc = 0;
    goto done;
lib_fail:
    cli_lib_error();
done:
    for (int k = 0; k < nd; k++) xd_diff_free(diffs[k]);
    free(head);
    free(theta0);
    pair_free(&p);
    xd_model_free(m);
    json_decref(s.root);
    return rc;
}

/* xdistill debias report R1.json [R2.json ...] -o REPORT.html [--labels A,B,...] */
static int debias_report(int argc, char **argv) {
    const char *out = NULL, *labels_arg = NULL, *v, *files[64];
    int n = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; out = v; }
        else if ((r = take_opt(argc, argv, &i, "--labels", &v))) { if (r < 0) return 2; labels_arg = v; }
        else if (argv[i][0] == '-') return cli_error("debias report: unknown option '%s'", argv[i]), 2;
        else if (n >= 64) return cli_error("debias report: at most 64 results"), 2;
        else files[n++] = argv[i];
    }
    if (!n || !out) return usage(stderr), 2;
    const char *labels[64];
    char buf[4096];
    int nl = 0;
    if (labels_arg && (nl = split_list("--labels", labels_arg, buf, sizeof buf, labels, 64)) < 0)
        return 2;
    if (labels_arg && nl != n) return cli_error("--labels: %d labels for %d results", nl, n), 2;
    for (int i = nl; i < n; i++) labels[i] = files[i];
    xd_debias_result *res = calloc((size_t)n, sizeof *res);
    int rc = 1;
    char *html = NULL;
    if (!res) { cli_error("out of memory"); goto done; }
    for (int i = 0; i < n; i++)
        if (xd_debias_result_load(files[i], &res[i])) goto fail;
    if (!(html = xd_debias_report_html(res, labels, n)) ||
        xd_write_file_atomic(out, html, strlen(html)))
        goto fail;
    printf("{\"report\":\"%s\",\"results\":%d}\n", out, n);
    rc = 0;
    goto done;
fail:
    cli_lib_error();
done:
    free(html);
    free(res);
    return rc;
}

int cmd_debias(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage(stdout), 0; /* every subcommand: one text */
    if (argc < 2) return usage(stderr), 2;
    if (!strcmp(argv[1], "task")) return debias_task(argc - 1, argv + 1);
    if (!strcmp(argv[1], "attribute")) return debias_attribute(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return debias_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "report")) return debias_report(argc - 1, argv + 1);
    cli_error("debias: unknown subcommand '%s' (task, attribute, eval or report)", argv[1]);
    return usage(stderr), 2;
}
