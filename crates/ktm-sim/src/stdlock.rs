//! The engine's lock seam over `std::sync::Mutex`, for user-mode hosts. (It lives here, not in
//! ktmrm-core, so that nothing in a normal build turns std on in the kernel-path crates.)

use ktmrm_core::StateLock;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The lock seam over `std::sync::Mutex`, with a `Condvar` for [`StateLock::wait_while`].
pub struct StdLock<T> {
    value: Mutex<T>,
    changed: Condvar,
}

impl<T> StdLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        StdLock {
            value: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    /// A poisoned lock means a test thread panicked mid-update; keep going with the state as
    /// it is, as the kernel would (it has no unwinding at all).
    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Send> StateLock<T> for StdLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    fn wait_while(&self, mut cond: impl FnMut(&mut T) -> bool) -> bool {
        let g = self.lock();
        drop(
            self.changed
                .wait_while(g, |v| cond(v))
                .unwrap_or_else(PoisonError::into_inner),
        );
        true
    }

    fn notify_all(&self) {
        self.changed.notify_all();
    }
}
