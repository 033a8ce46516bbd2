//! The scenarios the crash matrix crashes in: each writes through the device as an app would
//! and records, before each step, what it attempted ([`Unit`]), so the checks after recovery
//! know what every transaction wrote and whether the app was told it committed. Steps after a
//! crash fail; the scenario carries on without panicking, as a dead machine's threads would
//! simply stop mattering.

use crate::client::Client;
use crate::transport::{SimTransport, Transport};
use ktm_sim::{SimDevice, TxId};
use ktmrm_proto::Isolation;
use std::sync::Arc;

/// Keys every run starts with (value `0`), written before the crash points are counted.
pub const BASE_KEYS: [&str; 4] = ["base/0", "base/1", "base/2", "base/3"];

/// One unit of atomicity a scenario attempted: a KTM transaction, or one non-transacted write.
#[derive(Clone, Debug)]
pub struct Unit {
    /// For messages.
    pub name: String,
    /// The KTM transaction (`None`: a non-transacted write).
    pub tx: Option<TxId>,
    /// (key, new value or `None` for a delete). Units of one run write disjoint keys.
    pub writes: Vec<(String, Option<String>)>,
    /// The app was told it committed (CommitTransaction, the superior's commit, or the
    /// non-transacted write returned success).
    pub reported: bool,
    /// The outcome comes from a superior TM (the DTC-promoted path).
    pub superior: bool,
    /// The unit (by index) whose commit must keep this one from committing: a serializable
    /// reader whose read that unit overwrote.
    pub excluded_by: Option<usize>,
}

/// A scenario of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// ktmrm alone in a transaction, on a device that asks for single-phase commit (see
    /// [`Scenario::single_phase`]): KTM sends SINGLE_PHASE_COMMIT.
    SinglePhase,
    /// ktmrm and a second RM that votes yes: PREPARE, then COMMIT.
    TwoPhase,
    /// ktmrm and a second RM that votes no: ktmrm prepares, then rolls back.
    Vetoed,
    /// Non-transacted puts and a delete, each committed at once.
    NonTransacted,
    /// A transaction promoted to a superior TM (as MSDTC does), which prepares it and later
    /// decides commit.
    Promoted,
    /// Two interleaved transactions: one rolled back by the app, one committed.
    Interleaved,
    /// One transaction that rewrites its own writes (a new key put then deleted, a key put
    /// twice) beside a second RM: its Prepare record holds a delete of a key the store lacks.
    Rewrites,
    /// ktmrm and a second RM; the app rolls back while ktmrm forces its Prepare record, and the
    /// ROLLBACK overtakes the outstanding PREPARE (`ktm_sim::Interleavings::eager_rollback`).
    RollbackRace,
    /// Two serializable transactions read the same key; the first writes it and commits
    /// beside a second RM, so the other, doomed, must not commit (its CommitTransaction reports
    /// STATUS_TRANSACTION_ABORTED).
    Serializable,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 9] = [
        Scenario::SinglePhase,
        Scenario::TwoPhase,
        Scenario::Vetoed,
        Scenario::NonTransacted,
        Scenario::Promoted,
        Scenario::Interleaved,
        Scenario::Rewrites,
        Scenario::RollbackRace,
        Scenario::Serializable,
    ];

    /// The device asks KTM for single-phase commit: only where ktmrm is the sole writer.
    #[must_use]
    pub fn single_phase(self) -> bool {
        self == Scenario::SinglePhase
    }

    /// The CLI name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::SinglePhase => "single-phase",
            Scenario::TwoPhase => "two-phase",
            Scenario::Vetoed => "vetoed",
            Scenario::NonTransacted => "non-transacted",
            Scenario::Promoted => "promoted",
            Scenario::Interleaved => "interleaved",
            Scenario::Rewrites => "rewrites",
            Scenario::RollbackRace => "rollback-race",
            Scenario::Serializable => "serializable",
        }
    }
}

/// One app process on a device.
pub struct App {
    transport: Arc<SimTransport>,
    client: Client,
}

impl App {
    /// A new process with an open of `dev`.
    #[must_use]
    pub fn new(dev: &SimDevice) -> App {
        let transport = Arc::new(SimTransport::attach(dev));
        let client = Client::unchecked(transport.clone());
        App { transport, client }
    }

