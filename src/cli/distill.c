/* xdistill distill stage1 --teacher T --student S --data DATA -o DIR [options]
 *   Stage I (docs/design.md, "Stage I"): per-layer MSE alignment of the student's new mixer
 *   parameters to the teacher's attention outputs; one teacher forward per
 *   micro-batch feeds all layers. Writes DIR/model (the aligned student),
 *   DIR/log.jsonl (per-layer MSE) and DIR/stage1.json (per-layer validation
 *   MSE before and after).
 *
 * xdistill distill stage2 --student S --logits LOGITS --data DATA -o DIR
 *                         [--trainable all|mixer|lora] [--teacher T] [--w-kl X] [options]
 *   Stage II: end-to-end 0.9·CE + 0.1·top-k KL against the teacher logits
 *   made by `xdistill teacher-logits` for the same data and --seq. With
 *   --teacher, validation also reports the KL to the teacher (computed live).
 *   The saved student records base_hash (config.json): the hash of the weights
 *   it started from, or the one the input already had (see `merge`).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "core/dist.h"
#include "cli/commands.h"
#include "cli/lora_args.h"
#include "cli/train_args.h"
#include "core/error.h"
#include "core/hash.h"
#include "io/atomic.h"
#include "io/topk_logits.h"
#include "model/lora.h"
#include "train/stage1.h"
#include "train/stage2.h"
#include "train/train_model.h"

static const char STAGE1_USAGE[] =
    "usage: xdistill distill stage1 --teacher T --student S --data DATA -o DIR [options]\n";
static const char STAGE2_USAGE[] =
    "usage: xdistill distill stage2 --student S --logits LOGITS --data DATA -o DIR\n"
    "                               [--trainable all|mixer|lora] [--teacher T] [--w-kl X] [options]\n";

static void usage_stage1(FILE *f) {
    fprintf(f,
            "%s(defaults for stage 1: --lr 1e-2 --min-lr 1e-5 --warmup 10 --wd 0 --steps 100 "
            "--batch 1 --seq 256)\n%s",
            STAGE1_USAGE, train_args_usage);
}

/* Per-layer validation MSE of s (forward only). */
static int layer_mse(xd_stage1 *s1, xd_model *s, xd_tokdata *d, const xd_train_opts *o,
                     double *mse, double *mean) {
    xd_trainer_model tm;
    int B = xd_train_rows_per_rank(o->batch);
    if (B < 0 || xd_tm_init_ex(&tm, s, B, o->seq, 0)) return -1;
    int rc = xd_stage1_eval(s1, &tm, d, o->eval_windows, mse, mean);
    xd_tm_free(&tm);
    return rc;
}

static int write_report(const char *out_dir, const double *before, const double *after, int L,
                        double mb, double ma, const xd_train_result *r, const xd_train_opts *o) {
    char path[1100];
    snprintf(path, sizeof path, "%s/stage1.json", out_dir);
    size_t cap = 512 + (size_t)L * 192; /* one layer's entry is < 150 characters */
    char *buf = malloc(cap);
    if (!buf) return -1;
    size_t k = (size_t)snprintf(buf, cap,
                                "{\"stage\":1,\"steps\":%lld,\"tokens\":%lld,\"seconds\":%.1f,"
                                "\"val_mse_mean_before\":%.6g,\"val_mse_mean_after\":%.6g,\"layers\":[",
                                (long long)r->steps_done,
                                (long long)r->steps_done * o->batch * o->seq * o->accum, r->seconds,
                                mb, ma);
    for (int l = 0; l < L && k < cap; l++)
        k += (size_t)snprintf(buf + k, cap - k, "%s{\"layer\":%d,\"val_mse_before\":%.6g,"
                              "\"val_mse_after\":%.6g,\"ratio\":%.4f}", l ? "," : "", l, before[l],
                              after[l], before[l] > 0 ? after[l] / before[l] : 0);
    if (k < cap) k += (size_t)snprintf(buf + k, cap - k, "]}\n");
    int rc = k < cap ? xd_write_file_atomic(path, buf, k) : xd_err("%s: report too long", path);
    free(buf);
    return rc;
}

