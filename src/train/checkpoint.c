/* Training checkpoints (layout and crash semantics in checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/atomic.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"
#include "train.h"

int xd_ckpt_exists(const char *out_dir) {
    char p[XD_APATH_MAX];
    snprintf(p, sizeof p, "%s/checkpoint/state.json", out_dir);
    return access(p, R_OK) == 0;
}

/* The trained tensors, as entries into the arena the optimiser's moments
 * mirror: an objective's own, the model's weights, or with LoRA the
 * adapters' (*ws malloc'ed). */
static int trained_weights(const xd_model *m, const xd_lora_set *lora, const xd_param_groups *own,
                           xd_weight **ws, int *n, const float **base) {
    if (own) {
        *base = own->param;
        *n = own->n;
        *ws = malloc((size_t)own->n * sizeof **ws + 1);
        if (!*ws) return xd_err("out of memory");
        memcpy(*ws, own->w, (size_t)own->n * sizeof **ws);
        return 0;
    }
    *base = lora ? lora->param : m->arena;
    return lora ? xd_lora_weights(lora, ws, n) : xd_model_weights(m, ws, n);
}

/* Tensors ws (entries into base) as safetensors descriptors: the weights
 * themselves (data = NULL) or the moments m / v at the same offsets. */
static void describe(st_write_tensor *t, char *name, size_t cap, const xd_weight *w,
                     const char *suffix, const float *data) {
    snprintf(name, cap, "%s%s", w->hf, suffix);
    t->name = name;
    t->dtype = ST_F32;
    t->n_dims = w->ndim;
    t->shape[0] = w->ndim == 1 ? w->cols : w->rows;
    t->shape[1] = w->cols;
    t->data = data;
}

int xd_params_save(const char *path, const xd_param_groups *own) {
    st_write_tensor *ts = calloc((size_t)own->n + 1, sizeof *ts);
    char (*names)[112] = calloc((size_t)own->n + 1, sizeof *names);
    int rc = -1;
    if (!ts || !names) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < own->n; i++)
        describe(&ts[i], names[i], sizeof names[0], &own->w[i], "", own->w[i].ptr);
    rc = xd_st_write(path, ts, own->n, NULL);
done:
    free(ts);
    free(names);
    return rc;
}

/* Reads tensor `name` of count floats from s into dst; names the file on a mismatch. */
static int read_exact(st_set *s, const char *path, const char *name, int64_t count, float *dst) {
    const st_tensor *t = xd_st_find(s, name);
    int64_t have = 1;
    if (t) for (int j = 0; j < t->n_dims; j++) have *= t->shape[j];
    if (!t || have != count)
        return xd_err("%s: tensor '%s' is missing or has %lld elements, expected %lld", path, name,
                      (long long)(t ? have : 0), (long long)count);
    return xd_st_to_f32(s, t, dst);
}

int xd_params_load(const char *path, xd_param_groups *own) {
    st_set *s = xd_st_open(path);
    if (!s) return -1;
    int rc = 0;
    for (int i = 0; i < own->n && !rc; i++)
        rc = read_exact(s, path, own->w[i].hf, own->w[i].rows * own->w[i].cols, own->w[i].ptr);
    xd_st_close(s);
    return rc;
}

static int save_optimizer(const char *path, const xd_model *m, const xd_lora_set *lora,
                          const xd_param_groups *own, const xd_adamw *opt) {
    xd_weight *ws;
    int n;
    const float *base;
    if (trained_weights(m, lora, own, &ws, &n, &base)) return -1;
    st_write_tensor *ts = calloc((size_t)(2 * n), sizeof *ts);
    char (*names)[112] = calloc((size_t)(2 * n), sizeof *names);
    int rc = -1;
    if (!ts || !names) { xd_err("out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        size_t off = (size_t)(ws[i].ptr - base);
        for (int k = 0; k < 2; k++)
            describe(&ts[2 * i + k], names[2 * i + k], sizeof names[0], &ws[i],
                     k ? ".exp_avg_sq" : ".exp_avg", (k ? opt->v : opt->m) + off);
    }
    char meta[64];
    snprintf(meta, sizeof meta, "{\"adam_step\": \"%lld\"}", (long long)opt->t);
    rc = xd_st_write(path, ts, 2 * n, meta);
done:
    free(ts);
    free(names);
    free(ws);
    return rc;
}

static int save_state(const char *path, const xd_ckpt_state *st, const xd_adamw *opt) {
    json_t *o = json_pack("{s:I, s:I, s:I, s:f, s:i, s:i, s:i, s:I, s:I}", "step", (json_int_t)st->step,
                          "cursor", (json_int_t)st->cursor, "tokens_seen", (json_int_t)st->tokens_seen,
                          "elapsed", st->elapsed, "batch", st->batch, "seq", st->seq, "accum",
                          st->accum, "steps", (json_int_t)st->steps, "adam_step", (json_int_t)opt->t);
    char *s = o ? json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    if (!s) return xd_err("%s: cannot format the training state", path);
    int rc = xd_write_file_atomic(path, s, strlen(s));
    free(s);
    return rc;
}

/* Removes OUT/ckpt-* directories other than `keep`. */
static void remove_old(const char *out_dir, const char *keep) {
    DIR *d = opendir(out_dir);
    if (!d) return;
    struct dirent *e;
    char p[XD_APATH_MAX];
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "ckpt-", 5) && strcmp(e->d_name, keep)) {
            snprintf(p, sizeof p, "%s/%s", out_dir, e->d_name);
            xd_rmtree(p);
        }
    closedir(d);
}

