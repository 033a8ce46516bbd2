//! Control codes ktmrm does not define, and output buffers too small for the answer.

use super::{Case, Cases, Via, begin_request, enc, err_case};
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

/// `input` for `call` with each output length in `lens`, every one too small for the answer.
fn too_small(call: Call, input: &[u8], lens: impl IntoIterator<Item = usize>) -> Cases {
    lens.into_iter()
        .map(|n| {
            (
                "output-too-small",
                err_case(
                    format!("{}: {n}-byte output", call.name()),
                    call.code(),
                    input.to_vec(),
                    n,
                    NtStatus::BUFFER_TOO_SMALL,
                ),
            )
        })
        .collect()
}

/// Output buffers below each call's smallest answer, and GET's overflow header.
pub(super) fn output(key: &[u8], value: &[u8], version: &[u8]) -> Cases {
    let bts = NtStatus::BUFFER_TOO_SMALL;
    let mut v = Vec::new();
    v.extend(too_small(Call::GetVersion, &[], 0..VERSION_LEN));
    v.extend(too_small(Call::Begin, &begin_request(0), 0..8));
    let get = enc(&Request::Get { tx: 0, key });
    v.extend(too_small(Call::Get, &get, 0..GET_HEADER_LEN));
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
    v.extend(too_small(
        Call::List,
        &list,
        [0, 1, 7, 8, 9, 100, LIST_MIN_OUTPUT - 1],
    ));
    v.extend(too_small(
        Call::Stats,
        &enc(&Request::Stats),
        [0, 4, 8, STATS_LEN - 1],
    ));
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
