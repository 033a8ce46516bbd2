//! The order in which the driver's kernel objects are released, shared by `DriverEntry` (undoing a
//! partial start) and `DriverUnload` (undoing a full one), so the order is decided and tested
//! here and the kernel shell just executes [`Step`]s.
//!
//! `DriverEntry` creates, in order: the transaction manager, the resource manager, a reference to
//! the resource manager object, the device object (work items that finish notifications are
//! allocated on it, so it exists before the first callback), the driver context (engine + lock),
//! the notification callback, and the device's symbolic link. Tearing down follows "Creating a Resource Manager"
//! (learn.microsoft.com/windows-hardware/drivers/kernel/creating-a-resource-manager): the
//! enlistments go first, then the RM, then the TM — KTM keeps calling back while enlistments
//! live, and a callback must never reach an image whose context is gone:
//!
//! 1. `DeleteSymlink`: no new `CreateFile` by name.
//! 2. `ShutdownEngine`: the engine refuses every later request (`STATUS_DEVICE_NOT_READY`).
//!    (The I/O manager calls `DriverUnload` only once no handle to the device is open, so no
//!    IOCTL is in flight; the rundown below covers them anyway.)
//! 3. `RollbackEnlistments`: `ZwRollbackEnlistment` on every enlistment whose transaction ktmrm
//!    has not prepared (`Engine::rollback_unprepared`); KTM answers with ROLLBACKs, which the
//!    engine answers and whose enlistments it closes.
//! 4. `WaitForTransactions`: waits, on an event the closing of each enlistment signals, until
//!    every transaction that must end has ended (`Engine::unfinished`: all but durable ones
//!    already in the log, which KTM recovers at the next start), at most [`UNLOAD_WAIT_MS`]
//!    (a prepared transaction waits on the other RMs), tracing what is left if that expires.
//! 5. `CloseRm`: with no transaction left, KTM has nothing to deliver; what the wait left is
//!    rolled back by KTM now, its ROLLBACKs still admitted by the rundown.
//! 6. `WaitForRundown`: waits for every callback and IOCTL that got in, and every work item the
//!    callback queued (each holds rundown protection until it is done); later ones are turned
//!    away before they touch the context.
//! 7. `FreeContext`: drops the engine (closing any enlistment handle the wait left), frees the
//!    lock and the context.
//! 8. `DereferenceRm`: the last reference the driver holds on the RM object.
//! 9. `CloseTm`: the volatile TM goes away with its last handle.
//! 10. `DeleteDevice`.
//!
//! Steps 5 and 6 are in this order on purpose: closing the RM may deliver ROLLBACKs on this very
//! thread, and they must still be admitted by the rundown so the engine can answer them.

/// How long `DriverUnload` waits for transactions to end before it closes the RM anyway.
pub const UNLOAD_WAIT_MS: u32 = 10_000;

/// The wait's slice: the event wakes the wait as soon as an enlistment closes; the slice bounds
/// how late it notices the deadline.
pub const UNLOAD_WAIT_SLICE_MS: u32 = 100;

/// How many slices make [`UNLOAD_WAIT_MS`].
pub const UNLOAD_WAIT_SLICES: u32 = UNLOAD_WAIT_MS / UNLOAD_WAIT_SLICE_MS;

/// What has been created so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Built {
    /// `ZwCreateTransactionManager` succeeded (kernel handle held).
    pub tm: bool,
    /// `ZwCreateResourceManager` succeeded (kernel handle held).
    pub rm: bool,
    /// `ObReferenceObjectByHandle` on the RM handle succeeded (object reference held).
    pub rm_object: bool,
    /// The driver context (engine, lock) is allocated.
    pub context: bool,
    /// `TmEnableCallbacks` succeeded: KTM may call back with the context as RMKey.
    pub callbacks: bool,
    /// The device object exists.
    pub device: bool,
    /// The symbolic link exists.
    pub symlink: bool,
}

impl Built {
    /// Everything: what `DriverUnload` tears down.
    pub const ALL: Built = Built {
        tm: true,
        rm: true,
        rm_object: true,
        context: true,
        callbacks: true,
        device: true,
        symlink: true,
    };
}

/// One release action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `IoDeleteSymbolicLink`.
    DeleteSymlink,
    /// `Engine::shutdown`.
    ShutdownEngine,
    /// `Engine::rollback_unprepared` (`ZwRollbackEnlistment` on each unprepared enlistment).
    RollbackEnlistments,
    /// Wait (bounded) until `Engine::unfinished` is zero.
    WaitForTransactions,
    /// `ZwClose` on the RM handle.
    CloseRm,
    /// `ExWaitForRundownProtectionRelease`.
    WaitForRundown,
    /// Drop the context (engine, state, lock) and free its memory.
    FreeContext,
    /// `ObDereferenceObjectDeferDelete` on the RM object (the page asks for it for KTM objects).
    DereferenceRm,
    /// `ZwClose` on the TM handle.
    CloseTm,
    /// `IoDeleteDevice`.
    DeleteDevice,
}

