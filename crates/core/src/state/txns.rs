//! The transaction table: the live transactions in slots, the free slots, the index from a
//! transaction's GUID to its slot, and how an [`EnlistmentKey`] names a slot (its low 32 bits)
//! and the slot's generation (its high 32 bits), so that a key outliving its transaction names
//! nothing instead of the slot's next user.

use crate::fallible;
use crate::port::{EnlistmentKey, TxId};
use crate::reads::ReadSet;
use crate::state::writes::WriteSet;
use crate::tree::{Keyed, Tree};
use alloc::vec::Vec;
use ktmrm_proto::{Isolation, NtStatus};

/// Where a transaction is in KTM's protocol, as ktmrm sees it. What exists only in some phases
/// lives in their variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting reads and writes.
    Active,
    /// PREPREPARE answered: reads only.
    PrePrepared,
    /// Voted yes; commit cannot fail now (what it needs is held).
    Prepared(Prepared),
    /// Voted no; writes discarded; waiting for KTM's ROLLBACK.
    Vetoed,
    /// Unload asked KTM to roll it back (`KtmPort::rollback_enlistment`, a no vote KTM may take
    /// as the answer to a phase it already sent); waiting for KTM's ROLLBACK, answering no
    /// phase before it.
    RollbackAsked,
    /// Durable only: its Commit record appended; CommitComplete waits for the force. A
    /// two-phase commit is applied already (`hold` is empty); a single-phase one is applied
    /// once forced (its writes stay pending, their keys locked, and `hold` reserved until then).
    Committing { hold: Hold },
    /// Durable only: applied, but the log could not be forced, so CommitComplete is withheld
    /// (KTM keeps the transaction and redelivers COMMIT after a restart; docs/ktm.md §8).
    /// `logged`: its Commit record could not even be appended, so its Prepare record is still
    /// the last word in the log.
    Unlogged { logged: bool },
    /// Outcome applied; the slot is freed once no thread is still enlisting it.
    Ended,
}

/// What a commit holds from its vote to its outcome so that applying it cannot fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hold {
    /// Committed-store slots reserved for its puts.
    pub(crate) reserved: usize,
    /// Its key and byte growth is counted in the store's prepared growth.
    pub(crate) charged: bool,
}

/// A prepared transaction's own data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub(crate) hold: Hold,
    /// Durable only: its Prepare record is in the log without an outcome record.
    pub(crate) logged: bool,
    /// Durable only: the log holds memory for its outcome record (reserved at PREPARE), so
    /// COMMIT cannot fail for lack of it.
    pub(crate) outcome_reserved: bool,
    /// Rebuilt from the log as in doubt; KTM has not sent RECOVER for it yet (presumed aborted
    /// at LAST_RECOVER if it never does).
    pub(crate) awaiting_recover: bool,
}

impl Phase {
    /// The phase's name, for a host's trace.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Phase::Active => "Active",
            Phase::PrePrepared => "PrePrepared",
            Phase::Prepared(_) => "Prepared",
            Phase::Vetoed => "Vetoed",
            Phase::RollbackAsked => "RollbackAsked",
            Phase::Committing { .. } => "Committing",
            Phase::Unlogged { .. } => "Unlogged",
            Phase::Ended => "Ended",
        }
    }
}

/// A host's hook for phase changes: the transaction, the phase it leaves and the one it enters
/// (by name). Called under the state lock, so it must only record (the driver prints a
/// `DbgPrint` line at its verbose level).
pub type PhaseTrace = fn(TxId, &'static str, &'static str);

/// Who owns a pending write: a transaction's slot, or [`Owner::DIRECT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner(u32);

impl Owner {
    /// A durable non-transacted write waiting for its force (no slot number reaches it: slots
    /// stop below).
    pub(crate) const DIRECT: Owner = Owner(u32::MAX);
}

/// One live transaction.
pub(crate) struct Txn<E> {
    id: TxId,
    /// Changed only through [`Txns::set_phase`], which traces.
    phase: Phase,
    /// A thread is inside `KtmPort::enlist` for this transaction; other requests wait.
    enlisting: bool,
    /// Set once `enlist` returns; closed by whoever ends the transaction last (unload takes it
    /// out for a while to ask KTM for a rollback).
    enlistment: Option<E>,
    /// Its pending writes and what they change.
    writes: WriteSet,
    /// A serializable transaction's part (one element; none for read committed, which so
    /// carries no read set and allocates nothing for it).
    serial: Vec<Serial>,
}

/// What only a serializable transaction has: what it read, and whether a commit changed some
/// of it since (it then votes no at PREPARE, and its writes are refused).
#[derive(Default)]
pub(crate) struct Serial {
    pub(crate) reads: ReadSet,
    pub(crate) doomed: bool,
}

impl<E> Txn<E> {
    /// The transaction's GUID.
    pub(crate) const fn id(&self) -> TxId {
        self.id
    }

    pub(crate) const fn writes(&self) -> &WriteSet {
        &self.writes
    }

    pub(crate) fn writes_mut(&mut self) -> &mut WriteSet {
        &mut self.writes
    }

