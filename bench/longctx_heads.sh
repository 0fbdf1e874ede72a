#!/usr/bin/env bash
# Long context, lever 1 of issue 13 without any training: the SWA-only student
# (the teacher with every head limited to a window of W keys plus S sinks)
# with the K best heads of the teacher's retrieval probe kept global. Passkey
# (bench_passkey: its own filler and key format, not the probe's) at 1, 2, 4,
# 8, 16 and 32 × W for the teacher and K in KS. Writes the "Long context:
# global heads without training (issue 13)" section of bench/RESULTS.md, with
# the state size at 16K tokens of each student against the teacher's KV cache.
#
#   bench/longctx_heads.sh
# Environment: WORK (/tmp/xd-longctx), WINDOW (64), SINKS (4), KS ("0 9 15 20"),
# TRIALS (20), THREADS (2), MULTS ("1 2 4 8 16 32").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${WORK:-/tmp/xd-longctx}" WINDOW="${WINDOW:-64}" SINKS="${SINKS:-4}" KS="${KS:-0 9 15 20}"
TRIALS="${TRIALS:-20}" THREADS="${THREADS:-2}" MULTS="${MULTS:-1 2 4 8 16 32}"
T="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
X="$ROOT/build/xdistill"
mkdir -p "$WORK"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
cmake --build build -j "$(nproc)" --target xdistill-cli bench_passkey >/dev/null
ts() { date +%s.%N; }
t0=$(ts)
"$X" heads "$T" --window "$WINDOW" --sinks "$SINKS" --lengths 2,4,8 --probes 24 --threads "$THREADS" \
    -o "$WORK/heads.json" > "$WORK/heads.txt"
t1=$(ts)
students=()
for K in $KS; do
    rm -rf "$WORK/swa-k$K"
    if [ "$K" = 0 ]; then gh=(); else gh=(--global-heads "$WORK/heads.json:$K"); fi
    "$X" convert "$T" -o "$WORK/swa-k$K" --window "$WINDOW" --sinks "$SINKS" --swa-only "${gh[@]}" 2>/dev/null
    students+=(--student "$WORK/swa-k$K")
done
LENGTHS=$(for m in $MULTS; do printf '%s,' $((m * WINDOW)); done); LENGTHS=${LENGTHS%,}
build/bench/bench_passkey --teacher "$T" "${students[@]}" --lengths "$LENGTHS" --trials "$TRIALS" \
    --threads "$THREADS" | tee "$WORK/passkey.jsonl"
t2=$(ts)
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
export M_ROOT="$ROOT" M_WORK="$WORK" M_WINDOW="$WINDOW" M_SINKS="$SINKS" M_KS="$KS" M_TRIALS="$TRIALS" M_THREADS="$THREADS" \
    M_GIT="$GIT" M_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" M_TIMES="$t0 $t1 $t2" M_TEACHER="$T" \
    M_CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
python3 - "$ROOT/bench/RESULTS.md" <<'PY'
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["M_ROOT"], "bench"))
from results_section import replace_section
from student_state import state_bytes, teacher_kv_bytes
E = os.environ; W = E["M_WORK"]; win = int(E["M_WINDOW"]); S = int(E["M_SINKS"])
t = [float(x) for x in E["M_TIMES"].split()]
heads = json.load(open(f"{W}/heads.json"))
pk = [json.loads(l) for l in open(f"{W}/passkey.jsonl") if l.startswith("{")]
cfgs = {K: json.load(open(f"{W}/swa-k{K}/config.json")) for K in E["M_KS"].split()}
c0 = next(iter(cfgs.values()))
N = 16384
teacher_kv = teacher_kv_bytes(c0, N)
def state(K):
    return state_bytes(cfgs[K], N)
SECTION = "## Long context: global heads without training (issue 13)"
out = [SECTION, ""]
out.append(f"SmolLM2-135M-Instruct; the SWA-only student (`convert --swa-only`: window {win}, {S} sinks, "
           f"the mLSTM branch off, no training) with the K best heads of the teacher's retrieval probe kept "
           f"as full attention (`xdistill heads --window {win} --lengths 2,4,8 --probes 24`, then "
           f"`convert --global-heads heads.json:K`). Passkey by `bench/bench_passkey.c` (its own filler and "
           f"5-digit key, not the probe's formats), {E['M_TRIALS']} trials per length, greedy, correct when the "
           f"key is in the first 8 generated tokens. {E['M_CPU']}, {E['M_THREADS']} threads, {E['M_DATE']}, "
           f"git {E['M_GIT']}. Command: `bench/longctx_heads.sh`.")
out.append("")
out.append(f"Probe: teacher answers {heads['correct']}/{heads['probes']}, {t[1]-t[0]:.0f} s. Top heads "
           "(layer.head score): " + ", ".join(f"{h['layer']}.{h['head']} {h['score']:.2f}" for h in heads['heads'][:12]) + ".")
out.append("")
lens = sorted({r["length"] for r in pk})
hdr = "| model | global heads (KV pairs) | state at 16K | vs teacher KV | " + " | ".join(f"{l // win}×W ({l})" for l in lens) + " |"
out += [hdr, "|" + "---|" * (4 + len(lens))]
def row(name, g, st, frac, model):
    acc = {r["length"]: r["accuracy"] for r in pk if r["model"] == model}
    return f"| {name} | {g} | {st} | {frac} | " + " | ".join(f"{acc.get(l, float('nan')):.2f}" for l in lens) + " |"
out.append(row("teacher", "all", f"{teacher_kv / 2**20:.1f} MiB (KV)", "1", E["M_TEACHER"]))
for K in cfgs:
    p, b = state(K)
    out.append(row(f"SWA-only + {K} global" if K != "0" else "SWA-only", f"{K} ({p})", f"{b / 2**20:.1f} MiB",
                   f"{b / teacher_kv:.3f}", f"{W}/swa-k{K}"))
out.append("")
out.append(f"State = sinks + the 2W window buffers + mLSTM C, n, m of every head + the global heads' keys and "
           f"values (in the student's `global_kv_dtype`, bf16 by default), as `xd_student_state_bytes`; the teacher's KV cache is fp32. Wall: {t[2]-t[1]:.0f} s "
           "for the passkey runs.")
out.append("")
block = "\n".join(out) + "\n"
replace_section(sys.argv[1], SECTION, block)
print(block)
PY
