#!/usr/bin/env bash
# Teacher inference benchmark (issue 3, criterion 5): xdistill vs llama.cpp on
# the same GGUF with the same thread count, back to back in one run, plus the
# OpenBLAS sgemm bench; writes the "Teacher inference (issue 3)" section of
# bench/RESULTS.md (other sections are kept).
#
#   bench/run_infer.sh            (or: make bench)
#
# Environment: THREADS (2), XD_TEACHER (the GGUF), XD_REF_PY (a Python with
# llama-cpp-python; tests/ref/setup.sh makes one), BUILD (build dir, "build"),
# MAX_LOAD (0.5: wait until the 1-minute load average is below it),
# LOAD_TRIES (20 × 30 s), DECODE (64 tokens), CTXS (128,1024,4096).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
THREADS="${THREADS:-2}"
MODEL="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PY="${XD_REF_PY:-$HOME/xd-ref/bin/python}"
BUILD="${BUILD:-build}"
MAX_LOAD="${MAX_LOAD:-0.5}"
LOAD_TRIES="${LOAD_TRIES:-20}"
DECODE="${DECODE:-64}"
CTXS="${CTXS:-128,1024,4096}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"

[ -f "$MODEL" ] || { echo "run_infer: no teacher at $MODEL (make teacher)" >&2; exit 1; }
if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
    echo "run_infer: $PY cannot import llama_cpp; run tests/ref/setup.sh or set XD_REF_PY" >&2
    exit 1
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target bench_infer bench_sgemm >/dev/null

load1() { cut -d' ' -f1 /proc/loadavg; }
for i in $(seq 1 "$LOAD_TRIES"); do
    if awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then break; fi
    echo "run_infer: load average $(load1) >= $MAX_LOAD, waiting 30 s ($i/$LOAD_TRIES)" >&2
    sleep 30
done
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
echo "run_infer: sgemm bench ($THREADS threads)" >&2
"$BUILD/bench/bench_sgemm" --threads "$THREADS" | tee "$OUT/sgemm.jsonl" >&2
echo "run_infer: xdistill" >&2
"$BUILD/bench/bench_infer" --model "$MODEL" --threads "$THREADS" --prefill 512 \
    --ctx "$CTXS" --decode "$DECODE" --reps 3 --tokens-out "$OUT/tokens.txt" \
    | tee "$OUT/xd_infer.jsonl" >&2
echo "run_infer: llama.cpp" >&2
"$PY" bench/llamacpp_infer.py --model "$MODEL" --tokens "$OUT/tokens.txt" \
    --threads "$THREADS" --prefill 512 --ctx "$CTXS" --decode "$DECODE" --reps 3 \
    | tee "$OUT/llama_infer.jsonl" >&2
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" bench/render_results.py --out bench/RESULTS.md --dir "$OUT" \
    --command "THREADS=$THREADS bench/run_infer.sh   (make bench)" \
    --load-start "$LOAD_START" --load-end "$LOAD_END" --model "$MODEL" --threads "$THREADS"
echo "run_infer: wrote bench/RESULTS.md" >&2
