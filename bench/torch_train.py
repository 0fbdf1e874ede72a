#!/usr/bin/env python3
"""PyTorch CPU fp32 baseline for bench/bench_train.c (issue 4, criterion 5).

    torch_train.py --tokens FILE [--threads 2] [--attn eager|sdpa]
                   [--optim default|foreach|fused] [--steps 5] [--warmup 1]
                   [--weights gguf|random] [--model GGUF] [--autocast bf16]

The SmolLM2-135M architecture as transformers' LlamaForCausalLM (30 layers,
d 576, 9 heads / 3 KV heads, MLP 1536, vocab 49152, tied embeddings,
rope_theta 1e5, RMSNorm eps 1e-5), fp32, model.train(). --weights gguf loads
the same teacher GGUF the C side loads (transformers' GGUF reader,
dequantised to fp32), so the two sides compute on identical weights and token
ids and the first-step losses agree; --weights random builds it from the
config (speed does not depend on the values).

One training step, as in bench_train.c:
    opt.zero_grad(set_to_none=True)
    loss = cross_entropy(model(ids[:T]).logits, ids[1:T+1])    (mean)
    loss.backward()
    clip_grad_norm_(params, 1.0)
    AdamW(lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on >= 2-D
          parameters, 0 on the norms -- the C side's groups).step()
--autocast bf16: the forward (and so the backward) under
torch.autocast("cpu", dtype=torch.bfloat16) -- PyTorch's own mixed precision
(bf16 matrix products on oneDNN, fp32 master weights and AdamW), the peer of
xdistill's --bf16; the loss is computed in fp32 from the logits.
Each phase is timed (forward incl. loss, backward, clip, AdamW step, zero).
Prints one JSON object per line."""
import argparse
import json
import os
import resource
import statistics
import sys
import time


def rss_peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_now_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576.0


def machine_busy_s():
    """Busy CPU seconds of the whole machine (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["eager", "sdpa"])
    ap.add_argument("--optim", default="default", choices=["default", "foreach", "fused"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--weights", default="gguf", choices=["gguf", "random"])
    ap.add_argument("--autocast", default="none", choices=["none", "bf16"])
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()

    rss_start = rss_peak_mb()
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rss_import = rss_peak_mb()

    with open(a.tokens) as f:
        head = f.readline()
        ids = [int(x) for x in f if x.strip()]
    kv = dict(p.split("=") for p in head[1:].split()[:2])
    B, T = int(kv["B"]), int(kv["T"])
    rows = torch.tensor(ids, dtype=torch.long).view(B, T + 1)
    inp, tgt = rows[:, :T].contiguous(), rows[:, 1:].contiguous()

    t0 = time.perf_counter()
    if a.weights == "gguf":
        import logging
        logging.getLogger("transformers").setLevel(logging.ERROR)
        os.environ.setdefault("TQDM_DISABLE", "1")
        model = LlamaForCausalLM.from_pretrained(
            os.path.dirname(a.model), gguf_file=os.path.basename(a.model),
            attn_implementation=a.attn, dtype=torch.float32)
    else:
        cfg = LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, head_dim=64, hidden_act="silu",
            max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
            attention_bias=False, mlp_bias=False, attention_dropout=0.0, use_cache=False)
        cfg._attn_implementation = a.attn
        model = LlamaForCausalLM(cfg).to(torch.float32)
    model.config.use_cache = False
    model.train()
    c = model.config
    load_s = time.perf_counter() - t0
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    emit(bench="torch_load", weights=a.weights, attn=model.config._attn_implementation,
         optim=a.optim, threads=torch.get_num_threads(), n_params=n_params,
         n_layer=c.num_hidden_layers, d_model=c.hidden_size, n_head=c.num_attention_heads,
         n_kv_head=c.num_key_value_heads, d_ff=c.intermediate_size, vocab=c.vocab_size,
         tied=bool(c.tie_word_embeddings),
         rope_theta=(getattr(c, "rope_parameters", None) or {}).get("rope_theta"),
         norm_eps=c.rms_norm_eps, load_s=round(load_s, 3),
         rss_python_start_mb=round(rss_start, 1), rss_after_import_torch_mb=round(rss_import, 1),
         rss_peak_after_load_mb=round(rss_peak_mb(), 1), rss_now_mb=round(rss_now_mb(), 1),
         torch=torch.__version__, transformers=transformers.__version__,
         blas=("mkl" if torch.backends.mkl.is_available() else "?"),
         mkldnn=torch.backends.mkldnn.is_available())

    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    kw = {}
    if a.optim == "foreach":
        kw["foreach"] = True
    elif a.optim == "fused":
        kw["fused"] = True
    else:
        kw["foreach"] = False
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, **kw)

    V = c.vocab_size
    rec = []
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            busy0, self0, wall0 = machine_busy_s(), self_cpu_s(), time.perf_counter()
        ta = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        tb = time.perf_counter()
        if a.autocast == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(input_ids=inp).logits
        else:
            logits = model(input_ids=inp).logits
        loss = F.cross_entropy(logits.view(-1, V).float(), tgt.view(-1))
        tc = time.perf_counter()
        loss.backward()
        td = time.perf_counter()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        te = time.perf_counter()
        opt.step()
        tf = time.perf_counter()
        del logits
        r = dict(zero_grad_s=tb - ta, fwd_s=tc - tb, bwd_s=td - tc, clip_s=te - td,
                 optim_s=tf - te, step_s=tf - ta)
        if s >= a.warmup:
            rec.append(r)
        emit(bench="torch_train_step", step=s, warmup=s < a.warmup, loss=round(loss.item(), 6),
             grad_norm=round(float(gn), 6), **{k: round(v, 4) for k, v in r.items()},
             tok_s=round(B * T / r["step_s"], 2))

    wall = time.perf_counter() - wall0
    others = max(0.0, (machine_busy_s() - busy0) - (self_cpu_s() - self0))
    med = {k: statistics.median(x[k] for x in rec) for k in rec[0]}
    best = min(x["step_s"] for x in rec)
    emit(bench="torch_train", attn=model.config._attn_implementation, optim=a.optim,
         autocast=a.autocast,
         weights=a.weights, batch=B, seq=T, threads=torch.get_num_threads(), steps=a.steps,
         warmup=a.warmup, step_s_median=round(med["step_s"], 4), step_s_best=round(best, 4),
         tok_s=round(B * T / med["step_s"], 2), tok_s_best=round(B * T / best, 2),
         zero_grad_s=round(med["zero_grad_s"], 4), fwd_s=round(med["fwd_s"], 4),
         bwd_s=round(med["bwd_s"], 4), clip_s=round(med["clip_s"], 4),
         adamw_s=round(med["optim_s"], 4), optim_s=round(med["clip_s"] + med["optim_s"], 4),
         rss_peak_mb=round(rss_peak_mb(), 1), rss_now_mb=round(rss_now_mb(), 1),
         rss_after_import_torch_mb=round(rss_import, 1), others_cpu_s=round(others, 2),
         others_cpu_frac=round(others / (wall * os.cpu_count()), 4))


if __name__ == "__main__":
    sys.exit(main())
