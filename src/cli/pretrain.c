/* xdistill pretrain --config CONFIG.json --tokenizer MODEL --data DATA -o DIR [options]
 * Trains a model of the config's architecture from random weights. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_args.h"
#include "io/hfconfig.h"
#include "model/model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: xdistill pretrain --config CONFIG.json --tokenizer MODEL --data DATA -o DIR "
               "[options]\n%s", train_args_usage);
}

int cmd_pretrain(int argc, char **argv) {
    if (wants_help(argc, argv)) return usage(stdout), 0;
    const char *config = NULL, *tok_path = NULL, *data_path = NULL, *v;
    xd_train_opts o;
    xd_train_defaults(&o);
    o.kind = "pretrain";
    int threads = 0, r;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if ((r = train_arg(argc, argv, &i, &o, &threads))) { if (r < 0) return 2; }
        else if ((r = take_opt(argc, argv, &i, "--config", &v))) { if (r < 0) return 2; config = v; }
        else if ((r = take_opt(argc, argv, &i, "--tokenizer", &v))) { if (r < 0) return 2; tok_path = v; }
        else if ((r = take_opt(argc, argv, &i, "--data", &v))) { if (r < 0) return 2; data_path = v; }
        else if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; o.out_dir = v; }
        else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &seed)) return 2;
        } else return cli_error("pretrain: unknown argument '%s'", argv[i]), 2;
    }
    if (!config || !tok_path || !data_path || !o.out_dir) return usage(stderr), 2;
    if (threads) xd_set_threads(threads);
    xd_config cfg;
    if (xd_hf_config_load(config, &cfg)) return cli_lib_error();
    xd_tokenizer *tok = xd_tokenizer_load(tok_path);
    if (!tok) return cli_lib_error();
    int n_tok = xd_tokenizer_n_tokens(tok);
    if (n_tok > cfg.vocab_size) {
        xd_tokenizer_free(tok);
        return cli_error("%s: vocab_size %d is smaller than the tokenizer's %d tokens (%s)", config,
                         cfg.vocab_size, n_tok, tok_path);
    }
    xd_model *m = xd_model_create(&cfg, seed);
    if (!m) { xd_tokenizer_free(tok); return cli_lib_error(); }
    m->tok = tok;
    int rc = train_run(m, data_path, &o);
    xd_model_free(m);
    return rc;
}
