#!/usr/bin/env python3
"""Reference fixtures for the GGUF reader, made with gguf-py (llama.cpp's own
Python package), independent of our C code.

  tests/fixtures/quant_blocks.json  random blocks of every supported ggml type
                                    and their dequantisation by gguf-py
  tests/fixtures/tiny-llama.gguf    tests/fixtures/tiny-llama converted the way
                                    llama.cpp's converter does it (q/k rows
                                    permuted), F32, with a small byte-level BPE
                                    vocabulary; its logits must equal the HF
                                    reference of tiny-llama
  tests/fixtures/tiny-qwen2.gguf    the same for tiny-qwen2 (biases, no permutation)

Run with the reference venv: /root/xd-ref/bin/python tests/ref/make_gguf_fixtures.py
"""
import json
import os

import numpy as np
import gguf
from gguf.quants import dequantize
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
rng = np.random.default_rng(1234)

# byte offsets of the fp16 scale fields inside one block, per type
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}


def quant_fixture():
    out = {}
    for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"]:
        qt = gguf.GGMLQuantizationType[name]
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        nblocks = 3 if block > 1 else 64
        raw = bytearray(rng.integers(0, 256, size=nblocks * nbytes, dtype=np.uint8).tobytes())
        if name in F16_FIELDS:  # keep scales finite and modest
            for b in range(nblocks):
                for off in F16_FIELDS[name]:
                    h = np.float16(rng.uniform(-0.5, 0.5)).view(np.uint16)
                    raw[b * nbytes + off: b * nbytes + off + 2] = int(h).to_bytes(2, "little")
        elif name == "F16":
            raw = bytearray(rng.normal(size=nblocks).astype(np.float16).tobytes())
        elif name == "BF16":
            f = rng.normal(size=nblocks).astype(np.float32)
            raw = bytearray((f.view(np.uint32) >> 16).astype(np.uint16).tobytes())
        vals = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qt).astype(np.float32)
        out[name] = {"type": int(qt), "n": int(vals.size), "hex": bytes(raw).hex(),
                     "values": [float(v) for v in vals.reshape(-1)]}
    with open(os.path.join(FIX, "quant_blocks.json"), "w") as f:
        json.dump(out, f)


def byte_vocab():
    """GPT-2 byte-to-unicode table, the 256 base tokens of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (HF half-split
    RoPE layout -> interleaved pairs)."""
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def to_gguf(name, arch):
    src = os.path.join(FIX, name)
    cfg = json.load(open(os.path.join(src, "config.json")))
    sd = load_file(os.path.join(src, "model.safetensors"))
    vocab = cfg["vocab_size"]
    w = gguf.GGUFWriter(os.path.join(FIX, name + ".gguf"), arch)
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    rope = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    tokens = byte_vocab() + ["Ġt", "he"]
    tokens += ["<|endoftext|>", "<|im_start|>"] + [f"<|extra_{i}|>" for i in range(vocab - len(tokens) - 2)]
    types = [1] * 258 + [3] * (vocab - 258)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ t", "h e"])
    w.add_bos_token_id(258)
    w.add_eos_token_id(258)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_proj.bias": "attn_q.bias",
                 "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
                 "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
                 "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for k, v in sd.items():
        if k.startswith("model.layers."):
            parts = k.split(".")
            layer, rest = parts[2], ".".join(parts[3:])
            gname = f"blk.{layer}.{per_layer[rest]}"
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                v = permute(v, nh)
            if arch == "llama" and rest == "self_attn.k_proj.weight":
                v = permute(v, nkv)
        else:
            gname = names[k]
        w.add_tensor(gname, np.ascontiguousarray(v.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    quant_fixture()
    to_gguf("tiny-llama", "llama")
    to_gguf("tiny-qwen2", "qwen2")
    print("wrote quant_blocks.json, tiny-llama.gguf, tiny-qwen2.gguf")
