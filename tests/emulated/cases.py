"""The cases run against ktmrm.sys in the emulated kernel. Each gets a fresh boot: DriverEntry
(checked by the runner), the case, then DriverUnload and the Verifier-style leftovers check.
A case's IOCTLs and KTM actions are replayed on the simulated device afterwards and must get the
same answers byte for byte (unless the case says `diff=False`: IRP-level faults the simulator
has no way to send)."""

import collections
import struct

import proto
import wdm
from app import App, expect, expect_eq, name_of

CASES = []

SECURE_SDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
OK = wdm.STATUS_SUCCESS
NOT_FOUND = wdm.STATUS_OBJECT_NAME_NOT_FOUND
INVALID_BUFFER_SIZE = 0xC0000206
INVALID_DEVICE_REQUEST = 0xC0000010
REVISION_MISMATCH = 0xC0000059
CONFLICT = 0xC0190001
PARAMETER_MIX = 0xC0000030


def case(name, diff=True, params=None, boot=True, xfail=None, hide=()):
    """`xfail`: a known driver defect this case exposes; the case must fail with it, and a pass
    is reported so the mark gets removed."""

    def wrap(fn):
        CASES.append({"name": name, "fn": fn, "diff": diff, "params": params or {},
                      "boot": boot, "xfail": xfail, "hide": hide})
        return fn

    return wrap


def notifications(k, tx_id=None):
    """The driver's answers, in order: (notification, answer)."""
    return [(n, a) for t, who, n, a in k.ktm.log
            if who == "driver" and (tx_id is None or t == tx_id)]


# ---- DriverEntry and the device ------------------------------------------------------------

@case("driver-entry-volatile")
def driver_entry_volatile(k, app, run):
    (dev,) = k.devices
    expect_eq(dev["name"], "\\Device\\KtmRm", "device name")
    expect_eq(dev["type"], wdm.FILE_DEVICE_UNKNOWN, "device type")
    expect(dev["chars"] & wdm.FILE_DEVICE_SECURE_OPEN, "FILE_DEVICE_SECURE_OPEN not set")
    expect_eq(dev["exclusive"], 0, "Exclusive")
    expect_eq(dev["ext_size"], 8, "device extension size")
    expect("WdmlibIoCreateDeviceSecure" in k.stand_ins, "no linker map naming the "
           "WdmlibIoCreateDeviceSecure stand-in beside the image: its SDDL cannot be checked")
    expect_eq(dev["sddl"], SECURE_SDDL, "the device's SDDL")
    expect(dev["class_guid"] not in (None, bytes(16)), "WdmlibIoCreateDeviceSecure without a "
           "device class GUID (its page asks drivers that are not WDM function drivers for one)")
    expect_eq(k.symlinks, {"\\dosdevices\\ktmrm": "\\Device\\KtmRm"}, "symbolic links")
    for mj in range(wdm.IRP_MJ_MAXIMUM_FUNCTION + 1):
        routine = k.major(mj)
        served = mj in (wdm.IRP_MJ_CREATE, wdm.IRP_MJ_CLOSE, wdm.IRP_MJ_CLEANUP,
                        wdm.IRP_MJ_DEVICE_CONTROL)
        expect(bool(routine) == served, "MajorFunction[%#x] = %#x" % (mj, routine))
        if routine:
            expect(k.base <= routine < k.base + k.module.image_size, "dispatch outside the image")
    tms = [o for o in k.objects.values() if o.kind == "TransactionManager"]
    rms = [o for o in k.objects.values() if o.kind == "ResourceManager"]
    expect(len(tms) == 1 and tms[0].volatile, "one volatile transaction manager")
    expect(len(rms) == 1 and rms[0].volatile and rms[0].callback, "one volatile RM with a callback")
    expect_eq(rms[0].key != 0, True, "TmEnableCallbacks RMKey")


@case("driver-entry-trace-level", params={"TraceLevel": 4})
def driver_entry_trace_level(k, app, run):
    expect(any("DriverEntry" in t for t in k.trace), "TraceLevel 4 from Parameters: no trace of "
           "DriverEntry (got %d lines)" % len(k.trace))
    app.open()
    n = len(k.trace)
    app.ioctl(proto.GET_VERSION, b"", proto.VERSION_LEN)
    expect(len(k.trace) > n, "verbose level: an IOCTL leaves a trace line")
    app.close()


@case("driver-entry-quiet-by-default")
def driver_entry_quiet(k, app, run):
    app.open()
    app.ioctl(proto.GET_VERSION, b"", proto.VERSION_LEN)
    expect_eq(k.trace, [], "trace lines at the default level (warnings and errors only)")
    app.close()


@case("create-and-names", diff=False)
def create_and_names(k, app, run):
    fo = app.open()
    expect(k.rq(fo + wdm.FO_FSCONTEXT) != 0, "IRP_MJ_CREATE left FsContext empty")
    st, fo2 = k.io.open("\\sub")
    expect_eq(name_of(st), name_of(NOT_FOUND), "open of \\\\.\\KtmRm\\sub")
    expect_eq(k.rq(fo2 + wdm.FO_FSCONTEXT), 0, "FsContext of a refused open")
    app.close()


# ---- requests --------------------------------------------------------------------------------

@case("get-version")
def get_version(k, app, run):
    app.open()
    st, out = app.ioctl(proto.GET_VERSION, b"", proto.VERSION_LEN)
    expect_eq(st, OK, "status")
    version, _r, size, max_key, max_value = struct.unpack_from("<HHIII", out)
    expect_eq((version, size, max_key, max_value), (1, 48, 255, 65536), "version answer")
    st, out = app.ioctl(proto.GET_VERSION, b"", 47)
    expect_eq(name_of(st), name_of(wdm.STATUS_BUFFER_TOO_SMALL), "47-byte output")
    app.close()


