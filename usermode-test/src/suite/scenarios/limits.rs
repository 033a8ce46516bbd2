//! Sizes, LIST order and pagination, and quotas.

use super::{Ctx, Scenario};
use crate::client::Client;
use crate::suite::{Step, Stop, expect, expect_eq, expect_none_left_live, expect_status, fail};
use ktmrm_proto::{LIST_MIN_OUTPUT, Limits, MAX_KEY_LEN, MAX_VALUE_LEN, NtStatus};
use std::collections::BTreeSet;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "size-limits",
            rule: "key empty or > 255 bytes, value > 65,536 bytes → STATUS_INVALID_PARAMETER; the maxima work",
            run: size_limits,
        },
        Scenario {
            name: "list-order-pagination",
            rule: "LIST returns the keys of the caller's view in bytewise order, page by page",
            run: list_order_pagination,
        },
        Scenario {
            name: "quotas",
            rule: "write-set, live-transaction, key and byte quotas → STATUS_QUOTA_EXCEEDED, nothing half-done",
            run: quotas,
        },
    ]
}

fn size_limits(c: &Ctx) -> Step<String> {
    let ip = NtStatus::INVALID_PARAMETER;
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    let t = c.begin()?;
    for (who, h) in [("non-transacted", 0), ("in T", t.handle())] {
        for (what, key) in [("empty key", &b""[..]), ("256-byte key", &long[..])] {
            expect_status(
                &format!("{who}: PUT {what}"),
                c.client.put_in(h, key, b"v"),
                ip,
            )?;
            expect_status(&format!("{who}: GET {what}"), c.client.get_in(h, key), ip)?;
            expect_status(
                &format!("{who}: DELETE {what}"),
                c.client.delete_in(h, key),
                ip,
            )?;
        }
        let k = c.k(&format!("big-{}", h != 0));
        expect_status(
            &format!("{who}: PUT 65,537-byte value"),
            c.client.put_in(h, &k, &vec![7; MAX_VALUE_LEN + 1]),
            ip,
        )?;
        expect_status(
            &format!("{who}: LIST 256-byte prefix"),
            c.client.list_in(h, &long),
            ip,
        )?;
        // The maxima are accepted and read back whole (GET grows its buffer past the first try).
        let mut max_key = c.k("");
        max_key.resize(MAX_KEY_LEN, b'm');
        max_key[MAX_KEY_LEN - 1] = u8::from(h != 0);
        let big: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
        c.client.put_in(h, &max_key, &big)?;
        expect(
            "65,536-byte value read back",
            c.client.get_in(h, &max_key)? == big,
        )?;
        c.client.put_in(h, &k, b"")?;
        expect_eq(
            &format!("{who}: empty value"),
            c.client.get_in(h, &k)?,
            Vec::new(),
        )?;
    }
    drop(t);
    Ok(String::new())
}

/// Keys chosen so that bytewise order differs from most other orders (case, high bytes, NULs,
/// prefixes of each other), plus enough to need many pages, plus neighbours outside the prefix.
fn list_keys(c: &Ctx) -> (BTreeSet<Vec<u8>>, Vec<Vec<u8>>) {
    let p = c.prefix.clone();
    let mut keys = BTreeSet::new();
    let suffixes: [&[u8]; 14] = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"A",
        b"B",
        b"a",
        b"a\x00",
        b"a\xff",
        b"ab",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\xff\xff",
    ];
    for s in suffixes {
        keys.insert([&p[..], s].concat());
    }
    for i in 0..150 {
        keys.insert([&p[..], format!("n{i:03}").as_bytes()].concat());
    }
    for fill in [b'z', 0xfe] {
        let mut k = p.clone();
        k.resize(MAX_KEY_LEN, fill);
        keys.insert(k);
    }
    // Outside: the prefix minus its last byte, and with its last byte incremented.
    let mut shorter = p.clone();
    shorter.pop();
    let mut next = p.clone();
    if let Some(last) = next.last_mut() {
        *last += 1;
    }
    (keys, vec![shorter, next])
}

/// Lists `prefix` in `h`'s view page by page and checks the pages join up.
fn paged(
    client: &Client,
    h: u64,
    prefix: &[u8],
    max_keys: u32,
    out: usize,
) -> Step<(Vec<Vec<u8>>, usize)> {
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut pages = 0;
    loop {
        let cursor = all.last().cloned().unwrap_or_default();
        let (keys, more) = client.list_page(h, prefix, &cursor, max_keys, out)?;
        pages += 1;
        if max_keys != 0 && keys.len() > max_keys as usize {
            return fail(format!(
                "page of {} keys with max_keys {max_keys}",
                keys.len()
            ));
        }
        if keys.is_empty() && more {
            return fail("empty page with MORE set");
        }
        all.extend(keys);
        if !more {
            return Ok((all, pages));
        }
        if pages > 10_000 {
            return fail("pagination does not end");
        }
    }
}

