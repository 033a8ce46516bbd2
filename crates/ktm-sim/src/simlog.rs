//! [`SimLog`]: the durable device's log, in memory or in a file on disk, with the RM's crash
//! points ([`LogCrash`]): in the middle of writing a record (appended, not forced, possibly
//! torn) and right after a force, before the engine answers KTM.

use std::fmt;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use ktmrm_core::TxId;
use ktmrm_core::wal::{FileLog, FileLogState, LogPort, Lsn, MemLog};
use ktmrm_proto::NtStatus;

use crate::diskfile::{DiskCounts, DiskFile, io_status};
use crate::durable::status::TRANSACTIONMANAGER_NOT_ONLINE;
use crate::ktm::{Ktm, WeakKtm};
use crate::stdlock::StdLock;

/// A crash of the RM's side, armed on a [`SimLog`]: at its `force`-th force (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCrash {
    /// The machine dies during the force: the unforced records are lost, the first of them
    /// keeping only `torn` bytes (0: none).
    DuringForce {
        /// Which force.
        force: u64,
        /// Bytes of the first unforced record that reach the disk.
        torn: usize,
    },
    /// The force completes, then the machine dies before the engine answers KTM.
    AfterForce {
        /// Which force.
        force: u64,
    },
}

#[derive(Default)]
struct LogCtl {
    forces: u64,
    armed: Option<LogCrash>,
    /// [`SimLog::rollback_during_force`]: at this force, roll back this transaction first.
    rollback: Option<(u64, TxId)>,
    /// The log device fails, without a crash, from this force on, with this status.
    failing: Option<(u64, NtStatus)>,
    /// The machine crashed: nothing reaches the disk until the next boot.
    dead: bool,
}

/// The log the driver keeps, over a real file: `FileLog` on a [`DiskFile`].
pub type DiskLog = FileLog<DiskFile, StdLock<FileLogState>, StdLock<()>>;

/// Where a [`SimLog`] keeps its records.
enum Store {
    /// In memory: a crash loses exactly the unforced records, whole or torn.
    Mem(MemLog),
    /// In a file on disk, through the driver's `FileLog`. A crash is the RM process dying: the
    /// log is reopened from the file at the next boot, so what was appended and never forced
    /// (still in `FileLog`'s memory) is lost; what reached the file is not (the page cache
    /// survives a process crash; a power loss is the memory store's job).
    Disk(RwLock<DiskLog>),
}

/// The durable device's log: a [`MemLog`] (what is forced survives [`crate::SimDevice::crash`]), or a
/// log file on disk ([`crate::SimDevice::durable_on_file`]), with the RM-side crash points of
/// [`LogCrash`]. A crash there crashes the whole machine, KTM too.
pub struct SimLog {
    store: Store,
    ktm: WeakKtm,
    ctl: Mutex<LogCtl>,
}

impl fmt::Debug for SimLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.store {
            Store::Mem(m) => f
                .debug_struct("SimLog")
                .field("records", &m.len())
                .field("forced", &m.forced())
                .finish_non_exhaustive(),
            Store::Disk(_) => f
                .debug_struct("SimLog")
                .field("disk", &self.disk_counts())
                .finish_non_exhaustive(),
        }
    }
}

fn open_disk_log(path: &Path) -> Result<DiskLog, NtStatus> {
    let file = DiskFile::open(path).map_err(|e| io_status(&e))?;
    FileLog::open(file, StdLock::new(FileLogState::new()), StdLock::new(()))
}

impl SimLog {
    pub(crate) fn new(ktm: &Ktm) -> Self {
        SimLog::with_store(ktm, Store::Mem(MemLog::new()))
    }

    pub(crate) fn on_disk(ktm: &Ktm, path: &Path) -> Result<Self, NtStatus> {
        let log = open_disk_log(path)?;
        Ok(SimLog::with_store(ktm, Store::Disk(RwLock::new(log))))
    }

    fn with_store(ktm: &Ktm, store: Store) -> Self {
        SimLog {
            store,
            ktm: ktm.downgrade(),
            ctl: Mutex::default(),
        }
    }