@case("stats")
def stats(k, app, run):
    app.open()
    app.put(None, b"s1", b"v")
    st, out = app.ioctl(proto.STATS, proto.stats(), proto.STATS_LEN)
    expect_eq(st, OK, "status")
    expect_eq(struct.unpack_from("<I", out)[0], proto.STATS_LEN, "STATS size field")
    app.close()


@case("non-transacted-put-get-delete-list")
def non_transacted(k, app, run):
    app.open()
    for key, value in ((b"b", b"2"), (b"a", b"1"), (b"c", b"33")):
        expect_eq(app.put(None, key, value), OK, "PUT %r" % key)
    expect_eq(app.get(None, b"c"), (OK, b"33"), "GET c")
    expect_eq(app.list(None), (OK, ([b"a", b"b", b"c"], 0)), "LIST")
    expect_eq(app.delete(None, b"b"), OK, "DELETE b")
    expect_eq(app.get(None, b"b")[0], NOT_FOUND, "GET of a deleted key")
    expect_eq(app.delete(None, b"b"), NOT_FOUND, "DELETE of a deleted key")
    st, page = app.list(None, max_keys=1)
    expect_eq((st, page), (OK, ([b"a"], 1)), "LIST page 1 with MORE")
    expect_eq(app.list(None, cursor=b"a"), (OK, ([b"c"], 0)), "LIST after the cursor")
    app.close()


@case("transaction-commit")
def transaction_commit(k, app, run):
    app.open()
    app.put(None, b"acct/a", b"100")
    app.begin("T1", description="transfer")
    expect_eq(app.put("T1", b"acct/a", b"90"), OK, "PUT in T1")
    expect_eq(app.put("T1", b"acct/new", b"1"), OK, "PUT new key in T1")
    expect_eq(app.get("T1", b"acct/a"), (OK, b"90"), "T1 reads its own write")
    expect_eq(app.get(None, b"acct/a"), (OK, b"100"), "committed view before commit")
    expect_eq(app.list("T1", b"acct/"), (OK, ([b"acct/a", b"acct/new"], 0)), "LIST in T1")
    expect_eq(app.list(None, b"acct/"), (OK, ([b"acct/a"], 0)), "LIST outside T1")
    tx = k.ktm.transactions[-1]
    expect_eq(tx.description, "transfer", "the transaction's description")
    expect_eq(app.commit("T1"), OK, "CommitTransaction")
    expect_eq(notifications(k, tx.id), [("PREPREPARE", "PrePrepareComplete"),
                                         ("PREPARE", "PrepareComplete"),
                                         ("COMMIT", "CommitComplete")], "notifications")
    expect_eq(app.get(None, b"acct/a"), (OK, b"90"), "committed value")
    expect_eq(app.get(None, b"acct/new"), (OK, b"1"), "committed new key")
    expect_eq(app.put("T1", b"x", b"1"), wdm.STATUS_TRANSACTION_NOT_ACTIVE, "PUT after commit")
    app.close_tx("T1")
    app.close()


@case("transaction-rollback")
def transaction_rollback(k, app, run):
    app.open()
    app.begin("T1")
    app.put("T1", b"k", b"v")
    expect_eq(app.rollback("T1"), OK, "RollbackTransaction")
    expect_eq(notifications(k), [("ROLLBACK", "RollbackComplete")], "notifications")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "rolled-back key")
    expect_eq(app.put("T1", b"k", b"w"), wdm.STATUS_TRANSACTION_NOT_ACTIVE, "PUT after rollback")
    app.close_tx("T1")
    app.close()


@case("single-phase-commit", diff=False)
def single_phase_commit(k, app, run):
    """KTM sends SINGLE_PHASE_COMMIT only to a sole enlistment that asked for it; the driver
    must then commit with CommitComplete or reject, and otherwise gets the two phases."""
    app.open()
    app.begin("T1")
    app.put("T1", b"k", b"v")
    (e,) = [e for e in k.ktm.enlistments if e.rm is not None]
    expect_eq(app.commit("T1", single_phase=True), OK, "commit")
    two_phase = [("PREPREPARE", "PrePrepareComplete"), ("PREPARE", "PrepareComplete"),
                 ("COMMIT", "CommitComplete")]
    allowed = [two_phase]
    if e.mask & wdm.NOTIFY_SINGLE_PHASE_COMMIT:
        allowed = [[("SINGLE_PHASE_COMMIT", "CommitComplete")],
                   [("SINGLE_PHASE_COMMIT", "SinglePhaseReject")] + two_phase]
    got = notifications(k)
    expect(got in allowed, "notification mask %#x, answers %r" % (e.mask, got))
    expect_eq(app.get(None, b"k"), (OK, b"v"), "committed")
    app.close_tx("T1")
    app.close()


@case("read-only-transaction")
def read_only(k, app, run):
    app.open()
    app.put(None, b"k", b"v")
    app.begin("T1")
    expect_eq(app.get("T1", b"k"), (OK, b"v"), "GET in T1")
    expect_eq(app.commit("T1"), OK, "commit")
    for n, a in notifications(k):
        expect(a in ("PrePrepareComplete", "ReadOnlyEnlistment"),
               "a transaction that only read answered %s with %s" % (n, a))
    app.close_tx("T1")
    app.close()


