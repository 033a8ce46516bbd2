#!/usr/bin/env bash
# The kernel check: compiles, lints and links driver/ (kmode included) into a real ktmrm.sys on
# Linux with the genuine wdk-sys/wdk/wdk-panic crates, then inspects the PE. See README.md,
# "Checking the driver on Linux".
#
#   scripts/kernel-check.sh            everything (installs what it needs with apt when root)
#   KERNEL_CHECK_SKIP_INSTALL=1 ...    assume the packages are there
#
# What it builds, all under target/kernel-check/ (the committed tree and Cargo.lock are untouched):
#   wdk/          a WDK content root: mingw-w64's DDK headers plus scripts/kernel-check/include
#                 (declarations mingw-w64 lacks, each citing its documented prototype), and MSVC
#                 import libraries for ntoskrnl/hal/wmilib made from mingw-w64's
#   wdk-build/    wdk-build 0.6.0 from the package registry with
#                 scripts/kernel-check/wdk-build-0.6.0-linux.patch applied (Linux port only: no
#                 change to its bindgen settings, header list or link directives)
#   ws/           a copy of the workspace whose parent .cargo/config.toml patches wdk-build and
#                 points it at wdk/ (a parent config, so the `cargo metadata` wdk-build runs inside
#                 wdk-sys' build script sees the same patch)
#   ktmrm.sys, ktmrm-dev.sys (+ .map, .asm)   release and dev links, for inspection and emulation
#                 only: two WDK static-library routines are link-time stand-ins (stubs/)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC=$ROOT/scripts/kernel-check
OUT=$ROOT/target/kernel-check
TARGET=x86_64-pc-windows-msvc
WDK_VERSION=10.0.26100.0
LLVM=/usr/lib/llvm-16
MINGW_INC=/usr/share/mingw-w64/include
MINGW_LIB=/usr/x86_64-w64-mingw32/lib
unset CARGO_TARGET_DIR RUSTFLAGS CARGO_BUILD_TARGET
export CARGO_TARGET_DIR=$OUT/build CARGO_TERM_COLOR=never

step() { printf '\n-- kernel check: %s\n' "$*"; }
elapsed() { printf '   (%ss)\n' "$((SECONDS - $1))"; }

