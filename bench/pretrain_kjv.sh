#!/usr/bin/env bash
# Issue 4, criterion 3: pretrain a 3.5M-parameter Llama (bench/configs/kjv-3m.json,
# SmolLM2's tokenizer) on the King James Bible for one epoch (~1M tokens) and
# compare its validation loss with the unigram baselines of the same data.
# Usage: bench/pretrain_kjv.sh [OUT_DIR]   (BUILD=build, XD_TEACHER=... as in the Makefile)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/xd-kjv}"
bin="${BUILD:-build}/xdistill"
tok="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
mkdir -p "$out"
scripts/kjv-corpus.sh "$out/kjv.txt"
"$bin" data prep --tokenizer "$tok" "$out/kjv.txt" --doc-sep blank -o "$out/kjv.tok" --quiet
"$bin" data info "$out/kjv.tok" | tee "$out/data-info.txt"
rm -rf "$out/run"
start=$(date +%s)
OMP_NUM_THREADS=${THREADS:-2} "$bin" pretrain --config bench/configs/kjv-3m.json --tokenizer "$tok" \
  --data "$out/kjv.tok" -o "$out/run" --steps 500 --batch 16 --seq 128 --lr 3e-3 --min-lr 1e-4 \
  --warmup 30 --eval-every 100 --eval-windows 0 --save-every 100 | tee "$out/summary.json"
echo "wall time: $(( $(date +%s) - start )) s"
grep val_loss "$out/run/log.jsonl"
