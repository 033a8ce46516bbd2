"""A small Kernel Transaction Manager: transaction managers, resource managers, transactions and
enlistments, and notification delivery to the driver's TmEnableCallbacks callback in KTM's order
(PREPREPARE, PREPARE, COMMIT; ROLLBACK; SINGLE_PHASE_COMMIT when asked), checking that every
notification gets exactly its documented answer. Notifications are delivered on a KTM worker
thread (the System process), after the call that caused them returns: KTM's delivery is
asynchronous, so that is one of the orders a real machine can produce.

Both enlistment routines work: TmCreateEnlistment (object pointers) and ZwCreateEnlistment
(handles); answers come through Tm*(PKENLISTMENT) or Zw*(HANDLE)."""

import collections
import struct

import wdm
from apis import _own, routine
from kernel import APP_PID, NORMAL_THREAD, SYSTEM_PID, Fatal
from wdm import NOTIFY_NAMES, p64

PREPREPARE, PREPARE, COMMIT, ROLLBACK, SPC = (wdm.NOTIFY_PREPREPARE, wdm.NOTIFY_PREPARE,
                                              wdm.NOTIFY_COMMIT, wdm.NOTIFY_ROLLBACK,
                                              wdm.NOTIFY_SINGLE_PHASE_COMMIT)
WAITING = object()  # a wait the KTM worker took over (kernel.inject)
TYPES = ("TransactionManager", "ResourceManager", "Transaction", "Enlistment")
FINAL = ("committed", "aborted")

# Which answer each awaited notification accepts (docs/ktm.md §3; the Tm*/Zw* DDI pages).
ANSWERS = {
    "PrePrepareComplete": {PREPREPARE},
    "PrepareComplete": {PREPARE},
    "CommitComplete": {COMMIT, SPC},
    "RollbackComplete": {ROLLBACK},
    "ReadOnlyEnlistment": {None, PREPREPARE, PREPARE},
    "SinglePhaseReject": {SPC},
    "RollbackEnlistment": {None, PREPREPARE, PREPARE},
}


def name(n):
    return NOTIFY_NAMES.get(n, hex(n))


