//! The snapshot: the whole durable state at a checkpoint, in a self-checking format of its own,
//! so it can be the body of a Checkpoint record or a standalone snapshot file.
//!
//! Layout (little-endian):
//!
//! ```text
//!  0 magic          [u8; 4] = "KSNP"
//!  4 version        u16     = 1
//!  6 reserved       u16     = 0
//!  8 entry_count    u64     committed (key, value) pairs
//! 16 in_doubt_count u64     prepared transactions without an outcome
//! 24 payload_len    u64
//! 32 payload
//!      entries, keys strictly increasing: key_len u8 (1..=255), value_len u32 (<= 65,536),
//!        key, value
//!      in-doubt transactions: tx [16], write_count u32, writes (as in a Prepare record)
//! 32+payload_len  crc u32   CRC-32C of every byte before it
//! ```

use super::crc::Crc32c;
use super::reader::{Reader, Sink, push, read_tx, reserve};
use super::record::{Damage, DecodeError, Prepared, WriteSource, put_writes, read_writes};
use super::sort::heapsort;
use crate::entry::{Entry, KeyBuf};
use crate::port::TxId;
use alloc::vec::Vec;
use ktmrm_proto::{MAX_KEY_LEN, MAX_VALUE_LEN, NtStatus};

/// Snapshot magic.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"KSNP";
/// The snapshot version this code writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
const SNAP_HEADER: usize = 32;
const SNAP_TRAILER: usize = 4;
const ENTRY_FIXED: usize = 5;

/// Called with each committed `(key, value)`.
pub type EntryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), NtStatus> + 'a;
/// Called with each in-doubt transaction and its writes.
pub type InDoubtVisitor<'a> = dyn FnMut(TxId, &dyn WriteSource) -> Result<(), NtStatus> + 'a;

/// The durable state to snapshot, visited without copying (the engine implements it over its
/// store and its prepared transactions).
pub trait SnapshotSource {
    /// How many entries [`SnapshotSource::for_each_entry`] visits.
    fn entry_count(&self) -> usize;
    /// Calls `f(key, value)` for every committed entry, keys strictly increasing.
    fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), NtStatus>;
    /// How many transactions [`SnapshotSource::for_each_in_doubt`] visits.
    fn in_doubt_count(&self) -> usize;
    /// Calls `f(tx, writes)` for every prepared transaction without an outcome (each once).
    fn for_each_in_doubt(&self, f: &mut InDoubtVisitor<'_>) -> Result<(), NtStatus>;
}

/// A decoded snapshot; also what replay returns.
#[derive(Default)]
pub struct Snapshot {
    /// Committed entries, keys strictly increasing.
    pub store: Vec<Entry>,
    /// Prepared transactions without an outcome, sorted by transaction id.
    pub in_doubt: Vec<Prepared>,
}

impl SnapshotSource for Snapshot {
    fn entry_count(&self) -> usize {
        self.store.len()
    }
    fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), NtStatus> {
        self.store.iter().try_for_each(|e| f(e.key(), e.value()))
    }
    fn in_doubt_count(&self) -> usize {
        self.in_doubt.len()
    }
    fn for_each_in_doubt(&self, f: &mut InDoubtVisitor<'_>) -> Result<(), NtStatus> {
        self.in_doubt.iter().try_for_each(|p| f(p.tx, p))
    }
}

impl core::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Snapshot")
            .field("store", &DebugEntries(&self.store))
            .field("in_doubt", &self.in_doubt)
            .finish()
    }
}

struct DebugEntries<'a>(&'a [Entry]);

impl core::fmt::Debug for DebugEntries<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|e| (e.key(), e.value())))
            .finish()
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.store.len() == other.store.len()
            && self
                .store
                .iter()
                .zip(&other.store)
                .all(|(a, b)| a.key() == b.key() && a.value() == b.value())
            && self.in_doubt == other.in_doubt
    }
}

/// Sums what passes through into a CRC.
struct CrcSink<'a, S: Sink> {
    inner: &'a mut S,
    crc: Crc32c,
}

