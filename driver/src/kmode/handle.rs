//! The per-handle context in `FileObject->FsContext`, and the one place that walks IRP → current
//! stack location → FileObject → FsContext. The dispatch routines get a [`HandleFile`] from
//! [`HandleFile::of`] (whose contract carries the whole safety argument) and use its safe
//! methods; none of them dereferences the chain itself.

use super::sys::current_stack;
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::ptr::{NonNull, null_mut};
use wdk_sys::{FILE_OBJECT, IRP};

/// Per open handle (`FileObject->FsContext`): who opened the device.
pub struct OpenContext {
    /// The process that opened the handle (IRP_MJ_CREATE's requestor).
    pub opener_process_id: usize,
}

/// The file object of an IRP that one of this driver's dispatch routines owns, borrowed for
/// as long as the routine borrows the IRP (`'irp`: until it completes it).
///
/// Invariant (established by [`HandleFile::of`]'s contract, relied on by every method): the file
/// object is the one the I/O manager opened on this driver's device for the IRP, valid until the
/// IRP completes; its `FsContext` belongs to this driver (the device has no file system
/// underneath that could use it) and is either NULL or a pointer from `Box::into_raw` of an
/// [`OpenContext`], set by IRP_MJ_CREATE and taken back only by IRP_MJ_CLOSE, which the I/O
/// manager sends once, after every other IRP on the file object has completed. Dispatch routines
/// for one file object never race on `FsContext`: CREATE runs before any other IRP can name the
/// file object and CLOSE after the last.
pub struct HandleFile<'irp> {
    file: NonNull<FILE_OBJECT>,
    _irp: PhantomData<&'irp IRP>,
}

impl<'irp> HandleFile<'irp> {
    /// The file object of `irp`'s current stack location; `None` when it has none.
    ///
    /// # Safety
    /// `irp` was given to a dispatch routine of this driver (IRP_MJ_CREATE, CLOSE, CLEANUP or
    /// DEVICE_CONTROL of its device), which has not completed it and does not complete it while
    /// the returned value is alive.
    pub unsafe fn of(irp: *mut IRP) -> Option<HandleFile<'irp>> {
        // SAFETY: the caller's contract is current_stack's.
        let sl = unsafe { current_stack(irp) };
        // SAFETY: `sl` is the live IRP's current stack location.
        let file = unsafe { (*sl).FileObject };
        Some(HandleFile {
            file: NonNull::new(file)?,
            _irp: PhantomData,
        })
    }

    /// `FileObject->FileName.Length`: bytes of name after the device's own (IRP_MJ_CREATE).
    pub fn name_bytes(&self) -> u16 {
        // SAFETY: the type's invariant: the file object is valid while `self` lives.
        unsafe { (*self.file.as_ptr()).FileName.Length }
    }

    /// The handle's context, when IRP_MJ_CREATE stored one.
    pub fn context(&self) -> Option<&OpenContext> {
        // SAFETY: the type's invariant: the file object is valid while `self` lives.
        let context = unsafe { (*self.file.as_ptr()).FsContext }.cast::<OpenContext>();
        // SAFETY: the type's invariant: NULL or a live Box<OpenContext> that only CLOSE frees,
        // and CLOSE cannot run while this IRP holds the file object.
        unsafe { context.as_ref() }
    }

    /// Stores `context` for IRP_MJ_CREATE; it lives until [`HandleFile::take_context`].
    pub fn set_context(&self, context: Box<OpenContext>) {
        // SAFETY: the type's invariant: the file object is valid and its FsContext is this
        // driver's; CREATE is the first IRP on it, so nothing is stored there yet.
        unsafe { (*self.file.as_ptr()).FsContext = Box::into_raw(context).cast() };
    }

    /// Takes the context back for IRP_MJ_CLOSE (the file object's last IRP), leaving NULL.
    pub fn take_context(&self) -> Option<Box<OpenContext>> {
        // SAFETY: the type's invariant: the file object is valid and its FsContext is this
        // driver's.
        let slot = unsafe { &mut (*self.file.as_ptr()).FsContext };
        let context = core::mem::replace(slot, null_mut()).cast::<OpenContext>();
        // SAFETY: the type's invariant: NULL or from Box::into_raw in `set_context`; the slot is
        // NULL now, so the box is taken exactly once.
        NonNull::new(context).map(|c| unsafe { Box::from_raw(c.as_ptr()) })
    }
}
