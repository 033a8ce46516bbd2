#!/usr/bin/env bash
# No-panic evidence for the kernel-path crates (ktmrm-core, ktmrm-proto): builds
# crates/panic-probe, which instantiates the engine as the driver does, in the release profile
# (panic = abort, LTO) with a panic handler that calls an undefined symbol. Any panic path the
# optimizer could not prove unreachable keeps a reference to that symbol. Prints the count and,
# if there are any, the functions that still call into the panic machinery; exits 1 then.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p ktmrm-panic-probe --quiet
lib=target/release/libktmrm_panic_probe.a
refs=$(nm "$lib" 2>/dev/null | grep -c 'U ktmrm_panic_path_reached' || true)
echo "panic paths left in the release object of ktmrm-core + ktmrm-proto: $refs"
if [ "$refs" != "0" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && ar x "$OLDPWD/$lib")
  for o in "$tmp"/ktmrm_panic_probe*.o; do
    objdump -dr --no-show-raw-insn -C "$o"
  done | awk '/^[0-9a-f]+ <.*>:$/{f=$0} /R_X86_64_(PLT32|GOTPCREL)/ && /(panic|grow_one|handle_error|capacity_overflow|_fail)/{print f " -> " $NF}' \
       | sed 's/^[0-9a-f]* //' | sort | uniq -c
  rm -rf "$tmp"
  exit 1
fi
