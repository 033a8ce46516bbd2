//! Requests the decoder must refuse: truncations, trailing bytes, wrong versions, flags and
//! reserved fields, lengths that lie, values outside the rules, a transaction where none is taken.

use super::{Cases, begin_request, enc, err_case, roomy, samples, set_u16, set_u32, set_u64};
use crate::client::utf16le;
use ktmrm_proto::{
    Call, HEADER_LEN, Isolation, MAX_DESCRIPTION_CHARS, MAX_KEY_LEN, MAX_VALUE_LEN, NtStatus,
    Request, STATS_LEN,
};

/// Truncations, trailing bytes, wrong versions, flags/reserved, length lies, oversize fields.
pub(super) fn cases(key: &[u8]) -> Cases {
    let ibs = NtStatus::INVALID_BUFFER_SIZE;
    let ip = NtStatus::INVALID_PARAMETER;
    let mut v = Vec::new();
    for (call, full) in samples(key) {
        let (c, out, n) = (call.code(), roomy(call), call.name());
        for len in 0..full.len() {
            v.push((
                "truncated",
                err_case(
                    format!("{n}: first {len} of {} bytes", full.len()),
                    c,
                    full[..len].to_vec(),
                    out,
                    ibs,
                ),
            ));
        }
        let mut long = full.clone();
        long.push(0);
        v.push((
            "trailing-bytes",
            err_case(
                format!("{n}: one byte past body_len"),
                c,
                long.clone(),
                out,
                ibs,
            ),
        ));
        let body = (long.len() - HEADER_LEN) as u32;
        set_u32(&mut long, 4, body);
        v.push((
            "trailing-bytes",
            err_case(
                format!("{n}: body_len covers one extra byte"),
                c,
                long,
                out,
                ibs,
            ),
        ));
        let mut big = full.clone();
        big.resize(full.len() + 4096, 0xEE);
        v.push((
            "trailing-bytes",
            err_case(
                format!("{n}: 4 KiB of junk after the body"),
                c,
                big,
                out,
                ibs,
            ),
        ));
        for ver in [0u16, 2, 0x0100, 0xFFFF] {
            let mut b = full.clone();
            set_u16(&mut b, 0, ver);
            v.push((
                "wrong-version",
                err_case(
                    format!("{n}: version {ver}"),
                    c,
                    b,
                    out,
                    NtStatus::REVISION_MISMATCH,
                ),
            ));
        }
        // The version is checked before the lengths.
        let mut b = full[..HEADER_LEN].to_vec();
        set_u16(&mut b, 0, 9);
        v.push((
            "wrong-version",
            err_case(
                format!("{n}: version 9, body missing"),
                c,
                b,
                out,
                NtStatus::REVISION_MISMATCH,
            ),
        ));
        // Bits 0-1 are the isolation level (1 and 2 valid; see isolation_cases); every other
        // bit is reserved, alone or beside a valid level.
        let reserved = (2..16).map(|bit| 1u16 << bit).chain([0xFFFC, 0xFFFF]);
        for flags in reserved.chain([0x8002, 0x0005]) {
            let mut b = full.clone();
            set_u16(&mut b, 2, flags);
            v.push((
                "flags-reserved",
                err_case(format!("{n}: flags 0x{flags:04X}"), c, b, out, ip),
            ));
        }
        let mut b = full.clone();
        set_u16(&mut b, 2, 3);
        v.push((
            "isolation-level",
            err_case(format!("{n}: isolation level 3"), c, b, out, ip),
        ));
        if call != Call::Begin {
            // Without a transaction there is nothing to state a level for.
            for level in [Isolation::ReadCommitted, Isolation::Serializable] {
                let mut b = full.clone();
                set_u16(&mut b, 2, level.flags());
                v.push((
                    "isolation-without-transaction",
                    err_case(format!("{n}: tx 0 stating {level:?}"), c, b, out, ip),
                ));
            }
        }
        let actual = (full.len() - HEADER_LEN) as u32;
        for lie in [
            actual.wrapping_sub(1),
            actual + 1,
            actual + 1000,
            0,
            u32::MAX,
        ] {
            if lie == actual {
                continue;
            }
            let mut b = full.clone();
            set_u32(&mut b, 4, lie);
            v.push((
                "body-len-lies",
                err_case(format!("{n}: body_len {lie} for {actual}"), c, b, out, ibs),
            ));
        }
    }
    let h = HEADER_LEN;
    let put = enc(&Request::Put {
        tx: 0,
        key,
        value: b"clobbered",
    });
    let get = enc(&Request::Get { tx: 0, key });
    let list = enc(&Request::List {
        tx: 0,
        prefix: b"bad",
        cursor: b"bad-a",
        max_keys: 5,
    });
    let begin = begin_request(0);
    // Reserved fields.
    for (call, full, at) in [
        (Call::Put, &put, h + 2),
        (Call::Get, &get, h + 2),
        (Call::Begin, &begin, h + 6),
    ] {
        for val in [1u16, 0xFFFF] {
            let mut b = full.clone();
            set_u16(&mut b, at, val);
            v.push((
                "flags-reserved",
                err_case(
                    format!("{}: reserved = 0x{val:04X}", call.name()),
                    call.code(),
                    b,
                    roomy(call),
                    ip,
                ),
            ));
        }
    }
    let mut del = enc(&Request::Delete { tx: 0, key });
    set_u16(&mut del, h + 2, 1);
    v.push((
        "flags-reserved",
        err_case(
            "delete: reserved = 1".into(),
            Call::Delete.code(),
            del,
            0,
            ip,
        ),
    ));
    // Field lengths that disagree with the bytes present.
    let kl = key.len() as u16;
    let field = |call: Call, full: &Vec<u8>, at: usize, wide: bool, val: u32, what: &str| {
        let mut b = full.clone();
        if wide {
            set_u32(&mut b, at, val)
        } else {
            set_u16(&mut b, at, val as u16)
        }
        (
            "field-len-lies",
            err_case(
                format!("{}: {what} = {val}", call.name()),
                call.code(),
                b,
                roomy(call),
                ibs,
            ),
        )
    };
    for val in [u32::from(kl) + 1, u32::from(kl) - 1, 0xFFFF] {
        v.push(field(Call::Put, &put, h, false, val, "key_len"));
        v.push(field(Call::Get, &get, h, false, val, "key_len"));
    }
    for val in [10, 8, 0, u32::MAX] {
        v.push(field(Call::Put, &put, h + 4, true, val, "value_len"));
    }
    for val in [4, 2, 0xFFFF] {
        v.push(field(Call::List, &list, h, false, val, "prefix_len"));
    }
    for val in [6, 4, 0xFFFF] {
        v.push(field(Call::List, &list, h + 2, false, val, "cursor_len"));
    }
    for val in [10, 8, 0xFFFF] {
        v.push(field(Call::Begin, &begin, h + 4, false, val, "desc_chars"));
    }
    // A description of an odd number of bytes (half a UTF-16 unit).
    let mut odd = begin.clone();
    odd.push(b'x');
    let body = (odd.len() - h) as u32;
    set_u32(&mut odd, 4, body);
    v.push((
        "field-len-lies",
        err_case(
            "begin: description of 19 bytes".into(),
            Call::Begin.code(),
            odd,
            8,
            ibs,
        ),
    ));
    // Values outside the rules, with consistent lengths.
    let long_key = vec![b'k'; MAX_KEY_LEN + 1];
    let huge_key = vec![b'k'; 0xFFFF];
    let too_long_desc = utf16le(&"d".repeat(MAX_DESCRIPTION_CHARS + 1));
    let value = vec![7u8; MAX_VALUE_LEN + 1];
    let oversize: Vec<(String, Call, Vec<u8>)> = vec![
        (
            "put: empty key".into(),
            Call::Put,
            enc(&Request::Put {
                tx: 0,
                key: b"",
                value: b"v",
            }),
        ),
        (
            "put: 256-byte key".into(),
            Call::Put,
            enc(&Request::Put {
                tx: 0,
                key: &long_key,
                value: b"v",
            }),
        ),
        (
            "put: 65,535-byte key".into(),
            Call::Put,
            enc(&Request::Put {
                tx: 0,
                key: &huge_key,
                value: b"v",
            }),
        ),
        (
            "put: 65,537-byte value".into(),
            Call::Put,
            enc(&Request::Put {
                tx: 0,
                key,
                value: &value,
            }),
        ),
        (
            "get: empty key".into(),
            Call::Get,
            enc(&Request::Get { tx: 0, key: b"" }),
        ),
        (
            "get: 256-byte key".into(),
            Call::Get,
            enc(&Request::Get {
                tx: 0,
                key: &long_key,
            }),
        ),
        (
            "delete: empty key".into(),
            Call::Delete,
            enc(&Request::Delete { tx: 0, key: b"" }),
        ),
        (
            "delete: 256-byte key".into(),
            Call::Delete,
            enc(&Request::Delete {
                tx: 0,
                key: &long_key,
            }),
        ),
        (
            "list: 256-byte prefix".into(),
            Call::List,
            enc(&Request::List {
                tx: 0,
                prefix: &long_key,
                cursor: b"",
                max_keys: 0,
            }),
        ),
        (
            "list: 256-byte cursor".into(),
            Call::List,
            enc(&Request::List {
                tx: 0,
                prefix: b"",
                cursor: &long_key,
                max_keys: 0,
            }),
        ),
        (
            "begin: 65-char description".into(),
            Call::Begin,
            enc(&Request::Begin {
                timeout_ms: 0,
                description: &too_long_desc,
            }),
        ),
    ];
    for (name, call, b) in oversize {
        v.push((
            "oversize-fields",
            err_case(name, call.code(), b, roomy(call), ip),
        ));
    }
    // Calls that take no transaction, given one.
    for tx in [1u64, 0x84, u64::MAX] {
        let mut b = enc(&Request::Stats);
        set_u64(&mut b, 8, tx);
        v.push((
            "tx-where-none-allowed",
            err_case(
                format!("stats: tx 0x{tx:X}"),
                Call::Stats.code(),
                b,
                STATS_LEN,
                ip,
            ),
        ));
        let mut b = begin.clone();
        set_u64(&mut b, 8, tx);
        v.push((
            "tx-where-none-allowed",
            err_case(format!("begin: tx 0x{tx:X}"), Call::Begin.code(), b, 8, ip),
        ));
    }
    v
}
