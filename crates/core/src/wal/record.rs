//! Log records: what one append writes, and its checked decoding.
//!
//! Layout (little-endian), 24-byte header then body:
//!
//! ```text
//!  0 magic    [u8; 4] = "KRML"
//!  4 version  u16     = 1       (header layout is fixed across versions)
//!  6 kind     u8      1 Prepare, 2 Commit, 3 Abort, 4 Checkpoint
//!  7 reserved u8      = 0
//!  8 lsn      u64     the record's own LSN (checked against the port's)
//! 16 body_len u32     bytes after the header
//! 20 crc      u32     CRC-32C over bytes 0..20 and the body
//! 24 body
//!   Prepare:    tx [16], write_count u32, writes
//!   Commit:     tx [16]
//!   Abort:      tx [16]
//!   Checkpoint: a snapshot (see `snapshot.rs`), with its own version and checksum
//! write: op u8 (0 delete, 1 put), key_len u8 (1..=255), value_len u32 (0 for a delete,
//!        at most 65,536), key, value
//! ```
//!
//! Every length is explicit and checked against the bytes present; a record must be consumed
//! exactly. The CRC is checked before anything else is believed, so a torn write is classified
//! as [`Damage`] and a CRC-valid record that breaks the rules as [`DecodeError::Malformed`].

use super::Lsn;
use super::crc::Crc32c;
use super::reader::{Count, Reader, Sink, grow_zeroed, push, read_tx, reserve};
use super::snapshot::{Snapshot, SnapshotSource, decode_snapshot_body, write_snapshot};
use crate::entry::Entry;
use crate::port::TxId;
use alloc::vec::Vec;
use ktmrm_proto::Writer;
use ktmrm_proto::{MAX_KEY_LEN, MAX_VALUE_LEN, NtStatus};

/// Record magic.
pub const RECORD_MAGIC: [u8; 4] = *b"KRML";
/// The record version this code writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 24;
/// Fixed bytes of one encoded write, before its key and value.
pub(crate) const WRITE_FIXED: usize = 6;

const KIND_PREPARE: u8 = 1;
const KIND_COMMIT: u8 = 2;
const KIND_ABORT: u8 = 3;
const KIND_CHECKPOINT: u8 = 4;

/// One write of a transaction, owned: a put or a delete. One allocation (an [`Entry`]; a delete
/// is its key with an empty value), so a committed put moves into the store without copying.
pub struct Write {
    entry: Entry,
    delete: bool,
}

impl Write {
    /// A put of `value` under `key`; `STATUS_INVALID_PARAMETER` for a key or value of the wrong
    /// size, `STATUS_INSUFFICIENT_RESOURCES` if allocation fails.
    pub fn put(key: &[u8], value: &[u8]) -> Result<Write, NtStatus> {
        if value.len() > MAX_VALUE_LEN {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(Write {
            entry: Entry::try_new(key, value)?,
            delete: false,
        })
    }

    /// A delete of `key`.
    pub fn delete(key: &[u8]) -> Result<Write, NtStatus> {
        Ok(Write {
            entry: Entry::try_new(key, &[])?,
            delete: true,
        })
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        self.entry.key()
    }

    /// The value written, or `None` for a delete.
    #[must_use]
    pub fn value(&self) -> Option<&[u8]> {
        if self.delete {
            None
        } else {
            Some(self.entry.value())
        }
    }

    /// The entry to store, or `None` for a delete.
    #[must_use]
    pub fn into_put(self) -> Option<Entry> {
        if self.delete { None } else { Some(self.entry) }
    }
}

impl core::fmt::Debug for Write {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Write")
            .field(&self.key())
            .field(&self.value())
            .finish()
    }
}

impl PartialEq for Write {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.value() == other.value()
    }
}

/// Called with `(key, Some(value))` for a put, `(key, None)` for a delete.
pub type WriteVisitor<'a> = dyn FnMut(&[u8], Option<&[u8]>) -> Result<(), NtStatus> + 'a;

/// A transaction's writes, visited in order: what a Prepare record (or an in-doubt transaction
/// in a snapshot) holds. The engine implements it over its write set, so logging copies nothing.
pub trait WriteSource {
    /// How many writes [`WriteSource::for_each_write`] visits.
    fn write_count(&self) -> usize;
    /// Calls `f(key, Some(value) | None)` for every write, in a stable order; stops at the first
    /// error and returns it.
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus>;
}

fn visit_writes(ws: &[Write], f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
    ws.iter().try_for_each(|w| f(w.key(), w.value()))
}

