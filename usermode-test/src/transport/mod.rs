//! Transports: how request bytes reach a ktmrm device, and how KTM transactions are made.
//!
//! [`Transport`] is deliberately raw — control code, input bytes, output buffer, NTSTATUS and
//! bytes written — so the bad-input suite can send anything, and both transports are checked on
//! exactly the bytes an application would send.

use crate::error::{Error, Result};
use ktmrm_proto::NtStatus;
use std::sync::Arc;

#[cfg(any(windows, test))]
mod completion;
#[cfg(windows)]
mod device;
mod sim;

#[cfg(windows)]
pub use device::DeviceTransport;
#[cfg(windows)]
pub(crate) use device::wide;
pub use sim::{SimConfig, SimTransport};

/// Which kind of device a transport reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The in-process simulated device (engine over `ktm-sim`).
    Sim,
    /// The installed driver, `\\.\KtmRm`.
    Device,
}

impl TransportKind {
    /// `sim` or `device`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            TransportKind::Sim => "sim",
            TransportKind::Device => "device",
        }
    }
}

/// A ktmrm device handle plus the KTM primitives of the calling process.
///
/// Handle values (`u64`) are handles in the caller's process, as the driver expects them in a
/// request's `tx` field.
pub trait Transport: Send + Sync {
    /// Which device this is.
    fn kind(&self) -> TransportKind;

    /// One `DeviceIoControl`: returns the driver's NTSTATUS and the bytes it wrote to `output`.
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize);

    /// Creates a KTM transaction (ktmw32 `CreateTransaction`; `timeout_ms` 0 = none).
    fn create_transaction(&self, timeout_ms: u32, description: &str) -> Result<u64>;

    /// Commits a transaction and waits for the outcome; returns KTM's status.
    fn commit_transaction(&self, tx: u64) -> NtStatus;

    /// Rolls a transaction back; returns KTM's status.
    fn rollback_transaction(&self, tx: u64) -> NtStatus;

    /// Closes a handle (transaction or other); returns the status of the close.
    fn close_handle(&self, handle: u64) -> NtStatus;

    /// A handle to an object that is not a transaction (an event), to test type checks.
    fn create_event(&self) -> Result<u64>;

    /// Another handle to the same device, opened with `access` (`FILE_READ_DATA` /
    /// `FILE_WRITE_DATA` bits), in the same process.
    fn reopen(&self, access: u32) -> Result<Box<dyn Transport>>;

    /// Enlists a second resource manager in `tx` that votes no at PREPARE.
    fn veto(&self, tx: u64) -> Result<()> {
        let _ = tx;
        Err(Error::Unsupported {
            op: "veto".into(),
            reason: "a resource manager that votes no exists only in the simulator (use --sim)"
                .into(),
        })
    }

    /// Enlists a second resource manager in `tx` that votes yes and commits.
    fn enlist_yes_rm(&self, tx: u64) -> Result<()> {
        let _ = tx;
        Err(Error::Unsupported {
            op: "enlist a second RM".into(),
            reason: "only the simulator has a scriptable second resource manager; on Windows the \
                     txr-* scenarios use the transacted registry as the second RM"
                .into(),
        })
    }

    /// Lets `ms` milliseconds pass for KTM timeouts (simulator: advances the virtual clock;
    /// device: sleeps).
    fn elapse(&self, ms: u64);

    /// KTM protocol violations and leaked enlistments or transaction references the simulator's
    /// checker saw (always empty on the device, where Driver Verifier plays that role).
    fn violations(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where to connect: chosen once by the CLI, connected once per run (the simulator starts each
/// connection from an empty store).
#[derive(Clone, Debug)]
pub enum Backend {
    /// A fresh simulated device per connection.
    Sim(SimConfig),
    /// The installed driver.
    Device,
}

impl Backend {
    /// `--sim` or not: off Windows the simulator is the only device.
    #[must_use]
    pub fn default_for_os(sim: bool) -> Backend {
        if sim || !cfg!(windows) {
            Backend::Sim(SimConfig::default())
        } else {
            Backend::Device
        }
    }

    /// The kind of transport `connect` returns.
    #[must_use]
    pub const fn kind(&self) -> TransportKind {
        match self {
            Backend::Sim(_) => TransportKind::Sim,
            Backend::Device => TransportKind::Device,
        }
    }

    /// Opens a transport with read and write access.
    pub fn connect(&self) -> Result<Arc<dyn Transport>> {
        match self {
            Backend::Sim(cfg) => Ok(Arc::new(SimTransport::new(cfg.clone()))),
            Backend::Device => open_device(),
        }
    }
}

#[cfg(windows)]
fn open_device() -> Result<Arc<dyn Transport>> {
    let rw = ktmrm_proto::FILE_READ_DATA | ktmrm_proto::FILE_WRITE_DATA;
    Ok(Arc::new(DeviceTransport::open(rw)?))
}

#[cfg(not(windows))]
fn open_device() -> Result<Arc<dyn Transport>> {
    Err(Error::Unsupported {
        op: "open \\\\.\\KtmRm".into(),
        reason: "the ktmrm driver runs on Windows only; use --sim".into(),
    })
}

/// The Windows HANDLE a request's `u64` names (for callers that pass a transaction handle to
/// other Windows APIs, like the transacted registry).
#[cfg(windows)]
#[must_use]
pub fn device_handle(v: u64) -> windows_sys::Win32::Foundation::HANDLE {
    device::handle_from(v)
}
