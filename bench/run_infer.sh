#!/usr/bin/env bash
# Teacher inference benchmark (issue 3, criterion 5): xdistill vs llama.cpp on
# the same GGUF with the same thread count, back to back in one run, plus the
# OpenBLAS sgemm bench; writes the "Teacher inference (issue 3)" section of
# bench/RESULTS.md (other sections are kept).
#
#   bench/run_infer.sh            (or: make bench)
#
# Every measurement records foreign_cpu, the share of the machine's CPU time
# that other programs used while it ran (from /proc/stat, steal included).
# Before each program the script waits until the machine is quiet; xdistill
# and llama.cpp then alternate for ROUNDS full rounds, and then, up to MAX_ROUNDS,
# re-measure only what still lacks a clean measurement (foreign_cpu < CLEAN).
# Each metric reports its best clean round; one with none is flagged in the table.
#
# Environment: THREADS (2), XD_TEACHER (the GGUF), XD_REF_PY (a Python with
# llama-cpp-python; tests/ref/setup.sh makes one), BUILD (build dir, "build"),
# NO_BUILD (0), DECODE (64 tokens), CTXS (128,1024,4096), ROUNDS (2), MAX_ROUNDS (8),
# CLEAN (0.05), QUIET (0.05: busy share of the CPUs that counts as quiet),
# QUIET_TRIES (80 × 15 s), SKIP_SGEMM (0; 1 reuses bench/out/sgemm.jsonl).
set -euo pipefail
BENCH=run_infer
source "$(dirname "$0")/common.sh"
DECODE="${DECODE:-64}"
CTXS="${CTXS:-128,1024,4096}"
WEIGHTS="${WEIGHTS:-gguf}"   # xdistill's weights: the GGUF's own blocks (gguf) or fp32
KV="${KV:-bfloat16}"         # xdistill's KV cache type (llama.cpp's default cache is f16)
ROUNDS="${ROUNDS:-2}"
MAX_ROUNDS="${MAX_ROUNDS:-8}"
CLEAN="${CLEAN:-0.05}"
QUIET="${QUIET:-0.05}"
QUIET_TRIES="${QUIET_TRIES:-80}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"

need_teacher
need_py llama_cpp

if [ "${NO_BUILD:-0}" != 1 ]; then   # NO_BUILD=1: use the binaries already in $BUILD
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
    cmake --build "$BUILD" -j "$(nproc)" --target bench_infer bench_sgemm >/dev/null
fi

# busy share of all CPUs over 2 s (user+nice+system+irq+softirq+steal)
busy() {
    local a b
    a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y);
        busy = (y[2]-x[2]) + (y[3]-x[3]) + (y[4]-x[4]) + (y[7]-x[7]) + (y[8]-x[8]) + (y[9]-x[9]);
        idle = (y[5]-x[5]) + (y[6]-x[6]);
        printf "%.3f", ((busy + idle) > 0 ? busy / (busy + idle) : 0) }'
}
wait_quiet() {
    local i b
    for i in $(seq 1 "$QUIET_TRIES"); do
        b=$(busy)
        if awk -v b="$b" -v q="$QUIET" 'BEGIN { exit !(b < q) }'; then return 0; fi
        echo "run_infer: machine busy ($b of the CPUs), waiting 15 s ($i/$QUIET_TRIES)" >&2
        sleep 15
    done
    echo "run_infer: the machine did not get quiet; measuring anyway (flagged)" >&2
}
load3() { cut -d' ' -f1-3 /proc/loadavg; }

