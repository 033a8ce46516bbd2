//! Arbitrary log contents into the write-ahead-log replay: well-formed records (encoded from
//! arbitrary transaction histories) mixed with raw and bit-flipped ones. Replay never panics,
//! every failure has a named status, and what it accepts is consistent: the store is sorted with
//! unique keys and no in-doubt transaction appears twice.
#![no_main]

use arbitrary::Arbitrary;
use ktmrm_core::port::TxId;
use ktmrm_core::wal::{Lsn, RecordRef, Replayer, encode_vec};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Rec {
    Prepare { tx: u8, writes: Vec<(Vec<u8>, Option<Vec<u8>>)> },
    Commit(u8),
    Abort(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Log {
    records: Vec<Rec>,
    flip: Option<(u16, u8)>,
    truncate_last: Option<u16>,
    lsn_skew: u8,
}

fuzz_target!(|log: Log| {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for (i, r) in log.records.iter().take(32).enumerate() {
        let lsn = Lsn(i as u64 + 1 + u64::from(log.lsn_skew % 2));
        let tx = |t: &u8| TxId([*t; 16]);
        let mut out = Vec::new();
        let writes: Vec<(&[u8], Option<&[u8]>)>;
        let rec = match r {
            Rec::Prepare { tx: t, writes: w } => {
                writes = w.iter().take(8).map(|(k, v)| (&k[..], v.as_deref())).collect();
                RecordRef::Prepare { tx: tx(t), writes: &writes.as_slice() }
            }
            Rec::Commit(t) => RecordRef::Commit { tx: tx(t) },
            Rec::Abort(t) => RecordRef::Abort { tx: tx(t) },
            Rec::Raw(bytes) => {
                frames.push(bytes.clone());
                continue;
            }
        };
        if encode_vec(&rec, lsn, &mut out).is_ok() {
            frames.push(out);
        }
    }
    if let Some((at, xor)) = log.flip {
        let total: usize = frames.iter().map(Vec::len).sum();
        let mut at = usize::from(at) % total.max(1);
        for f in &mut frames {
            if at < f.len() {
                f[at] ^= xor;
                break;
            }
            at -= f.len();
        }
    }
    if let (Some(cut), Some(last)) = (log.truncate_last, frames.last_mut()) {
        let keep = usize::from(cut) % (last.len() + 1);
        last.truncate(keep);
    }
    let mut r = Replayer::new(None);
    for (i, f) in frames.iter().enumerate() {
        if let Err(e) = r.feed(Lsn(i as u64 + 1), f) {
            assert!(e.status().is_error(), "{e}");
            return;
        }
    }
    match r.finish() {
        Ok(rec) => {
            assert!(rec.store.windows(2).all(|w| w[0].key() < w[1].key()), "store not sorted/unique");
            let mut ids: Vec<_> = rec.in_doubt.iter().map(|p| p.tx).collect();
            ids.dedup();
            assert_eq!(ids.len(), rec.in_doubt.len(), "an in-doubt transaction twice");
        }
        Err(e) => assert!(e.status().is_error(), "{e}"),
    }
});
