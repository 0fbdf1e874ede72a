#include "lora_args.h"

#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "core/dist.h"
#include "io/atomic.h"
#include "model/lora.h"
#include "xdistill.h"

const char *lora_args_usage =
    "  --r R            adapter rank (8)             --alpha A   lora_alpha (8)\n"
    "  --rslora         scaling alpha/sqrt(r) instead of alpha/r\n"
    "  --targets LIST   comma-separated: q,k,v,o,gate,up,down (PEFT's q_proj, ... also;\n"
    "                   default all seven); a student also has its mixer's gate\n"
    "                   projections igate, fgate (d -> heads each)\n"
    "  --init I         random (PEFT's default: A Kaiming-uniform, B = 0), pissa\n"
    "                   (principal singular vectors; the base keeps the residual, and\n"
    "                   OUT/adapter is converted to a plain LoRA of rank 2r on the\n"
    "                   original base, as PEFT does), or eva (A from the principal\n"
    "                   components of each layer's inputs over the data; ranks\n"
    "                   redistributed by explained variance, within r x layers)\n"
    "  --lora-seed S    initialisation seed (1)\n"
    "  --eva-rho X      EVA: at most rint(X r) per layer (2)   --eva-tau X  convergence (0.99)\n"
    "  --eva-steps N    EVA: updates per layer at most (100)\n"
    "  --eva-batch B    EVA: rows per forward pass (4)         --eva-seq T  tokens per row (256)\n"
    "  --eva-state F    EVA: reuse a saved state (OUT/eva_state.safetensors of an earlier\n"
    "                   run) for another --r or --eva-rho, without forward passes\n";

void lora_args_defaults(lora_cli_opts *lc) {
    memset(lc, 0, sizeof *lc);
    xd_lora_init_opts *o = &lc->init;
    o->kind = XD_LORA_INIT_RANDOM;
    o->targets = XD_LORA_LINEAR_TARGETS;
    o->r = 8;
    o->alpha = 8;
    o->seed = 1;
    xd_eva_defaults(&lc->eva);
}

/* "q,k,gate_proj" -> a mask of targets; -1 with an error printed. */
static int parse_targets(const char *s, unsigned *mask) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *mask = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = xd_lora_target_parse(t);
        if (k < 0) return cli_error("--targets: %s", xd_last_error()), -1;
        *mask |= 1u << k;
    }
    if (!*mask) return cli_error("--targets '%s': expected at least one module", s), -1;
    return 0;
}

int lora_arg(int argc, char **argv, int *i, lora_cli_opts *lc) {
    xd_lora_init_opts *o = &lc->init;
    xd_eva_opts *e = &lc->eva;
    const char *v;
    int r, iv;
    float fv;
    if ((r = take_opt(argc, argv, i, "--eva-rho", &v))) {
        if (r < 0 || parse_float("--eva-rho", v, 1, 1000, &fv)) return -1;
        e->rho = fv;
    } else if ((r = take_opt(argc, argv, i, "--eva-tau", &v))) {
        if (r < 0 || parse_float("--eva-tau", v, 0, 1, &fv)) return -1;
        e->tau = fv;
    } else if ((r = take_opt(argc, argv, i, "--eva-steps", &v))) {
        if (r < 0 || parse_int("--eva-steps", v, 1, 1 << 20, &e->max_steps)) return -1;
    } else if ((r = take_opt(argc, argv, i, "--eva-batch", &v))) {
        if (r < 0 || parse_int("--eva-batch", v, 1, 1 << 16, &e->batch)) return -1;
    } else if ((r = take_opt(argc, argv, i, "--eva-seq", &v))) {
        if (r < 0 || parse_int("--eva-seq", v, 2, 1 << 20, &e->seq)) return -1;
    } else if ((r = take_opt(argc, argv, i, "--eva-state", &v))) {
        if (r < 0) return -1;
        lc->eva_state = v;
    } else if ((r = take_opt(argc, argv, i, "--r", &v))) {
        if (r < 0 || parse_int("--r", v, 1, 1 << 16, &iv)) return -1;
        o->r = iv;
    } else if ((r = take_opt(argc, argv, i, "--alpha", &v))) {
        if (r < 0 || parse_float("--alpha", v, 1e-6, 1e6, &fv)) return -1;
        o->alpha = fv;
    } else if ((r = take_opt(argc, argv, i, "--lora-seed", &v))) {
        if (r < 0 || parse_int("--lora-seed", v, 0, 2147483647, &iv)) return -1;
        o->seed = (uint64_t)iv;
    } else if ((r = take_opt(argc, argv, i, "--targets", &v))) {
        if (r < 0 || parse_targets(v, &o->targets)) return -1;
    } else if ((r = take_opt(argc, argv, i, "--init", &v))) {
        if (r < 0) return -1;
        if (xd_lora_init_parse(v, &o->kind)) return cli_error("--init: %s", xd_last_error()), -1;
    } else if (!strcmp(argv[*i], "--rslora")) o->use_rslora = 1;
    else return 0;
    return 1;
}

