//! The checks after a recovery: every unit is all-or-nothing and matches KTM's decision, every
//! unit the app was told committed is visible, an in-doubt unit is invisible with its keys
//! locked, and nothing else changed. A unit KTM has no decision for (a single-phase commit KTM
//! logs nothing for, a transaction KTM forgot in the crash, a non-transacted write) only has to
//! be all-or-nothing, and visible if the app was told it committed.

use super::scenarios::{App, BASE_KEYS, Unit};
use ktm_sim::{Outcome, SimDevice};
use ktmrm_proto::NtStatus;
use std::collections::BTreeMap;

/// The value of `key` before any unit: `0` for a base key, absent otherwise.
fn base(key: &str) -> Option<String> {
    BASE_KEYS.contains(&key).then(|| "0".to_string())
}

/// What one unit looks like in the committed view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Every write visible.
    Applied,
    /// No write visible.
    Absent,
    /// Absent, and its keys locked: prepared, waiting for its outcome.
    InDoubt,
}

/// Checks the committed view of `dev` against `units`. Returns what each unit looks like, or
/// the violations found (each naming `when` and the unit).
pub fn check(dev: &SimDevice, units: &[Unit], when: &str) -> Result<Vec<Seen>, Vec<String>> {
    check_rule(dev, units, when, false)
}

/// [`check`], after a run that no crash cut short (the log device failed instead): then a unit
/// the app was not told committed, and KTM did not commit, must be absent — a failure reported
/// to the app leaves no trace.
pub fn check_no_trace(
    dev: &SimDevice,
    units: &[Unit],
    when: &str,
) -> Result<Vec<Seen>, Vec<String>> {
    check_rule(dev, units, when, true)
}

fn check_rule(
    dev: &SimDevice,
    units: &[Unit],
    when: &str,
    no_trace: bool,
) -> Result<Vec<Seen>, Vec<String>> {
    let app = App::new(dev);
    let c = app.client();
    let ktm = dev.ktm();
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    let mut expect: BTreeMap<String, Option<String>> = BASE_KEYS
        .iter()
        .map(|k| ((*k).to_string(), base(k)))
        .collect();
    for u in units {
        let read = |k: &str| -> Result<Option<String>, String> {
            match c.get(k.as_bytes()) {
                Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
                Err(e) if e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND) => Ok(None),
                Err(e) => Err(format!("{when}: {}: get {k}: {e}", u.name)),
            }
        };
        let mut new = 0;
        let mut old = 0;
        for (k, v) in &u.writes {
            // A write that restores the value before it (a new key put and deleted again) counts
            // both ways.
            match read(k) {
                Ok(got) if got == *v || got == base(k) => {
                    new += usize::from(got == *v);
                    old += usize::from(got == base(k));
                }
                Ok(got) => bad.push(format!(
                    "{when}: {}: {k} = {got:?}, neither its write {v:?} nor before {:?}",
                    u.name,
                    base(k)
                )),
                Err(e) => bad.push(e),
            }
        }
        let all = u.writes.len();
        // KTM's durable decision, else what KTM still knows (a single-phase commit is logged
        // nowhere but in the RM).
        let decision = u.tx.map(|id| match ktm.decision(id) {
            Outcome::Undetermined => ktm
                .transaction_info_by_id(id)
                .map_or(Outcome::Undetermined, |i| i.outcome),
            d => d,
        });
        let applied = new == all && all > 0;
        let absent = old == all;
        if !applied && !absent {
            bad.push(format!(
                "{when}: {}: partial: {new} of {all} writes visible",
                u.name
            ));
        }
        if u.reported && !applied {
            bad.push(format!(
                "{when}: {}: the app was told it committed, but it is not visible",
                u.name
            ));
        }
        let s = match decision {
            Some(Outcome::Committed) if !applied => {
                bad.push(format!("{when}: {}: KTM committed it; not visible", u.name));
                Seen::Absent
            }
            Some(Outcome::Aborted) if !absent => {
                bad.push(format!("{when}: {}: KTM rolled it back; visible", u.name));
                Seen::Applied
            }
            // Known to KTM and undecided: prepared under a superior that has not decided.
            Some(Outcome::Undetermined)
                if u.tx.and_then(|id| ktm.transaction_info_by_id(id)).is_some() =>
            {
                if applied {
                    bad.push(format!("{when}: {}: undecided but visible", u.name));
                    Seen::Applied
                } else if app.locked(&u.writes) == all {
                    Seen::InDoubt
                } else {
                    bad.push(format!(
                        "{when}: {}: in doubt but its keys are not locked",
                        u.name
                    ));
                    Seen::Absent
                }
            }
            _ if applied => Seen::Applied,
            _ => Seen::Absent,
        };
        if no_trace && !u.reported && decision != Some(Outcome::Committed) && s != Seen::Absent {
            bad.push(format!(
                "{when}: {}: reported failed, yet {s:?}: a failure must leave no trace",
                u.name
            ));
        }
        if s != Seen::InDoubt && app.locked(&u.writes) > 0 {
            bad.push(format!(
                "{when}: {}: decided, but keys are still locked",
                u.name
            ));
        }
        if s == Seen::Applied {
            for (k, v) in &u.writes {
                expect.insert(k.clone(), v.clone());
            }
        }
        seen.push(s);
    }
    for (i, u) in units.iter().enumerate() {
        let by = u
            .excluded_by
            .and_then(|j| Some((units.get(j)?, *seen.get(j)?)));
        if let Some((other, Seen::Applied)) = by
            && seen.get(i) == Some(&Seen::Applied)
        {
            bad.push(format!(
                "{when}: {}: committed although {} overwrote what it read",
                u.name, other.name
            ));
        }
    }
    if let Err(e) = dev.check_engine() {
        bad.push(format!("{when}: engine state: {e}"));
    }
    let keys = expect.values().filter(|v| v.is_some()).count() as u64;
    match c.stats() {
        Ok(st) if seen.contains(&Seen::InDoubt) => {
            if st.prepared == 0 {
                bad.push(format!("{when}: STATS shows no prepared transaction"));
            }
        }
        Ok(st) => {
            if (st.keys, st.prepared, st.live_transactions) != (keys, 0, 0) {
                bad.push(format!(
                    "{when}: STATS keys {} prepared {} live {}, expected {keys} 0 0",
                    st.keys, st.prepared, st.live_transactions
                ));
            }
        }
        Err(e) => bad.push(format!("{when}: stats: {e}")),
    }
    if bad.is_empty() { Ok(seen) } else { Err(bad) }
}
