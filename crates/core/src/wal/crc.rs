//! CRC-32C (Castagnoli), table-driven. Written here rather than taken from a crate so the kernel
//! path keeps no extra dependency; CRC-32C because it detects every 1–3 bit error and every burst
//! up to 32 bits in records of the sizes this log writes, and CLFS/iSCSI/ext4 use it too.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// One entry per byte value, built at compile time.
static TABLE: [u32; 256] = make_table();

// Compile-time only: an out-of-range index here would be a build error, never a runtime panic.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn make_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0usize;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// A running CRC-32C, so a header and a body can be summed without copying them together.
#[derive(Clone, Copy)]
pub struct Crc32c(u32);

impl Crc32c {
    /// A fresh sum.
    #[must_use]
    pub const fn new() -> Self {
        Crc32c(0xFFFF_FFFF)
    }

    /// Adds `bytes`.
    #[must_use]
    pub fn update(self, bytes: &[u8]) -> Self {
        let mut c = self.0;
        for &b in bytes {
            let idx = usize::from((c as u8) ^ b);
            c = TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8);
        }
        Crc32c(c)
    }

    /// The final value.
    #[must_use]
    pub const fn finish(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32C of `bytes`.
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 zero bytes.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(
            Crc32c::new().update(b"1234").update(b"56789").finish(),
            0xE306_9283
        );
    }
}
