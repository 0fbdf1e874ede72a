#!/usr/bin/env bash
# Modular DiffPruning debiasing (issue 15, criteria 5 and 6): SmolLM2-135M-Instruct as the
# encoder on generated biographies (bench/bios_gen.py: occupation label; gender and age
# group correlated with it in every split), per seed:
#   full       full fine-tuning                          (debias task --full)
#   full_adv   full fine-tuning with an adversary on gender (the non-modular baseline)
#   task       the task diff alone                       (debias task)
#   gender     + the gender diff                         (debias attribute --protect gender)
#   age        + the age diff                            (debias attribute --protect age)
#   both       + both attribute diffs stacked
# Each row is scored by `debias eval`: task accuracy, leakage per attribute (a fresh
# post-hoc attacker's balanced accuracy; chance 0.5) and TPR-GAP (RMS over classes), each
# with a bootstrap interval, the diffs' non-zeros and bytes. Twice: on the test split,
# where gender and age are correlated with the occupation as in training (so the label
# alone implies a leakage well above 0.5: reported as label_leakage), and (ROW.indep.json)
# on a test split whose attributes are independent of the occupation, the attacker
# trained on an attack split drawn the same way (bios_gen.py --n-attack): there a
# representation that encodes the occupation and nothing else leaks at chance, 0.5. Time and peak RSS of every
# phase are recorded. Results per seed go to bench/debias_results/sSEED/ (small JSON files,
# kept in the repository so that seeds can be added in later runs); the section
# "Modular DiffPruning debiasing (issue 15)" of bench/RESULTS.md is rendered from every
# seed there (bench/debias_render.py); bench/out/debias/report-sSEED.html shows each seed's
# rows side by side (debias report).
#
#   bench/debias.sh             (or: make bench-debias)
#
# Environment: THREADS (2), XD_TEACHER, BUILD (build), SEEDS ("1 2 3"), N_TRAIN (2000),
# N_VAL (200), N_TEST (500), ATTACK_MAX (500), STEPS (240), MASK_STEPS (120), B (8),
# MAX_LEN (80), POOL (mean), LR (2e-4), LR_HEAD (5e-3), LR_ADV (5e-3), SPARSITY (0.05),
# ATTACK_EPOCHS (40), GENDER_OPTS, AGE_OPTS (the options of that attribute's diff; defaults:
# counterfactual invariance at weight 100 without an adversary, the gender pairs made by the
# word swap list the script writes (bench/gender_swaps.py: faker's names, gendered words),
# the age pairs the generator's own `text_cf_age` of the training split, as there is no
# generic swap list for ages), ROWS ("full full_adv task gender age both"), OUT (the runs:
# bench/out/debias), RES (bench/debias_results), RESULTS (bench/RESULTS.md). A row whose
# results exist is not redone; a seed whose config.json differs is refused (move its results
# away first).
set -euo pipefail
BENCH=debias
source "$(dirname "$0")/common.sh"
SEEDS="${SEEDS:-1 2 3}"
N_TRAIN="${N_TRAIN:-2000}"; N_VAL="${N_VAL:-200}"; N_TEST="${N_TEST:-500}"
ATTACK_MAX="${ATTACK_MAX:-500}"; ATTACK_EPOCHS="${ATTACK_EPOCHS:-40}"
STEPS="${STEPS:-240}"; MASK_STEPS="${MASK_STEPS:-120}"; B="${B:-8}"; MAX_LEN="${MAX_LEN:-80}"
POOL="${POOL:-mean}"; LR="${LR:-2e-4}"; LR_HEAD="${LR_HEAD:-5e-3}"; LR_ADV="${LR_ADV:-5e-3}"
SPARSITY="${SPARSITY:-0.05}"; ROWS="${ROWS:-full full_adv task gender age both}"
OUT="${OUT:-$ROOT/bench/out/debias}"; RES="${RES:-$ROOT/bench/debias_results}"
GENDER_OPTS="${GENDER_OPTS---adv-heads 0 --cf-swap $OUT/gender_swaps.txt --cf-weight 100}"
AGE_OPTS="${AGE_OPTS---adv-heads 0 --cf-field text_cf_age --cf-weight 100}"
RESULTS="${RESULTS:-$ROOT/bench/RESULTS.md}"
X="$BUILD/xdistill"
need_teacher
if ! /usr/bin/python3 -c 'import faker' 2>/dev/null || [ ! -f /usr/share/wordnet/data.noun ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-fake-factory wordnet-base >/dev/null
fi
DATA="$OUT/bios"; INDEP="$OUT/bios-indep"
mkdir -p "$OUT" "$RES"
/usr/bin/python3 bench/gender_swaps.py -o "$OUT/gender_swaps.txt"
# --counterfactual: train and val records also carry text_cf_gender and text_cf_age (the
# same biography told of the other gender / age group; `text` keeps its bytes)
[ -f "$DATA/test.jsonl" ] && grep -q text_cf_age "$DATA/train.jsonl" ||
    /usr/bin/python3 bench/bios_gen.py -o "$DATA" --seed 1 --n-train "$N_TRAIN" --n-val "$N_VAL" \
        --n-test "$N_TEST" --counterfactual >&2
# the same train split; test and attack splits with the attributes independent of the label
[ -f "$INDEP/attack.jsonl" ] && grep -q text_cf_age "$INDEP/train.jsonl" ||
    /usr/bin/python3 bench/bios_gen.py -o "$INDEP" --seed 1 --n-train "$N_TRAIN" --n-val "$N_VAL" \
        --n-test "$N_TEST" --n-attack "$ATTACK_MAX" --test-corr-gender 0.5 --test-corr-age 0.5 \
        --counterfactual >&2
cmp -s "$DATA/train.jsonl" "$INDEP/train.jsonl" ||
    { echo "debias: $DATA and $INDEP have different train splits" >&2; exit 1; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
opts=(--threads "$THREADS" --batch "$B" --max-len "$MAX_LEN" --pool "$POOL" --lr "$LR"
      --lr-head "$LR_HEAD" --lr-adv "$LR_ADV" --steps "$STEPS")
data=(--train "$DATA/train.jsonl" --val "$DATA/val.jsonl")

# timed RUN_DIR LABEL CMD...: runs CMD under /usr/bin/time, appends {label, seconds, rss_mib,
# phases: {name: seconds from the phase's log}} to $res/cost.jsonl
timed() {
    local dir="$1" label="$2"; shift 2
    local t="$OUT/time.$$"
    mkdir -p "$(dirname "$dir")"
    /usr/bin/time -v -o "$t" "$@" > "$dir.json"
    python3 - "$t" "$dir" "$label" >> "$res/cost.jsonl" <<'EOF'
import json, os, re, sys
t, d, label = sys.argv[1:4]
txt = open(t).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", txt).group(1).split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt).group(1)) / 1024
phases = {}
for ph in ("full", "mask", "fixmask"):
    p = os.path.join(d, ph, "log.jsonl")
    if os.path.exists(p):
        last = [json.loads(l) for l in open(p) if l.strip()][-1]
        phases[ph] = {"seconds": last["elapsed"], "steps": last["step"], "tok_s": last["tok_s"],
                      "peak_rss_mib": last.get("peak_rss_mib"), "rss_mib": last.get("rss_mib")}
print(json.dumps({"label": label, "seconds": round(secs, 1), "rss_mib": round(rss), "phases": phases}))
EOF
    rm -f "$t"
}

# evaluate ROW TASK_DIR [WITH]: ROW.json (correlated test) and ROW.indep.json (independent)
evaluate() {
    local row="$1" task="$2" with="${3:-}"
    local w=()
    [ -n "$with" ] && w=(--with "$with")
    score "$row" "" "$DATA/train.jsonl" "$DATA/test.jsonl"
    score "$row" .indep "$INDEP/attack.jsonl" "$INDEP/test.jsonl"
}

# score ROW SUFFIX ATTACKER_TRAIN TEST (evaluate's task, w): RES/ROW SUFFIX.json unless there
score() {
    local out="$res/$1$2.json"
    [ -f "$out" ] && return 0
    echo "debias: seed $seed, evaluating $1${2:+ (attributes independent of the occupation)}" >&2
    "$X" debias eval "$MODEL" --task "$task" "${w[@]}" --train "$3" --test "$4" \
        --attack-max "$ATTACK_MAX" --attack-epochs "$ATTACK_EPOCHS" --threads "$THREADS" \
        --seed "$seed" -o "$out.tmp" > /dev/null
    mv "$out.tmp" "$out"
}

for seed in $SEEDS; do
    res="$RES/s$seed"; run="$OUT/s$seed"
    mkdir -p "$res" "$run"
    echo "{\"cpu\": \"$cpu\", \"threads\": $THREADS, \"steps\": $STEPS, \"mask_steps\": $MASK_STEPS, \"batch\": $B, \"max_len\": $MAX_LEN, \"pool\": \"$POOL\", \"lr\": $LR, \"lr_head\": $LR_HEAD, \"lr_adv\": $LR_ADV, \"sparsity\": $SPARSITY, \"n_train\": $N_TRAIN, \"n_test\": $N_TEST, \"attack_max\": $ATTACK_MAX, \"attack_epochs\": $ATTACK_EPOCHS, \"gender_opts\": \"${GENDER_OPTS//$ROOT\//}\", \"age_opts\": \"${AGE_OPTS//$ROOT\//}\", \"independent_test\": \"bios_gen.py --test-corr-gender 0.5 --test-corr-age 0.5 --n-attack $ATTACK_MAX\"}" > "$res/config.new"
    # results of other settings must not be averaged with these (the CPU may differ)
    if [ -f "$res/config.json" ] && ! python3 - "$res/config.json" "$res/config.new" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
a.pop("cpu", None); b.pop("cpu", None)
sys.exit(a != b)
EOF
    then
        echo "debias: $res holds results of other settings ($res/config.json); move them away" >&2
        rm -f "$res/config.new"; exit 1
    fi
    mv "$res/config.new" "$res/config.json"
    for row in $ROWS; do
        [ -f "$res/$row.json" ] && [ -f "$res/$row.indep.json" ] && continue
        echo "debias: seed $seed, $row" >&2
        case "$row" in
        full|full_adv)
            adv=(); [ "$row" = full_adv ] && adv=(--adv gender)
            rm -rf "$run/$row"
            timed "$run/$row" "$row" "$X" debias task "$MODEL" "${data[@]}" --label-field occupation \
                --attr gender,age --full "${adv[@]}" "${opts[@]}" --seed "$seed" -o "$run/$row"
            evaluate "$row" "$run/$row"
            rm -rf "$run/$row/model" "$run/$row/full/ckpt-"* "$run/$row/full/checkpoint" ;;
        task)
            [ -f "$run/task/diff.safetensors" ] ||
                timed "$run/task" task "$X" debias task "$MODEL" "${data[@]}" --label-field occupation \
                    --attr gender,age "${opts[@]}" --mask-steps "$MASK_STEPS" --sparsity "$SPARSITY" \
                    --seed "$seed" --resume -o "$run/task"
            evaluate task "$run/task" ;;
        gender|age)
            more=(); [ "$row" = gender ] && more=($GENDER_OPTS); [ "$row" = age ] && more=($AGE_OPTS)
            [ -f "$run/task/attributes/$row/diff.safetensors" ] ||
                timed "$run/task/attributes/$row" "$row" "$X" debias attribute "$MODEL" \
                    --task "$run/task" --protect "$row" "${data[@]}" "${opts[@]}" \
                    --mask-steps "$MASK_STEPS" --sparsity "$SPARSITY" --seed "$seed" --resume \
                    "${more[@]}"
            evaluate "$row" "$run/task" "$row" ;;
        both)
            evaluate both "$run/task" gender,age ;;
        esac
    done
    # the checkpoints are large (moments of every weight): keep only the diffs and heads
    rm -rf "$run"/task/{mask,fixmask}/ckpt-* "$run"/task/{mask,fixmask}/checkpoint \
        "$run"/task/attributes/*/{mask,fixmask}/ckpt-* "$run"/task/attributes/*/{mask,fixmask}/checkpoint
done
python3 bench/debias_render.py --res "$RES" --results "$RESULTS"
# one HTML page per seed (debias report): the rows side by side with their intervals
for seed in $SEEDS; do
    files=(); labels=()
    for row in full full_adv task gender age both; do
        [ -f "$RES/s$seed/$row.json" ] && { files+=("$RES/s$seed/$row.json"); labels+=("$row"); }
    done
    [ "${#files[@]}" -gt 0 ] && "$X" debias report "${files[@]}" --labels "$(IFS=,; echo "${labels[*]}")" \
        -o "$OUT/report-s$seed.html" >&2
done
