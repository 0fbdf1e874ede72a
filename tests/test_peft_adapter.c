/* LoRA adapters in PEFT's format (src/io/peft_adapter.h), against adapters that
 * HuggingFace PEFT itself wrote on tests/fixtures/tiny-llama
 * (tests/ref/make_peft_fixture.py: tests/fixtures/peft/{lora,rslora,dora} and
 * expected.json, which holds PEFT's own per-module r, alpha and scaling as its
 * LoraModel computed them, and the first values of A and B as torch read them).
 *
 * Tolerance: none; every comparison is exact. rank and alpha are integers or
 * short decimals copied from the JSON; scaling is one IEEE division (alpha / r)
 * or a division by a correctly rounded sqrt (rsLoRA), the same operations in
 * double that Python performs, so it must match PEFT's float bit for bit. A and B
 * are F32 (lora/) or BF16 (rslora/) in the files, both exactly representable in
 * fp32, and a round trip writes F32, so values must come back bit-identical.
 *
 * Also: round trips (load, save, load: identical; two saves of the same adapter:
 * identical bytes; the saved rank_pattern / alpha_pattern), adapters built in
 * memory, xd_lora_check_module, and damaged or unsupported adapters, each refused
 * with an error naming the file and the field or tensor.
 *
 * With XD_PEFT_OUT=DIR set, the round-trip copies of lora/ and rslora/ are also
 * written to DIR/lora and DIR/rslora, and once more as EVA writes adapters
 * (target_modules the modules' full paths, init_lora_weights "eva", an
 * eva_config) to DIR/lora-eva and DIR/rslora-eva, for
 *   tests/ref/make_peft_fixture.py --check DIR/lora tests/fixtures/peft/lora
 * (and the same for the other three), which loads them with PEFT (the C test
 * cannot run Python). */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "fixture_util.h"
#include "io/atomic.h"
#include "io/peft_adapter.h"
#include "io/safetensors.h"
#include "test.h"

#define LORA FIXTURE("peft/lora")
#define RSLORA FIXTURE("peft/rslora")
#define DORA FIXTURE("peft/dora")

static char tmp_root[256];

/* ---- files ----------------------------------------------------------------- */

static const char *path_in(const char *dir, const char *file) {
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8], t[1024]; /* dir may be an earlier result */
    snprintf(t, sizeof t, "%s/%s", dir, file);
    memcpy(p, t, sizeof t);
    return p;
}

/* A fresh directory under the temp root (name made unique by a counter). */
static const char *new_dir(const char *name) {
    static char buf[8][512];
    static int k, serial;
    char *d = buf[k++ % 8];
    snprintf(d, 512, "%s/%s-%d", tmp_root, name, serial++);
    if (mkdir(d, 0700)) { perror(d); exit(2); }
    return d;
}

static void copy_file(const char *from, const char *to, long cut) {
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    if (!f || !g) { perror(from); exit(2); }
    char b[65536];
    size_t n = fread(b, 1, sizeof b, f);
    if (n == sizeof b) { fprintf(stderr, "%s: fixture too large\n", from); exit(2); }
    if (cut > 0) n = (size_t)cut < n ? (size_t)cut : n;
    if (fwrite(b, 1, n, g) != n) { perror(to); exit(2); }
    fclose(f);
    fclose(g);
}

/* A copy of a fixture adapter in a fresh directory. */
static const char *copy_adapter(const char *fixture) {
    const char *d = new_dir("copy");
    copy_file(path_in(fixture, "adapter_config.json"), path_in(d, "adapter_config.json"), 0);
    copy_file(path_in(fixture, "adapter_model.safetensors"),
              path_in(d, "adapter_model.safetensors"), 0);
    return d;
}

/* A copy with adapter_config.json's KEY set to the JSON text VALUE (NULL: removed). */
static const char *with_field(const char *fixture, const char *key, const char *value) {
    const char *d = copy_adapter(fixture);
    const char *p = path_in(d, "adapter_config.json");
    json_error_t e;
    json_t *root = json_load_file(p, 0, &e);
    json_t *v = value ? json_loads(value, JSON_DECODE_ANY, &e) : NULL;
    if (!root || (value && !v)) { fprintf(stderr, "%s / %s: %s\n", p, value, e.text); exit(2); }
    if (v) json_object_set_new(root, key, v);
    else json_object_del(root, key);
    if (json_dump_file(root, p, JSON_INDENT(2))) { perror(p); exit(2); }
    json_decref(root);
    return d;
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(s, f) < 0) { perror(path); exit(2); }
    fclose(f);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* ---- expectations ---------------------------------------------------------- */

/* Loading dir fails with a message naming dir/file and containing each of the
 * (up to two) further strings. */
