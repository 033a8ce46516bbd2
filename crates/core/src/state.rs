//! The engine's state, kept behind the host's lock: the committed store, every live transaction's
//! pending writes (which double as key locks), and the live transactions themselves.

use crate::entry::Entry;
use crate::fallible;
use crate::port::{EnlistmentKey, TxId};
use crate::tree::{Keyed, LeafHint, SlotId, Tree};
use alloc::vec::Vec;
use ktmrm_proto::{Limits, NtStatus, Stats};

/// Where a transaction is in KTM's protocol, as ktmrm sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting reads and writes.
    Active,
    /// PREPREPARE answered: reads only.
    PrePrepared,
    /// Voted yes; commit cannot fail now (its slots are reserved).
    Prepared,
    /// Voted no; writes discarded; waiting for KTM's ROLLBACK.
    Vetoed,
    /// Unload asked KTM to roll it back (`KtmPort::rollback_enlistment`, a no vote KTM may take
    /// as the answer to a phase it already sent); waiting for KTM's ROLLBACK, answering no
    /// phase before it.
    RollbackAsked,
    /// Durable only: its Commit record appended; CommitComplete waits for the force. A
    /// two-phase commit is applied already; a single-phase one is applied once forced (its
    /// writes stay pending, their keys locked, until then).
    Committing,
    /// Durable only: applied, but the log could not be forced, so CommitComplete is withheld
    /// (KTM keeps the transaction and redelivers COMMIT after a restart; docs/ktm.md §8).
    Unlogged,
    /// Outcome applied; the slot is freed once no thread is still enlisting it.
    Ended,
}

impl Phase {
    /// The phase's name, for a host's trace.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Phase::Active => "Active",
            Phase::PrePrepared => "PrePrepared",
            Phase::Prepared => "Prepared",
            Phase::Vetoed => "Vetoed",
            Phase::RollbackAsked => "RollbackAsked",
            Phase::Committing => "Committing",
            Phase::Unlogged => "Unlogged",
            Phase::Ended => "Ended",
        }
    }
}

/// A host's hook for phase changes: the transaction, the phase it leaves and the one it enters
/// (by name). Called under the state lock, so it must only record (the driver prints a
/// `DbgPrint` line at its verbose level).
pub type PhaseTrace = fn(TxId, &'static str, &'static str);

/// The owner of a pending write that belongs to no transaction: a durable non-transacted write
/// waiting for its force (no slot number reaches it: `create_txn` stops below).
pub(crate) const DIRECT_OWNER: u32 = u32::MAX;

/// A pending write. Its presence in the pending tree is the key's lock: at most one live
/// transaction (or one non-transacted write being forced) may have written a key.
pub(crate) struct Pending {
    /// The key and new value (the value is ignored for a delete).
    pub(crate) entry: Entry,
    /// A delete rather than a put.
    pub(crate) delete: bool,
    /// The owning transaction's slot.
    pub(crate) owner: u32,
    /// The committed store's leaf the write's lookup went to: where its commit starts.
    pub(crate) leaf: LeafHint,
}

impl Keyed for Pending {
    fn key(&self) -> &[u8] {
        self.entry.key()
    }
}

/// Maps a transaction's GUID to its slot.
pub(crate) struct TxIndex {
    pub(crate) id: TxId,
    pub(crate) slot: u32,
}

impl Keyed for TxIndex {
    fn key(&self) -> &[u8] {
        &self.id.0
    }
}

/// One live transaction.
pub(crate) struct Txn<E> {
    pub(crate) id: TxId,
    pub(crate) phase: Phase,
    /// A thread is inside `KtmPort::enlist` for this transaction; other requests wait.
    pub(crate) enlisting: bool,
    /// Set once `enlist` returns; closed by whoever ends the transaction last.
    pub(crate) enlistment: Option<E>,
    /// Pending-tree nodes this transaction owns (stable ids).
    pub(crate) writes: Vec<SlotId>,
    /// How many of `writes` are puts: the committed-tree slots commit may need.
    pub(crate) puts: usize,
    /// Net change this transaction makes to the committed key count and byte count.
    pub(crate) key_delta: i64,
    pub(crate) byte_delta: i64,
    /// Committed-tree reservations held since PREPARE.
    pub(crate) reserved: usize,
    /// The key and byte growth is counted in `State::prepared_*` (between PREPARE and the outcome).
    pub(crate) charged: bool,
    /// Durable only: a Prepare record for it is in the log without an outcome record.
    pub(crate) logged: bool,
    /// Rebuilt from the log as in doubt; KTM has not sent RECOVER for it yet (presumed aborted
    /// at LAST_RECOVER if it never does).
    pub(crate) awaiting_recover: bool,
    /// Durable only: the log holds memory for this transaction's outcome record (reserved at
    /// PREPARE), so COMMIT cannot fail for lack of it.
    pub(crate) outcome_reserved: bool,
}

