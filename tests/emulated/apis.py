"""The kernel routines ktmrm.sys imports, each answered by its documented contract (Microsoft
Learn's DDI page: parameters, IRQL, who owns what it returns) and checked as Driver Verifier
would: IRQL on entry, pool blocks by tag, handles and object references, guarded mutexes,
rundown protection, IRP completion. KTM's routines are in ktm.py."""

import os
import struct

import wdm
from kernel import (APC_LEVEL, APP_PID, DISPATCH_LEVEL, PASSIVE_LEVEL, POOL_BASE, POOL_REDZONE,
                    POOL_SIZE, STACK_LIMIT, STACK_TOP, SYSTEM_PID, Fatal)
from wdm import p16, p32, p64, u16, u32, u64

ROUTINES = {}


def routine(name, argc, max_irql=PASSIVE_LEVEL):
    """Registers the handler of one import: `argc` arguments, callable at IRQL <= max_irql."""

    def wrap(fn):
        ROUTINES[name] = (fn, argc, max_irql)
        return fn

    return wrap


LEVELS = (("PASSIVE_LEVEL", PASSIVE_LEVEL), ("<= APC_LEVEL", APC_LEVEL),
          ("<= DISPATCH_LEVEL", DISPATCH_LEVEL), ("any", 15), ("<= DIRQL", 15))


def documented_irql(path):
    """Each routine's IRQL limit from docs/kernel-routines.md (the `IRQL` column of its tables),
    so the emulated Verifier checks the very rule the driver's notes state. A routine listed
    with "see Remarks" only keeps the limit given here."""
    limits = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return limits
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        level = next((v for prefix, v in LEVELS if cells[2].startswith(prefix)), None)
        if level is None:
            continue
        for proto in cells[1].split("`")[1::2]:
            head = proto.split("(", 1)[0].split()
            if head and "(" in proto:
                limits[head[-1]] = level
    return limits


def install(k):
    def make(name, fn, max_irql):
        def hook(emu, api_name, _orig, argv):
            if k.irql > max_irql:
                k.violation("%s called at IRQL %d (allowed: <= %d)" % (name, k.irql, max_irql))
            k.calls.append(name)
            k.current_routine = name
            try:
                rv = fn(k, *argv)
            except Fatal as e:
                k.violation(str(e))
                k.crashed = True
                k.se.stop()
                return 0
            if rv is k.ktm_waiting:  # KTM's worker runs first (registers already set)
                return k.emu.reg_read("rax")
            return 0 if rv is None else rv & 0xFFFFFFFFFFFFFFFF

        return hook

    k.calls = []
    k.routines = {}
    # Whether speakeasy has its own handler for a routine decides how it returns from our hook.
    k.handled_by_speakeasy = {}
    for name in ROUTINES:
        attrs = k.emu.api.get_export_func_handler("ntoskrnl", name)[1]
        if not attrs:
            attrs = k.emu.normalize_import_miss("ntoskrnl", name)[1]
        k.handled_by_speakeasy[name] = bool(attrs)
    docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "kernel-routines.md")
    documented = documented_irql(docs)
    for name, (fn, argc, max_irql) in ROUTINES.items():
        max_irql = documented.get(name, max_irql)
        k.routines[name] = (make(name, fn, max_irql), argc)
        k.se.add_api_hook(k.routines[name][0], "ntoskrnl", name, argc=argc)
    # Any other import is a routine this emulated kernel does not know: fail loudly.
    imports = {fn for _a, (_m, fn) in k.module.imports.items()}
    unknown = sorted(imports - set(ROUTINES))
    k.unknown_imports = unknown


def status(v):
    return v & 0xFFFFFFFF


# ---- pool -----------------------------------------------------------------------------------

def _alloc(k, size, tag, zero=True):
    if k.fail_alloc_at is not None:
        k.fail_alloc_at -= 1
        if k.fail_alloc_at < 0:
            k.fail_alloc_at = None
            k.injected_failures += 1
            k.injected_in = k.in_image
            return 0
    addr = (k.pool_next + 15) & ~15
    end = addr + size + POOL_REDZONE
    if end > POOL_BASE + POOL_SIZE:
        return 0
    k.pool_next = end
    k.write(addr, (bytes(size) if zero else b"\xc5" * size) + b"\xfb" * POOL_REDZONE)
    k.pool[addr] = (size, tag)
    k.pool_stats["allocs"] += 1
    return addr


def tag_text(tag):
    return struct.pack("<I", tag).decode("latin-1")


