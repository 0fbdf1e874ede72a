#!/usr/bin/env python3
"""Builds tests/fixtures/delta_ref.safetensors: the gated delta rule (src/kernels/delta.h,
docs/design.md "Gated delta rule") transcribed in PyTorch float64, with autograd for the
gradients, for tests/test_delta.c.

Per head, written as in the paper (S: d_v × d_φ, Yang et al. 2024, eq. 10):
  q̂ = φq/‖φq‖, k̂ = φk/‖φk‖  (‖x‖ = sqrt(Σx² + 1e-6)),  α = σ(f̃), β = σ(ĩ)
  S_t = α_t S_{t−1} (I − β_t k̂_t k̂_tᵀ) + β_t v_t k̂_tᵀ,   h_t = S_t q̂_t
  S_{t−1} = 0 at a document start t > 0; S_{−1} = the initial state (or 0).
The C code stores M = Sᵀ [d_φ][d_v]; the fixture stores states in that layout.

Two cases (T = 70, H = 2, d_φ = 16, d_v = 8; the C side uses chunk 16):
  A: one document, no initial state; ĩ ~ N(0, 2), f̃ ~ N(3, 1.5); loss = Σ h·Rh.
  B: an initial state (random, scaled like a state after a prefix), documents starting at
     0, 23, 32 (a chunk start on the C side) and 51, gates U[−8, 8];
     loss = Σ h·Rh + Σ M_T·RM.
Features are Hedgehog-like, φ(u) = [softmax(u); softmax(−u)]. Inputs are drawn in float32
(what the C test reads) and computed in float64; tensors are stored as float32.

Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_delta_fixture.py [out_dir]
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")
T, H, DPHI, DV = 70, 2, 16, 8
SEED = 20261206


def delta_rule(q, k, v, ig, fg, doc_start, M0):
    """q, k [T,H,D], v [T,H,Dv], ig, fg [T,H], doc_start [T], M0 [H,D,Dv] or None.
    Returns h [T,H,Dv] and the final M [H,D,Dv]."""
    qn = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
    kn = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    a, b = torch.sigmoid(fg), torch.sigmoid(ig)
    eye = torch.eye(q.shape[-1], dtype=q.dtype)
    hs, Ms = [], []
    for hh in range(q.shape[1]):
        S = M0[hh].T.clone() if M0 is not None else torch.zeros(v.shape[-1], q.shape[-1],
                                                                 dtype=q.dtype)
        out = []
        for t in range(q.shape[0]):
            if t > 0 and int(doc_start[t]) == t:
                S = torch.zeros_like(S)
            kt = kn[t, hh]
            S = a[t, hh] * S @ (eye - b[t, hh] * torch.outer(kt, kt)) + \
                b[t, hh] * torch.outer(v[t, hh], kt)
            out.append(S @ qn[t, hh])
        hs.append(torch.stack(out))
        Ms.append(S.T)
    return torch.stack(hs, 1), torch.stack(Ms)


def hedgehog(g, rows):
    u = torch.randn(rows, H, DPHI // 2, generator=g) * 1.5
    return torch.cat([torch.softmax(u, -1), torch.softmax(-u, -1)], -1).float()


def case(g, name, docs, with_init, glo, ghi, normal_gates):
    q, k = hedgehog(g, T), hedgehog(g, T)
    v = torch.randn(T, H, DV, generator=g).float()
    if normal_gates:
        ig = (torch.randn(T, H, generator=g) * 2).float()
        fg = (torch.randn(T, H, generator=g) * 1.5 + 3).float()
    else:
        ig = (torch.rand(T, H, generator=g) * (ghi - glo) + glo).float()
        fg = (torch.rand(T, H, generator=g) * (ghi - glo) + glo).float()
    doc = torch.zeros(T)
    for t in range(T):
        doc[t] = max([d for d in docs if d <= t], default=0)
    Rh = torch.randn(T, H, DV, generator=g).float()
    t = {"q": q, "k": k, "v": v, "ig": ig, "fg": fg, "doc_start": doc.float(), "Rh": Rh}
    if with_init:
        t["M0"] = (torch.randn(H, DPHI, DV, generator=g) * 0.3).float()
        t["RM"] = torch.randn(H, DPHI, DV, generator=g).float()
    leaves = {n: t[n].double().requires_grad_(True) for n in ("q", "k", "v", "ig", "fg")}
    M0 = t["M0"].double().requires_grad_(True) if with_init else None
    h, Mf = delta_rule(leaves["q"], leaves["k"], leaves["v"], leaves["ig"], leaves["fg"], doc, M0)
    loss = (h * t["Rh"].double()).sum()
    if with_init:
        loss = loss + (Mf * t["RM"].double()).sum()
    loss.backward()
    t["h"] = h.detach().float()
    for n in ("q", "k", "v", "ig", "fg"):
        t["d" + n] = leaves[n].grad.float()
    if with_init:
        t["Mf"] = Mf.detach().float()
        t["dM0"] = M0.grad.float()
    return {f"{name}.{n}": x.contiguous() for n, x in t.items()}


def main():
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    tensors = {}
    tensors.update(case(g, "A", [0], False, 0, 0, True))
    tensors.update(case(g, "B", [0, 23, 32, 51], True, -8, 8, False))
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "delta_ref.safetensors"))
    print(f"wrote {len(tensors)} tensors to {os.path.join(OUT, 'delta_ref.safetensors')}")


if __name__ == "__main__":
    main()
