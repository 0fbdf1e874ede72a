#!/usr/bin/env bash
# Writes the King James Bible (Debian packages bible-kjv + bible-kjv-text) as
# plain text to $1: one chapter per paragraph (chapters separated by a blank
# line, verse references removed), ~4.3 MB. Installs the packages if missing.
set -euo pipefail
out="${1:?usage: scripts/kjv-corpus.sh OUT.txt}"
if ! command -v bible >/dev/null || [ ! -f /usr/lib/bible.data ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bible-kjv bible-kjv-text >/dev/null
fi
bible -f gen1:1-rev22:21 </dev/null | awk '
  /^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ / {
    ref = $1; sub(/:[0-9]+$/, "", ref)          # book + chapter
    if (ref != prev && NR > 1) print ""
    prev = ref
    sub(/^[^ ]+ /, "")
    print
  }' > "$out.tmp"
mv "$out.tmp" "$out"
