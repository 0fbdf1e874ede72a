/* End-to-end checks on the real teacher, SmolLM2-135M-Instruct (GGUF Q4_1,
 * dequantised to fp32), against HF transformers in fp32 on the same
 * dequantised weights (fixtures from tests/ref/make_smollm2_fixtures.py):
 *  1. logits at sampled positions: max abs error ≤ 1e-3 (issue 3 criterion 2;
 *     logits reach |34|, so this is ~3e-5 relative: fp32 summation-order noise
 *     over 30 layers is ~1e-4 absolute);
 *  2. greedy decoding of 5 chat prompts equals HF's for all 32 new tokens
 *     (a divergence is tolerated only right after a near-tie, margin < 1e-3);
 *  3. `xdistill ppl` on the fixture's text equals HF's perplexity within 0.5%
 *     (criterion 4; we expect ~1e-5);
 *  4. loading peaks at ≤ 1.5× the fp32 weight size in RSS (criterion 7). */
#include <jansson.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli_util.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL, "%s: %s", path, je.text);
    return j;
}

static int32_t *json_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *ids = malloc(*n * sizeof *ids + 1);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static void test_logits(const xd_model *m) {
    json_t *meta = load_json(FIXTURE("smollm2_logits.json"));
    FILE *f = fopen(FIXTURE("smollm2_logits.bin"), "rb");
    CHECK(f != NULL, "smollm2_logits.bin missing");
    if (!meta || !f) { json_decref(meta); if (f) fclose(f); return; }
    int V = (int)json_integer_value(json_object_get(meta, "vocab_size"));
    int n_rows = (int)json_integer_value(json_object_get(meta, "n_rows"));
    CHECK(V == xd_model_config(m)->vocab_size, "vocab %d", V);
    float *ref = malloc((size_t)n_rows * V * sizeof(float));
    CHECK(fread(ref, sizeof(float), (size_t)n_rows * V, f) == (size_t)n_rows * V, "short .bin");
    fclose(f);
    json_t *seqs = json_object_get(meta, "sequences"), *s;
    size_t si;
    json_array_foreach(seqs, si, s) {
        size_t n;
        int32_t *ids = json_ids(json_object_get(s, "ids"), &n);
        float *out = malloc(n * (size_t)V * sizeof(float));
        xd_kv *kv = xd_kv_create(m, (int)n);
        CHECK(xd_forward(m, kv, ids, (int)n, out, 1) == 0, "forward: %s", xd_last_error());
        json_t *pos = json_object_get(s, "positions");
        int off = (int)json_integer_value(json_object_get(s, "bin_row_offset"));
        double worst = 0;
        for (size_t k = 0; k < json_array_size(pos); k++) {
            int p = (int)json_integer_value(json_array_get(pos, k));
            const float *a = out + (size_t)p * V, *b = ref + (size_t)(off + (int)k) * V;
            for (int j = 0; j < V; j++) {
                double d = fabs(a[j] - b[j]);
                if (d > worst) worst = d;
            }
        }
        CHECK(worst <= 1e-3, "%s: max |logit diff| %g > 1e-3",
              json_string_value(json_object_get(s, "name")), worst);
        printf("logits %-10s max abs diff vs HF %.2e\n",
               json_string_value(json_object_get(s, "name")), worst);
        /* argmax at every position */
        json_t *am = json_object_get(s, "argmax");
        int mism = 0;
        for (size_t p = 0; p < n; p++) {
            const float *a = out + p * (size_t)V;
            int best = 0;
            for (int j = 1; j < V; j++) if (a[j] > a[best]) best = j;
            if (best != (int)json_integer_value(json_array_get(am, p))) mism++;
        }
        CHECK(mism == 0, "%d argmax mismatches", mism);
        xd_kv_free(kv);
        free(out);
        free(ids);
    }
    free(ref);
    json_decref(meta);
}

