//! A store under churn: transactions insert new keys, and an untimed clean-up deletes them again,
//! so a benchmark can run as long as it likes on a store of a fixed size.

use crate::direct::DirectEngine;
use crate::suite::{VALUE, prefixed_key};
use ktmrm_proto::Request;

/// A store that transactions insert new keys into; the keys `key(cleaned + 1..=next)` were
/// inserted since the last clean-up.
pub struct Churn {
    e: DirectEngine,
    next: u64,
    cleaned: u64,
    /// Bytes every key starts with (see [`prefixed_key`]).
    prefix: &'static [u8],
}

impl Churn {
    /// Transactions on `e`.
    #[must_use]
    pub fn new(e: DirectEngine) -> Self {
        Self::with_prefix(e, b"")
    }

    /// Transactions on `e` whose keys all start with `prefix`.
    #[must_use]
    pub fn with_prefix(e: DirectEngine, prefix: &'static [u8]) -> Self {
        Churn {
            e,
            next: 0,
            cleaned: 0,
            prefix,
        }
    }

    /// Deletes what was inserted since the last call (untimed, between batches), so the store
    /// keeps its size however long a benchmark runs.
    pub fn clean(&mut self) {
        for x in self.cleaned + 1..=self.next {
            let (k, n) = prefixed_key(self.prefix, x);
            self.e.call(
                Request::Delete {
                    tx: 0,
                    key: &k[..n],
                },
                0,
            );
        }
        self.cleaned = self.next;
    }

    /// One transaction putting `n` new keys.
    pub fn tx(&mut self, n: u64) {
        let tx = self.e.begin();
        for _ in 0..n {
            self.next += 1;
            let (k, len) = prefixed_key(self.prefix, self.next);
            self.e.call(
                Request::Put {
                    tx,
                    key: &k[..len],
                    value: VALUE,
                },
                0,
            );
        }
        self.e.commit_last();
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &DirectEngine {
        &self.e
    }
}
