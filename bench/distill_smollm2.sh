#!/usr/bin/env bash
# Distillation of SmolLM2-135M-Instruct into its xLSTM hybrid student on the
# King James Bible (issue 5, criteria 3 and 5): convert → Stage I →
# teacher-logits → Stage II, then passkey retrieval of teacher and student at
# 0.5×, 2×, 4× and 8× the window. Writes the "Distillation on SmolLM2
# (issue 5)" section of bench/RESULTS.md with the per-layer Stage I table,
# Stage II's validation CE and KL before/after, tokens and wall times.
#
#   bench/distill_smollm2.sh
# Environment: WORK (/tmp/xd-distill), WINDOW (64), SINKS (4), SEQ (256),
# S1_STEPS (200), S2_STEPS (100), S2_LR (1e-3), S2_TRAINABLE (mixer: the KJV is far
# from the teacher's data, and training all weights on its CE makes the student
# better at the KJV than the teacher, i.e. further from it), W_KL (0.1),
# TRIALS (10), THREADS (2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${WORK:-/tmp/xd-distill}" WINDOW="${WINDOW:-64}" SINKS="${SINKS:-4}" SEQ="${SEQ:-256}"
S1_STEPS="${S1_STEPS:-200}" S2_STEPS="${S2_STEPS:-100}" S2_LR="${S2_LR:-1e-3}"
S2_TRAINABLE="${S2_TRAINABLE:-mixer}" W_KL="${W_KL:-0.1}" TRIALS="${TRIALS:-10}" THREADS="${THREADS:-2}"
T="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
X="$ROOT/build/xdistill"
mkdir -p "$WORK"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXD_BENCH=ON >/dev/null
cmake --build build -j "$(nproc)" --target xdistill-cli bench_passkey >/dev/null
[ -f "$WORK/kjv.tok" ] || { scripts/kjv-corpus.sh "$WORK/kjv.txt" &&
    "$X" data prep --tokenizer "$T" "$WORK/kjv.txt" --doc-sep blank -o "$WORK/kjv.tok"; }
rm -rf "$WORK/student" "$WORK/s1" "$WORK/s2"
ts() { date +%s.%N; }
t0=$(ts); "$X" convert "$T" -o "$WORK/student" --window "$WINDOW" --sinks "$SINKS" --threads "$THREADS"; t1=$(ts)
"$X" distill stage1 --teacher "$T" --student "$WORK/student" --data "$WORK/kjv.tok" -o "$WORK/s1" \
    --steps "$S1_STEPS" --seq "$SEQ" --eval-windows 16 --threads "$THREADS" > "$WORK/s1.json"; t2=$(ts)
"$X" teacher-logits "$T" --data "$WORK/kjv.tok" --seq "$SEQ" --rows "$S2_STEPS" --topk 256 \
    -o "$WORK/kjv-$SEQ-$S2_STEPS.topk" --threads "$THREADS" --quiet; t3=$(ts)
"$X" distill stage2 --student "$WORK/s1/model" --logits "$WORK/kjv-$SEQ-$S2_STEPS.topk" --data "$WORK/kjv.tok" \
    --teacher "$T" -o "$WORK/s2" --steps "$S2_STEPS" --lr "$S2_LR" --trainable "$S2_TRAINABLE" --w-kl "$W_KL" \
    --eval-windows 16 --threads "$THREADS" > "$WORK/s2.json"; t4=$(ts)
L1=$((WINDOW / 2)) L2=$((WINDOW * 2)) L4=$((WINDOW * 4)) L8=$((WINDOW * 8))
build/bench/bench_passkey --teacher "$T" --student "$WORK/s2/model" --lengths "$L1,$L2,$L4,$L8" \
    --trials "$TRIALS" --threads "$THREADS" | tee "$WORK/passkey.jsonl"; t5=$(ts)
GIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
export M_ROOT="$ROOT" M_WORK="$WORK" M_WINDOW="$WINDOW" M_SINKS="$SINKS" M_SEQ="$SEQ" M_S1="$S1_STEPS" M_S2="$S2_STEPS" \
    M_LR2="$S2_LR" M_TR="$S2_TRAINABLE" M_WKL="$W_KL" M_THREADS="$THREADS" M_GIT="$GIT" \
    M_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" M_TIMES="$t0 $t1 $t2 $t3 $t4 $t5" M_TRIALS="$TRIALS"
