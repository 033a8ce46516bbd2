//! What the cases share: a keyed test entry, keys, a deterministic RNG, the fault budget.

use super::fault::set_page_budget;
use super::*;
use alloc::boxed::Box;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ent {
    pub(super) key: Box<[u8]>,
    pub(super) val: u32,
}

impl Keyed for Ent {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

pub(super) fn ent(key: &[u8], val: u32) -> Ent {
    Ent {
        key: key.into(),
        val,
    }
}

pub(super) fn k32(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Deterministic xorshift, so the tests need no RNG crate.
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Resets the fault-injection budget even if a test fails.
pub(super) struct Budget;
impl Budget {
    pub(super) fn set(b: Option<usize>) -> Budget {
        set_page_budget(b);
        Budget
    }
}
impl Drop for Budget {
    fn drop(&mut self) {
        set_page_budget(None);
    }
}

pub(super) fn assert_balanced<E: Keyed>(t: &Tree<E>) {
    t.check();
    assert!(t.height <= MAX_HEIGHT, "height {}", t.height);
}
