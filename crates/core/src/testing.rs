//! A scripted port for tests, benchmarks and fuzzing of the engine alone: transactions are handle
//! values the caller creates, and notifications are delivered by the caller through
//! [`Harness::commit`] and friends, which check every answer. No KTM model (that is `ktm-sim`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::boxed::Box;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};
use crate::wal::LogPort;
use crate::{Engine, NoLog, RecoverError, RecoveryReport, SpinLock, State};
use ktmrm_proto::{Isolation, Limits, NtStatus, Request, Stats, decode_get, decode_list};
use std::cell::RefCell;
use std::collections::HashMap;

/// A callback run inside `enlist`.
pub type DuringEnlist = Box<dyn Fn(EnlistmentKey)>;
/// A callback run at each answer.
pub type OnAnswer = Box<dyn Fn(Answer)>;

#[derive(Default)]
pub struct ScriptedPort {
    /// handle → (transaction id, still active in KTM)
    pub handles: RefCell<HashMap<u64, (TxId, bool)>>,
    /// transaction id → enlistment key
    pub enlisted: RefCell<HashMap<TxId, EnlistmentKey>>,
    pub answers: RefCell<Vec<(u32, Answer)>>,
    pub closed: RefCell<Vec<u32>>,
    pub next: RefCell<u64>,
    /// Status the next enlist fails with.
    pub fail_enlist: RefCell<Option<NtStatus>>,
    /// Called inside enlist, before it returns (a notification racing the enlist call).
    pub during_enlist: RefCell<Option<DuringEnlist>>,
    /// (target, key) of every `recover_enlistment`.
    pub recovered: RefCell<Vec<(u32, EnlistmentKey)>>,
    /// Called with each answer before it is recorded (durable tests check the log there).
    pub on_answer: RefCell<Option<OnAnswer>>,
    /// What `recovered_enlistment` gives (once).
    pub early_recovered: RefCell<Option<u32>>,
    /// Called inside `recover_enlistment`, before it returns (an outcome redelivered at once).
    pub during_recover: RefCell<Option<DuringEnlist>>,
    /// The isolation level requests naming each handle state (none: not stated).
    pub levels: RefCell<HashMap<u64, Isolation>>,
}

impl KtmPort for ScriptedPort {
    type Caller = ();
    type TxRef = TxId;
    type Enlistment = u32;
    type Target = u32;

    fn reference_transaction(&self, _: &(), handle: u64) -> Result<(TxId, TxId), NtStatus> {
        match self.handles.borrow().get(&handle) {
            Some((id, true)) => Ok((*id, *id)),
            Some((_, false)) => Err(NtStatus::TRANSACTION_NOT_ACTIVE),
            None => Err(NtStatus::INVALID_HANDLE),
        }
    }

    fn enlist(&self, tx: &TxId, key: EnlistmentKey, mask: u32) -> Result<u32, NtStatus> {
        assert_eq!(
            mask & 0xF,
            0xF,
            "must take PREPREPARE|PREPARE|COMMIT|ROLLBACK"
        );
        if let Some(st) = self.fail_enlist.borrow_mut().take() {
            return Err(st);
        }
        self.enlisted.borrow_mut().insert(*tx, key);
        if let Some(f) = self.during_enlist.borrow_mut().take() {
            f(key);
        }
        Ok(tx.0[0].into())
    }

    fn close_enlistment(&self, e: u32) {
        self.closed.borrow_mut().push(e);
    }

    fn answer(&self, target: &u32, answer: Answer) -> NtStatus {
        if let Some(f) = self.on_answer.borrow().as_ref() {
            f(answer);
        }
        self.answers.borrow_mut().push((*target, answer));
        NtStatus::SUCCESS
    }

    fn create_transaction(&self, _: &(), _: u32, _: &[u8]) -> Result<u64, NtStatus> {
        Ok(self.new_tx())
    }

    fn yield_now(&self) {
        std::thread::yield_now();
    }

    fn recover_enlistment(
        &self,
        target: &u32,
        key: EnlistmentKey,
    ) -> Result<Option<u32>, NtStatus> {
        self.recovered.borrow_mut().push((*target, key));
        if let Some(f) = self.during_recover.borrow_mut().take() {
            f(key);
        }
        Ok(Some(*target))
    }

    fn recovered_enlistment(&self) -> Option<u32> {
        self.early_recovered.borrow_mut().take()
    }
}