static void expect_fail(const char *dir, const char *file, const char *field, const char *more) {
    xd_lora_adapter *a = xd_lora_load(dir);
    const char *msg = xd_last_error();
    CHECK(!a, "%s: loaded, expected an error about %s", dir, field);
    xd_lora_free(a);
    if (a) return;
    CHECK(strstr(msg, path_in(dir, file)) != NULL, "error does not name %s/%s: %s", dir, file, msg);
    CHECK(strstr(msg, field) != NULL, "error does not name '%s': %s", field, msg);
    if (more) CHECK(strstr(msg, more) != NULL, "error does not say '%s': %s", more, msg);
}

static int same_floats(const float *x, const float *y, int64_t n) {
    return x && y && !memcmp(x, y, (size_t)n * sizeof *x);
}

static int same_names(const xd_lora_names *a, const xd_lora_names *b) {
    if (a->n != b->n || !a->regex != !b->regex || (a->regex && strcmp(a->regex, b->regex)))
        return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], b->names[i])) return 0;
    return 1;
}

/* Everything but `source`. */
static int same_adapter(const xd_lora_adapter *a, const xd_lora_adapter *b) {
    if (!a->base_model != !b->base_model || (a->base_model && strcmp(a->base_model, b->base_model)))
        return 0;
    if (a->r != b->r || a->lora_alpha != b->lora_alpha || a->use_rslora != b->use_rslora ||
        a->lora_dropout != b->lora_dropout || strcmp(a->init_lora_weights, b->init_lora_weights) ||
        !same_names(&a->target_modules, &b->target_modules) ||
        !same_names(&a->exclude_modules, &b->exclude_modules) || a->has_eva != b->has_eva ||
        (a->has_eva && memcmp(&a->eva, &b->eva, sizeof a->eva)) || a->n_modules != b->n_modules)
        return 0;
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *x = &a->modules[i], *y = &b->modules[i];
        if (strcmp(x->module, y->module) || x->rank != y->rank || x->in != y->in ||
            x->out != y->out || x->alpha != y->alpha || x->scaling != y->scaling ||
            !same_floats(x->A, y->A, x->rank * x->in) || !same_floats(x->B, y->B, x->out * x->rank))
            return 0;
    }
    return 1;
}

/* ---- against PEFT ------------------------------------------------------------ */

static json_t *expected, *xd_expected;

/* Every module: PEFT's r, alpha, scaling, sizes and first values (from ref, the
 * script's record of what PEFT made of the adapter); A and B equal to the file's
 * tensors. */
static void check_modules_in(const json_t *ref, const char *name, const char *dir,
                             const xd_lora_adapter *a) {
    const json_t *mods = json_object_get(json_object_get(json_object_get(ref, "adapters"),
                                                         name), "modules");
    CHECK(json_is_object(mods), "expected.json has no modules for %s", name);
    CHECK(a->n_modules == (int)json_object_size(mods), "%s: %d modules, PEFT has %zu", name,
          a->n_modules, json_object_size(mods));
    st_set *s = xd_st_open(path_in(dir, "adapter_model.safetensors"));
    CHECK(s != NULL, "%s", xd_last_error());
    const char *key;
    const json_t *e;
    json_object_foreach((json_t *)mods, key, e) {
        const xd_lora_module *m = xd_lora_find(a, key);
        CHECK(m != NULL, "%s: module %s missing", name, key);
        if (!m || !s) continue;
        CHECK(m->rank == json_integer_value(json_object_get(e, "r")), "%s: rank %d", key, m->rank);
        CHECK(m->alpha == json_number_value(json_object_get(e, "alpha")),
              "%s: alpha %.17g vs %.17g", key, m->alpha,
              json_number_value(json_object_get(e, "alpha")));
        CHECK(m->scaling == json_number_value(json_object_get(e, "scaling")),
              "%s: scaling %.17g vs PEFT %.17g", key, m->scaling,
              json_number_value(json_object_get(e, "scaling")));
        CHECK(m->in == json_integer_value(json_object_get(e, "in")) &&
              m->out == json_integer_value(json_object_get(e, "out")), "%s: %lld -> %lld", key,
              (long long)m->in, (long long)m->out);
        const json_t *a0 = json_object_get(e, "A_first"), *b0 = json_object_get(e, "B_first");
        for (int k = 0; k < 4; k++) {
            CHECK(m->A[k] == (float)json_number_value(json_array_get(a0, k)), "%s: A[%d] = %.9g",
                  key, k, (double)m->A[k]);
            CHECK(m->B[k] == (float)json_number_value(json_array_get(b0, k)), "%s: B[%d] = %.9g",
                  key, k, (double)m->B[k]);
        }
        char tn[512];
        snprintf(tn, sizeof tn, "base_model.model.%s.lora_A.weight", key);
        float *A = test_st_floats(s, tn, m->rank * m->in);
        snprintf(tn, sizeof tn, "base_model.model.%s.lora_B.weight", key);
        float *B = test_st_floats(s, tn, m->out * m->rank);
        CHECK(same_floats(m->A, A, m->rank * m->in), "%s: A differs from the file", key);
        CHECK(same_floats(m->B, B, m->out * m->rank), "%s: B differs from the file", key);
        free(A);
        free(B);
    }
    xd_st_close(s);
}