@routine("ExAllocatePool2", 3, DISPATCH_LEVEL)
def ex_allocate_pool2(k, flags, size, tag):
    kinds = flags & (wdm.POOL_FLAG_NON_PAGED | wdm.POOL_FLAG_NON_PAGED_EXECUTE | wdm.POOL_FLAG_PAGED)
    if bin(kinds).count("1") != 1:
        k.violation("ExAllocatePool2 flags %#x: exactly one pool type is required" % flags)
    if flags & wdm.POOL_FLAG_PAGED and k.irql > APC_LEVEL:
        k.violation("paged pool allocated at IRQL %d" % k.irql)
    if tag & 0xFFFFFFFF == 0:
        k.violation("ExAllocatePool2 with a zero tag")
    return _alloc(k, size, tag_text(tag & 0xFFFFFFFF), zero=not flags & wdm.POOL_FLAG_UNINITIALIZED)


@routine("ExAllocatePoolWithTag", 3, DISPATCH_LEVEL)
def ex_allocate_pool_with_tag(k, pool_type, size, tag):
    return _alloc(k, size, tag_text(tag & 0xFFFFFFFF), zero=False)


def _free(k, addr, how, tag=None):
    block = k.pool.pop(addr, None)
    if block is None:
        raise Fatal("%s(%#x): not an allocated pool block (double free or bad pointer): "
                    "Verifier bug check 0xC2" % (how, addr))
    size, btag = block
    if tag is not None and tag_text(tag & 0xFFFFFFFF) != btag:
        k.violation("%s(%#x) with tag %r, allocated with %r" % (how, addr, tag_text(tag), btag))
    if k.read(addr + size, POOL_REDZONE) != b"\xfb" * POOL_REDZONE:
        k.violation("pool overrun: the driver wrote past the %d-byte block at %#x (tag %r)"
                    % (size, addr, btag))
    k.write(addr, b"\xdf" * size)
    k.pool_stats["frees"] += 1


@routine("ExFreePool", 1, DISPATCH_LEVEL)
def ex_free_pool(k, addr):
    _free(k, addr, "ExFreePool")


@routine("ExFreePoolWithTag", 2, DISPATCH_LEVEL)
def ex_free_pool_with_tag(k, addr, tag):
    _free(k, addr, "ExFreePoolWithTag", tag)


# ---- C runtime the compiler emits ---------------------------------------------------------

@routine("memcpy", 3, 15)
def memcpy(k, dst, src, n):
    if n:
        k.write(dst, k.read(src, n))
    return dst


@routine("memmove", 3, 15)
def memmove(k, dst, src, n):
    return memcpy(k, dst, src, n)


@routine("memset", 3, 15)
def memset(k, dst, c, n):
    if n:
        k.write(dst, bytes([c & 0xFF]) * n)
    return dst


@routine("memcmp", 3, 15)
def memcmp(k, a, b, n):
    x, y = k.read(a, n), k.read(b, n)
    for i in range(n):
        if x[i] != y[i]:
            return (x[i] - y[i]) & 0xFFFFFFFF
    return 0


# ---- tracing, bug checks, misc ------------------------------------------------------------

def _c_string(k, addr, limit=512):
    data = k.read(addr, limit)
    return data.split(b"\0", 1)[0].decode("latin-1")


@routine("DbgPrint", 4, 15)
def dbg_print(k, fmt, a1, a2, a3):
    text = _c_string(k, fmt)
    if text.startswith("%s") or text == "%.*s":
        text = _c_string(k, a1 if text.startswith("%s") else a2)
    k.trace.append(text.rstrip("\n"))
    k.log("trace: " + text.rstrip("\n"))
    return 0


@routine("KeBugCheckEx", 5, 15)
def ke_bug_check_ex(k, code, p1, p2, p3, p4):
    raise Fatal("KeBugCheckEx(%#x, %#x, %#x, %#x, %#x): the driver crashed the machine"
                % (code, p1, p2, p3, p4))


@routine("PsGetCurrentProcessId", 0, 15)
def ps_get_current_process_id(k):
    return k.pid


@routine("ExUuidCreate", 1)
def ex_uuid_create(k, uuid):
    k.uuid_count = getattr(k, "uuid_count", 0) + 1
    k.write(uuid, struct.pack("<IHH8s", 0x6b746d00 + k.uuid_count, 0x4d52, 0x4000, b"\x80emulatd"))
    return wdm.STATUS_SUCCESS


