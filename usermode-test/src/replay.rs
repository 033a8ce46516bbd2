//! `ktmrm-test replay FILE`: sends a recorded sequence of raw requests and KTM actions through
//! the transport and prints every answer byte for byte, one JSON line per step. The
//! emulated-driver suite (`tests/emulated`) records each case it runs against the built
//! ktmrm.sys in this form and replays it on the simulated device: both must answer every
//! request with the same status and the same bytes, so the kernel shell and the portable engine
//! cannot drift apart.
//!
//! A trace is one JSON object per line (blank lines ignored):
//!
//! ```text
//! {"ioctl": 2269192, "input": "0100…", "out_len": 0, "tx": "T1"}   bytes 8..16 of input := T1
//! {"ioctl": 2269188, "input": "…", "out_len": 8, "bind": "T1"}     BEGIN's answer names T1
//! {"create_tx": "T2"}    {"commit": "T1"}    {"rollback": "T1"}    {"close": "T1"}
//! {"veto": "T1"}         a second resource manager in T1 that votes no (simulator only)
//! {"elapse": 150}        150 ms pass for KTM's timeouts
//! ```
//!
//! Each step prints `{"status": "0x…", "output": "hex"}`; a successful bound BEGIN prints
//! `"output": "<T1>"` instead of the handle value, which differs between machines.

use crate::error::Error;
use crate::transport::Transport;
use ktmrm_proto::NtStatus;
use serde_json::{Value, json};
use std::collections::HashMap;

/// A trace that cannot be replayed: the line and why.
#[derive(Debug)]
pub struct BadTrace(pub String);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

fn status(st: NtStatus) -> Value {
    json!({ "status": format!("{:#010x}", st.0 as u32) })
}

/// Replays `src` on `t`; returns one JSON value per step.
pub fn run(t: &dyn Transport, src: &str) -> Result<Vec<Value>, BadTrace> {
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let bad = |why: &str| BadTrace(format!("line {}: {why}", i + 1));
        if line.trim().is_empty() {
            continue;
        }
        let step: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let name_of = |key: &str| -> Result<Option<u64>, BadTrace> {
            match step.get(key).and_then(Value::as_str) {
                None => Ok(None),
                Some(n) => names
                    .get(n)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| bad(&format!("transaction {n} used before it exists"))),
            }
        };
        if let Some(code) = step.get("ioctl").and_then(Value::as_u64) {
            let code = u32::try_from(code).map_err(|_| bad("control code"))?;
            let mut input = step
                .get("input")
                .and_then(Value::as_str)
                .and_then(unhex)
                .ok_or_else(|| bad("input must be hex"))?;
            let out_len = step
                .get("out_len")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("out_len"))?;
            if let Some(h) = name_of("tx")? {
                let field = input
                    .get_mut(8..16)
                    .ok_or_else(|| bad("tx given but the input has no header"))?;
                field.copy_from_slice(&h.to_le_bytes());
            }
            let mut output = vec![0u8; out_len];
            let (st, n) = t.ioctl(code, &input, &mut output);
            let answer = output.get(..n.min(out_len)).unwrap_or_default();
            let mut v = status(st);
            let bound = step.get("bind").and_then(Value::as_str);
            v["output"] = match (bound, <[u8; 8]>::try_from(answer)) {
                (Some(name), Ok(bytes)) if st.is_success() => {
                    names.insert(name.to_owned(), u64::from_le_bytes(bytes));
                    json!(format!("<{name}>"))
                }
                _ => json!(hex(answer)),
            };
            out.push(v);
        } else if let Some(name) = step.get("create_tx").and_then(Value::as_str) {
            let v = match t.create_transaction(0, "") {
                Ok(h) => {
                    names.insert(name.to_owned(), h);
                    status(NtStatus::SUCCESS)
                }
                Err(e) => json!({ "error": e.to_string() }),
            };
            out.push(v);
        } else if let Some(h) = name_of("commit")? {
            out.push(status(t.commit_transaction(h)));
        } else if let Some(h) = name_of("rollback")? {
            out.push(status(t.rollback_transaction(h)));
        } else if let Some(h) = name_of("close")? {
            out.push(status(t.close_handle(h)));
        } else if let Some(h) = name_of("veto")? {
            out.push(match t.veto(h) {
                Ok(()) => status(NtStatus::SUCCESS),
                Err(e) => json!({ "error": e.to_string() }),
            });
        } else if let Some(ms) = step.get("elapse").and_then(Value::as_u64) {
            t.elapse(ms);
            out.push(status(NtStatus::SUCCESS));
        } else {
            return Err(bad("unknown step"));
        }
    }
    Ok(out)
}

impl From<BadTrace> for Error {
    fn from(e: BadTrace) -> Error {
        Error::Unsupported {
            op: "replay".into(),
            reason: e.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{SimConfig, SimTransport};
    use ktmrm_proto::{Call, Request};

    fn line(code: u32, req: &Request<'_>, out_len: usize, extra: &str) -> String {
        let mut buf = vec![0u8; req.encoded_len()];
        let n = req.encode(&mut buf).unwrap();
        format!(
            r#"{{"ioctl": {code}, "input": "{}", "out_len": {out_len}{extra}}}"#,
            hex(&buf[..n])
        )
    }

    #[test]
    fn replays_a_transaction_with_names_for_handles() {
        let t = SimTransport::new(SimConfig::default());
        let begin = Request::Begin {
            timeout_ms: 0,
            description: &[],
        };
        let put = Request::Put {
            tx: 0,
            key: b"k",
            value: b"v",
        };
        let get = Request::Get { tx: 0, key: b"k" };
        let src = [
            line(Call::Begin.code(), &begin, 8, r#", "bind": "T1""#),
            line(Call::Put.code(), &put, 0, r#", "tx": "T1""#),
            line(Call::Get.code(), &get, 64, ""),
            r#"{"elapse": 5}"#.to_owned(),
            r#"{"commit": "T1"}"#.to_owned(),
            line(Call::Get.code(), &get, 64, ""),
            line(Call::Get.code(), &get, 4, ""),
        ]
        .join("\n");
        let out = run(&t, &src).unwrap();
        let show: Vec<String> = out.iter().map(Value::to_string).collect();
        assert_eq!(
            show,
            [
                r#"{"output":"<T1>","status":"0x00000000"}"#,
                r#"{"output":"","status":"0x00000000"}"#,
                r#"{"output":"","status":"0xc0000034"}"#,
                r#"{"status":"0x00000000"}"#,
                r#"{"status":"0x00000000"}"#,
                r#"{"output":"010000000000000076","status":"0x00000000"}"#,
                r#"{"output":"","status":"0xc0000023"}"#,
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_replay() {
        let t = SimTransport::new(SimConfig::default());
        for (src, why) in [
            ("{", "line 1"),
            (r#"{"commit": "T9"}"#, "T9 used before it exists"),
            (r#"{"ioctl": 1, "input": "0", "out_len": 0}"#, "hex"),
            (
                r#"{"ioctl": 1, "input": "00", "out_len": 0, "tx": "T"}"#,
                "before it exists",
            ),
            (r#"{"frobnicate": 1}"#, "unknown step"),
        ] {
            let e = run(&t, src).unwrap_err();
            assert!(e.0.contains(why), "{src}: {}", e.0);
        }
    }
}
