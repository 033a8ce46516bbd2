//! Codec tests: round trips, every decoder rejection, and arbitrary bytes.

use crate::*;
use proptest::prelude::*;

fn enc(r: &Request<'_>) -> Vec<u8> {
    let mut v = vec![0u8; r.encoded_len()];
    let n = r.encode(&mut v).unwrap();
    assert_eq!(n, v.len());
    v
}

fn samples() -> Vec<Request<'static>> {
    vec![
        Request::Begin {
            timeout_ms: 5000,
            description: b"h\0i\0",
        },
        Request::Begin {
            timeout_ms: 0,
            description: b"",
        },
        Request::Put {
            tx: 7,
            key: b"k",
            value: b"value",
        },
        Request::Put {
            tx: 0,
            key: b"k",
            value: b"",
        },
        Request::Get {
            tx: 0xFFFF_FFFF_FFFF_FFFF,
            key: b"abc",
        },
        Request::Delete { tx: 3, key: b"abc" },
        Request::List {
            tx: 0,
            prefix: b"a",
            cursor: b"ab",
            max_keys: 10,
        },
        Request::List {
            tx: 9,
            prefix: b"",
            cursor: b"",
            max_keys: 0,
        },
        Request::Stats,
    ]
}

#[test]
fn requests_round_trip() {
    for r in samples() {
        let b = enc(&r);
        assert_eq!(Request::decode(r.call(), &b), Ok(r));
    }
    assert_eq!(
        Request::decode(Call::GetVersion, b"anything"),
        Ok(Request::GetVersion)
    );
}

#[test]
fn put_layout_is_byte_exact() {
    let b = enc(&Request::Put {
        tx: 0x0102_0304_0506_0708,
        key: b"ab",
        value: b"xyz",
    });
    assert_eq!(
        b,
        [
            1, 0, 0, 0, 13, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2,
            1, // header: v1, flags 0, body 13, tx
            2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'x', b'y', b'z'
        ]
    );
}

#[test]
fn decoder_rejects_each_malformation_with_its_status() {
    let good = enc(&Request::Put {
        tx: 1,
        key: b"key",
        value: b"val",
    });
    let st = |b: &[u8]| Request::decode(Call::Put, b).unwrap_err();
    // Shorter than the header, and every truncation.
    for n in 0..good.len() {
        assert_eq!(
            st(&good[..n]),
            NtStatus::INVALID_BUFFER_SIZE,
            "truncated to {n}"
        );
    }
    // Trailing bytes.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(st(&long), NtStatus::INVALID_BUFFER_SIZE);
    // Wrong version.
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(st(&b), NtStatus::REVISION_MISMATCH);
    // Flags: level 3, and every bit above the level's two.
    for (lo, hi) in [(3u8, 0u8), (4, 0), (0x80, 0), (0, 1), (0, 0x80), (6, 0)] {
        let mut b = good.clone();
        b[2] = lo;
        b[3] = hi;
        assert_eq!(
            st(&b),
            NtStatus::INVALID_PARAMETER,
            "flags {hi:02x}{lo:02x}"
        );
    }
    // body_len disagreeing with the input.
    let mut b = good.clone();
    b[4] = 99;
    assert_eq!(st(&b), NtStatus::INVALID_BUFFER_SIZE);
    // Reserved field after key_len.
    let mut b = good.clone();
    b[18] = 1;
    assert_eq!(st(&b), NtStatus::INVALID_PARAMETER);
    // key_len larger than the body holds.
    let mut b = good.clone();
    b[16] = 200;
    assert_eq!(st(&b), NtStatus::INVALID_BUFFER_SIZE);
    // value_len claiming 4 GiB.
    let mut b = good.clone();
    b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(st(&b), NtStatus::INVALID_BUFFER_SIZE);
}

#[test]
fn isolation_levels_decode_where_a_transaction_is_named() {
    for r in samples() {
        for level in [
            Isolation::Unstated,
            Isolation::ReadCommitted,
            Isolation::Serializable,
        ] {
            let mut b = vec![0u8; r.encoded_len()];
            r.encode_stating(level, &mut b).unwrap();
            let transacted = r.tx() != 0 || r.call() == Call::Begin;
            let got = Request::decode_stated(r.call(), &b);
            if level == Isolation::Unstated || transacted {
                assert_eq!(got, Ok((r, level)), "{r:?} {level:?}");
                assert_eq!(Request::decode(r.call(), &b), Ok(r));
                assert_eq!(u16::from_le_bytes([b[2], b[3]]), level as u16);
            } else {
                // A level without a transaction means nothing: refused, not ignored.
                assert_eq!(got, Err(NtStatus::INVALID_PARAMETER), "{r:?} {level:?}");
            }
        }
    }
    assert_eq!(Isolation::from_flags(2), Ok(Isolation::Serializable));
    assert_eq!(Isolation::from_flags(3), Err(NtStatus::INVALID_PARAMETER));
}

