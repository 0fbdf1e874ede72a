#!/usr/bin/env bash
# Data parallelism over MPI (issue 16, criterion 6), on the SmolLM2-135M architecture
# (the teacher GGUF, all 134.5M weights training: `xdistill finetune`), in one run:
#   - throughput of 1 rank × 2 threads against 2 ranks × 1 thread (mpirun -np 2), the
#     same global batch of B rows × SEQ tokens;
#   - the all-reduce per step (the 134.5M fp32 gradients, summed in rank order: the log's
#     allreduce_s) and its share of the step;
#   - the same for PyTorch DDP on gloo (bench/torch_ddp.py), as ratios;
#   - the scaling model of docs/scale.md evaluated with the measured figures.
# Writes the section "Data parallelism over MPI (issue 16)" of bench/RESULTS.md and the
# raw numbers to bench/out/mpi/results.json.
#
#   bench/mpi.sh            (or: make bench-mpi)
#
# Environment: XD_TEACHER (the GGUF), BUILD (build), XD_REF_PY (a Python with torch and
# transformers: ~/xd-ref/bin/python, see tests/ref/setup.sh), B (4), SEQ (128), STEPS (6:
# steps 2 .. STEPS−1 are timed; the first warms up, the last validates), TORCH (1: also
# PyTorch DDP).
set -euo pipefail
BENCH=bench-mpi
source "$(dirname "$0")/common.sh"
B="${B:-4}"; SEQ="${SEQ:-128}"; STEPS="${STEPS:-6}"; TORCH="${TORCH:-1}"
OUT="$ROOT/bench/out/mpi"
X="$BUILD/xdistill"
mkdir -p "$OUT"
need_teacher
command -v mpirun >/dev/null || { echo "bench-mpi: mpirun not found (make deps installs Open MPI)" >&2; exit 1; }
[ -f "$BUILD/libxdistill-mpi.so" ] || { echo "bench-mpi: $BUILD has no MPI plugin (rebuild with libopenmpi-dev)" >&2; exit 1; }
# mpirun refuses root unless told; this script's own processes only
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

DATA="$OUT/kjv.tok"
if [ ! -f "$DATA" ]; then
    scripts/kjv-corpus.sh "$OUT/kjv.txt"
    "$X" data prep --tokenizer "$MODEL" "$OUT/kjv.txt" -o "$DATA" --doc-sep blank --quiet >&2
fi
common=(finetune "$MODEL" --data "$DATA" --batch "$B" --seq "$SEQ" --steps "$STEPS"
        --lr 1e-4 --warmup 0 --eval-windows 1 --log-every 1)
rm -rf "$OUT/r1" "$OUT/r2" "$OUT/r2n"
echo "bench-mpi: 1 rank x 2 threads" >&2
"$X" "${common[@]}" --threads 2 -o "$OUT/r1" > /dev/null
echo "bench-mpi: 2 ranks x 1 thread" >&2
mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$X" "${common[@]}" --threads 1 -o "$OUT/r2" > /dev/null
echo "bench-mpi: 2 ranks x 1 thread, the reduction after the backward (--overlap-comm 0)" >&2
mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$X" "${common[@]}" --threads 1 --overlap-comm 0 \
    -o "$OUT/r2n" > /dev/null
: > "$OUT/torch.jsonl"
if [ "$TORCH" = 1 ]; then
    echo "bench-mpi: PyTorch DDP (gloo) 1 x 2 and 2 x 1" >&2
    "$PY" bench/torch_ddp.py --world 1 --threads 2 --batch "$B" --seq "$SEQ" >> "$OUT/torch.jsonl"
    "$PY" bench/torch_ddp.py --world 2 --threads 1 --batch "$B" --seq "$SEQ" >> "$OUT/torch.jsonl"
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
ompi="$(mpirun --version | head -1)"
python3 - "$OUT" "$cpu" "$ompi" "$B" "$SEQ" "$STEPS" <<'EOF'
import json, os, statistics, sys
sys.path.insert(0, "bench")
from results_section import replace_section
out, cpu, ompi, B, T, S = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def log(run):
    return [json.loads(l) for l in open(os.path.join(out, run, "log.jsonl")) if l.strip()]
def steady(lines):
    # steps 2 .. S−1: the first warms up, the last also validates
    a, b = lines[0], lines[-2]
    step_s = (b["elapsed"] - a["elapsed"]) / (b["step"] - a["step"])
    return step_s, B * T / step_s
r1, r2, r2n = log("r1"), log("r2"), log("r2n")
s1, tok1 = steady(r1)
s2, tok2 = steady(r2)
s2n, tok2n = steady(r2n)
ar = statistics.median(l["allreduce_s"] for l in r2n[1:-1])   # the whole reduction
arw = statistics.median(l["allreduce_s"] for l in r2[1:-1])   # overlapped: what is left to wait
n_floats = 134515008
torch = [json.loads(l) for l in open(os.path.join(out, "torch.jsonl")) if l.strip()]
t1 = next((t for t in torch if t["world"] == 1), None)
t2 = next((t for t in torch if t["world"] == 2), None)
res = {"cpu": cpu, "mpi": ompi, "batch": B, "seq": T, "xd_1x2": {"step_s": s1, "tok_s": tok1},
       "xd_2x1": {"step_s": s2n, "tok_s": tok2n, "allreduce_s": ar, "allreduce_share": ar / s2n,
                  "allreduce_gb_s": n_floats * 4 / ar / 1e9},
       "xd_2x1_overlap": {"step_s": s2, "tok_s": tok2, "allreduce_wait_s": arw},
       "torch_1x2": t1, "torch_2x1": t2}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