install_tools() {
  local need=()
  [ -f "$MINGW_INC/ddk/wdm.h" ] || need+=(mingw-w64-x86-64-dev)
  [ -f "$LLVM/lib/libclang.so" ] || need+=(libclang-16-dev)
  [ -d "$LLVM/lib/clang/16/include" ] || need+=(libclang-common-16-dev)
  [ -x "$LLVM/bin/clang" ] || need+=(clang-16)
  [ -x "$LLVM/bin/llvm-dlltool" ] || need+=(llvm-16)
  if [ ${#need[@]} -gt 0 ]; then
    [ "${KERNEL_CHECK_SKIP_INSTALL:-}" = 1 ] && { echo "missing packages: ${need[*]}"; exit 1; }
    step "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
}

# Include/<ver>/km/crt: mingw-w64's include/ (symlinks) minus intrin.h (clang's own is used, as
# with a real WDK) and setjmp.h (an MSVC-style one: mingw-w64's clashes with clang's intrin.h).
# Include/<ver>/km: mingw-w64's include/ddk, with wdm.h wrapped to append our supplement.
make_wdk_root() {
  local inc=$OUT/wdk/Include/$WDK_VERSION lib=$OUT/wdk/Lib/$WDK_VERSION/km/x64
  rm -rf "$OUT/wdk"
  mkdir -p "$inc/km/crt" "$inc/shared" "$lib" "$OUT/implib"
  for f in "$MINGW_INC"/*; do
    case ${f##*/} in intrin.h|setjmp.h|ddk) continue ;; esac
    ln -s "$f" "$inc/km/crt/${f##*/}"
  done
  cp "$KC/include/setjmp.h" "$inc/km/crt/setjmp.h"
  for f in "$MINGW_INC"/ddk/*.h; do
    [ "${f##*/}" = wdm.h ] || ln -s "$f" "$inc/km/${f##*/}"
  done
  sed "s|MINGW_DDK_WDM_H|\"$MINGW_INC/ddk/wdm.h\"|" "$KC/include/wdm.h" > "$inc/km/wdm.h"
  cp "$KC/include/ktmrm_wdm_supplement.h" "$inc/km/"

  # MSVC-style import libraries from mingw-w64's GNU ones: each .a's exports become a .def (a
  # symbol with a code thunk plus __imp_ is code; __imp_ alone is DATA), plus the ntoskrnl
  # exports mingw-w64 10 lacks (import-extras.def); llvm-dlltool writes the .lib lld-link reads.
  local n dll
  for n in ntoskrnl:ntoskrnl.exe hal:hal.dll wmilib:wmilib.sys; do
    dll=${n#*:}; n=${n%%:*}
    "$LLVM/bin/llvm-nm" "$MINGW_LIB/lib$n.a" 2>/dev/null | awk '$2=="T"||$2=="I"{print $3}' \
      | sort -u > "$OUT/implib/$n.syms"
    {
      echo "LIBRARY $dll"; echo "EXPORTS"
      grep '^__imp_' "$OUT/implib/$n.syms" | sed 's/^__imp_//' | while read -r s; do
        if grep -qxF "$s" "$OUT/implib/$n.syms"; then echo "  $s"; else echo "  $s DATA"; fi
      done
      [ "$n" = ntoskrnl ] && grep -v '^[;#]' "$KC/import-extras.def" | sed '/^$/d;s/^/  /'
    } > "$OUT/implib/$n.def"
    "$LLVM/bin/llvm-dlltool" -m i386:x86-64 -d "$OUT/implib/$n.def" -l "$lib/$n.lib"
  done
  # BufferOverflowFastFailK.lib (/GS support for C code) has no counterpart; Rust code does not
  # use it, so an empty archive stands in for the name wdk-build links.
  "$LLVM/bin/llvm-ar" rcs "$lib/BufferOverflowFastFailK.lib"
  # wdmsec.lib: WdmlibIoCreateDeviceSecure is static code in the WDK; the stand-in in stubs/
  # creates the device and ignores the SDDL (for inspection and emulation, never shipped).
  # __chkstk: likewise supplied by the WDK's kernel libraries.
  "$LLVM/bin/clang" --target=$TARGET -O2 -ffreestanding -fno-stack-protector -c \
    "$KC/stubs/wdmsec.c" -o "$OUT/implib/wdmsec.obj"
  "$LLVM/bin/clang" --target=$TARGET -c "$KC/stubs/chkstk.S" -o "$OUT/implib/chkstk.obj"
  "$LLVM/bin/llvm-ar" rcs "$lib/wdmsec.lib" "$OUT/implib/wdmsec.obj"
  "$LLVM/bin/llvm-ar" rcs "$OUT/implib/chkstk-standin.lib" "$OUT/implib/chkstk.obj"
}

# wdk-build 0.6.0 refuses to build off Windows; the patch is the smallest Linux port.
port_wdk_build() {
  (cd "$ROOT" && cargo fetch --locked --target "$TARGET" >/dev/null)
  local crate
  crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/wdk-build-0.6.0.crate | head -n 1)
  rm -rf "$OUT/wdk-build" "$OUT/wdk-build-0.6.0"
  tar -xzf "$crate" -C "$OUT"
  mv "$OUT/wdk-build-0.6.0" "$OUT/wdk-build"
  (cd "$OUT/wdk-build" && patch -s -p1 < "$KC/wdk-build-0.6.0-linux.patch")
}

