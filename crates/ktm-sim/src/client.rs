//! Processes, handle tables, the client calls (ktmw32 equivalents) and the virtual clock.

use ktmrm_core::TxId;
use ktmrm_proto::{MAX_DESCRIPTION_CHARS, NtStatus};

use crate::ids::ProcessId;
use crate::ktm::Ktm;
use crate::ktm::access::*;
use crate::model::{HandleEntry, Object, Process, State, Transaction, TxInfo};
use crate::states::{Outcome, TxState};

impl Ktm {
    // ---- processes and handles ---------------------------------------------------------------

    /// A new process with an empty handle table: user handles are per process, and the IOCTL
    /// path references them in the caller's process (docs/ktm.md §4 "Handle from an IOCTL").
    #[must_use]
    pub fn create_process(&self) -> ProcessId {
        let mut st = self.lock();
        let p = ProcessId(st.next_process);
        st.next_process += 1;
        st.processes.insert(p, Process::new());
        p
    }

    /// Closes every handle of the process (as process exit does) and forgets it; transactions
    /// whose last handle this was roll back (docs/ktm.md §1, S11, S18).
    pub fn terminate_process(&self, p: ProcessId) {
        let handles: Vec<u64> = match self.lock().processes.get(&p) {
            Some(proc_) => proc_.handles.keys().copied().collect(),
            None => return,
        };
        for h in handles {
            let _ = self.close_handle(p, h);
        }
        self.lock().processes.remove(&p);
    }

    fn insert_handle(st: &mut State, p: ProcessId, entry: HandleEntry) -> Result<u64, NtStatus> {
        let proc_ = st.processes.get_mut(&p).ok_or(NtStatus::INVALID_HANDLE)?;
        Ok(proc_.insert(entry))
    }

    /// Resolves a handle to a transaction the way `ObReferenceObjectByHandle(h, access,
    /// *TmTransactionObjectType, UserMode, ..)` does (docs/ktm.md §4, S25): unknown or closed handle →
    /// `STATUS_INVALID_HANDLE`; another object type → `STATUS_OBJECT_TYPE_MISMATCH`; a handle
    /// without every bit of `required` → `STATUS_ACCESS_DENIED` (type is checked before access).
    pub(crate) fn lookup_tx(
        st: &State,
        p: ProcessId,
        h: u64,
        required: u32,
    ) -> Result<TxId, NtStatus> {
        let entry = st
            .processes
            .get(&p)
            .and_then(|proc_| proc_.handles.get(&h))
            .ok_or(NtStatus::INVALID_HANDLE)?;
        let Object::Transaction(id) = entry.object else {
            return Err(NtStatus::OBJECT_TYPE_MISMATCH);
        };
        if entry.access & required != required {
            return Err(NtStatus::ACCESS_DENIED);
        }
        Ok(id)
    }

    /// Creates an event (any non-transaction object) in `p`, for `STATUS_OBJECT_TYPE_MISMATCH`
    /// ("handle is not a transaction", docs/ktm.md §5; §4, S25).
    #[must_use]
    pub fn create_event(&self, p: ProcessId) -> u64 {
        let mut st = self.lock();
        Self::insert_handle(
            &mut st,
            p,
            HandleEntry {
                object: Object::Event,
                access: EVENT_ALL_ACCESS,
            },
        )
        .unwrap_or(0)
    }

