#!/usr/bin/env python3
"""Inspects linked ktmrm.sys images and fails on what Windows would refuse or what would crash it.

Usage: inspect_pe.py --min-windows TABLE --root REPO PE [PE ...]
(each PE needs its lld-link /MAP file and llvm-objdump -M intel disassembly beside it: X.map, X.asm)

Checks, per image:
  - AMD64 machine, NATIVE subsystem, entry point == DriverEntry, NX-compatible, dynamic base,
    forced integrity checking, no section both writable and executable;
  - every import comes from ntoskrnl.exe or HAL.dll, is listed in TABLE, and its documented
    minimum Windows build is not above the minimum the project states (TABLE's `minimum` line,
    which README.md and the INF must name too);
  - the routines TABLE marks `required` are imported (the KTM calls the product stands on);
  - no function's stack frame exceeds 4 KiB (x64 kernel stacks are 24 KiB, and a frame over a page
    needs __chkstk): measured from the disassembly, the `sub rsp, N` or the `mov eax, N` before a
    __chkstk call, attributed to the function by the map.
Prints a one-screen summary per image; exits 1 on any failure.
"""
import argparse
import bisect
import re
import struct
import sys

FRAME_LIMIT = 4096
ALLOWED_DLLS = {"ntoskrnl.exe", "hal.dll"}
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_FILE_MACHINE_AMD64 = 0x8664
DLLCHAR_DYNAMIC_BASE = 0x0040
DLLCHAR_FORCE_INTEGRITY = 0x0080
DLLCHAR_NX_COMPAT = 0x0100
SCN_MEM_EXECUTE = 0x20000000
SCN_MEM_WRITE = 0x80000000


class Pe:
    """The parts of a PE32+ image the checks need, parsed with the standard library only."""

    def __init__(self, path):
        self.data = data = open(path, "rb").read()
        (lfanew,) = struct.unpack_from("<I", data, 0x3C)
        if data[lfanew:lfanew + 4] != b"PE\0\0":
            raise ValueError(f"{path}: not a PE image")
        coff = lfanew + 4
        self.machine, nsections, _, _, _, opt_size, self.characteristics = struct.unpack_from(
            "<HHIIIHH", data, coff)
        opt = coff + 20
        if struct.unpack_from("<H", data, opt)[0] != 0x20B:
            raise ValueError(f"{path}: not PE32+")
        self.entry_rva = struct.unpack_from("<I", data, opt + 16)[0]
        self.image_base = struct.unpack_from("<Q", data, opt + 24)[0]
        self.subsystem, self.dll_characteristics = struct.unpack_from("<HH", data, opt + 68)
        self.stack_reserve, self.stack_commit = struct.unpack_from("<QQ", data, opt + 72)
        ndirs = struct.unpack_from("<I", data, opt + 108)[0]
        self.dirs = [struct.unpack_from("<II", data, opt + 112 + 8 * i) for i in range(ndirs)]
        self.sections = []
        for i in range(nsections):
            off = opt + opt_size + 40 * i
            name = data[off:off + 8].rstrip(b"\0").decode()
            vsize, va, rawsize, rawptr = struct.unpack_from("<IIII", data, off + 8)
            (chars,) = struct.unpack_from("<I", data, off + 36)
            self.sections.append((name, va, vsize, rawptr, rawsize, chars))

    def offset(self, rva):
        for _, va, vsize, rawptr, rawsize, _ in self.sections:
            if va <= rva < va + max(vsize, rawsize):
                return rawptr + rva - va
        raise ValueError(f"RVA {rva:#x} is in no section")

    def cstr(self, rva):
        off = self.offset(rva)
        return self.data[off:self.data.index(b"\0", off)].decode()

    def imports(self):
        """{dll: [name or #ordinal]} from the import directory."""
        out = {}
        rva, size = self.dirs[1] if len(self.dirs) > 1 else (0, 0)
        if not rva:
            return out
        desc = self.offset(rva)
        while True:
            lookup, _, _, name_rva, iat = struct.unpack_from("<IIIII", self.data, desc)
            if not (lookup or name_rva or iat):
                return out
            names = out.setdefault(self.cstr(name_rva), [])
            thunk = self.offset(lookup or iat)
            while True:
                (entry,) = struct.unpack_from("<Q", self.data, thunk)
                if not entry:
                    break
                names.append(f"#{entry & 0xFFFF}" if entry >> 63 else self.cstr((entry & 0x7FFFFFFF) + 2))
                thunk += 8
            desc += 20

    def exports(self):
        """{name: rva} from the export directory."""
        rva, _ = self.dirs[0] if self.dirs else (0, 0)
        if not rva:
            return {}
        d = self.offset(rva)
        _, _, _, _, _, base, nfuncs, nnames, funcs, names, ords = struct.unpack_from("<IIHHIIIIIII", self.data, d)
        out = {}
        for i in range(nnames):
            name = self.cstr(struct.unpack_from("<I", self.data, self.offset(names) + 4 * i)[0])
            ordinal = struct.unpack_from("<H", self.data, self.offset(ords) + 2 * i)[0]
            out[name] = struct.unpack_from("<I", self.data, self.offset(funcs) + 4 * ordinal)[0]
        return out


