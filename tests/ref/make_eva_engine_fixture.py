#!/usr/bin/env python3
"""Builds tests/fixtures/eva_engine.safetensors for tests/test_eva_engine.c: HF PEFT's
EVA initialisation (initialize_lora_eva_weights) of LoRA on tests/fixtures/tiny-llama
(2 layers, all seven projections, r=4, lora_alpha=8, rho=2, tau=0.99), fed the same
token batches the C test feeds xdistill's EVA pass (src/train/eva_init.h).

The token stream: N_BATCH * B * T + 1 ids drawn from a Zipf-like law over 40 ids
(a skewed spectrum, like text), no EOS (one document, so xdistill's packed rows
are PEFT's plain rows). PEFT batch j row b = stream[(j*B + b)*T : +T], attention mask
all ones, no labels (so no token is masked on either side). N_BATCH is large enough
that PEFT converges before its dataloader cycles (it cycles at the batch boundary,
xdistill's stream at the token boundary).

eva_engine.safetensors: "stream" [N*B*T + 1] (F16, exact for these ids); "A.<module>" (F32) PEFT's lora_A after EVA ([rank][in],
only the modules PEFT kept). eva_engine.json: r, lora_alpha, rho, tau, B, T, the
rank_pattern and alpha_pattern PEFT's config holds afterwards, torch's argsort(descending=
True) of six tie-heavy arrays (n = 5 .. 1000) and the versions.

Deterministic (fixed seeds, CPU). Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_eva_engine_fixture.py [out_path]
"""
import json
import os
import sys

import numpy as np
import peft
import torch
import transformers
from peft import EvaConfig, LoraConfig, get_peft_model, initialize_lora_eva_weights
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BASE = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures",
                                                          "eva_engine.safetensors")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA, RHO, TAU = 4, 8, 2.0, 0.99
B, T, N_BATCH = 4, 32, 400


def main():
    rng = np.random.default_rng(20261206)
    ids = np.arange(3, 43)
    p = 1.0 / np.arange(1, len(ids) + 1) ** 1.1
    stream = rng.choice(ids, size=N_BATCH * B * T + 1, p=p / p.sum())
    batches = []
    for j in range(N_BATCH):
        rows = [stream[(j * B + b) * T:(j * B + b) * T + T] for b in range(B)]
        x = torch.tensor(np.stack(rows), dtype=torch.long)
        batches.append({"input_ids": x, "attention_mask": torch.ones_like(x)})
    model = transformers.AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    cfg = LoraConfig(task_type="CAUSAL_LM", r=R, lora_alpha=ALPHA, target_modules=ALL,
                     init_lora_weights="eva", eva_config=EvaConfig(rho=RHO, tau=TAU))
    pm = get_peft_model(model, cfg, low_cpu_mem_usage=True)
    with torch.no_grad():
        initialize_lora_eva_weights(pm, batches, show_progress_bar=False)
    out = {"stream": torch.tensor(stream, dtype=torch.float16)}  # ids < 2048: exact
    for name, mod in pm.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            key = name.removeprefix("base_model.model.")
            out["A." + key] = mod.lora_A["default"].weight.detach().float().contiguous()
    c = pm.peft_config["default"]
    # torch's CPU argsort(descending=True) on tie-heavy arrays (it is not stable; EVA's
    # candidates tie exactly wherever layers share an input): for xd_eva_argsort_desc
    g = torch.Generator().manual_seed(7)
    sorts = []
    for n in (5, 17, 40, 112, 333, 1000):
        v = torch.randint(0, 6, (n,), generator=g).to(torch.float64) / 7
        sorts.append({"v": v.tolist(), "idx": v.argsort(descending=True).tolist()})
    meta = {"argsort_desc": sorts, "r": R, "lora_alpha": ALPHA, "rho": RHO, "tau": TAU, "batch": B, "seq": T,
            "rank_pattern": c.rank_pattern, "alpha_pattern": c.alpha_pattern,
            "peft_version": peft.__version__, "torch_version": torch.__version__}
    save_file(out, OUT)
    with open(OUT.removesuffix(".safetensors") + ".json", "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    ranks = {k[2:]: v.shape[0] for k, v in out.items() if k.startswith("A.")}
    print(f"wrote {OUT}: {len(ranks)} modules, ranks {sorted(ranks.values())} "
          f"(sum {sum(ranks.values())}, budget {R * 14}); rank_pattern {c.rank_pattern}")


if __name__ == "__main__":
    main()
