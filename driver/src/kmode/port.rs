//! `ktmrm_core::KtmPort` over the real KTM: the only place the engine's requests become `Tm*`,
//! `Zw*` and `Ob*` calls. Every method runs at PASSIVE_LEVEL (the engine calls the port only
//! from IOCTL dispatch and from the KTM callback, never under its lock).

use super::sys::{handle_from_bits, object_attributes};
use super::worker::Spare;
use crate::ktm::{self, Routines, access, obj};
use crate::trace::Level;
use core::cell::UnsafeCell;
use core::ptr::{NonNull, null_mut};
use ktmrm_core::{Answer, EnlistmentKey, KtmPort, TxId};
use ktmrm_proto::NtStatus;
use wdk_sys::ntddk::{
    KeInitializeEvent, KeSetEvent, KeWaitForSingleObject, ObDereferenceObjectDeferDelete,
    ObOpenObjectByPointer, ObReferenceObjectByHandle, TmCommitComplete, TmGetTransactionId,
    TmIsTransactionActive, TmPrePrepareComplete, TmPrepareComplete, TmReadOnlyEnlistment,
    TmRecoverEnlistment, TmRollbackComplete, TmRollbackEnlistment, TmSinglePhaseReject, ZwClose,
    ZwCreateEnlistment, ZwCreateTransaction, ZwQueryInformationTransaction, ZwRollbackEnlistment,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _TRANSACTION_INFORMATION_CLASS, GUID, HANDLE, KEVENT,
    KPROCESSOR_MODE, LARGE_INTEGER, NTSTATUS, PDEVICE_OBJECT, PKENLISTMENT, PKRESOURCEMANAGER,
    PKTRANSACTION, PLARGE_INTEGER, POBJECT_TYPE, PUNICODE_STRING, PVOID,
    TRANSACTION_BASIC_INFORMATION, ULONG, UNICODE_STRING,
};

/// Who sent an IOCTL.
pub struct KernelCaller {
    /// `Irp->RequestorMode`: UserMode for applications. Handles the caller names are looked up
    /// with this mode, so a user caller gets the access checks KTM's handles carry.
    pub requestor_mode: KPROCESSOR_MODE,
    /// `PsGetCurrentProcessId()` at dispatch: the process whose handle table BEGIN writes to and
    /// in which the caller's transaction handles are looked up.
    pub process_id: usize,
    /// The process that opened the device handle (from `FileObject->FsContext`), for traces.
    pub opener_process_id: usize,
}

/// A referenced transaction object (from `ObReferenceObjectByHandle`).
pub struct TxObject(NonNull<core::ffi::c_void>);

impl TxObject {
    fn as_ptr(&self) -> PKTRANSACTION {
        self.0.as_ptr().cast()
    }

    /// A kernel handle to this transaction, for the `Zw*` routines that take one, closed when
    /// dropped. The caller's own handle was already checked (referenced with the requestor's
    /// mode in `reference_transaction`); a user handle is never used in kernel mode, and a
    /// handle value the caller swaps meanwhile changes nothing.
    fn kernel_handle(&self, access: u32, tx_type: POBJECT_TYPE) -> Result<KernelHandle, NtStatus> {
        self.open_handle(obj::KERNEL_HANDLE, access, tx_type, obj::KERNEL_MODE)
            .map(KernelHandle)
    }

    /// A handle to this transaction: `attributes` OBJ_KERNEL_HANDLE for the System table, or 0
    /// with `mode` UserMode for the current (the requesting) process's table, access checked
    /// against its token.
    fn open_handle(
        &self,
        attributes: u32,
        access: u32,
        tx_type: POBJECT_TYPE,
        mode: KPROCESSOR_MODE,
    ) -> Result<HANDLE, NtStatus> {
        let mut h: HANDLE = null_mut();
        // ObOpenObjectByPointer(PVOID Object, ULONG HandleAttributes, PACCESS_STATE
        //   PassedAccessState /*NULL*/, ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType,
        //   KPROCESSOR_MODE AccessMode, PHANDLE Handle): PASSIVE_LEVEL (ntifs.h). KernelMode +
        //   OBJ_KERNEL_HANDLE: a System-table handle, no access check beyond the type; UserMode
        //   without it: a handle in the current process's table, access checked for its caller.
        // SAFETY: `self` holds a reference, so the object is alive; `h` is a local.
        let st = NtStatus(unsafe {
            ObOpenObjectByPointer(
                self.as_ptr().cast(),
                attributes,
                null_mut(),
                access,
                tx_type,
                mode,
                &mut h,
            )
        });
        if st.is_success() {
            Ok(h)
        } else {
            trace!(Level::Error, "ObOpenObjectByPointer(transaction): {}", st);
            Err(st)
        }
    }
}

