//! Request layouts (protocol version 1): a 16-byte header, then a body whose length the header
//! states. Every integer is little-endian; no field is aligned, so callers never rely on packing.
//!
//! ```text
//! header   0 u16 version (= PROTOCOL_VERSION)   2 u16 flags   4 u32 body_len   8 u64 tx
//!          flags: bits 0-1 the transaction's isolation level (0 = not stated, 1 = read
//!          committed, 2 = serializable; only with a tx, or on BEGIN), bits 2-15 = 0
//! BEGIN    0 u32 timeout_ms (0 = none)   4 u16 desc_chars (<= 64)   6 u16 reserved (= 0)
//!          8 desc: desc_chars UTF-16LE code units                          tx must be 0
//! PUT      0 u16 key_len   2 u16 reserved   4 u32 value_len   8 key   8+key_len value
//! GET      0 u16 key_len   2 u16 reserved   4 key
//! DELETE   same as GET
//! LIST     0 u16 prefix_len   2 u16 cursor_len   4 u32 max_keys (0 = as many as fit)
//!          8 prefix   8+prefix_len cursor (exclusive; 0 bytes = from the first key)
//! STATS    empty body                                                      tx must be 0
//! GET_VERSION: input ignored.
//! ```
//!
//! `tx` is the caller's transaction handle value (0 = not transacted: the write commits at once,
//! the read sees committed data only).
//!
//! A transaction's isolation level is fixed when ktmrm first sees it: by BEGIN's flags, or by
//! the flags of the first request that enlists it (not stated = read committed). A later request
//! may state the level again; a different one is refused with `STATUS_INVALID_PARAMETER_MIX`.
//!
//! The decoder checks in this order and answers the first failure: input shorter than the header
//! → `STATUS_INVALID_BUFFER_SIZE`; version → `STATUS_REVISION_MISMATCH`; flags other than a level
//! (bits 2-15, or level 3), or any reserved field non-zero → `STATUS_INVALID_PARAMETER`; `body_len` not the exact rest of the input, or
//! body lengths that do not add up to it → `STATUS_INVALID_BUFFER_SIZE`; then the value rules
//! (key of 1–255 bytes, value ≤ 65,536 bytes, description ≤ 64 chars, prefix/cursor ≤ 255 bytes,
//! tx = 0 where a call takes none, a level stated without a transaction) →
//! `STATUS_INVALID_PARAMETER`.

use crate::wire::{Overflow, Reader, Writer};
use crate::{Call, NtStatus};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length of the request header.
pub const HEADER_LEN: usize = 16;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// Longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 65_536;
/// Longest transaction description, in UTF-16 code units (KTM's `MAX_TRANSACTION_DESCRIPTION_LENGTH`).
pub const MAX_DESCRIPTION_CHARS: usize = 64;
/// Longest input any request can have (a PUT with the largest key and value).
pub const MAX_REQUEST_LEN: usize = HEADER_LEN + 8 + MAX_KEY_LEN + MAX_VALUE_LEN;

/// The header's isolation bits (flags bits 0-1).
pub const ISOLATION_MASK: u16 = 0b11;

/// A transaction's isolation level as a request states it (README "Semantics").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Isolation {
    /// The request does not say: the transaction's level, read committed if this request is
    /// the one that makes ktmrm enlist it.
    #[default]
    Unstated = 0,
    /// Reads see committed data; writes conflict at once with another live transaction's.
    ReadCommitted = 1,
    /// Read committed, plus: the transaction commits only if every read it made (values,
    /// absences, LIST ranges) is still what a commit at that point would read.
    Serializable = 2,
}

impl Isolation {
    /// The level flags bits 0-1 state; other bits set, or level 3, are `INVALID_PARAMETER`.
    pub const fn from_flags(flags: u16) -> Result<Isolation, NtStatus> {
        match flags {
            0 => Ok(Isolation::Unstated),
            1 => Ok(Isolation::ReadCommitted),
            2 => Ok(Isolation::Serializable),
            _ => Err(NtStatus::INVALID_PARAMETER),
        }
    }

    /// The header flags that state this level.
    #[must_use]
    pub const fn flags(self) -> u16 {
        self as u16
    }
}