class Ktm:
    def __init__(self, k):
        self.k = k
        self.pending = collections.deque()
        self.transactions = []
        self.enlistments = []
        self.type_vars = {}
        self.type_ptrs = {}
        self.log = []  # (tx id, "driver" or "other" RM, notification, answer) in answer order
        self.after_unload_checked = False
        self.now_100ns = 0
        self.races = {}  # routine name -> what another thread does while the driver is in it
        # The thread KTM calls the driver's callback on (see kernel.NORMAL_THREAD): a case may
        # make it one with all APCs disabled, or one deep in its stack.
        self.callback_thread = dict(NORMAL_THREAD)

    # ---- object types ---------------------------------------------------------------------

    def object_type_variable(self, export):
        kind = {"Tm%sObjectType" % t: t for t in TYPES}.get(export)
        if kind is None:
            return None
        if kind not in self.type_vars:
            ptr = self.k.kalloc(0x40)
            self.type_ptrs[ptr] = kind
            self.type_vars[kind] = self.k.kalloc(8, p64(ptr))
        return self.type_vars[kind]

    def type_of(self, ptr):
        return self.type_ptrs.get(ptr)

    # ---- the app's side (what ktmw32 would do) --------------------------------------------

    def app_transaction(self, handle):
        obj = self.k.handles[APP_PID].get(handle)
        return obj if obj is not None and obj.kind == "Transaction" else None

    def commit(self, handle, single_phase=False):
        """CommitTransaction: runs the commit to its outcome; KTM's status."""
        tx = self.app_transaction(handle)
        if tx is None:
            return wdm.STATUS_INVALID_HANDLE
        if tx.state != "active":
            return wdm.STATUS_TRANSACTION_NOT_ACTIVE
        live = [e for e in tx.enlistments if not e.done]
        if single_phase and len(live) == 1 and live[0].mask & SPC:
            tx.state = "spc"
            self.send(live[0], SPC)
        else:
            self.phase(tx, "preprepare")
        self.deliver()
        return self.outcome(tx)

    def elapse(self, ms):
        """Time passes: KTM rolls back each active transaction whose timeout (a relative time in
        100 ns units, as ZwCreateTransaction takes it) has run out."""
        self.now_100ns += ms * 10_000
        for tx in self.transactions:
            if tx.timeout is not None and tx.state == "active" and \
                    self.now_100ns >= tx.created_100ns - tx.timeout:
                self.abort(tx)
        self.deliver()

    def rollback(self, handle):
        tx = self.app_transaction(handle)
        if tx is None:
            return wdm.STATUS_INVALID_HANDLE
        if tx.state != "active":
            return wdm.STATUS_TRANSACTION_NOT_ACTIVE
        self.abort(tx)
        self.deliver()
        return wdm.STATUS_SUCCESS if tx.state == "aborted" else self.stalled(tx)

    def outcome(self, tx):
        if tx.state == "committed":
            return wdm.STATUS_SUCCESS
        if tx.state == "aborted":
            return wdm.STATUS_TRANSACTION_ABORTED
        return self.stalled(tx)

    def stalled(self, tx):
        waiting = ["key %#x awaits an answer to %s" % (e.key, name(e.awaiting))
                   for e in tx.enlistments if e.awaiting is not None]
        self.k.violation("transaction %d stalled in state %s: %s"
                         % (tx.id, tx.state, "; ".join(waiting) or "nothing pending"))
        return wdm.STATUS_UNSUCCESSFUL

    def enlist_other(self, handle, vote):
        """A second resource manager (not the driver) enlists in the transaction and votes
        `vote` ("yes" or "no") at PREPARE."""
        tx = self.app_transaction(handle)
        if tx is None or tx.state != "active":
            raise Fatal("enlist_other: no active transaction %#x" % handle)
        e = self.new_enlistment(tx, rm=None, key=0, mask=0xF)
        e.vote = vote

    # ---- the protocol ---------------------------------------------------------------------

    def phase(self, tx, state):
        tx.state = state
        n = {"preprepare": PREPREPARE, "prepare": PREPARE, "commit": COMMIT}[state]
        targets = [e for e in tx.enlistments if not e.done and not (state == "commit" and e.read_only)]
        if not targets:
            self.advance(tx)
        for e in targets:
            self.send(e, n)

    def advance(self, tx):
        order = {"preprepare": "prepare", "prepare": "commit", "commit": "committed"}
        if tx.state == "committed" or tx.state == "aborted":
            return
        if tx.state == "rollback":
            tx.state = "aborted"
            return
        if tx.state == "spc":
            tx.state = "committed"
            return
        nxt = order[tx.state]
        if nxt == "committed":
            tx.state = "committed"
        else:
            self.phase(tx, nxt)

    def abort(self, tx):
        tx.state = "rollback"
        targets = [e for e in tx.enlistments if not e.done]
        for e in targets:
            e.awaiting = None
            self.pending = collections.deque(p for p in self.pending if p[0] is not e)
            self.send(e, ROLLBACK)
        if not targets:
            tx.state = "aborted"

    def send(self, e, n):
        if e.awaiting is not None:
            self.k.violation("KTM model: %s sent while %s is unanswered" % (name(n), name(e.awaiting)))
        e.awaiting = n
        self.pending.append((e, n))

    def answered(self, e, answer):
        """The driver (or the other RM) gave `answer` for enlistment `e`."""
        tx = e.tx
        allowed = ANSWERS[answer]
        if e.awaiting not in allowed or (e.awaiting is None and tx.state != "active") or e.done:
            self.k.violation("%s for transaction %d (key %#x) while %s: not the documented answer"
                             % (answer, tx.id, e.key, "awaiting " + name(e.awaiting)
                                if e.awaiting else "no notification is outstanding"))
            return wdm.STATUS_TRANSACTION_NOT_REQUESTED
        was = e.awaiting
        e.awaiting = None
        self.log.append((tx.id, "driver" if e.rm is not None else "other",
                         name(was) if was else "-", answer))
        if answer == "RollbackEnlistment":
            # KTM sends ROLLBACK "to all resource managers" (docs/ktm.md §9, S4), this one too:
            # it still owes RollbackComplete.
            if tx.state not in ("rollback", "aborted"):
                self.abort(tx)
                return wdm.STATUS_SUCCESS
        elif answer == "ReadOnlyEnlistment":
            e.done = True
            e.read_only = True
        elif answer == "SinglePhaseReject":
            tx.state = "active"
            self.phase(tx, "preprepare")
            return wdm.STATUS_SUCCESS
        elif answer in ("CommitComplete", "RollbackComplete"):
            e.done = True
        if all(x.awaiting is None for x in tx.enlistments):
            self.advance(tx)
        return wdm.STATUS_SUCCESS

    def deliver(self):
        """Delivers queued notifications on a KTM worker thread, and runs queued work items on a
        system worker thread, until neither is left."""
        k = self.k
        while self.pending or (k.work_queue and not k.hold_work):
            if not self.pending:
                self.run_work_item()
                continue
            e, n = self.pending.popleft()
            if e.rm is None:
                self.other_rm(e, n)
                continue
            args = self.callback_args(e, n)
            if args is None:
                continue
            saved, saved_thread = k.pid, k.thread
            k.pid, k.thread = SYSTEM_PID, dict(self.callback_thread)
            st = k.call("ResourceManagerNotification(%s)" % name(n), *args) & 0xFFFFFFFF
            k.pid, k.thread = saved, saved_thread
            self.returned(e, n, st)

    def run_work_item(self):
        """One queued work item, on a system worker thread (PASSIVE_LEVEL, APCs enabled)."""
        k = self.k
        item, routine, context = self.take_work_item()
        saved, saved_thread = k.pid, k.thread
        k.pid, k.thread = SYSTEM_PID, dict(NORMAL_THREAD)
        k.call("WorkItem", routine, k.work_items[item]["device"], context)
        k.pid, k.thread = saved, saved_thread

    def take_work_item(self):
        """Dequeues the next work item: the system dequeues it before its routine runs (so the
        routine may free it, IoFreeWorkItem's page)."""
        k = self.k
        item, routine, context = k.work_queue.popleft()
        k.work_items[item]["queued"] = False
        k.work_stats["run"] += 1
        return item, routine, context

    def run_work_then(self, result):
        """A wait that ends once every queued work item has run (ExWaitForRundownProtectionRelease):
        they run here, on the waiting thread's stack; then `result()`. Returns WAITING when
        there is work, else `result()` at once."""
        if not self.k.work_queue:
            return result()
        return self._take_over(lambda: not self.k.work_queue, result, work_only=True)

    def callback_args(self, e, n):
        """The routine and arguments of the driver's callback for (e, n), or None."""
        k = self.k
        rm = e.rm
        if rm.callback is None:
            k.violation("notification %s for an RM without a callback" % name(n))
            return None
        if k.unloaded:
            k.violation("KTM called the driver's notification callback (%s) after "
                        "DriverUnload returned: the image is gone" % name(n))
            raise Fatal("callback into an unloaded image")
        clock = k.kalloc(8, p64(e.tx.id if e.tx else 0))
        return (rm.callback, e.addr, rm.key, e.key, n, clock, 0, 0)

    def returned(self, e, n, st):
        """Checks the callback's return for (e, n): answered, or STATUS_PENDING."""
        if st == wdm.STATUS_PENDING or e.tx is None:
            return
        if e.awaiting == n:
            self.k.violation("callback returned %#x for %s without answering it" % (st, name(n)))
        elif wdm.nt_error(st):
            self.k.violation("callback answered %s but returned %#x" % (name(n), st))

    # ---- callbacks inside the driver's own waits ------------------------------------------

    def wait_delivering(self, event, timeout):
        """KeWaitForSingleObject on an event nobody has set: while KTM owes the driver
        notifications, its worker runs them (here, on the waiting thread's stack) until the
        event is set; the wait's status comes at the end. Returns WAITING when the worker took
        over, else the status to return at once."""
        if not self._next_for_driver():
            return self._wait_result(event, timeout)
        return self._take_over(lambda: self.k.events[event][1],
                               lambda: self._wait_result(event, timeout))

    def return_delivering(self, status):
        """A KTM routine about to return `status` while KTM owes the driver notifications: they
        run first, before the routine returns (KTM's pages allow a notification to arrive before
        the enlistment call returns). Returns WAITING, or `status` when nothing is owed."""
        if not self._next_for_driver():
            return status
        return self._take_over(lambda: False, lambda: status)

    def _take_over(self, done, result, work_only=False):
        k = self.k
        rsp = k.emu.reg_read("rsp")
        k.waits.append({"done": done, "result": result, "rsp": rsp, "ret": k.rq(rsp),
                        "pid": k.pid, "in_image": k.in_image, "current": None,
                        "thread": k.thread, "work_only": work_only,
                        "popped": not k.handled_by_speakeasy.get(k.current_routine, False)})
        self._inject_next()
        return WAITING

    def _next_for_driver(self, work_only=False):
        """Whether another thread has something to run in the driver now: a notification KTM
        owes it (not in `work_only` waits), or a queued work item."""
        if not work_only:
            while self.pending and self.pending[0][0].rm is None:
                e, n = self.pending.popleft()
                self.other_rm(e, n)
            if self.pending:
                return True
            if self.k.hold_work:
                return False
        return bool(self.k.work_queue)

    def _inject_next(self):
        k = self.k
        w = k.waits[-1]
        if self.pending and not w["work_only"]:
            e, n = self.pending.popleft()
            args = self.callback_args(e, n)
            w["current"] = (e, n)
            k.thread = dict(self.callback_thread)
            what = "ResourceManagerNotification(%s)" % name(n)
        else:
            item, routine, context = self.take_work_item()
            args = (routine, k.work_items[item]["device"], context)
            w["current"] = None
            k.thread = dict(NORMAL_THREAD)
            what = "WorkItem"
        k.pid = SYSTEM_PID
        k.in_image = "%s inside %s" % (what, w["in_image"])
        k.inject(args[0], args[1:], w["rsp"], w["popped"])
        w["popped"] = False  # later ones start from RESUME's code hook, nothing pops

    def resume_wait(self):
        """The callback or work item run inside a wait returned (at RESUME): the next one, or
        the wait's end."""
        k = self.k
        w = k.waits[-1]
        if w["current"] is not None:
            e, n = w["current"]
            self.returned(e, n, k.emu.reg_read("rax") & 0xFFFFFFFF)
        if not w["done"]() and self._next_for_driver(w["work_only"]):
            self._inject_next()
            return
        k.waits.pop()
        k.pid, k.in_image, k.thread = w["pid"], w["in_image"], w["thread"]
        k.emu.reg_write("rax", w["result"]())
        k.emu.reg_write("rsp", w["rsp"] + 8)
        k.emu.reg_write("rip", w["ret"])

    def _wait_result(self, event, timeout):
        ev = self.k.events[event]
        if ev[1]:
            if ev[0] == 1:  # SynchronizationEvent: a satisfied wait resets it
                ev[1] = False
            return wdm.STATUS_SUCCESS
        if timeout:
            return 0x102  # STATUS_TIMEOUT: nothing more will set it
        raise Fatal("KeWaitForSingleObject(%#x) without timeout on an event nobody will set "
                    "(KTM owes the driver nothing more: this wait never ends)" % event)

    def other_rm(self, e, n):
        if n == PREPARE and e.vote == "no":
            self.answered(e, "RollbackEnlistment")
        else:
            answer = {PREPREPARE: "PrePrepareComplete", PREPARE: "PrepareComplete",
                      COMMIT: "CommitComplete", ROLLBACK: "RollbackComplete"}[n]
            self.answered(e, answer)

    # ---- objects --------------------------------------------------------------------------

    def new_enlistment(self, tx, rm, key, mask):
        e = self.k.new_object("Enlistment", tx=tx, rm=rm, key=key, mask=mask, awaiting=None,
                              done=False, read_only=False, vote="yes", handles=0)
        tx.enlistments.append(e)
        self.enlistments.append(e)
        return e

    def last_handle_closed(self, obj):
        """KTM's rules for a closed last handle: a transaction, an enlistment or an RM that goes
        away before its transactions end rolls them back (docs/ktm.md §3)."""
        if obj.kind == "Transaction" and obj.state == "active":
            self.abort(obj)
        elif obj.kind == "Enlistment" and not obj.done and obj.tx.state == "active":
            self.abort(obj.tx)
        elif obj.kind == "ResourceManager":
            obj.closed = True
            for e in self.enlistments:
                if e.rm is obj and not e.done and e.tx.state not in FINAL + ("commit",):
                    if e.tx.state != "rollback":
                        self.abort(e.tx)

    def after_unload(self):
        """Nothing of the driver's may be left in KTM once DriverUnload returned."""
        k = self.k
        for _item, routine, _context in k.work_queue:
            k.violation("after DriverUnload, a work item (routine %s) is still queued: a system "
                        "worker would run it in the unloaded image" % k.symbol(routine))
        for e, n in self.pending:
            if e.rm is not None:
                k.violation("after DriverUnload, KTM still has %s queued for the driver's "
                            "enlistment in transaction %d: it would call into the unloaded image"
                            % (name(n), e.tx.id))
        for e in self.enlistments:
            if e.rm is not None and not e.done and e.tx.state not in FINAL:
                k.violation("after DriverUnload, the driver's enlistment in transaction %d (%s) "
                            "has not ended: KTM will notify the unloaded image" % (e.tx.id, e.tx.state))


