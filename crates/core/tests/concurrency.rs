//! Concurrency checking with shuttle: the engine's lock is a shuttle mutex and the port yields to
//! shuttle's scheduler, so each test explores many interleavings of requests and notifications
//! (PCT scheduling, which finds ordering bugs of small depth with high probability).
//!
//! Covered: a ROLLBACK arriving while a request for the same transaction is in flight (including
//! inside its enlistment), a commit racing the transaction's own writes, and two first requests
//! of one transaction racing to enlist it, also when enlisting fails.

use ktmrm_core::port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};
use ktmrm_core::{Engine, State, StateLock};
use ktmrm_proto::{Limits, NtStatus as S, Request, decode_get};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;

/// Iterations per test (each one a different schedule).
const ITERATIONS: usize = 2000;

struct ShuttleLock<T>(Mutex<T>);

impl<T: Send> StateLock<T> for ShuttleLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

/// A thread-safe scripted port: one transaction (handle 4), its enlistments, answers and closes.
#[derive(Default)]
struct Port {
    state: Mutex<PortState>,
}

#[derive(Default)]
struct PortState {
    keys: Vec<EnlistmentKey>,
    answers: Vec<Answer>,
    closed: usize,
    ended: bool,
    /// Enlisting fails (as for a transaction that needs promotion, or out of memory in KTM).
    refuse_enlist: bool,
}

const TX: u64 = 4;

impl KtmPort for Port {
    type Caller = ();
    type TxRef = ();
    type Enlistment = u32;
    type Target = ();

    fn reference_transaction(&self, _: &(), h: u64) -> Result<((), TxId), S> {
        if h != TX {
            return Err(S::INVALID_HANDLE);
        }
        if self.state.lock().unwrap().ended {
            return Err(S::TRANSACTION_NOT_ACTIVE);
        }
        Ok(((), TxId([1; 16])))
    }
    fn enlist(&self, _: &(), key: EnlistmentKey, _: u32) -> Result<u32, S> {
        let mut st = self.state.lock().unwrap();
        if st.ended {
            return Err(S::TRANSACTION_NOT_ACTIVE);
        }
        if st.refuse_enlist {
            drop(st);
            thread::yield_now(); // let the other request run while this enlistment is pending
            return Err(S::TRANSACTION_REQUIRED_PROMOTION);
        }
        st.keys.push(key);
        Ok(st.keys.len() as u32)
    }
    fn close_enlistment(&self, _: u32) {
        self.state.lock().unwrap().closed += 1;
    }
    fn answer(&self, (): &(), a: Answer) -> S {
        self.state.lock().unwrap().answers.push(a);
        S::SUCCESS
    }
    fn create_transaction(&self, _: &(), _: u32, _: &[u8]) -> Result<u64, S> {
        Err(S::INVALID_DEVICE_REQUEST)
    }
    fn yield_now(&self) {
        thread::yield_now();
    }
}

type Eng = Engine<Port, ShuttleLock<State<u32>>>;

struct World {
    port: Port,
    engine: Eng,
}

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            port: Port::default(),
            engine: Engine::new(ShuttleLock(Mutex::new(State::new(Limits::default())))),
        })
    }

    fn put(&self, tx: u64, key: &[u8]) -> S {
        self.io(
            Request::Put {
                tx,
                key,
                value: b"v",
            },
            0,
        )
        .0
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let (st, out) = self.io(Request::Get { tx: 0, key }, 64);
        (st == S::SUCCESS).then(|| decode_get(&out).unwrap().1.unwrap().to_vec())
    }

    fn io(&self, req: Request<'_>, out: usize) -> (S, Vec<u8>) {
        let mut buf = vec![0u8; req.encoded_len().max(out)];
        let n = req.encode(&mut buf).unwrap();
        let (st, info) = self
            .engine
            .dispatch(&self.port, &(), req.call().code(), &mut buf, n, out);
        buf.truncate(info);
        (st, buf)
    }

    /// A thread writing "a" then "b" in the transaction; joins to both statuses.
    fn writer(self: &Arc<Self>) -> thread::JoinHandle<(S, S)> {
        let w = Arc::clone(self);
        thread::spawn(move || (w.put(TX, b"a"), w.put(TX, b"b")))
    }

    /// Two threads each making a first request (a PUT of "a", of "b") in the transaction.
    fn two_first_puts(self: &Arc<Self>) -> (S, S) {
        let (w1, w2) = (Arc::clone(self), Arc::clone(self));
        let t1 = thread::spawn(move || w1.put(TX, b"a"));
        let t2 = thread::spawn(move || w2.put(TX, b"b"));
        (t1.join().unwrap(), t2.join().unwrap())
    }

    /// Waits (yielding) until the transaction is enlisted, then returns its key.
    fn key(&self) -> EnlistmentKey {
        loop {
            if let Some(k) = self.port.state.lock().unwrap().keys.first().copied() {
                return k;
            }
            thread::yield_now();
        }
    }

    fn notify(&self, key: EnlistmentKey, n: Notification) -> Option<Answer> {
        let before = self.port.state.lock().unwrap().answers.len();
        self.engine.notify(&self.port, key, n, &());
        let st = self.port.state.lock().unwrap();
        assert!(st.answers.len() <= before + 1, "answered twice");
        st.answers.get(before).copied()
    }

    fn end(&self) {
        self.port.state.lock().unwrap().ended = true;
    }

    /// Afterwards: nothing live, every enlistment closed once, no key lock left.
    fn assert_clean(&self) {
        assert_eq!(
            self.engine.stats().live_transactions,
            0,
            "live transaction left"
        );
        let st = self.port.state.lock().unwrap();
        assert_eq!(
            st.closed,
            st.keys.len(),
            "enlistments closed {} of {}",
            st.closed,
            st.keys.len()
        );
        drop(st);
        for k in [&b"a"[..], b"b"] {
            assert_eq!(
                self.put(0, k),
                S::SUCCESS,
                "a lock on {k:?} was left behind"
            );
        }
    }
}