@routine("ZwYieldExecution", 0)
def zw_yield_execution(k):
    # One thread runs in this kernel: a yield lets nobody else make progress. A loop that keeps
    # yielding would spin for ever on a real machine with nobody to wait for.
    k.yields += 1
    if k.yields > 64:
        raise Fatal("ZwYieldExecution called %d times in one call: spinning on a condition no "
                    "other thread will change" % k.yields)
    return wdm.STATUS_NO_YIELD_PERFORMED


@routine("MmGetSystemRoutineAddress", 1)
def mm_get_system_routine_address(k, name_us):
    name = k.read_unicode(name_us)
    var = k.ktm.object_type_variable(name)
    if var is not None:
        return var
    if name in ROUTINES and name not in k.hidden:
        return k.emu.get_proc("ntoskrnl", name)
    return 0


# ---- synchronisation ----------------------------------------------------------------------

@routine("KeInitializeGuardedMutex", 1, APC_LEVEL)
def ke_initialize_guarded_mutex(k, m):
    if k.mutexes.get(m):
        k.violation("KeInitializeGuardedMutex(%#x) while it is held" % m)
    k.mutexes[m] = False
    k.write(m, p32(1) + bytes(0x34))  # Count = GM_LOCK_BIT


@routine("KeAcquireGuardedMutex", 1, APC_LEVEL)
def ke_acquire_guarded_mutex(k, m):
    if m not in k.mutexes:
        raise Fatal("KeAcquireGuardedMutex(%#x): not initialised" % m)
    if k.mutexes[m]:
        raise Fatal("KeAcquireGuardedMutex(%#x): already held by this thread (deadlock)" % m)
    k.mutexes[m] = True
    k.irql_stack.append(k.irql)
    k.irql = APC_LEVEL


@routine("KeReleaseGuardedMutex", 1, APC_LEVEL)
def ke_release_guarded_mutex(k, m):
    if not k.mutexes.get(m):
        raise Fatal("KeReleaseGuardedMutex(%#x): not held" % m)
    k.mutexes[m] = False
    k.irql = k.irql_stack.pop() if k.irql_stack else PASSIVE_LEVEL


@routine("KeEnterCriticalRegion", 0, APC_LEVEL)
def ke_enter_critical_region(k):
    k.critical_regions += 1


@routine("KeLeaveCriticalRegion", 0, APC_LEVEL)
def ke_leave_critical_region(k):
    if k.critical_regions == 0:
        k.violation("KeLeaveCriticalRegion without KeEnterCriticalRegion")
    else:
        k.critical_regions -= 1


@routine("KeInitializeEvent", 3, DISPATCH_LEVEL)
def ke_initialize_event(k, ev, kind, state):
    k.events[ev] = [kind & 0xFF, bool(state & 0xFF)]


@routine("KeSetEvent", 3, DISPATCH_LEVEL)
def ke_set_event(k, ev, inc, wait):
    if ev not in k.events:
        raise Fatal("KeSetEvent(%#x): not an initialised event" % ev)
    prev = k.events[ev][1]
    k.events[ev][1] = True
    return int(prev)


@routine("KeClearEvent", 1, DISPATCH_LEVEL)
def ke_clear_event(k, ev):
    if ev in k.events:
        k.events[ev][1] = False


@routine("KeWaitForSingleObject", 5, APC_LEVEL)
def ke_wait_for_single_object(k, obj, reason, mode, alertable, timeout):
    ev = k.events.get(obj)
    if ev is None:
        raise Fatal("KeWaitForSingleObject(%#x): not an event this kernel knows" % obj)
    if ev[1]:
        return k.ktm._wait_result(obj, timeout)
    # Not set: other threads run now. Here that is KTM's worker, with what it owes the driver.
    return k.ktm.wait_delivering(obj, timeout)


@routine("ExInitializeRundownProtection", 1, APC_LEVEL)
def ex_initialize_rundown_protection(k, r):
    k.rundown[r] = [0, False]
    k.write(r, p64(0))


@routine("ExAcquireRundownProtection", 1, DISPATCH_LEVEL)
def ex_acquire_rundown_protection(k, r):
    state = k.rundown.get(r)
    if state is None:
        raise Fatal("ExAcquireRundownProtection(%#x): not initialised" % r)
    if state[1]:
        return 0
    state[0] += 1
    return 1


