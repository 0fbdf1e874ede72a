/* xdistill generate MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
 *                   [--seed S] [--chat] [--system TEXT] [--ignore-eos] [--threads N]
 * Batched prefill of the prompt, then KV-cache decoding, streaming the text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "xdistill.h"

/* ChatML, the template of SmolLM2 and Qwen instruct models. */
static char *chat_wrap(const char *system, const char *prompt) {
    size_t n = strlen(prompt) + (system ? strlen(system) : 0) + 128;
    char *s = malloc(n);
    if (!s) return NULL;
    if (system)
        snprintf(s, n, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
                       "<|im_start|>assistant\n", system, prompt);
    else
        snprintf(s, n, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", prompt);
    return s;
}

static void emit(const xd_tokenizer *t, int32_t id) {
    char buf[512];
    int k = xd_tokenizer_token_bytes(t, id, buf, sizeof buf);
    if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
    fflush(stdout);
}

static const char USAGE[] =
    "usage: xdistill generate MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] "
    "[--seed S] [--chat] [--system TEXT] [--ignore-eos] [--threads N]\n"
    "  [--weights gguf|fp32|gguf-all]  a GGUF's weights: its own quantised blocks (default:\n"
    "                                  llama.cpp's memory and speed), fp32, or its blocks for\n"
    "                                  every product, prompt included\n"
    "  [--kv-cache float32|bfloat16|int8|int4|k8v4]  a teacher's cache (default float32;\n"
    "                                  bfloat16 halves its bytes, as llama.cpp's f16); a\n"
    "                                  student's window: float32 or bfloat16";

int cmd_generate(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *model = NULL, *prompt = NULL, *system = NULL, *v;
    int n_new = 64, chat = 0, ignore_eos = 0, threads = 0, weights = XD_WEIGHTS_GGUF, r;
    int kv_dtype = XD_KV_F32;
    xd_sampler smp = {0.0f, 0, 1.0f, 1234};
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-p", &v))) { if (r < 0) return 2; prompt = v; }
        else if ((r = take_opt(argc, argv, &i, "-n", &v))) {
            if (r < 0 || parse_int("-n", v, 0, 1 << 24, &n_new)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--temp", &v))) {
            if (r < 0 || parse_float("--temp", v, 0, 100, &smp.temperature)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || parse_int("--top-k", v, 0, 1 << 24, &smp.top_k)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--top-p", &v))) {
            if (r < 0 || parse_float("--top-p", v, 0, 1, &smp.top_p)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || parse_u64("--seed", v, &smp.seed)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--kv-cache", &v))) {
            if (r < 0) return 2;
            if (xd_kv_dtype_parse(v, &kv_dtype))
                return cli_error("--kv-cache '%s': expected float32, bfloat16, int8, int4 or k8v4", v), 2;
        } else if ((r = take_opt(argc, argv, &i, "--weights", &v))) {
            if (r < 0 || parse_weights("--weights", v, &weights)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--system", &v))) {
            if (r < 0) return 2;
            system = v;
            chat = 1;
        } else if (!strcmp(argv[i], "--chat")) chat = 1;
        else if (!strcmp(argv[i], "--ignore-eos")) ignore_eos = 1;
        else if (argv[i][0] == '-') return cli_error("generate: unknown option '%s'", argv[i]), 2;
        else if (!model) model = argv[i];
        else return cli_error("generate: unexpected argument '%s'", argv[i]), 2;
    }
    if (!model || !prompt) return cli_error("%s", USAGE), 2;
    if (threads) xd_set_threads(threads);
    xd_model *m = xd_model_load_weights(model, (xd_weights_mode)weights);
    if (!m) return cli_lib_error();
    const xd_tokenizer *t = xd_model_tokenizer(m);
    if (!t) { xd_model_free(m); return cli_error("%s: no tokenizer (tokenizer.json missing)", model); }
    char *text = chat ? chat_wrap(system, prompt) : strdup(prompt);
    int32_t *ids = NULL;
    size_t n_prompt = 0;
    int rc = 1;
    xd_kv *kv = NULL;
    float *logits = NULL;
    if (!text || xd_tokenizer_encode(t, text, strlen(text), chat, &ids, &n_prompt)) {
        cli_lib_error();
        goto done;
    }
    if (n_prompt == 0) { cli_error("generate: the prompt is empty"); goto done; }
    int V = xd_model_config(m)->vocab_size;
    if (!(kv = xd_kv_create_typed(m, (int)n_prompt + n_new + 1, kv_dtype)) ||
        !(logits = malloc((size_t)V * sizeof(float)))) { cli_lib_error(); goto done; }
    double t0 = now_s();
    if (xd_forward(m, kv, ids, (int)n_prompt, logits, 0)) { cli_lib_error(); goto done; }
    double t1 = now_s();
    uint64_t rng = smp.seed;
    int produced = 0, eos = xd_tokenizer_eos(t);
    fputs(prompt, stdout);
    if (chat) putchar('\n');
    for (; produced < n_new; produced++) {
        int32_t next = xd_sample(&smp, logits, V, &rng);
        if (next < 0) { cli_lib_error(); goto done; }
        if (next == eos && !ignore_eos) break;
        emit(t, next);
        if (produced + 1 < n_new && xd_forward(m, kv, &next, 1, logits, 0)) {
            cli_lib_error();
            goto done;
        }
    }
    double t2 = now_s();
    putchar('\n');
    fprintf(stderr, "[prompt %zu tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | %d threads]\n",
            n_prompt, (double)n_prompt / (t1 - t0), produced,
            produced ? (double)produced / (t2 - t1) : 0.0, xd_get_threads());
    rc = 0;
done:
    free(logits);
    xd_kv_free(kv);
    free(ids);
    free(text);
    xd_model_free(m);
    return rc;
}
