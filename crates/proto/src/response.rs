//! Response layouts (protocol version 1). Little-endian, unaligned, fixed headers.
//!
//! ```text
//! GET_VERSION 0 u16 protocol_version  2 u16 reserved  4 u32 size (= VERSION_LEN)
//!             8 u32 max_key_len  12 u32 max_value_len  16 u32 max_live_transactions
//!             20 u32 max_write_set  24 u64 max_keys  32 u64 max_bytes
//!             40 u32 max_description_chars  44 u32 reserved
//! BEGIN       0 u64 tx (a handle valid in the caller's process)
//! GET         0 u32 value_len  4 u32 reserved  8 value
//!             Output < 8 bytes → STATUS_BUFFER_TOO_SMALL, nothing written. Output ≥ 8 but too
//!             small for the value → STATUS_BUFFER_OVERFLOW with only the 8-byte header written,
//!             so the caller learns value_len and retries.
//! LIST        0 u32 count  4 u32 flags (bit 0: MORE)  8 entries: u16 key_len, key bytes
//!             Output < LIST_MIN_OUTPUT → STATUS_BUFFER_TOO_SMALL (so one key always fits). The
//!             next page's cursor is the last key returned.
//! STATS       0 u32 size (= STATS_LEN)  4 u32 field count  8 u64 × STATS_FIELDS (order below)
//! PUT/DELETE  no output.
//! ```

use crate::request::{MAX_DESCRIPTION_CHARS, MAX_KEY_LEN, MAX_VALUE_LEN, PROTOCOL_VERSION};
use crate::wire::{Overflow, Reader, Writer};

/// Length of the GET_VERSION answer.
pub const VERSION_LEN: usize = 48;
/// Length of the BEGIN answer.
pub const BEGIN_LEN: usize = 8;
/// Length of the GET answer's header.
pub const GET_HEADER_LEN: usize = 8;
/// Length of the LIST answer's header.
pub const LIST_HEADER_LEN: usize = 8;
/// Smallest output LIST accepts: the header and one key of the largest size.
pub const LIST_MIN_OUTPUT: usize = LIST_HEADER_LEN + 2 + MAX_KEY_LEN;
/// LIST flag: more keys follow; call again with the last key as the cursor.
pub const LIST_MORE: u32 = 1;

/// Quotas the driver enforces; part of the GET_VERSION answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Transactions with live ktmrm state (enlisted, not yet ended).
    pub max_live_transactions: u32,
    /// Keys one transaction may write.
    pub max_write_set: u32,
    /// Committed keys in the store.
    pub max_keys: u64,
    /// Committed key + value bytes in the store.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_live_transactions: 4096,
            max_write_set: 65_536,
            max_keys: 4_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// The GET_VERSION answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The driver's protocol version.
    pub protocol_version: u16,
    /// Longest key in bytes.
    pub max_key_len: u32,
    /// Longest value in bytes.
    pub max_value_len: u32,
    /// Longest BEGIN description in UTF-16 code units.
    pub max_description_chars: u32,
    /// The driver's quotas.
    pub limits: Limits,
}

impl VersionInfo {
    /// What this crate's protocol answers with the given quotas.
    #[must_use]
    pub const fn current(limits: Limits) -> Self {
        VersionInfo {
            protocol_version: PROTOCOL_VERSION,
            max_key_len: MAX_KEY_LEN as u32,
            max_value_len: MAX_VALUE_LEN as u32,
            max_description_chars: MAX_DESCRIPTION_CHARS as u32,
            limits,
        }
    }

    /// Encodes into `out` (needs `VERSION_LEN` bytes).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        let mut w = Writer::new(out);
        w.u16(self.protocol_version)?;
        w.u16(0)?;
        w.u32(VERSION_LEN as u32)?;
        w.u32(self.max_key_len)?;
        w.u32(self.max_value_len)?;
        w.u32(self.limits.max_live_transactions)?;
        w.u32(self.limits.max_write_set)?;
        w.u64(self.limits.max_keys)?;
        w.u64(self.limits.max_bytes)?;
        w.u32(self.max_description_chars)?;
        w.u32(0)?;
        Ok(w.len())
    }

    /// Decodes an answer; `None` if it is shorter than its declared size. The protocol version is
    /// read first so a client can report a mismatch even when the rest differs.
    #[must_use]
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let protocol_version = r.u16()?;
        r.u16()?;
        let size = r.u32()?;
        if usize::try_from(size).ok()? < VERSION_LEN || buf.len() < VERSION_LEN {
            return None;
        }
        let max_key_len = r.u32()?;
        let max_value_len = r.u32()?;
        let max_live_transactions = r.u32()?;
        let max_write_set = r.u32()?;
        let max_keys = r.u64()?;
        let max_bytes = r.u64()?;
        let max_description_chars = r.u32()?;
        Some(VersionInfo {
            protocol_version,
            max_key_len,
            max_value_len,
            max_description_chars,
            limits: Limits {
                max_live_transactions,
                max_write_set,
                max_keys,
                max_bytes,
            },
        })
    }
}

