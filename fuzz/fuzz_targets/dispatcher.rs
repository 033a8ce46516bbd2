//! Sequences of requests and KTM events against the engine behind the KTM model: well-formed and
//! corrupted requests, requests stating an isolation level (serializable transactions, levels
//! changed midway, invalid levels and flags), real, closed, foreign and bogus handles, commits, rollbacks, vetoes,
//! timeouts, handle closes and rollbacks racing a commit's phases, with every interleaving KTM's
//! documentation allows (`SimConfig`'s default). Afterwards: no protocol violation, no leaked enlistment or
//! transaction reference, no live transaction, and no answer longer than its buffer.
#![no_main]

use arbitrary::Arbitrary;
use ktm_sim::{EnlistRace, Notification, SimConfig, SimDevice};
use ktmrm_proto::{Call, FILE_READ_DATA, FILE_WRITE_DATA, Limits, NtStatus, Request};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Handle {
    None,
    Tx(u8),
    Event,
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Put { tx: Handle, key: Vec<u8>, value: Vec<u8> },
    Get { tx: Handle, key: Vec<u8>, out: u16 },
    Delete { tx: Handle, key: Vec<u8> },
    List { tx: Handle, prefix: Vec<u8>, cursor: Vec<u8>, max: u8, out: u16 },
    Begin { timeout_ms: u16 },
    Raw { code: u32, input: Vec<u8>, out: u16 },
    Corrupt { op: Box<Op>, at: u16, xor: u8 },
    Create,
    Commit(u8),
    Rollback(u8),
    Close(u8),
    Veto(u8),
    YesRm(u8),
    Advance(u16),
    /// The app's rollback races the next PREPREPARE (even) or PREPARE (odd) of a commit.
    RollbackDuring(u8),
    /// `op` (a PUT, GET, DELETE, LIST or BEGIN) with these header flags: bits 0-1 a level (3
    /// invalid), a higher bit invalid.
    Stated { flags: u16, op: Box<Op> },
}

fuzz_target!(|ops: Vec<Op>| {
    let dev = SimDevice::with_config(SimConfig {
        limits: Limits { max_keys: 64, max_bytes: 4096, max_write_set: 16, max_live_transactions: 8 },
        ..SimConfig::default()
    });
    let p = dev.process();
    let file = p.open(FILE_READ_DATA | FILE_WRITE_DATA);
    let event = p.create_event();
    let mut txs: Vec<u64> = Vec::new();
    let pick = |txs: &Vec<u64>, i: u8| txs.get(usize::from(i) % txs.len().max(1)).copied();
    for op in ops.into_iter().take(64) {
        run(&dev, &p, &file, event, &mut txs, op, &pick);
    }
    for tx in txs {
        p.rollback(tx);
        p.close_handle(tx);
    }
    assert_eq!(dev.stats().live_transactions, 0, "live transactions left");
    let v = dev.finish();
    assert!(v.is_empty(), "protocol violations: {v:?}");
});

/// PREPREPARE or PREPARE.
fn phase(n: u8) -> Notification {
    if n % 2 == 0 { Notification::PrePrepare } else { Notification::Prepare }
}

/// Sends one request (optionally with one byte flipped); returns a handle BEGIN created.
fn io(file: &ktm_sim::SimFile, req: Request<'_>, out: u16, corrupt: Option<(u16, u8)>) -> Option<u64> {
    io_flagged(file, req, out, corrupt, 0)
}

/// [`io`] with the header's flags set to `flags`.
fn io_flagged(
    file: &ktm_sim::SimFile,
    req: Request<'_>,
    out: u16,
    corrupt: Option<(u16, u8)>,
    flags: u16,
) -> Option<u64> {
    let mut input = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut input).unwrap_or(0);
    input.truncate(n);
    if let Some(f) = input.get_mut(2..4) {
        f.copy_from_slice(&flags.to_le_bytes());
    }
    if let Some((at, xor)) = corrupt {
        if let Some(b) = input.get_mut(usize::from(at) % n.max(1)) {
            *b ^= xor;
        }
    }
    let mut output = vec![0u8; usize::from(out)];
    let (st, info) = file.ioctl(req.call().code(), &input, &mut output);
    assert!(info <= output.len(), "{info} bytes answered into {}", output.len());
    assert!(st.name().is_some(), "unnamed status {st:?}");
    if st == NtStatus::SUCCESS && req.call() == Call::Begin {
        return ktmrm_proto::decode_begin(&output[..info]);
    }
    None
}

