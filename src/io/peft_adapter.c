/* LoRA adapters in PEFT's format (peft_adapter.h): the tensors, loading and
 * saving. adapter_config.json itself is peft_config.c. */
#include "peft_adapter.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/file.h"
#include "atomic.h"
#include "peft_internal.h"
#include "safetensors.h"

#define CONFIG_FILE "adapter_config.json"
#define TENSOR_FILE "adapter_model.safetensors"

static const char KEY_PREFIX[] = "base_model.model.";
static const char *const KEY_SUFFIX[2] = {".lora_A.weight", ".lora_B.weight"};

double xd_lora_scaling(double alpha, int rank, int use_rslora) {
    return use_rslora ? alpha / sqrt((double)rank) : alpha / (double)rank;
}

/* ---- the struct ------------------------------------------------------------ */

static void clear_module(xd_lora_module *m) {
    free(m->module);
    free(m->A);
    free(m->B);
}

/* Frees everything a owns, not a itself. */
static void clear(xd_lora_adapter *a) {
    for (int i = 0; i < a->n_modules; i++) clear_module(&a->modules[i]);
    free(a->modules);
    free(a->source);
    free(a->base_model);
    free(a->init_lora_weights);
    xd_peft_names_free(&a->target_modules);
    xd_peft_names_free(&a->exclude_modules);
    memset(a, 0, sizeof *a);
}

void xd_lora_free(xd_lora_adapter *a) {
    if (!a) return;
    clear(a);
    free(a);
}

xd_lora_adapter *xd_lora_new(const char *base_model, int r, double lora_alpha, int use_rslora) {
    if (r < 1 || r > XD_LORA_MAX_RANK || !isfinite(lora_alpha)) {
        xd_err("xd_lora_new: r = %d, lora_alpha = %g (expected r in 1 .. %d, a finite alpha)", r,
               lora_alpha, XD_LORA_MAX_RANK);
        return NULL;
    }
    xd_lora_adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->init_lora_weights = strdup("true")) ||
        (base_model && !(a->base_model = strdup(base_model)))) {
        xd_lora_free(a);
        xd_err("out of memory");
        return NULL;
    }
    a->r = r;
    a->lora_alpha = lora_alpha;
    a->use_rslora = use_rslora;
    return a;
}

xd_lora_adapter *xd_lora_copy(const xd_lora_adapter *a) {
    xd_lora_adapter *c = xd_lora_new(a->base_model, a->r, a->lora_alpha, a->use_rslora);
    if (c) c->base_hash = a->base_hash;
    for (int i = 0; c && i < a->n_modules; i++) {
        const xd_lora_module *x = &a->modules[i];
        xd_lora_module *y = xd_lora_add_module(c, x->module, x->rank, x->in, x->out, x->alpha);
        if (!y) {
            xd_lora_free(c);
            return NULL;
        }
        memcpy(y->A, x->A, (size_t)(x->rank * x->in) * sizeof(float));
        memcpy(y->B, x->B, (size_t)(x->out * x->rank) * sizeof(float));
    }
    return c;
}

static int cmp_module(const void *x, const void *y) {
    return strcmp(((const xd_lora_module *)x)->module, ((const xd_lora_module *)y)->module);
}

/* The index of module, or -(insertion point) - 1. */
static int bisect(const xd_lora_adapter *a, const char *module) {
    int lo = 0, hi = a->n_modules - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(a->modules[mid].module, module);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -lo - 1;
}

const xd_lora_module *xd_lora_find(const xd_lora_adapter *a, const char *module) {
    int i = a && module ? bisect(a, module) : -1;
    return i >= 0 ? &a->modules[i] : NULL;
}

int xd_lora_check_module(const xd_lora_adapter *a, const char *module, int64_t in, int64_t out) {
    const char *src = a && a->source ? a->source : "LoRA adapter";
    const xd_lora_module *m = xd_lora_find(a, module);
    if (!m) return xd_err("%s: no LoRA for module '%s'", src, module ? module : "(null)");
    if (m->in != in || m->out != out)
        return xd_err("%s: module '%s': lora_A is [%d, %lld] and lora_B [%lld, %d], but the base "
                      "layer maps %lld -> %lld features (expected lora_A [%d, %lld], lora_B "
                      "[%lld, %d])", src, module, m->rank, (long long)m->in, (long long)m->out,
                      m->rank, (long long)in, (long long)out, m->rank, (long long)in,
                      (long long)out, m->rank);
    return 0;
}

