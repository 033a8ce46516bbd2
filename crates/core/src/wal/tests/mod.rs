//! WAL tests: formats, the memory port, replay semantics, and corruption of every kind. The
//! helpers here; the cases by concern in the submodules.

mod format;
mod histories;
mod replay;

use super::*;
use crate::entry::Entry;
use crate::port::TxId;
use core::ops::ControlFlow;
use ktmrm_proto::NtStatus;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

type Kv = (Vec<u8>, Vec<u8>);
type W = (Vec<u8>, Option<Vec<u8>>);
type Pair<'a> = (&'a [u8], Option<&'a [u8]>);

fn tx(n: u8) -> TxId {
    TxId([n; 16])
}

fn writes(ws: &[(&[u8], Option<&[u8]>)]) -> Vec<Write> {
    ws.iter()
        .map(|&(k, v)| match v {
            Some(v) => Write::put(k, v).unwrap(),
            None => Write::delete(k).unwrap(),
        })
        .collect()
}

fn prepare(w: &mut LogWriter, log: &MemLog, t: TxId, ws: &[(&[u8], Option<&[u8]>)]) -> Lsn {
    let ws = writes(ws);
    w.append_forced(log, &RecordRef::Prepare { tx: t, writes: &ws })
        .unwrap()
}

fn commit(w: &mut LogWriter, log: &MemLog, t: TxId) -> Lsn {
    w.append_forced(log, &RecordRef::Commit { tx: t }).unwrap()
}

fn abort(w: &mut LogWriter, log: &MemLog, t: TxId) -> Lsn {
    w.append_forced(log, &RecordRef::Abort { tx: t }).unwrap()
}

fn store_of(r: &Recovered) -> Vec<Kv> {
    r.store
        .iter()
        .map(|e| (e.key().to_vec(), e.value().to_vec()))
        .collect()
}

fn in_doubt_of(r: &Recovered) -> Vec<(TxId, Vec<W>)> {
    r.in_doubt
        .iter()
        .map(|p| {
            let ws = p
                .writes
                .iter()
                .map(|w| (w.key().to_vec(), w.value().map(<[u8]>::to_vec)))
                .collect();
            (p.tx, ws)
        })
        .collect()
}

fn kv(k: &str, v: &str) -> Kv {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

/// A copy of `log` (records and LSNs), to damage without touching the original.
fn copy(log: &MemLog) -> MemLog {
    let c = MemLog::new();
    let recs = log.with_records(|r| r.clone());
    for r in &recs {
        assert_eq!(c.append(&r.bytes).unwrap(), r.lsn);
    }
    c
}

fn snapshot_from(r: Recovered) -> Snapshot {
    Snapshot {
        store: r.store,
        in_doubt: r.in_doubt,
    }
}

/// A log of: T1 commits {a=1, b=2}; T2 prepares {a=x, c=3} and aborts; T3 prepares {b deleted,
/// d=4} and commits; T4 prepares {e=5} and stays in doubt.
fn sample() -> (MemLog, LogWriter) {
    let log = MemLog::new();
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(
        &mut w,
        &log,
        tx(1),
        &[(b"a", Some(b"1")), (b"b", Some(b"2"))],
    );
    commit(&mut w, &log, tx(1));
    prepare(
        &mut w,
        &log,
        tx(2),
        &[(b"a", Some(b"x")), (b"c", Some(b"3"))],
    );
    prepare(&mut w, &log, tx(3), &[(b"b", None), (b"d", Some(b"4"))]);
    abort(&mut w, &log, tx(2));
    commit(&mut w, &log, tx(3));
    prepare(&mut w, &log, tx(4), &[(b"e", Some(b"5"))]);
    (log, w)
}

fn sample_store() -> Vec<Kv> {
    vec![kv("a", "1"), kv("d", "4")]
}

/// Re-seals a record after a test edited its header or body.
fn reseal(v: &mut [u8]) {
    let mut summed = v[..20].to_vec();
    summed.extend_from_slice(&v[24..]);
    let crc = crc32c(&summed);
    v[20..24].copy_from_slice(&crc.to_le_bytes());
}
