//! Group commit with real threads: forces that wait for a write share the next one, and a force
//! made durable by a write does not wait for another.

use super::*;

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