impl<S: Sink> Sink for CrcSink<'_, S> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), NtStatus> {
        self.crc = self.crc.update(bytes);
        self.inner.put(bytes)
    }
}

/// Writes a snapshot of `total` bytes (0 in a counting pass: only the length field depends on
/// it). `STATUS_INVALID_PARAMETER` for keys out of order, sizes out of range, or a source whose
/// visits disagree with its counts.
pub(crate) fn write_snapshot<S: Sink>(
    s: &mut S,
    src: &dyn SnapshotSource,
    total: usize,
) -> Result<(), NtStatus> {
    let payload = total.saturating_sub(SNAP_HEADER.saturating_add(SNAP_TRAILER));
    let entries = u64::try_from(src.entry_count()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let in_doubt = u64::try_from(src.in_doubt_count()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let payload = u64::try_from(payload).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let mut c = CrcSink {
        inner: s,
        crc: Crc32c::new(),
    };
    c.put(&SNAPSHOT_MAGIC)?;
    c.put(&SNAPSHOT_VERSION.to_le_bytes())?;
    c.put(&[0, 0])?;
    c.put(&entries.to_le_bytes())?;
    c.put(&in_doubt.to_le_bytes())?;
    c.put(&payload.to_le_bytes())?;
    let mut prev: Option<KeyBuf> = None;
    let mut seen = 0u64;
    src.for_each_entry(&mut |k, v| {
        let klen = u8::try_from(k.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if k.is_empty() || k.len() > MAX_KEY_LEN || v.len() > MAX_VALUE_LEN {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if prev.as_ref().is_some_and(|p| p.as_slice() >= k) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        prev = KeyBuf::new(k);
        seen = seen.checked_add(1).ok_or(NtStatus::INVALID_PARAMETER)?;
        let vlen = u32::try_from(v.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        c.put(&[klen])?;
        c.put(&vlen.to_le_bytes())?;
        c.put(k)?;
        c.put(v)
    })?;
    let mut seen_tx = 0u64;
    src.for_each_in_doubt(&mut |tx, w| {
        seen_tx = seen_tx.checked_add(1).ok_or(NtStatus::INVALID_PARAMETER)?;
        c.put(&tx.0)?;
        put_writes(&mut c, w)
    })?;
    if seen != entries || seen_tx != in_doubt {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let crc = c.crc.finish();
    s.put(&crc.to_le_bytes())
}

/// The encoded size of a snapshot of `src`.
pub fn snapshot_len(src: &dyn SnapshotSource) -> Result<usize, NtStatus> {
    let mut c = super::reader::Count(0);
    write_snapshot(&mut c, src, 0)?;
    Ok(c.0)
}

/// Encodes a standalone snapshot into `out`, replacing its contents (fallible allocation).
pub fn encode_snapshot_vec(src: &dyn SnapshotSource, out: &mut Vec<u8>) -> Result<(), NtStatus> {
    let total = snapshot_len(src)?;
    out.clear();
    super::reader::grow_zeroed(out, total)?;
    let mut s = ktmrm_proto::Writer::new(out.as_mut_slice());
    write_snapshot(&mut s, src, total)?;
    if s.len() != total {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

/// Decodes a standalone snapshot: damage (short, bad magic, bad length, bad CRC), an
/// unsupported version, or a rule broken (keys out of order, a duplicate in-doubt transaction,
/// counts that disagree with the payload) are errors.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let short = DecodeError::Damaged(Damage::Short {
        have: bytes.len(),
        need: SNAP_HEADER.saturating_add(SNAP_TRAILER),
    });
    let mut r = Reader::new(bytes);
    if bytes.len() < SNAP_HEADER.saturating_add(SNAP_TRAILER) {
        return Err(short);
    }
    if r.take(4) != Some(&SNAPSHOT_MAGIC[..]) {
        return Err(DecodeError::Damaged(Damage::BadMagic));
    }
    let version = r.u16().ok_or(short)?;
    let _reserved = r.u16().ok_or(short)?;
    let entries = r.u64().ok_or(short)?;
    let in_doubt = r.u64().ok_or(short)?;
    let payload_len = usize::try_from(r.u64().ok_or(short)?).unwrap_or(usize::MAX);
    let need = SNAP_HEADER
        .saturating_add(payload_len)
        .saturating_add(SNAP_TRAILER);
    if bytes.len() < need {
        return Err(DecodeError::Damaged(Damage::Short {
            have: bytes.len(),
            need,
        }));
    }
    if bytes.len() > need {
        return Err(DecodeError::Damaged(Damage::BadLength {
            declared: need,
            have: bytes.len(),
        }));
    }
    let (summed, trailer) = bytes
        .split_at_checked(need.saturating_sub(SNAP_TRAILER))
        .ok_or(short)?;
    let stored = Reader::new(trailer).u32().ok_or(short)?;
    let computed = Crc32c::new().update(summed).finish();
    if stored != computed {
        return Err(DecodeError::Damaged(Damage::BadCrc { stored, computed }));
    }
    if version != SNAPSHOT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let mut r = Reader::new(summed.get(SNAP_HEADER..).unwrap_or(&[]));
    let store = read_entries(&mut r, entries)?;
    let in_doubt = read_in_doubt(&mut r, in_doubt)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed(
            "bytes after the snapshot's contents",
        ));
    }
    Ok(Snapshot { store, in_doubt })
}

/// A snapshot inside a CRC-valid Checkpoint record: damage there is a writer bug, not a tear.
pub(crate) fn decode_snapshot_body(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    decode_snapshot(bytes).map_err(|e| match e {
        DecodeError::Damaged(_) => DecodeError::Malformed("checkpoint snapshot damaged"),
        other => other,
    })
}

fn read_entries(r: &mut Reader<'_>, n: u64) -> Result<Vec<Entry>, DecodeError> {
    const TRUNC: DecodeError = DecodeError::Malformed("snapshot entry truncated");
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let mut out: Vec<Entry> = Vec::new();
    reserve(
        &mut out,
        n.min(
            r.remaining()
                .checked_div(ENTRY_FIXED.saturating_add(1))
                .unwrap_or(0),
        ),
    )?;
    for _ in 0..n {
        let klen = usize::from(r.u8().ok_or(TRUNC)?);
        let vlen = usize::try_from(r.u32().ok_or(TRUNC)?).unwrap_or(usize::MAX);
        if klen == 0 || vlen > MAX_VALUE_LEN {
            return Err(DecodeError::Malformed("snapshot entry size out of range"));
        }
        let key = r.take(klen).ok_or(TRUNC)?;
        let value = r.take(vlen).ok_or(TRUNC)?;
        if out.last().is_some_and(|p| p.key() >= key) {
            return Err(DecodeError::Malformed(
                "snapshot keys not strictly increasing",
            ));
        }
        push(&mut out, Entry::try_new(key, value)?)?;
    }
    Ok(out)
}

fn read_in_doubt(r: &mut Reader<'_>, n: u64) -> Result<Vec<Prepared>, DecodeError> {
    const TRUNC: DecodeError = DecodeError::Malformed("snapshot transaction truncated");
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let mut out: Vec<Prepared> = Vec::new();
    reserve(&mut out, n.min(r.remaining().checked_div(20).unwrap_or(0)))?;
    for _ in 0..n {
        let tx = read_tx(r).ok_or(TRUNC)?;
        let count = r.u32().ok_or(TRUNC)?;
        let writes = read_writes(r, count)?;
        push(&mut out, Prepared { tx, writes })?;
    }
    heapsort(&mut out, |a, b| a.tx < b.tx);
    if out
        .windows(2)
        .any(|w| w.first().map(|p| p.tx) == w.get(1).map(|p| p.tx))
    {
        return Err(DecodeError::Malformed(
            "duplicate in-doubt transaction in snapshot",
        ));
    }
    Ok(out)
}