static void check_modules(const char *name, const char *dir, const xd_lora_adapter *a) {
    check_modules_in(expected, name, dir, a);
}

/* Adapters written by xdistill (`xdistill lora`, by tests/ref/make_peft_fixture.py --xd)
 * that PEFT loaded there with no missing or unexpected keys: every module reads back with
 * PEFT's rank, alpha and scaling, and saving it again writes the same two files byte for
 * byte. A change to the writer fails here until the script (and PEFT) has seen the new
 * files. Their logits against PEFT's are in tests/test_lora.c. */
static void test_xd_written(void) {
    const char *names[] = {"xd_eva", "xd_pissa", "xd_rslora"};
    for (int k = 0; k < 3; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", FIXTURE("peft/"));
        strncat(dir, names[k], sizeof dir - strlen(dir) - 1);
        xd_lora_adapter *a = xd_lora_load(dir);
        CHECK(a != NULL, "%s: %s", names[k], xd_last_error());
        if (!a) continue;
        check_modules_in(xd_expected, names[k], dir, a);
        const json_t *iv = json_object_get(
            json_object_get(json_object_get(xd_expected, "adapters"), names[k]), "init_lora_weights");
        const char *init = json_is_true(iv) ? "true" : json_is_false(iv) ? "false"
                                                                         : json_string_value(iv);
        CHECK(init && a->init_lora_weights && !strcmp(init, a->init_lora_weights),
              "%s: init_lora_weights %s, PEFT read %s", names[k],
              a->init_lora_weights ? a->init_lora_weights : "(none)", init ? init : "(none)");
        const char *out = path_in(new_dir(names[k]), "out");
        CHECK(!xd_lora_save(a, out), "save %s: %s", out, xd_last_error());
        int same_cfg = test_same_file(path_in(out, "adapter_config.json"),
                                      path_in(dir, "adapter_config.json"));
        int same_st = test_same_file(path_in(out, "adapter_model.safetensors"),
                                     path_in(dir, "adapter_model.safetensors"));
        CHECK(same_cfg && same_st, "%s: saving it again changes %s%s (regenerate the fixture "
              "with tests/ref/make_peft_fixture.py --xd, which checks that PEFT loads it)",
              names[k], same_cfg ? "" : "adapter_config.json ",
              same_st ? "" : "adapter_model.safetensors");
        printf("%-9s written by xdistill: %d modules read back with PEFT's r, alpha and scaling; "
               "rewritten byte for byte\n", names[k], a->n_modules);
        xd_lora_free(a);
    }
}

static int has_name(const xd_lora_names *s, const char *n) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], n)) return 1;
    return 0;
}

static void test_lora_fixture(void) {
    xd_lora_adapter *a = xd_lora_load(LORA);
    CHECK(a != NULL, "%s", xd_last_error());
    if (!a) return;
    CHECK(a->r == 4 && a->lora_alpha == 8 && !a->use_rslora && a->lora_dropout == 0,
          "r %d alpha %g rslora %d", a->r, a->lora_alpha, a->use_rslora);
    CHECK(!strcmp(a->init_lora_weights, "false"), "init %s", a->init_lora_weights);
    CHECK(a->base_model && !strcmp(a->base_model, "tests/fixtures/tiny-llama"), "base %s",
          a->base_model ? a->base_model : "(null)");
    CHECK(!a->has_eva && !a->exclude_modules.n && !a->target_modules.regex, "eva / exclude");
    static const char *const targets[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};
    CHECK(a->target_modules.n == 7, "%d target modules", a->target_modules.n);
    for (int i = 0; i < 7; i++)
        CHECK(has_name(&a->target_modules, targets[i]), "target_modules lacks %s", targets[i]);
    for (int i = 1; i < a->n_modules; i++)
        CHECK(strcmp(a->modules[i - 1].module, a->modules[i].module) < 0, "modules not sorted");
    check_modules("lora", LORA, a);
    /* the patterns' cases: first match wins, a float alpha, a key with a layer index */
    const xd_lora_module *q0 = xd_lora_find(a, "model.layers.0.self_attn.q_proj"),
                         *q1 = xd_lora_find(a, "model.layers.1.self_attn.q_proj"),
                         *d1 = xd_lora_find(a, "model.layers.1.mlp.down_proj"),
                         *u0 = xd_lora_find(a, "model.layers.0.mlp.up_proj");
    CHECK(q0 && q0->rank == 2 && q1 && q1->rank == 3 && d1 && d1->rank == 6, "pattern ranks");
    CHECK(u0 && u0->alpha == 3.5 && u0->scaling == 0.875, "alpha_pattern 3.5");
    CHECK(!xd_lora_find(a, "model.layers.0.self_attn") && !xd_lora_find(a, "q_proj"),
          "find matches only whole paths");
    xd_lora_free(a);
}

