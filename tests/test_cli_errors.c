/* The command line turns bad input into "xdistill: error: ..." naming the
 * file or option, and a non-zero exit status — never a crash (a signal). */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "test.h"

/* Runs `xdistill ARGS`, captures stderr; expects exit status `want_status`
 * and stderr containing every string in `want` (NULL-terminated). */
static void expect(const char *args, int want_status, const char *const *want) {
    char err[8192] = {0};
    int st = test_cli_run(args, err, sizeof err, TEST_CLI_STDERR);
    CHECK(st != 128, "'%s' did not exit normally (signal?)", args);
    CHECK(st == want_status, "'%s': status %d, expected %d: %s", args, st, want_status, err);
    for (; want && *want; want++)
        CHECK(strstr(err, *want) != NULL, "'%s': stderr lacks '%s': %s", args, *want, err);
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Writes a copy of tiny-kquant.gguf to `out` with blk.1.ffn_down.weight's
 * ggml type set to `type` (its tensor info: name, u32 n_dims = 2, u64 ne[2],
 * u32 type, u64 offset). */
static int kquant_with_type(const char *out, uint32_t type) {
    FILE *f = fopen(XD_SOURCE_DIR "/tests/fixtures/tiny-kquant.gguf", "rb");
    static unsigned char b[1 << 17];
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    const char *name = "blk.1.ffn_down.weight";
    unsigned char *p = n ? memmem(b, n, name, strlen(name)) : NULL;
    if (!p || n == sizeof b) return -1;
    memcpy(p + strlen(name) + 4 + 16, &type, 4);
    f = fopen(out, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(void) {
    char tiny[1024], args[4096], tmp[256];
    snprintf(tiny, sizeof tiny, "%s/tests/fixtures/tiny-llama.gguf", XD_SOURCE_DIR);
    snprintf(tmp, sizeof tmp, "/tmp/xd_cli_%d", (int)getpid());

    expect("", 2, W("usage"));
    expect("frobnicate", 2, W("xdistill: error:", "unknown command 'frobnicate'"));
    expect("inspect /nonexistent.gguf", 1, W("xdistill: error:", "/nonexistent.gguf"));
    expect("inspect /tmp", 1, W("xdistill: error:", "config.json"));

    /* a truncated GGUF */
    snprintf(args, sizeof args, "head -c 1000 %s > %s.gguf", tiny, tmp);
    CHECK(system(args) == 0, "head");
    snprintf(args, sizeof args, "inspect %s.gguf", tmp);
    expect(args, 1, W("xdistill: error:", ".gguf", "tokenizer.ggml.tokens", "cannot fit"));
    snprintf(args, sizeof args, "generate %s.gguf -p hi", tmp);
    expect(args, 1, W("xdistill: error:", "cannot fit"));
    /* not a GGUF at all */
    snprintf(args, sizeof args, "printf 'hello world, this is not a model at all' > %s.gguf", tmp);
    CHECK(system(args) == 0, "printf");
    snprintf(args, sizeof args, "inspect %s.gguf", tmp);
    expect(args, 1, W("xdistill: error:", "magic"));
    /* a ggml type we do not read (IQ2_XXS = 16) is named, with the tensor and what we read */
    snprintf(args, sizeof args, "%s.gguf", tmp);
    CHECK(kquant_with_type(args, 16) == 0, "cannot write %s", args);
    snprintf(args, sizeof args, "inspect %s.gguf", tmp);
    expect(args, 1, W("xdistill: error:", ".gguf", "blk.1.ffn_down.weight",
                      "unsupported ggml type 16 (IQ2_XXS)", "Q3_K"));
    snprintf(args, sizeof args, "rm -f %s.gguf", tmp);
    CHECK(system(args) == 0, "rm");

    /* out-of-range and malformed options */
    snprintf(args, sizeof args, "generate %s -p hi -n -5", tiny);
    expect(args, 2, W("xdistill: error:", "-n", "-5"));
    snprintf(args, sizeof args, "generate %s -p hi --temp abc", tiny);
    expect(args, 2, W("--temp", "abc"));
    snprintf(args, sizeof args, "generate %s -p hi --top-p 1.5", tiny);
    expect(args, 2, W("--top-p"));
    snprintf(args, sizeof args, "generate %s -p", tiny);
    expect(args, 2, W("-p needs a value"));
    snprintf(args, sizeof args, "generate %s", tiny);
    expect(args, 2, W("usage"));
    snprintf(args, sizeof args, "ppl %s /nonexistent.txt", tiny);
    expect(args, 1, W("/nonexistent.txt"));
    snprintf(args, sizeof args, "ppl %s %s --ctx 1", tiny, tiny);
    expect(args, 2, W("--ctx"));
    snprintf(args, sizeof args, "ppl %s %s --ctx 8 --stride 9", tiny, tiny);
    expect(args, 2, W("--stride"));
    snprintf(args, sizeof args, "tokenize %s --decode \"1 2 999999\"", tiny);
    expect(args, 1, W("999999"));

    /* data prep --prompt-field reads prompts from JSONL records only; nothing is written */
    snprintf(args, sizeof args, "printf 'some plain text\\n' > %s.txt", tmp);
    CHECK(system(args) == 0, "printf");
    snprintf(args, sizeof args, "data prep --tokenizer %s %s.txt -o %s.tok --prompt-field prompt",
             tiny, tmp, tmp);
    expect(args, 1, W("xdistill: error:", ".txt: --prompt-field prompt needs JSONL records",
                      "pass --jsonl"));
    snprintf(args, sizeof args, "%s.tok", tmp);
    CHECK(access(args, F_OK) != 0, "a refused prep wrote %s", args);
    snprintf(args, sizeof args, "data prep --tokenizer %s %s.txt -o %s.tok --prompt-field", tiny,
             tmp, tmp);
    expect(args, 2, W("--prompt-field"));
    snprintf(args, sizeof args, "rm -f %s.txt", tmp);
    CHECK(system(args) == 0, "rm");

    /* and the happy paths on the tiny model work */
    snprintf(args, sizeof args, "inspect %s", tiny);
    expect(args, 0, NULL);
    /* k-quant and IQ4 tensors are listed by type (the loading is checked in test_gguf) */
    char out[16384];
    snprintf(args, sizeof args, "inspect %s/tests/fixtures/tiny-kquant.gguf", XD_SOURCE_DIR);
    CHECK(test_cli_run(args, out, sizeof out, TEST_CLI_STDOUT) == 0, "inspect tiny-kquant");
    const char *kq[][2] = {{"blk.0.ffn_down.weight", "Q2_K"}, {"blk.1.ffn_down.weight", "Q3_K"},
                           {"blk.2.ffn_down.weight", "IQ4_XS"}, {"token_embd.weight", "IQ4_NL"}};
    for (int i = 0; i < 4; i++) {
        const char *line = strstr(out, kq[i][0]);
        char ty[16] = "";
        if (line) sscanf(line + strlen(kq[i][0]), "%15s", ty);
        CHECK(strcmp(ty, kq[i][1]) == 0, "inspect: %s is '%s', expected %s", kq[i][0], ty, kq[i][1]);
    }
    snprintf(args, sizeof args, "generate %s -p \"the cat\" -n 5 --temp 0.7 --top-k 5 --seed 3", tiny);
    expect(args, 0, W("generated"));

    /* lora: bad options and adapters (issue 14, criterion 7); no data file is read
     * before the options and the model are checked */
    snprintf(args, sizeof args, "lora %s --data /nonexistent.tok -o %s.lora --r 0", tiny, tmp);
    expect(args, 2, W("xdistill: error:", "--r"));
    snprintf(args, sizeof args, "lora %s --data /nonexistent.tok -o %s.lora --targets q,qkv", tiny, tmp);
    expect(args, 2, W("xdistill: error:", "'qkv'", "available", "gate_proj"));
    snprintf(args, sizeof args, "lora %s --data /nonexistent.tok -o %s.lora --init loftq", tiny, tmp);
    expect(args, 2, W("xdistill: error:", "loftq", "pissa"));
    snprintf(args, sizeof args, "lora %s --data /nonexistent.tok -o %s.lora --r 200", tiny, tmp);
    expect(args, 1, W("xdistill: error:", "--r 200", "exceeds"));
    snprintf(args, sizeof args, "lora %s --data /nonexistent.tok -o %s.lora", tiny, tmp);
    expect(args, 1, W("xdistill: error:", "/nonexistent.tok"));
    /* a DoRA adapter; an adapter of another base (tiny-qwen3: k_proj maps 48 -> 32) */
    snprintf(args, sizeof args, "lora merge %s %s/tests/fixtures/peft/dora -o %s.merged", tiny,
             XD_SOURCE_DIR, tmp);
    expect(args, 1, W("xdistill: error:", "adapter_config.json", "use_dora"));
    snprintf(args, sizeof args, "lora merge %s/tests/fixtures/tiny-qwen3 %s/tests/fixtures/peft/lora -o %s.merged",
             XD_SOURCE_DIR, XD_SOURCE_DIR, tmp);
    expect(args, 1, W("xdistill: error:", "peft/lora", "k_proj", "48 -> 32"));
    snprintf(args, sizeof args, "lora merge %s /nonexistent-adapter -o %s.merged", tiny, tmp);
    expect(args, 1, W("xdistill: error:", "/nonexistent-adapter"));
    return test_summary("test_cli_errors");
}
