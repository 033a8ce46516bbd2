//! The protocol checker catches each kind of misbehaving RM.

mod common;

use std::time::Duration;

use common::*;
use ktm_sim::access::TRANSACTION_ENLIST;
use ktm_sim::{
    Answer, Delivery, DeliveryMode, EnlistmentState, Ktm, KtmConfig, Notification as N, NtStatus,
    RmGuid, Violation as V,
};
use std::sync::Arc;

/// A model whose phases give up after 1 s, for tests that wait for an answer that never comes
/// (or for an enlistment that is never closed). The others use `ktm` (5 s), so that a loaded
/// machine does not turn a slow answer into a spurious "never answered".
fn impatient(mode: DeliveryMode) -> Ktm {
    let k = ktm(mode);
    k.set_answer_deadline(Some(Duration::from_secs(1)));
    k
}

/// Whether some violation in `$v` matches the pattern.
macro_rules! has {
    ($v:expr, $p:pat) => {
        $v.iter().any(|v| matches!(v, $p))
    };
}

/// Ends the run ([`Ktm::finish`]) and asserts that the checker found exactly one violation, and
/// that it is `expected`.
fn assert_one_violation(k: &Ktm, expected: impl Fn(&V) -> bool) {
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(expected(&v[0]), "{v:?}");
}

#[test]
fn answering_twice_is_caught() {
    for mode in MODES {
        let OneTx { k, rm, p, h, .. } = one_tx(ktm(mode), |k: &Ktm, d| {
            if d.notification == N::Prepare {
                assert_eq!(
                    k.answer(d.enlistment, Answer::PrepareComplete),
                    NtStatus::SUCCESS
                );
                // Threaded, KTM may already have sent COMMIT: then it is the wrong kind.
                assert!(matches!(
                    k.answer(d.enlistment, Answer::PrepareComplete),
                    NtStatus::TRANSACTION_NOT_REQUESTED | NtStatus::TRANSACTION_REQUEST_NOT_VALID
                ));
                return NtStatus::SUCCESS;
            }
            good()(k, d)
        });
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        let v = k.finish();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            matches!(
                v[0],
                V::AnswerNotOutstanding {
                    answer: Answer::PrepareComplete,
                    ..
                }
            ) || (mode == DeliveryMode::Threaded
                && matches!(
                    v[0],
                    V::WrongAnswer {
                        answer: Answer::PrepareComplete,
                        notification: N::Commit,
                        ..
                    }
                )),
            "{v:?}"
        );
    }
}

#[test]
fn an_unsolicited_answer_is_caught() {
    let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), good());
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    // Not ReadOnly or RollbackEnlistment: those are allowed any time before PrepareComplete.
    assert_eq!(
        k.answer(en, Answer::PrePrepareComplete),
        NtStatus::TRANSACTION_NOT_REQUESTED
    );
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        has!(
            v,
            V::AnswerNotOutstanding {
                answer: Answer::PrePrepareComplete,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn never_answering_is_caught_and_counts_as_a_no_vote() {
    for mode in MODES {
        // Says "later" at PREPARE and never answers.
        let OneTx { k, log, rm, p, h } =
            one_tx(impatient(mode), no_answer_at(N::Prepare, NtStatus::PENDING));
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED, "{mode:?}");
        // The silent enlistment is out of play: no ROLLBACK for it.
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare]);
        assert_eq!(
            k.enlistment_info(en).unwrap().state,
            EnlistmentState::Abandoned
        );
        assert_eq!(k.leaked_enlistments().len(), 1);
        let v = k.finish();
        assert!(
            has!(
                v,
                V::NeverAnswered {
                    notification: N::Prepare,
                    ..
                }
            ),
            "{v:?}"
        );
        assert!(has!(v, V::LeakedEnlistment { .. }), "{v:?}");
        assert_eq!(v.len(), 2, "{v:?}");
    }
}