fn visit_pairs(ws: &[(&[u8], Option<&[u8]>)], f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
    ws.iter().try_for_each(|&(k, v)| f(k, v))
}

impl WriteSource for &[Write] {
    fn write_count(&self) -> usize {
        self.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        visit_writes(self, f)
    }
}

impl WriteSource for Vec<Write> {
    fn write_count(&self) -> usize {
        self.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        visit_writes(self, f)
    }
}

impl WriteSource for &[(&[u8], Option<&[u8]>)] {
    fn write_count(&self) -> usize {
        self.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        visit_pairs(self, f)
    }
}

impl WriteSource for Vec<(&[u8], Option<&[u8]>)> {
    fn write_count(&self) -> usize {
        self.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        visit_pairs(self, f)
    }
}

/// A prepared transaction and its writes (in write order; the last write to a key wins).
#[derive(Debug, PartialEq)]
pub struct Prepared {
    /// The transaction.
    pub tx: TxId,
    /// Its writes.
    pub writes: Vec<Write>,
}

impl WriteSource for Prepared {
    fn write_count(&self) -> usize {
        self.writes.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        visit_writes(&self.writes, f)
    }
}

/// A record to encode, borrowing its data.
pub enum RecordRef<'a> {
    /// The transaction's writes, logged (and forced) before the yes vote.
    Prepare {
        /// The transaction.
        tx: TxId,
        /// Its writes.
        writes: &'a dyn WriteSource,
    },
    /// The transaction committed: apply its prepared writes.
    Commit {
        /// The transaction.
        tx: TxId,
    },
    /// The transaction rolled back after preparing: forget its writes.
    Abort {
        /// The transaction.
        tx: TxId,
    },
    /// The whole durable state: replay starts from the last one.
    Checkpoint {
        /// The committed store and the in-doubt transactions.
        snapshot: &'a dyn SnapshotSource,
    },
}

/// A decoded record, owning its data.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// See [`RecordRef::Prepare`].
    Prepare(Prepared),
    /// See [`RecordRef::Commit`].
    Commit(TxId),
    /// See [`RecordRef::Abort`].
    Abort(TxId),
    /// See [`RecordRef::Checkpoint`].
    Checkpoint(Snapshot),
}

/// Why bytes are not a whole record: what a torn write (or media corruption) looks like. At the
/// tail of the log this is dropped; anywhere else it is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than the header, or than the header's `body_len` says.
    Short {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// More bytes than the header's `body_len` says.
    BadLength {
        /// Bytes the header declares.
        declared: usize,
        /// Bytes present.
        have: usize,
    },
    /// The magic is not `KRML`.
    BadMagic,
    /// The checksum does not match.
    BadCrc {
        /// The CRC stored in the header.
        stored: u32,
        /// The CRC of the bytes present.
        computed: u32,
    },
}

impl core::fmt::Display for Damage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Damage::Short { have, need } => write!(f, "short record ({have} of {need} bytes)"),
            Damage::BadLength { declared, have } => {
                write!(f, "bad length ({have} bytes, header says {declared})")
            }
            Damage::BadMagic => write!(f, "bad magic"),
            Damage::BadCrc { stored, computed } => {
                write!(
                    f,
                    "bad CRC (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
        }
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Torn or corrupt bytes.
    Damaged(Damage),
    /// A whole, CRC-valid record of a version this code does not read.
    UnsupportedVersion(u16),
    /// A CRC-valid record that breaks the format's rules (a writer bug, never a torn write).
    Malformed(&'static str),
    /// Allocation failed.
    NoMemory,
}

impl From<NtStatus> for DecodeError {
    fn from(_: NtStatus) -> Self {
        DecodeError::NoMemory
    }
}

/// A record whose header, lengths and CRC check out; its body is not yet decoded.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The LSN in the header.
    pub lsn: Lsn,
    /// The version in the header.
    pub version: u16,
    /// The record kind byte.
    pub kind: u8,
    /// The body.
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// True for a Checkpoint record.
    #[must_use]
    pub fn is_checkpoint(&self) -> bool {
        self.kind == KIND_CHECKPOINT
    }
}

/// The total length of the record that starts with `prefix`, once its header is present: lets a
/// byte-stream host (a plain file) split the stream into records. `None` for fewer than
/// [`HEADER_LEN`] bytes or a wrong magic.
#[must_use]
pub fn frame_len(prefix: &[u8]) -> Option<usize> {
    let mut r = Reader::new(prefix);
    if r.take(4)? != RECORD_MAGIC {
        return None;
    }
    r.take(12)?;
    let body = usize::try_from(r.u32()?).ok()?;
    if prefix.len() < HEADER_LEN {
        return None;
    }
    HEADER_LEN.checked_add(body)
}

