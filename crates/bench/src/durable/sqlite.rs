//! The peer: SQLite (its bundled library, through rusqlite) as someone who wants durable
//! transactional key/value storage would set it up: WAL mode, `synchronous=FULL` (the WAL is
//! synced at every commit, like ktmrm's force), a key/value table, one upsert per transaction.
//! Each committer has its own connection; writers wait for the write lock by retrying at once
//! (a busy handler that yields, not SQLite's sleeping `busy_timeout`), so the peer is not slowed
//! by sleeps.

use super::committers::{self, Timed};
use crate::suite::{VALUE, key};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

const UPSERT: &str =
    "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";

fn retry(_: i32) -> bool {
    std::thread::yield_now();
    true
}

fn connect(path: &Path) -> Connection {
    let mut c = Connection::open(path).expect("open the SQLite database");
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    c.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    c.busy_handler(Some(retry)).expect("busy handler");
    c
}

/// A new database at `path` (removed first, with its WAL) holding the empty key/value table.
pub fn database(path: &Path) {
    remove(path);
    connect(path)
        .execute_batch("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        .expect("create table");
}

/// One committer on its own connection to `path`: `commit(i)` upserts key `i` of committer
/// `t` in a transaction of its own (`BEGIN IMMEDIATE`, upsert, `COMMIT`).
pub fn committer(path: &Path, t: usize) -> impl FnMut(u64) + use<> {
    let mut c = connect(path);
    move |i: u64| {
        let k = key((t as u64) << 40 | i);
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("BEGIN IMMEDIATE");
        tx.prepare_cached(UPSERT)
            .and_then(|mut s| s.execute((&k[..], VALUE)))
            .expect("upsert");
        tx.commit().expect("COMMIT");
    }
}

/// `threads` connections upserting into a new database `dir/<name>`.
pub(crate) fn run(dir: &Path, threads: usize, per_thread: u64, warmup: u64) -> Timed {
    let path = dir.join(format!("sqlite-{threads}.db"));
    database(&path);
    let make = |t: usize| committer(&path, t);
    let timed = committers::run(threads, per_thread, warmup, make, &|| [0, 0]);
    let rows: i64 = connect(&path)
        .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows as u64, (per_thread + warmup) * threads.max(1) as u64);
    remove(&path);
    timed
}

/// Removes the database at `path` and its WAL and shared-memory files.
pub fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
