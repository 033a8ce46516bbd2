//! [`FileLog`] tests over [`MemFile`], a disk model with crashes, torn writes and failures: the
//! port's behaviour, replay of what a crash leaves, and the durable engine on top.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

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

// ---- the port ----

#[test]
fn records_round_trip_and_reopen_after_a_clean_flush() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    assert_eq!(prepare(&log, &mut w, 1, "a", "1"), Lsn(1));
    assert_eq!(commit(&log, &mut w, 1), Lsn(2));
    assert_eq!(f.counts(), (0, 0, 0, 0), "append does no I/O");
    let before = all(&log, None);
    assert_eq!(lsns(&before), [1, 2], "unwritten records read from memory");
    log.force(Lsn(2)).unwrap();
    assert_eq!(f.content(), concat(&before));
    assert_eq!(
        all(&log, None),
        before,
        "written records read from the file"
    );
    assert_eq!(lsns(&all(&log, Some(Lsn(2)))), [2]);
    let mut seen = 0;
    log.read(None, &mut |_, _| {
        seen += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(seen, 1, "read stops when the sink breaks");

    let log = open(&f);
    assert_eq!(all(&log, None), before);
    assert_eq!(store(&log), [kv("a", "1")]);
    // LSNs continue; a record carrying another LSN, or not a record, is refused.
    let mut wrong = Vec::new();
    encode_vec(&RecordRef::Commit { tx: tx(9) }, Lsn(7), &mut wrong).unwrap();
    assert_eq!(log.append(&wrong), Err(STATUS_LOG_CORRUPTION_DETECTED));
    assert_eq!(log.append(b"not a record"), Err(S::INVALID_PARAMETER));
    let mut w = LogWriter::new(Lsn(3));
    assert_eq!(prepare(&log, &mut w, 2, "b", "2"), Lsn(3));
    assert_eq!(commit(&log, &mut w, 2), Lsn(4));
    log.force(Lsn(4)).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3, 4]);
    assert_eq!(store(&open(&f)), [kv("a", "1"), kv("b", "2")]);
}

#[test]
fn a_crash_loses_exactly_the_unforced_records() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let kept = all(&log, None);
    prepare(&log, &mut w, 2, "b", "2");
    commit(&log, &mut w, 2);
    f.crash();
    let log = open(&f);
    assert_eq!(all(&log, None), kept);
    let r = recover(&log, None).unwrap();
    assert_eq!((r.next_lsn, r.dropped_tail), (Lsn(3), None));
    let mut w = LogWriter::new(r.next_lsn);
    assert_eq!(prepare(&log, &mut w, 3, "c", "3"), Lsn(3));
}

#[test]
fn a_torn_last_record_is_dropped_and_the_log_continues_where_it_began() {
    let f0 = MemFile::default();
    let log = open(&f0);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let good = f0.content();
    let mut torn = Vec::new();
    encode_vec(
        &RecordRef::Prepare {
            tx: tx(2),
            writes: &vec![Write::put(b"b", b"2").unwrap()],
        },
        Lsn(3),
        &mut torn,
    )
    .unwrap();
    // Torn inside the header (bad magic or short), and inside the body (runs past the end).
    for keep in [1, 10, HEADER_LEN, HEADER_LEN + 5, torn.len() - 1] {
        let f = MemFile::default();
        f.set_durable(good.clone());
        let log = open(&f);
        assert_eq!(log.append(&torn), Ok(Lsn(3)));
        f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
        assert_eq!(log.force(Lsn(3)), Err(S::UNSUCCESSFUL));
        f.crash_torn(keep);
        assert_eq!(f.content().len(), good.len() + keep);

        let log = open(&f);
        let recs = all(&log, None);
        assert_eq!(lsns(&recs), [1, 2, 3], "keep {keep}");
        assert_eq!(
            recs[2].1,
            torn[..keep],
            "the torn entry has the bytes present"
        );
        let r = recover(&log, None).unwrap();
        let tail = r.dropped_tail.expect("torn record dropped");
        assert_eq!((tail.from, tail.records, r.next_lsn), (Lsn(3), 1, Lsn(3)));
        assert_eq!(
            f.content(),
            good,
            "the file is cut where the torn record began"
        );
        assert_eq!(lsns(&all(&log, None)), [1, 2]);
        // The next append lands at the torn record's LSN and offset.
        let mut w = LogWriter::new(r.next_lsn);
        f.disk(|d| d.fail_flush = None);
        log.force(prepare(&log, &mut w, 4, "c", "3")).unwrap();
        assert_eq!(f.content()[..good.len()], good[..]);
        let r = recover(&open(&f), None).unwrap();
        assert_eq!((r.records, r.dropped_tail, r.next_lsn), (3, None, Lsn(4)));
        assert_eq!(r.in_doubt.len(), 1);
    }
}

