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
//! move: it lives in its own non-paged pool block (through the global allocator, which is
//! `ExAllocatePool2(POOL_FLAG_NON_PAGED)`), initialised in place, while the protected value moves
//! freely with the engine.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use ktmrm_core::StateLock;
use ktmrm_proto::NtStatus;
use wdk_sys::KGUARDED_MUTEX;
use wdk_sys::ntddk::{KeAcquireGuardedMutex, KeInitializeGuardedMutex, KeReleaseGuardedMutex};

/// A value behind a kernel guarded mutex.
pub struct GuardedLock<T> {
    mutex: NonNull<KGUARDED_MUTEX>,
    value: UnsafeCell<T>,
}

// SAFETY: the mutex serialises every access to `value`, so sharing the lock between threads is
// sound whenever `T` itself may be sent between them. The mutex block is owned by the lock.
unsafe impl<T: Send> Sync for GuardedLock<T> {}
// SAFETY: the lock owns both the value and the mutex block; moving it moves ownership of both
// (the block itself stays where it is).
unsafe impl<T: Send> Send for GuardedLock<T> {}

impl<T> GuardedLock<T> {
    /// Allocates and initialises the mutex. `STATUS_INSUFFICIENT_RESOURCES` without pool.
    pub fn new(value: T) -> Result<Self, NtStatus> {
        let layout = Layout::new::<KGUARDED_MUTEX>();
        // SAFETY: KGUARDED_MUTEX has a non-zero size; its alignment (8) is within what pool gives.
        let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<KGUARDED_MUTEX>();
        let mutex = NonNull::new(raw).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // KeInitializeGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL (DriverEntry is at
        // PASSIVE_LEVEL). Initialises the caller-owned, non-paged structure in place; no
        // reference or handle is created, and no routine is needed to delete it.
        // SAFETY: `mutex` is an exclusive, non-paged, suitably aligned block for a KGUARDED_MUTEX.
        unsafe { KeInitializeGuardedMutex(mutex.as_ptr()) };
        Ok(GuardedLock {
            mutex,
            value: UnsafeCell::new(value),
        })
    }
}

impl<T> Drop for GuardedLock<T> {
    fn drop(&mut self) {
        // `&mut self`: nobody holds the mutex, so its block can go back to the pool.
        // SAFETY: allocated in `new` with this very layout by the global allocator.
        unsafe {
            alloc::alloc::dealloc(self.mutex.as_ptr().cast(), Layout::new::<KGUARDED_MUTEX>())
        };
    }
}

/// Releases the mutex when the critical section ends.
struct Held(NonNull<KGUARDED_MUTEX>);

impl Drop for Held {
    fn drop(&mut self) {
        // KeReleaseGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL, by the thread that
        // acquired it; leaves the guarded region.
        // SAFETY: this thread acquired the mutex in `with` and releases it exactly once.
        unsafe { KeReleaseGuardedMutex(self.0.as_ptr()) };
    }
}

impl<T: Send> StateLock<T> for GuardedLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // KeAcquireGuardedMutex(PKGUARDED_MUTEX Mutex): IRQL <= APC_LEVEL; waits (does not spin)
        // and enters a guarded region. Every caller of the engine runs at PASSIVE_LEVEL.
        // SAFETY: the mutex was initialised in `new` and lives as long as `self`.
        unsafe { KeAcquireGuardedMutex(self.mutex.as_ptr()) };
        let _held = Held(self.mutex);
        // SAFETY: holding the mutex makes this the only live reference to the value until `_held`
        // releases it after `f` returns.
        f(unsafe { &mut *self.value.get() })
    }
}