/// Checks magic, lengths and CRC, without allocating.
pub fn check_frame(bytes: &[u8]) -> Result<Frame<'_>, Damage> {
    let short = Damage::Short {
        have: bytes.len(),
        need: HEADER_LEN,
    };
    let (head, body) = bytes.split_at_checked(HEADER_LEN).ok_or(short)?;
    let mut r = Reader::new(head);
    if r.take(4) != Some(&RECORD_MAGIC[..]) {
        return Err(Damage::BadMagic);
    }
    let version = r.u16().ok_or(short)?;
    let kind = r.u8().ok_or(short)?;
    let _reserved = r.u8().ok_or(short)?;
    let lsn = Lsn(r.u64().ok_or(short)?);
    let body_len = usize::try_from(r.u32().ok_or(short)?).unwrap_or(usize::MAX);
    let stored = r.u32().ok_or(short)?;
    let need = HEADER_LEN.saturating_add(body_len);
    if body.len() < body_len {
        return Err(Damage::Short {
            have: bytes.len(),
            need,
        });
    }
    if body.len() > body_len {
        return Err(Damage::BadLength {
            declared: need,
            have: bytes.len(),
        });
    }
    let computed = Crc32c::new()
        .update(head.get(..20).unwrap_or(&[]))
        .update(body)
        .finish();
    if computed != stored {
        return Err(Damage::BadCrc { stored, computed });
    }
    Ok(Frame {
        lsn,
        version,
        kind,
        body,
    })
}

/// Decodes a whole record: its LSN and contents.
pub fn decode(bytes: &[u8]) -> Result<(Lsn, Record), DecodeError> {
    let f = check_frame(bytes).map_err(DecodeError::Damaged)?;
    Ok((f.lsn, decode_frame(&f)?))
}

/// Decodes the body of a checked frame.
pub fn decode_frame(f: &Frame<'_>) -> Result<Record, DecodeError> {
    if f.version != RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(f.version));
    }
    let mut r = Reader::new(f.body);
    let rec = match f.kind {
        KIND_PREPARE => {
            let tx = read_tx(&mut r).ok_or(DecodeError::Malformed("prepare too short"))?;
            let n = r.u32().ok_or(DecodeError::Malformed("prepare too short"))?;
            Record::Prepare(Prepared {
                tx,
                writes: read_writes(&mut r, n)?,
            })
        }
        KIND_COMMIT => {
            Record::Commit(read_tx(&mut r).ok_or(DecodeError::Malformed("commit too short"))?)
        }
        KIND_ABORT => {
            Record::Abort(read_tx(&mut r).ok_or(DecodeError::Malformed("abort too short"))?)
        }
        KIND_CHECKPOINT => {
            let body = r.take(r.remaining()).unwrap_or(&[]);
            Record::Checkpoint(decode_snapshot_body(body)?)
        }
        _ => return Err(DecodeError::Malformed("unknown record kind")),
    };
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed("bytes after the record's contents"));
    }
    Ok(rec)
}

/// Reads `n` writes, reserving no more than the bytes present could hold.
pub(crate) fn read_writes(r: &mut Reader<'_>, n: u32) -> Result<Vec<Write>, DecodeError> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    reserve(
        &mut out,
        n.min(
            r.remaining()
                .checked_div(WRITE_FIXED.saturating_add(1))
                .unwrap_or(0),
        ),
    )?;
    for _ in 0..n {
        let w = read_write(r)?;
        push(&mut out, w)?;
    }
    Ok(out)
}

fn read_write(r: &mut Reader<'_>) -> Result<Write, DecodeError> {
    const TRUNC: DecodeError = DecodeError::Malformed("write truncated");
    let op = r.u8().ok_or(TRUNC)?;
    let klen = usize::from(r.u8().ok_or(TRUNC)?);
    let vlen = usize::try_from(r.u32().ok_or(TRUNC)?).unwrap_or(usize::MAX);
    if klen == 0 {
        return Err(DecodeError::Malformed("empty key"));
    }
    if vlen > MAX_VALUE_LEN {
        return Err(DecodeError::Malformed("value longer than 65,536 bytes"));
    }
    let key = r.take(klen).ok_or(TRUNC)?;
    match op {
        0 if vlen == 0 => Ok(Write::delete(key)?),
        0 => Err(DecodeError::Malformed("delete with a value")),
        1 => Ok(Write::put(key, r.take(vlen).ok_or(TRUNC)?)?),
        _ => Err(DecodeError::Malformed("unknown write op")),
    }
}

