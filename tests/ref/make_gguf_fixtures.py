#!/usr/bin/env python3
"""Reference fixtures for the GGUF reader, made with gguf-py (llama.cpp's own
Python package), independent of our C code.

  tests/fixtures/quant_blocks.json  random blocks of every supported ggml type
                                    and their dequantisation by gguf-py (Q8_K,
                                    which gguf-py cannot dequantise: by ggml's
                                    own C dequantize_row_q8_K); every type is
                                    also checked here to be bit-identical
                                    between gguf-py and ggml's C code
  tests/fixtures/tiny-llama.gguf    tests/fixtures/tiny-llama converted the way
                                    llama.cpp's converter does it (q/k rows
                                    permuted), F32, with a small byte-level BPE
                                    vocabulary; its logits must equal the HF
                                    reference of tiny-llama
  tests/fixtures/tiny-qwen2.gguf    the same for tiny-qwen2 (biases, no permutation)
  tests/fixtures/tiny-kquant.gguf   a tiny llama (d_model 32, d_ff 256, 3 layers)
                                    stored the way mixed k-quant files are: its
                                    ffn_down in Q2_K, Q3_K and IQ4_XS (one per
                                    layer), attn_q/attn_k/ffn_up/token_embd in
                                    IQ4_NL, the rest in older types; quantised by
                                    ggml's own C quantisers
  tests/fixtures/tiny-kquant.json   its reference: HF transformers' fp32 logits with
                                    the weights gguf-py dequantises from that file,
                                    and sampled weights (HF layout) of every tensor

ggml's C code is the one llama-cpp-python ships (libggml-base), called with ctypes.
Run with the reference venv: ~/xd-ref/bin/python tests/ref/make_gguf_fixtures.py
"""
import ctypes
import importlib.metadata
import json
import os

import numpy as np
import gguf
import llama_cpp
from gguf.quants import dequantize
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
rng = np.random.default_rng(1234)

# byte offsets of the fp16 scale fields inside one block, per type
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "Q2_K": [80, 82], "Q3_K": [108], "IQ4_NL": [0], "IQ4_XS": [0],
}
# New types go at the end, so that the rng draws (and the fixture) of the old
# ones stay the same.
QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16",
               "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "Q8_K"]
GGML = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))


def ggml_dequantize(raw, name):
    """ggml's own C dequantize_row_<type> on raw blocks."""
    block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]
    n = len(raw) // nbytes * block
    fn = getattr(GGML, "dequantize_row_" + name.lower().replace("_k", "_K"))
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]
    out = np.zeros(n, dtype=np.float32)
    fn(bytes(raw), out.ctypes.data, n)
    return out


def ggml_quantize(x, name):
    """ggml's own C quantize_row_<type>_ref on rows of x (float32)."""
    qt = gguf.GGMLQuantizationType[name]
    block, nbytes = gguf.GGML_QUANT_SIZES[qt]
    x = np.ascontiguousarray(x, dtype=np.float32)
    fn = getattr(GGML, "quantize_row_" + name.lower().replace("_k", "_K") + "_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    out = np.zeros(x.size // block * nbytes, dtype=np.uint8)
    fn(x.ctypes.data, out.ctypes.data, x.size)
    return out.reshape(x.shape[0], -1)


def quant_fixture():
    out = {}
    for name in QUANT_TYPES:
        qt = gguf.GGMLQuantizationType[name]
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        nblocks = 3 if block > 1 else 64
        raw = bytearray(rng.integers(0, 256, size=nblocks * nbytes, dtype=np.uint8).tobytes())
        if name in F16_FIELDS:  # keep scales finite and modest
            for b in range(nblocks):
                for off in F16_FIELDS[name]:
                    h = np.float16(rng.uniform(-0.5, 0.5)).view(np.uint16)
                    raw[b * nbytes + off: b * nbytes + off + 2] = int(h).to_bytes(2, "little")
        elif name == "Q8_K":  # its d is an fp32
            for b in range(nblocks):
                raw[b * nbytes: b * nbytes + 4] = np.float32(rng.uniform(-0.5, 0.5)).tobytes()
        elif name == "F16":
            raw = bytearray(rng.normal(size=nblocks).astype(np.float16).tobytes())
        elif name == "BF16":
            f = rng.normal(size=nblocks).astype(np.float32)
            raw = bytearray((f.view(np.uint32) >> 16).astype(np.uint16).tobytes())
        c_ref = ggml_dequantize(raw, name) if block > 1 else None
        if name == "Q8_K":
            vals = c_ref
            ref = "ggml dequantize_row_q8_K (llama-cpp-python %s)" % llama_cpp.__version__
        else:
            vals = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qt).astype(np.float32)
            vals = vals.reshape(-1)
            ref = "gguf-py %s" % importlib.metadata.version("gguf")
            if c_ref is not None:  # the two references agree bit for bit
                assert np.array_equal(vals.view(np.uint32), c_ref.view(np.uint32)), name
        assert np.all(np.isfinite(vals)), name
        out[name] = {"type": int(qt), "n": int(vals.size), "hex": bytes(raw).hex(),
                     "values": [float(v) for v in vals.reshape(-1)], "reference": ref}
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