int xd_ckpt_save(const char *out_dir, const xd_model *m, xd_lora_set *lora,
                 const xd_param_groups *own, const xd_adamw *opt, const xd_ckpt_state *st) {
    char name[64], dir[XD_APATH_MAX], p[XD_APATH_MAX + 64], link_tmp[XD_APATH_MAX],
        link[XD_APATH_MAX];
    snprintf(name, sizeof name, "ckpt-%08lld", (long long)st->step);
    snprintf(dir, sizeof dir, "%s/%s", out_dir, name);
    xd_adir d;
    if (xd_adir_begin(&d, dir)) return -1;
    snprintf(p, sizeof p, "%s/%s", d.tmp,
             own ? "params.safetensors" : lora ? "adapter" : "model");
    if (own ? xd_params_save(p, own) : lora ? xd_lora_set_save(lora, p) : xd_model_save(m, p))
        goto fail;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", d.tmp);
    if (save_optimizer(p, m, lora, own, opt)) goto fail;
    snprintf(p, sizeof p, "%s/state.json", d.tmp);
    if (save_state(p, st, opt)) goto fail;
    if (xd_adir_commit(&d)) return -1;
    /* swap the symlink: a new link under a temporary name renamed over the old */
    snprintf(link, sizeof link, "%s/checkpoint", out_dir);
    snprintf(link_tmp, sizeof link_tmp, "%s/checkpoint.tmp.%d", out_dir, (int)getpid());
    unlink(link_tmp);
    if (symlink(name, link_tmp) || rename(link_tmp, link)) {
        int e = errno;
        unlink(link_tmp);
        return xd_err("%s: cannot point the checkpoint link at %s: %s", link, name, strerror(e));
    }
    if (xd_fsync_dir(out_dir)) return -1;
    remove_old(out_dir, name);
    return 0;
fail:
    xd_adir_abort(&d);
    return -1;
}

static int load_optimizer(const char *path, const xd_model *m, const xd_lora_set *lora,
                          const xd_param_groups *own, xd_adamw *opt) {
    st_set *s = xd_st_open(path);
    if (!s) return -1;
    xd_weight *ws;
    int n, rc = -1;
    const float *base;
    if (trained_weights(m, lora, own, &ws, &n, &base)) { xd_st_close(s); return -1; }
    for (int i = 0; i < n; i++) {
        size_t off = (size_t)(ws[i].ptr - base);
        int64_t count = ws[i].rows * ws[i].cols;
        for (int k = 0; k < 2; k++) {
            char nm[128];
            snprintf(nm, sizeof nm, "%s.%s", ws[i].hf, k ? "exp_avg_sq" : "exp_avg");
            if (read_exact(s, path, nm, count, (k ? opt->v : opt->m) + off)) goto done;
        }
    }
    rc = 0;
done:
    free(ws);
    xd_st_close(s);
    return rc;
}

static int get_int(json_t *o, const char *path, const char *key, long long *v) {
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x)) return xd_err("%s: field '%s' is missing or not an integer", path, key);
    *v = json_integer_value(x);
    return 0;
}

/* The checkpoint's adapter into the bound set (same modules and ranks). */
static int load_adapter(const char *dir, xd_lora_set *lora) {
    xd_lora_adapter *a = xd_lora_load(dir);
    if (!a) return -1;
    int rc = xd_lora_fetch(lora, a, dir);
    xd_lora_free(a);
    return rc;
}

/* The checkpoint's weights into m (same architecture). */
static int load_model(const char *p, xd_model *m) {
    xd_model *c = xd_model_load(p);
    if (!c) return -1;
    if (c->arena_floats != m->arena_floats || memcmp(&c->cfg, &m->cfg, sizeof c->cfg)) {
        xd_model_free(c);
        return xd_err("%s: the checkpoint's architecture differs from the model being trained", p);
    }
    memcpy(m->arena, c->arena, m->arena_floats * sizeof(float));
    xd_model_free(c);
    return 0;
}

int xd_ckpt_load(const char *out_dir, xd_model *m, xd_lora_set *lora, xd_param_groups *own,
                 xd_adamw *opt, xd_ckpt_state *st) {
    char p[XD_APATH_MAX];
    snprintf(p, sizeof p, "%s/checkpoint/state.json", out_dir);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    if (!o) return xd_err("%s: line %d: %s", p, je.line, je.text);
    long long step = 0, cursor = 0, toks = 0, batch = 0, seq = 0, accum = 0, steps = 0, adam = 0;
    int rc = -1;
    if (get_int(o, p, "step", &step) || get_int(o, p, "cursor", &cursor) ||
        get_int(o, p, "tokens_seen", &toks) || get_int(o, p, "batch", &batch) ||
        get_int(o, p, "seq", &seq) || get_int(o, p, "accum", &accum) ||
        get_int(o, p, "steps", &steps) || get_int(o, p, "adam_step", &adam))
        goto done;
    json_t *el = json_object_get(o, "elapsed");
    st->step = step;
    st->cursor = (uint64_t)cursor;
    st->tokens_seen = toks;
    st->elapsed = json_is_number(el) ? json_number_value(el) : 0;
    st->batch = (int)batch;
    st->seq = (int)seq;
    st->accum = (int)accum;
    st->steps = steps;
    opt->t = adam;
    snprintf(p, sizeof p, "%s/checkpoint/%s", out_dir,
             own ? "params.safetensors" : lora ? "adapter" : "model");
    if (own ? xd_params_load(p, own) : lora ? load_adapter(p, lora) : load_model(p, m)) goto done;
    snprintf(p, sizeof p, "%s/checkpoint/optimizer.safetensors", out_dir);
    rc = load_optimizer(p, m, lora, own, opt);
done:
    json_decref(o);
    return rc;
}
