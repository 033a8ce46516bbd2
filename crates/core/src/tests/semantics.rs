//! One test per rule of the semantics contract, plus the 2PC answers.

use crate::port::{Answer, Notification};
use crate::testing::Harness;
use ktmrm_proto::{Call, Limits, NtStatus as S, Request, VERSION_LEN, VersionInfo};

#[test]
fn reads_see_own_pending_writes_others_see_committed() {
    let h = Harness::new();
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "2"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "3"), S::SUCCESS);
    assert_eq!(h.get(t, "a"), Ok("2".into()));
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.get(0, "b"), Err(S::OBJECT_NAME_NOT_FOUND));
    let u = h.port.new_tx();
    assert_eq!(
        h.get(u, "a"),
        Ok("1".into()),
        "another transaction reads committed data"
    );
    assert_eq!(h.delete(t, "a"), S::SUCCESS);
    assert_eq!(
        h.get(t, "a"),
        Err(S::OBJECT_NAME_NOT_FOUND),
        "own delete is visible"
    );
    assert_eq!(h.delete(t, "a"), S::OBJECT_NAME_NOT_FOUND);
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.list(t, "", 0), Ok(vec!["b".into()]));
    assert_eq!(h.list(0, "", 0), Ok(vec!["a".into()]));
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(h.get(0, "a"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "b"), Ok("3".into()));
    assert_eq!(h.commit(u), Answer::ReadOnly, "u only read");
    let s = h.stats();
    assert_eq!(
        (s.commits, s.read_only, s.live_transactions, s.keys, s.bytes),
        (1, 1, 0, 1, 2)
    );
}

