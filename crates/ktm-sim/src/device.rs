//! [`SimDevice`]: the ktmrm engine behind an in-process stand-in for `\\.\KtmRm`, with the KTM
//! model as its KTM. The user-mode test crate drives it exactly as it drives the real device:
//! bytes in, status and bytes out.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use ktmrm_core::{Engine, Notification, State};

use crate::stdlock::StdLock;
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, Limits, NtStatus, Stats};

use crate::ids::{EnlistmentId, ProcessId, RmGuid};
use crate::ktm::Ktm;
use crate::model::{Delivery, DeliveryMode, Interleavings, KtmConfig, RmCallback, TxInfo};
use crate::port::SimPort;
use crate::simlog::SimLog;
use crate::violation::Violation;

/// A volatile device's engine never touches its log (its state has no log writer).
pub(crate) type SimEngine = Engine<SimPort, StdLock<State<EnlistmentId>>, Arc<SimLog>>;

/// Configuration of a [`SimDevice`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The engine's quotas.
    pub limits: Limits,
    /// How KTM delivers notifications ([`KtmConfig::delivery`]).
    pub delivery: DeliveryMode,
    /// How long a phase waits for answers ([`KtmConfig::answer_deadline`]; `None`: forever).
    pub answer_deadline: Option<Duration>,
    /// Deliver a duplicate COMMIT after each CommitComplete ([`KtmConfig::duplicate_commit`]).
    pub duplicate_commit: bool,
    /// The allowed interleavings the model produces ([`KtmConfig::interleavings`]). All on by
    /// default: the engine's suites run against everything KTM's documentation allows.
    pub interleavings: Interleavings,
    /// The engine asks for single-phase commit ([`Engine::single_phase`]).
    pub single_phase: bool,
}

impl SimConfig {
    pub(crate) fn ktm_config(&self) -> KtmConfig {
        KtmConfig {
            delivery: self.delivery,
            answer_deadline: self.answer_deadline,
            duplicate_commit: self.duplicate_commit,
            interleavings: self.interleavings,
            ..KtmConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let k = KtmConfig::default();
        SimConfig {
            limits: Limits::default(),
            delivery: k.delivery,
            answer_deadline: k.answer_deadline,
            duplicate_commit: k.duplicate_commit,
            interleavings: Interleavings::ALL,
            single_phase: false,
        }
    }
}

pub(crate) struct DeviceInner {
    pub(crate) engine: SimEngine,
    pub(crate) port: SimPort,
    pub(crate) log: Arc<SimLog>,
    /// The durable RM's GUID (`None`: a volatile device).
    pub(crate) guid: Option<RmGuid>,
    pub(crate) config: SimConfig,
    /// [`Ktm::crash_count`] when this device started: a crash since then ended it.
    pub(crate) boot_crashes: u64,
    /// `ZwClose` on the RM handle has returned (unload): later callbacks are turned away, as the
    /// driver's rundown does, and one that still needed an answer is a violation.
    pub(crate) rm_closed: AtomicBool,
}

impl DeviceInner {
    /// The RM callback: RECOVER goes to `Engine::recover` with its UOW, everything else to
    /// `Engine::notify`.
    fn on_notification(&self, d: Delivery) -> NtStatus {
        if self.rm_closed.load(Ordering::SeqCst) {
            // The driver's rundown turns away every callback after the RM close (the engine may
            // be freed). That is harmless only for a stale delivery — a phase that an answer or
            // ktmrm's own rollback already overtook, or an enlistment already closed; one KTM
            // still waits on would never be answered.
            let stale = self
                .port
                .ktm()
                .enlistment_info(d.enlistment)
                .is_none_or(|e| e.closed || e.outstanding != Some(d.notification));
            if !stale {
                self.port
                    .ktm()
                    .record_violation(Violation::DeliveredAfterUnload {
                        notification: d.notification,
                    });
            }
            return NtStatus::RM_NOT_ACTIVE;
        }
        let _engine = crate::alloc_scope::Scope::engine();
        match (d.notification, d.recovery) {
            (Notification::Recover, Some(arg)) => {
                self.engine.recover(&self.port, arg.uow, &d.enlistment)
            }
            (n, _) => self.engine.notify(&self.port, d.key, n, &d.enlistment),
        }
    }
}

/// The simulated device: one engine, registered as one RM of its own [`Ktm`] (docs/ktm.md §7:
/// the driver's RM with `TmEnableCallbacks`). Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct SimDevice {
    pub(crate) inner: Arc<DeviceInner>,
}

