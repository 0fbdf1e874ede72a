#!/usr/bin/env python3
"""Builds tests/fixtures/eva_ref.safetensors and eva_ref.json for tests/test_eva.c
(src/train/eva.h: the math of EVA, HF PEFT's explained-variance LoRA initialisation).

Three synthetic layer inputs, each a stream of minibatches of float32 rows (the rows
PEFT's SVDHook would hand to IncrementalPCA.partial_fit after masking):
  l0  d=16, k=16  well-separated spectrum; k = d, so nothing is truncated and the
      incremental PCA must equal the full-data PCA of all rows seen so far
  l1  d=24, k=6   well-separated top spectrum, truncated (k < d)
  l2  d=32, k=8   the top four sample variances of the whole stream tied to 1e-4 relative
For every layer and step t (after batch t):
  full.*   exact PCA (numpy float64 SVD) of all rows of batches 0..t: mean, the first k
           components (sign-flipped as PEFT: largest |entry| positive), singular values,
           explained variance S^2/(N-1), ratio S^2/sum(S_all^2)
  ipca.*   the same incremental algorithm PEFT uses (utils/incremental_pca.py, a port of
           sklearn's IncrementalPCA), in numpy float64 with an exact SVD
  peft.*   PEFT's own IncrementalPCA(n_components=k, lowrank=True, lowrank_seed=42), as
           SVDHook builds it, fed torch float32 rows (components_ as PEFT returns them)
  sep      per component: 1 when its explained variance is separated from both
           neighbours by > 5% relative (where PEFT's randomized SVD must agree to |cos| >= .999)
For l0 the script asserts ipca == full (max |diff| < 1e-10; the C test uses 1e-9).
Doubles are stored losslessly as F32 tensors holding the float64 bytes (shape [..., 2]:
numpy .view('<f4')); the C test reinterprets them.

eva_ref.json: rank-distribution cases computed with PEFT's own _get_rank_distribution
(extracted from peft/tuners/lora/eva.py with ast, it is nested in _get_eva_state_dict)
on explained-variance ratios given as float64 tensors: layer order, the owner of each layer
(shared inputs: find_equal_values / equal_inputs_map as _get_eva_state_dict builds them),
per-layer r (rank_pattern) and alpha, rho, the ratios of each owner, and PEFT's counts and
per-layer alpha (alpha *= new_rank / r, as _load_eva_state_dict).

Deterministic (fixed seeds, CPU). Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_eva_fixture.py [out_dir]
"""
import ast
import inspect
import json
import os
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import peft
import torch
from peft.tuners.lora import eva as peft_eva
from peft.utils.incremental_pca import IncrementalPCA
from safetensors.numpy import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")


def flip(vt):
    """PEFT's _svd_flip(u_based_decision=False): each row times the sign of its largest
    |entry| (argmax: first index on ties)."""
    vt = vt.copy()
    for i in range(vt.shape[0]):
        j = int(np.argmax(np.abs(vt[i])))
        s = np.sign(vt[i, j])
        vt[i] *= s if s != 0 else 0.0
    return vt


def full_pca(X, k):
    X = X.astype(np.float64)
    mean = X.mean(0)
    U, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
    Vt = flip(Vt)
    n = X.shape[0]
    return dict(mean=mean, comp=Vt[:k], sv=S[:k], ev=S[:k] ** 2 / (n - 1),
                ratio=S[:k] ** 2 / np.sum(S ** 2))


class NpIPCA:
    """utils/incremental_pca.py's partial_fit in numpy float64 with an exact SVD."""

    def __init__(self, k):
        self.k, self.n = k, 0

    def partial_fit(self, X):
        X = X.astype(np.float64)
        n = X.shape[0]
        if self.n == 0:
            last_sum = np.zeros(X.shape[1])
        else:
            last_sum = self.mean * self.n
        new_sum = X.sum(0)
        tot = self.n + n
        mean = (last_sum + new_sum) / tot
        T = new_sum / n
        temp = X - T
        corr = temp.sum(0) ** 2
        new_unnorm = (temp ** 2).sum(0) - corr / n
        if self.n == 0:
            var = new_unnorm / tot
            M = X - mean
        else:
            lo = self.n / n
            var = (self.var * self.n + new_unnorm + lo / tot * (last_sum / lo - new_sum) ** 2) / tot
            bm = X.mean(0)
            mc = np.sqrt(self.n / tot * n) * (self.mean - bm)
            M = np.vstack([self.sv[:, None] * self.comp, X - bm, mc[None]])
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        Vt = flip(Vt)
        self.n, self.mean, self.var = tot, mean, var
        self.comp, self.sv = Vt[: self.k], S[: self.k]
        self.ev = S[: self.k] ** 2 / (tot - 1)
        self.ratio = S[: self.k] ** 2 / np.sum(var * tot)


