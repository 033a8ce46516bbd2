//! Formats (records, snapshot) and the memory port.

use super::*;

// ---- formats ----

#[test]
fn every_record_round_trips() {
    let big_key = [0x7Fu8; 255];
    let big_value = vec![0xA5u8; ktmrm_proto::MAX_VALUE_LEN];
    // Built twice: once for the record to encode, once for the one decoding must give.
    let all_writes = || {
        writes(&[
            (b"k", Some(b"v")),
            (b"gone", None),
            (&big_key, Some(&big_value)),
            (b"empty", Some(b"")),
        ])
    };
    let snapshot = || Snapshot {
        store: vec![
            Entry::try_new(b"a", b"1").unwrap(),
            Entry::try_new(b"b", b"").unwrap(),
            Entry::try_new(&big_key, &big_value).unwrap(),
        ],
        in_doubt: vec![
            Prepared {
                tx: tx(2),
                writes: writes(&[(b"x", None)]),
            },
            Prepared {
                tx: tx(9),
                writes: writes(&[(b"y", Some(b"z"))]),
            },
        ],
    };
    let ws = all_writes();
    let snap = snapshot();
    let empty = Snapshot::default();
    let no_writes: Vec<Write> = Vec::new();
    let cases: Vec<(RecordRef<'_>, Record)> = vec![
        (
            RecordRef::Prepare {
                tx: tx(1),
                writes: &ws,
            },
            Record::Prepare(Prepared {
                tx: tx(1),
                writes: all_writes(),
            }),
        ),
        (
            RecordRef::Prepare {
                tx: tx(3),
                writes: &no_writes,
            },
            Record::Prepare(Prepared {
                tx: tx(3),
                writes: vec![],
            }),
        ),
        (RecordRef::Commit { tx: tx(1) }, Record::Commit(tx(1))),
        (RecordRef::Abort { tx: tx(2) }, Record::Abort(tx(2))),
        (
            RecordRef::Checkpoint { snapshot: &snap },
            Record::Checkpoint(snapshot()),
        ),
        (
            RecordRef::Checkpoint { snapshot: &empty },
            Record::Checkpoint(Snapshot::default()),
        ),
    ];
    for (i, (r, want)) in cases.iter().enumerate() {
        let lsn = Lsn(1000 + i as u64);
        let mut v = Vec::new();
        encode_vec(r, lsn, &mut v).unwrap();
        assert_eq!(v.len(), encoded_len(r).unwrap());
        assert_eq!(frame_len(&v), Some(v.len()));
        let (got_lsn, got) = decode(&v).unwrap();
        assert_eq!(got_lsn, lsn);
        assert_eq!(&got, want, "case {i}");
        // Into a caller buffer: exact fits, one byte short does not.
        let mut buf = vec![0u8; v.len() + 3];
        assert_eq!(encode_into(r, lsn, &mut buf), Ok(v.len()));
        assert_eq!(&buf[..v.len()], &v[..]);
        assert_eq!(
            encode_into(r, lsn, &mut buf[..v.len() - 1]),
            Err(NtStatus::BUFFER_TOO_SMALL)
        );
    }
    // Commit layout, byte for byte.
    let mut v = Vec::new();
    encode_vec(&RecordRef::Commit { tx: tx(0xAB) }, Lsn(7), &mut v).unwrap();
    assert_eq!(v.len(), HEADER_LEN + 16);
    assert_eq!(&v[0..4], b"KRML");
    assert_eq!(&v[4..8], &[1, 0, 2, 0]);
    assert_eq!(&v[8..16], &7u64.to_le_bytes());
    assert_eq!(&v[16..20], &16u32.to_le_bytes());
    let mut summed = v[..20].to_vec();
    summed.extend_from_slice(&v[24..]);
    assert_eq!(&v[20..24], &crc32c(&summed).to_le_bytes());
    assert_eq!(&v[24..], &[0xAB; 16]);
}

#[test]
fn encoding_refuses_what_the_store_cannot_hold() {
    let bad: [&[Pair<'_>]; 3] = [
        &[(b"", Some(b"v"))],
        &[(&[1u8; 256], Some(b"v"))],
        &[(b"k", Some(&[0u8; ktmrm_proto::MAX_VALUE_LEN + 1]))],
    ];
    for ws in bad {
        let r = RecordRef::Prepare {
            tx: tx(1),
            writes: &ws,
        };
        assert_eq!(encoded_len(&r), Err(NtStatus::INVALID_PARAMETER));
    }
    // Snapshot keys must be strictly increasing.
    struct Unsorted;
    impl SnapshotSource for Unsorted {
        fn entry_count(&self) -> usize {
            2
        }
        fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), NtStatus> {
            f(b"b", b"1")?;
            f(b"a", b"2")
        }
        fn in_doubt_count(&self) -> usize {
            0
        }
        fn for_each_in_doubt(&self, _: &mut InDoubtVisitor<'_>) -> Result<(), NtStatus> {
            Ok(())
        }
    }
    let r = RecordRef::Checkpoint {
        snapshot: &Unsorted,
    };
    assert_eq!(encoded_len(&r), Err(NtStatus::INVALID_PARAMETER));
    // A source whose count disagrees with what it visits.
    struct Liar;
    impl WriteSource for Liar {
        fn write_count(&self) -> usize {
            2
        }
        fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
            f(b"k", None)
        }
    }
    let r = RecordRef::Prepare {
        tx: tx(1),
        writes: &Liar,
    };
    assert_eq!(encoded_len(&r), Err(NtStatus::INVALID_PARAMETER));
}

