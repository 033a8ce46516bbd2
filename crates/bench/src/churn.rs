//! A store under churn: transactions insert new keys, and an untimed clean-up deletes them again,
//! so a benchmark can run as long as it likes on a store of a fixed size.

use crate::direct::DirectEngine;
use crate::suite::{VALUE, key};
use ktmrm_proto::Request;

/// A store that transactions insert new keys into; the keys `key(cleaned + 1..=next)` were
/// inserted since the last clean-up.
pub struct Churn {
    e: DirectEngine,
    next: u64,
    cleaned: u64,
}

impl Churn {
    /// Transactions on `e`.
    #[must_use]
    pub fn new(e: DirectEngine) -> Self {
        Churn {
            e,
            next: 0,
            cleaned: 0,
        }
    }

    /// Deletes what was inserted since the last call (untimed, between batches), so the store
    /// keeps its size however long a benchmark runs.
    pub fn clean(&mut self) {
        for x in self.cleaned + 1..=self.next {
            self.e.call(
                Request::Delete {
                    tx: 0,
                    key: &key(x),
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
            self.e.call(
                Request::Put {
                    tx,
                    key: &key(self.next),
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
