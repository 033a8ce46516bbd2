//! A host model of the Windows Kernel Transaction Manager (KTM) for testing ktmrm on Linux.
//!
//! References like "docs/ktm.md §3, S2" point into `docs/ktm.md` (at the repository root):
//! section §3, source S2 of its source list. Each modelled behaviour names the section it
//! follows, and **(unverified)** marks the model's own choices where no source says what KTM does.
//!
//! # What is modelled
//! - [`Ktm`]: transactions (deterministic GUIDs, state, outcome, timeout on a virtual clock,
//!   description), resource managers with a notification callback (`TmEnableCallbacks`),
//!   enlistments, and simulated processes with Windows-like handle tables
//!   ([`Ktm::create_process`]).
//! - Client calls per process, like ktmw32: [`Ktm::create_transaction`], [`Ktm::commit`]
//!   (blocking), [`Ktm::rollback`], [`Ktm::close_handle`] (the last handle rolls back),
//!   [`Ktm::duplicate_handle`], [`Ktm::create_event`] (a non-transaction object).
//! - Kernel calls, used by [`SimPort`] (the engine's `KtmPort`): [`Ktm::reference_transaction`],
//!   [`Ktm::enlist`], [`Ktm::answer`], [`Ktm::close_enlistment`].
//! - The outcome driver, in KTM's order: SINGLE_PHASE_COMMIT for a sole enlistment that asks
//!   for it, else PREPREPARE → PREPARE → COMMIT, or ROLLBACK (docs/ktm.md §1, §3), delivered
//!   [`DeliveryMode::Inline`] or [`DeliveryMode::Threaded`], never under the model's lock.
//! - Two built-in RMs: [`Ktm::enlist_yes_rm`] and [`Ktm::enlist_veto_rm`].
//! - Faults: [`Ktm::fail_next_enlists`], [`Ktm::rollback_during_next_enlist`] (a notification
//!   before `enlist` returns), [`KtmConfig::duplicate_commit`].
//! - The protocol checker ([`Ktm::violations`], each a [`Violation`]; [`Ktm::finish`],
//!   [`Ktm::set_phase_probe`]) and [`Counters`].
//! - [`SimDevice`]: the engine behind an in-process stand-in for `\\.\KtmRm`; durable with
//!   [`SimDevice::durable`] (its log a [`SimLog`]), [`SimDevice::crash`] and
//!   [`SimDevice::restart`], and RM-side crash points ([`LogCrash`]); or with its log in a real
//!   file ([`SimDevice::durable_on_file`], the driver's `FileLog` over a [`DiskFile`]).
//! - Durability: [`Ktm::new_durable`] (a TM whose log survives
//!   [`Ktm::crash`]), durable RMs ([`Ktm::create_durable_resource_manager`]), recovery
//!   ([`Ktm::recover_transaction_manager`], [`Ktm::recover_resource_manager`],
//!   [`Ktm::recover_enlistment`]; RECOVER / LAST_RECOVER / INDOUBT as [`notify`]), crash points
//!   ([`Ktm::crash_at`], [`Ktm::crash_at_step`], [`Ktm::crash_points`], [`CrashPoint`]) and a
//!   superior TM ([`Ktm::create_superior_enlistment`], [`Ktm::superior_prepare`],
//!   [`Ktm::superior_decide`], [`Ktm::superior_crash`]).
//! - Interleavings the documentation allows but does not promise ([`Interleavings`], off by
//!   default, all on in the fuzzers and the crash matrix): single-phase commit beside other
//!   writers, ROLLBACK over an outstanding PREPREPARE/PREPARE, LAST_RECOVER before the recover
//!   calls; and [`Ktm::rollback_during_next`], a rollback racing a commit's phase.
//! - The RM object across a restart: TM recovery rebuilds it, [`Ktm::open_resource_manager`]
//!   opens it, and creating it again collides.
//!
//! # Waiting
//! KTM waits forever for an answer (docs/ktm.md §3 "No answer ⇒ the phase stalls"), and so does the
//! model by default: a withheld answer leaves the client's commit waiting. A test that wants a
//! broken RM to fail instead of hang sets [`KtmConfig::answer_deadline`] (the model's
//! invention): then it records [`Violation::NeverAnswered`] and treats the missing vote as a no
//! vote. In
//! `Inline` mode a callback that never *returns* still blocks its caller; use `Threaded` to test
//! that.

pub mod alloc_scope;
mod builtin;
mod checker;
mod client;
mod crash;
mod device;
mod diskfile;
mod driver;
mod durable;
mod durable_tm;
mod finish;
mod ids;
mod kernel;
mod ktm;
mod model;
mod port;
mod race;
mod recovery;
mod reopen;
mod restart;
mod simlog;
mod single_phase;
mod states;
mod stdlock;
mod violation;

pub use checker::{Counters, Phase, answer_fits};
pub use device::{SimConfig, SimDevice, SimFile, SimProcess, UNLOAD_WAIT};
pub use diskfile::{DiskCounts, DiskFile, STATUS_DISK_FULL, STATUS_IO_DEVICE_ERROR, io_status};
pub use durable::{CrashPoint, CrashStep, RecoveryArgument, notify, status};
pub use ids::{EnlistmentGuid, EnlistmentId, ProcessId, RmGuid, RmId};
pub use ktm::{Ktm, TxRef, WeakKtm, access};
pub use model::{
    Delivery, DeliveryMode, EnlistRace, EnlistmentInfo, Interleavings, KtmConfig, PhaseProbe,
    RmCallback, TxInfo,
};
pub use port::SimPort;
pub use restart::{DEVICE_RM_GUID, RestartError};
pub use simlog::{DiskLog, LogCrash, SimLog};
pub use states::{EnlistmentState, Outcome, TxState};
pub use stdlock::StdLock;
pub use violation::{Call, Violation, notification_name};

pub use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
pub use ktmrm_proto::NtStatus;
