//! Work the KTM callback hands to a system worker thread (`crate::callback` decides what): a
//! notification whose log I/O the callback's thread is unfit for, and every checkpoint.
//!
//! A queued job holds, until its worker is done: rundown protection (so `DriverUnload`'s
//! rundown wait outlasts it and the context it uses), a reference on the enlistment object it
//! answers (the callback's `PKENLISTMENT` is only promised for the callback), and its
//! `IO_WORKITEM`. The image itself stays mapped while the routine runs because the work item
//! was queued with `IoQueueWorkItem` on the driver's device: the I/O manager keeps the device
//! object (and so the driver) referenced until the routine returns, which is why drivers use
//! it rather than `ExQueueWorkItem` (learn.microsoft.com/windows-hardware/drivers/ddi/wdm/
//! ns-wdm-_work_queue_item, Remarks). The routine runs at PASSIVE_LEVEL in a system thread
//! (nc-wdm-io_workitem_routine), with APCs enabled and a stack of its own.
//!
//! A COMMIT must never lack a work item: after the yes vote it cannot be refused, and when the
//! callback's thread is unfit for the log's I/O the only other answer is to withhold it until a
//! restart. So in durable mode each enlistment gets a [`Spare`] when it is made (failing that,
//! the request that enlists fails with `STATUS_INSUFFICIENT_RESOURCES`), kept with the
//! enlistment by the engine and used by its COMMIT.
//!
//! At most one checkpoint is queued or running at a time (`crate::callback::CheckpointSlot`):
//! every commit past the threshold asks for one until it resets the count.

use super::port::KernelTarget;
use super::{Driver, RundownGuard};
use crate::callback;
use crate::mem::try_box;
use crate::trace::Level;
use alloc::boxed::Box;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::ptr::null_mut;
use ktmrm_core::{EnlistmentKey, Notification};
use ktmrm_proto::NtStatus;
use wdk_sys::ntddk::{
    IoAllocateWorkItem, IoFreeWorkItem, IoGetStackLimits, IoQueueWorkItem, KeAreAllApcsDisabled,
    ObDereferenceObjectDeferDelete, ObfReferenceObject,
};
use wdk_sys::{_WORK_QUEUE_TYPE, PDEVICE_OBJECT, PIO_WORKITEM, PKENLISTMENT, PVOID, ULONG_PTR};

/// The callback's thread, as `crate::callback` needs it.
pub fn thread(durable: bool) -> callback::Thread {
    // KeAreAllApcsDisabled() -> BOOLEAN: IRQL <= DISPATCH_LEVEL (the callback runs at
    // PASSIVE_LEVEL). TRUE inside a guarded region or at IRQL >= APC_LEVEL (a critical region,
    // which the callback is in, leaves special kernel APCs on).
    // SAFETY: no arguments or preconditions.
    let all_apcs_disabled = unsafe { KeAreAllApcsDisabled() } != 0;
    callback::Thread {
        durable,
        all_apcs_disabled,
        stack_remaining: stack_remaining(),
    }
}

/// `IoGetRemainingStackSize()`, a wdm.h inline: the address of a local less the stack's low
/// limit from `IoGetStackLimits`.
#[inline(never)]
fn stack_remaining() -> usize {
    let mut low: ULONG_PTR = 0;
    let mut high: ULONG_PTR = 0;
    // IoGetStackLimits(PULONG_PTR LowLimit, PULONG_PTR HighLimit): any IRQL (Windows Server 2003
    // SP1 and later, the page's Remarks). The current thread's stack bounds.
    // SAFETY: pointers to locals.
    unsafe { IoGetStackLimits(&mut low, &mut high) };
    let here = (&raw const low).addr();
    here.saturating_sub(usize::try_from(low).unwrap_or(usize::MAX))
}

/// What a worker does.
enum Work {
    /// `Engine::notify` for `key`, answering on `enlistment` (referenced by the job).
    Notify {
        key: EnlistmentKey,
        notification: Notification,
        enlistment: PKENLISTMENT,
    },
    /// `Engine::checkpoint`.
    Checkpoint,
}