L = ["## Data parallelism over MPI (issue 16)", "",
     f"`bench/mpi.sh` (`make bench-mpi`) on {cpu}, 2 cores; {ompi}; SmolLM2-135M-Instruct "
     f"(the Q4_1 GGUF dequantised, all 134,515,008 weights training: `xdistill finetune`), "
     f"global batch {B} rows × {T} tokens, AdamW; steps 2–{S - 1} of {S} timed. "
     "2 ranks × 1 thread run under `mpirun -np 2` on the same machine (shared memory transport); "
     "PyTorch DDP on gloo over loopback with the same split (bench/torch_ddp.py, random "
     "weights, `attn_implementation=sdpa`).", "",
     "| | step (s) | tokens/s | all-reduce per step (s) | share of the step | all-reduce GB/s (134.5M fp32) |",
     "|---|---|---|---|---|---|",
     f"| xdistill, 1 rank × 2 threads | {s1:.2f} | {tok1:.0f} | — | — | — |",
     f"| xdistill, 2 ranks × 1 thread, reduction after the backward (`--overlap-comm 0`) | {s2n:.2f} | {tok2n:.0f} | {ar:.3f} | {100 * ar / s2n:.1f}% | {n_floats * 4 / ar / 1e9:.2f} |",
     f"| xdistill, 2 ranks × 1 thread, reduction overlapped with the backward (default) | {s2:.2f} | {tok2:.0f} | {arw:.3f} left after the backward | {100 * arw / s2:.1f}% | — |"]
if t1 and t2:
    L += [f"| PyTorch {t1['torch']} DDP, 1 × 2 threads | {t1['step_s']:.2f} | {t1['tok_s']:.0f} | — | — | — |",
          f"| PyTorch {t2['torch']} DDP (gloo), 2 × 1 thread | {t2['step_s']:.2f} | {t2['tok_s']:.0f} | {t2['allreduce_s']:.3f} (one all_reduce, not overlapped) | — | {n_floats * 4 / t2['allreduce_s'] / 1e9:.2f} |",
          "",
          f"Ratios (xdistill / PyTorch): tokens/s 1 × 2 **{tok1 / t1['tok_s']:.2f}×**, 2 × 1 "
          f"**{max(tok2, tok2n) / t2['tok_s']:.2f}×**; all-reduce of 134.5M fp32 **{t2['allreduce_s'] / ar:.2f}×** as fast "
          "(xdistill: the step's reduction as logged, in rank order; PyTorch: one `dist.all_reduce` of a flat "
          "tensor — DDP itself overlaps its bucketed all-reduces with the backward, so its step hides part of it)."]
L += ["", f"Overlapping the reduction with the backward: {tok2 / tok2n:.2f}× the tokens/s of reducing after it "
      "(here the communication thread shares the 2 cores with the 2 ranks' compute).",
      "", f"2 ranks × 1 thread against 1 rank × 2 threads: **{max(tok2, tok2n) / tok1:.2f}×** the tokens/s for xdistill"
      + (f", {t2['tok_s'] / t1['tok_s']:.2f}× for PyTorch." if t1 and t2 else ".")]
# The scaling model (docs/scale.md): N machines like this one (1 rank × 2 threads each, b = B
# rows per machine and step: weak scaling), the gradients all-reduced over a network of
# BW Gbit/s without overlap: T(N) = c·b + 2(N−1)/N · 4P / BW, efficiency c·b / T(N).
c = s1 / B
P = n_floats
res["model"] = {"compute_s_per_row": c, "params": P, "rows_per_machine": B, "rows": []}
L += ["", f"Scaling model (docs/scale.md): step time T(N) = c·b + 2(N−1)/N · 4P / BW with the measured "
      f"c = {c:.3f} s per row of {T} tokens (1 rank × 2 threads), b = {B} rows per machine, P = 134.5M fp32 "
      "gradients, no overlap with the backward; efficiency = c·b / T(N) (weak scaling: the global batch grows with N).", "",
      "| N machines | 1 Gbit/s | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s |", "|---|---|---|---|---|"]
for N in (2, 4, 8, 16, 64):
    cells = []
    for bw in (1, 10, 25, 100):
        comm = 2 * (N - 1) / N * 4 * P * 8 / (bw * 1e9)
        t = c * B + comm
        res["model"]["rows"].append({"N": N, "gbit_s": bw, "step_s": t, "efficiency": c * B / t})
        cells.append(f"{t:.2f} s, {100 * c * B / t:.0f}%")
    L.append(f"| {N} | " + " | ".join(cells) + " |")
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
replace_section("bench/RESULTS.md", L[0], "\n".join(L) + "\n")
print(json.dumps(res))
EOF
