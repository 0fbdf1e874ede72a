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
#include "cli/lora_args.h"
#include "model/lora.h"
#include "xdistill.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: xdistill lora MODEL --data DATA -o OUT [options]\n"
            "       xdistill lora merge MODEL ADAPTER -o OUT\n"
            "  MODEL            a teacher (GGUF or HF directory) or a student\n%s"
            "training options (defaults for LoRA: --lr 2e-4 --min-lr 2e-5 --wd 0):\n%s"
            "writes OUT/adapter (adapter_config.json + adapter_model.safetensors),\n"
            "OUT/log.jsonl and OUT/checkpoint\n",
            lora_args_usage, train_args_usage);
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
    if (!model || !adapter || !out) return usage(stderr), 2;
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    xd_lora_adapter *a = xd_lora_load(adapter);
    int rc = 1;
    if (!a || xd_lora_check_base(a, m, adapter) || xd_lora_merge(m, a, 1.0f) ||
        xd_model_save(m, out))
        cli_lib_error();
    else {
        printf("{\"merged\":\"%s\",\"adapter\":\"%s\",\"modules\":%d,\"model\":\"%s\"}\n", model,
               adapter, a->n_modules, out);
        rc = 0;
    }
    xd_lora_free(a);
    xd_model_free(m);
    return rc;
}

int cmd_lora(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage(stdout), 0; /* lora and lora merge: one text */
    if (argc > 1 && !strcmp(argv[1], "merge")) return cmd_lora_merge(argc - 1, argv + 1);
    const char *model = NULL, *data_path = NULL, *v;
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "lora";
    o.lr = 2e-4f;
    o.min_lr = 2e-5f;
    o.weight_decay = 0;
    lora_cli_opts lc;
    lora_args_defaults(&lc);
    int threads = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = lora_arg(argc, argv, &i, &lc))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--seed", &v))) { /* = --lora-seed */
            int sv;
            if (r < 0 || parse_int("--seed", v, 0, 2147483647, &sv)) return 2;
            lc.init.seed = (uint64_t)sv;
        }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else if (argv[i][0] == '-') return cli_error("lora: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("lora: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !data_path || !o.out_dir) return usage(stderr), 2;
    if (threads) xd_set_threads(threads);
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    if (!xd_model_tokenizer(m)) {
        xd_model_free(m);
        return cli_error("%s: the model has no tokenizer (needed to check the data)", model);
    }
    /* on --resume the initialisation is recomputed (PiSSA's residual base bit for bit),
     * then the checkpoint's adapter replaces it */
    xd_lora_adapter *a0 = NULL, *a = lora_prepare(m, model, &lc, data_path, &o, &a0);
    int rc = 1;
    if (!a) cli_lib_error();
    else rc = train_run(m, data_path, &o);
    xd_lora_free(a);
    xd_lora_free(a0);
    xd_model_free(m);
    return rc;
}