pub(crate) struct Slot<E> {
    pub(crate) generation: u32,
    pub(crate) txn: Option<Txn<E>>,
}

/// The engine's state. Build it with [`State::new`] and hand it to the lock the host supplies.
pub struct State<E> {
    pub(crate) limits: Limits,
    pub(crate) committed: Tree<Entry>,
    pub(crate) committed_bytes: u64,
    pub(crate) pending: Tree<Pending>,
    pub(crate) index: Tree<TxIndex>,
    pub(crate) slots: Vec<Slot<E>>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) live: u32,
    /// Growth that prepared transactions (and non-transacted writes being forced) will apply,
    /// counted against the quotas.
    pub(crate) prepared_keys: u64,
    pub(crate) prepared_bytes: u64,
    /// Durable non-transacted writes being forced: pending writes owned by [`DIRECT_OWNER`].
    pub(crate) direct_writes: usize,
    pub(crate) stats: Stats,
    pub(crate) shutting_down: bool,
    /// Durable only: numbers and encodes the log's records (appends happen under this lock, so
    /// log order is the order of changes; forces happen outside it).
    pub(crate) log: Option<crate::wal::LogWriter>,
    /// Durable only: rebuilt from the log, LAST_RECOVER not seen yet; requests wait (docs/ktm.md §7
    /// "finish recovery before accepting work").
    pub(crate) recovering: bool,
    /// Durable only: counters, and (`failed`) the first append or force failure. From then on
    /// PREPARE votes no and non-transacted writes fail with it: what is durable is no longer
    /// known.
    pub(crate) durability: crate::durable::DurabilityStats,
    /// Called at every phase change ([`State::trace_phases`]).
    pub(crate) phase_trace: Option<PhaseTrace>,
}

impl<E> State<E> {
    /// An empty store with the given quotas. Allocates nothing.
    #[must_use]
    pub const fn new(limits: Limits) -> Self {
        State {
            limits,
            committed: Tree::new(),
            committed_bytes: 0,
            pending: Tree::new(),
            index: Tree::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            prepared_keys: 0,
            prepared_bytes: 0,
            direct_writes: 0,
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
            log: None,
            recovering: false,
            durability: crate::durable::DurabilityStats::ZERO,
            phase_trace: None,
        }
    }

    /// Has `trace` called at every change of a transaction's phase from now on (`None`: no
    /// trace, the default). The cost when off is one branch per change, which happens a few
    /// times per transaction, never per request.
    pub fn trace_phases(&mut self, trace: Option<PhaseTrace>) {
        self.phase_trace = trace;
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
        s.live_transactions = u64::from(self.live);
        s.keys = u64::try_from(self.committed.len()).unwrap_or(u64::MAX);
        s.bytes = self.committed_bytes;
        s.prepared = self
            .slots
            .iter()
            .filter(|s| matches!(&s.txn, Some(t) if t.phase == Phase::Prepared))
            .count() as u64;
        s
    }

