//! Handles: device handles without the access a call needs, and transaction handle values that
//! are bad in every way a handle can be.

use super::{Case, Cases, Via, enc, enc_stating, err_case, roomy, samples};
use crate::error::Result;
use crate::transport::{Transport, TransportKind};
use ktmrm_proto::{
    Call, FILE_DEVICE_UNKNOWN, FILE_WRITE_DATA, Isolation, METHOD_BUFFERED, NtStatus, Request,
    VERSION_LEN, ctl_code,
};

/// Handles opened without the access a call's code requires: the I/O manager refuses before
/// the driver sees anything, even malformed input.
pub(super) fn access(key: &[u8], version: &[u8]) -> Cases {
    let ad = NtStatus::ACCESS_DENIED;
    let mut v = Vec::new();
    let samples = samples(key);
    for (via, denied) in [
        (Via::ReadOnly, &[Call::Begin, Call::Put, Call::Delete][..]),
        (Via::WriteOnly, &[Call::Get, Call::List, Call::Stats][..]),
        (
            Via::NoAccess,
            &[
                Call::Begin,
                Call::Put,
                Call::Delete,
                Call::Get,
                Call::List,
                Call::Stats,
            ][..],
        ),
    ] {
        for (call, full) in samples.iter().filter(|(c, _)| denied.contains(c)) {
            for (what, input) in [
                ("well-formed", full.clone()),
                ("truncated", full[..3].to_vec()),
            ] {
                v.push((
                    "access-denied",
                    Case {
                        name: format!("{via:?} handle: {} {what}", call.name()),
                        code: call.code(),
                        input,
                        out_len: roomy(*call),
                        via,
                        status: ad,
                        output: Vec::new(),
                    },
                ));
            }
        }
        v.push((
            "access-denied",
            Case {
                name: format!("{via:?} handle: get_version still answers"),
                code: Call::GetVersion.code(),
                input: Vec::new(),
                out_len: VERSION_LEN,
                via,
                status: NtStatus::SUCCESS,
                output: version.to_vec(),
            },
        ));
    }
    // An unknown code whose access bits the handle lacks: the access check comes first.
    let code = ctl_code(FILE_DEVICE_UNKNOWN, 0x900, METHOD_BUFFERED, FILE_WRITE_DATA);
    v.push((
        "access-denied",
        Case {
            name: "ReadOnly handle: unknown code with FILE_WRITE_ACCESS".into(),
            code,
            input: Vec::new(),
            out_len: 0,
            via: Via::ReadOnly,
            status: ad,
            output: Vec::new(),
        },
    ));
    v
}

