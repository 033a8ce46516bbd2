//! Allocation-failure injection: every allocation the engine makes, in every step of a set of
//! scenarios, is made to fail in turn. Each run must end with clear statuses
//! (`STATUS_INSUFFICIENT_RESOURCES` for the step that could not allocate, or a no vote at
//! PREPARE), a store equal to running the same scenario without the failed steps, and no leak.
//! An infallible allocation anywhere on these paths would abort this test binary. The failing
//! allocator is the unit-test binary's global allocator; it only ever fails on the thread and in
//! the window a test arms it.
//!
//! The failing allocator, the scenarios and the runner here; the tests in `cases`.

mod cases;

use crate::port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};
use crate::testing::ScriptedPort;
use crate::wal::filelog_tests::MemFile;
use crate::wal::{FileIo, FileLog, FileLogState, LogPort, MemLog};
use crate::{Engine, SpinLock, State};
use ktmrm_proto::{Isolation, Limits, NtStatus as S, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Fails the allocation numbered `FAIL_AT` (counting from 0 while armed) on this thread, and
/// counts live bytes on this thread while tracking.
struct FailingAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static FAIL_AT: Cell<u64> = const { Cell::new(u64::MAX) };
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for FailingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            let n = COUNT.with(|c| {
                let n = c.get();
                c.set(n + 1);
                n
            });
            if n == FAIL_AT.with(Cell::get) {
                return std::ptr::null_mut();
            }
        }
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && TRACKING.with(Cell::get) {
            LIVE.with(|l| l.set(l.get() + layout.size() as i64));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if TRACKING.with(Cell::get) {
            LIVE.with(|l| l.set(l.get() - layout.size() as i64));
        }
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: FailingAlloc = FailingAlloc;

/// Runs `f` with injection off (test bookkeeping must not fail).
fn unarmed<R>(f: impl FnOnce() -> R) -> R {
    let was = ARMED.with(|a| a.replace(false));
    let r = f();
    ARMED.with(|a| a.set(was));
    r
}

/// The scripted port, with injection switched off inside every port call: only the engine's own
/// allocations are failed.
#[derive(Default)]
struct Port(ScriptedPort);

impl KtmPort for Port {
    type Caller = ();
    type TxRef = TxId;
    type Enlistment = u32;
    type Target = u32;
    fn reference_transaction(&self, c: &(), h: u64) -> Result<(TxId, TxId), S> {
        unarmed(|| self.0.reference_transaction(c, h))
    }
    fn enlist(&self, tx: &TxId, key: EnlistmentKey, mask: u32) -> Result<u32, S> {
        unarmed(|| self.0.enlist(tx, key, mask))
    }
    fn close_enlistment(&self, e: u32) {
        unarmed(|| self.0.close_enlistment(e));
    }
    fn answer(&self, t: &u32, a: Answer) -> S {
        unarmed(|| self.0.answer(t, a))
    }
    fn create_transaction(&self, c: &(), t: u32, d: &[u8]) -> Result<u64, S> {
        unarmed(|| self.0.create_transaction(c, t, d))
    }
    fn yield_now(&self) {}
    fn recover_enlistment(&self, t: &u32, key: EnlistmentKey) -> Result<Option<u32>, S> {
        unarmed(|| self.0.recover_enlistment(t, key))
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Put(usize, &'static str, usize),
    Delete(usize, &'static str),
    Get(usize, &'static str),
    List(usize),
    Commit(usize),
    /// KTM offers single-phase commit; on SinglePhaseReject it falls back to the two phases.
    SinglePhase(usize),
    Rollback(usize),
}

impl Step {
    /// What the step writes: a PUT the first `n % value.len()` bytes of `value`, others nothing.
    fn value(self, value: &[u8]) -> &[u8] {
        match self {
            Step::Put(_, _, n) => &value[..n % value.len()],
            _ => &[],
        }
    }
}

/// The first transaction whose requests state serializable (`SERIALIZABLE..TXS`).
const SERIALIZABLE: usize = 4;
/// Transaction slots: 0 is "no transaction".
const TXS: usize = 6;

/// Scenarios: transaction 0 means "no transaction"; 1.. name transactions, read committed
/// below [`SERIALIZABLE`], serializable from it.
fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
    use Step::*;
    vec![
        (
            "non-transacted",
            vec![
                Put(0, "a", 10),
                Put(0, "b", 3000),
                Put(0, "a", 20),
                Delete(0, "b"),
                Get(0, "a"),
                List(0),
            ],
        ),
        (
            "commit",
            vec![
                Put(0, "k0", 5),
                Put(1, "k1", 5),
                Put(1, "k2", 70),
                Delete(1, "k0"),
                Get(1, "k1"),
                List(1),
                Commit(1),
                List(0),
            ],
        ),
        (
            "single-phase",
            vec![
                Put(0, "k0", 5),
                Put(1, "k1", 5),
                Put(1, "k2", 70),
                Delete(1, "k0"),
                SinglePhase(1),
                Put(2, "k1", 9),
                Delete(2, "k2"),
                SinglePhase(2),
                List(0),
            ],
        ),
        (
            "rollback",
            vec![
                Put(1, "a", 5),
                Put(2, "b", 5),
                Put(2, "a", 1),
                Rollback(1),
                Put(2, "a", 9),
                Commit(2),
                Get(0, "a"),
            ],
        ),
        (
            "many",
            (0..40)
                .map(|i| {
                    Put(
                        1 + i % 3,
                        ["p", "q", "r", "s", "t", "u", "v"][i % 7],
                        i * 37,
                    )
                })
                .chain([Commit(1), Commit(2), Rollback(3), List(0)])
                .collect(),
        ),
        (
            "serializable",
            [
                Put(0, "a", 5),
                Put(0, "b", 5),
                Get(4, "a"),
                List(4),
                Delete(4, "zz"),
            ]
            .into_iter()
            .chain(KEYS.iter().map(|k| Get(5, k)))
            .chain([
                Get(5, "b"),
                List(5),
                // 4 validates having written b, which 5 read: 5 is doomed.
                Put(4, "b", 7),
                Commit(4),
                Put(5, "c", 3),
                Rollback(5),
                List(0),
            ])
            .collect(),
        ),
        (
            "big write set",
            (0..1100)
                .map(|i| Put(1, KEYS[i % KEYS.len()], 1 + i % 5))
                .chain([Commit(1)])
                .collect(),
        ),
    ]
}

const KEYS: [&str; 16] = [
    "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12",
    "k13", "k14", "k15",
];

/// A file whose own bookkeeping never fails (only the log's and the engine's allocations are
/// failed).
struct TestFile(Arc<MemFile>);

impl FileIo for TestFile {
    fn len(&self) -> Result<u64, S> {
        unarmed(|| self.0.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, S> {
        unarmed(|| self.0.read_at(offset, buf))
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), S> {
        unarmed(|| self.0.write_at(offset, data))
    }
    fn flush(&self) -> Result<(), S> {
        unarmed(|| self.0.flush())
    }
    fn truncate(&self, len: u64) -> Result<(), S> {
        unarmed(|| self.0.truncate(len))
    }
    fn replace(&self, data: &[u8]) -> Result<(), S> {
        unarmed(|| self.0.replace(data))
    }
}

/// Where a durable run keeps its log.
#[derive(Clone)]
enum Disk {
    Mem(Arc<MemLog>),
    File(Arc<MemFile>),
}

type DynLog = Arc<dyn LogPort + Send + Sync>;

impl Disk {
    /// A log over this disk (the file log is opened afresh, as at a restart).
    fn log(&self) -> DynLog {
        match self {
            Disk::Mem(m) => m.clone(),
            Disk::File(f) => Arc::new(
                FileLog::open(
                    TestFile(f.clone()),
                    SpinLock::new(FileLogState::new()),
                    SpinLock::new(()),
                )
                .unwrap(),
            ),
        }
    }

    /// The machine crash: what was not forced is lost.
    fn crash(&self) {
        match self {
            Disk::Mem(m) => m.crash(),
            Disk::File(f) => f.crash(),
        }
    }
}

struct Run {
    port: Port,
    engine: Engine<Port, SpinLock<State<u32>>, DynLog>,
    handles: Vec<u64>,
    /// Durable: the log's disk, and the transactions whose CommitComplete was withheld because
    /// their Commit record could not be logged (KTM redelivers COMMIT after a restart).
    log: Option<Disk>,
    withheld: RefCell<Vec<usize>>,
}

impl Run {
    fn new() -> Self {
        let port = Port::default();
        let handles = unarmed(|| (0..TXS).map(|_| port.0.new_tx()).collect());
        let log: DynLog = unarmed(|| Arc::new(MemLog::new()));
        Run {
            port,
            engine: Engine::with_log(SpinLock::new(State::new(Limits::default())), log),
            handles,
            log: None,
            withheld: RefCell::default(),
        }
    }

    /// The durable engine stopped logging (an append or force failed for a reason other than
    /// memory): only then may CommitComplete be withheld.
    fn log_failed(&self) -> bool {
        unarmed(|| self.engine.durability().failed.is_some())
    }

    /// A durable engine over a fresh in-memory log, through KTM's (empty) recovery.
    fn durable() -> Self {
        Run::durable_on(unarmed(|| Disk::Mem(Arc::new(MemLog::new()))))
    }

    /// The same over the file log, on a simulated disk.
    fn durable_file() -> Self {
        Run::durable_on(unarmed(|| Disk::File(Arc::new(MemFile::default()))))
    }

    fn durable_on(disk: Disk) -> Self {
        unarmed(|| {
            let log = disk.log();
            let mut r = Run::new();
            let (state, _) = State::recover(Limits::default(), &*log).unwrap();
            r.engine = Engine::with_log(SpinLock::new(state), log);
            r.engine
                .notify(&r.port, EnlistmentKey(0), Notification::LastRecover, &0);
            r.log = Some(disk);
            r
        })
    }

    /// Crashes the log (unforced records lost), restarts a durable engine from it, and runs
    /// KTM's recovery: RECOVER and COMMIT again for each withheld commit, then LAST_RECOVER.
    fn crash_and_recover(&self) -> Run {
        unarmed(|| {
            let disk = self.log.clone().expect("durable");
            disk.crash();
            let log = disk.log();
            let mut r = Run::new();
            let (state, _) = State::recover(Limits::default(), &*log).unwrap();
            r.engine = Engine::with_log(SpinLock::new(state), log);
            for &tx in self.withheld.borrow().iter() {
                let uow = self.port.0.handles.borrow()[&self.handles[tx]].0;
                assert_eq!(r.engine.recover(&r.port, uow, &9), S::SUCCESS);
                let key = r.port.0.recovered.borrow().last().unwrap().1;
                r.engine.notify(&r.port, key, Notification::Commit, &9);
                assert_eq!(
                    r.port.0.answers.borrow().last().map(|a| a.1),
                    Some(Answer::CommitComplete)
                );
            }
            r.engine
                .notify(&r.port, EnlistmentKey(0), Notification::LastRecover, &0);
            r.log = Some(disk);
            r
        })
    }

    fn io(&self, req: Request<'_>, out: usize) -> S {
        let mut buf = unarmed(|| {
            let mut b = vec![0u8; req.encoded_len().max(out)];
            let serializable = req.tx() != 0 && self.handles[SERIALIZABLE..].contains(&req.tx());
            let level = if serializable {
                Isolation::Serializable
            } else {
                Isolation::Unstated
            };
            req.encode_stating(level, &mut b).unwrap();
            b
        });
        let n = req.encoded_len();
        self.engine
            .dispatch(&self.port, &(), req.call().code(), &mut buf, n, out)
            .0
    }

    fn notify(&self, tx: usize, n: Notification) -> Option<Answer> {
        let id = unarmed(|| self.port.0.handles.borrow()[&self.handles[tx]].0);
        let key = unarmed(|| self.port.0.enlisted.borrow().get(&id).copied())?;
        let before = unarmed(|| self.port.0.answers.borrow().len());
        self.engine.notify(&self.port, key, n, &0);
        unarmed(|| self.port.0.answers.borrow().get(before).map(|a| a.1))
    }

    /// Runs one step; returns its status (for Commit: SUCCESS or the vote that stopped it).
    fn step(&self, s: Step, value: &[u8]) -> S {
        let tx = |i: usize| if i == 0 { 0 } else { self.handles[i] };
        match s {
            Step::Put(i, k, _) => self.io(
                Request::Put {
                    tx: tx(i),
                    key: k.as_bytes(),
                    value,
                },
                0,
            ),
            Step::Delete(i, k) => self.io(
                Request::Delete {
                    tx: tx(i),
                    key: k.as_bytes(),
                },
                0,
            ),
            Step::Get(i, k) => self.io(
                Request::Get {
                    tx: tx(i),
                    key: k.as_bytes(),
                },
                70_000,
            ),
            Step::List(i) => self.io(
                Request::List {
                    tx: tx(i),
                    prefix: b"",
                    cursor: b"",
                    max_keys: 0,
                },
                4096,
            ),
            Step::Commit(i) => {
                if self.notify(i, Notification::PrePrepare).is_none() {
                    return S::SUCCESS; // never enlisted
                }
                match self.notify(i, Notification::Prepare) {
                    Some(Answer::PrepareComplete) => {
                        // Never withheld for memory: the Commit record's was reserved at PREPARE.
                        match self.notify(i, Notification::Commit) {
                            Some(Answer::CommitComplete) => {}
                            None if self.log.is_some() && self.log_failed() => unarmed(|| {
                                self.withheld.borrow_mut().push(i);
                            }),
                            other => panic!("COMMIT answered {other:?}"),
                        }
                        S::SUCCESS
                    }
                    Some(Answer::ReadOnly) => S::SUCCESS,
                    Some(Answer::RollbackEnlistment) => {
                        assert_eq!(
                            self.notify(i, Notification::Rollback),
                            Some(Answer::RollbackComplete)
                        );
                        S::TRANSACTION_ABORTED
                    }
                    other => panic!("vote {other:?}"),
                }
            }
            Step::SinglePhase(i) => match self.notify(i, Notification::SinglePhaseCommit) {
                // Never enlisted, or committed.
                None | Some(Answer::CommitComplete) => S::SUCCESS,
                Some(Answer::SinglePhaseReject) => self.step(Step::Commit(i), value),
                other => panic!("SINGLE_PHASE_COMMIT answered {other:?}"),
            },
            Step::Rollback(i) => {
                self.notify(i, Notification::Rollback);
                S::SUCCESS
            }
        }
    }

    fn snapshot(&self) -> Vec<(Vec<u8>, usize)> {
        unarmed(|| {
            let mut out = Vec::new();
            self.engine.with_state(|_| ());
            for k in KEYS.iter().chain(
                [
                    "a", "b", "k0", "k1", "k2", "p", "q", "r", "s", "t", "u", "v",
                ]
                .iter(),
            ) {
                let mut b = vec![0u8; 70_000];
                let req = Request::Get {
                    tx: 0,
                    key: k.as_bytes(),
                };
                let n = req.encode(&mut b).unwrap();
                let (st, len) =
                    self.engine
                        .dispatch(&self.port, &(), req.call().code(), &mut b, n, 70_000);
                if st == S::SUCCESS {
                    out.push((k.as_bytes().to_vec(), len));
                }
            }
            out
        })
    }
}
