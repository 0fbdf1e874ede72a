#!/usr/bin/python3
"""A BIOS-like data set of short biographies for the debiasing benchmark (DiffPruning):
the label is the occupation, the protected attributes are gender (female, male) and age
group (young, old). docs/data.md, "Biographies (debiasing benchmark data)".

    bios_gen.py -o DIR [--seed 1] [--n-train 6000] [--n-val 1000] [--n-test 2000]
                [--n-attack N] [--occupations 8] [--corr-gender 0.8] [--corr-age 0.8]
                [--test-corr-gender P] [--test-corr-age P]

Writes DIR/train.jsonl, DIR/val.jsonl, DIR/test.jsonl ({"text", "occupation", "gender",
"age"} a line) and DIR/meta.json, each atomically (temporary name, then rename); with
--n-attack also DIR/attack.jsonl, drawn as the test split is (its correlations): the data a
post-hoc attacker trains on when leakage is measured on attributes independent of the
label (--test-corr-* 0.5), where chance is 0.5 for a representation that encodes the
label and nothing else.

Sources (Debian packages, read directly; run with Debian's /usr/bin/python3):
  python3-fake-factory  faker's en_US person provider: first_names_female / _male (the
                        names in both lists are left out), last_names (weighted as faker
                        weights them); the address provider's states.
  wordnet-base          WordNet 3.0 index.noun, data.noun, data.verb: the occupations
                        (OCCUPATIONS below, each lemma's most frequent noun.person sense),
                        their glosses, their hyponyms' glosses and names, the glosses of
                        derivationally related verbs and nouns ('+' pointers), usage
                        examples and the hypernym's gloss.

The text never holds the occupation's own lemmas (or their plurals): each is replaced by
"professional". Same options, same bytes (random.Random per split, seeds derived from
--seed and the split's name with SHA-256; nothing taken from the global generator or
from an unordered container)."""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import random

PROG = "bios_gen.py"
WORDNET = "/usr/share/wordnet"
REFERENCE_YEAR = 2020     # "graduated in 2016", "born in 1962" are relative to it
MASK = "professional"

# The occupations, in the order --occupations K takes them (the first K). Mostly the
# titles of De-Arteaga et al.'s BIOS; each resolves to the lemma's most frequent sense in
# lex file noun.person (index.noun lists a lemma's senses by frequency). The label is the
# lemma as written here.
OCCUPATIONS = [
    "nurse", "surgeon", "teacher", "attorney", "architect", "journalist", "photographer",
    "software_engineer", "dentist", "accountant", "physician", "professor",
    "psychologist", "painter", "composer", "poet", "pastor", "dietitian", "chiropractor",
    "comedian", "filmmaker", "rapper", "paralegal", "librarian", "pharmacist",
    "carpenter", "plumber", "veterinarian",
]
NOUN_PERSON = 18          # lex_filenum of noun.person

# How much occupational evidence a biography carries (fixed; see docs/data.md).
EVIDENCE = [("strong", 0.45), ("medium", 0.30), ("weak", 0.10), ("none", 0.15)]
P_DISTRACTOR = 0.12       # mentions someone else's occupation (another class's title)

YOUNG = (23, 36)          # ages, inclusive
OLD = (50, 67)

GENDERED = re.compile(
    r"\b(he|she|his|her|hers|him|himself|herself|man|woman|men|women|boy|girl|boys|girls|"
    r"mr|mrs|ms|wife|husband|son|daughter|mother|father|brother|sister|king|queen|lady|"
    r"gentleman|male|female)\b", re.I)


def die(msg):
    sys.stderr.write(f"{PROG}: error: {msg}\n")
    sys.exit(2)


# ---------------------------------------------------------------------------------------
# Sources

def load_faker():
    try:
        from faker.providers.person.en_US import Provider as Person
        from faker.providers.address.en_US import Provider as Address
    except ImportError:
        die("faker is not importable by this interpreter; install it with "
            "'apt-get install python3-fake-factory' and run the script with /usr/bin/python3")
    for attr in ("first_names_female", "first_names_male", "last_names"):
        if not hasattr(Person, attr):
            die(f"faker's en_US person provider has no {attr} (package python3-fake-factory "
                "0.9.3 expected)")
    female = Person.first_names_female
    male = Person.first_names_male
    both = set(female) & set(male)

    def weighted(d, drop=()):
        # faker keeps these as OrderedDicts name -> weight (a list in other versions)
        items = list(d.items()) if hasattr(d, "items") else [(n, 1.0) for n in d]
        items = [(n, float(w)) for n, w in items if n not in drop and n.isascii()]
        names = [n for n, _ in items]
        cum, t = [], 0.0
        for _, w in items:
            t += w
            cum.append(t)
        return names, cum

    return {"female": weighted(female, both), "male": weighted(male, both),
            "last": weighted(Person.last_names), "states": list(Address.states),
            "ambiguous": sorted(both)}