impl fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDevice")
            .field("ktm", self.ktm())
            .finish_non_exhaustive()
    }
}

impl Default for SimDevice {
    fn default() -> Self {
        SimDevice::new()
    }
}

impl SimDevice {
    /// A device with the default configuration.
    #[must_use]
    pub fn new() -> Self {
        SimDevice::with_config(SimConfig::default())
    }

    /// A volatile device with `cfg`.
    #[must_use]
    pub fn with_config(cfg: SimConfig) -> Self {
        let ktm = Ktm::new(cfg.ktm_config());
        let log = Arc::new(SimLog::new(&ktm));
        let state = State::new(cfg.limits);
        match SimDevice::register(ktm, state, log, None, cfg) {
            Ok(d) => d,
            Err(st) => unreachable!("a volatile RM always registers: {st:?}"),
        }
    }

    /// Registers the engine over `state` as an RM of `ktm` and returns the device. Durable (with
    /// `guid`), as the driver does: open the RM object TM recovery rebuilt, and create it only
    /// when there is none (see `reopen.rs`). The callback holds the device weakly: the model (inside the device) holds the
    /// callback, so a strong reference would be a cycle that is never freed.
    pub(crate) fn register(
        ktm: Ktm,
        state: State<EnlistmentId>,
        log: Arc<SimLog>,
        guid: Option<RmGuid>,
        config: SimConfig,
    ) -> Result<SimDevice, NtStatus> {
        let slot: Arc<OnceLock<Weak<DeviceInner>>> = Arc::default();
        let cb_slot = slot.clone();
        let callback: RmCallback = Arc::new(move |d: Delivery| {
            match cb_slot.get().and_then(Weak::upgrade) {
                Some(dev) => dev.on_notification(d),
                // The device is gone (unloaded): nobody answers.
                None => NtStatus::RM_DISCONNECTED,
            }
        });
        let rm = match guid {
            None => ktm.create_resource_manager(callback),
            Some(g) => match ktm.open_resource_manager(g, callback.clone()) {
                Ok(rm) => rm,
                Err(crate::durable::status::RESOURCEMANAGER_NOT_FOUND) => {
                    ktm.create_durable_resource_manager(g, callback)?
                }
                Err(st) => return Err(st),
            },
        };
        let engine =
            Engine::with_log(StdLock::new(state), log.clone()).single_phase(config.single_phase);
        let inner = Arc::new(DeviceInner {
            engine,
            port: SimPort::new(ktm.clone(), rm),
            log,
            guid,
            config,
            boot_crashes: ktm.crash_count(),
            rm_closed: AtomicBool::new(false),
        });
        let _ = slot.set(Arc::downgrade(&inner));
        Ok(SimDevice { inner })
    }

    /// A new simulated process with its own handle table.
    #[must_use]
    pub fn process(&self) -> SimProcess {
        SimProcess {
            dev: self.clone(),
            pid: self.ktm().create_process(),
        }
    }

    /// The KTM model: fault injection, counters, the checker, `advance_time`.
    #[must_use]
    pub fn ktm(&self) -> &Ktm {
        self.inner.port.ktm()
    }

    /// The port the engine uses.
    #[must_use]
    pub fn port(&self) -> &SimPort {
        &self.inner.port
    }

