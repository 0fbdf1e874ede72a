/* Stage III: weighted merge of K experts, one tensor at a time (merge.h). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "merge.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/file.h"
#include "core/hash.h"
#include "io/atomic.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "model/model.h"

typedef unsigned long long ull;

/* First field in which b differs from a (the reference), as an error. Keep
 * in step with xd_config: a difference no named field explains is still
 * refused (memcmp of the zero-initialised structs). */
static int compare_configs(const xd_config *a, const char *pa, const xd_config *b, const char *pb) {
#define CI(f)                                                                                      \
    if (a->f != b->f)                                                                              \
        return xd_err("merge: %s and %s differ in config field " #f ": %lld vs %lld (experts must "  \
                      "share architecture and shapes)", pa, pb, (long long)a->f, (long long)b->f);
#define CF(f)                                                                                      \
    if (memcmp(&a->f, &b->f, sizeof a->f))                                                         \
        return xd_err("merge: %s and %s differ in config field " #f ": %.9g vs %.9g (experts must "  \
                      "share architecture and shapes)", pa, pb, (double)a->f, (double)b->f);
    if (a->arch != b->arch)
        return xd_err("merge: %s and %s differ in architecture: %s vs %s", pa, pb, xd_arch_name(a->arch),
                      xd_arch_name(b->arch));
    CI(student) CI(n_layer) CI(d_model) CI(n_head) CI(n_kv_head) CI(head_dim) CI(d_ff) CI(vocab_size)
    CI(max_ctx) CF(rope_theta) CF(norm_eps) CI(tied_embeddings) CI(qkv_bias) CI(qk_norm)
    CI(post_norms) CF(rope_scale_factor) CF(rope_low_freq_factor) CF(rope_high_freq_factor)
    CI(rope_orig_ctx) CI(window) CI(sinks) CI(chunk) CF(mlstm_scale) CF(mlstm_eps) CF(gate_softcap)
#undef CI
#undef CF
    if (a->teacher_hash != b->teacher_hash)
        return xd_err("merge: %s and %s were converted from different teachers: teacher_hash "
                      "0x%016llx vs 0x%016llx", pa, pb, (ull)a->teacher_hash, (ull)b->teacher_hash);
    /* global heads (docs/design.md, "Global heads"): the same list, or the experts' mixers
     * compute different functions; the merge keeps it (config.json of the first expert) */
    for (int i = 0; i < XD_MAX_GLOBAL_HEADS; i++) {
        int ina = i < a->n_global_heads, inb = i < b->n_global_heads;
        if (!ina && !inb) break;
        const xd_head_ref *ha = &a->global_heads[i], *hb = &b->global_heads[i];
        if (ina != inb || ha->layer != hb->layer || ha->head != hb->head) {
            char sa[32] = "none", sb[32] = "none";
            if (ina) snprintf(sa, sizeof sa, "[%d, %d]", ha->layer, ha->head);
            if (inb) snprintf(sb, sizeof sb, "[%d, %d]", hb->layer, hb->head);
            return xd_err("merge: %s and %s differ in config field global_heads (%d vs %d heads; "
                          "entry %d: %s vs %s): experts must share their global heads", pa, pb,
                          a->n_global_heads, b->n_global_heads, i, sa, sb);
        }
    }
    xd_config x = *a, y = *b;
    x.base_hash = y.base_hash = 0;
    if (memcmp(&x, &y, sizeof x))
        return xd_err("merge: the configs of %s and %s differ", pa, pb);
    return 0;
}

/* Drops the pages of a tensor's bytes from the process (they are re-read
 * from the file if touched again), so K mapped inputs never stay resident. */
static void drop_pages(const st_tensor *t) {
    if (!t->nbytes) return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data & ~(pg - 1);
    uintptr_t e = ((uintptr_t)t->data + t->nbytes + pg - 1) & ~(pg - 1);
    madvise((void *)b, e - b, MADV_DONTNEED);
}

