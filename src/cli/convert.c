/* xdistill convert TEACHER -o STUDENT [--window W] [--sinks S] [--chunk L]
 *                  [--softcap C] [--swa-only] [--no-exact-window] [--memory mlstm|delta]
 *                  [--global-heads L:H,...] [--global-kv bf16|int8|int4|k8v4|f32]
 *                  [--state-budget FRAC[@TOKENS]] [--sparse-cache ROWS] [--threads N]
 * --sparse-cache ROWS: per layer, up to ROWS rows that left the window, kept by how badly
 * the mLSTM state recalls them and attended with the sinks (config sparse_cache;
 * docs/design.md, "Sparse cache"; decoding only).
 * --swa-only: the mix is fixed to the SWA branch (bias −1e4, o == 0 exactly):
 * the "SWA-only" baseline, i.e. the student without its recurrent branch.
 * --no-exact-window: positions whose every earlier token is still in the window use the mix
 * too (by default they take the SWA branch alone, the teacher's attention exactly; config
 * exact_in_window).
 * --memory delta: the recurrent branch uses the gated delta rule instead of the mLSTM's
 * additive update (config memory_rule "gated_delta"; docs/design.md, "Gated delta rule").
 * --global-heads 12:3,20:1: query heads (layer:head, 0-based) kept as the
 * teacher's full causal attention (docs/design.md, "Global heads");
 * --global-heads auto:K: the K best of the teacher's retrieval probe
 * (model/head_probe.h, run here); --global-heads FILE.json:K: the K best of
 * a ranking saved by `xdistill heads -o FILE.json`; with Kg instead of K
 * (auto:14g): the K best KV groups, each with all its query heads; with fit instead of K
 * (auto:fit): as many of the best KV groups as keep the whole decoding state at TOKENS
 * within FRAC of the teacher's fp32 KV cache at that length (--state-budget FRAC[@TOKENS],
 * default 0.1@16384). --global-kv: the type of their keys/values in the decoding state
 * (default bf16: half the memory).
 * Builds the xLSTM hybrid student from a teacher (docs/design.md, "Conversion") and saves it as
 * an HF-style directory (config.json with model_type "xdistill_hybrid",
 * model.safetensors, tokenizer.json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/head_probe.h"
#include "model/student.h"
#include "xdistill.h"

/* "12:3,20:1" → o->global_heads (the library checks them against the model). */
static int parse_global_heads(const char *s, xd_student_opts *o) {
    const char *p = s;
    o->n_global_heads = 0;
    for (;;) {
        char *end;
        long l = -1, h = -1;
        if (*p >= '0' && *p <= '9') l = strtol(p, &end, 10);
        else end = (char *)p;
        if (l >= 0 && *end == ':' && end[1] >= '0' && end[1] <= '9') h = strtol(end + 1, &end, 10);
        if (l < 0 || h < 0 || l > 32767 || h > 32767 || (*end && *end != ',')) {
            const char *e = strchr(p, ',');
            return cli_error("--global-heads: '%.*s' is not LAYER:HEAD (expected 0-based integers, "
                             "e.g. --global-heads 12:3,20:1)", e ? (int)(e - p) : (int)strlen(p), p);
        }
        if (o->n_global_heads == XD_MAX_GLOBAL_HEADS)
            return cli_error("--global-heads: more than %d heads", XD_MAX_GLOBAL_HEADS);
        o->global_heads[o->n_global_heads++] = (xd_head_ref){(int16_t)l, (int16_t)h};
        if (!*end) return 0;
        p = end + 1;
    }
}

/* --state-budget FRAC[@TOKENS] (default 0.1@16384) */
typedef struct {
    float frac;
    int tokens;
} state_budget;

/* --global-heads LIST | auto:K | FILE.json:K | auto:Kg | FILE.json:Kg | auto:fit |
 * FILE.json:fit (after the last ':'; a trailing g counts KV groups, model/head_probe.h; fit:
 * as many KV groups as the state budget holds). */
