//! Every malformed request the harness can build, each with its exact expected NTSTATUS and
//! output bytes; afterwards the store must be byte-for-byte unchanged and no transaction leaked.
//!
//! Expected statuses follow the order the driver checks in: the I/O manager's access check
//! (`STATUS_ACCESS_DENIED`), the control code (`STATUS_INVALID_DEVICE_REQUEST`), the decoder
//! (documented at the top of `crates/proto/src/request.rs`: short → `INVALID_BUFFER_SIZE`,
//! version → `REVISION_MISMATCH`, flags/reserved → `INVALID_PARAMETER`, lengths →
//! `INVALID_BUFFER_SIZE`, values and a level stated without a transaction →
//! `INVALID_PARAMETER`), the output size (`BUFFER_TOO_SMALL`), the transaction handle, then the
//! transaction's isolation level (`INVALID_PARAMETER_MIX`). Cases that would trip two checks are
//! avoided unless the order itself is what they test.

mod codes;
mod decoder;
mod handles;

use super::{CheckResult, Report, Stop, Verdict};
use crate::client::{Client, utf16le};
use crate::error::Result;
use crate::transport::Transport;
use ktmrm_proto::{
    Call, FILE_READ_DATA, FILE_WRITE_DATA, Isolation, MAX_VALUE_LEN, NtStatus, Request, VERSION_LEN,
};
use std::time::Instant;

/// Cases tagged with their category.
pub(super) type Cases = Vec<(&'static str, Case)>;

/// Which handle to the device a case is sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Read and write access.
    ReadWrite,
    /// `FILE_READ_DATA` only.
    ReadOnly,
    /// `FILE_WRITE_DATA` only.
    WriteOnly,
    /// No data access.
    NoAccess,
}

/// One request and what must come back.
#[derive(Clone, Debug)]
pub struct Case {
    /// What is wrong with it.
    pub name: String,
    /// Control code.
    pub code: u32,
    /// Input bytes.
    pub input: Vec<u8>,
    /// Output buffer length.
    pub out_len: usize,
    /// The handle it goes through.
    pub via: Via,
    /// Expected status.
    pub status: NtStatus,
    /// Expected output bytes (their count is the expected `Information`).
    pub output: Vec<u8>,
}

pub(super) fn enc(r: &Request<'_>) -> Vec<u8> {
    enc_stating(r, Isolation::Unstated)
}

/// `r` encoded with `level` in the header's flags.
pub(super) fn enc_stating(r: &Request<'_>, level: Isolation) -> Vec<u8> {
    let mut v = vec![0u8; r.encoded_len()];
    let n = r.encode_stating(level, &mut v).unwrap_or(0);
    v.truncate(n);
    v
}

pub(super) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A well-formed BEGIN with the description "bad-input".
pub(super) fn begin_request(timeout_ms: u32) -> Vec<u8> {
    enc(&Request::Begin {
        timeout_ms,
        description: &utf16le("bad-input"),
    })
}

/// Well-formed requests for every call but GET_VERSION (whose input is ignored). None of them is
/// ever sent whole: every case breaks something first.
pub(super) fn samples(key: &[u8]) -> Vec<(Call, Vec<u8>)> {
    vec![
        (Call::Begin, begin_request(1000)),
        (
            Call::Put,
            enc(&Request::Put {
                tx: 0,
                key,
                value: b"clobbered",
            }),
        ),
        (Call::Get, enc(&Request::Get { tx: 0, key })),
        (Call::Delete, enc(&Request::Delete { tx: 0, key })),
        (
            Call::List,
            enc(&Request::List {
                tx: 0,
                prefix: b"bad",
                cursor: b"bad-a",
                max_keys: 5,
            }),
        ),
        (Call::Stats, enc(&Request::Stats)),
    ]
}

/// Output length that is enough for any answer of `call`.
pub(super) fn roomy(call: Call) -> usize {
    match call {
        Call::List => 4096,
        _ => 256,
    }
}

/// A case with an adequate output buffer and no output expected.
pub(super) fn err_case(
    name: String,
    call_code: u32,
    input: Vec<u8>,
    out_len: usize,
    status: NtStatus,
) -> Case {
    Case {
        name,
        code: call_code,
        input,
        out_len,
        via: Via::ReadWrite,
        status,
        output: Vec::new(),
    }
}

