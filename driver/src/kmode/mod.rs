//! The kernel-mode shell: `DriverEntry`, the IRP dispatch routines, the KTM notification callback
//! and `DriverUnload`. Windows only, not built for unit tests. Everything that is a decision
//! rather than a kernel call lives in the portable modules (`crate::irp`, `crate::ktm`,
//! `crate::teardown`, ...); this file only moves values between them and the kernel.
//!
//! IRQL: every routine here is entered at PASSIVE_LEVEL (DriverEntry, DriverUnload, top-level
//! IRP_MJ_CREATE/CLOSE/CLEANUP/DEVICE_CONTROL dispatch, and KTM's ResourceManagerNotification
//! callback, per their DDI pages), which every KTM routine requires.
//!
//! Notifications: the driver registers a callback with `TmEnableCallbacks` rather than running a
//! thread on `ZwGetNotificationResourceManager`. The DDI pages say the callback enables
//! "asynchronous notifications" delivered at PASSIVE_LEVEL with the `PKENLISTMENT` in hand, so
//! the driver answers with the pointer-based `Tm*` routines and needs no handle lookup, no system
//! thread to create, wake and stop at unload, and no buffer sizing (`STATUS_BUFFER_TOO_SMALL`
//! loops). The engine answers a notification before `notify` returns, or returns
//! STATUS_PENDING when the answer comes later or from elsewhere (a COMMIT whose record cannot be
//! forced, redelivered by KTM after a restart; a phase that unload's ZwRollbackEnlistment
//! answers), as the callback contract allows. The log's file I/O needs special kernel APCs
//! enabled and stack to spare, which the callback is not promised: a durable PREPARE, COMMIT or
//! SINGLE_PHASE_COMMIT arriving on a thread unfit for it, and every checkpoint, run on a work
//! item instead (`crate::callback` decides, `kmode::worker` queues). A notification may arrive before
//! `ZwCreateEnlistment` returns; the engine keys its state by the EnlistmentKey it chose before
//! enlisting, so that is fine (docs/ktm.md §3 Delivery B, §8).

mod file;
mod handle;
mod layout;
mod lock;
mod params;
mod pool;
mod port;
mod sys;
mod worker;

/// Every `alloc` allocation of the driver comes from non-paged pool (see `pool`).
#[global_allocator]
static GLOBAL_ALLOCATOR: pool::PoolAllocator = pool::PoolAllocator;

use crate::callback::{self, CheckpointSlot, Fallback, Route};
use crate::durable::{self, Config};
use crate::irp::{self, Ioctl};
use crate::ktm::{self, access, obj};
use crate::mem::try_box;
use crate::names;
use crate::teardown::{self, Built, Step};
use crate::trace::{self, Level};
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::null_mut;
use file::{EventLock, KernelFile, MaybeLog};
use handle::{HandleFile, OpenContext};
use ktmrm_core::wal::{FileLog, FileLogState};
use ktmrm_core::{Engine, EnlistmentKey, KtmPort, Notification, State};
use ktmrm_proto::{FILE_DEVICE_UNKNOWN, Limits, NtStatus};
use lock::GuardedLock;
use port::{EnlistmentHandle, KernelCaller, KernelPort, KernelTarget};
use sys::{
    WdmlibIoCreateDeviceSecure, complete, current_stack, object_attributes, unicode,
    unicode_borrowed,
};
use wdk_sys::ntddk::{
    ExAcquireRundownProtection, ExInitializeRundownProtection, ExReleaseRundownProtection,
    ExUuidCreate, ExWaitForRundownProtectionRelease, IoCreateSymbolicLink, IoDeleteDevice,
    IoDeleteSymbolicLink, KeEnterCriticalRegion, KeLeaveCriticalRegion, MmGetSystemRoutineAddress,
    ObDereferenceObjectDeferDelete, ObReferenceObjectByHandle, PsGetCurrentProcessId,
    TmEnableCallbacks, ZwClose, ZwCreateResourceManager, ZwCreateTransactionManager,
    ZwOpenResourceManager, ZwOpenTransactionManager, ZwRecoverResourceManager,
    ZwRecoverTransactionManager,
};
use wdk_sys::{
    _KEY_VALUE_INFORMATION_CLASS, DEVICE_OBJECT, DRIVER_OBJECT, EX_RUNDOWN_REF, GUID, HANDLE, IRP,
    NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT, PKENLISTMENT, PKRESOURCEMANAGER, PLARGE_INTEGER,
    POBJECT_TYPE, PVOID, ULONG, UNICODE_STRING,
};

type EngineLock = GuardedLock<State<EnlistmentHandle>>;
type DriverEngine = Engine<KernelPort, EngineLock, MaybeLog>;

/// Everything the driver keeps between calls: one non-paged allocation made in DriverEntry and
/// freed in DriverUnload. The device extension holds a pointer to it (for the dispatch routines),
/// and so does KTM (the RMKey of the callback).
struct Driver {
    engine: DriverEngine,
    port: KernelPort,
    /// The volatile TM's kernel handle (ZwCreateTransactionManager).
    tm: HANDLE,
    /// The RM's kernel handle (ZwCreateResourceManager).
    rm: HANDLE,
    /// Claimed while a checkpoint is queued or running on a worker (`kmode::worker`).
    checkpoint: CheckpointSlot,
}

// ---------------------------------------------------------------------------------------------
// Rundown protection for IOCTLs and callbacks.
//
// A static, not a field of `Driver`: a KTM callback that arrives after the wait in DriverUnload
// must be turned away without touching freed memory, and the image (with this static) stays
// mapped until DriverUnload returns. `.data` of a driver image is non-paged.

struct Rundown(UnsafeCell<EX_RUNDOWN_REF>);