fn list_order_pagination(c: &Ctx) -> Step<String> {
    let (mut model, outside) = list_keys(c);
    for k in model.iter().chain(&outside) {
        c.client.put(k, b"v")?;
    }
    let want: Vec<Vec<u8>> = model.iter().cloned().collect();
    expect_eq("LIST (all pages)", c.client.list(&c.prefix)?, want.clone())?;
    let mut notes = Vec::new();
    for (max_keys, out) in [(1, 4096), (7, 4096), (0, LIST_MIN_OUTPUT), (0, 1 << 20)] {
        let (got, pages) = paged(&c.client, 0, &c.prefix, max_keys, out)?;
        expect_eq(
            &format!("paged LIST, max_keys {max_keys}, {out}-byte output"),
            got,
            want.clone(),
        )?;
        notes.push(format!("max_keys {max_keys}/{out} B: {pages} pages"));
    }
    // A cursor in the middle starts strictly after it.
    let mid = want[want.len() / 2].clone();
    let (after, _) = c.client.list_page(0, &c.prefix, &mid, 3, 4096)?;
    expect_eq(
        "page after a cursor",
        after,
        want[want.len() / 2 + 1..want.len() / 2 + 4].to_vec(),
    )?;
    // In a transaction's view: its deletes vanish, its new keys appear in order.
    let t = c.begin()?;
    let mut changes = 0;
    for (i, k) in want.iter().enumerate() {
        if i % 3 == 0 {
            t.delete(k)?;
            model.remove(k);
            changes += 1;
        }
    }
    for s in [&b"a\x01"[..], b"n0005", b"\x00\x01", b"zz"] {
        let k = [&c.prefix[..], s].concat();
        t.put(&k, b"t")?;
        model.insert(k);
    }
    let want_t: Vec<Vec<u8>> = model.iter().cloned().collect();
    expect_eq("LIST in T", t.list(&c.prefix)?, want_t.clone())?;
    let (got, _) = paged(&c.client, t.handle(), &c.prefix, 5, 4096)?;
    expect_eq("paged LIST in T", got, want_t)?;
    expect_eq(
        "LIST outside unchanged",
        c.client.list(&c.prefix)?,
        want.clone(),
    )?;
    drop(t);
    Ok(format!(
        "{} keys, {changes} deleted in T; {}",
        want.len(),
        notes.join(", ")
    ))
}

/// Small limits for the simulator, so every quota is reached in a few requests.
pub const SIM_QUOTA_LIMITS: Limits = Limits {
    max_live_transactions: 6,
    max_write_set: 10,
    max_keys: 40,
    max_bytes: 4000,
};

/// Quotas are checked only when reaching them takes at most this many requests…
const REACHABLE: u64 = 200_000;
/// …and, for the byte quota, at most this much data (a real driver keeps it in kernel pool).
const REACHABLE_BYTES: u64 = 64 << 20;

