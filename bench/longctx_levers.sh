#!/usr/bin/env bash
# Issue 13, criterion 4: each long-context lever alone, on the demo's data and settings with
# the global heads left out (the ablation table's "each lever alone" rows in bench/RESULTS.md):
#   l3   lever 3 alone: echoed training text, Stage I 20 × 1024, Stage II 60 × 256
#   l23  the same weights with a sparse cache of 64 rows per layer (lever 2 + 3)
#   l2   lever 2 alone, untrained: a SWA-only student with the cache
#   l34  lever 3 with the gated delta rule as the memory (lever 4)
# Each is scored on the long tasks and arithmetic of the suite. Needs a finished
# bench-longctx (or `make demo` with N=40) run in WORK: its echoed data, teacher logits and
# suite. Results: OUT/NAME.json (xdistill eval), OUT/times.txt. ~25 min on 2 cores.
#
#   WORK=~/.cache/xdistill/longctx OUT=/tmp/levers bench/longctx_levers.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; X="$BUILD/xdistill"
T="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
WORK="${WORK:-$HOME/.cache/xdistill/longctx}"; OUT="${OUT:-$WORK/levers}"
TH=(--threads "${THREADS:-2}")
DATA=$(ls "$WORK"/kjv-echo*.tok | head -1); LOGITS=$(ls "$WORK"/kjv-echo*.topk | head -1)
TASKS=passkey_2w,passkey_8w,assoc_recall,copy,kjv_cloze_far,arithmetic
mkdir -p "$OUT"
now() { date +%s; }
train() { # NAME convert-options...
    local n=$1; shift
    [ -f "$OUT/$n/s2/model/config.json" ] && return 0
    rm -rf "${OUT:?}/$n"; mkdir -p "$OUT/$n"
    local t0; t0=$(now)
    "$X" convert "$T" -o "$OUT/$n/student" --window 64 --sinks 4 "$@" "${TH[@]}"
    "$X" distill stage1 --teacher "$T" --student "$OUT/$n/student" --data "$DATA" -o "$OUT/$n/s1" \
        --steps 20 --seq 1024 --eval-windows 2 "${TH[@]}" > /dev/null
    "$X" distill stage2 --student "$OUT/$n/s1/model" --logits "$LOGITS" --data "$DATA" \
        -o "$OUT/$n/s2" --steps 60 --trainable mixer --lr 1e-3 --eval-windows 8 "${TH[@]}" > /dev/null
    echo "$n training $(( $(now) - t0 )) s" >> "$OUT/times.txt"
}
score() { # NAME MODEL
    [ -f "$OUT/$1.json" ] && return 0
    local t0; t0=$(now)
    "$X" eval "$2" --suite "$WORK/suite" --tasks "$TASKS" -o "$OUT/$1.json" "${TH[@]}" > "$OUT/$1.log" 2>&1
    echo "$1 eval $(( $(now) - t0 )) s" >> "$OUT/times.txt"
}
train l3
score l3 "$OUT/l3/s2/model"
rm -rf "$OUT/l3c"; cp -r "$OUT/l3/s2/model" "$OUT/l3c"
python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['sparse_cache']=64; json.dump(c,open(p,'w'),indent=2)" "$OUT/l3c/config.json"
score l23 "$OUT/l3c"
[ -d "$OUT/swac" ] || "$X" convert "$T" -o "$OUT/swac" --window 64 --sinks 4 --swa-only --sparse-cache 64 "${TH[@]}"
score l2 "$OUT/swac"
train l4 --memory delta
score l34 "$OUT/l4/s2/model"