static void test_greedy(const xd_model *m) {
    json_t *g = load_json(FIXTURE("smollm2_greedy.json"));
    if (!g) return;
    int V = xd_model_config(m)->vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    xd_sampler greedy = {0, 0, 1, 0};
    uint64_t rng = 1;
    json_t *p;
    size_t pi;
    int n_prompts = 0;
    json_array_foreach(json_object_get(g, "prompts"), pi, p) {
        size_t np, nn;
        int32_t *prompt = json_ids(json_object_get(p, "prompt_ids"), &np);
        int32_t *want = json_ids(json_object_get(p, "new_ids"), &nn);
        json_t *margin = json_object_get(p, "step_top1_top2_margin");
        xd_kv *kv = xd_kv_create(m, (int)(np + nn));
        CHECK(xd_forward(m, kv, prompt, (int)np, logits, 0) == 0, "prefill: %s", xd_last_error());
        size_t same = 0;
        for (; same < nn; same++) {
            int32_t next = xd_sample(&greedy, logits, V, &rng);
            if (next != want[same]) break;
            if (same + 1 < nn) xd_forward(m, kv, &next, 1, logits, 0);
        }
        int near_tie = same < nn && json_real_value(json_array_get(margin, same)) < 1e-3;
        CHECK(same == nn || (near_tie && same >= 20),
              "prompt '%s': greedy output diverges from HF at token %zu of %zu",
              json_string_value(json_object_get(p, "prompt")), same, nn);
        printf("greedy '%s': %zu/%zu tokens equal HF\n",
               json_string_value(json_object_get(p, "prompt")), same, nn);
        n_prompts++;
        xd_kv_free(kv);
        free(prompt);
        free(want);
    }
    CHECK(n_prompts == 5, "%d prompts", n_prompts);
    free(logits);
    json_decref(g);
}

/* The GPL-3 perplexity of `xdistill ppl` (1024 tokens, windows of 512) with --weights
 * fp32, gguf (the windows' products on dequantised tiles) or gguf-all (every product on
 * the GGUF's blocks). */
static double ppl_of(const char *weights) {
    char cmd[2048], out[4096] = {0};
    const char *cli = getenv("XD_CLI");
    snprintf(cmd, sizeof cmd, "%s ppl %s /usr/share/common-licenses/GPL-3 --ctx 512 "
             "--max-tokens 1024 --weights %s 2>/dev/null", cli ? cli : XD_BINARY_DIR "/xdistill",
             teacher_path(), weights);
    FILE *pp = popen(cmd, "r");
    size_t got = pp ? fread(out, 1, sizeof out - 1, pp) : 0;
    int status = pp ? pclose(pp) : -1;
    json_t *o = status == 0 && got ? json_loads(out, 0, NULL) : NULL;
    double ppl = o ? json_real_value(json_object_get(o, "ppl")) : NAN;
    json_decref(o);
    CHECK(isfinite(ppl), "'%s': %s", cmd, out);
    return ppl;
}

/* Decoding on the GGUF's own blocks (--weights gguf, model/qweights.h) against the fp32
 * weights. The weights are the same numbers; what differs is the activation's quantisation
 * to 8 bits per block (ggml's Q8_1 for this Q4_1 teacher, Q8_0 for its Q8_0 LM head).
 *  - The fixture's sequences fed one token at a time to both: top-1 the same on ≥ 95% of
 *    the steps; the largest logit difference within 4 (measured 2.4; these 30-token
 *    sequences are too short for a perplexity bar: a 1% change of one matrix moves
 *    theirs by ±3%).
 *  - Perplexity on the GPL-3 text (1024 tokens) within 0.5% of the fp32 weights' (issue
 *    17's bar; measured +0.13% with the AVX512-VNNI rows, +0.24% with the first AVX2
 *    ones: the quantised activations round differently when a sum changes in its last bit). */