/// A decoded request, borrowing its byte fields from the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Protocol version and limits.
    GetVersion,
    /// Create a KTM transaction for the caller.
    Begin {
        /// KTM timeout in milliseconds; 0 = none.
        timeout_ms: u32,
        /// Description as UTF-16LE bytes (even length, at most 64 code units).
        description: &'a [u8],
    },
    /// Write `value` at `key`.
    Put {
        /// Transaction handle value, 0 = not transacted.
        tx: u64,
        /// 1–255 bytes.
        key: &'a [u8],
        /// 0–65,536 bytes.
        value: &'a [u8],
    },
    /// Read `key`.
    Get {
        /// Transaction handle value, 0 = committed view.
        tx: u64,
        /// 1–255 bytes.
        key: &'a [u8],
    },
    /// Delete `key`.
    Delete {
        /// Transaction handle value, 0 = not transacted.
        tx: u64,
        /// 1–255 bytes.
        key: &'a [u8],
    },
    /// A page of keys.
    List {
        /// Transaction handle value, 0 = committed view.
        tx: u64,
        /// Only keys starting with these bytes (0–255 bytes).
        prefix: &'a [u8],
        /// Only keys strictly after this one (0–255 bytes; empty = from the start).
        cursor: &'a [u8],
        /// At most this many keys; 0 = as many as fit in the output.
        max_keys: u32,
    },
    /// Counters.
    Stats,
}

fn short<T>(v: Option<T>) -> Result<T, NtStatus> {
    v.ok_or(NtStatus::INVALID_BUFFER_SIZE)
}

fn zero<T: PartialEq + Default>(v: T) -> Result<(), NtStatus> {
    if v == T::default() {
        Ok(())
    } else {
        Err(NtStatus::INVALID_PARAMETER)
    }
}

fn check_key(key: &[u8]) -> Result<(), NtStatus> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

impl<'a> Request<'a> {
    /// The call this request is for.
    #[must_use]
    pub const fn call(&self) -> Call {
        match self {
            Request::GetVersion => Call::GetVersion,
            Request::Begin { .. } => Call::Begin,
            Request::Put { .. } => Call::Put,
            Request::Get { .. } => Call::Get,
            Request::Delete { .. } => Call::Delete,
            Request::List { .. } => Call::List,
            Request::Stats => Call::Stats,
        }
    }

    /// The transaction handle value the request names (0 = none).
    #[must_use]
    pub const fn tx(&self) -> u64 {
        match self {
            Request::Put { tx, .. }
            | Request::Get { tx, .. }
            | Request::Delete { tx, .. }
            | Request::List { tx, .. } => *tx,
            Request::GetVersion | Request::Begin { .. } | Request::Stats => 0,
        }
    }

