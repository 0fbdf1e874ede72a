#!/usr/bin/env python3
"""PEFT's EVA initialisation timed on the batches xdistill's EVA pass reads
(bench/lora_cost.sh, issue 14 criterion 6).

    peft_eva.py --model GGUF --data TOK --batch B --seq T --r R --alpha A
                --rho RHO --tau TAU [--threads 2] [--batches N]

The model: transformers' LlamaForCausalLM on the teacher GGUF (dequantised to fp32, as
xdistill loads it). The batches: xdistill's token file read directly (docs/data.md, "File
format"), its train split as one stream; pass j, row b = stream[(j·B + b)·T, +T), the rows
xd_eva_collect feeds its forward passes (xdistill packs rows from a stream of documents
and masks attention at document boundaries; give it data without boundaries inside the
rows read, e.g. one long document, for the same activations). All seven projections of
every block, LoraConfig(r, lora_alpha, init_lora_weights="eva",
EvaConfig(rho, tau)); initialize_lora_eva_weights is timed. Prints one JSON object:
seconds, forward passes, rank_pattern, alpha_pattern, peak RSS, versions."""
import argparse
import json
import os
import resource
import struct
import time

import numpy as np


def stream_of(path):
    """The train split of an xdistill token file as a numpy array of ids."""
    with open(path, "rb") as f:
        head = f.read(64)
        magic, version, vocab, _hash, n_docs, n_train, n_tok, tb, flags = struct.unpack(
            "<8sIIQQQQII", head[:56])
        assert magic == b"XDTOKENS" and version == 1, f"{path}: not an xdistill token file"
        offs = np.frombuffer(f.read(8 * (n_docs + 1)), dtype="<u8")
        toks = np.frombuffer(f.read(tb * n_tok), dtype="<u2" if tb == 2 else "<u4")
    return toks[: int(offs[n_train])].astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    for k, d in (("--model", None), ("--data", None)):
        ap.add_argument(k, required=True)
    for k, d in (("--batch", 4), ("--seq", 256), ("--r", 8), ("--threads", 2), ("--batches", 400)):
        ap.add_argument(k, type=int, default=d)
    for k, d in (("--alpha", 8.0), ("--rho", 2.0), ("--tau", 0.99)):
        ap.add_argument(k, type=float, default=d)
    a = ap.parse_args()
    import peft
    import torch
    import transformers
    from peft import EvaConfig, LoraConfig, get_peft_model, initialize_lora_eva_weights
    torch.set_num_threads(a.threads)
    s = stream_of(a.data)
    B, T = a.batch, a.seq
    n = min(a.batches, (len(s) - 1) // (B * T))
    batches = []
    for j in range(n):
        x = torch.from_numpy(s[j * B * T:(j + 1) * B * T].reshape(B, T).copy())
        batches.append({"input_ids": x, "attention_mask": torch.ones_like(x)})
    model = transformers.LlamaForCausalLM.from_pretrained(
        os.path.dirname(a.model), gguf_file=os.path.basename(a.model),
        dtype=torch.float32).eval()
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, init_lora_weights="eva",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"],
                     eva_config=EvaConfig(rho=a.rho, tau=a.tau))
    pm = get_peft_model(model, cfg, low_cpu_mem_usage=True)
    passes = [0]

    def forward(m, inputs):
        passes[0] += 1
        return m(**inputs)

    t0 = time.perf_counter()
    with torch.no_grad():
        initialize_lora_eva_weights(pm, batches, forward_fn=forward, show_progress_bar=False)
    sec = time.perf_counter() - t0
    c = pm.peft_config["default"]
    print(json.dumps({"bench": "peft_eva", "seconds": sec, "passes": passes[0],
                      "batches_available": n, "batch": B, "seq": T, "r": a.r, "rho": a.rho,
                      "tau": a.tau, "threads": a.threads,
                      "rank_pattern": c.rank_pattern, "alpha_pattern": c.alpha_pattern,
                      "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "peft": peft.__version__, "torch": torch.__version__,
                      "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