#[test]
fn wrong_answer_kinds_are_caught() {
    // PrepareComplete to COMMIT, then RollbackEnlistment to COMMIT (a no vote after voting yes).
    for wrong in [Answer::PrepareComplete, Answer::RollbackEnlistment] {
        let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), move |k: &Ktm, d| {
            if d.notification == N::Commit {
                assert_eq!(
                    k.answer(d.enlistment, wrong),
                    NtStatus::TRANSACTION_REQUEST_NOT_VALID
                );
                // Then the right one: the notification was still outstanding.
                return good()(k, d);
            }
            good()(k, d)
        });
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_one_violation(
            &k,
            |v| matches!(v, V::WrongAnswer { answer, notification: N::Commit, .. } if *answer == wrong),
        );
    }
}

#[test]
fn wrong_answer_to_preprepare_is_caught_and_a_rollback_request_during_rollback_refused() {
    let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), |k: &Ktm, d| {
        let wrong = match d.notification {
            N::PrePrepare => Answer::CommitComplete,
            N::Rollback => Answer::RollbackEnlistment,
            _ => return good()(k, d),
        };
        assert_eq!(
            k.answer(d.enlistment, wrong),
            NtStatus::TRANSACTION_REQUEST_NOT_VALID
        );
        good()(k, d)
    });
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.enlist_veto_rm(p, h), NtStatus::SUCCESS);
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    let v = k.finish();
    assert!(
        has!(
            v,
            V::WrongAnswer {
                answer: Answer::CommitComplete,
                notification: N::PrePrepare,
                ..
            }
        ),
        "{v:?}"
    );
    // RollbackEnlistment while ROLLBACK is outstanding is a rollback request KTM refuses
    // ("The enlistment cannot be rolled back", ZwRollbackEnlistment's page), not an answer: the
    // status above, no violation, and RollbackComplete still owed (and given by `good`).
    assert!(
        !has!(
            v,
            V::WrongAnswer {
                answer: Answer::RollbackEnlistment,
                ..
            } | V::AnswerNotOutstanding {
                answer: Answer::RollbackEnlistment,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(v.len(), 1, "{v:?}");
}

#[test]
fn closing_with_a_notification_outstanding_is_caught() {
    let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), |k: &Ktm, d| {
        if d.notification == N::Commit {
            k.close_enlistment(d.enlistment);
            assert_eq!(
                k.answer(d.enlistment, Answer::CommitComplete),
                NtStatus::SUCCESS
            );
            return NtStatus::SUCCESS;
        }
        good()(k, d)
    });
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    let v = k.finish();
    assert!(
        has!(
            v,
            V::ClosedWhileOutstanding {
                notification: N::Commit,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(has!(v, V::ClosedBeforeOutcome { .. }), "{v:?}");
}

#[test]
fn never_closing_is_a_leak() {
    for mode in MODES {
        // Answers everything, closes nothing.
        let OneTx { k, rm, p, h, .. } = one_tx(impatient(mode), |k: &Ktm, d| {
            let a = match d.notification {
                N::PrePrepare => Answer::PrePrepareComplete,
                N::Prepare => Answer::PrepareComplete,
                N::Commit => Answer::CommitComplete,
                _ => Answer::RollbackComplete,
            };
            k.answer(d.enlistment, a);
            NtStatus::SUCCESS
        });
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert!(k.leaked_enlistments().is_empty(), "not ended yet");
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_eq!(k.leaked_enlistments().len(), 1);
        assert_one_violation(&k, |v| matches!(v, V::LeakedEnlistment { .. }));
        // Reported once, however often finish runs.
        assert_eq!(k.finish().len(), 1);
    }
}

#[test]
fn returning_success_without_answering_is_caught() {
    // Forgets to answer PREPREPARE.
    let OneTx { k, rm, p, h, .. } = one_tx(
        impatient(DeliveryMode::Inline),
        no_answer_at(N::PrePrepare, NtStatus::SUCCESS),
    );
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    let v = k.finish();
    assert!(
        has!(
            v,
            V::UnansweredReturn {
                status: NtStatus::SUCCESS,
                notification: N::PrePrepare,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(
        has!(
            v,
            V::NeverAnswered {
                notification: N::PrePrepare,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn status_pending_for_a_notification_that_takes_no_answer_is_caught() {
    let k = Ktm::new_durable(KtmConfig {
        answer_deadline: Some(Duration::from_secs(1)),
        ..KtmConfig::default()
    });
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    let rm = k
        .create_durable_resource_manager(
            RmGuid(*b"pending-no-answr"),
            Arc::new(|d: Delivery| {
                if d.notification == N::LastRecover {
                    NtStatus::PENDING
                } else {
                    NtStatus::SUCCESS
                }
            }),
        )
        .unwrap();
    assert_eq!(k.recover_resource_manager(rm), NtStatus::SUCCESS);
    assert_one_violation(&k, |v| {
        matches!(
            v,
            V::PendingWithoutAnswer {
                notification: N::LastRecover,
                ..
            }
        )
    });
    assert_eq!(k.counters().pending_returns, 0);
}

#[test]
fn a_commit_withheld_only_with_status_pending_is_accepted() {
    // A durable RM whose Commit record cannot be logged holds CommitComplete until a restart:
    // legal when its callback says so with STATUS_PENDING, a violation when it returns success.
    for (status, violations) in [(NtStatus::PENDING, 0), (NtStatus::SUCCESS, 2)] {
        let OneTx { k, rm, p, h, .. } = one_tx(
            impatient(DeliveryMode::Inline),
            no_answer_at(N::Commit, status),
        );
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS, "decided before COMMIT");
        let c = k.counters();
        let pending = u64::from(status == NtStatus::PENDING);
        assert_eq!((c.pending_returns, c.withheld), (pending, pending));
        // What a restart does to the enlistment the RM kept.
        k.close_enlistment(en);
        let v = k.finish();
        assert_eq!(v.len(), violations, "{status:?}: {v:?}");
        if violations > 0 {
            assert!(has!(
                v,
                V::UnansweredReturn {
                    status: NtStatus::SUCCESS,
                    notification: N::Commit,
                    ..
                }
            ));
            assert!(
                has!(
                    v,
                    V::NeverAnswered {
                        notification: N::Commit,
                        ..
                    }
                ),
                "{v:?}"
            );
        }
    }
}

#[test]
fn a_failing_callback_is_caught_and_counts_as_a_no_vote_when_asked() {
    for mode in MODES {
        let k = ktm(mode);
        k.set_error_return_is_no_vote(true);
        let OneTx { k, rm, p, h, .. } = one_tx(
            k,
            no_answer_at(N::Prepare, NtStatus::INSUFFICIENT_RESOURCES),
        );
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
        let v = k.violations();
        assert!(
            has!(
                v,
                V::CallbackFailed {
                    status: NtStatus::INSUFFICIENT_RESOURCES,
                    notification: N::Prepare,
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(v.len(), 1, "{v:?}");
    }
}

#[test]
fn a_panicking_threaded_callback_is_caught() {
    let OneTx { k, rm, p, h, .. } = one_tx(impatient(DeliveryMode::Threaded), |k: &Ktm, d| {
        if d.notification == N::Prepare {
            panic!("RM bug (expected by the test)");
        }
        good()(k, d)
    });
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    let v = k.finish();
    assert!(
        has!(
            v,
            V::CallbackPanicked {
                notification: N::Prepare,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(
        has!(
            v,
            V::NeverAnswered {
                notification: N::Prepare,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn double_close_is_caught() {
    let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), |k: &Ktm, d| {
        let s = good()(k, d);
        if d.notification == N::Commit {
            k.close_enlistment(d.enlistment); // good() closed it already
        }
        s
    });
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_one_violation(&k, |v| matches!(v, V::DoubleClose { .. }));
    assert_eq!(k.counters().enlistments_open, 0);
}

#[test]
fn closing_an_enlistment_early_rolls_back() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let other = enlist(&k, rm, p, h, MASK4).unwrap();
    k.close_enlistment(en);
    assert_eq!(log.kinds_of(other), [N::Rollback]);
    assert!(log.kinds_of(en).is_empty());
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
    k.assert_clean();
}

#[test]
fn an_unreleased_reference_is_a_leak() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let r = k.reference_transaction(p, h, TRANSACTION_ENLIST).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_one_violation(&k, |v| matches!(v, V::LeakedReference { .. }));
    drop(r);
}

#[test]
fn masks_are_checked() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    // DELEGATE_COMMIT is not supported; bit 30 is outside TRANSACTION_NOTIFY_MASK.
    assert_eq!(
        enlist(&k, rm, p, h, MASK4 | 0x400),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        enlist(&k, rm, p, h, MASK4 | 0x8000_0000),
        Err(NtStatus::INVALID_PARAMETER)
    );
    // Only COMMIT|ROLLBACK, like btrfs (docs/ktm.md §8): accepted but flagged; phases outside the
    // mask are skipped.
    let en = enlist(&k, rm, p, h, 0xC).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds_of(en), [N::Commit]);
    assert_one_violation(&k, |v| matches!(v, V::BadMask { .. }));
}

#[test]
fn unknown_rm_is_not_active() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    assert_eq!(
        enlist(&k, ktm_sim::RmId(99), p, h, MASK4),
        Err(NtStatus::RM_NOT_ACTIVE)
    );
    k.assert_clean();
}

#[test]
fn assert_clean_panics_with_the_list() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let r = k.reference_transaction(p, h, TRANSACTION_ENLIST).unwrap();
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| k.assert_clean())).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("leaked reference"), "{msg}");
    drop(r);
}

#[test]
fn each_message_starts_with_its_rule_and_names_the_delivery() {
    use ktm_sim::{EnlistmentId, EnlistmentKey, TxId, TxState};
    let (enlistment, key, tx) = (
        EnlistmentId(3),
        EnlistmentKey(7),
        TxId(*b"\x02\0\0\0\0\0\0\0ktm-sim\x01"),
    );
    let within = Duration::from_secs(1);
    let cases = [
        (
            V::WrongAnswer {
                answer: Answer::PrepareComplete,
                notification: N::Commit,
                enlistment,
                key,
                tx,
            },
            "wrong answer: PrepareComplete to COMMIT on enlistment #3 (key 7, tx #2)",
        ),
        (
            V::NeverAnswered {
                notification: N::Prepare,
                enlistment,
                key,
                tx,
                within,
            },
            "never answered: PREPARE on enlistment #3 (key 7, tx #2) got no answer within 1s",
        ),
        (
            V::NeverAnswered {
                notification: N::Recover,
                enlistment,
                key,
                tx,
                within,
            },
            "recover not answered: ZwRecoverEnlistment never called for RECOVER on enlistment #3 \
             (key 7, tx #2) got no answer within 1s",
        ),
        (
            V::PendingWithoutAnswer {
                notification: N::LastRecover,
                enlistment: EnlistmentId(0),
                key: None,
                tx: TxId([0; 16]),
            },
            "pending without answer: callback returned STATUS_PENDING for LAST_RECOVER on \
             enlistment #0 (tx #0), which takes no answer",
        ),
        (
            V::LeakedEnlistment {
                enlistment,
                rm: ktm_sim::RmId(1),
                key,
                tx,
                state: TxState::Committed,
                last: Some(Answer::CommitComplete),
            },
            "leaked enlistment: enlistment #3 (RM 1, key 7, tx #2 Committed) still open after the \
             transaction ended (last answer Some(CommitComplete))",
        ),
    ];
    for (v, text) in cases {
        assert_eq!(v.to_string(), text);
    }
}
