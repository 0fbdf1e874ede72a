#!/usr/bin/env bash
# make demo: the whole pipeline on SmolLM2-135M-Instruct, small budgets, about
# 13–40 minutes on 2 cores (by machine; 13 min on a 2-core Xeon with AVX-512): task suite → convert → Stage I → teacher logits →
# Stage II → evaluation of the teacher, the student and the SWA-only baseline
# → win-and-tie comparison → HTML report. Prints the verdict and the report's path.
#
# Environment: XD_TEACHER (the GGUF), WORK (~/.cache/xdistill/demo), BUILD (build),
# WINDOW (64), SEQ (256: Stage II and the teacher logits), S1_SEQ (1024), S1_STEPS (20),
# S2_STEPS (60), GLOBAL_HEADS (auto:fit: as many of the retrieval probe's best KV groups as
# fit 10% of the teacher's KV cache at 16K tokens, kept as full attention, 35 for SmolLM2 in
# k8v4; auto:45g: the 45 best; "none": no global heads), GLOBAL_KV (k8v4: int8 keys and int4
# values in the decoding state; bf16, int8, int4 or f32), ECHO (0.5: the rate of `data echo`,
# repeats of earlier lines 1.5 W to 32 W tokens back in the training data; 0: plain text),
# ECHO_MIN_LEN (3: the shortest line or span repeated), SPARSE_CACHE (64: rows per layer that
# left the window kept by how badly the mLSTM recalls them, docs/design.md "Sparse cache";
# 0: none), N (20 examples per task), THREADS (all cores).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
T="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
WORK="${WORK:-$HOME/.cache/xdistill/demo}"
X="$ROOT/${BUILD:-build}/xdistill"
WINDOW="${WINDOW:-64}" SEQ="${SEQ:-256}" S1_SEQ="${S1_SEQ:-1024}" S1_STEPS="${S1_STEPS:-20}"
S2_STEPS="${S2_STEPS:-60}" N="${N:-20}" GLOBAL_HEADS="${GLOBAL_HEADS:-auto:fit}"
GLOBAL_KV="${GLOBAL_KV:-k8v4}" ECHO="${ECHO:-0.5}" ECHO_MIN_LEN="${ECHO_MIN_LEN:-3}"
SPARSE_CACHE="${SPARSE_CACHE:-64}"
GH=(); [ "$GLOBAL_HEADS" != none ] && GH=(--global-heads "$GLOBAL_HEADS" --global-kv "$GLOBAL_KV")
TH=(); [ -n "${THREADS:-}" ] && TH=(--threads "$THREADS")
mkdir -p "$WORK"
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
LEDGER="$WORK/ledger.jsonl"; : > "$LEDGER"
stage() { # name tokens start end
    awk -v n="$1" -v k="$2" -v a="$3" -v b="$4" \
        'BEGIN { printf "{\"name\":\"%s\",\"tokens\":%d,\"seconds\":%.1f}\n", n, k, b - a }' >> "$LEDGER"
}
T0=$(now)

say "1/8 data: the King James Bible (Debian bible-kjv) as token data, with echoes at rate $ECHO"
t=$(now)
[ -f "$WORK/kjv.tok" ] || { "$ROOT/scripts/kjv-corpus.sh" "$WORK/kjv.txt" &&
    "$X" data prep --tokenizer "$T" "$WORK/kjv.txt" --doc-sep blank -o "$WORK/kjv.tok" "${TH[@]}"; }
DATA="$WORK/kjv.tok"
if [ "$ECHO" != 0 ]; then # retrieval-bearing training data: echoes beyond the window (docs/data.md)
    DATA="$WORK/kjv-echo$ECHO-$ECHO_MIN_LEN.tok"
    "$X" data echo "$WORK/kjv.tok" --tokenizer "$T" -o "$DATA" --rate "$ECHO" \
        --min-len "$ECHO_MIN_LEN" --min-gap $((WINDOW * 3 / 2)) --max-gap $((WINDOW * 32)) --quiet
