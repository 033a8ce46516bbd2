"""ktmrm's IOCTL requests, byte for byte as crates/proto/src/request.rs lays them out (protocol
version 1: a 16-byte header `version u16, flags u16, body_len u32, tx u64`, then the body)."""

import struct

GET_VERSION = 0x00222000
BEGIN = 0x0022A004
PUT = 0x0022A008
GET = 0x0022600C
DELETE = 0x0022A010
LIST = 0x00226014
STATS = 0x00226018
CODES = {GET_VERSION: "GET_VERSION", BEGIN: "BEGIN", PUT: "PUT", GET: "GET", DELETE: "DELETE",
         LIST: "LIST", STATS: "STATS"}

VERSION_LEN = 48
STATS_LEN = 120
LIST_MIN_OUTPUT = 8 + 2 + 255


def header(body, tx=0, version=1, flags=0):
    return struct.pack("<HHIQ", version, flags, len(body), tx) + body


# Header flags bits 0-1: the isolation level a request states (0 = not stated).
READ_COMMITTED = 1
SERIALIZABLE = 2


def begin(timeout_ms=0, description="", flags=0):
    units = description.encode("utf-16-le")
    return header(struct.pack("<IHH", timeout_ms, len(units) // 2, 0) + units, flags=flags)


def put(tx, key, value, flags=0):
    return header(struct.pack("<HHI", len(key), 0, len(value)) + key + value, tx, flags=flags)


def get(tx, key, flags=0):
    return header(struct.pack("<HH", len(key), 0) + key, tx, flags=flags)


def delete(tx, key, flags=0):
    return header(struct.pack("<HH", len(key), 0) + key, tx, flags=flags)


def list_keys(tx, prefix=b"", cursor=b"", max_keys=0, flags=0):
    body = struct.pack("<HHI", len(prefix), len(cursor), max_keys) + prefix + cursor
    return header(body, tx, flags=flags)


def stats():
    return header(b"")


def parse_list(out):
    count, flags = struct.unpack_from("<II", out)
    keys, at = [], 8
    for _ in range(count):
        n = struct.unpack_from("<H", out, at)[0]
        keys.append(out[at + 2:at + 2 + n])
        at += 2 + n
    return keys, flags


def parse_get(out):
    n = struct.unpack_from("<I", out)[0]
    return out[8:8 + n]