/* Copies dir/name to tmp/name (atomically) when it exists. */
static int copy_if_present(const char *dir, const char *tmp, const char *name) {
    char src[XD_APATH_MAX], dst[XD_APATH_MAX];
    if (xd_path_join(src, sizeof src, dir, name) || xd_path_join(dst, sizeof dst, tmp, name)) return -1;
    FILE *f = fopen(src, "rb");
    if (!f) return errno == ENOENT ? 0 : xd_err("%s: %s", src, strerror(errno));
    xd_afile a;
    if (xd_afile_open(&a, dst)) {
        fclose(f);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (xd_afile_write(&a, buf, n)) {
            fclose(f);
            return -1;
        }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        xd_afile_abort(&a);
        return xd_err("%s: read error", src);
    }
    return xd_afile_commit(&a);
}

static int write_json(json_t *j, const char *path) {
    char *text = j ? xd_hf_json_pretty(j) : NULL;
    int rc = text ? xd_write_file_atomic(path, text, strlen(text)) : xd_err("%s: out of memory", path);
    free(text);
    return rc;
}

/* λ from the weights (see merge.h). */
static int lambdas(const char *const *in, const double *w, int k, const xd_merge_opts *o, float *lam, double *given) {
    double sum = 0;
    for (int i = 0; i < k; i++) {
        given[i] = w ? w[i] : 1.0 / k;
        if (!isfinite(given[i]) || given[i] < 0)
            return xd_err("merge: %s: weight %g: weights must be finite and >= 0", in[i], given[i]);
        sum += given[i];
    }
    if (!(sum > 0)) return xd_err("merge: the weights sum to 0");
    if (fabs(sum - 1) > 1e-6 && !o->normalize)
        return xd_err("merge: the weights sum to %.9g, not 1; pass --normalize to divide them by "
                      "their sum", sum);
    for (int i = 0; i < k; i++) lam[i] = (float)(o->normalize ? given[i] / sum : given[i]);
    return 0;
}

/* xd_merge, or with out_dir == NULL (xd_merge_check) the same checks and the
 * inputs' weights hashes (hashes_out) without writing anything. */