// SAFETY: the EX_RUNDOWN_REF is only ever accessed through the Ex*RundownProtection routines,
// which are designed for concurrent callers.
unsafe impl Sync for Rundown {}

// SAFETY: all-zero is a valid EX_RUNDOWN_REF (Count = 0, which is what
// ExInitializeRundownProtection stores); DriverEntry initialises it again anyway.
static RUNDOWN: Rundown = Rundown(UnsafeCell::new(unsafe { core::mem::zeroed() }));

/// A critical region (normal kernel APCs off) around the time a thread holds rundown protection
/// or the engine's state: a user thread (an IOCTL, or a KTM callback inside a client's commit)
/// could otherwise be suspended while holding it and stall DriverUnload's rundown wait, or the
/// unload's wait for an answer on its way to KTM ("Critical Regions and Guarded Regions",
/// learn.microsoft.com/windows-hardware/drivers/kernel/critical-regions-and-guarded-regions).
/// Special kernel APCs stay enabled, as the Zw* file routines of the durable log need.
struct CriticalRegion;

impl CriticalRegion {
    fn enter() -> CriticalRegion {
        // KeEnterCriticalRegion(): IRQL <= APC_LEVEL; every caller here is at PASSIVE_LEVEL.
        // SAFETY: no preconditions; left exactly once, in Drop, on this thread.
        unsafe { KeEnterCriticalRegion() };
        CriticalRegion
    }
}

impl Drop for CriticalRegion {
    fn drop(&mut self) {
        // KeLeaveCriticalRegion(): IRQL <= APC_LEVEL; pairs with `enter` on this thread.
        // SAFETY: this thread entered the region in `enter`.
        unsafe { KeLeaveCriticalRegion() };
    }
}

/// Held while a callback or IOCTL uses the driver context.
struct RundownGuard;

impl RundownGuard {
    fn enter() -> Option<RundownGuard> {
        // ExAcquireRundownProtection(PEX_RUNDOWN_REF RunRef) -> BOOLEAN: IRQL <= DISPATCH_LEVEL.
        // FALSE once ExWaitForRundownProtectionRelease has started.
        // SAFETY: RUNDOWN is a static initialised in DriverEntry.
        let acquired = unsafe { ExAcquireRundownProtection(RUNDOWN.0.get()) } != 0;
        // Build the guard only when acquired: its Drop releases (`then_some` would build and drop
        // one either way, releasing protection that was never acquired).
        if acquired { Some(RundownGuard) } else { None }
    }
}

impl Drop for RundownGuard {
    fn drop(&mut self) {
        // ExReleaseRundownProtection(PEX_RUNDOWN_REF RunRef): IRQL <= DISPATCH_LEVEL.
        // SAFETY: pairs with the successful acquire in `enter`.
        unsafe { ExReleaseRundownProtection(RUNDOWN.0.get()) };
    }
}

// ---------------------------------------------------------------------------------------------
// DriverEntry

/// The kernel objects DriverEntry creates, released through `crate::teardown`.
struct Objects {
    tm: HANDLE,
    rm: HANDLE,
    rm_object: PKRESOURCEMANAGER,
    context: *mut Driver,
    device: PDEVICE_OBJECT,
}

impl Objects {
    const fn none() -> Self {
        Objects {
            tm: null_mut(),
            rm: null_mut(),
            rm_object: null_mut(),
            context: null_mut(),
            device: null_mut(),
        }
    }
}

fn close_handle(what: &str, handle: HANDLE) {
    // ZwClose(HANDLE Handle): PASSIVE_LEVEL. Closes one of the driver's own kernel handles.
    // SAFETY: `handle` is a kernel handle the driver created and has not closed.
    let st = NtStatus(unsafe { ZwClose(handle) });
    if !st.is_success() {
        trace!(Level::Error, "ZwClose({}): {}", what, st);
    }
}

