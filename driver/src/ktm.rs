//! KTM facts and conversions the kernel shell needs, kept out of it so they are tested here:
//! access masks and create options (values from winnt.h/ktmtypes.h as listed in
//! docs/ktm.md §4), timeouts, handle and enlistment-key conversions, the transaction GUID,
//! the BEGIN description, and the routine that answers each engine [`Answer`].

use ktmrm_core::{Answer, EnlistmentKey, TxId};
use ktmrm_proto::{MAX_DESCRIPTION_CHARS, NtStatus};

/// Object-manager flags and processor modes.
pub mod obj {
    /// `OBJ_CASE_INSENSITIVE`.
    pub const CASE_INSENSITIVE: u32 = 0x40;
    /// `OBJ_KERNEL_HANDLE`: the handle goes in the System process's table, not the current one.
    pub const KERNEL_HANDLE: u32 = 0x200;
    /// `KernelMode` (`KPROCESSOR_MODE`).
    pub const KERNEL_MODE: i8 = 0;
    /// `UserMode` (`KPROCESSOR_MODE`).
    pub const USER_MODE: i8 = 1;
}

/// Access rights (winnt.h). Only single bits and the composites the driver requests.
pub mod access {
    /// `STANDARD_RIGHTS_REQUIRED` (DELETE | READ_CONTROL | WRITE_DAC | WRITE_OWNER).
    pub const STANDARD_RIGHTS_REQUIRED: u32 = 0x000F_0000;
    /// `SYNCHRONIZE`.
    pub const SYNCHRONIZE: u32 = 0x0010_0000;

    /// `TRANSACTIONMANAGER_QUERY_INFORMATION`.
    pub const TRANSACTIONMANAGER_QUERY_INFORMATION: u32 = 0x1;
    /// `TRANSACTIONMANAGER_CREATE_RM`.
    pub const TRANSACTIONMANAGER_CREATE_RM: u32 = 0x10;
    /// `TRANSACTIONMANAGER_RECOVER`: `ZwRecoverTransactionManager` (durable TM).
    pub const TRANSACTIONMANAGER_RECOVER: u32 = 0x4;

    /// `RESOURCEMANAGER_QUERY_INFORMATION`.
    pub const RESOURCEMANAGER_QUERY_INFORMATION: u32 = 0x1;
    /// `RESOURCEMANAGER_ENLIST`.
    pub const RESOURCEMANAGER_ENLIST: u32 = 0x8;
    /// `RESOURCEMANAGER_GET_NOTIFICATION`.
    pub const RESOURCEMANAGER_GET_NOTIFICATION: u32 = 0x10;
    /// `RESOURCEMANAGER_RECOVER`: `ZwRecoverResourceManager` (durable RM).
    pub const RESOURCEMANAGER_RECOVER: u32 = 0x4;

    /// `TRANSACTION_ENLIST`: what a caller's transaction handle must grant for ktmrm to enlist.
    pub const TRANSACTION_ENLIST: u32 = 0x4;
    /// `TRANSACTION_QUERY_INFORMATION`: what `ZwQueryInformationTransaction` needs.
    pub const TRANSACTION_QUERY_INFORMATION: u32 = 0x1;
    /// `TRANSACTION_ALL_ACCESS` = STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0x3F: the BEGIN handle
    /// lets its owner query, enlist, commit, roll back and propagate.
    pub const TRANSACTION_ALL_ACCESS: u32 = STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0x3F;

    /// `ENLISTMENT_QUERY_INFORMATION`.
    pub const ENLISTMENT_QUERY_INFORMATION: u32 = 0x1;
    /// `ENLISTMENT_SUBORDINATE_RIGHTS`: needed to answer notifications.
    pub const ENLISTMENT_SUBORDINATE_RIGHTS: u32 = 0x8;

    /// `KEY_READ` (STANDARD_RIGHTS_READ | KEY_QUERY_VALUE | KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY,
    /// without SYNCHRONIZE).
    pub const KEY_READ: u32 = 0x0002_0019;