# The workspace as it is on disk (uncommitted edits included), with mtimes kept so cargo's
# fingerprints survive the copy.
copy_workspace() {
  rm -rf "$OUT/ws"
  mkdir -p "$OUT/ws" "$OUT/.cargo"
  (cd "$ROOT" && tar --exclude=./target --exclude=./.git --exclude=./fuzz -cf - .) \
    | tar -xf - -C "$OUT/ws"
  cat > "$OUT/.cargo/config.toml" <<EOF
# Generated by scripts/kernel-check.sh.
[patch.crates-io]
wdk-build = { path = "$OUT/wdk-build" }

[env]
WDKContentRoot = "$OUT/wdk"
LIBCLANG_PATH = "$LLVM/lib"
# libclang cannot find its resource directory through Debian's symlinks, and wdk-build turns off
# bindgen's include-path detection; -fgnuc-version: mingw-w64's headers need __GNUC__ while clang
# still parses as MSVC for the target.
BINDGEN_EXTRA_CLANG_ARGS = "-resource-dir=$LLVM/lib/clang/16 -fgnuc-version=4.2.1"
EOF
}

# The link arguments are read from wdk-build's own source: the WDM arm of
# configure_binary_build plus the arguments common to every driver model.
wdm_link_args() {
  local src=$OUT/wdk-build/src/lib.rs
  {
    awk '/DriverConfig::Wdm => \{/,/DriverConfig::Kmdf/' "$src"
    awk '/Emit linker arguments common to all configs/,/emit_cfg_settings/' "$src"
  } | grep -o 'rustc-cdylib-link-arg=[^"]*' | sed 's/^rustc-cdylib-link-arg=//'
}

link_driver() { # $1: release|dev
  local profile=$1 pflag=() dir=debug suffix=-dev args=() a
  [ "$profile" = release ] && { pflag=(--release); dir=release; suffix=; }
  while read -r a; do args+=(-C "link-arg=$a"); done < <(wdm_link_args)
  [ ${#args[@]} -ge 20 ] || { echo "could not read wdk-build's WDM link arguments"; exit 1; }
  (cd "$OUT/ws" && cargo rustc -q -p ktmrm --lib --target "$TARGET" "${pflag[@]}" -- \
    -C linker=rust-lld -C linker-flavor=lld-link \
    -L "native=$OUT/wdk/Lib/$WDK_VERSION/km/x64" "${args[@]}" \
    -C "link-arg=$OUT/implib/chkstk-standin.lib")
  cp "$CARGO_TARGET_DIR/$TARGET/$dir/ktmrm.dll" "$OUT/ktmrm$suffix.sys"
  cp "$CARGO_TARGET_DIR/$TARGET/$dir/deps/ktmrm.map" "$OUT/ktmrm$suffix.map"
  "$LLVM/bin/llvm-objdump" -d --no-show-raw-insn -M intel "$OUT/ktmrm$suffix.sys" \
    > "$OUT/ktmrm$suffix.asm"
}

main() {
  local t
  mkdir -p "$OUT"
  t=$SECONDS; step "tools"; install_tools; elapsed $t
  t=$SECONDS; step "WDK content root and import libraries"; make_wdk_root; elapsed $t
  t=$SECONDS; step "wdk-build Linux port"; port_wdk_build; copy_workspace; elapsed $t
  t=$SECONDS; step "cargo check -p ktmrm --target $TARGET"
  (cd "$OUT/ws" && cargo check -q -p ktmrm --target "$TARGET"); elapsed $t
  t=$SECONDS; step "cargo clippy -p ktmrm --target $TARGET --all-targets -- -D warnings"
  (cd "$OUT/ws" && cargo clippy -q -p ktmrm --target "$TARGET" --all-targets -- -D warnings)
  elapsed $t
  t=$SECONDS; step "link release (ktmrm.sys)"; link_driver release; elapsed $t
  t=$SECONDS; step "link dev (ktmrm-dev.sys)"; link_driver dev; elapsed $t
  step "inspect"
  python3 "$KC/inspect_pe.py" --min-windows "$KC/min-windows.tsv" --root "$ROOT" \
    "$OUT/ktmrm.sys" "$OUT/ktmrm-dev.sys"
}

# Sourcing the script (for a quicker edit-link loop) defines the steps without running them.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
