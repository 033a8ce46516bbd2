//! The ktmrm resource-manager engine: `no_std` + `alloc`, sans-IO.
//!
//! The engine owns the transactional key/value store and the per-transaction two-phase-commit
//! state. It never calls Windows: the host (the driver, or `ktm-sim` in tests) feeds it IOCTL
//! buffers ([`Engine::dispatch`]) and KTM notifications ([`Engine::notify`]) and performs the KTM
//! calls it asks for through the [`KtmPort`] trait. All state sits behind one [`StateLock`] the
//! host supplies.
//!
//! IRQL: every entry point runs at PASSIVE_LEVEL (IOCTL dispatch of a top-level device, KTM
//! callbacks, and all KTM routines are PASSIVE_LEVEL; docs/ktm.md §2, §8).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

extern crate alloc;

pub mod lock;
pub mod port;
pub mod tree;
pub mod wal;

pub use ktmrm_proto as proto;
pub use lock::{SpinLock, StateLock};
pub use port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};

mod durable;
mod engine;
mod entry;
mod fallible;
mod ops;
mod reads;
mod serializable;
mod state;
mod twopc;
mod unload;

pub use durable::{AUTOCOMMIT_UOW, NoLog, RecoverError, RecoveryReport};
pub use engine::Engine;
pub use entry::{Entry, KeyBuf};
pub use reads::{MAX_READ_SET_BYTES, POINT_READ_BYTES, RANGE_READ_BYTES};
pub use state::State;
pub use state::durability::DurabilityStats;
pub use state::txns::PhaseTrace;

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests;