    /// The client.
    #[must_use]
    pub const fn client(&self) -> &Client {
        &self.client
    }

    fn begin(&self) -> Option<(u64, TxId)> {
        let h = self.transport.create_transaction(0, "crash-matrix").ok()?;
        let id = self.transport.process().transaction_info(h).ok()?.id;
        Some((h, id))
    }

    /// How many keys of `writes` are locked by another transaction: a write to it in a new
    /// transaction (rolled back afterwards, so nothing changes) is a conflict.
    pub fn locked(&self, writes: &[(String, Option<String>)]) -> usize {
        let Some((h, _)) = self.begin() else {
            return 0;
        };
        let locked = writes
            .iter()
            .filter(|(k, _)| {
                self.client
                    .put_in(h, k.as_bytes(), b"probe")
                    .err()
                    .and_then(|e| e.status())
                    == Some(ktmrm_proto::NtStatus::TRANSACTIONAL_CONFLICT)
            })
            .count();
        let _ = self.transport.rollback_transaction(h);
        let _ = self.transport.close_handle(h);
        locked
    }

    /// Writes `unit`'s writes in transaction `h`; false once one fails.
    fn write_all(&self, h: u64, unit: &Unit) -> bool {
        unit.writes.iter().all(|(k, v)| match v {
            Some(v) => self.client.put_in(h, k.as_bytes(), v.as_bytes()).is_ok(),
            None => self.client.delete_in(h, k.as_bytes()).is_ok(),
        })
    }
}

fn unit(name: &str, tx: Option<TxId>, writes: &[(&str, Option<&str>)]) -> Unit {
    Unit {
        name: name.into(),
        tx,
        writes: writes
            .iter()
            .map(|(k, v)| ((*k).into(), v.map(Into::into)))
            .collect(),
        reported: false,
        superior: false,
        excluded_by: None,
    }
}

/// Writes the base keys (non-transacted).
pub fn preload(app: &App) -> bool {
    BASE_KEYS
        .iter()
        .all(|k| app.client.put(k.as_bytes(), b"0").is_ok())
}