    /// What DriverEntry asks of its transaction manager.
    pub const TM_ACCESS: u32 = TRANSACTIONMANAGER_CREATE_RM | TRANSACTIONMANAGER_QUERY_INFORMATION;
    /// What DriverEntry asks of its resource manager (docs/ktm.md §7 step 2).
    pub const RM_ACCESS: u32 = RESOURCEMANAGER_ENLIST
        | RESOURCEMANAGER_GET_NOTIFICATION
        | RESOURCEMANAGER_QUERY_INFORMATION;
    /// The same, plus recovery, for the durable TM and RM (docs/ktm.md §7 step 4).
    pub const TM_ACCESS_DURABLE: u32 = TM_ACCESS | TRANSACTIONMANAGER_RECOVER;
    /// See [`TM_ACCESS_DURABLE`].
    pub const RM_ACCESS_DURABLE: u32 = RM_ACCESS | RESOURCEMANAGER_RECOVER;
    /// What each enlistment handle grants the driver.
    pub const ENLISTMENT_ACCESS: u32 = ENLISTMENT_SUBORDINATE_RIGHTS | ENLISTMENT_QUERY_INFORMATION;
}

/// `TRANSACTION_MANAGER_VOLATILE`: no log; every RM on the TM must be volatile.
pub const TRANSACTION_MANAGER_VOLATILE: u32 = 0x1;
/// `RESOURCE_MANAGER_VOLATILE`: no durable state, no recovery.
pub const RESOURCE_MANAGER_VOLATILE: u32 = 0x1;
/// `TRANSACTION_DO_NOT_PROMOTE`. The driver never sets it (a transaction that TxR and
/// ktmrm both join may need promotion); it is named only so a test can say so.
pub const TRANSACTION_DO_NOT_PROMOTE: u32 = 0x1;
/// The `CreateOptions` BEGIN passes to `ZwCreateTransaction`.
pub const BEGIN_CREATE_OPTIONS: u32 = 0;

/// `REG_DWORD`.
pub const REG_DWORD: u32 = 4;
/// `KeyValuePartialInformation` (`KEY_VALUE_INFORMATION_CLASS`).
pub const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;

/// A BEGIN timeout in milliseconds as the `Timeout` of `ZwCreateTransaction`: `None` (pass NULL,
/// no timeout) for 0, else a relative time, which NT writes as a negative count of 100 ns units.
#[must_use]
pub fn relative_timeout(timeout_ms: u32) -> Option<i64> {
    if timeout_ms == 0 {
        return None;
    }
    // u32::MAX ms * 10,000 = 4.3e13: far inside i64, so neither operation saturates.
    Some(
        i64::from(timeout_ms)
            .saturating_mul(10_000)
            .saturating_neg(),
    )
}

/// A caller's transaction handle value (the request's `u64`) as a `HANDLE`'s bits.
/// `STATUS_INVALID_HANDLE` when it cannot be a handle on this machine.
pub fn handle_bits(value: u64) -> Result<usize, NtStatus> {
    usize::try_from(value).map_err(|_| NtStatus::INVALID_HANDLE)
}

/// A handle the driver created (BEGIN) as the `u64` the answer carries.
#[must_use]
pub fn handle_value(bits: usize) -> u64 {
    u64::try_from(bits).unwrap_or(u64::MAX)
}

/// The engine's enlistment key as the `PVOID` EnlistmentKey KTM stores and hands back with each
/// notification (an opaque number, never dereferenced). `None` if it does not fit a pointer.
#[must_use]
pub fn key_to_context(key: EnlistmentKey) -> Option<usize> {
    usize::try_from(key.0).ok()
}

/// The inverse of [`key_to_context`], for the callback's `TransactionContext`.
#[must_use]
pub fn key_from_context(context: usize) -> EnlistmentKey {
    EnlistmentKey(u64::try_from(context).unwrap_or(u64::MAX))
}

/// A transaction's GUID (as `TmGetTransactionId` fills a `GUID`) as the engine's [`TxId`]: the
/// GUID's bytes in memory order (Data1, Data2, Data3 little-endian, then Data4), the same 16
/// bytes user mode sees for the GUID `GetTransactionId` returns.
#[must_use]
pub fn tx_id(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> TxId {
    let mut b = [0u8; 16];
    let (d1, rest) = b.split_at_mut(4);
    let (d2, rest) = rest.split_at_mut(2);
    let (d3, d4) = rest.split_at_mut(2);
    d1.copy_from_slice(&data1.to_le_bytes());
    d2.copy_from_slice(&data2.to_le_bytes());
    d3.copy_from_slice(&data3.to_le_bytes());
    d4.copy_from_slice(&data4);
    TxId(b)
}

/// A description for `ZwCreateTransaction` or `ZwCreateResourceManager`: at most 64 UTF-16 code
/// units, aligned, followed by the terminating NUL both DDI pages ask for ("a NULL-terminated
/// string"); the `UNICODE_STRING` over it has `MaximumLength = Length + 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Description {
    units: [u16; MAX_DESCRIPTION_CHARS + 1],
    len: usize,
}

