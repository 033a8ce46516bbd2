//! How transactions end: atomic commit, the four ways to roll back, and what an ended
//! transaction answers.

use super::{Ctx, Scenario};
use crate::client::{Transaction, TxSource};
use crate::error::Result;
use crate::suite::{Step, expect_eq, expect_none_left_live, expect_status, fail};
use ktmrm_proto::{LIST_MIN_OUTPUT, NtStatus, Stats};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "commit-atomic",
            rule: "commit makes all of T's writes visible at once (a concurrent reader sees none or all)",
            run: commit_atomic,
        },
        Scenario {
            name: "rollback-explicit",
            rule: "an explicit rollback discards T's writes and releases its key locks",
            run: rollback_explicit,
        },
        Scenario {
            name: "rollback-timeout",
            rule: "a KTM timeout rolls T back: writes discarded, locks released",
            run: rollback_timeout,
        },
        Scenario {
            name: "rollback-veto",
            rule: "another RM's no vote rolls T back: commit fails, writes discarded, locks released",
            run: rollback_veto,
        },
        Scenario {
            name: "rollback-handle-close",
            rule: "closing T's last handle rolls it back: writes discarded, locks released",
            run: rollback_handle_close,
        },
        Scenario {
            name: "ended-tx-not-active",
            rule: "any operation naming a committed or rolled-back transaction → STATUS_TRANSACTION_NOT_ACTIVE",
            run: ended_tx_not_active,
        },
        Scenario {
            name: "read-only-transaction",
            rule: "a transaction that only read commits without changing the store (read-only vote)",
            run: read_only_transaction,
        },
        Scenario {
            name: "two-rms-commit",
            rule: "with a second RM enlisted, both commit together through the two phases",
            run: two_rms_commit,
        },
        Scenario {
            name: "tx-sources",
            rule: "transactions from BEGIN and from ktmw32 CreateTransaction behave the same",
            run: tx_sources,
        },
    ]
}

/// Writes `prefix`+`w0..w{n}` in T, plus deletes `gone`.
fn write_many(c: &Ctx, t: &Transaction, n: usize) -> Result<Vec<Vec<u8>>> {
    let keys: Vec<Vec<u8>> = (0..n).map(|i| c.k(&format!("w{i:03}"))).collect();
    for k in &keys {
        t.put(k, k)?;
    }
    t.delete(&c.k("gone"))?;
    Ok(keys)
}

/// Checks `keys` are absent, `gone` present, and every key is free to write again.
fn discarded_and_unlocked(c: &Ctx, keys: &[Vec<u8>]) -> Step {
    for k in keys {
        expect_status(
            "discarded write",
            c.client.get(k),
            NtStatus::OBJECT_NAME_NOT_FOUND,
        )?;
    }
    expect_eq(
        "discarded delete",
        c.client.get(&c.k("gone"))?,
        b"still".to_vec(),
    )?;
    // Locks are released: another writer may take every key now.
    let u = c.begin()?;
    for k in keys.iter().chain([&c.k("gone")]) {
        u.put(k, b"u")?;
    }
    drop(u);
    Ok(())
}

