#!/usr/bin/env bash
# Long-context decoding against llama.cpp (issue 17, criterion 4), one after the other on the
# same GGUF and machine: at CTX tokens (16384) the teacher decoding on its GGUF blocks with a
# KV (bfloat16) cache (bench_infer), llama.cpp's teacher on the same token ids
# (bench/llamacpp_infer.py), and the student written as a QUANT GGUF (bench_student --quant)
# decoding on its blocks with a KV window, its speed the median of its last SDECODE tokens. Writes the "Long-context decoding against llama.cpp (issue 17)"
# section of bench/RESULTS.md. `make bench` runs it after bench/run_infer.sh (LONG=0: not).
#
#   bench/run_long.sh  (THREADS=2 CTX=16384 QUANT=q4_1 WINDOW=512 SINKS=4 DECODE=32 SDECODE=256
#                       KV=bfloat16)
set -euo pipefail
BENCH=run_long
source "$(dirname "$0")/common.sh"
CTX="${CTX:-16384}" QUANT="${QUANT:-q4_1}" WINDOW="${WINDOW:-512}"
SINKS="${SINKS:-4}" DECODE="${DECODE:-32}" SDECODE="${SDECODE:-256}" KV="${KV:-bfloat16}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
need_teacher
need_py llama_cpp
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target bench_infer bench_student >/dev/null
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"; LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "run_long: xdistill teacher at $CTX" >&2
"$BUILD/bench/bench_infer" --model "$MODEL" --threads "$THREADS" --weights gguf --kv "$KV" \
    --ctx "$CTX" --decode "$DECODE" --reps 1 --prefill 64 --tokens-out "$OUT/tokens_long.txt" \
    > "$OUT/long_xd.jsonl"
echo "run_long: llama.cpp teacher at $CTX" >&2
"$PY" bench/llamacpp_infer.py --model "$MODEL" --tokens "$OUT/tokens_long.txt" --threads "$THREADS" \
    --prefill 64 --ctx "$CTX" --decode "$DECODE" --reps 1 > "$OUT/long_llama.jsonl"
echo "run_long: student as $QUANT at $CTX" >&2
"$BUILD/bench/bench_student" --model "$MODEL" --threads "$THREADS" --window "$WINDOW" \
    --sinks "$SINKS" --ctx "$CTX" --gen "$CTX" --decode "$DECODE" --quant "$QUANT" --kv "$KV" \
    --teacher 0 --student-decode "$SDECODE" \
    > "$OUT/long_student.jsonl"
LOAD1="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
export M_ROOT="$ROOT" M_DATE="$DATE" M_LOAD0="$LOAD0" M_LOAD1="$LOAD1" M_CPU="$CPU" M_GIT="$GIT" \
    M_THREADS="$THREADS" M_QUANT="$QUANT" M_KV="$KV" M_MODEL="$(basename "$MODEL")"
python3 - "$ROOT/bench/RESULTS.md" "$OUT" <<'PY'
import json, os, sys
out, d = sys.argv[1], sys.argv[2]
E = os.environ
def rows(name):
    return [json.loads(l) for l in open(os.path.join(d, name)) if l.lstrip().startswith("{")]
def one(rs, bench):
    return next(r for r in rs if r.get("bench") == bench)
xd, ll, st = rows("long_xd.jsonl"), rows("long_llama.jsonl"), rows("long_student.jsonl")
x, l = one(xd, "xd_decode"), one(ll, "llama_decode")
s, q, sm = one(st, "student_decode"), one(st, "student_quant"), one(st, "student_summary")
rs = [r for r in st if r.get("bench") == "student_rss"]
lt = l["tok_s"]
SECTION = "## Long-context decoding against llama.cpp (issue 17)"
L = [SECTION, ""]
L.append(f"`{E['M_MODEL']}`, {E['M_THREADS']} threads, decode tok/s at context {x['ctx']} "
         f"({x['tokens']} tokens; the same token ids on both sides), one after the other:")
L.append("")
L.append("| decoder | tok/s | vs llama.cpp's teacher |")
L.append("|---|---:|---:|")
L.append(f"| llama.cpp, teacher (its default f16 KV cache) | {lt:.2f} | 1.00× |")
su = one(st, "student_setup")
L.append(f"| xdistill, teacher on its GGUF blocks, {E['M_KV']} KV cache | {x['tok_s']:.2f} | {x['tok_s'] / lt:.2f}× |")
L.append(f"| xdistill, student written as {q['type']} GGUF, on its blocks (window {su['window']} of "
         f"{su['kv']} rows, {su['sinks']} sinks; state {rs[-1]['state_mb']:.1f} MiB; median of its last "
         f"{su['student_decode']} tokens) | {s['decode_tok_s']:.2f} | **{s['decode_tok_s'] / lt:.2f}×** |")
L.append("")
ok = s["decode_tok_s"] >= 5 * lt
L.append(f"Target: the quantised student ≥ 5× llama.cpp's teacher at {x['ctx']}: **{'met' if ok else 'NOT met'}**. "
         f"The student's RSS: {rs[0]['rss_mb']:.1f} MiB after {rs[0]['tokens']} tokens, {rs[-1]['rss_mb']:.1f} "
         f"after {rs[-1]['tokens']}. (The student is a fresh conversion: speed and memory do not depend on "
         f"the trained values.)")
L.append("")
L.append(f"Command: `THREADS={E['M_THREADS']} QUANT={E['M_QUANT']} KV={E['M_KV']} bench/run_long.sh` (part of `make bench`; "
         f"{E['M_DATE']}; xdistill {E['M_GIT']}; {E['M_CPU']}; load average {E['M_LOAD0']} at the start, "
         f"{E['M_LOAD1']} at the end). Raw JSON: bench/out/long_*.jsonl.")
L.append("")
sys.path.insert(0, os.path.join(E["M_ROOT"], "bench"))
from results_section import replace_section
replace_section(out, SECTION, "\n".join(L))
PY
echo "run_long: wrote bench/RESULTS.md" >&2
