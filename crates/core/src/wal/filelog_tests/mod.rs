//! [`FileLog`] tests over [`MemFile`], a disk model with crashes, torn writes and failures: the
//! port's behaviour, replay of what a crash leaves, and the durable engine on top. The disk model
//! and helpers here; the cases by concern in the submodules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod engine;
mod group;
mod port;

use super::*;
use crate::SpinLock;
use crate::lock::StateLock;
use crate::port::{Answer, Notification as N, TxId};
use crate::testing::Harness;
use ktmrm_proto::NtStatus as S;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

// ---- the disk model ----

#[derive(Default)]
struct Disk {
    /// What survives a crash.
    durable: Vec<u8>,
    /// Writes not yet flushed, in order: (offset, bytes).
    unflushed: Vec<(u64, Vec<u8>)>,
    fail_write: Option<S>,
    fail_flush: Option<S>,
    fail_replace: Option<S>,
    writes: usize,
    flushes: usize,
    replaces: usize,
    truncates: usize,
}

fn apply(content: &mut Vec<u8>, at: u64, data: &[u8]) {
    let at = at as usize;
    if content.len() < at + data.len() {
        content.resize(at + data.len(), 0);
    }
    content[at..at + data.len()].copy_from_slice(data);
}

impl Disk {
    /// What a read sees: the durable content with the unflushed writes over it.
    fn view(&self) -> Vec<u8> {
        let mut c = self.durable.clone();
        for (at, d) in &self.unflushed {
            apply(&mut c, *at, d);
        }
        c
    }
}

/// A file on a disk that loses unflushed writes in a crash. `Sync`, so an engine can share it.
#[derive(Default)]
pub(crate) struct MemFile(Mutex<Disk>);

impl MemFile {
    fn disk<R>(&self, f: impl FnOnce(&mut Disk) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    /// Only flushed content survives.
    pub(crate) fn crash(&self) {
        self.crash_torn(0);
    }
    /// A crash during a write: the first unflushed write keeps its first `keep` bytes.
    fn crash_torn(&self, keep: usize) {
        self.disk(|d| {
            if let Some((at, data)) = d.unflushed.first().cloned() {
                apply(&mut d.durable, at, &data[..keep.min(data.len())]);
            }
            d.unflushed.clear();
        });
    }
    pub(crate) fn content(&self) -> Vec<u8> {
        self.disk(|d| d.view())
    }
    pub(crate) fn set_durable(&self, bytes: Vec<u8>) {
        self.disk(|d| {
            d.durable = bytes;
            d.unflushed.clear();
        });
    }
    /// (write_at calls, flush calls, replace calls, truncate calls)
    pub(crate) fn counts(&self) -> (usize, usize, usize, usize) {
        self.disk(|d| (d.writes, d.flushes, d.replaces, d.truncates))
    }
}

impl FileIo for MemFile {
    fn len(&self) -> Result<u64, S> {
        Ok(self.content().len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, S> {
        let c = self.content();
        let src = c.get(offset as usize..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
    /// A failing write still writes its first half (unflushed), like a device that dies mid-way.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), S> {
        self.disk(|d| {
            d.writes += 1;
            if let Some(st) = d.fail_write {
                d.unflushed.push((offset, data[..data.len() / 2].to_vec()));
                return Err(st);
            }
            d.unflushed.push((offset, data.to_vec()));
            Ok(())
        })
    }
    fn flush(&self) -> Result<(), S> {
        self.disk(|d| {
            d.flushes += 1;
            if let Some(st) = d.fail_flush {
                return Err(st);
            }
            d.durable = d.view();
            d.unflushed.clear();
            Ok(())
        })
    }
    fn truncate(&self, len: u64) -> Result<(), S> {
        self.disk(|d| {
            d.truncates += 1;
            let mut v = d.view();
            v.truncate(len as usize);
            d.durable = v;
            d.unflushed.clear();
            Ok(())
        })
    }
    fn replace(&self, data: &[u8]) -> Result<(), S> {
        self.disk(|d| {
            if let Some(st) = d.fail_replace {
                return Err(st);
            }
            d.replaces += 1;
            d.durable = data.to_vec();
            d.unflushed.clear();
            Ok(())
        })
    }
}

// ---- helpers ----

pub(crate) type Log<'a> = FileLog<&'a MemFile, SpinLock<FileLogState>, SpinLock<()>>;

pub(crate) fn open(f: &MemFile) -> Log<'_> {
    FileLog::open(f, SpinLock::new(FileLogState::new()), SpinLock::new(())).unwrap()
}

fn tx(n: u8) -> TxId {
    TxId([n; 16])
}

fn prepare(log: &Log<'_>, w: &mut LogWriter, t: u8, key: &str, value: &str) -> Lsn {
    let ws = vec![Write::put(key.as_bytes(), value.as_bytes()).unwrap()];
    let rec = RecordRef::Prepare {
        tx: tx(t),
        writes: &ws,
    };
    w.append(log, &rec).unwrap()
}

fn commit(log: &Log<'_>, w: &mut LogWriter, t: u8) -> Lsn {
    w.append(log, &RecordRef::Commit { tx: tx(t) }).unwrap()
}

fn all<P: LogPort + ?Sized>(log: &P, from: Option<Lsn>) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    log.read(from, &mut |lsn, b| {
        out.push((lsn, b.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn lsns(recs: &[(Lsn, Vec<u8>)]) -> Vec<u64> {
    recs.iter().map(|r| r.0.0).collect()
}

fn concat(recs: &[(Lsn, Vec<u8>)]) -> Vec<u8> {
    recs.iter().flat_map(|r| r.1.clone()).collect()
}

fn store(log: &Log<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    replay(log, None)
        .unwrap()
        .store
        .iter()
        .map(|e| (e.key().to_vec(), e.value().to_vec()))
        .collect()
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}