def _hand_out(k, out, obj, oa, what):
    """Opens the driver's handle to a new object, as `*out`: STATUS_SUCCESS."""
    h = k.new_handle(obj, _kernel_handle(k, oa, what))
    _own(k, h)
    k.write(out, p64(h))
    return wdm.STATUS_SUCCESS


def _object(k, handle, kind):
    obj = k.lookup(handle, wdm.KERNEL_MODE)
    return obj if obj is not None and obj.kind == kind else None


def _description(k, desc_us, routine_name):
    """A Description UNICODE_STRING's text; the DDI pages ask for a NULL-terminated string."""
    raw = k.read(desc_us, 16)
    length, maxlen, buf = struct.unpack_from("<HH4xQ", raw)
    if maxlen < length + 2 or k.read(buf + length, 2) != b"\0\0":
        k.violation("%s's Description is not NUL-terminated (the DDI page asks for a "
                    "NULL-terminated string)" % routine_name)
    return k.read(buf, length).decode("utf-16-le", "replace")


def _kernel_handle(k, oa, what):
    _root, _name, attrs = k.read_oa(oa)
    if not attrs & wdm.OBJ_KERNEL_HANDLE:
        k.violation("%s without OBJ_KERNEL_HANDLE: the handle lands in process %d's table"
                    % (what, k.pid))
        return False
    return True


