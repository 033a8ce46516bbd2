//! The port over the disk model: records, crashes, torn and damaged records, failed writes,
//! truncation and discard.

use super::*;

// ---- the port ----

#[test]
fn records_round_trip_and_reopen_after_a_clean_flush() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    assert_eq!(prepare(&log, &mut w, 1, "a", "1"), Lsn(1));
    assert_eq!(commit(&log, &mut w, 1), Lsn(2));
    assert_eq!(f.counts(), (0, 0, 0, 0), "append does no I/O");
    let before = all(&log, None);
    assert_eq!(lsns(&before), [1, 2], "unwritten records read from memory");
    log.force(Lsn(2)).unwrap();
    assert_eq!(f.content(), concat(&before));
    assert_eq!(
        all(&log, None),
        before,
        "written records read from the file"
    );
    assert_eq!(lsns(&all(&log, Some(Lsn(2)))), [2]);
    let mut seen = 0;
    log.read(None, &mut |_, _| {
        seen += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(seen, 1, "read stops when the sink breaks");

    let log = open(&f);
    assert_eq!(all(&log, None), before);
    assert_eq!(store(&log), [kv("a", "1")]);
    // LSNs continue; a record carrying another LSN, or not a record, is refused.
    let mut wrong = Vec::new();
    encode_vec(&RecordRef::Commit { tx: tx(9) }, Lsn(7), &mut wrong).unwrap();
    assert_eq!(log.append(&wrong), Err(STATUS_LOG_CORRUPTION_DETECTED));
    assert_eq!(log.append(b"not a record"), Err(S::INVALID_PARAMETER));
    let mut w = LogWriter::new(Lsn(3));
    assert_eq!(prepare(&log, &mut w, 2, "b", "2"), Lsn(3));
    assert_eq!(commit(&log, &mut w, 2), Lsn(4));
    log.force(Lsn(4)).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3, 4]);
    assert_eq!(store(&open(&f)), [kv("a", "1"), kv("b", "2")]);
}

#[test]
fn a_crash_loses_exactly_the_unforced_records() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let kept = all(&log, None);
    prepare(&log, &mut w, 2, "b", "2");
    commit(&log, &mut w, 2);
    f.crash();
    let log = open(&f);
    assert_eq!(all(&log, None), kept);
    let r = recover(&log, None).unwrap();
    assert_eq!((r.next_lsn, r.dropped_tail), (Lsn(3), None));
    let mut w = LogWriter::new(r.next_lsn);
    assert_eq!(prepare(&log, &mut w, 3, "c", "3"), Lsn(3));
}

#[test]
fn a_torn_last_record_is_dropped_and_the_log_continues_where_it_began() {
    let f0 = MemFile::default();
    let log = open(&f0);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let good = f0.content();
    let mut torn = Vec::new();
    encode_vec(
        &RecordRef::Prepare {
            tx: tx(2),
            writes: &vec![Write::put(b"b", b"2").unwrap()],
        },
        Lsn(3),
        &mut torn,
    )
    .unwrap();
    // Torn inside the header (bad magic or short), and inside the body (runs past the end).
    for keep in [1, 10, HEADER_LEN, HEADER_LEN + 5, torn.len() - 1] {
        let f = MemFile::default();
        f.set_durable(good.clone());
        let log = open(&f);
        assert_eq!(log.append(&torn), Ok(Lsn(3)));
        f.disk(|d| d.fail_flush = Some(S::UNSUCCESSFUL));
        assert_eq!(log.force(Lsn(3)), Err(S::UNSUCCESSFUL));
        f.crash_torn(keep);
        assert_eq!(f.content().len(), good.len() + keep);

        let log = open(&f);
        let recs = all(&log, None);
        assert_eq!(lsns(&recs), [1, 2, 3], "keep {keep}");
        assert_eq!(
            recs[2].1,
            torn[..keep],
            "the torn entry has the bytes present"
        );
        let r = recover(&log, None).unwrap();
        let tail = r.dropped_tail.expect("torn record dropped");
        assert_eq!((tail.from, tail.records, r.next_lsn), (Lsn(3), 1, Lsn(3)));
        assert_eq!(
            f.content(),
            good,
            "the file is cut where the torn record began"
        );
        assert_eq!(lsns(&all(&log, None)), [1, 2]);
        // The next append lands at the torn record's LSN and offset.
        let mut w = LogWriter::new(r.next_lsn);
        f.disk(|d| d.fail_flush = None);
        log.force(prepare(&log, &mut w, 4, "c", "3")).unwrap();
        assert_eq!(f.content()[..good.len()], good[..]);
        let r = recover(&open(&f), None).unwrap();
        assert_eq!((r.records, r.dropped_tail, r.next_lsn), (3, None, Lsn(4)));
        assert_eq!(r.in_doubt.len(), 1);
    }
}