static void test_quant_decode(const xd_model *m) {
    xd_model *q = xd_model_load_weights(teacher_path(), XD_WEIGHTS_GGUF);
    CHECK(q != NULL, "load with XD_WEIGHTS_GGUF: %s", xd_last_error());
    json_t *meta = load_json(FIXTURE("smollm2_logits.json"));
    if (!q || !meta) { xd_model_free(q); json_decref(meta); return; }
    int V = xd_model_config(m)->vocab_size;
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    json_t *s;
    size_t si;
    double worst = 0;
    int steps = 0, agree = 0;
    json_array_foreach(json_object_get(meta, "sequences"), si, s) {
        size_t n;
        int32_t *ids = json_ids(json_object_get(s, "ids"), &n);
        xd_kv *ka = xd_kv_create(m, (int)n), *kb = xd_kv_create(q, (int)n);
        double nll_a = 0, nll_b = 0;
        for (size_t t = 0; t + 1 < n; t++) {
            if (xd_forward(m, ka, ids + t, 1, a, 0) || xd_forward(q, kb, ids + t, 1, b, 0)) {
                CHECK(0, "decode: %s", xd_last_error());
                break;
            }
            int ta = 0, tb = 0;
            double za = 0, zb = 0, ma = a[0], mb = b[0];
            for (int j = 0; j < V; j++) {
                worst = fmax(worst, fabs((double)a[j] - b[j]));
                if (a[j] > a[ta]) ta = j;
                if (b[j] > b[tb]) tb = j;
                ma = fmax(ma, a[j]);
                mb = fmax(mb, b[j]);
            }
            for (int j = 0; j < V; j++) za += exp(a[j] - ma), zb += exp(b[j] - mb);
            nll_a += ma + log(za) - a[ids[t + 1]];
            nll_b += mb + log(zb) - b[ids[t + 1]];
            agree += ta == tb;
            steps++;
        }
        double pa = exp(nll_a / (double)(n - 1)), pb = exp(nll_b / (double)(n - 1));
        printf("decoding on Q4_1 blocks, %-10s perplexity %.4f vs fp32 %.4f (%+.3f%%)\n",
               json_string_value(json_object_get(s, "name")), pb, pa, 100 * (pb / pa - 1));
        xd_kv_free(ka);
        xd_kv_free(kb);
        free(ids);
    }
    CHECK(steps > 0 && agree >= 0.95 * steps, "top-1 the same on %d of %d steps", agree, steps);
    CHECK(worst <= 4, "largest logit difference %.3g", worst);
    double p32 = ppl_of("fp32"), pq = ppl_of("gguf-all"), pt = ppl_of("gguf");
    CHECK(fabs(pq / p32 - 1) <= 0.005, "GPL-3 perplexity %.4f on the blocks vs %.4f fp32", pq, p32);
    /* the tiles are the fp32 weights' numbers in another blocking of the same sums */
    CHECK(fabs(pt / p32 - 1) <= 1e-4, "GPL-3 perplexity %.6f on tiles vs %.6f fp32", pt, p32);
    printf("GPL-3 perplexity (1024 tokens): %.4f on the blocks vs %.4f fp32 (%+.3f%%); "
           "prefill on dequantised tiles %.6f (%+.2g%%)\n", pq, p32, 100 * (pq / p32 - 1), pt,
           100 * (pt / p32 - 1));
    /* a prompt's forward on tiles against fp32: all positions' logits */
    {
        size_t n;
        int32_t *ids = json_ids(json_object_get(json_array_get(json_object_get(meta, "sequences"), 0),
                                                "ids"), &n);
        float *la = malloc(n * (size_t)V * sizeof(float)), *lb = malloc(n * (size_t)V * sizeof(float));
        xd_kv *ka = xd_kv_create(m, (int)n), *kb = xd_kv_create(q, (int)n);
        CHECK(xd_forward(m, ka, ids, (int)n, la, 1) == 0 && xd_forward(q, kb, ids, (int)n, lb, 1) == 0,
              "prefill: %s", xd_last_error());
        double dmax = 0, amax = 0;
        for (size_t j = 0; j < n * (size_t)V; j++)
            dmax = fmax(dmax, fabs((double)la[j] - lb[j])), amax = fmax(amax, fabs((double)la[j]));
        /* fp32 sums of 576–1536 products, blocked differently: 1e-4 of the largest logit */
        CHECK(dmax <= 1e-4 * amax, "prefill on tiles: largest logit difference %.3g (of %.3g)",
              dmax, amax);
        printf("prefill on dequantised tiles (%zu tokens): largest logit difference %.2g of %.3g\n",
               n, dmax, amax);
        xd_kv_free(ka);
        xd_kv_free(kb);
        free(la);
        free(lb);
        free(ids);
    }
    /* what needs fp32 weights is refused, naming the option */
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/xd_quant_save_%d", (int)getpid());
    CHECK(xd_model_save(q, dir) != 0 && strstr(xd_last_error(), "--weights fp32") &&
              access(dir, F_OK) != 0, "saving a model on its blocks: %s", xd_last_error());
    printf("decoding on Q4_1 blocks: top-1 = fp32's on %d of %d steps, largest logit difference %.3g\n",
           agree, steps, worst);
    free(a);
    free(b);
    json_decref(meta);
    xd_model_free(q);
}