const ORDER: [Step; 10] = [
    Step::DeleteSymlink,
    Step::ShutdownEngine,
    Step::RollbackEnlistments,
    Step::WaitForTransactions,
    Step::CloseRm,
    Step::WaitForRundown,
    Step::FreeContext,
    Step::DereferenceRm,
    Step::CloseTm,
    Step::DeleteDevice,
];

impl Step {
    /// Whether this step applies to what was built.
    #[must_use]
    pub const fn applies(self, b: &Built) -> bool {
        match self {
            Step::DeleteSymlink => b.symlink,
            Step::ShutdownEngine | Step::FreeContext => b.context,
            // Enlistments exist only once KTM can call back (and requests could enlist).
            Step::RollbackEnlistments | Step::WaitForTransactions => b.context && b.callbacks,
            Step::CloseRm => b.rm,
            // Callbacks and IOCTLs can only have entered once the callback is registered.
            Step::WaitForRundown => b.callbacks,
            Step::DereferenceRm => b.rm_object,
            Step::CloseTm => b.tm,
            Step::DeleteDevice => b.device,
        }
    }
}

/// The steps that release what `built` holds, in order.
pub fn steps(built: Built) -> impl Iterator<Item = Step> {
    ORDER.into_iter().filter(move |s| s.applies(&built))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: Built) -> Vec<Step> {
        steps(b).collect()
    }

    #[test]
    fn full_unload_order() {
        assert_eq!(all(Built::ALL), ORDER.to_vec());
    }

    #[test]
    fn partial_starts_release_only_what_exists() {
        assert_eq!(all(Built::default()), vec![]);
        let tm_only = Built {
            tm: true,
            ..Built::default()
        };
        assert_eq!(all(tm_only), vec![Step::CloseTm]);
        let rm_ref_failed = Built {
            tm: true,
            rm: true,
            ..Built::default()
        };
        assert_eq!(all(rm_ref_failed), vec![Step::CloseRm, Step::CloseTm]);
        let callbacks_failed = Built {
            callbacks: false,
            symlink: false,
            ..Built::ALL
        };
        assert_eq!(
            all(callbacks_failed),
            vec![
                Step::ShutdownEngine,
                Step::CloseRm,
                Step::FreeContext,
                Step::DereferenceRm,
                Step::CloseTm,
                Step::DeleteDevice
            ]
        );
        let context_failed = Built {
            tm: true,
            rm: true,
            rm_object: true,
            device: true,
            ..Built::default()
        };
        assert_eq!(
            all(context_failed),
            vec![
                Step::CloseRm,
                Step::DereferenceRm,
                Step::CloseTm,
                Step::DeleteDevice
            ]
        );
        let symlink_failed = Built {
            symlink: false,
            ..Built::ALL
        };
        assert_eq!(all(symlink_failed), ORDER[1..].to_vec());
    }

    #[test]
    fn invariants() {
        let pos = |s| ORDER.iter().position(|x| *x == s).unwrap();
        // Requests stop, then the enlistments are rolled back and awaited, and only then does
        // the RM handle close (KTM rolls back what is left, callbacks run) before the rundown
        // wait; the context outlives all of it; the RM object reference and the TM outlive the
        // context.
        assert!(pos(Step::ShutdownEngine) < pos(Step::RollbackEnlistments));
        assert!(pos(Step::RollbackEnlistments) < pos(Step::WaitForTransactions));
        assert!(pos(Step::WaitForTransactions) < pos(Step::CloseRm));
        assert!(pos(Step::ShutdownEngine) < pos(Step::CloseRm));
        assert!(pos(Step::CloseRm) < pos(Step::WaitForRundown));
        assert!(pos(Step::WaitForRundown) < pos(Step::FreeContext));
        assert!(pos(Step::FreeContext) < pos(Step::DereferenceRm));
        assert!(pos(Step::DereferenceRm) < pos(Step::CloseTm));
        assert!(pos(Step::DeleteSymlink) < pos(Step::DeleteDevice));
        // A queued work item holds rundown protection and was allocated on the device: the
        // rundown wait outlasts every work item, and the device outlasts the wait.
        assert!(pos(Step::WaitForRundown) < pos(Step::DeleteDevice));
    }

    // The wait is bounded in whole, non-zero slices.
    const _: () = assert!(UNLOAD_WAIT_SLICES * UNLOAD_WAIT_SLICE_MS == UNLOAD_WAIT_MS);
    const _: () = assert!(UNLOAD_WAIT_SLICES > 0);
}
