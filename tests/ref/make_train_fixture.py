#!/usr/bin/env python3
"""Builds the training-engine reference fixtures in tests/fixtures/train_ref/.

The C training engine (llm.c style, fp32) is checked against PyTorch + HF
transformers on the tiny Llama in tests/fixtures/tiny-llama/ (tied embeddings,
GQA 4/2 heads, head_dim 12, hidden 48, ffn 80, vocab 260, 2 layers).

Outputs (all float32 tensors, HF parameter names):
  grads.safetensors        gradient of every parameter for ONE forward/backward
                           on batch 0 with the initial weights (no clipping,
                           no update). The tied embedding has a single gradient
                           model.embed_tokens.weight that already includes the
                           lm_head contribution.
  grads.json               loss and global grad L2 norm of that step.
  final_params.safetensors every parameter after 10 AdamW steps.
  steps.json               data tokens, hyper-parameters, formulas, per-step
                           lr / loss / grad norm, validation loss, versions and
                           the manual-numpy-AdamW vs torch cross-check.

Deterministic: fixed data seed, CPU only, 2 threads, deterministic algorithms.
Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_train_fixture.py [out_dir]
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.path.join(HERE, "..", "fixtures", "tiny-llama")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures", "train_ref")

# ---- data / schedule / optimiser constants --------------------------------
DATA_SEED = 7
NBATCH, B, T = 11, 2, 16          # 10 training batches + 1 validation batch
STEPS = 10
LR_MAX, LR_MIN, WARMUP, TOTAL = 1e-2, 1e-4, 3, 10
BETA1, BETA2, EPS, WD = 0.9, 0.95, 1e-8, 0.1
MAX_NORM = 1.0
CLIP_EPS = 1e-6
ASSERT_TOL = 1e-6      # lock-step manual AdamW vs torch (the formula check)
# The independent manual trajectory computes its gradients at its own (fp32
# rounding-different) params, so the tiny differences compound over 10 steps;
# observed ~1.3e-6 on the embedding, i.e. ~2e-5 of the total parameter movement.
IND_TOL = 1e-5


def lr_at(s):
    """Python-float (double) learning rate for 0-based step s."""
    if s < WARMUP:
        return LR_MAX * (s + 1) / WARMUP
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (
        1.0 + math.cos(math.pi * (s - WARMUP) / (TOTAL - WARMUP)))


def load_model():
    m = LlamaForCausalLM.from_pretrained(
        MODEL_DIR, torch_dtype=torch.float32, attn_implementation="eager")
    m.train()  # no dropout in this config; train() just to be explicit
    return m


def params_of(model):
    """Named trainable parameters, tied lm_head deduplicated (HF order)."""
    return list(model.named_parameters())


def loss_fn(model, inp, tgt):
    logits = model(input_ids=inp).logits          # (B, T, V), causal, pos 0..T-1
    return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.reshape(-1))


def global_norm(tensors):
    """Exactly torch.nn.utils.clip_grad_norm_'s total norm (fp32)."""
    norms = [torch.linalg.vector_norm(t, 2) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms), 2)