/// A queued job: freed by its worker.
struct Job {
    driver: *const Driver,
    item: PIO_WORKITEM,
    work: Work,
    /// Released last, after the job is freed (see `run`).
    rundown: RundownGuard,
}

/// A work item and the block for its job, allocated ahead of need; freed (work item and block)
/// if it is never queued.
pub struct Spare {
    item: PIO_WORKITEM,
    block: Box<MaybeUninit<Job>>,
}

impl Spare {
    /// Allocates both parts on `device` (the control device).
    pub fn new(device: PDEVICE_OBJECT) -> Result<Spare, NtStatus> {
        let block = try_box(MaybeUninit::<Job>::uninit())?;
        // IoAllocateWorkItem(PDEVICE_OBJECT DeviceObject) -> PIO_WORKITEM: IRQL <=
        // DISPATCH_LEVEL; NULL without resources. "If the caller will later pass the work item
        // to IoQueueWorkItem, DeviceObject must point to a device object": the control device,
        // which exists before the callback is enabled and is deleted after every spare is
        // freed (with the context) and after the rundown wait. Freed with IoFreeWorkItem.
        // SAFETY: `device` is the driver's device object, alive while the driver runs.
        let item = unsafe { IoAllocateWorkItem(device) };
        if item.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(Spare { item, block })
    }

    /// Its parts, for queueing: the queued job owns them from then on, so its Drop does not run.
    fn into_parts(self) -> (PIO_WORKITEM, Box<MaybeUninit<Job>>) {
        let spare = ManuallyDrop::new(self);
        // SAFETY: `spare` is never dropped or used again, so the block is moved out of it
        // exactly once.
        let block = unsafe { core::ptr::read(&spare.block) };
        (spare.item, block)
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // IoFreeWorkItem(PIO_WORKITEM IoWorkItem): IRQL <= DISPATCH_LEVEL; never queued (a
        // queued spare went through `into_parts`). The block is freed after this.
        // SAFETY: `item` came from IoAllocateWorkItem in `new` and is freed once, here.
        unsafe { IoFreeWorkItem(self.item) };
    }
}

/// Hands `notification` for `key` to a worker, which answers it on `enlistment`; the callback
/// then returns STATUS_PENDING. A COMMIT uses the spare its enlistment holds, so it does not
/// depend on pool; other notifications allocate. `Err` when no work item could be had
/// (`crate::callback`'s fallback applies): unload has begun, or pool ran out.
pub fn defer(
    driver: &Driver,
    key: EnlistmentKey,
    notification: Notification,
    enlistment: PKENLISTMENT,
) -> Result<(), NtStatus> {
    let spare = if notification == Notification::Commit {
        driver
            .engine
            .with_enlistment(key, |e| e.take_spare())
            .flatten()
    } else {
        None
    };
    queue(
        driver,
        spare,
        Work::Notify {
            key,
            notification,
            enlistment,
        },
    )
}

/// Queues a checkpoint unless one is queued or running already. Failing to (no pool, or unload
/// has begun) loses nothing: the next commit past the threshold asks again, and unload writes
/// one.
pub fn queue_checkpoint(driver: &Driver) {
    if !driver.checkpoint.claim() {
        return;
    }
    if let Err(st) = queue(driver, None, Work::Checkpoint) {
        driver.checkpoint.release();
        trace!(Level::Warn, "checkpoint not queued: {}", st);
    }
}