class WordNet:
    """index.noun looked up by lemma; data.POS read by byte offset (what index.* holds)."""

    def __init__(self):
        paths = [os.path.join(WORDNET, f) for f in ("index.noun", "data.noun", "data.verb")]
        for p in paths:
            if not os.path.isfile(p):
                die(f"{p} is missing; install it with 'apt-get install wordnet-base'")
        self.index = {}
        with open(paths[0], encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                p = line.split()
                n_ptr = int(p[3])
                self.index[p[0]] = (int(p[5 + n_ptr]), p[6 + n_ptr:])  # tagsense_cnt, offsets
        self.files = {"n": open(paths[1], "rb"), "v": open(paths[2], "rb")}
        self.cache = {}

    def synset(self, offset, pos="n"):
        key = (pos, offset)
        if key in self.cache:
            return self.cache[key]
        f = self.files[pos]
        f.seek(int(offset))
        line = f.readline().decode("latin-1")
        head, gloss = line.split("|", 1)
        p = head.split()
        if p[0] != offset:
            die(f"WordNet data.{'noun' if pos == 'n' else 'verb'}: no synset at offset {offset}")
        n_words = int(p[3], 16)
        words = [p[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_ptrs = int(p[i])
        i += 1
        ptrs = []
        for _ in range(n_ptrs):
            ptrs.append((p[i], p[i + 1], p[i + 2]))  # symbol, offset, pos
            i += 4
        defs, examples = split_gloss(gloss.strip())
        s = {"offset": offset, "lex": int(p[1]), "words": words, "ptrs": ptrs,
             "defs": defs, "examples": examples}
        self.cache[key] = s
        return s

    def related(self, s, symbol, pos):
        return [self.synset(o, q) for sym, o, q in s["ptrs"] if sym == symbol and q == pos]


def split_gloss(gloss):
    """A gloss: definition pieces, then "; "-separated quoted examples."""
    defs, examples = [], []
    for piece in gloss.split("; "):
        piece = piece.strip().rstrip(";").strip()
        if not piece:
            continue
        if piece.startswith('"'):
            ex = piece.strip('"').strip()
            if ex:
                examples.append(ex)
        else:
            defs.append(piece)
    return defs, examples


def plural(w):
    if w.endswith("man"):
        return w[:-3] + "men"
    if re.search(r"(s|x|z|ch|sh)$", w):
        return w + "es"
    if re.search(r"[^aeiou]y$", w):
        return w[:-1] + "ies"
    return w + "s"


def synset_name(wn, s):
    """nltk-style name: the synset's first lemma, its sense number (lawyer.n.01)."""
    w = s["words"][0].lower()
    offsets = wn.index.get(w, (0, []))[1]
    return f"{w}.n.{offsets.index(s['offset']) + 1:02d}" if s["offset"] in offsets else w


def resolve(wn, lemma):
    if lemma not in wn.index:
        die(f"occupation {lemma!r} is not a noun in WordNet ({WORDNET}/index.noun)")
    tagged, offsets = wn.index[lemma]
    for sense, off in enumerate(offsets, 1):
        s = wn.synset(off)
        if s["lex"] == NOUN_PERSON:
            return s, sense, tagged
    die(f"occupation {lemma!r} has no noun.person sense in WordNet")


# ---------------------------------------------------------------------------------------
# Occupational evidence from WordNet

NP_START = re.compile(r"^(a|an|the|someone|somebody|one|any)\b", re.I)
ENDS_PREP = re.compile(r"\b(of|to|for|in|on|with|by|as|from|at|into)$")
YEARS = re.compile(r"\d{3,4}\s*-\s*\d{2,4}")


def clean(piece):
    piece = re.sub(r"^\([^)]*\)\s*", "", piece)     # "(physiology) the organic ..."
    piece = re.sub(r"\s+", " ", piece).strip().rstrip(".,:")
    return piece


def usable(piece, min_words=2, max_words=26):
    n = len(piece.split())
    return (min_words <= n <= max_words and piece.isascii() and not YEARS.search(piece)
            and not GENDERED.search(piece))


def as_np(piece):
    piece = re.sub(r"^one\b", "someone", piece)
    return piece if NP_START.match(piece) else None


def a_an(word):
    return "an" if word[:1].lower() in "aeiou" else "a"


def evidence(wn, occ, selected_offsets):
    """The sentence material for one occupation: lists of strings per kind."""
    s = occ["synset"]
    ev = {"def": [], "def_vp": [], "hypo": [], "special": [], "verb": [], "domain": [],
          "example": [], "hyper": []}
    for i, d in enumerate(s["defs"]):
        d = clean(d)
        if i == 0 and as_np(d):
            ev["def"].append(as_np(d))
        elif i > 0 and usable(d) and re.match(r"^[a-z]+s\b", d):
            ev["def_vp"].append(d)      # "conducts lawsuits or gives legal advice"
    if not ev["def"]:
        die(f"occupation {occ['label']!r}: WordNet gloss {s['defs']!r} is not a noun phrase")
    ev["example"] += s["examples"]

    # hyponyms, two levels down; never through another selected occupation
    seen, frontier = set(), [s]
    for depth in range(2):
        nxt = []
        for h0 in frontier:
            for h in wn.related(h0, "~", "n"):
                if h["offset"] in seen or h["offset"] in selected_offsets:
                    continue
                seen.add(h["offset"])
                nxt.append(h)
        frontier = nxt
        for h in sorted(nxt, key=lambda x: x["offset"]):
            if not h["defs"]:
                continue
            d = clean(h["defs"][0])
            if usable(d, 3) and as_np(d):
                ev["hypo"].append(as_np(d))
            w = h["words"][0]
            if (w[:1].islower() and not re.search(r"(man|men|ess)$", w)
                    and not GENDERED.search(" ".join(h["defs"]))):
                ev["special"].append(w.replace("_", " "))
            ev["example"] += h["examples"]

    # derivationally related verbs and nouns ('+')
    for v in sorted(wn.related(s, "+", "v"), key=lambda x: x["offset"]):
        for d in v["defs"]:
            d = clean(d)
            if re.search(r"\b(to|for|with)$", d):
                d += " others"          # "give medical treatment to" + others
            if usable(d) and not ENDS_PREP.search(d) and not mentions(d, occ):
                ev["verb"].append(d)
        ev["example"] += v["examples"]
    for n in sorted(wn.related(s, "+", "n"), key=lambda x: x["offset"]):
        if n["offset"] in selected_offsets or not n["defs"]:
            continue
        d = clean(n["defs"][0])
        if (usable(d, 3) and d.startswith(("the ", "a ", "an ")) and not ENDS_PREP.search(d)
                and not d.startswith("the position of") and not mentions(d, occ)):
            ev["domain"].append(d)
        ev["example"] += n["examples"]

    # the nearest hypernym that is not itself a selected occupation
    up = s
    for _ in range(3):
        hs = sorted(wn.related(up, "@", "n"), key=lambda x: x["offset"])
        if not hs:
            break
        up = hs[0]
        if up["offset"] not in selected_offsets:
            for d in up["defs"][:1]:
                d = clean(d)
                if usable(d) and as_np(d):
                    ev["hyper"].append(as_np(d))
            break

    ev["example"] = [clean(e) for e in ev["example"]]
    ev["example"] = [e for e in ev["example"] if usable(e, 3, 18) and '"' not in e]
    for k in ev:
        ev[k] = list(dict.fromkeys(ev[k]))     # dedup, keeps order
    return ev


def mentions(text, occ):
    return occ["mask_re"].search(text) is not None


def mask_re(lemmas):
    forms = set()
    for lem in lemmas:
        w = lem.replace("_", " ")
        forms.add(w)
        if w.isalpha() or " " in w or "-" in w:
            head, _, last = w.rpartition(" ")
            forms.add((head + " " if head else "") + plural(last))
    alts = sorted(forms, key=lambda x: (-len(x), x))      # longest first
    return re.compile(r"(?<![A-Za-z])(" + "|".join(re.escape(a) for a in alts) + r")(?![A-Za-z])",
                      re.I)


def mask(text, occ):
    def sub(m):
        w = m.group(0)
        plural_form = w.lower() not in occ["lemma_forms"]
        rep = MASK + ("s" if plural_form else "")
        return rep[0].upper() + rep[1:] if w[:1].isupper() else rep
    text = occ["mask_re"].sub(sub, text)
    text = re.sub(r"\b([Aa])n (%s)" % MASK, r"\1 \2", text)
    return text


# ---------------------------------------------------------------------------------------
# Templates. {N} first name, {F} full name, {T} Ms./Mr. + last name, {S}/{s} he/she,
# {P}/{p} his/her, {o} him/her, {r} himself/herself.

T_DEF = [
    "{N} is {x}.", "{S} is {x}.", "By training, {s} is {x}.", "{S} describes {r} as {x}.",
    "Put simply, {N} is {x}.", "{S} has built a career as {x}.", "Friends know {o} as {x}.",
    "{S} works as {x}.", "Professionally, {N} is {x}.", "{T} works as {x}.",
]
T_DEF_VP = ["{S} {x}.", "In addition, {s} {x}.", "{N} also {x}.", "Most weeks {s} {x}."]
T_HYPO = [
    "{S} has also worked as {x}.", "Earlier, {s} spent some time as {x}.",
    "{S} sometimes acts as {x}.", "{P} first position was as {x}.",
    "For a while {N} was {x}.", "Colleagues often mistake {o} for {x}.",
]
T_SPECIAL = [
    "{S} specializes as {a} {x}.", "Some call {o} {a} {x}.", "{P} speciality: {x}.",
    "{N} is known locally as {a} {x}.", "{S} trained as {a} {x}.",
]
T_VERB = [
    "{P} job is to {x}.", "Every day {s} has to {x}.", "{S} is trained to {x}.",
    "{S} spends most of {p} week trying to {x}.", "Part of {p} work is to {x}.",
    "{S} is paid to {x}.", "{N} loves to {x}.", "{S} was taught to {x}.",
]
T_DOMAIN = [
    "{P} field is {x}.", "{S} has devoted {p} working life to {x}.",
    "{S} has always been interested in {x}.", "{N} writes about {x}.",
    "{P} main subject is {x}.",
]
T_EXAMPLE = [
    '{S} likes to quote a line: "{x}".', 'A sentence {s} once wrote: "{x}".',
    '{P} favourite example: "{x}".', '{N} often says: "{x}".',
]
T_HYPER = [
    "In the broadest sense, {s} is {x}.", "{S} would call {r} {x}.", "{N} counts as {x}.",
    "{S} is, like many in {p} family, {x}.",
]
T_DISTRACTOR = [
    "{P} best friend is {a} {x}.", "{P} neighbour works as {a} {x}.",
    "{S} once considered becoming {a} {x}.", "{P} parents wanted {o} to become {a} {x}.",
    "{N} shares a flat with {a} {x}.",
]

T_INTRO = [
    "{F} lives in {st}.", "Meet {F}.", "{F} grew up in {st}.", "This is the profile of {F}.",
    "{F} is based in {st}.", "{F} moved to {st} some years ago.", "{T} comes from {st}.",
    "{F} divides {p} time between {st} and {st2}.",
]

T_AGE = {
    "age": ["{N} is {age} years old.", "{S} is {age}.", "Now {age}, {s} lives in {st}.",
            "At {age}, {N} still finds the work exciting.", "{N}, {age}, is a keen reader."],
    "born": ["{S} was born in {born}.", "{N} was born in {st} in {born}.",
             "Born in {born}, {s} grew up near {st2}."],
    "grad": ["{S} graduated in {grad}.", "{S} earned {p} degree in {grad}.",
             "{N} completed {p} training in {grad}.",
             "{S} finished {p} studies at the University of {st2} in {grad}."],
    "exp": ["{S} has {exp} years of experience.", "{S} has been working for {exp} years.",
            "With {exp} years in the field behind {o}, {s} knows the trade well.",
            "{N} has worked in the field for {exp} years."],
    "stage": {
        "young": ["{S} recently graduated and is eager to learn.",
                  "{S} is at the start of {p} career.",
                  "{N} joined the field only a few years ago.",
                  "{S} is one of the youngest members of {p} team.",
                  "{S} is still building {p} professional network.",
                  "{N} is a rising talent among {p} peers.",
                  "{S} took {p} first job straight out of college.",
                  "{N} is an early-career member of a small team.",
                  "{S} still shares an apartment with two college friends.",
                  "{S} is a junior member of {p} department."],
        "old": ["{S} plans to retire in a few years.", "{S} is a veteran of the field.",
                "{S} has mentored several generations of younger colleagues.",
                "After decades in the field, {s} is looking forward to retirement.",
                "{S} enjoys spending time with {p} grandchildren.",
                "{N} is one of the most senior members of {p} team.",
                "{S} has seen the field change many times over the decades.",
                "{N} is a senior figure in {p} department.",
                "{S} is winding down {p} career and working part time.",
                "{S} remembers how the job was done before computers."],
    },
}
AGE_KINDS = ["age", "born", "grad", "exp", "stage"]
P_AGE_STAGE = 0.7

T_GENDER = {
    "female": ["{S} is a mother of two.", "{S} lives with {p} husband and their dog.",
               "{N} is a proud aunt of three.", "{S} grew up as the only girl among four children."],
    "male": ["{S} is a father of two.", "{S} lives with {p} wife and their dog.",
             "{N} is a proud uncle of three.", "{S} grew up as the only boy among four children."],
}

HOBBIES = [
    "hiking", "cycling", "gardening", "cooking", "running", "reading crime novels",
    "playing chess", "sailing", "birdwatching", "baking bread", "swimming", "fishing",
    "playing the guitar", "travelling", "yoga", "woodworking", "knitting", "camping",
    "photography", "painting watercolours", "playing tennis", "volunteering at a food bank",
    "learning languages", "watching old films", "board games",
]
CAUSES = [
    "public libraries", "animal welfare", "clean rivers", "literacy programmes",
    "local history", "affordable housing", "youth sports", "community gardens",
    "mental health awareness", "open data", "the arts", "renewable energy",
]
LANGS = ["Spanish", "French", "German", "Italian", "Portuguese", "Mandarin", "Japanese",
         "Korean", "Arabic", "Polish", "Russian", "Hindi"]
T_FILLER = [
    "In {p} free time, {s} enjoys {h}.", "{S} is passionate about {c}.",
    "{N} speaks {l} and some {l2}.", "Outside work, {N} spends weekends on {h}.",
    "{S} volunteers for an organisation that supports {c}.",
    "{S} believes in lifelong learning.", "{N} is known for {p} sense of humour.",
    "{S} has a dog named {pet}.", "{S} serves on the board of a local group for {c}.",
    "When not working, {s} makes time for {h}.", "{S} studied at {st} State University.",
    "{S} cares deeply about {p} community.", "{N} is an avid fan of {h}.",
    "{S} has travelled widely and speaks {l}.", "{P} friends describe {o} as patient and curious.",
    "{S} values teamwork and clear communication.", "{S} enjoys meeting new people.",
    "{N} has received an award from a local association.", "{S} writes a small blog about {h}.",
    "{S} is happiest when {s} has time for {h}.", "{S} recently took up {h}.",
]
PETS = ["Max", "Bella", "Charlie", "Luna", "Cooper", "Daisy", "Rocky", "Molly", "Buddy",
        "Sadie", "Tucker", "Maggie", "Bear", "Lucy", "Duke", "Pepper"]

PRON = {"female": {"S": "She", "s": "she", "P": "Her", "p": "her", "o": "her",
                   "r": "herself", "title": "Ms."},
        "male": {"S": "He", "s": "he", "P": "His", "p": "his", "o": "him",
                 "r": "himself", "title": "Mr."}}


# ---------------------------------------------------------------------------------------
# Generation

def derive_seed(seed, name):
    return int.from_bytes(hashlib.sha256(f"bios_gen:{seed}:{name}".encode()).digest()[:8],
                          "big")


def majorities(occs, seed):
    """Half of the occupations (a seeded shuffle) are female-majority, the other half
    male; independently, half young-majority, half old. The same for every split."""
    rng = random.Random(derive_seed(seed, "majority"))
    labels = [o["label"] for o in occs]
    g, a = labels[:], labels[:]
    rng.shuffle(g)
    rng.shuffle(a)
    half = (len(labels) + 1) // 2
    for o in occs:
        o["majority_gender"] = "female" if g.index(o["label"]) < half else "male"
        o["majority_age"] = "young" if a.index(o["label"]) < half else "old"


def pick_cum(rng, names_cum):
    names, cum = names_cum
    return rng.choices(names, cum_weights=cum)[0]


def fill(rng, tmpl, ctx, x=None):
    c = dict(ctx)
    if x is not None:
        c["x"] = x
        c["a"] = a_an(x)
    out = tmpl.format(**c)
    return out[0].upper() + out[1:]


def biography(rng, occ, gender, age_group, names, occs, rng_cf=None):
    """One record; with rng_cf also its counterfactuals (drawn from rng_cf, so that rng draws
    exactly what it draws without them): "text_cf_gender", the same biography told of the
    other gender (another first name of that gender, its pronouns and title, the gendered
    sentence's counterpart), and "text_cf_age", told of the other age group (another age in
    that group's range, the years that follow from it, the career-stage sentence's
    counterpart)."""
    pr = PRON[gender]
    first = pick_cum(rng, names[gender])
    last = pick_cum(rng, names["last"])
    while occ["mask_re"].search(last):     # a surname such as Carpenter
        last = pick_cum(rng, names["last"])
    st, st2 = rng.sample(names["states"], 2)
    l, l2 = rng.sample(LANGS, 2)
    age = rng.randint(*(YOUNG if age_group == "young" else OLD))
    grad_age = rng.randint(21, 26)
    slack = rng.randint(0, 2)
    exp = max(2, age - grad_age - slack)
    ctx = dict(pr, N=first, F=f"{first} {last}", T=f"{pr['title']} {last}", st=st, st2=st2,
               l=l, l2=l2, h=rng.choice(HOBBIES), c=rng.choice(CAUSES), pet=rng.choice(PETS),
               age=age, born=REFERENCE_YEAR - age, grad=REFERENCE_YEAR - age + grad_age, exp=exp)
    # the texts to render: (context, template counterparts), the biography's first
    variants = [(ctx, {})]
    if rng_cf is not None:
        g2 = "male" if gender == "female" else "female"
        pr2, first2 = PRON[g2], pick_cum(rng_cf, names[g2])
        variants.append((dict(ctx, **pr2, N=first2, F=f"{first2} {last}",
                              T=f"{pr2['title']} {last}"),
                         dict(zip(T_GENDER[gender], T_GENDER[g2]))))
        a2 = "old" if age_group == "young" else "young"
        age2 = rng_cf.randint(*(YOUNG if a2 == "young" else OLD))
        variants.append((dict(ctx, age=age2, born=REFERENCE_YEAR - age2,
                              grad=REFERENCE_YEAR - age2 + grad_age,
                              exp=max(2, age2 - grad_age - slack)),
                         dict(zip(T_AGE["stage"][age_group], T_AGE["stage"][a2]))))

    def each(tmpl, x=None):
        """tmpl filled for every variant (with the variant's counterpart template)."""
        return tuple(fill(rng, alt.get(tmpl, tmpl), c, x) for c, alt in variants)

    ev = occ["evidence"]
    level = rng.choices([e for e, _ in EVIDENCE], weights=[w for _, w in EVIDENCE])[0]
    occ_s = []
    extra = [(k, t) for k, t in (("def_vp", T_DEF_VP), ("hypo", T_HYPO), ("special", T_SPECIAL),
                                 ("verb", T_VERB), ("domain", T_DOMAIN), ("example", T_EXAMPLE))
             if ev[k]]
    if level == "strong":
        occ_s.append(each(rng.choice(T_DEF), rng.choice(ev["def"])))
        for k, t in rng.sample(extra, min(len(extra), rng.randint(1, 2))):
            occ_s.append(each(rng.choice(t), rng.choice(ev[k])))
    elif level == "medium":
        if extra:
            k, t = rng.choice(extra)
            occ_s.append(each(rng.choice(t), rng.choice(ev[k])))
        else:
            occ_s.append(each(rng.choice(T_DEF), rng.choice(ev["def"])))
    elif level == "weak" and ev["hyper"]:
        occ_s.append(each(rng.choice(T_HYPER), rng.choice(ev["hyper"])))

    # a career-stage phrase in most biographies, one or two numeric cues
    kinds = ["stage"] if rng.random() < P_AGE_STAGE else []
    kinds += rng.sample(AGE_KINDS[:4], rng.choice([0, 1, 1, 2] if kinds else [1, 2]))
    age_s = []
    for k in kinds:
        pool = T_AGE[k][age_group] if k == "stage" else T_AGE[k]
        age_s.append(each(rng.choice(pool)))

    other = []
    for t in rng.sample(T_FILLER, rng.randint(2, 4)):
        other.append(each(t))
    if rng.random() < 0.25:
        other.append(each(rng.choice(T_GENDER[gender])))
    if len(occs) > 1 and rng.random() < P_DISTRACTOR:
        o2 = rng.choice([o for o in occs if o is not occ])
        other.append(each(rng.choice(T_DISTRACTOR), o2["label"].replace("_", " ")))

    body = occ_s + age_s + other
    rng.shuffle(body)
    intro = each(rng.choice(T_INTRO))
    texts = []
    for k in range(len(variants)):
        text = mask(" ".join([intro[k]] + [b[k] for b in body]), occ)
        if occ["mask_re"].search(text.replace(MASK, "")):
            raise AssertionError(f"unmasked title in: {text}")
        texts.append(text)
    rec = {"text": texts[0], "occupation": occ["label"], "gender": gender, "age": age_group}
    if rng_cf is not None:
        rec["text_cf_gender"], rec["text_cf_age"] = texts[1], texts[2]
    return rec


def gen_split(name, n, seed, corr_g, corr_a, occs, names, counterfactual=False):
    rng = random.Random(derive_seed(seed, name))
    rng_cf = random.Random(derive_seed(seed, name + "/counterfactual")) if counterfactual else None
    recs = []
    for _ in range(n):
        occ = occs[rng.randrange(len(occs))]
        mg, ma = occ["majority_gender"], occ["majority_age"]
        g = mg if rng.random() < corr_g else ("male" if mg == "female" else "female")
        a = ma if rng.random() < corr_a else ("old" if ma == "young" else "young")
        recs.append(biography(rng, occ, g, a, names, occs, rng_cf))
    return recs


def split_stats(recs, occs):
    counts, maj_g, maj_a = {}, {}, {}
    for o in occs:
        rs = [r for r in recs if r["occupation"] == o["label"]]
        c = {"total": len(rs), "gender": {}, "age": {}, "gender_age": {}}
        for g in ("female", "male"):
            c["gender"][g] = sum(r["gender"] == g for r in rs)
        for a in ("young", "old"):
            c["age"][a] = sum(r["age"] == a for r in rs)
        for g in ("female", "male"):
            for a in ("young", "old"):
                c["gender_age"][f"{g}/{a}"] = sum(r["gender"] == g and r["age"] == a for r in rs)
        counts[o["label"]] = c
        maj_g[o["label"]] = round(c["gender"][o["majority_gender"]] / len(rs), 4) if rs else None
        maj_a[o["label"]] = round(c["age"][o["majority_age"]] / len(rs), 4) if rs else None
    by = {o["label"]: o for o in occs}
    n = len(recs)
    maj_g["all"] = round(sum(r["gender"] == by[r["occupation"]]["majority_gender"]
                             for r in recs) / n, 4)
    maj_a["all"] = round(sum(r["age"] == by[r["occupation"]]["majority_age"]
                             for r in recs) / n, 4)
    return counts, maj_g, maj_a


def dpkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True, check=False)
        return r.stdout.strip() or None
    except OSError:
        return None


def write_atomic(path, data):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def prob(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{s} is outside [0, 1]")
    return v


def count(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s} is less than 1")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-train", type=count, default=6000, metavar="N")
    ap.add_argument("--n-val", type=count, default=1000, metavar="N")
    ap.add_argument("--n-test", type=count, default=2000, metavar="N")
    ap.add_argument("--n-attack", type=count, default=0, metavar="N",
                    help="also an attack split of N examples, correlated as the test split")
    ap.add_argument("--occupations", type=count, default=8, metavar="K",
                    help=f"the first K of the {len(OCCUPATIONS)} occupations (at least 2)")
    ap.add_argument("--corr-gender", type=prob, default=0.8, metavar="P",
                    help="P(majority gender | occupation) in train and val")
    ap.add_argument("--corr-age", type=prob, default=0.8, metavar="P",
                    help="P(majority age group | occupation) in train and val")
    ap.add_argument("--test-corr-gender", type=prob, default=None, metavar="P",
                    help="the same in test (default: --corr-gender)")
    ap.add_argument("--test-corr-age", type=prob, default=None, metavar="P",
                    help="the same in test (default: --corr-age)")
    ap.add_argument("--counterfactual", action="store_true",
                    help="train and val records also carry text_cf_gender and text_cf_age: "
                         "the same biography told of the other gender, of the other age group "
                         "(training data for counterfactual invariance)")
    args = ap.parse_args(argv)
    if args.occupations < 2:
        ap.error("argument --occupations: at least 2 classes are needed")
    if args.occupations > len(OCCUPATIONS):
        ap.error(f"argument --occupations: {args.occupations} is more than the "
                 f"{len(OCCUPATIONS)} available")
    if args.test_corr_gender is None:
        args.test_corr_gender = args.corr_gender
    if args.test_corr_age is None:
        args.test_corr_age = args.corr_age

    names = load_faker()
    wn = WordNet()

    occs = []
    for lemma in OCCUPATIONS[:args.occupations]:
        s, sense, tagged = resolve(wn, lemma)
        occs.append({"label": lemma, "synset": s, "sense": sense, "tagged": tagged})
    offsets = [o["synset"]["offset"] for o in occs]
    if len(set(offsets)) != len(offsets):
        die("two occupations resolve to the same WordNet synset")
    for o in occs:
        lemmas = sorted(set([o["label"]] + [w.lower() for w in o["synset"]["words"]]))
        o["lemmas"] = lemmas
        o["lemma_forms"] = {w.replace("_", " ").lower() for w in lemmas}
        o["mask_re"] = mask_re(lemmas)
        o["evidence"] = evidence(wn, o, set(offsets))
    majorities(occs, args.seed)

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        die(f"{args.out} exists and is not a directory")
    if not os.path.isdir(args.out):
        try:
            os.makedirs(args.out)
        except OSError as e:
            die(f"cannot create {args.out}: {e.strerror}")

    splits = [("train", args.n_train, args.corr_gender, args.corr_age),
              ("val", args.n_val, args.corr_gender, args.corr_age),
              ("test", args.n_test, args.test_corr_gender, args.test_corr_age)]
    if args.n_attack:
        splits.append(("attack", args.n_attack, args.test_corr_gender, args.test_corr_age))
    meta_splits = {}
    for name, n, cg, ca in splits:
        recs = gen_split(name, n, args.seed, cg, ca, occs, names,
                         args.counterfactual and name in ("train", "val"))
        data = "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in recs)
        write_atomic(os.path.join(args.out, f"{name}.jsonl"), data)
        counts, mg, ma = split_stats(recs, occs)
        meta_splits[name] = {
            "file": f"{name}.jsonl", "records": n, "corr_gender": cg, "corr_age": ca,
            "distinct_texts": len(set(r["text"] for r in recs)),
            "counts": counts, "p_majority_gender": mg, "p_majority_age": ma}

    meta = {
        "generator": "bench/bios_gen.py",
        "options": {"seed": args.seed, "n_train": args.n_train, "n_val": args.n_val,
                    "n_test": args.n_test, "occupations": args.occupations,
                    "corr_gender": args.corr_gender, "corr_age": args.corr_age,
                    "test_corr_gender": args.test_corr_gender,
                    "test_corr_age": args.test_corr_age,
                    "counterfactual": args.counterfactual},
        "fields": {"text": "text", "label": "occupation", "attributes": ["gender", "age"],
                   **({"counterfactual": {"gender": "text_cf_gender", "age": "text_cf_age"}}
                      if args.counterfactual else {})},
        "classes": {"occupation": sorted(o["label"] for o in occs),
                    "gender": ["female", "male"], "age": ["old", "young"]},
        "age_groups": {"young": list(YOUNG), "old": list(OLD),
                       "reference_year": REFERENCE_YEAR},
        "evidence_levels": dict(EVIDENCE), "p_distractor": P_DISTRACTOR, "mask": MASK,
        "sources": {
            "python3-fake-factory": dpkg_version("python3-fake-factory"),
            "wordnet-base": dpkg_version("wordnet-base"),
            "faker_names": {"female": len(names["female"][0]), "male": len(names["male"][0]),
                            "last": len(names["last"][0]),
                            "left_out_ambiguous": names["ambiguous"]},
            "wordnet": "WordNet 3.0, " + WORDNET,
            "python": "%d.%d.%d" % sys.version_info[:3],
        },
        "occupations": [{
            "label": o["label"], "synset": synset_name(wn, o["synset"]),
            "label_sense": o["sense"],
            "offset": o["synset"]["offset"], "lemmas": o["lemmas"],
            "gloss": "; ".join(o["synset"]["defs"]), "tagsense_cnt": o["tagged"],
            "majority_gender": o["majority_gender"], "majority_age": o["majority_age"],
            "evidence": {k: len(v) for k, v in o["evidence"].items()},
        } for o in occs],
        "splits": meta_splits,
    }
    write_atomic(os.path.join(args.out, "meta.json"), json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
