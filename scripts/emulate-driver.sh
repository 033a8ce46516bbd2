#!/usr/bin/env bash
# Runs the built ktmrm.sys (release and dev) in an emulated Windows kernel: DriverEntry, IRPs,
# KTM notifications and DriverUnload, with Verifier-style checks, and replays every case on the
# simulated device (`ktmrm-test --sim replay`), which must answer byte for byte the same.
#
#   scripts/emulate-driver.sh [CASE ...]
#
# Needs: python3 (with venv), and the two images from scripts/kernel-check.sh in
# target/kernel-check/ (built by it when missing; KTMRM_SYS / KTMRM_DEV_SYS name other files).
# Installs the pinned Python packages of tests/emulated/requirements.txt into
# target/emulated-venv. The last line is `emulated driver: N passed, N failed`; the exit status
# is 0 only when every case passed on both builds.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")/.."
root=$PWD
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$root/target/emulated-venv"
req="$root/tests/emulated/requirements.txt"

say() { printf '%s\n' "$*" >&2; }

# 1. The pinned virtual environment (rebuilt when requirements.txt changes).
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "emulate-driver: installing $req into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    command -v apt-get >/dev/null && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

# 2. The images.
release="${KTMRM_SYS:-$root/target/kernel-check/ktmrm.sys}"
dev="${KTMRM_DEV_SYS:-$root/target/kernel-check/ktmrm-dev.sys}"
if [ ! -f "$release" ] || [ ! -f "$dev" ]; then
  if [ -x scripts/kernel-check.sh ] || [ -f scripts/kernel-check.sh ]; then
    say "emulate-driver: building the images with scripts/kernel-check.sh"
    bash scripts/kernel-check.sh >&2
  fi
fi
for f in "$release" "$dev"; do
  [ -f "$f" ] || { say "emulate-driver: $f is missing (run scripts/kernel-check.sh)"; exit 1; }
done

# 3. The simulated device for the differential replay.
cargo build --quiet --locked -p usermode-test >&2
replay="$target/debug/ktmrm-test"

# 4. Both builds, side by side (one process each), then their reports in order.
passed=0 failed=0 known=0
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
for pair in "release:$release" "dev:$dev"; do
  label="${pair%%:*}" sys="${pair#*:}"
  "$venv/bin/python" tests/emulated/run.py --sys "$sys" --label "$label" --replay "$replay" "$@" \
    > "$logs/$label" 2>&1 &
done
wait || true
for label in release dev; do
  cat "$logs/$label"
  line="$(grep -E "^$label: [0-9]+ passed, [0-9]+ failed" "$logs/$label" | tail -n1 || true)"
  if [ -z "$line" ]; then
    say "emulate-driver: the $label run did not finish"
    failed=$((failed + 1))
    continue
  fi
  p="$(sed -E 's/^[^:]+: ([0-9]+) passed.*/\1/' <<<"$line")"
  f="$(sed -E 's/^[^:]+: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")"
  d="$(sed -E 's/.* ([0-9]+) known driver defect.*/\1/' <<<"$line")"
  passed=$((passed + p)) failed=$((failed + f)) known=$((known + d))
done
if [ "$known" -gt 0 ]; then
  echo "emulated driver: $known case(s) still show a known driver defect (listed above as 'known')"
fi
echo "emulated driver: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
