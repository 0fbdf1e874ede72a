#!/usr/bin/env bash
# Student decoding benchmark (issue 5, criterion 4): RSS after 512 and after
# GEN generated tokens, and decode tokens/s of the student vs its teacher at
# context CTX, same threads, one process (bench/bench_student.c). Writes the
# "Student decoding (issue 5)" section of bench/RESULTS.md.
#
#   bench/run_student.sh      (THREADS=2 CTX=16384 GEN=16384 WINDOW=512 SINKS=4)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
THREADS="${THREADS:-2}" CTX="${CTX:-16384}" GEN="${GEN:-16384}" WINDOW="${WINDOW:-512}" SINKS="${SINKS:-4}"
MODEL="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
BUILD="${BUILD:-build}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
[ -f "$MODEL" ] || { echo "run_student: no teacher at $MODEL (make teacher)" >&2; exit 1; }
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target bench_student >/dev/null
DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"; LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" "$BUILD/bench/bench_student" \
    --model "$MODEL" --threads "$THREADS" --window "$WINDOW" --sinks "$SINKS" --ctx "$CTX" \
    --gen "$GEN" | tee "$OUT/student.jsonl"
LOAD1="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
export M_ROOT="$ROOT" M_DATE="$DATE" M_LOAD0="$LOAD0" M_LOAD1="$LOAD1" M_CPU="$CPU" M_GIT="$GIT" M_THREADS="$THREADS"
python3 - "$ROOT/bench/RESULTS.md" "$OUT/student.jsonl" <<'PY'
import json, os, re, sys
out, src = sys.argv[1], sys.argv[2]
E = os.environ
J = [json.loads(l) for l in open(src) if l.startswith("{")]
g = lambda b: [j for j in J if j["bench"] == b]
setup, td, sd, sm = g("student_setup")[0], g("teacher_decode")[0], g("student_decode")[0], g("student_summary")[0]
rs = g("student_rss")
SECTION = "## Student decoding (issue 5)"
L = [SECTION, ""]
L.append(f"SmolLM2-135M-Instruct as the teacher and its xLSTM hybrid student (window {setup['window']}, "
         f"{setup['sinks']} sinks, fresh conversion: speed and memory do not depend on the trained values), "
         f"{setup['threads']} threads, fp32, one process (`bench/bench_student.c`). Prompt: "
         f"`{setup['text']}` tokenised ({setup['text_tokens']} tokens) and repeated.")
L.append("")
L.append("| | teacher | student | ratio |")
L.append("|---|---:|---:|---:|")
L.append(f"| decode tokens/s at context {td['ctx']} (median of {setup['decode']} greedy tokens) | "
         f"{td['decode_tok_s']:.2f} | {sd['decode_tok_s']:.2f} | **{sm['speedup']:.2f}×** |")
L.append(f"| memory for the sequence at that context | KV cache {td['kv_mb']:.0f} MiB | state {rs[-1]['state_mb']:.2f} MiB | |")
L.append(f"| CPU taken by other processes while decoding | {100*td['others_cpu_frac']:.1f}% | {100*sd['others_cpu_frac']:.1f}% | |")
L.append("")
L.append("| student, greedy generation | tokens | RSS (MiB) |")
L.append("|---|---:|---:|")
for r in rs:
    L.append(f"| after | {r['tokens']} | {r['rss_mb']:.1f} |")
L.append("")
ok_rss = abs(sm["rss_change"]) < 0.05
ok_sp = sm["speedup"] >= 3
L.append(f"- RSS after {rs[0]['tokens']} and after {rs[-1]['tokens']} generated tokens differs by "
         f"**{100*sm['rss_change']:+.2f}%** (target < 5%: {'**met**' if ok_rss else '**not met**'}); the "
         f"student's state is {rs[-1]['state_mb']:.2f} MiB at any length; generating took {rs[-1].get('generate_s', 0):.0f} s.")
L.append(f"- Student decode at context {sd['ctx']}: {sd['decode_tok_s']:.2f} vs the teacher's {td['decode_tok_s']:.2f} "
         f"tokens/s = **{sm['speedup']:.2f}×** (target ≥ 3×: {'**met**' if ok_sp else '**not met**'}).")
L.append("")
L.append(f"Command: `THREADS={E['M_THREADS']} bench/run_student.sh` ({E['M_DATE']}; xdistill {E['M_GIT']}; "
         f"{E['M_CPU']}; load average {E['M_LOAD0']} at the start, {E['M_LOAD1']} at the end). "
         "Raw JSON: bench/out/student.jsonl.")
L.append("")
sys.path.insert(0, os.path.join(os.environ["M_ROOT"], "bench"))
from results_section import replace_section
replace_section(sys.argv[1], SECTION, "\n".join(L))
PY
