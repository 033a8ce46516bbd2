//! ktmrm.sys: a WDM driver that is a resource manager of the Windows Kernel Transaction Manager
//! (KTM) and serves the `ktmrm-core` engine's transactional key/value store to user mode through
//! `DeviceIoControl` on `\\.\KtmRm`.
//!
//! The crate is split so that almost everything is plain Rust that builds and is unit-tested on
//! any OS:
//! - [`names`]: the UTF-16 names (device, symbolic link, SDDL, registry, exported symbols);
//! - [`ktm`]: KTM constants, timeouts, handle/key/GUID conversions, and which `Tm*` routine
//!   answers each engine [`ktmrm_core::Answer`];
//! - [`irp`]: what an IRP may carry before the driver builds a slice over its system buffer, and
//!   what it may complete with;
//! - [`registry`], [`trace`]: the `Parameters\TraceLevel` value and the leveled debug trace;
//! - [`durable`]: the durable configuration (`Parameters\Durable`, `LogDirectory`, `TmLogPath`),
//!   the RM's fixed GUID, and RECOVER's argument;
//! - [`callback`]: what the KTM callback decides: in the callback or on a work item, and when a
//!   checkpoint follows;
//! - [`teardown`]: the order in which `DriverEntry` unwinds and `DriverUnload` tears down;
//! - [`mem`]: fallible allocation (a kernel `Box::new` bugchecks when pool runs out).
//!
//! The kernel-mode shell (`kmode`, Windows only, not in unit tests) holds only IRP plumbing and
//! the `Zw*`/`Tm*`/`Ob*` calls, each commented with its documented IRQL and who owns what it
//! returns. See README.md (Windows section) for building, signing, installing and testing it.
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
#![deny(clippy::multiple_unsafe_ops_per_block)]

extern crate alloc;

// On Windows (not in unit tests) the driver has no std: wdk-panic turns a panic into bugcheck
// 0x52504E43 ("RPNC") and `kmode::pool` serves `alloc` from non-paged pool.
#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

// Off Windows the cdylib is never loaded; it exists so `cargo build --workspace` works and the
// portable modules are unit-tested. Linking std supplies a panic handler and an allocator there.
#[cfg(all(not(windows), not(test)))]
extern crate std;

#[macro_use]
pub mod trace;

#[macro_use]
pub mod names;

pub mod callback;
pub mod durable;
pub mod irp;
pub mod ktm;
pub mod mem;
pub mod registry;
pub mod teardown;

#[cfg(all(windows, not(test)))]
mod kmode;