@routine("ExReleaseRundownProtection", 1, DISPATCH_LEVEL)
def ex_release_rundown_protection(k, r):
    state = k.rundown.get(r)
    if not state or state[0] == 0:
        raise Fatal("ExReleaseRundownProtection(%#x): not acquired" % r)
    state[0] -= 1


@routine("ExWaitForRundownProtectionRelease", 1, APC_LEVEL)
def ex_wait_for_rundown_protection_release(k, r):
    state = k.rundown.get(r)
    if state is None:
        raise Fatal("ExWaitForRundownProtectionRelease(%#x): not initialised" % r)
    state[1] = True
    # Queued work items hold protection too: the system's worker threads run them while this
    # thread waits (here, on this thread's stack), and the wait ends once they are done.
    return k.ktm.run_work_then(lambda: _rundown_released(state))


def _rundown_released(state):
    if state[0]:
        raise Fatal("ExWaitForRundownProtectionRelease: %d holder(s) on this very thread; the "
                    "wait never ends" % state[0])
    return 0


# ---- objects and handles ------------------------------------------------------------------

@routine("ObReferenceObjectByHandle", 6)
def ob_reference_object_by_handle(k, handle, access, obj_type, mode, out, info):
    access &= 0xFFFFFFFF
    if out == 0:
        k.violation("ObReferenceObjectByHandle without an Object pointer")
        return wdm.STATUS_INVALID_PARAMETER
    mode &= 0xFF
    obj = k.lookup(handle, mode)
    if obj is None:
        return wdm.STATUS_INVALID_HANDLE
    want = k.ktm.type_of(obj_type)
    if obj_type and want is None:
        k.violation("ObReferenceObjectByHandle with object type %#x, not one this kernel exports"
                    % obj_type)
    if want is not None and obj.kind != want:
        return wdm.STATUS_OBJECT_TYPE_MISMATCH
    if mode == wdm.USER_MODE and access & ~getattr(obj, "granted", 0x1F003F):
        return wdm.STATUS_ACCESS_DENIED
    k.reference(obj)
    k.write(out, p64(obj.addr))
    return wdm.STATUS_SUCCESS


@routine("ObfDereferenceObject", 1, DISPATCH_LEVEL)
def obf_dereference_object(k, addr):
    k.dereference(addr, "ObDereferenceObject")
    return 0


@routine("ObDereferenceObjectDeferDelete", 1, DISPATCH_LEVEL)
def ob_dereference_object_defer_delete(k, addr):
    k.dereference(addr, "ObDereferenceObjectDeferDelete")


@routine("ObfReferenceObject", 1, DISPATCH_LEVEL)
def obf_reference_object(k, addr):
    obj = k.objects.get(addr)
    if obj is None:
        raise Fatal("ObReferenceObject(%#x): not an object" % addr)
    k.reference(obj)
    return 1


@routine("ObOpenObjectByPointer", 7)
def ob_open_object_by_pointer(k, addr, attributes, passed, access, obj_type, mode, out):
    obj = k.objects.get(addr)
    if obj is None:
        raise Fatal("ObOpenObjectByPointer(%#x): not an object" % addr)
    want = k.ktm.type_of(obj_type)
    if want is not None and obj.kind != want:
        return wdm.STATUS_OBJECT_TYPE_MISMATCH
    kernel_handle = bool(attributes & wdm.OBJ_KERNEL_HANDLE)
    for_caller = not kernel_handle and (mode & 0xFF) == wdm.USER_MODE
    if not kernel_handle and not for_caller:
        k.violation("ObOpenObjectByPointer without OBJ_KERNEL_HANDLE in KernelMode: the handle "
                    "lands in process %d's table with no access check" % k.pid)
    h = k.new_handle(obj, kernel_handle)
    if not for_caller:
        # A handle for the requesting process (UserMode, no OBJ_KERNEL_HANDLE) is the
        # caller's to close; every other one is the driver's.
        _own(k, h)
    k.write(out, p64(h))
    return wdm.STATUS_SUCCESS


def _own(k, handle):
    """Marks a handle as the driver's, so unload must find it closed."""
    k.driver_handles.add(handle)


@routine("ZwClose", 1)
def zw_close(k, handle):
    st = k.close(handle)
    if st != wdm.STATUS_SUCCESS:
        k.violation("ZwClose(%#x): not an open handle (closed twice?)" % handle)
    k.driver_handles.discard(handle)
    return st


# ---- registry -----------------------------------------------------------------------------