static int merge_run(const char *const *in, const double *weights, int k, const xd_merge_opts *opts,
                     const char *out_dir, uint64_t *hashes_out) {
    xd_merge_opts o0;
    memset(&o0, 0, sizeof o0);
    const xd_merge_opts *o = opts ? opts : &o0;
    const int dry = !out_dir;
    if (k < 1 || !in) return xd_err("merge: no inputs");
    xd_config *cfg = calloc((size_t)k, sizeof *cfg);
    st_set **st = calloc((size_t)k, sizeof *st);
    float *lam = calloc((size_t)k, sizeof *lam), *acc = NULL, *buf = NULL;
    double *given = calloc((size_t)k, sizeof *given);
    uint64_t *hin = calloc((size_t)k, sizeof *hin), hout = 0;
    xd_model m0;
    memset(&m0, 0, sizeof m0);
    xd_weight *ws = NULL;
    st_write_tensor *ts = NULL;
    int *order = NULL;
    json_t *cj = NULL, *mj = NULL;
    xd_adir dir;
    st_stream ss;
    int nw = 0, rc = -1, dir_open = 0, stream_open = 0;
    memset(&ss, 0, sizeof ss);
    char path[XD_APATH_MAX];
    if (!cfg || !st || !lam || !given || !hin) { xd_err("out of memory"); goto done; }
    if (lambdas(in, weights, k, o, lam, given)) goto done;

    /* configs: every field agrees; base_hash names one Stage I checkpoint */
    for (int i = 0; i < k; i++) {
        if (!xd_is_dir(in[i])) {
            xd_err("merge: %s: %s", in[i],
                   access(in[i], F_OK) ? "no such directory"
                                       : "not a model directory (merge reads HF directories: "
                                         "config.json + model.safetensors)");
            goto done;
        }
        if (xd_path_join(path, sizeof path, in[i], "config.json") || xd_hf_config_load(path, &cfg[i]) ||
            xd_config_validate(&cfg[i], path))
            goto done;
        if (i && compare_configs(&cfg[0], in[0], &cfg[i], in[i])) goto done;
    }
    int same_base = 1;
    for (int i = 0; i < k; i++) {
        if (!cfg[i].base_hash && !o->allow_unrelated) {
            xd_err("merge: %s has no base_hash (it was not trained by `distill stage2`), so its Stage I "
                   "checkpoint is unknown; pass --allow-unrelated to merge anyway", in[i]);
            goto done;
        }
        if (cfg[i].base_hash != cfg[0].base_hash) {
            same_base = 0;
            if (!o->allow_unrelated) {
                xd_err("merge: %s has base_hash 0x%016llx but %s has 0x%016llx: the experts were "
                       "trained from different Stage I checkpoints; pass --allow-unrelated to merge "
                       "anyway", in[0], (ull)cfg[0].base_hash, in[i], (ull)cfg[i].base_hash);
                goto done;
            }
        }
    }

    /* the weight list from the config; the arena is only reserved (never
     * touched), for the element offsets xd_model_weights reports */
    m0.cfg = cfg[0];
    snprintf(m0.path, sizeof m0.path, "%s", in[0]);
    if (xd_model_alloc(&m0) || xd_model_weights(&m0, &ws, &nw)) goto done;
    if (!(ts = calloc((size_t)nw, sizeof *ts))) { xd_err("out of memory"); goto done; }
    size_t maxel = 1;
    for (int j = 0; j < nw; j++) {
        ts[j].name = ws[j].hf;
        ts[j].dtype = ST_F32;
        ts[j].n_dims = ws[j].ndim;
        if (ws[j].ndim == 1) ts[j].shape[0] = ws[j].cols;
        else ts[j].shape[0] = ws[j].rows, ts[j].shape[1] = ws[j].cols;
        size_t el = (size_t)(ws[j].rows * ws[j].cols);
        if (el > maxel) maxel = el;
    }
    for (int i = 0; i < k; i++) {
        if (!(st[i] = xd_st_open_dir(in[i]))) goto done;
        if (st[i]->n_tensors != nw) {
            xd_err("merge: %s holds %d tensors, but its config implies %d", in[i], st[i]->n_tensors, nw);
            goto done;
        }
        for (int j = 0; j < nw; j++) {
            const st_tensor *t = xd_st_find(st[i], ws[j].hf);
            int ok = t && t->n_dims == ts[j].n_dims;
            for (int d = 0; ok && d < t->n_dims; d++) ok = t->shape[d] == ts[j].shape[d];
            if (!ok) {
                char shape[64];
                if (ts[j].n_dims == 1) snprintf(shape, sizeof shape, "[%lld]", (long long)ts[j].shape[0]);
                else snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)ts[j].shape[0],
                              (long long)ts[j].shape[1]);
                xd_err("merge: %s: tensor %s is %s (its config implies shape %s)", in[i], ws[j].hf,
                       t ? "of another shape" : "missing", shape);
                goto done;
            }
        }
    }
    free(m0.arena); /* only the names and shapes were needed */
    m0.arena = NULL;

    if (!(acc = malloc(maxel * sizeof *acc)) || (k > 1 && !(buf = malloc(maxel * sizeof *buf)))) {
        xd_err("merge: out of memory for two buffers of %zu floats", maxel);
        goto done;
    }
    if (dry) { /* the order st_stream would write the tensors in */
        if (!(order = malloc((size_t)nw * sizeof *order))) { xd_err("out of memory"); goto done; }
        xd_st_stream_order(ts, nw, order);
    } else {
        if (xd_adir_begin(&dir, out_dir)) goto done;
        dir_open = 1;
        if (xd_path_join(path, sizeof path, dir.tmp, "model.safetensors") ||
            xd_st_stream_begin(&ss, path, ts, nw, "{\"format\": \"pt\"}"))
            goto done;
        stream_open = 1;
    }
    for (int q = 0, j; (j = dry ? (q < nw ? order[q] : -1) : xd_st_stream_next(&ss)) >= 0; q++) {
        size_t el = (size_t)(ws[j].rows * ws[j].cols);
        for (int i = 0; i < k; i++) {
            const st_tensor *t = xd_st_find(st[i], ws[j].hf);
            float *dst = i ? buf : acc;
            if (xd_st_to_f32(st[i], t, dst)) goto done;
            drop_pages(t);
            hin[i] = xd_hash64(dst, el * sizeof(float), hin[i]);
            if (dry) continue;
            const float l = lam[i];
            if (!i)
                for (size_t e = 0; e < el; e++) acc[e] = l * acc[e];
            else
                for (size_t e = 0; e < el; e++) acc[e] = acc[e] + l * buf[e];
        }
        if (dry) continue;
        hout = xd_hash64(acc, el * sizeof(float), hout);
        if (xd_st_stream_put(&ss, acc)) { stream_open = 0; goto done; }
    }
    if (dry) {
        memcpy(hashes_out, hin, (size_t)k * sizeof *hin);
        rc = 0;
        goto done;
    }
    stream_open = 0;
    if (xd_st_stream_end(&ss)) goto done;

    /* config.json of the first expert; tokenizer files copied */
    json_error_t je;
    if (xd_path_join(path, sizeof path, in[0], "config.json")) goto done;
    if (!(cj = json_load_file(path, 0, &je))) { xd_err("%s: %s", path, je.text); goto done; }
    if (!same_base) json_object_del(cj, "base_hash");
    if (xd_path_join(path, sizeof path, dir.tmp, "config.json") || write_json(cj, path)) goto done;
    if (copy_if_present(in[0], dir.tmp, "tokenizer.json") ||
        copy_if_present(in[0], dir.tmp, "tokenizer_config.json"))
        goto done;
    if (o->extra_name && o->extra_text &&
        (xd_path_join(path, sizeof path, dir.tmp, o->extra_name) ||
         xd_write_file_atomic(path, o->extra_text, strlen(o->extra_text))))
        goto done;

    mj = json_object();
    json_t *arr = json_array();
    json_object_set_new(mj, "inputs", arr);
    for (int i = 0; i < k; i++)
        json_array_append_new(arr, json_pack("{s:s, s:f, s:f, s:o, s:o, s:o}", "path", in[i],
                                             "weight", given[i], "lambda", (double)lam[i],
                                             "base_hash", xd_json_hex64(cfg[i].base_hash), "teacher_hash",
                                             xd_json_hex64(cfg[i].teacher_hash), "weights_hash", xd_json_hex64(hin[i])));
    json_object_set_new(mj, "normalized", json_boolean(o->normalize));
    json_object_set_new(mj, "allow_unrelated", json_boolean(o->allow_unrelated));
    json_object_set_new(mj, "base_hash", xd_json_hex64(same_base ? cfg[0].base_hash : 0));
    json_object_set_new(mj, "weights_hash", xd_json_hex64(hout));
    json_object_set_new(mj, "arithmetic",
                        json_string("fp32 per element, no FMA: acc = lambda_1*t_1; acc = acc + "
                                    "lambda_i*t_i for i = 2..K in input order"));
    json_object_set_new(mj, "weights_hash_definition",
                        json_string("h = 0; per tensor in name order h = hash(fp32 bytes, seed h)"));
    if (xd_path_join(path, sizeof path, dir.tmp, "merge.json") || write_json(mj, path)) goto done;
    dir_open = 0;
    if (xd_adir_commit(&dir)) goto done;
    if (o->verbose)
        xd_log(XD_LOG_INFO, "merge: %d experts, %d tensors -> %s (weights_hash 0x%016llx)", k, nw,
                out_dir, (ull)hout);
    rc = 0;
done:
    if (stream_open) xd_st_stream_abort(&ss);
    if (dir_open) {
        xd_adir_abort(&dir);
        xd_err_prefix("merging into %s", out_dir);
    }
    for (int i = 0; st && i < k; i++) xd_st_close(st[i]);
    json_decref(cj);
    json_decref(mj);
    free(m0.arena);
    free(m0.layers);
    free(ws);
    free(ts);
    free(order);
    free(acc);
    free(buf);
    free(cfg);
    free(st);
    free(lam);
    free(given);
    free(hin);
    return rc;
}

int xd_merge(const char *const *in, const double *weights, int k, const xd_merge_opts *o,
             const char *out_dir) {
    if (!out_dir) return xd_err("merge: no output directory");
    return merge_run(in, weights, k, o, out_dir, NULL);
}

int xd_merge_check(const char *const *in, int k, const xd_merge_opts *o, uint64_t *hashes) {
    if (!hashes) return xd_err("merge: no place for the hashes");
    return merge_run(in, NULL, k, o, NULL, hashes);
}