    /// Decodes `input` for `call`, checking every length and field (see the module docs); the
    /// isolation level the header states is dropped ([`Request::decode_stated`] keeps it).
    pub fn decode(call: Call, input: &'a [u8]) -> Result<Request<'a>, NtStatus> {
        Self::decode_stated(call, input).map(|(req, _)| req)
    }

    /// Decodes `input` for `call`, with the isolation level its header states.
    pub fn decode_stated(
        call: Call,
        input: &'a [u8],
    ) -> Result<(Request<'a>, Isolation), NtStatus> {
        if call == Call::GetVersion {
            return Ok((Request::GetVersion, Isolation::Unstated));
        }
        let mut r = Reader::new(input);
        let version = short(r.u16())?;
        let flags = short(r.u16())?;
        let body_len = short(r.u32())?;
        let tx = short(r.u64())?;
        if version != PROTOCOL_VERSION {
            return Err(NtStatus::REVISION_MISMATCH);
        }
        let isolation = Isolation::from_flags(flags)?;
        if usize::try_from(body_len).ok() != Some(r.remaining()) {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        let req = match call {
            Call::GetVersion => Request::GetVersion,
            Call::Begin => {
                let timeout_ms = short(r.u32())?;
                let chars = short(r.u16())?;
                zero(short(r.u16())?)?;
                let description = short(r.take(usize::from(chars).saturating_mul(2)))?;
                Request::Begin {
                    timeout_ms,
                    description,
                }
            }
            Call::Put => {
                let key_len = short(r.u16())?;
                zero(short(r.u16())?)?;
                let value_len = short(r.u32())?;
                let key = short(r.take(usize::from(key_len)))?;
                let value = short(r.take(usize::try_from(value_len).unwrap_or(usize::MAX)))?;
                Request::Put { tx, key, value }
            }
            Call::Get | Call::Delete => {
                let key_len = short(r.u16())?;
                zero(short(r.u16())?)?;
                let key = short(r.take(usize::from(key_len)))?;
                if call == Call::Get {
                    Request::Get { tx, key }
                } else {
                    Request::Delete { tx, key }
                }
            }
            Call::List => {
                let prefix_len = short(r.u16())?;
                let cursor_len = short(r.u16())?;
                let max_keys = short(r.u32())?;
                let prefix = short(r.take(usize::from(prefix_len)))?;
                let cursor = short(r.take(usize::from(cursor_len)))?;
                Request::List {
                    tx,
                    prefix,
                    cursor,
                    max_keys,
                }
            }
            Call::Stats => Request::Stats,
        };
        if r.remaining() != 0 {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        req.validate(tx)?;
        let transacted = tx != 0 || call == Call::Begin;
        if isolation != Isolation::Unstated && !transacted {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok((req, isolation))
    }

    /// The value rules, after the lengths are known to be consistent.
    fn validate(&self, header_tx: u64) -> Result<(), NtStatus> {
        match *self {
            Request::GetVersion => Ok(()),
            Request::Begin { description, .. } => {
                zero(header_tx)?;
                if description.len() > MAX_DESCRIPTION_CHARS * 2 {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                Ok(())
            }
            Request::Stats => zero(header_tx),
            Request::Put { key, value, .. } => {
                check_key(key)?;
                if value.len() > MAX_VALUE_LEN {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                Ok(())
            }
            Request::Get { key, .. } | Request::Delete { key, .. } => check_key(key),
            Request::List { prefix, cursor, .. } => {
                if prefix.len() > MAX_KEY_LEN || cursor.len() > MAX_KEY_LEN {
                    return Err(NtStatus::INVALID_PARAMETER);
                }
                Ok(())
            }
        }
    }

    fn body_len(&self) -> usize {
        match *self {
            Request::GetVersion | Request::Stats => 0,
            Request::Begin { description, .. } => description.len().saturating_add(8),
            Request::Put { key, value, .. } => {
                key.len().saturating_add(value.len()).saturating_add(8)
            }
            Request::Get { key, .. } | Request::Delete { key, .. } => key.len().saturating_add(4),
            Request::List { prefix, cursor, .. } => {
                prefix.len().saturating_add(cursor.len()).saturating_add(8)
            }
        }
    }

    /// Length of the encoded request. `GET_VERSION` encodes as an empty input.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        match self {
            Request::GetVersion => 0,
            _ => self.body_len().saturating_add(HEADER_LEN),
        }
    }

    /// Encodes into `out`, returning the length written. Fields are written as given, so a client
    /// can also build invalid requests to test the driver's answers (lengths that do not fit their
    /// field widths fail with `Overflow`).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        self.encode_stating(Isolation::Unstated, out)
    }

    /// [`Request::encode`] with `isolation` stated in the header's flags.
    pub fn encode_stating(&self, isolation: Isolation, out: &mut [u8]) -> Result<usize, Overflow> {
        if matches!(self, Request::GetVersion) {
            return Ok(0);
        }
        let mut w = Writer::new(out);
        let body = u32::try_from(self.body_len()).map_err(|_| Overflow)?;
        let tx = self.tx();
        w.u16(PROTOCOL_VERSION)?;
        w.u16(isolation.flags())?;
        w.u32(body)?;
        w.u64(tx)?;
        let len16 = |b: &[u8]| u16::try_from(b.len()).map_err(|_| Overflow);
        match *self {
            Request::GetVersion | Request::Stats => {}
            Request::Begin {
                timeout_ms,
                description,
            } => {
                w.u32(timeout_ms)?;
                w.u16(u16::try_from(description.len() / 2).map_err(|_| Overflow)?)?;
                w.u16(0)?;
                w.bytes(description)?;
            }
            Request::Put { key, value, .. } => {
                w.u16(len16(key)?)?;
                w.u16(0)?;
                w.u32(u32::try_from(value.len()).map_err(|_| Overflow)?)?;
                w.bytes(key)?;
                w.bytes(value)?;
            }
            Request::Get { key, .. } | Request::Delete { key, .. } => {
                w.u16(len16(key)?)?;
                w.u16(0)?;
                w.bytes(key)?;
            }
            Request::List {
                prefix,
                cursor,
                max_keys,
                ..
            } => {
                w.u16(len16(prefix)?)?;
                w.u16(len16(cursor)?)?;
                w.u32(max_keys)?;
                w.bytes(prefix)?;
                w.bytes(cursor)?;
            }
        }
        Ok(w.len())
    }
}

/// The description's UTF-16 code units.
pub fn utf16_units(description: &[u8]) -> impl Iterator<Item = u16> + '_ {
    description.chunks_exact(2).map(|c| match c {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    })
}
