/* xdistill linked into one program with llama.cpp's ggml (issue 12).
 *
 * ggml and gguf export ggml_type_name, gguf_type_name, gguf_find_tensor, ...;
 * xdistill's GGUF reader once had global functions of those very names. This
 * program links the library together with a stand-in for libggml that defines
 * them (tests/link/ggml_standin.c; with the old names the static link failed
 * on duplicate definitions, and with a shared library one side's calls would
 * have gone to the other's functions). Built twice: against libxdistill.a
 * (test_link_ggml) and libxdistill.so (test_link_ggml_shared).
 *
 * Checks: every stand-in answers with its own marker, and xdistill, whose GGUF
 * and safetensors readers use their own (xd_-prefixed) functions, still loads
 * tests/fixtures/tiny-llama.gguf and the HF directory of the same weights and
 * reproduces HF transformers' logits (reference.json, tolerance 1e-4 as in
 * test_gguf: fp32 weights, differences are summation order only). Only the
 * public API (xdistill.h) is used, as an outside program would. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link/ggml_standin.h"
#include "test.h"
#include "xdistill.h"

/* worst |logit − HF| of model `path` on the reference tokens; INFINITY on failure */
static double worst_vs_hf(const char *path, json_t *ref) {
    xd_model *m = xd_model_load(path);
    CHECK(m != NULL, "%s: %s", path, m ? "" : xd_last_error());
    if (!m) return INFINITY;
    json_t *toks = json_object_get(ref, "tokens"), *logits = json_object_get(ref, "logits");
    int n = (int)json_array_size(toks), V = xd_model_config(m)->vocab_size;
    int32_t ids[64];
    double worst = n > 0 && n <= 64 ? 0 : INFINITY;
    for (int i = 0; i < n && i < 64; i++) ids[i] = (int32_t)json_integer_value(json_array_get(toks, (size_t)i));
    float *out = malloc((size_t)n * V * sizeof(float));
    xd_kv *kv = xd_kv_create(m, n);
    if (!out || !kv || n > 64 || xd_forward(m, kv, ids, n, out, 1)) worst = INFINITY;
    for (int t = 0; t < n && worst < INFINITY; t++)
        for (int j = 0; j < V; j++) {
            double d = fabs(out[(size_t)t * V + j] -
                            json_real_value(json_array_get(json_array_get(logits, (size_t)t), (size_t)j)));
            if (!(d <= worst)) worst = d == d ? d : INFINITY;
        }
    free(out);
    xd_kv_free(kv);
    xd_model_free(m);
    return worst;
}

int main(void) {
    /* the program's own calls reach the stand-in */
    float buf[4] = {0};
    CHECK(!strcmp(ggml_type_name(2), "standin-q4_0") && !strcmp(gguf_type_name(8), "standin-string"),
          "ggml/gguf type names are not the stand-in's");
    CHECK(gguf_find_tensor(NULL, "token_embd.weight") == STANDIN_FIND_TENSOR &&
              gguf_find(NULL, "general.architecture") == STANDIN_FIND_KEY,
          "gguf_find_tensor/gguf_find are not the stand-in's");
    CHECK(ggml_dequantize(2, NULL, buf, 4) == 4 && buf[3] == STANDIN_VALUE, "ggml_dequantize is not the stand-in's");
    CHECK(gguf_open("x") == NULL && st_open("x") == NULL && tokenizer_from_gguf(NULL) == NULL &&
              !strcmp(st_dtype_name(0), "standin-dtype") && hf_config_load("x", NULL) == STANDIN_HF &&
              tg_hash("x") == STANDIN_HASH,
          "the other stand-ins do not answer");
    gguf_close(NULL);

    /* xdistill's readers use their own functions */
    json_t *ref = json_load_file(FIXTURE("tiny-llama/reference.json"), 0, NULL);
    CHECK(ref != NULL, "tiny-llama/reference.json missing");
    if (ref) {
        double wg = worst_vs_hf(FIXTURE("tiny-llama.gguf"), ref);
        double wh = worst_vs_hf(FIXTURE("tiny-llama"), ref);
        CHECK(wg <= 1e-4 && wh <= 1e-4, "logits vs HF: GGUF %g, safetensors %g (tol 1e-4)", wg, wh);
        printf("beside the ggml stand-in: max |logit - HF| GGUF %.2e, safetensors %.2e\n", wg, wh);
    }
    json_decref(ref);
    xd_tokenizer *t = xd_tokenizer_load(FIXTURE("tiny-llama.gguf"));
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    size_t blen = 0;
    CHECK(t && !xd_tokenizer_encode(t, "hello world", 11, 0, &ids, &n) && n > 0 &&
              !xd_tokenizer_decode(t, ids, n, &back, &blen) && blen == 11 && !memcmp(back, "hello world", 11),
          "GGUF tokenizer round trip: %s", xd_last_error());
    free(ids);
    free(back);
    xd_tokenizer_free(t);
    return test_summary("test_link_ggml");
}
