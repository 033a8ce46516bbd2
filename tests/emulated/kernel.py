"""The emulated Windows kernel that runs ktmrm.sys: speakeasy-emulator (unicorn) loads the PE and
dispatches its imports; every routine the driver imports is answered here, by the documented
contract, and checked the way Driver Verifier would (pool, handles, references, IRQL, IRP
completion, stack). Anything the driver does that this file does not know is a violation, never
a silent default.

One `Kernel` is one boot: it loads the image, runs DriverEntry, takes IRPs and KTM actions from a
case, runs DriverUnload, and lists what was left behind."""

import collections
import logging
import struct

import speakeasy
import speakeasy.windows.kernel as skernel

import wdm
from wdm import p16, p32, p64, u16, u32, u64

PAGE = 0x1000
# The x64 kernel stack: 24 KiB (KERNEL_STACK_SIZE). Below it nothing is mapped: any access there
# is a frame over the stack.
STACK_SIZE = 0x6000
STACK_LIMIT = 0x600000000000
STACK_TOP = STACK_LIMIT + STACK_SIZE
STACK_GUARD = 0x100000
STACK_FILL = 0xCD
POOL_BASE = 0x500000000000
POOL_SIZE = 0x10000000
POOL_REDZONE = 16
KMEM_BASE = 0x580000000000
KMEM_SIZE = 0x4000000
# IRPs live in a region of their own, watched by one memory hook: a completed IRP's page is dead,
# and any access to it is a use after IoCompleteRequest (unmapping pages is slow in unicorn).
IRP_BASE = 0x590000000000
IRP_SIZE = 0x1000000
# Where a callback the kernel runs inside one of the driver's calls returns to: a page of int3
# with a code hook on its first byte.
RESUME = 0x5A0000000000
SYSTEM_PID = 4
APP_PID = 0x1F4C
KERNEL_HANDLE_BIT = 0xFFFFFFFF80000000
APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL = 1, 2, 0

NORMAL_THREAD = {"apcs_disabled": False, "short_stack": False}

REGISTRY_PATH = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ktmrm"


def demangle(name):
    """Rust's legacy mangling, enough for messages: _ZN5ktmrm5kmode5start17h…E → ktmrm::kmode::start."""
    if not (name.startswith("_ZN") and name.endswith("E")):
        return name
    parts, rest = [], name[3:-1]
    while rest and rest[0].isdigit():
        n = 0
        while rest and rest[0].isdigit():
            n, rest = n * 10 + int(rest[0]), rest[1:]
        parts.append(rest[:n])
        rest = rest[n:]
    if parts and parts[-1].startswith("h") and len(parts[-1]) == 17:
        parts.pop()
    return "::".join(p.replace("$u7b$", "{").replace("$u7d$", "}").replace("$LT$", "<")
                     .replace("$GT$", ">").replace("..", "::") for p in parts) or name


class Fatal(Exception):
    """The driver did something after which the emulated machine cannot go on (a bugcheck)."""


class KObject:
    """An object in the emulated object manager."""

    def __init__(self, kind, addr, **attrs):
        self.kind = kind
        self.addr = addr
        self.__dict__.update(attrs)

    def __repr__(self):
        return "%s@%#x" % (self.kind, self.addr)


