//! The engine's lock seam over `std::sync::Mutex`, for user-mode hosts. (It lives here, not in
//! ktmrm-core, so that nothing in a normal build turns std on in the kernel-path crates.)

use ktmrm_core::StateLock;

/// The lock seam over `std::sync::Mutex`, for user-mode hosts.
pub struct StdLock<T>(pub std::sync::Mutex<T>);

impl<T> StdLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        StdLock(std::sync::Mutex::new(value))
    }
}

impl<T: Send> StateLock<T> for StdLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // A poisoned lock means a test thread panicked mid-update; keep going with the state as
        // it is, as the kernel would (it has no unwinding at all).
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
}