/* Runs the CLI on the fixture's text and compares the perplexity. */
static void test_ppl_cli(const xd_model *m) {
    json_t *r = load_json(FIXTURE("smollm2_ppl.json"));
    if (!r) return;
    const char *file = json_string_value(json_object_get(r, "file"));
    size_t nbytes = (size_t)json_integer_value(json_array_get(json_object_get(r, "byte_range"), 1));
    int n_tokens = (int)json_integer_value(json_object_get(r, "n_tokens"));
    double ref_ppl = json_real_value(json_object_get(r, "ppl"));
    /* the tokenizer gives the reference's token ids on this text */
    FILE *f = fopen(file, "rb");
    CHECK(f != NULL, "%s missing", file);
    if (!f) { json_decref(r); return; }
    char *text = malloc(nbytes + 1);
    CHECK(fread(text, 1, nbytes, f) == nbytes, "short read");
    fclose(f);
    int32_t *ids;
    size_t n;
    CHECK(xd_tokenizer_encode(xd_model_tokenizer(m), text, nbytes, 0, &ids, &n) == 0, "encode");
    size_t nref;
    int32_t *ref_ids = json_ids(json_object_get(r, "token_ids"), &nref);
    CHECK(n >= nref && memcmp(ids, ref_ids, nref * sizeof *ids) == 0, "token ids differ");
    free(ids);
    free(ref_ids);

    char tmp[128], cmd[2048], out[4096] = {0};
    snprintf(tmp, sizeof tmp, "/tmp/xd_ppl_%d.txt", (int)getpid());
    FILE *t = fopen(tmp, "wb");
    fwrite(text, 1, nbytes, t);
    fclose(t);
    free(text);
    const char *cli = getenv("XD_CLI");
    snprintf(cmd, sizeof cmd, "%s ppl %s %s --ctx 512 --stride 512 --max-tokens %d 2>/dev/null",
             cli ? cli : XD_BINARY_DIR "/xdistill", teacher_path(), tmp, n_tokens);
    FILE *pp = popen(cmd, "r");
    size_t got = pp ? fread(out, 1, sizeof out - 1, pp) : 0;
    int status = pp ? pclose(pp) : -1;
    unlink(tmp);
    CHECK(status == 0 && got > 0, "'%s' failed", cmd);
    json_t *o = json_loads(out, 0, NULL);
    CHECK(o != NULL, "ppl output is not JSON: %s", out);
    if (o) {
        double ppl = json_real_value(json_object_get(o, "ppl"));
        double rel = fabs(ppl - ref_ppl) / ref_ppl;
        CHECK(rel <= 0.005, "ppl %.6f vs HF %.6f (rel %.2e)", ppl, ref_ppl, rel);
        CHECK(json_integer_value(json_object_get(o, "scored")) ==
                  json_integer_value(json_object_get(r, "n_scored")), "scored token count");
        printf("ppl %.6f vs HF %.6f (rel err %.2e)\n", ppl, ref_ppl, rel);
        json_decref(o);
    }
    json_decref(r);
}

/* Issue 5, criterion 2: the student's copy path is exact. A student whose
 * window covers the sequence and whose mix is forced to the SWA branch (mix
 * bias −1e4: o == 0.0f exactly) gives the teacher's logits (tol 1e-4; only
 * the attention kernel's summation order differs). Takes over m's tokenizer. */
static void test_student_copy(xd_model *m) {
    xd_student_opts o;
    xd_student_defaults(&o);
    o.window = 4096;
    xd_model *s = xd_student_convert(m, &o);
    CHECK(s != NULL, "convert: %s", xd_last_error());
    if (!s) return;
    for (int l = 0; l < s->cfg.n_layer; l++)
        for (int h = 0; h < s->cfg.n_head; h++) s->layers[l].b_mix[h] = -1e4f;
    json_t *meta = load_json(FIXTURE("smollm2_logits.json")), *sq;
    int V = s->cfg.vocab_size;
    size_t si;
    json_array_foreach(json_object_get(meta, "sequences"), si, sq) {
        size_t n;
        int32_t *ids = json_ids(json_object_get(sq, "ids"), &n);
        float *a = malloc(n * (size_t)V * sizeof(float)), *b = malloc(n * (size_t)V * sizeof(float));
        xd_kv *kt = xd_kv_create(m, (int)n), *ks = xd_kv_create(s, (int)n);
        CHECK(xd_forward(m, kt, ids, (int)n, a, 1) == 0 && xd_forward(s, ks, ids, (int)n, b, 1) == 0,
              "forward: %s", xd_last_error());
        double worst = 0, scale = 0;
        for (size_t i = 0; i < n * (size_t)V; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= worst)) worst = d;
            if (fabs(a[i]) > scale) scale = fabs(a[i]);
        }
        /* relative to the largest logit: 30 layers of fp32 rounding in a
         * differently ordered attention sum give ~3e-6 */
        printf("student copy path %-10s (%zu tokens): max |student − teacher| logit %.2e, "
               "relative to max |logit| %.1f: %.2e (tol 1e-4)\n",
               json_string_value(json_object_get(sq, "name")), n, worst, scale, worst / scale);
        CHECK(worst / scale <= 1e-4, "student copy path: %g", worst);
        xd_kv_free(kt);
        xd_kv_free(ks);
        free(a);
        free(b);
        free(ids);
    }
    json_decref(meta);
    xd_model_free(s);
}