def fp(x):
    """Full precision float for JSON (repr of the double, round-trips)."""
    return float(x)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)

    data = np.random.default_rng(DATA_SEED).integers(0, 260, size=(NBATCH, B, T + 1))
    batches = torch.from_numpy(data.astype(np.int64))
    inputs, targets = batches[:, :, :T], batches[:, :, 1:]

    # ------------------------------------------------------------------ #
    # Fixture 1: one forward/backward on batch 0, initial weights.
    # ------------------------------------------------------------------ #
    model = load_model()
    named = params_of(model)
    names = [n for n, _ in named]
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    model.zero_grad(set_to_none=True)
    loss0 = loss_fn(model, inputs[0], targets[0])
    loss0.backward()
    grads = {n: p.grad.detach().clone().contiguous() for n, p in named}
    gnorm0 = global_norm(list(grads.values()))
    gnorm0_f64 = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
    save_file(grads, os.path.join(OUT, "grads.safetensors"))
    with open(os.path.join(OUT, "grads.json"), "w") as f:
        json.dump({
            "doc": ("One forward/backward of tests/fixtures/tiny-llama on batch 0 of "
                    "steps.json 'tokens' (inputs = batch[:, :16], targets = batch[:, 1:]) "
                    "with the initial weights. loss = mean cross-entropy over all B*T "
                    "targets. grads.safetensors holds d loss / d param (float32) for every "
                    "parameter by HF name; the tied embedding model.embed_tokens.weight has "
                    "ONE gradient = embedding-lookup part + lm_head part. grad_norm = global "
                    "L2 norm over all gradients as torch.nn.utils.clip_grad_norm_ computes "
                    "it (fp32: L2 norm of the per-tensor L2 norms); grad_norm_f64 is the "
                    "same in float64."),
            "batch_index": 0,
            "loss": fp(loss0.item()),
            "grad_norm": fp(gnorm0.item()),
            "grad_norm_f64": gnorm0_f64,
            "param_names": names,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        }, f, indent=1)
    init_params = {n: p.detach().clone() for n, p in named}

    # ------------------------------------------------------------------ #
    # Fixture 2: 10 AdamW steps (torch) + manual numpy AdamW cross-checks.
    # ------------------------------------------------------------------ #
    model = load_model()
    named = params_of(model)
    decay = [p for n, p in named if p.dim() >= 2]
    no_decay = [p for n, p in named if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR_MAX, betas=(BETA1, BETA2), eps=EPS, foreach=False, fused=False)

    # (a) lock-step manual AdamW: fed the very clipped gradients torch used.
    # (b) independent manual trajectory: numpy params, numpy clipping and
    #     numpy AdamW; torch is used only for forward/backward at those params.
    f32 = np.float32
    lock = {n: init_params[n].numpy().copy() for n in names}
    lock_m = {n: np.zeros_like(lock[n]) for n in names}
    lock_v = {n: np.zeros_like(lock[n]) for n in names}
    ind = {n: init_params[n].numpy().copy() for n in names}
    ind_m = {n: np.zeros_like(ind[n]) for n in names}
    ind_v = {n: np.zeros_like(ind[n]) for n in names}
    wd_of = {n: (WD if init_params[n].dim() >= 2 else 0.0) for n in names}
    shadow = load_model()
    shadow_named = dict(params_of(shadow))

    def manual_adamw(P, M, V, G, t, lr):
        """Textbook decoupled AdamW in float32 numpy (t starts at 1)."""
        bc1 = 1.0 - BETA1 ** t
        bc2 = 1.0 - BETA2 ** t
        for n in names:
            p, m, v, g = P[n], M[n], V[n], G[n]
            p *= f32(1.0 - lr * wd_of[n])
            m[...] = f32(BETA1) * m + f32(1.0 - BETA1) * g
            v[...] = f32(BETA2) * v + f32(1.0 - BETA2) * (g * g)
            denom = np.sqrt(v) / f32(math.sqrt(bc2)) + f32(EPS)
            p -= f32(lr / bc1) * (m / denom)

    steps = []
    lock_step_maxdiff = []
    ind_losses = []
    for s in range(STEPS):
        lr = lr_at(s)
        # ---- torch ----
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, inputs[s], targets[s])
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(
            [p for _, p in named], max_norm=MAX_NORM, foreach=False)
        clipped = {n: p.grad.detach().numpy().copy() for n, p in named}
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        coef = torch.clamp(MAX_NORM / (gnorm + CLIP_EPS), max=1.0).item()  # fp32, as torch
        steps.append({"step": s, "batch_index": s, "lr": lr, "loss": fp(loss.item()),
                      "grad_norm": fp(gnorm.item()), "clip_coef": coef})

        # ---- (a) lock-step manual ----
        manual_adamw(lock, lock_m, lock_v, clipped, s + 1, lr)
        lock_step_maxdiff.append(max(
            float(np.abs(lock[n] - p.detach().numpy()).max()) for n, p in named))

        # ---- (b) independent manual trajectory ----
        with torch.no_grad():
            for n in names:
                shadow_named[n].copy_(torch.from_numpy(ind[n]))
        shadow.zero_grad(set_to_none=True)
        iloss = loss_fn(shadow, inputs[s], targets[s])
        iloss.backward()
        ig = {n: shadow_named[n].grad.detach().numpy().copy() for n in names}
        inorm = np.float32(np.sqrt(sum(np.sum(ig[n].astype(np.float64) ** 2) for n in names)))
        icoef = min(f32(MAX_NORM) / (inorm + f32(CLIP_EPS)), f32(1.0))
        for n in names:
            ig[n] *= f32(icoef)
        manual_adamw(ind, ind_m, ind_v, ig, s + 1, lr)
        ind_losses.append(fp(iloss.item()))
        print(f"step {s}: lr {lr:.6e} loss {loss.item():.7f} gnorm {gnorm.item():.6f} "
              f"coef {coef:.6f} | manual lock-step maxdiff {lock_step_maxdiff[-1]:.3e} "
              f"indep loss {iloss.item():.7f}")

    assert steps[0]["loss"] == fp(loss0.item()), "step-0 loss must equal fixture-1 loss"
    assert steps[0]["grad_norm"] == fp(gnorm0.item())

    with torch.no_grad():
        val_loss = loss_fn(model, inputs[STEPS], targets[STEPS]).item()
    final = {n: p.detach().clone().contiguous() for n, p in named}
    save_file(final, os.path.join(OUT, "final_params.safetensors"))

    lock_diff = max(float(np.abs(lock[n] - final[n].numpy()).max()) for n in names)
    ind_diff = max(float(np.abs(ind[n] - final[n].numpy()).max()) for n in names)
    print(f"val loss {val_loss:.7f}; manual vs torch final params max |diff|: "
          f"lock-step {lock_diff:.3e}, independent trajectory {ind_diff:.3e}")
    assert lock_diff < ASSERT_TOL, lock_diff
    assert ind_diff < IND_TOL, ind_diff

    doc = {
        "overview": ("Reference for the fp32 training engine: 10 AdamW steps of "
                     "tests/fixtures/tiny-llama computed with torch " + torch.__version__ +
                     " + transformers " + transformers.__version__ +
                     " (LlamaForCausalLM, attn_implementation=eager, float32, CPU)."),
        "tokens": ("int array [11][2][17] = numpy.random.default_rng(7).integers(0, 260, "
                   "size=(11, 2, 17)). Batch k: inputs = tokens[k][:, :16], targets = "
                   "tokens[k][:, 1:]. Each row is ONE document: plain causal attention, "
                   "positions 0..15, no attention mask / padding. Batches 0..9 train "
                   "(step s uses batch s), batch 10 is validation."),
        "loss": ("mean cross-entropy over all B*T = 32 targets: "
                 "F.cross_entropy(logits.view(-1, 260), targets.view(-1)), reduction mean."),
        "lr": ("lr(s), s = 0-based step: s < warmup: lr_max*(s+1)/warmup; else lr_min + "
               "0.5*(lr_max - lr_min)*(1 + cos(pi*(s - warmup)/(total - warmup))); "
               "lr_max=1e-2, lr_min=1e-4, warmup=3, total=10. Computed in double; set via "
               "param_group['lr'] before optimizer.step()."),
        "clipping": ("torch.nn.utils.clip_grad_norm_(params, max_norm=1.0): total_norm = "
                     "||[||g_i||_2 for every param i]||_2 (fp32); clip_coef = max_norm / "
                     "(total_norm + 1e-6); clip_coef = min(clip_coef, 1.0); every grad is "
                     "multiplied by clip_coef (also when it is 1). Applied after backward, "
                     "before the optimizer step."),
        "adamw": ("torch.optim.AdamW (foreach=False, fused=False), betas=(0.9, 0.95), "
                  "eps=1e-8; two param groups: weight_decay=0.1 for every parameter with "
                  ">= 2 dims (all linear weights and model.embed_tokens.weight, which is the "
                  "tied lm_head too), weight_decay=0 for the 1-D RMSNorm weights. Per "
                  "parameter, with t = step count starting at 1, m = v = 0 initially, g = "
                  "clipped grad: p <- p*(1 - lr*wd); m <- b1*m + (1-b1)*g; v <- b2*v + "
                  "(1-b2)*g*g; p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). "
                  "(torch computes m with lerp: m + (1-b1)*(g - m); same up to rounding. "
                  "Scalars (1-lr*wd, lr/(1-b1^t), sqrt(1-b2^t)) are computed in double.)"),
        "steps": ("per step s: lr (double actually used), loss (forward loss on batch s "
                  "BEFORE the update), grad_norm (global L2 norm BEFORE clipping, as "
                  "returned by clip_grad_norm_), clip_coef = min(1, 1/(grad_norm+1e-6)) evaluated in fp32 "
                  "exactly as clip_grad_norm_ does (the factor the grads were multiplied by)."),
        "val_loss": "loss on batch 10 with the final params (torch.no_grad), after the 10 steps.",
        "final_params": ("final_params.safetensors: every parameter (HF names, float32) after "
                         "the 10 steps; the tied lm_head is model.embed_tokens.weight."),
        "manual_check": ("numpy float32 implementation of the textbook AdamW formula above. "
                         "lock_step: numpy params/moments updated with exactly the clipped "
                         "grads torch used, max |p_numpy - p_torch| after each step in "
                         "lock_step_max_abs_diff_per_step, final in "
                         "manual_vs_torch_max_abs_diff. independent: a fully separate "
                         "trajectory (torch only does forward/backward at the numpy params; "
                         "clipping and AdamW in numpy), final difference in "
                         "independent_max_abs_diff. lock_step is asserted < 1e-6 (this is the check "
                         "that the formula above is what torch does); independent is asserted < "
                         "1e-5 only, because its gradients are evaluated at params that differ "
                         "by fp32 rounding from torch's and the differences compound over the "
                         "steps (AdamW's per-element normalisation amplifies them)."),
        "initial_loss/initial_grad_norm": "step-0 loss and grad norm (equal grads.json).",
    }
    out = {
        "doc": doc,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "numpy_version": np.__version__,
        "model_dir": "tests/fixtures/tiny-llama",
        "data_seed": DATA_SEED,
        "B": B, "T": T, "vocab_size": 260, "num_steps": STEPS,
        "lr_max": LR_MAX, "lr_min": LR_MIN, "warmup": WARMUP, "total": TOTAL,
        "beta1": BETA1, "beta2": BETA2, "eps": EPS, "weight_decay": WD,
        "max_norm": MAX_NORM, "clip_eps": CLIP_EPS,
        "decay_params": [n for n, p in named if p.dim() >= 2],
        "no_decay_params": [n for n, p in named if p.dim() < 2],
        "tokens": data.tolist(),
        "initial_loss": fp(loss0.item()),
        "initial_grad_norm": fp(gnorm0.item()),
        "steps": steps,
        "val_batch_index": STEPS,
        "val_loss": fp(val_loss),
        "manual_check": {
            "manual_vs_torch_max_abs_diff": lock_diff,
            "lock_step_max_abs_diff_per_step": lock_step_maxdiff,
            "independent_max_abs_diff": ind_diff,
            "independent_losses": ind_losses,
            "tolerance": ASSERT_TOL,
            "independent_tolerance": IND_TOL,
        },
    }
    with open(os.path.join(OUT, "steps.json"), "w") as f:
        json.dump(out, f, indent=1)

    total = 0
    for fn in sorted(os.listdir(OUT)):
        sz = os.path.getsize(os.path.join(OUT, fn))
        total += sz
        print(f"{fn}: {sz} bytes")
    print(f"total {total} bytes")
    assert total < 1.5e6


if __name__ == "__main__":
    main()
