/* The hashes of src/core/hash.h and the teacher hash (model/model.h). Their
 * values are stored in files (token files' tokenizer_hash, students'
 * teacher_hash and base_hash, top-k logit files), so this pins them: FNV-1a
 * against the published test vectors, xd_hash64 against the values of the
 * implementation the files were written with, and the tokenizer and teacher
 * hashes of a committed fixture. Also: continuation, thread independence. */
#include <stdint.h>
#include <string.h>

#include "core/hash.h"
#include "model/model.h"
#include "test.h"
#include "xdistill.h"

typedef unsigned long long ull;

static void test_fnv(void) {
    /* FNV-1a 64 test vectors (Fowler, Noll, Vo) */
    CHECK(xd_fnv1a64_str("") == 0xcbf29ce484222325ull, "FNV-1a(\"\")");
    CHECK(xd_fnv1a64_str("a") == 0xaf63dc4c8601ec8cull, "FNV-1a(\"a\") = 0x%016llx",
          (ull)xd_fnv1a64_str("a"));
    CHECK(xd_fnv1a64_str("foobar") == 0x85944171f73967e8ull, "FNV-1a(\"foobar\") = 0x%016llx",
          (ull)xd_fnv1a64_str("foobar"));
    CHECK(xd_fnv1a64(XD_FNV1A64_INIT, "foobar", 6) == xd_fnv1a64_str("foobar"), "bytes = string");
    uint64_t h = xd_fnv1a64(XD_FNV1A64_INIT, "foo", 3);
    CHECK(xd_fnv1a64(h, "bar", 3) == xd_fnv1a64_str("foobar"), "continuation");
    CHECK(xd_fnv1a64(XD_FNV1A64_INIT, "x", 0) == XD_FNV1A64_INIT, "n = 0");
}

static void test_hash64(void) {
    /* the values the top-k logit files, student configs and merges were written with */
    CHECK(xd_hash64("", 0, 0) == 0x3564b439cd1e1f16ull, "hash64(empty) = 0x%016llx",
          (ull)xd_hash64("", 0, 0));
    CHECK(xd_hash64("abc", 3, 0) == 0x406e62b338943ce3ull, "hash64(abc) = 0x%016llx",
          (ull)xd_hash64("abc", 3, 0));
    uint8_t b[1000];
    for (int i = 0; i < 1000; i++) b[i] = (uint8_t)(i * 2654435761u >> 13);
    CHECK(xd_hash64(b, 1000, 7) == 0x0f2c5caa31d4a78eull, "hash64(1000 B, 7) = 0x%016llx",
          (ull)xd_hash64(b, 1000, 7));
    CHECK(xd_hash64(b + 1, 999, 0x123456789abcdefull) == 0xdbad3d7a0899bdb6ull,
          "hash64(999 B unaligned) = 0x%016llx", (ull)xd_hash64(b + 1, 999, 0x123456789abcdefull));
    size_t n = (20u << 20) + 13; /* three 8 MiB chunks, the last ragged */
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t h = xd_hash64(p, n, 7);
    CHECK(h == 0xa4d55fc601c844beull, "hash64(20 MiB, 7) = 0x%016llx", (ull)h);
    int th = xd_get_threads();
    xd_set_threads(1);
    CHECK(xd_hash64(p, n, 7) == h, "one thread gives the same hash");
    xd_set_threads(th);
    free(p);
    /* splitmix64's finaliser: mix(0) = 0, and splitmix64(seed 0)'s first output */
    CHECK(xd_mix64(0) == 0, "mix64(0)");
    CHECK(xd_mix64(0x9e3779b97f4a7c15ull) == 0xe220a8397b1dcdafull, "mix64(golden) = 0x%016llx",
          (ull)xd_mix64(0x9e3779b97f4a7c15ull));
}

static void test_fixture_hashes(void) {
    xd_model *m = xd_model_load(XD_SOURCE_DIR "/tests/fixtures/tiny-llama.gguf");
    CHECK(m != NULL, "load: %s", xd_last_error());
    if (!m) return;
    uint64_t th = xd_model_teacher_hash(m), tk = xd_tokenizer_hash(xd_model_tokenizer(m));
    CHECK(th == 0x7bb2762472a9118eull, "teacher hash of tiny-llama.gguf = 0x%016llx", (ull)th);
    CHECK(tk == 0xa90f28745873eebeull, "tokenizer hash of tiny-llama.gguf = 0x%016llx", (ull)tk);
    xd_model_free(m);
}

int main(void) {
    test_fnv();
    test_hash64();
    test_fixture_hashes();
    return test_summary("test_hash");
}
