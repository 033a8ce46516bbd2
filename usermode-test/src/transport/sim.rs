//! The simulated device: the ktmrm engine over the `ktm-sim` KTM model, in process. Requests go
//! through `SimFile::ioctl` as the same bytes the driver receives, with the I/O manager's access
//! check and METHOD_BUFFERED copying modelled there.

use super::{Transport, TransportKind};
use crate::error::{Error, Result};
use ktm_sim::{SimDevice, SimFile, SimProcess};
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, NtStatus};

pub use ktm_sim::SimConfig;

/// One process's view of a simulated device: the device, the process (its handle table) and an
/// open of `\\.\KtmRm`.
pub struct SimTransport {
    device: SimDevice,
    process: SimProcess,
    file: SimFile,
}

impl SimTransport {
    /// A fresh device (empty store) with `cfg`, one process, and a read/write open.
    #[must_use]
    pub fn new(cfg: SimConfig) -> SimTransport {
        SimTransport::attach(&SimDevice::with_config(cfg))
    }

    /// A new process with a read/write open of an existing `device` (a durable device after a
    /// restart, where the processes from before the crash are gone).
    #[must_use]
    pub fn attach(device: &SimDevice) -> SimTransport {
        let process = device.process();
        let file = process.open(FILE_READ_DATA | FILE_WRITE_DATA);
        SimTransport {
            device: device.clone(),
            process,
            file,
        }
    }

    /// The simulated process this transport's handles live in.
    #[must_use]
    pub const fn process(&self) -> &SimProcess {
        &self.process
    }

    /// The simulated device (KTM model, counters, checker).
    #[must_use]
    pub fn device(&self) -> &SimDevice {
        &self.device
    }
}

fn check(op: &str, st: NtStatus) -> Result<()> {
    if st.is_error() {
        Err(Error::status_of(op, st))
    } else {
        Ok(())
    }
}

impl Transport for SimTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Sim
    }

    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
        self.file.ioctl(code, input, output)
    }

    fn create_transaction(&self, timeout_ms: u32, description: &str) -> Result<u64> {
        self.process
            .create_transaction(timeout_ms, description)
            .map_err(|st| Error::status_of("CreateTransaction", st))
    }

    fn commit_transaction(&self, tx: u64) -> NtStatus {
        self.process.commit(tx)
    }

    fn rollback_transaction(&self, tx: u64) -> NtStatus {
        self.process.rollback(tx)
    }

    fn close_handle(&self, handle: u64) -> NtStatus {
        self.process.close_handle(handle)
    }

    fn create_event(&self) -> Result<u64> {
        Ok(self.process.create_event())
    }

    fn reopen(&self, access: u32) -> Result<Box<dyn Transport>> {
        Ok(Box::new(SimTransport {
            device: self.device.clone(),
            process: self.process.clone(),
            file: self.process.open(access),
        }))
    }

    fn veto(&self, tx: u64) -> Result<()> {
        check("veto", self.process.enlist_veto_rm(tx))
    }

    fn enlist_yes_rm(&self, tx: u64) -> Result<()> {
        check("enlist a second RM", self.process.enlist_yes_rm(tx))
    }

    fn elapse(&self, ms: u64) {
        self.device.ktm().advance_time(ms);
    }

    fn violations(&self) -> Vec<String> {
        // finish() adds the resource checks to the protocol checker's findings: enlistments of
        // ended transactions never closed, transaction references never released.
        self.device
            .finish()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}
