/* xdistill quantize MODEL -o OUT.gguf [--type q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|f16|bf16|f32]
 * A teacher or a student (GGUF or HF directory) written as GGUF with its products' matrices
 * in the type's blocks (ggml's reference quantisers), everything else in F32. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/ggml_type.h"
#include "io/ggml_types.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "xdistill.h"

static const char USAGE[] =
    "usage: xdistill quantize MODEL -o OUT.gguf [--type T] [--threads N]\n"
    "  MODEL       a GGUF file or an HF directory: a teacher (llama, qwen2, qwen3, olmo2) or\n"
    "              a student (its mixer stays f32), read as fp32\n"
    "  --type T    the matrices' type: q8_0 (default), q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k,\n"
    "              f16, bf16, f32;\n"
    "              vectors (norms, biases) stay f32. A matrix whose rows are not a multiple\n"
    "              of the type's block is an error naming it.";

int cmd_quantize(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *model = NULL, *out = NULL, *tname = "q8_0", *v;
    int threads = 0, r;
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) { if (r < 0) return 2; out = v; }
        else if ((r = take_opt(argc, argv, &i, "--type", &v))) { if (r < 0) return 2; tname = v; }
        else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if (argv[i][0] == '-') return cli_error("quantize: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("quantize: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !out) return cli_error("%s", USAGE), 2;
    int type = -1;
    for (uint32_t t = 0; t < GGML_TYPE_MAX; t++)
        if (xd_quantize_writable(t) && !strcasecmp(tname, xd_ggml_type_name(t))) type = (int)t;
    if (type < 0)
        return cli_error("--type '%s': expected q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16 "
                         "or f32", tname), 2;
    if (threads) xd_set_threads(threads);
    double t0 = now_s();
    xd_model *m = xd_model_load(model);
    if (!m) return cli_lib_error();
    int rc = xd_model_save_gguf(m, out, (uint32_t)type);
    size_t params = xd_model_n_params(m);
    xd_model_free(m);
    if (rc) return cli_lib_error();
    struct stat st;
    long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
    printf("{\"out\": \"%s\", \"type\": \"%s\", \"bytes\": %lld, \"fp32_bytes\": %zu, "
           "\"seconds\": %.2f}\n", out, xd_ggml_type_name((uint32_t)type), bytes, params * 4,
           now_s() - t0);
    return 0;
}