def as_pairs(a):
    return np.ascontiguousarray(np.asarray(a, dtype="<f8")).view("<f4").reshape(*np.shape(a), 2)


def make_layers():
    rng = np.random.default_rng(14)
    specs = [
        ("l0", 16, 16, [24, 30, 20, 40], 3.0 * 0.75 ** np.arange(16)),
        ("l1", 24, 6, [20, 50, 33, 27, 41], np.concatenate([[9, 6, 4, 2.5, 1.6, 1.0], 0.3 * 0.9 ** np.arange(18)])),
        ("l2", 32, 8, [20, 45, 38, 50], np.concatenate([[5.0, 4.995, 4.99, 4.985, 2.0, 1.2, 0.8, 0.5],
                                                        0.2 * 0.9 ** np.arange(24)])),
    ]
    tensors, meta = {}, {}
    for name, d, k, ns, spec in specs:
        Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        mu = rng.standard_normal(d) * 2.0
        batches = []
        for t, n in enumerate(ns):
            Z = rng.standard_normal((n, d)) * np.sqrt(spec)
            batches.append(mu + 0.3 * t + Z @ Q.T)  # the mean drifts a little
        if name == "l2":
            # a sample of ~150 rows does not keep population ties: make the top four sample
            # variances of the whole stream tied to 1e-4 relative (S^2 = S0^2 (1 - 1e-4 i))
            allX = np.vstack(batches)
            mean = allX.mean(0)
            U, S, Vt = np.linalg.svd(allX - mean, full_matrices=False)
            target = S[0] * np.sqrt(1 - 1e-4 * np.arange(4))
            allX = allX + (U[:, :4] * (target - S[:4])) @ Vt[:4]
            batches = np.split(allX, np.cumsum(ns)[:-1])
        batches = [b.astype(np.float32) for b in batches]
        for t, X in enumerate(batches):
            tensors[f"{name}.x{t}"] = X
        ref = NpIPCA(k)
        pp = IncrementalPCA(n_components=k, copy=True, lowrank=True, lowrank_seed=42)
        pe = IncrementalPCA(n_components=k, copy=True, lowrank=False)
        for t, X in enumerate(batches):
            allX = np.vstack(batches[: t + 1])
            f = full_pca(allX, k)
            ref.partial_fit(X)
            pp.partial_fit(torch.from_numpy(X))
            pe.partial_fit(torch.from_numpy(X.astype(np.float64)))
            for key in ("mean", "comp", "sv", "ev", "ratio"):
                tensors[f"{name}.full.{key}{t}"] = as_pairs(f[key])
            for key, v in (("mean", ref.mean), ("var", ref.var), ("comp", ref.comp), ("sv", ref.sv),
                           ("ev", ref.ev), ("ratio", ref.ratio)):
                tensors[f"{name}.ipca.{key}{t}"] = as_pairs(v)
            tensors[f"{name}.peft.comp{t}"] = as_pairs(pp.components_.double().numpy())
            ev = ref.ev
            rel = np.full(k, np.inf)
            for i in range(k):
                for j in (i - 1, i + 1):
                    if 0 <= j < len(f["ev"]):
                        rel[i] = min(rel[i], abs(ev[i] - ev[j]) / ev[i])
            # the (k+1)-th value: the full spectrum of the stacked matrix is not kept, use full PCA's
            fs = np.linalg.svd(allX.astype(np.float64) - allX.mean(0), compute_uv=False)
            if k < len(fs):
                rel[k - 1] = min(rel[k - 1], abs(fs[k - 1] ** 2 - fs[k] ** 2) / fs[k - 1] ** 2)
            tensors[f"{name}.sep{t}"] = (rel > 0.05).astype(np.float32)
            # checks of the references themselves
            if k == d:
                err = max(np.max(np.abs(ref.comp - f["comp"])), np.max(np.abs(ref.mean - f["mean"])),
                          np.max(np.abs(ref.ev - f["ev"]) / f["ev"][0]))
                assert err < 1e-10, (name, t, err)
                meta.setdefault("ipca_vs_full_maxdiff", {})[f"{name}.{t}"] = float(err)
            ce = np.abs(np.sum(pe.components_.numpy() * ref.comp, axis=1))
            assert np.all(ce > 1 - 1e-9), (name, t, ce)  # PEFT exact (float64) == numpy port
            cp = np.abs(np.sum(pp.components_.double().numpy() * ref.comp, axis=1))
            meta.setdefault("peft_lowrank_cos", {})[f"{name}.{t}"] = [round(float(c), 9) for c in cp]
        meta[name] = dict(d=d, k=k, steps=len(ns), rows=ns)
    return tensors, meta


