/* xdistill inspect MODEL — architecture, hyper-parameters, parameter count,
 * tensors (dtype and shape as stored) and a tokenizer summary. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/file.h"
#include "io/ggml_types.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "xdistill.h"

static int list_gguf(const char *path) {
    gguf_file *g = xd_gguf_open(path);
    if (!g) return cli_lib_error();
    printf("tensors (%llu, GGUF v%u):\n", (unsigned long long)g->n_tensors, g->version);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        printf("  %-40s %-7s [", t->name, xd_ggml_type_name(t->type));
        for (int d = (int)t->n_dims - 1; d >= 0; d--) /* PyTorch order: outermost first */
            printf("%lld%s", (long long)t->ne[d], d ? ", " : "");
        printf("]\n");
    }
    xd_gguf_close(g);
    return 0;
}

static int list_safetensors(const char *dir) {
    st_set *s = xd_st_open_dir(dir);
    if (!s) return cli_lib_error();
    printf("tensors (%d, %d safetensors file%s):\n", s->n_tensors, s->n_files,
           s->n_files == 1 ? "" : "s");
    for (int i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        printf("  %-50s %-5s [", t->name, xd_st_dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++)
            printf("%lld%s", (long long)t->shape[d], d + 1 < t->n_dims ? ", " : "");
        printf("]\n");
    }
    xd_st_close(s);
    return 0;
}

static const char USAGE[] = "usage: xdistill inspect MODEL (a GGUF file or an HF directory)";

int cmd_inspect(int argc, char **argv) {
    if (wants_help(argc, argv)) return cli_help(USAGE);
    if (argc != 2) return cli_error("%s", USAGE);
    const char *path = argv[1];
    xd_model *m = xd_model_load(path);
    if (!m) return cli_lib_error();
    const xd_config *c = xd_model_config(m);
    printf("model:        %s\n", path);
    printf("architecture: %s\n", xd_arch_name(c->arch));
    if (c->student)
        printf("student:      xLSTM hybrid (%s + sliding window %d + %d sinks, chunk %d, "
               "gate soft-cap %g, mLSTM scale %g)\n",
               c->memory_rule == XD_MEMORY_DELTA ? "gated delta rule" : "mLSTM", c->window,
               c->sinks, c->chunk, c->gate_softcap, c->mlstm_scale);
    if (c->student) {
        printf("global heads: %d", c->n_global_heads);
        for (int i = 0; i < c->n_global_heads; i++)
            printf("%s%d:%d", i ? "," : " (layer:head) ", c->global_heads[i].layer,
                   c->global_heads[i].head);
        printf("\n");
        if (c->sparse_cache)
            printf("sparse cache: %d rows per layer (kept by the mLSTM's recall error)\n",
                   c->sparse_cache);
    }
    printf("layers:       %d\n", c->n_layer);
    printf("d_model:      %d\n", c->d_model);
    printf("heads:        %d (kv heads %d, head_dim %d)\n", c->n_head, c->n_kv_head, c->head_dim);
    printf("d_ff:         %d\n", c->d_ff);
    printf("vocab:        %d\n", c->vocab_size);
    printf("context:      %d\n", c->max_ctx);
    printf("rope_theta:   %g%s\n", c->rope_theta, c->rope_scale_factor > 0 ? " (llama3 scaling)" : "");
    printf("rms_norm_eps: %g\n", c->norm_eps);
    printf("tied embeddings: %s, qkv bias: %s, qk norm: %s, post norms: %s\n",
           c->tied_embeddings ? "yes" : "no", c->qkv_bias ? "yes" : "no",
           c->qk_norm == XD_QKNORM_HEAD ? "per head" : c->qk_norm == XD_QKNORM_FULL ? "full" : "no",
           c->post_norms ? "yes" : "no");
    size_t np = xd_model_n_params(m);
    printf("parameters:   %zu (%.1f M; %.1f MB as fp32)\n", np, (double)np / 1e6, (double)np * 4 / 1e6);
    const xd_tokenizer *t = xd_model_tokenizer(m);
    if (t)
        printf("tokenizer:    byte-level BPE, %d tokens, pre-tokenizer '%s', bos %d, eos %d\n",
               xd_tokenizer_n_tokens(t), xd_tokenizer_pre(t), xd_tokenizer_bos(t),
               xd_tokenizer_eos(t));
    else
        printf("tokenizer:    none\n");
    xd_model_free(m);
    return xd_is_dir(path) ? list_safetensors(path) : list_gguf(path);
}
