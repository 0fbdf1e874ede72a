#!/usr/bin/env python3
"""Builds tests/fixtures/diffprune_ref.safetensors for tests/test_hard_concrete.c: PyTorch
(float64 autograd) transcriptions of DiffPruning's mask math (src/kernels/hard_concrete.h),
as the DiffPruning code bases write it with stretch (l, r) = (-1.5, 1.5), temperature 1:

  hard-concrete sample  s = sigmoid(log u - log(1 - u) + log_alpha),
                        z = clamp(s * (r - l) + l, 0, 1)            ("z_train")
  eval-time mask        z = clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1)  ("z_eval")
  expected L0           sum sigmoid(log_alpha - log(-l / r))        ("l0")
  gradient reversal     forward identity, backward -lambda * dy      ("grl_dx")

Inputs: 96 log_alpha values spread over [-3, 4] (both clamps are hit, in training and at
eval), uniforms u in [1e-6, 1 - 1e-6] (drawn here and stored, so the C test uses the same),
an upstream gradient dz. Gradients by autograd: "dla_train" = d(sum dz*z_train)/dlog_alpha,
"dla_eval" (not trained through, recorded for completeness), "dla_l0" = d(l0)/dlog_alpha.
All tensors F32 except where float64 matters (the values are float64 computed, stored F32).

    ~/xd-ref/bin/python tests/ref/make_diffprune_fixture.py [out_path]
"""
import os
import sys

import torch
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "diffprune_ref.safetensors")
L, R, EPS, LAMBDA = -1.5, 1.5, 1e-6, 0.7


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


def main():
    g = torch.Generator().manual_seed(20261207)
    n = 96
    la32 = (torch.rand(n, generator=g, dtype=torch.float64) * 7 - 3).float()
    u32 = (EPS + (1 - 2 * EPS) * torch.rand(n, generator=g, dtype=torch.float64)).float()
    dz32 = torch.randn(n, generator=g, dtype=torch.float64).float()
    la = la32.double().requires_grad_(True)
    u = u32.double()
    s = torch.sigmoid(torch.log(u) - torch.log(1 - u) + la)
    z = torch.clamp(s * (R - L) + L, 0, 1)
    (dla_train,) = torch.autograd.grad((z * dz32.double()).sum(), la)
    z_eval = torch.clamp(torch.sigmoid(la) * (R - L) + L, 0, 1)
    l0 = torch.sigmoid(la - torch.log(torch.tensor(-L / R, dtype=torch.float64))).sum()
    (dla_l0,) = torch.autograd.grad(l0, la)
    x = torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)
    dy = torch.randn(n, generator=g, dtype=torch.float64)
    y = GradReverse.apply(x, LAMBDA)
    (grl_dx,) = torch.autograd.grad((y * dy).sum(), x)
    assert torch.equal(y, x)
    out = {"log_alpha": la32, "u": u32, "dz": dz32, "z_train": z.detach().float(),
           "dla_train": dla_train.float(), "z_eval": z_eval.detach().float(),
           "l0": l0.detach().float().reshape(1), "dla_l0": dla_l0.float(),
           "grl_dy": dy.float(), "grl_dx": grl_dx.float(),
           "grl_lambda": torch.tensor([LAMBDA], dtype=torch.float32)}
    save_file({k: v.contiguous() for k, v in out.items()}, OUT,
              metadata={"torch_version": torch.__version__})
    zt = out["z_train"]
    print(f"wrote {OUT}: z_train {int((zt == 0).sum())} zeros, {int((zt == 1).sum())} ones, "
          f"z_eval {int((out['z_eval'] == 0).sum())} zeros, {int((out['z_eval'] == 1).sum())} ones; "
          f"L0 {l0.item():.6f}")


if __name__ == "__main__":
    main()