/// Writes one write; `STATUS_INVALID_PARAMETER` for a key or value of the wrong size.
pub(crate) fn put_write<S: Sink>(
    s: &mut S,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), NtStatus> {
    let klen = u8::try_from(key.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    if klen == 0 || key.len() > MAX_KEY_LEN {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let (op, v) = match value {
        Some(v) if v.len() <= MAX_VALUE_LEN => (1u8, v),
        Some(_) => return Err(NtStatus::INVALID_PARAMETER),
        None => (0u8, &[][..]),
    };
    let vlen = u32::try_from(v.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    s.put(&[op, klen])?;
    s.put(&vlen.to_le_bytes())?;
    s.put(key)?;
    s.put(v)
}

/// Writes a transaction's writes with their count; the source must visit exactly as many as
/// it declares (`STATUS_INVALID_PARAMETER` otherwise).
pub(crate) fn put_writes<S: Sink>(s: &mut S, w: &dyn WriteSource) -> Result<(), NtStatus> {
    let n = u32::try_from(w.write_count()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    s.put(&n.to_le_bytes())?;
    let mut seen = 0u32;
    w.for_each_write(&mut |k, v| {
        seen = seen.checked_add(1).ok_or(NtStatus::INVALID_PARAMETER)?;
        put_write(s, k, v)
    })?;
    if seen != n {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

/// Writes the header (CRC left zero) and body. `body_len` is only used for the header field and
/// the snapshot's own length, so the counting pass may pass 0.
fn write_record<S: Sink>(
    s: &mut S,
    rec: &RecordRef<'_>,
    lsn: Lsn,
    body_len: u32,
) -> Result<(), NtStatus> {
    let kind = match rec {
        RecordRef::Prepare { .. } => KIND_PREPARE,
        RecordRef::Commit { .. } => KIND_COMMIT,
        RecordRef::Abort { .. } => KIND_ABORT,
        RecordRef::Checkpoint { .. } => KIND_CHECKPOINT,
    };
    s.put(&RECORD_MAGIC)?;
    s.put(&RECORD_VERSION.to_le_bytes())?;
    s.put(&[kind, 0])?;
    s.put(&lsn.0.to_le_bytes())?;
    s.put(&body_len.to_le_bytes())?;
    s.put(&[0; 4])?;
    match rec {
        RecordRef::Prepare { tx, writes } => {
            s.put(&tx.0)?;
            put_writes(s, *writes)
        }
        RecordRef::Commit { tx } | RecordRef::Abort { tx } => s.put(&tx.0),
        RecordRef::Checkpoint { snapshot } => {
            write_snapshot(s, *snapshot, usize::try_from(body_len).unwrap_or(0))
        }
    }
}

/// The encoded size of `rec`; `STATUS_INVALID_PARAMETER` if it breaks a limit (key or value
/// size, a body over 4 GiB).
pub fn encoded_len(rec: &RecordRef<'_>) -> Result<usize, NtStatus> {
    let mut c = Count(0);
    write_record(&mut c, rec, Lsn(0), 0)?;
    let body = c.0.saturating_sub(HEADER_LEN);
    u32::try_from(body).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    Ok(c.0)
}

/// Encodes `rec` with `lsn` at the start of `out`; returns the length written.
/// `STATUS_BUFFER_TOO_SMALL` if `out` is shorter than [`encoded_len`].
pub fn encode_into(rec: &RecordRef<'_>, lsn: Lsn, out: &mut [u8]) -> Result<usize, NtStatus> {
    let total = encoded_len(rec)?;
    let body_len =
        u32::try_from(total.saturating_sub(HEADER_LEN)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let buf = out.get_mut(..total).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
    let mut s = Writer::new(&mut *buf);
    write_record(&mut s, rec, lsn, body_len)?;
    if s.len() != total {
        // The source visited different data in the two passes.
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let crc = Crc32c::new()
        .update(buf.get(..20).unwrap_or(&[]))
        .update(buf.get(HEADER_LEN..).unwrap_or(&[]))
        .finish();
    if let Some(dst) = buf.get_mut(20..HEADER_LEN) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(total)
}

/// Encodes `rec` into `out`, replacing its contents; allocation is fallible
/// (`STATUS_INSUFFICIENT_RESOURCES`). Reusing one `Vec` keeps steady-state logging allocation-free.
pub fn encode_vec(rec: &RecordRef<'_>, lsn: Lsn, out: &mut Vec<u8>) -> Result<(), NtStatus> {
    let total = encoded_len(rec)?;
    out.clear();
    grow_zeroed(out, total)?;
    encode_into(rec, lsn, out).map(|_| ())
}
