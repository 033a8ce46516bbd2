#!/usr/bin/env python3
"""Runs the emulated-driver cases against one ktmrm.sys:

    run.py --sys target/kernel-check/ktmrm.sys --label release [--replay BIN] [CASE ...]

Each case boots the image in the emulated kernel (kernel.py), runs DriverEntry, the case, and
DriverUnload, and fails on any Verifier-style violation, anything left behind, or a request
whose answer differs from the simulated device's (`BIN --sim replay`, byte for byte). Prints a
line per case and ends with `LABEL: N passed, N failed`; exit status 0 only when all pass."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases  # noqa: E402
import kernel  # noqa: E402
import wdm  # noqa: E402
from app import App, CheckFailed, name_of  # noqa: E402


class Run:
    """One case's boots: each is finished (unloaded, then checked for leftovers)."""

    def __init__(self, sys_path, verbose):
        self.sys_path = sys_path
        self.verbose = verbose
        self.failures = []
        self.kernels = []
        self.depth = {}
        self.booted = False  # DriverEntry succeeded at least once

    def boot(self, params=None, files=None, entry=True, hide=()):
        log = (lambda s: print("      " + s)) if self.verbose else None
        k = kernel.Kernel(self.sys_path, parameters=params, log=log, files=files, hide=hide)
        k.finished = False
        self.kernels.append(k)
        if k.unknown_imports:
            self.failures.append("imports this emulated kernel does not provide: %s"
                                 % ", ".join(k.unknown_imports))
        if entry:
            st = k.driver_entry()
            if st != wdm.STATUS_SUCCESS:
                raise CheckFailed("DriverEntry returned %s" % name_of(st))
            k.io.finish_driver_entry()
            self.booted = True
        return k

    def finish(self, k, unload=True):
        if k.finished:
            return
        k.finished = True
        if unload and not k.crashed:
            try:
                k.unload()
            except kernel.Fatal as e:
                self.failures.append("DriverUnload: %s" % e)
        self.failures.extend(k.violations)
        if not k.crashed:
            self.failures.extend(k.leftovers())
        for name, used in k.max_depth.items():
            entry = name.split("(")[0]
            self.depth[entry] = max(self.depth.get(entry, 0), used)


def replay(binary, trace):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(trace)
    try:
        out = subprocess.run([binary, "--sim", "replay", f.name], capture_output=True, text=True,
                             timeout=120)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        return None, out.stderr.strip() or out.stdout.strip()
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], None


def differences(emulated, simulated):
    out = []
    for i, (a, b) in enumerate(zip(emulated, simulated)):
        if a != b:
            out.append("step %d: driver %s, simulated device %s" % (i + 1, a, b))
    if len(emulated) != len(simulated):
        out.append("%d steps against %d" % (len(emulated), len(simulated)))
    return out


def run_case(c, sys_path, replay_bin, verbose):
    run = Run(sys_path, verbose)
    app = None
    try:
        k = run.boot(c["params"], hide=c["hide"]) if c["boot"] else None
        app = App(k) if k else None
        c["fn"](k, app, run)
    except CheckFailed as e:
        run.failures.append(str(e))
    except kernel.Fatal as e:
        run.failures.append("fatal: %s" % e)
    except Exception as e:  # noqa: BLE001 - the driver gave the case something it cannot read
        run.failures.append("case stopped: %s: %s" % (type(e).__name__, e))
    if app is not None and app.fo is not None and not app.k.crashed:
        try:  # a case that stopped half-way: close its handle, as process exit would
            app.close()
        except kernel.Fatal as e:
            run.failures.append("fatal while closing the device: %s" % e)
    for k in run.kernels:
        run.finish(k)
    if c["diff"] and app is not None and app.steps and not run.failures:
        if replay_bin is None:
            run.failures.append("no ktmrm-test binary for the differential replay")
        else:
            sim, err = replay(replay_bin, app.trace())
            if err:
                run.failures.append("replay on the simulated device failed: %s" % err)
            else:
                run.failures.extend(differences(app.answers, sim))
    return run, (len(app.steps) if app else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sys", required=True)
    ap.add_argument("--label", default="driver")
    ap.add_argument("--replay", help="ktmrm-test binary for the differential check")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    chosen = [c for c in cases.CASES if not a.names or c["name"] in a.names]
    passed = failed = known = 0
    depth = {}
    for c in chosen:
        t = time.time()
        run, steps = run_case(c, a.sys, a.replay, a.verbose)
        for e, d in run.depth.items():
            depth[e] = max(depth.get(e, 0), d)
        took = "%.1f s" % (time.time() - t)
        diffed = ", %d steps replayed" % steps if c["diff"] and steps and not run.failures else ""
        if c["xfail"] and run.failures and run.booted:
            known += 1
            print("known  %-8s %-36s (%s) known defect still present: %s"
                  % (a.label, c["name"], took, c["xfail"]))
            for f in run.failures:
                print("         - " + f)
        elif c["xfail"] and not run.failures:
            failed += 1
            print("FAIL   %-8s %-36s (%s) marked as a known defect but passes: remove the mark"
                  % (a.label, c["name"], took))
        elif run.failures:
            failed += 1
            print("FAIL   %-8s %-36s (%s)" % (a.label, c["name"], took))
            for f in run.failures:
                print("         - " + f)
        else:
            passed += 1
            print("ok     %-8s %-36s (%s%s)" % (a.label, c["name"], took, diffed))
    print("stack  %-8s deepest use of the 24,576-byte kernel stack: %s" % (a.label, ", ".join(
        "%s %d" % (e, d) for e, d in sorted(depth.items(), key=lambda x: -x[1])[:4])))
    print("%s: %d passed, %d failed, %d known driver defect(s)" % (a.label, passed, failed, known))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
