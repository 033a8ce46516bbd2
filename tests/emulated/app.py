"""What an application does with the emulated driver: DeviceIoControl on a handle to \\\\.\\KtmRm
and ktmw32's transaction calls. Every step is also recorded as a trace that `ktmrm-test --sim
replay` can send to the simulated device, for the byte-for-byte differential check."""

import json
import struct

import proto
import wdm


class CheckFailed(Exception):
    pass


def name_of(status):
    return "%#010x" % (status & 0xFFFFFFFF)


class App:
    def __init__(self, k):
        self.k = k
        self.fo = None
        self.tx = {}  # name -> handle value in the app's process
        self.steps = []  # the trace, for replay
        self.answers = []  # what the emulated driver answered, normalised like replay's output

    def open(self):
        st, fo = self.k.io.open()
        expect(st == wdm.STATUS_SUCCESS, "CreateFile(\\\\.\\KtmRm): %s" % name_of(st))
        self.fo = fo
        return fo

    def close(self):
        self.k.io.close(self.fo)
        self.fo = None

    # ---- DeviceIoControl ----------------------------------------------------------------

    def ioctl(self, code, data, out_len, tx=None, bind=None, record=True, fo=None):
        if tx is not None:
            data = data[:8] + struct.pack("<Q", self.tx[tx]) + data[16:]
        st, out = self.k.io.ioctl(fo or self.fo, code, data, out_len)
        if record:
            step = {"ioctl": code, "input": data.hex(), "out_len": out_len}
            if tx is not None:
                step["tx"] = tx
            if bind is not None:
                step["bind"] = bind
            self.steps.append(step)
            shown = out.hex()
            if bind is not None and st == wdm.STATUS_SUCCESS and len(out) == 8:
                shown = "<%s>" % bind
            self.answers.append({"status": name_of(st), "output": shown})
        if bind is not None and st == wdm.STATUS_SUCCESS and len(out) == 8:
            self.tx[bind] = struct.unpack("<Q", out)[0]
        return st, out

    def begin(self, name, timeout_ms=0, description="", flags=0):
        st, out = self.ioctl(proto.BEGIN, proto.begin(timeout_ms, description, flags), 8, bind=name)
        expect(st == wdm.STATUS_SUCCESS and len(out) == 8, "BEGIN: %s" % name_of(st))
        return self.tx[name]

    def put(self, tx, key, value, flags=0):
        return self.ioctl(proto.PUT, proto.put(0, key, value, flags), 0, tx=tx)[0]

    def get(self, tx, key, out_len=1024, flags=0):
        st, out = self.ioctl(proto.GET, proto.get(0, key, flags), out_len, tx=tx)
        return st, (proto.parse_get(out) if st == wdm.STATUS_SUCCESS else out)

    def delete(self, tx, key, flags=0):
        return self.ioctl(proto.DELETE, proto.delete(0, key, flags), 0, tx=tx)[0]

    def list(self, tx, prefix=b"", cursor=b"", max_keys=0, out_len=4096, flags=0):
        data = proto.list_keys(0, prefix, cursor, max_keys, flags)
        st, out = self.ioctl(proto.LIST, data, out_len, tx=tx)
        return st, (proto.parse_list(out) if st == wdm.STATUS_SUCCESS else out)

    # ---- ktmw32 -------------------------------------------------------------------------

    def _ktm(self, op, name, status):
        self.steps.append({op: name})
        self.answers.append({"status": name_of(status)})
        return status

    def commit(self, name, single_phase=False):
        return self._ktm("commit", name, self.k.ktm.commit(self.tx[name], single_phase))

    def rollback(self, name):
        return self._ktm("rollback", name, self.k.ktm.rollback(self.tx[name]))

    def close_tx(self, name):
        saved, self.k.pid = self.k.pid, 0x1F4C
        st = self.k.close(self.tx[name], wdm.USER_MODE)
        self.k.pid = saved
        self.k.ktm.deliver()
        return self._ktm("close", name, st)

    def elapse(self, ms):
        self.k.ktm.elapse(ms)
        self.steps.append({"elapse": ms})
        self.answers.append({"status": name_of(wdm.STATUS_SUCCESS)})

    def veto(self, name):
        self.k.ktm.enlist_other(self.tx[name], "no")
        return self._ktm("veto", name, wdm.STATUS_SUCCESS)

    def trace(self):
        return "\n".join(json.dumps(s) for s in self.steps) + "\n"


def expect(cond, text):
    if not cond:
        raise CheckFailed(text)


def expect_eq(got, want, what):
    if got != want:
        raise CheckFailed("%s: got %r, want %r" % (what, got, want))
