//! The lock seam: the engine keeps all its state behind one lock the host supplies.
//!
//! The driver supplies a kernel lock usable at PASSIVE_LEVEL (the engine allocates inside its
//! critical sections, so no spin lock at DISPATCH_LEVEL); user-mode hosts use a `std::sync::Mutex` (ktm-sim's `StdLock`); [`SpinLock`]
//! is a portable fallback with no OS dependency. The engine never calls the port while holding it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Mutual exclusion over a value of type `T`.
pub trait StateLock<T>: Sync {
    /// Runs `f` with exclusive access to the value.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;

    /// A condition variable over the lock, for locks that have one: waits while `cond` holds
    /// for the value, sleeping (the lock released) until [`StateLock::notify_all`], and returns
    /// `true`. A lock that cannot sleep returns `false` at once without waiting (the default);
    /// the caller then waits another way. The log's group commit uses it: a force whose record
    /// is in a write under way sleeps until that write is durable.
    fn wait_while(&self, cond: impl FnMut(&mut T) -> bool) -> bool {
        let _ = cond;
        false
    }

    /// Wakes every thread sleeping in [`StateLock::wait_while`] (call after changing the value
    /// they wait on). The default does nothing: no thread sleeps.
    fn notify_all(&self) {}
}

/// A test-and-test-and-set spin lock: portable, for hosts without an OS lock.
pub struct SpinLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `held` (acquire on lock, release on unlock), so the
// lock can be shared between threads whenever the value may be sent between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }
}

struct Unlock<'a>(&'a AtomicBool);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T: Send> StateLock<T> for SpinLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.held.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        let _unlock = Unlock(&self.held);
        // SAFETY: `held` was false and we set it with Acquire, so no other reference to the value
        // exists until `_unlock` releases it after `f` returns.
        f(unsafe { &mut *self.value.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_lock_serialises_increments() {
        let l = SpinLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        l.with(|v| *v += 1);
                    }
                });
            }
        });
        assert_eq!(l.with(|v| *v), 40_000);
    }
}