python3 - "$ROOT/bench/RESULTS.md" <<'PY'
import json, os, re, sys
E = os.environ; W = E["M_WORK"]
t = [float(x) for x in E["M_TIMES"].split()]
s1 = json.load(open(f"{W}/s1/stage1.json")); s2 = json.load(open(f"{W}/s2/stage2.json"))
pk = [json.loads(l) for l in open(f"{W}/passkey.jsonl") if l.startswith("{")]
SECTION = "## Distillation on SmolLM2 (issue 5)"
L = [SECTION, ""]
L.append(f"SmolLM2-135M-Instruct → xLSTM hybrid student (window {E['M_WINDOW']}, {E['M_SINKS']} sinks), "
         f"trained on the King James Bible (Debian `bible-kjv`, chapters as documents; validation = the held-out "
         f"5% of chapters, 16 windows of {E['M_SEQ']} tokens), {E['M_THREADS']} threads, fp32.")
L.append("")
L.append(f"### Stage I: per-layer alignment ({s1['steps']} steps × 1 × {E['M_SEQ']} = {s1['tokens']} tokens, "
         f"{t[2]-t[1]:.0f} s wall incl. validation)")
L.append("")
L.append("Validation MSE between the student mixer's output and the teacher's attention output (before W_O), "
         "per layer, before Stage I (fresh conversion) and after:")
L.append("")
L.append("| layer | MSE before | MSE after | after / before |")
L.append("|---:|---:|---:|---:|")
for l in s1["layers"]:
    L.append(f"| {l['layer']} | {l['val_mse_before']:.4g} | {l['val_mse_after']:.4g} | {l['ratio']:.3f} |")
L.append(f"| mean | {s1['val_mse_mean_before']:.4g} | {s1['val_mse_mean_after']:.4g} | "
         f"{s1['val_mse_mean_after']/s1['val_mse_mean_before']:.3f} |")
worst = max(l["ratio"] for l in s1["layers"])
L.append("")
L.append(f"Every layer's MSE falls; the worst layer keeps {100*worst:.1f}% of its initial error.")
L.append("")
L.append(f"### Stage II: {E['M_WKL']}-weighted top-k KL + CE ({s2['steps']} steps × 1 × {E['M_SEQ']} = "
         f"{s2['tokens']} tokens, trainable: {s2['trainable']}, lr {E['M_LR2']}, {t[4]-t[3]:.0f} s wall; "
         f"teacher logits for them: {t[3]-t[2]:.0f} s)")
L.append("")
L.append("| validation | before Stage II | after |")
L.append("|---|---:|---:|")
L.append(f"| student CE (nats/token) | {s2['val_ce_before']:.4f} | {s2['val_ce_after']:.4f} |")
L.append(f"| top-256 KL(teacher ‖ student) | {s2['val_kl_before']:.4f} | {s2['val_kl_after']:.4f} |")
L.append("")
L.append(f"### Passkey retrieval beyond the window ({E['M_TRIALS']} trials per length, greedy)")
L.append("")
L.append("A 5-digit key hidden at evenly spread depths of repeated filler text, asked for at the end "
         "(`bench/bench_passkey.c`); correct when the key appears in the first 8 generated tokens.")
L.append("")
L.append("| prompt length (tokens) | × window | teacher | student |")
L.append("|---:|---:|---:|---:|")
lens = sorted({p["length"] for p in pk})
for n in lens:
    te = next(p for p in pk if p["length"] == n and not p["student"])
    st = next(p for p in pk if p["length"] == n and p["student"])
    L.append(f"| {st['prompt_tokens']} | {st['prompt_tokens']/int(E['M_WINDOW']):.1f} | "
             f"{te['correct']}/{te['trials']} | {st['correct']}/{st['trials']} |")
L.append("")
L.append(f"Command: `bench/distill_smollm2.sh` (WINDOW={E['M_WINDOW']} SINKS={E['M_SINKS']} SEQ={E['M_SEQ']} "
         f"S1_STEPS={E['M_S1']} S2_STEPS={E['M_S2']} S2_LR={E['M_LR2']} S2_TRAINABLE={E['M_TR']} W_KL={E['M_WKL']}; "
         f"{E['M_DATE']}; xdistill {E['M_GIT']}; total {t[5]-t[0]:.0f} s).")
L.append("")
sys.path.insert(0, os.path.join(os.environ["M_ROOT"], "bench"))
from results_section import replace_section
replace_section(sys.argv[1], SECTION, "\n".join(L))
PY
