//! The engine's entry points: [`Engine::dispatch`] for IOCTLs and [`Engine::notify`] for KTM
//! notifications. Each takes the lock for short critical sections and calls the port only with
//! the lock released, so KTM may re-enter from inside any port call.

use crate::durable::NoLog;
use crate::entry::{Entry, KeyBuf};
use crate::lock::StateLock;
use crate::ops::Write;
use crate::port::{EnlistmentKey, KtmPort, Notification, TxId, notify_bits};
use crate::state::State;
use crate::state::durability::DurabilityStats;
use crate::state::txns::{Phase, Txn};
use crate::tree::{LeafHint, Warm};
use crate::twopc::Reaction;
use crate::wal::{LogPort, Lsn};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};
use ktmrm_proto::{
    Call, GET_HEADER_LEN, Isolation, LIST_MIN_OUTPUT, MAX_DESCRIPTION_CHARS, NtStatus, Request,
    STATS_LEN, Stats, VERSION_LEN, VersionInfo, Writer,
};

/// The resource manager engine. `P` is the KTM port, `L` the host's lock around [`State`], `J`
/// the write-ahead log's stable storage (durable engines; see `durable.rs`).
pub struct Engine<P: KtmPort, L: StateLock<State<P::Enlistment>>, J: LogPort = NoLog> {
    lock: L,
    log: J,
    /// Answers decided under the lock and not yet given to the port: unload asks KTM for a
    /// rollback only when none is (`unload`), so its no vote never crosses an answer.
    pub(crate) answers_in_flight: AtomicU32,
    /// Enlist for single-phase commit too (see [`notify_bits::ENGINE_MASK`]).
    single_phase: bool,
    _port: PhantomData<fn(&P)>,
}

/// A request's fields, copied out of the METHOD_BUFFERED buffer before the answer overwrites it.
/// Keys stay on the stack (at most 255 bytes) so only a PUT's value allocates.
#[allow(clippy::large_enum_variant)]
enum Op {
    Version,
    Begin {
        timeout_ms: u32,
        description: [u8; 2 * MAX_DESCRIPTION_CHARS],
        len: usize,
    },
    Put(Entry),
    Get(KeyBuf),
    Delete(KeyBuf),
    List {
        prefix: KeyBuf,
        cursor: KeyBuf,
        max_keys: u32,
    },
    Stats,
}

/// The smallest output each call accepts; shorter gets `STATUS_BUFFER_TOO_SMALL` before any work.
const fn min_output(call: Call) -> usize {
    match call {
        Call::GetVersion => VERSION_LEN,
        Call::Begin => 8,
        Call::Get => GET_HEADER_LEN,
        Call::List => LIST_MIN_OUTPUT,
        Call::Stats => STATS_LEN,
        Call::Put | Call::Delete => 0,
    }
}

/// Decodes a request: its call, the buffer lengths, its fields, and the output room it needs.
fn decode(
    code: u32,
    buffer: &[u8],
    input_len: usize,
    output_len: usize,
) -> Result<(Request<'_>, Isolation), NtStatus> {
    let call = Call::from_code(code).ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if input_len > buffer.len() || output_len > buffer.len() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let input = buffer.get(..input_len).ok_or(NtStatus::INVALID_PARAMETER)?;
    let req = Request::decode_stated(call, input)?;
    if output_len < min_output(call) {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    Ok(req)
}

/// The one key a PUT, GET or DELETE names: the lookup the dispatcher warms.
const fn point_key<'a>(req: &Request<'a>) -> Option<&'a [u8]> {
    match req {
        Request::Put { key, .. } | Request::Get { key, .. } | Request::Delete { key, .. } => {
            Some(key)
        }
        _ => None,
    }
}

impl Op {
    fn from_request(req: Request<'_>) -> Result<Op, NtStatus> {
        let key = |k: &[u8]| KeyBuf::new(k).ok_or(NtStatus::INVALID_PARAMETER);
        Ok(match req {
            Request::GetVersion => Op::Version,
            Request::Stats => Op::Stats,
            Request::Begin {
                timeout_ms,
                description,
            } => {
                let mut buf = [0u8; 2 * MAX_DESCRIPTION_CHARS];
                let len = description.len();
                buf.get_mut(..len)
                    .ok_or(NtStatus::INVALID_PARAMETER)?
                    .copy_from_slice(description);
                Op::Begin {
                    timeout_ms,
                    description: buf,
                    len,
                }
            }
            Request::Put { key, value, .. } => Op::Put(Entry::try_new(key, value)?),
            Request::Get { key: k, .. } => Op::Get(key(k)?),
            Request::Delete { key: k, .. } => Op::Delete(key(k)?),
            Request::List {
                prefix,
                cursor,
                max_keys,
                ..
            } => Op::List {
                prefix: key(prefix)?,
                cursor: key(cursor)?,
                max_keys,
            },
        })
    }

