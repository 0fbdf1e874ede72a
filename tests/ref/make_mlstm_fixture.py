#!/usr/bin/env python3
"""Builds tests/fixtures/mlstm_ref.safetensors (+ mlstm_ref.json): the mLSTM cell
(docs/design.md, "mLSTM branch") in PyTorch float64, for tests/test_mlstm.c.

The reference is the parallel form written literally, with autograd for the
gradients. Nothing is detached: m_t = max_s log D_ts is differentiated through
the max (torch's max(dim).values sends the gradient to the argmax), and
max(|Σ C̃|, exp(−m)) follows the branch taken — the C chunkwise backward
implements the gradient of exactly this function.

  lf      = logsigmoid(f̃)                    b_t = Σ_{r≤t} lf_r
  log D_ts = b_t − b_s + ĩ_s  for doc_start[t] ≤ s ≤ t, −∞ otherwise
  initial state (C0, n0, m0), when given: one more source for the tokens of
           the first document (doc_start[t] == 0) with log weight b_t + m0
  m_t     = max over the sources
  C̃_ts    = s·(φq_t·φk_s)·exp(log D_ts − m_t)
  h_t     = (Σ_s C̃_ts v_s + w0_t s φq_tᵀC0) / (max(|Σ_s C̃_ts + w0_t s φq_t·n0|,
            exp(−m_t)) + ε),   w0_t = exp(b_t + m0 − m_t)
  final state: C_T = Σ_s exp(log D_{T−1,s} − m_{T−1}) φk_s v_sᵀ + w0_{T−1} C0,
           n_T likewise, m_T = m_{T−1}.

Three cases (T = 70, H = 2, d_φ = 16, d_v = 8; the C side uses chunk 16):
  A: one document, no initial state, realistic gates (ĩ ~ N(0, 2),
     f̃ ~ N(3, 1.5)); loss = Σ h·Rh.
  B: an initial state (the state after a 30-token prefix), documents starting
     at 0, 23, 32 (a chunk start on the C side) and 51, extreme gates
     ĩ, f̃ ~ U[−20, 20]; loss = Σ h·Rh + Σ C_T·RC + Σ n_T·Rn + Σ m_T·Rm.
  C: as B with gates U[−8, 8] and ε = 0.05, large enough that h itself
     depends on m visibly (through ε·e^m), so the m path of the gradient is
     exercised beyond the loss on m_T.
mlstm_ref.json records, per case, grad_change_if_m_detached: max over the
inputs of max|grad(m detached) − grad| / max|grad| (A: 1e-5, only through ε;
B: O(1), mostly through the loss on m_T; C: O(1)).
Features are Hedgehog-like: φ(u) = [softmax(u); softmax(−u)] (non-negative).
Inputs are drawn in float32 (what the C test reads) and computed in float64;
every tensor is stored as float32 (the gradients' rounding, 6e-8 relative, is
far below the test's 1e-4).

Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_mlstm_fixture.py [out_dir]
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")
T, H, DPHI, DV = 70, 2, 16, 8
SCALE = 1.0 / DPHI ** 0.5
EPS = 1e-6
SEED = 20240605


def mlstm_parallel(q, k, v, ig, fg, doc_start, init, scale, eps, detach_m=False):
    """The parallel form. q, k [T,H,D], v [T,H,Dv], ig, fg [T,H],
    doc_start [T] (long), init = (C0 [H,D,Dv], n0 [H,D], m0 [H]) or None.
    Returns h [T,H,Dv] and the final state (C, n, m)."""
    T = q.shape[0]
    lf = F.logsigmoid(fg)
    b = torch.cumsum(lf, 0)                                   # [T,H]
    logD = b[:, None, :] - b[None, :, :] + ig[None, :, :]     # [t,s,H]
    t_i = torch.arange(T)
    vis = (t_i[None, :] <= t_i[:, None]) & (t_i[None, :] >= doc_start[:, None])
    neg_inf = torch.tensor(float("-inf"), dtype=q.dtype)
    logD = torch.where(vis[:, :, None], logD, neg_inf)
    if init is not None:
        C0, n0, m0 = init
        a0 = torch.where((doc_start == 0)[:, None], b + m0[None, :], neg_inf)  # [T,H]
        logD = torch.cat([logD, a0[:, None, :]], dim=1)       # [t,T+1,H]
    m = logD.max(dim=1).values                                # [T,H], not detached
    if detach_m:  # only to record how much detaching would change the gradients
        m = m.detach()
    W = torch.exp(logD - m[:, None, :])
    Ct = scale * torch.einsum("thd,shd->tsh", q, k) * W[:, :T]
    Z = Ct.sum(1)
    num = torch.einsum("tsh,shv->thv", Ct, v)
    if init is not None:
        w0 = W[:, T]                                          # [T,H]
        Z = Z + w0 * scale * torch.einsum("thd,hd->th", q, n0)
        num = num + (w0 * scale)[..., None] * torch.einsum("thd,hdv->thv", q, C0)
    norm = torch.maximum(Z.abs(), torch.exp(-m))
    h = num / (norm + eps)[..., None]
    wl = W[T - 1]                                             # [T(+1),H]
    Cf = torch.einsum("sh,shd,shv->hdv", wl[:T], k, v)
    nf = torch.einsum("sh,shd->hd", wl[:T], k)
    if init is not None:
        Cf = Cf + wl[T][:, None, None] * C0
        nf = nf + wl[T][:, None] * n0
    return h, (Cf, nf, m[T - 1])


def hedgehog(g, T, H, D):
    u = torch.randn(T, H, D // 2, generator=g) * 1.5
    return torch.cat([torch.softmax(u, -1), torch.softmax(-u, -1)], -1)


def make_case(g, name, extreme, with_init, docs, eps):
    q, k = hedgehog(g, T, H, DPHI), hedgehog(g, T, H, DPHI)
    v = torch.rand(T, H, DV, generator=g) * 2 - 1
    if extreme:
        ig = torch.rand(T, H, generator=g) * 2 * extreme - extreme
        fg = torch.rand(T, H, generator=g) * 2 * extreme - extreme
    else:
        ig = torch.randn(T, H, generator=g) * 2
        fg = torch.randn(T, H, generator=g) * 1.5 + 3
    doc = torch.zeros(T, dtype=torch.long)
    for s in docs:
        doc[s:] = s
    init = None
    if with_init:  # the state after a random 30-token prefix
        P = 30
        pq, pk = hedgehog(g, P, H, DPHI), hedgehog(g, P, H, DPHI)
        pv = torch.rand(P, H, DV, generator=g) * 2 - 1
        pig = torch.rand(P, H, generator=g) * 16 - 8
        pfg = torch.rand(P, H, generator=g) * 16 - 8
        with torch.no_grad():
            _, st = mlstm_parallel(*(x.double() for x in (pq, pk, pv, pig, pfg)),
                                   torch.zeros(P, dtype=torch.long), None, SCALE, EPS)
        init = tuple(x.float() for x in st)
    Rh = torch.rand(T, H, DV, generator=g) * 2 - 1
    RC = torch.rand(H, DPHI, DV, generator=g) * 2 - 1 if with_init else None
    Rn = torch.rand(H, DPHI, generator=g) * 2 - 1 if with_init else None
    Rm = torch.rand(H, generator=g) * 2 - 1 if with_init else None

    def run(detach_m):
        leaves = {n: x.double().requires_grad_() for n, x in
                  dict(q=q, k=k, v=v, ig=ig, fg=fg).items()}
        if init is not None:
            leaves.update({n: x.double().requires_grad_()
                           for n, x in zip(("C0", "n0", "m0"), init)})
        h, (Cf, nf, mf) = mlstm_parallel(
            leaves["q"], leaves["k"], leaves["v"], leaves["ig"], leaves["fg"], doc,
            (leaves["C0"], leaves["n0"], leaves["m0"]) if init else None, SCALE, eps, detach_m)
        loss = (h * Rh.double()).sum()
        if with_init:
            loss = (loss + (Cf * RC.double()).sum() + (nf * Rn.double()).sum()
                    + (mf * Rm.double()).sum())
        loss.backward()
        return leaves, h, Cf, nf, mf, loss

    leaves, h, Cf, nf, mf, loss = run(False)
    detached, *_ = run(True)
    change = max(((detached[n].grad - x.grad).abs().max() / x.grad.abs().max()).item()
                 for n, x in leaves.items())
    out = {"q": q, "k": k, "v": v, "ig": ig, "fg": fg, "doc_start": doc.float(), "Rh": Rh,
           "h": h.detach(), "eps": torch.tensor([eps]), "scale": torch.tensor([SCALE])}
    if with_init:
        out.update(C0=init[0], n0=init[1], m0=init[2], RC=RC, Rn=Rn, Rm=Rm,
                   Cf=Cf.detach(), nf=nf.detach(), mf=mf.detach())
    for n, x in leaves.items():
        out["d" + n] = x.grad
    branch_b = int((Z_branch_b(leaves, doc, init)).sum())
    meta = {"T": T, "H": H, "dphi": DPHI, "dv": DV, "scale": SCALE, "eps": eps,
            "gates": f"U[-{extreme}, {extreme}]" if extreme else "N(0,2), N(3,1.5)",
            "init": with_init, "docs": docs, "loss": loss.item(), "rows_in_exp_branch": branch_b,
            "grad_change_if_m_detached": change}
    return {f"{name}.{n}": x.detach().float().contiguous() for n, x in out.items()}, meta


def Z_branch_b(leaves, doc, init):
    """rows where max(|Σ C̃|, exp(−m)) takes exp(−m) (for the record)"""
    with torch.no_grad():
        q, k, ig, fg = (leaves[n] for n in ("q", "k", "ig", "fg"))
        b = torch.cumsum(F.logsigmoid(fg), 0)
        logD = b[:, None, :] - b[None, :, :] + ig[None, :, :]
        t_i = torch.arange(T)
        vis = (t_i[None, :] <= t_i[:, None]) & (t_i[None, :] >= doc[:, None])
        logD = torch.where(vis[:, :, None], logD, torch.tensor(float("-inf"), dtype=q.dtype))
        if init is not None:
            a0 = torch.where((doc == 0)[:, None], b + leaves["m0"][None, :],
                             torch.tensor(float("-inf"), dtype=q.dtype))
            logD = torch.cat([logD, a0[:, None, :]], dim=1)
        m = logD.max(dim=1).values
        W = torch.exp(logD - m[:, None, :])
        Z = (SCALE * torch.einsum("thd,shd->tsh", q, k) * W[:, :T]).sum(1)
        if init is not None:
            Z = Z + W[:, T] * SCALE * torch.einsum("thd,hd->th", q, leaves["n0"])
        return Z.abs() < torch.exp(-m)


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(SEED)
    tensors, meta = {}, {}
    for name, extreme, with_init, docs, eps in (("A", 0, False, [], EPS),
                                                ("B", 20, True, [23, 32, 51], EPS),
                                                ("C", 8, True, [23, 32, 51], 0.05)):
        t, m = make_case(g, name, extreme, with_init, docs, eps)
        tensors.update(t)
        meta[name] = m
    meta["torch"] = torch.__version__
    meta["seed"] = SEED
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "mlstm_ref.safetensors"))
    with open(os.path.join(OUT, "mlstm_ref.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
