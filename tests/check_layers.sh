#!/bin/sh
# The library's lower layers include nothing from the layers above them:
# src/core only core, src/kernels only core and kernels, src/io only core and
# io (docs/design.md, "Layout and build"). Headers included as "DIR/x.h" or
# "../DIR/x.h" count. Prints each offending line; exits 1 when there is one.
#   usage: tests/check_layers.sh [SOURCE_DIR]   (registered in ctest as layers)
set -u
root=${1:-$(dirname "$0")/..}
cd "$root/src" || { echo "check_layers: cannot enter $root/src" >&2; exit 2; }
bad=0
check() { # DIR ALLOWED-DIRS...
    dir=$1; shift
    allowed=$(printf '%s|' "$@"); allowed=${allowed%|}
    hits=$(grep -nE '#include "(\.\./)?(core|kernels|io|model|train|eval|cli)/' "$dir"/*.c "$dir"/*.h |
           grep -vE "#include \"(\.\./)?($allowed)/" || true)
    if [ -n "$hits" ]; then echo "$hits"; bad=1; fi
}
check core core
check kernels core kernels
check io core io
if [ "$bad" -ne 0 ]; then
    echo "check_layers: the lines above include a header of a higher layer" >&2
    exit 1
fi
echo "check_layers: core, kernels and io include no higher layer"