#[test]
fn a_damaged_record_before_valid_ones_is_corruption_not_a_torn_tail() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    commit(&log, &mut w, 1);
    log.force(prepare(&log, &mut w, 2, "b", "2")).unwrap();
    let mut bytes = f.content();
    bytes[30] ^= 1; // the first record's body: its CRC fails, its length still holds
    f.set_durable(bytes);
    let err = recover(&open(&f), None).err().expect("corruption");
    assert!(
        matches!(err, ReplayError::CorruptBeforeTail { .. }),
        "{err:?}"
    );
    assert_eq!(f.counts().3, 0, "nothing was discarded");
}

#[test]
fn one_force_writes_a_group_of_appends_with_one_write_and_one_flush() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    let a = prepare(&log, &mut w, 1, "a", "1");
    let b = commit(&log, &mut w, 1);
    log.force(b).unwrap();
    assert_eq!(f.counts(), (1, 1, 0, 0));
    // Already durable: no I/O, also beyond the last record.
    log.force(a).unwrap();
    log.force(b).unwrap();
    log.force(Lsn(100)).unwrap();
    assert_eq!(f.counts(), (1, 1, 0, 0));
    prepare(&log, &mut w, 2, "b", "2");
    log.force(Lsn(u64::MAX)).unwrap();
    assert_eq!(
        f.counts(),
        (2, 2, 0, 0),
        "upto beyond the last forces everything"
    );
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3]);
}

#[test]
fn concurrent_appenders_and_forcers_lose_nothing() {
    let f = MemFile::default();
    let log = open(&f);
    let writer = Mutex::new(LogWriter::new(Lsn::FIRST));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (log, writer) = (&log, &writer);
            s.spawn(move || {
                for i in 0..50u8 {
                    let lsn = {
                        let mut w = writer.lock().unwrap();
                        // Ids from 1: id 0 is the null UOW of non-transacted writes.
                        prepare(log, &mut w, t * 50 + i + 1, "k", "v")
                    };
                    log.force(lsn).unwrap();
                }
            });
        }
    });
    let (writes, flushes, _, _) = f.counts();
    assert!(writes <= 200 && writes == flushes, "{writes} {flushes}");
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), (1..=200).collect::<Vec<_>>());
    assert_eq!(concat(&recs), f.content());
    assert_eq!(replay(&open(&f), None).unwrap().in_doubt.len(), 200);
}

/// The lock seam over `std::sync::Mutex`; with `sleeps`, also a condition variable
/// ([`StateLock::wait_while`]), without it a lock that cannot sleep (the driver's today).
struct Blocking<T> {
    value: Mutex<T>,
    changed: std::sync::Condvar,
    sleeps: bool,
}

impl<T> Blocking<T> {
    fn new(value: T, sleeps: bool) -> Self {
        Blocking {
            value: Mutex::new(value),
            changed: std::sync::Condvar::new(),
            sleeps,
        }
    }
}

impl<T: Send> StateLock<T> for Blocking<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.value.lock().unwrap())
    }
    fn wait_while(&self, mut cond: impl FnMut(&mut T) -> bool) -> bool {
        if self.sleeps {
            let g = self.value.lock().unwrap();
            drop(self.changed.wait_while(g, |v| cond(v)).unwrap());
        }
        self.sleeps
    }
    fn notify_all(&self) {
        self.changed.notify_all();
    }
}

/// A [`MemFile`] whose `n`-th flush waits until the test has opened `n` gates.
struct Gated<'a> {
    file: &'a MemFile,
    /// (flushes started, gates opened)
    state: Mutex<(usize, usize)>,
    cv: std::sync::Condvar,
}

