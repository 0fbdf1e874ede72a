/* Sparse diffs as modules (src/model/diff.h; issue 15, criterion 3) on tiny-llama:
 *  - a diff from a dense δ keeps exactly its non-zeros; save/load gives the same bits;
 *  - materialising {A, B} in either order, or A then B then removing A, gives weights
 *    bit-identical to θ₀ + Σ δ computed afresh (by hand here: θ₀, then A's values, then
 *    B's, names in order); removing every diff gives θ₀ bit for bit;
 *  - a diff for another base, a weight the model lacks, two diffs of one name, and damaged
 *    files (indices out of order or range, a missing .val, a wrong format) are refused
 *    with the file and the field named. */
#include <string.h>

#include "core/rng.h"
#include "io/atomic.h"
#include "io/safetensors.h"
#include "model/diff.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

static char dir[64];

/* A sparse δ: about `share` of the entries, seeded; overlap between two seeds is likely. */
static float *sparse_delta(const xd_model *m, uint64_t seed, double share) {
    float *d = calloc(m->arena_floats, sizeof(float));
    xd_rng g;
    xd_rng_seed(&g, seed);
    for (size_t i = 0; i < m->arena_floats; i++)
        if (xd_rng_uniform(&g) < share) d[i] = (float)(0.01 * xd_rng_normal(&g));
    return d;
}

static int same(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof(float)); }

