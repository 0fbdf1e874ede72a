#!/usr/bin/env python3
"""Generate SmolLM2-135M-Instruct reference fixtures for xdistill's C tests.

The reference implementation is HF transformers (fp32, eager attention) running
the GGUF model fully dequantised to fp32.  This is independent of xdistill's C
code: weights are dequantised by gguf-py (and cross-checked against a small
numpy dequantiser written here), the forward pass is transformers' Llama, and
token ids come from llama.cpp's tokenizer (llama-cpp-python, vocab_only) with
the HF tokenizer built from the GGUF used only as a cross-check / fallback.

Outputs (in --out, default tests/fixtures next to this script's parent):
  smollm2_logits.json + smollm2_logits.bin   full-vocab logits at 4 positions
  smollm2_greedy.json                        32-token greedy continuations
  smollm2_ppl.json                           perplexity on a prefix of GPL-3

Usage:
  ~/xd-ref/bin/python tests/ref/make_smollm2_fixtures.py \
      [--model ~/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf] \
      [--out tests/fixtures] [--tokenizer auto|llama_cpp|hf]

Deterministic: no sampling, fixed thread count, no timestamps in the outputs.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time

import numpy as np

T0 = time.time()

DEFAULT_MODEL = os.environ.get("XD_TEACHER") or os.path.expanduser(
    "~/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures"))

VOCAB = 49152
N_HEAD = 9
N_HEAD_KV = 3

ENGLISH_TEXT = ("The quick brown fox jumps over the lazy dog, while the old farmer "
                "watches quietly from his porch.")
LOGITS_CHAT_USER = "What is the tallest mountain in the world?"

GREEDY_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "Translate 'good morning' to Spanish.",
]
GREEDY_NEW_TOKENS = 32

PPL_FILE = "/usr/share/common-licenses/GPL-3"
PPL_CTX = 512
PPL_STRIDE = 512
PPL_N_WINDOWS = 6           # 6 * 512 = 3072 tokens
PPL_N_TOKENS = PPL_CTX * PPL_N_WINDOWS
PPL_SHA256_FULL_FILE_EXPECTED = None  # recorded, not enforced

TOKENIZER_CHECK_STRINGS = [
    "In 2024, 12345 people paid $3.14 for 1000000 items.",
    "Version 10.0.19045 build 7 (x86_64)",
    "Hello world!  foo\n\nbar\tbaz   \n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "caf\u00e9 na\u00efve \u2014 \u201cquotes\u201d \u65e5\u672c\u8a9e \U0001F600",
]


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def f7(x):
    """float -> JSON-friendly float with 7 significant digits."""
    return float("%.7g" % float(x))


def dump_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
    log("wrote", path, os.path.getsize(path), "bytes")


# ---------------------------------------------------------------------------
# Independent numpy dequantisers (ggml block formats) for cross-checking
# ---------------------------------------------------------------------------

def np_dequant_q4_1(raw, n_el):
    # block_q4_1: fp16 d, fp16 m, 16 bytes qs; x[j] = d*(qs[j]&15)+m,
    # x[j+16] = d*(qs[j]>>4)+m
    b = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, 20)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = b[:, 4:20]
    lo = (qs & 0x0F).astype(np.float32)
    hi = (qs >> 4).astype(np.float32)
    q = np.concatenate([lo, hi], axis=1)
    out = d * q + m
    assert out.size == n_el
    return out.reshape(-1)


def np_dequant_q8_0(raw, n_el):
    # block_q8_0: fp16 d, 32 int8 qs; x[j] = d*qs[j]
    b = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, 34)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    qs = b[:, 2:34].copy().view(np.int8).astype(np.float32)
    out = d * qs
    assert out.size == n_el
    return out.reshape(-1)


def llama_cpp_permute(w, n_head):
    """What convert_hf_to_gguf.py does to q_proj/k_proj rows (HF -> GGUF)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def gguf_to_hf_name(name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")
    assert parts[0] == "blk", name
    i = parts[1]
    sub = {
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }[parts[2]]
    return "model.layers.%s.%s.%s" % (i, sub, parts[3])


def verify_weights(reader, model):
    """Compare every GGUF tensor (dequantised two ways) with the HF state dict."""
    import gguf
    from gguf.quants import dequantize
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    stats = {"n_tensors": 0, "max_abs_diff_hf_vs_ggufpy": 0.0,
             "max_abs_diff_hf_vs_numpy_dequant": 0.0,
             "max_abs_diff_ggufpy_vs_numpy_dequant": 0.0,
             "qk_permutation_checked": 0, "examples": {}}
    for t in reader.tensors:
        ne = [int(x) for x in t.shape]           # ggml order: ne0 (fastest) first
        np_shape = tuple(reversed(ne))
        n_el = int(np.prod(ne))
        qt = t.tensor_type
        ref = np.asarray(dequantize(t.data, qt), dtype=np.float32).reshape(np_shape)
        if qt == gguf.GGMLQuantizationType.Q4_1:
            mine = np_dequant_q4_1(t.data, n_el).reshape(np_shape)
        elif qt == gguf.GGMLQuantizationType.Q8_0:
            mine = np_dequant_q8_0(t.data, n_el).reshape(np_shape)
        elif qt == gguf.GGMLQuantizationType.F32:
            mine = np.asarray(t.data, dtype=np.float32).reshape(np_shape)
        else:
            raise SystemExit("unexpected tensor type %s for %s" % (qt.name, t.name))
        hf = sd[gguf_to_hf_name(t.name)].astype(np.float32)
        if t.name.endswith("attn_q.weight"):
            hf = llama_cpp_permute(hf, N_HEAD)
            stats["qk_permutation_checked"] += 1
        elif t.name.endswith("attn_k.weight"):
            hf = llama_cpp_permute(hf, N_HEAD_KV)
            stats["qk_permutation_checked"] += 1
        assert hf.shape == np_shape, (t.name, hf.shape, np_shape)
        d1 = float(np.max(np.abs(hf - ref)))
        d2 = float(np.max(np.abs(hf - mine)))
        d3 = float(np.max(np.abs(ref - mine)))
        stats["n_tensors"] += 1
        stats["max_abs_diff_hf_vs_ggufpy"] = max(stats["max_abs_diff_hf_vs_ggufpy"], d1)
        stats["max_abs_diff_hf_vs_numpy_dequant"] = max(stats["max_abs_diff_hf_vs_numpy_dequant"], d2)
        stats["max_abs_diff_ggufpy_vs_numpy_dequant"] = max(stats["max_abs_diff_ggufpy_vs_numpy_dequant"], d3)
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                      "blk.0.attn_v.weight", "blk.17.ffn_down.weight", "blk.29.attn_q.weight",
                      "blk.29.attn_k.weight", "output_norm.weight"):
            stats["examples"][t.name] = {
                "type": qt.name, "ne": ne, "max_abs_diff_hf_vs_ggufpy": d1,
                "max_abs_diff_hf_vs_numpy_dequant": d2,
                "first4": [f7(v) for v in ref.reshape(-1)[:4]],
                "sum": float(np.sum(ref.astype(np.float64))),
            }
        # Sanity that the permutation check is meaningful: un-permuted must differ.
        if t.name == "blk.0.attn_q.weight":
            raw_hf = sd[gguf_to_hf_name(t.name)]
            stats["examples"][t.name]["max_abs_diff_without_permutation"] = float(
                np.max(np.abs(raw_hf - ref)))
    # tied embeddings
    tied = float(np.max(np.abs(sd["lm_head.weight"] - sd["model.embed_tokens.weight"])))
    stats["max_abs_diff_lm_head_vs_token_embd"] = tied
    n_hf_params = len([k for k in sd if k != "lm_head.weight"])
    stats["n_hf_tensors_excluding_lm_head"] = n_hf_params
    return stats


