//! Replay: what it applies, discards and keeps in doubt, and the damage it drops or refuses.

use super::*;

// ---- replay ----

#[test]
fn replay_applies_commits_discards_aborts_keeps_in_doubt() {
    let (log, w) = sample();
    let r = replay(&log, None).unwrap();
    assert_eq!(store_of(&r), sample_store());
    assert_eq!(
        in_doubt_of(&r),
        vec![(tx(4), vec![(b"e".to_vec(), Some(b"5".to_vec()))])]
    );
    assert_eq!(r.next_lsn, w.next_lsn());
    assert_eq!(r.records, 7);
    assert_eq!(r.checkpoint, None);
    assert_eq!(r.dropped_tail, None);
}

#[test]
fn empty_log_replays_to_nothing() {
    let r = replay(&MemLog::new(), None).unwrap();
    assert!(r.store.is_empty() && r.in_doubt.is_empty());
    assert_eq!(r.next_lsn, Lsn::FIRST);
}

#[test]
fn commits_apply_in_commit_order_not_prepare_order() {
    let log = MemLog::new();
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&mut w, &log, tx(1), &[(b"x", Some(b"first"))]);
    prepare(
        &mut w,
        &log,
        tx(2),
        &[(b"x", Some(b"second")), (b"x", Some(b"last"))],
    );
    commit(&mut w, &log, tx(2));
    commit(&mut w, &log, tx(1));
    let r = replay(&log, None).unwrap();
    assert_eq!(store_of(&r), vec![kv("x", "first")]);
    prepare(&mut w, &log, tx(3), &[(b"x", None)]);
    commit(&mut w, &log, tx(3));
    assert!(replay(&log, None).unwrap().store.is_empty());
}

#[test]
fn checkpoint_then_more_records() {
    let (log, mut w) = sample();
    // Checkpoint the replayed state (T4 in doubt), then truncate.
    let snap = snapshot_from(replay(&log, None).unwrap());
    let ck = w
        .append_forced(&log, &RecordRef::Checkpoint { snapshot: &snap })
        .unwrap();
    // More history: T4 (from the checkpoint) commits, T5 commits, T6 in doubt.
    commit(&mut w, &log, tx(4));
    prepare(&mut w, &log, tx(5), &[(b"a", None), (b"f", Some(b"6"))]);
    commit(&mut w, &log, tx(5));
    prepare(&mut w, &log, tx(6), &[(b"g", Some(b"7"))]);
    let want_store = vec![kv("d", "4"), kv("e", "5"), kv("f", "6")];
    let want_doubt = vec![(tx(6), vec![(b"g".to_vec(), Some(b"7".to_vec()))])];
    for from in [None, Some(ck)] {
        let r = replay(&log, from).unwrap();
        assert_eq!(store_of(&r), want_store);
        assert_eq!(in_doubt_of(&r), want_doubt);
        assert_eq!(r.checkpoint, Some(ck));
        assert_eq!(r.next_lsn, w.next_lsn());
    }
    log.truncate_before(ck).unwrap();
    assert_eq!(log.with_records(|r| r[0].lsn), ck);
    let r = replay(&log, None).unwrap();
    assert_eq!(store_of(&r), want_store);
    assert_eq!(in_doubt_of(&r), want_doubt);
    // A second checkpoint supersedes the first.
    let snap2 = snapshot_from(r);
    let ck2 = w
        .append_forced(&log, &RecordRef::Checkpoint { snapshot: &snap2 })
        .unwrap();
    abort(&mut w, &log, tx(6));
    let r = replay(&log, None).unwrap();
    assert_eq!(r.checkpoint, Some(ck2));
    assert_eq!(store_of(&r), want_store);
    assert!(r.in_doubt.is_empty());
    // An outcome after a checkpoint for a transaction the checkpoint does not hold.
    let ck3 = w
        .append_forced(&log, &RecordRef::Checkpoint { snapshot: &snap2 })
        .unwrap();
    let bad = commit(&mut w, &log, tx(1));
    log.truncate_before(ck3).unwrap();
    let e = replay(&log, None).err().unwrap();
    assert_eq!(
        e,
        ReplayError::UnknownTransaction {
            lsn: bad,
            tx: tx(1),
            outcome: Outcome::Commit
        }
    );
    assert_eq!(e.status(), STATUS_LOG_CORRUPTION_DETECTED);
}

