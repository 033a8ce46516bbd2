"""The I/O manager's part: the device object, file objects, and IRPs built to the documented x64
layout, sent to the driver's dispatch routines the way the I/O manager sends them for
CreateFile, DeviceIoControl (METHOD_BUFFERED) and CloseHandle. IoCompleteRequest is checked:
exactly once per IRP, Information no larger than the output buffer and 0 on error, the dispatch
routine's return equal to the completion status. A completed IRP's memory is unmapped, so a
driver that touches it afterwards faults."""

import wdm
from kernel import APP_PID, PAGE, SYSTEM_PID, Fatal
from wdm import p16, p32, p64, u32, u64


class Io:
    def __init__(self, k):
        self.k = k
        self.stale = 0xA5  # what the system buffer holds past the input (old pool contents)

    # ---- device objects -------------------------------------------------------------------

    def create_device(self, drv, ext_size, name_us, dev_type, chars, exclusive, out, sddl, secure,
                      class_guid=0):
        k = self.k
        if drv != k.driver_object:
            k.violation("device created for driver object %#x, not this driver's" % drv)
        name = k.read_unicode(name_us) if name_us else ""
        if any(d["name"].lower() == name.lower() for d in k.devices):
            return wdm.STATUS_OBJECT_NAME_COLLISION
        dev = k.kalloc(wdm.DEVICE_OBJECT_SIZE + ext_size)
        k.write(dev, p16(wdm.IO_TYPE_DEVICE) + p16(wdm.DEVICE_OBJECT_SIZE))
        k.write(dev + wdm.DO_DRIVER, p64(drv))
        k.write(dev + wdm.DO_FLAGS, p32(wdm.DO_DEVICE_INITIALIZING) + p32(chars))
        k.write(dev + wdm.DO_EXTENSION, p64(dev + wdm.DEVICE_OBJECT_SIZE if ext_size else 0))
        k.write(dev + wdm.DO_TYPE, p32(dev_type) + p32(1))
        first = k.rq(drv + wdm.DRV_DEVICE)
        k.write(dev + wdm.DO_NEXT, p64(first))
        k.write(drv + wdm.DRV_DEVICE, p64(dev))
        k.devices.append({"addr": dev, "name": name, "chars": chars, "type": dev_type,
                          "exclusive": exclusive & 0xFF, "sddl": sddl, "secure": secure,
                          "class_guid": k.read(class_guid, 16) if class_guid else None,
                          "ext_size": ext_size})
        k.write(out, p64(dev))
        return wdm.STATUS_SUCCESS

    def delete_device(self, dev):
        k = self.k
        d = next((d for d in k.devices if d["addr"] == dev), None)
        if d is None:
            raise Fatal("IoDeleteDevice(%#x): not a device of this driver" % dev)
        if self.open_files:
            k.violation("IoDeleteDevice with %d file object(s) still open" % len(self.open_files))
        k.devices.remove(d)
        drv = k.driver_object
        # Unlink from the driver's device list.
        prev, cur = None, k.rq(drv + wdm.DRV_DEVICE)
        while cur and cur != dev:
            prev, cur = cur, k.rq(cur + wdm.DO_NEXT)
        nxt = k.rq(dev + wdm.DO_NEXT)
        if prev is None:
            k.write(drv + wdm.DRV_DEVICE, p64(nxt))
        else:
            k.write(prev + wdm.DO_NEXT, p64(nxt))
        k.freed.append((dev, wdm.DEVICE_OBJECT_SIZE + d["ext_size"], "a deleted device object"))

    def device(self):
        if not self.k.devices:
            raise Fatal("the driver created no device")
        return self.k.devices[0]

    def finish_driver_entry(self):
        """What the I/O manager does after DriverEntry: clears DO_DEVICE_INITIALIZING."""
        for d in self.k.devices:
            flags = u32(self.k.read(d["addr"] + wdm.DO_FLAGS, 4))
            self.k.write(d["addr"] + wdm.DO_FLAGS, p32(flags & ~wdm.DO_DEVICE_INITIALIZING))

    # ---- IRPs -----------------------------------------------------------------------------

    open_files = None

    def _irp(self, major, file_obj, system_buffer=0, in_len=0, out_len=0, code=0,
             mode=wdm.USER_MODE):
        k = self.k
        size = wdm.IRP_SIZE + wdm.IOSL_SIZE
        irp = k.irp_page()
        k.write(irp, p16(wdm.IO_TYPE_IRP) + p16(size))
        k.write(irp + wdm.IRP_ASSOCIATED, p64(system_buffer))
        k.write(irp + wdm.IRP_STATUS, p64(0xCCCCCCCC) + p64(0xCCCCCCCCCCCCCCCC))
        k.write(irp + wdm.IRP_REQUESTOR_MODE, bytes([mode]))
        k.write(irp + wdm.IRP_STACK_COUNT, bytes([1, 1]))
        k.write(irp + wdm.IRP_THREAD, p64(self.thread))
        sl = irp + wdm.IRP_SIZE
        k.write(irp + wdm.IRP_CURRENT_STACK, p64(sl))
        k.write(irp + wdm.IRP_ORIGINAL_FILE, p64(file_obj))
        k.write(sl, bytes([major, 0, 0, 0]))
        if major == wdm.IRP_MJ_DEVICE_CONTROL:
            k.write(sl + wdm.IOSL_OUTPUT_LEN, p32(out_len))
            k.write(sl + wdm.IOSL_INPUT_LEN, p32(in_len))
            k.write(sl + wdm.IOSL_CODE, p32(code))
        k.write(sl + wdm.IOSL_DEVICE, p64(self.device()["addr"]) + p64(file_obj))
        k.irps[irp] = {"major": major, "completed": 0, "out_len": out_len, "code": code,
                       "buffer": system_buffer}
        return irp

    def send(self, major, file_obj, **kw):
        """Sends one IRP to the driver's dispatch routine for `major`; returns (status,
        information) as completed."""
        k = self.k
        routine = k.major(major)
        if routine == 0:
            k.violation("no dispatch routine for IRP major %#x" % major)
            return None
        irp = self._irp(major, file_obj, **kw)
        saved = k.pid
        k.pid = APP_PID
        ret = k.call("IRP_MJ_%#x" % major, routine, self.device()["addr"], irp) & 0xFFFFFFFF
        k.pid = saved
        rec = k.irps.pop(irp)
        if rec["completed"] == 0:
            if ret == wdm.STATUS_PENDING:
                k.violation("IRP %#x pending: ktmrm completes every IRP synchronously" % major)
            else:
                k.violation("dispatch routine returned %#x without completing the IRP" % ret)
            return ret, 0
        if ret != rec["status"]:
            k.violation("dispatch routine returned %#x but completed the IRP with %#x"
                        % (ret, rec["status"]))
        k.ktm.deliver()
        return rec["status"], rec["information"]

    def complete(self, irp):
        k = self.k
        rec = k.irps.get(irp)
        if rec is None:
            raise Fatal("IoCompleteRequest(%#x): not an IRP this driver owns "
                        "(Verifier bug check 0xC4/0x44: completed twice?)" % irp)
        if rec["completed"]:
            raise Fatal("IoCompleteRequest called twice for one IRP (Verifier bug check 0x44)")
        rec["completed"] += 1
        raw = k.read(irp + wdm.IRP_STATUS, 16)
        status, info = u32(raw), u64(raw, 8)
        rec["status"], rec["information"] = status, info
        if status == wdm.STATUS_PENDING:
            k.violation("IRP completed with STATUS_PENDING")
        if rec["major"] == wdm.IRP_MJ_DEVICE_CONTROL:
            if info > rec["out_len"]:
                k.violation("IOCTL %#x completed with Information %d > OutputBufferLength %d: "
                            "the I/O manager would copy past the caller's buffer"
                            % (rec["code"], info, rec["out_len"]))
            if wdm.nt_error(status) and info:
                k.violation("IOCTL %#x completed with error %#x and Information %d (must be 0)"
                            % (rec["code"], status, info))
            rec["output"] = k.read(rec["buffer"], min(info, rec["out_len"])) if info else b""
        elif info:
            k.violation("IRP major %#x completed with Information %d" % (rec["major"], info))
        # The I/O manager owns the IRP again (and frees it): any later access faults.
        k.dead_pages[irp] = "an IRP after IoCompleteRequest"
        k.irps[irp] = rec

    # ---- what an application does ---------------------------------------------------------

    def open(self, name=""):
        """CreateFile(\\\\.\\KtmRm[name]): IRP_MJ_CREATE with a new file object."""
        k = self.k
        fo = k.kalloc(wdm.FILE_OBJECT_SIZE)
        units = name.encode("utf-16-le")
        buf = k.kalloc(len(units) + 2, units + b"\0\0")
        k.write(fo, p16(wdm.IO_TYPE_FILE) + p16(wdm.FILE_OBJECT_SIZE))
        k.write(fo + wdm.FO_DEVICE, p64(self.device()["addr"]))
        k.write(fo + wdm.FO_FILENAME, p16(len(units)) + p16(len(units) + 2) + p32(0) + p64(buf))
        st, info = self.send(wdm.IRP_MJ_CREATE, fo)
        if st == wdm.STATUS_SUCCESS:
            self.open_files.add(fo)
        return st, fo

    def close(self, fo):
        """CloseHandle: IRP_MJ_CLEANUP, then IRP_MJ_CLOSE once the last reference is gone."""
        a = self.send(wdm.IRP_MJ_CLEANUP, fo)
        b = self.send(wdm.IRP_MJ_CLOSE, fo)
        self.open_files.discard(fo)
        if self.k.rq(fo + wdm.FO_FSCONTEXT):
            self.k.violation("IRP_MJ_CLOSE left FsContext set (its context not freed?)")
        return a, b

    def ioctl(self, fo, code, data, out_len, mode=wdm.USER_MODE, null_buffer=False):
        """DeviceIoControl, METHOD_BUFFERED: one system buffer of max(in, out) bytes holding the
        input, the rest old pool contents; returns (status, output bytes)."""
        k = self.k
        size = max(len(data), out_len)
        buf = 0
        if size and not null_buffer:
            buf = k.kalloc(size + PAGE, page=True)
            k.write(buf, data + bytes([self.stale]) * (size - len(data)))
        st, info = self.send(wdm.IRP_MJ_DEVICE_CONTROL, fo, system_buffer=buf,
                             in_len=len(data), out_len=out_len, code=code, mode=mode)
        out = k.read(buf, info) if info and buf else b""
        if buf and info and bytes([self.stale]) * 4 in out:
            k.violation("IOCTL %#x returned stale system-buffer bytes" % code)
        return st, out


def attach(k):
    k.io = Io(k)
    k.io.open_files = set()
    k.io.thread = k.kalloc(0x100)
    _ = SYSTEM_PID
