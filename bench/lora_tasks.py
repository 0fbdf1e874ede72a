#!/usr/bin/env python3
"""The two fine-tuning tasks of bench/lora_quality.sh (issue 14, criterion 5), as
instruction data (JSONL "prompt" / "completion", for `data prep --prompt-field prompt
--field completion`) and held-out evaluation suites (`xdistill eval`, generate tasks
scored by exact match):

  gloss  real text: a WordNet noun gloss -> the word ("Definition: a domestic animal
         ...\\nWord:" -> " dog"); one-word lemmas of 3-12 letters, each word's first
         sense; the held-out words never occur in training (as a word or a prompt).
  add3   a skill: 3-digit addition ("Compute: 123 + 456 =" -> " 579"); held-out pairs
         never occur in training.

Own seeds and generators, not the evaluation suite's (src/eval/taskgen*.c).

    lora_tasks.py --out DIR [--train 2000] [--heldout 200] [--seed 20261206]
"""
import argparse
import json
import os
import random
import re

WORDNET = "/usr/share/wordnet/data.noun"


def gloss_pairs():
    """(word, gloss) for single-word noun lemmas, first sense only, in file order."""
    seen, out = set(), []
    with open(WORDNET, encoding="latin-1") as f:
        for line in f:
            if line.startswith(" ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            parts = head.split()
            n_words = int(parts[3], 16)
            word = parts[4]
            gloss = gloss.split(";")[0].strip()
            if n_words < 1 or not re.fullmatch(r"[a-z]{3,12}", word) or word in seen:
                continue
            if not gloss or word in gloss.lower():
                continue
            seen.add(word)
            out.append((word, gloss))
    return out


def write_task(out, name, train, held, prompt_of, max_tokens, description):
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "suite"), exist_ok=True)
    with open(os.path.join(d, "train.jsonl"), "w") as f:
        for x, y in train:
            f.write(json.dumps({"prompt": prompt_of(x), "completion": " " + y}) + "\n")
    with open(os.path.join(d, "suite", f"{name}.jsonl"), "w") as f:
        for x, y in held:
            f.write(json.dumps({"type": "generate", "prompt": prompt_of(x), "target": y,
                                "max_tokens": max_tokens, "match": "exact",
                                "stop": ["\n"]}) + "\n")
    with open(os.path.join(d, "suite", "suite.json"), "w") as f:
        json.dump({"name": f"lora-{name}", "seed": 7,
                   "tasks": [{"name": name, "file": f"{name}.jsonl", "type": "generate",
                              "description": description}]}, f)
    print(f"{name}: {len(train)} training examples, {len(held)} held out")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261206)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pairs = gloss_pairs()
    rng.shuffle(pairs)
    held, train = pairs[:a.heldout], pairs[a.heldout:a.heldout + a.train]
    held_words = {w for w, _ in held}
    train = [(w, g) for w, g in train if not any(h in g.split() for h in held_words)]
    write_task(a.out, "gloss", [(g, w) for w, g in train], [(g, w) for w, g in held],
               lambda g: f"Definition: {g}\nWord:", 6, "WordNet gloss -> held-out word")
    sums, used = [], set()
    while len(sums) < a.train + a.heldout:
        x, y = rng.randint(100, 999), rng.randint(100, 999)
        if (x, y) not in used:
            used.add((x, y))
            sums.append((x, y))
    held, train = sums[:a.heldout], sums[a.heldout:]
    write_task(a.out, "add3", [((x, y), str(x + y)) for x, y in train],
               [((x, y), str(x + y)) for x, y in held],
               lambda p: f"Compute: {p[0]} + {p[1]} =", 5, "3-digit addition, held-out pairs")


if __name__ == "__main__":
    main()
