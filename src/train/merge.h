/* Stage III (docs/design.md, "Stage III"): the weighted merge of K experts,
 * θ = Σ_i λ_i θ_i, streaming one tensor at a time.
 *
 * Inputs are HF model directories (config.json + safetensors) of one
 * architecture: their configs must agree in every field (teacher_hash
 * included) except base_hash, and every weight must be present with the
 * shape the config implies. base_hash (set by `distill stage2`: the Stage I
 * checkpoint the expert was trained from) must be non-zero and the same in
 * all, unless allow_unrelated.
 *
 * Weights: NULL = uniform 1/K. Each must be finite and ≥ 0 and the sum
 * positive. If |Σ w − 1| > 1e-6 the merge is refused unless normalize, which
 * uses w_i / Σ w (Σ in double, input order). The fp32 factor is
 * λ_i = (float)w_i (or (float)(w_i / Σ w)).
 *
 * Arithmetic (the definition of "exact" the tests check bit for bit): per
 * element, in fp32, without fused multiply-add,
 *     acc = λ_1 * t_1;   acc = acc + λ_i * t_i   for i = 2 … K in input order,
 * each product and sum rounded to fp32. So a single input with weight 1
 * comes back bit for bit.
 *
 * Memory: one accumulator and one read buffer of the largest tensor; the
 * inputs are mmap'ed and every tensor's pages are dropped (MADV_DONTNEED)
 * once read, and the output is written tensor by tensor (st_stream_*).
 *
 * Output: OUT/config.json (the first expert's, as written; base_hash removed
 * when the experts' differ under allow_unrelated), OUT/model.safetensors,
 * OUT/tokenizer.json and tokenizer_config.json copied from the first expert
 * when present, and OUT/merge.json (inputs, weights given and λ used, each
 * input's base/teacher hash and the hash of its fp32 weights, the output's
 * weights hash), and opts->extra_name when given. The directory is
 * committed atomically (io/atomic.h). */
#ifndef XD_MERGE_H
#define XD_MERGE_H

#include <stdint.h>

typedef struct {
    int normalize;       /* divide the weights by their sum instead of refusing */
    int allow_unrelated; /* skip the base_hash check */
    int verbose;         /* an XD_LOG_INFO line for the merge made */
    /* optional: one more file, OUT/extra_name with extra_text, committed with
     * the rest (merge --search writes search.json this way) */
    const char *extra_name, *extra_text;
} xd_merge_opts;

int xd_merge(const char *const *inputs, const double *weights, int k, const xd_merge_opts *o,
             const char *out_dir);

/* Every check xd_merge makes of the inputs (directories, configs, base_hash,
 * tensors and shapes; not the weights), and each input's weights hash as
 * merge.json records it (hashes[k]), reading every tensor once; writes
 * nothing. */
int xd_merge_check(const char *const *inputs, int k, const xd_merge_opts *o, uint64_t *hashes);

#endif
