//! The engine behind the thinnest possible port: no KTM model, the benchmark delivers the
//! notifications itself. Measures "engine + codec" alone.

use ktmrm_core::port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};
use ktmrm_core::{Engine, SpinLock, State};
use ktmrm_proto::{Isolation, Limits, NtStatus, Request};
use std::cell::Cell;

/// A port whose transactions are handle values: the GUID is the handle's bytes, enlisting
/// always works, answers are remembered for the benchmark to check.
#[derive(Default)]
pub struct DirectPort {
    last_key: Cell<Option<EnlistmentKey>>,
    last_answer: Cell<Option<Answer>>,
}

impl KtmPort for DirectPort {
    type Caller = ();
    type TxRef = ();
    type Enlistment = ();
    type Target = ();

    fn reference_transaction(&self, _: &(), handle: u64) -> Result<((), TxId), NtStatus> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&handle.to_le_bytes());
        Ok(((), TxId(id)))
    }
    fn enlist(&self, _: &(), key: EnlistmentKey, _: u32) -> Result<(), NtStatus> {
        self.last_key.set(Some(key));
        Ok(())
    }
    fn close_enlistment(&self, (): ()) {}
    fn answer(&self, (): &(), answer: Answer) -> NtStatus {
        self.last_answer.set(Some(answer));
        NtStatus::SUCCESS
    }
    fn create_transaction(&self, _: &(), _: u32, _: &[u8]) -> Result<u64, NtStatus> {
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    }
    fn yield_now(&self) {}
}

/// An engine over `DirectPort`, with a reusable request buffer.
pub struct DirectEngine {
    port: DirectPort,
    engine: Engine<DirectPort, SpinLock<State<()>>>,
    buf: Vec<u8>,
    next_tx: u64,
}

impl DirectEngine {
    /// An empty store with `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        DirectEngine {
            port: DirectPort::default(),
            engine: Engine::new(SpinLock::new(State::new(limits))),
            buf: vec![0u8; 70_000],
            next_tx: 0,
        }
    }

    /// Encodes `req` into the reused buffer and dispatches it.
    pub fn call(&mut self, req: Request<'_>, out_len: usize) -> NtStatus {
        self.call_stating(req, Isolation::Unstated, out_len)
    }

    /// [`DirectEngine::call`] with `level` stated in the request header.
    pub fn call_stating(&mut self, req: Request<'_>, level: Isolation, out_len: usize) -> NtStatus {
        let n = req.encode_stating(level, &mut self.buf).unwrap_or(0);
        let code = req.call().code();
        self.engine
            .dispatch(&self.port, &(), code, &mut self.buf, n, out_len)
            .0
    }

    /// A new transaction handle value.
    pub fn begin(&mut self) -> u64 {
        self.next_tx += 4;
        self.next_tx
    }

    /// The enlistment key of the last transaction enlisted.
    fn key(&self) -> EnlistmentKey {
        self.port.last_key.get().unwrap_or(EnlistmentKey(0))
    }

    fn notify(&self, key: EnlistmentKey, n: Notification) -> Option<Answer> {
        self.port.last_answer.set(None);
        self.engine.notify(&self.port, key, n, &());
        self.port.last_answer.get()
    }

    /// KTM's commit of the most recently enlisted transaction: PREPREPARE, PREPARE, COMMIT.
    /// Returns true when it committed.
    pub fn commit_last(&self) -> bool {
        let key = self.key();
        self.notify(key, Notification::PrePrepare);
        match self.notify(key, Notification::Prepare) {
            Some(Answer::PrepareComplete) => {
                self.notify(key, Notification::Commit) == Some(Answer::CommitComplete)
            }
            _ => false,
        }
    }

    /// KTM's rollback of the most recently enlisted transaction.
    pub fn rollback_last(&self) {
        self.notify(self.key(), Notification::Rollback);
    }

    /// The engine's counters.
    #[must_use]
    pub fn stats(&self) -> ktmrm_proto::Stats {
        self.engine.stats()
    }
}