static void test_rslora_fixture(void) {
    xd_lora_adapter *a = xd_lora_load(RSLORA);
    CHECK(a != NULL, "%s", xd_last_error());
    if (!a) return;
    CHECK(a->use_rslora && a->n_modules == 4, "rslora %d, %d modules", a->use_rslora, a->n_modules);
    check_modules("rslora", RSLORA, a); /* BF16 in the file */
    const xd_lora_module *v = xd_lora_find(a, "model.layers.0.self_attn.v_proj");
    CHECK(v && v->rank == 2 && v->scaling == 8 / sqrt(2.0), "alpha / sqrt(r)");
    xd_lora_free(a);
}

/* ---- round trips ------------------------------------------------------------- */

/* The saved rank_pattern / alpha_pattern: each module whose rank / alpha differs
 * from r / lora_alpha, by its full path. */
static void check_saved_patterns(const char *dir, const xd_lora_adapter *a) {
    json_error_t e;
    json_t *root = json_load_file(path_in(dir, "adapter_config.json"), 0, &e);
    CHECK(root != NULL, "%s", e.text);
    if (!root) return;
    const json_t *rp = json_object_get(root, "rank_pattern");
    const json_t *ap = json_object_get(root, "alpha_pattern");
    size_t n_rank = 0, n_alpha = 0;
    for (int i = 0; i < a->n_modules; i++) {
        const xd_lora_module *m = &a->modules[i];
        const json_t *r = json_object_get(rp, m->module), *al = json_object_get(ap, m->module);
        n_rank += m->rank != a->r;
        n_alpha += m->alpha != a->lora_alpha;
        CHECK(m->rank == a->r ? !r : json_integer_value(r) == m->rank, "%s: rank_pattern",
              m->module);
        CHECK(m->alpha == a->lora_alpha ? !al : json_number_value(al) == m->alpha,
              "%s: alpha_pattern", m->module);
    }
    CHECK(json_object_size(rp) == n_rank && json_object_size(ap) == n_alpha,
          "%s: %zu rank and %zu alpha keys (expected %zu, %zu)", dir, json_object_size(rp),
          json_object_size(ap), n_rank, n_alpha);
    CHECK(!strcmp(json_string_value(json_object_get(root, "peft_type")), "LORA") &&
          !strcmp(json_string_value(json_object_get(root, "task_type")), "CAUSAL_LM") &&
          json_is_true(json_object_get(root, "inference_mode")) &&
          !strcmp(json_string_value(json_object_get(root, "bias")), "none"), "%s: fields", dir);
    json_decref(root);
    st_set *s = xd_st_open(path_in(dir, "adapter_model.safetensors"));
    CHECK(s && s->n_tensors == 2 * a->n_modules, "%s: tensors", dir);
    for (int i = 0; s && i < s->n_tensors; i++)
        CHECK(s->tensors[i].dtype == ST_F32, "%s: %s is not F32", dir, s->tensors[i].name);
    xd_st_close(s);
}

static void round_trip(const char *name, const char *fixture) {
    xd_lora_adapter *a = xd_lora_load(fixture);
    CHECK(a != NULL, "%s", xd_last_error());
    if (!a) return;
    const char *d1 = path_in(new_dir(name), "out"), *d2 = path_in(new_dir(name), "out");
    CHECK(!xd_lora_save(a, d1), "save %s: %s", d1, xd_last_error());
    CHECK(!xd_lora_save(a, d2), "save %s: %s", d2, xd_last_error());
    xd_lora_adapter *b = xd_lora_load(d1);
    CHECK(b != NULL, "reload %s: %s", d1, xd_last_error());
    if (b) CHECK(same_adapter(a, b), "%s: the reloaded adapter differs", name);
    CHECK(test_same_file(path_in(d1, "adapter_config.json"), path_in(d2, "adapter_config.json")) &&
          test_same_file(path_in(d1, "adapter_model.safetensors"),
                         path_in(d2, "adapter_model.safetensors")),
          "%s: two saves differ", name);
    check_saved_patterns(d1, a);
    /* saving over an existing adapter replaces it */
    if (b) CHECK(!xd_lora_save(b, d1), "save over %s: %s", d1, xd_last_error());
    const char *keep = getenv("XD_PEFT_OUT");
    if (keep && *keep) {
        mkdir(keep, 0755);
        CHECK(!xd_lora_save(a, path_in(keep, name)), "%s", xd_last_error());
        /* also as EVA writes it: target_modules = the modules' paths, init "eva" */
        for (int i = 0; i < a->target_modules.n; i++) free(a->target_modules.names[i]);
        free(a->target_modules.names);
        a->target_modules = (xd_lora_names){0};
        free(a->init_lora_weights);
        a->init_lora_weights = strdup("eva");
        a->has_eva = 1;
        a->eva = (xd_eva_config){2.0, 0.99, 1, -100, 0, 1};
        char eva_name[64];
        snprintf(eva_name, sizeof eva_name, "%s-eva", name);
        CHECK(!xd_lora_save(a, path_in(keep, eva_name)), "%s", xd_last_error());
    }
    xd_lora_free(b);
    xd_lora_free(a);
}