/// Queues `work` on `spare`, or on a work item allocated now.
fn queue(driver: &Driver, spare: Option<Spare>, work: Work) -> Result<(), NtStatus> {
    // One more hold on the rundown for the worker; FALSE once unload's wait has begun.
    let rundown = RundownGuard::enter().ok_or(NtStatus::DEVICE_NOT_READY)?;
    let spare = match spare {
        Some(spare) => spare,
        None => Spare::new(driver.port.device)?,
    };
    let (item, block) = spare.into_parts();
    let enlistment = match &work {
        Work::Notify { enlistment, .. } => *enlistment,
        Work::Checkpoint => null_mut(),
    };
    let job = Box::write(
        block,
        Job {
            driver,
            item,
            work,
            rundown,
        },
    );
    if !enlistment.is_null() {
        // ObReferenceObject(PVOID Object) (the wdm.h macro for ObfReferenceObject) -> LONG_PTR:
        // IRQL <= DISPATCH_LEVEL. Keeps the enlistment object for the worker's Tm* answer;
        // released with ObDereferenceObjectDeferDelete once it answered.
        // SAFETY: `enlistment` is the callback's enlistment object, valid during the callback.
        unsafe { ObfReferenceObject(enlistment.cast()) };
    }
    // IoQueueWorkItem(PIO_WORKITEM IoWorkItem, PIO_WORKITEM_ROUTINE WorkerRoutine,
    //   WORK_QUEUE_TYPE QueueType, PVOID Context): IRQL <= DISPATCH_LEVEL. "Drivers must specify
    //   DelayedWorkQueue." The job is the worker's from here.
    // SAFETY: `item` is allocated and not queued; `run` matches IO_WORKITEM_ROUTINE; the job
    // stays allocated until `run` frees it.
    unsafe {
        IoQueueWorkItem(
            item,
            Some(run),
            _WORK_QUEUE_TYPE::DelayedWorkQueue,
            Box::into_raw(job).cast(),
        )
    };
    Ok(())
}

/// `IO_WORKITEM_ROUTINE`: `VOID WorkItem(PDEVICE_OBJECT DeviceObject, PVOID Context)`, at
/// PASSIVE_LEVEL in a system thread.
unsafe extern "C" fn run(_device: PDEVICE_OBJECT, context: PVOID) {
    // The job's block is freed at the end of this statement; its parts live on.
    let Job {
        driver,
        item,
        work,
        rundown,
    } = {
        // SAFETY: `context` is the Box<Job> that `queue` gave up to IoQueueWorkItem; each work
        // item runs once.
        *unsafe { Box::from_raw(context.cast::<Job>()) }
    };
    // SAFETY: the context is freed only after the rundown wait, and the job holds rundown.
    let driver = unsafe { &*driver };
    match work {
        Work::Notify {
            key,
            notification,
            enlistment,
        } => {
            let st =
                driver
                    .engine
                    .notify(&driver.port, key, notification, &KernelTarget(enlistment));
            if !st.is_success() {
                trace!(
                    Level::Error,
                    "deferred notification {:?} for key {}: {}", notification, key.0, st
                );
            }
            // ObDereferenceObjectDeferDelete(PVOID Object): IRQL <= DISPATCH_LEVEL; the page asks
            // for it to dereference KTM objects.
            // SAFETY: the reference `queue` took, released once.
            unsafe { ObDereferenceObjectDeferDelete(enlistment.cast()) };
            let logged = driver.engine.durability().bytes_since_checkpoint;
            if callback::checkpoint_due(notification, logged) && driver.checkpoint.claim() {
                checkpoint(driver);
                driver.checkpoint.release();
            }
        }
        Work::Checkpoint => {
            checkpoint(driver);
            driver.checkpoint.release();
        }
    }
    // IoFreeWorkItem(PIO_WORKITEM IoWorkItem): IRQL <= DISPATCH_LEVEL. "IoFreeWorkItem can be
    // called from within the WorkItem ... routine": the system dequeues the item before it runs
    // the routine.
    // SAFETY: `item` is this job's work item, dequeued, freed once.
    unsafe { IoFreeWorkItem(item) };
    // Last: once released, unload may free the context and delete the device.
    drop(rundown);
}

/// Writes a checkpoint (PASSIVE_LEVEL, special kernel APCs enabled: a worker, or unload).
pub fn checkpoint(driver: &Driver) {
    if let Err(e) = driver.engine.checkpoint()
        && e != NtStatus::TM_VOLATILE
    {
        trace!(Level::Error, "checkpoint: {}", e);
    }
}
