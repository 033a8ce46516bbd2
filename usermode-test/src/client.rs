//! The safe client: typed calls over the IOCTL ABI, and an RAII [`Transaction`].

use crate::error::{Error, Result};
use crate::transport::{Transport, TransportKind};
pub use ktmrm_proto::Isolation;
use ktmrm_proto::{
    GET_HEADER_LEN, LIST_MIN_OUTPUT, MAX_DESCRIPTION_CHARS, MAX_KEY_LEN, MAX_VALUE_LEN, NtStatus,
    PROTOCOL_VERSION, Request, STATS_LEN, Stats, VERSION_LEN, VersionInfo, decode_begin,
    decode_get, decode_list,
};
use std::sync::Arc;

/// Output buffer for a LIST page: large enough for hundreds of keys, and ≥ `LIST_MIN_OUTPUT`.
const LIST_PAGE_BYTES: usize = 16 * 1024;
/// First GET buffer: the header and a 256-byte value; grown on `STATUS_BUFFER_OVERFLOW`.
const GET_FIRST_BYTES: usize = GET_HEADER_LEN + 256;

/// Quotes a key or value for messages: printable ASCII as is, other bytes as `\xNN`.
#[must_use]
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// `s` as BEGIN carries a description: UTF-16LE, no terminator.
pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `n` with thousands separators (`65,536`), as the limits are written in messages and docs.
#[must_use]
pub fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Which field of `req` is outside the protocol's range, with its size and the limit: what a
/// STATUS_INVALID_PARAMETER answer to `req` means. `None` when every length is in range.
#[must_use]
pub fn out_of_range(req: &Request<'_>) -> Option<String> {
    let bytes = |what: (&str, &str), len: usize, lo: usize, hi: usize| {
        (len < lo || len > hi).then(|| {
            format!(
                "the {} is {} bytes; {} are {lo}–{} bytes",
                what.0,
                grouped(len),
                what.1,
                grouped(hi)
            )
        })
    };
    let key = ("key", "keys");
    match *req {
        Request::Put { key: k, value, .. } => bytes(key, k.len(), 1, MAX_KEY_LEN)
            .or_else(|| bytes(("value", "values"), value.len(), 0, MAX_VALUE_LEN)),
        Request::Get { key: k, .. } | Request::Delete { key: k, .. } => {
            bytes(key, k.len(), 1, MAX_KEY_LEN)
        }
        Request::List { prefix, cursor, .. } => {
            bytes(("prefix", "prefixes"), prefix.len(), 0, MAX_KEY_LEN)
                .or_else(|| bytes(("cursor", "cursors"), cursor.len(), 0, MAX_KEY_LEN))
        }
        Request::Begin { description, .. } => {
            let units = description.len() / 2;
            (units > MAX_DESCRIPTION_CHARS).then(|| {
                format!(
                    "the transaction description is {units} UTF-16 units; descriptions are at \
                     most {MAX_DESCRIPTION_CHARS}"
                )
            })
        }
        Request::GetVersion | Request::Stats => None,
    }
}

/// A connection to a ktmrm device.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
}

/// Who creates a [`Transaction`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxSource {
    /// The driver, through the BEGIN call (ktmrm creates the KTM transaction for the caller).
    Begin,
    /// The caller, through ktmw32 `CreateTransaction` (as an app that also uses TxF/TxR would).
    Ktmw32,
}

