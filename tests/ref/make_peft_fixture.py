#!/usr/bin/env python3
"""Builds tests/fixtures/peft/: LoRA adapters written by HuggingFace PEFT for
tests/test_peft_adapter.c (src/io/peft_adapter.h reads and writes this format).

On tests/fixtures/tiny-llama (2 layers, hidden 48, FFN 80, 4 heads of 12, 2 kv heads):
  lora/    r=4, lora_alpha=8, all seven projections, init_lora_weights=False (B is not
           zero), with a rank_pattern and an alpha_pattern (a first-match-wins case, a
           float alpha, a key with a layer index) so the modules have ranks 2..6; F32.
  rslora/  use_rslora=True, q_proj and v_proj, r=4, lora_alpha=8, rank_pattern v_proj: 2;
           the adapter's parameters in bf16 (autocast_adapter_dtype=False on a bf16
           model), so the file holds BF16 tensors.
  dora/    use_dora=True (q_proj, r=2): must be refused; its file has magnitude vectors.
  pissa/   a PiSSA adapter (r=4, all seven projections) moved by seeded noise (a stand-in
           for training), saved converted to a LoRA of the original base (rank 8).
  eva/     an EVA adapter initialised by PEFT (initialize_lora_eva_weights on random ids),
           B then moved by seeded noise.
  logits.safetensors  the logits PEFT gives with each adapter (PeftModel.from_pretrained
           on the fp32 base, unmerged) on one fixed sequence of 16 token ids ("ids"):
           "base", "lora", "rslora", "pissa", "eva", each [16][vocab] F32; "pissa_trained", the
           PiSSA model before conversion (residual base + adapter); "pissa_delta.<module>",
           PEFT's initial scaling·B0·A0 of two modules; for tests/test_lora.c.
  expected.json  per adapter and module: r, alpha and scaling as PEFT's LoraModel holds
           them (layer.r["default"], layer.lora_alpha["default"], layer.scaling["default"]),
           in/out features, the tensor dtype, the first four values of A and B as torch
           reads them; and the peft / torch / transformers versions.

The other direction, adapters written by xdistill and loaded by PEFT:
    make_peft_fixture.py --xd XDISTILL [out_dir]
runs the xdistill binary given to train three adapters on tiny-llama.gguf over a small
text (the same recipe each time: fixed seeds, one thread) and copies them to
out_dir/xd_eva (EVA init, rank and alpha patterns), xd_pissa (PiSSA, written
converted to a rank-2r LoRA of the original base) and xd_rslora (random init, rsLoRA,
q, v and down). Each is loaded with PeftModel.from_pretrained, which must wrap
exactly the modules of its adapter_config with no missing or unexpected keys, and
the script records what PEFT made of it (xd_expected.json: r, alpha, scaling and
first values per module, as expected.json) and PEFT's logits with it on LOGIT_IDS
(xd_logits.safetensors: "ids", "base" and one [16][vocab] F32 per adapter).
tests/test_peft_adapter.c checks that xdistill reads each back with PEFT's values
and writes it again byte for byte (so a change to the writer fails there until this
script, and PEFT with it, has seen the new files); tests/test_lora.c checks that
xdistill's logits with each equal PEFT's.

A quicker check of one directory by hand:
    make_peft_fixture.py --check DIR REF
loads the adapter at DIR (written by xdistill) and the PEFT adapter REF, each with
PeftModel.from_pretrained on tiny-llama, and checks that PEFT wraps the same modules,
with the same r, alpha and scaling, the same A/B values (bit for bit after conversion
to fp32), no missing or unexpected keys, and the same logits. To produce DIRs:
    XD_PEFT_OUT=/tmp/peft-out build/test_peft_adapter
writes /tmp/peft-out/{lora,rslora} (round trips of the fixtures) and
/tmp/peft-out/{lora,rslora}-eva (the same as EVA writes them: target_modules as full
paths, init_lora_weights "eva"); check each against tests/fixtures/peft/{lora,rslora}.

Deterministic: fixed seed, CPU only. Run from anywhere with the reference venv:
    ~/xd-ref/bin/python tests/ref/make_peft_fixture.py [out_dir]
    ~/xd-ref/bin/python tests/ref/make_peft_fixture.py --logits [out_dir]   (logits only,
        from the adapters already in out_dir)
    ~/xd-ref/bin/python tests/ref/make_peft_fixture.py --check DIR REF
"""
import json
import os
import sys
import warnings

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BASE = "tests/fixtures/tiny-llama"  # relative: it is what adapter_config.json records
SEED = 20261214
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