impl<'a> Gated<'a> {
    fn new(file: &'a MemFile) -> Self {
        Gated {
            file,
            state: Mutex::new((0, 0)),
            cv: std::sync::Condvar::new(),
        }
    }
    fn wait_until(&self, f: impl Fn(&(usize, usize)) -> bool) {
        let mut g = self.state.lock().unwrap();
        while !f(&g) {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn set(&self, f: impl FnOnce(&mut (usize, usize))) {
        f(&mut self.state.lock().unwrap());
        self.cv.notify_all();
    }
    /// Waits until the `n`-th flush has started (and is held at its gate).
    fn flush_started(&self, n: usize) {
        self.wait_until(|s| s.0 >= n);
    }
    fn open_gate(&self) {
        self.set(|s| s.1 += 1);
    }
}

impl FileIo for Gated<'_> {
    fn len(&self) -> Result<u64, S> {
        self.file.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, S> {
        self.file.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), S> {
        self.file.write_at(offset, data)
    }
    fn flush(&self) -> Result<(), S> {
        let mut n = 0;
        self.set(|s| {
            s.0 += 1;
            n = s.0;
        });
        self.wait_until(|s| s.1 >= n);
        self.file.flush()
    }
    fn truncate(&self, len: u64) -> Result<(), S> {
        self.file.truncate(len)
    }
    fn replace(&self, data: &[u8]) -> Result<(), S> {
        self.file.replace(data)
    }
}

type GatedLog<'a> = FileLog<&'a Gated<'a>, Blocking<FileLogState>, Blocking<()>>;

fn gated_log<'a>(g: &'a Gated<'a>, sleeps: bool) -> GatedLog<'a> {
    FileLog::open(
        g,
        Blocking::new(FileLogState::new(), sleeps),
        Blocking::new((), sleeps),
    )
    .unwrap()
}

/// The LSNs whose records are on the disk (flushed), not merely written.
fn flushed_lsns(f: &MemFile) -> Vec<u64> {
    let durable = MemFile::default();
    durable.set_durable(f.disk(|d| d.durable.clone()));
    lsns(&all(&open(&durable), None))
}

/// Appends a one-write Prepare record for transaction `t` through the shared writer.
fn append_one(log: &GatedLog<'_>, writer: &Mutex<LogWriter>, t: u8) -> Lsn {
    let ws = vec![Write::put(b"k", b"v").unwrap()];
    let rec = RecordRef::Prepare {
        tx: tx(t),
        writes: &ws,
    };
    writer.lock().unwrap().append(log, &rec).unwrap()
}

/// Group commit, with real threads: while one force waits for the disk, seven committers append
/// and force. When the disk returns, the next force writes all seven records with one write and
/// one flush, and the other six find theirs durable and touch the disk not at all: 8 forces, 2
/// flushes, whether the log's lock can sleep or not. Every force returns only once its own
/// record is on the disk.
#[test]
fn forces_waiting_behind_a_flush_share_the_next_one() {
    for sleeps in [true, false] {
        let f = MemFile::default();
        let gated = Gated::new(&f);
        let log = gated_log(&gated, sleeps);
        let writer = Mutex::new(LogWriter::new(Lsn::FIRST));
        let appended = std::sync::atomic::AtomicUsize::new(0);
        let returned = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let first = append_one(&log, &writer, 1);
            let (log, writer, returned, f, appended) = (&log, &writer, &returned, &f, &appended);
            s.spawn(move || {
                log.force(first).unwrap();
                returned.lock().unwrap().push(first);
            });
            gated.flush_started(1);
            for t in 2..=8u8 {
                s.spawn(move || {
                    let lsn = append_one(log, writer, t);
                    appended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    log.force(lsn).unwrap();
                    let on_disk = flushed_lsns(f);
                    assert!(on_disk.contains(&lsn.0), "{lsn} not durable: {on_disk:?}");
                    returned.lock().unwrap().push(lsn);
                });
            }
            while appended.load(std::sync::atomic::Ordering::SeqCst) < 7 {
                std::thread::yield_now();
            }
            gated.open_gate();
            gated.open_gate();
        });
        assert_eq!(returned.lock().unwrap().len(), 8);
        assert_eq!(
            f.counts(),
            (2, 2, 0, 0),
            "(writes, flushes), sleeps: {sleeps}"
        );
        assert_eq!(flushed_lsns(&f), (1..=8).collect::<Vec<_>>());
    }
}