/* EVA: the state (collected over the data or loaded), saved and reported; the adapter. */
static xd_lora_adapter *eva_prepare(xd_model *m, const char *base_name, const lora_cli_opts *lc,
                                    const char *data_path, const xd_train_opts *o) {
    xd_eva_opts e = lc->eva;
    e.targets = lc->init.targets;
    e.r = lc->init.r;
    e.alpha = lc->init.alpha;
    e.use_rslora = lc->init.use_rslora;
    xd_eva_state st = {0};
    xd_eva_report rep = {0};
    xd_lora_adapter *a = NULL;
    char path[1100];
    snprintf(path, sizeof path, "%s/eva_state.safetensors", o->out_dir);
    if (lc->eva_state) {
        if (xd_eva_load(lc->eva_state, &st.pca, &st.names, &st.n)) return NULL;
    } else {
        xd_tokdata *d = xd_tokdata_open(data_path);
        int rc = !d || xd_eva_collect(m, d, &e, &st, &rep);
        xd_tokdata_close(d);
        if (rc || (xd_dist_rank() == 0 && /* under mpirun: rank 0 writes */
                   (xd_mkdir_p(o->out_dir) ||
                    xd_eva_save(path, st.pca, (const char *const *)st.names, st.n))))
            goto done;
    }
    if (!(a = xd_eva_adapter(m, base_name, &st, &e))) goto done;
    int64_t total = 0;
    for (int i = 0; i < a->n_modules; i++) total += a->modules[i].rank;
    printf("{\"eva\":{\"state\":\"%s\",\"passes\":%d,\"tokens_seen\":%lld,\"tokens_kept\":%lld,"
           "\"groups\":%d,\"converged\":%d,\"capped\":%d,\"seconds\":%.1f,\"pca_seconds\":%.1f,"
           "\"modules\":%d,\"rank_sum\":%lld,\"rank_budget\":%lld}}\n",
           lc->eva_state ? lc->eva_state : path, rep.passes, (long long)rep.tokens_seen,
           (long long)rep.tokens_kept, lc->eva_state ? st.n : rep.groups, rep.converged,
           rep.capped, rep.seconds, rep.pca_seconds, a->n_modules, (long long)total,
           (long long)e.r * (long long)__builtin_popcount(e.targets) * m->cfg.n_layer);
    fflush(stdout);
done:
    xd_eva_state_free(&st);
    return a;
}

xd_lora_adapter *lora_prepare(xd_model *m, const char *base_name, const lora_cli_opts *lc,
                              const char *data_path, xd_train_opts *o, xd_lora_adapter **pissa0) {
    *pissa0 = NULL;
    const xd_lora_init_opts *io = &lc->init;
    xd_lora_adapter *a = io->kind == XD_LORA_INIT_EVA ? eva_prepare(m, base_name, lc, data_path, o)
                                                      : xd_lora_init(m, base_name, io);
    if (a && io->kind == XD_LORA_INIT_PISSA && !(*pissa0 = xd_lora_copy(a))) {
        xd_lora_free(a);
        return NULL;
    }
    o->lora = a;
    o->lora_pissa0 = *pissa0;
    return a;
}