@routine("ZwCreateTransactionManager", 6)
def zw_create_transaction_manager(k, out, access, oa, log_name, options, strength):
    options &= 0xFFFFFFFF
    volatile = bool(options & wdm.TRANSACTION_MANAGER_VOLATILE)
    if volatile == bool(log_name):
        k.violation("ZwCreateTransactionManager: LogFileName must be NULL exactly when volatile")
        return wdm.STATUS_INVALID_PARAMETER
    tm = k.new_object("TransactionManager", volatile=volatile,
                      log=k.read_unicode(log_name) if log_name else None, recovered=False)
    return _hand_out(k, out, tm, oa, "ZwCreateTransactionManager")


def _durable(k, handle, kind):
    """The durable TM or RM a recovery call names, and the status when there is none: recovery
    of a volatile one answers STATUS_TM_VOLATILE."""
    obj = _object(k, handle, kind)
    if obj is None:
        return None, wdm.STATUS_INVALID_HANDLE
    if obj.volatile:
        return None, wdm.STATUS_TM_VOLATILE
    return obj, wdm.STATUS_SUCCESS


@routine("ZwRecoverTransactionManager", 1)
def zw_recover_transaction_manager(k, h):
    tm, st = _durable(k, h, "TransactionManager")
    if tm is not None:
        tm.recovered = True
    return st