@case("no-vote-from-a-second-rm")
def no_vote(k, app, run):
    app.open()
    app.begin("T1")
    app.put("T1", b"k", b"v")
    app.veto("T1")
    expect_eq(app.commit("T1"), wdm.STATUS_TRANSACTION_ABORTED, "commit after a no vote")
    mine = notifications(k)
    expect(mine and mine[-1] == ("ROLLBACK", "RollbackComplete"),
           "the driver's enlistment ends with ROLLBACK/RollbackComplete: %r" % mine)
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "vetoed write")
    expect_eq(app.put(None, b"k", b"w"), OK, "key lock released")
    app.close_tx("T1")
    app.close()


@case("no-vote-before-the-driver-prepares")
def no_vote_first(k, app, run):
    app.open()
    app.begin("T1")
    app.veto("T1")  # the other RM enlists first, so its no vote comes before the driver's PREPARE
    app.put("T1", b"k", b"v")
    expect_eq(app.commit("T1"), wdm.STATUS_TRANSACTION_ABORTED, "commit after a no vote")
    mine = notifications(k)
    expect(("PREPARE", "PrepareComplete") not in mine and mine[-1] == ("ROLLBACK", "RollbackComplete"),
           "ROLLBACK instead of PREPARE: %r" % mine)
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "vetoed write")
    app.close_tx("T1")
    app.close()


@case("handle-closed-mid-transaction")
def handle_closed(k, app, run):
    app.open()
    app.begin("T1")
    app.put("T1", b"k", b"v")
    expect_eq(app.close_tx("T1"), OK, "CloseHandle")
    expect_eq(notifications(k), [("ROLLBACK", "RollbackComplete")], "KTM rolled it back")
    expect_eq(app.put("T1", b"k", b"w"), wdm.STATUS_INVALID_HANDLE, "PUT with the closed handle")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "nothing committed")
    expect_eq(app.put(None, b"k", b"w"), OK, "key lock released")
    app.close()


@case("transaction-timeout")
def timeout(k, app, run):
    app.open()
    app.begin("T1", timeout_ms=100)
    expect_eq(k.ktm.transactions[-1].timeout, -100 * 10_000, "ZwCreateTransaction's Timeout")
    app.put("T1", b"k", b"v")
    app.elapse(50)
    expect_eq(app.get("T1", b"k"), (OK, b"v"), "before the timeout")
    app.elapse(60)
    expect_eq(notifications(k), [("ROLLBACK", "RollbackComplete")], "KTM's timeout rolled back")
    expect_eq(app.put("T1", b"k", b"w"), wdm.STATUS_TRANSACTION_NOT_ACTIVE, "PUT after the timeout")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "nothing committed")
    app.close_tx("T1")
    app.close()


@case("handle-without-enlist-access", diff=False)
def handle_without_enlist(k, app, run):
    """A transaction handle the app opened for query only: the driver must look it up with the
    caller's mode and be refused, never enlist through it."""
    app.open()
    tx = k.new_object("Transaction", id=99, state="active", enlistments=[], description=None,
                      timeout=None, created_100ns=0, uow=bytes(16), granted=0x1)
    k.ktm.transactions.append(tx)
    h = k.new_handle(tx, False, pid=0x1F4C)
    st, _ = app.ioctl(proto.PUT, proto.put(h, b"k", b"v"), 0, record=False)
    expect_eq(name_of(st), name_of(wdm.STATUS_ACCESS_DENIED), "PUT through a query-only handle")
    expect_eq(tx.enlistments, [], "enlistments in that transaction")
    app.close()


@case("rollback-before-the-enlistment-returns", diff=False)
def rollback_racing_enlist(k, app, run):
    """The app rolls T1 back on another thread while the driver enlists for T1's first PUT;
    KTM's ROLLBACK reaches the callback before ZwCreateEnlistment (or TmCreateEnlistment)
    returns, as its pages allow. The write must leave no trace, the enlistment must end."""
    app.open()
    app.begin("T1")

    def rollback(tx):
        k.ktm.abort(tx)

    k.ktm.races = {"ZwCreateEnlistment": rollback, "TmCreateEnlistment": rollback}
    st = app.put("T1", b"k", b"v")
    expect(len(k.ktm.races) == 1, "the driver did not enlist")
    k.ktm.races = {}
    expect(st in (OK, wdm.STATUS_TRANSACTION_NOT_ACTIVE), "PUT: %s" % name_of(st))
    expect_eq(notifications(k), [("ROLLBACK", "RollbackComplete")], "the driver's answers")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "nothing committed")
    expect_eq(app.put(None, b"k", b"w"), OK, "no key lock left")
    app.close_tx("T1")
    app.close()


@case("write-write-conflict")
def conflict(k, app, run):
    app.open()
    app.begin("T1")
    app.begin("T2")
    expect_eq(app.put("T1", b"k", b"1"), OK, "PUT in T1")
    expect_eq(app.put("T2", b"k", b"2"), CONFLICT, "PUT in T2")
    expect_eq(app.delete("T2", b"k"), CONFLICT, "DELETE in T2")
    expect_eq(app.put(None, b"k", b"3"), CONFLICT, "non-transacted PUT")
    expect_eq(app.get("T2", b"k")[0], NOT_FOUND, "T2 reads the committed view")
    expect_eq(app.commit("T1"), OK, "commit T1")
    expect_eq(app.commit("T2"), OK, "commit T2 (read only)")
    expect_eq(app.get(None, b"k"), (OK, b"1"), "T1's value")
    app.close_tx("T1")
    app.close_tx("T2")
    app.close()