    /// Runs `f` on the store's log port.
    fn port<R>(&self, f: impl FnOnce(&dyn LogPort) -> R) -> R {
        match &self.store {
            Store::Mem(m) => f(m),
            Store::Disk(d) => f(&*d.read().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// The next boot: a disk store is reopened (the log as the file has it, see
    /// [`Store::Disk`]), and the log takes writes again.
    pub(crate) fn boot(&self) -> Result<(), NtStatus> {
        if let Store::Disk(d) = &self.store {
            let mut log = d.write().unwrap_or_else(PoisonError::into_inner);
            let path = log.file().path().to_path_buf();
            *log = open_disk_log(&path)?;
        }
        self.ctl().dead = false;
        Ok(())
    }

    /// A machine crash that did not start at this log: as [`SimLog::die`], nothing torn.
    pub(crate) fn crash(&self) {
        let mut ctl = self.ctl();
        self.die(&mut ctl, 0);
    }

    fn ctl(&self) -> MutexGuard<'_, LogCtl> {
        self.ctl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored records (to inspect or damage in tests, or to fail its appends and forces).
    ///
    /// # Panics
    /// For a log on disk ([`crate::SimDevice::durable_on_file`]): it has no records in memory.
    #[must_use]
    pub fn mem(&self) -> &MemLog {
        match &self.store {
            Store::Mem(m) => m,
            Store::Disk(_) => panic!("SimLog::mem: this log is a file on disk"),
        }
    }

    /// For a log on disk: the writes, flushes and rewrites of its file since it was last
    /// opened (at boot); `None` for a log in memory.
    #[must_use]
    pub fn disk_counts(&self) -> Option<DiskCounts> {
        match &self.store {
            Store::Mem(_) => None,
            Store::Disk(d) => Some(
                d.read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .file()
                    .counts(),
            ),
        }
    }

    /// Forces so far since this log was created (crash steps count these).
    #[must_use]
    pub fn forces(&self) -> u64 {
        self.ctl().forces
    }

    /// Arms an RM-side crash (replacing any armed one).
    pub fn arm(&self, crash: LogCrash) {
        self.ctl().armed = Some(crash);
    }

    /// Makes force number `force` roll back `tx` through KTM before it forces: the ROLLBACK
    /// (with [`crate::Interleavings::eager_rollback`]) reaches the engine while it forces the
    /// Prepare record for its yes vote, its lock released — KTM sends ROLLBACK whenever the
    /// rollback is made (see [`crate::Ktm::rollback_during_next`]).
    pub fn rollback_during_force(&self, force: u64, tx: TxId) {
        self.ctl().rollback = Some((force, tx));
    }

    /// Disarms the armed crash, if any.
    pub fn disarm(&self) {
        self.ctl().armed = None;
    }

    /// The log device fails, without a crash, from its `force`-th force (from 0) on: that force
    /// and every later one return `status` and make nothing durable, until the machine crashes
    /// (a restart brings the device back).
    pub fn fail_from(&self, force: u64, status: NtStatus) {
        self.ctl().failing = Some((force, status));
    }

    /// The machine crash as the log sees it: unforced records are lost (in memory, the first
    /// one torn to `torn` bytes; on disk, at the reopening), and nothing more is written until
    /// [`crate::SimDevice::restart`].
    fn die(&self, ctl: &mut LogCtl, torn: usize) {
        ctl.failing = None;
        if !ctl.dead {
            ctl.dead = true;
            if let Store::Mem(m) = &self.store {
                m.crash_torn(torn);
            }
        }
    }
}

impl LogPort for SimLog {
    fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        let ctl = self.ctl();
        if ctl.dead {
            return Err(TRANSACTIONMANAGER_NOT_ONLINE);
        }
        self.port(|p| p.append(record))
    }

    fn force(&self, upto: Lsn) -> Result<(), NtStatus> {
        let race = {
            let mut ctl = self.ctl();
            match ctl.rollback {
                Some((force, tx)) if force == ctl.forces => {
                    ctl.rollback = None;
                    Some(tx)
                }
                _ => None,
            }
        };
        // Outside the log's lock: the engine appends its Abort record meanwhile.
        if let Some(tx) = race
            && let Some(k) = self.ktm.upgrade()
        {
            let _ = k.rollback_tx(tx);
        }
        let mut ctl = self.ctl();
        if ctl.dead {
            return Err(TRANSACTIONMANAGER_NOT_ONLINE);
        }
        let n = ctl.forces;
        ctl.forces += 1;
        if let Some((from, status)) = ctl.failing
            && n >= from
        {
            return Err(status);
        }
        let crash = match ctl.armed {
            Some(LogCrash::DuringForce { force, torn }) if force == n => Some(torn),
            Some(LogCrash::AfterForce { force }) if force == n => {
                self.port(|p| p.force(upto))?;
                Some(0)
            }
            _ => None,
        };
        let Some(torn) = crash else {
            return match &self.store {
                // Instant: kept under `ctl`, so a crash on another thread orders with it.
                Store::Mem(m) => m.force(upto),
                // Not under `ctl`: appends (which look at `ctl`) must go on while the disk
                // works, or no later force could find its records already written.
                Store::Disk(_) => {
                    drop(ctl);
                    self.port(|p| p.force(upto))
                }
            };
        };
        ctl.armed = None;
        self.die(&mut ctl, torn);
        drop(ctl);
        if let Some(k) = self.ktm.upgrade() {
            k.crash();
        }
        Err(TRANSACTIONMANAGER_NOT_ONLINE)
    }

    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), NtStatus> {
        self.port(|p| p.read(from, sink))
    }

    fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.port(|p| p.truncate_before(lsn))
    }

    fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.port(|p| p.discard_from(lsn))
    }

    fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        self.port(|p| p.reserve(records, bytes))
    }

    fn unreserve(&self, records: usize, bytes: usize) {
        self.port(|p| p.unreserve(records, bytes));
    }

    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        if self.ctl().dead {
            self.port(|p| p.unreserve(1, record.len()));
            return Err(TRANSACTIONMANAGER_NOT_ONLINE);
        }
        self.port(|p| p.append_reserved(record))
    }
}