    /// `DuplicateHandle`: a new handle in `to` for the object behind `h` in `from`, with
    /// `access` (`None` = the same access). Asking for bits `h` lacks → `STATUS_ACCESS_DENIED`.
    /// Not KTM behaviour (docs/ktm.md does not cover it): the way tests get a handle in another
    /// process, or one without `TRANSACTION_ENLIST` (docs/ktm.md §4 "the handle's granted access
    /// count", S25).
    pub fn duplicate_handle(
        &self,
        from: ProcessId,
        h: u64,
        to: ProcessId,
        access: Option<u32>,
    ) -> Result<u64, NtStatus> {
        let mut st = self.lock();
        let entry = *st
            .processes
            .get(&from)
            .and_then(|proc_| proc_.handles.get(&h))
            .ok_or(NtStatus::INVALID_HANDLE)?;
        let access = access.unwrap_or(entry.access);
        if access & !entry.access != 0 {
            return Err(NtStatus::ACCESS_DENIED);
        }
        let new = Self::insert_handle(
            &mut st,
            to,
            HandleEntry {
                object: entry.object,
                access,
            },
        )?;
        if let Object::Transaction(id) = entry.object
            && let Some(tx) = st.txs.get_mut(&id)
        {
            tx.handles += 1;
        }
        Ok(new)
    }

    /// `CloseHandle`. Closing the last handle of a transaction that has not started to commit
    /// rolls it back, on this thread, before returning (docs/ktm.md §1, S11, S18; §3 "Closing ...
    /// before commit rolls the affected transactions back").
    pub fn close_handle(&self, p: ProcessId, h: u64) -> NtStatus {
        let rollback = {
            let mut st = self.lock();
            let Some(entry) = st
                .processes
                .get_mut(&p)
                .and_then(|proc_| proc_.handles.remove(&h))
            else {
                return NtStatus::INVALID_HANDLE;
            };
            match entry.object {
                Object::Transaction(id) => st.txs.get_mut(&id).and_then(|tx| {
                    tx.handles = tx.handles.saturating_sub(1);
                    (tx.handles == 0 && tx.state == TxState::Active).then_some(id)
                }),
                Object::Event => None,
            }
        };
        if let Some(id) = rollback {
            let _ = self.rollback_tx(id);
        }
        NtStatus::SUCCESS
    }

    // ---- client calls (ktmw32) ---------------------------------------------------------------

    /// `CreateTransaction(NULL, NULL, 0, 0, 0, timeout_ms, description)`: a new Active
    /// transaction with a `TRANSACTION_ALL_ACCESS` handle in `p`. `timeout_ms` 0 = none (docs/ktm.md
    /// §6, S24); a description over 64 UTF-16 units (`MAX_TRANSACTION_DESCRIPTION_LENGTH`, §4)
    /// → `STATUS_INVALID_PARAMETER`.
    pub fn create_transaction(
        &self,
        p: ProcessId,
        timeout_ms: u32,
        description: &str,
    ) -> Result<u64, NtStatus> {
        let units: Vec<u16> = description.encode_utf16().collect();
        self.create_transaction_units(p, timeout_ms, units)
    }

    /// As [`Ktm::create_transaction`] with the description as UTF-16LE bytes (what the engine
    /// passes for BEGIN); an odd length → `STATUS_INVALID_PARAMETER`.
    pub fn create_transaction_utf16(
        &self,
        p: ProcessId,
        timeout_ms: u32,
        description: &[u8],
    ) -> Result<u64, NtStatus> {
        if !description.len().is_multiple_of(2) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let units = description
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        self.create_transaction_units(p, timeout_ms, units)
    }