def add_tokenizer(w, vocab):
    """A small byte-level BPE vocabulary padded with special tokens to `vocab`."""
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


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (HF half-split
    RoPE layout -> interleaved pairs)."""
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    """The inverse of permute (GGUF q/k rows -> HF's layout)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
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
    add_tokenizer(w, vocab)
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


KQ_TOKENS = [1, 17, 42, 259, 100, 7, 200, 3, 128, 64, 255, 31]
# ggml type of each tensor of tiny-kquant.gguf (ffn_down: one per layer)
KQ_TYPES = {"token_embd": "IQ4_NL", "attn_q": "IQ4_NL", "attn_k": "IQ4_NL", "attn_v": "Q4_0",
            "attn_output": "Q8_0", "ffn_gate": "Q5_1", "ffn_up": "IQ4_NL",
            "ffn_down": ["Q2_K", "Q3_K", "IQ4_XS"]}
GGML_QUANTISED = {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"}  # gguf-py cannot quantise these


def kquant_fixture():
    import torch
    import transformers
    g = np.random.default_rng(4321)
    d, ff, n_layer, nh, nkv, vocab = 32, 256, 3, 2, 1, 260
    hd = d // nh
    path = os.path.join(FIX, "tiny-kquant.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(n_layer)
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    add_tokenizer(w, vocab)
    sd, samples, types = {}, {}, {}

    def put(gname, hfname, x, qname, heads=None):
        """Stores x (HF layout) as qname; the reference weight is what gguf-py
        dequantises back from the stored bytes."""
        if qname == "F32":
            w.add_tensor(gname, x)
            deq = x
        else:
            qt = gguf.GGMLQuantizationType[qname]
            stored = permute(x, heads) if heads else x
            raw = ggml_quantize(stored, qname) if qname in GGML_QUANTISED \
                else gguf.quants.quantize(stored, qt)
            w.add_tensor(gname, raw, raw_dtype=qt)
            deq = dequantize(raw, qt).astype(np.float32)
            assert deq.shape == x.shape, (gname, deq.shape)
            c_ref = ggml_dequantize(raw.tobytes(), qname).reshape(x.shape)
            assert np.array_equal(deq.view(np.uint32), c_ref.view(np.uint32)), gname
            rel = np.abs(deq - stored).max() / np.abs(stored).max()
            assert rel < 0.5, (gname, rel)  # a real quantisation, not noise
            if heads:
                deq = unpermute(deq, heads)
        sd[hfname] = torch.from_numpy(np.ascontiguousarray(deq))
        flat = deq.reshape(-1)
        idx = sorted({0, flat.size - 1, *g.choice(flat.size, size=30, replace=False).tolist()})
        samples[gname] = {"type": qname, "index": idx, "values": [float(flat[i]) for i in idx]}
        types[gname] = qname

    def mat(rows, cols):
        return (g.normal(size=(rows, cols)) * 0.1).astype(np.float32)

    def norm(n):
        return g.uniform(0.5, 1.5, size=n).astype(np.float32)

    put("token_embd.weight", "model.embed_tokens.weight", mat(vocab, d), KQ_TYPES["token_embd"])
    put("output_norm.weight", "model.norm.weight", norm(d), "F32")
    for i in range(n_layer):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        put(b + "attn_norm.weight", h + "input_layernorm.weight", norm(d), "F32")
        put(b + "attn_q.weight", h + "self_attn.q_proj.weight", mat(nh * hd, d), KQ_TYPES["attn_q"], nh)
        put(b + "attn_k.weight", h + "self_attn.k_proj.weight", mat(nkv * hd, d), KQ_TYPES["attn_k"], nkv)
        put(b + "attn_v.weight", h + "self_attn.v_proj.weight", mat(nkv * hd, d), KQ_TYPES["attn_v"])
        put(b + "attn_output.weight", h + "self_attn.o_proj.weight", mat(d, nh * hd), KQ_TYPES["attn_output"])
        put(b + "ffn_norm.weight", h + "post_attention_layernorm.weight", norm(d), "F32")
        put(b + "ffn_gate.weight", h + "mlp.gate_proj.weight", mat(ff, d), KQ_TYPES["ffn_gate"])
        put(b + "ffn_up.weight", h + "mlp.up_proj.weight", mat(ff, d), KQ_TYPES["ffn_up"])
        put(b + "ffn_down.weight", h + "mlp.down_proj.weight", mat(d, ff), KQ_TYPES["ffn_down"][i])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    torch.set_num_threads(1)
    cfg = transformers.LlamaConfig(hidden_size=d, num_hidden_layers=n_layer, num_attention_heads=nh,
                                   num_key_value_heads=nkv, intermediate_size=ff, vocab_size=vocab,
                                   max_position_embeddings=128, hidden_act="silu", rms_norm_eps=1e-6,
                                   rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1,
                                   eos_token_id=2, pad_token_id=None)
    cfg._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.tie_weights()
    state = model.state_dict()
    assert set(sd) | {"lm_head.weight"} == set(state), set(state) ^ set(sd)
    with torch.no_grad():
        for k, v in sd.items():
            state[k].copy_(v)
    assert torch.equal(model.lm_head.weight, sd["model.embed_tokens.weight"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([KQ_TOKENS]), use_cache=False).logits[0]
    ref = {"reference": "HF transformers %s LlamaForCausalLM fp32 eager on the weights gguf-py %s "
                        "dequantises from tiny-kquant.gguf (quantised by ggml, llama-cpp-python %s)"
                        % (transformers.__version__, importlib.metadata.version("gguf"),
                           llama_cpp.__version__),
           "types": types, "tokens": KQ_TOKENS,
           "logits": [[float("%.7g" % v) for v in row] for row in logits.tolist()],
           "weights": samples}
    with open(os.path.join(FIX, "tiny-kquant.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    print(f"tiny-kquant.gguf: {os.path.getsize(path)} bytes, logits std {logits.std():.3f}")


if __name__ == "__main__":
    quant_fixture()
    to_gguf("tiny-llama", "llama")
    to_gguf("tiny-qwen2", "qwen2")
    kquant_fixture()
    print("wrote quant_blocks.json, tiny-llama.gguf, tiny-qwen2.gguf, tiny-kquant.gguf/.json")