    /// A thread is enlisting it: requests wait, and whoever ends it leaves the slot to that
    /// thread.
    pub(crate) const fn is_enlisting(&self) -> bool {
        self.enlisting
    }

    /// The enlisting is over: `enlistment` is what it gave (`None`: rebuilt from the log,
    /// waiting for KTM's recovery to give one), or the enlistment unload took out, given back.
    pub(crate) fn set_enlisted(&mut self, enlistment: Option<E>) {
        self.enlisting = false;
        self.enlistment = enlistment;
    }

    /// It holds its enlistment (none while enlisting, before recovery gives one, or while
    /// unload has taken it out).
    pub(crate) const fn has_enlistment(&self) -> bool {
        self.enlistment.is_some()
    }

    pub(crate) fn enlistment_mut(&mut self) -> Option<&mut E> {
        self.enlistment.as_mut()
    }

    pub(crate) fn take_enlistment(&mut self) -> Option<E> {
        self.enlistment.take()
    }

    pub(crate) const fn phase(&self) -> Phase {
        self.phase
    }

    /// A prepared transaction's data (changing it is no phase change).
    pub(crate) fn prepared_mut(&mut self) -> Option<&mut Prepared> {
        match &mut self.phase {
            Phase::Prepared(p) => Some(p),
            _ => None,
        }
    }

    /// What its commit holds: a prepared transaction's, or a single-phase commit's being forced.
    pub(crate) fn hold_mut(&mut self) -> Option<&mut Hold> {
        match &mut self.phase {
            Phase::Prepared(Prepared { hold, .. }) | Phase::Committing { hold } => Some(hold),
            _ => None,
        }
    }

    /// Durable only: its Prepare record is the last word on it in the log (no outcome record).
    pub(crate) const fn logged(&self) -> bool {
        matches!(
            self.phase,
            Phase::Prepared(Prepared { logged: true, .. }) | Phase::Unlogged { logged: true }
        )
    }

    /// Rebuilt from the log as in doubt and not yet claimed by KTM's RECOVER.
    pub(crate) const fn awaiting_recover(&self) -> bool {
        matches!(
            self.phase,
            Phase::Prepared(Prepared {
                awaiting_recover: true,
                ..
            })
        )
    }

    /// Read committed or serializable, fixed at creation.
    pub(crate) fn isolation(&self) -> Isolation {
        if self.serial.is_empty() {
            Isolation::ReadCommitted
        } else {
            Isolation::Serializable
        }
    }

    /// The serializable part (`None`: read committed).
    pub(crate) fn serial(&self) -> Option<&Serial> {
        self.serial.first()
    }

    pub(crate) fn serial_mut(&mut self) -> Option<&mut Serial> {
        self.serial.first_mut()
    }

    /// Serializable, and a commit changed what it read.
    pub(crate) fn doomed(&self) -> bool {
        self.serial().is_some_and(|s| s.doomed)
    }

    /// Serializable and not yet validated: a commit of what it read would doom it.
    pub(crate) fn is_exposed_reader(&self) -> bool {
        self.serial().is_some_and(|s| !s.doomed)
            && matches!(self.phase, Phase::Active | Phase::PrePrepared)
    }
}

struct Slot<E> {
    generation: u32,
    txn: Option<Txn<E>>,
}

/// Maps a transaction's GUID to its slot.
struct TxIndex {
    id: TxId,
    slot: u32,
}

impl Keyed for TxIndex {
    fn key(&self) -> &[u8] {
        &self.id.0
    }
}

/// The live transactions.
pub(crate) struct Txns<E> {
    slots: Vec<Slot<E>>,
    /// Slots to reuse. Room for every slot is reserved as slots are added, so freeing one never
    /// allocates.
    free: Vec<u32>,
    index: Tree<TxIndex>,
    live: u32,
    /// How many live transactions are serializable: none, and a commit looks for no reader.
    serializable: u32,
    trace: Option<PhaseTrace>,
}

/// The key of `slot` in its `generation`.
const fn join(slot: u32, generation: u32) -> EnlistmentKey {
    EnlistmentKey(((generation as u64) << 32) | slot as u64)
}

/// The slot and generation a key names.
const fn split(key: EnlistmentKey) -> (u32, u32) {
    (key.0 as u32, (key.0 >> 32) as u32)
}

impl<E> Txns<E> {
    pub(crate) const fn new() -> Self {
        Txns {
            slots: Vec::new(),
            free: Vec::new(),
            index: Tree::new(),
            live: 0,
            serializable: 0,
            trace: None,
        }
    }

    /// How many transactions are live.
    pub(crate) const fn live(&self) -> u32 {
        self.live
    }

    /// How many live transactions are serializable.
    pub(crate) const fn serializable(&self) -> u32 {
        self.serializable
    }

    /// The owner a transaction's pending writes carry. Decodes the key alone: the caller has
    /// checked that it still names a live transaction.
    pub(crate) const fn owner(key: EnlistmentKey) -> Owner {
        Owner(split(key).0)
    }