/* An adapter built in memory: target_modules written as the modules' paths. */
static void test_built(void) {
    xd_lora_adapter *a = xd_lora_new("some/base", 8, 16, 0);
    CHECK(a != NULL, "%s", xd_last_error());
    if (!a) return;
    xd_lora_module *m = xd_lora_add_module(a, "model.layers.1.mlp.up_proj", 8, 48, 80, 16);
    CHECK(m && m->scaling == 2, "add");
    m = xd_lora_add_module(a, "model.layers.0.self_attn.q_proj", 3, 48, 48, 1.25);
    CHECK(m && m->scaling == 1.25 / 3, "add");
    for (int64_t i = 0; m && i < 3 * 48; i++) m->A[i] = (float)i / 7;
    for (int64_t i = 0; m && i < 48 * 3; i++) m->B[i] = -(float)i / 3;
    CHECK(a->n_modules == 2 && !strcmp(a->modules[0].module, "model.layers.0.self_attn.q_proj"),
          "sorted on insertion");
    CHECK(!xd_lora_add_module(a, "model.layers.1.mlp.up_proj", 8, 48, 80, 16) &&
          strstr(xd_last_error(), "already"), "duplicate: %s", xd_last_error());
    CHECK(!xd_lora_add_module(a, "x", 0, 48, 80, 16), "rank 0 refused");
    const char *d = path_in(new_dir("built"), "out");
    CHECK(!xd_lora_save(a, d), "%s", xd_last_error());
    xd_lora_adapter *b = xd_lora_load(d);
    CHECK(b != NULL, "%s", xd_last_error());
    if (b) {
        CHECK(b->target_modules.n == 2 &&
              has_name(&b->target_modules, "model.layers.1.mlp.up_proj"),
              "target_modules written as paths");
        free(b->source);
        b->source = NULL;
        /* the loaded target_modules are the paths; otherwise the same */
        xd_lora_names t = b->target_modules;
        b->target_modules = a->target_modules;
        CHECK(same_adapter(a, b), "built adapter reloads differently");
        b->target_modules = t;
    }
    check_saved_patterns(d, a);
    xd_lora_free(b);

    /* what save refuses */
    a->modules[0].scaling *= 2;
    CHECK(xd_lora_save(a, d) && strstr(xd_last_error(), "scaling"), "%s", xd_last_error());
    a->modules[0].scaling /= 2;
    a->modules[0].A[5] = NAN;
    CHECK(xd_lora_save(a, d) && strstr(xd_last_error(), "lora_A element 5"), "%s", xd_last_error());
    a->modules[0].A[5] = 0;
    free(a->init_lora_weights);
    a->init_lora_weights = strdup("pissa");
    CHECK(xd_lora_save(a, d) && strstr(xd_last_error(), "init_lora_weights"), "%s",
          xd_last_error());
    free(a->init_lora_weights);
    a->init_lora_weights = strdup("eva");
    a->has_eva = 1;
    a->eva = (xd_eva_config){2.0, 0.99, 1, -100, 0, 1};
    CHECK(!xd_lora_save(a, d), "%s", xd_last_error());
    b = xd_lora_load(d);
    CHECK(b && b->has_eva && b->eva.rho == 2.0 && b->eva.tau == 0.99 &&
          b->eva.label_mask_value == -100 && b->eva.adjust_scaling_factors &&
          !strcmp(b->init_lora_weights, "eva"), "eva_config kept");
    xd_lora_free(b);

    /* a failing save leaves the previous adapter in place */
    a->modules[1].alpha = 4;
    a->modules[1].scaling = xd_lora_scaling(4, 8, 0);
    xd_atomic_inject_fault(3, ENOSPC);
    CHECK(xd_lora_save(a, d) == -1 && strstr(xd_last_error(), d), "injected fault: %s",
          xd_last_error());
    xd_atomic_inject_fault(0, 0);
    b = xd_lora_load(d);
    CHECK(b && b->modules[1].alpha == 16, "the old adapter survives a failed save");
    xd_lora_free(b);
    xd_lora_free(a);
}