#[test]
fn truncated_tail_at_every_offset_is_dropped() {
    let (log, _) = sample();
    // The last record is T4's Prepare; before it the state is the sample store, no doubt.
    let (last_lsn, last) = log.with_records(|r| {
        let l = r.last().unwrap();
        (l.lsn, l.bytes.clone())
    });
    for k in 0..last.len() {
        let c = copy(&log);
        c.with_records(|r| r.last_mut().unwrap().bytes.truncate(k));
        let r = replay(&c, None).unwrap();
        assert_eq!(store_of(&r), sample_store(), "offset {k}");
        assert!(r.in_doubt.is_empty(), "offset {k}");
        let t = r.dropped_tail.unwrap();
        assert_eq!((t.from, t.records, t.bytes), (last_lsn, 1, k as u64));
        assert!(matches!(t.damage, Damage::Short { .. }), "offset {k}");
        assert_eq!(r.next_lsn, last_lsn);
        // Recovery discards the tail; the log then takes appends again.
        let r = recover(&c, None).unwrap();
        let mut w = LogWriter::new(r.next_lsn);
        prepare(&mut w, &c, tx(7), &[(b"z", Some(b"9"))]);
        commit(&mut w, &c, tx(7));
        let r = replay(&c, None).unwrap();
        assert_eq!(r.dropped_tail, None);
        assert_eq!(store_of(&r), vec![kv("a", "1"), kv("d", "4"), kv("z", "9")]);
    }
    // A crash mid-write, through the port's own model.
    let c = copy(&log);
    c.force(Lsn(5)).unwrap();
    c.crash_torn(10);
    let r = replay(&c, None).unwrap();
    assert_eq!(r.dropped_tail.unwrap().from, Lsn(6));
    assert_eq!(store_of(&r), vec![kv("a", "1"), kv("b", "2")]);
    assert_eq!(in_doubt_of(&r).len(), 1); // T3 prepared, its Commit torn
}

#[test]
fn several_damaged_records_at_the_tail_are_all_dropped() {
    let (log, _) = sample();
    let c = copy(&log);
    let n = c.with_records(|r| {
        let n = r.len();
        r[n - 2].bytes[30] ^= 0x10;
        r[n - 1].bytes.truncate(5);
        r[n - 2].bytes.len() + 5
    });
    let r = replay(&c, None).unwrap();
    let t = r.dropped_tail.unwrap();
    assert_eq!((t.from, t.records, t.bytes), (Lsn(6), 2, n as u64));
    assert!(matches!(t.damage, Damage::BadCrc { .. }));
    // T3's Commit was the first dropped: T3 is in doubt again.
    assert_eq!(
        in_doubt_of(&r).iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![tx(3)]
    );
}

#[test]
fn a_bit_flip_anywhere_in_a_middle_record_is_an_error() {
    let (log, _) = sample();
    let mid = 3usize; // T3's Prepare (LSN 4)
    let len = log.with_records(|r| r[mid].bytes.len());
    for i in 0..len {
        for bit in 0..8 {
            let c = copy(&log);
            c.with_records(|r| r[mid].bytes[i] ^= 1 << bit);
            match replay(&c, None) {
                Err(
                    e @ ReplayError::CorruptBeforeTail {
                        lsn, valid_after, ..
                    },
                ) => {
                    assert_eq!((lsn, valid_after), (Lsn(4), Lsn(5)));
                    assert_eq!(e.status(), STATUS_LOG_CORRUPTION_DETECTED);
                    assert!(e.to_string().contains("corrupt before its tail"));
                }
                other => panic!("flip at byte {i} bit {bit}: {:?}", other.map(|r| r.records)),
            }
        }
    }
    // The same flips in the last record only drop it.
    let last = log.len() - 1;
    let len = log.with_records(|r| r[last].bytes.len());
    for i in 0..len {
        let c = copy(&log);
        c.with_records(|r| r[last].bytes[i] ^= 0x80);
        let r = replay(&c, None).unwrap();
        assert_eq!(r.dropped_tail.unwrap().from, Lsn(7));
        assert_eq!(store_of(&r), sample_store());
    }
}

