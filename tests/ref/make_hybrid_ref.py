#!/usr/bin/env python3
"""Builds tests/fixtures/hybrid_ref.safetensors: the small ops of the hybrid
mixer (docs/design.md, "Student layer"; src/kernels/hybrid_ops.h) in PyTorch float64 with
autograd, for tests/test_hybrid_ops.c.

  Hedgehog  (n=24, 4 maps on 2 heads of u (map h reads head h // 2), hd=8):
            z = u_g·A[h] + a[h];  φ = [softmax(z); softmax(−z)];  loss Σ φ·R
            → phi, du, dA, da
  mix       (n=24, nh=4, nkv=2, hd=8):
            o = σ(w_o[h]·[q_h; k_g; v_g] + b_o[h]), out = o·hm + (1−o)·hs,
            loss Σ out·R → out, o, dq, dk, dv, dhm, dhs, dw_o, db_o
  soft-cap  (64 values, c = 15): y = c·tanh(g/c), loss Σ y·R → y, dg

Inputs are drawn in float32 (what the C test reads) and computed in float64;
every tensor is stored as float32 (6e-8 relative rounding, far below the
test's 1e-5).

Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_hybrid_ref.py [out_dir]
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")
SEED = 20240611
N, NMAP, NU, HD = 24, 4, 2, 8
NH, NKV = 4, 2
NG, CAP = 64, 15.0


def leaf(x):
    """float32 draw → float64 leaf with grad"""
    return x.float().double().requires_grad_(True)


def hedgehog(u, A, a):
    """u [n, nu, hd], A [nmap, hd, hd] (z_j = Σ_i u_i A[i, j]), a [nmap, hd]
    → phi [n, nmap, 2hd]"""
    per = NMAP // NU
    ug = u[:, torch.arange(NMAP) // per, :]             # [n, nmap, hd]
    z = torch.einsum("nhi,hij->nhj", ug, A) + a[None]
    return torch.cat([torch.softmax(z, -1), torch.softmax(-z, -1)], -1)


def mix(q, k, v, hm, hs, w, b):
    """q [n, nh*hd], k, v [n, nkv*hd], hm, hs [n, nh*hd], w [nh, 3hd], b [nh]"""
    n = q.shape[0]
    per = NH // NKV
    qh = q.view(n, NH, HD)
    kg = k.view(n, NKV, HD)[:, torch.arange(NH) // per]
    vg = v.view(n, NKV, HD)[:, torch.arange(NH) // per]
    x = torch.cat([qh, kg, vg], -1)                     # [n, nh, 3hd]
    o = torch.sigmoid((x * w[None]).sum(-1) + b[None])  # [n, nh]
    out = o[..., None] * hm.view(n, NH, HD) + (1 - o[..., None]) * hs.view(n, NH, HD)
    return out.reshape(n, NH * HD), o


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(SEED)
    rn = lambda *s: torch.randn(*s, generator=g)       # noqa: E731
    ru = lambda lo, hi, *s: lo + (hi - lo) * torch.rand(*s, generator=g)  # noqa: E731
    T = {}

    u = leaf(1.5 * rn(N, NU, HD))
    A = leaf(torch.eye(HD)[None] + 0.4 / HD ** 0.5 * rn(NMAP, HD, HD))
    a = leaf(ru(-0.5, 0.5, NMAP, HD))
    R = ru(-1, 1, N, NMAP, 2 * HD).float().double()
    phi = hedgehog(u, A, a)
    (phi * R).sum().backward()
    T.update({"hh.u": u, "hh.A": A, "hh.a": a, "hh.R": R, "hh.phi": phi, "hh.du": u.grad,
              "hh.dA": A.grad, "hh.da": a.grad})

    q, k, v = leaf(rn(N, NH * HD)), leaf(rn(N, NKV * HD)), leaf(rn(N, NKV * HD))
    hm, hs = leaf(rn(N, NH * HD)), leaf(rn(N, NH * HD))
    w, b = leaf(0.5 / HD ** 0.5 * rn(NH, 3 * HD)), leaf(ru(-1, 1, NH))
    R = ru(-1, 1, N, NH * HD).float().double()
    out, o = mix(q, k, v, hm, hs, w, b)
    (out * R).sum().backward()
    T.update({"mix.q": q, "mix.k": k, "mix.v": v, "mix.hm": hm, "mix.hs": hs, "mix.w_o": w,
              "mix.b_o": b, "mix.R": R, "mix.out": out, "mix.o": o, "mix.dq": q.grad,
              "mix.dk": k.grad, "mix.dv": v.grad, "mix.dhm": hm.grad, "mix.dhs": hs.grad,
              "mix.dw_o": w.grad, "mix.db_o": b.grad})

    gg = leaf(ru(-60, 60, NG))
    R = ru(-1, 1, NG).float().double()
    y = CAP * torch.tanh(gg / CAP)
    (y * R).sum().backward()
    T.update({"sc.g": gg, "sc.R": R, "sc.y": y, "sc.dg": gg.grad})

    T = {k: t.detach().float().contiguous() for k, t in T.items()}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "hybrid_ref.safetensors")
    save_file(T, path, metadata={"torch": torch.__version__, "seed": str(SEED)})
    print(f"wrote {path}: {len(T)} tensors")


if __name__ == "__main__":
    main()