/// Sends one case; `None` when it behaved, else what differed.
fn send(t: &dyn Transport, case: &Case) -> Option<String> {
    const SENTINEL: u8 = 0xA5;
    let mut out = vec![SENTINEL; case.out_len];
    let (st, n) = t.ioctl(case.code, &case.input, &mut out);
    let mut problems = Vec::new();
    if st != case.status {
        problems.push(format!(
            "status {} (expected {})",
            crate::status::name(st),
            crate::status::name(case.status)
        ));
    }
    if n != case.output.len() {
        problems.push(format!(
            "{n} bytes written (expected {})",
            case.output.len()
        ));
    } else if out[..n] != case.output[..] {
        problems.push(format!(
            "output {:02X?} (expected {:02X?})",
            &out[..n.min(64)],
            &case.output[..n.min(64)]
        ));
    }
    if out[n.min(out.len())..].iter().any(|b| *b != SENTINEL) {
        problems.push("bytes past the answer were overwritten".into());
    }
    (!problems.is_empty()).then(|| format!("{}: {}", case.name, problems.join(", ")))
}

/// Runs the suite on `transport`.
pub fn run(transport: std::sync::Arc<dyn Transport>) -> Result<Report> {
    let client = Client::unchecked(transport.clone());
    let mut report = Report::new("bad-input", transport.kind());
    let key = b"bad-input/k".to_vec();
    let value = b"value-123".to_vec();
    client.put(&key, &value)?;
    // Seed keys of assorted sizes, so "unchanged" compares more than one value.
    let seeds: Vec<(Vec<u8>, Vec<u8>)> = (0..16usize)
        .map(|i| {
            (
                format!("bad-input/seed/{i:02}").into_bytes(),
                vec![i as u8; [0, 1, 255, 4096, MAX_VALUE_LEN][i % 5]],
            )
        })
        .collect();
    for (k, v) in &seeds {
        client.put(k, v)?;
    }
    let mut version = vec![0u8; VERSION_LEN];
    let (st, n) = transport.ioctl(Call::GetVersion.code(), &[], &mut version);
    if st != NtStatus::SUCCESS || n != VERSION_LEN {
        return Err(crate::error::Error::status_of("get_version", st));
    }
    let before = client.snapshot(b"")?;
    let stats_before = client.stats()?;

    let rw = FILE_READ_DATA | FILE_WRITE_DATA;
    let handles: Vec<(Via, Box<dyn Transport>)> = vec![
        (Via::ReadWrite, transport.reopen(rw)?),
        (Via::ReadOnly, transport.reopen(FILE_READ_DATA)?),
        (Via::WriteOnly, transport.reopen(FILE_WRITE_DATA)?),
        (Via::NoAccess, transport.reopen(0)?),
    ];
    let mut cases = decoder::cases(&key);
    cases.extend(codes::unknown(&key));
    cases.extend(codes::output(&key, &value, &version));
    cases.extend(handles::access(&key, &version));
    let (handle_cases, opened) = handles::bad_handles(transport.as_ref(), &key)?;
    cases.extend(handle_cases);

    let mut categories: Vec<&'static str> = Vec::new();
    for (cat, _) in &cases {
        if !categories.contains(cat) {
            categories.push(cat);
        }
    }
    for cat in categories {
        let start = Instant::now();
        let mut count = 0;
        let mut failures = Vec::new();
        for (_, case) in cases.iter().filter(|(c, _)| *c == cat) {
            let Some((_, t)) = handles.iter().find(|(v, _)| *v == case.via) else {
                continue;
            };
            count += 1;
            if let Some(f) = send(t.as_ref(), case) {
                failures.push(f);
            }
        }
        let verdict = if failures.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let detail = if failures.is_empty() {
            format!("{count} requests, each answered as expected")
        } else {
            format!(
                "{} of {count} requests answered wrongly:\n{}",
                failures.len(),
                failures.join("\n")
            )
        };
        report.push(CheckResult {
            name: cat.to_owned(),
            rule: rule_of(cat).to_owned(),
            verdict,
            detail,
            millis: start.elapsed().as_millis(),
        });
    }
    for h in opened {
        let _ = transport.close_handle(h);
    }

    report.run(
        "store-unchanged",
        "after every malformed request the store is byte-for-byte unchanged",
        || {
            let after = client.snapshot(b"")?;
            if after != before {
                return Err(Stop::Fail(format!(
                    "{} keys before, {} after; first difference: {:?}",
                    before.len(),
                    after.len(),
                    before
                        .iter()
                        .zip(&after)
                        .find(|(a, b)| a != b)
                        .map(|(a, b)| (crate::client::show(&a.0), crate::client::show(&b.0)))
                )));
            }
            Ok(format!("{} keys compared", after.len()))
        },
    );
    report.run(
        "no-leaked-transactions",
        "no request left a live transaction, a commit or a write behind",
        || {
            let s = client.stats()?;
            super::expect_eq(
                "live transactions",
                s.live_transactions,
                stats_before.live_transactions,
            )?;
            super::expect_eq("commits", s.commits, stats_before.commits)?;
            super::expect_eq(
                "non-transacted writes",
                s.non_transacted_writes,
                stats_before.non_transacted_writes,
            )?;
            super::expect_eq("keys", s.keys, stats_before.keys)?;
            super::expect_eq("bytes", s.bytes, stats_before.bytes)?;
            let v = transport.violations();
            if !v.is_empty() {
                return Err(Stop::Fail(format!(
                    "KTM protocol violations: {}",
                    v.join("; ")
                )));
            }
            Ok(format!(
                "{} live transactions before and after",
                s.live_transactions
            ))
        },
    );
    let _ = client.delete(&key);
    for (k, _) in &seeds {
        let _ = client.delete(k);
    }
    Ok(report)
}

