#!/usr/bin/python3
"""A word swap list that tells an English text of the other gender, for counterfactual
invariance in debiasing (xdistill debias ... --cf-swap FILE; docs/debias.md).

    gender_swaps.py -o FILE

Lines "FROM TO" (src/io/swap_list.h): the gendered function words and kinship terms below
(after the word pairs of Zhao et al. 2018 and the counterfactual data augmentation of Lu et
al. 2020), each way; an ambiguous word picks one ("her" -> "his"); and every first name of
faker's en_US person provider (python3-fake-factory, the names in both lists left out, as
bench/bios_gen.py does), female names in their list's order paired with male names in
theirs, cyclically, each way. The list is built from those sources alone; it knows nothing
of a data set's texts. Run with Debian's /usr/bin/python3 (faker is installed there)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bios_gen import load_faker, write_atomic  # noqa: E402  (the one reader of the sources)

# (male, female): both ways, except where one side is ambiguous (noted)
PAIRS = [
    ("he", "she"), ("himself", "herself"), ("man", "woman"), ("men", "women"),
    ("boy", "girl"), ("boys", "girls"), ("father", "mother"), ("fathers", "mothers"),
    ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"),
    ("brothers", "sisters"), ("husband", "wife"), ("husbands", "wives"), ("uncle", "aunt"),
    ("uncles", "aunts"), ("nephew", "niece"), ("nephews", "nieces"), ("dad", "mom"),
    ("grandfather", "grandmother"), ("grandson", "granddaughter"), ("king", "queen"),
    ("gentleman", "lady"), ("gentlemen", "ladies"), ("male", "female"),
    ("boyfriend", "girlfriend"), ("Mr", "Ms"), ("sir", "madam"), ("actor", "actress"),
    ("waiter", "waitress"), ("fiance", "fiancee"), ("widower", "widow"),
]
ONE_WAY = [("his", "her"), ("him", "her"), ("her", "his"), ("hers", "his"), ("Mrs", "Mr")]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gender_swaps.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, metavar="FILE")
    args = ap.parse_args(argv)
    names = load_faker()
    female, male = names["female"][0], names["male"][0]
    swaps = {}
    for m, f in PAIRS:
        swaps[m], swaps[f] = f, m
    for a, b in ONE_WAY:
        swaps[a] = b
    for i, f in enumerate(female):
        swaps.setdefault(f, male[i % len(male)])
    for i, m in enumerate(male):
        swaps.setdefault(m, female[i % len(female)])
    lines = ["# bench/gender_swaps.py: gendered words each way, then faker en_US first names "
             "(%d female, %d male)" % (len(female), len(male))]
    lines += ["%s %s" % kv for kv in swaps.items()]
    write_atomic(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
