#!/usr/bin/env bash
# Installs the Debian packages xdistill builds and tests with, if missing.
set -euo pipefail
# libdnnl-dev (oneDNN) is optional: it enables the bf16 compute path (--bf16).
# bible-kjv, bible-kjv-text and wordnet-base are the texts of the built-in task
# suite and the demo's training data (xdistill tasks make, scripts/kjv-corpus.sh);
# chromium renders the HTML report in its test (headless screenshot). Open MPI
# (libopenmpi-dev, openmpi-bin) runs the ranks of `mpirun -np N xdistill ...`.
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libpcre2-dev libjansson-dev
      libdnnl-dev python3 python3-pip unzip bible-kjv bible-kjv-text wordnet-base chromium
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv); accept them if they run
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  missing=("${missing[@]/python3-pip}"); missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  echo "xdistill: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
