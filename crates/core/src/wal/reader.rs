//! Checked little-endian reading and fallible writing of the log's byte layouts. Every decoder
//! goes through [`Reader`], which returns `None` instead of reading past the end, so a torn or
//! hostile record can never panic; every encoder writes through a [`Sink`], so one body
//! routine serves counting, caller-provided buffers and fallibly grown `Vec`s.

use crate::fallible;
use crate::port::TxId;
use alloc::vec::Vec;
use ktmrm_proto::NtStatus;

pub(crate) use ktmrm_proto::Reader;

/// A transaction id (16 bytes).
pub(crate) fn read_tx(r: &mut Reader<'_>) -> Option<TxId> {
    r.array().map(TxId)
}

/// Where encoders write. Errors are NTSTATUS values (a full buffer, an exhausted `Vec`).
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]) -> Result<(), NtStatus>;
}

/// Counts bytes only: the first pass of every encoding, to size the buffer.
pub(crate) struct Count(pub(crate) usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) -> Result<(), NtStatus> {
        self.0 = self
            .0
            .checked_add(bytes.len())
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        Ok(())
    }
}

/// Writes into a caller-provided slice (the protocol's own bounds-checked writer);
/// `STATUS_BUFFER_TOO_SMALL` past its end.
impl Sink for ktmrm_proto::Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), NtStatus> {
        self.bytes(bytes).map_err(|_| NtStatus::BUFFER_TOO_SMALL)
    }
}

/// Grows `v` by `n` zero bytes, allocating with `try_reserve` only; the pushes then go into
/// reserved capacity (no infallible growth path).
pub(crate) fn grow_zeroed(v: &mut Vec<u8>, n: usize) -> Result<(), NtStatus> {
    v.try_reserve_exact(n)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    for _ in 0..n {
        fallible::push(v, 0).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    }
    Ok(())
}

/// Reserves room for `n` more elements, fallibly.
pub(crate) fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<(), NtStatus> {
    v.try_reserve(n)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
}

/// Pushes `x` after reserving room for it, fallibly.
pub(crate) fn push<T>(v: &mut Vec<T>, x: T) -> Result<(), NtStatus> {
    reserve(v, 1)?;
    fallible::push(v, x).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_the_end() {
        let mut r = Reader::new(&[1, 2, 0, 3, 0, 0, 0]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(2));
        assert_eq!(r.u64(), None);
        assert_eq!(r.remaining(), 4);
        assert_eq!(r.u32(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(r.take(0), Some(&[][..]));
    }

    #[test]
    fn writer_sink_refuses_overflow() {
        let mut buf = [0u8; 3];
        let mut s = ktmrm_proto::Writer::new(&mut buf);
        assert_eq!(s.put(b"ab"), Ok(()));
        assert_eq!(s.put(b"cd"), Err(NtStatus::BUFFER_TOO_SMALL));
        assert_eq!(s.put(b"c"), Ok(()));
        assert_eq!(&buf, b"abc");
    }
}