class Kernel:
    def __init__(self, sys_path, parameters=None, log=None, files=None, hide=()):
        self.violations = []
        self.trace = []
        self.log = log or (lambda s: None)
        self.parameters = parameters or {}
        self.hidden = set(hide)  # exports MmGetSystemRoutineAddress does not find (older Windows)
        self.pool = {}  # addr -> (size, tag)
        self.pool_next = POOL_BASE
        self.pool_stats = {"allocs": 0, "frees": 0}
        self.kmem_next = KMEM_BASE
        self.irp_next = IRP_BASE
        self.dead_pages = {}  # page -> what it was
        self.objects = {}  # addr -> KObject
        self.handles = {SYSTEM_PID: {}, APP_PID: {}}  # pid -> {value: KObject}
        self.kernel_handles = {}  # value -> KObject
        self.handle_next = {SYSTEM_PID: 4, APP_PID: 4}
        self.driver_refs = {}  # KObject -> references the driver holds
        self.pid = SYSTEM_PID
        self.irql = PASSIVE_LEVEL
        self.mutexes = {}  # addr -> held?
        self.events = {}  # addr -> signalled?
        self.rundown = {}  # addr -> [count, waiting]
        self.symlinks = {}
        self.devices = []
        self.unloaded = False
        self.in_image = None  # which entry point is running
        self.max_depth = {}  # entry -> deepest stack use
        self.irps = {}  # addr -> IRP record
        self.freed = []  # (base, size, what)
        self.registry = self._registry()
        self.files = {}  # path -> bytearray (durable log)
        self.yields = 0
        self.fail_alloc_at = None  # fail the pool allocation after this many more
        self.injected_failures = 0
        self.irql_stack = []
        self.critical_regions = 0
        self.driver_handles = set()  # handles the driver opened and must close
        self.crashed = False
        self.waits = []  # the driver's waits inside which KTM runs callbacks (innermost last)
        self.work_items = {}  # IO_WORKITEM address -> {"device", "queued"}
        self.work_queue = collections.deque()  # (item, routine, context) for a system worker
        self.work_stats = {"allocated": 0, "queued": 0, "run": 0}
        self.fail_work_items = 0  # fail the next N IoAllocateWorkItem calls
        self.work_items_left = None  # when a number: that many more succeed, then all fail
        # Keep queued work items waiting (every system worker busy) until the driver waits for
        # them (the rundown wait at unload).
        self.hold_work = False
        # The thread the driver runs on: KeAreAllApcsDisabled and IoGetStackLimits answer from
        # it (KTM's callback thread takes Ktm.callback_thread; workers and IRPs the default).
        self.thread = dict(NORMAL_THREAD)

        orig_setup = skernel.WinKernelEmulator.setup_kernel_mode
        kernel = self

        def setup(emu, *a, **kw):
            r = orig_setup(emu, *a, **kw)
            if not emu.stack_base:
                emu.mem_map(STACK_SIZE, base=STACK_LIMIT, tag="emu.kstack")
                emu.stack_base = STACK_TOP
                kernel._arenas(emu)
            return r

        skernel.WinKernelEmulator.setup_kernel_mode = setup
        logging.getLogger("speakeasy").setLevel(logging.CRITICAL)
        self.se = speakeasy.Speakeasy(logger=logging.getLogger("speakeasy"))
        try:
            self.module = self.se.load_module(sys_path)
        finally:
            skernel.WinKernelEmulator.setup_kernel_mode = orig_setup
        self.emu = self.se.emu
        self.base = self.module.base
        self.emu.set_func_args = self._set_func_args
        self._trap_memory()
        import apis
        import fs
        import irps
        import ktm

        self.ktm = ktm.Ktm(self)
        self.ktm_waiting = ktm.WAITING
        irps.attach(self)
        fs.attach(self)
        if files is not None:  # a restart: the disk as the last boot left it
            self.fs.data = {p: bytearray(d) for p, d in files.data.items()}
            self.fs.dirs = set(files.dirs)
        apis.install(self)
        self.stand_ins = self._stand_ins(sys_path)
        self.se.add_code_hook(self._resumed, begin=RESUME, end=RESUME)
        self.driver_object = self._driver_object()

    # ---- memory ---------------------------------------------------------------------------

    def _arenas(self, emu):
        emu.mem_map(POOL_SIZE, base=POOL_BASE, tag="emu.pool")
        emu.mem_map(KMEM_SIZE, base=KMEM_BASE, tag="emu.kmem")
        emu.mem_map(IRP_SIZE, base=IRP_BASE, tag="emu.irps")
        emu.mem_map(PAGE, base=RESUME, tag="emu.resume")
        emu.mem_write(RESUME, b"\xcc" * PAGE)

    def read(self, addr, n):
        return bytes(self.emu.mem_read(addr, n))

    def write(self, addr, data):
        self.emu.mem_write(addr, bytes(data))

    def rq(self, addr):
        return u64(self.read(addr, 8))

    def kalloc(self, size, data=None, page=False):
        """Kernel memory the emulated kernel owns (objects, IRPs, strings): not pool."""
        align = PAGE if page else 16
        addr = (self.kmem_next + align - 1) & ~(align - 1)
        self.kmem_next = addr + max(size, 1)
        if page:
            self.kmem_next = (self.kmem_next + PAGE - 1) & ~(PAGE - 1)
        if self.kmem_next > KMEM_BASE + KMEM_SIZE:
            raise Fatal("emulated kernel memory exhausted")
        self.write(addr, data if data is not None else bytes(size))
        return addr

    def unicode_string(self, text):
        units = text.encode("utf-16-le")
        buf = self.kalloc(len(units) + 2, units + b"\0\0")
        return self.kalloc(16, p16(len(units)) + p16(len(units) + 2) + p32(0) + p64(buf))

    def read_unicode(self, us_addr):
        if us_addr == 0:
            return None
        raw = self.read(us_addr, 16)
        length, maxlen, buf = u16(raw), u16(raw, 2), u64(raw, 8)
        if length % 2 or length > maxlen:
            self.violation("UNICODE_STRING at %#x: Length %d, MaximumLength %d" % (us_addr, length, maxlen))
        return self.read(buf, length).decode("utf-16-le", "replace") if length else ""

    def read_oa(self, oa):
        """OBJECT_ATTRIBUTES: (root handle, name or None, attributes)."""
        if oa == 0:
            return 0, None, 0
        raw = self.read(oa, wdm.OA_SIZE)
        if u32(raw) != wdm.OA_SIZE:
            self.violation("OBJECT_ATTRIBUTES.Length is %d, not %d" % (u32(raw), wdm.OA_SIZE))
        return u64(raw, wdm.OA_ROOT), self.read_unicode(u64(raw, wdm.OA_NAME)), u32(raw, wdm.OA_ATTRIBUTES)

    def violation(self, text):
        where = " (in %s)" % self.in_image if self.in_image else ""
        self.violations.append(text + where)
        self.log("VIOLATION: " + text + where)

    def _trap_memory(self):
        """Any read or write of unmapped memory is a bug check on Windows; name what was hit."""
        emu = self.emu
        kernel = self

        def bad(kind):
            def handler(_emu, address, size, _value, _ctx):
                kernel._fault(kind, address)
                kernel.se.stop()
                return False

            return handler

        emu._handle_invalid_read = bad("read")
        emu._handle_invalid_write = bad("write")
        emu._handle_prot_write = bad("write")
        orig_fetch = emu._handle_invalid_fetch

        def fetch(_emu, address, size, value, ctx):
            if address < self.base or address >= self.base + self.module.image_size:
                if not (address == emu.return_hook or address == emu.exit_hook
                        or emu.curr_mod and address in emu.curr_mod.import_table
                        or any(a == address for a, _m, _f in emu.dyn_imps)):
                    kernel._fault("execute", address)
                    kernel.se.stop()
                    return False
            return orig_fetch(_emu, address, size, value, ctx)

        emu._handle_invalid_fetch = fetch

        import unicorn

        def dead(_uc, access, address, size, value, _data):
            what = self.dead_pages.get(address & ~(PAGE - 1))
            if what is not None:
                kind = "write" if access == unicorn.UC_MEM_WRITE else "read"
                self.violation("%s of %s at %#x (pc %s): a second completion, or a use of an "
                               "IRP the I/O manager has freed"
                               % (kind, what, address, self.symbol(self.emu.get_pc())))
                self.crashed = True
                self.se.stop()

        self.emu.emu_eng.emu.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, dead,
                                      begin=IRP_BASE, end=IRP_BASE + IRP_SIZE - 1)

    def _resumed(self, _emu, _addr, _size, _ctx):
        """A callback run inside one of the driver's calls returned (kernel.inject)."""
        if not self.waits:
            self.violation("execution reached the emulated kernel's resume page")
            self.crashed = True
            self.se.stop()
            return
        try:
            self.ktm.resume_wait()
        except Fatal as e:
            self.violation(str(e))
            self.crashed = True
            self.se.stop()

    def irp_page(self):
        addr = self.irp_next
        self.irp_next += PAGE
        if self.irp_next > IRP_BASE + IRP_SIZE:
            raise Fatal("emulated IRP region exhausted")
        self.write(addr, bytes(PAGE))
        return addr

    def _fault(self, kind, address):
        pc = self.emu.get_pc()
        if STACK_LIMIT - STACK_GUARD <= address < STACK_LIMIT:
            where = self.symbol(pc)
            if where.startswith("__chkstk"):
                # The stand-in probes down a page at a time from the caller's RSP (RSP + 24 here,
                # after its two pushes), taking a page off RAX after each probe: the frame is RAX
                # plus the pages probed before the faulting one.
                rsp = self.emu.reg_read("rsp")
                frame = self.emu.reg_read("rax") + (rsp + 24 - address) - PAGE
                where = "%s allocating a frame of %d bytes" % (self.symbol(self.rq(rsp + 16)),
                                                                 frame)
            self.violation("stack overflow: %s at %#x, %d bytes beyond the 24 KiB kernel stack, "
                           "in %s" % (kind, address, STACK_LIMIT - address, where))
        else:
            what = next((w for b, s, w in self.freed if b <= address < b + s), None)
            self.violation("page fault: %s of %s at %#x (pc %s)"
                           % (kind, what or "unmapped memory", address, self.symbol(pc)))
        self.crashed = True

    def _stand_ins(self, sys_path):
        """Routines of WDK static libraries (wdmsec.lib) are linked into the image as stand-ins;
        when the linker's map names them, this kernel runs its own version at that address
        instead, so it sees every argument (the SDDL, the class GUID)."""
        import os

        found = []
        self.symbols = []  # (address, name), sorted: the linker map's symbols, for messages
        map_path = os.path.splitext(sys_path)[0] + ".map"
        if not os.path.exists(map_path):
            return found
        preferred = None
        for line in open(map_path, encoding="latin-1"):
            parts = line.split()
            if line.strip().startswith("Preferred load address is"):
                preferred = int(parts[-1], 16)
            if len(parts) < 3 or ":" not in parts[0] or not preferred:
                continue
            try:
                addr = int(parts[2], 16) - preferred + self.base
            except ValueError:
                continue
            self.symbols.append((addr, parts[1]))
            if parts[1] in ("WdmlibIoCreateDeviceSecure",):
                self._replace(addr, parts[1])
                found.append(parts[1])
        self.symbols.sort()
        return found

    def symbol(self, addr):
        """`function+0x12` for an address in the image (from the map), else the address."""
        import bisect

        i = bisect.bisect_right(self.symbols, (addr, "\uffff")) - 1
        if i < 0 or not (self.base <= addr < self.base + self.module.image_size):
            return "%#x" % addr
        start, name = self.symbols[i]
        return "%s+%#x" % (demangle(name), addr - start)

    def _replace(self, addr, name):
        handler, argc = self.routines[name]

        def hook(_emu, _addr, _size, _ctx):
            rsp = self.emu.reg_read("rsp")
            argv = [self.emu.reg_read(r) for r in ("rcx", "rdx", "r8", "r9")]
            argv += [self.rq(rsp + 0x28 + 8 * i) for i in range(argc - 4)]
            rv = handler(self.emu, name, None, argv[:argc])
            self.emu.reg_write("rax", rv)
            self.emu.reg_write("rip", self.rq(rsp))
            self.emu.reg_write("rsp", rsp + 8)
            return True

        self.se.add_code_hook(hook, begin=addr, end=addr)

    # ---- calling into the image -----------------------------------------------------------

    def _set_func_args(self, stack_addr, ret_addr, *args, home_space=True):
        """The x64 calling convention: 4 register arguments, the rest above a 32-byte home
        area, RSP 8 mod 16 at entry (speakeasy's own puts stack arguments below the home area)."""
        self.emu.reg_write("rsp", self._frame(stack_addr - 0x100, args, ret_addr))

    def _frame(self, below, args, ret_addr):
        """Lays out an x64 call below `below`: arguments in RCX, RDX, R8, R9 and above the
        32-byte home area, the return address at the returned RSP (8 mod 16)."""
        rsp = ((below - 8 * len(args)) & ~0xF) - 8
        for i, reg in enumerate(("rcx", "rdx", "r8", "r9")):
            self.emu.reg_write(reg, args[i] if i < len(args) else 0)
        for i, a in enumerate(args[4:]):
            self.write(rsp + 0x28 + 8 * i, p64(a))
        self.write(rsp, p64(ret_addr))
        return rsp

    def call(self, name, addr, *args):
        """Runs one routine of the image at PASSIVE_LEVEL to its return; returns RAX."""
        if self.unloaded:
            self.violation("%s called after DriverUnload returned" % name)
            raise Fatal("call into an unloaded image")
        if not (self.base <= addr < self.base + self.module.image_size):
            raise Fatal("%s: %#x is not in the image" % (name, addr))
        self.write(STACK_LIMIT, bytes([STACK_FILL]) * STACK_SIZE)
        self.crashed = False
        outer, self.in_image = self.in_image, name
        self.yields = 0
        self.se.call(addr, list(args))
        self.in_image = outer
        run = self.emu.curr_run
        used = self._stack_used()
        self.max_depth[name] = max(self.max_depth.get(name, 0), used)
        if self.crashed:
            raise Fatal("%s faulted" % name)
        if run.error and run.error.get("type") not in (None,):
            self.violation("%s stopped: %s at %s %s" % (name, run.error.get("type"), run.error.get("pc"),
                                                         run.error.get("api_name", "")))
            raise Fatal("%s did not return" % name)
        if self.irql != PASSIVE_LEVEL:
            self.violation("%s returned at IRQL %d" % (name, self.irql))
        held = [hex(a) for a, h in self.mutexes.items() if h]
        if held:
            self.violation("%s returned holding guarded mutex %s" % (name, ", ".join(held)))
        return run.ret_val & 0xFFFFFFFFFFFFFFFF

    def inject(self, routine, args, below, popped):
        """Runs `routine(*args)` of the image on the current thread's stack below `below`,
        returning to RESUME: how this kernel lets another thread's work (KTM's worker) run
        while the driver is inside one of its calls. `popped`: speakeasy will still "return"
        from the import being handled (it pops a return address off the stack), so the routine's
        address goes there."""
        rsp = self._frame(below - 0x200, args, RESUME)
        if popped:
            rsp -= 8
            self.write(rsp, p64(routine))
        self.emu.reg_write("rsp", rsp)
        self.emu.reg_write("rip", routine)

    def _stack_used(self):
        data = self.read(STACK_LIMIT, STACK_SIZE)
        for i, b in enumerate(data):
            if b != STACK_FILL:
                return STACK_SIZE - i
        return 0

    # ---- driver and device objects --------------------------------------------------------

    def _driver_object(self):
        name = self.unicode_string("\\Driver\\ktmrm")
        drv = self.kalloc(wdm.DRIVER_OBJECT_SIZE)
        self.write(drv, p16(wdm.IO_TYPE_DRIVER) + p16(wdm.DRIVER_OBJECT_SIZE))
        self.write(drv + wdm.DRV_START, p64(self.base) + p64(self.module.image_size))
        self.write(drv + wdm.DRV_NAME, self.read(name, 16))
        self.registry_path = self.unicode_string(REGISTRY_PATH)
        return drv

    def major(self, mj):
        return self.rq(self.driver_object + wdm.DRV_MAJOR + 8 * mj)

    def driver_entry(self):
        entry = self.base + self.module.ep
        st = self.call("DriverEntry", entry, self.driver_object, self.registry_path) & 0xFFFFFFFF
        self.ktm.deliver()
        return st

    def unload(self):
        routine = self.rq(self.driver_object + wdm.DRV_UNLOAD)
        if routine == 0:
            self.violation("no DriverUnload routine: the driver cannot be stopped")
            return
        self.pid = SYSTEM_PID
        self.call("DriverUnload", routine, self.driver_object)
        self.unloaded = True
        self.ktm.after_unload()

    # ---- handles and objects --------------------------------------------------------------

    def new_object(self, kind, size=0x40, **attrs):
        obj = KObject(kind, self.kalloc(size), **attrs)
        self.objects[obj.addr] = obj
        return obj

    def new_handle(self, obj, kernel_handle, pid=None):
        pid = self.pid if pid is None else pid
        if kernel_handle:
            value = KERNEL_HANDLE_BIT | self.handle_next[SYSTEM_PID]
            self.handle_next[SYSTEM_PID] += 4
            self.kernel_handles[value] = obj
        else:
            value = self.handle_next[pid]
            self.handle_next[pid] += 4
            self.handles[pid][value] = obj
        obj.handles = getattr(obj, "handles", 0) + 1
        return value

    def lookup(self, handle, mode):
        """The object a handle names for a caller in `mode`, in the current process."""
        if handle & KERNEL_HANDLE_BIT == KERNEL_HANDLE_BIT:
            if mode != wdm.KERNEL_MODE:
                return None
            return self.kernel_handles.get(handle)
        return self.handles[self.pid].get(handle)

    def close(self, handle, mode=wdm.KERNEL_MODE):
        obj = self.lookup(handle, mode)
        if obj is None:
            return wdm.STATUS_INVALID_HANDLE
        if handle in self.kernel_handles:
            del self.kernel_handles[handle]
        else:
            del self.handles[self.pid][handle]
        obj.handles -= 1
        if obj.handles == 0:
            self.ktm.last_handle_closed(obj)
        return wdm.STATUS_SUCCESS

    def reference(self, obj):
        self.driver_refs[obj] = self.driver_refs.get(obj, 0) + 1

    def dereference(self, addr, how):
        obj = self.objects.get(addr)
        if obj is None:
            self.violation("%s(%#x): not an object" % (how, addr))
            return
        n = self.driver_refs.get(obj, 0)
        if n == 0:
            self.violation("%s(%s): the driver holds no reference" % (how, obj))
            return
        self.driver_refs[obj] = n - 1

    # ---- registry -------------------------------------------------------------------------

    def _registry(self):
        params = {}
        for name, value in self.parameters.items():
            if isinstance(value, int):
                params[name.lower()] = (wdm.REG_DWORD, p32(value))
            else:
                params[name.lower()] = (wdm.REG_SZ, (value + "\0").encode("utf-16-le"))
        return {REGISTRY_PATH.lower(): {}, (REGISTRY_PATH + "\\Parameters").lower(): params}

    # ---- leftovers ------------------------------------------------------------------------

    def leftovers(self):
        """Verifier's checks at unload: pool, handles, references, devices, links."""
        out = []
        by_tag = {}
        for addr, (size, tag) in self.pool.items():
            by_tag.setdefault(tag, []).append((addr, size))
        for tag, blocks in sorted(by_tag.items()):
            out.append("pool leak: %d block(s) with tag %r, %d bytes (first at %#x)"
                       % (len(blocks), tag, sum(s for _a, s in blocks), blocks[0][0]))
        for value in sorted(self.driver_handles):
            obj = self.kernel_handles.get(value) or self.handles[SYSTEM_PID].get(value)
            out.append("handle leak: handle %#x to %s still open" % (value, obj))
        for obj, n in self.driver_refs.items():
            if n:
                out.append("reference leak: %d reference(s) to %s" % (n, obj))
        if self.devices:
            out.append("device object(s) not deleted: %s" % ", ".join(d["name"] for d in self.devices))
        if self.symlinks:
            out.append("symbolic link(s) not deleted: %s" % ", ".join(self.symlinks))
        if self.work_items:
            out.append("work item leak: %d IO_WORKITEM(s) never freed with IoFreeWorkItem"
                       % len(self.work_items))
        for addr, (count, _w) in self.rundown.items():
            if count:
                out.append("rundown protection at %#x still held %d time(s)" % (addr, count))
        return out
