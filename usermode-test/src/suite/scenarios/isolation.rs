//! Isolation rules: what each view sees, and first-writer-wins locking without waiting.

use super::{Ctx, Scenario};
use crate::suite::{Step, expect, expect_eq, expect_status, fail};
use ktmrm_proto::NtStatus;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "reads-never-block",
            rule: "reads never block and never conflict, even on keys another transaction wrote",
            run: reads_never_block,
        },
        Scenario {
            name: "own-writes-visible",
            rule: "inside T a read sees T's pending writes, including deletes",
            run: own_writes_visible,
        },
        Scenario {
            name: "committed-only-outside",
            rule: "outside T (no transaction, or another one) reads see committed data only",
            run: committed_only_outside,
        },
        Scenario {
            name: "write-write-conflict",
            rule: "a write to a key another live transaction wrote fails at once with \
                   STATUS_TRANSACTIONAL_CONFLICT; the loser stays active and keeps its writes",
            run: write_write_conflict,
        },
        Scenario {
            name: "non-transacted-conflict",
            rule: "a non-transacted write to a key a live transaction wrote → STATUS_TRANSACTIONAL_CONFLICT",
            run: non_transacted_conflict,
        },
        Scenario {
            name: "absent-key-not-found",
            rule: "GET or DELETE of a key absent in the caller's view → STATUS_OBJECT_NAME_NOT_FOUND",
            run: absent_key_not_found,
        },
    ]
}

/// The longest a call may take before we call it blocked.
const BLOCKED: Duration = Duration::from_secs(5);

fn reads_never_block(c: &Ctx) -> Step<String> {
    let (k, other) = (c.k("k"), c.k("other"));
    c.client.put(&k, b"committed")?;
    let t = c.begin()?;
    t.put(&k, b"pending")?;
    t.delete(&k)?;
    t.put(&k, b"pending2")?;
    let conflicts = c.stats()?.conflicts;
    // Read from another thread so a read that blocks shows up as a timeout, not a hang.
    let client = c.client.clone();
    let u = c.begin()?;
    let u_handle = u.handle();
    let (kk, prefix) = (k.clone(), c.prefix.clone());
    let (send, recv) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let r = (|| -> crate::error::Result<_> {
            let outside = client.get(&kk)?;
            let in_u = client.get_in(u_handle, &kk)?;
            let listed_outside = client.list(&prefix)?;
            let listed_in_u = client.list_in(u_handle, &prefix)?;
            Ok((outside, in_u, listed_outside, listed_in_u))
        })();
        let _ = send.send((r, start.elapsed()));
    });
    let Ok((r, took)) = recv.recv_timeout(BLOCKED) else {
        return fail(format!(
            "reads of a key locked by another transaction did not return within {BLOCKED:?}"
        ));
    };
    let (outside, in_u, listed_outside, listed_in_u) = r?;
    expect_eq(
        "committed read of the locked key",
        outside,
        b"committed".to_vec(),
    )?;
    expect_eq("read in another transaction", in_u, b"committed".to_vec())?;
    expect_eq("LIST outside", listed_outside, vec![k.clone()])?;
    expect_eq("LIST in another transaction", listed_in_u, vec![k.clone()])?;
    expect_eq(
        "conflicts counted by reads",
        c.stats()?.conflicts,
        conflicts,
    )?;
    // A read of an absent key in U does not conflict either.
    expect_status(
        "GET absent in U",
        u.get(&other),
        NtStatus::OBJECT_NAME_NOT_FOUND,
    )?;
    Ok(format!("4 reads of a locked key returned in {took:?}"))
}

/// Store: `b` = "old", `c` = "old". T: put `a` (new key), put `b`, delete `c`.
fn setup_view(c: &Ctx) -> Step<crate::client::Transaction> {
    c.client.put(&c.k("b"), b"old")?;
    c.client.put(&c.k("c"), b"old")?;
    let t = c.begin()?;
    t.put(&c.k("a"), b"new")?;
    t.put(&c.k("b"), b"new")?;
    t.delete(&c.k("c"))?;
    Ok(t)
}

fn own_writes_visible(c: &Ctx) -> Step<String> {
    let t = setup_view(c)?;
    expect_eq("T reads its new key", t.get(&c.k("a"))?, b"new".to_vec())?;
    expect_eq("T reads its overwrite", t.get(&c.k("b"))?, b"new".to_vec())?;
    expect_status(
        "T reads its delete",
        t.get(&c.k("c")),
        NtStatus::OBJECT_NAME_NOT_FOUND,
    )?;
    expect_eq("T's LIST", t.list(&c.prefix)?, vec![c.k("a"), c.k("b")])?;
    // Re-creating a key T deleted, then deleting it again, stays in T's view only.
    t.put(&c.k("c"), b"again")?;
    expect_eq("T reads its re-put", t.get(&c.k("c"))?, b"again".to_vec())?;
    t.delete(&c.k("a"))?;
    expect_status(
        "T reads a new key it deleted",
        t.get(&c.k("a")),
        NtStatus::OBJECT_NAME_NOT_FOUND,
    )?;
    expect_eq(
        "T's LIST after",
        t.list(&c.prefix)?,
        vec![c.k("b"), c.k("c")],
    )?;
    expect_eq(
        "committed c unchanged",
        c.client.get(&c.k("c"))?,
        b"old".to_vec(),
    )?;
    Ok(String::new())
}

