//! An in-memory [`LogPort`]: the test double, and the stable storage of the simulator's durable
//! RM. It remembers which records were forced, so a simulated crash loses exactly the unforced
//! ones (optionally leaving the first of them torn). Allocation is fallible like the rest of the
//! crate, so it is safe to compile into every build.

use super::reader::{grow_zeroed, push, reserve};
use super::{LogPort, Lsn};
use crate::lock::{SpinLock, StateLock};
use alloc::vec::Vec;
use core::ops::ControlFlow;
use ktmrm_proto::NtStatus;

/// One stored record: the LSN the log gave it and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRecord {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its bytes (as written, or as a test damaged them).
    pub bytes: Vec<u8>,
}

struct Inner {
    records: Vec<MemRecord>,
    next: Lsn,
    /// Every record up to here is durable (`Lsn(0)`: none).
    forced: Lsn,
    /// Fault injection: every append / force fails with this status while set.
    fail_append: Option<NtStatus>,
    fail_force: Option<NtStatus>,
    /// Buffers set aside by `reserve`, one per reserved record; `records` has room for them.
    spares: Vec<Vec<u8>>,
}

/// A log in memory. `Sync`: the simulator's threads share one.
pub struct MemLog {
    inner: SpinLock<Inner>,
}

impl Default for MemLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemLog {
    /// An empty log.
    #[must_use]
    pub const fn new() -> Self {
        MemLog {
            inner: SpinLock::new(Inner {
                records: Vec::new(),
                next: Lsn::FIRST,
                forced: Lsn(0),
                fail_append: None,
                fail_force: None,
                spares: Vec::new(),
            }),
        }
    }

    /// Simulates a crash: records after the last forced one are lost.
    pub fn crash(&self) {
        self.crash_torn(0);
    }

    /// Simulates a crash during a write: the first unforced record keeps its first `keep` bytes
    /// (nothing if `keep` is 0; all of it if it is no longer), every later one is lost. What
    /// remains counts as forced from then on, as bytes on a disk do.
    pub fn crash_torn(&self, keep: usize) {
        self.inner.with(|i| {
            let forced = i.forced;
            let mut torn = false;
            i.records.retain_mut(|r| {
                if r.lsn <= forced {
                    return true;
                }
                if torn || keep == 0 {
                    return false;
                }
                torn = true;
                r.bytes.truncate(keep);
                true
            });
            i.next = i.records.last().map_or(forced.next(), |r| r.lsn.next());
            // What survived the crash is on the disk now: a later crash cannot lose it (the
            // torn record, if any, is cut by the `discard_from` of the next recovery).
            i.forced = i.records.last().map_or(forced, |r| r.lsn);
        });
    }

    /// Makes every later append fail with `status` (nothing is stored), or stops failing.
    pub fn fail_appends(&self, status: Option<NtStatus>) {
        self.inner.with(|i| i.fail_append = status);
    }

    /// Makes every later force fail with `status` (nothing more becomes durable), or stops
    /// failing: a log device that went away.
    pub fn fail_forces(&self, status: Option<NtStatus>) {
        self.inner.with(|i| i.fail_force = status);
    }

    /// The LSN of the last record stored (`Lsn(0)` if none).
    #[must_use]
    pub fn last_lsn(&self) -> Lsn {
        self.inner
            .with(|i| i.records.last().map_or(Lsn(0), |r| r.lsn))
    }

    /// Direct access to the stored records, for tests that damage, reorder or duplicate them.
    pub fn with_records<R>(&self, f: impl FnOnce(&mut Vec<MemRecord>) -> R) -> R {
        self.inner.with(|i| f(&mut i.records))
    }

    /// The highest forced LSN (`Lsn(0)` if none).
    #[must_use]
    pub fn forced(&self) -> Lsn {
        self.inner.with(|i| i.forced)
    }

    /// Records stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.with(|i| i.records.len())
    }

    /// True if no record is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes stored.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.inner.with(|i| {
            i.records
                .iter()
                .fold(0usize, |n, r| n.saturating_add(r.bytes.len()))
        })
    }
}

impl Inner {
    /// Stores `bytes` (already holding the record) as the next record.
    fn store(&mut self, bytes: Vec<u8>) -> Result<Lsn, NtStatus> {
        if let Some(st) = self.fail_append {
            return Err(st);
        }
        let lsn = self.next;
        // Keep room for the reserved records: an unreserved append must not use it.
        reserve(&mut self.records, self.spares.len().saturating_add(1))?;
        push(&mut self.records, MemRecord { lsn, bytes })?;
        self.next = lsn.next();
        Ok(lsn)
    }
}

impl LogPort for MemLog {
    fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        let mut bytes = Vec::new();
        grow_zeroed(&mut bytes, record.len())?;
        bytes.copy_from_slice(record);
        self.inner.with(|i| i.store(bytes))
    }

    fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        self.inner.with(|i| {
            let outstanding = i.spares.len().saturating_add(records);
            reserve(&mut i.records, outstanding)?;
            reserve(&mut i.spares, records)?;
            for _ in 0..records {
                let mut b = Vec::new();
                b.try_reserve_exact(bytes)
                    .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
                push(&mut i.spares, b)?;
            }
            Ok(())
        })
    }

    fn unreserve(&self, records: usize, _bytes: usize) {
        self.inner.with(|i| {
            for _ in 0..records {
                i.spares.pop();
            }
        });
    }

    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        self.inner.with(|i| {
            let mut bytes = i.spares.pop().unwrap_or_default();
            bytes.clear();
            grow_zeroed(&mut bytes, record.len())?;
            bytes.copy_from_slice(record);
            i.store(bytes)
        })
    }

    fn force(&self, upto: Lsn) -> Result<(), NtStatus> {
        self.inner.with(|i| {
            if let Some(st) = i.fail_force {
                return Err(st);
            }
            let last = i.records.last().map_or(Lsn(0), |r| r.lsn);
            i.forced = i.forced.max(upto.min(last));
            Ok(())
        })
    }

    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), NtStatus> {
        self.inner.with(|i| {
            let start = from.unwrap_or(Lsn(0));
            for r in i.records.iter().filter(|r| r.lsn >= start) {
                if sink(r.lsn, &r.bytes).is_break() {
                    break;
                }
            }
            Ok(())
        })
    }

    fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.inner.with(|i| {
            i.records.retain(|r| r.lsn >= lsn);
            Ok(())
        })
    }

    fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.inner.with(|i| {
            i.records.retain(|r| r.lsn < lsn);
            i.next = i.next.min(lsn);
            i.forced = i.forced.min(Lsn(lsn.0.saturating_sub(1)));
            Ok(())
        })
    }
}