def demangle(name):
    """Rust's legacy mangling (_ZN<len><ident>...17h<hash>E) to a readable path."""
    name = re.sub(r"\.llvm\.\d+$", "", name)
    if not name.startswith("_ZN") or not name.endswith("E"):
        return name
    parts, rest = [], name[3:-1]
    while rest and rest[0].isdigit():
        n = re.match(r"\d+", rest).group()
        parts.append(rest[len(n):len(n) + int(n)])
        rest = rest[len(n) + int(n):]
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    subs = {"$LT$": "<", "$GT$": ">", "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]",
            "$u7b$": "{", "$u7d$": "}", "$C$": ",", "$RF$": "&", "$BP$": "*", "$SP$": "@", "..": "::"}
    out = "::".join(parts)
    for k, v in subs.items():
        out = out.replace(k, v)
    return out.lstrip("_") if out.startswith("_<") else out


def map_symbols(path):
    """[(va, name)] of the code symbols in an lld-link /MAP file, sorted by address."""
    syms = []
    for line in open(path):
        m = re.match(r"\s*0001:[0-9a-f]+\s+(\S+)\s+([0-9a-f]{16})\s", line)
        if m:
            syms.append((int(m.group(2), 16), m.group(1)))
    return sorted(syms)


def frames(asm_path, syms):
    """{function: largest stack allocation in bytes} from `sub rsp, N` and __chkstk calls."""
    addrs = [a for a, _ in syms]
    chkstk = {a for a, n in syms if n == "__chkstk"}
    best = {}
    lines = open(asm_path).read().splitlines()
    insn = re.compile(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)")
    for i, line in enumerate(lines):
        m = insn.match(line)
        if not m:
            continue
        addr, op, args = int(m.group(1), 16), m.group(2), m.group(3)
        size = None
        sub = re.fullmatch(r"rsp, (0x[0-9a-f]+|\d+)", args) if op == "sub" else None
        if sub:
            size = int(sub.group(1), 0)
        elif op == "mov" and (mv := re.fullmatch(r"eax, (0x[0-9a-f]+|\d+)", args)):
            nxt = [insn.match(x) for x in lines[i + 1:i + 3]]
            if nxt[0] and nxt[0].group(2) == "call":
                target = re.match(r"(0x[0-9a-f]+)", nxt[0].group(3))
                if target and int(target.group(1), 16) in chkstk:
                    size = int(mv.group(1), 0)
        if size is None:
            continue
        j = bisect.bisect_right(addrs, addr) - 1
        name = demangle(syms[j][1]) if j >= 0 else "?"
        best[name] = max(best.get(name, 0), size)
    return best


