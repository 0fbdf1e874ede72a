#!/bin/sh
# The library exports only its own names (issue 12). Usage:
#   check_exports.sh libxdistill.a libxdistill.so include/xdistill.h
# 1. every global symbol defined in the static archive starts with xd_;
# 2. every symbol libxdistill.so exports starts with xd_ and is declared in the
#    public header (the library is built with hidden visibility);
# 3. internal functions (the GGUF reader, the trainer) are not exported.
set -u
a=$1 so=$2 hdr=$3
fail=0 pass=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# AddressSanitizer adds an ODR indicator per global variable, named after it
# (__odr_asan.NAME with gcc, __odr_asan_gen_NAME with clang): judged by NAME
odr='s/^__odr_asan\(\.\|_gen_\)//'
static_syms=$(nm -g --defined-only "$a" | awk 'NF == 3 { print $3 }' | sed "$odr" | sort -u)
[ -n "$static_syms" ] && ok || bad "no global symbols in $a"
foreign=$(printf '%s\n' "$static_syms" | grep -v '^xd_' || true)
[ -z "$foreign" ] && ok || bad "$a defines global symbols without the xd_ prefix:" $foreign

dyn=$(nm -D --defined-only "$so" | awk 'NF == 3 { print $3 }' | sed "$odr" | sort -u)
printf '%s\n' "$dyn" | grep -qx xd_last_error && ok || bad "$so does not export xd_last_error"
foreign=$(printf '%s\n' "$dyn" | grep -v '^xd_' || true)
[ -z "$foreign" ] && ok || bad "$so exports symbols without the xd_ prefix:" $foreign
declared=$(grep -oE '\bxd_[A-Za-z0-9_]+[[:space:]]*\(' "$hdr" | sed 's/[[:space:]]*($//' | sort -u)
undeclared=$(printf '%s\n' "$dyn" | grep -vxF "$declared" || true)
[ -z "$undeclared" ] && ok || bad "$so exports functions not declared in $hdr:" $undeclared
for internal in xd_gguf_open xd_gguf_find_tensor xd_st_open xd_err; do
    printf '%s\n' "$static_syms" | grep -qx "$internal" || { bad "$internal is not in $a (renamed? update this list)"; continue; }
    printf '%s\n' "$dyn" | grep -qx "$internal" && bad "$so exports the internal $internal" || ok
done
echo "$(printf '%s\n' "$static_syms" | wc -l) global symbols in the archive, $(printf '%s\n' "$dyn" | wc -l) exported from the shared library"
echo "check_exports: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
