#!/usr/bin/env bash
# Creates the Python environment the fixture scripts in tests/ref/ use.
# Only needed to regenerate fixtures; the C tests do not use Python.
set -euo pipefail
venv="${XD_REF_VENV:-$HOME/xd-ref}"
python3 -m venv "$venv"
# torch from PyPI without the bulk of its CUDA wheels: the references run on
# the CPU, but `import torch` still needs these few shared libraries
"$venv/bin/pip" install -q --no-deps torch nvidia-cufile nvidia-cusparselt-cu13==0.8.1 \
    nvidia-nvshmem-cu13==3.7.2 nvidia-nccl-cu13==2.30.7
"$venv/bin/pip" install -q filelock sympy networkx jinja2 fsspec typing_extensions numpy \
    transformers gguf safetensors tokenizers accelerate peft
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON" "$venv/bin/pip" install -q llama-cpp-python
echo "reference environment ready: $venv"