    const fn writes(&self) -> bool {
        matches!(self, Op::Put(_) | Op::Delete(_))
    }
}

impl<P: KtmPort, L: StateLock<State<P::Enlistment>>> Engine<P, L> {
    /// A volatile engine over `lock`, which holds a [`State`] built with [`State::new`].
    pub const fn new(lock: L) -> Self {
        Engine {
            lock,
            log: NoLog,
            answers_in_flight: AtomicU32::new(0),
            single_phase: false,
            _port: PhantomData,
        }
    }
}

impl<P: KtmPort, L: StateLock<State<P::Enlistment>>, J: LogPort> Engine<P, L, J> {
    /// A durable engine over `lock`, which holds the [`State`] that [`State::recover`] rebuilt
    /// from `log`. Until KTM's LAST_RECOVER (after the host's `ZwRecoverResourceManager`),
    /// requests are refused with `STATUS_DEVICE_NOT_READY`.
    pub const fn with_log(lock: L, log: J) -> Self {
        Engine {
            lock,
            log,
            answers_in_flight: AtomicU32::new(0),
            single_phase: false,
            _port: PhantomData,
        }
    }

    /// Asks KTM for single-phase commit ([`notify_bits::SOLE_WRITER_MASK`]) when `on`: only for
    /// a deployment where no other resource manager ever writes in ktmrm's transactions, since
    /// KTM may then commit ktmrm alone (see [`notify_bits::ENGINE_MASK`]). Off by default.
    #[must_use]
    pub const fn single_phase(mut self, on: bool) -> Self {
        self.single_phase = on;
        self
    }

    /// The durable engine's counters (all zero for a volatile one).
    pub fn durability(&self) -> DurabilityStats {
        self.lock.with(|s| s.durability())
    }

    /// Writes a checkpoint (the whole state), forces it and frees the log before it. Returns its
    /// LSN. `STATUS_TM_VOLATILE` for a volatile engine; the log's failure status once it failed.
    /// Blocks requests while the state is encoded (the host picks when: the driver after
    /// recovery, at unload, and once enough bytes were logged since the last one).
    pub fn checkpoint(&self) -> Result<Lsn, NtStatus> {
        let lsn = self.lock.with(|s| s.append_checkpoint(&self.log))?;
        let forced = self.log.force(lsn);
        self.lock.with(|s| {
            s.forced(forced);
            if forced.is_ok() {
                s.durability.checkpoint_forced();
            }
        });
        forced?;
        // Failing to free space loses nothing: replay starts at the last checkpoint anyway.
        let _ = self.log.truncate_before(lsn);
        Ok(lsn)
    }

    /// Answers RECOVER for the transaction `uow` (from the notification's
    /// `TRANSACTION_NOTIFICATION_RECOVERY_ARGUMENT`) through `port.recover_enlistment`, so KTM
    /// redelivers its outcome (COMMIT, ROLLBACK, or INDOUBT first) to this engine.
    ///
    /// PASSIVE_LEVEL, in the RM's notification callback for RECOVER, before it returns: KTM may
    /// send LAST_RECOVER as soon as every RECOVER callback has returned, and LAST_RECOVER
    /// presumes abort for every transaction not recovered by then (docs/ktm.md §9). A worker
    /// answering later could have a transaction KTM committed rolled back.
    pub fn recover(&self, port: &P, uow: TxId, target: &P::Target) -> NtStatus {
        // In place before KTM is answered (see `KtmPort::recovered_enlistment`).
        let early = port.recovered_enlistment();
        let (key, displaced) = match self.lock.with(|s| {
            let key = s.recover_key(uow)?;
            Ok((key, early.and_then(|e| s.attach(key, e))))
        }) {
            Ok(k) => k,
            Err(st) => return st,
        };
        if let Some(e) = displaced {
            port.close_enlistment(e);
        }
        match port.recover_enlistment(target, key) {
            Ok(None) => NtStatus::SUCCESS,
            Ok(Some(en)) => {
                if let Some(e) = self.lock.with(|s| s.attach(key, en)) {
                    port.close_enlistment(e);
                }
                NtStatus::SUCCESS
            }
            Err(st) => st,
        }
    }

