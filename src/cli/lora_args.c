#include "lora_args.h"

#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "model/lora.h"
#include "xdistill.h"

const char *lora_args_usage =
    "  --r R            adapter rank (8)             --alpha A   lora_alpha (8)\n"
    "  --rslora         scaling alpha/sqrt(r) instead of alpha/r\n"
    "  --targets LIST   comma-separated: q,k,v,o,gate,up,down (PEFT's q_proj, ... also;\n"
    "                   default all seven)\n"
    "  --init I         random (PEFT's default: A Kaiming-uniform, B = 0), pissa\n"
    "                   (principal singular vectors; the base keeps the residual, and\n"
    "                   OUT/adapter is converted to a plain LoRA of rank 2r on the\n"
    "                   original base, as PEFT does), or eva (not available yet)\n"
    "  --lora-seed S    initialisation seed (1)\n";

void lora_args_defaults(xd_lora_init_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = XD_LORA_INIT_RANDOM;
    o->targets = (1u << XD_LORA_NT) - 1;
    o->r = 8;
    o->alpha = 8;
    o->seed = 1;
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

int lora_arg(int argc, char **argv, int *i, xd_lora_init_opts *o) {
    const char *v;
    int r, iv;
    float fv;
    if ((r = take_opt(argc, argv, i, "--r", &v))) {
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

xd_lora_adapter *lora_prepare(xd_model *m, const char *base_name, const xd_lora_init_opts *io,
                              xd_train_opts *o, xd_lora_adapter **pissa0) {
    *pissa0 = NULL;
    xd_lora_adapter *a = xd_lora_init(m, base_name, io);
    if (a && io->kind == XD_LORA_INIT_PISSA && !(*pissa0 = xd_lora_copy(a))) {
        xd_lora_free(a);
        return NULL;
    }
    o->lora = a;
    o->lora_pissa0 = *pissa0;
    return a;
}