static int choose_global_heads(const char *spec, const xd_model *t, xd_student_opts *o,
                               state_budget sb) {
    const char *colon = strrchr(spec, ':');
    size_t pre = colon ? (size_t)(colon - spec) : 0;
    int is_auto = colon && pre == 4 && !strncmp(spec, "auto", 4);
    int is_file = colon && pre > 5 && !strncmp(colon - 5, ".json", 5);
    if (!is_auto && !is_file) return parse_global_heads(spec, o);
    const xd_config *c = xd_model_config(t);
    char num[32];
    size_t nl = strlen(colon + 1);
    int group = 0, k;
    if (!strcmp(colon + 1, "fit")) {
        group = c->n_head / c->n_kv_head;
        k = xd_student_pairs_within(c, o, sb.frac, sb.tokens);
        if (k < 0) return cli_lib_error(), -1;
        if (k == 0) {
            cli_error("--global-heads %s: a %s key/value row per token of one KV group does not fit in "
                      "%g of the teacher's KV cache at %d tokens beside the constant state "
                      "(expected a larger --state-budget)", spec, xd_kv_dtype_name(o->global_kv_dtype),
                      sb.frac, sb.tokens);
            return -1;
        }
        fprintf(stderr, "global heads: %d KV groups fit the state budget (%s keys/values, %g of the "
                "teacher's KV cache at %d tokens)\n", k, xd_kv_dtype_name(o->global_kv_dtype),
                sb.frac, sb.tokens);
    } else {
        if (nl > 0 && colon[nl] == 'g') { /* K groups */
            group = c->n_head / c->n_kv_head;
            nl--;
        }
        snprintf(num, sizeof num, "%.*s", (int)(nl < sizeof num - 1 ? nl : sizeof num - 1), colon + 1);
        if (parse_int(group ? "--global-heads Kg" : "--global-heads K", num, 1, XD_MAX_GLOBAL_HEADS,
                      &k))
            return -1;
    }
    char path[4096];
    int m;
    if (is_auto) {
        m = xd_head_probe_auto(t, o->window, o->sinks, k, group, o->global_heads);
    } else {
        snprintf(path, sizeof path, "%.*s", (int)pre, spec);
        m = xd_head_ranking_load_top(path, k, group, c->n_layer, c->n_head, o->global_heads);
    }
    if (m < 0) {
        cli_lib_error();
        return -1;
    }
    o->n_global_heads = m;
    fprintf(stderr, "global heads (%s, %d%s, %d heads):", is_auto ? "retrieval probe" : path, k,
            group ? " KV groups" : "", m);
    for (int i = 0; i < m; i++)
        fprintf(stderr, "%s%d:%d", i ? "," : " ", o->global_heads[i].layer, o->global_heads[i].head);
    fputc('\n', stderr);
    return 0;
}

static const char USAGE[] =
    "usage: xdistill convert TEACHER -o STUDENT [--window W] [--sinks S] [--chunk L] "
    "[--softcap C] [--swa-only] [--no-exact-window] [--memory mlstm|delta] "
    "[--global-heads LAYER:HEAD,...|auto:K[g]|FILE.json:K[g]|auto:fit|FILE.json:fit] "
    "[--global-kv bf16|int8|int4|k8v4|f32] [--state-budget FRAC[@TOKENS]] "
    "[--sparse-cache ROWS]";

