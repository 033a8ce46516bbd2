//! The two-phase-commit state machine of one enlistment (ktm.md §1, §3, §8):
//! PREPREPARE → PrePrepareComplete; PREPARE → yes vote (slots reserved, so COMMIT cannot fail),
//! no vote (quota exceeded or out of memory), or read-only (nothing written); COMMIT → apply;
//! ROLLBACK → discard; SINGLE_PHASE_COMMIT → apply at once, or reject when it would not fit.
//! Each notification yields exactly one answer; a notification that does not fit the state is
//! counted as a protocol error and answered the way that keeps KTM moving without losing data.

use crate::entry::KeyBuf;
use crate::port::{Answer, EnlistmentKey, Notification};
use crate::state::{Phase, State};
use alloc::vec::Vec;

/// What the host must do after a notification, outside the lock.
pub(crate) struct Reaction<E> {
    pub(crate) answer: Option<Answer>,
    pub(crate) close: Option<E>,
}

impl<E> State<E> {
    fn protocol_error(&mut self) {
        self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
    }

    /// Handles a notification for `key` and says how to answer it.
    pub(crate) fn on_notification(&mut self, key: EnlistmentKey, n: Notification) -> Reaction<E> {
        let phase = self.txn(key).map(|t| t.phase);
        let (answer, end) = match (n, phase) {
            (Notification::PrePrepare, Some(Phase::Active)) => {
                self.set_phase(key, Phase::PrePrepared);
                (Some(Answer::PrePrepareComplete), false)
            }
            (Notification::Prepare, Some(Phase::Active | Phase::PrePrepared)) => self.prepare(key),
            (Notification::Commit, Some(Phase::Prepared)) => {
                self.apply(key);
                self.stats.commits = self.stats.commits.saturating_add(1);
                (Some(Answer::CommitComplete), true)
            }
            (Notification::SinglePhaseCommit, Some(Phase::Active | Phase::PrePrepared))
                if self.txn(key).is_some_and(|t| t.writes.is_empty()) =>
            {
                // Offered single-phase commit with nothing written: as read-only as a PREPARE
                // answered ReadOnlyEnlistment, but SPC wants CommitComplete.
                self.stats.read_only = self.stats.read_only.saturating_add(1);
                (Some(Answer::CommitComplete), true)
            }
            (Notification::SinglePhaseCommit, Some(Phase::Active | Phase::PrePrepared)) => {
                if self.reserve_for_commit(key) {
                    self.apply(key);
                    self.stats.commits = self.stats.commits.saturating_add(1);
                    self.stats.single_phase_commits =
                        self.stats.single_phase_commits.saturating_add(1);
                    (Some(Answer::CommitComplete), true)
                } else {
                    // KTM falls back to PREPREPARE/PREPARE, where this transaction votes no.
                    (Some(Answer::SinglePhaseReject), false)
                }
            }
            (Notification::Rollback, Some(p)) if p != Phase::Ended => {
                self.discard(key);
                self.stats.rollbacks = self.stats.rollbacks.saturating_add(1);
                (Some(Answer::RollbackComplete), true)
            }
            (Notification::RmDisconnected | Notification::Other(_), _) => (None, false),
            // Out of order, repeated, or for an enlistment already ended. A duplicate COMMIT can
            // follow recovery (ktm.md §8 [S21]): acknowledge it again. Otherwise answer what the
            // notification asks for without touching data: an ended transaction has nothing left.
            (n, _) => {
                self.protocol_error();
                let answer = match n {
                    Notification::PrePrepare => Answer::PrePrepareComplete,
                    Notification::Prepare if phase.is_none() || phase == Some(Phase::Ended) => {
                        Answer::ReadOnly
                    }
                    Notification::Prepare => Answer::PrepareComplete,
                    Notification::Commit | Notification::SinglePhaseCommit => {
                        Answer::CommitComplete
                    }
                    _ => Answer::RollbackComplete,
                };
                (Some(answer), false)
            }
        };
        let close = if end { self.end(key) } else { None };
        Reaction { answer, close }
    }

    fn set_phase(&mut self, key: EnlistmentKey, phase: Phase) {
        if let Some(t) = self.txn_mut(key) {
            t.phase = phase;
        }
    }

