#!/usr/bin/env bash
# Creates the Python environment the fixture scripts in tests/ref/ use.
# Only needed to regenerate fixtures; the C tests do not use Python.
set -euo pipefail
venv="${XD_REF_VENV:-$HOME/xd-ref}"
python3 -m venv "$venv"
# torch from PyPI without its CUDA wheels: the references run on the CPU
"$venv/bin/pip" install -q --no-deps torch
"$venv/bin/pip" install -q filelock sympy networkx jinja2 fsspec typing_extensions numpy \
    transformers gguf safetensors tokenizers
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON" "$venv/bin/pip" install -q llama-cpp-python
echo "reference environment ready: $venv"
