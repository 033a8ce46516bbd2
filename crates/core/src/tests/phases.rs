//! Every phase change of a transaction reaches the host's trace ([`State::trace_phases`]), in
//! the order the protocol makes them.

use std::cell::RefCell;
use std::vec::Vec;

use crate::port::{Answer, Notification as N, TxId};
use crate::testing::{Harness, ScriptedPort};
use crate::wal::MemLog;
use crate::{Engine, SpinLock, State};
use ktmrm_proto::{Limits, NtStatus as S};

std::thread_local! {
    static SEEN: RefCell<Vec<(TxId, &'static str, &'static str)>> = const { RefCell::new(Vec::new()) };
}

fn record(tx: TxId, from: &'static str, to: &'static str) {
    SEEN.with(|s| s.borrow_mut().push((tx, from, to)));
}

/// The changes traced since the last call.
fn take() -> Vec<(TxId, &'static str, &'static str)> {
    SEEN.with(|s| core::mem::take(&mut *s.borrow_mut()))
}

/// Those of transaction `tx`.
fn of(
    changes: &[(TxId, &'static str, &'static str)],
    tx: TxId,
) -> Vec<(&'static str, &'static str)> {
    changes
        .iter()
        .filter(|c| c.0 == tx)
        .map(|c| (c.1, c.2))
        .collect()
}

/// The changes traced since the last call, for transaction `tx`.
fn seen(tx: TxId) -> Vec<(&'static str, &'static str)> {
    of(&take(), tx)
}

fn traced(limits: Limits) -> Harness {
    let mut state = State::new(limits);
    state.trace_phases(Some(record));
    Harness {
        port: ScriptedPort::default(),
        engine: Engine::new(SpinLock::new(state)),
    }
}

#[test]
fn commit_rollback_veto_and_unload_trace_each_phase_change() {
    // One key fits: both writes pass, and the second PREPARE finds the first one's key charged.
    let h = traced(Limits {
        max_keys: 1,
        ..Limits::default()
    });
    let (t, u) = (h.port.new_tx(), h.port.new_tx());
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(u, "b", "2"), S::SUCCESS);
    for tx in [t, u] {
        assert_eq!(
            h.notify(tx, N::PrePrepare),
            Some(Answer::PrePrepareComplete)
        );
    }
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    assert_eq!(h.notify(u, N::Prepare), Some(Answer::RollbackEnlistment));
    assert_eq!(h.notify(t, N::Commit), Some(Answer::CommitComplete));
    assert_eq!(h.notify(u, N::Rollback), Some(Answer::RollbackComplete));
    let all = take();
    assert_eq!(
        of(&all, h.tx_id(t)),
        [
            ("Active", "PrePrepared"),
            ("PrePrepared", "Prepared"),
            ("Prepared", "Ended")
        ]
    );
    assert_eq!(
        of(&all, h.tx_id(u)),
        [
            ("Active", "PrePrepared"),
            ("PrePrepared", "Vetoed"),
            ("Vetoed", "Ended")
        ]
    );

    let v = h.port.new_tx();
    assert_eq!(h.delete(v, "a"), S::SUCCESS);
    h.rollback(v);
    assert_eq!(seen(h.tx_id(v)), [("Active", "Ended")]);

    // Unload asks KTM to roll back what has not prepared; KTM's ROLLBACK ends it.
    let w = h.port.new_tx();
    assert_eq!(h.delete(w, "a"), S::SUCCESS);
    h.engine.rollback_unprepared(&h.port);
    assert_eq!(h.notify(w, N::Rollback), Some(Answer::RollbackComplete));
    assert_eq!(
        seen(h.tx_id(w)),
        [("Active", "RollbackAsked"), ("RollbackAsked", "Ended")]
    );
}

#[test]
fn a_durable_commit_traces_its_wait_for_the_force() {
    let log = MemLog::new();
    let (mut state, _) = State::recover(Limits::default(), &log).unwrap();
    state.trace_phases(Some(record));
    let h = Harness {
        port: ScriptedPort::default(),
        engine: Engine::with_log(SpinLock::new(state), &log),
    };
    h.last_recover();
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(
        seen(h.tx_id(t)),
        [
            ("Active", "PrePrepared"),
            ("PrePrepared", "Prepared"),
            ("Prepared", "Committing"),
            ("Committing", "Ended")
        ]
    );
}
