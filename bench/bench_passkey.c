/* bench_passkey — passkey retrieval beyond the student's window (issue 5,
 * criterion 5): the classic synthetic probe (a 5-digit key hidden at a
 * given depth of repeated filler text, asked for at the end), greedy
 * decoding, teacher and student on the same prompts.
 *
 *   bench_passkey [--teacher MODEL] --student DIR [--student DIR2 ...]
 *                 [--lengths 128,256,512] [--trials 10] [--threads N] [--seed S]
 *                 [--verbose 1]
 *
 * For every length L (tokens, approximately: whole filler sentences) and
 * trial i, the key sits at depth (i + ½)/trials of the filler; a trial is
 * correct when the key's digits appear in the first 8 generated tokens
 * (--verbose 1: each trial's key and generated text on stderr).
 * One JSON object per line: per model and length, the accuracy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "xdistill.h"

static const char *PREFIX =
    "There is an important piece of information hidden inside a lot of irrelevant text. "
    "Find it and memorize it. I will quiz you about it.\n";
static const char *FILLER =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
static const char *SUFFIX = "\nWhat is the pass key? The pass key is";

static void die(const char *what) {
    fprintf(stderr, "bench_passkey: %s: %s\n", what, xd_last_error());
    exit(1);
}

static int ntok(const xd_tokenizer *t, const char *s) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (xd_tokenizer_encode(t, s, strlen(s), 0, &ids, &n)) die("tokenize");
    free(ids);
    return (int)n;
}

/* The prompt with `reps` filler sentences and the key after `at` of them. */
static char *prompt(int reps, int at, unsigned key) {
    size_t fl = strlen(FILLER), cap = strlen(PREFIX) + strlen(SUFFIX) + (size_t)reps * fl + 256;
    char *p = malloc(cap), *w = p;
    w += sprintf(w, "%s", PREFIX);
    for (int i = 0; i < reps; i++) {
        if (i == at) w += sprintf(w, "The pass key is %05u. Remember it. %05u is the pass key. ", key, key);
        memcpy(w, FILLER, fl);
        w += fl;
    }
    sprintf(w, "%s", SUFFIX);
    return p;
}

static int g_verbose;

static int run_trial(const xd_model *m, const char *text, unsigned key, int *n_prompt) {
    const xd_tokenizer *t = xd_model_tokenizer(m);
    int32_t *ids = NULL;
    size_t n = 0;
    if (xd_tokenizer_encode(t, text, strlen(text), 0, &ids, &n) || n == 0) die("tokenize");
    int np = (int)n;
    *n_prompt = np;
    int V = xd_model_config(m)->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    xd_kv *kv = xd_kv_create(m, np + 16);
    if (!kv) die("cache");
    for (int at = 0; at < np; at += 512) {
        int len = np - at < 512 ? np - at : 512;
        if (xd_forward(m, kv, ids + at, len, at + len == np ? logits : NULL, 0)) die("prefill");
    }
    char out[512] = "", piece[128];
    for (int i = 0; i < 8; i++) {
        int32_t best = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        int k = xd_tokenizer_token_bytes(t, best, piece, sizeof piece - 1);
        if (k > 0 && strlen(out) + (size_t)k < sizeof out - 1) strncat(out, piece, (size_t)k);
        if (xd_forward(m, kv, &best, 1, logits, 0)) die("decode");
    }
    char want[16];
    snprintf(want, sizeof want, "%05u", key);
    if (g_verbose) fprintf(stderr, "  key %s, %d prompt tokens: \"%s\"\n", want, np, out);
    xd_kv_free(kv);
    free(ids);
    free(logits);
    return strstr(out, want) != NULL;
}

int main(int argc, char **argv) {
    const char *paths[16], *lengths = "128,256,512";
    int n_paths = 0, trials = 10, threads = 2, have_teacher = 0;
    unsigned seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--teacher") && !have_teacher && n_paths < 16) {
            /* the teacher first, whatever the order of the options */
            memmove(paths + 1, paths, sizeof *paths * (size_t)n_paths++);
            paths[0] = argv[i + 1];
            have_teacher = 1;
        } else if (!strcmp(argv[i], "--student") && n_paths < 16) paths[n_paths++] = argv[i + 1];
        else if (!strcmp(argv[i], "--lengths")) lengths = argv[i + 1];
        else if (!strcmp(argv[i], "--trials")) trials = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--verbose")) g_verbose = atoi(argv[i + 1]);
        else { fprintf(stderr, "bench_passkey: unknown or repeated option %s\n", argv[i]); return 2; }
    }
    if (n_paths == 0 || trials < 1) {
        fprintf(stderr, "usage: bench_passkey [--teacher MODEL] --student DIR [--student DIR2 ...] "
                        "[--lengths 128,256,512] [--trials 10]\n");
        return 2;
    }
    fprintf(stderr, "bench_passkey: OpenBLAS kernels %s\n", bench_blas_core(argv));
    xd_set_threads(threads);
    for (int w = 0; w < n_paths; w++) {
        xd_model *m = xd_model_load(paths[w]);
        if (!m) die(paths[w]);
        const xd_config *c = xd_model_config(m);
        const xd_tokenizer *t = xd_model_tokenizer(m);
        int base = ntok(t, PREFIX) + ntok(t, SUFFIX) + 20, per = ntok(t, FILLER);
        char list[256];
        snprintf(list, sizeof list, "%s", lengths);
        for (char *tokn = strtok(list, ","); tokn; tokn = strtok(NULL, ",")) {
            int L = atoi(tokn), reps = (L - base) / per;
            if (reps < 1) reps = 1;
            int ok = 0, np = 0;
            double t0 = bench_now();
            srand(seed + (unsigned)L);
            for (int i = 0; i < trials; i++) {
                unsigned key = 10000u + (unsigned)(rand() % 90000);
                int at = (int)((i + 0.5) / trials * reps);
                char *p = prompt(reps, at, key);
                ok += run_trial(m, p, key, &np);
                free(p);
            }
            printf("{\"bench\":\"passkey\",\"model\":\"%s\",\"student\":%d,\"window\":%d,\"sinks\":%d,"
                   "\"length\":%d,\"prompt_tokens\":%d,\"trials\":%d,\"correct\":%d,\"accuracy\":%.3f,"
                   "\"seconds\":%.1f}\n",
                   paths[w], c->student, c->student ? c->window : 0, c->student ? c->sinks : 0, L,
                   np, trials, ok, (double)ok / trials, bench_now() - t0);
            fflush(stdout);
        }
        xd_model_free(m);
    }
    return 0;
}