    /// The engine's counters (what STATS returns).
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner.engine.stats()
    }

    /// The durable engine's counters (all zero for a volatile device).
    #[must_use]
    pub fn durability(&self) -> ktmrm_core::DurabilityStats {
        self.inner.engine.durability()
    }

    /// The engine's internal consistency ([`State::check_consistency`]).
    pub fn check_engine(&self) -> Result<(), &'static str> {
        self.inner.engine.with_state(State::check_consistency)
    }

    /// The KTM protocol violations recorded so far.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.ktm().violations()
    }

    /// Ends a test: [`Ktm::finish`] (waits for threaded callbacks, reports leaked enlistments
    /// and references) and returns every violation.
    pub fn finish(&self) -> Vec<Violation> {
        self.ktm().finish()
    }

    /// Refuses every later IOCTL with `STATUS_DEVICE_NOT_READY` (the driver's unload path).
    pub fn shutdown(&self) {
        self.inner.engine.shutdown();
    }

    /// Live transactions an unload must still see end ([`ktmrm_core::Engine::unfinished`]).
    #[must_use]
    pub fn unfinished(&self) -> usize {
        self.inner.engine.unfinished()
    }

    /// What `DriverUnload` does ([`SimDevice::unload_within`]) with the driver's 10 s wait.
    pub fn unload(&self) -> usize {
        self.unload_within(UNLOAD_WAIT)
    }

    /// What `DriverUnload` does, in the driver's order (driver/src/teardown.rs): refuse new
    /// requests and ask KTM to roll back every transaction ktmrm has not prepared
    /// (`ZwRollbackEnlistment`), wait up to `wait` until every transaction that must end has
    /// ended ([`ktmrm_core::Engine::unfinished`]: KTM delivers the outcomes, the engine answers
    /// them and closes the enlistments), and only then close the RM. Callbacks after that close
    /// are turned away (the driver's rundown); one KTM still waited on is recorded as a
    /// violation. Returns how many
    /// transactions were rolled back (by the engine's request, or by the RM's close for what
    /// the wait left).
    pub fn unload_within(&self, wait: Duration) -> usize {
        let asked = self.inner.engine.rollback_unprepared(&self.inner.port);
        let deadline = Instant::now() + wait;
        while self.inner.engine.unfinished() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let closed = self.ktm().close_resource_manager(self.inner.port.rm());
        self.inner.rm_closed.store(true, Ordering::SeqCst);
        asked + closed
    }
}

/// How long the driver's unload waits for transactions to end before it closes its RM anyway
/// (driver/src/teardown.rs, `UNLOAD_WAIT_MS`).
pub const UNLOAD_WAIT: Duration = Duration::from_secs(10);

/// A simulated process: its own handle table, its own opens of the device.
#[derive(Clone)]
pub struct SimProcess {
    dev: SimDevice,
    pid: ProcessId,
}

impl fmt::Debug for SimProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimProcess({})", self.pid.0)
    }
}

impl SimProcess {
    /// The process id in the model.
    #[must_use]
    pub const fn id(&self) -> ProcessId {
        self.pid
    }

    /// The device.
    #[must_use]
    pub const fn device(&self) -> &SimDevice {
        &self.dev
    }

    fn ktm(&self) -> &Ktm {
        self.dev.ktm()
    }

    /// Like `CreateFileW(\\.\KtmRm)` with `FILE_READ_DATA` / `FILE_WRITE_DATA` bits in `access`.
    #[must_use]
    pub fn open(&self, access: u32) -> SimFile {
        SimFile {
            process: self.clone(),
            access,
        }
    }

    /// `CreateTransaction` (see [`Ktm::create_transaction`]).
    pub fn create_transaction(&self, timeout_ms: u32, description: &str) -> Result<u64, NtStatus> {
        self.ktm()
            .create_transaction(self.pid, timeout_ms, description)
    }

    /// `CommitTransaction` (blocking; see [`Ktm::commit`]).
    pub fn commit(&self, tx: u64) -> NtStatus {
        self.ktm().commit(self.pid, tx)
    }

    /// `RollbackTransaction` (see [`Ktm::rollback`]).
    pub fn rollback(&self, tx: u64) -> NtStatus {
        self.ktm().rollback(self.pid, tx)
    }

    /// `CloseHandle`; the last handle of an uncommitted transaction rolls it back (docs/ktm.md §1,
    /// S11, S18).
    pub fn close_handle(&self, h: u64) -> NtStatus {
        self.ktm().close_handle(self.pid, h)
    }