impl ScriptedPort {
    pub fn new_tx(&self) -> u64 {
        let mut n = self.next.borrow_mut();
        *n += 1;
        let h = *n * 4;
        let mut id = [0u8; 16];
        id[0] = *n as u8;
        id[1] = (*n >> 8) as u8;
        self.handles.borrow_mut().insert(h, (TxId(id), true));
        h
    }
}

/// The callback's rule (docs/ktm.md §3 "Delivery B"): answered, or nothing to answer →
/// `STATUS_SUCCESS`; an answer withheld → `STATUS_PENDING`.
#[track_caller]
pub fn assert_returned(n: Notification, st: NtStatus, answer: Option<Answer>) {
    use Notification as N;
    let needs_answer = matches!(
        n,
        N::PrePrepare | N::Prepare | N::Commit | N::Rollback | N::SinglePhaseCommit
    );
    let want = if answer.is_none() && needs_answer {
        NtStatus::PENDING
    } else {
        NtStatus::SUCCESS
    };
    assert_eq!(
        st, want,
        "{n:?}: notify returned {st:?} with answer {answer:?}"
    );
}

pub type TestEngine<J = NoLog> = Engine<ScriptedPort, SpinLock<State<u32>>, J>;

/// An engine, its port, and helpers that speak the wire protocol.
pub struct Harness<J: LogPort = NoLog> {
    pub port: ScriptedPort,
    pub engine: TestEngine<J>,
}

impl<J: LogPort> Harness<J> {
    /// A durable engine rebuilt from `log` (not yet through KTM's recovery: see
    /// [`Harness::last_recover`]).
    pub fn durable(log: J) -> Result<(Self, RecoveryReport), RecoverError> {
        let (state, report) = State::recover(Limits::default(), &log)?;
        let h = Harness {
            port: ScriptedPort::default(),
            engine: Engine::with_log(SpinLock::new(state), log),
        };
        Ok((h, report))
    }

    /// KTM's RECOVER for `uow`, answered through enlistment `target`; returns the key KTM uses
    /// from then on.
    pub fn recover(&self, uow: TxId, target: u32) -> EnlistmentKey {
        assert_eq!(
            self.engine.recover(&self.port, uow, &target),
            NtStatus::SUCCESS
        );
        let r = self.port.recovered.borrow();
        let (t, key) = *r.last().unwrap();
        assert_eq!(t, target);
        key
    }

    /// LAST_RECOVER (no answer).
    pub fn last_recover(&self) {
        let st = self
            .engine
            .notify(&self.port, EnlistmentKey(0), Notification::LastRecover, &0);
        assert_eq!(st, NtStatus::SUCCESS);
    }

    /// Delivers `n` to a recovered enlistment and returns its answer.
    pub fn notify_key(&self, key: EnlistmentKey, target: u32, n: Notification) -> Option<Answer> {
        let before = self.port.answers.borrow().len();
        let st = self.engine.notify(&self.port, key, n, &target);
        let answers = self.port.answers.borrow();
        assert!(answers.len() <= before + 1, "answered twice");
        let answer = answers.get(before).map(|a| a.1);
        assert_returned(n, st, answer);
        answer
    }

    /// The transaction id behind a handle.
    pub fn tx_id(&self, tx: u64) -> TxId {
        self.port.handles.borrow()[&tx].0
    }
}

impl Harness {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Harness {
            port: ScriptedPort::default(),
            engine: Engine::new(SpinLock::new(State::new(limits))),
        }
    }
}

impl<J: LogPort> Harness<J> {
    pub fn raw(&self, code: u32, input: &[u8], out_len: usize) -> (NtStatus, Vec<u8>) {
        let mut buf = vec![0u8; input.len().max(out_len)];
        buf[..input.len()].copy_from_slice(input);
        let (st, n) = self
            .engine
            .dispatch(&self.port, &(), code, &mut buf, input.len(), out_len);
        assert!(n <= out_len, "information {n} > output {out_len}");
        buf.truncate(n);
        (st, buf)
    }

    pub fn call(&self, req: Request<'_>, out_len: usize) -> (NtStatus, Vec<u8>) {
        let level = self.port.levels.borrow().get(&req.tx()).copied();
        self.call_stating(req, level.unwrap_or_default(), out_len)
    }

