//! The engine's state, kept behind the host's lock. Each part owns its invariants:
//! - [`store`]: the committed entries, their byte count and the quotas;
//! - [`txns`]: the live transactions, their slots and how enlistment keys name them;
//! - [`writes`]: one transaction's pending writes and their net effect on the store;
//! - [`durability`]: the log writer, its counters, and whether KTM's recovery is under way;
//!
//! and the state ties them together with the pending writes, which double as key locks: every
//! pending write belongs to one live transaction that lists it (or is a durable non-transacted
//! write being forced).

pub(crate) mod durability;
pub(crate) mod store;
pub(crate) mod txns;
pub(crate) mod writes;

#[cfg(test)]
mod tests;

use crate::entry::Entry;
use crate::port::{EnlistmentKey, TxId};
use crate::tree::{Keyed, LeafHint, Tree};
use durability::Durability;
use ktmrm_proto::{Isolation, Limits, NtStatus, Stats};
use store::Store;
use txns::{Owner, Phase, PhaseTrace, Txn, Txns};

/// A pending write. Its presence in the pending tree is the key's lock: at most one live
/// transaction (or one non-transacted write being forced) may have written a key.
pub(crate) struct Pending {
    /// The key and new value (the value is ignored for a delete).
    pub(crate) entry: Entry,
    /// A delete rather than a put.
    pub(crate) delete: bool,
    /// The owning transaction.
    pub(crate) owner: Owner,
    /// The committed store's leaf the write's lookup went to: where its commit starts.
    pub(crate) leaf: LeafHint,
}

impl Keyed for Pending {
    fn key(&self) -> &[u8] {
        self.entry.key()
    }
}

/// The engine's state. Build it with [`State::new`] and hand it to the lock the host supplies.
pub struct State<E> {
    limits: Limits,
    pub(crate) store: Store,
    /// Every pending write, by key.
    pub(crate) pending: Tree<Pending>,
    /// Durable non-transacted writes being forced: pending writes owned by [`Owner::DIRECT`].
    pub(crate) direct_writes: usize,
    pub(crate) txns: Txns<E>,
    pub(crate) durability: Durability,
    pub(crate) stats: Stats,
    pub(crate) shutting_down: bool,
}

impl<E> State<E> {
    /// An empty store with the given quotas. Allocates nothing.
    #[must_use]
    pub const fn new(limits: Limits) -> Self {
        State {
            limits,
            store: Store::new(&limits),
            pending: Tree::new(),
            direct_writes: 0,
            txns: Txns::new(),
            durability: Durability::volatile(),
            stats: Stats {
                commits: 0,
                rollbacks: 0,
                conflicts: 0,
                live_transactions: 0,
                keys: 0,
                bytes: 0,
                prepared: 0,
                vetoes: 0,
                read_only: 0,
                single_phase_commits: 0,
                non_transacted_writes: 0,
                quota_rejections: 0,
                protocol_errors: 0,
                enlistments: 0,
            },
            shutting_down: false,
        }
    }

    /// Has `trace` called at every change of a transaction's phase from now on (`None`: no
    /// trace, the default). The cost when off is one branch per change, which happens a few
    /// times per transaction, never per request.
    pub fn trace_phases(&mut self, trace: Option<PhaseTrace>) {
        self.txns.set_trace(trace);
    }

    /// The quotas in force.
    #[must_use]
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Counters and current sizes.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.live_transactions = u64::from(self.txns.live());
        s.keys = u64::try_from(self.store.len()).unwrap_or(u64::MAX);
        s.bytes = self.store.bytes();
        s.prepared = self
            .txns
            .iter()
            .filter(|(_, t)| matches!(t.phase(), Phase::Prepared(_)))
            .count() as u64;
        s
    }

    /// Checks the invariants that tie the pending tree to the live transactions: every pending
    /// write (a key lock) belongs to a live transaction that lists it, and no transaction lists
    /// a write that is not there. A violation names the first broken rule. O(n); for tests and
    /// checked hosts.
    pub fn check_consistency(&self) -> Result<(), &'static str> {
        let mut listed = 0usize;
        for (key, t) in self.txns.iter() {
            for id in t.writes().ids() {
                match self.pending.slot(*id) {
                    Some(p) if p.owner == Txns::<E>::owner(key) => {}
                    Some(_) => return Err("a transaction lists a write another one owns"),
                    None => return Err("a transaction lists a write that is gone"),
                }
            }
            listed = listed.saturating_add(t.writes().len());
        }
        let direct = self
            .pending
            .iter()
            .filter(|(_, p)| p.owner == Owner::DIRECT)
            .count();
        if direct != self.direct_writes {
            return Err("non-transacted writes being forced are miscounted");
        }
        if listed.saturating_add(direct) != self.pending.len() {
            return Err("a pending write (key lock) belongs to no live transaction");
        }
        Ok(())
    }

    /// Bytes the engine has allocated for tree nodes (entries' own allocations not included).
    #[must_use]
    pub fn node_bytes(&self) -> usize {
        self.store
            .allocated_bytes()
            .saturating_add(self.pending.allocated_bytes())
            .saturating_add(self.txns.allocated_bytes())
    }

    /// The live transaction a key names, if its generation still matches.
    pub(crate) fn txn(&self, key: EnlistmentKey) -> Option<&Txn<E>> {
        self.txns.get(key)
    }

    pub(crate) fn txn_mut(&mut self, key: EnlistmentKey) -> Option<&mut Txn<E>> {
        self.txns.get_mut(key)
    }

    /// `key`'s phase (`None`: no such live transaction).
    pub(crate) fn phase(&self, key: EnlistmentKey) -> Option<Phase> {
        self.txns.get(key).map(Txn::phase)
    }

    /// Every phase change goes through here, so a host's trace sees each one
    /// ([`State::trace_phases`]).
    pub(crate) fn set_phase(&mut self, key: EnlistmentKey, phase: Phase) {
        self.txns.set_phase(key, phase);
    }

    /// The key of the live transaction with this GUID.
    pub(crate) fn find_txn(&self, id: &TxId) -> Option<EnlistmentKey> {
        self.txns.find(id)
    }

    /// Creates a transaction in phase Active with `enlisting` set. Fails with
    /// `STATUS_QUOTA_EXCEEDED` at the live-transaction limit and `STATUS_INSUFFICIENT_RESOURCES`
    /// when allocation fails; nothing changes then.
    pub(crate) fn create_txn(
        &mut self,
        id: TxId,
        isolation: Isolation,
    ) -> Result<EnlistmentKey, NtStatus> {
        if self.txns.live() >= self.limits.max_live_transactions {
            self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            return Err(NtStatus::QUOTA_EXCEEDED);
        }
        self.txns.create(id, isolation)
    }

    /// Frees a transaction's slot and returns its enlistment for the caller to close (after the
    /// lock is released). Its writes must already be gone.
    pub(crate) fn remove_txn(&mut self, key: EnlistmentKey) -> Option<E> {
        self.txns.remove(key)
    }
}