@routine("ZwCreateResourceManager", 7)
def zw_create_resource_manager(k, out, access, tm_handle, guid, oa, options, desc_us):
    options &= 0xFFFFFFFF
    tm = _object(k, tm_handle, "TransactionManager")
    if tm is None:
        return wdm.STATUS_INVALID_HANDLE
    volatile = bool(options & wdm.RESOURCE_MANAGER_VOLATILE)
    if tm.volatile and not volatile:
        return wdm.STATUS_TM_VOLATILE
    if not tm.volatile and not tm.recovered:
        k.violation("ZwCreateResourceManager on a durable TM that was not recovered")
    if guid == 0:
        k.violation("ZwCreateResourceManager without a GUID")
        return wdm.STATUS_INVALID_PARAMETER
    if any(o.kind == "ResourceManager" and o.tm is tm and o.guid == k.read(guid, 16)
           and not o.closed for o in k.objects.values()):
        return wdm.STATUS_OBJECT_NAME_COLLISION
    description = _description(k, desc_us, "ZwCreateResourceManager") if desc_us else None
    rm = k.new_object("ResourceManager", tm=tm, guid=k.read(guid, 16), volatile=volatile,
                      callback=None, key=0, closed=False, description=description)
    return _hand_out(k, out, rm, oa, "ZwCreateResourceManager")


