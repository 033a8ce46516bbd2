//! Arbitrary log contents into the write-ahead-log replay: well-formed records (encoded from
//! arbitrary transaction histories) mixed with raw and bit-flipped ones. Replay never panics,
//! every failure has a named status, and what it accepts is consistent: the store is sorted with
//! unique keys and no in-doubt transaction appears twice. The same records back to back in a
//! file ([`FileLog`], where a record's own length says where the next begins) must replay to the
//! same result: never accept what the exact record boundaries refuse (a damaged length must not
//! hide the records after it).
#![no_main]

use arbitrary::Arbitrary;
use ktmrm_core::SpinLock;
use ktmrm_core::port::TxId;
use ktmrm_core::wal::{FileIo, FileLog, FileLogState, Lsn, RecordRef, Recovered, ReplayError};
use ktmrm_core::wal::{Replayer, encode_vec, recover};
use ktmrm_proto::NtStatus;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

/// A file in memory.
struct File(RefCell<Vec<u8>>);

impl FileIo for File {
    fn len(&self) -> Result<u64, NtStatus> {
        Ok(self.0.borrow().len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus> {
        let c = self.0.borrow();
        let src = c.get(offset as usize..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        let mut c = self.0.borrow_mut();
        let end = offset as usize + data.len();
        if c.len() < end {
            c.resize(end, 0);
        }
        c[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), NtStatus> {
        Ok(())
    }
    fn truncate(&self, len: u64) -> Result<(), NtStatus> {
        self.0.borrow_mut().truncate(len as usize);
        Ok(())
    }
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus> {
        *self.0.borrow_mut() = data.to_vec();
        Ok(())
    }
}

/// Replays `frames` written back to back into a file.
fn replay_file(frames: &[Vec<u8>]) -> Result<Recovered, ReplayError> {
    let file = File(RefCell::new(frames.concat()));
    let log = FileLog::open(&file, SpinLock::new(FileLogState::new()), SpinLock::new(()))
        .map_err(ReplayError::Port)?;
    recover(&log, None)
}

fn check(rec: &Recovered) {
    assert!(
        rec.store.windows(2).all(|w| w[0].key() < w[1].key()),
        "store not sorted/unique"
    );
    let mut ids: Vec<_> = rec.in_doubt.iter().map(|p| p.tx).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        rec.in_doubt.len(),
        "an in-doubt transaction twice"
    );
}

#[derive(Arbitrary, Debug)]
enum Rec {
    Prepare {
        tx: u8,
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
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
    let mut raw = false;
    for (i, r) in log.records.iter().take(32).enumerate() {
        let lsn = Lsn(i as u64 + 1 + u64::from(log.lsn_skew % 2));
        let tx = |t: &u8| TxId([*t; 16]);
        let mut out = Vec::new();
        let writes: Vec<(&[u8], Option<&[u8]>)>;
        let rec = match r {
            Rec::Prepare { tx: t, writes: w } => {
                writes = w
                    .iter()
                    .take(8)
                    .map(|(k, v)| (&k[..], v.as_deref()))
                    .collect();
                RecordRef::Prepare {
                    tx: tx(t),
                    writes: &writes.as_slice(),
                }
            }
            Rec::Commit(t) => RecordRef::Commit { tx: tx(t) },
            Rec::Abort(t) => RecordRef::Abort { tx: tx(t) },
            Rec::Raw(bytes) => {
                raw = true;
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
    let framed = replay_frames(&frames);
    let file = replay_file(&frames);
    for r in [&framed, &file] {
        match r {
            Ok(rec) => check(rec),
            Err(e) => assert!(e.status().is_error(), "{e}"),
        }
    }
    // Raw bytes may split differently in a byte stream; encoded records split the same way.
    if raw {
        return;
    }
    match (&framed, &file) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.records, a.next_lsn),
                (b.records, b.next_lsn),
                "file and framed differ"
            );
            assert!(
                a.store
                    .iter()
                    .map(|e| (e.key(), e.value()))
                    .eq(b.store.iter().map(|e| (e.key(), e.value())))
            );
        }
        (Err(_), Ok(b)) => panic!(
            "the file log accepted what the framed log refuses: {} records",
            b.records
        ),
        // Stricter on purpose: a damaged first record keeps the LSN its header carries (a
        // truncated log's checkpoint is not a torn tail), and a value holding a whole record
        // with a later LSN, in a torn tail, reads as corruption.
        (Ok(_), Err(e)) => assert!(
            matches!(
                e,
                ReplayError::CorruptBeforeTail { .. } | ReplayError::MissingStart { .. }
            ),
            "{e}"
        ),
        (Err(_), Err(_)) => {}
    }
});

/// Replays `frames` with their exact boundaries.
fn replay_frames(frames: &[Vec<u8>]) -> Result<Recovered, ReplayError> {
    let mut r = Replayer::new(None);
    for (i, f) in frames.iter().enumerate() {
        r.feed(Lsn(i as u64 + 1), f)?;
    }
    r.finish()
}
