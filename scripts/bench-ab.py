#!/usr/bin/env python3
"""A/B the in-run ratios of two ktmrm-test builds: runs `A B A B …` (interleaved, so the
machine's drift lands on both), reads each run's `--json` output, and prints every ratio's
median (min-max) for A and for B and B's median over A's.

    scripts/bench-ab.py --a OLD/ktmrm-test --b NEW/ktmrm-test --runs 5 -- --sim bench
    scripts/bench-ab.py --a OLD --b NEW --runs 5 -- --sim bench --durable

Everything after `--` is passed to both binaries (`--json` is added). Standard library only.

Each run uses its own copy of each binary (`--copies`, default one per run): on the 2-core VM
of the README's figures, byte-identical copies of one binary differed by up to 20% in the
engine's 1-put transaction (560-674 ns across five copies, each steady from run to run), as
the page cache placed their code at different physical addresses; one file per side would
fold that into the comparison.
A run that exits non-zero because a target was missed still counts; one whose output is not
JSON stops the comparison.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def run(binary, args):
    out = subprocess.run([binary, *args, "--json"], capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        sys.exit(f"{binary} {' '.join(args)}: exit {out.returncode}, no JSON:\n{out.stderr[-2000:]}")


def spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="baseline ktmrm-test binary")
    p.add_argument("--b", required=True, help="candidate ktmrm-test binary")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--copies", type=int, default=0, help="copies of each binary (0: one per run)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the bench arguments")
    ns = p.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    ratios = {"A": {}, "B": {}}
    copies = ns.copies or ns.runs
    scratch = tempfile.mkdtemp(prefix="bench-ab-")
    files = {}
    for side, binary in (("A", ns.a), ("B", ns.b)):
        files[side] = []
        for k in range(copies):
            path = os.path.join(scratch, f"{side}{k}")
            shutil.copy2(binary, path)
            files[side].append(path)
    for i in range(ns.runs):
        for side in ("A", "B"):
            binary = files[side][i % copies]
            for name, value in run(binary, args).get("ratios", {}).items():
                ratios[side].setdefault(name, []).append(value)
            print(f"run {i + 1}/{ns.runs} {side} done", file=sys.stderr)
    print(f"{'ratio':<36} {'A: median (min-max)':<26} {'B: median (min-max)':<26} B/A")
    for name in sorted(set(ratios["A"]) | set(ratios["B"])):
        a, b = ratios["A"].get(name, []), ratios["B"].get(name, [])
        if not a or not b:
            print(f"{name:<36} only in {'A' if a else 'B'}")
            continue
        rel = statistics.median(b) / statistics.median(a)
        print(f"{name:<36} {spread(a):<26} {spread(b):<26} {rel:.3f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
