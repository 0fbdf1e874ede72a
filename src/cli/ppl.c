/* xdistill ppl MODEL FILE [--ctx N] [--stride S] [--max-tokens N] [--bos] [--threads N]
 * Perplexity of a text file (see xd_perplexity for the windowing convention). */
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/file.h"
#include "xdistill.h"

static const char USAGE[] = "usage: xdistill ppl MODEL FILE [--ctx N] [--stride S] "
                            "[--max-tokens N] [--bos] [--threads N]\n"
                            "  [--weights fp32|gguf|gguf-all]  a GGUF's weights: fp32 (default), its own "
                            "blocks, or its blocks for every product";

int cmd_ppl(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *model = NULL, *file = NULL, *v;
    int ctx = 512, stride = 0, max_tokens = 0, bos = 0, threads = 0, weights = XD_WEIGHTS_FP32, r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "--ctx", &v))) {
            if (r < 0 || parse_int("--ctx", v, 2, 1 << 20, &ctx)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--stride", &v))) {
            if (r < 0 || parse_int("--stride", v, 1, 1 << 20, &stride)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--max-tokens", &v))) {
            if (r < 0 || parse_int("--max-tokens", v, 2, 1 << 30, &max_tokens)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--weights", &v))) {
            if (r < 0 || parse_weights("--weights", v, &weights)) return 2;
        } else if (!strcmp(argv[i], "--bos")) bos = 1;
        else if (argv[i][0] == '-') return cli_error("ppl: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else if (!file) file = argv[i];
        else return cli_error("ppl: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !file) return cli_error("%s", USAGE), 2;
    if (!stride) stride = ctx;
    if (stride > ctx) return cli_error("--stride %d must not exceed --ctx %d", stride, ctx), 2;
    if (threads) xd_set_threads(threads);
    size_t len;
    char *text;
    if (xd_read_file(file, &text, &len)) return cli_lib_error();
    xd_model *m = xd_model_load_weights(model, (xd_weights_mode)weights);
    if (!m) { free(text); return cli_lib_error(); }
    const xd_tokenizer *t = xd_model_tokenizer(m);
    int rc = 1;
    int32_t *ids = NULL, *seq = NULL;
    size_t n_ids = 0;
    if (!t) { cli_error("%s: no tokenizer", model); goto done; }
    if (xd_tokenizer_encode(t, text, len, 0, &ids, &n_ids)) { cli_lib_error(); goto done; }
    size_t L = n_ids + (size_t)bos;
    if (!(seq = malloc(L * sizeof *seq))) { cli_error("out of memory"); goto done; }
    if (bos) {
        if (xd_tokenizer_bos(t) < 0) { cli_error("%s: --bos: the tokenizer has no BOS token", model); goto done; }
        seq[0] = xd_tokenizer_bos(t);
    }
    memcpy(seq + bos, ids, n_ids * sizeof *ids);
    if (max_tokens && L > (size_t)max_tokens) L = (size_t)max_tokens;
    if (L < 2) { cli_error("%s: needs at least 2 tokens, has %zu", file, L); goto done; }
    double nll, t0 = now_s();
    size_t scored;
    if (xd_perplexity(m, seq, L, ctx, stride, 1, &nll, &scored)) { cli_lib_error(); goto done; }
    double dt = now_s() - t0;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:b, s:f, s:f, s:f}", "model", model,
                          "file", file, "tokens", (json_int_t)L, "scored", (json_int_t)scored,
                          "ctx", ctx, "stride", stride, "bos", bos, "nll", nll, "ppl",
                          exp(nll / (double)scored), "seconds", dt);
    char *js = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (js) puts(js);
    free(js);
    json_decref(o);
    rc = 0;
done:
    free(seq);
    free(ids);
    free(text);
    xd_model_free(m);
    return rc;
}