int cmd_convert(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    const char *teacher = NULL, *out = NULL, *v, *gh_spec = NULL;
    xd_student_opts o;
    xd_student_defaults(&o);
    int threads = 0, r;
    state_budget sb = {0.1, 16384};
    for (int i = 1; i < argc; i++) {
        if ((r = take_opt(argc, argv, &i, "-o", &v))) {
            if (r < 0) return 2;
            out = v;
        } else if ((r = take_opt(argc, argv, &i, "--window", &v))) {
            if (r < 0 || parse_int("--window", v, 1, 1 << 24, &o.window)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--sinks", &v))) {
            if (r < 0 || parse_int("--sinks", v, 0, 1 << 20, &o.sinks)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--chunk", &v))) {
            if (r < 0 || parse_int("--chunk", v, 1, 4096, &o.chunk)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--softcap", &v))) {
            if (r < 0 || parse_float("--softcap", v, 0, 1e6, &o.gate_softcap)) return 2;
        } else if (!strcmp(argv[i], "--swa-only")) {
            o.swa_only = 1;
        } else if (!strcmp(argv[i], "--no-exact-window")) {
            o.exact_in_window = 0;
        } else if ((r = take_opt(argc, argv, &i, "--memory", &v))) {
            if (r < 0) return 2;
            if (!strcmp(v, "mlstm")) o.memory_rule = XD_MEMORY_MLSTM;
            else if (!strcmp(v, "delta") || !strcmp(v, "gated-delta"))
                o.memory_rule = XD_MEMORY_DELTA;
            else {
                cli_error("--memory: '%s' (expected mlstm or delta)", v);
                return 2;
            }
        } else if ((r = take_opt(argc, argv, &i, "--global-heads", &v))) {
            if (r < 0) return 2;
            gh_spec = v;
        } else if ((r = take_opt(argc, argv, &i, "--global-kv", &v))) {
            if (r < 0) return 2;
            int dt;
            if (xd_kv_dtype_parse(v, &dt)) {
                cli_error("--global-kv: '%s' (expected bf16, int8, int4, k8v4 or f32)", v);
                return 2;
            }
            o.global_kv_dtype = dt;
        } else if ((r = take_opt(argc, argv, &i, "--sparse-cache", &v))) {
            if (r < 0 || parse_int("--sparse-cache", v, 0, 1 << 20, &o.sparse_cache)) return 2;
        } else if ((r = take_opt(argc, argv, &i, "--state-budget", &v))) {
            if (r < 0) return 2;
            char frac[64];
            const char *at = strchr(v, '@');
            snprintf(frac, sizeof frac, "%.*s", at ? (int)(at - v) : (int)strlen(v), v);
            if (parse_float("--state-budget", frac, 1e-6, 1, &sb.frac) ||
                (at && parse_int("--state-budget @TOKENS", at + 1, 1, 1 << 30, &sb.tokens)))
                return 2;
        } else if ((r = take_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || parse_int("--threads", v, 1, 1024, &threads)) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("convert: unknown option '%s'", argv[i]);
            return 2;
        } else if (!teacher) {
            teacher = argv[i];
        } else {
            cli_error("convert: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (!teacher || !out) return cli_error("%s", USAGE), 2;
    if (threads) xd_set_threads(threads);
    double t0 = now_s();
    xd_model *t = xd_model_load(teacher);
    if (!t) return cli_lib_error();
    if (gh_spec && choose_global_heads(gh_spec, t, &o, sb)) {
        xd_model_free(t);
        return 2;
    }
    xd_model *s = xd_student_convert(t, &o);
    xd_model_free(t);
    if (!s) return cli_lib_error();
    const xd_config *c = xd_model_config(s);
    size_t n_new = 0;
    {
        size_t per = (size_t)c->n_head * c->head_dim * c->head_dim * 2 +
                     (size_t)c->n_head * c->head_dim * 2 + (size_t)c->n_head * 2 * c->d_model +
                     (size_t)c->n_head * 2 + (size_t)c->n_head * 3 * c->head_dim + c->n_head;
        n_new = per * (size_t)c->n_layer;
    }
    if (xd_model_save(s, out)) {
        xd_model_free(s);
        return cli_lib_error();
    }
    fprintf(stderr,
            "converted %s -> %s: %d layers, window %d, sinks %d, chunk %d, %d global heads; "
            "%.2f M new mixer parameters (%.2f M in all); %.1f s\n",
            teacher, out, c->n_layer, c->window, c->sinks, c->chunk, c->n_global_heads,
            (double)n_new / 1e6,
            (double)xd_model_n_params(s) / 1e6, now_s() - t0);
    xd_model_free(s);
    return 0;
}