/// Runs `s` on `dev`, appending to `units` as it goes.
pub fn run(s: Scenario, dev: &SimDevice, units: &mut Vec<Unit>) {
    let app = App::new(dev);
    let tx_writes: [(&str, Option<&str>); 4] = [
        ("s/a", Some("1")),
        ("s/b", Some("1")),
        ("base/0", None),
        ("base/1", Some("1")),
    ];
    match s {
        Scenario::SinglePhase | Scenario::TwoPhase | Scenario::Vetoed => {
            let Some((h, id)) = app.begin() else { return };
            units.push(unit(s.name(), Some(id), &tx_writes));
            let Some(u) = units.last_mut() else { return };
            if !app.write_all(h, u) {
                return;
            }
            let second = match s {
                Scenario::TwoPhase => app.transport.enlist_yes_rm(h),
                Scenario::Vetoed => app.transport.veto(h),
                _ => Ok(()),
            };
            if second.is_err() {
                return;
            }
            u.reported = app.transport.commit_transaction(h).is_success();
            let _ = app.transport.close_handle(h);
        }
        Scenario::NonTransacted => {
            for (i, (k, v)) in [("n/a", Some("1")), ("base/2", None), ("n/b", Some("1"))]
                .into_iter()
                .enumerate()
            {
                units.push(unit(&format!("non-transacted #{i}"), None, &[(k, v)]));
                let r = match v {
                    Some(v) => app.client.put(k.as_bytes(), v.as_bytes()),
                    None => app.client.delete(k.as_bytes()),
                };
                let Some(u) = units.last_mut() else { return };
                u.reported = r.is_ok();
                if r.is_err() {
                    return;
                }
            }
        }
        Scenario::Promoted => {
            let Some((h, id)) = app.begin() else { return };
            let mut u = unit(s.name(), Some(id), &tx_writes);
            u.superior = true;
            units.push(u);
            let Some(u) = units.last_mut() else { return };
            if !app.write_all(h, u) {
                return;
            }
            let ktm = dev.ktm();
            if !ktm
                .create_superior_enlistment(app.transport.process().id(), h)
                .is_success()
                || !ktm.superior_prepare(id).is_success()
            {
                return;
            }
            // The superior decides late: the app's handle is long closed.
            let _ = app.transport.close_handle(h);
            u.reported = ktm.superior_decide(id, true).is_success();
        }
        Scenario::Rewrites => {
            let Some((h, id)) = app.begin() else { return };
            // What the transaction leaves, key by key (the checks compare final values).
            units.push(unit(
                s.name(),
                Some(id),
                &[("r/new", None), ("base/2", Some("2"))],
            ));
            let c = &app.client;
            let steps = c
                .put_in(h, b"r/new", b"1")
                .and_then(|()| c.put_in(h, b"base/2", b"1"))
                .and_then(|()| c.delete_in(h, b"r/new"))
                .and_then(|()| c.put_in(h, b"base/2", b"2"))
                .and_then(|()| app.transport.enlist_yes_rm(h));
            if steps.is_err() {
                return;
            }
            let committed = app.transport.commit_transaction(h).is_success();
            if let Some(u) = units.last_mut() {
                u.reported = committed;
            }
            let _ = app.transport.close_handle(h);
        }
        Scenario::RollbackRace => {
            let Some((h, id)) = app.begin() else { return };
            units.push(unit(s.name(), Some(id), &tx_writes));
            let Some(u) = units.last_mut() else { return };
            if !app.write_all(h, u) || app.transport.enlist_yes_rm(h).is_err() {
                return;
            }
            // While ktmrm forces its Prepare record for the yes vote.
            dev.log().rollback_during_force(dev.log().forces(), id);
            u.reported = app.transport.commit_transaction(h).is_success();
            let _ = app.transport.close_handle(h);
        }
        Scenario::Serializable => {
            let Some((h1, id1)) = app.begin() else { return };
            let Some((h2, id2)) = app.begin() else { return };
            let ser = Isolation::Serializable;
            let c = &app.client;
            let first = units.len();
            units.push(unit(
                "serializable writer",
                Some(id1),
                &[("z/a", Some("1")), ("base/1", Some("2"))],
            ));
            let mut doomed = unit("serializable reader", Some(id2), &[("z/b", Some("1"))]);
            doomed.excluded_by = Some(first);
            units.push(doomed);
            let steps = c
                .get_stating((h1, ser), b"base/1")
                .and_then(|_| c.get_stating((h2, ser), b"base/1"))
                .and_then(|_| c.put_stating((h1, ser), b"z/a", b"1"))
                .and_then(|()| c.put_stating((h1, ser), b"base/1", b"2"))
                .and_then(|()| c.put_stating((h2, ser), b"z/b", b"1"))
                .and_then(|()| app.transport.enlist_yes_rm(h1));
            if steps.is_err() {
                return;
            }
            let committed = app.transport.commit_transaction(h1).is_success();
            if let Some(u) = units.get_mut(first) {
                u.reported = committed;
            }
            let committed = app.transport.commit_transaction(h2).is_success();
            if let Some(u) = units.last_mut() {
                u.reported = committed;
            }
            let _ = app.transport.close_handle(h1);
            let _ = app.transport.close_handle(h2);
        }
        Scenario::Interleaved => {
            let Some((h1, id1)) = app.begin() else { return };
            let Some((h2, id2)) = app.begin() else { return };
            units.push(unit(
                "interleaved commit",
                Some(id1),
                &[("i/1", Some("1")), ("base/3", Some("1"))],
            ));
            units.push(unit(
                "interleaved rollback",
                Some(id2),
                &[("i/2", Some("2")), ("base/2", None)],
            ));
            let (Some(u1), Some(u2)) = (units.get(units.len() - 2), units.last()) else {
                return;
            };
            if !app.write_all(h1, u1) || !app.write_all(h2, u2) {
                return;
            }
            let _ = app.transport.rollback_transaction(h2);
            let _ = app.transport.close_handle(h2);
            let committed = app.transport.commit_transaction(h1).is_success();
            let n = units.len();
            if let Some(u) = units.get_mut(n - 2) {
                u.reported = committed;
            }
            let _ = app.transport.close_handle(h1);
        }
    }
}
