/* xdistill finetune MODEL --data DATA -o DIR [options]
 * Full fine-tune of a loaded model with cross-entropy. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_args.h"

static void usage(FILE *f) {
    fprintf(f, "usage: xdistill finetune MODEL --data DATA -o DIR [options]\n%s", train_args_usage);
}

int cmd_finetune(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage(stdout), 0;
    const char *model = NULL, *data_path = NULL, *v;
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "finetune";
    o.lr = 1e-5f;
    o.min_lr = 1e-6f;
    int threads = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else if (argv[i][0] == '-') return cli_error("finetune: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("finetune: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !data_path || !o.out_dir) return usage(stderr), 2;
    if (threads) xd_set_threads(threads);
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    if (!xd_model_tokenizer(m)) {
        xd_model_free(m);
        return cli_error("%s: the model has no tokenizer (needed to check the data)", model);
    }
    int rc = train_run(m, data_path, &o);
    xd_model_free(m);
    return rc;
}