fn run(
    dev: &SimDevice,
    p: &ktm_sim::SimProcess,
    file: &ktm_sim::SimFile,
    event: u64,
    txs: &mut Vec<u64>,
    op: Op,
    pick: &dyn Fn(&Vec<u64>, u8) -> Option<u64>,
) {
    let handle = |h: &Handle| match h {
        Handle::None => 0,
        Handle::Tx(i) => pick(txs, *i).unwrap_or(0),
        Handle::Event => event,
        Handle::Raw(v) => *v,
    };
    let created = match op {
        Op::Put { tx, key, value } => io(file, Request::Put { tx: handle(&tx), key: &key, value: &value }, 0, None),
        Op::Get { tx, key, out } => io(file, Request::Get { tx: handle(&tx), key: &key }, out, None),
        Op::Delete { tx, key } => io(file, Request::Delete { tx: handle(&tx), key: &key }, 0, None),
        Op::List { tx, prefix, cursor, max, out } => io(
            file,
            Request::List { tx: handle(&tx), prefix: &prefix, cursor: &cursor, max_keys: u32::from(max) },
            out,
            None,
        ),
        Op::Begin { timeout_ms } => {
            io(file, Request::Begin { timeout_ms: u32::from(timeout_ms), description: b"f\0" }, 8, None)
        }
        Op::Raw { code, input, out } => {
            let mut output = vec![0u8; usize::from(out)];
            let (_, info) = file.ioctl(code, &input, &mut output);
            assert!(info <= output.len());
            None
        }
        Op::Corrupt { op, at, xor } => match *op {
            Op::Put { tx, key, value } => {
                io(file, Request::Put { tx: handle(&tx), key: &key, value: &value }, 0, Some((at, xor)))
            }
            _ => None,
        },
        Op::Create => p.create_transaction(0, "fuzz").ok(),
        Op::Commit(i) => {
            pick(txs, i).map(|h| p.commit(h));
            None
        }
        Op::Rollback(i) => {
            pick(txs, i).map(|h| p.rollback(h));
            None
        }
        Op::Close(i) => {
            if let Some(h) = pick(txs, i) {
                p.close_handle(h);
                txs.retain(|t| *t != h);
            }
            None
        }
        Op::Veto(i) => {
            pick(txs, i).map(|h| p.enlist_veto_rm(h));
            None
        }
        Op::YesRm(i) => {
            pick(txs, i).map(|h| p.enlist_yes_rm(h));
            None
        }
        Op::Advance(ms) => {
            dev.ktm().advance_time(u64::from(ms));
            None
        }
        Op::RollbackDuring(n) => {
            dev.ktm().rollback_during_next(phase(n), EnlistRace::SameThread);
            None
        }
        // Mostly valid levels (0-2), sometimes 3 or a higher bit.
        Op::Stated { flags, op } => {
            let flags = if flags & 0xF000 == 0xF000 { flags } else { flags % 3 };
            match *op {
                Op::Put { tx, key, value } => io_flagged(
                    file,
                    Request::Put { tx: handle(&tx), key: &key, value: &value },
                    0,
                    None,
                    flags,
                ),
                Op::Get { tx, key, out } => {
                    io_flagged(file, Request::Get { tx: handle(&tx), key: &key }, out, None, flags)
                }
                Op::Delete { tx, key } => {
                    io_flagged(file, Request::Delete { tx: handle(&tx), key: &key }, 0, None, flags)
                }
                Op::List { tx, prefix, cursor, max, out } => io_flagged(
                    file,
                    Request::List { tx: handle(&tx), prefix: &prefix, cursor: &cursor, max_keys: u32::from(max) },
                    out,
                    None,
                    flags,
                ),
                Op::Begin { timeout_ms } => io_flagged(
                    file,
                    Request::Begin { timeout_ms: u32::from(timeout_ms), description: b"f\0" },
                    8,
                    None,
                    flags,
                ),
                _ => None,
            }
        }
    };
    txs.extend(created);
}
