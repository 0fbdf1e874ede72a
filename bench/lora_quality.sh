#!/usr/bin/env bash
# Does EVA help? (issue 14, criterion 5.) Fine-tunes SmolLM2-135M-Instruct on two tasks it
# does badly (bench/lora_tasks.py: WordNet gloss -> held-out word; 3-digit addition),
# instruction data with the prompt masked, and compares LoRA initialised by EVA, by random
# (PEFT's default) and by PiSSA with full fine-tuning, with the same token budget, over
# SEEDS (each seed shuffles the training examples differently, and seeds the random init).
# Reports training-loss curves (SVG from the logs), held-out accuracy with bootstrap
# intervals (`xdistill eval`), and steps until the loss random-init LoRA ends at.
# Writes the "Does EVA help? (issue 14)" section of bench/RESULTS.md and
# bench/lora_loss_curves.svg.
#
#   bench/lora_quality.sh         (or: make bench-lora)
#
# Environment: THREADS (2), XD_TEACHER, BUILD (build), SEEDS ("1 2 3"), METHODS
# ("eva random pissa full"), TASKS ("gloss add3"), STEPS (80), B (4), SEQ (64), R (8),
# ALPHA (16), LR_LORA (1e-3), LR_FULL (5e-5), HELDOUT (200), RESULTS, OUT (the runs:
# bench/out/lora_quality; a run with its heldout.json is not redone).
set -euo pipefail
BENCH=lora_quality
source "$(dirname "$0")/common.sh"
SEEDS="${SEEDS:-1 2 3}"; METHODS="${METHODS:-eva random pissa full}"; TASKS="${TASKS:-gloss add3}"
STEPS="${STEPS:-80}"; B="${B:-4}"; SEQ="${SEQ:-64}"; R="${R:-8}"; ALPHA="${ALPHA:-16}"
LR_LORA="${LR_LORA:-1e-3}"; LR_FULL="${LR_FULL:-5e-5}"; HELDOUT="${HELDOUT:-200}"
OUT="${OUT:-$ROOT/bench/out/lora_quality}"
X="$BUILD/xdistill"
mkdir -p "$OUT"
need_teacher
python3 bench/lora_tasks.py --out "$OUT" --heldout "$HELDOUT" >&2

for task in $TASKS; do
    [ -f "$OUT/$task/base.json" ] ||
        "$X" eval "$MODEL" --suite "$OUT/$task/suite" -o "$OUT/$task/base.json" --threads "$THREADS" >&2
    for seed in $SEEDS; do
        "$X" data prep --tokenizer "$MODEL" "$OUT/$task/train.jsonl" --prompt-field prompt \
            --field completion --seed "$seed" --val-frac 0.05 --quiet -o "$OUT/$task/s$seed.tok" >&2
        for m in $METHODS; do
            run="$OUT/$task/$m-s$seed"
            [ -f "$run/heldout.json" ] && continue # done in an earlier, interrupted run
            rm -rf "$run"
            echo "lora_quality: $task $m seed $seed" >&2
            common=(--data "$OUT/$task/s$seed.tok" -o "$run" --steps "$STEPS" --batch "$B"
                    --seq "$SEQ" --warmup 5 --eval-windows 8 --threads "$THREADS")
            if [ "$m" = full ]; then
                "$X" finetune "$MODEL" "${common[@]}" --lr "$LR_FULL" > "$run.json"
                "$X" eval "$run/model" --suite "$OUT/$task/suite" -o "$run/heldout.json" \
                    --threads "$THREADS" >&2
                rm -rf "$run/model" "$run"/ckpt-* "$run/checkpoint"
            else
                "$X" lora "$MODEL" "${common[@]}" --lr "$LR_LORA" --r "$R" --alpha "$ALPHA" \
                    --init "$m" --lora-seed "$seed" --eva-batch "$B" --eva-seq "$SEQ" > "$run.json"
                "$X" eval "$MODEL" --adapter "$run/adapter" --suite "$OUT/$task/suite" \
                    -o "$run/heldout.json" --threads "$THREADS" >&2
                rm -rf "$run"/ckpt-* "$run/checkpoint"
            fi
        done
    done
done

CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
GIT="$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
python3 bench/lora_quality_render.py --out "$OUT" --results "${RESULTS:-$ROOT/bench/RESULTS.md}" \
    --svg "$ROOT/bench/lora_loss_curves.svg" --cpu "$CPU" --git "$GIT" --tasks "$TASKS" \
    --methods "$METHODS" --seeds "$SEEDS" --config "steps $STEPS x $B x $SEQ tokens, r $R, alpha $ALPHA, lr $LR_LORA (LoRA) / $LR_FULL (full), $THREADS threads"