fn pct(f: impl Fn() + Send + Sync + 'static) {
    shuttle::check_pct(f, ITERATIONS, 3);
}

#[test]
fn rollback_while_a_write_is_in_flight() {
    pct(|| {
        let w = World::new();
        let writer = w.writer();
        let key = w.key();
        w.end();
        assert_eq!(
            w.notify(key, Notification::Rollback),
            Some(Answer::RollbackComplete)
        );
        let (a, b) = writer.join().unwrap();
        for st in [a, b] {
            assert!(
                st == S::SUCCESS || st == S::TRANSACTION_NOT_ACTIVE,
                "{st:?}"
            );
        }
        assert_eq!(w.get(b"a"), None, "rolled back");
        w.assert_clean();
    });
}

#[test]
fn commit_racing_the_transactions_own_writes() {
    pct(|| {
        let w = World::new();
        let writer = w.writer();
        let key = w.key();
        // KTM stops taking enlistments once the commit starts (TmIsTransactionActive is FALSE).
        w.end();
        assert_eq!(
            w.notify(key, Notification::PrePrepare),
            Some(Answer::PrePrepareComplete)
        );
        let vote = w.notify(key, Notification::Prepare);
        match vote {
            Some(Answer::PrepareComplete) => {
                assert_eq!(
                    w.notify(key, Notification::Commit),
                    Some(Answer::CommitComplete)
                )
            }
            Some(Answer::ReadOnly) => {}
            other => panic!("vote {other:?}"),
        }
        let (a, b) = writer.join().unwrap();
        // Every write that succeeded is committed; every refused one is absent.
        for (key, st) in [(&b"a"[..], a), (b"b", b)] {
            assert!(
                st == S::SUCCESS || st == S::TRANSACTION_NOT_ACTIVE,
                "{st:?}"
            );
            assert_eq!(w.get(key).is_some(), st == S::SUCCESS, "{key:?}: {st:?}");
        }
        assert_eq!(
            vote == Some(Answer::ReadOnly),
            a != S::SUCCESS && b != S::SUCCESS
        );
        w.assert_clean();
    });
}

#[test]
fn first_requests_race_to_enlist() {
    pct(|| {
        let w = World::new();
        assert_eq!(w.two_first_puts(), (S::SUCCESS, S::SUCCESS));
        assert_eq!(w.port.state.lock().unwrap().keys.len(), 1, "enlisted once");
        let key = w.key();
        w.end();
        w.notify(key, Notification::PrePrepare);
        assert_eq!(
            w.notify(key, Notification::Prepare),
            Some(Answer::PrepareComplete)
        );
        assert_eq!(
            w.notify(key, Notification::Commit),
            Some(Answer::CommitComplete)
        );
        assert_eq!(
            (w.get(b"a"), w.get(b"b")),
            (Some(b"v".to_vec()), Some(b"v".to_vec()))
        );
        w.assert_clean();
    });
}

#[test]
fn failed_enlistment_racing_a_second_request() {
    pct(|| {
        let w = World::new();
        w.port.state.lock().unwrap().refuse_enlist = true;
        // Neither write may succeed in a transaction ktmrm could not enlist in.
        let refused = S::TRANSACTION_REQUIRED_PROMOTION;
        assert_eq!(w.two_first_puts(), (refused, refused));
        w.assert_clean();
    });
}
