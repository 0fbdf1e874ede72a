/* Loading a teacher from an HF directory: config.json, safetensors (single
 * or sharded) and, when present, tokenizer.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "model.h"

static int load_weight(const st_set *s, const char *dir, const xd_weight *w) {
    const st_tensor *t = xd_st_find(s, w->hf);
    if (!t) return xd_err("%s: missing tensor '%s'", dir, w->hf);
    int ok = w->ndim == 1 ? (t->n_dims == 1 && t->shape[0] == w->cols)
                          : (t->n_dims == 2 && t->shape[0] == w->rows && t->shape[1] == w->cols);
    if (!ok)
        return xd_err("%s: tensor '%s' has shape [%lld%s%lld], expected [%lld%s%lld]", dir, w->hf,
                      (long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                      t->n_dims > 1 ? (long long)t->shape[1] : 0LL,
                      (long long)(w->ndim == 1 ? w->cols : w->rows), w->ndim > 1 ? ", " : "",
                      w->ndim > 1 ? (long long)w->cols : 0LL);
    return xd_st_to_f32(s, t, w->ptr);
}

int xd_model_load_hf(xd_model *m, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (xd_hf_config_load(path, &m->cfg) || xd_config_validate(&m->cfg, path)) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, F_OK) == 0 && !(m->tok = xd_tokenizer_load_json(path))) return -1;
    st_set *s = xd_st_open_dir(dir);
    if (!s) return -1;
    xd_weight *ws = NULL;
    int nw = 0, rc = -1;
    if (xd_model_alloc(m) || xd_model_weights(m, &ws, &nw)) goto done;
    for (int i = 0; i < nw; i++)
        if (load_weight(s, dir, &ws[i])) goto done;
    rc = 0;
done:
    free(ws);
    xd_st_close(s);
    return rc;
}