@routine("ZwOpenKey", 3)
def zw_open_key(k, out, access, oa):
    root, name, attrs = k.read_oa(oa)
    if not attrs & wdm.OBJ_KERNEL_HANDLE:
        k.violation("ZwOpenKey without OBJ_KERNEL_HANDLE")
    path = name or ""
    if root:
        parent = k.lookup(root, wdm.KERNEL_MODE)
        if parent is None or parent.kind != "Key":
            return wdm.STATUS_INVALID_HANDLE
        path = parent.path + "\\" + path
    if path.lower() not in k.registry:
        return wdm.STATUS_OBJECT_NAME_NOT_FOUND
    key = k.new_object("Key", path=path)
    h = k.new_handle(key, True)
    _own(k, h)
    k.write(out, p64(h))
    return wdm.STATUS_SUCCESS


@routine("ZwQueryValueKey", 6)
def zw_query_value_key(k, handle, name_us, info_class, buf, length, result_len):
    info_class, length = info_class & 0xFFFFFFFF, length & 0xFFFFFFFF
    key = k.lookup(handle, wdm.KERNEL_MODE)
    if key is None or key.kind != "Key":
        return wdm.STATUS_INVALID_HANDLE
    if info_class != wdm.KEY_VALUE_PARTIAL_INFORMATION:
        k.violation("ZwQueryValueKey class %d: this kernel only answers KeyValuePartialInformation"
                    % info_class)
        return wdm.STATUS_INVALID_PARAMETER
    name = k.read_unicode(name_us)
    value = k.registry[key.path.lower()].get(name.lower())
    if value is None:
        return wdm.STATUS_OBJECT_NAME_NOT_FOUND
    vtype, data = value
    full = p32(0) + p32(vtype) + p32(len(data)) + data
    if result_len:
        k.write(result_len, p32(len(full)))
    if length < 12:
        return wdm.STATUS_BUFFER_TOO_SMALL
    if length < len(full):
        k.write(buf, full[:12])
        return wdm.STATUS_BUFFER_OVERFLOW
    k.write(buf, full)
    return wdm.STATUS_SUCCESS


# ---- devices ------------------------------------------------------------------------------

@routine("IoCreateDevice", 7)
def io_create_device(k, drv, ext_size, name_us, dev_type, chars, exclusive, out):
    ext_size, dev_type, chars = ext_size & 0xFFFFFFFF, dev_type & 0xFFFFFFFF, chars & 0xFFFFFFFF
    return k.io.create_device(drv, ext_size, name_us, dev_type, chars, exclusive, out,
                              sddl=None, secure=False)


@routine("WdmlibIoCreateDeviceSecure", 9)
def wdmlib_io_create_device_secure(k, drv, ext_size, name_us, dev_type, chars, exclusive,
                                   sddl_us, class_guid, out):
    ext_size, dev_type, chars = ext_size & 0xFFFFFFFF, dev_type & 0xFFFFFFFF, chars & 0xFFFFFFFF
    return k.io.create_device(drv, ext_size, name_us, dev_type, chars, exclusive, out,
                              sddl=k.read_unicode(sddl_us), secure=True, class_guid=class_guid)


@routine("IoCreateSymbolicLink", 2)
def io_create_symbolic_link(k, link_us, target_us):
    link, target = k.read_unicode(link_us), k.read_unicode(target_us)
    if link.lower() in k.symlinks:
        return wdm.STATUS_OBJECT_NAME_COLLISION
    if not any(d["name"].lower() == target.lower() for d in k.devices):
        k.violation("IoCreateSymbolicLink(%s -> %s): no such device" % (link, target))
    k.symlinks[link.lower()] = target
    return wdm.STATUS_SUCCESS


@routine("IoDeleteSymbolicLink", 1)
def io_delete_symbolic_link(k, link_us):
    link = k.read_unicode(link_us)
    if k.symlinks.pop(link.lower(), None) is None:
        return wdm.STATUS_OBJECT_NAME_NOT_FOUND
    return wdm.STATUS_SUCCESS


@routine("IoDeleteDevice", 1, APC_LEVEL)
def io_delete_device(k, dev):
    k.io.delete_device(dev)


@routine("IofCompleteRequest", 2, DISPATCH_LEVEL)
def iof_complete_request(k, irp, boost):
    k.io.complete(irp)


# ---- files (the durable log) --------------------------------------------------------------

def _file_io(k):
    """The Zw*File pages: PASSIVE_LEVEL with special kernel APCs enabled (synchronous I/O
    completes through one; Driver Verifier bug checks 0xC4/0xE9 otherwise)."""
    if k.thread["apcs_disabled"]:
        k.violation("%s with all APCs disabled: its page requires special kernel APCs enabled"
                    % k.current_routine)


