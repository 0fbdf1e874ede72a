#!/usr/bin/env python3
"""ggml's own block dot products, for kernels/quant.c (test_quant_dot), made with the libggml
that llama-cpp-python ships (libggml-cpu: ggml_get_type_traits_cpu(type)->from_float and
->vec_dot, the kernels llama.cpp runs on this CPU), independent of our C code.

  tests/fixtures/ggml_dot.gguf   metadata only, per weight type T of Q4_0, Q4_1, Q5_0, Q5_1,
                                 Q8_0, Q4_K, Q5_K, Q6_K (4 rows of 512 columns):
      T.w    uint8[]   random weight blocks (codes random, fp16 scales in ±0.5)
      T.x    float32[] the activation (normal, 512 values)
      T.a    uint8[]   ggml's from_float of x into T's vec_dot_type (Q8_0, Q8_1 or Q8_K)
      T.dot  float32[] ggml's vec_dot of each weight row with a
      T.act  uint32    ggml's vec_dot_type id

Run with the reference venv: ~/xd-ref/bin/python tests/ref/make_ggml_dot_fixture.py
"""
import ctypes
import os

import gguf
import llama_cpp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "ggml_dot.gguf")
LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ctypes.CDLL(os.path.join(LIB, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
CPU = ctypes.CDLL(os.path.join(LIB, "libggml-cpu.so"))

FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_int)


class Traits(ctypes.Structure):  # struct ggml_type_traits_cpu (ggml-cpu.h)
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


CPU.ggml_cpu_init.restype = None
CPU.ggml_cpu_init()
CPU.ggml_get_type_traits_cpu.restype = ctypes.POINTER(Traits)
CPU.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]

F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
              "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
ROWS, COLS = 4, 512
rng = np.random.default_rng(2024)
w = gguf.GGUFWriter(OUT, "ggml_dot")
w.add_string("ggml_dot.source", "llama-cpp-python %s libggml-cpu" % llama_cpp.__version__)
for name, fields in F16_FIELDS.items():
    qt = gguf.GGMLQuantizationType[name]
    block, nbytes = gguf.GGML_QUANT_SIZES[qt]
    nb = COLS // block
    raw = bytearray(rng.integers(0, 256, size=ROWS * nb * nbytes, dtype=np.uint8).tobytes())
    for b in range(ROWS * nb):
        for off in fields:
            h = np.float16(rng.uniform(-0.5, 0.5)).view(np.uint16)
            raw[b * nbytes + off: b * nbytes + off + 2] = int(h).to_bytes(2, "little")
    x = rng.normal(size=COLS).astype(np.float32)
    t = CPU.ggml_get_type_traits_cpu(int(qt)).contents
    act = t.vec_dot_type
    # ggml's block_q8_0 / block_q8_1 (d, s as fp16) / block_q8_K; gguf-py still lists Q8_1
    # with fp32 d and s (40 bytes)
    ablock, abytes = {8: (32, 34), 9: (32, 36), 15: (256, 292)}[act]
    a = np.zeros(COLS // ablock * abytes, dtype=np.uint8)
    FROM_FLOAT(CPU.ggml_get_type_traits_cpu(act).contents.from_float)(x.ctypes.data, a.ctypes.data, COLS)
    dots = []
    wb = np.frombuffer(bytes(raw), dtype=np.uint8)
    rb = nb * nbytes
    for r in range(ROWS):
        s = ctypes.c_float(0)
        row = np.ascontiguousarray(wb[r * rb:(r + 1) * rb])
        VEC_DOT(t.vec_dot)(COLS, ctypes.byref(s), 0, row.ctypes.data, 0, a.ctypes.data, 0, 1)
        dots.append(s.value)
    V = gguf.GGUFValueType
    w.add_key_value(f"{name}.w", [int(v) for v in wb], V.ARRAY, V.UINT8)
    w.add_key_value(f"{name}.x", [float(v) for v in x], V.ARRAY, V.FLOAT32)
    w.add_key_value(f"{name}.a", [int(v) for v in a], V.ARRAY, V.UINT8)
    w.add_key_value(f"{name}.dot", dots, V.ARRAY, V.FLOAT32)
    w.add_uint32(f"{name}.act", act)
    print(name, "act", gguf.GGMLQuantizationType(act).name, "dots", ["%.6g" % d for d in dots])
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