xd_lora_module *xd_lora_add_module(xd_lora_adapter *a, const char *module, int rank, int64_t in,
                                   int64_t out, double alpha) {
    if (!a || !module || !*module || rank < 1 || rank > XD_LORA_MAX_RANK || in < 1 || out < 1 ||
        !isfinite(alpha) || (uint64_t)rank * (uint64_t)(in > out ? in : out) > (1ull << 40)) {
        xd_err("xd_lora_add_module: '%s': rank %d, %lld -> %lld features, alpha %g (expected a "
               "module path, rank in 1 .. %d, positive sizes, a finite alpha)",
               module ? module : "(null)", rank, (long long)in, (long long)out, alpha,
               XD_LORA_MAX_RANK);
        return NULL;
    }
    int at = bisect(a, module);
    if (at >= 0) {
        xd_err("xd_lora_add_module: module '%s' is already in the adapter", module);
        return NULL;
    }
    at = -at - 1;
    xd_lora_module m = {strdup(module), rank, in, out, alpha,
                        xd_lora_scaling(alpha, rank, a->use_rslora),
                        calloc((size_t)(rank * in), sizeof(float)),
                        calloc((size_t)(out * rank), sizeof(float))};
    xd_lora_module *mods = realloc(a->modules, (size_t)(a->n_modules + 1) * sizeof *mods);
    if (mods) a->modules = mods; /* one slot more than n_modules is harmless */
    if (!m.module || !m.A || !m.B || !mods) {
        clear_module(&m);
        xd_err("out of memory adding LoRA module '%s'", module);
        return NULL;
    }
    memmove(mods + at + 1, mods + at, (size_t)(a->n_modules - at) * sizeof *mods);
    mods[at] = m;
    a->n_modules++;
    return &mods[at];
}

/* ---- loading: tensors ------------------------------------------------------ */

/* Splits a tensor name into its module and 0 (lora_A) / 1 (lora_B); refuses the
 * rest, naming what it is. *mlen: the module path's length after KEY_PREFIX. */
static int parse_key(const char *spath, const char *name, size_t *mlen) {
    size_t lp = sizeof KEY_PREFIX - 1, ln = strlen(name);
    for (int ab = 0; ab < 2; ab++) {
        size_t ls = strlen(KEY_SUFFIX[ab]);
        if (ln > lp + ls && !strncmp(name, KEY_PREFIX, lp) &&
            !strcmp(name + ln - ls, KEY_SUFFIX[ab])) {
            *mlen = ln - lp - ls;
            return ab;
        }
    }
    const char *why = "not a LoRA weight";
    if (strstr(name, "lora_embedding_A") || strstr(name, "lora_embedding_B"))
        why = "LoRA on an embedding is not supported";
    else if (strstr(name, "lora_magnitude_vector"))
        why = "a DoRA magnitude vector; DoRA is not supported";
    else if (strstr(name, ".lora_B.bias") || strstr(name, ".lora_A.bias"))
        why = "a bias on lora_B (lora_bias) is not supported";
    return xd_err("%s: tensor '%s': %s (expected only base_model.model.<module>.lora_A.weight and "
                  ".lora_B.weight)", spath, name, why);
}

/* The tensor's values as fp32 (malloc'ed), all finite. */
static float *read_values(const char *spath, const st_set *s, const st_tensor *t, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) {
        xd_err("%s: tensor '%s': out of memory (%lld values)", spath, t->name, (long long)n);
        return NULL;
    }
    if (xd_st_to_f32(s, t, x)) { free(x); return NULL; }
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            xd_err("%s: tensor '%s': element %lld is %g (expected finite values)", spath, t->name,
                   (long long)i, (double)x[i]);
            free(x);
            return NULL;
        }
    return x;
}

/* Shapes: A [rank][in], B [out][rank], the same rank. */
static int check_shapes(const char *spath, const st_tensor *ta, const st_tensor *tb) {
    if (ta->n_dims != 2 || tb->n_dims != 2)
        return xd_err("%s: tensor '%s': %d dimensions (expected 2: lora_A [rank, in], lora_B "
                      "[out, rank])", spath, ta->n_dims != 2 ? ta->name : tb->name,
                      ta->n_dims != 2 ? ta->n_dims : tb->n_dims);
    if (ta->shape[0] != tb->shape[1])
        return xd_err("%s: tensors '%s' [%lld, %lld] and '%s' [%lld, %lld]: ranks differ (%lld "
                      "vs %lld; expected lora_A [rank, in], lora_B [out, rank])", spath, ta->name,
                      (long long)ta->shape[0], (long long)ta->shape[1], tb->name,
                      (long long)tb->shape[0], (long long)tb->shape[1], (long long)ta->shape[0],
                      (long long)tb->shape[1]);
    if (ta->shape[0] < 1 || ta->shape[0] > XD_LORA_MAX_RANK || ta->shape[1] < 1 || tb->shape[0] < 1)
        return xd_err("%s: tensor '%s' [%lld, %lld] / '%s' [%lld, %lld]: rank in 1 .. %d and "
                      "positive sizes expected", spath, ta->name, (long long)ta->shape[0],
                      (long long)ta->shape[1], tb->name, (long long)tb->shape[0],
                      (long long)tb->shape[1], XD_LORA_MAX_RANK);
    return 0;
}