#[test]
fn a_damaged_record_before_valid_ones_is_corruption_not_a_torn_tail() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    commit(&log, &mut w, 1);
    log.force(prepare(&log, &mut w, 2, "b", "2")).unwrap();
    let mut bytes = f.content();
    bytes[30] ^= 1; // the first record's body: its CRC fails, its length still holds
    f.set_durable(bytes);
    let err = recover(&open(&f), None).err().expect("corruption");
    assert!(
        matches!(err, ReplayError::CorruptBeforeTail { .. }),
        "{err:?}"
    );
    assert_eq!(f.counts().3, 0, "nothing was discarded");
}

#[test]
fn one_force_writes_a_group_of_appends_with_one_write_and_one_flush() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    let a = prepare(&log, &mut w, 1, "a", "1");
    let b = commit(&log, &mut w, 1);
    log.force(b).unwrap();
    assert_eq!(f.counts(), (1, 1, 0, 0));
    // Already durable: no I/O, also beyond the last record.
    log.force(a).unwrap();
    log.force(b).unwrap();
    log.force(Lsn(100)).unwrap();
    assert_eq!(f.counts(), (1, 1, 0, 0));
    prepare(&log, &mut w, 2, "b", "2");
    log.force(Lsn(u64::MAX)).unwrap();
    assert_eq!(
        f.counts(),
        (2, 2, 0, 0),
        "upto beyond the last forces everything"
    );
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3]);
}

#[test]
fn concurrent_appenders_and_forcers_lose_nothing() {
    let f = MemFile::default();
    let log = open(&f);
    let writer = Mutex::new(LogWriter::new(Lsn::FIRST));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (log, writer) = (&log, &writer);
            s.spawn(move || {
                for i in 0..50u8 {
                    let lsn = {
                        let mut w = writer.lock().unwrap();
                        // Ids from 1: id 0 is the null UOW of non-transacted writes.
                        prepare(log, &mut w, t * 50 + i + 1, "k", "v")
                    };
                    log.force(lsn).unwrap();
                }
            });
        }
    });
    let (writes, flushes, _, _) = f.counts();
    assert!(writes <= 200 && writes == flushes, "{writes} {flushes}");
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), (1..=200).collect::<Vec<_>>());
    assert_eq!(concat(&recs), f.content());
    assert_eq!(replay(&open(&f), None).unwrap().in_doubt.len(), 200);
}

#[test]
fn a_failed_write_or_flush_is_retried_at_the_same_offset() {
    for fail_write in [true, false] {
        let f = MemFile::default();
        let log = open(&f);
        let mut w = LogWriter::new(Lsn::FIRST);
        log.force(prepare(&log, &mut w, 1, "a", "1")).unwrap();
        let c = commit(&log, &mut w, 1);
        f.disk(|d| {
            if fail_write {
                d.fail_write = Some(S::UNSUCCESSFUL);
            } else {
                d.fail_flush = Some(S::UNSUCCESSFUL);
            }
        });
        assert_eq!(log.force(c), Err(S::UNSUCCESSFUL));
        assert_eq!(lsns(&all(&log, None)), [1, 2], "the failed record is kept");
        let p = prepare(&log, &mut w, 2, "b", "2");
        assert_eq!(log.force(p), Err(S::UNSUCCESSFUL));
        f.disk(|d| (d.fail_write, d.fail_flush) = (None, None));
        let want = all(&log, None);
        log.force(p).unwrap();
        assert_eq!(f.content(), concat(&want), "each record once, in order");
        f.crash();
        let log = open(&f);
        assert_eq!(all(&log, None), want);
        let r = recover(&log, None).unwrap();
        assert_eq!(
            (r.store.len(), r.in_doubt.len(), r.next_lsn),
            (1, 1, Lsn(4))
        );
    }
}

#[test]
fn truncate_before_keeps_the_records_from_a_checkpoint_and_survives_a_crash() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    commit(&log, &mut w, 1);
    prepare(&log, &mut w, 2, "b", "2");
    commit(&log, &mut w, 2);
    prepare(&log, &mut w, 3, "c", "3");
    let checkpoint = |log: &Log<'_>, w: &mut LogWriter| {
        let r = replay(log, None).unwrap();
        let snap = Snapshot {
            store: r.store,
            in_doubt: r.in_doubt,
        };
        w.append(log, &RecordRef::Checkpoint { snapshot: &snap })
            .unwrap()
    };
    let ck = checkpoint(&log, &mut w);
    assert_eq!(ck, Lsn(6));
    assert_eq!(commit(&log, &mut w, 3), Lsn(7)); // not forced: truncate_before writes it
    let kept = all(&log, Some(ck));
    log.truncate_before(ck).unwrap();
    assert_eq!(f.counts().2, 1);
    assert_eq!(all(&log, None), kept);
    assert_eq!(f.content(), concat(&kept));
    let want = [kv("a", "1"), kv("b", "2"), kv("c", "3")];
    assert_eq!(store(&log), want);
    log.truncate_before(ck).unwrap();
    assert_eq!(
        f.counts().2,
        1,
        "nothing before it: the file is not rewritten"
    );
    // Appends continue at the right LSN and offset; a reopen reads the same log.
    let ck2 = checkpoint(&log, &mut w);
    log.force(ck2).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [6, 7, 8]);
    assert_eq!(store(&open(&f)), want);
    // A crash before the replace leaves the old log, after it the new one; both replay.
    f.disk(|d| d.fail_replace = Some(S::UNSUCCESSFUL));
    assert_eq!(log.truncate_before(ck2), Err(S::UNSUCCESSFUL));
    f.crash();
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [6, 7, 8]);
    assert_eq!(store(&log), want);
    f.disk(|d| d.fail_replace = None);
    log.truncate_before(ck2).unwrap();
    f.crash();
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [8]);
    let r = replay(&log, None).unwrap();
    assert_eq!(
        (r.checkpoint, r.next_lsn, r.records),
        (Some(ck2), Lsn(9), 1)
    );
    assert_eq!(store(&log), want);
}