/// A force whose record went out with a write returns when that write is durable, even if
/// another force has started the next write meanwhile: it does not wait behind a flush that does
/// not carry its record. Here the first write's own forcer commits again at once (as a busy
/// committer does) and starts the second write before the others have woken up.
#[test]
fn a_force_made_durable_by_a_write_does_not_wait_for_the_next_one() {
    let f = MemFile::default();
    let gated = Gated::new(&f);
    let log = gated_log(&gated, true);
    let writer = Mutex::new(LogWriter::new(Lsn::FIRST));
    let returned = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let (log, returned, writer) = (&log, &returned, &writer);
        // Records 1-4 are appended before the first write starts, so it carries all four.
        let early: Vec<Lsn> = (1..=4u8).map(|t| append_one(log, writer, t)).collect();
        let first = early[0];
        s.spawn(move || {
            log.force(first).unwrap();
            returned.lock().unwrap().push(first);
            // The next commit: its record goes out with the second write.
            let next = append_one(log, writer, 5);
            log.force(next).unwrap();
            returned.lock().unwrap().push(next);
        });
        gated.flush_started(1);
        for &lsn in &early[1..] {
            s.spawn(move || {
                log.force(lsn).unwrap();
                returned.lock().unwrap().push(lsn);
            });
        }
        // Let the other forces reach their wait.
        std::thread::sleep(std::time::Duration::from_millis(20));
        gated.open_gate();
        gated.flush_started(2);
        // The second write is held at the disk: records 1-4 are durable, their forces return.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while returned.lock().unwrap().len() < 4 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let mut done = returned.lock().unwrap().clone();
        done.sort();
        // Checked once the second write may end, so a failure cannot hang the test.
        gated.open_gate();
        assert_eq!(
            done, early,
            "forces of the four durable records return while the next write is out"
        );
    });
    assert_eq!(f.counts(), (2, 2, 0, 0));
    assert_eq!(flushed_lsns(&f), [1, 2, 3, 4, 5]);
}

#[test]
fn a_failed_write_or_flush_is_retried_at_the_same_offset() {
    for fail_write in [true, false] {
        let f = MemFile::default();
        let log = open(&f);
        let mut w = LogWriter::new(Lsn::FIRST);
        log.force(prepare(&log, &mut w, 1, "a", "1")).unwrap();
        let c = commit(&log, &mut w, 1);
        f.disk(|d| {
            if fail_write {
                d.fail_write = Some(S::UNSUCCESSFUL);
            } else {
                d.fail_flush = Some(S::UNSUCCESSFUL);
            }
        });
        assert_eq!(log.force(c), Err(S::UNSUCCESSFUL));
        assert_eq!(lsns(&all(&log, None)), [1, 2], "the failed record is kept");
        let p = prepare(&log, &mut w, 2, "b", "2");
        assert_eq!(log.force(p), Err(S::UNSUCCESSFUL));
        f.disk(|d| (d.fail_write, d.fail_flush) = (None, None));
        let want = all(&log, None);
        log.force(p).unwrap();
        assert_eq!(f.content(), concat(&want), "each record once, in order");
        f.crash();
        let log = open(&f);
        assert_eq!(all(&log, None), want);
        let r = recover(&log, None).unwrap();
        assert_eq!(
            (r.store.len(), r.in_doubt.len(), r.next_lsn),
            (1, 1, Lsn(4))
        );
    }
}