@routine("ZwCreateFile", 11)
def zw_create_file(k, out, access, oa, iosb, alloc, attrs, share, disposition, options, ea, ealen):
    _file_io(k)
    return k.fs.create(out, access, oa, iosb, disposition & 0xFFFFFFFF, options & 0xFFFFFFFF)


@routine("ZwReadFile", 9)
def zw_read_file(k, h, event, apc, ctx, iosb, buf, length, offset, key):
    _file_io(k)
    return k.fs.read(h, iosb, buf, length, offset)


@routine("ZwWriteFile", 9)
def zw_write_file(k, h, event, apc, ctx, iosb, buf, length, offset, key):
    _file_io(k)
    return k.fs.write(h, iosb, buf, length, offset)


@routine("ZwFlushBuffersFile", 2)
def zw_flush_buffers_file(k, h, iosb):
    _file_io(k)
    return k.fs.flush(h, iosb)


@routine("ZwQueryInformationFile", 5)
def zw_query_information_file(k, h, iosb, info, length, cls):
    _file_io(k)
    return k.fs.query(h, iosb, info, length & 0xFFFFFFFF, cls & 0xFFFFFFFF)


@routine("ZwSetInformationFile", 5)
def zw_set_information_file(k, h, iosb, info, length, cls):
    _file_io(k)
    return k.fs.set_info(h, iosb, info, length & 0xFFFFFFFF, cls & 0xFFFFFFFF)


# ---- work items and the current thread ----------------------------------------------------

@routine("IoAllocateWorkItem", 1, DISPATCH_LEVEL)
def io_allocate_work_item(k, dev):
    if not any(d["addr"] == dev for d in k.devices):
        # The page: "If the caller will later pass the work item to IoQueueWorkItem, DeviceObject
        # must point to a device object."
        k.violation("IoAllocateWorkItem(%#x): not a device object of this driver" % dev)
    if k.work_items_left is not None:
        if k.work_items_left == 0:
            k.fail_work_items = max(k.fail_work_items, 1)
        else:
            k.work_items_left -= 1
    if k.fail_work_items:
        k.fail_work_items -= 1
        k.injected_failures += 1
        return 0
    k.work_stats["allocated"] += 1
    item = k.kalloc(0x40)
    k.work_items[item] = {"device": dev, "queued": False}
    return item


@routine("IoQueueWorkItem", 4, DISPATCH_LEVEL)
def io_queue_work_item(k, item, routine_addr, queue_type, context):
    w = k.work_items.get(item)
    if w is None:
        raise Fatal("IoQueueWorkItem(%#x): not a work item from IoAllocateWorkItem" % item)
    if w["queued"]:
        raise Fatal("IoQueueWorkItem(%#x): already queued" % item)
    if (queue_type & 0xFFFFFFFF) != wdm.DELAYED_WORK_QUEUE:
        k.violation("IoQueueWorkItem with queue type %d: drivers must specify DelayedWorkQueue"
                    % (queue_type & 0xFFFFFFFF))
    if not (k.base <= routine_addr < k.base + k.module.image_size):
        raise Fatal("IoQueueWorkItem: routine %#x is not in the image" % routine_addr)
    w["queued"] = True
    k.work_queue.append((item, routine_addr, context))
    k.work_stats["queued"] += 1


@routine("IoFreeWorkItem", 1, DISPATCH_LEVEL)
def io_free_work_item(k, item):
    w = k.work_items.get(item)
    if w is None:
        raise Fatal("IoFreeWorkItem(%#x): not an allocated work item (freed twice?)" % item)
    if w["queued"]:
        k.violation("IoFreeWorkItem(%#x) while it is queued" % item)
    del k.work_items[item]


@routine("KeAreAllApcsDisabled", 0, DISPATCH_LEVEL)
def ke_are_all_apcs_disabled(k):
    return int(k.thread["apcs_disabled"] or k.irql >= APC_LEVEL)


@routine("IoGetStackLimits", 2, 15)
def io_get_stack_limits(k, low, high):
    bottom = STACK_LIMIT
    if k.thread["short_stack"]:
        # A thread deep in its stack: 2 KiB left below the caller.
        bottom = max(STACK_LIMIT, k.emu.reg_read("rsp") - 2048)
    k.write(low, p64(bottom))
    k.write(high, p64(STACK_TOP))