    /// [`Harness::call`] with `level` stated in the header.
    pub fn call_stating(
        &self,
        req: Request<'_>,
        level: Isolation,
        out_len: usize,
    ) -> (NtStatus, Vec<u8>) {
        let mut input = vec![0u8; req.encoded_len()];
        req.encode_stating(level, &mut input).unwrap();
        self.raw(req.call().code(), &input, out_len)
    }

    pub fn put(&self, tx: u64, key: &str, value: &str) -> NtStatus {
        self.call(
            Request::Put {
                tx,
                key: key.as_bytes(),
                value: value.as_bytes(),
            },
            0,
        )
        .0
    }

    pub fn delete(&self, tx: u64, key: &str) -> NtStatus {
        self.call(
            Request::Delete {
                tx,
                key: key.as_bytes(),
            },
            0,
        )
        .0
    }

    pub fn get(&self, tx: u64, key: &str) -> Result<String, NtStatus> {
        let (st, out) = self.call(
            Request::Get {
                tx,
                key: key.as_bytes(),
            },
            70_000,
        );
        if st != NtStatus::SUCCESS {
            return Err(st);
        }
        let (_, v) = decode_get(&out).unwrap();
        Ok(String::from_utf8(v.unwrap().to_vec()).unwrap())
    }

    /// All keys with `prefix` in `tx`'s view, following the cursor page by page.
    pub fn list(&self, tx: u64, prefix: &str, page: u32) -> Result<Vec<String>, NtStatus> {
        let mut keys: Vec<String> = Vec::new();
        loop {
            let cursor = keys.last().cloned().unwrap_or_default();
            let req = Request::List {
                tx,
                prefix: prefix.as_bytes(),
                cursor: cursor.as_bytes(),
                max_keys: page,
            };
            let (st, out) = self.call(req, 4096);
            if st != NtStatus::SUCCESS {
                return Err(st);
            }
            let (it, more) = decode_list(&out).unwrap();
            let before = keys.len();
            keys.extend(it.map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap()));
            if !more {
                return Ok(keys);
            }
            assert!(keys.len() > before, "MORE with an empty page");
        }
    }

    pub fn stats(&self) -> Stats {
        let (st, out) = self.call(Request::Stats, ktmrm_proto::STATS_LEN);
        assert_eq!(st, NtStatus::SUCCESS);
        Stats::decode(&out).unwrap()
    }

    /// The key `tx` was enlisted with, if it was.
    pub fn key(&self, tx: u64) -> Option<EnlistmentKey> {
        let id = self.port.handles.borrow()[&tx].0;
        self.port.enlisted.borrow().get(&id).copied()
    }

    /// Delivers `n` for `tx` and returns the single answer it produced (None if none).
    pub fn notify(&self, tx: u64, n: Notification) -> Option<Answer> {
        let before = self.port.answers.borrow().len();
        let key = self.key(tx).expect("enlisted");
        let st = self.engine.notify(&self.port, key, n, &7);
        let answers = self.port.answers.borrow();
        assert!(answers.len() <= before + 1, "answered twice");
        let answer = answers.get(before).map(|a| a.1);
        assert_returned(n, st, answer);
        answer
    }

    fn end(&self, tx: u64) {
        self.port.handles.borrow_mut().get_mut(&tx).unwrap().1 = false;
    }

    /// KTM's two-phase commit as the engine's only RM; returns the PREPARE answer.
    pub fn commit(&self, tx: u64) -> Answer {
        if self.key(tx).is_none() {
            self.end(tx);
            return Answer::ReadOnly; // never enlisted: nothing to do
        }
        assert_eq!(
            self.notify(tx, Notification::PrePrepare),
            Some(Answer::PrePrepareComplete)
        );
        let vote = self.notify(tx, Notification::Prepare).unwrap();
        match vote {
            Answer::PrepareComplete => {
                assert_eq!(
                    self.notify(tx, Notification::Commit),
                    Some(Answer::CommitComplete)
                )
            }
            Answer::RollbackEnlistment => {
                assert_eq!(
                    self.notify(tx, Notification::Rollback),
                    Some(Answer::RollbackComplete)
                )
            }
            Answer::ReadOnly => {}
            other => panic!("unexpected vote {other:?}"),
        }
        self.end(tx);
        vote
    }

    pub fn rollback(&self, tx: u64) {
        if self.key(tx).is_some() {
            assert_eq!(
                self.notify(tx, Notification::Rollback),
                Some(Answer::RollbackComplete)
            );
        }
        self.end(tx);
    }
}