static void test_check_module(void) {
    xd_lora_adapter *a = xd_lora_load(LORA);
    if (!a) return;
    CHECK(!xd_lora_check_module(a, "model.layers.0.self_attn.k_proj", 48, 24), "%s",
          xd_last_error());
    CHECK(!xd_lora_check_module(a, "model.layers.1.mlp.down_proj", 80, 48), "%s", xd_last_error());
    CHECK(xd_lora_check_module(a, "model.layers.0.self_attn.k_proj", 48, 48) &&
          strstr(xd_last_error(), "model.layers.0.self_attn.k_proj") &&
          strstr(xd_last_error(), LORA), "out mismatch: %s", xd_last_error());
    CHECK(xd_lora_check_module(a, "model.layers.1.mlp.down_proj", 48, 80), "in mismatch");
    CHECK(xd_lora_check_module(a, "lm_head", 48, 260) && strstr(xd_last_error(), "no LoRA"),
          "missing: %s", xd_last_error());
    xd_lora_free(a);
}

/* ---- accepted variants --------------------------------------------------------- */

static void expect_load(const char *dir, const char *what) {
    xd_lora_adapter *a = xd_lora_load(dir);
    CHECK(a != NULL, "%s: %s", what, xd_last_error());
    if (a) CHECK(a->n_modules == 14, "%s: %d modules", what, a->n_modules);
    xd_lora_free(a);
}

static void test_variants(void) {
    expect_load(with_field(LORA, "some_future_field", "{\"x\": 1}"), "an unknown key");
    expect_load(with_field(LORA, "target_modules", "\"model\\\\.layers\\\\.[01]\\\\..*_proj\""),
                "target_modules as a regex");
    expect_load(with_field(LORA, "target_modules", "\"all-linear\""), "all-linear");
    expect_load(with_field(LORA, "exclude_modules", "[\"lm_head\"]"), "exclude_modules");
    expect_load(with_field(LORA, "exclude_modules", "\"all-linear\""),
                "exclude_modules all-linear (a regex matching nothing)");
    expect_load(with_field(LORA, "peft_version", NULL), "no peft_version");
    /* F16 tensors: the same adapter written in half precision */
    xd_lora_adapter *a = xd_lora_load(LORA);
    if (!a) return;
    const char *d = copy_adapter(LORA);
    st_write_tensor ts[64];
    char names[64][200];
    for (int i = 0; i < a->n_modules; i++)
        for (int b = 0; b < 2; b++) {
            const xd_lora_module *m = &a->modules[i];
            snprintf(names[2 * i + b], 200, "base_model.model.%s.lora_%c.weight", m->module,
                     'A' + b);
            ts[2 * i + b] = (st_write_tensor){names[2 * i + b], ST_F16, 2,
                                              {b ? m->out : m->rank, b ? m->rank : m->in},
                                              b ? m->B : m->A};
        }
    CHECK(!xd_st_write(path_in(d, "adapter_model.safetensors"), ts, 2 * a->n_modules, NULL), "%s",
          xd_last_error());
    xd_lora_adapter *h = xd_lora_load(d);
    CHECK(h != NULL, "F16: %s", xd_last_error());
    double worst = 0;
    for (int i = 0; h && i < h->n_modules; i++)
        for (int64_t k = 0; k < h->modules[i].rank * h->modules[i].in; k++) {
            double x = a->modules[i].A[k], y = h->modules[i].A[k];
            worst = fmax(worst, fabs(x - y) / fmax(fabs(x), 1e-3));
        }
    CHECK(h && worst <= 1.0 / 2048, "F16 values: relative error %g", worst);
    xd_lora_free(h);
    xd_lora_free(a);
}

/* ---- refused ------------------------------------------------------------------- */

#define CFG "adapter_config.json"
#define ST "adapter_model.safetensors"