ADAPTERS = {
    "lora": dict(
        r=4, lora_alpha=8, target_modules=ALL, init_lora_weights=False,
        # first match in order wins: layer 1's q_proj gets 3, layer 0's q_proj 2
        # (PEFT saves the keys sorted, which keeps this order)
        rank_pattern={"model.layers.1.self_attn.q_proj": 3, "q_proj": 2,
                      "layers.1.mlp.down_proj": 6},
        alpha_pattern={"model.layers.0.mlp.up_proj": 3.5, "v_proj": 16}),
    "rslora": dict(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
        use_rslora=True, rank_pattern={"v_proj": 2}),
    "dora": dict(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False,
                 use_dora=True),
}


def base_model(dtype=torch.float32):
    return transformers.AutoModelForCausalLM.from_pretrained(BASE, dtype=dtype).eval()


def lora_layers(model):
    """{module path in the base model: LoraLayer} of a PeftModel."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LoraLayer) and "default" in mod.r:
            out[name.removeprefix("base_model.model.")] = mod
    return out


def describe(model):
    mods = {}
    for name, layer in sorted(lora_layers(model).items()):
        a = layer.lora_A["default"].weight
        mods[name] = {"r": layer.r["default"], "alpha": layer.lora_alpha["default"],
                      "scaling": layer.scaling["default"], "in": a.shape[1],
                      "out": layer.lora_B["default"].weight.shape[0],
                      "dtype": str(a.dtype).removeprefix("torch."),
                      # the first values as fp32, read by torch (not by the C reader)
                      "A_first": a.detach().float().flatten()[:4].tolist(),
                      "B_first": layer.lora_B["default"].weight.detach().float().flatten()[:4].tolist()}
    return mods


def make(out_dir):
    os.chdir(ROOT)
    expected = {"peft_version": peft.__version__, "torch_version": torch.__version__,
                "transformers_version": transformers.__version__, "base": BASE, "adapters": {}}
    for name, kw in ADAPTERS.items():
        torch.manual_seed(SEED)
        bf16 = name == "rslora"
        model = base_model(torch.bfloat16 if bf16 else torch.float32)
        pm = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **kw),
                            autocast_adapter_dtype=not bf16)
        if name == "dora":  # a non-trivial magnitude vector; the file is only refused
            for layer in lora_layers(pm).values():
                layer.lora_magnitude_vector["default"].weight.data.mul_(1.5)
        cfg = pm.peft_config["default"]
        cfg.target_modules = sorted(cfg.target_modules)  # a set: sorted for stable files
        dest = os.path.join(out_dir, name)
        pm.save_pretrained(dest)
        os.remove(os.path.join(dest, "README.md"))  # PEFT's model card template, not needed
        if name != "dora":
            expected["adapters"][name] = {"modules": describe(pm)}
        print(f"wrote {dest}: {sorted(os.listdir(dest))}")
    path = os.path.join(out_dir, "expected.json")
    with open(path, "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}")
    logits(out_dir)


LOGIT_IDS = [1, 17, 42, 259, 100, 7, 200, 3, 64, 128, 5, 250, 33, 90, 11, 2]


PISSA_DELTA = ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"]


def pissa(out_dir, ids):
    """pissa/: a PiSSA adapter (r=4, lora_alpha=8, all seven projections, exact SVD)
    after a simulated training step (A, B moved by seeded noise), saved converted to a
    LoRA of the original base (path_initial_model_for_weight_conversion): rank 8,
    lora_alpha 16. Returns the tensors for logits.safetensors: PEFT's initial
    scaling·B0·A0 of two modules ("pissa_delta.<module>") and the logits of the trained
    model on the residual base ("pissa_trained"), which the converted adapter must
    reproduce on the original base."""
    import shutil
    import tempfile
    torch.manual_seed(SEED + 1)
    pm = get_peft_model(base_model(), LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                 target_modules=ALL, init_lora_weights="pissa"))
    out = {}
    for name, layer in lora_layers(pm).items():
        if name in PISSA_DELTA:
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            out["pissa_delta." + name] = (layer.scaling["default"] * b @ a).detach().float()
    tmp = tempfile.mkdtemp()
    init_dir = os.path.join(tmp, "init")
    pm.peft_config["default"].init_lora_weights = True  # PEFT's recipe for the initial copy
    pm.save_pretrained(init_dir)
    pm.peft_config["default"].init_lora_weights = "pissa"
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for layer in lora_layers(pm).values():
            for w in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                w.add_(0.05 * torch.randn(w.shape, generator=g))
        out["pissa_trained"] = pm.eval()(input_ids=ids).logits[0].float()
    dest = os.path.join(out_dir, "pissa")
    cfg = pm.peft_config["default"]
    cfg.target_modules = sorted(cfg.target_modules)  # a set: sorted for stable files
    pm.save_pretrained(dest, path_initial_model_for_weight_conversion=init_dir)
    os.remove(os.path.join(dest, "README.md"))
    shutil.rmtree(tmp)
    print(f"wrote {dest}: {sorted(os.listdir(dest))}")
    return out


def eva(out_dir):
    """eva/: an EVA adapter (r=4, all seven projections) initialised by PEFT's
    initialize_lora_eva_weights on 30 batches of 2 x 24 random ids, then B moved by
    seeded noise (a stand-in for training: EVA starts with B = 0, which would leave the
    logits at the base's); ranks from the redistribution, so rank_pattern and
    alpha_pattern are set and init_lora_weights is "eva"."""
    from peft import EvaConfig, initialize_lora_eva_weights
    g = torch.Generator().manual_seed(SEED + 3)
    batches = [{"input_ids": x, "attention_mask": torch.ones_like(x)}
               for x in (torch.randint(3, 259, (2, 24), generator=g) for _ in range(30))]
    pm = get_peft_model(base_model(), LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                 target_modules=ALL, init_lora_weights="eva",
                                                 eva_config=EvaConfig(rho=2.0, tau=0.99)),
                        low_cpu_mem_usage=True)
    with torch.no_grad():
        initialize_lora_eva_weights(pm, batches, show_progress_bar=False)
        for layer in lora_layers(pm).values():
            w = layer.lora_B["default"].weight
            w.add_(0.05 * torch.randn(w.shape, generator=g))
    dest = os.path.join(out_dir, "eva")
    cfg = pm.peft_config["default"]
    cfg.target_modules = sorted(cfg.target_modules)  # a set: sorted for stable files
    pm.save_pretrained(dest)
    os.remove(os.path.join(dest, "README.md"))
    print(f"wrote {dest}: {sorted(os.listdir(dest))}")


def logits(out_dir):
    """PEFT's logits with each adapter of out_dir, unmerged, on the fp32 base."""
    from safetensors.torch import save_file
    os.chdir(ROOT)
    ids = torch.tensor([LOGIT_IDS])
    out = {"ids": ids.float()}  # F32: small integers, exact
    out.update(pissa(out_dir, ids))
    eva(out_dir)
    with torch.no_grad():
        out["base"] = base_model()(input_ids=ids).logits[0].float()
        for name in ("lora", "rslora", "pissa", "eva"):
            pm, bad = load(os.path.join(out_dir, name))
            if bad:
                sys.exit(f"{name}: {bad}")
            out[name] = pm(input_ids=ids).logits[0].float()
            print(f"{name}: the adapter moves the logits by "
                  f"{(out[name] - out['base']).abs().max().item():.3g}")
    path = os.path.join(out_dir, "logits.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"peft_version": peft.__version__, "torch_version": torch.__version__})
    print(f"wrote {path}")


def load(adapter_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = PeftModel.from_pretrained(base_model(), adapter_dir).eval()
    bad = [str(w.message) for w in caught
           if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    return pm, bad


def check(got_dir, ref_dir):
    os.chdir(ROOT)
    got, got_warn = load(got_dir)
    ref, ref_warn = load(ref_dir)
    fails = [f"{got_dir}: warning: {w}" for w in got_warn]
    fails += [f"{ref_dir}: warning: {w}" for w in ref_warn]
    g, r = lora_layers(got), lora_layers(ref)
    if sorted(g) != sorted(r):
        fails.append(f"wrapped modules differ: only in {got_dir}: {sorted(set(g) - set(r))}, "
                     f"only in {ref_dir}: {sorted(set(r) - set(g))}")
    n_values = 0
    for name in sorted(set(g) & set(r)):
        for what in ("r", "lora_alpha", "scaling"):
            a, b = getattr(g[name], what)["default"], getattr(r[name], what)["default"]
            if a != b:
                fails.append(f"{name}: {what} {a} != {b}")
        for what in ("lora_A", "lora_B"):
            a = getattr(g[name], what)["default"].weight.detach().float()
            b = getattr(r[name], what)["default"].weight.detach().float()
            if a.shape != b.shape or not torch.equal(a, b):
                fails.append(f"{name}: {what} differs")
            n_values += a.numel()
    ids = torch.tensor([[1, 17, 42, 259, 100, 7, 200, 3]])
    with torch.no_grad():
        lg, lr = got(input_ids=ids).logits, ref(input_ids=ids).logits
        lb = base_model()(input_ids=ids).logits
    if not torch.equal(lg, lr):
        fails.append(f"logits differ: max |diff| {(lg - lr).abs().max().item():g}")
    if torch.equal(lg, lb):
        fails.append("the adapter does not change the logits (B all zero?)")
    for f in fails:
        print("FAIL:", f)
    print(f"check {got_dir} against {ref_dir}: {len(g)} modules, {n_values} values, "
          f"logits {'identical' if torch.equal(lg, lr) else 'DIFFER'} "
          f"(adapter moves them by {(lg - lb).abs().max().item():.3g}); "
          f"peft {peft.__version__}, torch {torch.__version__}: "
          f"{'OK' if not fails else f'{len(fails)} failures'}")
    return 1 if fails else 0


XD_ADAPTERS = {  # name: the `xdistill lora` options
    "xd_eva": ["--init", "eva", "--r", "4", "--alpha", "8", "--eva-batch", "2",
               "--eva-seq", "24"],
    "xd_pissa": ["--init", "pissa", "--r", "4", "--alpha", "8"],
    "xd_rslora": ["--init", "random", "--r", "4", "--alpha", "8", "--rslora",
                  "--targets", "q,v,down"],
}


def xd_written(cli, out_dir):
    import shutil
    import subprocess
    import tempfile
    from safetensors.torch import save_file
    os.chdir(ROOT)
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        for i in range(80):
            f.write(f"the cat sat on the mat number {i % 7} and then the dog ran to the "
                    f"hat {i % 5}.\n\n")
    data = os.path.join(tmp, "data.tok")
    subprocess.run([cli, "data", "prep", corpus, "--tokenizer", BASE + ".gguf", "-o", data,
                    "--doc-sep", "blank", "--val-frac", "0.1"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    expected = {"peft_version": peft.__version__, "torch_version": torch.__version__,
                "transformers_version": transformers.__version__, "base": BASE,
                "adapters": {}}
    ids = torch.tensor([LOGIT_IDS])
    out = {"ids": ids.float()}
    with torch.no_grad():
        out["base"] = base_model()(input_ids=ids).logits[0].float()
    fails = []
    for name, opts in XD_ADAPTERS.items():
        run = os.path.join(tmp, name)
        # xdistill trains on the GGUF copy of tiny-llama (same fp32 weights; it carries
        # the tokenizer), PEFT loads the HF directory
        subprocess.run([cli, "lora", BASE + ".gguf", "--data", data, "-o", run, "--steps", "12",
                        "--batch", "2", "--seq", "24", "--lr", "1e-2", "--seed", "7", "--threads", "1",
                        *opts], check=True, env=env, stdout=subprocess.DEVNULL)
        dest = os.path.join(out_dir, name)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(os.path.join(run, "adapter"), dest)
        pm, bad = load(dest)
        fails += [f"{name}: {w}" for w in bad]
        with open(os.path.join(dest, "adapter_config.json")) as f:
            cfg = json.load(f)
        wrapped = sorted(lora_layers(pm))
        with torch.no_grad():
            logits = pm(input_ids=ids).logits[0].float()
        moved = (logits - out["base"]).abs().max().item()
        if moved < 1e-3:
            fails.append(f"{name}: the adapter does not change PEFT's logits")
        out[name] = logits
        expected["adapters"][name] = {"modules": describe(pm),
                                      "init_lora_weights": cfg.get("init_lora_weights")}
        print(f"{name}: PEFT wraps {len(wrapped)} modules "
              f"(ranks {sorted(set(lora_layers(pm)[m].r['default'] for m in wrapped))}); "
              f"the adapter moves the logits by {moved:.3g}")
    shutil.rmtree(tmp)
    for f in fails:
        print("FAIL:", f)
    if fails:
        sys.exit(1)
    path = os.path.join(out_dir, "xd_expected.json")
    with open(path, "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")
    path = os.path.join(out_dir, "xd_logits.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"peft_version": peft.__version__, "torch_version": torch.__version__})
    print(f"wrote {path} and xd_expected.json")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--xd":
        out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "tests", "fixtures", "peft")
        sys.exit(xd_written(os.path.abspath(sys.argv[2]), os.path.abspath(out)))
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        sys.exit(check(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])))
    only_logits = len(sys.argv) > 1 and sys.argv[1] == "--logits"
    args = sys.argv[2:] if only_logits else sys.argv[1:]
    out = args[0] if args else os.path.join(ROOT, "tests", "fixtures", "peft")
    (logits if only_logits else make)(os.path.abspath(out))
