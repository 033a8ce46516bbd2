//! The engine's state lock in the kernel: a `KGUARDED_MUTEX` behind `ktmrm_core::StateLock`.
//!
//! Why a guarded mutex:
//! - Callers are at PASSIVE_LEVEL (IOCTL dispatch, KTM callbacks), and the engine allocates and
//!   frees pool inside its critical sections. A spin lock would raise to DISPATCH_LEVEL for the
//!   whole section, which is legal for non-paged `ExAllocatePool2`/`ExFreePool` but needlessly
//!   blocks the processor and forbids anything pageable; a guarded mutex waits instead of spinning.
//! - Acquire/release are <= APC_LEVEL and the holder runs in a guarded region (on Windows 8 and
//!   later at APC_LEVEL, as guarded and fast mutexes are the same there): pool allocation (<=
//!   DISPATCH_LEVEL) and `DbgPrint` remain legal inside; KTM routines (PASSIVE_LEVEL) are not, and
//!   the engine never calls the port while it holds the lock (crates/core/src/port.rs).
//! - The engine never re-enters the lock on one thread (it releases it before every port call,
//!   and KTM callbacks that arrive inside a port call therefore find it free), so the mutex's
//!   non-recursiveness is never hit.
//! - An `ERESOURCE` would also work (inside `KeEnterCriticalRegion`), but needs
//!   `ExDeleteResourceLite` before its memory is freed and offers shared mode the engine does not
//!   use.
//!
//! The `KGUARDED_MUTEX` holds a wait list that points at itself once initialised, so it must not
//! move: it lives in a non-paged pool block (through the global allocator, `kmode::pool`),
//! initialised in place. The protected value shares that block, so the lock itself is one
//! pointer: the engine's state (1.6 KB) is never copied through kernel stack frames after
//! `new`, which matters on a 24 KiB kernel stack.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use ktmrm_core::StateLock;
use ktmrm_proto::NtStatus;
use wdk_sys::KGUARDED_MUTEX;
use wdk_sys::ntddk::{KeAcquireGuardedMutex, KeInitializeGuardedMutex, KeReleaseGuardedMutex};

/// The pool block: the mutex and the value it guards (both changed through shared references,
/// hence the cells).
struct Block<T> {
    mutex: UnsafeCell<KGUARDED_MUTEX>,
    value: UnsafeCell<T>,
}

/// A value behind a kernel guarded mutex, both in one non-paged pool block.
pub struct GuardedLock<T> {
    block: NonNull<Block<T>>,
}

// SAFETY: the mutex serialises every access to `value`, so sharing the lock between threads is
// sound whenever `T` itself may be sent between them. The block is owned by the lock.
unsafe impl<T: Send> Sync for GuardedLock<T> {}
// SAFETY: the lock owns the block; moving it moves ownership (the block stays where it is).
unsafe impl<T: Send> Send for GuardedLock<T> {}

impl<T> GuardedLock<T> {
    /// Allocates the block, moves `value` in and initialises the mutex in place.
    /// `STATUS_INSUFFICIENT_RESOURCES` without pool (the value is dropped). Not inlined: the
    /// block is assembled in this frame, not in the caller's (kernel stack frames stay small).
    #[inline(never)]
    pub fn new(value: T) -> Result<Self, NtStatus> {
        let layout = Layout::new::<Block<T>>();
        if layout.align() > crate::mem::POOL_ALIGNMENT {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // SAFETY: Block<T> has a non-zero size (it holds a KGUARDED_MUTEX); its alignment is
        // within what pool gives (checked above).
        let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<Block<T>>();
        let block = NonNull::new(raw).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let fresh = Block {
            mutex: UnsafeCell::new(KGUARDED_MUTEX::default()),
            value: UnsafeCell::new(value),
        };
        // SAFETY: `block` is an exclusive, suitably aligned allocation for a Block<T>.
        unsafe { block.as_ptr().write(fresh) };
        let lock = GuardedLock { block };
        // KeInitializeGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL (DriverEntry is at
        // PASSIVE_LEVEL). Initialises the caller-owned, non-paged structure in place, where it
        // stays; no reference or handle is created, and no routine is needed to delete it.
        // SAFETY: the mutex is in the block just written, which nothing else references yet.
        unsafe { KeInitializeGuardedMutex(lock.block().mutex.get()) };
        Ok(lock)
    }

    fn block(&self) -> &Block<T> {
        // SAFETY: the block was written in `new` and lives, unmoved, until `drop`.
        unsafe { self.block.as_ref() }
    }

    /// The value, without the mutex: `&mut self` proves no other reference exists. For work
    /// that must run at PASSIVE_LEVEL (file I/O) before the lock is shared.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` is exclusive, so no `with` runs and no other reference exists.
        unsafe { &mut *self.block().value.get() }
    }
}

impl<T> Drop for GuardedLock<T> {
    fn drop(&mut self) {
        // `&mut self`: nobody holds the mutex, so the block (value included) can go.
        // SAFETY: the block holds the Block<T> `new` wrote; it is dropped exactly once, here.
        unsafe { core::ptr::drop_in_place(self.block.as_ptr()) };
        // SAFETY: the block was allocated in `new` with this layout by the global allocator and
        // is freed exactly once, here, after its contents were dropped.
        unsafe { alloc::alloc::dealloc(self.block.as_ptr().cast(), Layout::new::<Block<T>>()) };
    }
}

/// Releases the mutex when the critical section ends.
struct Held(*mut KGUARDED_MUTEX);

impl Drop for Held {
    fn drop(&mut self) {
        // KeReleaseGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL, by the thread that
        // acquired it; leaves the guarded region.
        // SAFETY: this thread acquired the mutex in `with` and releases it exactly once.
        unsafe { KeReleaseGuardedMutex(self.0) };
    }
}

impl<T: Send> StateLock<T> for GuardedLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // KeAcquireGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL; waits (does not spin)
        // and enters a guarded region. Every caller of the engine runs at PASSIVE_LEVEL.
        let mutex = self.block().mutex.get();
        // SAFETY: the mutex was initialised in `new` and lives as long as `self`.
        unsafe { KeAcquireGuardedMutex(mutex) };
        let _held = Held(mutex);
        // SAFETY: holding the mutex makes this the only live reference to the value until `_held`
        // releases it after `f` returns.
        f(unsafe { &mut *self.block().value.get() })
    }
}