export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
wait_quiet
LOAD_START="$(load3)"
DATE="$(date '+%Y-%m-%d %H:%M %Z')"
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && REV="$REV + uncommitted changes"
if [ "${SKIP_SGEMM:-0}" != 1 ] || [ ! -s "$OUT/sgemm.jsonl" ]; then
    rm -f "$OUT/sgemm.jsonl"
    for s in $(seq 1 "$MAX_ROUNDS"); do
        [ "$s" -gt 1 ] && wait_quiet
        echo "run_infer: sgemm bench, run $s ($THREADS threads)" >&2
        "$BUILD/bench/bench_sgemm" --threads "$THREADS" \
            | sed "s/^{/{\"round\":$s,/" | tee -a "$OUT/sgemm.jsonl" >&2
        "$PY" bench/render_results.py --need sgemm --dir "$OUT" --clean "$CLEAN" && break
        echo "run_infer: other programs disturbed the sgemm bench; again" >&2
    done
fi
rm -f "$OUT/xd_infer.jsonl" "$OUT/llama_infer.jsonl"
touch "$OUT/xd_infer.jsonl" "$OUT/llama_infer.jsonl"
# what a side still needs: "REPS CTXS" for its next run (all of it in the first ROUNDS)
todo() {
    local w
    if [ "$r" -le "$ROUNDS" ]; then echo "3 $CTXS"; return; fi
    w=$("$PY" bench/render_results.py --need "$1" --ctxs "$CTXS" --dir "$OUT" --clean "$CLEAN" \
        || true)
    echo "$(( ${w%% *} * 3 )) ${w#* }"
}
r=0
while [ "$r" -lt "$MAX_ROUNDS" ]; do
    r=$((r + 1))
    read -r xreps xctx <<<"$(todo xd) "
    read -r lreps lctx <<<"$(todo llama) "
    if [ "$xreps" = 0 ] && [ -z "$xctx" ] && [ "$lreps" = 0 ] && [ -z "$lctx" ]; then break; fi
    [ "$r" -gt "$ROUNDS" ] && echo "run_infer: round $r re-measures what other programs disturbed" >&2
    if [ "$xreps" != 0 ] || [ -n "$xctx" ]; then
        wait_quiet
        echo "run_infer: round $r: xdistill (prefill reps $xreps, contexts '$xctx')" >&2
        tok=(); [ "$r" = 1 ] && tok=(--tokens-out "$OUT/tokens.txt")
        "$BUILD/bench/bench_infer" --model "$MODEL" --threads "$THREADS" --prefill 512 \
            --ctx "$xctx" --decode "$DECODE" --reps "$xreps" --weights "$WEIGHTS" --kv "$KV" \
            "${tok[@]}" \
            | sed "s/^{/{\"round\":$r,/" | tee -a "$OUT/xd_infer.jsonl" >&2
    fi
    if [ "$lreps" != 0 ] || [ -n "$lctx" ]; then
        wait_quiet
        echo "run_infer: round $r: llama.cpp (prefill reps $lreps, contexts '$lctx')" >&2
        "$PY" bench/llamacpp_infer.py --model "$MODEL" --tokens "$OUT/tokens.txt" \
            --threads "$THREADS" --prefill 512 --ctx "$lctx" --decode "$DECODE" --reps "$lreps" \
            | sed "s/^{/{\"round\": $r, /" | tee -a "$OUT/llama_infer.jsonl" >&2
    fi
done
LOAD_END="$(load3)"

"$PY" bench/render_results.py --out bench/RESULTS.md --dir "$OUT" --clean "$CLEAN" \
    --command "THREADS=$THREADS WEIGHTS=$WEIGHTS KV=$KV bench/run_infer.sh   (make bench)" \
    --load-start "$LOAD_START" --load-end "$LOAD_END" --model "$MODEL" --threads "$THREADS" \
    --rounds "$ROUNDS" --date "$DATE" --rev "$REV"
echo "run_infer: wrote bench/RESULTS.md" >&2
if [ "${LONG:-1}" != 0 ]; then   # the 16K comparison (student included): bench/run_long.sh
    BUILD="$BUILD" THREADS="$THREADS" XD_TEACHER="$MODEL" XD_REF_PY="$PY" bash bench/run_long.sh
fi
