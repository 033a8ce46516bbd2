"""A small file system for the durable log: ZwCreateFile / ZwReadFile / ZwWriteFile /
ZwFlushBuffersFile / ZwQueryInformationFile(FileStandardInformation) / ZwSetInformationFile
(FileEndOfFileInformation, FileRenameInformation), synchronous, on kernel handles. Files live in
memory for one boot; `flushed` keeps each file as it was at its last flush."""

import struct

import wdm
from apis import _own
from wdm import p64, u32

FILE_SUPERSEDE, FILE_OPEN, FILE_CREATE, FILE_OPEN_IF, FILE_OVERWRITE, FILE_OVERWRITE_IF = range(6)
FILE_DIRECTORY_FILE = 0x1
FILE_SYNCHRONOUS_IO_NONALERT = 0x20
FILE_NON_DIRECTORY_FILE = 0x40
FILE_STANDARD_INFORMATION = 5
FILE_RENAME_INFORMATION = 10
FILE_END_OF_FILE_INFORMATION = 20


class Fs:
    def __init__(self, k):
        self.k = k
        self.dirs = {"\\systemroot"}
        self.data = {}
        self.flushed = {}
        self.flushes = 0
        self.flushed_in = []  # which entry point each flush ran in (kernel.in_image)
        self.renamed_in = []  # likewise for each rename (a checkpoint)

    def _iosb(self, iosb, st, info):
        if iosb:
            self.k.write(iosb, p64(st) + p64(info))
        return st

    def _file(self, h):
        obj = self.k.lookup(h, wdm.KERNEL_MODE)
        return obj if obj is not None and obj.kind == "File" else None

    def create(self, out, access, oa, iosb, disposition, options):
        k = self.k
        root, name, attrs = k.read_oa(oa)
        if root or not name:
            k.violation("ZwCreateFile: relative or empty name")
            return wdm.STATUS_INVALID_PARAMETER
        if not attrs & wdm.OBJ_KERNEL_HANDLE:
            k.violation("ZwCreateFile without OBJ_KERNEL_HANDLE")
        if not options & FILE_SYNCHRONOUS_IO_NONALERT:
            k.violation("ZwCreateFile without FILE_SYNCHRONOUS_IO_NONALERT: the driver's I/O "
                        "would be asynchronous")
        path = name.lower()
        parent = path.rsplit("\\", 1)[0]
        if parent not in self.dirs:
            return self._iosb(iosb, wdm.STATUS_OBJECT_PATH_NOT_FOUND, 0)
        if options & FILE_DIRECTORY_FILE:
            existed = path in self.dirs
            if disposition == FILE_CREATE and existed:
                return self._iosb(iosb, wdm.STATUS_OBJECT_NAME_COLLISION, 0)
            if disposition == FILE_OPEN and not existed:
                return self._iosb(iosb, wdm.STATUS_OBJECT_NAME_NOT_FOUND, 0)
            self.dirs.add(path)
        else:
            existed = path in self.data
            if disposition in (FILE_OPEN, FILE_OVERWRITE) and not existed:
                return self._iosb(iosb, wdm.STATUS_OBJECT_NAME_NOT_FOUND, 0)
            if disposition == FILE_CREATE and existed:
                return self._iosb(iosb, wdm.STATUS_OBJECT_NAME_COLLISION, 0)
            if not existed or disposition in (FILE_SUPERSEDE, FILE_OVERWRITE, FILE_OVERWRITE_IF):
                self.data[path] = bytearray()
        f = k.new_object("File", path=path, directory=bool(options & FILE_DIRECTORY_FILE))
        h = k.new_handle(f, True)
        _own(k, h)
        k.write(out, p64(h))
        return self._iosb(iosb, wdm.STATUS_SUCCESS, 1 if existed else 2)

    def read(self, h, iosb, buf, length, offset):
        f = self._file(h)
        if f is None:
            return wdm.STATUS_INVALID_HANDLE
        off = struct.unpack("<q", self.k.read(offset, 8))[0] if offset else 0
        data = self.data[f.path]
        if off >= len(data):
            return self._iosb(iosb, wdm.STATUS_END_OF_FILE, 0)
        chunk = bytes(data[off:off + (length & 0xFFFFFFFF)])
        self.k.write(buf, chunk)
        return self._iosb(iosb, wdm.STATUS_SUCCESS, len(chunk))

    def write(self, h, iosb, buf, length, offset):
        f = self._file(h)
        if f is None:
            return wdm.STATUS_INVALID_HANDLE
        length &= 0xFFFFFFFF
        off = struct.unpack("<q", self.k.read(offset, 8))[0] if offset else 0
        data = self.data[f.path]
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off:off + length] = self.k.read(buf, length)
        return self._iosb(iosb, wdm.STATUS_SUCCESS, length)

    def flush(self, h, iosb):
        f = self._file(h)
        if f is None:
            return wdm.STATUS_INVALID_HANDLE
        self.flushes += 1
        self.flushed_in.append(self.k.in_image)
        self.flushed[f.path] = bytes(self.data[f.path])
        return self._iosb(iosb, wdm.STATUS_SUCCESS, 0)

    def query(self, h, iosb, info, length, cls):
        f = self._file(h)
        if f is None:
            return wdm.STATUS_INVALID_HANDLE
        if cls != FILE_STANDARD_INFORMATION or length < 24:
            self.k.violation("ZwQueryInformationFile class %d, %d bytes" % (cls, length))
            return wdm.STATUS_INVALID_PARAMETER
        size = len(self.data[f.path])
        self.k.write(info, struct.pack("<qqIBB2x", size, size, 1, 0, 0))
        return self._iosb(iosb, wdm.STATUS_SUCCESS, 24)

    def set_info(self, h, iosb, info, length, cls):
        k = self.k
        f = self._file(h)
        if f is None:
            return wdm.STATUS_INVALID_HANDLE
        if cls == FILE_END_OF_FILE_INFORMATION:
            end = struct.unpack("<q", k.read(info, 8))[0]
            data = self.data[f.path]
            del data[end:]
            data.extend(bytes(end - len(data)))
            return self._iosb(iosb, wdm.STATUS_SUCCESS, 0)
        if cls == FILE_RENAME_INFORMATION:
            raw = k.read(info, length)
            replace, root, name_len = raw[0], struct.unpack_from("<Q", raw, 8)[0], u32(raw, 16)
            target = raw[20:20 + name_len].decode("utf-16-le").lower()
            if root:
                k.violation("FileRenameInformation with a RootDirectory")
            if target in self.data and not replace:
                return self._iosb(iosb, wdm.STATUS_OBJECT_NAME_COLLISION, 0)
            if any(o.kind == "File" and o.path == target and o.handles
                   for o in k.objects.values()):
                return self._iosb(iosb, wdm.STATUS_ACCESS_DENIED, 0)
            self.data[target] = self.data.pop(f.path)
            self.flushed[target] = self.flushed.pop(f.path, b"")
            f.path = target
            self.renamed_in.append(k.in_image)
            return self._iosb(iosb, wdm.STATUS_SUCCESS, 0)
        k.violation("ZwSetInformationFile class %d" % cls)
        return wdm.STATUS_INVALID_PARAMETER


def attach(k):
    k.fs = Fs(k)
