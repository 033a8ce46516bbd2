//! The conformance scenarios: one per rule of the README's "Semantics" (plus the 2PC paths and
//! quotas), run the same way against the simulator and the driver.
//!
//! Each scenario works under its own key prefix, so scenarios do not see each other's keys on a
//! shared device; on the simulator each also gets a fresh device, so counter deltas are exact.

mod isolation;
mod lifecycle;
mod limits;

use super::{Report, Step, Stop};
use crate::client::{Client, Transaction, TxSource};
use crate::error::{Error, Result};
use crate::transport::{Backend, TransportKind};
use ktmrm_proto::Stats;

/// A scenario: a name, the rule it checks, and its body.
pub struct Scenario {
    /// Short name for the CLI (`ktmrm-test scenarios NAME…`).
    pub name: &'static str,
    /// The rule of the README's "Semantics" it checks.
    pub rule: &'static str,
    /// The check; `Ok(note)` passes.
    pub run: fn(&Ctx) -> Step<String>,
}

/// What a scenario works with.
pub struct Ctx {
    /// A client on a device prepared for this scenario.
    pub client: Client,
    /// Where the device came from (for scenarios that need another one).
    pub backend: Backend,
    /// Every key this scenario writes starts with this.
    pub prefix: Vec<u8>,
}

impl Ctx {
    /// `prefix + name`.
    #[must_use]
    pub fn k(&self, name: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(name.as_bytes());
        k
    }

    /// A driver-created transaction.
    pub fn begin(&self) -> Result<Transaction> {
        self.client.begin()
    }

    /// A transaction from `source`.
    pub fn begin_from(&self, source: TxSource) -> Result<Transaction> {
        self.client.begin_with(
            source,
            crate::client::Isolation::ReadCommitted,
            0,
            "ktmrm-test scenario",
        )
    }

    /// Counters now.
    pub fn stats(&self) -> Result<Stats> {
        self.client.stats()
    }

    /// True on the simulator.
    #[must_use]
    pub fn is_sim(&self) -> bool {
        self.client.kind() == TransportKind::Sim
    }

    /// Skips unless on the simulator.
    pub fn sim_only(&self, why: &str) -> Step {
        if self.is_sim() {
            Ok(())
        } else {
            Err(Stop::Skip(why.into()))
        }
    }
}

/// Every scenario, in the order they run.
#[must_use]
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    v.extend(isolation::scenarios());
    v.extend(lifecycle::scenarios());
    v.extend(limits::scenarios());
    #[cfg(windows)]
    v.extend(super::txr::scenarios());
    #[cfg(windows)]
    v.extend(super::dtc::scenarios());
    v
}

/// A per-run tag for key prefixes on a shared device.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}.{nanos}", std::process::id())
}

/// Runs the scenarios named in `names` (all when empty) on `backend`.
pub fn run(backend: &Backend, names: &[String]) -> Result<Report> {
    run_with(backend, names, || backend.connect())
}

/// Like [`run`], with each scenario's device from `connect` (tests wrap the simulator in a
/// faulty transport to prove the scenarios notice).
pub fn run_with(
    backend: &Backend,
    names: &[String],
    connect: impl Fn() -> Result<std::sync::Arc<dyn crate::transport::Transport>>,
) -> Result<Report> {
    let scenarios = all();
    for n in names {
        if !scenarios.iter().any(|s| s.name == n) {
            let known: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
            return Err(Error::Unsupported {
                op: format!("scenario {n:?}"),
                reason: format!("no such scenario; known: {}", known.join(", ")),
            });
        }
    }
    let tag = run_tag();
    let mut report = Report::new("scenarios", backend.kind());
    for s in scenarios
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
    {
        let client = Client::new(connect()?)?;
        let prefix = match backend.kind() {
            TransportKind::Sim => format!("sc/{}/", s.name),
            TransportKind::Device => format!("ktmrm-test/{tag}/{}/", s.name),
        };
        let ctx = Ctx {
            client: client.clone(),
            backend: backend.clone(),
            prefix: prefix.into_bytes(),
        };
        report.run(s.name, s.rule, || {
            let r = (s.run)(&ctx);
            let v = ctx.client.transport().violations();
            if !v.is_empty() {
                return Err(Stop::Fail(format!(
                    "KTM protocol violations: {}",
                    v.join("; ")
                )));
            }
            r
        });
        // Leave the shared device as we found it.
        if backend.kind() == TransportKind::Device {
            let _ = ctx.client.delete_prefix(&ctx.prefix);
        }
    }
    Ok(report)
}