/* Issue 6, criterion 2: the teacher scores above chance on every choice task
 * of the built-in suite (20 examples each, the demo's window 64), and two
 * evaluations give identical results (the fast tasks are run twice). */
static json_t *eval_json(const char *suite, const char *tasks, const char *out) {
    char args[2048], log[16384];
    snprintf(args, sizeof args, "eval %s --suite %s --tasks %s -o %s", teacher_path(), suite, tasks, out);
    int rc = test_cli_run(args, log, sizeof log, TEST_CLI_STDERR);
    CHECK(rc == 0, "eval: %s", log);
    json_error_t e;
    return rc ? NULL : json_load_file(out, 0, &e);
}

static void strip_seconds(json_t *j) {
    json_object_del(j, "seconds");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "tasks"), i, t) json_object_del(t, "seconds");
}

static void test_suite_teacher(void) {
    char dir[] = "/tmp/xd_suite_XXXXXX", args[1024], log[16384], a[600], b[600];
    if (!mkdtemp(dir)) return;
    snprintf(args, sizeof args, "tasks make -o %s/suite --window 64 --n 20 --quiet", dir);
    CHECK(test_cli_run(args, log, sizeof log, TEST_CLI_STDERR) == 0, "tasks make: %s", log);
    snprintf(a, sizeof a, "%s/suite", dir);
    snprintf(b, sizeof b, "%s/a.json", dir);
    json_t *r1 = eval_json(a, "wordnet_define,wordnet_gloss,kjv_cloze_near,kjv_cloze_far", b);
    size_t i;
    json_t *t;
    int n_choice = 0;
    json_array_foreach(json_object_get(r1, "tasks"), i, t) {
        double sc = json_number_value(json_object_get(t, "score"));
        double ch = json_number_value(json_object_get(t, "chance"));
        const char *name = json_string_value(json_object_get(t, "name"));
        printf("teacher on %-16s %s %.3f (chance %.2f)\n", name,
               json_string_value(json_object_get(t, "metric")), sc, ch);
        CHECK(sc > ch, "teacher at or below chance on %s: %g vs %g", name, sc, ch);
        n_choice++;
    }
    CHECK(n_choice == 4, "%d choice tasks scored", n_choice);
    snprintf(b, sizeof b, "%s/b.json", dir);
    json_t *r2 = eval_json(a, "wordnet_define,kjv_cloze_near", b);
    snprintf(b, sizeof b, "%s/c.json", dir);
    json_t *r3 = eval_json(a, "wordnet_define,kjv_cloze_near", b);
    if (r2 && r3) {
        strip_seconds(r2);
        strip_seconds(r3);
        CHECK(json_equal(r2, r3), "two evaluations of the teacher differ");
    }
    json_decref(r1);
    json_decref(r2);
    json_decref(r3);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    CHECK(system(args) == 0, "cleanup");
}

int main(void) {
    if (access(teacher_path(), R_OK)) {
        fprintf(stderr, "teacher %s is missing: run `make test` (it installs it) or set XD_TEACHER\n",
                teacher_path());
        return 1;
    }
    xd_model *m = xd_model_load(teacher_path());
    CHECK(m != NULL, "load: %s", xd_last_error());
    if (!m) return test_summary("test_teacher_smollm2");
    /* criterion 7: loading peaks at ≤ 1.5× the fp32 weights in RSS */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak = (double)ru.ru_maxrss * 1024, fp32 = (double)xd_model_n_params(m) * 4;
    CHECK(peak <= 1.5 * fp32, "peak RSS %.1f MB > 1.5 x fp32 size %.1f MB", peak / 1e6, fp32 / 1e6);
    printf("load: peak RSS %.1f MB = %.2f x the fp32 weights (%.1f MB)\n", peak / 1e6, peak / fp32,
           fp32 / 1e6);
    test_logits(m);
    test_greedy(m);
    test_ppl_cli(m);
    test_student_copy(m);
    test_quant_decode(m);
    xd_model_free(m);
    test_suite_teacher();
    return test_summary("test_teacher_smollm2");
}
