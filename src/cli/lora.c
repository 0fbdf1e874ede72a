/* xdistill lora MODEL --data DATA -o OUT [--r R --alpha A --targets LIST --init I ...]
 *   LoRA fine-tuning: adapters beside the chosen linear layers of every block,
 *   the base frozen, AdamW on the adapters only, through the shared trainer
 *   (log, checkpoints, --resume, progress). Writes OUT/adapter in PEFT's format.
 * xdistill lora merge MODEL ADAPTER -o OUT
 *   folds the adapter into the base weights (W += scaling·B·A) and writes the
 *   merged model as an HF directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_args.h"
#include "core/log.h"
#include "model/lora.h"
#include "train/lora_init.h"
#include "xdistill.h"

static int usage(void) {
    fprintf(stderr,
            "usage: xdistill lora MODEL --data DATA -o OUT [options]\n"
            "       xdistill lora merge MODEL ADAPTER -o OUT\n"
            "  MODEL            a teacher (GGUF or HF directory) or a student\n"
            "  --r R            adapter rank (8)             --alpha A   lora_alpha (8)\n"
            "  --rslora         scaling alpha/sqrt(r) instead of alpha/r\n"
            "  --targets LIST   comma-separated: q,k,v,o,gate,up,down (PEFT's q_proj, ... also;\n"
            "                   default all seven)\n"
            "  --init I         random (PEFT's default: A Kaiming-uniform, B = 0), pissa\n"
            "                   (principal singular vectors; the base keeps the residual, and\n"
            "                   OUT/adapter is converted to a plain LoRA of rank 2r on the\n"
            "                   original base, as PEFT does), or eva (not available yet)\n"
            "  --seed S         initialisation seed (1)\n"
            "training options (defaults for LoRA: --lr 2e-4 --min-lr 2e-5 --wd 0):\n%s"
            "writes OUT/adapter (adapter_config.json + adapter_model.safetensors),\n"
            "OUT/log.jsonl and OUT/checkpoint\n",
            train_args_usage);
    return 2;
}

static int cmd_lora_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *v;
    int r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; out = v; }
        else if (argv[i][0] == '-') return cli_error("lora merge: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else if (!adapter) adapter = argv[i];
        else return cli_error("lora merge: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !adapter || !out) return usage();
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    xd_lora_adapter *a = xd_lora_load(adapter);
    int rc = 1;
    if (!a || xd_lora_merge(m, a, 1.0f) || xd_model_save(m, out)) cli_lib_error();
    else {
        printf("{\"merged\":\"%s\",\"adapter\":\"%s\",\"modules\":%d,\"model\":\"%s\"}\n", model,
               adapter, a->n_modules, out);
        rc = 0;
    }
    xd_lora_free(a);
    xd_model_free(m);
    return rc;
}

/* "q,k,gate_proj" -> a mask of targets; -1 with an error. */
static long parse_targets(const char *s) {
    unsigned mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = xd_lora_target_parse(t);
        if (k < 0) return cli_error("--targets: %s", xd_last_error()), -1;
        mask |= 1u << k;
    }
    if (!mask) return cli_error("--targets '%s': expected at least one module", s), -1;
    return mask;
}

int cmd_lora(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "merge")) return cmd_lora_merge(argc - 1, argv + 1);
    const char *model = NULL, *data_path = NULL, *v, *init = "random";
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "lora";
    o.lr = 2e-4f;
    o.min_lr = 2e-5f;
    o.weight_decay = 0;
    int threads = 0, r, rank = 8, rslora = 0, seed = 1;
    float alpha = 8;
    long targets = (1u << XD_LORA_NT) - 1;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else if ((r = take_opt(argc, argv, &i, "--r", &v))) {
            if (r < 0 || parse_int("--r", v, 1, 1 << 16, &rank)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--alpha", &v))) {
            if (r < 0 || parse_float("--alpha", v, 1e-6, 1e6, &alpha)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_int("--seed", v, 0, 2147483647, &seed)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--targets", &v))) {
            if (r < 0 || (targets = parse_targets(v)) < 0) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--init", &v))) {
            if (r < 0) return 2;
            init = v;
        } else if (!strcmp(argv[i], "--rslora")) rslora = 1;
        else if (argv[i][0] == '-') return cli_error("lora: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("lora: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !data_path || !o.out_dir) return usage();
    xd_lora_init_kind kind;
    if (xd_lora_init_parse(init, &kind)) return cli_error("--init: %s", xd_last_error()), 2;
    if (threads) xd_set_threads(threads);
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    if (!xd_model_tokenizer(m)) {
        xd_model_free(m);
        return cli_error("%s: the model has no tokenizer (needed to check the data)", model);
    }
    xd_lora_init_opts io = {kind, (unsigned)targets, rank, alpha, rslora, (uint64_t)seed};
    if (o.resume) /* PiSSA's residual base and initial adapter are recomputed, bit for bit */
        xd_log(XD_LOG_INFO, "lora: initialising (%s) before resuming", init);
    xd_lora_adapter *a = xd_lora_init(m, model, &io), *a0 = NULL;
    int rc = 1;
    if (a && kind == XD_LORA_INIT_PISSA && !(a0 = xd_lora_copy(a))) {
        xd_lora_free(a);
        a = NULL;
    }
    if (!a) cli_lib_error();
    else {
        o.lora = a;
        o.lora_pissa0 = a0;
        rc = train_run(m, data_path, &o);
    }
    xd_lora_free(a);
    xd_lora_free(a0);
    xd_model_free(m);
    return rc;
}
