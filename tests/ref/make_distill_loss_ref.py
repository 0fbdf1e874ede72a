#!/usr/bin/env python3
"""Builds tests/fixtures/distill_loss_ref.json: the Stage II loss (docs/design.md, "Stage II")
and its gradient in PyTorch float64, for tests/test_distill_loss.c.

Per row r with student logits z (V values), target y, teacher top-k ids/logits:
  CE_r = -log_softmax(z)[y]                                (if 0 <= y < V)
  S    = slots j with 0 <= id_j < V (other ids are padding)
  p̂    = softmax of the teacher logits over S
  KL_r = sum_{j in S} p̂_j (log p̂_j - log_softmax(z)[id_j])  (if S is not empty)
  loss = sum_r w_ce CE_r + w_kl KL_r
and the expected dlogits = scale * d loss / d z by autograd.

Inputs are drawn as float32 (what the C kernel reads), written exactly
(float64 repr of a float32), and computed in float64. The rows cover: CE and
KL, the target inside and outside the teacher's top-k, no target (y = -1) with
a teacher, a target without a teacher (all ids -1), neither, padding slots,
large logits (|z| ~ 60), and a near-one-hot teacher.

Run with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_distill_loss_ref.py
"""
import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "distill_loss_ref.json")

rng = np.random.default_rng(20240611)
n, V, k = 10, 37, 6
# the weights as the C side holds them (float)
w_ce, w_kl, scale = (float(np.float32(x)) for x in (0.9, 0.1, 0.125))

z = rng.normal(0, 3, size=(n, V)).astype(np.float32)
z[3] *= 20  # large logits
teacher_full = rng.normal(0, 3, size=(n, V)).astype(np.float32)
teacher_full[7] *= 15  # a near-one-hot teacher
ids = np.argsort(-teacher_full, axis=1, kind="stable")[:, :k].astype(np.int64)
tl = np.take_along_axis(teacher_full, ids, axis=1).astype(np.float16).astype(np.float32)
targets = rng.integers(0, V, size=n).astype(np.int64)
targets[1] = ids[1, 2]  # target inside the top-k
targets[2] = -1         # KL only
ids[4, :] = -1          # CE only
targets[5] = -1
ids[5, :] = -1          # neither
ids[6, 4:] = -1         # padding slots
targets[8] = ids[8, 0]

zt = torch.tensor(z.astype(np.float64), requires_grad=True)
logp = torch.log_softmax(zt, dim=1)
ce_sum = torch.zeros((), dtype=torch.float64)
kl_sum = torch.zeros((), dtype=torch.float64)
for r in range(n):
    if 0 <= targets[r] < V:
        ce_sum = ce_sum - logp[r, targets[r]]
    valid = [j for j in range(k) if 0 <= ids[r, j] < V]
    if valid:
        t = torch.tensor(tl[r, valid].astype(np.float64))
        lph = torch.log_softmax(t, dim=0)
        kl_sum = kl_sum + (lph.exp() * (lph - logp[r, ids[r, valid]])).sum()
loss = w_ce * ce_sum + w_kl * kl_sum
(scale * loss).backward()

ref = {
    "n": n, "V": V, "k": k, "w_ce": w_ce, "w_kl": w_kl, "scale": scale,
    "logits": [float(x) for x in z.reshape(-1)],
    "targets": [int(x) for x in targets],
    "topk_ids": [int(x) for x in ids.reshape(-1)],
    "topk_logits": [float(x) for x in tl.reshape(-1)],
    "loss": loss.item(), "ce_sum": ce_sum.item(), "kl_sum": kl_sum.item(),
    "dlogits": [float(x) for x in zt.grad.numpy().reshape(-1)],
}
with open(OUT, "w") as f:
    json.dump(ref, f)
print(f"{OUT}: loss {loss.item():.10g} ce {ce_sum.item():.10g} kl {kl_sum.item():.10g}")