    /// A handle to a non-transaction object (an event).
    #[must_use]
    pub fn create_event(&self) -> u64 {
        self.ktm().create_event(self.pid)
    }

    /// `DuplicateHandle` into `to`, with `access` (`None` = the same access).
    pub fn duplicate_handle(
        &self,
        h: u64,
        to: &SimProcess,
        access: Option<u32>,
    ) -> Result<u64, NtStatus> {
        self.ktm().duplicate_handle(self.pid, h, to.pid, access)
    }

    /// `GetTransactionInformation` + `GetTransactionId` (docs/ktm.md §6 "Checks").
    pub fn transaction_info(&self, tx: u64) -> Result<TxInfo, NtStatus> {
        self.ktm().transaction_info(self.pid, tx)
    }

    /// Enlists the built-in RM that votes no (see [`Ktm::enlist_veto_rm`]).
    pub fn enlist_veto_rm(&self, tx: u64) -> NtStatus {
        self.ktm().enlist_veto_rm(self.pid, tx)
    }

    /// Enlists the built-in RM that votes yes (see [`Ktm::enlist_yes_rm`]).
    pub fn enlist_yes_rm(&self, tx: u64) -> NtStatus {
        self.ktm().enlist_yes_rm(self.pid, tx)
    }

    /// Process exit: closes every handle (uncommitted transactions whose last handle this was
    /// roll back, docs/ktm.md §1, S11, S18). The process's handles are invalid afterwards.
    pub fn exit(&self) {
        self.ktm().terminate_process(self.pid);
    }
}

/// An open handle to the device.
#[derive(Clone, Debug)]
pub struct SimFile {
    process: SimProcess,
    access: u32,
}

/// Filler for the part of the system buffer that holds no input: a driver that reports more
/// output than it wrote hands this back, which a test can see.
const UNWRITTEN: u8 = 0xCD;

impl SimFile {
    /// The process that opened it.
    #[must_use]
    pub const fn process(&self) -> &SimProcess {
        &self.process
    }

    /// The access the handle was opened with.
    #[must_use]
    pub const fn access(&self) -> u32 {
        self.access
    }

    /// `DeviceIoControl` as the I/O manager does it: checks the code's access bits (bits 14–15)
    /// against the handle's access (`STATUS_ACCESS_DENIED` without calling the driver), builds
    /// one METHOD_BUFFERED system buffer of max(input, output) bytes holding the input, calls
    /// `Engine::dispatch`, and copies back `information` bytes unless the status is an error
    /// (warnings such as `STATUS_BUFFER_OVERFLOW` still copy). Returns the status and the bytes
    /// copied. Every code is handled as METHOD_BUFFERED (all of ktmrm's are). The access check is
    /// the I/O manager's, per `crates/proto/src/ioctl.rs`; docs/ktm.md §4 notes that
    /// IRP_MJ_DEVICE_CONTROL runs in the caller's process, which is why the caller's process id
    /// is what the engine passes to the port.
    pub fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
        let required = (code >> 14) & (FILE_READ_DATA | FILE_WRITE_DATA);
        if required & !self.access != 0 {
            return (NtStatus::ACCESS_DENIED, 0);
        }
        let mut buffer = vec![UNWRITTEN; input.len().max(output.len())];
        buffer[..input.len()].copy_from_slice(input);
        let dev = &self.process.dev.inner;
        let engine = crate::alloc_scope::Scope::engine();
        let (status, information) = dev.engine.dispatch(
            &dev.port,
            &self.process.pid,
            code,
            &mut buffer,
            input.len(),
            output.len(),
        );
        drop(engine);
        if status.is_error() {
            return (status, 0);
        }
        if information > output.len() {
            self.process
                .ktm()
                .record_violation(Violation::OutputOverrun {
                    status,
                    information,
                    output: output.len(),
                    code,
                });
        }
        let n = information.min(output.len());
        output[..n].copy_from_slice(&buffer[..n]);
        (status, n)
    }
}