@case("serializable-lost-update-and-phantom")
def serializable(k, app, run):
    """Serializable transactions through the driver's IOCTL path: a BEGIN stating the level
    enlists at once; a reader whose read a commit overwrote cannot write or commit; a LIST
    range a commit inserted into (a phantom) dooms its reader; a request stating the other
    level is refused; read committed still loses the update."""
    ser, rc = proto.SERIALIZABLE, proto.READ_COMMITTED
    app.open()
    app.put(None, b"acct", b"100")
    app.begin("T1", flags=ser)
    expect_eq(sum(1 for _ in notifications(k)), 0, "no notification yet")
    expect_eq(len(k.ktm.transactions[-1].enlistments), 1, "BEGIN stating serializable enlists")
    app.begin("T2")
    expect_eq(app.get("T1", b"acct", flags=ser), (OK, b"100"), "T1 reads")
    expect_eq(app.get("T2", b"acct", flags=ser), (OK, b"100"), "T2 reads (and is serializable)")
    expect_eq(app.get("T2", b"acct", flags=rc)[0], PARAMETER_MIX, "T2 stated the other level")
    expect_eq(app.list("T2", b"l/", flags=ser), (OK, ([], 0)), "T2 lists an empty range")
    expect_eq(app.put("T1", b"acct", b"90", flags=ser), OK, "T1 writes")
    expect_eq(app.commit("T1"), OK, "T1 commits")
    expect_eq(app.put("T2", b"acct", b"80", flags=ser), CONFLICT, "T2 is doomed: its write")
    expect_eq(app.get("T2", b"acct", flags=ser), (OK, b"90"), "a doomed reader still reads")
    expect_eq(app.commit("T2"), wdm.STATUS_TRANSACTION_ABORTED, "T2 votes no")
    expect_eq(app.get(None, b"acct"), (OK, b"90"), "T1's update stands")
    app.begin("T3")
    expect_eq(app.list("T3", b"l/", flags=ser), (OK, ([], 0)), "T3 lists an empty range")
    expect_eq(app.put(None, b"l/new", b"1"), OK, "a phantom committed at once")
    expect_eq(app.commit("T3"), wdm.STATUS_TRANSACTION_ABORTED, "read-only T3 votes no")
    app.begin("T4")
    app.begin("T5")
    expect_eq(app.get("T4", b"acct"), (OK, b"90"), "read committed T4 reads")
    expect_eq(app.get("T5", b"acct"), (OK, b"90"), "read committed T5 reads")
    expect_eq(app.put("T4", b"acct", b"70"), OK, "T4 writes")
    expect_eq(app.commit("T4"), OK, "T4 commits")
    expect_eq(app.put("T5", b"acct", b"60"), OK, "T5 writes over T4's update")
    expect_eq(app.commit("T5"), OK, "read committed loses the update")
    for t in ("T1", "T2", "T3", "T4", "T5"):
        app.close_tx(t)
    app.close()


# ---- bad input -------------------------------------------------------------------------------

@case("bad-input-short-buffers")
def short_buffers(k, app, run):
    app.open()
    good = proto.put(0, b"k", b"v")
    for n in (0, 1, 15):
        st, _ = app.ioctl(proto.PUT, good[:n], 0)
        expect_eq(name_of(st), name_of(INVALID_BUFFER_SIZE), "%d-byte PUT" % n)
    st, _ = app.ioctl(proto.PUT, good[:-1], 0)
    expect_eq(name_of(st), name_of(INVALID_BUFFER_SIZE), "body one byte short")
    st, _ = app.ioctl(proto.PUT, proto.header(good[16:], version=2), 0)
    expect_eq(name_of(st), name_of(REVISION_MISMATCH), "version 2")
    app.put(None, b"k", b"0123456789")
    st, out = app.ioctl(proto.GET, proto.get(0, b"k"), 7)
    expect_eq((name_of(st), out), (name_of(wdm.STATUS_BUFFER_TOO_SMALL), b""), "GET into 7 bytes")
    st, out = app.ioctl(proto.GET, proto.get(0, b"k"), 12)
    expect_eq(name_of(st), name_of(wdm.STATUS_BUFFER_OVERFLOW), "GET into 12 bytes")
    expect_eq(out, struct.pack("<II", 10, 0), "BUFFER_OVERFLOW carries the needed length only")
    st, _ = app.ioctl(proto.LIST, proto.list_keys(0), proto.LIST_MIN_OUTPUT - 1)
    expect_eq(name_of(st), name_of(wdm.STATUS_BUFFER_TOO_SMALL), "LIST below its minimum")
    app.close()


@case("bad-input-oversized")
def oversized(k, app, run):
    app.open()
    for what, req in (("256-byte key", proto.put(0, b"k" * 256, b"v")),
                      ("65,537-byte value", proto.put(0, b"k", b"v" * 65537)),
                      ("empty key", proto.put(0, b"", b"v")),
                      ("65-char description", proto.begin(0, "d" * 65))):
        code = proto.BEGIN if "description" in what else proto.PUT
        st, _ = app.ioctl(code, req, 8)
        expect_eq(name_of(st), name_of(wdm.STATUS_INVALID_PARAMETER), what)
    big = proto.put(0, b"k", b"v" * 65536)
    expect_eq(app.ioctl(proto.PUT, big, 0)[0], OK, "largest value")
    st, out = app.get(None, b"k", out_len=8 + 65536)
    expect_eq((st, len(out)), (OK, 65536), "largest value read back")
    st, _ = app.ioctl(proto.PUT, big + b"x", 0)
    expect_eq(name_of(st), name_of(INVALID_BUFFER_SIZE), "a byte past body_len")
    app.close()


@case("unknown-control-codes")
def unknown_codes(k, app, run):
    app.open()
    for code in (0x5D5D5D5D, 0x00222FFC, proto.PUT | 3, proto.GET_VERSION | 1, 0):
        st, out = app.ioctl(code, proto.stats(), 64)
        expect_eq((name_of(st), out), (name_of(INVALID_DEVICE_REQUEST), b""), "code %#x" % code)
    app.close()