# ---------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------

class Tok:
    def __init__(self, model_path, hf_tok, mode):
        self.hf = hf_tok
        self.lc = None
        self.source = None
        if mode in ("auto", "llama_cpp"):
            try:
                from llama_cpp import Llama
                self.lc = Llama(model_path=model_path, vocab_only=True, verbose=False)
                self.source = "llama-cpp-python %s (llama.cpp tokenizer, vocab_only)" % (
                    __import__("llama_cpp").__version__)
            except Exception as e:  # pragma: no cover
                if mode == "llama_cpp":
                    raise
                log("llama-cpp-python unavailable (%s); falling back to HF tokenizer" % e)
        if self.lc is None:
            self.source = "transformers tokenizer built from the GGUF (fallback)"
        self.mismatches = []
        self.n_checked = 0

    def hf_encode(self, text):
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode(self, text):
        h = self.hf_encode(text)
        if self.lc is None:
            return h
        ids = list(self.lc.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        self.n_checked += 1
        if ids != h:
            i = next((k for k in range(min(len(ids), len(h))) if ids[k] != h[k]),
                     min(len(ids), len(h)))
            self.mismatches.append({
                "text_head": text[:80], "n_llama_cpp": len(ids), "n_hf": len(h),
                "first_diff_index": i,
                "llama_cpp_pieces": [self.decode([x]) for x in ids[max(0, i - 3):i + 4]],
                "hf_pieces": [self.decode([x]) for x in h[max(0, i - 3):i + 4]]})
        return ids

    def primary_encode(self, text):
        """Same ids as encode() but without recording a cross-check."""
        if self.lc is None:
            return self.hf_encode(text)
        return list(self.lc.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def decode(self, ids):
        return self.hf.decode(ids, skip_special_tokens=False,
                              clean_up_tokenization_spaces=False)

    def decode_lc(self, ids):
        if self.lc is None:
            return None
        return self.lc.detokenize(ids, special=True).decode("utf-8", errors="replace")


def check_digit_split(tok):
    """llama.cpp's 'smollm' pre-tokeniser splits every digit individually."""
    res = []
    ok = True
    for s in TOKENIZER_CHECK_STRINGS:
        ids = tok.encode(s)
        pieces = [tok.decode([i]) for i in ids]
        for p in pieces:
            if sum(c.isdigit() for c in p) > 1:
                ok = False
        res.append({"text": s, "ids": ids, "hf_ids": tok.hf_encode(s)})
    return ok, res


def render_chat(template_src, messages, add_generation_prompt=True):
    import jinja2
    env = jinja2.Environment(loader=jinja2.BaseLoader(), keep_trailing_newline=True)
    return env.from_string(template_src).render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token="<|im_start|>", eos_token="<|im_end|>")


# ---------------------------------------------------------------------------
# Model helpers
# ---------------------------------------------------------------------------

def full_logits(model, ids):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()          # [n, vocab]


def top2_margin(row):
    part = np.partition(row, -2)[-2:]
    return float(part[1] - part[0])


def greedy(model, ids, n_new):
    """Manual greedy loop with KV cache; never stops early (ignores EOS)."""
    import torch
    from transformers import DynamicCache
    out_ids, margins, chosen_logits = [], [], []
    cache = DynamicCache()
    inp = torch.tensor([ids], dtype=torch.long)
    pos = 0
    with torch.no_grad():
        for _ in range(n_new):
            n = inp.shape[1]
            out = model(input_ids=inp, past_key_values=cache, use_cache=True,
                        position_ids=torch.arange(pos, pos + n).unsqueeze(0))
            cache = out.past_key_values
            pos += n
            row = out.logits[0, -1].float().numpy()
            nxt = int(np.argmax(row))
            out_ids.append(nxt)
            margins.append(top2_margin(row))
            chosen_logits.append(float(row[nxt]))
            inp = torch.tensor([[nxt]], dtype=torch.long)
    return out_ids, margins, chosen_logits


def llama_cpp_logits_crosscheck(model_path, seq_meta, bin_rows, threads):
    """Sanity check of the HF forward pass against llama.cpp itself.

    llama.cpp runs the Q4_1/Q8_0 weights with quantised activations, so it is
    NOT bit-comparable to the fp32 reference; this only guards against gross
    semantic mismatches (rope layout, GQA mapping, norms).  Not written into
    the fixtures' expectations, only into smollm2_ref_meta.json."""
    try:
        from llama_cpp import Llama
    except Exception:
        return None
    llm = Llama(model_path=model_path, n_ctx=512, n_batch=512, logits_all=True,
                n_threads=threads, verbose=False)
    res = []
    for sm in seq_meta:
        llm.reset()
        llm.eval(sm["ids"])
        sc = np.array(llm.scores[:sm["n_tokens"]], dtype=np.float32)
        am = [int(i) for i in np.argmax(sc, axis=1)]
        agree = sum(int(a == b) for a, b in zip(am, sm["argmax"]))
        diffs = []
        for k, p in enumerate(sm["positions"]):
            diffs.append(float(np.max(np.abs(sc[p] - bin_rows[sm["bin_row_offset"] + k]))))
        res.append({"name": sm["name"], "argmax_agree": "%d/%d" % (agree, sm["n_tokens"]),
                    "max_abs_logit_diff_at_stored_positions": [f7(d) for d in diffs]})
    del llm
    return res


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--tokenizer", default="auto", choices=["auto", "llama_cpp", "hf"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import transformers
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.abspath(args.model)
    mdir, mname = os.path.split(model_path)
    model_sha = sha256_file(model_path)
    log("model", model_path, "sha256", model_sha)

    model = AutoModelForCausalLM.from_pretrained(
        mdir, gguf_file=mname, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cfg = model.config
    assert cfg.num_hidden_layers == 30 and cfg.hidden_size == 576
    assert cfg.num_attention_heads == N_HEAD and cfg.num_key_value_heads == N_HEAD_KV
    assert cfg.vocab_size == VOCAB and cfg.tie_word_embeddings
    log("HF model loaded:", type(model).__name__, "attn", cfg._attn_implementation,
        "rope_theta", getattr(cfg, "rope_parameters", None), "eps", cfg.rms_norm_eps)

    reader = gguf.GGUFReader(model_path)
    wstats = verify_weights(reader, model)
    log("weight check:", json.dumps({k: v for k, v in wstats.items() if k != "examples"}))
    assert wstats["n_tensors"] == len(reader.tensors) == 272
    assert wstats["max_abs_diff_hf_vs_ggufpy"] == 0.0, "HF weights != gguf-py dequant"
    assert wstats["max_abs_diff_hf_vs_numpy_dequant"] <= 1e-6
    assert wstats["max_abs_diff_lm_head_vs_token_embd"] == 0.0
    assert wstats["examples"]["blk.0.attn_q.weight"]["max_abs_diff_without_permutation"] > 1e-3

    chat_template = reader.fields["tokenizer.chat_template"].contents()
    hf_tok = AutoTokenizer.from_pretrained(mdir, gguf_file=mname)
    tok = Tok(model_path, hf_tok, args.tokenizer)
    log("tokenizer source:", tok.source)
    digits_ok, tok_checks = check_digit_split(tok)
    log("digit split ok:", digits_ok)
    if not digits_ok:
        raise SystemExit("tokenizer does not split digits individually; not the smollm pre-tokenizer")

    common = {
        "model_file": mname,
        "model_sha256": model_sha,
        "reference": "HF transformers %s LlamaForCausalLM, fp32, attn_implementation=eager, "
                     "weights = GGUF dequantised to fp32 (torch %s, gguf-py %s)" % (
                         transformers.__version__, torch.__version__,
                         _pkg_version("gguf")),
        "tokenizer": tok.source,
        "bos": "no BOS token is prepended anywhere (GGUF tokenizer.ggml.add_bos_token = false)",
        "generator": "tests/ref/make_smollm2_fixtures.py",
    }

    # ------------------------------------------------------------------ logits
    chat_text = render_chat(chat_template, [{"role": "user", "content": LOGITS_CHAT_USER}])
    seqs = [("english", ENGLISH_TEXT), ("chat", chat_text)]
    bin_rows = []
    seq_meta = []
    global_max_abs = 0.0
    for name, text in seqs:
        ids = tok.encode(text)
        n = len(ids)
        lg = full_logits(model, ids)
        assert lg.shape == (n, VOCAB)
        positions = [0, n // 2, n - 2, n - 1]
        argmax = [int(i) for i in np.argmax(lg, axis=1)]
        margins = [f7(top2_margin(r)) for r in lg]
        row0 = len(bin_rows)
        for p in positions:
            bin_rows.append(lg[p].astype("<f4"))
        stored = lg[positions]
        mx_stored = float(np.max(np.abs(stored)))
        mx_all = float(np.max(np.abs(lg)))
        global_max_abs = max(global_max_abs, mx_stored)
        lse = []
        for p in positions:
            r = lg[p].astype(np.float64)
            m = r.max()
            lse.append(float(m + math.log(np.exp(r - m).sum())))
        seq_meta.append({
            "name": name, "text": text, "ids": ids, "n_tokens": n,
            "positions": positions, "bin_row_offset": row0,
            "argmax": argmax,
            "top1_top2_margin": margins,
            "max_logit": [f7(v) for v in lg.max(axis=1)],
            "stored_logsumexp": [f7(v) for v in lse],
            "stored_top5": [[int(i) for i in np.argsort(-lg[p], kind="stable")[:5]]
                            for p in positions],
            "max_abs_logit_stored": f7(mx_stored),
            "max_abs_logit_all_positions": f7(mx_all),
        })
        log("logits", name, "n", n, "positions", positions, "max|logit|", mx_stored,
            "argmax@stored", [argmax[p] for p in positions])
    lc_check = llama_cpp_logits_crosscheck(model_path, seq_meta, bin_rows, args.threads)
    if lc_check is not None:
        log("llama.cpp (quantised matmuls) vs HF fp32 logits:", json.dumps(lc_check))
    binp = os.path.join(args.out, "smollm2_logits.bin")
    with open(binp, "wb") as f:
        f.write(np.stack(bin_rows).astype("<f4").tobytes())
    log("wrote", binp, os.path.getsize(binp), "bytes")
    dump_json(os.path.join(args.out, "smollm2_logits.json"), {
        **common,
        "bin_file": "smollm2_logits.bin",
        "bin_format": "raw little-endian float32, row-major [n_rows][vocab_size], no header; "
                      "row (bin_row_offset + k) of a sequence holds the logits for "
                      "positions[k] of that sequence (logits at position p predict token p+1, "
                      "computed over the whole sequence ids[0..n-1] with causal attention)",
        "vocab_size": VOCAB,
        "n_rows": len(bin_rows),
        "max_abs_logit": f7(global_max_abs),
        "chat_template_source": "GGUF tokenizer.chat_template rendered with jinja2, "
                                "add_generation_prompt=true",
        "sequences": seq_meta,
    })

    # ------------------------------------------------------------------ greedy
    greedy_items = []
    for prompt in GREEDY_PROMPTS:
        text = render_chat(chat_template, [{"role": "user", "content": prompt}])
        ids = tok.encode(text)
        new_ids, margins, chosen = greedy(model, ids, GREEDY_NEW_TOKENS)
        # cross-check against model.generate (stops at EOS, so compare prefix)
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               do_sample=False, max_new_tokens=GREEDY_NEW_TOKENS,
                               repetition_penalty=1.0, use_cache=True,
                               pad_token_id=cfg.pad_token_id)
        gen_ids = [int(x) for x in g[0, len(ids):]]
        assert new_ids[:len(gen_ids)] == gen_ids, ("generate() disagrees", new_ids, gen_ids)
        eos = cfg.eos_token_id
        first_eos = new_ids.index(eos) if eos in new_ids else None
        item = {
            "prompt": prompt,
            "prompt_text": text,
            "prompt_ids": ids,
            "new_ids": new_ids,
            "text": tok.decode(new_ids),
            "text_until_eos": tok.decode(new_ids[:first_eos] if first_eos is not None else new_ids),
            "first_eos_index": first_eos,
            "step_top1_top2_margin": [f7(m) for m in margins],
            "step_chosen_logit": [f7(c) for c in chosen],
            "min_margin": f7(min(margins)),
        }
        lc_text = tok.decode_lc(new_ids)
        if lc_text is not None:
            item["text_llama_cpp_detokenize"] = lc_text
        greedy_items.append(item)
        log("greedy", repr(prompt), "->", repr(item["text"]), "min margin %.4f" % min(margins))
    dump_json(os.path.join(args.out, "smollm2_greedy.json"), {
        **common,
        "n_new_tokens": GREEDY_NEW_TOKENS,
        "method": "argmax (greedy, do_sample=False, no repetition penalty, temperature 1) with "
                  "KV cache; exactly n_new_tokens are generated and generation does NOT stop "
                  "at EOS (<|im_end|> id %d) - first_eos_index gives where it was first emitted "
                  "(null if never). Cross-checked equal to model.generate() up to its EOS stop. "
                  "step_top1_top2_margin[k] is the logit gap behind new_ids[k]; if the C "
                  "implementation diverges only after a step with a tiny margin (< ~1e-3) "
                  "that is a near-tie, not a bug." % cfg.eos_token_id,
        "chat_template_source": "GGUF tokenizer.chat_template rendered with jinja2, "
                                "messages=[{role:user, content:prompt}], add_generation_prompt=true "
                                "(the template inserts the default system prompt)",
        "prompts": greedy_items,
    })

    # ------------------------------------------------------------------ ppl
    if not os.path.exists(PPL_FILE):
        raise SystemExit("missing %s" % PPL_FILE)
    with open(PPL_FILE, "rb") as f:
        data = f.read()
    file_sha = hashlib.sha256(data).hexdigest()
    # smallest byte count ending at a newline whose tokenisation has >= PPL_N_TOKENS
    # tokens; estimate from the full file's tokens/byte ratio, then walk lines.
    lines_end = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    n_bytes = None
    for e in lines_end:
        if e < 3 * PPL_N_TOKENS:  # ~>4 bytes/token in this text; cheap skip
            continue
        if len(tok.primary_encode(data[:e].decode("utf-8"))) >= PPL_N_TOKENS + 8:
            n_bytes = e
            break
    assert n_bytes is not None
    text = data[:n_bytes].decode("utf-8")
    all_ids = tok.encode(text)
    assert len(all_ids) >= PPL_N_TOKENS
    ids = all_ids[:PPL_N_TOKENS]
    total_nll = 0.0
    n_scored = 0
    windows = []
    for w in range(PPL_N_WINDOWS):
        begin = w * PPL_STRIDE
        end = min(begin + PPL_CTX, len(ids))
        win = ids[begin:end]
        lg = full_logits(model, win).astype(np.float64)
        m = lg.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
        tgt = np.array(win[1:])
        nll = lse[:-1] - lg[np.arange(len(win) - 1), tgt]
        s = float(nll.sum())
        total_nll += s
        n_scored += len(win) - 1
        windows.append({"begin": begin, "end": end, "nll_sum": s, "n_scored": len(win) - 1,
                        "ppl": math.exp(s / (len(win) - 1))})
        log("ppl window", w, "nll_sum %.4f" % s, "ppl %.4f" % math.exp(s / (len(win) - 1)))
    ppl = math.exp(total_nll / n_scored)

    # cross-check against HF's labels-based loss on window 0 (mean CE over 511 tokens)
    with torch.no_grad():
        t = torch.tensor([ids[:PPL_CTX]])
        hf_loss = float(model(input_ids=t, labels=t, use_cache=False).loss)
    assert abs(hf_loss - windows[0]["nll_sum"] / windows[0]["n_scored"]) < 1e-4, (
        hf_loss, windows[0])
    log("ppl", ppl, "total_nll", total_nll, "n_scored", n_scored)

    dump_json(os.path.join(args.out, "smollm2_ppl.json"), {
        **common,
        "file": PPL_FILE,
        "file_sha256": file_sha,
        "file_size": len(data),
        "byte_range": [0, n_bytes],
        "byte_range_desc": "the first %d bytes of the file (ends at a newline), decoded as "
                           "UTF-8 (the text is ASCII)" % n_bytes,
        "n_tokens_of_byte_range": len(all_ids),
        "ctx": PPL_CTX,
        "stride": PPL_STRIDE,
        "n_tokens": len(ids),
        "n_windows": PPL_N_WINDOWS,
        "total_nll": total_nll,
        "n_scored": n_scored,
        "mean_nll": total_nll / n_scored,
        "ppl": ppl,
        "convention": (
            "Tokenise the first byte_range[1] bytes of the file with the GGUF tokenizer "
            "(add_bos=false, no special-token parsing issues: the text is plain ASCII) and keep "
            "the first n_tokens=%d tokens (token_ids below). Split them into n_windows "
            "non-overlapping windows ids[w*stride : w*stride+ctx] (stride == ctx == %d, so "
            "every window is full). Evaluate each window independently from an empty KV cache "
            "at positions 0..ctx-1, no BOS. In each window score every token except the first: "
            "for j=1..ctx-1, nll_j = logsumexp(logits[j-1]) - logits[j-1][win[j]] (natural log). "
            "total_nll = sum over windows and j (%d scored tokens = n_windows*(ctx-1)); "
            "ppl = exp(total_nll / n_scored). This is HF's sliding-window perplexity recipe with "
            "stride == max_length and token-weighted averaging; it is NOT llama-perplexity's "
            "convention (which scores only the second half of each window and adds BOS). "
            "Reference computed with fp32 logits and float64 log-softmax/accumulation."
            % (len(ids), PPL_CTX, n_scored)),
        "windows": windows,
        "hf_labels_loss_window0": hf_loss,
        "token_ids": ids,
    })

    # ------------------------------------------------------------------ meta
    tok_info = {
        "source": tok.source,
        "digit_split_ok": digits_ok,
        "n_texts_compared_llama_cpp_vs_hf": tok.n_checked,
        "n_mismatches_llama_cpp_vs_hf": len(tok.mismatches),
        "mismatches": tok.mismatches[:5],
        "note": "ids in the fixtures come from the first tokenizer (source); llama.cpp's "
                "'smollm' pre-tokenizer keeps a whitespace run before a digit whole "
                "(e.g. '\\n\\n  ' then '0', like the original HF SmolLM2 tokenizer), "
                "which transformers' GGUF-built tokenizer does not",
        "checks": tok_checks,
    }
    log("tokenizer llama.cpp vs HF: %d texts, %d mismatches" % (tok.n_checked, len(tok.mismatches)))
    dump_json(os.path.join(args.out, "smollm2_ref_meta.json"), {
        **common,
        "weight_verification": wstats,
        "llama_cpp_quantised_logits_crosscheck": lc_check,
        "tokenizer_checks": tok_info,
        "config": {"n_layer": cfg.num_hidden_layers, "d_model": cfg.hidden_size,
                   "n_head": cfg.num_attention_heads, "n_head_kv": cfg.num_key_value_heads,
                   "head_dim": cfg.head_dim, "d_ff": cfg.intermediate_size,
                   "vocab": cfg.vocab_size, "rms_norm_eps": cfg.rms_norm_eps,
                   "rope": str(getattr(cfg, "rope_parameters", None)),
                   "tie_word_embeddings": cfg.tie_word_embeddings},
    })
    log("done; elapsed %.1f s" % (time.time() - T0))


if __name__ == "__main__":
    main()
