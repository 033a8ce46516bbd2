//! Bounds-checked little-endian reading and writing over byte slices, without panics.

/// Reads little-endian fields from the front of a slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) const fn remaining(&self) -> usize {
        self.rest.len()
    }
}

/// Writes little-endian fields into a slice; every write fails cleanly past the end.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// The output slice was too short for what was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub const fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Overflow> {
        let end = self.pos.checked_add(b.len()).ok_or(Overflow)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(Overflow)?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// Overwrites bytes already written at `at` (for headers filled in last).
    pub fn patch(&mut self, at: usize, b: &[u8]) -> Result<(), Overflow> {
        let end = at
            .checked_add(b.len())
            .filter(|e| *e <= self.pos)
            .ok_or(Overflow)?;
        self.buf
            .get_mut(at..end)
            .ok_or(Overflow)?
            .copy_from_slice(b);
        Ok(())
    }

    /// Appends a `u16`.
    pub fn u16(&mut self, v: u16) -> Result<(), Overflow> {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> Result<(), Overflow> {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> Result<(), Overflow> {
        self.bytes(&v.to_le_bytes())
    }

    /// Bytes written so far.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.pos
    }

    /// True when nothing was written.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Bytes still free.
    #[must_use]
    pub const fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}