/// A kernel handle the driver opened for one call, closed when dropped.
struct KernelHandle(HANDLE);

impl Drop for KernelHandle {
    fn drop(&mut self) {
        // ZwClose(HANDLE Handle): PASSIVE_LEVEL.
        // SAFETY: opened by `TxObject::kernel_handle`, closed exactly once, here.
        let st = NtStatus(unsafe { ZwClose(self.0) });
        if !st.is_success() {
            trace!(Level::Error, "ZwClose(transaction): {}", st);
        }
    }
}

impl Drop for TxObject {
    fn drop(&mut self) {
        // ObDereferenceObjectDeferDelete(PVOID Object): IRQL <= DISPATCH_LEVEL. Releases the
        // reference `reference_transaction` took; if it was the last one, deletion runs later
        // on a worker thread, never inside this call. That matters because the engine may drop a
        // TxObject anywhere, and deleting a transaction object can reach KTM, which must never
        // happen under the engine's lock or at APC_LEVEL. (Plain ObDereferenceObject would delete
        // inline.)
        // SAFETY: the driver owns exactly this one reference.
        unsafe { ObDereferenceObjectDeferDelete(self.0.as_ptr()) };
    }
}

/// What the engine keeps per enlistment: the enlistment's kernel handle (from
/// `ZwCreateEnlistment`; null for one KTM rebuilt at recovery, which the driver holds no handle
/// to) and, in durable mode, the work item its COMMIT may need (`kmode::worker::Spare`). Owned by
/// the engine until `close_enlistment`. Dropping it closes the handle and frees the spare, which
/// happens only at unload for enlistments the engine still holds (after the RM is closed and
/// all callbacks have drained, before the device is deleted).
pub struct EnlistmentHandle {
    handle: HANDLE,
    spare: Option<Spare>,
}

// SAFETY: a kernel handle (OBJ_KERNEL_HANDLE) is valid in every process and thread context, and
// a spare work item and its unused block may be queued or freed on any thread at IRQL <=
// DISPATCH_LEVEL, so the value may move to and be dropped on any thread; the engine's lock
// guards the container.
unsafe impl Send for EnlistmentHandle {}

impl EnlistmentHandle {
    /// The work item set aside for this enlistment's COMMIT, if it still has one.
    pub fn take_spare(&mut self) -> Option<Spare> {
        self.spare.take()
    }
}

impl Drop for EnlistmentHandle {
    fn drop(&mut self) {
        if self.handle.is_null() {
            return; // rebuilt at recovery: no handle of ours; the spare frees itself
        }
        // ZwClose(HANDLE Handle): PASSIVE_LEVEL. Closes the driver's kernel handle; with the
        // enlistment's last handle gone, KTM rolls back the transaction if it has not ended
        // (docs/ktm.md §3) — at this point the engine has already answered its last notification.
        // SAFETY: the handle came from ZwCreateEnlistment and is closed exactly once, here.
        let st = NtStatus(unsafe { ZwClose(self.handle) });
        if !st.is_success() {
            trace!(Level::Error, "ZwClose(enlistment) failed: {}", st);
        }
    }
}

/// A synchronization event in the image's `.data` (non-paged), initialised in DriverEntry before
/// anything can signal or wait on it.
pub struct KernelEvent(UnsafeCell<KEVENT>);

// SAFETY: the KEVENT is only touched through Ke* routines, which synchronise themselves.
unsafe impl Sync for KernelEvent {}

