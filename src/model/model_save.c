/* Saving a model as an HF directory (config.json + model.safetensors +
 * tokenizer.json), committed atomically as a whole directory (io/atomic.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "io/atomic.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "model.h"
#include "qweights.h"

/* DIR/name into out; -1 when too long. */
/* bos/eos ids for config.json (generation uses them), when known. */
static json_t *config_extra(const xd_model *m) {
    json_t *o = json_object();
    if (!o || !m->tok) return o;
    int bos = xd_tokenizer_bos(m->tok), eos = xd_tokenizer_eos(m->tok);
    if (bos >= 0) json_object_set_new(o, "bos_token_id", json_integer(bos));
    if (eos >= 0) json_object_set_new(o, "eos_token_id", json_integer(eos));
    return o;
}

static int write_files(const xd_model *m, const char *tmp) {
    char path[XD_APATH_MAX];
    xd_weight *ws = NULL;
    st_write_tensor *ts = NULL;
    json_t *extra = NULL;
    int nw = 0, rc = -1;
    if (xd_path_join(path, sizeof path, tmp, "config.json")) goto done;
    if (!(extra = config_extra(m))) { xd_err("out of memory"); goto done; }
    if (xd_hf_config_save_ex(&m->cfg, extra, path)) goto done;

    if (xd_model_weights(m, &ws, &nw)) goto done;
    if (!(ts = calloc((size_t)nw, sizeof *ts))) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < nw; i++) {
        ts[i].name = ws[i].hf;
        ts[i].dtype = ST_F32;
        ts[i].n_dims = ws[i].ndim;
        if (ws[i].ndim == 1) ts[i].shape[0] = ws[i].cols;
        else {
            ts[i].shape[0] = ws[i].rows;
            ts[i].shape[1] = ws[i].cols;
        }
        ts[i].data = ws[i].ptr;
    }
    if (xd_path_join(path, sizeof path, tmp, "model.safetensors") ||
        xd_st_write(path, ts, nw, "{\"format\": \"pt\"}"))
        goto done;

    if (m->tok && (xd_path_join(path, sizeof path, tmp, "tokenizer.json") ||
                   xd_tokenizer_save_json(m->tok, path)))
        goto done;
    rc = 0;
done:
    json_decref(extra);
    free(ws);
    free(ts);
    return rc;
}

int xd_model_save(const xd_model *m, const char *dir) {
    if (!m || !dir) return xd_err("xd_model_save: no model or directory");
    if (xd_model_require_fp32(m, "saving it")) return -1;
    if (xd_config_validate(&m->cfg, dir)) return -1;
    xd_adir d;
    /* errors of begin / commit start with dir already */
    if (xd_adir_begin(&d, dir)) return -1;
    if (write_files(m, d.tmp)) {
        xd_adir_abort(&d);
        return xd_err_prefix("saving model to %s", dir);
    }
    return xd_adir_commit(&d);
}
