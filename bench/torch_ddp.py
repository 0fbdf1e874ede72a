#!/usr/bin/env python3
"""PyTorch DDP (gloo, CPU) baseline for bench/mpi.sh (issue 16, criterion 6).

    torch_ddp.py --world N --threads K [--batch 4] [--seq 128] [--steps 6] [--warmup 2]
                 [--allreduce-floats 134515008] [--allreduce-reps 3]

The SmolLM2-135M architecture as transformers' LlamaForCausalLM (30 layers, d 576,
9 heads / 3 KV heads, MLP 1536, vocab 49152, tied embeddings, rope_theta 1e5, RMSNorm
eps 1e-5), fp32, random weights (speed does not depend on the values), wrapped in
DistributedDataParallel on the gloo backend over N processes of K threads each (spawned
here, on this machine, over loopback). The global batch of --batch rows of --seq tokens
is split evenly among the processes, as xdistill splits it among its ranks.

One step: zero_grad, forward + mean cross-entropy, backward (DDP all-reduces the
gradients in buckets during it), clip_grad_norm_(1.0), AdamW (lr 1e-4, betas 0.9/0.95,
eps 1e-8, weight decay 0.1 on >= 2-D parameters): xdistill's finetune step.

With N > 1 it also times one all_reduce of a flat fp32 tensor of --allreduce-floats
(default: the model's 134,515,008 parameters) on gloo, the median of --allreduce-reps.
Prints one JSON object (rank 0)."""
import argparse
import json
import os
import statistics
import sys
import time


def worker(rank, a, port, q):
    import torch
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=a.world)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=1e5,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float().train()
    n_params = sum(p.numel() for p in model.parameters())
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    b = a.batch // a.world
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 49152, (a.batch, a.seq + 1), generator=g)
    mine = ids[rank * b:(rank + 1) * b]
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = ddp(mine[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 mine[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dist.barrier()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    ar = None
    if a.world > 1:
        del ddp, opt, model
        x = torch.ones(a.allreduce_floats, dtype=torch.float32)
        reps = []
        for _ in range(a.allreduce_reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            reps.append(time.perf_counter() - t0)
        ar = statistics.median(reps)
    if rank == 0:
        step_s = statistics.median(times)
        q.put({"impl": "pytorch-ddp-gloo", "torch": torch.__version__, "world": a.world,
               "threads": a.threads, "batch": a.batch, "seq": a.seq, "params": n_params,
               "step_s": step_s, "tok_s": a.batch * a.seq / step_s,
               "allreduce_floats": a.allreduce_floats if ar else None, "allreduce_s": ar})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--allreduce-floats", type=int, default=134515008)
    ap.add_argument("--allreduce-reps", type=int, default=3)
    a = ap.parse_args()
    if a.batch % a.world:
        sys.exit("torch_ddp.py: --batch must be divisible by --world")
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, a, port, q)) for r in range(a.world)]
    for p in procs:
        p.start()
    res = q.get()
    for p in procs:
        p.join()
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