    /// Checks the invariants that tie the pending tree to the live transactions: every pending
    /// write (a key lock) belongs to a live transaction that lists it, and no transaction lists
    /// a write that is not there. A violation names the first broken rule. O(n); for tests and
    /// checked hosts.
    pub fn check_consistency(&self) -> Result<(), &'static str> {
        let mut listed = 0usize;
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(t) = &s.txn else { continue };
            for id in &t.writes {
                match self.pending.slot(*id) {
                    Some(p) if usize::try_from(p.owner).ok() == Some(slot) => {}
                    Some(_) => return Err("a transaction lists a write another one owns"),
                    None => return Err("a transaction lists a write that is gone"),
                }
            }
            listed = listed.saturating_add(t.writes.len());
        }
        let direct = self
            .pending
            .iter()
            .filter(|(_, p)| p.owner == DIRECT_OWNER)
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
        self.committed
            .allocated_bytes()
            .saturating_add(self.pending.allocated_bytes())
            .saturating_add(self.index.allocated_bytes())
    }

    pub(crate) fn key_of(slot: u32, generation: u32) -> EnlistmentKey {
        EnlistmentKey((u64::from(generation) << 32) | u64::from(slot))
    }

    /// The live transaction a key names, if its generation still matches.
    pub(crate) fn txn_mut(&mut self, key: EnlistmentKey) -> Option<&mut Txn<E>> {
        let slot = usize::try_from(key.0 & 0xFFFF_FFFF).ok()?;
        let generation = u32::try_from(key.0 >> 32).ok()?;
        let s = self.slots.get_mut(slot)?;
        if s.generation != generation {
            return None;
        }
        s.txn.as_mut()
    }

    pub(crate) fn txn(&self, key: EnlistmentKey) -> Option<&Txn<E>> {
        let slot = usize::try_from(key.0 & 0xFFFF_FFFF).ok()?;
        let generation = u32::try_from(key.0 >> 32).ok()?;
        let s = self.slots.get(slot)?;
        if s.generation != generation {
            return None;
        }
        s.txn.as_ref()
    }

    /// The key of the live transaction with this GUID.
    pub(crate) fn find_txn(&self, id: &TxId) -> Option<EnlistmentKey> {
        let ix = self.index.get(&id.0)?;
        let s = self.slots.get(usize::try_from(ix.slot).ok()?)?;
        Some(Self::key_of(ix.slot, s.generation))
    }

    /// Creates a transaction in phase Active with `enlisting` set. Fails with
    /// `STATUS_QUOTA_EXCEEDED` at the live-transaction limit and `STATUS_INSUFFICIENT_RESOURCES`
    /// when allocation fails; nothing changes then.
    pub(crate) fn create_txn(&mut self, id: TxId) -> Result<EnlistmentKey, NtStatus> {
        if self.live >= self.limits.max_live_transactions {
            self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            return Err(NtStatus::QUOTA_EXCEEDED);
        }
        let oom = |_| NtStatus::INSUFFICIENT_RESOURCES;
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|s| *s < DIRECT_OWNER)
                    .ok_or(NtStatus::QUOTA_EXCEEDED)?;
                self.slots.try_reserve(1).map_err(oom)?;
                // Keep room to push every slot back onto the free list without allocating.
                self.free_slots
                    .try_reserve(self.slots.len().saturating_add(1))
                    .map_err(oom)?;
                let fresh = Slot {
                    generation: 0,
                    txn: None,
                };
                fallible::push(&mut self.slots, fresh)
                    .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
                s
            }
        };
        if self.index.insert(TxIndex { id, slot }).is_err() {
            self.free_slot(slot);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let Some(s) = self
            .slots
            .get_mut(usize::try_from(slot).unwrap_or(usize::MAX))
        else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        s.txn = Some(Txn {
            id,
            phase: Phase::Active,
            enlisting: true,
            enlistment: None,
            writes: Vec::new(),
            puts: 0,
            key_delta: 0,
            byte_delta: 0,
            reserved: 0,
            charged: false,
            logged: false,
            awaiting_recover: false,
            outcome_reserved: false,
        });
        self.live = self.live.saturating_add(1);
        Ok(Self::key_of(slot, s.generation))
    }

    /// Puts a slot back on the free list. Capacity for every slot was reserved when the slot was
    /// created, so this cannot fail; if it ever did, the slot would only stay unused.
    fn free_slot(&mut self, slot: u32) {
        let _ = fallible::push(&mut self.free_slots, slot);
    }

    /// Frees a transaction's slot and returns its enlistment for the caller to close (after the
    /// lock is released). Its writes must already be gone.
    pub(crate) fn remove_txn(&mut self, key: EnlistmentKey) -> Option<E> {
        let slot = u32::try_from(key.0 & 0xFFFF_FFFF).ok()?;
        let s = self.slots.get_mut(usize::try_from(slot).ok()?)?;
        if u64::from(s.generation) != key.0 >> 32 {
            return None;
        }
        let txn = s.txn.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.index.remove(&txn.id.0);
        self.free_slot(slot);
        self.live = self.live.saturating_sub(1);
        txn.enlistment
    }
}