/* Rank and alpha from the config; the rank must be the one the shapes give. */
static int config_rank(const xd_peft_cfg *c, const xd_lora_adapter *a, const char *spath,
                       xd_lora_module *m) {
    const char *why = NULL, *rkey, *akey;
    int t = xd_peft_cfg_targets(c, a, m->module, &why);
    if (t < 0) return -1;
    if (!t)
        return xd_err("%s: module '%s' has tensors in %s, but %s (PEFT would not load them)",
                      c->path, m->module, spath, why);
    int rank;
    if (xd_peft_cfg_resolve(c, a, m->module, &rank, &m->alpha, &rkey, &akey)) return -1;
    if (rank != m->rank) {
        if (rkey)
            return xd_err("%s: rank_pattern: key '%s' gives module '%s' rank %d, but its tensors "
                          "in %s have rank %d", c->path, rkey, m->module, rank, spath, m->rank);
        return xd_err("%s: r: %d (no rank_pattern key matches module '%s'), but its tensors in %s "
                      "have rank %d", c->path, rank, m->module, spath, m->rank);
    }
    m->scaling = xd_lora_scaling(m->alpha, m->rank, a->use_rslora);
    return 0;
}

static int load_module(const char *spath, const st_set *s, const st_tensor *ta,
                       const xd_peft_cfg *c, xd_lora_adapter *a, xd_lora_module *m) {
    size_t lp = sizeof KEY_PREFIX - 1, lm = strlen(ta->name) - lp - strlen(KEY_SUFFIX[0]);
    char bname[4096];
    if (!(m->module = strndup(ta->name + lp, lm))) return xd_err("out of memory");
    if ((size_t)snprintf(bname, sizeof bname, "%s%s%s", KEY_PREFIX, m->module, KEY_SUFFIX[1]) >=
        sizeof bname)
        return xd_err("%s: tensor '%s': name too long", spath, ta->name);
    const st_tensor *tb = xd_st_find(s, bname);
    if (!tb)
        return xd_err("%s: tensor '%s' has no '%s' (expected lora_A and lora_B for each module)",
                      spath, ta->name, bname);
    if (check_shapes(spath, ta, tb)) return -1;
    m->rank = (int)ta->shape[0];
    m->in = ta->shape[1];
    m->out = tb->shape[0];
    if (config_rank(c, a, spath, m)) return -1;
    if (!(m->A = read_values(spath, s, ta, m->rank * m->in))) return -1;
    if (!(m->B = read_values(spath, s, tb, m->out * m->rank))) return -1;
    return 0;
}

/* A tensor lora_B needs its lora_A (the converse is checked in load_module). */
static int check_has_a(const char *spath, const st_set *s, const char *name, size_t mlen) {
    char aname[4096];
    if ((size_t)snprintf(aname, sizeof aname, "%s%.*s%s", KEY_PREFIX, (int)mlen,
                         name + sizeof KEY_PREFIX - 1, KEY_SUFFIX[0]) >= sizeof aname)
        return xd_err("%s: tensor '%s': name too long", spath, name);
    if (!xd_st_find(s, aname))
        return xd_err("%s: tensor '%s' has no '%s' (expected lora_A and lora_B for each module)",
                      spath, name, aname);
    return 0;
}

static int load_modules(const char *spath, const st_set *s, const xd_peft_cfg *c,
                        xd_lora_adapter *a) {
    int n_a = 0;
    size_t mlen;
    for (int i = 0; i < s->n_tensors; i++) {
        int ab = parse_key(spath, s->tensors[i].name, &mlen);
        if (ab < 0 || (ab == 1 && check_has_a(spath, s, s->tensors[i].name, mlen))) return -1;
        n_a += ab == 0;
    }
    if (!n_a) return xd_err("%s: no LoRA tensors (expected base_model.model.<module>.lora_A.weight "
                            "and .lora_B.weight)", spath);
    if (!(a->modules = calloc((size_t)n_a, sizeof *a->modules))) return xd_err("out of memory");
    for (int i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (parse_key(spath, t->name, &mlen) != 0) continue;
        xd_lora_module *m = &a->modules[a->n_modules++];
        if (load_module(spath, s, t, c, a, m)) return -1;
    }
    qsort(a->modules, (size_t)a->n_modules, sizeof *a->modules, cmp_module);
    return 0;
}