    /// Counters and sizes, as STATS returns them.
    pub fn stats(&self) -> Stats {
        self.lock.with(|s| s.stats())
    }

    /// Runs `f` on the state under the lock (inspection by hosts and tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&State<P::Enlistment>) -> R) -> R {
        self.lock.with(|s| f(s))
    }

    /// Runs `f` on the enlistment the engine holds for `key`, under the lock: where a host keeps
    /// data of its own per enlistment (the driver keeps there the work item a COMMIT may need).
    /// `None` when there is none: no such transaction, still enlisting, or rebuilt from the log
    /// without one. `f` must not call into KTM or wait (the lock is held).
    pub fn with_enlistment<R>(
        &self,
        key: EnlistmentKey,
        f: impl FnOnce(&mut P::Enlistment) -> R,
    ) -> Option<R> {
        self.lock
            .with(|s| s.txn_mut(key).and_then(Txn::enlistment_mut).map(f))
    }

    /// Runs `f` under the state lock, for the engine's other modules (`unload`).
    pub(crate) fn lock_with<R>(&self, f: impl FnOnce(&mut State<P::Enlistment>) -> R) -> R {
        self.lock.with(f)
    }

    /// Refuses every later request with `STATUS_DEVICE_NOT_READY` (unload). Notifications are
    /// still answered so KTM can finish the transactions it rolls back.
    pub fn shutdown(&self) {
        self.lock.with(|s| s.shutting_down = true);
    }

    /// Handles one METHOD_BUFFERED IOCTL. `buffer` is the system buffer: the input is its first
    /// `input_len` bytes and the answer is written to its first `output_len` bytes, over the input.
    /// Returns the status and the number of answer bytes (`IoStatus.Information`).
    ///
    /// PASSIVE_LEVEL, in the requestor's context (the port references handles there).
    pub fn dispatch(
        &self,
        port: &P,
        caller: &P::Caller,
        code: u32,
        buffer: &mut [u8],
        input_len: usize,
        output_len: usize,
    ) -> (NtStatus, usize) {
        match self.dispatch_inner(port, caller, code, buffer, input_len, output_len) {
            Ok(r) => r,
            Err(st) => (st, 0),
        }
    }

    fn dispatch_inner(
        &self,
        port: &P,
        caller: &P::Caller,
        code: u32,
        buffer: &mut [u8],
        input_len: usize,
        output_len: usize,
    ) -> Result<(NtStatus, usize), NtStatus> {
        // Decoding reads only the request, so it can come first; the readiness check still
        // decides the status first. Under that lock the lookup of the request's key starts
        // warming (loading its nodes), and transaction resolution, under its own lock, warms
        // the leaf: the lookup's cache misses overlap the value copy and the transaction lookup
        // instead of stalling the write.
        let decoded = decode(code, buffer, input_len, output_len);
        let mut warm = Warm::new(decoded.as_ref().ok().and_then(|(r, _)| point_key(r)));
        let tx = decoded.as_ref().map_or(0, |(r, _)| r.tx());
        self.lock.with(|s| {
            if s.shutting_down || s.durability.recovering() {
                return Err(NtStatus::DEVICE_NOT_READY);
            }
            s.store.warm(&mut warm);
            if tx == 0 {
                // No transaction to resolve: nothing to overlap; warm the leaf now.
                s.store.warm(&mut warm);
            }
            Ok(())
        })?;
        let (req, stated) = decoded?;
        let op = Op::from_request(req)?;
        let txn = if tx == 0 {
            None
        } else {
            let warm_leaf = |s: &State<P::Enlistment>| s.store.warm(&mut warm);
            self.resolve(port, caller, tx, op.writes(), stated, warm_leaf)?
        };
        let hint = warm.hint();
        let out = buffer
            .get_mut(..output_len)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        match op {
            Op::Version => {
                let limits = self.lock.with(|s| s.limits());
                let n = VersionInfo::current(limits)
                    .encode(out)
                    .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
                Ok((NtStatus::SUCCESS, n))
            }
            Op::Stats => {
                let n = self
                    .stats()
                    .encode(out)
                    .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
                Ok((NtStatus::SUCCESS, n))
            }
            Op::Begin {
                timeout_ms,
                description,
                len,
            } => {
                let desc = description.get(..len).unwrap_or(&[]);
                let handle = port.create_transaction(caller, timeout_ms, desc)?;
                if stated == Isolation::Serializable {
                    // ktmrm enlists now, so the transaction is serializable from the start. If
                    // that fails (quotas, memory), the handle is still the caller's (failing
                    // BEGIN would leak it): the first request that states the level enlists
                    // then, and reports the failure if it repeats.
                    let _ = self.resolve(port, caller, handle, false, stated, |_| {});
                }
                let mut w = Writer::new(out);
                w.u64(handle).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
                Ok((NtStatus::SUCCESS, w.len()))
            }
            Op::Put(entry) => self.write(txn, Write::Put(entry), hint),
            Op::Delete(key) => self.write(txn, Write::Delete(key), hint),
            Op::Get(key) => self.lock.with(|s| {
                if let Some(t) = txn {
                    s.usable(t, false)?;
                    s.check_serializable_read(t)?;
                    s.note_read(t, key.as_slice())?;
                }
                let value = s
                    .read(txn, key.as_slice(), hint)
                    .ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
                let len = u32::try_from(value.len()).map_err(|_| NtStatus::UNSUCCESSFUL)?;
                let mut w = Writer::new(out);
                w.u32(len)
                    .and_then(|()| w.u32(0))
                    .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
                if w.bytes(value).is_err() {
                    return Ok((NtStatus::BUFFER_OVERFLOW, GET_HEADER_LEN));
                }
                Ok((NtStatus::SUCCESS, w.len()))
            }),
            Op::List {
                prefix,
                cursor,
                max_keys,
            } => self.lock.with(|s| {
                let (prefix, cursor) = (prefix.as_slice(), cursor.as_slice());
                let Some(t) = txn.filter(|t| s.is_serializable(*t)) else {
                    if let Some(t) = txn {
                        s.usable(t, false)?;
                    }
                    let n = s.list(txn, prefix, cursor, max_keys, out, None)?;
                    return Ok((NtStatus::SUCCESS, n));
                };
                s.usable(t, false)?;
                s.check_serializable_read(t)?;
                let mut last = None;
                let n = s.list(txn, prefix, cursor, max_keys, out, Some(&mut last))?;
                s.note_list(t, prefix, cursor, last.as_ref().map(KeyBuf::as_slice))?;
                Ok((NtStatus::SUCCESS, n))
            }),
        }
    }

    fn write(
        &self,
        txn: Option<EnlistmentKey>,
        w: Write,
        hint: LeafHint,
    ) -> Result<(NtStatus, usize), NtStatus> {
        let force = self.lock.with(|s| match txn {
            Some(t) => {
                s.check_not_doomed(t)?;
                let delete = match &w {
                    Write::Delete(k) => Some(*k),
                    Write::Put(_) => None,
                };
                match s.write_in(t, w, hint) {
                    // A DELETE that found no key read its absence.
                    Err(NtStatus::OBJECT_NAME_NOT_FOUND) => {
                        if let Some(k) = delete {
                            s.note_read(t, k.as_slice())?;
                        }
                        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
                    }
                    r => r.map(|()| None),
                }
            }
            None if s.is_durable() => s.write_now_logged(w, &self.log).map(Some),
            None => s.write_now(w).map(|()| None),
        })?;
        if let Some((lsn, key)) = force {
            // Durable: applied (visible) only once forced.
            let forced = self.log.force(lsn);
            self.lock.with(|s| s.finish_write_now(&key, forced))?;
        }
        Ok((NtStatus::SUCCESS, 0))
    }

    /// Finds the engine's transaction for a caller's handle, enlisting on first use. Returns
    /// once the transaction is enlisted; `STATUS_TRANSACTION_NOT_ACTIVE` if it ended meanwhile.
    /// A read in a transaction KTM is committing, in which ktmrm holds nothing (enlisting is
    /// refused by then), gets `None`: the committed view, which is that transaction's view.
    /// `meanwhile` runs at each look at the state, under the lock (the dispatcher warms its
    /// lookup there).
    fn resolve(
        &self,
        port: &P,
        caller: &P::Caller,
        handle: u64,
        write: bool,
        stated: Isolation,
        mut meanwhile: impl FnMut(&State<P::Enlistment>),
    ) -> Result<Option<EnlistmentKey>, NtStatus> {
        let (tx, id) = port.reference_transaction(caller, handle)?;
        loop {
            enum Next {
                Ready(EnlistmentKey),
                Wait,
                Enlist(EnlistmentKey),
            }
            let next = self.lock.with(|s| -> Result<Next, NtStatus> {
                meanwhile(s);
                match s.find_txn(&id) {
                    Some(key) => match s.txn(key) {
                        Some(t) if t.is_enlisting() => Ok(Next::Wait),
                        Some(t) => {
                            if stated != Isolation::Unstated && stated != t.isolation() {
                                return Err(NtStatus::INVALID_PARAMETER_MIX);
                            }
                            s.usable(key, write).map(|()| Next::Ready(key))
                        }
                        None => Err(NtStatus::TRANSACTION_NOT_ACTIVE),
                    },
                    None => s.create_txn(id, stated).map(Next::Enlist),
                }
            })?;
            match next {
                Next::Ready(key) => return Ok(Some(key)),
                Next::Wait => port.yield_now(),
                Next::Enlist(key) => {
                    let mask = if self.single_phase {
                        notify_bits::SOLE_WRITER_MASK
                    } else {
                        notify_bits::ENGINE_MASK
                    };
                    let result = port.enlist(&tx, key, mask);
                    let (done, close) = self.lock.with(|s| s.finish_enlist(key, result));
                    port.enlist_finished();
                    if let Some(e) = close {
                        port.close_enlistment(e);
                    }
                    match done {
                        Ok(()) => {}
                        // Not for a serializable read: past its transaction's validation point.
                        Err(NtStatus::TRANSACTION_NOT_ACTIVE)
                            if !write
                                && stated != Isolation::Serializable
                                && port.is_committing(&tx) =>
                        {
                            return Ok(None);
                        }
                        Err(st) => return Err(st),
                    }
                }
            }
        }
    }

    /// Handles a KTM notification for the enlistment `key` and answers it through the port
    /// before returning. `target` names the enlistment to answer. Durable: PREPARE, COMMIT and
    /// SINGLE_PHASE_COMMIT force the log (outside the lock) before answering; if a two-phase
    /// Commit record cannot be forced, CommitComplete is withheld and this returns
    /// `STATUS_PENDING` (docs/ktm.md §3 "Delivery B"), so that KTM keeps the transaction and
    /// redelivers COMMIT after a restart (docs/ktm.md §8). RECOVER goes to [`Engine::recover`]
    /// instead.
    ///
    /// PASSIVE_LEVEL, any thread, possibly inside a port call of this engine (re-entrant).
    pub fn notify(
        &self,
        port: &P,
        key: EnlistmentKey,
        notification: Notification,
        target: &P::Target,
    ) -> NtStatus {
        // An answer decided under the lock is counted until the port has it (see `unload`).
        let in_flight = |r: &Reaction<P::Enlistment>| {
            if matches!(r, Reaction::Answer { .. }) {
                self.answers_in_flight.fetch_add(1, Ordering::SeqCst);
            }
        };
        let mut r = self.lock.with(|s| {
            let r = s.on_notification(key, notification, &self.log);
            in_flight(&r);
            r
        });
        if let Reaction::Force(lsn) = r {
            let forced = self.log.force(lsn);
            r = self.lock.with(|s| {
                let r = s.after_force(key, notification, forced, &self.log);
                in_flight(&r);
                r
            });
        }
        let status = match r {
            Reaction::Withhold => return NtStatus::PENDING,
            // Unreachable: `after_force` never asks for a second force.
            Reaction::Silent | Reaction::Force(_) => NtStatus::SUCCESS,
            Reaction::Answer { answer, close } => {
                let st = port.answer(target, answer);
                self.answers_in_flight.fetch_sub(1, Ordering::SeqCst);
                if let Some(e) = close {
                    port.close_enlistment(e);
                }
                st
            }
        };
        if status.is_success() {
            NtStatus::SUCCESS
        } else {
            status
        }
    }
}

impl<E> State<E> {
    /// Records the result of `KtmPort::enlist`. Returns `Ok` when the caller may use the
    /// transaction, and any enlistment to close outside the lock.
    fn finish_enlist(
        &mut self,
        key: EnlistmentKey,
        result: Result<E, NtStatus>,
    ) -> (Result<(), NtStatus>, Option<E>) {
        let ended = self.phase(key).is_none_or(|p| p == Phase::Ended);
        match result {
            Ok(e) => {
                self.stats.enlistments = self.stats.enlistments.saturating_add(1);
                if ended {
                    // KTM ended it while we were enlisting: close at once.
                    let _ = self.remove_txn(key);
                    return (Err(NtStatus::TRANSACTION_NOT_ACTIVE), Some(e));
                }
                if let Some(t) = self.txn_mut(key) {
                    t.set_enlisted(Some(e));
                }
                (Ok(()), None)
            }
            Err(st) => {
                // Not enlisted, so no notification will ever come for this slot.
                let _ = self.remove_txn(key);
                (Err(st), None)
            }
        }
    }
}
