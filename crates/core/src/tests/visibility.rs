//! The durable engine's visibility rule: a change is visible to a reader only once it is
//! durable; a failure reported to the caller (or a rejected single-phase commit) leaves no
//! visible trace, before or after a restart; nothing a reader saw is lost at restart. Each case
//! looks at the store while the log is being forced (a hook in the log's force) and after a
//! force that fails without a crash. (A two-phase COMMIT whose record cannot be forced:
//! `durable.rs`.)

use std::boxed::Box;
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::{Rc, Weak};
use std::string::String;
use std::vec::Vec;

use crate::port::{Answer, Notification as N};
use crate::testing::Harness;
use crate::wal::{LogPort, Lsn, MemLog};
use ktmrm_proto::NtStatus as S;

type Hook = Box<dyn Fn()>;

/// `STATUS_IO_DEVICE_ERROR`: the log device failed.
const IO_DEVICE_ERROR: S = S(0xC000_0185_u32 as i32);

/// A [`MemLog`] that runs a one-shot hook at the start of its next force, while the engine
/// waits for the disk with its lock released.
#[derive(Default)]
struct HookLog {
    mem: MemLog,
    hook: RefCell<Option<Hook>>,
}

impl LogPort for HookLog {
    fn append(&self, record: &[u8]) -> Result<Lsn, S> {
        self.mem.append(record)
    }
    fn force(&self, upto: Lsn) -> Result<(), S> {
        let hook = self.hook.borrow_mut().take();
        if let Some(h) = hook {
            h();
        }
        self.mem.force(upto)
    }
    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), S> {
        self.mem.read(from, sink)
    }
    fn truncate_before(&self, lsn: Lsn) -> Result<(), S> {
        self.mem.truncate_before(lsn)
    }
    fn discard_from(&self, lsn: Lsn) -> Result<(), S> {
        self.mem.discard_from(lsn)
    }
    fn reserve(&self, records: usize, bytes: usize) -> Result<(), S> {
        self.mem.reserve(records, bytes)
    }
    fn unreserve(&self, records: usize, bytes: usize) {
        self.mem.unreserve(records, bytes);
    }
    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, S> {
        self.mem.append_reserved(record)
    }
}

type H = Harness<&'static HookLog>;

/// A durable engine over a fresh hooked log (leaked: the hook holds the engine weakly).
fn boot() -> (Rc<H>, &'static HookLog) {
    let log: &'static HookLog = Box::leak(Box::default());
    (reboot(log), log)
}

/// A restart from what `log` kept: unforced records are lost.
fn reboot(log: &'static HookLog) -> Rc<H> {
    log.mem.crash();
    let (h, _) = Harness::durable(log).unwrap();
    h.last_recover();
    Rc::new(h)
}

/// Runs `probe` on the engine during the log's next force; returns what it saw.
fn at_next_force<T: 'static>(
    h: &Rc<H>,
    log: &HookLog,
    probe: impl Fn(&H) -> T + 'static,
) -> Rc<RefCell<Option<T>>> {
    let seen = Rc::new(RefCell::new(None));
    let (w, s): (Weak<H>, _) = (Rc::downgrade(h), seen.clone());
    *log.hook.borrow_mut() = Some(Box::new(move || {
        let h = w.upgrade().unwrap();
        *s.borrow_mut() = Some(probe(&h));
    }));
    seen
}

fn val(v: &str) -> Result<String, S> {
    Ok(v.into())
}

const MISSING: Result<String, S> = Err(S::OBJECT_NAME_NOT_FOUND);

/// Reads, and writes by others, while a non-transacted write is being forced.
#[derive(Debug, PartialEq)]
struct DuringWrite {
    outside: Result<String, S>,
    in_tx: Result<String, S>,
    tx_write: S,
    direct_write: S,
}

