//! Damage in a file log, where a record's own length decides where the next one begins: damage
//! before the last record stops the start (whatever bytes it hits, the length fields included)
//! and leaves the file as it was; only an incomplete last write is dropped as a torn tail.
//! (The bit flips in `tests.rs` run over [`MemLog`], which keeps record boundaries outside the
//! bytes, so a damaged length could not hide the records after it there.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::filelog_tests::{MemFile, open};
use super::*;
use crate::port::TxId;
use crate::testing::Harness;
use std::vec;
use std::vec::Vec;

/// A file log holding four committed transactions, each record forced (eight records), and
/// where each record begins, with the file's end last.
fn four_commits() -> (MemFile, Vec<usize>) {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    let mut starts = vec![0];
    for t in 1..=4u8 {
        let key = [b'a' + t];
        let ws = vec![Write::put(&key, b"acknowledged").unwrap()];
        let tx = TxId([t; 16]);
        let p = w.append(&log, &RecordRef::Prepare { tx, writes: &ws });
        log.force(p.unwrap()).unwrap();
        starts.push(f.content().len());
        let c = w.append(&log, &RecordRef::Commit { tx }).unwrap();
        log.force(c).unwrap();
        starts.push(f.content().len());
    }
    (f, starts)
}

/// Recovers the log in a file holding `bytes`: the result and whether the file was left as it was.
fn recover_bytes(bytes: &[u8]) -> (Result<Recovered, ReplayError>, bool) {
    let f = MemFile::default();
    f.set_durable(bytes.to_vec());
    let r = recover(&open(&f), None);
    let untouched = f.content() == bytes && f.counts() == (0, 0, 0, 0);
    (r, untouched)
}

#[test]
fn the_fixture_is_eight_whole_records() {
    let (f, starts) = four_commits();
    assert_eq!(starts.len(), 9, "{starts:?}");
    assert_eq!(*starts.last().unwrap(), f.content().len());
    let (r, untouched) = recover_bytes(&f.content());
    let r = r.unwrap();
    assert_eq!((r.records, r.store.len(), r.dropped_tail), (8, 4, None));
    assert!(untouched);
}

#[test]
fn a_damaged_length_before_forced_records_stops_the_start() {
    let (f, _) = four_commits();
    let good = f.content();
    // The first record's body_len reaching past the end of the file (what the emulated driver
    // found), then every bit of it: longer, shorter, past the end or into the next records.
    let mut cases = Vec::new();
    let mut long = good.clone();
    long[16..20].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    cases.push(long);
    for byte in 16..20 {
        for bit in 0..8 {
            let mut b = good.clone();
            b[byte] ^= 1 << bit;
            cases.push(b);
        }
    }
    for bytes in cases {
        let (r, untouched) = recover_bytes(&bytes);
        match r {
            Err(
                e @ ReplayError::CorruptBeforeTail {
                    lsn, valid_after, ..
                },
            ) => {
                assert_eq!((lsn, valid_after), (Lsn(1), Lsn(2)), "{e}");
                assert_eq!(e.status(), STATUS_LOG_CORRUPTION_DETECTED);
            }
            other => panic!(
                "length {:02x?}: {:?}",
                &bytes[16..20],
                other.map(|r| r.records)
            ),
        }
        assert!(untouched, "the log was changed");
    }
}

#[test]
fn the_engine_refuses_to_start_over_a_damaged_length() {
    let (f, _) = four_commits();
    let mut bytes = f.content();
    bytes[19] = 0x7F; // body_len's high byte
    let f = MemFile::default();
    f.set_durable(bytes.clone());
    let log = open(&f);
    let err = Harness::durable(&log).err().expect("refuses to start");
    assert_eq!(err.status(), STATUS_LOG_CORRUPTION_DETECTED);
    drop(log);
    assert_eq!(f.content(), bytes, "the log is kept for inspection");
    assert_eq!(f.counts(), (0, 0, 0, 0));
}

#[test]
fn every_bit_flip_before_the_last_record_stops_the_start_and_in_it_is_a_torn_tail() {
    let (f, starts) = four_commits();
    let good = f.content();
    let last = starts[starts.len() - 2];
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bytes = good.clone();
            bytes[i] ^= 1 << bit;
            let (r, untouched) = recover_bytes(&bytes);
            if i < last {
                let e = r
                    .err()
                    .unwrap_or_else(|| panic!("flip at {i}.{bit} accepted"));
                assert_eq!(e.status(), STATUS_LOG_CORRUPTION_DETECTED, "{i}.{bit}: {e}");
                assert!(untouched, "flip at {i}.{bit}: the log was changed");
            } else {
                let r = r.unwrap_or_else(|e| panic!("flip at {i}.{bit}: {e}"));
                let tail = r.dropped_tail.expect("the last record dropped");
                assert_eq!((tail.from, tail.records, r.records), (Lsn(8), 1, 7));
            }
        }
    }
}

#[test]
fn a_cut_at_every_byte_drops_only_the_torn_record() {
    let (f, starts) = four_commits();
    let good = f.content();
    for cut in 0..=good.len() {
        let whole = starts.iter().filter(|&&s| s > 0 && s <= cut).count();
        let file = MemFile::default();
        file.set_durable(good[..cut].to_vec());
        let r = recover(&open(&file), None).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(r.records, whole as u64, "cut at {cut}");
        assert_eq!(
            r.dropped_tail.is_some(),
            !starts.contains(&cut),
            "cut at {cut}"
        );
        assert_eq!(
            file.content(),
            good[..starts[whole]],
            "cut back to a record"
        );
    }
}

/// A torn Prepare whose value holds a whole record carrying `lsn`, after the fixture's records.
fn torn_tail_holding_a_record(lsn: u64) -> Vec<u8> {
    let (f, _) = four_commits();
    let mut inner = Vec::new();
    let tx = TxId([9; 16]);
    encode_vec(&RecordRef::Commit { tx }, Lsn(lsn), &mut inner).unwrap();
    inner.push(b'!'); // the tear cuts this byte, not the inner record
    let ws = vec![Write::put(b"v", &inner).unwrap()];
    let mut outer = Vec::new();
    encode_vec(&RecordRef::Prepare { tx, writes: &ws }, Lsn(9), &mut outer).unwrap();
    let mut bytes = f.content();
    bytes.extend_from_slice(&outer[..outer.len() - 1]);
    bytes
}

#[test]
fn a_record_inside_a_torn_value_is_told_apart_by_its_lsn() {
    // A value holding a record the log already passed: still a torn tail.
    for lsn in [1, 8] {
        let (r, _) = recover_bytes(&torn_tail_holding_a_record(lsn));
        let r = r.unwrap_or_else(|e| panic!("LSN {lsn}: {e}"));
        assert_eq!((r.records, r.dropped_tail.unwrap().from), (8, Lsn(9)));
    }
    // One carrying a later LSN cannot be told from a record written after the damaged one: the
    // start is refused (nothing is lost; the log is left for inspection).
    let (r, untouched) = recover_bytes(&torn_tail_holding_a_record(10));
    assert_eq!(r.err().unwrap().status(), STATUS_LOG_CORRUPTION_DETECTED);
    assert!(untouched);
}