impl Description {
    /// From a BEGIN request's UTF-16LE bytes (possibly unaligned). `STATUS_INVALID_PARAMETER`
    /// for an odd byte count or more than 64 units (the decoder already refuses both; the driver
    /// checks again before it builds a `UNICODE_STRING`).
    pub fn from_request(bytes: &[u8]) -> Result<Self, NtStatus> {
        if !bytes.len().is_multiple_of(2) || bytes.len() > MAX_DESCRIPTION_CHARS.saturating_mul(2) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut d = Description {
            units: [0; MAX_DESCRIPTION_CHARS + 1],
            len: 0,
        };
        for (slot, unit) in d.units.iter_mut().zip(ktmrm_proto::utf16_units(bytes)) {
            *slot = unit;
            d.len = d.len.saturating_add(1);
        }
        Ok(d)
    }

    /// From constant units (no NUL of their own); `None` past 64 units.
    #[must_use]
    pub fn from_units(units: &[u16]) -> Option<Self> {
        let mut d = Description {
            units: [0; MAX_DESCRIPTION_CHARS + 1],
            len: units.len(),
        };
        d.units.get_mut(..units.len())?.copy_from_slice(units);
        (units.len() <= MAX_DESCRIPTION_CHARS).then_some(d)
    }

    /// Units before the terminating NUL.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No units (the driver then passes no description at all).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `UNICODE_STRING.Length` (bytes, without the NUL) and `MaximumLength` (with it).
    #[must_use]
    pub fn byte_lengths(&self) -> (u16, u16) {
        // At most 65 units: 130 bytes, well within u16.
        let len = u16::try_from(self.len.saturating_mul(2)).unwrap_or(u16::MAX);
        (len, len.saturating_add(2))
    }

    /// The units and the NUL after them, for the `UNICODE_STRING`'s buffer.
    pub fn as_mut_ptr(&mut self) -> *mut u16 {
        self.units.as_mut_ptr()
    }

    /// The units including the terminating NUL.
    #[must_use]
    pub fn with_nul(&self) -> &[u16] {
        self.units.get(..=self.len).unwrap_or(&[])
    }
}

/// `TRANSACTION_OUTCOME::TransactionOutcomeUndetermined` (ktmtypes.h).
pub const OUTCOME_UNDETERMINED: u32 = 1;

/// `KtmPort::is_committing` from what the kernel reports: `TmIsTransactionActive` is FALSE (the
/// commit began, or it ended) and `ZwQueryInformationTransaction`'s basic information has no
/// outcome yet.
#[must_use]
pub const fn is_committing(active: bool, outcome: u32) -> bool {
    !active && outcome == OUTCOME_UNDETERMINED
}

/// Whether a BEGIN from a requestor of this mode may create a transaction. BEGIN puts a handle in
/// the current process's handle table, which is the caller's only for a user-mode request (it
/// runs in the requesting thread). A kernel-mode requestor (another driver's IRP, or one sent on a
/// worker thread) could land the handle in whatever process is current, so it is refused with
/// `STATUS_INVALID_DEVICE_REQUEST`; kernel callers create transactions with ZwCreateTransaction.
pub fn begin_allowed(requestor_mode: i8) -> Result<(), NtStatus> {
    if requestor_mode == obj::USER_MODE {
        Ok(())
    } else {
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    }
}

/// One value per KTM answer routine. The kernel shell fills it with the `Tm*` functions
/// (PASSIVE_LEVEL, `(PKENLISTMENT, PLARGE_INTEGER TmVirtualClock /*NULL*/) -> NTSTATUS`); tests
/// fill it with names. Keeping the choice here means the shell never decides which routine runs.
#[derive(Clone, Copy, Debug)]
pub struct Routines<F> {
    /// `TmPrePrepareComplete`.
    pub pre_prepare_complete: F,
    /// `TmPrepareComplete`.
    pub prepare_complete: F,
    /// `TmCommitComplete`.
    pub commit_complete: F,
    /// `TmRollbackComplete`.
    pub rollback_complete: F,
    /// `TmReadOnlyEnlistment`.
    pub read_only_enlistment: F,
    /// `TmSinglePhaseReject`.
    pub single_phase_reject: F,
    /// `TmRollbackEnlistment`.
    pub rollback_enlistment: F,
}

