#!/usr/bin/env python3
"""Renders the "Modular DiffPruning debiasing (issue 15)" section of bench/RESULTS.md from
bench/debias_results/sSEED/ (bench/debias.sh): one table of the rows averaged over the seeds
there (each value with the mean of the seeds' bootstrap intervals), the targets checked, and
the cost of each phase against full fine-tuning."""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from results_section import replace_section  # noqa: E402

TITLE = "## Modular DiffPruning debiasing (issue 15)"
ROWS = [("full", "full fine-tuning"), ("full_adv", "full fine-tuning + adversary (gender)"),
        ("task", "task diff"), ("gender", "task diff + gender diff"),
        ("age", "task diff + age diff"), ("both", "task diff + gender + age diffs")]


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cell(runs, get):
    """mean value [mean lo, mean hi] over the seeds' results."""
    vals = [get(r) for r in runs]
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return "%.3f [%.3f, %.3f]" % (mean([v["value"] for v in vals]), mean([v["lo"] for v in vals]),
                                   mean([v["hi"] for v in vals]))


def attr(r, a, key):
    return r.get("attributes", {}).get(a, {}).get(key)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", required=True)
    ap.add_argument("--results", required=True)
    args = ap.parse_args()
    seeds = sorted(glob.glob(os.path.join(args.res, "s*")))
    seeds = [s for s in seeds if os.path.exists(os.path.join(s, "config.json"))]
    if not seeds:
        sys.exit("debias_render: no results under %s" % args.res)
    cfg = json.load(open(os.path.join(seeds[0], "config.json")))
    cpus = sorted({json.load(open(os.path.join(s, "config.json")))["cpu"] for s in seeds})
    res = {row: [json.load(open(os.path.join(s, row + ".json"))) for s in seeds
                 if os.path.exists(os.path.join(s, row + ".json"))] for row, _ in ROWS}
    indep = {row: [json.load(open(os.path.join(s, row + ".indep.json"))) for s in seeds
                   if os.path.exists(os.path.join(s, row + ".indep.json"))] for row, _ in ROWS}
    names = [os.path.basename(s)[1:] for s in seeds]
    out = [TITLE, ""]
    out.append("Command: `make bench-debias` (bench/debias.sh; results per seed in "
               "bench/debias_results/). CPU: %s, %d threads. Seeds: %s." %
               (" / ".join(cpus), cfg["threads"], ", ".join(names)))
    out.append("")
    out.append("Encoder SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32), %s-pooled final "
               "norm output, linear head. Data: `bench/bios_gen.py --seed 1` (occupation: 8 "
               "classes; gender and age group, each correlated 0.8 with the occupation in every "
               "split), %d training examples, %d test examples; the attacker trains on %d "
               "training examples for %d epochs. Every run: %d steps of %d examples, %d tokens "
               "each (diff runs: %d with a learnt mask, then a fixed mask at %.3g non-zeros), lr "
               "%g for the weights, %g for the heads." %
               (cfg["pool"], cfg["n_train"], cfg["n_test"], cfg["attack_max"], cfg["attack_epochs"],
                cfg["steps"], cfg["batch"], cfg["max_len"], cfg["mask_steps"], cfg["sparsity"],
                cfg["lr"], cfg["lr_head"]))
    out.append("")
    # the attribute diffs' objectives (config.json since the counterfactual rows)
    if "gender_opts" in cfg:
        out.append("Attribute diffs: gender `%s`, age `%s`; full fine-tuning + adversary: "
                   "`--full --adv gender` (the default adversary: %s). `--cf-swap FILE` makes each "
                   "training example's counterfactual with a word swap list (bench/gender_swaps.py: "
                   "faker's first names paired across genders, gendered words; nothing read from the "
                   "data); `--cf-field text_cf_age` reads it from the training file (`bios_gen.py "
                   "--counterfactual`: the same biography told of the other age group, training "
                   "split only; there is no generic swap list for ages); `--cf-weight 100` weighs "
                   "the squared distance between the pooled representations of each pair; "
                   "`--adv-heads 0`: no adversary." %
                   (cfg["gender_opts"] or "(none)", cfg["age_opts"] or "(none)",
                    "5 one-hidden-layer heads behind gradient reversal, λ 1"))
        out.append("")
    out.append("Values are means over the seeds; brackets are the means of each seed's 95% "
               "bootstrap interval over the test examples. Leakage is a post-hoc attacker's "
               "balanced accuracy (chance 0.500; lower is better); TPR-GAP is the RMS over "
               "classes of the gap in true-positive rate between the attribute's values.")
    out.append("")
    out.append("| row | seeds | task accuracy | leakage gender | leakage age | TPR-GAP gender | "
               "TPR-GAP age | non-zeros (diffs applied) | diff MB (dense MB) |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for row, label in ROWS:
        rs = res[row]
        if not rs:
            continue
        nz = [r.get("nonzeros") for r in rs if r.get("nonzeros") is not None]
        dense = rs[0]["dense_bytes"] / 2**20
        if nz:
            share = mean(nz) / (rs[0]["dense_bytes"] / 4)
            size = "%.1f (%.0f)" % (mean([r["diff_bytes"] for r in rs]) / 2**20, dense)
            nzs = "%.2f%%" % (100 * share)
        else:
            size, nzs = "– (%.0f)" % dense, "100%"
        out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            label, len(rs), cell(rs, lambda r: r["task_accuracy"]),
            cell(rs, lambda r: attr(r, "gender", "leakage")),
            cell(rs, lambda r: attr(r, "age", "leakage")),
            cell(rs, lambda r: attr(r, "gender", "tpr_gap_rms")),
            cell(rs, lambda r: attr(r, "age", "tpr_gap_rms")), nzs, size))
    out.append("")
    counts = sorted({len(rs) for rs in res.values() if rs})
    if len(counts) > 1:
        out.append("The rows have results of different numbers of seeds (a run adds the rows "
                   "a seed lacks): means over different seeds, compare them with that in mind.")
        out.append("")
    # the leakage the occupation alone implies on the correlated test split
    floors = [(a, [attr(r, a, "label_leakage") for rs in res.values() for r in rs])
              for a in ("gender", "age")]
    floors = [(a, [f["value"] for f in fs if f]) for a, fs in floors]
    if all(fs for _, fs in floors):
        out.append("On this test split the occupation alone implies leakage %s (the attribute "
                   "guessed from the true occupation, `label_leakage`): a representation that "
                   "keeps the task leaks that much through the label, so here chance is out of "
                   "reach by construction. The table after the targets measures it where it is not." %
                   " and ".join("%s %.3f" % (a, mean(fs)) for a, fs in floors))
        out.append("")
    if any(indep.values()):
        out.append("**Attributes independent of the occupation** (`bench/bios_gen.py --seed 1 "
                   "--test-corr-gender 0.5 --test-corr-age 0.5 --n-attack %d`: the same train "
                   "split; the attacker trains on the attack split and is scored on the test split, "
                   "both with gender and age independent of the occupation, so chance, 0.500, is "
                   "what a representation that encodes the occupation and nothing else leaks):" %
                   cfg["attack_max"])
        out.append("")
        out.append("| row | seeds | task accuracy | leakage gender | leakage age | TPR-GAP gender | "
                   "TPR-GAP age |")
        out.append("|---|---|---|---|---|---|---|")
        for row, label in ROWS:
            rs = indep[row]
            if rs:
                out.append("| %s | %d | %s | %s | %s | %s | %s |" % (
                    label, len(rs), cell(rs, lambda r: r["task_accuracy"]),
                    cell(rs, lambda r: attr(r, "gender", "leakage")),
                    cell(rs, lambda r: attr(r, "age", "leakage")),
                    cell(rs, lambda r: attr(r, "gender", "tpr_gap_rms")),
                    cell(rs, lambda r: attr(r, "age", "tpr_gap_rms"))))
        out.append("")
    # targets
    def val(row, get, src=None):
        src = res if src is None else src
        vs = [get(r) for r in src[row]]
        vs = [v["value"] for v in vs if v]
        return mean(vs) if vs else None
    lines = []
    for src, where in ((res, "correlated test"), (indep, "independent attributes")):
        base = val("task", lambda r: r["task_accuracy"], src)
        for row, a in (("gender", ["gender"]), ("age", ["age"]), ("both", ["gender", "age"])):
            if not src[row] or base is None:
                continue
            acc = val(row, lambda r: r["task_accuracy"], src)
            for at in a:
                lk = val(row, lambda r, at=at: attr(r, at, "leakage"), src)
                lines.append("- %s, %s: %s leakage %.3f, %s 0.05 of chance (0.500); task accuracy "
                             "%.3f, %s %.1f points from the task diff alone (%s 2)." %
                             (dict(ROWS)[row], where, at, lk,
                              "within" if lk - 0.5 <= 0.05 else "NOT within", acc,
                              "down" if acc <= base else "up", 100 * abs(base - acc),
                              "within" if base - acc <= 0.02 else "NOT within"))
    if res["task"] and res["task"][0].get("nonzeros") is not None:
        one = mean([r["nonzeros"] for r in res["task"]]) / (res["task"][0]["dense_bytes"] / 4)
        lines.append("- each diff (task, gender, age) holds %.2f%% of the weights as non-zeros "
                     "(target ≤ 5%%); a stack of k diffs holds k times that." % (100 * one))
    if lines:
        out.append("Targets (issue 15: an attribute diff brings that attribute's leakage within "
                   "0.05 of chance, costs at most 2 points of task accuracy; ≤ 5% non-zeros):")
        out.append("")
        out.extend(lines)
        out.append("")
    # reading: what the means say, in words
    def v(row, a, key):
        return val(row, lambda r, a=a, key=key: attr(r, a, key))
    if all(res[k] for k in ("full", "full_adv", "task", "gender", "age", "both")):
        out.append("Reading (means over the seeds): the task diff reaches %.3f task accuracy at "
                   "5%% non-zeros, against %.3f for full fine-tuning on the same steps. Gender is "
                   "written into every biography (first names, pronouns): without a gender diff it "
                   "leaks at %.3f (full fine-tuning) and %.3f (task diff). The gender diff brings that to %.3f and the "
                   "gender TPR-GAP from %.3f to %.3f, with task accuracy %.3f; full fine-tuning "
                   "with an adversary on gender, one model for both jobs, leaks %.3f. The age diff "
                   "moves age leakage from %.3f to %.3f. Stacked, the two diffs give %.3f "
                   "(gender) and %.3f (age), against %.3f and %.3f apart (the correlated test "
                   "split; see the independent split's table for leakage against chance)." % (
                       val("task", lambda r: r["task_accuracy"]),
                       val("full", lambda r: r["task_accuracy"]),
                       v("full", "gender", "leakage"), v("task", "gender", "leakage"),
                       v("gender", "gender", "leakage"), v("task", "gender", "tpr_gap_rms"),
                       v("gender", "gender", "tpr_gap_rms"),
                       val("gender", lambda r: r["task_accuracy"]),
                       v("full_adv", "gender", "leakage"), v("task", "age", "leakage"),
                       v("age", "age", "leakage"), v("both", "gender", "leakage"),
                       v("both", "age", "leakage"), v("gender", "gender", "leakage"),
                       v("age", "age", "leakage")))
        out.append("")
    if all(indep[k] for k in ("full", "full_adv", "task", "gender", "age", "both")):
        def w(row, a):
            return val(row, lambda r, a=a: attr(r, a, "leakage"), indep)
        def acc(row):
            return val(row, lambda r: r["task_accuracy"], indep)
        out.append("Where gender and age are independent of the occupation (chance 0.500 "
                   "reachable): the task diff leaks gender %.3f and age %.3f (full fine-tuning "
                   "%.3f and %.3f; full fine-tuning with an adversary on gender %.3f and %.3f); "
                   "the gender diff takes gender to %.3f, the age diff age to %.3f, and the two "
                   "stacked give %.3f and %.3f, at task accuracy %.3f, %.3f and %.3f against "
                   "%.3f for the task diff alone and %.3f for full fine-tuning." % (
                       w("task", "gender"), w("task", "age"), w("full", "gender"), w("full", "age"),
                       w("full_adv", "gender"), w("full_adv", "age"), w("gender", "gender"),
                       w("age", "age"), w("both", "gender"), w("both", "age"), acc("gender"),
                       acc("age"), acc("both"), acc("task"), acc("full")))
        out.append("")
    # cost
    costs = {}
    for s in seeds:
        p = os.path.join(s, "cost.jsonl")
        if os.path.exists(p):
            for l in open(p):
                if l.strip():
                    c = json.loads(l)
                    costs.setdefault(c["label"], []).append(c)
    if costs:
        out.append("Cost (criterion 6): wall time and peak RSS of each command, the seconds of "
                   "each training phase from its log with the process's peak RSS by the end of "
                   "that phase and its resident memory then (the fixed-mask phase frees log α, "
                   "the sample and their moments), against full fine-tuning of the same model on the same steps. "
                   "Medians over the seeds (a seed that shared the machine with other work "
                   "does not move them)." +
                   (" An attribute diff trained with counterfactual pairs (`--cf-swap`, "
                    "`--cf-field`) encodes each example's counterfactual too: twice the rows "
                    "per step." if "--cf-" in cfg.get("gender_opts", "") + cfg.get("age_opts", "")
                    else ""))
        out.append("")
        out.append("| run | seconds | phases: seconds (MiB: peak RSS so far; RSS at the phase's "
                   "end) | peak RSS MiB | time / full | RSS / full |")
        out.append("|---|---|---|---|---|---|")
        full = costs.get("full")
        fs = median([c["seconds"] for c in full]) if full else None
        fr = median([c["rss_mib"] for c in full]) if full else None
        for label in ("full", "full_adv", "task", "gender", "age"):
            cs = costs.get(label)
            if not cs:
                continue
            secs, rss = median([c["seconds"] for c in cs]), median([c["rss_mib"] for c in cs])
            ph, pr, pe = {}, {}, {}
            for c in cs:
                for k, v in c["phases"].items():
                    ph.setdefault(k, []).append(v["seconds"])
                    if v.get("peak_rss_mib") is not None:
                        pr.setdefault(k, []).append(v["peak_rss_mib"])
                        pe.setdefault(k, []).append(v["rss_mib"])
            phs = ", ".join("%s %.0f%s" % (k, median(v), " (%.0f; %.0f)" % (median(pr[k]), median(pe[k]))
                                            if k in pr else "") for k, v in ph.items())
            out.append("| %s | %.0f | %s | %.0f | %s | %s |" % (
                label, secs, phs, rss, "%.2f×" % (secs / fs) if fs else "–",
                "%.2f×" % (rss / fr) if fr else "–"))
        out.append("")
        out.append("Evaluation (`debias eval`) is not in the table: per row it encodes the "
                   "attacker's training examples and the test split once (forward only) and "
                   "trains the attacker on the frozen representations.")
        out.append("")
    replace_section(args.results, TITLE, "\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