    fn create_transaction_units(
        &self,
        p: ProcessId,
        timeout_ms: u32,
        description: Vec<u16>,
    ) -> Result<u64, NtStatus> {
        if description.len() > MAX_DESCRIPTION_CHARS {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut st = self.lock();
        if !st.processes.contains_key(&p) {
            return Err(NtStatus::INVALID_HANDLE);
        }
        let id = st.new_tx_id();
        let expires_at = (timeout_ms > 0).then(|| st.now_ms + u64::from(timeout_ms));
        st.txs.insert(
            id,
            Transaction {
                id,
                state: TxState::Active,
                outcome: Outcome::Undetermined,
                timeout_ms,
                expires_at,
                description,
                handles: 1,
                references: 0,
                enlistments: Vec::new(),
                abort_requested: false,
                superior: None,
            },
        );
        st.checker.counters.transactions_created += 1;
        Self::insert_handle(
            &mut st,
            p,
            HandleEntry {
                object: Object::Transaction(id),
                access: TRANSACTION_ALL_ACCESS,
            },
        )
    }

    /// `GetTransactionInformation` + `GetTransactionId` (docs/ktm.md §6 "Checks"; needs
    /// `TRANSACTION_QUERY_INFORMATION`, §4 table).
    pub fn transaction_info(&self, p: ProcessId, h: u64) -> Result<TxInfo, NtStatus> {
        let st = self.lock();
        let id = Self::lookup_tx(&st, p, h, TRANSACTION_QUERY_INFORMATION)?;
        Ok(Self::info_of(&st, id))
    }

    /// The same information by GUID (no handle needed; for tests).
    #[must_use]
    pub fn transaction_info_by_id(&self, id: TxId) -> Option<TxInfo> {
        let st = self.lock();
        st.txs.contains_key(&id).then(|| Self::info_of(&st, id))
    }

    fn info_of(st: &State, id: TxId) -> TxInfo {
        let tx = &st.txs[&id];
        TxInfo {
            id,
            state: tx.state,
            outcome: tx.outcome,
            timeout_ms: tx.timeout_ms,
            description: String::from_utf16_lossy(&tx.description),
            handles: tx.handles,
            enlistments: tx.enlistments.len(),
        }
    }

    /// `CommitTransaction`: blocks until the outcome is delivered (docs/ktm.md §6, S24; the order of
    /// phases is in [`crate`]'s docs). `STATUS_SUCCESS` when committed, `STATUS_TRANSACTION_ABORTED`
    /// when an RM vetoed or a rollback overtook the commit **(unverified: which NTSTATUS the real
    /// `NtCommitTransaction` returns then is not in our sources; §5 calls 0xC000020F a legacy
    /// transport code)**; on an ended transaction
    /// `STATUS_TRANSACTION_ALREADY_COMMITTED` / `_ALREADY_ABORTED` (§5). While another commit of
    /// the same transaction is still undecided: `STATUS_TRANSACTION_REQUEST_NOT_VALID`, "The
    /// commit operation for this transaction has already been started"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwcommittransaction>).
    /// Needs `TRANSACTION_COMMIT` access. A promoted transaction →
    /// `STATUS_TRANSACTION_SUPERIOR_EXISTS` (docs/ktm.md §1, S9). With no answer deadline (the
    /// default) a withheld answer leaves this call waiting, as `Wait` = TRUE "returns after the
    /// commit operation is complete".
    pub fn commit(&self, p: ProcessId, h: u64) -> NtStatus {
        let id = {
            let mut st = self.lock();
            let id = match Self::lookup_tx(&st, p, h, TRANSACTION_COMMIT) {
                Ok(id) => id,
                Err(s) => return s,
            };
            let tx = st.txs.get_mut(&id).expect("handle names a transaction");
            if tx.superior.is_some() {
                return crate::durable::status::TRANSACTION_SUPERIOR_EXISTS;
            }
            match tx.state {
                TxState::Active => tx.state = TxState::PrePreparing,
                TxState::SinglePhaseCommitting | TxState::PrePreparing | TxState::Preparing => {
                    return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
                }
                TxState::Committing | TxState::Committed => {
                    return NtStatus::TRANSACTION_ALREADY_COMMITTED;
                }
                TxState::RollingBack | TxState::Aborted => {
                    return NtStatus::TRANSACTION_ALREADY_ABORTED;
                }
            }
            id
        };
        self.drive_commit(id)
    }

    /// `RollbackTransaction` (needs `TRANSACTION_ROLLBACK` access). See [`Ktm::rollback_tx`].
    pub fn rollback(&self, p: ProcessId, h: u64) -> NtStatus {
        let id = {
            let st = self.lock();
            match Self::lookup_tx(&st, p, h, TRANSACTION_ROLLBACK) {
                Ok(id) => id,
                Err(s) => return s,
            }
        };
        self.rollback_tx(id)
    }

    /// Rolls a transaction back, by GUID: the common path of an explicit rollback, a timeout,
    /// the last handle closing and an RM's enlistment closing early (docs/ktm.md §1, §3, S4, S18).
    /// - Active: ROLLBACK to every enlistment, on this thread; returns once all answered.
    /// - Commit under way but undecided (PrePrepare/Prepare): with
    ///   [`crate::Interleavings::eager_rollback`], ROLLBACK to every enlistment at once, over the
    ///   PREPREPARE/PREPARE still outstanding, on this thread ("KTM sends a
    ///   TRANSACTION_NOTIFY_ROLLBACK notification" when the rollback is made); else the
    ///   committing thread rolls back before deciding, and this returns `STATUS_SUCCESS` at once
    ///   ("Rollback may come any time before the RM's PrepareComplete", §1, S4).
    /// - Single-phase commit under way: `STATUS_TRANSACTION_REQUEST_NOT_VALID` (the RM decides).
    /// - Decided or ended: `STATUS_TRANSACTION_ALREADY_COMMITTED` / `_ALREADY_ABORTED` (§5).
    pub fn rollback_tx(&self, id: TxId) -> NtStatus {
        {
            let mut st = self.lock();
            let Some(tx) = st.txs.get_mut(&id) else {
                return NtStatus::INVALID_TRANSACTION;
            };
            match tx.state {
                TxState::Active => {
                    tx.state = TxState::RollingBack;
                    tx.outcome = Outcome::Aborted;
                }
                // In doubt under a superior: only the superior decides now.
                TxState::Preparing if tx.superior.is_some_and(|s| s.prepared) => {
                    return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
                }
                TxState::PrePreparing | TxState::Preparing => {
                    tx.abort_requested = true;
                    if !st.config.interleavings.eager_rollback {
                        return NtStatus::SUCCESS;
                    }
                    let tx = st.txs.get_mut(&id).expect("present");
                    tx.state = TxState::RollingBack;
                    tx.outcome = Outcome::Aborted;
                }
                TxState::SinglePhaseCommitting => {
                    return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
                }
                TxState::Committing | TxState::Committed => {
                    return NtStatus::TRANSACTION_ALREADY_COMMITTED;
                }
                TxState::RollingBack | TxState::Aborted => {
                    return NtStatus::TRANSACTION_ALREADY_ABORTED;
                }
            }
        }
        self.drive_rollback(id);
        NtStatus::SUCCESS
    }

    // ---- virtual clock ------------------------------------------------------------------------

    /// The virtual clock, in milliseconds since the model was created.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }

    /// Moves the virtual clock forward and rolls back (see [`Ktm::rollback_tx`]) every
    /// transaction whose timeout expired before it was prepared: Active, in PrePrepare, or in
    /// Prepare with votes still outstanding — "the transaction will be aborted when the interval
    /// elapses if it has not already reached the prepared state"
    /// (<https://learn.microsoft.com/windows/win32/api/ktmw32/nf-ktmw32-createtransaction>) —
    /// but not one in doubt under a superior.
    /// Returns how many transactions the timeout rolled back or marked for rollback.
    pub fn advance_time(&self, ms: u64) -> usize {
        let expired: Vec<TxId> = {
            let mut st = self.lock();
            st.now_ms += ms;
            let now = st.now_ms;
            let mut ids: Vec<TxId> = st
                .txs
                .values_mut()
                .filter(|tx| {
                    let prepared = tx.superior.is_some_and(|s| s.prepared);
                    matches!(
                        tx.state,
                        TxState::Active | TxState::PrePreparing | TxState::Preparing
                    ) && !prepared
                        && tx.expires_at.is_some_and(|t| t <= now)
                })
                .map(|tx| {
                    tx.expires_at = None;
                    tx.id
                })
                .collect();
            ids.sort();
            ids
        };
        for id in &expired {
            let _ = self.rollback_tx(*id);
        }
        expired.len()
    }
}