#[test]
fn write_write_conflict_fails_at_once_and_keeps_other_writes() {
    let h = Harness::new();
    let t = h.port.new_tx();
    let u = h.port.new_tx();
    assert_eq!(h.put(t, "k", "t"), S::SUCCESS);
    assert_eq!(h.put(u, "other", "u"), S::SUCCESS);
    assert_eq!(h.put(u, "k", "u"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(h.delete(u, "k"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.put(0, "k", "x"),
        S::TRANSACTIONAL_CONFLICT,
        "non-transacted write conflicts too"
    );
    assert_eq!(h.delete(0, "k"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.get(u, "other"),
        Ok("u".into()),
        "u keeps its other writes"
    );
    assert_eq!(h.put(u, "more", "v"), S::SUCCESS, "u is still active");
    assert_eq!(
        h.get(u, "k"),
        Err(S::OBJECT_NAME_NOT_FOUND),
        "reads never block or conflict"
    );
    assert_eq!(h.stats().conflicts, 4);
    h.rollback(t);
    assert_eq!(h.put(u, "k", "u"), S::SUCCESS, "rollback released the lock");
    assert_eq!(h.commit(u), Answer::PrepareComplete);
    assert_eq!(
        h.list(0, "", 0),
        Ok(vec!["k".into(), "more".into(), "other".into()])
    );
}

#[test]
fn absent_keys_and_bad_sizes() {
    let h = Harness::new();
    assert_eq!(h.get(0, "nope"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.delete(0, "nope"), S::OBJECT_NAME_NOT_FOUND);
    let t = h.port.new_tx();
    assert_eq!(h.delete(t, "nope"), S::OBJECT_NAME_NOT_FOUND);
    let big = "k".repeat(256);
    assert_eq!(h.put(0, &big, "v"), S::INVALID_PARAMETER);
    assert_eq!(h.put(0, "", "v"), S::INVALID_PARAMETER);
    let huge = "v".repeat(65_537);
    assert_eq!(h.put(t, "k", &huge), S::INVALID_PARAMETER);
    let max = "v".repeat(65_536);
    assert_eq!(h.put(t, &"k".repeat(255), &max), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(h.get(0, &"k".repeat(255)).map(|v| v.len()), Ok(65_536));
}

#[test]
fn rollback_discards_and_ended_transactions_are_not_active() {
    let h = Harness::new();
    h.put(0, "a", "committed");
    let t = h.port.new_tx();
    h.put(t, "a", "pending");
    h.put(t, "b", "pending");
    h.rollback(t);
    assert_eq!(h.get(0, "a"), Ok("committed".into()));
    assert_eq!(h.get(0, "b"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.put(t, "c", "x"), S::TRANSACTION_NOT_ACTIVE);
    assert_eq!(h.get(t, "a"), Err(S::TRANSACTION_NOT_ACTIVE));
    let u = h.port.new_tx();
    h.put(u, "a", "new");
    assert_eq!(h.commit(u), Answer::PrepareComplete);
    assert_eq!(h.delete(u, "a"), S::TRANSACTION_NOT_ACTIVE);
    let s = h.stats();
    assert_eq!((s.rollbacks, s.commits, s.live_transactions), (1, 1, 0));
    // Every enlistment was closed exactly once.
    let mut closed = h.port.closed.borrow().clone();
    closed.sort();
    assert_eq!(closed.len(), 2);
}

#[test]
fn writes_after_preprepare_are_refused_reads_still_work() {
    let h = Harness::new();
    let t = h.port.new_tx();
    h.put(t, "a", "1");
    assert_eq!(
        h.notify(t, Notification::PrePrepare),
        Some(Answer::PrePrepareComplete)
    );
    assert_eq!(h.put(t, "b", "2"), S::TRANSACTION_NOT_ACTIVE);
    assert_eq!(h.get(t, "a"), Ok("1".into()));
    assert_eq!(
        h.notify(t, Notification::Prepare),
        Some(Answer::PrepareComplete)
    );
    assert_eq!(
        h.get(0, "a"),
        Err(S::OBJECT_NAME_NOT_FOUND),
        "not visible before COMMIT"
    );
    assert_eq!(
        h.put(0, "a", "x"),
        S::TRANSACTIONAL_CONFLICT,
        "prepared keys stay locked"
    );
    assert_eq!(h.stats().prepared, 1);
    assert_eq!(
        h.notify(t, Notification::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "a"), Ok("1".into()));
}

#[test]
fn quota_exceeded_at_prepare_votes_no() {
    let limits = Limits {
        max_keys: 2,
        ..Limits::default()
    };
    let h = Harness::with_limits(limits);
    let t = h.port.new_tx();
    let u = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "1"), S::SUCCESS);
    assert_eq!(
        h.put(u, "c", "1"),
        S::SUCCESS,
        "each fits alone at write time"
    );
    assert_eq!(h.put(u, "d", "1"), S::SUCCESS);
    assert_eq!(
        h.put(u, "e", "1"),
        S::QUOTA_EXCEEDED,
        "three new keys never fit"
    );
    assert_eq!(
        h.notify(t, Notification::PrePrepare),
        Some(Answer::PrePrepareComplete)
    );
    assert_eq!(
        h.notify(t, Notification::Prepare),
        Some(Answer::PrepareComplete)
    );
    assert_eq!(
        h.commit(u),
        Answer::RollbackEnlistment,
        "u no longer fits once t is prepared"
    );
    assert_eq!(
        h.notify(t, Notification::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.list(0, "", 0), Ok(vec!["a".into(), "b".into()]));
    assert_eq!(h.put(0, "z", "1"), S::QUOTA_EXCEEDED);
    assert_eq!(h.delete(0, "a"), S::SUCCESS, "shrinking always fits");
    let s = h.stats();
    assert_eq!((s.vetoes, s.rollbacks, s.live_transactions), (1, 1, 0));
    assert!(s.quota_rejections >= 3);
}

#[test]
fn write_set_and_live_transaction_quotas() {
    let h = Harness::with_limits(Limits {
        max_write_set: 2,
        max_live_transactions: 2,
        ..Limits::default()
    });
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "1"), S::SUCCESS);
    assert_eq!(
        h.put(t, "a", "2"),
        S::SUCCESS,
        "rewriting a key does not grow the write set"
    );
    assert_eq!(h.put(t, "c", "1"), S::QUOTA_EXCEEDED);
    let u = h.port.new_tx();
    assert_eq!(h.get(u, "a"), Err(S::OBJECT_NAME_NOT_FOUND));
    let v = h.port.new_tx();
    assert_eq!(
        h.put(v, "x", "1"),
        S::QUOTA_EXCEEDED,
        "third live transaction"
    );
    assert_eq!(h.stats().live_transactions, 2);
    h.rollback(u);
    assert_eq!(h.put(v, "x", "1"), S::SUCCESS);
}

#[test]
fn single_phase_commit_applies_or_rejects() {
    let h = Harness::with_limits(Limits {
        max_keys: 1,
        ..Limits::default()
    });
    let t = h.port.new_tx();
    let u = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(u, "b", "1"), S::SUCCESS);
    assert_eq!(
        h.notify(t, Notification::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(
        h.notify(u, Notification::SinglePhaseCommit),
        Some(Answer::SinglePhaseReject)
    );
    assert_eq!(
        h.get(u, "b"),
        Ok("1".into()),
        "rejecting keeps the transaction"
    );
    assert_eq!(h.commit(u), Answer::RollbackEnlistment);
    assert_eq!(h.get(0, "b"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.stats().single_phase_commits, 1);
    // Offered single-phase commit after only reading: read-only, not a commit.
    let r = h.port.new_tx();
    assert_eq!(h.get(r, "a"), Ok("1".into()));
    assert_eq!(
        h.notify(r, Notification::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    let s = h.stats();
    assert_eq!(
        (
            s.read_only,
            s.commits,
            s.single_phase_commits,
            s.live_transactions
        ),
        (1, 1, 1, 0)
    );
}

#[test]
fn protocol_surprises_are_answered_and_counted() {
    let h = Harness::new();
    let t = h.port.new_tx();
    h.put(t, "a", "1");
    assert_eq!(
        h.notify(t, Notification::Commit),
        Some(Answer::CommitComplete),
        "COMMIT before PREPARE"
    );
    assert_eq!(
        h.get(0, "a"),
        Err(S::OBJECT_NAME_NOT_FOUND),
        "but nothing was applied"
    );
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    // A duplicate COMMIT after the end (as after recovery) is acknowledged again.
    assert_eq!(
        h.notify(t, Notification::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.notify(t, Notification::Other(0x800)), None);
    assert_eq!(h.stats().protocol_errors, 2);
    assert_eq!(h.get(0, "a"), Ok("1".into()));
}

#[test]
fn a_phase_a_rollback_overtook_is_answered_without_a_protocol_error() {
    // KTM sends ROLLBACK as soon as a rollback is made, over an outstanding PREPREPARE or
    // PREPARE whose callback may then reach the engine after the ROLLBACK's.
    let h = Harness::new();
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(
        h.notify(t, Notification::Rollback),
        Some(Answer::RollbackComplete)
    );
    assert_eq!(
        h.notify(t, Notification::PrePrepare),
        Some(Answer::PrePrepareComplete)
    );
    assert_eq!(h.notify(t, Notification::Prepare), Some(Answer::ReadOnly));
    assert_eq!(h.stats().protocol_errors, 0);
    assert_eq!(h.get(0, "a"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.stats().live_transactions, 0);
}

#[test]
fn enlist_failure_and_rollback_during_enlist() {
    let h = Harness::new();
    let t = h.port.new_tx();
    *h.port.fail_enlist.borrow_mut() = Some(S::TRANSACTION_NOT_ACTIVE);
    assert_eq!(h.put(t, "a", "1"), S::TRANSACTION_NOT_ACTIVE);
    assert_eq!(h.stats().live_transactions, 0);
    // A ROLLBACK delivered before enlist returns.
    let u = h.port.new_tx();
    let engine: *const crate::testing::TestEngine = &h.engine;
    let port: *const crate::testing::ScriptedPort = &h.port;
    *h.port.during_enlist.borrow_mut() = Some(Box::new(move |key| {
        // SAFETY: test only; both outlive this call, which runs inside h.put below.
        let (engine, port) = unsafe { (&*engine, &*port) };
        engine.notify(port, key, Notification::Rollback, &9);
    }));
    assert_eq!(h.put(u, "a", "1"), S::TRANSACTION_NOT_ACTIVE);
    assert_eq!(
        h.port.answers.borrow().last().copied(),
        Some((9, Answer::RollbackComplete))
    );
    assert_eq!(
        h.port.closed.borrow().len(),
        1,
        "the late enlistment is closed"
    );
    assert_eq!(h.stats().live_transactions, 0);
    assert_eq!(h.put(0, "a", "free"), S::SUCCESS, "no lock left behind");
}

#[test]
fn list_pages_in_the_callers_view() {
    let h = Harness::new();
    for k in ["a1", "a2", "a3", "b1", "a0"] {
        h.put(0, k, "v");
    }
    let t = h.port.new_tx();
    h.put(t, "a25", "v");
    h.delete(t, "a2");
    h.put(t, "a9", "v");
    h.put(t, "a1", "changed");
    let u = h.port.new_tx();
    h.put(u, "a5", "invisible to t");
    for page in [0, 1, 2, 3, 100] {
        assert_eq!(
            h.list(t, "a", page).unwrap(),
            ["a0", "a1", "a25", "a3", "a9"],
            "page {page}"
        );
        assert_eq!(h.list(0, "a", page).unwrap(), ["a0", "a1", "a2", "a3"]);
    }
    assert_eq!(h.list(0, "c", 1).unwrap(), Vec::<String>::new());
    assert_eq!(h.list(0, "", 2).unwrap(), ["a0", "a1", "a2", "a3", "b1"]);
    // A cursor past the prefix range returns nothing.
    let req = Request::List {
        tx: 0,
        prefix: b"a",
        cursor: b"b",
        max_keys: 0,
    };
    let (st, out) = h.call(req, 300);
    assert_eq!(
        (st, &out[..8]),
        (S::SUCCESS, &[0u8, 0, 0, 0, 0, 0, 0, 0][..])
    );
}

#[test]
fn output_buffer_rules() {
    let h = Harness::new();
    h.put(0, "k", "0123456789");
    let get = |n| h.call(Request::Get { tx: 0, key: b"k" }, n);
    assert_eq!(get(7), (S::BUFFER_TOO_SMALL, vec![]));
    assert_eq!(get(8), (S::BUFFER_OVERFLOW, vec![10, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(get(17).0, S::BUFFER_OVERFLOW);
    assert_eq!(get(18).0, S::SUCCESS);
    assert_eq!(h.call(Request::Stats, 10).0, S::BUFFER_TOO_SMALL);
    assert_eq!(
        h.call(
            Request::List {
                tx: 0,
                prefix: b"",
                cursor: b"",
                max_keys: 0
            },
            264
        )
        .0,
        S::BUFFER_TOO_SMALL
    );
    let (st, out) = h.raw(Call::GetVersion.code(), b"", VERSION_LEN);
    assert_eq!(st, S::SUCCESS);
    assert_eq!(VersionInfo::decode(&out).unwrap().protocol_version, 1);
    // BEGIN with no room for the handle creates no transaction.
    let before = *h.port.next.borrow();
    assert_eq!(
        h.call(
            Request::Begin {
                timeout_ms: 0,
                description: b""
            },
            7
        )
        .0,
        S::BUFFER_TOO_SMALL
    );
    assert_eq!(*h.port.next.borrow(), before);
    let (st, out) = h.call(
        Request::Begin {
            timeout_ms: 0,
            description: b"d\0",
        },
        8,
    );
    assert_eq!(st, S::SUCCESS);
    let handle = u64::from_le_bytes(out.try_into().unwrap());
    assert_eq!(h.put(handle, "x", "y"), S::SUCCESS);
    assert_eq!(h.raw(0x0022_2FFC, b"", 100).0, S::INVALID_DEVICE_REQUEST);
    assert_eq!(h.put(12345, "x", "y"), S::INVALID_HANDLE);
}

#[test]
fn shutdown_refuses_requests() {
    let h = Harness::new();
    h.engine.shutdown();
    assert_eq!(h.put(0, "a", "1"), S::DEVICE_NOT_READY);
    assert_eq!(
        h.raw(Call::GetVersion.code(), b"", VERSION_LEN).0,
        S::DEVICE_NOT_READY
    );
}

#[test]
fn a_host_reaches_its_enlistment_until_the_transaction_ends() {
    let h = Harness::new();
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "k", "v"), S::SUCCESS);
    let key = h.key(t).unwrap();
    let before = h.engine.with_enlistment(key, |e| {
        let was = *e;
        *e += 100;
        was
    });
    let Some(was) = before else {
        panic!("an enlisted transaction's enlistment is reachable");
    };
    assert_eq!(h.engine.with_enlistment(key, |e| *e), Some(was + 100));
    let mut other = key;
    other.0 ^= 1 << 40;
    assert_eq!(
        h.engine.with_enlistment(other, |e| *e),
        None,
        "a key of another generation names nothing"
    );
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(
        *h.port.closed.borrow(),
        [was + 100],
        "the enlistment closed is the one the host changed"
    );
    assert_eq!(h.engine.with_enlistment(key, |e| *e), None, "ended");
}
