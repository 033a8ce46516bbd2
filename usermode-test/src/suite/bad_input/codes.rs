//! Control codes ktmrm does not define, and output buffers too small for the answer.

use super::{Case, Cases, Via, enc, err_case};
use ktmrm_proto::{
    Call, FILE_DEVICE_UNKNOWN, FILE_READ_DATA, FILE_WRITE_DATA, GET_HEADER_LEN, LIST_MIN_OUTPUT,
    METHOD_BUFFERED, NtStatus, Request, STATS_LEN, VERSION_LEN, ctl_code,
};

/// Control codes ktmrm does not define: other functions, methods, device types, access bits.
pub(super) fn unknown(key: &[u8]) -> Cases {
    let put = enc(&Request::Put {
        tx: 0,
        key,
        value: b"clobbered",
    });
    let mut codes: Vec<(String, u32)> =
        vec![("code 0".into(), 0), ("code 0xFFFFFFFF".into(), u32::MAX)];
    for f in [0x000, 0x7FF, 0x807, 0x808, 0xFFF] {
        for access in [0, FILE_READ_DATA, FILE_WRITE_DATA, 3] {
            codes.push((
                format!("function 0x{f:03X}, access {access}"),
                ctl_code(FILE_DEVICE_UNKNOWN, f, METHOD_BUFFERED, access),
            ));
        }
    }
    for call in Call::ALL {
        let c = call.code();
        for method in 1..4 {
            codes.push((
                format!("{} with method {method}", call.name()),
                (c & !3) | method,
            ));
        }
        for dev in [0x7u32, 0x21, 0x23, 0x8000, 0xFFFF] {
            codes.push((
                format!("{} on device type 0x{dev:X}", call.name()),
                (c & 0xFFFF) | (dev << 16),
            ));
        }
        let other_access = c ^ (1 << 14);
        if Call::from_code(other_access).is_none() {
            codes.push((
                format!("{} with other access bits", call.name()),
                other_access,
            ));
        }
    }
    codes
        .into_iter()
        .filter(|(_, c)| Call::from_code(*c).is_none())
        .flat_map(|(name, code)| {
            [
                (
                    "unknown-codes",
                    err_case(
                        format!("{name} (0x{code:08X}), PUT input"),
                        code,
                        put.clone(),
                        256,
                        NtStatus::INVALID_DEVICE_REQUEST,
                    ),
                ),
                (
                    "unknown-codes",
                    err_case(
                        format!("{name} (0x{code:08X}), no input"),
                        code,
                        Vec::new(),
                        0,
                        NtStatus::INVALID_DEVICE_REQUEST,
                    ),
                ),
            ]
        })
        .collect()
}

/// Output buffers below each call's smallest answer, and GET's overflow header.
pub(super) fn output(key: &[u8], value: &[u8], version: &[u8]) -> Cases {
    let bts = NtStatus::BUFFER_TOO_SMALL;
    let mut v = Vec::new();
    let desc: Vec<u8> = "bad-input"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let begin = enc(&Request::Begin {
        timeout_ms: 0,
        description: &desc,
    });
    for n in 0..VERSION_LEN {
        v.push((
            "output-too-small",
            err_case(
                format!("get_version: {n}-byte output"),
                Call::GetVersion.code(),
                Vec::new(),
                n,
                bts,
            ),
        ));
    }
    for n in 0..8 {
        v.push((
            "output-too-small",
            err_case(
                format!("begin: {n}-byte output"),
                Call::Begin.code(),
                begin.clone(),
                n,
                bts,
            ),
        ));
    }
    let get = enc(&Request::Get { tx: 0, key });
    for n in 0..GET_HEADER_LEN {
        v.push((
            "output-too-small",
            err_case(
                format!("get: {n}-byte output"),
                Call::Get.code(),
                get.clone(),
                n,
                bts,
            ),
        ));
    }
    let mut header = (value.len() as u32).to_le_bytes().to_vec();
    header.extend_from_slice(&[0; 4]);
    for n in GET_HEADER_LEN..GET_HEADER_LEN + value.len() {
        v.push((
            "output-too-small",
            Case {
                name: format!("get: {n}-byte output for a {}-byte value", value.len()),
                code: Call::Get.code(),
                input: get.clone(),
                out_len: n,
                via: Via::ReadWrite,
                status: NtStatus::BUFFER_OVERFLOW,
                output: header.clone(),
            },
        ));
    }
    let absent = enc(&Request::Get {
        tx: 0,
        key: b"bad-input/absent",
    });
    v.push((
        "output-too-small",
        err_case(
            "get absent: 4-byte output (size checked first)".into(),
            Call::Get.code(),
            absent,
            4,
            bts,
        ),
    ));
    let list = enc(&Request::List {
        tx: 0,
        prefix: b"",
        cursor: b"",
        max_keys: 0,
    });
    for n in [0, 1, 7, 8, 9, 100, LIST_MIN_OUTPUT - 1] {
        v.push((
            "output-too-small",
            err_case(
                format!("list: {n}-byte output"),
                Call::List.code(),
                list.clone(),
                n,
                bts,
            ),
        ));
    }
    for n in [0, 4, 8, STATS_LEN - 1] {
        v.push((
            "output-too-small",
            err_case(
                format!("stats: {n}-byte output"),
                Call::Stats.code(),
                enc(&Request::Stats),
                n,
                bts,
            ),
        ));
    }
    // What fits exactly, for contrast.
    let mut full = header.clone();
    full.extend_from_slice(value);
    v.push((
        "output-too-small",
        Case {
            name: "get: exact output".into(),
            code: Call::Get.code(),
            input: get,
            out_len: full.len(),
            via: Via::ReadWrite,
            status: NtStatus::SUCCESS,
            output: full,
        },
    ));
    v.push((
        "output-too-small",
        Case {
            name: "get_version: exact output, junk input".into(),
            code: Call::GetVersion.code(),
            input: vec![0xFF; 37],
            out_len: VERSION_LEN,
            via: Via::ReadWrite,
            status: NtStatus::SUCCESS,
            output: version.to_vec(),
        },
    ));
    v
}
