//! Which code is running on this thread: the engine's own, or the simulator's (including the port
//! calls the engine makes). A test's global allocator reads [`engine_running`] to fail only the
//! engine's allocations, the ones the driver must survive, and none of the model's.

use std::cell::Cell;

std::thread_local! {
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

/// True while the current thread runs engine code (inside `Engine::dispatch` or
/// `Engine::notify`, outside any port call it makes). Never allocates.
#[must_use]
pub fn engine_running() -> bool {
    IN_ENGINE.with(Cell::get)
}

/// Sets the flag for a scope and restores it on drop, so scopes nest (the engine calls the port,
/// which delivers a notification back into the engine, ...).
pub(crate) struct Scope(bool);

impl Scope {
    /// Entering the engine.
    pub(crate) fn engine() -> Scope {
        Scope(IN_ENGINE.with(|c| c.replace(true)))
    }

    /// Entering simulator code called from the engine.
    pub(crate) fn model() -> Scope {
        Scope(IN_ENGINE.with(|c| c.replace(false)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        IN_ENGINE.with(|c| c.set(self.0));
    }
}