impl<F: Copy> Routines<F> {
    /// The routine that gives `answer` (docs/ktm.md §3's table: each notification's required answer).
    #[must_use]
    pub const fn for_answer(&self, answer: Answer) -> F {
        match answer {
            Answer::PrePrepareComplete => self.pre_prepare_complete,
            Answer::PrepareComplete => self.prepare_complete,
            Answer::CommitComplete => self.commit_complete,
            Answer::RollbackComplete => self.rollback_complete,
            Answer::ReadOnly => self.read_only_enlistment,
            Answer::SinglePhaseReject => self.single_phase_reject,
            Answer::RollbackEnlistment => self.rollback_enlistment,
        }
    }
}

/// The routine names, for traces and tests.
pub const ROUTINE_NAMES: Routines<&str> = Routines {
    pre_prepare_complete: "TmPrePrepareComplete",
    prepare_complete: "TmPrepareComplete",
    commit_complete: "TmCommitComplete",
    rollback_complete: "TmRollbackComplete",
    read_only_enlistment: "TmReadOnlyEnlistment",
    single_phase_reject: "TmSinglePhaseReject",
    rollback_enlistment: "TmRollbackEnlistment",
};

#[cfg(test)]
mod tests {
    use super::*;
    use ktmrm_core::Notification;
    use ktmrm_core::port::notify_bits;

    #[test]
    fn access_masks_match_winnt_h() {
        // docs/ktm.md §4: TRANSACTION_ALL_ACCESS 0x1F003F, TRANSACTION_RESOURCE_MANAGER_RIGHTS
        // 0x120037 includes ENLIST.
        assert_eq!(access::TRANSACTION_ALL_ACCESS, 0x001F_003F);
        assert_ne!(0x0012_0037 & access::TRANSACTION_ENLIST, 0);
        assert_eq!(access::TM_ACCESS, 0x11);
        assert_eq!(access::RM_ACCESS, 0x19);
        assert_eq!(access::TM_ACCESS_DURABLE, 0x15);
        assert_eq!(access::RM_ACCESS_DURABLE, 0x1D);
        assert_eq!(access::ENLISTMENT_ACCESS, 0x9);
        assert_eq!(access::KEY_READ, 0x20019);
        assert_eq!(obj::KERNEL_HANDLE, 0x200);
        assert_eq!((obj::KERNEL_MODE, obj::USER_MODE), (0, 1));
    }

    #[test]
    fn begin_never_forbids_promotion() {
        assert_eq!(BEGIN_CREATE_OPTIONS & TRANSACTION_DO_NOT_PROMOTE, 0);
    }

    #[test]
    fn timeouts_are_relative_100ns() {
        assert_eq!(relative_timeout(0), None);
        assert_eq!(relative_timeout(1), Some(-10_000));
        assert_eq!(relative_timeout(30_000), Some(-300_000_000));
        assert_eq!(
            relative_timeout(u32::MAX),
            Some(-(i64::from(u32::MAX) * 10_000))
        );
    }

    #[test]
    fn keys_and_handles_round_trip() {
        for k in [1u64, 2, 0xFFFF_FFFF, 0x1_0000_0001] {
            let ctx = key_to_context(EnlistmentKey(k)).unwrap();
            assert_eq!(key_from_context(ctx), EnlistmentKey(k));
        }
        assert_eq!(handle_bits(0x1234).unwrap(), 0x1234);
        assert_eq!(handle_value(0x1234), 0x1234);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(handle_bits(u64::MAX).unwrap(), usize::MAX);
    }

