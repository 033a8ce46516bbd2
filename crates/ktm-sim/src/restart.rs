//! The durable device: the engine logging to a [`SimLog`] on a durable [`Ktm`], a machine crash
//! that loses both sides' unforced state, and a restart that rebuilds the engine from its log
//! and runs KTM's recovery (docs/ktm.md §7 step 4: recover the TM, register the RM with its GUID,
//! recover the RM; the device takes requests once LAST_RECOVER arrived).
//!
//! Besides KTM's own crash points ([`crate::CrashPoint`]), the log has two of the RM's
//! ([`crate::LogCrash`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ktmrm_core::{RecoverError, RecoveryReport, State};
use ktmrm_proto::NtStatus;

use crate::device::{SimConfig, SimDevice};
use crate::ids::RmGuid;
use crate::ktm::Ktm;
use crate::simlog::SimLog;

/// The GUID the simulated durable device registers its RM with, on every boot.
pub const DEVICE_RM_GUID: RmGuid = RmGuid(*b"ktmrm-sim-device");

/// Why a durable device could not start.
#[derive(Debug)]
pub enum RestartError {
    /// The engine could not rebuild its state from the log.
    Recover(RecoverError),
    /// A step failed (opening the log file, recovering the TM, registering or recovering the
    /// RM).
    Ktm {
        /// Which step.
        step: &'static str,
        /// Its status.
        status: NtStatus,
    },
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::Recover(e) => write!(f, "{e}"),
            RestartError::Ktm { step, status } => write!(f, "{step} failed: {status}"),
        }
    }
}

impl std::error::Error for RestartError {}

impl SimDevice {
    /// A durable device with `cfg` on a new durable KTM, with an empty log, booted.
    pub fn durable(cfg: SimConfig) -> Result<(SimDevice, RecoveryReport), RestartError> {
        let ktm = Ktm::new_durable(cfg.ktm_config());
        let log = Arc::new(SimLog::new(&ktm));
        SimDevice::boot(ktm, log, cfg)
    }

    /// A durable device with `cfg` on a new durable KTM, its log the file at `path` (created
    /// if missing) through the driver's `FileLog`: the engine recovers what the file holds.
    /// [`SimDevice::restart`] reopens the file; a crash point's `torn` bytes are not simulated
    /// there (the unforced records are lost whole).
    pub fn durable_on_file(
        cfg: SimConfig,
        path: impl AsRef<Path>,
    ) -> Result<(SimDevice, RecoveryReport), RestartError> {
        let ktm = Ktm::new_durable(cfg.ktm_config());
        let log = SimLog::on_disk(&ktm, path.as_ref()).map_err(|status| RestartError::Ktm {
            step: "opening the log file",
            status,
        })?;
        SimDevice::boot(ktm, Arc::new(log), cfg)
    }

    /// Boots the engine from `log` on the durable `ktm`: recover the TM, rebuild the state,
    /// open the RM with [`DEVICE_RM_GUID`] (create it if TM recovery left none), recover it
    /// (RECOVER, LAST_RECOVER, outcomes).
    fn boot(
        ktm: Ktm,
        log: Arc<SimLog>,
        cfg: SimConfig,
    ) -> Result<(SimDevice, RecoveryReport), RestartError> {
        let step = |step, status: NtStatus| {
            if status.is_success() {
                Ok(())
            } else {
                Err(RestartError::Ktm { step, status })
            }
        };
        step(
            "ZwRecoverTransactionManager",
            ktm.recover_transaction_manager(),
        )?;
        log.boot().map_err(|status| RestartError::Ktm {
            step: "opening the log file",
            status,
        })?;
        let (state, report) = State::recover(cfg.limits, &*log).map_err(RestartError::Recover)?;
        let dev = SimDevice::register(ktm.clone(), state, log, Some(DEVICE_RM_GUID), cfg).map_err(
            |status| RestartError::Ktm {
                step: "ZwOpenResourceManager / ZwCreateResourceManager",
                status,
            },
        )?;
        step(
            "ZwRecoverResourceManager",
            ktm.recover_resource_manager(dev.inner.port.rm()),
        )?;
        Ok((dev, report))
    }

    /// The device's log (a volatile device has one it never writes).
    #[must_use]
    pub fn log(&self) -> &SimLog {
        &self.inner.log
    }

    /// True for a durable device.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.inner.guid.is_some()
    }

    /// A machine crash now (unless one already happened since this device booted, at a KTM or
    /// log crash point): KTM loses everything but its log, the device's log loses its unforced
    /// records, and this device refuses every request.
    pub fn crash(&self) {
        let ktm = self.ktm();
        if ktm.crash_count() == self.inner.boot_crashes {
            ktm.crash();
        }
        self.inner.log.crash();
        self.inner.engine.shutdown();
    }

    /// Reboots after [`SimDevice::crash`] (crashing first if nothing did): a new engine from
    /// the log on the same KTM, through KTM's recovery. Processes from before are gone; make
    /// new ones from the returned device.
    pub fn restart(&self) -> Result<(SimDevice, RecoveryReport), RestartError> {
        if self.inner.guid.is_none() {
            return Err(RestartError::Ktm {
                step: "restart",
                status: NtStatus::TM_VOLATILE,
            });
        }
        self.crash();
        SimDevice::boot(
            self.ktm().clone(),
            self.inner.log.clone(),
            self.inner.config.clone(),
        )
    }
}
