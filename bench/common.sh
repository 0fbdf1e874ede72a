# The benchmarks' shared prologue (sourced, not run): the repository root as the working
# directory, the environment every benchmark reads, and the checks for what it needs.
#   THREADS (2), XD_TEACHER -> MODEL (the SmolLM2-135M-Instruct GGUF that make teacher
#   fetches), XD_REF_PY -> PY (tests/ref/setup.sh's Python), BUILD (build)
# The sourcing script sets BENCH (its name in messages) first.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="${THREADS:-2}"
MODEL="${XD_TEACHER:-$HOME/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PY="${XD_REF_PY:-$HOME/xd-ref/bin/python}"
BUILD="${BUILD:-build}"

# need_teacher: exits unless MODEL is a file
need_teacher() {
    [ -f "$MODEL" ] || { echo "$BENCH: no teacher at $MODEL (make teacher)" >&2; exit 1; }
}

# need_py MODULE...: exits unless PY imports every MODULE
need_py() {
    local mods
    mods="$(IFS=,; echo "$*")"
    "$PY" -c "import $mods" 2>/dev/null ||
        { echo "$BENCH: $PY cannot import $*; run tests/ref/setup.sh or set XD_REF_PY" >&2; exit 1; }
}