#[test]
fn truncate_before_keeps_the_records_from_a_checkpoint_and_survives_a_crash() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    commit(&log, &mut w, 1);
    prepare(&log, &mut w, 2, "b", "2");
    commit(&log, &mut w, 2);
    prepare(&log, &mut w, 3, "c", "3");
    let checkpoint = |log: &Log<'_>, w: &mut LogWriter| {
        let r = replay(log, None).unwrap();
        let snap = Snapshot {
            store: r.store,
            in_doubt: r.in_doubt,
        };
        w.append(log, &RecordRef::Checkpoint { snapshot: &snap })
            .unwrap()
    };
    let ck = checkpoint(&log, &mut w);
    assert_eq!(ck, Lsn(6));
    assert_eq!(commit(&log, &mut w, 3), Lsn(7)); // not forced: truncate_before writes it
    let kept = all(&log, Some(ck));
    log.truncate_before(ck).unwrap();
    assert_eq!(f.counts().2, 1);
    assert_eq!(all(&log, None), kept);
    assert_eq!(f.content(), concat(&kept));
    let want = [kv("a", "1"), kv("b", "2"), kv("c", "3")];
    assert_eq!(store(&log), want);
    log.truncate_before(ck).unwrap();
    assert_eq!(
        f.counts().2,
        1,
        "nothing before it: the file is not rewritten"
    );
    // Appends continue at the right LSN and offset; a reopen reads the same log.
    let ck2 = checkpoint(&log, &mut w);
    log.force(ck2).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [6, 7, 8]);
    assert_eq!(store(&open(&f)), want);
    // A crash before the replace leaves the old log, after it the new one; both replay.
    f.disk(|d| d.fail_replace = Some(S::UNSUCCESSFUL));
    assert_eq!(log.truncate_before(ck2), Err(S::UNSUCCESSFUL));
    f.crash();
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [6, 7, 8]);
    assert_eq!(store(&log), want);
    f.disk(|d| d.fail_replace = None);
    log.truncate_before(ck2).unwrap();
    f.crash();
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [8]);
    let r = replay(&log, None).unwrap();
    assert_eq!(
        (r.checkpoint, r.next_lsn, r.records),
        (Some(ck2), Lsn(9), 1)
    );
    assert_eq!(store(&log), want);
}

#[test]
fn discard_from_drops_written_and_unwritten_records() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let two = f.content();
    prepare(&log, &mut w, 2, "b", "2");
    log.force(commit(&log, &mut w, 2)).unwrap();
    prepare(&log, &mut w, 3, "c", "3"); // unwritten
    let five = all(&log, None);
    commit(&log, &mut w, 3); // unwritten
    log.discard_from(Lsn(6)).unwrap();
    assert_eq!(f.counts().3, 0, "an unwritten record goes without I/O");
    assert_eq!(all(&log, None), five);
    log.discard_from(Lsn(5)).unwrap();
    assert_eq!(lsns(&all(&log, None)), [1, 2, 3, 4]);
    log.discard_from(Lsn(3)).unwrap();
    assert_eq!(f.content(), two);
    assert_eq!(lsns(&all(&log, None)), [1, 2]);
    let mut w = LogWriter::new(Lsn(3));
    log.force(prepare(&log, &mut w, 4, "d", "4")).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3]);
    assert_eq!(replay(&open(&f), None).unwrap().in_doubt[0].tx, tx(4));
    // A failed write left part of a large record in the file: discarding it cuts that too, so
    // a shorter record written there is not followed by its leftovers.
    let before = f.content();
    log.force(commit(&log, &mut w, 4)).unwrap(); // through the first log, still open
    let before_len = before.len() + all(&log, Some(Lsn(4)))[0].1.len();
    let big = "v".repeat(500);
    let p = prepare(&log, &mut w, 5, "e", &big);
    f.disk(|d| d.fail_write = Some(S::UNSUCCESSFUL));
    assert_eq!(log.force(p), Err(S::UNSUCCESSFUL));
    f.disk(|d| d.fail_write = None);
    assert!(f.content().len() > before_len + 200);
    log.discard_from(p).unwrap();
    assert_eq!(f.content().len(), before_len);
    let mut w = LogWriter::new(p);
    log.force(prepare(&log, &mut w, 6, "f", "6")).unwrap();
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), [1, 2, 3, 4, 5]);
    assert_eq!(f.content(), concat(&recs));
    // Two records in a failed write: discarding the second keeps the first for the next force.
    let p = prepare(&log, &mut w, 7, "g", "7");
    let q = commit(&log, &mut w, 7);
    let want = all(&log, None)[..6].to_vec();
    f.disk(|d| d.fail_write = Some(S::UNSUCCESSFUL));
    assert_eq!(log.force(q), Err(S::UNSUCCESSFUL));
    f.disk(|d| d.fail_write = None);
    log.discard_from(q).unwrap();
    assert_eq!(all(&log, None), want);
    log.force(p).unwrap();
    assert_eq!(all(&open(&f), None), want);
    assert_eq!(f.content(), concat(&want));
    // The discarded LSN is reused, and forcing it writes it.
    let mut w = LogWriter::new(q);
    log.force(commit(&log, &mut w, 7)).unwrap();
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(f.content(), concat(&recs));
}