def read_table(path):
    """The minimum-Windows table: (minimum build, its display text, {routine: (build, required)})."""
    minimum, text, routines, names = None, None, {}, {}
    for raw in open(path):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        cols = line.split("\t")
        if cols[0] == "version":
            names[cols[1]] = int(cols[2])
        elif cols[0] == "minimum":
            minimum, text = names[cols[1]], cols[2]
        else:
            routines[cols[0]] = (names[cols[1]], len(cols) > 2 and cols[2] == "required")
    return minimum, text, routines


def inspect(path, table, root):
    minimum, minimum_text, routines = table
    pe = Pe(path)
    problems = []
    check = lambda ok, what: ok or problems.append(what)
    check(pe.machine == IMAGE_FILE_MACHINE_AMD64, f"machine {pe.machine:#x} is not AMD64")
    check(pe.subsystem == IMAGE_SUBSYSTEM_NATIVE, f"subsystem {pe.subsystem} is not NATIVE (1)")
    exports = pe.exports()
    check(exports.get("DriverEntry") == pe.entry_rva,
          f"entry point RVA {pe.entry_rva:#x} is not DriverEntry ({exports.get('DriverEntry')})")
    for flag, what in [(DLLCHAR_NX_COMPAT, "NX_COMPAT"), (DLLCHAR_DYNAMIC_BASE, "DYNAMIC_BASE"),
                       (DLLCHAR_FORCE_INTEGRITY, "FORCE_INTEGRITY")]:
        check(pe.dll_characteristics & flag, f"DllCharacteristics lacks {what}")
    for name, _, _, _, _, chars in pe.sections:
        check(not (chars & SCN_MEM_WRITE and chars & SCN_MEM_EXECUTE),
              f"section {name} is writable and executable")

    imports = pe.imports()
    for dll, names in imports.items():
        check(dll.lower() in ALLOWED_DLLS, f"imports from {dll}: {', '.join(names)}")
        for n in names:
            if n not in routines:
                problems.append(f"{dll}!{n} is not in the minimum-Windows table")
            elif routines[n][0] > minimum:
                problems.append(f"{dll}!{n} needs build {routines[n][0]}, above the stated "
                                f"minimum {minimum} ({minimum_text})")
    imported = {n for names in imports.values() for n in names}
    for n, (_, required) in sorted(routines.items()):
        check(not required or n in imported, f"required routine {n} is not imported")

    base = path[:-len(".sys")]
    sizes = frames(base + ".asm", map_symbols(base + ".map"))
    for name, size in sizes.items():
        check(size <= FRAME_LIMIT, f"stack frame of {size} bytes (> {FRAME_LIMIT}) in {name}")

    for doc in ("README.md", "inf/ktmrm.inx"):
        check(minimum_text in open(f"{root}/{doc}", encoding="utf-8").read(),
              f"{doc} does not state the minimum '{minimum_text}'")

    print(f"== {path}: {len(pe.data)} bytes, subsystem {pe.subsystem}, entry DriverEntry "
          f"at {pe.entry_rva:#x}, DllCharacteristics {pe.dll_characteristics:#06x}")
    print("   sections: " + ", ".join(f"{s[0]} {s[2]}" for s in pe.sections))
    for dll, names in imports.items():
        print(f"   imports {dll} ({len(names)}): " + " ".join(sorted(names)))
    need = max((routines[n][0] for n in imported if n in routines), default=0)
    print(f"   highest documented minimum among imports: build {need}; stated minimum "
          f"{minimum} ({minimum_text})")
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
    print(f"   largest frames (limit {FRAME_LIMIT}): " + "; ".join(f"{s} {n}" for n, s in top))
    for p in problems:
        print(f"   FAIL: {p}")
    return not problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-windows", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    table = read_table(args.min_windows)
    results = [inspect(p, table, args.root) for p in args.images]
    print("kernel check: PE inspection " + ("passed" if all(results) else "FAILED"))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
