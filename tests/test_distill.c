/* Issue 5 through the CLI on a tiny teacher (tests/fixtures/tiny-llama.gguf):
 * convert → distill stage1 → teacher-logits → distill stage2, and the bad
 * inputs of the pipeline.
 *  - Stage I reduces every layer's validation MSE (to < 50% here);
 *  - Stage II with the KL term alone lowers the validation KL to the teacher,
 *    and with the default 0.9·CE + 0.1·KL lowers the validation CE;
 *  - errors: window < 1, a student of another architecture, logits made by
 *    another teacher, for other data, for another --seq, too few rows, a
 *    student config with a missing field. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "io/tokdata.h"
#include "io/peft_adapter.h"
#include "test.h"
#include "xdistill.h"

static char dir[256], out[16384];
#define TEACHER XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf"

static void make_data(const char *name, int variant) {
    char txt[512], path[512];
    snprintf(txt, sizeof txt, "%s/%s.txt", dir, name);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 80; i++)
        fprintf(f, variant ? "a bird flew over the %d red roofs while it rained.\n\n"
                           : "the cat sat on the mat number %d and then the dog ran to the hat.\n\n",
                i % 9);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.tok", dir, name);
    CHECK(test_prep_text(TEACHER, txt, path, 0.15) == 0, "prep: %s", xd_last_error());
}

static json_t *load(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    CHECK(j != NULL, "%s: %s", p, e.text);
    return j;
}

static double num(const json_t *j, const char *k) { return json_number_value(json_object_get(j, k)); }

/* runs the CLI; expects exit status `want` and, for failures, `needle` in stderr */
static void expect(int want, const char *needle, const char *fmt, const char *a1, const char *a2) {
    char args[4096];
    snprintf(args, sizeof args, fmt, a1, a2, a1, a2, a1, a2);
    int rc = test_cli_run(args, out, sizeof out, 0);
    CHECK(rc == want, "xdistill %s: exit %d (expected %d): %s", args, rc, want, out);
    if (needle) CHECK(strstr(out, needle) != NULL, "xdistill %s: no '%s' in: %s", args, needle, out);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_distill_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    make_data("d", 0);
    make_data("e", 1);
    char a[4096];
    const char *D = dir;

    /* convert */
    expect(0, NULL, "convert " TEACHER " -o %s/S --window 4 --sinks 1 --chunk 8", D, D);
    json_t *cfg = load("S/config.json");
    CHECK(cfg && !strcmp(json_string_value(json_object_get(cfg, "model_type")), "xdistill_hybrid") &&
              json_integer_value(json_object_get(cfg, "window")) == 4 &&
              json_is_string(json_object_get(cfg, "teacher_hash")),
          "student config.json");
    json_decref(cfg);
    expect(2, "--window", "convert " TEACHER " -o %s/bad --window 0", D, D);
    /* the SWA-only baseline with a window covering the text generates what the teacher does */
    expect(0, NULL, "convert " TEACHER " -o %s/SWA --window 128 --swa-only", D, D);
    char g1[4096], g2[4096];
    CHECK(test_cli_run("generate " TEACHER " -p \"the cat sat\" -n 12 --ignore-eos", g1, sizeof g1,
                       TEST_CLI_STDOUT) == 0, "generate teacher");
    snprintf(a, sizeof a, "generate %s/SWA -p \"the cat sat\" -n 12 --ignore-eos", D);
    CHECK(test_cli_run(a, g2, sizeof g2, TEST_CLI_STDOUT) == 0, "generate SWA-only");
    CHECK(strlen(g1) > 11 && !strcmp(g1, g2), "SWA-only student differs from the teacher: '%s' vs '%s'", g1, g2);

    /* Stage I */
    snprintf(a, sizeof a, "distill stage1 --teacher " TEACHER " --student %s/S --data %s/d.tok -o %s/S1 "
             "--steps 150 --seq 32 --batch 2 --warmup 10 --eval-windows 6", D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage1: %s", out);
    json_t *r1 = load("S1/stage1.json");
    size_t li;
    json_t *ly;
    int improved = 0, layers = 0;
    json_array_foreach(json_object_get(r1, "layers"), li, ly) {
        double b = num(ly, "val_mse_before"), f = num(ly, "val_mse_after");
        printf("stage1 layer %zu: validation MSE %.5g -> %.5g (%.1f%%)\n", li, b, f, 100 * f / b);
        improved += f < 0.5 * b;
        layers++;
    }
    CHECK(layers == 2 && improved == layers, "stage 1 did not halve every layer's MSE");
    json_decref(r1);

    /* teacher logits and Stage II */
    expect(0, NULL, "teacher-logits " TEACHER " --data %s/d.tok --seq 32 --rows 60 --topk 16 -o %s/L.topk", D, D);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok "
             "-o %s/S2k --teacher " TEACHER " --steps 30 --lr 3e-3 --warmup 3 --w-kl 1 "
             "--eval-windows 6", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage2 (KL only): %s", out);
    json_t *r2 = load("S2k/stage2.json");
    printf("stage2 --w-kl 1: validation KL %.5g -> %.5g, CE %.5g -> %.5g\n", num(r2, "val_kl_before"),
           num(r2, "val_kl_after"), num(r2, "val_ce_before"), num(r2, "val_ce_after"));
    CHECK(num(r2, "val_kl_after") < 0.9 * num(r2, "val_kl_before"), "stage 2 did not lower the KL");
    json_decref(r2);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok "
             "-o %s/S2 --teacher " TEACHER " --steps 30 --lr 3e-3 --warmup 3 --eval-windows 6",
             D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage2: %s", out);
    r2 = load("S2/stage2.json");
    printf("stage2 0.9 CE + 0.1 KL: validation CE %.5g -> %.5g, KL %.5g -> %.5g\n",
           num(r2, "val_ce_before"), num(r2, "val_ce_after"), num(r2, "val_kl_before"),
           num(r2, "val_kl_after"));
    CHECK(num(r2, "val_ce_after") < num(r2, "val_ce_before"), "stage 2 did not lower the CE");
    json_decref(r2);
    /* Stage II with LoRA adapters on the student (issue 14): the student's weights stay
     * as they were, OUT/adapter holds the adapters, and the validation CE falls */
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok "
             "-o %s/S2L --teacher " TEACHER " --steps 30 --lr 3e-3 --warmup 3 --eval-windows 6 "
             "--trainable lora --r 4 --alpha 8 --targets q,v,o,down", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage2 --trainable lora: %s", out);
    r2 = load("S2L/stage2.json");
    printf("stage2 --trainable lora: validation CE %.5g -> %.5g, KL %.5g -> %.5g\n",
           num(r2, "val_ce_before"), num(r2, "val_ce_after"), num(r2, "val_kl_before"),
           num(r2, "val_kl_after"));
    CHECK(num(r2, "val_ce_after") < num(r2, "val_ce_before"), "stage 2 LoRA did not lower the CE");
    json_decref(r2);
    {
        char p[600];
        snprintf(p, sizeof p, "%s/S2L/adapter", D);
        xd_lora_adapter *ad = xd_lora_load(p);
        CHECK(ad && ad->n_modules == 8 && ad->r == 4, "stage2 LoRA adapter: %s",
              ad ? "wrong modules" : xd_last_error());
        xd_lora_free(ad);
    }
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok "
             "-o %s/X --r 4", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, TEST_CLI_STDERR) == 2 && strstr(out, "--trainable lora"),
          "a LoRA option without --trainable lora: %s", out);
    /* global heads (issue 13): Stage I with every head of layer 0 global has nothing to
     * align there (the mixer's output is the teacher's attention), and both stages keep
     * the list in the model they write */
    expect(0, NULL, "convert " TEACHER " -o %s/G --window 4 --sinks 1 --chunk 8 "
           "--global-heads 0:0,0:1,0:2,0:3,1:2%s", D, "");
    snprintf(a, sizeof a, "distill stage1 --teacher " TEACHER " --student %s/G --data %s/d.tok -o %s/G1 "
             "--steps 3 --seq 32 --batch 2 --eval-windows 4", D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage1 with global heads: %s", out);
    r1 = load("G1/stage1.json");
    json_t *l0 = json_array_get(json_object_get(r1, "layers"), 0);
    json_t *l1 = json_array_get(json_object_get(r1, "layers"), 1);
    printf("stage1, layer 0 all global: validation MSE %.3g -> %.3g; layer 1: %.3g -> %.3g\n",
           num(l0, "val_mse_before"), num(l0, "val_mse_after"), num(l1, "val_mse_before"),
           num(l1, "val_mse_after"));
    CHECK(l0 && num(l0, "val_mse_before") < 1e-10 && num(l0, "val_mse_after") < 1e-10 &&
              num(l1, "val_mse_before") > 1e-6,
          "stage1 with an all-global layer 0");
    json_decref(r1);
    snprintf(a, sizeof a, "distill stage2 --student %s/G1/model --logits %s/L.topk --data %s/d.tok "
             "-o %s/G2 --steps 2 --warmup 1 --eval-windows 2", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "stage2 with global heads: %s", out);
    for (int i = 0; i < 2; i++) {
        json_t *gc = load(i ? "G2/model/config.json" : "G1/model/config.json");
        json_t *gl = json_object_get(gc, "global_heads");
        CHECK(json_array_size(gl) == 5 &&
                  json_integer_value(json_array_get(json_array_get(gl, 4), 0)) == 1 &&
                  json_integer_value(json_array_get(json_array_get(gl, 4), 1)) == 2,
              "%s keeps global_heads", i ? "stage2" : "stage1");
        json_decref(gc);
    }

    /* Stage II records the Stage I checkpoint it started from (base_hash),
     * the same for both runs from S1, and `merge` takes the two experts */
    {
        json_t *ka = load("S2k/model/config.json"), *kb = load("S2/model/config.json");
        const char *ha = json_string_value(json_object_get(ka, "base_hash"));
        const char *hb = json_string_value(json_object_get(kb, "base_hash"));
        CHECK(ha && hb && !strcmp(ha, hb), "stage2 base_hash: %s vs %s", ha ? ha : "(none)", hb ? hb : "(none)");
        json_decref(ka);
        json_decref(kb);
        snprintf(a, sizeof a, "merge -o %s/M %s/S2k/model:0.5 %s/S2/model:0.5", D, D, D);
        CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "merge of two stage2 experts: %s", out);
    }
    /* the student loads in the other commands */
    snprintf(a, sizeof a, "generate %s/S2/model -p \"the cat\" -n 8", D);
    CHECK(test_cli_run(a, out, sizeof out, 1) == 0, "generate with the student: %s", out);
    snprintf(a, sizeof a, "ppl %s/S2/model %s/d.txt --ctx 64 --max-tokens 256", D, D);
    CHECK(test_cli_run(a, out, sizeof out, 1) == 0 && strstr(out, "\"ppl\""), "ppl with the student: %s", out);
    snprintf(a, sizeof a, "inspect %s/S2/model", D);
    CHECK(test_cli_run(a, out, sizeof out, 1) == 0 && strstr(out, "xLSTM hybrid"), "inspect: %s", out);

    /* bad input */
    snprintf(a, sizeof a, "teacher-logits %s/S1/model --data %s/d.tok --seq 32 --rows 60 --topk 16 -o %s/L2.topk", D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "logits from the student: %s", out);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L2.topk --data %s/d.tok -o %s/X --steps 2", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "teacher_hash") && strstr(out, "another teacher"),
          "logits of another teacher: %s", out);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/e.tok -o %s/X --steps 2", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "hash"), "logits for other data: %s", out);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok -o %s/X --steps 2 --seq 16", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "seq"), "another --seq: %s", out);
    snprintf(a, sizeof a, "distill stage2 --student %s/S1/model --logits %s/L.topk --data %s/d.tok -o %s/X --steps 61", D, D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "n_rows"), "too few rows: %s", out);
    snprintf(a, sizeof a, "convert %s/tests/fixtures/tiny-qwen2.gguf -o %s/Q", XD_SOURCE_DIR, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 0, "convert qwen2: %s", out);
    snprintf(a, sizeof a, "distill stage1 --teacher " TEACHER " --student %s/Q --data %s/d.tok -o %s/X --steps 1", D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "architecture"), "student of another teacher: %s", out);
    snprintf(a, sizeof a, "distill stage2 --student " TEACHER " --logits %s/L.topk --data %s/d.tok -o %s/X --steps 1", D, D, D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "not a student"), "a teacher as student: %s", out);
    snprintf(a, sizeof a, "sed -i 's/\"sinks\"/\"sunks\"/' %s/S/config.json", D);
    CHECK(system(a) == 0, "sed");
    snprintf(a, sizeof a, "inspect %s/S", D);
    CHECK(test_cli_run(a, out, sizeof out, 0) == 1 && strstr(out, "sinks") && strstr(out, "config.json"),
          "student config without sinks: %s", out);

    snprintf(a, sizeof a, "rm -rf %s", D);
    CHECK(system(a) == 0, "cleanup");
    return test_summary("test_distill");
}
