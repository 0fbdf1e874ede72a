#!/usr/bin/env bash
# The cost of LoRA on the engine (issue 14, criterion 6), on SmolLM2-135M-Instruct:
#  - EVA's initialisation time, xdistill (`lora --init eva`) against HF PEFT's
#    initialize_lora_eva_weights (PyTorch CPU fp32, bench/peft_eva.py) on the same
#    machine, the same token rows (one long document: no boundary inside a row, so both
#    sides compute the same activations), the same r / rho / tau, back to back; and
#    whether both give the same rank distribution;
#  - LoRA training against full fine-tuning with the same batches: peak RSS (ratio;
#    the criterion is <= 60%) and tokens/s.
# Writes the "LoRA cost (issue 14)" section of bench/RESULTS.md.
#
#   bench/lora_cost.sh            (or: make bench-lora-cost)
#
# Environment: THREADS (2), XD_TEACHER (the GGUF), XD_REF_PY (a Python with torch,
# transformers, gguf and peft; default ~/xd-ref/bin/python), BUILD (build), B (4) and
# SEQ (256): the EVA batch and the training batch, R (8), RHO (2), TAU (0.99),
# STEPS (10 training steps per side), RESULTS (bench/RESULTS.md).
set -euo pipefail
BENCH=lora_cost
source "$(dirname "$0")/common.sh"
B="${B:-4}"; SEQ="${SEQ:-256}"; R="${R:-8}"; RHO="${RHO:-2}"; TAU="${TAU:-0.99}"
STEPS="${STEPS:-10}"
OUT="$ROOT/bench/out/lora"
X="$BUILD/xdistill"
mkdir -p "$OUT"
need_teacher
need_py torch transformers gguf peft

# the KJV text as two documents (train: all but the last 3000 lines; validation)
scripts/kjv-corpus.sh "$OUT/kjv.txt" >&2
head -n -3000 "$OUT/kjv.txt" > "$OUT/kjv-a.txt"
tail -n 3000 "$OUT/kjv.txt" > "$OUT/kjv-b.txt"
"$X" data prep --tokenizer "$MODEL" "$OUT/kjv-a.txt" "$OUT/kjv-b.txt" --doc-sep file \
    --val-frac 0.5 --quiet -o "$OUT/kjv2.tok" >&2

# peak RSS (MB) and the stdout of a command: /usr/bin/time -v
run_rss() { # NAME CMD...
    local name="$1"; shift
    /usr/bin/time -v "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" ||
        { cat "$OUT/$name.err" >&2; exit 1; }
    grep 'Maximum resident' "$OUT/$name.err" | awk '{print $NF / 1024}' > "$OUT/$name.rss"
}

echo "lora_cost: EVA, xdistill" >&2
rm -rf "$OUT/eva-xd"
run_rss eva_xd "$X" lora "$MODEL" --data "$OUT/kjv2.tok" -o "$OUT/eva-xd" --threads "$THREADS" \
    --init eva --r "$R" --alpha "$R" --eva-rho "$RHO" --eva-tau "$TAU" --eva-batch "$B" \
    --eva-seq "$SEQ" --eva-steps 1000 --steps 1 --batch 1 --seq 64 --eval-windows 1
echo "lora_cost: EVA, PEFT" >&2
"$PY" bench/peft_eva.py --model "$MODEL" --data "$OUT/kjv2.tok" --batch "$B" --seq "$SEQ" \
    --r "$R" --alpha "$R" --rho "$RHO" --tau "$TAU" --threads "$THREADS" \
    2> "$OUT/eva_peft.err" | tail -1 > "$OUT/eva_peft.json"

echo "lora_cost: full fine-tuning vs LoRA, $STEPS steps of $B x $SEQ" >&2
COMMON=(--data "$OUT/kjv2.tok" --threads "$THREADS" --steps "$STEPS" --batch "$B" --seq "$SEQ"
        --warmup 2 --eval-windows 2 --save-every 0)
rm -rf "$OUT/ft" "$OUT/lora"
run_rss ft "$X" finetune "$MODEL" -o "$OUT/ft" "${COMMON[@]}"
run_rss lora "$X" lora "$MODEL" -o "$OUT/lora" "${COMMON[@]}" --r "$R" --alpha "$R"

CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
GIT="$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
python3 - "${RESULTS:-$ROOT/bench/RESULTS.md}" "$OUT" "$CPU" "$GIT" "$THREADS" "$B" "$SEQ" "$R" \
    "$RHO" "$TAU" "$STEPS" <<'PY'
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
from results_section import replace_section
res, out, cpu, git, th, B, T, R, rho, tau, steps = sys.argv[1:]

def last_json(path, key=None):
    for line in reversed(open(path).read().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            j = json.loads(line)
            if key is None or key in j:
                return j
    raise SystemExit(f"lora_cost: no JSON in {path}")

ex = last_json(f"{out}/eva_xd.json", "eva")["eva"]
pe = last_json(f"{out}/eva_peft.json")
cfg = json.load(open(f"{out}/eva-xd/adapter/adapter_config.json"))
ours, theirs = cfg["rank_pattern"], pe["rank_pattern"]
diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k, int(R)) != theirs.get(k, int(R)))
ft, lo = last_json(f"{out}/ft.json", "kind"), last_json(f"{out}/lora.json", "kind")

def step_tok_s(run):
    """B·T over the median time of the steps after the first (the log's elapsed times):
    the final save (1.6 GB of weights and moments for full fine-tuning) and the
    validation are not steps."""
    e = [json.loads(l)["elapsed"] for l in open(f"{out}/{run}/log.jsonl")]
    d = sorted(b - a for a, b in zip(e[1:], e[2:]))
    return int(B) * int(T) / d[len(d) // 2]

ft["tok_s"], lo["tok_s"] = step_tok_s("ft"), step_tok_s("lora")
rss = {k: float(open(f"{out}/{k}.rss").read()) for k in ("eva_xd", "ft", "lora")}
ratio = rss["lora"] / rss["ft"]
L = ["## LoRA cost (issue 14)", "",
     f"`bash bench/lora_cost.sh` at {git}, {cpu}, {th} threads on both sides; PEFT "
     f"{pe['peft']}, torch {pe['torch']}, transformers {pe['transformers']} (CPU fp32). "
     "SmolLM2-135M-Instruct (the Q4_1 GGUF dequantised to fp32 on both sides), LoRA on all "
     f"seven projections of the 30 blocks (210 modules), r = {R}, alpha = {R}. Data: the KJV "
     "text as one training document (so no row crosses a document boundary and both sides "
     "compute the same activations).", "",
     "### EVA initialisation", "",
     f"Batches of {B} x {T} tokens, rho {rho}, tau {tau}; PEFT has no step cap, xdistill's "
     "was 1000 (not reached).", "",
     "| | xdistill | PEFT | ratio |", "|---|---:|---:|---:|",
     f"| seconds | {ex['seconds']:.1f} | {pe['seconds']:.1f} | xdistill / PEFT = {ex['seconds'] / pe['seconds']:.2f} |",
     f"| forward passes | {ex['passes']} | {pe['passes']} (one more: PEFT's input-hash pass) | |",
     f"| of which PCA (s) | {ex['pca_seconds']:.1f} | | |",
     f"| groups converged / capped | {ex['converged']} / {ex['capped']} of {ex['groups']} | | |",
     f"| rank distribution | {ex['rank_sum']} of budget {ex['rank_budget']} | | "
     + ("identical" if not diff else f"{len(diff)} modules differ: " + ", ".join(diff[:6])) + " |",
     "", "### LoRA training against full fine-tuning", "",
     f"{steps} steps of {B} x {T} tokens each, the same data and schedule; AdamW on all weights "
     "(`finetune`) or on the adapters only (`lora`, random init). Peak RSS of the whole "
     "command (`/usr/bin/time -v`).", "",
     "| | full fine-tuning | LoRA r = " + R + " | LoRA / full |", "|---|---:|---:|---:|",
     f"| peak RSS (MB) | {rss['ft']:.0f} | {rss['lora']:.0f} | {ratio:.2f} (criterion <= 0.60) |",
     f"| tokens/s (median step) | {ft['tok_s']:.0f} | {lo['tok_s']:.0f} | {lo['tok_s'] / ft['tok_s']:.2f} |",
     f"| final training loss | {ft['loss']:.3f} | {lo['loss']:.3f} | |",
     "", f"xdistill's EVA run (EVA pass + 1 training step) peaked at {rss['eva_xd']:.0f} MB; "
     f"PEFT's script at {pe['rss_peak_mb']:.0f} MB.", ""]
replace_section(res, L[0], "\n".join(L) + "\n")
print("\n".join(L))
PY