@case("bogus-transaction-handles", diff=False)
def bogus_handles(k, app, run):
    app.open()
    for what, handle, want in (("an unused handle", 0x7FFC, wdm.STATUS_INVALID_HANDLE),
                               ("a misaligned handle", 0x7FF9, wdm.STATUS_INVALID_HANDLE),
                               ("the driver's own kernel handle", min(k.kernel_handles),
                                wdm.STATUS_INVALID_HANDLE)):
        st, _ = app.ioctl(proto.PUT, proto.put(handle, b"k", b"v"), 0)
        expect_eq(name_of(st), name_of(want), "PUT with %s" % what)
    # A handle to something that is not a transaction, in the app's own process.
    event = k.new_object("Event")
    h = k.new_handle(event, False, pid=0x1F4C)
    st, _ = app.ioctl(proto.PUT, proto.put(h, b"k", b"v"), 0)
    expect_eq(name_of(st), name_of(wdm.STATUS_OBJECT_TYPE_MISMATCH), "PUT with an event handle")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "nothing written")
    app.close()


@case("bogus-handle-replayed")
def bogus_handle_replayed(k, app, run):
    app.open()
    st, _ = app.ioctl(proto.PUT, proto.put(0x7FFC, b"k", b"v"), 0)
    expect(wdm.nt_error(st), "PUT with handle 0x7ffc: %s" % name_of(st))
    st, _ = app.ioctl(proto.STATS, proto.header(b"", tx=4), proto.STATS_LEN)
    expect_eq(name_of(st), name_of(wdm.STATUS_INVALID_PARAMETER), "STATS with a transaction")
    app.close()


@case("null-system-buffer", diff=False)
def null_buffer(k, app, run):
    app.open()
    st, _ = k.io.ioctl(app.fo, proto.GET_VERSION, b"", 48, null_buffer=True)
    expect_eq(name_of(st), name_of(wdm.STATUS_INVALID_PARAMETER), "NULL SystemBuffer, 48 bytes out")
    st, _ = k.io.ioctl(app.fo, proto.GET_VERSION, b"", 0, null_buffer=True)
    expect_eq(name_of(st), name_of(wdm.STATUS_BUFFER_TOO_SMALL), "no buffer at all")
    app.close()


# ---- handles, cleanup, unload --------------------------------------------------------------

@case("cleanup-and-close-with-two-handles")
def two_handles(k, app, run):
    app.open()
    st, fo2 = k.io.open()
    expect_eq(st, OK, "second open")
    app.begin("T1")
    app.put("T1", b"k", b"v")
    k.io.close(fo2)
    expect_eq(app.get("T1", b"k"), (OK, b"v"), "the other handle still works")
    expect_eq(app.commit("T1"), OK, "commit")
    app.close_tx("T1")
    app.close()


@case("unload-with-live-transactions")
def unload_live(k, app, run):
    """DriverUnload with two transactions live: the driver must end both (its rollback, KTM's
    ROLLBACK, RollbackComplete) before it closes its RM, and leave KTM nothing to deliver."""
    app.open()
    app.begin("T1")
    app.put("T1", b"k", b"v")
    app.begin("T2")
    app.put("T2", b"j", b"w")
    app.close()
    run.finish(k)  # DriverUnload now, with T1 and T2 live
    expect_eq(sorted(notifications(k)), [("-", "RollbackEnlistment")] * 2 +
              [("ROLLBACK", "RollbackComplete")] * 2, "the driver's answers during unload")
    expect_eq([t.state for t in k.ktm.transactions], ["aborted", "aborted"], "the transactions")


@case("begin-from-kernel-mode-refused", diff=False)
def begin_kernel_mode(k, app, run):
    app.open()
    before = len(k.ktm.transactions)
    st, out = k.io.ioctl(app.fo, proto.BEGIN, proto.begin(), 8, mode=wdm.KERNEL_MODE)
    expect(wdm.nt_error(st) and out == b"", "BEGIN with RequestorMode KernelMode: %s" % name_of(st))
    expect_eq(len(k.ktm.transactions), before, "transactions created")
    app.close()


# ---- low resources ---------------------------------------------------------------------------

@case("ioctl-pool-failure", diff=False)
def ioctl_pool_failure(k, app, run):
    app.open()
    app.put(None, b"a", b"1")
    failed = 0
    for n in range(8):
        k.fail_alloc_at = n
        st = app.put(None, b"k%d" % n, b"v" * 100)
        k.fail_alloc_at = None
        if st == wdm.STATUS_INSUFFICIENT_RESOURCES:
            failed += 1
            expect_eq(app.get(None, b"k%d" % n)[0], NOT_FOUND, "a failed PUT leaves no trace")
        else:
            expect_eq(st, OK, "PUT with allocation %d failing" % n)
    expect(failed > 0, "no PUT allocation was ever failed")
    expect_eq(app.get(None, b"a"), (OK, b"1"), "the store is intact")
    app.close()


def fail_each_allocation_of_driver_entry(run, params):
    """Pool allocation N failing, for every N that DriverEntry and the notifications it causes
    (durable: LAST_RECOVER's checkpoint) make: in DriverEntry, an error status and nothing left
    behind; in a notification, a started driver that still unloads cleanly (the runner checks
    each boot). Returns how many allocations it failed."""
    n = 0
    while True:
        kk = run.boot(params=params, entry=False)
        kk.fail_alloc_at = n
        st = kk.driver_entry()
        if kk.injected_failures == 0:
            expect_eq(st, OK, "DriverEntry with no failure injected")
            run.finish(kk)
            return n
        if kk.injected_in == "DriverEntry":
            expect_eq(name_of(st), name_of(wdm.STATUS_INSUFFICIENT_RESOURCES),
                      "DriverEntry with allocation %d failing" % n)
            run.finish(kk, unload=False)
        else:
            expect_eq(name_of(st), name_of(OK), "DriverEntry, allocation %d failing in %s"
                      % (n, kk.injected_in))
            run.finish(kk)
        n += 1