/* ---- loading: files -------------------------------------------------------- */

static json_t *read_json(const char *path) {
    char *text;
    size_t len;
    if (xd_read_file(path, &text, &len)) return NULL;
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (!root) xd_err("%s: line %d, column %d: %s (expected JSON)", path, e.line, e.column, e.text);
    return root;
}

static st_set *open_tensors(const char *dir, const char *spath) {
    char bin[XD_APATH_MAX];
    if (!xd_is_file(spath) && !xd_path_join(bin, sizeof bin, dir, "adapter_model.bin") &&
        xd_is_file(bin)) {
        xd_err("%s: missing; %s is a pickle, which is not read (save the adapter with "
               "safe_serialization=True)", spath, bin);
        return NULL;
    }
    return xd_st_open(spath);
}

xd_lora_adapter *xd_lora_load(const char *dir) {
    char cpath[XD_APATH_MAX], spath[XD_APATH_MAX];
    if (!dir) { xd_err("xd_lora_load: no directory"); return NULL; }
    if (xd_path_join(cpath, sizeof cpath, dir, CONFIG_FILE) ||
        xd_path_join(spath, sizeof spath, dir, TENSOR_FILE))
        return NULL;
    xd_lora_adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->source = strdup(dir))) {
        free(a);
        xd_err("out of memory");
        return NULL;
    }
    json_t *root = read_json(cpath);
    xd_peft_cfg c;
    if (!root || xd_peft_cfg_parse(cpath, root, a, &c)) { /* c is freed on failure */
        json_decref(root);
        xd_lora_free(a);
        return NULL;
    }
    st_set *s = open_tensors(dir, spath);
    int rc = s ? load_modules(spath, s, &c, a) : -1;
    const char *h = s && !rc ? xd_st_meta(s, "xdistill_base_hash") : NULL;
    if (h) {
        char *end;
        unsigned long long v = strtoull(h, &end, 16);
        if (*h == 0 || *end || strlen(h) != 16)
            rc = xd_err("%s: __metadata__.xdistill_base_hash '%s': expected 16 hex digits", spath, h);
        a->base_hash = v;
    }
    xd_st_close(s);
    xd_peft_cfg_free(&c);
    json_decref(root);
    if (rc) {
        xd_lora_free(a);
        return NULL;
    }
    return a;
}

/* ---- saving ------------------------------------------------------------------ */

/* What the file could not express, or would express differently. */
static int check_module(const char *dir, const xd_lora_adapter *a, int i) {
    const xd_lora_module *m = &a->modules[i];
    if (!m->module || !*m->module) return xd_err("%s: module %d: no module path", dir, i);
    if (i && strcmp(a->modules[i - 1].module, m->module) >= 0)
        return xd_err("%s: module '%s': modules must be sorted by path and unique (after '%s')",
                      dir, m->module, a->modules[i - 1].module);
    if (m->rank < 1 || m->rank > XD_LORA_MAX_RANK || m->in < 1 || m->out < 1 || !m->A || !m->B)
        return xd_err("%s: module '%s': rank %d, %lld -> %lld features%s (expected rank in 1 .. "
                      "%d, positive sizes, A and B)", dir, m->module, m->rank, (long long)m->in,
                      (long long)m->out, m->A && m->B ? "" : ", no A or B", XD_LORA_MAX_RANK);
    if (!isfinite(m->alpha) || m->scaling != xd_lora_scaling(m->alpha, m->rank, a->use_rslora))
        return xd_err("%s: module '%s': scaling %g does not follow from alpha %g and rank %d "
                      "(expected %g%s)", dir, m->module, m->scaling, m->alpha, m->rank,
                      xd_lora_scaling(m->alpha, m->rank, a->use_rslora),
                      a->use_rslora ? ", alpha / sqrt(rank)" : ", alpha / rank");
    for (int ab = 0; ab < 2; ab++) {
        const float *x = ab ? m->B : m->A;
        for (int64_t k = 0, n = m->rank * (ab ? m->out : m->in); k < n; k++)
            if (!isfinite(x[k]))
                return xd_err("%s: module '%s': lora_%c element %lld is %g (expected finite "
                              "values)", dir, m->module, ab ? 'B' : 'A', (long long)k,
                              (double)x[k]);
    }
    return 0;
}