    #[test]
    fn tx_id_is_the_guid_in_memory_order() {
        // {01020304-0506-0708-090A-0B0C0D0E0F10}
        let id = tx_id(0x0102_0304, 0x0506, 0x0708, [9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(
            id.0,
            [4, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16]
        );
    }

    #[test]
    fn descriptions_are_aligned_units_with_a_terminating_nul() {
        let empty = Description::from_request(&[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.with_nul(), &[0]);
        let hi = Description::from_request(&[b'h', 0, b'i', 0]).unwrap();
        assert_eq!(hi.len(), 2);
        assert_eq!(hi.with_nul(), &[u16::from(b'h'), u16::from(b'i'), 0]);
        assert_eq!(hi.byte_lengths(), (4, 6), "MaximumLength counts the NUL");
        assert_eq!(
            Description::from_request(&[1, 2, 3]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        let full = Description::from_request(&[0x41u8; 2 * MAX_DESCRIPTION_CHARS]).unwrap();
        assert_eq!(full.len(), MAX_DESCRIPTION_CHARS);
        assert_eq!(
            full.with_nul().last(),
            Some(&0),
            "64 units still get their NUL"
        );
        assert_eq!(full.byte_lengths(), (128, 130));
        assert_eq!(
            Description::from_request(&[0x41u8; 2 * MAX_DESCRIPTION_CHARS + 2]),
            Err(NtStatus::INVALID_PARAMETER)
        );
        let rm = Description::from_units(crate::names::RM_DESCRIPTION).unwrap();
        assert_eq!(rm.with_nul().last(), Some(&0));
        assert_eq!(rm.len(), crate::names::RM_DESCRIPTION.len());
        assert!(Description::from_units(&[0x41; MAX_DESCRIPTION_CHARS + 1]).is_none());
    }

    #[test]
    fn committing_means_started_and_undecided() {
        assert!(is_committing(false, OUTCOME_UNDETERMINED));
        assert!(!is_committing(true, OUTCOME_UNDETERMINED), "still active");
        assert!(!is_committing(false, 2), "committed");
        assert!(!is_committing(false, 3), "aborted");
    }

    #[test]
    fn only_user_mode_may_begin() {
        assert_eq!(begin_allowed(obj::USER_MODE), Ok(()));
        assert_eq!(
            begin_allowed(obj::KERNEL_MODE),
            Err(NtStatus::INVALID_DEVICE_REQUEST)
        );
        assert_eq!(begin_allowed(7), Err(NtStatus::INVALID_DEVICE_REQUEST));
    }

    #[test]
    fn each_answer_has_its_own_routine() {
        let r = ROUTINE_NAMES;
        assert_eq!(
            r.for_answer(Answer::PrePrepareComplete),
            "TmPrePrepareComplete"
        );
        assert_eq!(r.for_answer(Answer::PrepareComplete), "TmPrepareComplete");
        assert_eq!(r.for_answer(Answer::CommitComplete), "TmCommitComplete");
        assert_eq!(r.for_answer(Answer::RollbackComplete), "TmRollbackComplete");
        assert_eq!(r.for_answer(Answer::ReadOnly), "TmReadOnlyEnlistment");
        assert_eq!(
            r.for_answer(Answer::SinglePhaseReject),
            "TmSinglePhaseReject"
        );
        assert_eq!(
            r.for_answer(Answer::RollbackEnlistment),
            "TmRollbackEnlistment"
        );
    }

    #[test]
    fn notification_codes_match_ktmtypes_h() {
        // The callback hands KTM's ULONG straight to Notification::from_bits (docs/ktm.md §3).
        assert_eq!(Notification::from_bits(0x1), Notification::PrePrepare);
        assert_eq!(Notification::from_bits(0x2), Notification::Prepare);
        assert_eq!(Notification::from_bits(0x4), Notification::Commit);
        assert_eq!(Notification::from_bits(0x8), Notification::Rollback);
        assert_eq!(
            Notification::from_bits(0x200),
            Notification::SinglePhaseCommit
        );
        assert_eq!(
            Notification::from_bits(0x0100_0000),
            Notification::RmDisconnected
        );
        assert_eq!(Notification::from_bits(0x100), Notification::Recover);
        assert_eq!(Notification::from_bits(0x2000), Notification::LastRecover);
        assert_eq!(Notification::from_bits(0x4000), Notification::InDoubt);
        // RECOVER_QUERY is a superior's notification; ktmrm never asks for it.
        assert_eq!(Notification::from_bits(0x800), Notification::Other(0x800));
        // Every RM must take PREPREPARE | PREPARE | COMMIT and handle ROLLBACK (docs/ktm.md §3).
        assert_eq!(notify_bits::ENGINE_MASK & 0xF, 0xF);
        assert_eq!(
            notify_bits::ENGINE_MASK & !0x3FFF_FFFF,
            0,
            "only valid bits"
        );
    }
}