@case("commit-with-each-allocation-failing", diff=False)
def commit_pool_failure(k, app, run):
    """Pool allocation N of a commit failing, for every N the notifications make: the driver
    votes no (KTM's ROLLBACK follows) or commits; never a stall, a partial write or a leak."""
    app.open()
    n = 0
    while True:
        name, key = "T%d" % n, b"key%d" % n
        app.begin(name)
        expect_eq(app.put(name, key, b"v" * 64), OK, "PUT")
        before = k.injected_failures
        k.fail_alloc_at = n
        st = app.commit(name)
        k.fail_alloc_at = None
        got = app.get(None, key)
        if st == OK:
            expect_eq(got, (OK, b"v" * 64), "committed with allocation %d failing" % n)
        else:
            expect_eq(name_of(st), name_of(wdm.STATUS_TRANSACTION_ABORTED), "commit outcome")
            expect_eq(got[0], NOT_FOUND, "aborted with allocation %d failing" % n)
            expect_eq(notifications(k)[-1], ("ROLLBACK", "RollbackComplete"), "the driver's end")
        app.close_tx(name)
        if k.injected_failures == before:
            break
        n += 1
    expect(n > 0, "the commit allocates nothing?")
    app.close()


@case("driver-entry-pool-failure", boot=False, diff=False)
def driver_entry_pool_failure(k, app, run):
    expect(fail_each_allocation_of_driver_entry(run, {}) > 0, "DriverEntry allocates nothing?")


@case("durable-driver-entry-pool-failure", boot=False, diff=False)
def durable_driver_entry_pool_failure(k, app, run):
    expect(fail_each_allocation_of_driver_entry(run, {"Durable": 1}) > 0,
           "durable DriverEntry allocates nothing?")


@case("pool-without-ExAllocatePool2", hide=("ExAllocatePool2",))
def pool_without_pool2(k, app, run):
    """Windows 10 1903: no ExAllocatePool2. The driver must load and work on the older routine."""
    imported = {fn for _a, (_m, fn) in k.module.imports.items()}
    expect("ExAllocatePool2" not in imported, "the image imports ExAllocatePool2")
    app.open()
    app.begin("T1")
    expect_eq(app.put("T1", b"k", b"v"), OK, "PUT")
    expect_eq(app.commit("T1"), OK, "commit")
    expect_eq(app.get(None, b"k"), (OK, b"v"), "GET")
    expect("ExAllocatePoolWithTag" in k.calls, "no allocation went through ExAllocatePoolWithTag")
    app.close_tx("T1")
    app.close()


# ---- durable mode ----------------------------------------------------------------------------

@case("durable-restart", params={"Durable": 1}, diff=False)
def durable_restart(k, app, run):
    expect_eq(notifications(k), [], "no transaction notifications at start")
    tm = [o for o in k.objects.values() if o.kind == "TransactionManager"]
    expect(tm and not tm[0].volatile and tm[0].recovered, "a durable, recovered TM")
    app.open()
    flushes = k.fs.flushes
    expect_eq(app.put(None, b"d", b"1"), OK, "non-transacted PUT")
    expect(k.fs.flushes > flushes, "the write was forced before the request completed")
    app.begin("T1")
    app.put("T1", b"e", b"2")
    expect_eq(app.commit("T1"), OK, "commit")
    app.close_tx("T1")
    app.close()
    expect(any(p.endswith("ktmrm.wal") for p in k.fs.flushed), "the log: %r" % list(k.fs.data))
    # Restart: the same files, a new boot; committed data must come back from the log.
    run.finish(k)
    k2 = run.boot(params={"Durable": 1}, files=k.fs)
    app2 = App(k2)
    app2.open()
    expect_eq(app2.get(None, b"d"), (OK, b"1"), "non-transacted write after restart")
    expect_eq(app2.get(None, b"e"), (OK, b"2"), "committed transaction after restart")
    app2.close()


def restart_over_damaged_log(k, app, run, damage, before_unload):
    """Four acknowledged PUTs, then the log as a crash (`before_unload`) or a clean unload left
    it, damaged by `damage(bytearray)`, and a new boot over it: DriverEntry's status."""
    app.open()
    for i in range(4):
        expect_eq(app.put(None, b"key%d" % i, b"value%d" % i), OK, "PUT")
    app.close()
    (path,) = [p for p in k.fs.data if p.endswith("ktmrm.wal")]
    log = bytearray(k.fs.data[path])
    run.finish(k)
    if not before_unload:
        log = bytearray(k.fs.data[path])
    expect(len(log) > 64 and log[:4] == b"KRML", "a log of %d bytes" % len(log))
    damage(log)
    k.fs.data[path] = log
    kk = run.boot(params={"Durable": 1}, files=k.fs, entry=False)
    st = kk.driver_entry()
    if wdm.nt_error(st):
        expect_eq(kk.devices, [], "devices after a failed DriverEntry")
    run.finish(kk, unload=not wdm.nt_error(st))
    return st, len(kk.fs.data[path]), len(log)