static void test_config_errors(void) {
    const char *d = new_dir("no-config");
    copy_file(path_in(LORA, ST), path_in(d, ST), 0);
    expect_fail(d, CFG, "cannot open", NULL);

    d = copy_adapter(LORA);
    write_text(path_in(d, CFG), "{\"peft_type\": \"LORA\", \"r\": ");
    expect_fail(d, CFG, "line 1", NULL);
    write_text(path_in(d, CFG), "[1, 2]");
    expect_fail(d, CFG, "expected a JSON object", NULL);

    expect_fail(with_field(LORA, "peft_type", "\"IA3\""), CFG, "peft_type", "IA3");
    expect_fail(with_field(LORA, "peft_type", NULL), CFG, "peft_type", "missing");
    expect_fail(DORA, CFG, "use_dora", "DoRA");
    expect_fail(with_field(LORA, "modules_to_save", "[\"lm_head\"]"), CFG, "modules_to_save", NULL);
    expect_fail(with_field(LORA, "r", "0"), CFG, "r: 0", "expected 1");
    expect_fail(with_field(LORA, "r", "-3"), CFG, "r: -3", NULL);
    expect_fail(with_field(LORA, "r", "4.5"), CFG, "r:", "integer");
    expect_fail(with_field(LORA, "fan_in_fan_out", "true"), CFG, "fan_in_fan_out", NULL);
    expect_fail(with_field(LORA, "bias", "\"lora_only\""), CFG, "bias", "none");
    expect_fail(with_field(LORA, "lora_bias", "true"), CFG, "lora_bias", NULL);
    expect_fail(with_field(LORA, "layer_replication", "[[0, 2]]"), CFG, "layer_replication", NULL);
    expect_fail(with_field(LORA, "use_qalora", "true"), CFG, "use_qalora", NULL);
    expect_fail(with_field(LORA, "target_parameters", "[\"experts.w\"]"), CFG, "target_parameters",
                NULL);
    expect_fail(with_field(LORA, "layers_to_transform", "[0]"), CFG, "layers_to_transform", NULL);
    expect_fail(with_field(LORA, "task_type", "\"SEQ_CLS\""), CFG, "task_type", NULL);
    expect_fail(with_field(LORA, "init_lora_weights", "\"pissa_niter_4\""), CFG,
                "init_lora_weights", "base weights");
    expect_fail(with_field(LORA, "init_lora_weights", "\"magic\""), CFG, "init_lora_weights", NULL);
    expect_fail(with_field(LORA, "lora_alpha", "\"8\""), CFG, "lora_alpha", "number");
    expect_fail(with_field(LORA, "use_rslora", "1"), CFG, "use_rslora", "true or false");
    expect_fail(with_field(LORA, "target_modules", NULL), CFG, "target_modules", "missing");
    expect_fail(with_field(LORA, "target_modules", "[]"), CFG, "target_modules", NULL);
    expect_fail(with_field(LORA, "eva_config", "{\"rho\": 2, \"steps\": 3}"), CFG,
                "eva_config.steps", "unknown");
    expect_fail(with_field(LORA, "eva_config", "{\"tau\": 1.5}"), CFG, "eva_config.tau", NULL);
    expect_fail(with_field(LORA, "rank_pattern", "{\"q_proj(\": 2}"), CFG, "rank_pattern",
                "not a valid regex");
    expect_fail(with_field(LORA, "rank_pattern", "{\"q_proj\": 0}"), CFG, "rank_pattern['q_proj']",
                NULL);
    expect_fail(with_field(LORA, "alpha_pattern", "{\"q_proj\": null}"), CFG,
                "alpha_pattern['q_proj']", NULL);
}

static void test_pattern_errors(void) {
    /* layer 0's q_proj has rank 2 in the tensors */
    expect_fail(with_field(LORA, "rank_pattern", "{\"q_proj\": 3}"), CFG, "rank_pattern",
                "key 'q_proj' gives module 'model.layers.0.self_attn.q_proj' rank 3");
    expect_fail(with_field(LORA, "rank_pattern", NULL), CFG, "r: 4", "no rank_pattern key");
    /* the first matching key wins: reversing the order changes layer 1's q_proj to 2 */
    expect_fail(with_field(LORA, "rank_pattern",
                           "{\"q_proj\": 2, \"model.layers.1.self_attn.q_proj\": 3, "
                           "\"layers.1.mlp.down_proj\": 6}"),
                CFG, "rank_pattern", "model.layers.1.self_attn.q_proj' rank 2");
    /* modules PEFT would not put a LoRA on */
    expect_fail(with_field(LORA, "target_modules", "[\"q_proj\", \"k_proj\"]"), CFG,
                "target_modules does not select", NULL);
    expect_fail(with_field(LORA, "exclude_modules", "\"model\\\\.layers\\\\.1\\\\..*\""), CFG,
                "exclude_modules selects", NULL);
    expect_fail(with_field(LORA, "target_modules", "\".*q_proj\""), CFG, "target_modules", NULL);
}

/* A copy of lora/ whose tensors are rewritten: module `drop_b` loses its lora_B,
 * `bad_rank` gets a lora_B of another rank, an extra tensor may be added, and
 * `nan_at` >= 0 puts a NaN into the first lora_A. */
typedef struct {
    const char *drop_b, *bad_rank, *extra;
    int64_t nan_at;
    int empty;
} tensor_edit;