fi
stage data 0 "$t" "$(now)"

say "2/8 the built-in task suite (window $WINDOW)"
t=$(now)
rm -rf "$WORK/suite"
"$X" tasks make -o "$WORK/suite" --window "$WINDOW" --n "$N"
stage tasks 0 "$t" "$(now)"

say "3/8 convert: the xLSTM hybrid student (global heads: $GLOBAL_HEADS, keys/values in $GLOBAL_KV; sparse cache: $SPARSE_CACHE rows per layer) and the SWA-only baseline"
t=$(now)
rm -rf "$WORK/student" "$WORK/swa" "$WORK/s1" "$WORK/s2"
"$X" convert "$T" -o "$WORK/student" --window "$WINDOW" --sinks 4 "${GH[@]}" \
    --sparse-cache "$SPARSE_CACHE" "${TH[@]}"
"$X" convert "$T" -o "$WORK/swa" --window "$WINDOW" --sinks 4 --swa-only "${TH[@]}"
stage convert 0 "$t" "$(now)"

say "4/8 Stage I: per-layer alignment ($S1_STEPS steps x $S1_SEQ tokens)"
t=$(now)
"$X" distill stage1 --teacher "$T" --student "$WORK/student" --data "$DATA" -o "$WORK/s1" \
    --steps "$S1_STEPS" --seq "$S1_SEQ" --eval-windows $(( S1_SEQ < 2048 ? 2048 / S1_SEQ : 1 )) \
    "${TH[@]}" >/dev/null
stage "stage 1" $((S1_STEPS * S1_SEQ)) "$t" "$(now)"

say "5/8 teacher logits (top-256, $S2_STEPS rows of $SEQ tokens)"
t=$(now)
LOGITS="$WORK/$(basename "$DATA" .tok)-$SEQ-$S2_STEPS.topk" # named after its data: one file per data
"$X" teacher-logits "$T" --data "$DATA" --seq "$SEQ" --rows "$S2_STEPS" --topk 256 \
    -o "$LOGITS" --quiet "${TH[@]}"
stage "teacher logits" $((S2_STEPS * SEQ)) "$t" "$(now)"

say "6/8 Stage II: 0.9 CE + 0.1 KL ($S2_STEPS steps x $SEQ tokens, mixer parameters)"
t=$(now)
"$X" distill stage2 --student "$WORK/s1/model" --logits "$LOGITS" \
    --data "$DATA" -o "$WORK/s2" --steps "$S2_STEPS" --trainable mixer --lr 1e-3 \
    --eval-windows 8 "${TH[@]}" >/dev/null
stage "stage 2" $((S2_STEPS * SEQ)) "$t" "$(now)"

say "7/8 evaluation: teacher, student, SWA-only baseline"
for who in teacher student swa; do
    case $who in teacher) M="$T";; student) M="$WORK/s2/model";; swa) M="$WORK/swa";; esac
    t=$(now)
    "$X" eval "$M" --suite "$WORK/suite" -o "$WORK/$who.json" "${TH[@]}"
    stage "eval $who" 0 "$t" "$(now)"
done

say "8/8 win-and-tie and the report"
python3 -c 'import json,sys; print(json.dumps({"stages":[json.loads(l) for l in open(sys.argv[1])]}))' \
    "$LEDGER" > "$WORK/ledger.json"
"$X" compare "$WORK/teacher.json" "$WORK/student.json" --swa "$WORK/swa.json" \
    --logs "$WORK/s1/log.jsonl" --logs "$WORK/s2/log.jsonl" --ledger "$WORK/ledger.json" \
    -o "$WORK/wintie.json" --report "$WORK/report.html"
awk -v r="$WORK/report.html" -v a="$T0" -v b="$(now)" 'BEGIN { printf "\nreport: %s\n(%.0f s in all)\n", r, b - a }'