fn committed_only_outside(c: &Ctx) -> Step<String> {
    let t = setup_view(c)?;
    let u = c.begin()?;
    for (who, h) in [("no transaction", 0), ("another transaction", u.handle())] {
        expect_status(
            &format!("{who}: GET T's new key"),
            c.client.get_in(h, &c.k("a")),
            NtStatus::OBJECT_NAME_NOT_FOUND,
        )?;
        expect_eq(
            &format!("{who}: GET T's overwrite"),
            c.client.get_in(h, &c.k("b"))?,
            b"old".to_vec(),
        )?;
        expect_eq(
            &format!("{who}: GET T's delete"),
            c.client.get_in(h, &c.k("c"))?,
            b"old".to_vec(),
        )?;
        expect_eq(
            &format!("{who}: LIST"),
            c.client.list_in(h, &c.prefix)?,
            vec![c.k("b"), c.k("c")],
        )?;
    }
    drop(t);
    expect_eq(
        "after T rolled back",
        c.client.get(&c.k("b"))?,
        b"old".to_vec(),
    )?;
    Ok(String::new())
}

fn write_write_conflict(c: &Ctx) -> Step<String> {
    let (k1, k2, k3) = (c.k("k1"), c.k("k2"), c.k("k3"));
    c.client.put(&k2, b"base")?;
    let before = c.stats()?.conflicts;
    let mut t = c.begin()?;
    t.put(&k1, b"t1")?;
    t.put(&k2, b"t2")?;
    let mut u = c.begin()?;
    let start = Instant::now();
    expect_status(
        "U PUT of T's key",
        u.put(&k2, b"u2"),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    expect_status(
        "U DELETE of T's key",
        u.delete(&k2),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    expect_status(
        "U PUT of T's new key",
        u.put(&k1, b"u1"),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    let took = start.elapsed();
    expect("conflicts answered at once", took < BLOCKED)?;
    expect_eq("conflicts counted", c.stats()?.conflicts - before, 3)?;
    // The loser is still active: it can write elsewhere and commit.
    u.put(&k3, b"u3")?;
    expect_eq("U still reads committed k2", u.get(&k2)?, b"base".to_vec())?;
    u.commit()?;
    expect_eq("U's commit visible", c.client.get(&k3)?, b"u3".to_vec())?;
    // The winner kept all its writes.
    expect_eq("T's k1", t.get(&k1)?, b"t1".to_vec())?;
    expect_eq("T's k2", t.get(&k2)?, b"t2".to_vec())?;
    // And T's own failed write does not exist: a conflict in T leaves T's other writes too.
    let v = c.begin()?;
    v.put(&k3, b"v3")?;
    expect_status(
        "T PUT of V's key",
        t.put(&k3, b"t3"),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    expect_eq("T's k1 after its own conflict", t.get(&k1)?, b"t1".to_vec())?;
    drop(v);
    t.commit()?;
    expect_eq("T's commit: k1", c.client.get(&k1)?, b"t1".to_vec())?;
    expect_eq("T's commit: k2", c.client.get(&k2)?, b"t2".to_vec())?;
    expect_eq("k3 as U committed it", c.client.get(&k3)?, b"u3".to_vec())?;
    Ok(format!("3 conflicting writes answered in {took:?}"))
}

fn non_transacted_conflict(c: &Ctx) -> Step<String> {
    let (k, free) = (c.k("k"), c.k("free"));
    c.client.put(&k, b"base")?;
    let mut t = c.begin()?;
    t.put(&k, b"t")?;
    expect_status(
        "non-transacted PUT",
        c.client.put(&k, b"x"),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    expect_status(
        "non-transacted DELETE",
        c.client.delete(&k),
        NtStatus::TRANSACTIONAL_CONFLICT,
    )?;
    c.client.put(&free, b"ok")?;
    expect_eq("value unchanged", c.client.get(&k)?, b"base".to_vec())?;
    t.rollback()?;
    c.client.put(&k, b"after")?;
    expect_eq(
        "lock released by rollback",
        c.client.get(&k)?,
        b"after".to_vec(),
    )?;
    Ok(String::new())
}

fn absent_key_not_found(c: &Ctx) -> Step<String> {
    let (k, gone) = (c.k("absent"), c.k("gone"));
    c.client.put(&gone, b"v")?;
    let nf = NtStatus::OBJECT_NAME_NOT_FOUND;
    expect_status("GET absent", c.client.get(&k), nf)?;
    expect_status("DELETE absent", c.client.delete(&k), nf)?;
    let t = c.begin()?;
    expect_status("GET absent in T", t.get(&k), nf)?;
    expect_status("DELETE absent in T", t.delete(&k), nf)?;
    t.delete(&gone)?;
    expect_status("GET of T's delete in T", t.get(&gone), nf)?;
    expect_status("DELETE of T's delete in T", t.delete(&gone), nf)?;
    expect_eq(
        "committed value still there",
        c.client.get(&gone)?,
        b"v".to_vec(),
    )?;
    c.client.put(&k, b"now")?;
    c.client.delete(&k)?;
    expect_status("GET after a committed delete", c.client.get(&k), nf)?;
    Ok(String::new())
}