static const char *with_tensors(const tensor_edit *e) {
    xd_lora_adapter *a = xd_lora_load(LORA);
    if (!a) { fprintf(stderr, "%s\n", xd_last_error()); exit(2); }
    const char *d = copy_adapter(LORA);
    st_write_tensor ts[64];
    char names[64][200];
    float *nan_a = NULL, extra[4] = {1, 2, 3, 4};
    int n = 0;
    for (int i = 0; i < a->n_modules && !e->empty; i++) {
        xd_lora_module *m = &a->modules[i];
        const float *A = m->A;
        if (i == 0 && e->nan_at >= 0) {
            nan_a = malloc((size_t)(m->rank * m->in) * sizeof *nan_a);
            memcpy(nan_a, m->A, (size_t)(m->rank * m->in) * sizeof *nan_a);
            nan_a[e->nan_at] = NAN;
            A = nan_a;
        }
        snprintf(names[n], 200, "base_model.model.%s.lora_A.weight", m->module);
        ts[n] = (st_write_tensor){names[n], ST_F32, 2, {m->rank, m->in}, A};
        n++;
        if (e->drop_b && !strcmp(e->drop_b, m->module)) continue;
        int rb = e->bad_rank && !strcmp(e->bad_rank, m->module) ? m->rank - 1 : m->rank;
        snprintf(names[n], 200, "base_model.model.%s.lora_B.weight", m->module);
        ts[n] = (st_write_tensor){names[n], ST_F32, 2, {m->out, rb}, m->B};
        n++;
    }
    if (e->extra) ts[n++] = (st_write_tensor){e->extra, ST_F32, 1, {4}, extra};
    if (xd_st_write(path_in(d, ST), ts, n, "{\"format\": \"pt\"}")) {
        fprintf(stderr, "%s\n", xd_last_error());
        exit(2);
    }
    free(nan_a);
    xd_lora_free(a);
    return d;
}

static void test_tensor_errors(void) {
    const char *q0 = "model.layers.0.self_attn.q_proj";
    expect_fail(with_tensors(&(tensor_edit){.drop_b = q0, .nan_at = -1}), ST,
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "has no");
    expect_fail(with_tensors(&(tensor_edit){.bad_rank = q0, .nan_at = -1}), ST,
                "ranks differ", "lora_B.weight' [48, 1]");
    expect_fail(with_tensors(&(tensor_edit){.nan_at = 7}), ST, "element 7 is nan", NULL);
    expect_fail(with_tensors(&(tensor_edit){.nan_at = -1, .empty = 1,
                                            .extra = "base_model.model.x.lora_A.default.weight"}),
                ST, "lora_A.default.weight", "not a LoRA weight");
    expect_fail(with_tensors(&(tensor_edit){.nan_at = -1, .extra = "base_model.model.model."
                                            "embed_tokens.lora_embedding_A"}),
                ST, "lora_embedding_A", "embedding");
    expect_fail(with_tensors(&(tensor_edit){.nan_at = -1, .extra = "base_model.model.model."
                                            "layers.0.self_attn.q_proj.lora_B.bias"}),
                ST, "lora_B.bias", "lora_bias");
    expect_fail(with_tensors(&(tensor_edit){.nan_at = -1, .empty = 1, .extra = "base_model.model."
                                            "x.lora_B.weight"}),
                ST, "x.lora_B.weight", "has no");
    expect_fail(with_tensors(&(tensor_edit){.nan_at = -1, .empty = 1}), ST, "no LoRA tensors",
                NULL);
    /* DoRA's magnitude vector, with use_dora switched off in the config */
    const char *d = with_field(DORA, "use_dora", "false");
    expect_fail(d, ST, "lora_magnitude_vector", "DoRA");
    /* truncated files: in the data, and in the header */
    d = copy_adapter(LORA);
    copy_file(path_in(LORA, ST), path_in(d, ST), 20000);
    expect_fail(d, ST, "data_offsets", "past the data section");
    copy_file(path_in(LORA, ST), path_in(d, ST), 100);
    expect_fail(d, ST, "header length", NULL);
    copy_file(path_in(LORA, ST), path_in(d, ST), 0);
    /* no safetensors; a pickle instead */
    remove(path_in(d, ST));
    expect_fail(d, ST, "cannot open", NULL);
    write_text(path_in(d, "adapter_model.bin"), "pickle");
    expect_fail(d, ST, "adapter_model.bin", "safe_serialization");
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/xd-test-peft-XXXXXX");
    if (!mkdtemp(tmp_root)) { perror("mkdtemp"); return 2; }
    json_error_t e;
    expected = json_load_file(FIXTURE("peft/expected.json"), 0, &e);
    CHECK(expected != NULL, "expected.json: %s", e.text);
    if (expected)
        printf("fixtures from peft %s, torch %s\n",
               json_string_value(json_object_get(expected, "peft_version")),
               json_string_value(json_object_get(expected, "torch_version")));

    xd_expected = json_load_file(FIXTURE("peft/xd_expected.json"), 0, &e);
    CHECK(xd_expected != NULL, "xd_expected.json: %s", e.text);

    test_lora_fixture();
    test_rslora_fixture();
    if (xd_expected) test_xd_written();
    round_trip("lora", LORA);
    round_trip("rslora", RSLORA);
    test_built();
    test_check_module();
    test_variants();
    test_config_errors();
    test_pattern_errors();
    test_tensor_errors();

    json_decref(expected);
    json_decref(xd_expected);
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary("test_peft_adapter");
}