impl Client {
    /// Connects over `transport` after checking the driver speaks this client's protocol.
    pub fn new(transport: Arc<dyn Transport>) -> Result<Client> {
        let c = Client::unchecked(transport);
        let v = c.version()?;
        if v.protocol_version != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch {
                driver: v.protocol_version,
            });
        }
        Ok(c)
    }

    /// Wraps `transport` without the version handshake (the bad-input suite talks to a device
    /// whatever it answers).
    #[must_use]
    pub fn unchecked(transport: Arc<dyn Transport>) -> Client {
        Client { transport }
    }

    /// The transport underneath.
    #[must_use]
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Which kind of device this is.
    #[must_use]
    pub fn kind(&self) -> TransportKind {
        self.transport.kind()
    }

    /// Encodes `req` and sends it; returns the status and the bytes written to `out`.
    pub fn raw(&self, req: &Request<'_>, out: &mut [u8]) -> (NtStatus, usize) {
        self.raw_stating(req, Isolation::Unstated, out)
    }

    /// [`Client::raw`] with `level` stated in the request header.
    pub fn raw_stating(
        &self,
        req: &Request<'_>,
        level: Isolation,
        out: &mut [u8],
    ) -> (NtStatus, usize) {
        let mut input = vec![0u8; req.encoded_len()];
        match req.encode_stating(level, &mut input) {
            Ok(n) => self.transport.ioctl(req.call().code(), &input[..n], out),
            Err(_) => (NtStatus::INVALID_PARAMETER, 0),
        }
    }

    /// Sends `req` and fails on an error status (warnings such as BUFFER_OVERFLOW are returned).
    fn call(
        &self,
        op: impl FnOnce() -> String,
        (req, level): (&Request<'_>, Isolation),
        out: &mut [u8],
    ) -> Result<(NtStatus, usize)> {
        let (st, n) = self.raw_stating(req, level, out);
        if st.is_error() {
            return Err(match out_of_range(req) {
                Some(why) if st == NtStatus::INVALID_PARAMETER => Error::OutOfRange {
                    op: op(),
                    status: st,
                    why,
                },
                _ => Error::status_of(op(), st),
            });
        }
        Ok((st, n))
    }

    /// GET_VERSION: protocol version and limits.
    pub fn version(&self) -> Result<VersionInfo> {
        let mut out = [0u8; VERSION_LEN];
        let (_, n) = self.call(
            || "version".into(),
            (&Request::GetVersion, Isolation::Unstated),
            &mut out,
        )?;
        // The version comes first, so even a shorter foreign answer reports a mismatch.
        if n >= 2 && u16::from_le_bytes([out[0], out[1]]) != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch {
                driver: u16::from_le_bytes([out[0], out[1]]),
            });
        }
        VersionInfo::decode(&out[..n]).ok_or_else(|| Error::BadAnswer {
            op: "version".into(),
            detail: format!("{n} bytes, expected {VERSION_LEN}"),
        })
    }

    /// STATS: counters and sizes.
    pub fn stats(&self) -> Result<Stats> {
        let mut out = [0u8; STATS_LEN];
        let (_, n) = self.call(
            || "stats".into(),
            (&Request::Stats, Isolation::Unstated),
            &mut out,
        )?;
        Stats::decode(&out[..n]).ok_or_else(|| Error::BadAnswer {
            op: "stats".into(),
            detail: format!("{n} bytes, expected {STATS_LEN}"),
        })
    }

    /// BEGIN: the driver creates a KTM transaction; returns its handle (in this process).
    pub fn begin_raw(&self, timeout_ms: u32, description: &str) -> Result<u64> {
        self.begin_stating(Isolation::Unstated, timeout_ms, description)
    }

    /// BEGIN stating `level` (serializable makes the driver enlist in the new transaction at
    /// once, at that level).
    pub fn begin_stating(
        &self,
        level: Isolation,
        timeout_ms: u32,
        description: &str,
    ) -> Result<u64> {
        let desc = utf16le(description);
        let mut out = [0u8; 8];
        let req = Request::Begin {
            timeout_ms,
            description: &desc,
        };
        let (_, n) = self.call(|| "begin".into(), (&req, level), &mut out)?;
        decode_begin(&out[..n]).ok_or_else(|| Error::BadAnswer {
            op: "begin".into(),
            detail: format!("{n} bytes"),
        })
    }

    /// PUT in transaction `tx` (0 = committed at once).
    pub fn put_in(&self, tx: u64, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_stating((tx, Isolation::Unstated), key, value)
    }

    /// PUT in transaction `tx`, stating `level` in the header.
    pub fn put_stating(
        &self,
        (tx, level): (u64, Isolation),
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        let req = Request::Put { tx, key, value };
        self.call(|| format!("put \"{}\"", show(key)), (&req, level), &mut [])
            .map(drop)
    }

    /// DELETE in transaction `tx` (0 = committed at once).
    pub fn delete_in(&self, tx: u64, key: &[u8]) -> Result<()> {
        self.delete_stating((tx, Isolation::Unstated), key)
    }

    /// DELETE in transaction `tx`, stating `level` in the header.
    pub fn delete_stating(&self, (tx, level): (u64, Isolation), key: &[u8]) -> Result<()> {
        let req = Request::Delete { tx, key };
        self.call(
            || format!("delete \"{}\"", show(key)),
            (&req, level),
            &mut [],
        )
        .map(drop)
    }

    /// GET in the view of `tx` (0 = committed only), growing the buffer until the value fits.
    pub fn get_in(&self, tx: u64, key: &[u8]) -> Result<Vec<u8>> {
        self.get_stating((tx, Isolation::Unstated), key)
    }

    /// GET in the view of `tx`, stating `level` in the header.
    pub fn get_stating(&self, (tx, level): (u64, Isolation), key: &[u8]) -> Result<Vec<u8>> {
        let op = || format!("get \"{}\"", show(key));
        let mut out = vec![0u8; GET_FIRST_BYTES];
        // The value can change between calls (a commit elsewhere), so retry a few times.
        for _ in 0..8 {
            let (st, n) = self.call(op, (&Request::Get { tx, key }, level), &mut out)?;
            let bad = |detail: String| Error::BadAnswer { op: op(), detail };
            let (len, value) = decode_get(&out[..n]).ok_or_else(|| bad(format!("{n} bytes")))?;
            if st == NtStatus::BUFFER_OVERFLOW {
                out = vec![0u8; GET_HEADER_LEN + len as usize];
                continue;
            }
            return value
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad(format!("value_len {len} but {n} bytes")));
        }
        Err(Error::BadAnswer {
            op: op(),
            detail: "the value kept growing".into(),
        })
    }

    /// One LIST page: keys after `cursor` with `prefix`, and whether more follow.
    pub fn list_page(
        &self,
        tx: u64,
        prefix: &[u8],
        cursor: &[u8],
        max_keys: u32,
        out_len: usize,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        self.list_page_stating((tx, Isolation::Unstated), prefix, cursor, max_keys, out_len)
    }

    /// [`Client::list_page`] stating `level` in the header.
    pub fn list_page_stating(
        &self,
        (tx, level): (u64, Isolation),
        prefix: &[u8],
        cursor: &[u8],
        max_keys: u32,
        out_len: usize,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        let op = || format!("list \"{}\"", show(prefix));
        let mut out = vec![0u8; out_len];
        let req = Request::List {
            tx,
            prefix,
            cursor,
            max_keys,
        };
        let (_, n) = self.call(op, (&req, level), &mut out)?;
        let (keys, more) = decode_list(&out[..n]).ok_or_else(|| Error::BadAnswer {
            op: op(),
            detail: format!("{n} bytes"),
        })?;
        let keys = keys
            .map(|k| k.map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::BadAnswer {
                op: op(),
                detail: "truncated entry".into(),
            })?;
        Ok((keys, more))
    }

    /// Every key with `prefix` in the view of `tx`, following the cursor across pages.
    pub fn list_in(&self, tx: u64, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.list_stating((tx, Isolation::Unstated), prefix)
    }

    /// [`Client::list_in`] stating `level` in the header of every page's request.
    pub fn list_stating(&self, at: (u64, Isolation), prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut all: Vec<Vec<u8>> = Vec::new();
        loop {
            let cursor = all.last().map_or(&[][..], Vec::as_slice);
            let page = LIST_PAGE_BYTES.max(LIST_MIN_OUTPUT);
            let (keys, more) = self.list_page_stating(at, prefix, cursor, 0, page)?;
            if more && keys.is_empty() {
                return Err(Error::BadAnswer {
                    op: "list".into(),
                    detail: "MORE set on an empty page".into(),
                });
            }
            all.extend(keys);
            if !more {
                return Ok(all);
            }
        }
    }

    /// PUT, committed at once.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_in(0, key, value)
    }

    /// GET of the committed value.
    pub fn get(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.get_in(0, key)
    }

    /// DELETE, committed at once.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.delete_in(0, key)
    }

    /// Committed keys with `prefix`.
    pub fn list(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.list_in(0, prefix)
    }

    /// A read-committed transaction created by the driver (BEGIN), no timeout.
    pub fn begin(&self) -> Result<Transaction> {
        self.begin_with(TxSource::Begin, Isolation::ReadCommitted, 0, "ktmrm-test")
    }

    /// A transaction at `level` from `source`, with a KTM timeout (`0` = none) and a
    /// description. Its requests state `level`, so the driver fixes it when it first enlists
    /// (at BEGIN for a serializable one) and refuses the transaction's requests if another
    /// client fixed a different one.
    pub fn begin_with(
        &self,
        source: TxSource,
        level: Isolation,
        timeout_ms: u32,
        description: &str,
    ) -> Result<Transaction> {
        let handle = match source {
            TxSource::Begin => self.begin_stating(level, timeout_ms, description)?,
            TxSource::Ktmw32 => self.transport.create_transaction(timeout_ms, description)?,
        };
        Ok(self.adopt_with(handle, level))
    }

    /// Adopts a transaction handle this process owns, read committed; the `Transaction`
    /// closes it.
    #[must_use]
    pub fn adopt(&self, handle: u64) -> Transaction {
        self.adopt_with(handle, Isolation::ReadCommitted)
    }

    /// Adopts a transaction handle this process owns, stating `level` on every request
    /// (`Isolation::Unstated`: the level whoever enlisted it first fixed).
    #[must_use]
    pub fn adopt_with(&self, handle: u64, level: Isolation) -> Transaction {
        Transaction {
            client: self.clone(),
            handle,
            level,
            state: TxState::Active,
        }
    }

    /// Every key under `prefix` with its committed value, for before/after comparisons.
    pub fn snapshot(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.list(prefix)?
            .into_iter()
            .map(|k| self.get(&k).map(|v| (k, v)))
            .collect()
    }

    /// Deletes every committed key under `prefix` (cleanup on a shared device).
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<()> {
        for k in self.list(prefix)? {
            match self.delete(&k) {
                Err(e) if e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND) => {}
                r => r?,
            }
        }
        Ok(())
    }
}