static int stage1(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage_stage1(stdout), 0;
    const char *teacher = NULL, *student = NULL, *data_path = NULL, *v;
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "stage1";
    o.lr = 1e-2f;
    o.min_lr = 1e-5f;
    o.weight_decay = 0;
    o.batch = 1;
    o.seq = 256;
    o.eval_windows = 16;
    int threads = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--teacher", &v))) { if (r < 0) return 2; teacher = v; }
        else if ((r = take_opt(argc, argv, &i, "--student", &v))) { if (r < 0) return 2; student = v; }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else return cli_error("distill stage1: unknown argument '%s'", argv[i]), 2;
    }
    if (!teacher || !student || !data_path || !o.out_dir) return usage_stage1(stderr), 2;
    if (threads) xd_set_threads(threads);
    o.train_only = xd_mixer_param_names;
    o.n_train_only = xd_n_mixer_param_names;
    xd_model *t = xd_model_load(teacher), *s = t ? xd_model_load(student) : NULL;
    xd_tokdata *d = s ? xd_tokdata_open(data_path) : NULL;
    int rows = d ? xd_train_rows_per_rank(o.batch) : -1; /* each rank's share */
    xd_stage1 *s1 = rows > 0 ? xd_stage1_create(t, s, rows, o.seq) : NULL;
    int rc = 1, L = s ? s->cfg.n_layer : 0;
    double *before = calloc((size_t)L + 1, sizeof(double)), *after = calloc((size_t)L + 1, sizeof(double));
    double mb = 0, ma = 0;
    xd_train_result res;
    if (!s1 || !before || !after) goto done;
    if (xd_model_tokenizer(t) && xd_tokdata_check_tokenizer(d, xd_model_tokenizer(t))) goto done;
    o.objective = xd_stage1_objective(s1);
    if (layer_mse(s1, s, d, &o, before, &mb)) goto done;
    fprintf(stderr, "stage1: validation MSE before: mean over %d layers %.6g\n", L, mb);
    if (xd_train(s, d, &o, &res)) goto done;
    if (train_stopped(&o, &res)) { rc = 0; goto done; }
    if (layer_mse(s1, s, d, &o, after, &ma)) goto done;
    fprintf(stderr, "stage1: validation MSE after:  mean over %d layers %.6g (%.1f%% of before)\n",
            L, ma, mb > 0 ? 100 * ma / mb : 0);
    if (xd_dist_rank() == 0 && write_report(o.out_dir, before, after, L, mb, ma, &res, &o)) goto done;
    printf("{\"kind\":\"stage1\",\"steps\":%lld,\"val_mse_before\":%.6g,\"val_mse_after\":%.6g,"
           "\"seconds\":%.1f,\"model\":\"%s/model\",\"report\":\"%s/stage1.json\"}\n",
           (long long)res.steps_done, mb, ma, res.seconds, o.out_dir, o.out_dir);
    rc = 0;
done:
    if (rc) cli_lib_error();
    free(before);
    free(after);
    xd_stage1_free(s1);
    xd_tokdata_close(d);
    xd_model_free(s);
    xd_model_free(t);
    return rc;
}

static void usage_stage2(FILE *f) {
    fprintf(f,
            "%s(defaults for stage 2: --lr 1e-5 --min-lr 1e-6 --warmup 10 --wd 0.1 --clip 1 --batch 1,\n"
            " --seq = the logits file's; --w-kl 0.1 and the CE weight 1 − w-kl)\n%s"
            "--trainable lora: LoRA adapters on the student (the student frozen), written to\n"
            "OUT/adapter in PEFT's format (fold them in with `xdistill lora merge`); adapters\n"
            "usually want a larger --lr (2e-4):\n%s",
            STAGE2_USAGE, train_args_usage, lora_args_usage);
}

