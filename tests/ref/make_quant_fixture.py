#!/usr/bin/env python3
"""Reference for the GGUF writer's quantisers (kernels/quantize.c), made with gguf-py
(llama.cpp's Python package, whose quants.py reproduces ggml's reference quantisers bit
for bit), independent of our C code.

  tests/fixtures/quant_write_ref.gguf
      for three weights of tests/fixtures/tiny-kquant.gguf (token_embd, blk.0.attn_q,
      blk.0.ffn_gate) and every type gguf-py quantises (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1),
      the tensor "<TYPE>/<name>": the weight as gguf-py dequantises it from that file
      (in the file's row order, q rows still permuted as llama.cpp stores them),
      quantised by gguf-py. `xdistill quantize` of tiny-kquant.gguf must write the same
      bytes (test_gguf_write).
      For the K-quants gguf-py has no quantiser: "<TYPE>/<name>" of blk.0/1.ffn_down (rows
      of 256) in Q6_K, Q4_K and Q5_K are ggml's own C quantize_row_q6_K_ref / _q4_K_ref /
      _q5_K_ref (libggml-base of llama-cpp-python, called with ctypes), which
      xd_quantize_row must equal.

Run with the reference venv: ~/xd-ref/bin/python tests/ref/make_quant_fixture.py
"""
import os

import ctypes

import llama_cpp
import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFWriter, quants

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
NAMES = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_gate.weight"]
TYPES = [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]

r = GGUFReader(os.path.join(ROOT, "tiny-kquant.gguf"))
w = GGUFWriter(os.path.join(ROOT, "quant_write_ref.gguf"), "llama")
for name in NAMES:
    t = next(t for t in r.tensors if t.name == name)
    rows, cols = int(t.shape[1]), int(t.shape[0])
    x = quants.dequantize(t.data, t.tensor_type).reshape(rows, cols).astype(np.float32)
    for q in TYPES:
        b = quants.quantize(x, q)
        w.add_tensor(f"{q.name}/{name}", b, raw_shape=b.shape, raw_dtype=q)
        print(f"{q.name}/{name}: {rows} x {cols} -> {b.nbytes} bytes")
GGML = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
for name in ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]:
    t = next(t for t in r.tensors if t.name == name)
    rows, cols = int(t.shape[1]), int(t.shape[0])
    x = np.ascontiguousarray(quants.dequantize(t.data, t.tensor_type).reshape(rows, cols), dtype=np.float32)
    for q in [T.Q6_K, T.Q4_K, T.Q5_K]:
        block, nbytes = quants.GGML_QUANT_SIZES[q]
        fn = getattr(GGML, "quantize_row_" + q.name.lower().replace("_k", "_K") + "_ref")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        b = np.zeros((rows, cols // block * nbytes), dtype=np.uint8)
        fn(x.ctypes.data, b.ctypes.data, x.size)
        w.add_tensor(f"{q.name}/{name}", b, raw_shape=b.shape, raw_dtype=q)
        print(f"{q.name}/{name}: {rows} x {cols} -> {b.nbytes} bytes (ggml C)")
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