#[test]
fn discard_from_drops_written_and_unwritten_records() {
    let f = MemFile::default();
    let log = open(&f);
    let mut w = LogWriter::new(Lsn::FIRST);
    prepare(&log, &mut w, 1, "a", "1");
    log.force(commit(&log, &mut w, 1)).unwrap();
    let two = f.content();
    prepare(&log, &mut w, 2, "b", "2");
    log.force(commit(&log, &mut w, 2)).unwrap();
    prepare(&log, &mut w, 3, "c", "3"); // unwritten
    let five = all(&log, None);
    commit(&log, &mut w, 3); // unwritten
    log.discard_from(Lsn(6)).unwrap();
    assert_eq!(f.counts().3, 0, "an unwritten record goes without I/O");
    assert_eq!(all(&log, None), five);
    log.discard_from(Lsn(5)).unwrap();
    assert_eq!(lsns(&all(&log, None)), [1, 2, 3, 4]);
    log.discard_from(Lsn(3)).unwrap();
    assert_eq!(f.content(), two);
    assert_eq!(lsns(&all(&log, None)), [1, 2]);
    let mut w = LogWriter::new(Lsn(3));
    log.force(prepare(&log, &mut w, 4, "d", "4")).unwrap();
    assert_eq!(lsns(&all(&open(&f), None)), [1, 2, 3]);
    assert_eq!(replay(&open(&f), None).unwrap().in_doubt[0].tx, tx(4));
    // A failed write left part of a large record in the file: discarding it cuts that too, so
    // a shorter record written there is not followed by its leftovers.
    let before = f.content();
    log.force(commit(&log, &mut w, 4)).unwrap(); // through the first log, still open
    let before_len = before.len() + all(&log, Some(Lsn(4)))[0].1.len();
    let big = "v".repeat(500);
    let p = prepare(&log, &mut w, 5, "e", &big);
    f.disk(|d| d.fail_write = Some(S::UNSUCCESSFUL));
    assert_eq!(log.force(p), Err(S::UNSUCCESSFUL));
    f.disk(|d| d.fail_write = None);
    assert!(f.content().len() > before_len + 200);
    log.discard_from(p).unwrap();
    assert_eq!(f.content().len(), before_len);
    let mut w = LogWriter::new(p);
    log.force(prepare(&log, &mut w, 6, "f", "6")).unwrap();
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), [1, 2, 3, 4, 5]);
    assert_eq!(f.content(), concat(&recs));
    // Two records in a failed write: discarding the second keeps the first for the next force.
    let p = prepare(&log, &mut w, 7, "g", "7");
    let q = commit(&log, &mut w, 7);
    let want = all(&log, None)[..6].to_vec();
    f.disk(|d| d.fail_write = Some(S::UNSUCCESSFUL));
    assert_eq!(log.force(q), Err(S::UNSUCCESSFUL));
    f.disk(|d| d.fail_write = None);
    log.discard_from(q).unwrap();
    assert_eq!(all(&log, None), want);
    log.force(p).unwrap();
    assert_eq!(all(&open(&f), None), want);
    assert_eq!(f.content(), concat(&want));
    // The discarded LSN is reused, and forcing it writes it.
    let mut w = LogWriter::new(q);
    log.force(commit(&log, &mut w, 7)).unwrap();
    let recs = all(&open(&f), None);
    assert_eq!(lsns(&recs), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(f.content(), concat(&recs));
}

#[test]
fn a_damaged_first_record_keeps_its_lsn_so_replay_refuses_to_start() {
    // A truncated log begins with a checkpoint; dropping it as a torn tail would lose the store.
    let snap = Snapshot {
        store: vec![crate::entry::Entry::try_new(b"a", b"1").unwrap()],
        in_doubt: Vec::new(),
    };
    let mut bytes = Vec::new();
    encode_vec(
        &RecordRef::Checkpoint { snapshot: &snap },
        Lsn(6),
        &mut bytes,
    )
    .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let f = MemFile::default();
    f.set_durable(bytes);
    let log = open(&f);
    assert_eq!(lsns(&all(&log, None)), [6]);
    let err = recover(&log, None).err().expect("refuses");
    assert_eq!(err, ReplayError::MissingStart { first: Lsn(6) });
    assert_eq!(f.counts().3, 0, "nothing was discarded");
}