@case("durable-corrupt-log", params={"Durable": 1}, diff=False)
def durable_corrupt_log(k, app, run):
    """A log damaged inside a complete record cannot be replayed: the next DriverEntry stops
    with an error and leaves nothing behind."""

    def flip(log):
        log[len(log) // 2] ^= 0x10

    st, _, _ = restart_over_damaged_log(k, app, run, flip, before_unload=False)
    expect(wdm.nt_error(st), "DriverEntry over a damaged log returned %s" % name_of(st))


@case("durable-damaged-record-length", params={"Durable": 1}, diff=False)
def durable_damaged_length(k, app, run):
    """Damage before the tail (here: the first record's body_len, after a crash that left four
    forced records) must stop DriverEntry, not lose the acknowledged writes after it."""

    def long_first_record(log):
        struct.pack_into("<I", log, 16, 0x7FFFFFFF)  # record header: body_len at 16

    st, left, was = restart_over_damaged_log(k, app, run, long_first_record, before_unload=True)
    expect(wdm.nt_error(st), "DriverEntry over a log whose first record's length is damaged "
           "returned %s (%d of %d bytes left in the log)" % (name_of(st), left, was))


# ---- log I/O off the KTM callback (work items) ---------------------------------------------

TWO_PHASE = [("PREPREPARE", "PrePrepareComplete"), ("PREPARE", "PrepareComplete"),
             ("COMMIT", "CommitComplete")]


def on_worker(where):
    return where is not None and where.startswith("WorkItem")


def committed_and_kept(k, app, run):
    """T1 committed k = v: it reads so, and so it does after the driver unloads and boots again
    over the same files."""
    expect_eq(app.get(None, b"k"), (OK, b"v"), "committed")
    app.close_tx("T1")
    app.close()
    run.finish(k)
    k2 = run.boot(params={"Durable": 1}, files=k.fs)
    app2 = App(k2)
    app2.open()
    expect_eq(app2.get(None, b"k"), (OK, b"v"), "the deferred commit after a restart")
    app2.close()


def commit_with_callback_thread(k, app, run, thread):
    """A durable commit whose KTM callbacks arrive on `thread` (a thread unfit for file I/O):
    PREPARE and COMMIT are answered from work items, every log flush of the commit runs on a
    worker, and the commit survives a restart."""
    app.open()
    k.ktm.callback_thread.update(thread)
    app.begin("T1")
    expect_eq(app.put("T1", b"k", b"v"), OK, "PUT")
    tx = k.ktm.transactions[-1]
    flushes, ran = len(k.fs.flushed_in), k.work_stats["run"]
    expect_eq(app.commit("T1"), OK, "commit")
    expect_eq(notifications(k, tx.id), TWO_PHASE, "the answers, given by the workers")
    expect(k.work_stats["run"] - ran >= 2, "PREPARE and COMMIT were not finished on work items "
           "(%d ran)" % (k.work_stats["run"] - ran))
    during = k.fs.flushed_in[flushes:]
    expect(during and all(on_worker(w) for w in during),
           "the commit's log flushes ran in %r, not all on a worker" % during)
    committed_and_kept(k, app, run)


@case("durable-callback-without-apcs-defers", params={"Durable": 1, "TraceLevel": 3},
      diff=False)
def callback_without_apcs(k, app, run):
    """KeAreAllApcsDisabled() is TRUE in the callback: the log's Zw*File calls must not run
    there (the emulated kernel flags any that does). Each deferral leaves an info trace."""
    commit_with_callback_thread(k, app, run, {"apcs_disabled": True})
    deferred = [t for t in k.trace if "finished on a worker" in t]
    expect(len(deferred) >= 2 and all("all_apcs_disabled: true" in t for t in deferred),
           "info traces of the deferrals: %r" % deferred)


@case("durable-callback-short-stack-defers", params={"Durable": 1}, diff=False)
def callback_short_stack(k, app, run):
    """The callback arrives with 2 KiB of stack left: the log I/O goes to a worker."""
    commit_with_callback_thread(k, app, run, {"short_stack": True})


@case("volatile-callback-never-defers")
def volatile_never_defers(k, app, run):
    """A volatile engine does no file I/O: nothing to defer, whatever the thread."""
    app.open()
    k.ktm.callback_thread.update({"apcs_disabled": True, "short_stack": True})
    app.begin("T1")
    app.put("T1", b"k", b"v")
    expect_eq(app.commit("T1"), OK, "commit")
    expect_eq(notifications(k), TWO_PHASE, "answers")
    expect_eq(k.work_stats["queued"], 0, "work items queued by a volatile driver")
    app.close_tx("T1")
    app.close()


@case("durable-no-work-item-without-apcs", params={"Durable": 1}, diff=False)
def no_work_item_without_apcs(k, app, run):
    """No work item can be had while the callback cannot do file I/O: PREPARE is answered with
    a no vote (no I/O), KTM rolls back, nothing is written; once work items can be had again,
    the next commit goes through."""
    app.open()
    k.ktm.callback_thread["apcs_disabled"] = True
    app.begin("T1")
    app.put("T1", b"k", b"v")
    tx = k.ktm.transactions[-1]
    k.fail_work_items = 1000
    expect_eq(name_of(app.commit("T1")), name_of(wdm.STATUS_TRANSACTION_ABORTED), "commit")
    expect(k.injected_failures > 0, "no IoAllocateWorkItem failed")
    k.fail_work_items = 0
    expect_eq(notifications(k, tx.id), [("PREPREPARE", "PrePrepareComplete"),
                                         ("PREPARE", "RollbackEnlistment"),
                                         ("ROLLBACK", "RollbackComplete")], "answers")
    expect_eq(app.get(None, b"k")[0], NOT_FOUND, "nothing committed")
    app.close_tx("T1")
    app.begin("T2")
    expect_eq(app.put("T2", b"k", b"w"), OK, "the key is free again")
    expect_eq(app.commit("T2"), OK, "commit with work items back")
    expect_eq(app.get(None, b"k"), (OK, b"w"), "committed")
    app.close_tx("T2")
    app.close()


@case("durable-no-work-item-short-stack", params={"Durable": 1}, diff=False)
def no_work_item_short_stack(k, app, run):
    """No work item, and only the stack is short (APCs enabled): the callback does PREPARE's
    I/O itself, as the driver always did; COMMIT goes to a worker on its enlistment's spare."""
    app.open()
    k.ktm.callback_thread["short_stack"] = True
    app.begin("T1")
    app.put("T1", b"k", b"v")
    flushes = len(k.fs.flushed_in)
    k.fail_work_items = 1000
    expect_eq(app.commit("T1"), OK, "commit")
    expect(k.injected_failures > 0, "no IoAllocateWorkItem failed")
    k.fail_work_items = 0
    during = k.fs.flushed_in[flushes:]
    expect(during and not on_worker(during[0]),
           "flushes ran in %r: expected PREPARE's in the callback itself" % during)
    expect(on_worker(during[-1]), "flushes ran in %r: expected COMMIT's on a worker" % during)
    expect_eq(app.get(None, b"k"), (OK, b"v"), "committed")
    app.close_tx("T1")
    app.close()


@case("durable-commit-uses-its-spare-work-item", params={"Durable": 1}, diff=False)
def commit_uses_spare(k, app, run):
    """A COMMIT cannot be refused: with all APCs disabled and not one more work item to be had
    after PREPARE's, COMMIT still finishes on a worker, on the work item its enlistment was
    given when it was made (before, it was withheld until a restart)."""
    app.open()
    k.ktm.callback_thread["apcs_disabled"] = True
    app.begin("T1")
    allocated = k.work_stats["allocated"]
    expect_eq(app.put("T1", b"k", b"v"), OK, "PUT")
    expect_eq(k.work_stats["allocated"] - allocated, 1, "work items given to the enlistment")
    tx = k.ktm.transactions[-1]
    k.work_items_left = 1  # PREPARE's; none after it
    expect_eq(app.commit("T1"), OK, "commit")
    k.work_items_left = None
    expect_eq(notifications(k, tx.id), TWO_PHASE, "the answers, given by the workers")
    expect_eq(k.work_stats["allocated"] - allocated, 2, "work items allocated (spare, PREPARE)")
    committed_and_kept(k, app, run)


@case("durable-enlist-without-a-work-item", params={"Durable": 1}, diff=False)
def enlist_without_work_item(k, app, run):
    """No work item for a new enlistment's COMMIT: the request that enlists fails with
    STATUS_INSUFFICIENT_RESOURCES and leaves nothing (no enlistment, no write); the next one
    enlists and commits."""
    app.open()
    app.begin("T1")
    k.fail_work_items = 1
    expect_eq(name_of(app.put("T1", b"k", b"v")), name_of(wdm.STATUS_INSUFFICIENT_RESOURCES),
              "PUT without a work item")
    expect_eq(k.injected_failures, 1, "IoAllocateWorkItem failures")
    tx = k.ktm.transactions[-1]
    expect_eq(len(tx.enlistments), 0, "enlistments left")
    expect_eq(app.get("T1", b"k")[0], NOT_FOUND, "the failed PUT left no write")
    expect_eq(app.put("T1", b"k", b"w"), OK, "PUT once a work item can be had")
    expect_eq(app.commit("T1"), OK, "commit")
    expect_eq(app.get(None, b"k"), (OK, b"w"), "committed")
    app.close_tx("T1")
    app.close()


def log_with_records(run):
    """A durable boot that logs a few writes and unloads: its files, so that the next boot's
    checkpoint has records before it to drop (and so rewrites and renames the log)."""
    k = run.boot(params={"Durable": 1})
    app = App(k)
    app.open()
    for i in range(3):
        expect_eq(app.put(None, b"key%d" % i, b"value%d" % i), OK, "PUT")
    app.close()
    run.finish(k)
    return k.fs


@case("durable-checkpoint-on-worker", boot=False, diff=False)
def checkpoint_on_worker(k, app, run):
    """LAST_RECOVER's checkpoint (the log rewritten, renamed over the old one, reopened) runs on
    a work item, never in the callback."""
    k = run.boot(params={"Durable": 1}, files=log_with_records(run))
    expect(k.fs.renamed_in, "no checkpoint after recovery")
    expect(all(on_worker(w) for w in k.fs.renamed_in),
           "checkpoint renames ran in %r" % k.fs.renamed_in)
    expect_eq(k.work_queue, collections.deque(), "work items left queued")
    app = App(k)
    app.open()
    expect_eq(app.get(None, b"key2"), (OK, b"value2"), "data after the checkpoint")
    app.close()


@case("durable-unload-runs-queued-work", boot=False, diff=False)
def unload_runs_queued_work(k, app, run):
    """Every system worker is busy, so LAST_RECOVER's checkpoint is still queued when the driver
    unloads: DriverUnload's rundown wait must outlast it (the work item holds rundown
    protection), and the image must not go while it is queued."""
    k = run.boot(params={"Durable": 1}, files=log_with_records(run), entry=False)
    k.hold_work = True
    expect_eq(k.driver_entry(), OK, "DriverEntry")
    k.io.finish_driver_entry()
    expect_eq(len(k.work_queue), 1, "the checkpoint's work item, queued and held")
    run.finish(k)
    expect_eq(len(k.work_queue), 0, "work items queued after DriverUnload")
    expect(any(w and w.startswith("WorkItem inside DriverUnload") for w in k.fs.renamed_in),
           "the held checkpoint did not run inside DriverUnload's wait: %r" % k.fs.renamed_in)