/// Releases what `built` says exists, in the order `crate::teardown` decides.
///
/// # Safety
/// `objects` holds exactly the objects `built` marks as created, none released yet; for a
/// full teardown no handle to the device is open (DriverUnload).
unsafe fn release(objects: &Objects, built: Built) {
    for step in teardown::steps(built) {
        trace!(Level::Verbose, "teardown: {:?}", step);
        match step {
            Step::DeleteSymlink => {
                let mut link = unicode(names::SYMLINK_NAME);
                // IoDeleteSymbolicLink(PUNICODE_STRING SymbolicLinkName): PASSIVE_LEVEL.
                // SAFETY: `link` is a local UNICODE_STRING over a constant name.
                let st = NtStatus(unsafe { IoDeleteSymbolicLink(&mut link) });
                if !st.is_success() {
                    trace!(Level::Error, "IoDeleteSymbolicLink: {}", st);
                }
            }
            Step::ShutdownEngine => {
                // SAFETY: the context is allocated (`built.context`) and not yet freed.
                let driver = unsafe { &*objects.context };
                driver.engine.shutdown();
            }
            Step::RollbackEnlistments => {
                // SAFETY: the context is allocated (`built.context`) and not yet freed.
                let driver = unsafe { &*objects.context };
                let asked = driver.engine.rollback_unprepared(&driver.port);
                trace!(Level::Info, "unload: {} transaction(s) rolled back", asked);
            }
            Step::WaitForTransactions => {
                // SAFETY: the context is allocated (`built.context`) and not yet freed.
                let driver = unsafe { &*objects.context };
                let mut slices = teardown::UNLOAD_WAIT_SLICES;
                while driver.engine.unfinished() > 0 && slices > 0 {
                    // Wakes as soon as an enlistment closes, else after a slice.
                    let _ = port::enlistment_closed().wait_ms(teardown::UNLOAD_WAIT_SLICE_MS);
                    slices = slices.saturating_sub(1);
                }
                let left = driver.engine.unfinished();
                if left > 0 {
                    trace!(
                        Level::Warn,
                        "unload: {} transaction(s) still unfinished after {} ms; closing the RM \
                         rolls back what KTM has not decided",
                        left,
                        teardown::UNLOAD_WAIT_MS
                    );
                }
            }
            Step::CloseRm => close_handle("resource manager", objects.rm),
            Step::WaitForRundown => {
                // ExWaitForRundownProtectionRelease(PEX_RUNDOWN_REF RunRef): IRQL <= APC_LEVEL.
                // Returns once every callback/IOCTL that got protection has released it; every
                // later ExAcquireRundownProtection fails.
                // SAFETY: RUNDOWN was initialised in DriverEntry.
                unsafe { ExWaitForRundownProtectionRelease(RUNDOWN.0.get()) };
            }
            Step::FreeContext => {
                // A durable engine first writes a checkpoint, so the next start replays little
                // (nothing runs any more: the rundown wait is over). Volatile: STATUS_TM_VOLATILE.
                // SAFETY: the context is allocated and not yet freed.
                worker::checkpoint(unsafe { &*objects.context });
                // Drops the engine: any enlistment handle it still holds is closed (ZwClose),
                // its log file is closed, then the lock's mutex block and the context are freed.
                // SAFETY: the context came from Box::into_raw in DriverEntry; after the rundown
                // wait nothing else uses it, and it is freed exactly once.
                drop(unsafe { Box::from_raw(objects.context) });
            }
            Step::DereferenceRm => {
                // Drops the reference DriverEntry took on the RM object.
                // ObDereferenceObjectDeferDelete(PVOID Object): IRQL <= DISPATCH_LEVEL; the
                // page asks for it "instead of ObDereferenceObject to dereference KTM objects"
                // (deletion on a worker, never inline, so no deadlock with KTM's locks).
                // SAFETY: that reference is held and released exactly once, here.
                unsafe { ObDereferenceObjectDeferDelete(objects.rm_object.cast()) };
            }
            Step::CloseTm => close_handle("transaction manager", objects.tm),
            Step::DeleteDevice => {
                // IoDeleteDevice(PDEVICE_OBJECT DeviceObject): IRQL <= APC_LEVEL. Frees the
                // device object and its extension; no handle to it is open.
                // SAFETY: the device was created in DriverEntry and is deleted exactly once.
                unsafe { IoDeleteDevice(objects.device) };
            }
        }
    }
}

/// Reads `*TmXxxObjectType` through `MmGetSystemRoutineAddress`.
///
/// wdk-sys declares the object types as extern statics, but they are *data* exports of
/// ntoskrnl, which only link through `__imp_` symbols; wdk-sys links ntoskrnl.lib as a plain
/// static library, so a direct reference fails to link (windows-drivers-rs #338, docs/ktm.md §4). The
/// documented way to find an export at run time works for data exports as well and cannot fail
/// to link.
fn object_type(export: &'static [u16]) -> Option<POBJECT_TYPE> {
    let mut name = unicode(export);
    // MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName) -> PVOID: PASSIVE_LEVEL.
    // Returns the address of an ntoskrnl/HAL export, or NULL. For a data export that is the
    // address of the variable, here a `POBJECT_TYPE` (wdm.h: `extern POBJECT_TYPE
    // *TmTransactionObjectType`). Owned by the kernel, valid while the system runs.
    // SAFETY: `name` is a local UNICODE_STRING over a constant name.
    let slot = unsafe { MmGetSystemRoutineAddress(&mut name) }.cast::<POBJECT_TYPE>();
    if slot.is_null() {
        return None;
    }
    // SAFETY: `slot` is the kernel's exported, pointer-aligned POBJECT_TYPE variable, set during
    // boot (KTM initialises before any driver loads) and never changed afterwards.
    let ty = unsafe { slot.read() };
    (!ty.is_null()).then_some(ty)
}

// The bindings' enumerator is the value crate::ktm documents (and its tests pin).
const _: () = assert!(
    _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation as i64
        == ktm::KEY_VALUE_PARTIAL_INFORMATION as i64
);

/// The driver's entry point, called once by the I/O manager at PASSIVE_LEVEL in the System
/// process when the service starts (`sc start KtmRm`).
///
/// # Safety
/// Called only by the I/O manager, with its driver object and registry path.
// SAFETY: `DriverEntry` is the entry symbol wdk-build's `/ENTRY:DriverEntry` names; nothing else
// in the image exports it (unit tests, which link wdk-sys' stub DriverEntry, do not build this
// module).
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    pool::resolve();
    port::enlistment_closed().init();
    port::enlist_finished().init();
    // In pool, not on the stack: two 480-byte paths (see kmode::lock on stack size).
    let config = match try_box(params::read_parameters(registry_path)) {
        Ok(config) => config,
        Err(st) => return st.0,
    };
    trace!(
        Level::Info,
        "DriverEntry (trace level {:?}, {})",
        trace::level(),
        if config.durable {
            "durable"
        } else {
            "volatile"
        }
    );

    // ExInitializeRundownProtection(PEX_RUNDOWN_REF RunRef): IRQL <= APC_LEVEL.
    // SAFETY: nothing uses RUNDOWN yet (no device, no callback).
    unsafe { ExInitializeRundownProtection(RUNDOWN.0.get()) };

    let mut objects = Objects::none();
    let mut built = Built::default();
    match start(driver, &config, &mut objects, &mut built) {
        Ok(()) => {
            trace!(Level::Info, "started: \\Device\\KtmRm, \\DosDevices\\KtmRm");
            NtStatus::SUCCESS.0
        }
        Err(st) => {
            trace!(
                Level::Error,
                "DriverEntry failed: {} (built {:?})", st, built
            );
            // SAFETY: `objects` holds exactly what `built` records; no device handle can be
            // open, since the device (if any) was never returned to the I/O manager as started.
            unsafe { release(&objects, built) };
            st.0
        }
    }
}

