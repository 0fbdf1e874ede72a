/* head_select — experiment for issue 13, lever 1: choose the global heads of a
 * windowed student by ablation on the student itself, one (layer, KV head)
 * pair at a time (a kept pair keeps every query head that reads it: the
 * memory is the pair's keys/values, the query heads are free).
 *
 *   head_select STUDENT_DIR [--probes 12] [--lengths 128,256,512] [--seed 777]
 *               [--threads 2] [--greedy K] [--pool P] [--loo 1] [--add 0]
 *
 * The objective is the mean log-likelihood of the probe answers (teacher
 * forcing, model/head_probe.h's generator with its own seed) and the share
 * answered greedily. Prints, as JSON lines:
 *   - "add" (unless --add 0): per pair, the objective with only that pair global;
 *   - with --loo 1, "loo": per pair, the objective with every pair global but that one;
 *   - with --greedy K: forward selection of K pairs among the P best of the
 *     two rankings (sum of ranks), the objective after each step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "model/head_probe.h"
#include "model/model.h"
#include "xdistill.h"

static xd_probe *g_probes;
static int g_np;

static void die(const char *what) {
    fprintf(stderr, "head_select: %s: %s\n", what, xd_last_error());
    exit(1);
}

/* Sets the global heads to every query head of the pairs with on[pair] != 0. */
static void set_pairs(xd_model *m, const unsigned char *on) {
    xd_config *c = &m->cfg;
    int group = c->n_head / c->n_kv_head, n = 0;
    for (int l = 0; l < c->n_layer; l++)
        for (int h = 0; h < c->n_head; h++)
            if (on[l * c->n_kv_head + h / group]) c->global_heads[n++] = (xd_head_ref){(int16_t)l, (int16_t)h};
    c->n_global_heads = n;
}

