//! Identifiers of the model's objects, shared by every other module: handles and ids (volatile)
//! and GUIDs (logged, so they survive a crash).

use std::fmt;

use ktmrm_core::TxId;

/// A simulated process: the owner of a handle table (docs/ktm.md §4: a user handle is only meaningful
/// in its own process, and the IOCTL path runs in the caller's process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub u32);

/// A resource manager registered with [`crate::Ktm::create_resource_manager`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RmId(pub u32);

/// An enlistment: the RM↔transaction link (docs/ktm.md §1, S12b). Plays both the driver's enlistment
/// handle and the `PKENLISTMENT` a notification names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnlistmentId(pub u64);

impl fmt::Display for EnlistmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enlistment #{}", self.0)
    }
}

/// A resource manager's GUID (`ZwCreateResourceManager`'s `RmGuid`, docs/ktm.md §2): what a durable
/// RM re-registers with after a crash so that KTM finds its logged enlistments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RmGuid(pub [u8; 16]);

/// An enlistment's GUID (`EnlistmentId`, docs/ktm.md §3, S19); unlike [`EnlistmentId`] (a handle) it
/// survives a crash. Deterministic in the model: the enlistment's number, then a fixed tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnlistmentGuid(pub [u8; 16]);

impl EnlistmentGuid {
    pub(crate) fn of(n: u64) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[8..].copy_from_slice(b"ktm-sim\x02");
        EnlistmentGuid(b)
    }
}

/// A transaction is "named by a GUID (UOW)" (docs/ktm.md §1, S11); the model's is deterministic:
/// for the n-th transaction: `n` little-endian, then a fixed tag, so ids are reproducible run to
/// run.
pub(crate) fn tx_id(n: u64) -> TxId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8..].copy_from_slice(b"ktm-sim\x01");
    TxId(b)
}

/// A short printable form of a transaction id for messages.
pub(crate) fn tx_name(id: TxId) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&id.0[..8]);
    format!("tx #{}", u64::from_le_bytes(n))
}
