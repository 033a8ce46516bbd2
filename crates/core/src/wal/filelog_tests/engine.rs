//! The durable engine over a file log.

use super::*;

// ---- the durable engine over a file ----

/// A durable engine over the log in `f`, through KTM's recovery with nothing to recover.
fn boot<'a>(log: &'a Log<'a>) -> Harness<&'a Log<'a>> {
    let (h, _) = Harness::durable(log).unwrap();
    h.last_recover();
    h
}

#[test]
fn committed_data_survives_a_crash_of_the_file_and_unforced_data_does_not() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "x", "autocommit"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    let live = h.port.new_tx();
    assert_eq!(h.put(live, "z", "never prepared"), S::SUCCESS);
    // The disk stops flushing: this write is appended and written, never durable.
    f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
    assert_eq!(h.put(0, "y", "lost"), S::UNSUCCESSFUL);
    drop(h);
    drop(log);
    f.crash();
    f.disk(|d| d.fail_flush = None);
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (2, 0));
    assert_eq!(report.dropped_tail, None);
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.get(0, "x"), Ok("autocommit".into()));
    assert_eq!(h.get(0, "y"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "z"), Err(S::OBJECT_NAME_NOT_FOUND));
    // A checkpoint rewrites the file; what follows it survives another crash.
    h.engine.checkpoint().unwrap();
    assert_eq!(f.counts().2, 1);
    assert_eq!(h.put(0, "y", "after"), S::SUCCESS);
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.checkpoint.is_some()), (3, true));
    h.last_recover();
    assert_eq!(h.get(0, "y"), Ok("after".into()));
    assert_eq!(h.get(0, "a"), Ok("1".into()));
}

#[test]
fn a_prepared_transaction_is_in_doubt_after_a_crash_of_the_file() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "old"), S::SUCCESS);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::PrePrepare), Some(Answer::PrePrepareComplete));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (1, 1));
    let key = h.recover(uow, 41);
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("old".into()));
    assert_eq!(h.put(0, "a", "x"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.notify_key(key, 41, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "a"), Ok("new".into()));
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 0, "the Commit record was forced");
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("new".into()));
    assert_eq!(h.get(0, "b"), Ok("1".into()));
}

#[test]
fn the_engine_drops_a_torn_prepare_and_continues_after_it() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "b", "2"), S::SUCCESS);
    f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::RollbackEnlistment));
    drop(h);
    f.crash_torn(30);
    f.disk(|d| d.fail_flush = None);
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(
        report.dropped_tail.expect("torn record dropped").from,
        Lsn(3)
    );
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.put(0, "c", "3"), S::SUCCESS);
    drop(h);
    f.crash();
    let log = open(&f);
    let (_, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.dropped_tail), (2, None));
}