/* Validation CE (and KL) of the student, with its LoRA adapters when given. */
static int stage2_eval(xd_stage2 *s2, xd_model *s, xd_lora_adapter *lora, const xd_tokdata *d,
                       const xd_train_opts *o, double *ce, double *kl) {
    xd_trainer_model tm;
    xd_lora_set ls = {0};
    int B = xd_train_rows_per_rank(o->batch);
    if (B < 0) return -1;
    int e = lora ? xd_lora_bind(&ls, s, lora, 0) || xd_tm_init_lora(&tm, s, &ls, B, o->seq)
                 : xd_tm_init_ex(&tm, s, B, o->seq, 0);
    if (!e) {
        e = xd_stage2_eval(s2, &tm, d, o->eval_windows, ce, kl);
        xd_tm_free(&tm);
    }
    xd_lora_unbind(&ls);
    return e;
}

static int stage2(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage_stage2(stdout), 0;
    const char *student = NULL, *logits = NULL, *data_path = NULL, *teacher = NULL, *v;
    const char *trainable = "all";
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "stage2";
    o.lr = 1e-5f;
    o.min_lr = 1e-6f;
    o.batch = 1;
    o.seq = 0;
    o.eval_windows = 16;
    xd_stage2_opts so = {0.9f, 0.1f, NULL};
    lora_cli_opts lc;
    lora_args_defaults(&lc);
    const char *lora_opt = NULL; /* a LoRA option given (needs --trainable lora) */
    xd_lora_adapter *lora = NULL, *lora0 = NULL;
    int threads = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--student", &v))) { if (r < 0) return 2; student = v; }
        else if ((r = take_opt(argc, argv, &i, "--logits", &v))) { if (r < 0) return 2; logits = v; }
        else if ((r = take_opt(argc, argv, &i, "--teacher", &v))) { if (r < 0) return 2; teacher = v; }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else if ((r = take_opt(argc, argv, &i, "--trainable", &v))) {
            if (r < 0) return 2;
            if (strcmp(v, "all") && strcmp(v, "mixer") && strcmp(v, "lora"))
                return cli_error("--trainable: '%s' is not one of all, mixer, lora", v), 2;
            trainable = v;
        } else if ((r = lora_arg(argc, argv, &i, &lc))) {
            if (r < 0) return 2;
            lora_opt = argv[i - 1];
        } else if ((r = take_opt(argc, argv, &i, "--w-kl", &v))) {
            if (r < 0 || parse_float("--w-kl", v, 0, 1, &so.w_kl)) return 2;
            so.w_ce = 1.0f - so.w_kl;
        } else return cli_error("distill stage2: unknown argument '%s'", argv[i]), 2;
    }
    if (!student || !logits || !data_path || !o.out_dir) return usage_stage2(stderr), 2;
    if (lora_opt && strcmp(trainable, "lora"))
        return cli_error("%s: a LoRA option; it needs --trainable lora", lora_opt), 2;
    if (threads) xd_set_threads(threads);
    if (!strcmp(trainable, "mixer")) {
        o.train_only = xd_mixer_param_names;
        o.n_train_only = xd_n_mixer_param_names;
    }
    xd_topk *f = xd_topk_open(logits);
    xd_model *s = f ? xd_model_load(student) : NULL;
    xd_model *t = s && teacher ? xd_model_load(teacher) : NULL;
    xd_tokdata *d = s && (t || !teacher) ? xd_tokdata_open(data_path) : NULL;
    xd_stage2 *s2 = NULL;
    int rc = 1;
    double ce0 = NAN, kl0 = NAN, ce1 = NAN, kl1 = NAN;
    xd_train_result res;
    if (!d) goto done;
    if (!o.seq) o.seq = (int)xd_topk_header_of(f)->seq;
    so.teacher = t;
    if (!s->cfg.student) {
        xd_err("%s: not a student (convert a teacher first: xdistill convert)", student);
        goto done;
    }
    /* base identity for `merge`: the hash of the weights Stage II starts from.
     * A student that already has one (it came out of an earlier stage2, e.g. a
     * continued run) keeps the original, so every expert trained from one
     * Stage I checkpoint carries the same base_hash however often it is
     * re-trained. */
    if (!s->cfg.base_hash)
        s->cfg.base_hash = xd_hash64(s->arena, s->arena_floats * sizeof(float), 0);
    if (!(s2 = xd_stage2_create(f, s, d, &o, &so))) goto done;
    o.objective = xd_stage2_objective(s2);
    if (!strcmp(trainable, "lora") && !(lora = lora_prepare(s, student, &lc, data_path, &o, &lora0)))
        goto done;
    if (stage2_eval(s2, s, lora, d, &o, &ce0, &kl0)) goto done;
    if (isfinite(kl0)) fprintf(stderr, "stage2: before: validation CE %.4f, KL to the teacher %.4f\n", ce0, kl0);
    else fprintf(stderr, "stage2: before: validation CE %.4f (KL to the teacher: give --teacher)\n", ce0);
    if (xd_train(s, d, &o, &res)) goto done;
    if (train_stopped(&o, &res)) { rc = 0; goto done; }
    if (stage2_eval(s2, s, lora, d, &o, &ce1, &kl1)) goto done;
    if (isfinite(kl1)) fprintf(stderr, "stage2: after:  validation CE %.4f, KL to the teacher %.4f\n", ce1, kl1);
    else fprintf(stderr, "stage2: after:  validation CE %.4f\n", ce1);
    char path[1100], buf[1024];
    snprintf(path, sizeof path, "%s/stage2.json", o.out_dir);
    int n = snprintf(buf, sizeof buf,
                     "{\"stage\":2,\"steps\":%lld,\"tokens\":%lld,\"seconds\":%.1f,\"trainable\":\"%s\","
                     "\"w_ce\":%g,\"w_kl\":%g,\"val_ce_before\":%.6g,\"val_ce_after\":%.6g,"
                     "\"val_kl_before\":%.6g,\"val_kl_after\":%.6g}\n",
                     (long long)res.steps_done,
                     (long long)res.steps_done * o.batch * o.seq * o.accum, res.seconds, trainable,
                     so.w_ce, so.w_kl, ce0, ce1, isfinite(kl0) ? kl0 : -1, isfinite(kl1) ? kl1 : -1);
    if (xd_dist_rank() == 0 && xd_write_file_atomic(path, buf, (size_t)n)) goto done;
    printf("{\"kind\":\"stage2\",\"steps\":%lld,\"val_ce_before\":%.6g,\"val_ce_after\":%.6g,"
           "\"val_kl_before\":%.6g,\"val_kl_after\":%.6g,\"seconds\":%.1f,\"%s\":\"%s/%s\"}\n",
           (long long)res.steps_done, ce0, ce1, isfinite(kl0) ? kl0 : -1, isfinite(kl1) ? kl1 : -1,
           res.seconds, lora ? "adapter" : "model", o.out_dir, lora ? "adapter" : "model");
    rc = 0;
done:
    if (rc) cli_lib_error();
    xd_stage2_free(s2);
    xd_tokdata_close(d);
    xd_model_free(t);
    xd_model_free(s);
    xd_topk_close(f);
    xd_lora_free(lora);
    xd_lora_free(lora0);
    return rc;
}

/* The subcommands' usage lines. */
static void usage(FILE *f) {
    fprintf(f, "%s%s(xdistill distill stage1|stage2 --help: the options of each)\n", STAGE1_USAGE,
            STAGE2_USAGE);
}

int cmd_distill(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "stage1")) return stage1(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "stage2")) return stage2(argc - 1, argv + 1);
    if (wants_help(argc, argv)) return usage(stdout), 0;
    return usage(stderr), 2;
}