/// A portable GUID as the kernel's `GUID` struct.
fn guid(g: durable::Guid) -> GUID {
    GUID {
        Data1: g.data1,
        Data2: g.data2,
        Data3: g.data3,
        Data4: g.data4,
    }
}

/// A kernel call's status as a `Result`, tracing a failure with the call's name.
fn step(what: &str, status: NTSTATUS) -> Result<(), NtStatus> {
    let st = NtStatus(status);
    if st.is_success() {
        Ok(())
    } else {
        trace!(Level::Error, "{}: {}", what, st);
        Err(st)
    }
}

/// DriverEntry's work, recording each created object in `objects`/`built` as it goes so the
/// caller can unwind exactly that on failure. Not inlined, so that DriverEntry's frame and this
/// one are each measured (and kept) under the kernel check's 4 KiB limit.
#[inline(never)]
fn start(
    driver: *mut DRIVER_OBJECT,
    config: &Config,
    objects: &mut Objects,
    built: &mut Built,
) -> Result<(), NtStatus> {
    let tx_type = object_type(names::TX_OBJECT_TYPE_EXPORT).ok_or(NtStatus::UNSUCCESSFUL)?;
    let rm_type = object_type(names::RM_OBJECT_TYPE_EXPORT).ok_or(NtStatus::UNSUCCESSFUL)?;

    // 0. Durable: the engine's state from its log, before KTM can deliver anything.
    let (lock, log) = if config.durable {
        let (lock, log) = open_log(config)?;
        (lock, MaybeLog(Some(log)))
    } else {
        let mut lock = GuardedLock::new(State::new(Limits::default()))?;
        lock.get_mut().trace_phases(Some(trace_phase));
        (lock, MaybeLog(None))
    };

    // 1. A transaction manager of our own (docs/ktm.md §0, §7 step 1): volatile, or durable with
    //    its CLFS log at `TmLogPath`, recovered at once (docs/ktm.md §7 step 4).
    let mut tm_oa = object_attributes(null_mut(), obj::KERNEL_HANDLE, null_mut());
    // A path from the registry is at most 240 units (crate::durable), well within a
    // UNICODE_STRING; `config` outlives the call.
    let mut tm_log = unicode_borrowed(config.tm_log.as_slice());
    let (tm_access, tm_log_ptr, tm_options) = if config.durable {
        (access::TM_ACCESS_DURABLE, &raw mut tm_log, 0)
    } else {
        (
            access::TM_ACCESS,
            null_mut(),
            ktm::TRANSACTION_MANAGER_VOLATILE,
        )
    };
    // ZwCreateTransactionManager(PHANDLE TmHandle, ACCESS_MASK DesiredAccess,
    //   POBJECT_ATTRIBUTES ObjectAttributes, PUNICODE_STRING LogFileName /*NULL: volatile*/,
    //   ULONG CreateOptions, ULONG CommitStrength /*0*/): PASSIVE_LEVEL. The driver owns the
    //   kernel handle until unload (ZwClose).
    // SAFETY: pointers to locals; `tm_log` borrows `config`, alive for the call.
    let mut st = NtStatus(unsafe {
        ZwCreateTransactionManager(
            &mut objects.tm,
            tm_access,
            &mut tm_oa,
            tm_log_ptr,
            tm_options,
            0,
        )
    });
    if durable::open_instead(config.durable, st) {
        trace!(
            Level::Info,
            "durable TM exists (its log is open): opening it"
        );
        // ZwOpenTransactionManager(PHANDLE TmHandle, ACCESS_MASK DesiredAccess,
        //   POBJECT_ATTRIBUTES ObjectAttributes, PUNICODE_STRING LogFileName, LPGUID TmIdentity
        //   /*NULL*/, ULONG OpenOptions /*0*/): PASSIVE_LEVEL. Finds the TM by its log; the
        //   driver owns the kernel handle as it would a created one.
        // SAFETY: pointers to locals; `tm_log` borrows `config`, alive for the call.
        st = NtStatus(unsafe {
            ZwOpenTransactionManager(
                &mut objects.tm,
                tm_access,
                &mut tm_oa,
                tm_log_ptr,
                null_mut(),
                0,
            )
        });
    }
    step("ZwCreateTransactionManager", st.0)?;
    built.tm = true;
    if config.durable {
        // ZwRecoverTransactionManager(HANDLE TransactionManagerHandle): PASSIVE_LEVEL; a durable
        // TM must be recovered after create/open before it is used (docs/ktm.md §1, §2).
        // SAFETY: `objects.tm` is open with TRANSACTIONMANAGER_RECOVER.
        step("ZwRecoverTransactionManager", unsafe {
            ZwRecoverTransactionManager(objects.tm)
        })?;
    }

    // 2. A resource manager on it: volatile with a fresh GUID, or durable with the fixed GUID
    //    KTM finds its prepared enlistments by after a restart (docs/ktm.md §7 steps 2, 4).
    let mut rm_guid = GUID::default();
    if config.durable {
        rm_guid = guid(durable::RM_GUID);
    } else {
        // ExUuidCreate(UUID *Uuid): PASSIVE_LEVEL. Fills the caller's GUID.
        // SAFETY: `rm_guid` is a local GUID.
        step("ExUuidCreate", unsafe { ExUuidCreate(&mut rm_guid) })?;
    }
    let mut rm_oa = object_attributes(null_mut(), obj::KERNEL_HANDLE, null_mut());
    let mut rm_text =
        ktm::Description::from_units(names::RM_DESCRIPTION).ok_or(NtStatus::UNSUCCESSFUL)?;
    let (len, max) = rm_text.byte_lengths();
    let mut rm_desc = UNICODE_STRING {
        Length: len,
        MaximumLength: max,
        Buffer: rm_text.as_mut_ptr(),
    };
    let (rm_access, rm_options) = if config.durable {
        (access::RM_ACCESS_DURABLE, 0)
    } else {
        (access::RM_ACCESS, ktm::RESOURCE_MANAGER_VOLATILE)
    };
    // ZwCreateResourceManager(PHANDLE ResourceManagerHandle, ACCESS_MASK DesiredAccess,
    //   HANDLE TmHandle, LPGUID ResourceManagerGuid, POBJECT_ATTRIBUTES ObjectAttributes,
    //   ULONG CreateOptions, PUNICODE_STRING Description /*optional*/): PASSIVE_LEVEL. The driver
    //   owns the kernel handle; closing it at unload makes KTM roll back every transaction the
    //   RM is still enlisted in and has not prepared.
    // SAFETY: pointers to locals; `objects.tm` is open.
    let mut st = NtStatus(unsafe {
        ZwCreateResourceManager(
            &mut objects.rm,
            rm_access,
            objects.tm,
            &mut rm_guid,
            &mut rm_oa,
            rm_options,
            &mut rm_desc,
        )
    });
    if durable::open_instead(config.durable, st) {
        trace!(Level::Info, "durable RM rebuilt by TM recovery: opening it");
        // ZwOpenResourceManager(PHANDLE ResourceManagerHandle, ACCESS_MASK DesiredAccess,
        //   HANDLE TmHandle, LPGUID ResourceManagerGuid, POBJECT_ATTRIBUTES ObjectAttributes):
        //   PASSIVE_LEVEL. The RM object TM recovery rebuilt for our fixed GUID; the driver owns
        //   the kernel handle as it would a created one, and recovers it below.
        // SAFETY: pointers to locals; `objects.tm` is open.
        st = NtStatus(unsafe {
            ZwOpenResourceManager(
                &mut objects.rm,
                rm_access,
                objects.tm,
                &mut rm_guid,
                &mut rm_oa,
            )
        });
    }
    step("ZwCreateResourceManager", st.0)?;
    built.rm = true;

    // 3. The RM object pointer, for TmEnableCallbacks.
    let mut rm_object: PVOID = null_mut();
    // ObReferenceObjectByHandle(HANDLE, ACCESS_MASK, POBJECT_TYPE, KPROCESSOR_MODE, PVOID *Object,
    //   POBJECT_HANDLE_INFORMATION /*NULL*/): PASSIVE_LEVEL. KernelMode: our own kernel handle.
    //   The driver owns the reference until unload (ObDereferenceObject).
    // SAFETY: pointers to locals; `objects.rm` is open; `rm_type` is the RM object type.
    step("ObReferenceObjectByHandle(RM)", unsafe {
        ObReferenceObjectByHandle(
            objects.rm,
            access::RESOURCEMANAGER_ENLIST,
            rm_type,
            obj::KERNEL_MODE,
            &mut rm_object,
            null_mut(),
        )
    })?;
    objects.rm_object = rm_object.cast();
    built.rm_object = true;

    // 4. The control device, secured by SDDL (SYSTEM and Administrators only). Before the
    //    callback is enabled: a notification may have to be finished on a work item, which
    //    IoAllocateWorkItem ties to a device object (kmode::worker). No request reaches it before
    //    DriverEntry returns (the I/O manager clears DO_DEVICE_INITIALIZING then), and none is
    //    served before the context below is in its extension.
    let mut device_name = unicode(names::DEVICE_NAME);
    let sddl = unicode(names::DEVICE_SDDL);
    let class = guid(durable::DEVICE_CLASS_GUID);
    // WdmlibIoCreateDeviceSecure (kmode::sys has its prototype): PASSIVE_LEVEL. Creates a named
    // device object owned by the driver object (deleted with IoDeleteDevice at unload), with a
    // zeroed extension of the requested size. FILE_DEVICE_SECURE_OPEN applies the DACL to opens
    // of names below the device too. Not exclusive: several handles may be open.
    // SAFETY: `driver` is DriverEntry's driver object; other pointers are locals.
    step("IoCreateDeviceSecure", unsafe {
        WdmlibIoCreateDeviceSecure(
            driver,
            size_of::<*mut Driver>() as ULONG,
            &mut device_name,
            FILE_DEVICE_UNKNOWN,
            irp::FILE_DEVICE_SECURE_OPEN,
            0,
            &sddl,
            &class,
            &mut objects.device,
        )
    })?;
    built.device = true;

    // 5. The context: engine, state and lock, all fallible allocations.
    let context = try_box(Driver {
        engine: Engine::with_log(lock, log),
        port: KernelPort {
            rm: objects.rm,
            rm_object: objects.rm_object,
            tx_type,
            device: objects.device,
            durable: config.durable,
        },
        tm: objects.tm,
        rm: objects.rm,
        checkpoint: CheckpointSlot::new(),
    })?;
    objects.context = Box::into_raw(context);
    built.context = true;

    // The dispatch routines find the context in the device extension.
    // SAFETY: the device was just created with an extension of pointer size.
    let extension = unsafe { (*objects.device).DeviceExtension }.cast::<*mut Driver>();
    // SAFETY: the extension is zeroed, pointer-sized and suitably aligned (pool alignment).
    unsafe { extension.write(objects.context) };

    // 6. Notifications by callback (see the module docs for why not a notification thread).
    // TmEnableCallbacks(PKRESOURCEMANAGER ResourceManager, PTM_RM_NOTIFICATION CallbackRoutine,
    //   PVOID RMKey): PASSIVE_LEVEL; one callback per RM. RMKey is the context, which outlives
    //   every callback (rundown-protected, freed after the RM is closed).
    // SAFETY: `rm_object` is referenced; `rm_notify` matches PTM_RM_NOTIFICATION.
    step("TmEnableCallbacks", unsafe {
        TmEnableCallbacks(
            objects.rm_object,
            Some(rm_notify),
            objects.context.cast::<c_void>(),
        )
    })?;
    built.callbacks = true;
    if config.durable {
        // ZwRecoverResourceManager(HANDLE ResourceManagerHandle): PASSIVE_LEVEL. Queues RECOVER
        // for each of this RM's enlistments KTM logged, then LAST_RECOVER, to the callback
        // (docs/ktm.md §2, §7 step 4). Until LAST_RECOVER the engine refuses requests with
        // STATUS_DEVICE_NOT_READY, so the device may take requests before recovery ends.
        // SAFETY: `objects.rm` is open with RESOURCEMANAGER_RECOVER; callbacks are enabled.
        step("ZwRecoverResourceManager", unsafe {
            ZwRecoverResourceManager(objects.rm)
        })?;
    }

    // 7. \DosDevices\KtmRm -> \Device\KtmRm, so user mode can open \\.\KtmRm.
    let mut link = unicode(names::SYMLINK_NAME);
    // IoCreateSymbolicLink(PUNICODE_STRING SymbolicLinkName, PUNICODE_STRING DeviceName):
    // PASSIVE_LEVEL. The link lives until IoDeleteSymbolicLink at unload.
    // SAFETY: pointers to locals.
    step("IoCreateSymbolicLink", unsafe {
        IoCreateSymbolicLink(&mut link, &mut device_name)
    })?;
    built.symlink = true;

    // 8. Dispatch table and unload. (The I/O manager clears DO_DEVICE_INITIALIZING for devices
    // created in DriverEntry.)
    // SAFETY: DriverEntry may fill in its own driver object before returning.
    let drv = unsafe { &mut *driver };
    let table: [(u32, DispatchFn); 4] = [
        (irp::IRP_MJ_CREATE, on_create),
        (irp::IRP_MJ_CLOSE, on_close),
        (irp::IRP_MJ_CLEANUP, on_cleanup),
        (irp::IRP_MJ_DEVICE_CONTROL, on_device_control),
    ];
    for (major, routine) in table {
        let slot = usize::try_from(major)
            .ok()
            .and_then(|m| drv.MajorFunction.get_mut(m))
            .ok_or(NtStatus::UNSUCCESSFUL)?;
        *slot = Some(routine);
    }
    drv.DriverUnload = Some(on_unload);
    Ok(())
}