/// Where a [`Transaction`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxState {
    /// Neither committed nor rolled back by us.
    Active,
    /// Commit or rollback was asked for; the handle stays open so later calls naming it get
    /// the driver's answer for an ended transaction.
    Ended,
    /// The handle is closed.
    Closed,
}

/// A KTM transaction handle. Rolled back and closed on drop unless committed; after commit or
/// rollback the handle stays open until drop (so "ended transaction" answers can be observed).
pub struct Transaction {
    client: Client,
    handle: u64,
    level: Isolation,
    state: TxState,
}

impl Transaction {
    /// The handle value requests carry.
    #[must_use]
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The isolation level every request of this transaction states.
    #[must_use]
    pub fn level(&self) -> Isolation {
        self.level
    }

    fn at(&self) -> (u64, Isolation) {
        (self.handle, self.level)
    }

    /// PUT in this transaction.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.client.put_stating(self.at(), key, value)
    }

    /// GET in this transaction's view.
    pub fn get(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.client.get_stating(self.at(), key)
    }

    /// DELETE in this transaction.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.client.delete_stating(self.at(), key)
    }

    /// Keys with `prefix` in this transaction's view.
    pub fn list(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.client.list_stating(self.at(), prefix)
    }

    /// Commits (KTM runs the two phases over every enlisted RM) and waits for the outcome.
    pub fn commit(&mut self) -> Result<()> {
        self.end(true)
    }

    /// Rolls back: every enlisted RM discards its work.
    pub fn rollback(&mut self) -> Result<()> {
        self.end(false)
    }

    fn end(&mut self, commit: bool) -> Result<()> {
        let t = &self.client.transport;
        let st = if commit {
            t.commit_transaction(self.handle)
        } else {
            t.rollback_transaction(self.handle)
        };
        if self.state == TxState::Active {
            self.state = TxState::Ended;
        }
        if st.is_error() {
            return Err(Error::status_of(
                if commit { "commit" } else { "rollback" },
                st,
            ));
        }
        Ok(())
    }

    /// Enlists a resource manager that votes no (simulator only).
    pub fn veto(&self) -> Result<()> {
        self.client.transport.veto(self.handle)
    }

    /// Closes the handle without committing: if it was the last handle, KTM rolls back.
    pub fn close(mut self) -> NtStatus {
        self.close_now()
    }

    fn close_now(&mut self) -> NtStatus {
        if self.state == TxState::Closed {
            return NtStatus::SUCCESS;
        }
        self.state = TxState::Closed;
        self.client.transport.close_handle(self.handle)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.state == TxState::Active {
            let _ = self.client.transport.rollback_transaction(self.handle);
        }
        let _ = self.close_now();
    }
}