    /// PREPARE: read-only when nothing was written, a no vote when the commit would not fit,
    /// else a yes vote with everything commit needs reserved.
    fn prepare(&mut self, key: EnlistmentKey) -> (Option<Answer>, bool) {
        if self.txn(key).is_some_and(|t| t.writes.is_empty()) {
            self.stats.read_only = self.stats.read_only.saturating_add(1);
            return (Some(Answer::ReadOnly), true);
        }
        if self.reserve_for_commit(key) {
            self.set_phase(key, Phase::Prepared);
            (Some(Answer::PrepareComplete), false)
        } else {
            self.discard(key);
            self.set_phase(key, Phase::Vetoed);
            self.stats.vetoes = self.stats.vetoes.saturating_add(1);
            (Some(Answer::RollbackEnlistment), false)
        }
    }

    /// Checks the quotas and reserves the committed-tree slots commit will use, so that applying
    /// the writes later cannot fail. False (and nothing reserved) when it does not fit.
    fn reserve_for_commit(&mut self, key: EnlistmentKey) -> bool {
        let Some(t) = self.txn(key) else { return false };
        let (puts, dk, db, charged) = (t.puts, t.key_delta, t.byte_delta, t.charged);
        if charged {
            return true;
        }
        if !self.fits(dk, db) {
            self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            return false;
        }
        if self.committed.reserve(puts).is_err() {
            return false;
        }
        self.prepared_keys = self.prepared_keys.saturating_add(dk.max(0).unsigned_abs());
        self.prepared_bytes = self.prepared_bytes.saturating_add(db.max(0).unsigned_abs());
        if let Some(t) = self.txn_mut(key) {
            t.reserved = puts;
            t.charged = true;
        }
        true
    }

    /// Gives back what `reserve_for_commit` took.
    fn release_reservation(&mut self, key: EnlistmentKey) {
        let Some(t) = self.txn_mut(key) else { return };
        let (reserved, dk, db, charged) = (t.reserved, t.key_delta, t.byte_delta, t.charged);
        t.reserved = 0;
        t.charged = false;
        self.committed.unreserve(reserved);
        if charged {
            self.prepared_keys = self.prepared_keys.saturating_sub(dk.max(0).unsigned_abs());
            self.prepared_bytes = self.prepared_bytes.saturating_sub(db.max(0).unsigned_abs());
        }
    }

    /// Takes the transaction's write list, leaving it empty.
    fn take_writes(&mut self, key: EnlistmentKey) -> Vec<crate::tree::NodeId> {
        self.txn_mut(key)
            .map(|t| core::mem::take(&mut t.writes))
            .unwrap_or_default()
    }

    /// Moves every pending write into the committed store, using the reserved slots.
    fn apply(&mut self, key: EnlistmentKey) {
        let writes = self.take_writes(key);
        let reserved = self.txn(key).map_or(0, |t| t.reserved);
        let mut used = 0usize;
        for node in writes {
            let Some(k) = self
                .pending
                .node(node)
                .and_then(|p| KeyBuf::new(p.entry.key()))
            else {
                self.protocol_error();
                continue;
            };
            let Some(p) = self.pending.remove(k.as_slice()) else {
                continue;
            };
            if p.delete {
                if let Some(old) = self.committed.remove(k.as_slice()) {
                    self.committed_bytes = self.committed_bytes.saturating_sub(old.charge());
                }
                continue;
            }
            let charge = p.entry.charge();
            let res = if used < reserved {
                used = used.saturating_add(1);
                self.committed.insert_reserved(p.entry)
            } else {
                self.committed.insert(p.entry)
            };
            match res {
                Ok((_, old)) => {
                    let old = old.map_or(0, |o| o.charge());
                    self.committed_bytes = self
                        .committed_bytes
                        .saturating_sub(old)
                        .saturating_add(charge);
                }
                // Unreachable while reservations hold; counted so a test would see it.
                Err(_) => self.protocol_error(),
            }
        }
        if let Some(t) = self.txn_mut(key) {
            t.reserved = t.reserved.saturating_sub(used);
        }
        self.release_reservation(key);
    }

    /// Drops every pending write (releasing the key locks) and any reservation.
    fn discard(&mut self, key: EnlistmentKey) {
        for node in self.take_writes(key) {
            if let Some(k) = self
                .pending
                .node(node)
                .and_then(|p| KeyBuf::new(p.entry.key()))
            {
                self.pending.remove(k.as_slice());
            }
        }
        self.release_reservation(key);
    }

    /// Marks a transaction ended and frees its slot unless a thread is still enlisting it (that
    /// thread frees it). Returns the enlistment to close.
    fn end(&mut self, key: EnlistmentKey) -> Option<E> {
        let t = self.txn_mut(key)?;
        t.phase = Phase::Ended;
        if t.enlisting {
            return None;
        }
        self.remove_txn(key)
    }
}