@routine("ZwRecoverResourceManager", 1)
def zw_recover_resource_manager(k, h):
    rm, st = _durable(k, h, "ResourceManager")
    if rm is not None:
        # This TM logged nothing before: recovery is LAST_RECOVER alone, on no enlistment.
        k.ktm.pending.append((RecoveryTarget(rm), wdm.NOTIFY_LAST_RECOVER))
    return st


class RecoveryTarget:
    """What LAST_RECOVER is delivered for: the RM itself (a NULL enlistment, no answer)."""

    def __init__(self, rm):
        self.rm, self.addr, self.key, self.tx, self.awaiting = rm, 0, 0, None, None


@routine("ZwOpenTransactionManager", 6)
def zw_open_transaction_manager(k, out, access, oa, log_us, tm_id, options):
    """Opens a TM that exists: by its log file name here (the driver's only way)."""
    log = k.read_unicode(log_us) if log_us else None
    tm = next((o for o in k.objects.values() if o.kind == "TransactionManager"
               and log is not None and o.log == log and o.handles), None)
    if tm is None:
        return 0xC0190051  # STATUS_TRANSACTIONMANAGER_NOT_FOUND
    return _hand_out(k, out, tm, oa, "ZwOpenTransactionManager")


@routine("ZwOpenResourceManager", 5)
def zw_open_resource_manager(k, out, access, tm_handle, guid, oa):
    """Opens the RM object with that GUID on the TM. TM recovery here rebuilds none (a restart
    after a clean unload leaves no enlistment in the log to recover), so a restarting durable
    RM finds none and creates itself, as KTM's "Recovery Processing" page allows."""
    tm = _object(k, tm_handle, "TransactionManager")
    if tm is None:
        return wdm.STATUS_INVALID_HANDLE
    if not tm.volatile and not tm.recovered:
        return 0xC0190052  # STATUS_TRANSACTIONMANAGER_NOT_ONLINE
    want = k.read(guid, 16)
    rm = next((o for o in k.objects.values() if o.kind == "ResourceManager" and o.tm is tm
               and o.guid == want and not o.closed), None)
    if rm is None:
        return 0xC019004F  # STATUS_RESOURCEMANAGER_NOT_FOUND
    return _hand_out(k, out, rm, oa, "ZwOpenResourceManager")