fn rule_of(cat: &str) -> &'static str {
    match cat {
        "truncated" => {
            "every length from 0 to one short of a whole request → STATUS_INVALID_BUFFER_SIZE"
        }
        "trailing-bytes" => {
            "bytes past the body, or a body_len covering them → STATUS_INVALID_BUFFER_SIZE"
        }
        "wrong-version" => {
            "a version other than 1 → STATUS_REVISION_MISMATCH, before lengths are checked"
        }
        "flags-reserved" => {
            "header flags bits 2-15 or reserved fields non-zero → STATUS_INVALID_PARAMETER"
        }
        "isolation-level" => "isolation level 3 (flags bits 0-1) → STATUS_INVALID_PARAMETER",
        "isolation-without-transaction" => {
            "a level stated without a transaction (tx 0, STATS) → STATUS_INVALID_PARAMETER"
        }
        "isolation-mismatch" => {
            "a level other than the one the transaction has → STATUS_INVALID_PARAMETER_MIX"
        }
        "body-len-lies" => "body_len not the exact rest of the input → STATUS_INVALID_BUFFER_SIZE",
        "field-len-lies" => {
            "key/value/prefix/cursor/description lengths that do not add up → STATUS_INVALID_BUFFER_SIZE"
        }
        "oversize-fields" => {
            "empty or over-long keys, values, prefixes, cursors, descriptions → STATUS_INVALID_PARAMETER"
        }
        "tx-where-none-allowed" => {
            "a transaction handle on BEGIN or STATS → STATUS_INVALID_PARAMETER"
        }
        "unknown-codes" => {
            "other functions, methods, device types or access bits → STATUS_INVALID_DEVICE_REQUEST"
        }
        "output-too-small" => {
            "output below a call's smallest answer → STATUS_BUFFER_TOO_SMALL; GET → STATUS_BUFFER_OVERFLOW + header"
        }
        "access-denied" => {
            "a handle without the access a code needs → STATUS_ACCESS_DENIED, whatever the input"
        }
        "bad-handle-values" => "handle values that name nothing → STATUS_INVALID_HANDLE",
        "wrong-object-type" => "a handle to an event → STATUS_OBJECT_TYPE_MISMATCH",
        "closed-transaction" => "a closed transaction handle → STATUS_INVALID_HANDLE",
        "ended-transactions" => {
            "a committed or rolled-back transaction → STATUS_TRANSACTION_NOT_ACTIVE"
        }
        _ => "",
    }
}