def peft_rank_fn():
    """PEFT's _get_rank_distribution, nested in _get_eva_state_dict: compiled from its source."""
    src = inspect.getsource(peft_eva._get_eva_state_dict)
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_get_rank_distribution":
            mod = ast.Module(body=[node], type_ignores=[])
            ns = {"torch": torch, "Counter": Counter}
            exec(compile(mod, "peft_eva_rank_distribution", "exec"), ns)
            return ns["_get_rank_distribution"]
    raise RuntimeError("_get_rank_distribution not found in peft's eva.py")


def rank_case(fn, name, layers, owners, r, alpha, rho, ratios):
    """layers in named_modules order; owners[i] = index of the layer whose input i shares
    (i itself when none; the owner is the group's first layer); ratios[i] for owners."""
    n = len(layers)
    max_components = {layers[i]: round(r[i] * rho) for i in range(n)}
    groups = {}
    for i in range(n):
        groups.setdefault(owners[i], []).append(layers[i])
    equal_inputs = [g for g in groups.values() if len(g) > 1]  # find_equal_values order
    equal_inputs_map = {vv: v[0] for v in equal_inputs for vv in v[1:]}
    for names in equal_inputs:
        mx = max(max_components[x] for x in names)
        for x in names:
            max_components[x] = mx
    hooks = {}
    for i in range(n):
        if owners[i] == i:
            ev = torch.tensor(ratios[i][: max_components[layers[i]]], dtype=torch.float64)
            hooks[layers[i]] = (SimpleNamespace(svd=SimpleNamespace(explained_variance_ratio_=ev)), None)
    layer_hook_map = {**dict(zip(hooks.keys(), hooks.keys())), **equal_inputs_map}
    budget = sum(r)
    counts = fn(hooks, layer_hook_map, equal_inputs_map, budget, max_components)
    ranks = [int(counts[l]) for l in layers]
    # what tests/test_eva.c implements: a stable descending order (ties: list index)
    keys = [k for k, nm in layer_hook_map.items() for _ in range(len(hooks[nm][0].svd.explained_variance_ratio_))]
    vals = [float(c) for k, nm in layer_hook_map.items() for c in hooks[nm][0].svd.explained_variance_ratio_]
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    mine = Counter(keys[i] for i in order[:budget])
    mine = {k: mine.get(k, 0) for k in layer_hook_map}
    for k, kh in equal_inputs_map.items():
        if mine[kh] < mine[k]:
            mine[kh], mine[k] = mine[k], mine[kh]
    assert [mine[l] for l in layers] == ranks, (name, ranks, mine)
    alphas = []
    for i in range(n):  # _load_eva_state_dict
        a = alpha[i]
        if ranks[i] != r[i]:
            a *= ranks[i] / r[i]
        alphas.append(a)
    return dict(name=name, layers=layers, owner=owners, r=r, alpha=alpha, rho=rho,
                ratios=[[float(x) for x in ratios[i][: max_components[layers[i]]]] if owners[i] == i else None
                        for i in range(n)],
                ranks=ranks, alphas=alphas, budget=budget)