/* The written config, read back as xd_lora_load reads it, gives every module its
 * rank and alpha and targets it. */
static int check_readback(const xd_lora_adapter *a, const char *cpath, const char *text) {
    json_error_t e;
    json_t *root = json_loads(text, 0, &e);
    if (!root) return xd_err("%s: the written JSON does not parse: %s", cpath, e.text);
    xd_lora_adapter b = {0};
    xd_peft_cfg c;
    int rc = xd_peft_cfg_parse(cpath, root, &b, &c), parsed = !rc;
    for (int i = 0; !rc && i < a->n_modules; i++) {
        const xd_lora_module *m = &a->modules[i];
        const char *why = NULL, *rk, *ak;
        int rank, t = xd_peft_cfg_targets(&c, &b, m->module, &why);
        double alpha;
        if (t <= 0)
            rc = t < 0 ? -1 : xd_err("%s: module '%s': %s", cpath, m->module, why);
        else if (xd_peft_cfg_resolve(&c, &b, m->module, &rank, &alpha, &rk, &ak))
            rc = -1;
        else if (rank != m->rank || alpha != m->alpha)
            rc = xd_err("%s: module '%s': the written patterns give rank %d, alpha %g instead of "
                        "%d, %g (rank_pattern key '%s', alpha_pattern key '%s')", cpath,
                        m->module, rank, alpha, m->rank, m->alpha, rk ? rk : "-", ak ? ak : "-");
    }
    if (parsed) xd_peft_cfg_free(&c);
    clear(&b);
    json_decref(root);
    return rc;
}

static int write_tensors(const xd_lora_adapter *a, const char *path) {
    int n = 2 * a->n_modules, rc = -1;
    st_write_tensor *ts = calloc((size_t)n, sizeof *ts);
    char **names = calloc((size_t)n, sizeof *names);
    if (!ts || !names) { xd_err("%s: out of memory", path); goto done; }
    for (int i = 0; i < n; i++) {
        const xd_lora_module *m = &a->modules[i / 2];
        int b = i % 2;
        size_t len = sizeof KEY_PREFIX + strlen(m->module) + strlen(KEY_SUFFIX[b]);
        if (!(names[i] = malloc(len))) { xd_err("%s: out of memory", path); goto done; }
        snprintf(names[i], len, "%s%s%s", KEY_PREFIX, m->module, KEY_SUFFIX[b]);
        ts[i] = (st_write_tensor){names[i], ST_F32, 2, {b ? m->out : m->rank, b ? m->rank : m->in},
                                  b ? m->B : m->A};
    }
    char meta[96] = "{\"format\": \"pt\"}";
    if (a->base_hash) /* PEFT reads only "format"; the base's identity for xdistill */
        snprintf(meta, sizeof meta, "{\"format\": \"pt\", \"xdistill_base_hash\": \"%016llx\"}",
                 (unsigned long long)a->base_hash);
    rc = xd_st_write(path, ts, n, meta);
done:
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
    free(ts);
    return rc;
}

int xd_lora_save(const xd_lora_adapter *a, const char *dir) {
    if (!a || !dir) return xd_err("xd_lora_save: no adapter or directory");
    if (!a->n_modules) return xd_err("%s: the adapter has no modules", dir);
    for (int i = 0; i < a->n_modules; i++)
        if (check_module(dir, a, i)) return -1;
    char cpath[XD_APATH_MAX], path[XD_APATH_MAX];
    if (xd_path_join(cpath, sizeof cpath, dir, CONFIG_FILE)) return -1;
    char *text = xd_peft_cfg_text(a);
    if (!text || check_readback(a, cpath, text)) {
        free(text);
        return xd_err_prefix("saving LoRA adapter to %s", dir);
    }
    xd_adir d;
    int rc = xd_adir_begin(&d, dir);
    if (!rc) {
        rc = xd_path_join(path, sizeof path, d.tmp, CONFIG_FILE) ||
             xd_write_file_atomic(path, text, strlen(text)) ||
             xd_path_join(path, sizeof path, d.tmp, TENSOR_FILE) || write_tensors(a, path);
        if (rc) {
            xd_adir_abort(&d);
            xd_err_prefix("saving LoRA adapter to %s", dir);
        } else {
            rc = xd_adir_commit(&d);
        }
    }
    free(text);
    return rc ? -1 : 0;
}
