"""Replace (or append) one "## " section of bench/RESULTS.md, keeping the others."""
import os
import re


def replace_section(path, title, body):
    """title: the section's "## ..." heading line; body: the whole section text, heading included."""
    old = open(path).read() if os.path.exists(path) else ""
    if not old.strip():
        text = "# Benchmarks\n\n" + body
    elif title in old:
        s = old.index(title)
        m = re.search(r"^## ", old[s + len(title):], re.M)
        e = s + len(title) + m.start() if m else len(old)
        text = old[:s] + body.rstrip("\n") + ("\n\n" + old[e:] if m else "\n")
    else:
        text = old.rstrip("\n") + "\n\n" + body
    open(path, "w").write(text.rstrip("\n") + "\n")