#[test]
fn a_damaged_first_record_keeps_its_lsn_so_replay_refuses_to_start() {
    // A truncated log begins with a checkpoint; dropping it as a torn tail would lose the store.
    let snap = Snapshot {
        store: vec![crate::entry::Entry::try_new(b"a", b"1").unwrap()],
        in_doubt: Vec::new(),
    };
    let mut bytes = Vec::new();
    encode_vec(
        &RecordRef::Checkpoint { snapshot: &snap },
        Lsn(6),
        &mut bytes,
    )
    .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let f = MemFile::default();
    f.set_durable(bytes);
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [6]);
    let err = recover(&log, None).err().expect("refuses");
    assert_eq!(err, ReplayError::MissingStart { first: Lsn(6) });
    assert_eq!(f.counts().3, 0, "nothing was discarded");
}

// ---- the durable engine over a file ----

/// A durable engine over the log in `f`, through KTM's recovery with nothing to recover.
fn boot<'a>(log: &'a Log<'a>) -> Harness<&'a Log<'a>> {
    let (h, _) = Harness::durable(log).unwrap();
    h.last_recover();
    h
}

#[test]
fn committed_data_survives_a_crash_of_the_file_and_unforced_data_does_not() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "x", "autocommit"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    let live = h.port.new_tx();
    assert_eq!(h.put(live, "z", "never prepared"), S::SUCCESS);
    // The disk stops flushing: this write is appended and written, never durable.
    f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
    assert_eq!(h.put(0, "y", "lost"), S::UNSUCCESSFUL);
    drop(h);
    drop(log);
    f.crash();
    f.disk(|d| d.fail_flush = None);
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (2, 0));
    assert_eq!(report.dropped_tail, None);
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.get(0, "x"), Ok("autocommit".into()));
    assert_eq!(h.get(0, "y"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "z"), Err(S::OBJECT_NAME_NOT_FOUND));
    // A checkpoint rewrites the file; what follows it survives another crash.
    h.engine.checkpoint().unwrap();
    assert_eq!(f.counts().2, 1);
    assert_eq!(h.put(0, "y", "after"), S::SUCCESS);
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.checkpoint.is_some()), (3, true));
    h.last_recover();
    assert_eq!(h.get(0, "y"), Ok("after".into()));
    assert_eq!(h.get(0, "a"), Ok("1".into()));
}

#[test]
fn a_prepared_transaction_is_in_doubt_after_a_crash_of_the_file() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "old"), S::SUCCESS);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::PrePrepare), Some(Answer::PrePrepareComplete));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (1, 1));
    let key = h.recover(uow, 41);
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("old".into()));
    assert_eq!(h.put(0, "a", "x"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.notify_key(key, 41, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "a"), Ok("new".into()));
    drop(h);
    f.crash();
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 0, "the Commit record was forced");
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("new".into()));
    assert_eq!(h.get(0, "b"), Ok("1".into()));
}

#[test]
fn the_engine_drops_a_torn_prepare_and_continues_after_it() {
    let f = MemFile::default();
    let log = open(&f);
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "b", "2"), S::SUCCESS);
    f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::RollbackEnlistment));
    drop(h);
    f.crash_torn(30);
    f.disk(|d| d.fail_flush = None);
    let log = open(&f);
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(
        report.dropped_tail.expect("torn record dropped").from,
        Lsn(3)
    );
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.put(0, "c", "3"), S::SUCCESS);
    drop(h);
    f.crash();
    let log = open(&f);
    let (_, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.dropped_tail), (2, None));
}