    fn slot(&self, key: EnlistmentKey) -> Option<&Slot<E>> {
        let (slot, generation) = split(key);
        let s = self.slots.get(usize::try_from(slot).ok()?)?;
        (s.generation == generation).then_some(s)
    }

    fn slot_mut(&mut self, key: EnlistmentKey) -> Option<&mut Slot<E>> {
        let (slot, generation) = split(key);
        let s = self.slots.get_mut(usize::try_from(slot).ok()?)?;
        (s.generation == generation).then_some(s)
    }

    /// The live transaction a key names, if its generation still matches.
    pub(crate) fn get(&self, key: EnlistmentKey) -> Option<&Txn<E>> {
        self.slot(key)?.txn.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: EnlistmentKey) -> Option<&mut Txn<E>> {
        self.slot_mut(key)?.txn.as_mut()
    }

    /// The transaction whose writes carry `owner`.
    pub(crate) fn by_owner(&self, owner: Owner) -> Option<&Txn<E>> {
        let s = self.slots.get(usize::try_from(owner.0).ok()?)?;
        s.txn.as_ref()
    }

    /// The key of the live transaction with this GUID.
    pub(crate) fn find(&self, id: &TxId) -> Option<EnlistmentKey> {
        let ix = self.index.get(&id.0)?;
        let s = self.slots.get(usize::try_from(ix.slot).ok()?)?;
        Some(join(ix.slot, s.generation))
    }

    /// Every live transaction with its key, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (EnlistmentKey, &Txn<E>)> {
        self.slots.iter().zip(0u32..).filter_map(|(s, slot)| {
            let t = s.txn.as_ref()?;
            Some((join(slot, s.generation), t))
        })
    }

    /// The first live transaction at or after slot `from` that `pick` accepts: its key, and the
    /// slot to go on from.
    pub(crate) fn first_from(
        &self,
        from: usize,
        pick: impl Fn(&Txn<E>) -> bool,
    ) -> Option<(usize, EnlistmentKey)> {
        for (ix, s) in self.slots.iter().enumerate().skip(from) {
            if let Some(t) = &s.txn
                && pick(t)
            {
                let key = join(u32::try_from(ix).ok()?, s.generation);
                return Some((ix.saturating_add(1), key));
            }
        }
        None
    }

    /// Has `trace` called at every phase change ([`crate::State::trace_phases`]).
    pub(crate) fn set_trace(&mut self, trace: Option<PhaseTrace>) {
        self.trace = trace;
    }

    /// Moves `key`'s transaction to `phase`, telling the trace.
    pub(crate) fn set_phase(&mut self, key: EnlistmentKey, phase: Phase) {
        let trace = self.trace;
        let Some(t) = self.get_mut(key) else { return };
        let from = core::mem::replace(&mut t.phase, phase);
        if let Some(f) = trace
            && core::mem::discriminant(&from) != core::mem::discriminant(&phase)
        {
            f(t.id, from.name(), phase.name());
        }
    }

    /// Creates a transaction in phase Active with `enlisting` set, at `isolation` (`Unstated`:
    /// read committed). `STATUS_QUOTA_EXCEEDED` when every slot number is taken,
    /// `STATUS_INSUFFICIENT_RESOURCES` when allocation fails; nothing changes then.
    pub(crate) fn create(
        &mut self,
        id: TxId,
        isolation: Isolation,
    ) -> Result<EnlistmentKey, NtStatus> {
        let oom = |_| NtStatus::INSUFFICIENT_RESOURCES;
        let mut serial = Vec::new();
        if isolation == Isolation::Serializable {
            serial.try_reserve_exact(1).map_err(oom)?;
            fallible::push(&mut serial, Serial::default())
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|s| *s < Owner::DIRECT.0)
                    .ok_or(NtStatus::QUOTA_EXCEEDED)?;
                self.slots.try_reserve(1).map_err(oom)?;
                // Keep room to push every slot back onto the free list without allocating.
                self.free
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
            writes: WriteSet::default(),
            serial,
        });
        if isolation == Isolation::Serializable {
            self.serializable = self.serializable.saturating_add(1);
        }
        self.live = self.live.saturating_add(1);
        Ok(join(slot, s.generation))
    }

    /// Puts a slot back on the free list. Capacity for every slot was reserved when the slot was
    /// created, so this cannot fail; if it ever did, the slot would only stay unused.
    fn free_slot(&mut self, slot: u32) {
        let _ = fallible::push(&mut self.free, slot);
    }

    /// Frees a transaction's slot (its key names nothing from now on) and returns its
    /// enlistment for the caller to close (after the lock is released). Its writes must already
    /// be gone.
    pub(crate) fn remove(&mut self, key: EnlistmentKey) -> Option<E> {
        let s = self.slot_mut(key)?;
        let txn = s.txn.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.index.remove(&txn.id.0);
        self.free_slot(split(key).0);
        self.live = self.live.saturating_sub(1);
        if !txn.serial.is_empty() {
            self.serializable = self.serializable.saturating_sub(1);
        }
        txn.enlistment
    }

    /// Bytes allocated for the index's nodes.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.index.allocated_bytes()
    }
}
