//! The engine behind a `SimDevice`, driven only through `SimFile::ioctl` bytes: a client and
//! the set-up and end checks the device tests share.

use std::time::Duration;

use ktm_sim::{DeliveryMode, NtStatus, SimConfig, SimDevice, SimFile, SimProcess};
use ktmrm_proto::{
    FILE_READ_DATA, FILE_WRITE_DATA, MAX_REQUEST_LEN, Request, STATS_LEN, Stats, decode_begin,
    decode_get,
};

pub const RW: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

/// A client over one open of the device, speaking only bytes.
#[derive(Clone)]
pub struct Client {
    file: SimFile,
}

impl Client {
    pub fn new(p: &SimProcess) -> Self {
        Client { file: p.open(RW) }
    }

    pub fn call(&self, req: Request<'_>, out_len: usize) -> (NtStatus, Vec<u8>) {
        let mut input = vec![0u8; MAX_REQUEST_LEN];
        let n = req.encode(&mut input).unwrap();
        let mut out = vec![0u8; out_len];
        let (status, got) = self.file.ioctl(req.call().code(), &input[..n], &mut out);
        out.truncate(got);
        (status, out)
    }

    pub fn begin(&self, timeout_ms: u32, description: &str) -> Result<u64, NtStatus> {
        let desc: Vec<u8> = description
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (s, out) = self.call(
            Request::Begin {
                timeout_ms,
                description: &desc,
            },
            8,
        );
        if s == NtStatus::SUCCESS {
            Ok(decode_begin(&out).unwrap())
        } else {
            Err(s)
        }
    }

    pub fn put(&self, tx: u64, key: &str, value: &str) -> NtStatus {
        self.call(
            Request::Put {
                tx,
                key: key.as_bytes(),
                value: value.as_bytes(),
            },
            0,
        )
        .0
    }

    pub fn get(&self, tx: u64, key: &str) -> Result<String, NtStatus> {
        let (s, out) = self.call(
            Request::Get {
                tx,
                key: key.as_bytes(),
            },
            1024,
        );
        if s != NtStatus::SUCCESS {
            return Err(s);
        }
        let (_, v) = decode_get(&out).unwrap();
        Ok(String::from_utf8(v.unwrap().to_vec()).unwrap())
    }

    pub fn stats(&self) -> Stats {
        let (s, out) = self.call(Request::Stats, STATS_LEN);
        assert_eq!(s, NtStatus::SUCCESS);
        Stats::decode(&out).unwrap()
    }
}

pub fn device(mode: DeliveryMode) -> SimDevice {
    SimDevice::with_config(SimConfig {
        delivery: mode,
        answer_deadline: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    })
}

/// [`device`] where the engine asks for single-phase commit (a deployment with no other
/// writing RM).
pub fn sole_writer(mode: DeliveryMode) -> SimDevice {
    SimDevice::with_config(SimConfig {
        delivery: mode,
        answer_deadline: Some(Duration::from_secs(5)),
        single_phase: true,
        ..SimConfig::default()
    })
}

/// What most tests start from: `dev`, a process, and a client over that process's open of it.
pub fn one_client(dev: SimDevice) -> (SimDevice, SimProcess, Client) {
    let p = dev.process();
    let c = Client::new(&p);
    (dev, p, c)
}

/// The end of every test: no protocol violation, no leaked enlistment or reference, and the
/// engine holds no live transaction.
pub fn assert_clean(dev: &SimDevice) {
    let v = dev.finish();
    assert!(v.is_empty(), "violations: {v:#?}");
    assert_eq!(dev.ktm().counters().enlistments_open, 0);
    assert_eq!(dev.stats().live_transactions, 0);
    assert_eq!(dev.stats().prepared, 0);
}
