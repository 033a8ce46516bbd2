#!/usr/bin/env bash
# Fuzzing without dirtying the tree. libFuzzer writes every new input into the first corpus
# directory it is given, so a run gets a scratch directory first (fuzz/target/scratch/TARGET,
# ignored by git) and reads the checked-in corpus (fuzz/corpus/TARGET) second, without writing to
# it. When a run found inputs worth keeping, `merge` adds to the checked-in corpus only those that
# reach new coverage (libFuzzer's -merge=1), for review and commit.
#
#   scripts/fuzz.sh run TARGET [SECONDS]   fuzz TARGET for SECONDS (default 60)
#   scripts/fuzz.sh merge TARGET           merge the scratch corpus into fuzz/corpus/TARGET
#   scripts/fuzz.sh list                   the targets
#
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1. Crashes are written to fuzz/artifacts/TARGET/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

usage() {
  cat >&2 <<'EOF'
usage: scripts/fuzz.sh run TARGET [SECONDS]   fuzz TARGET for SECONDS (default 60)
       scripts/fuzz.sh merge TARGET           merge the scratch corpus into fuzz/corpus/TARGET
       scripts/fuzz.sh list                   the targets
EOF
  exit 2
}
targets() { ls fuzz_targets | sed 's/\.rs$//'; }

[ $# -ge 1 ] || usage
cmd=$1
if [ "$cmd" = list ]; then
  targets
  exit 0
fi
[ $# -ge 2 ] || usage
target=$2
if ! targets | grep -qx -- "$target"; then
  echo "fuzz.sh: no fuzz target named '$target' (one of: $(targets | tr '\n' ' '))" >&2
  exit 2
fi
scratch="target/scratch/$target"
mkdir -p "$scratch" "corpus/$target"
export RUSTC_BOOTSTRAP=1
case "$cmd" in
  run)
    seconds=${3:-60}
    if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
      echo "fuzz.sh: SECONDS must be a whole number of seconds, at least 1 (got '$seconds')" >&2
      exit 2
    fi
    exec cargo fuzz run -O "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1
    ;;
  merge)
    exec cargo fuzz run -O "$target" "corpus/$target" "$scratch" -- -merge=1
    ;;
  *) usage ;;
esac
