#!/usr/bin/env python3
"""Renders bench/lora_quality.sh's runs: the "Does EVA help? (issue 14)" section of
bench/RESULTS.md and the training-loss curves as an SVG (one panel per task, the mean
over seeds per method, from each run's log.jsonl)."""
import argparse
import json
import os
import random

from results_section import replace_section

COLORS = {"eva": "#d62728", "random": "#1f77b4", "pissa": "#2ca02c", "full": "#7f7f7f"}
TITLE = "## Does EVA help? (issue 14)"


def losses(run):
    return [json.loads(l)["loss"] for l in open(os.path.join(run, "log.jsonl"))]


def smooth(x, k=5):
    return [sum(x[max(0, i - k + 1):i + 1]) / len(x[max(0, i - k + 1):i + 1]) for i in range(len(x))]


def held(run):
    t = json.load(open(os.path.join(run, "heldout.json")))["tasks"][0]
    return t["score"], t["n"]


def pooled_ci(scores_n, seed=1, reps=1000):
    """Percentile bootstrap of the mean over seeds, resampling each seed's held-out
    examples (their correct/incorrect outcomes) with replacement."""
    rng = random.Random(seed)
    means = []
    for _ in range(reps):
        tot = 0.0
        for p, n in scores_n:
            c = round(p * n)
            tot += sum(rng.random() < c / n for _ in range(n)) / n
        means.append(tot / len(scores_n))
    means.sort()
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def svg(curves, tasks, methods, path):
    W, H, P = 420, 260, 44
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(tasks)}" height="{H + 30}" '
             'font-family="sans-serif" font-size="11">']
    for ti, task in enumerate(tasks):
        x0 = ti * W
        ys = [v for m in methods for v in curves[task].get(m, [])]
        if not ys:
            continue
        lo, hi = min(ys), max(ys)
        n = max(len(curves[task][m]) for m in methods if m in curves[task])
        fx = lambda i: x0 + P + (W - P - 10) * i / max(1, n - 1)
        fy = lambda v: 20 + (H - 40) * (hi - v) / max(1e-9, hi - lo)
        parts.append(f'<text x="{x0 + W / 2}" y="14" text-anchor="middle">{task}: training loss '
                     '(mean over seeds, 5-step average)</text>')
        parts.append(f'<line x1="{x0 + P}" y1="{H - 20}" x2="{x0 + W - 10}" y2="{H - 20}" stroke="#000"/>')
        parts.append(f'<line x1="{x0 + P}" y1="20" x2="{x0 + P}" y2="{H - 20}" stroke="#000"/>')
        for v in (lo, (lo + hi) / 2, hi):
            parts.append(f'<text x="{x0 + P - 4}" y="{fy(v) + 4}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<text x="{x0 + W - 10}" y="{H - 6}" text-anchor="end">step {n}</text>')
        for k, m in enumerate(methods):
            c = curves[task].get(m)
            if not c:
                continue
            pts = " ".join(f"{fx(i):.1f},{fy(v):.1f}" for i, v in enumerate(c))
            parts.append(f'<polyline fill="none" stroke="{COLORS.get(m, "#000")}" stroke-width="1.5" '
                         f'points="{pts}"/>')
            parts.append(f'<text x="{x0 + W - 70}" y="{34 + 13 * k}" fill="{COLORS.get(m, "#000")}">{m}</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    for k in ("--out", "--results", "--svg", "--cpu", "--git", "--tasks", "--methods", "--seeds",
              "--config"):
        ap.add_argument(k, required=True)
    a = ap.parse_args()
    tasks, methods, seeds = a.tasks.split(), a.methods.split(), a.seeds.split()
    curves, rows = {}, []
    for task in tasks:
        curves[task] = {}
        base = json.load(open(os.path.join(a.out, task, "base.json")))["tasks"][0]
        runs = {m: [os.path.join(a.out, task, f"{m}-s{s}") for s in seeds] for m in methods}
        ls = {m: [losses(r) for r in runs[m]] for m in methods}
        for m in methods:
            n = min(len(x) for x in ls[m])
            curves[task][m] = smooth([sum(x[i] for x in ls[m]) / len(ls[m]) for i in range(n)])
        # the fixed loss: where random-init LoRA ends (mean of its last 5 steps over seeds)
        ref = "random" if "random" in methods else methods[0]
        target = sum(sum(x[-5:]) / 5 for x in ls[ref]) / len(ls[ref])
        for m in methods:
            reach = []
            for x in ls[m]:
                sm = smooth(x)
                reach.append(next((i + 1 for i, v in enumerate(sm) if v <= target), None))
            sc = [held(r) for r in runs[m]]
            lo, hi = pooled_ci(sc)
            mean = sum(p for p, _ in sc) / len(sc)
            final = sum(sum(x[-5:]) / 5 for x in ls[m]) / len(ls[m])
            early = [curves[task][m][k - 1] if len(curves[task][m]) >= k else float("nan")
                     for k in (10, 20)]
            rows.append((task, m, mean, lo, hi, [p for p, _ in sc], final, reach, target,
                         base["score"], base["ci_low"], base["ci_high"], sc[0][1], early))
    svg(curves, tasks, methods, a.svg)
    L = [TITLE, "",
         f"`bash bench/lora_quality.sh` at {a.git}, {a.cpu}: SmolLM2-135M-Instruct fine-tuned on "
         "two tasks it does badly (bench/lora_tasks.py: a WordNet noun gloss -> the word, the "
         "held-out words never seen in training; 3-digit addition on held-out pairs), instruction "
         "data with the prompt masked (`data prep --prompt-field`), all seven projections of "
         f"every block, {a.config}; seeds {', '.join(seeds)} (each shuffles the examples "
         "differently and seeds the random init). Held-out accuracy: greedy generation, exact "
         "match (`xdistill eval`, LoRA runs with `--adapter`); the interval is a percentile "
         "bootstrap of the mean over seeds, resampling each seed's held-out examples. Steps to "
         "the fixed loss: the first step whose 5-step average training loss reaches the loss "
         "random-init LoRA ends at (mean of its last 5 steps over seeds); '-' = never. Loss at "
         "step 10 / 20: the 5-step average, mean over seeds. Loss "
         "curves: `bench/lora_loss_curves.svg`.", "",
         "| task | method | held-out accuracy (95% CI) | per seed | loss at step 10 / 20 | final loss | steps to the fixed loss (per seed) |",
         "|---|---|---:|---|---:|---:|---|"]
    for (task, m, mean, lo, hi, per, final, reach, target, b, blo, bhi, n, early) in rows:
        L.append(f"| {task} | {m} | {mean:.3f} [{lo:.3f}, {hi:.3f}] | "
                 + " / ".join(f"{p:.3f}" for p in per) + f" | {early[0]:.3f} / {early[1]:.3f} | {final:.3f} | "
                 + " / ".join("-" if r is None else str(r) for r in reach) + " |")
    L.append("")
    for task in tasks:
        r = [x for x in rows if x[0] == task][0]
        L.append(f"{task}: the base model scores {r[9]:.3f} [{r[10]:.3f}, {r[11]:.3f}] on the "
                 f"{r[12]} held-out examples; the fixed loss is {r[8]:.3f}.")
    L.append("")
    replace_section(a.results, TITLE, "\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