/// Requests naming transaction handles that are bad in every way a handle can be.
/// Also returns the handles it opened, to close once the cases ran.
pub(super) fn bad_handles(t: &dyn Transport, key: &[u8]) -> Result<(Cases, Vec<u64>)> {
    let mut handles: Vec<(&'static str, String, u64, NtStatus)> = Vec::new();
    for h in [
        0xFFFF_FFF0u64,
        0x7FFF_FFFC,
        0xDEAD_BEEC,
        0x1_0000_0004,
        0xFFFF_FFFF,
        0x8000_0000_0000_0004,
    ] {
        handles.push((
            "bad-handle-values",
            format!("handle 0x{h:X}"),
            h,
            NtStatus::INVALID_HANDLE,
        ));
    }
    // -1 and -2 are the current-process and current-thread pseudo-handles on Windows: real
    // objects of the wrong type there; the simulator has no pseudo-handles.
    let pseudo = if t.kind() == TransportKind::Device {
        NtStatus::OBJECT_TYPE_MISMATCH
    } else {
        NtStatus::INVALID_HANDLE
    };
    handles.push((
        "bad-handle-values",
        "handle -1 (current process)".into(),
        u64::MAX,
        pseudo,
    ));
    handles.push((
        "bad-handle-values",
        "handle -2 (current thread)".into(),
        u64::MAX - 1,
        pseudo,
    ));
    let event = t.create_event()?;
    let mut opened = vec![event];
    handles.push((
        "wrong-object-type",
        "an event handle".into(),
        event,
        NtStatus::OBJECT_TYPE_MISMATCH,
    ));
    let closed = t.create_transaction(0, "bad-input closed")?;
    let _ = t.close_handle(closed);
    handles.push((
        "closed-transaction",
        "a closed transaction handle".into(),
        closed,
        NtStatus::INVALID_HANDLE,
    ));
    for (how, commit) in [("committed", true), ("rolled back", false)] {
        let h = t.create_transaction(0, "bad-input ended")?;
        let st = if commit {
            t.commit_transaction(h)
        } else {
            t.rollback_transaction(h)
        };
        if st.is_error() {
            return Err(crate::error::Error::status_of(
                format!("{how} transaction setup"),
                st,
            ));
        }
        opened.push(h);
        handles.push((
            "ended-transactions",
            format!("a {how} transaction"),
            h,
            NtStatus::TRANSACTION_NOT_ACTIVE,
        ));
    }
    let mut v = Vec::new();
    let (mismatches, live) = mismatched_levels(t, key)?;
    v.extend(mismatches);
    opened.extend(live);
    for (cat, what, h, status) in handles {
        let reqs = [
            (
                Call::Put,
                enc(&Request::Put {
                    tx: h,
                    key,
                    value: b"clobbered",
                }),
            ),
            (Call::Get, enc(&Request::Get { tx: h, key })),
            (Call::Delete, enc(&Request::Delete { tx: h, key })),
            (
                Call::List,
                enc(&Request::List {
                    tx: h,
                    prefix: b"",
                    cursor: b"",
                    max_keys: 0,
                }),
            ),
        ];
        for (call, input) in reqs {
            v.push((
                cat,
                err_case(
                    format!("{}: {what}", call.name()),
                    call.code(),
                    input,
                    roomy(call),
                    status,
                ),
            ));
        }
    }
    Ok((v, opened))
}

/// Live transactions whose level a first GET fixed (one serializable, one read committed by not
/// stating any), and every data request naming each with the other level: the driver refuses
/// them with `STATUS_INVALID_PARAMETER_MIX`. Returns the cases and the handles to close.
fn mismatched_levels(t: &dyn Transport, key: &[u8]) -> Result<(Cases, Vec<u64>)> {
    let mut v = Vec::new();
    let mut opened = Vec::new();
    for (fixed, fixed_by, other) in [
        (
            Isolation::Serializable,
            Isolation::Serializable,
            Isolation::ReadCommitted,
        ),
        (
            Isolation::ReadCommitted,
            Isolation::Unstated,
            Isolation::Serializable,
        ),
    ] {
        let h = t.create_transaction(0, "bad-input level")?;
        opened.push(h);
        let mut out = [0u8; 256];
        let get = enc_stating(&Request::Get { tx: h, key }, fixed_by);
        let (st, _) = t.ioctl(Call::Get.code(), &get, &mut out);
        if st.is_error() {
            return Err(crate::error::Error::status_of(
                format!("{fixed:?} transaction setup"),
                st,
            ));
        }
        let reqs = [
            (
                Call::Put,
                Request::Put {
                    tx: h,
                    key,
                    value: b"clobbered",
                },
            ),
            (Call::Get, Request::Get { tx: h, key }),
            (Call::Delete, Request::Delete { tx: h, key }),
            (
                Call::List,
                Request::List {
                    tx: h,
                    prefix: b"",
                    cursor: b"",
                    max_keys: 0,
                },
            ),
        ];
        for (call, req) in reqs {
            v.push((
                "isolation-mismatch",
                err_case(
                    format!(
                        "{}: a {fixed:?} transaction, stating {other:?}",
                        call.name()
                    ),
                    call.code(),
                    enc_stating(&req, other),
                    roomy(call),
                    NtStatus::INVALID_PARAMETER_MIX,
                ),
            ));
        }
    }
    Ok((v, opened))
}
