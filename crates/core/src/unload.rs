//! Unload: the enlistments go before the resource manager ("Creating a Resource Manager",
//! learn.microsoft.com/windows-hardware/drivers/kernel/creating-a-resource-manager: close
//! enlistments, then the RM, then the TM). The host refuses new requests
//! ([`Engine::rollback_unprepared`] does that first), asks KTM to roll back every transaction
//! ktmrm has not voted on, waits until [`Engine::unfinished`] is zero (KTM delivers the outcomes,
//! which the engine answers and whose enlistments it closes as usual), and only then closes its
//! RM, so that no notification reaches a driver whose context is gone.
//!
//! Ownership of an enlistment while KTM is asked to roll it back: the engine takes it out of the
//! transaction for the duration of the port call. A ROLLBACK delivered meanwhile (re-entrantly or
//! on another thread) ends the transaction with nothing to close; afterwards the enlistment goes
//! back to a transaction still alive, or is closed here if it ended. So every enlistment is
//! closed exactly once, by whoever holds it last, and a handle is never used after its close.

use crate::StateLock;
use crate::engine::Engine;
use crate::port::{EnlistmentKey, KtmPort};
use crate::state::State;
use crate::state::txns::Phase;
use crate::wal::LogPort;
use core::sync::atomic::Ordering;

impl<P: KtmPort, L: StateLock<State<P::Enlistment>>, J: LogPort> Engine<P, L, J> {
    /// Refuses every later request (as [`Engine::shutdown`]) and asks KTM, through
    /// [`KtmPort::rollback_enlistment`], to roll back every transaction ktmrm is enlisted in
    /// that has not prepared (Active, or PREPREPARE answered). KTM answers each with ROLLBACK
    /// notifications, which [`Engine::notify`] handles as usual. Prepared transactions are left
    /// to their outcome. Returns how many rollbacks were asked for (and accepted by KTM).
    ///
    /// PASSIVE_LEVEL (DriverUnload), never under the engine's lock.
    pub fn rollback_unprepared(&self, port: &P) -> usize {
        self.shutdown();
        let mut asked = 0usize;
        let mut from = 0usize;
        loop {
            // Only while no answer is between the lock and the port: a transaction whose
            // PrePrepareComplete is on its way would otherwise get the no vote as well.
            let next = self.lock_with(|s| {
                if self.answers_in_flight.load(Ordering::SeqCst) == 0 {
                    Some(s.take_unprepared(from))
                } else {
                    None
                }
            });
            let Some(next) = next else {
                port.yield_now();
                continue;
            };
            let Some((after, key, enlistment)) = next else {
                break;
            };
            from = after;
            if port.rollback_enlistment(&enlistment).is_success() {
                asked = asked.saturating_add(1);
            }
            if let Some(e) = self.lock_with(|s| s.give_back(key, enlistment)) {
                // The transaction ended meanwhile, its last answer decided in the same critical
                // section that removed it: close only once that answer reached the port
                // (closing with it outstanding would abandon it).
                while self.answers_in_flight.load(Ordering::SeqCst) != 0 {
                    port.yield_now();
                }
                port.close_enlistment(e);
            }
        }
        asked
    }

    /// How many live transactions unload must still see end before the RM may be closed: all
    /// but the durable ones whose Prepare record is logged without an outcome (KTM keeps those
    /// across the RM's absence and recovers them at the next start).
    pub fn unfinished(&self) -> usize {
        self.lock_with(|s| s.unfinished())
    }
}

impl<E> State<E> {
    /// The first transaction at or after slot `from` that is enlisted and has not prepared:
    /// marked [`Phase::RollbackAsked`], its enlistment taken out, with its key and the slot to
    /// continue from.
    pub(crate) fn take_unprepared(&mut self, from: usize) -> Option<(usize, EnlistmentKey, E)> {
        let (next, key) = self.txns.first_from(from, |t| {
            !t.is_enlisting()
                && matches!(t.phase(), Phase::Active | Phase::PrePrepared)
                && t.has_enlistment()
        })?;
        let e = self.txn_mut(key)?.take_enlistment()?;
        self.set_phase(key, Phase::RollbackAsked);
        Some((next, key, e))
    }

    /// Returns an enlistment [`State::take_unprepared`] took to its transaction, or hands it
    /// back to be closed when the transaction ended meanwhile.
    pub(crate) fn give_back(&mut self, key: EnlistmentKey, e: E) -> Option<E> {
        match self.txn_mut(key) {
            Some(t) if t.phase() != Phase::Ended && !t.has_enlistment() => {
                t.set_enlisted(Some(e));
                None
            }
            _ => Some(e),
        }
    }

    /// See [`Engine::unfinished`].
    pub(crate) fn unfinished(&self) -> usize {
        self.txns
            .iter()
            .filter(|(_, t)| t.phase() != Phase::Ended && !t.logged())
            .count()
    }
}
