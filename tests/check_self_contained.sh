#!/bin/sh
# The repository is self-contained: no file points to a document or a path outside it.
# The design is docs/design.md; references to the original specification's file (the upper
# case word, ".md" or a section sign after it) or to a "shared" directory beside the
# checkout fail this check. bench/RESULTS.md (historical text) is not checked.
#
# usage: tests/check_self_contained.sh [SOURCE_DIR]   (registered in ctest as self_contained)
# Prints every offending line and exits 1; exits 0 when there is none.
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || { echo "check_self_contained: cannot enter $root" >&2; exit 2; }

# The patterns are spelled so that this file does not match them itself.
w='DESIG''N'
pat="(^|[^A-Za-z0-9_])${w}([^A-Za-z0-9_]|\$)|\\.\\./shared|/work/share[d]|shared/${w}"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked files and new files that are not ignored; binary files skipped
    hits=$(git grep -n -I -E --untracked -e "$pat" -- . ':(exclude)bench/RESULTS.md')
else
    # not a git checkout (a source archive): every text file but build trees
    hits=$(grep -rn -I -E --exclude-dir=.git --exclude-dir='build*' --exclude-dir=.venv \
           --exclude=RESULTS.md -e "$pat" . | sed 's|^\./||')
fi

if [ -n "$hits" ]; then
    echo "$hits"
    echo "check_self_contained: the lines above point outside the repository;" \
         "cite docs/design.md (and its section heading) instead" >&2
    exit 1
fi
echo "check_self_contained: no reference to files outside the repository"
exit 0
