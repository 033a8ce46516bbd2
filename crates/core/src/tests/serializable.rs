//! Serializable transactions through the dispatcher: each anomaly read committed allows is
//! refused (the reader votes no, or its write conflicts), what serializability does not need
//! is still allowed, and read committed is unchanged.

use std::vec::Vec;

use crate::port::{Answer, Notification as N};
use crate::testing::Harness;
use crate::{MAX_READ_SET_BYTES, POINT_READ_BYTES};
use ktmrm_proto::{Isolation, NtStatus as S, Request};

const NO: Answer = Answer::RollbackEnlistment;
const YES: Answer = Answer::PrepareComplete;

/// A harness with `a = 1`, `b = 2` committed.
fn store() -> Harness {
    let h = Harness::new();
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(0, "b", "2"), S::SUCCESS);
    h
}

/// A transaction whose requests state `level`.
fn begin(h: &Harness, level: Isolation) -> u64 {
    let tx = h.port.new_tx();
    h.port.levels.borrow_mut().insert(tx, level);
    tx
}

fn ser(h: &Harness) -> u64 {
    begin(h, Isolation::Serializable)
}

#[test]
fn lost_update_is_refused_at_the_write_and_at_commit() {
    let h = store();
    let (t1, t2) = (ser(&h), ser(&h));
    assert_eq!(h.get(t1, "a").unwrap(), "1");
    assert_eq!(h.get(t2, "a").unwrap(), "1");
    assert_eq!(h.put(t1, "a", "11"), S::SUCCESS);
    assert_eq!(h.commit(t1), YES);
    // T2 read the value T1 replaced: its write fails at once, and it cannot commit.
    assert_eq!(h.put(t2, "a", "12"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.get(t2, "a").unwrap(),
        "11",
        "a doomed transaction's reads still answer"
    );
    assert_eq!(h.commit(t2), NO);
    assert_eq!(h.get(0, "a").unwrap(), "11");
}

#[test]
fn read_committed_still_allows_the_lost_update() {
    let h = store();
    for level in [Isolation::Unstated, Isolation::ReadCommitted] {
        let (t1, t2) = (begin(&h, level), begin(&h, level));
        assert_eq!(h.get(t1, "a").unwrap(), h.get(t2, "a").unwrap());
        assert_eq!(h.put(t1, "a", "x"), S::SUCCESS);
        assert_eq!(h.commit(t1), YES);
        assert_eq!(h.put(t2, "a", "y"), S::SUCCESS);
        assert_eq!(h.commit(t2), YES);
        assert_eq!(h.get(0, "a").unwrap(), "y");
    }
}

#[test]
fn write_skew_is_refused_at_the_second_prepare() {
    let h = store();
    let (t1, t2) = (ser(&h), ser(&h));
    for t in [t1, t2] {
        assert_eq!(h.get(t, "a").unwrap(), "1");
        assert_eq!(h.get(t, "b").unwrap(), "2");
    }
    assert_eq!(h.put(t1, "a", "0"), S::SUCCESS);
    assert_eq!(h.put(t2, "b", "0"), S::SUCCESS);
    assert_eq!(h.commit(t1), YES);
    assert_eq!(h.commit(t2), NO);
    assert_eq!(h.get(0, "b").unwrap(), "2");
}

#[test]
fn read_only_transactions_are_validated_too() {
    let h = store();
    let (stale, fresh) = (ser(&h), ser(&h));
    assert_eq!(h.get(stale, "a").unwrap(), "1");
    assert_eq!(h.get(fresh, "b").unwrap(), "2");
    let w = ser(&h);
    assert_eq!(h.put(w, "a", "9"), S::SUCCESS);
    assert_eq!(h.commit(w), YES);
    // `stale` read a, then a changed: it saw a state no serial order gives it together with
    // whatever it reads next, so it must not commit.
    assert_eq!(h.get(stale, "b").unwrap(), "2");
    assert_eq!(h.commit(stale), NO);
    assert_eq!(h.commit(fresh), Answer::ReadOnly);
}

#[test]
fn phantoms_in_a_listed_range_doom_the_lister_and_others_do_not() {
    let h = store();
    assert_eq!(h.put(0, "p/1", "x"), S::SUCCESS);
    let (lister, other) = (ser(&h), ser(&h));
    assert_eq!(h.list(lister, "p/", 0).unwrap(), ["p/1"]);
    assert_eq!(h.list(other, "p/", 0).unwrap(), ["p/1"]);
    // Outside the range: no effect.
    assert_eq!(h.put(0, "q", "1"), S::SUCCESS);
    assert_eq!(h.put(0, "p", "1"), S::SUCCESS);
    assert_eq!(h.put(lister, "a", "2"), S::SUCCESS);
    // An insert into it: a phantom for both.
    let w = ser(&h);
    assert_eq!(h.put(w, "p/2", "y"), S::SUCCESS);
    assert_eq!(h.commit(w), YES);
    assert_eq!(h.put(lister, "b", "3"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(h.commit(lister), NO);
    assert_eq!(h.commit(other), NO);
}

#[test]
fn a_page_with_more_to_come_covers_only_up_to_its_last_key() {
    let h = Harness::new();
    for k in ["k/1", "k/3", "k/5"] {
        assert_eq!(h.put(0, k, "v"), S::SUCCESS);
    }
    let reader = |h: &Harness| {
        let t = ser(h);
        let req = Request::List {
            tx: t,
            prefix: b"k/",
            cursor: b"",
            max_keys: 2,
        };
        assert_eq!(h.call(req, 4096).0, S::SUCCESS);
        t
    };
    // The page held k/1 and k/3: inserting after k/3 is outside what it read.
    let t = reader(&h);
    assert_eq!(h.put(0, "k/4", "v"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::ReadOnly);
    // Inserting between them, or deleting one, is not.
    let t = reader(&h);
    assert_eq!(h.put(0, "k/2", "v"), S::SUCCESS);
    assert_eq!(h.commit(t), NO);
    let t = reader(&h);
    assert_eq!(h.delete(0, "k/1"), S::SUCCESS);
    assert_eq!(h.commit(t), NO);
}

#[test]
fn reading_a_key_a_prepared_writer_holds_dooms_the_reader() {
    let h = store();
    let w = ser(&h);
    assert_eq!(h.put(w, "a", "new"), S::SUCCESS);
    assert_eq!(h.notify(w, N::PrePrepare), Some(Answer::PrePrepareComplete));
    assert_eq!(h.notify(w, N::Prepare), Some(YES));
    // w is ordered before r now; r still sees the old value, which w's commit replaces.
    let r = ser(&h);
    assert_eq!(h.get(r, "a").unwrap(), "1");
    assert_eq!(h.notify(w, N::Commit), Some(Answer::CommitComplete));
    assert_eq!(h.commit(r), NO);
    // The same through LIST.
    let w = ser(&h);
    assert_eq!(h.put(w, "c", "3"), S::SUCCESS);
    assert_eq!(h.notify(w, N::Prepare), Some(YES));
    let r = ser(&h);
    assert_eq!(h.list(r, "", 0).unwrap(), ["a", "b"]);
    assert_eq!(h.notify(w, N::Commit), Some(Answer::CommitComplete));
    assert_eq!(h.commit(r), NO);
}

#[test]
fn non_transacted_writes_and_absences_count() {
    let h = store();
    let t = ser(&h);
    assert_eq!(h.get(t, "a").unwrap(), "1");
    assert_eq!(h.put(0, "a", "2"), S::SUCCESS);
    assert_eq!(h.commit(t), NO);
    // A GET and a DELETE that found nothing read an absence.
    let (g, d) = (ser(&h), ser(&h));
    assert_eq!(h.get(g, "x"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.delete(d, "y"), S::OBJECT_NAME_NOT_FOUND);
    assert_eq!(h.put(0, "x", "1"), S::SUCCESS);
    assert_eq!(h.put(0, "y", "1"), S::SUCCESS);
    assert_eq!(h.commit(g), NO);
    assert_eq!(h.commit(d), NO);
}

#[test]
fn own_writes_and_blind_writes_do_not_doom() {
    let h = store();
    let (t1, t2) = (ser(&h), ser(&h));
    assert_eq!(h.put(t1, "a", "x"), S::SUCCESS);
    assert_eq!(h.get(t1, "a").unwrap(), "x");
    // Blind writes of different keys commute.
    assert_eq!(h.put(t2, "b", "y"), S::SUCCESS);
    assert_eq!(h.commit(t2), YES);
    assert_eq!(h.commit(t1), YES);
    assert_eq!(h.get(0, "a").unwrap(), "x");
    assert_eq!(h.get(0, "b").unwrap(), "y");
}

#[test]
fn a_transaction_keeps_the_level_it_was_first_seen_with() {
    let h = store();
    let t = ser(&h);
    assert_eq!(h.get(t, "a").unwrap(), "1");
    let get = Request::Get { tx: t, key: b"a" };
    assert_eq!(
        h.call_stating(get, Isolation::ReadCommitted, 64).0,
        S::INVALID_PARAMETER_MIX
    );
    assert_eq!(h.call_stating(get, Isolation::Unstated, 64).0, S::SUCCESS);
    let r = begin(&h, Isolation::Unstated);
    assert_eq!(h.get(r, "a").unwrap(), "1");
    assert_eq!(
        h.call_stating(
            Request::Get { tx: r, key: b"a" },
            Isolation::Serializable,
            64
        )
        .0,
        S::INVALID_PARAMETER_MIX
    );
    // The refused request changed nothing: t is still serializable, r read committed.
    assert_eq!(h.put(0, "a", "2"), S::SUCCESS);
    assert_eq!(h.commit(t), NO);
    assert_eq!(h.commit(r), Answer::ReadOnly);
}

#[test]
fn begin_stating_serializable_enlists_at_once() {
    let h = store();
    let begin = Request::Begin {
        timeout_ms: 0,
        description: b"",
    };
    let (st, out) = h.call_stating(begin, Isolation::Serializable, 8);
    assert_eq!(st, S::SUCCESS);
    let tx = u64::from_le_bytes(out.try_into().unwrap());
    assert_eq!(h.stats().enlistments, 1);
    let get = Request::Get { tx, key: b"a" };
    assert_eq!(
        h.call_stating(get, Isolation::ReadCommitted, 64).0,
        S::INVALID_PARAMETER_MIX
    );
    assert_eq!(h.call(get, 64).0, S::SUCCESS);
    assert_eq!(h.put(0, "a", "2"), S::SUCCESS);
    assert_eq!(h.commit(tx), NO);
    // BEGIN without a level enlists nothing, as before.
    let (st, _) = h.call(begin, 8);
    assert_eq!(st, S::SUCCESS);
    assert_eq!(h.stats().enlistments, 1);
}

#[test]
fn the_read_set_quota_refuses_the_read_past_it() {
    let h = Harness::new();
    let t = ser(&h);
    let n = MAX_READ_SET_BYTES / POINT_READ_BYTES;
    for i in 0..n {
        assert_eq!(h.get(t, &format!("k{i}")), Err(S::OBJECT_NAME_NOT_FOUND));
    }
    assert_eq!(
        h.engine.with_state(|s| s.read_set_bytes()),
        MAX_READ_SET_BYTES
    );
    assert_eq!(h.get(t, "one more"), Err(S::QUOTA_EXCEEDED));
    assert_eq!(
        h.get(t, "k0"),
        Err(S::OBJECT_NAME_NOT_FOUND),
        "a key read before is free"
    );
    assert_eq!(h.stats().quota_rejections, 1);
    assert_eq!(h.commit(t), Answer::ReadOnly);
    assert_eq!(h.engine.with_state(|s| s.read_set_bytes()), 0);
}

#[test]
fn no_reads_once_validated_and_single_phase_rejects_a_doomed_one() {
    let h = store();
    let t = ser(&h);
    assert_eq!(h.put(t, "a", "x"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(YES));
    assert_eq!(h.get(t, "b"), Err(S::TRANSACTION_NOT_ACTIVE));
    assert_eq!(h.list(t, "", 0), Err(S::TRANSACTION_NOT_ACTIVE));
    assert_eq!(h.notify(t, N::Commit), Some(Answer::CommitComplete));
    // Single-phase: a doomed transaction is rejected (KTM falls back to two phases, where it
    // votes no); an undoomed one commits.
    let (doomed, fine) = (ser(&h), ser(&h));
    assert_eq!(h.get(doomed, "b").unwrap(), "2");
    assert_eq!(h.get(fine, "a").unwrap(), "x");
    assert_eq!(h.put(0, "b", "3"), S::SUCCESS);
    assert_eq!(
        h.notify(doomed, N::SinglePhaseCommit),
        Some(Answer::SinglePhaseReject)
    );
    assert_eq!(h.notify(doomed, N::Prepare), Some(NO));
    assert_eq!(
        h.notify(doomed, N::Rollback),
        Some(Answer::RollbackComplete)
    );
    assert_eq!(h.put(fine, "c", "1"), S::SUCCESS);
    assert_eq!(
        h.notify(fine, N::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "c").unwrap(), "1");
}

#[test]
fn a_vetoed_writer_leaves_readers_doomed_but_the_store_unchanged() {
    // A writer dooms readers at its yes vote; if another RM then votes no, the readers were
    // doomed for nothing: a retry, never a wrong commit.
    let h = store();
    let r = ser(&h);
    assert_eq!(h.get(r, "a").unwrap(), "1");
    let w = ser(&h);
    assert_eq!(h.put(w, "a", "x"), S::SUCCESS);
    assert_eq!(h.notify(w, N::Prepare), Some(YES));
    assert_eq!(h.notify(w, N::Rollback), Some(Answer::RollbackComplete));
    assert_eq!(h.get(0, "a").unwrap(), "1");
    assert_eq!(h.commit(r), NO);
    let keys: Vec<_> = h.list(0, "", 0).unwrap();
    assert_eq!(keys, ["a", "b"]);
}