/// Opens the engine's log in `config.log_directory` (creating the directory) and rebuilds the
/// state from it. A log that cannot be replayed stops the driver: its status (for example
/// STATUS_LOG_CORRUPTION_DETECTED) is DriverEntry's, and the trace says why. State and log go
/// to pool as soon as they exist.
fn open_log(config: &Config) -> Result<(EngineLock, Box<file::DriverLog>), NtStatus> {
    let log = open_log_file(config)?;
    Ok((recover_state(&log)?, log))
}

/// The log file in `config.log_directory`, created with its directory if absent. Its own frame
/// (not inlined): the two paths pass through it on their way to pool.
#[inline(never)]
fn open_log_file(config: &Config) -> Result<Box<file::DriverLog>, NtStatus> {
    let dir = &config.log_directory;
    let paths = try_box(file::LogPaths {
        path: dir
            .join(durable::LOG_FILE)
            .ok_or(NtStatus::INVALID_PARAMETER)?,
        new_path: dir
            .join(durable::LOG_FILE_NEW)
            .ok_or(NtStatus::INVALID_PARAMETER)?,
    })?;
    file::ensure_directory(dir)?;
    let f = KernelFile::open(paths)?;
    try_box(FileLog::open(
        f,
        GuardedLock::new(FileLogState::new())?,
        EventLock::new(())?,
    )?)
}