@routine("TmEnableCallbacks", 3)
def tm_enable_callbacks(k, rm_ptr, callback, rm_key):
    rm = k.objects.get(rm_ptr)
    if rm is None or rm.kind != "ResourceManager":
        raise Fatal("TmEnableCallbacks(%#x): not a resource manager object" % rm_ptr)
    if k.driver_refs.get(rm, 0) == 0:
        k.violation("TmEnableCallbacks on an RM object the driver holds no reference to")
    if rm.callback is not None:
        k.violation("TmEnableCallbacks called twice for one RM")
    if not (k.base <= callback < k.base + k.module.image_size):
        raise Fatal("TmEnableCallbacks: callback %#x is not in the image" % callback)
    rm.callback, rm.key = callback, rm_key
    return wdm.STATUS_SUCCESS


@routine("ZwCreateTransaction", 10)
def zw_create_transaction(k, out, access, oa, uow, tm, options, iso, iso_flags, timeout, desc_us):
    options, iso, iso_flags, access = (v & 0xFFFFFFFF for v in (options, iso, iso_flags, access))
    desc = _description(k, desc_us, "ZwCreateTransaction") if desc_us else None
    if desc is not None and len(desc) > 64:
        return wdm.STATUS_INVALID_PARAMETER
    if iso or iso_flags:
        k.violation("ZwCreateTransaction: IsolationLevel and IsolationFlags must be 0")
    timeout_value = None
    if timeout:
        timeout_value = struct.unpack("<q", k.read(timeout, 8))[0]
        if timeout_value >= 0:
            k.violation("ZwCreateTransaction Timeout %d: the driver means a relative time, which "
                        "is negative" % timeout_value)
    kt = k.ktm
    tx = k.new_object("Transaction", id=len(kt.transactions) + 1, state="active",
                      enlistments=[], description=desc, timeout=timeout_value,
                      created_100ns=kt.now_100ns,
                      uow=struct.pack("<IHH8s", 0x75000000 + len(kt.transactions) + 1, 0x6f77,
                                      0x4000, b"\x80ktmemul"), granted=access)
    kt.transactions.append(tx)
    _root, _name, attrs = k.read_oa(oa)
    h = k.new_handle(tx, bool(attrs & wdm.OBJ_KERNEL_HANDLE))
    if attrs & wdm.OBJ_KERNEL_HANDLE:
        _own(k, h)
    k.write(out, p64(h))
    return wdm.STATUS_SUCCESS


def _enlist(k, what, tx, rm, oa, options, mask, key, out):
    if tx.state != "active":
        return wdm.STATUS_TRANSACTION_NOT_ACTIVE
    if rm.callback is None:
        k.violation("%s before TmEnableCallbacks" % what)
    if mask & ~wdm.NOTIFY_MASK or mask & 0x7 != 0x7:
        k.violation("%s with notification mask %#x: every RM must ask for PREPREPARE, PREPARE "
                    "and COMMIT" % (what, mask))
        return wdm.STATUS_INVALID_PARAMETER
    if options:
        k.violation("%s with CreateOptions %#x: a subordinate enlistment takes 0" % (what, options))
    st = _hand_out(k, out, k.ktm.new_enlistment(tx, rm, key, mask), oa, what)
    race = k.ktm.races.pop(what, None)
    if race is not None:  # something the app does on another thread, right now
        race(tx)
        return k.ktm.return_delivering(st)
    return st