#[test]
fn damage_and_malformed_records_are_told_apart() {
    let mut v = Vec::new();
    encode_vec(&RecordRef::Abort { tx: tx(1) }, Lsn(1), &mut v).unwrap();
    for k in 0..v.len() {
        assert!(matches!(
            decode(&v[..k]),
            Err(DecodeError::Damaged(Damage::Short { .. }))
        ));
    }
    let mut long = v.clone();
    long.push(0);
    assert!(matches!(
        decode(&long),
        Err(DecodeError::Damaged(Damage::BadLength { .. }))
    ));
    let mut bad = v.clone();
    bad[0] ^= 1;
    assert_eq!(decode(&bad), Err(DecodeError::Damaged(Damage::BadMagic)));
    let mut bad = v.clone();
    bad[30] ^= 1;
    assert!(matches!(
        decode(&bad),
        Err(DecodeError::Damaged(Damage::BadCrc { .. }))
    ));
    // CRC-valid but wrong: a future version, an unknown kind, a short body.
    let mut future = v.clone();
    future[4] = 2;
    reseal(&mut future);
    assert_eq!(decode(&future), Err(DecodeError::UnsupportedVersion(2)));
    let mut kind = v.clone();
    kind[6] = 9;
    reseal(&mut kind);
    assert_eq!(
        decode(&kind),
        Err(DecodeError::Malformed("unknown record kind"))
    );
    let mut shortbody = v[..v.len() - 1].to_vec();
    shortbody[16..20].copy_from_slice(&15u32.to_le_bytes());
    reseal(&mut shortbody);
    assert_eq!(
        decode(&shortbody),
        Err(DecodeError::Malformed("abort too short"))
    );
}

#[test]
fn snapshot_is_self_checking() {
    let snap = Snapshot {
        store: vec![
            Entry::try_new(b"k1", b"v1").unwrap(),
            Entry::try_new(b"k2", b"v2").unwrap(),
        ],
        in_doubt: vec![Prepared {
            tx: tx(5),
            writes: writes(&[(b"k1", None), (b"k3", Some(b"v3"))]),
        }],
    };
    let mut v = Vec::new();
    encode_snapshot_vec(&snap, &mut v).unwrap();
    assert_eq!(v.len(), snapshot_len(&snap).unwrap());
    assert_eq!(&v[..4], b"KSNP");
    assert_eq!(decode_snapshot(&v).unwrap(), snap);
    for k in 0..v.len() {
        assert!(matches!(
            decode_snapshot(&v[..k]),
            Err(DecodeError::Damaged(_))
        ));
        for bit in 0..8 {
            let mut bad = v.clone();
            bad[k] ^= 1 << bit;
            assert!(
                matches!(decode_snapshot(&bad), Err(DecodeError::Damaged(_))),
                "flip at {k}.{bit} not detected"
            );
        }
    }
    let mut future = v.clone();
    future[4] = 9;
    let n = future.len();
    let crc = crc32c(&future[..n - 4]);
    future[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_snapshot(&future),
        Err(DecodeError::UnsupportedVersion(9))
    );
}

// ---- the memory port ----

#[test]
fn memlog_loses_exactly_the_unforced_records() {
    let log = MemLog::new();
    assert_eq!(log.append(b"one").unwrap(), Lsn(1));
    assert_eq!(log.append(b"two").unwrap(), Lsn(2));
    log.force(Lsn(1)).unwrap();
    assert_eq!(log.append(b"three").unwrap(), Lsn(3));
    log.crash();
    assert_eq!(log.len(), 1);
    assert_eq!(log.append(b"two'").unwrap(), Lsn(2));
    assert_eq!(log.append(b"three'").unwrap(), Lsn(3));
    log.crash_torn(2);
    assert_eq!(
        log.with_records(|r| r.clone()),
        vec![
            MemRecord {
                lsn: Lsn(1),
                bytes: b"one".to_vec()
            },
            MemRecord {
                lsn: Lsn(2),
                bytes: b"tw".to_vec()
            },
        ]
    );
    log.discard_from(Lsn(2)).unwrap();
    assert_eq!(log.append(b"x").unwrap(), Lsn(2));
    log.force(Lsn(99)).unwrap();
    assert_eq!(log.forced(), Lsn(2));
    log.truncate_before(Lsn(2)).unwrap();
    let mut seen = Vec::new();
    log.read(None, &mut |l, b| {
        seen.push((l, b.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, vec![(Lsn(2), b"x".to_vec())]);
    assert_eq!(log.bytes(), 1);
}