#[test]
fn value_rules() {
    let big_key = [b'k'; 256];
    let max_key = [b'k'; 255];
    let big_val = vec![0u8; MAX_VALUE_LEN + 1];
    let max_val = vec![0u8; MAX_VALUE_LEN];
    let put = |key: &[u8], value: &[u8]| {
        let r = Request::Put { tx: 0, key, value };
        Request::decode(Call::Put, &enc(&r)).map(|_| ())
    };
    assert_eq!(put(b"", b"v"), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(put(&big_key, b"v"), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(put(&max_key, &max_val), Ok(()));
    assert_eq!(put(b"k", &big_val), Err(NtStatus::INVALID_PARAMETER));
    for call in [Call::Get, Call::Delete] {
        let r = if call == Call::Get {
            Request::Get { tx: 0, key: b"" }
        } else {
            Request::Delete { tx: 0, key: b"" }
        };
        assert_eq!(
            Request::decode(call, &enc(&r)),
            Err(NtStatus::INVALID_PARAMETER)
        );
    }
    let list = Request::List {
        tx: 0,
        prefix: &big_key,
        cursor: b"",
        max_keys: 1,
    };
    assert_eq!(
        Request::decode(Call::List, &enc(&list)),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let desc = [0u8; 2 * (MAX_DESCRIPTION_CHARS + 1)];
    let begin = Request::Begin {
        timeout_ms: 0,
        description: &desc,
    };
    assert_eq!(
        Request::decode(Call::Begin, &enc(&begin)),
        Err(NtStatus::INVALID_PARAMETER)
    );
    // tx must be 0 for BEGIN and STATS.
    let mut b = enc(&Request::Stats);
    b[8] = 1;
    assert_eq!(
        Request::decode(Call::Stats, &b),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let mut b = enc(&Request::Begin {
        timeout_ms: 0,
        description: b"",
    });
    b[15] = 1;
    assert_eq!(
        Request::decode(Call::Begin, &b),
        Err(NtStatus::INVALID_PARAMETER)
    );
}

#[test]
fn responses_round_trip() {
    let v = VersionInfo::current(Limits::default());
    let mut b = [0u8; VERSION_LEN];
    assert_eq!(v.encode(&mut b), Ok(VERSION_LEN));
    assert_eq!(VersionInfo::decode(&b), Some(v));
    assert_eq!(VersionInfo::decode(&b[..VERSION_LEN - 1]), None);
    assert!(v.encode(&mut [0u8; VERSION_LEN - 1]).is_err());

    let s = Stats {
        commits: 1,
        enlistments: 14,
        keys: 5,
        ..Stats::default()
    };
    let mut b = [0u8; STATS_LEN];
    assert_eq!(s.encode(&mut b), Ok(STATS_LEN));
    assert_eq!(Stats::decode(&b), Some(s));
    assert_eq!(Stats::FIELDS.len(), STATS_FIELDS);

    let mut out = [0u8; LIST_MIN_OUTPUT];
    let mut lw = ListWriter::new(&mut out).unwrap();
    lw.push(b"a").unwrap();
    lw.push(&[b'z'; 255]).unwrap_err(); // 8 + 3 + 257 > 265
    lw.push(b"bc").unwrap();
    let n = lw.finish(true);
    assert_eq!(n, 8 + 3 + 4);
    let (keys, more) = decode_list(&out[..n]).unwrap();
    assert!(more);
    assert_eq!(
        keys.collect::<Vec<_>>(),
        vec![Some(&b"a"[..]), Some(&b"bc"[..])]
    );
    assert!(ListWriter::new(&mut [0u8; LIST_MIN_OUTPUT - 1]).is_err());
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(code in 0u32..8, bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(call) = Call::from_code(Call::ALL[code as usize % 7].code()) {
            let _ = Request::decode(call, &bytes);
        }
    }

    #[test]
    fn header_fuzz_keeps_statuses_specific(key in proptest::collection::vec(any::<u8>(), 1..300),
                                           value in proptest::collection::vec(any::<u8>(), 0..64),
                                           flip in 0usize..40, bit in 0u8..8) {
        let r = Request::Put { tx: 1, key: &key, value: &value };
        let mut b = vec![0u8; r.encoded_len()];
        r.encode(&mut b).unwrap();
        if let Some(x) = b.get_mut(flip) { *x ^= 1 << bit; }
        match Request::decode(Call::Put, &b) {
            Ok(Request::Put { key, value, .. }) => {
                prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
                prop_assert!(value.len() <= MAX_VALUE_LEN);
            }
            Ok(other) => prop_assert!(false, "decoded {:?}", other),
            Err(s) => prop_assert!([NtStatus::INVALID_BUFFER_SIZE, NtStatus::INVALID_PARAMETER,
                                    NtStatus::REVISION_MISMATCH].contains(&s)),
        }
    }
}