#[test]
fn a_non_transacted_write_is_invisible_and_its_key_locked_until_forced() {
    let (h, log) = boot();
    assert_eq!(h.put(0, "k", "before"), S::SUCCESS);
    let seen = at_next_force(&h, log, |h| {
        let t = h.port.new_tx();
        let u = h.port.new_tx();
        let d = DuringWrite {
            outside: h.get(0, "k"),
            in_tx: h.get(t, "k"),
            tx_write: h.put(u, "k", "u"),
            direct_write: h.put(0, "k", "other"),
        };
        h.rollback(t);
        h.rollback(u);
        d
    });
    assert_eq!(h.put(0, "k", "after"), S::SUCCESS);
    assert_eq!(
        seen.borrow_mut().take(),
        Some(DuringWrite {
            outside: val("before"),
            in_tx: val("before"),
            tx_write: S::TRANSACTIONAL_CONFLICT,
            direct_write: S::TRANSACTIONAL_CONFLICT,
        })
    );
    assert_eq!(h.get(0, "k"), val("after"));
    assert_eq!(h.engine.with_state(|s| s.check_consistency()), Ok(()));
    let h = reboot(log);
    assert_eq!(h.get(0, "k"), val("after"));
}

#[test]
fn a_non_transacted_write_whose_force_fails_leaves_no_trace() {
    // (overwrite, new key, delete): each refused with the device's status, nothing applied.
    let cases: [(&str, Option<&str>, Result<String, S>); 3] = [
        ("k", Some("failed-write"), val("before")),
        ("new", Some("failed-write"), MISSING),
        ("k", None, val("before")),
    ];
    for (key, write, expect) in cases {
        let (h, log) = boot();
        assert_eq!(h.put(0, "k", "before"), S::SUCCESS);
        log.mem.fail_forces(Some(IO_DEVICE_ERROR));
        let st = match write {
            Some(v) => h.put(0, key, v),
            None => h.delete(0, key),
        };
        assert_eq!(st, IO_DEVICE_ERROR, "{key} {write:?}");
        assert_eq!(h.get(0, key), expect, "{key} {write:?} after the failure");
        let t = h.port.new_tx();
        assert_eq!(h.get(t, key), expect, "{key} {write:?} in a transaction");
        assert_eq!(
            h.list(0, "", 0).unwrap().contains(&key.into()),
            expect.is_ok()
        );
        assert_eq!(h.stats().non_transacted_writes, 1);
        assert_eq!(h.engine.with_state(|s| s.check_consistency()), Ok(()));
        // The key is not left locked: a transaction may write it (its commit then votes no, the
        // log having failed).
        assert_eq!(h.put(t, key, "t"), S::SUCCESS);
        assert_eq!(h.commit(t), Answer::RollbackEnlistment);
        log.mem.fail_forces(None);
        let h = reboot(log);
        assert_eq!(h.get(0, key), expect, "{key} {write:?} after a restart");
    }
}

/// What a single-phase commit looks like while its records are being forced.
#[derive(Debug, PartialEq)]
struct DuringCommit {
    a_outside: Result<String, S>,
    b_outside: Result<String, S>,
    a_in_tx: Result<String, S>,
    other_write: S,
    own_write: S,
}

/// `t` wrote a=new and b=new over a=old; returns what readers (and `u`, a writer) saw during
/// its force. (No notification may be delivered inside the probe: the one being handled is
/// still unanswered.)
fn during_single_phase(
    h: &Rc<H>,
    log: &HookLog,
    t: u64,
    u: u64,
) -> Rc<RefCell<Option<DuringCommit>>> {
    at_next_force(h, log, move |h| DuringCommit {
        a_outside: h.get(0, "a"),
        b_outside: h.get(0, "b"),
        a_in_tx: h.get(t, "a"),
        other_write: h.put(u, "a", "u"),
        own_write: h.put(t, "c", "late"),
    })
}

const DURING: DuringCommit = DuringCommit {
    a_outside: Ok(String::new()),
    b_outside: MISSING,
    a_in_tx: Ok(String::new()),
    other_write: S::TRANSACTIONAL_CONFLICT,
    own_write: S::TRANSACTION_NOT_ACTIVE,
};

fn expected_during() -> DuringCommit {
    DuringCommit {
        a_outside: val("old"),
        a_in_tx: val("new"),
        ..DURING
    }
}