// SAFETY: all-zero is a valid, non-signalled KEVENT header until KeInitializeEvent runs in
// DriverEntry, before any enlistment exists.
static ENLISTMENT_CLOSED: KernelEvent =
    KernelEvent(UnsafeCell::new(unsafe { core::mem::zeroed() }));

// SAFETY: as for ENLISTMENT_CLOSED.
static ENLIST_FINISHED: KernelEvent = KernelEvent(UnsafeCell::new(unsafe { core::mem::zeroed() }));

/// Signalled whenever the driver closes an enlistment (a transaction ended for ktmrm): what
/// DriverUnload's wait for the last transactions wakes on.
pub fn enlistment_closed() -> &'static KernelEvent {
    &ENLISTMENT_CLOSED
}

/// Signalled whenever an enlistment attempt ends: what a request waiting for another thread's
/// enlistment of the same transaction wakes on (`KtmPort::yield_now`).
pub fn enlist_finished() -> &'static KernelEvent {
    &ENLIST_FINISHED
}

impl KernelEvent {
    /// KeInitializeEvent(PRKEVENT, SynchronizationEvent, FALSE): any IRQL for non-paged memory.
    /// Called once per event, in DriverEntry, before callbacks are enabled.
    pub fn init(&self) {
        // SAFETY: nothing waits on or signals the event yet.
        unsafe { KeInitializeEvent(self.0.get(), _EVENT_TYPE::SynchronizationEvent, 0) };
    }

    fn signal(&self) {
        // KeSetEvent(PRKEVENT, KPRIORITY Increment /*IO_NO_INCREMENT*/, BOOLEAN Wait FALSE):
        // IRQL <= DISPATCH_LEVEL.
        // SAFETY: initialised in DriverEntry; the image (and this static) outlives every caller.
        let _ = unsafe { KeSetEvent(self.0.get(), 0, 0) };
    }

    /// Waits until the event is signalled or `ms` milliseconds pass: true when signalled.
    /// KeWaitForSingleObject(Object, Executive, KernelMode, Alertable FALSE, Timeout relative):
    /// IRQL <= APC_LEVEL with a non-zero timeout; DriverUnload is at PASSIVE_LEVEL.
    pub fn wait_ms(&self, ms: u32) -> bool {
        let mut timeout = LARGE_INTEGER {
            QuadPart: ktm::relative_timeout(ms).unwrap_or(0),
        };
        // SAFETY: initialised in DriverEntry; `timeout` is a local.
        let st = NtStatus(unsafe {
            KeWaitForSingleObject(
                self.0.get().cast(),
                _KWAIT_REASON::Executive,
                obj::KERNEL_MODE,
                0,
                &mut timeout,
            )
        });
        st == NtStatus::SUCCESS
    }
}

/// The enlistment a notification is for: the `PKENLISTMENT` KTM passes to the callback, valid
/// for the callback's duration (the engine answers before `notify` returns), or, for a
/// notification finished on a worker, for as long as the worker's job holds its reference
/// (`kmode::worker`).
pub struct KernelTarget(pub PKENLISTMENT);

/// The `Tm*` answer routines: `NTSTATUS TmXxx(PKENLISTMENT Enlistment, PLARGE_INTEGER
/// TmVirtualClock)`, all PASSIVE_LEVEL; the driver passes a NULL clock (docs/ktm.md §3, Delivery B).
type TmAnswer = unsafe extern "C" fn(PKENLISTMENT, PLARGE_INTEGER) -> NTSTATUS;

/// Which routine gives which answer is decided (and tested) in `crate::ktm::Routines`.
const ROUTINES: Routines<TmAnswer> = Routines {
    pre_prepare_complete: TmPrePrepareComplete,
    prepare_complete: TmPrepareComplete,
    commit_complete: TmCommitComplete,
    rollback_complete: TmRollbackComplete,
    read_only_enlistment: TmReadOnlyEnlistment,
    single_phase_reject: TmSinglePhaseReject,
    rollback_enlistment: TmRollbackEnlistment,
};

