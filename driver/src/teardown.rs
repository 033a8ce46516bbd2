//! The order in which the driver's kernel objects are released, shared by `DriverEntry` (undoing a
//! partial start) and `DriverUnload` (undoing a full one), so the order is decided and tested
//! here and the kernel shell just executes [`Step`]s.
//!
//! `DriverEntry` creates, in order: the transaction manager, the resource manager, a reference to
//! the resource manager object, the driver context (engine + lock), the notification callback,
//! the device object and its symbolic link. Tearing down is not simply the reverse, because KTM
//! keeps calling back while enlistments live:
//!
//! 1. `DeleteSymlink`: no new `CreateFile` by name.
//! 2. `ShutdownEngine`: the engine refuses every later request (`STATUS_DEVICE_NOT_READY`).
//!    (The I/O manager calls `DriverUnload` only once no handle to the device is open, so no
//!    IOCTL is in flight; the rundown below covers them anyway.)
//! 3. `CloseRm`: KTM rolls back every transaction the RM is still enlisted in and delivers the
//!    ROLLBACK notifications; the engine answers them and closes those enlistments.
//! 4. `WaitForRundown`: waits for every callback and IOCTL that got in; later ones are turned
//!    away before they touch the context.
//! 5. `FreeContext`: drops the engine, which closes any enlistment handle still open (the
//!    transaction then rolls back with nobody to notify), and frees the lock and the context.
//! 6. `DereferenceRm`: the last reference the driver holds on the RM object.
//! 7. `CloseTm`: the volatile TM goes away with its last handle.
//! 8. `DeleteDevice`.
//!
//! Steps 3 and 4 are in this order on purpose: closing the RM may deliver ROLLBACKs on this very
//! thread, and they must still be admitted by the rundown so the engine can answer them.

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
    /// `ZwClose` on the RM handle.
    CloseRm,
    /// `ExWaitForRundownProtectionRelease`.
    WaitForRundown,
    /// Drop the context (engine, state, lock) and free its memory.
    FreeContext,
    /// `ObDereferenceObject` on the RM object.
    DereferenceRm,
    /// `ZwClose` on the TM handle.
    CloseTm,
    /// `IoDeleteDevice`.
    DeleteDevice,
}

const ORDER: [Step; 8] = [
    Step::DeleteSymlink,
    Step::ShutdownEngine,
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
            device: false,
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
                Step::CloseTm
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
        // The RM handle closes (KTM rolls back, callbacks run) before the rundown wait, and the
        // context outlives both; the RM object reference and the TM outlive the context.
        assert!(pos(Step::ShutdownEngine) < pos(Step::CloseRm));
        assert!(pos(Step::CloseRm) < pos(Step::WaitForRundown));
        assert!(pos(Step::WaitForRundown) < pos(Step::FreeContext));
        assert!(pos(Step::FreeContext) < pos(Step::DereferenceRm));
        assert!(pos(Step::DereferenceRm) < pos(Step::CloseTm));
        assert!(pos(Step::DeleteSymlink) < pos(Step::DeleteDevice));
    }
}