#[test]
fn reordered_records_are_an_error() {
    let (log, _) = sample();
    // Records swapped, each with its LSN: the sequence goes back.
    let c = copy(&log);
    c.with_records(|r| r.swap(2, 4));
    let e = replay(&c, None).err().unwrap();
    assert_eq!(
        e,
        ReplayError::OutOfOrder {
            prev: Lsn(2),
            found: Lsn(5)
        }
    );
    assert!(e.to_string().contains("missing"));
    let c = copy(&log);
    c.with_records(|r| r.swap(5, 6));
    let e = replay(&c, None).err().unwrap();
    assert!(matches!(e, ReplayError::OutOfOrder { .. }));
    // Bytes swapped under the port's numbering: the record's own LSN disagrees.
    let c = copy(&log);
    c.with_records(|r| {
        let b = r[2].bytes.clone();
        r[2].bytes = r[3].bytes.clone();
        r[3].bytes = b;
    });
    assert_eq!(
        replay(&c, None).err(),
        Some(ReplayError::LsnMismatch {
            port: Lsn(3),
            record: Lsn(4)
        })
    );
    // A missing middle record.
    let c = copy(&log);
    c.with_records(|r| r.remove(3));
    assert_eq!(
        replay(&c, None).err(),
        Some(ReplayError::OutOfOrder {
            prev: Lsn(3),
            found: Lsn(5)
        })
    );
    let c = copy(&log);
    c.with_records(|r| {
        let x = r.remove(1);
        r.insert(4, x);
    });
    let e = replay(&c, None).err().unwrap();
    assert!(matches!(e, ReplayError::OutOfOrder { .. }), "{e}");
}

#[test]
fn duplicated_records_are_an_error() {
    let (log, _) = sample();
    for i in 0..log.len() {
        let c = copy(&log);
        c.with_records(|r| {
            let x = r[i].clone();
            r.insert(i + 1, x);
        });
        let e = replay(&c, None).err().unwrap();
        let lsn = Lsn(i as u64 + 1);
        assert_eq!(
            e,
            ReplayError::OutOfOrder {
                prev: lsn,
                found: lsn
            }
        );
        assert!(e.to_string().contains("duplicated"));
    }
    // Well-numbered but semantically duplicate: a second Prepare, a second Commit.
    let (log, mut w) = sample();
    let l = prepare(&mut w, &log, tx(4), &[(b"q", None)]);
    assert_eq!(
        replay(&log, None).err(),
        Some(ReplayError::DuplicatePrepare { lsn: l, tx: tx(4) })
    );
    let (log, mut w) = sample();
    let l = commit(&mut w, &log, tx(1));
    let e = replay(&log, None).err().unwrap();
    assert_eq!(
        e,
        ReplayError::UnknownTransaction {
            lsn: l,
            tx: tx(1),
            outcome: Outcome::Commit
        }
    );
    assert!(e.to_string().contains("no pending Prepare"));
    let (log, mut w) = sample();
    let l = abort(&mut w, &log, tx(8));
    assert!(matches!(
        replay(&log, None),
        Err(ReplayError::UnknownTransaction { lsn, outcome: Outcome::Abort, .. }) if lsn == l
    ));
}

#[test]
fn unsupported_version_is_an_error_even_at_the_tail() {
    let (log, _) = sample();
    log.with_records(|r| {
        let b = &mut r.last_mut().unwrap().bytes;
        b[4] = 2;
        reseal(b);
    });
    let e = replay(&log, None).err().unwrap();
    assert_eq!(
        e,
        ReplayError::UnsupportedVersion {
            lsn: Lsn(7),
            version: 2
        }
    );
    assert_eq!(e.status(), NtStatus::REVISION_MISMATCH);
}