macro_rules! stats {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// The STATS answer: counters since the driver started, and current sizes.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl Stats {
            /// Field names in wire order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Values in wire order.
            #[must_use]
            pub const fn values(&self) -> [u64; STATS_FIELDS] {
                [$(self.$field),*]
            }

            fn from_values(v: [u64; STATS_FIELDS]) -> Self {
                let [$($field),*] = v;
                Stats { $($field),* }
            }
        }
    };
}

stats! {
    /// Transactions whose ktmrm writes were committed (multi- or single-phase).
    commits,
    /// Transactions rolled back (explicitly, by timeout, by another RM's veto or handle close).
    rollbacks,
    /// Writes refused with STATUS_TRANSACTIONAL_CONFLICT.
    conflicts,
    /// Transactions with live ktmrm state now.
    live_transactions,
    /// Committed keys now.
    keys,
    /// Committed key + value bytes now.
    bytes,
    /// Transactions prepared and waiting for their outcome now.
    prepared,
    /// PREPARE answered with a no vote (quota exceeded at prepare, or resources).
    vetoes,
    /// Transactions that only read: PREPARE answered read-only, or single-phase commit with
    /// nothing to apply (not counted in `commits`).
    read_only,
    /// SINGLE_PHASE_COMMIT notifications committed.
    single_phase_commits,
    /// Writes outside any transaction, committed at once.
    non_transacted_writes,
    /// Requests refused with STATUS_QUOTA_EXCEEDED.
    quota_rejections,
    /// Notifications that did not fit the enlistment's state (a KTM protocol surprise).
    protocol_errors,
    /// Enlistments created.
    enlistments,
}

/// Number of counters in the STATS answer.
pub const STATS_FIELDS: usize = 14;
/// Length of the STATS answer.
pub const STATS_LEN: usize = 8 + 8 * STATS_FIELDS;

impl Stats {
    /// Encodes into `out` (needs `STATS_LEN` bytes).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        let mut w = Writer::new(out);
        w.u32(STATS_LEN as u32)?;
        w.u32(STATS_FIELDS as u32)?;
        for v in self.values() {
            w.u64(v)?;
        }
        Ok(w.len())
    }

    /// Decodes an answer; `None` if short or of another field count.
    #[must_use]
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let _size = r.u32()?;
        if usize::try_from(r.u32()?).ok()? != STATS_FIELDS {
            return None;
        }
        let mut v = [0u64; STATS_FIELDS];
        for slot in &mut v {
            *slot = r.u64()?;
        }
        Some(Stats::from_values(v))
    }
}

/// Decodes a BEGIN answer.
#[must_use]
pub fn decode_begin(buf: &[u8]) -> Option<u64> {
    Reader::new(buf).u64()
}

/// Decodes a GET answer: the declared value length, and the value if it is all there.
#[must_use]
pub fn decode_get(buf: &[u8]) -> Option<(u32, Option<&[u8]>)> {
    let mut r = Reader::new(buf);
    let len = r.u32()?;
    r.u32()?;
    Some((len, r.take(usize::try_from(len).ok()?)))
}

/// Writes a LIST answer: a header, then entries while they fit.
pub struct ListWriter<'a> {
    w: Writer<'a>,
    count: u32,
}

impl<'a> ListWriter<'a> {
    /// Starts an answer in `out`; fails if `out` is shorter than `LIST_MIN_OUTPUT`.
    pub fn new(out: &'a mut [u8]) -> Result<Self, Overflow> {
        if out.len() < LIST_MIN_OUTPUT {
            return Err(Overflow);
        }
        let mut w = Writer::new(out);
        w.u64(0)?; // header, filled by finish()
        Ok(ListWriter { w, count: 0 })
    }

    /// Appends a key; `Err` (and nothing written) when it does not fit.
    pub fn push(&mut self, key: &[u8]) -> Result<(), Overflow> {
        let len = u16::try_from(key.len()).map_err(|_| Overflow)?;
        if self.w.remaining() < key.len().saturating_add(2) {
            return Err(Overflow);
        }
        self.w.u16(len)?;
        self.w.bytes(key)?;
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Keys pushed so far.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// Fills in the header and returns the answer's length.
    #[must_use]
    pub fn finish(mut self, more: bool) -> usize {
        // The header was reserved in new(), so these writes are in bounds.
        let _ = self.w.patch(0, &self.count.to_le_bytes());
        let _ = self.w.patch(4, &u32::from(more).to_le_bytes());
        self.w.len()
    }
}

/// Decodes a LIST answer into (keys, more). Keys borrow from `buf`.
pub fn decode_list(buf: &[u8]) -> Option<(ListKeys<'_>, bool)> {
    let mut r = Reader::new(buf);
    let count = r.u32()?;
    let flags = r.u32()?;
    Some((ListKeys { r, left: count }, flags & LIST_MORE != 0))
}

/// The keys of a LIST answer, in order.
pub struct ListKeys<'a> {
    r: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for ListKeys<'a> {
    type Item = Option<&'a [u8]>;

    /// `Some(None)` marks a malformed entry (the answer is truncated); iteration then stops.
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left = self.left.saturating_sub(1);
        let key = self.r.u16().and_then(|n| self.r.take(usize::from(n)));
        if key.is_none() {
            self.left = 0;
        }
        Some(key)
    }
}
