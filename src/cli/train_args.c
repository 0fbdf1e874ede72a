#include "train_args.h"

#include <stdio.h>
#include <string.h>

#include "cli/args.h"

const char *train_args_usage =
    "  --steps N        optimiser steps (100)          --batch B    rows per micro-batch (4)\n"
    "  --seq T          tokens per row (128)           --accum K    micro-batches per step (1)\n"
    "  --lr X           peak learning rate (1e-3)      --min-lr X   final learning rate (1e-5)\n"
    "  --warmup N       warm-up steps (10)             --wd X       weight decay (0.1)\n"
    "  --clip X         grad-norm clip, 0 = off (1.0)  --seed S     initialisation seed (1)\n"
    "  --eval-every N   validate every N steps (0 = at the end)\n"
    "  --eval-windows N validation windows (64; 0 = the whole split)\n"
    "  --save-every N   checkpoint every N steps (0 = at the end)\n"
    "  --freeze NAME    do not train weights whose name contains NAME (repeatable)\n"
    "  --resume         continue from OUT/checkpoint      --threads N  threads (all cores)\n"
    "  --stop-at N      stop after step N with a checkpoint (continue later with --resume)\n"
    "  --overlap-comm 0|1  under mpirun: sum each layer's gradients across the ranks while\n"
    "                   the backward goes on (1, default) or after it (0); same result\n"
    "  --bf16           matrix products in bf16 with fp32 accumulation (needs oneDNN;\n"
    "                   weights, gradients and AdamW stay fp32)\n";

static const char *freeze_list[64];

int train_arg(int argc, char **argv, int *i, xd_train_opts *o, int *threads) {
    const char *v;
    int r, iv;
#define INT_OPT(name, lo, hi, dst)                                                     \
    if ((r = take_opt(argc, argv, i, name, &v))) {                                    \
        if (r < 0 || parse_int(name, v, lo, hi, &iv)) return -1;                     \
        dst = iv;                                                                     \
        return 1;                                                                     \
    }
#define FLOAT_OPT(name, lo, hi, dst)                                                   \
    if ((r = take_opt(argc, argv, i, name, &v))) {                                    \
        if (r < 0 || parse_float(name, v, lo, hi, &dst)) return -1;                  \
        return 1;                                                                     \
    }
    INT_OPT("--steps", 1, 1 << 30, o->steps);
    INT_OPT("--batch", 1, 1 << 16, o->batch);
    INT_OPT("--seq", 2, 1 << 20, o->seq);
    INT_OPT("--accum", 1, 1 << 16, o->accum);
    INT_OPT("--warmup", 0, 1 << 30, o->warmup);
    INT_OPT("--eval-every", 0, 1 << 30, o->eval_every);
    INT_OPT("--eval-windows", 0, 1 << 30, o->eval_windows);
    INT_OPT("--save-every", 0, 1 << 30, o->save_every);
    INT_OPT("--log-every", 1, 1 << 30, o->log_every);
    INT_OPT("--stop-at", 1, 1 << 30, o->stop_at);
    INT_OPT("--overlap-comm", 0, 1, o->overlap_comm);
    INT_OPT("--threads", 1, 1024, *threads);
    FLOAT_OPT("--lr", 1e-12, 1e6, o->lr);
    FLOAT_OPT("--min-lr", 0, 10, o->min_lr);
    FLOAT_OPT("--wd", 0, 10, o->weight_decay);
    FLOAT_OPT("--clip", 0, 1e6, o->clip);
#undef INT_OPT
#undef FLOAT_OPT
    if ((r = take_opt(argc, argv, i, "--freeze", &v))) {
        if (r < 0) return -1;
        if (o->n_freeze >= 64) return cli_error("--freeze: at most 64 patterns"), -1;
        freeze_list[o->n_freeze++] = v;
        o->freeze = freeze_list;
        return 1;
    }
    if (!strcmp(argv[*i], "--resume")) {
        o->resume = 1;
        return 1;
    }
    if (!strcmp(argv[*i], "--bf16")) {
        if (xd_set_compute(XD_COMPUTE_BF16)) return cli_error("--bf16: %s", xd_last_error()), -1;
        return 1;
    }
    return 0;
}

static void train_report(const xd_train_opts *o, const xd_train_result *r) {
    printf("{\"kind\":\"%s\",\"compute\":\"%s\",\"steps\":%lld,\"loss\":%.6f,\"val_loss\":%.6f,\"tok_s\":%.1f,"
           "\"seconds\":%.1f,\"%s\":\"%s/%s\",\"log\":\"%s/log.jsonl\"}\n",
           o->kind, xd_get_compute() == XD_COMPUTE_BF16 ? "bf16" : "fp32", (long long)r->steps_done, r->last_loss, r->val_loss, r->tokens_per_s, r->seconds,
           o->lora ? "adapter" : "model", o->out_dir, o->lora ? "adapter" : "model", o->out_dir);
}

int train_stopped(const xd_train_opts *o, const xd_train_result *r) {
    if (r->steps_done >= o->steps) return 0;
    fprintf(stderr, "%s: stopped after step %lld of %lld (--stop-at), checkpoint in %s/checkpoint: "
            "continue with the same options and --resume\n", o->kind, (long long)r->steps_done,
            (long long)o->steps, o->out_dir);
    return 1;
}

int train_run(xd_model *m, const char *data_path, const xd_train_opts *o) {
    xd_tokdata *d = xd_tokdata_open(data_path);
    xd_train_result res;
    int rc = 1;
    if (!d || xd_train(m, d, o, &res)) cli_lib_error();
    else {
        if (!train_stopped(o, &res)) train_report(o, &res);
        rc = 0;
    }
    xd_tokdata_close(d);
    return rc;
}