/* Mean answer log-likelihood and accuracy over the probes. */
static double objective(xd_model *m, double *acc) {
    int V = m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    double sum = 0;
    int ok = 0;
    for (int i = 0; i < g_np; i++) {
        const xd_probe *p = &g_probes[i];
        xd_kv *kv = xd_kv_create(m, p->n_tokens + p->n_answer + 1);
        if (!kv) die("kv");
        if (xd_forward(m, kv, p->tokens, p->n_tokens, logits, 0)) die("prefill");
        int right = 1;
        for (int a = 0; a < p->n_answer; a++) {
            float mx = logits[0];
            int best = 0;
            for (int j = 1; j < V; j++)
                if (logits[j] > mx) { mx = logits[j]; best = j; }
            double z = 0;
            for (int j = 0; j < V; j++) z += exp((double)logits[j] - mx);
            sum += (double)logits[p->answer[a]] - mx - log(z);
            if (best != p->answer[a]) right = 0;
            if (a + 1 < p->n_answer && xd_forward(m, kv, &p->answer[a], 1, logits, 0)) die("decode");
        }
        ok += right;
        xd_kv_free(kv);
    }
    free(logits);
    *acc = (double)ok / g_np;
    return sum / g_np;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: head_select STUDENT_DIR [options]\n"); return 2; }
    const char *lengths = "128,256,512";
    int probes = 12, threads = 2, greedy = 0, pool = 24, with_loo = 0, with_add = 1;
    unsigned seed = 777;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--probes")) probes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lengths")) lengths = argv[i + 1];
        else if (!strcmp(argv[i], "--seed")) seed = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--greedy")) greedy = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pool")) pool = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--loo")) with_loo = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--add")) with_add = atoi(argv[i + 1]);
        else { fprintf(stderr, "head_select: unknown option %s\n", argv[i]); return 2; }
    }
    xd_set_threads(threads);
    xd_model *m = xd_model_load(argv[1]);
    if (!m) die(argv[1]);
    xd_config *c = &m->cfg;
    if (!c->student) { fprintf(stderr, "head_select: %s is not a student\n", argv[1]); return 2; }
    int lens[16], nl = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", lengths);
    for (char *t = strtok(list, ","); t && nl < 16; t = strtok(NULL, ",")) lens[nl++] = atoi(t);
    g_np = probes;
    g_probes = calloc((size_t)probes, sizeof *g_probes);
    for (int i = 0; i < probes; i++)
        if (xd_probe_make(xd_model_tokenizer(m), lens[i % nl], c->window, seed, i, &g_probes[i]))
            die("probe");
    int np = c->n_layer * c->n_kv_head;
    unsigned char *on = calloc((size_t)np, 1);
    double acc, t0 = bench_now();
    set_pairs(m, on);
    double base = objective(m, &acc);
    printf("{\"set\":\"none\",\"loglik\":%.4f,\"acc\":%.3f,\"s\":%.1f}\n", base, acc, bench_now() - t0);
    memset(on, 1, (size_t)np);
    set_pairs(m, on);
    double all = objective(m, &acc);
    printf("{\"set\":\"all\",\"loglik\":%.4f,\"acc\":%.3f}\n", all, acc);
    fflush(stdout);
    double *add = malloc(sizeof(double) * (size_t)np), *loo = malloc(sizeof(double) * (size_t)np);
    for (int p = 0; p < np; p++) {
        double a1 = 0;
        add[p] = 0;
        if (with_add) {
            memset(on, 0, (size_t)np);
            on[p] = 1;
            set_pairs(m, on);
            add[p] = objective(m, &acc);
            a1 = acc;
        }
        loo[p] = 0;
        if (with_loo) {
            memset(on, 1, (size_t)np);
            on[p] = 0;
            set_pairs(m, on);
            loo[p] = objective(m, &acc);
        }
        printf("{\"pair\":[%d,%d],\"add\":%.4f,\"add_acc\":%.3f,\"loo\":%.4f,\"loo_acc\":%.3f}\n",
               p / c->n_kv_head, p % c->n_kv_head, add[p], a1, loo[p], with_loo ? acc : 0.0);
        fflush(stdout);
    }
    if (greedy > 0) {
        /* rank by add gain (descending) and loo drop (ascending loo), sum of ranks */
        int *score = calloc((size_t)np, sizeof(int)), *cand = malloc(sizeof(int) * (size_t)np);
        for (int p = 0; p < np; p++)
            for (int q = 0; q < np; q++) {
                if (add[q] > add[p]) score[p]++;
                if (loo[q] < loo[p]) score[p]++;
            }
        for (int p = 0; p < np; p++) cand[p] = p;
        for (int i = 0; i < np; i++)
            for (int j = i + 1; j < np; j++)
                if (score[cand[j]] < score[cand[i]]) { int t = cand[i]; cand[i] = cand[j]; cand[j] = t; }
        if (pool > np) pool = np;
        memset(on, 0, (size_t)np);
        for (int step = 0; step < greedy; step++) {
            int bestp = -1;
            double bestv = -1e300, besta = 0;
            for (int i = 0; i < pool; i++) {
                int p = cand[i];
                if (on[p]) continue;
                on[p] = 1;
                set_pairs(m, on);
                double v = objective(m, &acc);
                on[p] = 0;
                if (v > bestv) { bestv = v; bestp = p; besta = acc; }
            }
            on[bestp] = 1;
            printf("{\"greedy\":%d,\"pair\":[%d,%d],\"loglik\":%.4f,\"acc\":%.3f,\"list\":\"", step + 1,
                   bestp / c->n_kv_head, bestp % c->n_kv_head, bestv, besta);
            set_pairs(m, on);
            for (int i = 0; i < c->n_global_heads; i++)
                printf("%s%d:%d", i ? "," : "", c->global_heads[i].layer, c->global_heads[i].head);
            printf("\"}\n");
            fflush(stdout);
        }
        free(score);
        free(cand);
    }
    return 0;
}