/// A store with a=old, a transaction `t` that wrote a=new and b=new, a transaction `u` that
/// will try to write `a` during `t`'s force, and what readers will see then.
struct SinglePhase {
    h: Rc<H>,
    log: &'static HookLog,
    t: u64,
    u: u64,
    seen: Rc<RefCell<Option<DuringCommit>>>,
}

fn single_phase() -> SinglePhase {
    let (h, log) = boot();
    assert_eq!(h.put(0, "a", "old"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "new"), S::SUCCESS);
    let u = h.port.new_tx();
    let seen = during_single_phase(&h, log, t, u);
    SinglePhase { h, log, t, u, seen }
}

#[test]
fn a_single_phase_commit_is_invisible_until_forced_and_reads_in_it_keep_working() {
    let SinglePhase { h, log, t, u, seen } = single_phase();
    assert_eq!(
        h.notify(t, N::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(seen.borrow_mut().take(), Some(expected_during()));
    h.rollback(u);
    assert_eq!((h.get(0, "a"), h.get(0, "b")), (val("new"), val("new")));
    assert_eq!(h.stats().single_phase_commits, 1);
    let h = reboot(log);
    assert_eq!((h.get(0, "a"), h.get(0, "b")), (val("new"), val("new")));
}

#[test]
fn a_single_phase_commit_whose_force_fails_is_rejected_with_nothing_applied() {
    let SinglePhase { h, log, t, u, seen } = single_phase();
    log.mem.fail_forces(Some(IO_DEVICE_ERROR));
    assert_eq!(
        h.notify(t, N::SinglePhaseCommit),
        Some(Answer::SinglePhaseReject)
    );
    assert_eq!(seen.borrow_mut().take(), Some(expected_during()));
    h.rollback(u);
    assert_eq!((h.get(0, "a"), h.get(0, "b")), (val("old"), MISSING));
    assert_eq!(h.stats().single_phase_commits, 0);
    // KTM falls back to the two phases: the log has failed, so the vote is no.
    assert_eq!(h.commit(t), Answer::RollbackEnlistment);
    assert_eq!((h.get(0, "a"), h.get(0, "b")), (val("old"), MISSING));
    let s = h.stats();
    assert_eq!(
        (s.commits, s.protocol_errors, s.live_transactions),
        (0, 0, 0)
    );
    assert_eq!(h.engine.with_state(|s| s.check_consistency()), Ok(()));
    log.mem.fail_forces(None);
    let h = reboot(log);
    assert_eq!((h.get(0, "a"), h.get(0, "b")), (val("old"), MISSING));
}

/// A checkpoint taken while a single-phase commit or a non-transacted write waits for its force
/// replaces the records that hold it, so it must hold the change itself.
#[test]
fn a_checkpoint_during_a_force_keeps_the_change_being_forced() {
    let (h, log) = boot();
    assert_eq!(h.put(0, "a", "old"), S::SUCCESS);
    assert_eq!(h.put(0, "gone", "x"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "new"), S::SUCCESS);
    assert_eq!(h.delete(t, "gone"), S::SUCCESS);
    let checkpoint = at_next_force(&h, log, |h| h.engine.checkpoint());
    assert_eq!(
        h.notify(t, N::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    assert!(matches!(checkpoint.borrow_mut().take(), Some(Ok(_))));
    drop(h);
    let h = reboot(log);
    let got: Vec<_> = ["a", "b", "gone"].iter().map(|k| h.get(0, k)).collect();
    assert_eq!(got, [val("new"), val("new"), MISSING]);
    let checkpoint = at_next_force(&h, log, |h| h.engine.checkpoint());
    assert_eq!(h.put(0, "c", "direct"), S::SUCCESS);
    assert!(matches!(checkpoint.borrow_mut().take(), Some(Ok(_))));
    drop(h);
    let h = reboot(log);
    let got: Vec<_> = ["a", "b", "c", "gone"]
        .iter()
        .map(|k| h.get(0, k))
        .collect();
    assert_eq!(got, [val("new"), val("new"), val("direct"), MISSING]);
}
