//! The suites must fail when the device misbehaves: a transport that corrupts some answers of
//! the simulated device makes the relevant checks fail (so a green run means something).

use ktmrm_client::proto::{Call, NtStatus};
use ktmrm_client::suite::{Verdict, bad_input, scenarios};
use ktmrm_client::transport::{SimConfig, SimTransport, Transport, TransportKind};
use ktmrm_client::{Client, Error};
use std::sync::Arc;

/// What to break.
#[derive(Clone, Copy)]
enum Fault {
    /// Unknown control codes answer SUCCESS instead of INVALID_DEVICE_REQUEST.
    AcceptUnknownCodes,
    /// A GET that overflows also writes one byte past the header.
    OverflowWritesMore,
    /// Conflicts are reported as success (without writing).
    HideConflicts,
}

struct Faulty {
    inner: Box<dyn Transport>,
    fault: Fault,
}

impl Transport for Faulty {
    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
        let (st, n) = self.inner.ioctl(code, input, output);
        match self.fault {
            Fault::AcceptUnknownCodes if st == NtStatus::INVALID_DEVICE_REQUEST => {
                (NtStatus::SUCCESS, 0)
            }
            Fault::OverflowWritesMore if st == NtStatus::BUFFER_OVERFLOW && output.len() > n => {
                output[n] = 0;
                (st, n + 1)
            }
            Fault::HideConflicts if st == NtStatus::TRANSACTIONAL_CONFLICT => {
                (NtStatus::SUCCESS, 0)
            }
            _ => (st, n),
        }
    }
    fn create_transaction(&self, timeout_ms: u32, d: &str) -> Result<u64, Error> {
        self.inner.create_transaction(timeout_ms, d)
    }
    fn commit_transaction(&self, tx: u64) -> NtStatus {
        self.inner.commit_transaction(tx)
    }
    fn rollback_transaction(&self, tx: u64) -> NtStatus {
        self.inner.rollback_transaction(tx)
    }
    fn close_handle(&self, h: u64) -> NtStatus {
        self.inner.close_handle(h)
    }
    fn create_event(&self) -> Result<u64, Error> {
        self.inner.create_event()
    }
    fn reopen(&self, access: u32) -> Result<Box<dyn Transport>, Error> {
        Ok(Box::new(Faulty {
            inner: self.inner.reopen(access)?,
            fault: self.fault,
        }))
    }
    fn elapse(&self, ms: u64) {
        self.inner.elapse(ms);
    }
}

fn faulty(fault: Fault) -> Arc<dyn Transport> {
    Arc::new(Faulty {
        inner: Box::new(SimTransport::new(SimConfig::default())),
        fault,
    })
}

fn verdict(r: &ktmrm_client::suite::Report, name: &str) -> Verdict {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.verdict)
        .unwrap()
}

#[test]
fn bad_input_notices_wrong_statuses_and_extra_bytes() {
    let r = bad_input::run(faulty(Fault::AcceptUnknownCodes)).unwrap();
    assert_eq!(verdict(&r, "unknown-codes"), Verdict::Fail);
    assert_eq!(verdict(&r, "truncated"), Verdict::Pass);
    assert!(!r.ok());
    let r = bad_input::run(faulty(Fault::OverflowWritesMore)).unwrap();
    assert_eq!(verdict(&r, "output-too-small"), Verdict::Fail);
}

#[test]
fn client_reports_statuses_by_name() {
    let c = Client::new(faulty(Fault::AcceptUnknownCodes)).unwrap();
    let e = c.get(b"absent").unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::OBJECT_NAME_NOT_FOUND));
    assert_eq!(
        e.to_string(),
        "get \"absent\": STATUS_OBJECT_NAME_NOT_FOUND (0xC0000034): The key does not exist in the caller's view."
    );
    // The raw path is really raw: an unknown code reaches the (faulty) device.
    let mut out = [0u8; 4];
    assert_eq!(
        c.transport()
            .ioctl(Call::Stats.code() + 0x40, &[], &mut out)
            .0,
        NtStatus::SUCCESS
    );
}

#[test]
fn scenarios_notice_hidden_conflicts() {
    let backend = ktmrm_client::Backend::Sim(SimConfig::default());
    let names = [
        "write-write-conflict".to_owned(),
        "non-transacted-conflict".to_owned(),
        "own-writes-visible".to_owned(),
    ];
    let r = scenarios::run_with(&backend, &names, || Ok(faulty(Fault::HideConflicts))).unwrap();
    assert_eq!(verdict(&r, "write-write-conflict"), Verdict::Fail);
    assert_eq!(verdict(&r, "non-transacted-conflict"), Verdict::Fail);
    assert_eq!(verdict(&r, "own-writes-visible"), Verdict::Pass);
    let r = scenarios::run(&backend, &names).unwrap();
    assert!(r.ok());
}