def rank_cases(ipca_ratios):
    fn = peft_rank_fn()
    rng = np.random.default_rng(7)
    cases = []

    def rnd(m, scale=1.0):
        v = np.sort(rng.random(m).astype(np.float32).astype(np.float64) * scale)[::-1]
        return [float(x) for x in v]

    L4 = ["a", "b", "c", "d"]
    rat = [rnd(16, s) for s in (0.5, 0.3, 0.2, 0.1)]
    for r, rho in ((4, 2.0), (2, 1.0), (2, 1.5), (2, 1.25), (6, 1.25), (4, 1.125), (3, 2.5), (1, 3.0)):
        cases.append(rank_case(fn, f"plain r={r} rho={rho}", L4, [0, 1, 2, 3], [r] * 4, [8.0] * 4, rho, rat))
    # ties: equal values across layers, at the cut and away from it (index order decides)
    t = [[0.4, 0.25, 0.25, 0.1, 0.1, 0.05], [0.25, 0.25, 0.1, 0.1, 0.05, 0.05],
         [0.3, 0.25, 0.1, 0.1, 0.1, 0.01], [0.25, 0.1, 0.1, 0.05, 0.05, 0.05]]
    for r, rho in ((2, 1.5), (3, 2.0), (2, 3.0), (1, 2.0)):
        cases.append(rank_case(fn, f"ties r={r} rho={rho}", L4, [0, 1, 2, 3], [r] * 4, [16.0] * 4, rho, t))
    # shared inputs: one decoder layer's q,k,v,o,gate,up,down; {q,k,v} and {gate,up} share
    L7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    own = [0, 0, 0, 3, 4, 4, 6]
    rat7 = [rnd(24, s) if own[i] == i else None for i, s in enumerate((0.6, 0, 0, 0.2, 0.5, 0, 0.05))]
    for r, rho in ((4, 2.0), (2, 2.0), (3, 1.5), (8, 1.0)):
        cases.append(rank_case(fn, f"shared r={r} rho={rho}", L7, own, [r] * 7, [float(2 * r)] * 7, rho, rat7))
    # rank_pattern: per-layer r and alpha (the group's cap is its largest), float alphas
    rp = [4, 2, 6, 4, 3, 5, 4]
    ap = [8.0, 3.0, 12.5, 8.0, 6.0, 7.0, 1.0]
    for rho in (1.5, 2.0, 2.5):
        cases.append(rank_case(fn, f"rank_pattern rho={rho}", L7, own, rp, ap, rho, rat7))
    # the swap fix-up: an owner whose values lose to a duplicate's cannot happen with
    # shared values, so PEFT's swap only matters when counts differ by the cap; the q/k/v
    # case above has duplicates with equal values (ties favour the owner: index order)
    # the fixture's own IPCA ratios (last step), 3 layers
    Li = ["l0", "l1", "l2"]
    for r, rho in ((3, 2.0), (4, 1.5), (2, 3.0)):
        cases.append(rank_case(fn, f"ipca r={r} rho={rho}", Li, [0, 1, 2], [r] * 3, [float(r)] * 3, rho,
                               ipca_ratios))
    return cases


def main():
    tensors, meta = make_layers()
    ipca_ratios = []
    for name in ("l0", "l1", "l2"):
        last = meta[name]["steps"] - 1
        v = tensors[f"{name}.ipca.ratio{last}"].reshape(-1, 2).copy().view("<f8").reshape(-1)
        ipca_ratios.append([float(x) for x in v])
    cases = rank_cases(ipca_ratios)
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "eva_ref.safetensors"), metadata={"format": "xdistill-test"})
    doc = dict(peft_version=peft.__version__, torch_version=torch.__version__, numpy_version=np.__version__,
               layers={k: meta[k] for k in ("l0", "l1", "l2")},
               ipca_vs_full_maxdiff=meta["ipca_vs_full_maxdiff"], peft_lowrank_cos=meta["peft_lowrank_cos"],
               rank_cases=cases)
    with open(os.path.join(OUT, "eva_ref.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print("wrote", OUT, "cases:", len(cases))
    print("ipca vs full (l0):", meta["ipca_vs_full_maxdiff"])
    for k, v in meta["peft_lowrank_cos"].items():
        print("peft lowrank |cos|", k, min(v))


if __name__ == "__main__":
    main()