/// The port: the driver's RM (handle and object) and the transaction object type.
pub struct KernelPort {
    /// The RM's kernel handle (ZwCreateResourceManager), for ZwCreateEnlistment; open until
    /// unload.
    pub rm: HANDLE,
    /// From `ObReferenceObjectByHandle` in DriverEntry; the driver holds that reference until
    /// unload, so the pointer stays valid for every enlistment.
    pub rm_object: PKRESOURCEMANAGER,
    /// `*TmTransactionObjectType`, resolved with `MmGetSystemRoutineAddress` in DriverEntry.
    pub tx_type: POBJECT_TYPE,
    /// The control device: work items are allocated on it (`IoAllocateWorkItem`); deleted
    /// after the context.
    pub device: PDEVICE_OBJECT,
    /// Durable mode (the engine has a log): every enlistment gets a spare work item for its
    /// COMMIT, and the callback may defer its log I/O to a worker.
    pub durable: bool,
}

impl KernelPort {
    /// A spare work item for a new enlistment's COMMIT in durable mode (`None` when volatile:
    /// a volatile engine does no I/O in the callback, so never defers).
    fn spare(&self) -> Result<Option<Spare>, NtStatus> {
        if self.durable {
            Spare::new(self.device).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl KtmPort for KernelPort {
    /// KTM made a recovered enlistment's object during its recovery and hands it to every later
    /// callback, so the driver opens no handle to it: what the engine keeps holds only the spare
    /// work item for its COMMIT, made before RECOVER is answered (`None` if none could be had:
    /// that COMMIT then falls back as `crate::callback::without_worker` says).
    fn recovered_enlistment(&self) -> Option<EnlistmentHandle> {
        let spare = self.spare().ok().flatten()?;
        Some(EnlistmentHandle {
            handle: null_mut(),
            spare: Some(spare),
        })
    }

    /// `TmRecoverEnlistment(PKENLISTMENT Enlistment, PVOID EnlistmentKey)`: PASSIVE_LEVEL; the
    /// durable RM's answer to RECOVER, naming the key of the enlistment's later notifications
    /// (docs/ktm.md §2); KTM may redeliver the outcome before it returns. Nothing to close:
    /// what the engine keeps came from `recovered_enlistment`.
    fn recover_enlistment(
        &self,
        target: &KernelTarget,
        key: EnlistmentKey,
    ) -> Result<Option<EnlistmentHandle>, NtStatus> {
        let context = ktm::key_to_context(key).ok_or(NtStatus::INVALID_PARAMETER)?;
        // SAFETY: the enlistment pointer is the callback's, valid for its duration; the key is
        // an opaque number KTM stores and hands back, never dereferenced.
        let st = NtStatus(unsafe {
            TmRecoverEnlistment(target.0, core::ptr::without_provenance_mut(context))
        });
        if st.is_success() { Ok(None) } else { Err(st) }
    }

    type Caller = KernelCaller;
    type TxRef = TxObject;
    type Enlistment = EnlistmentHandle;
    type Target = KernelTarget;

    fn reference_transaction(
        &self,
        caller: &KernelCaller,
        handle: u64,
    ) -> Result<(TxObject, TxId), NtStatus> {
        let bits = ktm::handle_bits(handle)?;
        let mut object: PVOID = null_mut();
        // ObReferenceObjectByHandle(HANDLE Handle, ACCESS_MASK DesiredAccess, POBJECT_TYPE
        //   ObjectType, KPROCESSOR_MODE AccessMode, PVOID *Object,
        //   POBJECT_HANDLE_INFORMATION HandleInformation /*NULL*/): PASSIVE_LEVEL.
        // Looks the handle up in the current process, which is the caller's (top-level IOCTL
        // dispatch runs in the requesting thread). AccessMode = Irp->RequestorMode: for UserMode
        // the handle must be a user handle granting TRANSACTION_ENLIST, else
        // STATUS_INVALID_HANDLE / STATUS_ACCESS_DENIED; a non-transaction handle gives
        // STATUS_OBJECT_TYPE_MISMATCH. On success the driver owns one object reference,
        // released by `TxObject::drop`.
        // SAFETY: all pointers are to locals; the handle value is only looked up, never trusted.
        let st = NtStatus(unsafe {
            ObReferenceObjectByHandle(
                handle_from_bits(bits),
                access::TRANSACTION_ENLIST,
                self.tx_type,
                caller.requestor_mode,
                &mut object,
                null_mut(),
            )
        });
        if !st.is_success() {
            trace!(Level::Verbose, "transaction handle {:#x}: {}", handle, st);
            return Err(st);
        }
        // No check that the transaction is still active here: one KTM is committing stays
        // readable (the engine decides, with `is_committing`), and an ended one fails where it
        // must, at enlistment (STATUS_TRANSACTION_NOT_ACTIVE) or in the engine.
        let tx = TxObject(NonNull::new(object).ok_or(NtStatus::UNSUCCESSFUL)?);
        let mut guid = GUID::default();
        // VOID TmGetTransactionId(PKTRANSACTION Transaction, PUOW TransactionId): any IRQL.
        // Copies the transaction's GUID (its UOW) into the caller's GUID.
        // SAFETY: `tx` is referenced; `guid` is a local GUID.
        unsafe { TmGetTransactionId(tx.as_ptr(), &mut guid) };
        let id = ktm::tx_id(guid.Data1, guid.Data2, guid.Data3, guid.Data4);
        Ok((tx, id))
    }

    fn enlist(
        &self,
        tx: &TxObject,
        key: EnlistmentKey,
        mask: u32,
    ) -> Result<EnlistmentHandle, NtStatus> {
        let context = ktm::key_to_context(key).ok_or(NtStatus::INVALID_PARAMETER)?;
        // Before enlisting: a transaction that cannot have one is refused here, with nothing
        // to undo (STATUS_INSUFFICIENT_RESOURCES to the caller).
        let spare = self.spare()?;
        // ZwCreateEnlistment takes a transaction handle: a kernel one, for this call only.
        let tx_handle = tx.kernel_handle(access::TRANSACTION_ENLIST, self.tx_type)?;
        let mut oa = object_attributes(null_mut(), obj::KERNEL_HANDLE, null_mut());
        let mut handle: HANDLE = null_mut();
        // ZwCreateEnlistment(PHANDLE EnlistmentHandle, ACCESS_MASK DesiredAccess,
        //   HANDLE ResourceManagerHandle, HANDLE TransactionHandle, POBJECT_ATTRIBUTES
        //   ObjectAttributes, ULONG CreateOptions, NOTIFICATION_MASK NotificationMask,
        //   PVOID EnlistmentKey): PASSIVE_LEVEL. OBJ_KERNEL_HANDLE: the enlistment handle is in
        //   the System handle table, valid on whatever thread a notification later arrives; the
        //   engine owns it until `close_enlistment`. CreateOptions 0: a subordinate (not
        //   superior) enlistment. EnlistmentKey is the engine's key as a number, handed back as
        //   the callback's TransactionContext; notifications for it may arrive before the call
        //   returns (docs/ktm.md). The RM handle needs RESOURCEMANAGER_ENLIST, the transaction
        //   handle TRANSACTION_ENLIST (both granted above).
        // SAFETY: `oa` and `handle` are locals; `self.rm` is the driver's open RM handle and
        // `tx_handle` the kernel handle opened above, alive until it drops below.
        let st = NtStatus(unsafe {
            ZwCreateEnlistment(
                &mut handle,
                access::ENLISTMENT_ACCESS,
                self.rm,
                tx_handle.0,
                &mut oa,
                0,
                mask,
                core::ptr::without_provenance_mut(context),
            )
        });
        // The enlistment references the transaction itself: the temporary handle goes.
        drop(tx_handle);
        if st.is_success() {
            trace!(Level::Info, "enlisted key {}", key.0);
            Ok(EnlistmentHandle { handle, spare })
        } else {
            if st == NtStatus::TRANSACTION_REQUIRED_PROMOTION {
                trace!(
                    Level::Warn,
                    "enlist needs promotion, which the transaction forbids"
                );
            } else {
                trace!(Level::Error, "ZwCreateEnlistment: {}", st);
            }
            Err(st)
        }
    }

    fn close_enlistment(&self, enlistment: EnlistmentHandle) {
        // ZwClose and the spare's IoFreeWorkItem, in EnlistmentHandle's Drop.
        drop(enlistment);
        // A transaction ended: wake an unload waiting for the last one (kmode::on_unload).
        enlistment_closed().signal();
    }

    fn is_committing(&self, tx: &TxObject) -> bool {
        // TmIsTransactionActive(PKTRANSACTION Transaction) -> BOOLEAN: any IRQL. FALSE once the
        // transaction has committed, rolled back, or started its commit.
        // SAFETY: `tx` holds a reference, so the object is alive.
        let active = unsafe { TmIsTransactionActive(tx.as_ptr()) } != 0;
        if active {
            return false;
        }
        let Ok(h) = tx.kernel_handle(access::TRANSACTION_QUERY_INFORMATION, self.tx_type) else {
            return false;
        };
        let mut info = TRANSACTION_BASIC_INFORMATION::default();
        // ZwQueryInformationTransaction(HANDLE TransactionHandle, TRANSACTION_INFORMATION_CLASS
        //   TransactionBasicInformation, PVOID TransactionInformation, ULONG Length,
        //   PULONG ReturnLength /*NULL*/): PASSIVE_LEVEL; the handle needs
        //   TRANSACTION_QUERY_INFORMATION. Fills TRANSACTION_BASIC_INFORMATION { GUID
        //   TransactionId; DWORD State; DWORD Outcome; }.
        // SAFETY: `h` is open; `info` is a local of the size passed.
        let st = NtStatus(unsafe {
            ZwQueryInformationTransaction(
                h.0,
                _TRANSACTION_INFORMATION_CLASS::TransactionBasicInformation,
                (&raw mut info).cast(),
                core::mem::size_of::<TRANSACTION_BASIC_INFORMATION>() as ULONG,
                null_mut(),
            )
        });
        st.is_success() && ktm::is_committing(active, info.Outcome)
    }

    fn rollback_enlistment(&self, enlistment: &EnlistmentHandle) -> NtStatus {
        // ZwRollbackEnlistment(HANDLE EnlistmentHandle, PLARGE_INTEGER TmVirtualClock /*NULL*/):
        //   PASSIVE_LEVEL; the handle needs ENLISTMENT_SUBORDINATE_RIGHTS (granted at create).
        //   Legal until the enlistment's PrepareComplete; KTM then sends ROLLBACK to every
        //   enlistment, this one included, possibly before the call returns. Fails with
        //   STATUS_TRANSACTION_REQUEST_NOT_VALID once the transaction is past that point.
        if enlistment.handle.is_null() {
            // Rebuilt at recovery, so prepared: never asked (only unprepared ones are).
            return NtStatus::INVALID_HANDLE;
        }
        // SAFETY: the engine holds the handle (taken out of its transaction for the call, so
        // nobody closes it meanwhile).
        NtStatus(unsafe { ZwRollbackEnlistment(enlistment.handle, null_mut()) })
    }

    fn answer(&self, target: &KernelTarget, answer: Answer) -> NtStatus {
        let routine = ROUTINES.for_answer(answer);
        // TmPrePrepareComplete / TmPrepareComplete / TmCommitComplete / TmRollbackComplete /
        // TmReadOnlyEnlistment / TmSinglePhaseReject / TmRollbackEnlistment
        //   (PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock /*NULL*/): PASSIVE_LEVEL.
        // Pointer-based: no handle access check, works from KTM's callback thread. Another
        // notification may be delivered from inside this call; the engine holds no lock here.
        // SAFETY: `target.0` is the enlistment KTM passed to the callback still running, or one
        // a worker's job holds a reference to.
        let st = NtStatus(unsafe { routine(target.0, null_mut()) });
        let name = ktm::ROUTINE_NAMES.for_answer(answer);
        if st.is_success() {
            trace!(Level::Verbose, "{}: {}", name, st);
        } else {
            trace!(Level::Error, "{}: {}", name, st);
        }
        st
    }

    fn create_transaction(
        &self,
        caller: &KernelCaller,
        timeout_ms: u32,
        description: &[u8],
    ) -> Result<u64, NtStatus> {
        ktm::begin_allowed(caller.requestor_mode)?;
        let mut text = ktm::Description::from_request(description)?;
        let (len, max) = text.byte_lengths();
        let mut desc = UNICODE_STRING {
            Length: len,
            MaximumLength: max,
            Buffer: text.as_mut_ptr(),
        };
        let desc_ptr: PUNICODE_STRING = if text.is_empty() {
            null_mut()
        } else {
            &mut desc
        };
        let relative = ktm::relative_timeout(timeout_ms);
        let mut timeout = LARGE_INTEGER {
            QuadPart: relative.unwrap_or(0),
        };
        let timeout_ptr: PLARGE_INTEGER = if relative.is_some() {
            &mut timeout
        } else {
            null_mut()
        };
        // ZwCreateTransaction's page: a caller "not running in a system thread context ... must
        // set the OBJ_KERNEL_HANDLE attribute". So the transaction is created with a kernel
        // handle, referenced, and the caller's handle is opened from the object with UserMode
        // (in the requesting process's table, access checked against its token); the kernel
        // handle and the reference go at once, and the caller owns the transaction.
        let mut oa = object_attributes(null_mut(), obj::KERNEL_HANDLE, null_mut());
        let mut kernel: HANDLE = null_mut();
        // ZwCreateTransaction(PHANDLE TransactionHandle, ACCESS_MASK DesiredAccess,
        //   POBJECT_ATTRIBUTES ObjectAttributes, LPGUID Uow /*NULL: KTM makes one*/,
        //   HANDLE TmHandle /*NULL*/, ULONG CreateOptions, ULONG IsolationLevel /*0*/,
        //   ULONG IsolationFlags /*0*/, PLARGE_INTEGER Timeout /*NULL or relative*/,
        //   PUNICODE_STRING Description /*optional*/): PASSIVE_LEVEL. No TM: KTM binds the
        //   transaction when the first RM enlists (docs/ktm.md §0). CreateOptions never includes
        //   TRANSACTION_DO_NOT_PROMOTE.
        // SAFETY: every pointer is to a local that outlives the call.
        let st = NtStatus(unsafe {
            ZwCreateTransaction(
                &mut kernel,
                access::TRANSACTION_ALL_ACCESS,
                &mut oa,
                null_mut(),
                null_mut(),
                ktm::BEGIN_CREATE_OPTIONS,
                0,
                0,
                timeout_ptr,
                desc_ptr,
            )
        });
        if !st.is_success() {
            trace!(Level::Error, "ZwCreateTransaction: {}", st);
            return Err(st);
        }
        let kernel = KernelHandle(kernel);
        let mut object: PVOID = null_mut();
        // ObReferenceObjectByHandle(HANDLE, ACCESS_MASK, POBJECT_TYPE, KPROCESSOR_MODE
        //   KernelMode, PVOID *Object, NULL): PASSIVE_LEVEL; our own kernel handle.
        // SAFETY: `kernel` is open; pointers are to locals.
        let st = NtStatus(unsafe {
            ObReferenceObjectByHandle(
                kernel.0,
                access::TRANSACTION_ALL_ACCESS,
                self.tx_type,
                obj::KERNEL_MODE,
                &mut object,
                null_mut(),
            )
        });
        if !st.is_success() {
            trace!(
                Level::Error,
                "ObReferenceObjectByHandle(new transaction): {}", st
            );
            return Err(st);
        }
        let tx = TxObject(NonNull::new(object).ok_or(NtStatus::UNSUCCESSFUL)?);
        let handle = tx.open_handle(
            0,
            access::TRANSACTION_ALL_ACCESS,
            self.tx_type,
            caller.requestor_mode,
        )?;
        drop(tx);
        drop(kernel);
        let value = ktm::handle_value(handle.addr());
        trace!(
            Level::Info,
            "BEGIN: handle {:#x} in process {} (mode {})",
            value,
            caller.process_id,
            caller.requestor_mode
        );
        Ok(value)
    }

    fn yield_now(&self) {
        // Another thread is inside ZwCreateEnlistment for this transaction: sleep until it
        // signals (or 1 ms, after which the engine simply checks again; a synchronization event
        // wakes one waiter per signal, so a second waiter may need the timeout).
        let _ = enlist_finished().wait_ms(1);
    }

    fn enlist_finished(&self) {
        enlist_finished().signal();
    }
}