static void corrupt_cases(const xd_diff *a) {
    char p[128];
    /* indices out of order: swap the first two of the first part */
    xd_diff_part *q = &a->parts[0];
    if (q->nnz >= 2) {
        int32_t t = q->idx[0];
        q->idx[0] = q->idx[1];
        q->idx[1] = t;
        snprintf(p, sizeof p, "%s/bad_order.diff", dir);
        CHECK(xd_diff_save(a, p) == 0, "save: %s", xd_last_error());
        CHECK(xd_diff_load(p) == NULL && strstr(xd_last_error(), "bad_order.diff") &&
                  strstr(xd_last_error(), "ascending"), "out of order: %s", xd_last_error());
        q->idx[1] = q->idx[0];
        q->idx[0] = t;
    }
    /* an index out of range */
    int32_t keep = q->idx[q->nnz - 1];
    q->idx[q->nnz - 1] = (int32_t)q->size;
    snprintf(p, sizeof p, "%s/bad_range.diff", dir);
    CHECK(xd_diff_save(a, p) == 0 && xd_diff_load(p) == NULL && strstr(xd_last_error(), ".idx"),
          "out of range: %s", xd_last_error());
    q->idx[q->nnz - 1] = keep;
    /* a file that is safetensors but not a diff */
    snprintf(p, sizeof p, "%s/plain.safetensors", dir);
    float x[2] = {1, 2};
    st_write_tensor t = {"x", ST_F32, 1, {2}, x};
    CHECK(xd_st_write(p, &t, 1, NULL) == 0 && xd_diff_load(p) == NULL &&
              strstr(xd_last_error(), "format"), "not a diff: %s", xd_last_error());
    /* an .idx without its .val */
    snprintf(p, sizeof p, "%s/no_val.diff", dir);
    int32_t ix[1] = {0};
    st_write_tensor u = {"model.norm.weight.idx", ST_I32, 1, {1}, ix};
    CHECK(xd_st_write(p, &u, 1, "{\"format\":\"xdistill-diff\",\"name\":\"x\",\"base_hash\":"
                                "\"0000000000000001\",\"sizes\":\"{\\\"model.norm.weight\\\":48}\"}") == 0,
          "write: %s", xd_last_error());
    CHECK(xd_diff_load(p) == NULL && strstr(xd_last_error(), ".val"), "no .val: %s",
          xd_last_error());
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/xd_diff_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama");
    CHECK(m != NULL, "model: %s", xd_last_error());
    if (!m) return test_summary("test_diff");
    size_t nf = m->arena_floats;
    float *theta0 = malloc(nf * sizeof(float));
    memcpy(theta0, m->arena, nf * sizeof(float));
    uint64_t h0 = xd_model_teacher_hash(m);
    float *da = sparse_delta(m, 1, 0.05), *db = sparse_delta(m, 2, 0.05);
    xd_diff *a = xd_diff_from_dense(m, "task", da), *b = xd_diff_from_dense(m, "gender", db);
    CHECK(a && b, "from dense: %s", xd_last_error());
    if (!a || !b) return test_summary("test_diff");
    int64_t want_a = 0;
    for (size_t i = 0; i < nf; i++) want_a += da[i] != 0;
    printf("diff 'task': %lld non-zeros of %zu (%.2f%%), %lld bytes against %zu dense\n",
           (long long)xd_diff_nnz(a), nf, 100.0 * xd_diff_nnz(a) / nf, (long long)xd_diff_bytes(a),
           nf * sizeof(float));
    CHECK(xd_diff_nnz(a) == want_a && a->base_hash == h0, "non-zeros %lld vs %lld",
          (long long)xd_diff_nnz(a), (long long)want_a);
    /* save and load: the same parts */
    char pa[128], pb[128];
    snprintf(pa, sizeof pa, "%s/task.diff", dir);
    snprintf(pb, sizeof pb, "%s/gender.diff", dir);
    CHECK(xd_diff_save(a, pa) == 0 && xd_diff_save(b, pb) == 0, "save: %s", xd_last_error());
    xd_diff *la = xd_diff_load(pa), *lb = xd_diff_load(pb);
    CHECK(la && lb, "load: %s", xd_last_error());
    int rt = la && la->n_parts == a->n_parts && la->base_hash == a->base_hash &&
             !strcmp(la->name, "task");
    for (int i = 0; rt && i < a->n_parts; i++) {
        const xd_diff_part *x = &a->parts[i];
        const xd_diff_part *y = NULL;
        for (int j = 0; j < la->n_parts; j++)
            if (!strcmp(la->parts[j].name, x->name)) y = &la->parts[j];
        rt = y && y->nnz == x->nnz && y->size == x->size &&
             !memcmp(y->idx, x->idx, (size_t)x->nnz * 4) && !memcmp(y->val, x->val, (size_t)x->nnz * 4);
    }
    CHECK(rt, "save/load round trip");
    /* the reference: θ₀ + δ_gender + δ_task in name order ("gender" < "task"), by hand */
    float *ref = malloc(nf * sizeof(float)), *ab = malloc(nf * sizeof(float));
    for (size_t i = 0; i < nf; i++) ref[i] = theta0[i], ref[i] += db[i], ref[i] += da[i];
    const xd_diff *s1[2] = {la, lb}, *s2[2] = {lb, la}, *s3[1] = {lb};
    CHECK(xd_diff_materialize(m, theta0, h0, s1, 2) == 0, "apply: %s", xd_last_error());
    memcpy(ab, m->arena, nf * sizeof(float));
    CHECK(same(ab, ref, nf), "{task, gender} differs from θ₀ + Σ δ computed by hand");
    CHECK(xd_diff_materialize(m, theta0, h0, s2, 2) == 0 && same(m->arena, ab, nf),
          "{gender, task} differs from {task, gender}");
    /* remove task: only gender, from θ₀ */
    for (size_t i = 0; i < nf; i++) ref[i] = theta0[i] + db[i];
    CHECK(xd_diff_materialize(m, theta0, h0, s3, 1) == 0 && same(m->arena, ref, nf),
          "removing 'task' does not give θ₀ + δ_gender");
    CHECK(xd_diff_materialize(m, theta0, h0, NULL, 0) == 0 && same(m->arena, theta0, nf),
          "removing every diff does not give θ₀ bit for bit");
    int overlap = 0;
    for (size_t i = 0; i < nf; i++) overlap += da[i] != 0 && db[i] != 0;
    printf("apply/remove in any order: bit-identical to θ₀ + Σ δ (%d entries in both diffs); "
           "none left: θ₀ exactly\n", overlap);
    CHECK(overlap > 0, "the two diffs should share entries for the order to matter");
    /* refusals, m untouched by each */
    xd_diff *other = xd_diff_load(pa);
    other->base_hash ^= 1;
    const xd_diff *s4[1] = {other}, *s5[2] = {la, la};
    CHECK(xd_diff_materialize(m, theta0, h0, s4, 1) < 0 && strstr(xd_last_error(), "another base"),
          "another base: %s", xd_last_error());
    CHECK(xd_diff_materialize(m, theta0, h0, s5, 2) < 0 && strstr(xd_last_error(), "two diffs"),
          "duplicate: %s", xd_last_error());
    other->base_hash ^= 1;
    snprintf(other->parts[0].name, sizeof other->parts[0].name, "model.layers.9.mlp.up_proj.weight");
    CHECK(xd_diff_materialize(m, theta0, h0, s4, 1) < 0 && strstr(xd_last_error(), "layers.9"),
          "unknown weight: %s", xd_last_error());
    CHECK(same(m->arena, theta0, nf), "a refused set changed the model");
    corrupt_cases(a);
    xd_diff_free(other);
    xd_diff_free(a), xd_diff_free(b), xd_diff_free(la), xd_diff_free(lb);
    free(da), free(db), free(ref), free(ab), free(theta0);
    xd_model_free(m);
    if (t_fail == 0) xd_rmtree(dir);
    return test_summary("test_diff");
}