fn quotas(c: &Ctx) -> Step<String> {
    let client = match &c.backend {
        crate::transport::Backend::Sim(cfg) => {
            let cfg = crate::transport::SimConfig {
                limits: SIM_QUOTA_LIMITS,
                ..cfg.clone()
            };
            Client::new(crate::transport::Backend::Sim(cfg).connect()?)?
        }
        crate::transport::Backend::Device => c.client.clone(),
    };
    let limits = client.version()?.limits;
    let qe = NtStatus::QUOTA_EXCEEDED;
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    let before = client.stats()?;

    // Write set: T may write max_write_set distinct keys, not one more, and keeps them.
    if u64::from(limits.max_write_set) <= REACHABLE {
        let mut t = client.begin()?;
        for i in 0..limits.max_write_set {
            t.put(&c.k(&format!("ws{i:06}")), b"w")?;
        }
        expect_status("write set + 1", t.put(&c.k("ws-over"), b"w"), qe)?;
        t.put(&c.k("ws000000"), b"rewrite")?;
        t.commit()?;
        expect_eq(
            "write set committed",
            client.list(&c.k("ws"))?.len(),
            limits.max_write_set as usize,
        )?;
        client.delete_prefix(&c.k("ws"))?;
        notes.push(format!("write set {}", limits.max_write_set));
    } else {
        skipped.push("write set");
    }

    // Live transactions: the one past the limit is refused at its first request.
    let live = client.stats()?.live_transactions;
    let room = u64::from(limits.max_live_transactions).saturating_sub(live);
    if room <= REACHABLE / 10 {
        let mut open = Vec::new();
        for _ in 0..room {
            let t = client.begin()?;
            t.get(&c.k("absent")).err();
            open.push(t);
        }
        let extra = client.begin()?;
        expect_status("live transactions + 1", extra.put(&c.k("lt"), b"v"), qe)?;
        drop(open.pop());
        extra.put(&c.k("lt"), b"v")?;
        drop(open);
        drop(extra);
        notes.push(format!(
            "live transactions {}",
            limits.max_live_transactions
        ));
    } else {
        skipped.push("live transactions");
    }

    // Keys of the committed store. Active transactions reserve nothing: a transaction that
    // would push the store past a quota is voted down at PREPARE, so its commit fails whole.
    let s = client.stats()?;
    let key_room = limits.max_keys.saturating_sub(s.keys);
    if (2..=REACHABLE).contains(&key_room) {
        for i in 0..key_room - 1 {
            client.put(&c.k(&format!("q{i:06}")), b"")?;
        }
        let mut t = client.begin()?;
        t.put(&c.k("q-in-t"), b"")?;
        t.put(&c.k("q000000"), b"t")?;
        client.put(&c.k("q-last"), b"")?;
        expect_status("max keys: new key", client.put(&c.k("q-over"), b""), qe)?;
        let vetoes = client.stats()?.vetoes;
        match t.commit() {
            Ok(()) => return fail("a commit that exceeds the key quota succeeded"),
            Err(e) => notes.push(format!("over-quota commit → {}", e.script_name())),
        }
        expect_eq(
            "over-quota commit voted no",
            client.stats()?.vetoes - vetoes,
            1,
        )?;
        expect_status(
            "over-quota commit discarded",
            client.get(&c.k("q-in-t")),
            NtStatus::OBJECT_NAME_NOT_FOUND,
        )?;
        expect_eq(
            "over-quota commit discarded whole",
            client.get(&c.k("q000000"))?,
            Vec::new(),
        )?;
        let t = client.begin()?;
        expect_status("max keys: new key in T", t.put(&c.k("q-over"), b""), qe)?;
        t.put(&c.k("q000000"), b"overwrite is fine")?;
        drop(t);
        client.delete(&c.k("q-last"))?;
        client.put(&c.k("q-over"), b"")?;
        client.delete_prefix(&c.k("q"))?;
        notes.push(format!("keys {}", limits.max_keys));
    } else {
        skipped.push("keys");
    }

    // Bytes (key + value) of the committed store: fill to exactly the limit, then one more.
    let s = client.stats()?;
    let byte_room = limits.max_bytes.saturating_sub(s.bytes);
    let klen = c.k("b00000").len() as u64;
    let max = MAX_VALUE_LEN as u64;
    let puts = byte_room / (klen + max) + 2;
    if byte_room >= klen
        && byte_room <= REACHABLE_BYTES
        && puts <= REACHABLE / 10
        && s.keys + puts < limits.max_keys
    {
        let mut room = byte_room;
        let mut i = 0;
        while room > 0 {
            // Leave either nothing or room for at least one more key.
            let v = if room <= klen + max {
                room - klen
            } else if room - klen - max >= klen {
                max
            } else {
                room - 2 * klen
            };
            client.put(&c.k(&format!("b{i:05}")), &vec![1; v as usize])?;
            room -= klen + v;
            i += 1;
        }
        expect_eq(
            "store filled to the byte quota",
            client.stats()?.bytes,
            limits.max_bytes,
        )?;
        expect_status("max bytes: one more key", client.put(&c.k("x"), b""), qe)?;
        let first = client.get(&c.k("b00000"))?;
        if first.len() < MAX_VALUE_LEN {
            let longer = vec![1; first.len() + 1];
            expect_status(
                "max bytes: a value one byte longer",
                client.put(&c.k("b00000"), &longer),
                qe,
            )?;
        }
        let t = client.begin()?;
        expect_status("max bytes: one more key in T", t.put(&c.k("x"), b""), qe)?;
        drop(t);
        client.delete_prefix(&c.k("b"))?;
        notes.push(format!("bytes {}", limits.max_bytes));
    } else {
        skipped.push("bytes");
    }
    let after = client.stats()?;
    expect(
        "quota rejections counted",
        after.quota_rejections > before.quota_rejections,
    )?;
    expect_none_left_live(&before, &after)?;
    if notes.is_empty() {
        return Err(Stop::Skip(format!(
            "every quota is too large to reach in a test run ({limits:?})"
        )));
    }
    let mut note = format!("reached: {}", notes.join(", "));
    if !skipped.is_empty() {
        note.push_str(&format!("; too large to reach: {}", skipped.join(", ")));
    }
    Ok(note)
}
