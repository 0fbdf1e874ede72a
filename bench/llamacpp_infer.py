#!/usr/bin/env python3
"""llama.cpp side of the teacher inference benchmark (issue 3, criterion 5).

Replays the token ids that bench_infer wrote (--tokens) through llama.cpp's
low-level C API (llama-cpp-python's ctypes bindings) on the same GGUF, with
the same thread count, and measures what bench_infer measures:

  prefill  one llama_decode of N tokens (logits of the last one only) on an
           empty KV cache, after a warm-up run; best and median of --reps
  foreign_cpu  the share of the machine's CPU time other programs used during a
           measurement (0 = the machine was ours alone)
  decode   at context C: C tokens prefilled untimed (batches of 512), then
           --decode single-token llama_decode calls, each timed from the call
           to llama_synchronize + fetching the logits pointer; tok/s is
           decode / (sum of those times)

n_threads = n_threads_batch = --threads, n_batch = n_ubatch = 512,
n_ctx = max context + decode; everything else is llama.cpp's default
(KV cache f16, flash attention "auto"), which is how llama.cpp runs this model.
One JSON object per line on stdout.

Usage: llamacpp_infer.py --model GGUF --tokens FILE [--threads 2] [--prefill 512]
                         [--ctx 128,1024,4096] [--decode 64] [--reps 3]
(--reps 0 skips the prefill measurement, --ctx "" the decode ones)
"""
import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time

import llama_cpp as L


def emit(**kw):
    print(json.dumps(kw), flush=True)


def cpu_mark():
    """(wall, machine busy CPU s incl. steal, this process's CPU s)"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (time.perf_counter(), (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz,
            ru.ru_utime + ru.ru_stime)


def foreign(m0):
    """share of the machine's CPU time other programs used since m0"""
    m1 = cpu_mark()
    fr = ((m1[1] - m0[1]) - (m1[2] - m0[2])) / (os.cpu_count() * (m1[0] - m0[0]))
    return round(max(0.0, fr), 3)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--ctx", default="128,1024,4096")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    ctxs = [int(c) for c in args.ctx.split(",") if c]
    with open(args.tokens) as f:
        ids = [int(t) for t in f.read().split()]
    need = max(ctxs + [args.prefill]) + args.decode
    if len(ids) < need:
        sys.exit(f"llamacpp_infer: {args.tokens} has {len(ids)} ids, need {need}")

    # keep llama.cpp's log, to report what it resolved (flash attention, KV type)
    log_lines = []

    @L.llama_log_callback
    def on_log(level, text, user):
        log_lines.append(text.decode("utf-8", "replace") if text else "")

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    L.llama_backend_init()

    rss_before = max_rss_mb()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(args.model.encode(), mp)
    if not model:
        sys.exit("llamacpp_infer: cannot load " + args.model)
    cp = L.llama_context_default_params()
    cp.n_ctx = need
    cp.n_batch = args.batch
    cp.n_ubatch = args.batch
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    cp.no_perf = False
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llamacpp_infer: cannot create a context")
    t_load = time.perf_counter() - t0
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    mem = L.llama_get_memory(ctx)
    logs = "".join(log_lines)
    resolved = [ln.strip() for ln in logs.splitlines()
                if any(k in ln.lower() for k in ("flash", "type_k", "n_ctx ", "n_batch", "cpu_repack",
                                         "cpu model buffer", "kv buffer", "file type"))
                and "llama_graph_n_input" not in ln]
    flash_used = "FLASH_ATTN_EXT" in logs
    emit(bench="llama_load", version=L.__version__, model=args.model, threads=args.threads,
         n_ctx=need, n_batch=args.batch, n_vocab=n_vocab, load_s=round(t_load, 3), flash_attn_ext_in_graph=flash_used,
         system_info=L.llama_print_system_info().decode().strip(), resolved=resolved[:16])
    emit(bench="llama_rss_load", rss_peak_mb=round(max_rss_mb(), 1),
         rss_before_load_mb=round(rss_before, 1))

    batch = L.llama_batch_init(args.batch, 0, 1)

    def fill(toks, pos0, last_logits=True):
        n = len(toks)
        for i, t in enumerate(toks):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if (last_logits and i == n - 1) else 0
        batch.n_tokens = n

    def run(want_logits=True):
        """decode a filled batch; return seconds (compute + sync + logits pointer)"""
        t = time.perf_counter()
        rc = L.llama_decode(ctx, batch)
        L.llama_synchronize(ctx)
        if rc != 0:
            sys.exit(f"llamacpp_infer: llama_decode returned {rc}")
        if want_logits:
            lp = L.llama_get_logits_ith(ctx, -1)
            _ = lp[n_vocab - 1]
        return time.perf_counter() - t

    def clear():
        L.llama_memory_clear(mem, True)

    # prefill: one batch of args.prefill tokens
    if args.prefill > args.batch:
        sys.exit("llamacpp_infer: --prefill must be <= --batch")
    prompt = ids[:args.prefill]
    if args.reps > 0:  # --reps 0: prefill not measured
        clear()
        fill(prompt, 0)
        run()  # warm-up
        times = []
        m0 = cpu_mark()
        for _ in range(args.reps):
            clear()
            fill(prompt, 0)
            times.append(run())
        fr = foreign(m0)
        times.sort()
        emit(bench="llama_prefill", tokens=args.prefill, reps=args.reps,
             best_s=round(times[0], 4), median_s=round(times[len(times) // 2], 4),
             tok_s=round(args.prefill / times[0], 1),
             tok_s_median=round(args.prefill / times[len(times) // 2], 1), foreign_cpu=fr)

    for C in ctxs:
        clear()
        for p in range(0, C, args.batch):
            chunk = ids[p:min(C, p + args.batch)]
            fill(chunk, p, last_logits=(p + len(chunk) == C))
            run(want_logits=(p + len(chunk) == C))
        L.llama_perf_context_reset(ctx)
        dt = []
        m0 = cpu_mark()
        for i in range(args.decode):
            fill([ids[C + i]], C + i)
            dt.append(run())
        fr = foreign(m0)
        perf = L.llama_perf_context(ctx)
        total = sum(dt)
        med = statistics.median(dt)
        emit(bench="llama_decode", ctx=C, tokens=args.decode, total_s=round(total, 4),
             tok_s=round(args.decode / total, 2), ms_per_tok_median=round(1e3 * med, 3),
             tok_s_median=round(1.0 / med, 2), ms_per_tok_min=round(1e3 * min(dt), 3),
             llama_internal_eval_ms=round(perf.t_eval_ms, 2), llama_internal_n_eval=perf.n_eval, foreign_cpu=fr)

    emit(bench="llama_rss_end", rss_peak_mb=round(max_rss_mb(), 1))
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    L.llama_backend_free()


if __name__ == "__main__":
    main()