#[test]
fn a_log_must_start_at_lsn_1_or_a_checkpoint() {
    let (log, _) = sample();
    let c = copy(&log);
    c.truncate_before(Lsn(3)).unwrap();
    let e = replay(&c, None).err().unwrap();
    assert_eq!(e, ReplayError::MissingStart { first: Lsn(3) });
    assert_eq!(
        replay(&log, Some(Lsn(3))).err(),
        Some(ReplayError::MissingStart { first: Lsn(3) })
    );
    assert_eq!(
        replay(&MemLog::new(), Some(Lsn(9))).err(),
        Some(ReplayError::MissingStart { first: Lsn(9) })
    );
    // A damaged first record that is not LSN 1 might have been the checkpoint: not droppable.
    c.with_records(|r| r[0].bytes.truncate(3));
    assert_eq!(
        replay(&c, None).err(),
        Some(ReplayError::MissingStart { first: Lsn(3) })
    );
    // A damaged LSN 1 alone is a torn first write.
    let c = copy(&log);
    c.with_records(|r| {
        r.truncate(1);
        r[0].bytes.truncate(7);
    });
    let r = replay(&c, None).unwrap();
    assert_eq!(r.next_lsn, Lsn(1));
    assert_eq!(r.dropped_tail.unwrap().bytes, 7);
}

#[test]
fn writer_refuses_a_port_that_numbers_differently() {
    let log = MemLog::new();
    log.append(b"stray").unwrap();
    let mut w = LogWriter::new(Lsn::FIRST);
    assert_eq!(
        w.append(&log, &RecordRef::Commit { tx: tx(1) }),
        Err(STATUS_LOG_CORRUPTION_DETECTED)
    );
}

#[test]
fn many_commits_merge_into_a_sorted_store() {
    let log = MemLog::new();
    let mut w = LogWriter::new(Lsn::FIRST);
    let mut want = BTreeMap::new();
    for i in 0..1500u32 {
        let k = format!("k{:04}", (i * 7919) % 1000);
        let t = TxId({
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b
        });
        if i % 5 == 4 {
            prepare(&mut w, &log, t, &[(k.as_bytes(), None)]);
            want.remove(k.as_bytes());
        } else {
            let v = i.to_string();
            prepare(&mut w, &log, t, &[(k.as_bytes(), Some(v.as_bytes()))]);
            want.insert(k.as_bytes().to_vec(), v.into_bytes());
        }
        commit(&mut w, &log, t);
    }
    let r = replay(&log, None).unwrap();
    assert_eq!(store_of(&r), want.into_iter().collect::<Vec<_>>());
}

#[test]
fn every_error_has_a_specific_message() {
    let d = Damage::BadCrc {
        stored: 1,
        computed: 2,
    };
    let errs = [
        ReplayError::Port(NtStatus::UNSUCCESSFUL),
        ReplayError::NoMemory,
        ReplayError::CorruptBeforeTail {
            lsn: Lsn(4),
            damage: d,
            valid_after: Lsn(5),
        },
        ReplayError::UnsupportedVersion {
            lsn: Lsn(4),
            version: 3,
        },
        ReplayError::Malformed {
            lsn: Lsn(4),
            what: "empty key",
        },
        ReplayError::LsnMismatch {
            port: Lsn(4),
            record: Lsn(6),
        },
        ReplayError::OutOfOrder {
            prev: Lsn(4),
            found: Lsn(3),
        },
        ReplayError::MissingStart { first: Lsn(4) },
        ReplayError::UnknownTransaction {
            lsn: Lsn(4),
            tx: tx(1),
            outcome: Outcome::Abort,
        },
        ReplayError::DuplicatePrepare {
            lsn: Lsn(4),
            tx: tx(1),
        },
    ];
    let mut msgs: Vec<_> = errs.iter().map(ToString::to_string).collect();
    for (e, m) in errs.iter().zip(&msgs) {
        assert!(e.status().is_error(), "{m}");
        if !matches!(e, ReplayError::Port(_) | ReplayError::NoMemory) {
            assert!(m.contains('4'), "{m}");
        }
    }
    assert!(msgs[2].contains("bad CRC"));
    assert!(msgs[6].contains("reordered"));
    msgs.sort();
    msgs.dedup();
    assert_eq!(msgs.len(), errs.len());
}