/// The engine's phase changes, one line each at the verbose level (called under the state lock,
/// at APC_LEVEL at most).
fn trace_phase(tx: ktmrm_core::TxId, from: &'static str, to: &'static str) {
    trace!(
        Level::Verbose,
        "transaction {:02x?}: {} -> {}", tx.0, from, to
    );
}

/// The engine's state replayed from `log` in its lock's pool block, where it stays (the 1.6 KB
/// state never crosses the stack). Outside the mutex, which nobody else can hold yet: replay
/// reads the file, which needs PASSIVE_LEVEL, and a guarded mutex would raise to APC_LEVEL.
fn recover_state(log: &file::DriverLog) -> Result<EngineLock, NtStatus> {
    let mut lock = GuardedLock::new(State::new(Limits::default()))?;
    lock.get_mut().trace_phases(Some(trace_phase));
    match lock.get_mut().recover_into(log) {
        Ok(report) => {
            trace!(
                Level::Info,
                "log replayed: {} entries, {} in doubt, {} records, torn tail {}",
                report.entries,
                report.in_doubt,
                report.records,
                report.dropped_tail.is_some()
            );
            Ok(lock)
        }
        Err(e) => {
            trace!(Level::Error, "log recovery failed: {}", e);
            Err(e.status())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch routines (DRIVER_DISPATCH: PASSIVE_LEVEL for a top-level driver's
// CREATE/CLOSE/CLEANUP/DEVICE_CONTROL, in the requesting thread). All complete synchronously.

type DispatchFn = unsafe extern "C" fn(*mut DEVICE_OBJECT, *mut IRP) -> NTSTATUS;

fn current_process_id() -> usize {
    // PsGetCurrentProcessId() -> HANDLE: any IRQL. The current process's ID (a number, not a
    // handle to close).
    // SAFETY: no arguments or preconditions.
    unsafe { PsGetCurrentProcessId() }.addr()
}

/// IRP_MJ_CREATE: allocate the per-handle context.
unsafe extern "C" fn on_create(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: `irp` was just given to this dispatch routine, which completes it below, after the
    // last use of `file`.
    let status = match unsafe { HandleFile::of(irp) } {
        None => NtStatus::INVALID_PARAMETER,
        Some(file) => match irp::check_open(file.name_bytes()) {
            Err(st) => st,
            Ok(()) => match try_box(OpenContext {
                opener_process_id: current_process_id(),
            }) {
                Ok(context) => {
                    // Freed in IRP_MJ_CLOSE.
                    file.set_context(context);
                    trace!(Level::Verbose, "open by process {}", current_process_id());
                    NtStatus::SUCCESS
                }
                Err(st) => st,
            },
        },
    };
    // SAFETY: completing the IRP this routine owns, once.
    unsafe { complete(irp, status, 0) }
}

/// IRP_MJ_CLEANUP: the last user handle closed. Nothing is queued, so nothing to cancel.
unsafe extern "C" fn on_cleanup(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: completing the IRP this routine owns, once.
    unsafe { complete(irp, NtStatus::SUCCESS, 0) }
}

/// IRP_MJ_CLOSE: the file object's last reference is gone; free its context.
unsafe extern "C" fn on_close(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: `irp` was just given to this dispatch routine, which completes it below, after the
    // last use of the file object.
    if let Some(file) = unsafe { HandleFile::of(irp) } {
        drop(file.take_context());
    }
    // SAFETY: completing the IRP this routine owns, once.
    unsafe { complete(irp, NtStatus::SUCCESS, 0) }
}

/// IRP_MJ_DEVICE_CONTROL: check the IRP (crate::irp), hand the system buffer to the engine,
/// complete with what it answers.
unsafe extern "C" fn on_device_control(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // Entered first, left last (locals drop in reverse order): never suspended holding rundown.
    let _region = CriticalRegion::enter();
    let Some(_guard) = RundownGuard::enter() else {
        // SAFETY: completing the IRP this routine owns, once.
        return unsafe { complete(irp, NtStatus::DEVICE_NOT_READY, 0) };
    };
    // SAFETY: `device` is this driver's device object, alive while it has IRPs.
    let extension = unsafe { (*device).DeviceExtension }.cast::<*const Driver>();
    // SAFETY: DriverEntry stored the context pointer in the (pointer-sized) extension.
    let context = unsafe { extension.read() };
    // SAFETY: the context lives until after the rundown wait, and this routine holds rundown
    // protection.
    let driver = unsafe { &*context };
    // SAFETY: `irp` was just given to this dispatch routine.
    let sl = unsafe { current_stack(irp) };
    // SAFETY: `sl` is the IRP's current stack location; for IRP_MJ_DEVICE_CONTROL the
    // `DeviceIoControl` arm of `Parameters` is the one the I/O manager filled.
    let params = unsafe { &(*sl).Parameters };
    // SAFETY: as above (the active union arm for this major function).
    let dioc = unsafe { &params.DeviceIoControl };
    let (code, in_len, out_len) = (
        dioc.IoControlCode,
        dioc.InputBufferLength,
        dioc.OutputBufferLength,
    );
    // SAFETY: `irp` is live; `AssociatedIrp` is a field of it.
    let associated = unsafe { &(*irp).AssociatedIrp };
    // SAFETY: for METHOD_BUFFERED requests (the only ones Ioctl::check lets through before the
    // value is used) `SystemBuffer` is the active member of the union.
    let system_buffer = unsafe { associated.SystemBuffer }.cast::<u8>();
    let io = match Ioctl::check(code, in_len, out_len, system_buffer.is_null()) {
        Ok(io) => io,
        Err(st) => {
            trace!(Level::Verbose, "IOCTL {:#x} refused: {}", code, st);
            // SAFETY: completing the IRP this routine owns, once.
            return unsafe { complete(irp, st, 0) };
        }
    };
    let buffer: &mut [u8] = if io.buffer_len == 0 {
        &mut []
    } else {
        // SAFETY: METHOD_BUFFERED: the I/O manager allocated `max(in, out)` bytes of non-paged
        // system buffer at `system_buffer` (checked non-null), owned by this IRP until it
        // completes; nothing else accesses it meanwhile.
        unsafe { core::slice::from_raw_parts_mut(system_buffer, io.buffer_len) }
    };
    if let Some(stale) = buffer.get_mut(io.stale_range()) {
        stale.fill(0);
    }
    // SAFETY: `irp` is this routine's, completed below after the last use of the file object.
    let opener_process_id = unsafe { HandleFile::of(irp) }
        .and_then(|file| file.context().map(|c| c.opener_process_id))
        .unwrap_or(0);
    let caller = KernelCaller {
        // SAFETY: `irp` is live.
        requestor_mode: unsafe { (*irp).RequestorMode },
        process_id: current_process_id(),
        opener_process_id,
    };
    let (status, information) = driver.engine.dispatch(
        &driver.port,
        &caller,
        code,
        buffer,
        io.input_len,
        io.output_len,
    );
    let (status_out, info_out) = io.completion(status, information);
    if status_out != status || info_out != information {
        trace!(
            Level::Warn,
            "{}: engine answered {} with {} bytes for a {}-byte output; completing {}",
            io.call.name(),
            status,
            information,
            io.output_len,
            status_out
        );
    }
    trace!(
        Level::Verbose,
        "{} by process {} (opened by {}): {}, {} bytes",
        io.call.name(),
        caller.process_id,
        caller.opener_process_id,
        status_out,
        info_out
    );
    // SAFETY: completing the IRP this routine owns, once.
    unsafe { complete(irp, status_out, info_out) }
}

// ---------------------------------------------------------------------------------------------
// KTM notification callback

/// `PTM_RM_NOTIFICATION` (wdm.h): `NTSTATUS ResourceManagerNotification(PKENLISTMENT
/// EnlistmentObject, PVOID RMContext, PVOID TransactionContext, ULONG TransactionNotification,
/// PLARGE_INTEGER TmVirtualClock, ULONG ArgumentLength, PVOID Argument)`. Called by KTM at
/// PASSIVE_LEVEL on an arbitrary thread, possibly inside a client's commit or inside one of the
/// driver's own `Tm*` calls. The engine answers through the `Tm*` routine before this returns,
/// or this returns STATUS_PENDING: the engine's own (see the module docs), or because a worker
/// will answer (`notify`: a durable notification whose log I/O this thread is unfit for).
unsafe extern "C" fn rm_notify(
    enlistment: PKENLISTMENT,
    rm_context: PVOID,
    transaction_context: PVOID,
    notification: ULONG,
    _tm_virtual_clock: PLARGE_INTEGER,
    argument_length: ULONG,
    argument: PVOID,
) -> NTSTATUS {
    // Entered first, left last: never suspended holding rundown (see CriticalRegion).
    let _region = CriticalRegion::enter();
    let Some(_guard) = RundownGuard::enter() else {
        // Unload has waited out every callback; this one must not touch the freed context.
        trace!(
            Level::Warn,
            "notification {:#x} after unload began", notification
        );
        return NtStatus::RM_NOT_ACTIVE.0;
    };
    // SAFETY: RMContext is the context pointer given to TmEnableCallbacks; it is freed only after
    // the rundown wait, and this callback holds rundown protection.
    let driver = unsafe { &*rm_context.cast::<Driver>() };
    let key = ktm::key_from_context(transaction_context.addr());
    let n = Notification::from_bits(notification);
    trace!(Level::Verbose, "notification {:?} for key {}", n, key.0);
    let st = match n {
        Notification::Recover => {
            let len = usize::try_from(argument_length).unwrap_or(0);
            let arg = if argument.is_null() || len == 0 {
                &[][..]
            } else {
                // SAFETY: KTM passes RECOVER's TRANSACTION_NOTIFICATION_RECOVERY_ARGUMENT at
                // `Argument`, `ArgumentLength` bytes, valid for the callback (docs/ktm.md §3, S19).
                unsafe { core::slice::from_raw_parts(argument.cast::<u8>(), len) }
            };
            // In the callback, always: see Engine::recover (and crate::callback::route).
            match durable::recovery_uow(arg) {
                Some(uow) => driver
                    .engine
                    .recover(&driver.port, uow, &KernelTarget(enlistment)),
                None => NtStatus::INVALID_PARAMETER,
            }
        }
        n => notify(driver, key, n, enlistment),
    };
    if !st.is_success() {
        trace!(
            Level::Error,
            "notification {:?} for key {}: {}", n, key.0, st
        );
    }
    st.0
}

/// Handles `n` in the callback or on a worker, as `crate::callback` decides from what this
/// thread is fit for, and queues the checkpoint that follows it, if one is due (checkpoints
/// always run on a worker: they close, rename and reopen the log file).
fn notify(
    driver: &Driver,
    key: EnlistmentKey,
    n: Notification,
    enlistment: PKENLISTMENT,
) -> NtStatus {
    let thread = worker::thread(driver.port.durable);
    let target = KernelTarget(enlistment);
    let st = match callback::route(n, &thread) {
        Route::Inline => driver.engine.notify(&driver.port, key, n, &target),
        Route::Worker => match worker::defer(driver, key, n, enlistment) {
            // The worker answers, and checkpoints if that is then due.
            Ok(()) => {
                trace!(
                    Level::Info,
                    "notification {:?} for key {} finished on a worker ({:?})", n, key.0, thread
                );
                return NtStatus::PENDING;
            }
            Err(why) => {
                let fallback = callback::without_worker(n, &thread);
                trace!(
                    Level::Warn,
                    "notification {:?} for key {} not deferred ({}): {:?}", n, key.0, why, fallback
                );
                match fallback {
                    Fallback::Inline => driver.engine.notify(&driver.port, key, n, &target),
                    Fallback::Answer(answer) => driver.port.answer(&target, answer),
                    Fallback::Pend => NtStatus::PENDING,
                }
            }
        },
    };
    let logged = driver.engine.durability().bytes_since_checkpoint;
    if driver.port.durable && callback::checkpoint_due(n, logged) {
        worker::queue_checkpoint(driver);
    }
    st
}

// ---------------------------------------------------------------------------------------------
// DriverUnload

/// `DRIVER_UNLOAD`: PASSIVE_LEVEL, in the System process, once no handle to the device is open
/// (`sc stop KtmRm`). Tears down in `crate::teardown`'s order.
unsafe extern "C" fn on_unload(driver: *mut DRIVER_OBJECT) {
    trace!(Level::Info, "DriverUnload");
    // SAFETY: the driver object is ours; DeviceObject heads the list of its devices (just one).
    let device = unsafe { (*driver).DeviceObject };
    if device.is_null() {
        return; // DriverEntry failed before creating the device; it released everything.
    }
    // SAFETY: `device` is the driver's device object, deleted only by `release` below.
    let extension = unsafe { (*device).DeviceExtension }.cast::<*mut Driver>();
    // SAFETY: DriverEntry stored the context pointer in the (pointer-sized) extension.
    let context = unsafe { extension.read() };
    if context.is_null() {
        return;
    }
    // SAFETY: the context is alive until the FreeContext step.
    let ctx = unsafe { &*context };
    let (tm, rm, rm_object) = (ctx.tm, ctx.rm, ctx.port.rm_object);
    let objects = Objects {
        tm,
        rm,
        rm_object,
        context,
        device,
    };
    // SAFETY: DriverEntry succeeded, so every object exists; no handle to the device is open.
    unsafe { release(&objects, Built::ALL) };
}
