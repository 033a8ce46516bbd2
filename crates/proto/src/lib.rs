//! The ktmrm IOCTL ABI, shared by the driver, the portable engine and user-mode clients.
//!
//! `no_std`, no allocation, no panics: control codes ([`Call`]), request layouts and a checked
//! decoder ([`Request`]), response layouts ([`VersionInfo`], [`Stats`], GET and LIST helpers), and
//! the NTSTATUS values ktmrm answers with ([`NtStatus`]). The C header `include/ktmrm.h` mirrors it.
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

mod ioctl;
mod request;
mod response;
mod status;
mod wire;

pub use ioctl::*;
pub use request::*;
pub use response::*;
pub use status::NtStatus;
pub use wire::{Overflow, Reader, Writer};

#[cfg(test)]
mod tests;