@routine("TmCreateEnlistment", 9)
def tm_create_enlistment(k, out, mode, access, oa, rm_ptr, tx_ptr, options, mask, key):
    rm, tx = k.objects.get(rm_ptr), k.objects.get(tx_ptr)
    if rm is None or rm.kind != "ResourceManager" or tx is None or tx.kind != "Transaction":
        raise Fatal("TmCreateEnlistment(rm %#x, tx %#x): not an RM and a transaction object"
                    % (rm_ptr, tx_ptr))
    for obj in (rm, tx):
        if k.driver_refs.get(obj, 0) == 0:
            k.violation("TmCreateEnlistment with %s, which the driver holds no reference to" % obj)
    return _enlist(k, "TmCreateEnlistment", tx, rm, oa, options & 0xFFFFFFFF, mask & 0xFFFFFFFF,
                   key, out)


@routine("ZwCreateEnlistment", 8)
def zw_create_enlistment(k, out, access, rm_handle, tx_handle, oa, options, mask, key):
    rm, tx = _object(k, rm_handle, "ResourceManager"), _object(k, tx_handle, "Transaction")
    if rm is None or tx is None:
        return wdm.STATUS_INVALID_HANDLE
    return _enlist(k, "ZwCreateEnlistment", tx, rm, oa, options & 0xFFFFFFFF, mask & 0xFFFFFFFF,
                   key, out)


@routine("TmIsTransactionActive", 1, 15)
def tm_is_transaction_active(k, tx_ptr):
    tx = k.objects.get(tx_ptr)
    if tx is None or tx.kind != "Transaction":
        raise Fatal("TmIsTransactionActive(%#x): not a transaction object" % tx_ptr)
    return int(tx.state == "active")


@routine("ZwQueryInformationTransaction", 5)
def zw_query_information_transaction(k, handle, info_class, buf, length, ret_len):
    """TransactionBasicInformation (class 0): TRANSACTION_BASIC_INFORMATION { GUID TransactionId;
    ULONG State; ULONG Outcome; } (24 bytes). Outcome: 1 undetermined, 2 committed, 3 aborted
    (ktmtypes.h); the handle needs TRANSACTION_QUERY_INFORMATION."""
    tx = _object(k, handle, "Transaction")
    if tx is None:
        return wdm.STATUS_INVALID_HANDLE
    if (info_class & 0xFFFFFFFF) != 0:
        return wdm.STATUS_INVALID_PARAMETER
    if (length & 0xFFFFFFFF) < 24:
        return wdm.STATUS_BUFFER_TOO_SMALL
    outcome = {"committed": 2, "aborted": 3}.get(tx.state, 1)
    k.write(buf, tx.uow + struct.pack("<II", 1, outcome))
    if ret_len:
        k.write(ret_len, struct.pack("<I", 24))
    return wdm.STATUS_SUCCESS


@routine("TmGetTransactionId", 2, 15)
def tm_get_transaction_id(k, tx_ptr, out):
    tx = k.objects.get(tx_ptr)
    if tx is None or tx.kind != "Transaction":
        raise Fatal("TmGetTransactionId(%#x): not a transaction object" % tx_ptr)
    k.write(out, tx.uow)


def _answer_routine(answer, by_handle):
    def by_pointer(k, target, clock):
        if by_handle:
            e = _object(k, target, "Enlistment")
            if e is None:
                return wdm.STATUS_INVALID_HANDLE
        else:
            e = k.objects.get(target)
            if e is None or e.kind != "Enlistment":
                raise Fatal("Tm%s(%#x): not an enlistment object" % (answer, target))
        return k.ktm.answered(e, answer)

    return by_pointer


for _answer in ANSWERS:
    routine("Tm" + _answer, 2)(_answer_routine(_answer, False))
    routine("Zw" + _answer, 2)(_answer_routine(_answer, True))


@routine("TmRecoverEnlistment", 2)
def tm_recover_enlistment(k, e_ptr, key):
    e = k.objects.get(e_ptr)
    if e is None or e.kind != "Enlistment":
        raise Fatal("TmRecoverEnlistment(%#x): not an enlistment" % e_ptr)
    e.key = key
    return wdm.STATUS_SUCCESS