fn commit_atomic(c: &Ctx) -> Step<String> {
    const N: usize = 40;
    c.client.put(&c.k("gone"), b"still")?;
    let mut t = c.begin()?;
    let keys = write_many(c, &t, N)?;
    // A reader polls the prefix with one LIST call at a time (one page holds all keys), so each
    // answer is a snapshot: it must show the keys none or all.
    let stop = Arc::new(AtomicBool::new(false));
    let (client, prefix, stop2) = (c.client.clone(), c.k("w"), stop.clone());
    let reader = std::thread::spawn(
        move || -> std::result::Result<(usize, Vec<usize>), String> {
            let mut seen = Vec::new();
            let mut polls = 0;
            while !stop2.load(Ordering::Relaxed) || polls == 0 {
                let (keys, more) = client
                    .list_page(0, &prefix, &[], 0, 64 * 1024)
                    .map_err(|e| e.to_string())?;
                if more {
                    return Err("one page did not hold the keys".into());
                }
                if !seen.contains(&keys.len()) {
                    seen.push(keys.len());
                }
                polls += 1;
            }
            Ok((polls, seen))
        },
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    t.commit()?;
    std::thread::sleep(std::time::Duration::from_millis(5));
    stop.store(true, Ordering::Relaxed);
    let (polls, seen) = reader
        .join()
        .map_err(|_| crate::suite::Stop::Fail("reader panicked".into()))?
        .map_err(crate::suite::Stop::Fail)?;
    if seen.iter().any(|n| *n != 0 && *n != N) {
        return fail(format!(
            "a reader saw a partial commit: key counts {seen:?}"
        ));
    }
    for k in &keys {
        expect_eq("committed value", c.client.get(k)?, k.clone())?;
    }
    expect_status(
        "committed delete",
        c.client.get(&c.k("gone")),
        NtStatus::OBJECT_NAME_NOT_FOUND,
    )?;
    Ok(format!(
        "{polls} concurrent LIST snapshots saw only {seen:?} keys"
    ))
}

fn rollback_explicit(c: &Ctx) -> Step<String> {
    c.client.put(&c.k("gone"), b"still")?;
    let before = c.stats()?.rollbacks;
    let mut t = c.begin()?;
    let keys = write_many(c, &t, 5)?;
    t.rollback()?;
    expect_eq("rollbacks counted", c.stats()?.rollbacks - before, 1)?;
    discarded_and_unlocked(c, &keys)?;
    Ok(String::new())
}

fn rollback_timeout(c: &Ctx) -> Step<String> {
    c.client.put(&c.k("gone"), b"still")?;
    let mut notes = Vec::new();
    for source in [TxSource::Begin, TxSource::Ktmw32] {
        let mut t = c.client.begin_with(
            source,
            crate::client::Isolation::ReadCommitted,
            300,
            "ktmrm-test timeout",
        )?;
        let keys = write_many(c, &t, 3)?;
        // Simulator: advance KTM's virtual clock; device: wait for the real timeout.
        c.client.transport().elapse(1500);
        expect_status(
            "PUT after the timeout",
            t.put(&keys[0], b"late"),
            NtStatus::TRANSACTION_NOT_ACTIVE,
        )?;
        discarded_and_unlocked(c, &keys)?;
        match t.commit() {
            Ok(()) => return fail(format!("{source:?}: commit after the timeout succeeded")),
            Err(e) => notes.push(format!(
                "{source:?}: commit after timeout → {}",
                e.script_name()
            )),
        }
    }
    Ok(notes.join("; "))
}

fn rollback_veto(c: &Ctx) -> Step<String> {
    c.sim_only("needs a second RM that votes no; only the simulator has one")?;
    c.client.put(&c.k("gone"), b"still")?;
    let before = c.stats()?;
    let mut t = c.begin()?;
    let keys = write_many(c, &t, 3)?;
    t.veto()?;
    expect_status(
        "commit of a vetoed transaction",
        t.commit(),
        NtStatus::TRANSACTION_ABORTED,
    )?;
    let after = c.stats()?;
    discarded_and_unlocked(c, &keys)?;
    expect_eq("rollbacks counted", after.rollbacks - before.rollbacks, 1)?;
    expect_eq("commits counted", after.commits - before.commits, 0)?;
    Ok(String::new())
}

fn rollback_handle_close(c: &Ctx) -> Step<String> {
    c.client.put(&c.k("gone"), b"still")?;
    for source in [TxSource::Begin, TxSource::Ktmw32] {
        let before = c.stats()?;
        let t = c.begin_from(source)?;
        let keys = write_many(c, &t, 3)?;
        let st = t.close();
        expect_eq("close status", st, NtStatus::SUCCESS)?;
        let after = c.stats()?;
        discarded_and_unlocked(c, &keys)?;
        expect_eq(
            &format!("{source:?}: rollbacks counted"),
            after.rollbacks - before.rollbacks,
            1,
        )?;
        expect_eq(
            &format!("{source:?}: live transactions"),
            after.live_transactions,
            before.live_transactions,
        )?;
    }
    Ok(String::new())
}

fn ended_tx_not_active(c: &Ctx) -> Step<String> {
    let k = c.k("k");
    c.client.put(&k, b"v")?;
    let na = NtStatus::TRANSACTION_NOT_ACTIVE;
    for (how, commit) in [("committed", true), ("rolled back", false)] {
        let mut t = c.begin()?;
        t.put(&c.k("mine"), b"x")?;
        if commit {
            t.commit()?
        } else {
            t.rollback()?
        }
        let h = t.handle();
        expect_status(&format!("{how}: PUT"), t.put(&k, b"x"), na)?;
        expect_status(&format!("{how}: DELETE"), t.delete(&k), na)?;
        expect_status(&format!("{how}: GET"), t.get(&k), na)?;
        expect_status(
            &format!("{how}: LIST"),
            c.client.list_page(h, &c.prefix, &[], 0, LIST_MIN_OUTPUT),
            na,
        )?;
    }
    // A transaction never used with ktmrm, ended before its first request.
    let mut t = c.begin()?;
    t.commit()?;
    expect_status("committed before first use: PUT", t.put(&k, b"x"), na)?;
    let mut t = c.begin_from(TxSource::Ktmw32)?;
    t.rollback()?;
    expect_status("ktmw32, rolled back before first use: GET", t.get(&k), na)?;
    expect_eq("store unchanged", c.client.get(&k)?, b"v".to_vec())?;
    Ok(String::new())
}

fn read_only_transaction(c: &Ctx) -> Step<String> {
    let k = c.k("k");
    c.client.put(&k, b"v")?;
    let read_in = |t: &Transaction| -> Step {
        expect_eq("GET in T", t.get(&k)?, b"v".to_vec())?;
        expect_eq("LIST in T", t.list(&c.prefix)?, vec![k.clone()])?;
        Ok(())
    };
    // ktmrm never asks for single-phase commit (it cannot know no other RM writes), so even
    // alone it gets PREPARE, which a transaction that only read answers read-only.
    let before = c.stats()?;
    // After each commit: the store as it was, and no transaction left live.
    let unchanged = |now: &Stats| -> Step {
        expect_eq(
            "store unchanged",
            c.client.snapshot(&c.prefix)?,
            vec![(k.clone(), b"v".to_vec())],
        )?;
        expect_none_left_live(&before, now)
    };
    let mut t = c.begin()?;
    read_in(&t)?;
    t.commit()?;
    let mid = c.stats()?;
    unchanged(&mid)?;
    let solo = format!(
        "sole RM: read_only +{}, single_phase_commits +{}, commits +{}",
        mid.read_only - before.read_only,
        mid.single_phase_commits - before.single_phase_commits,
        mid.commits - before.commits
    );
    // With a second RM there is a PREPARE, which a transaction that only read answers read-only.
    c.sim_only(&format!(
        "{solo}; the read-only vote needs a second RM, which only the simulator has"
    ))?;
    let mut t = c.begin()?;
    read_in(&t)?;
    c.client.transport().enlist_yes_rm(t.handle())?;
    t.commit()?;
    let after = c.stats()?;
    expect_eq(
        "two RMs: answered read-only",
        after.read_only - mid.read_only,
        1,
    )?;
    expect_eq("two RMs: commits counted", after.commits - mid.commits, 0)?;
    unchanged(&after)?;
    Ok(solo)
}

fn two_rms_commit(c: &Ctx) -> Step<String> {
    let (k, j) = (c.k("k"), c.k("j"));
    // Even alone, ktmrm commits in two phases: it never asks for single-phase commit, which
    // KTM could use to commit it alone beside another writer.
    let before = c.stats()?;
    let mut t = c.begin()?;
    t.put(&j, b"solo")?;
    t.commit()?;
    let mid = c.stats()?;
    expect_eq(
        "sole RM: single-phase commits",
        mid.single_phase_commits - before.single_phase_commits,
        0,
    )?;
    expect_eq("sole RM: commits", mid.commits - before.commits, 1)?;
    c.sim_only(
        "needs a second RM that votes yes; on Windows the txr-* scenarios enlist the registry",
    )?;
    let mut t = c.begin()?;
    t.put(&k, b"both")?;
    c.client.transport().enlist_yes_rm(t.handle())?;
    t.commit()?;
    let after = c.stats()?;
    expect_eq("visible", c.client.get(&k)?, b"both".to_vec())?;
    expect_eq("commits", after.commits - mid.commits, 1)?;
    expect_eq(
        "two phases (no single-phase commit)",
        after.single_phase_commits - mid.single_phase_commits,
        0,
    )?;
    expect_none_left_live(&before, &after)?;
    Ok(String::new())
}

fn tx_sources(c: &Ctx) -> Step<String> {
    for source in [TxSource::Begin, TxSource::Ktmw32] {
        let k = c.k(&format!("{source:?}"));
        let mut t = c.begin_from(source)?;
        t.put(&k, b"1")?;
        expect_status(
            &format!("{source:?}: invisible outside"),
            c.client.get(&k),
            NtStatus::OBJECT_NAME_NOT_FOUND,
        )?;
        t.commit()?;
        expect_eq(
            &format!("{source:?}: visible after commit"),
            c.client.get(&k)?,
            b"1".to_vec(),
        )?;
    }
    Ok(String::new())
}
