#!/usr/bin/env python3
"""Builds the tiny reference models in tests/fixtures/ with HF transformers.

Each model is a small random network of one supported architecture, saved with
save_pretrained (config.json + safetensors), plus:
  reference.json  {"tokens": [12 ids], "logits": [[vocab floats] x 12]} from
                  HF's own fp32 eager forward pass (the independent reference
                  that our C forward pass is compared against);
  tensors.json    [{"name", "dtype", "shape", "first": [4 values as fp32]}] so
                  the safetensors reader can be checked against what was written.

Deterministic: fixed seeds, CPU only. Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_tiny_models.py [out_dir]
"""
import copy
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")

# Sizes are chosen to keep every fixture small yet exercise the awkward cases:
# a vocabulary and FFN width that are not powers of two, GQA (4 heads, 2 kv
# heads) and a head_dim (12) with rope frequencies on both sides of the
# Llama-3 scaling band.
TOKENS = [1, 17, 42, 259, 100, 7, 200, 3, 128, 64, 255, 31]
COMMON = dict(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=80,
    vocab_size=260,
    max_position_embeddings=128,
    hidden_act="silu",
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
)


def randomise(model, seed):
    """std-0.1 weights, random biases, norm weights spread around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)  # U(0.5, 1.5)
            else:  # weights and biases
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def build(cls_cfg, cls_model, seed, **kw):
    cfg = cls_cfg(**COMMON, **kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = cls_model(cfg).to(torch.float32).eval()
    randomise(model, seed)
    if cfg.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def reference_logits(model):
    model = model.to(torch.float32).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([TOKENS]), use_cache=False)
    return out.logits[0].to(torch.float32)


def tensor_list(d):
    """name, dtype, shape, first 4 values of every tensor in a saved model dir."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    rows = []
    for f in files:
        with safe_open(os.path.join(d, f), framework="pt") as st:
            for name in st.keys():
                t = st.get_tensor(name)
                rows.append({
                    "name": name,
                    "file": f,
                    "dtype": str(t.dtype).replace("torch.", ""),
                    "shape": list(t.shape),
                    "first": [float(x) for x in t.flatten()[:4].to(torch.float32)],
                })
    rows.sort(key=lambda r: r["name"])
    return rows


def check_reload(d, logits):
    """What was saved must reproduce the reference when HF loads it back."""
    m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                          attn_implementation="eager")
    diff = (reference_logits(m) - logits).abs().max().item()
    assert diff < 1e-5, (d, diff)


def fmt(x):
    return float("%.7g" % x)


def save(model, name, logits, **save_kw):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, **save_kw)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits": [[fmt(v) for v in row] for row in logits.tolist()]},
                  f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(d, "tensors.json"), "w") as f:
        rows = [json.dumps(r, separators=(",", ":")) for r in tensor_list(d)]
        f.write("[\n" + ",\n".join(rows) + "\n]\n")
    check_reload(d, logits)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: {sorted(os.listdir(d))} {size} bytes, logits std {logits.std():.3f}")


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    T = transformers

    llama = build(T.LlamaConfig, T.LlamaForCausalLM, 1001, tie_word_embeddings=True,
                  rms_norm_eps=1e-6, rope_theta=10000.0)
    lg = reference_logits(llama)
    save(llama, "tiny-llama", lg)
    # The same weights in several shards (+ model.safetensors.index.json).
    save(llama, "tiny-llama-sharded", lg, max_shard_size="60KB")

    llama3 = build(T.LlamaConfig, T.LlamaForCausalLM, 1002, tie_word_embeddings=True,
                   rms_norm_eps=1e-5,
                   rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64})
    lg3 = reference_logits(llama3)
    # the scaling must visibly change the logits, or the fixture tests nothing
    plain = copy.deepcopy(llama3.config)
    plain.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
    unscaled = T.LlamaForCausalLM(plain).eval()
    unscaled.load_state_dict(llama3.state_dict())
    diff = (reference_logits(unscaled) - lg3).abs().max().item()
    assert diff > 1e-2, diff
    print(f"llama3 rope scaling moves the logits by up to {diff:.3f}")
    save(llama3, "tiny-llama3rope", lg3)

    qwen2 = build(T.Qwen2Config, T.Qwen2ForCausalLM, 2001, tie_word_embeddings=False,
                  rms_norm_eps=1e-6, rope_theta=10000.0)
    save(qwen2, "tiny-qwen2", reference_logits(qwen2))

    # bf16: the weights are rounded to bf16 and saved as such; the reference
    # runs those same rounded weights in fp32. (Rounding a copy's parameters
    # rather than casting the module keeps the rope inv_freq buffer exact.)
    qwen2_rounded = copy.deepcopy(qwen2)
    with torch.no_grad():
        for p in qwen2_rounded.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    lg_bf16 = reference_logits(qwen2_rounded)
    qwen2_bf16 = copy.deepcopy(qwen2_rounded).to(torch.bfloat16)
    qwen2_bf16.config.dtype = torch.bfloat16
    save(qwen2_bf16, "tiny-qwen2-bf16", lg_bf16)

    qwen3 = build(T.Qwen3Config, T.Qwen3ForCausalLM, 3001, tie_word_embeddings=False,
                  head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False)
    save(qwen3, "tiny-qwen3", reference_logits(qwen3))

    olmo2 = build(T.Olmo2Config, T.Olmo2ForCausalLM, 4001, tie_word_embeddings=False,
                  rms_norm_eps=1e-6, rope_theta=10000.0)
    save(olmo2, "tiny-olmo2", reference_logits(olmo2))


if __name__ == "__main__":
    main()
