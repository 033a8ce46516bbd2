//! [`Violation`]: one rule an RM (or the device in front of it) broke, with what the rule needs
//! to say where. Tests match the variant; [`fmt::Display`] gives the message, which starts with
//! the rule's name ("wrong answer: ...").

use std::fmt;
use std::time::Duration;

use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::ids::{EnlistmentId, RmId, tx_name};
use crate::states::{EnlistmentState, TxState};

/// A call on an enlistment the model does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `Tm*Complete` (or `ZwRollbackEnlistment`, `ZwReadOnlyEnlistment`) with this answer.
    Answer(Answer),
    /// `ZwClose` on the enlistment.
    Close,
    /// `ZwRecoverEnlistment`.
    RecoverEnlistment,
}

/// A broken rule of the KTM protocol (docs/ktm.md §3, §7, §8), recorded by the model's checker
/// ([`crate::Ktm::violations`], [`crate::Ktm::finish`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An answer, close or recover call names an enlistment the model does not know.
    UnknownEnlistment {
        /// The call.
        call: Call,
        /// The enlistment it names.
        enlistment: EnlistmentId,
    },
    /// An answer while no notification is outstanding on its enlistment (answered twice, or
    /// never asked).
    AnswerNotOutstanding {
        /// The answer.
        answer: Answer,
        /// Its enlistment.
        enlistment: EnlistmentId,
        /// The enlistment's key.
        key: EnlistmentKey,
        /// The enlistment's transaction.
        tx: TxId,
        /// The enlistment's last accepted answer.
        last: Option<Answer>,
        /// Whether the RM had closed the enlistment.
        closed: bool,
    },
    /// `ZwRecoverEnlistment` while no RECOVER is outstanding on the enlistment.
    RecoverNotOutstanding {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its transaction.
        tx: TxId,
    },
    /// An answer that is not a legal reply to the outstanding notification
    /// ([`crate::answer_fits`]).
    WrongAnswer {
        /// The answer.
        answer: Answer,
        /// The notification outstanding.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// A notification still unanswered at the answer deadline
    /// ([`crate::KtmConfig::answer_deadline`]); for RECOVER, `ZwRecoverEnlistment` never came.
    NeverAnswered {
        /// The notification.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
        /// The deadline.
        within: Duration,
    },
    /// A callback panicked.
    CallbackPanicked {
        /// The notification it was handling.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// A callback returned `STATUS_PENDING` for a notification that takes no answer.
    PendingWithoutAnswer {
        /// The notification.
        notification: Notification,
        /// The enlistment (0 for LAST_RECOVER).
        enlistment: EnlistmentId,
        /// Its key, for a notification of an enlistment (none for LAST_RECOVER).
        key: Option<EnlistmentKey>,
        /// Its transaction.
        tx: TxId,
    },
    /// A callback returned success without answering and without `STATUS_PENDING`.
    UnansweredReturn {
        /// What it returned.
        status: NtStatus,
        /// The notification.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// A callback returned an error status without answering.
    CallbackFailed {
        /// What it returned.
        status: NtStatus,
        /// The notification.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// Threaded callbacks had still not returned at the end of the test.
    CallbackStillRunning {
        /// How many.
        deliveries: usize,
    },
    /// An enlistment whose notification mask lacks PREPREPARE, PREPARE or COMMIT.
    BadMask {
        /// The RM.
        rm: RmId,
        /// The transaction.
        tx: TxId,
        /// The mask.
        mask: u32,
    },
    /// An enlistment registered SINGLE_PHASE_COMMIT while others were still in play (see
    /// [`crate::Interleavings::spc_beside_writers`]).
    SpcBesideWriter {
        /// The enlistment that registered it.
        enlistment: EnlistmentId,
        /// The transaction.
        tx: TxId,
        /// The other enlistments in play.
        others: usize,
    },
    /// An enlistment closed twice.
    DoubleClose {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// An enlistment closed with a notification unanswered.
    ClosedWhileOutstanding {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
        /// The unanswered notification.
        notification: Notification,
    },
    /// A prepared enlistment closed before its COMMIT or ROLLBACK.
    ClosedBeforeOutcome {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
    },
    /// COMMIT or INDOUBT about to go to an enlistment that is not prepared.
    OutcomeForUnprepared {
        /// The notification.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its transaction.
        tx: TxId,
        /// Its state.
        state: EnlistmentState,
    },
    /// A second COMMIT/ROLLBACK to an enlistment since its RM recovered it.
    OutcomeTwiceAfterRecovery {
        /// The notification.
        notification: Notification,
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its transaction.
        tx: TxId,
    },
    /// A durable RM registered again but never recovered, while prepared enlistments wait.
    RecoveryMissing {
        /// The RM.
        rm: RmId,
        /// The prepared enlistments waiting for it.
        waiting: usize,
    },
    /// An RM's recovery delivered LAST_RECOVER other than once.
    LastRecoverCount {
        /// The RM.
        rm: RmId,
        /// How many it got.
        count: u32,
    },
    /// A recovered enlistment got neither COMMIT nor ROLLBACK.
    NoOutcomeAfterRecovery {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its transaction.
        tx: TxId,
    },
    /// An enlistment still open after its transaction ended.
    LeakedEnlistment {
        /// The enlistment.
        enlistment: EnlistmentId,
        /// Its RM.
        rm: RmId,
        /// Its key.
        key: EnlistmentKey,
        /// Its transaction.
        tx: TxId,
        /// The transaction's state.
        state: TxState,
        /// The enlistment's last accepted answer.
        last: Option<Answer>,
    },
    /// A kernel reference to a transaction never released.
    LeakedReference {
        /// The transaction.
        tx: TxId,
        /// References still held.
        references: u32,
    },
    /// The device got a notification KTM waits on after its RM handle was closed (unload).
    DeliveredAfterUnload {
        /// The notification.
        notification: Notification,
    },
    /// The device reported more output bytes than the output buffer holds.
    OutputOverrun {
        /// The status it returned.
        status: NtStatus,
        /// The byte count it reported.
        information: usize,
        /// The output buffer's length.
        output: usize,
        /// The IOCTL code.
        code: u32,
    },
}

/// The `TRANSACTION_NOTIFY_*` name of a notification, for messages.
#[must_use]
pub fn notification_name(n: Notification) -> String {
    match n {
        Notification::PrePrepare => "PREPREPARE".into(),
        Notification::Prepare => "PREPARE".into(),
        Notification::Commit => "COMMIT".into(),
        Notification::Rollback => "ROLLBACK".into(),
        Notification::SinglePhaseCommit => "SINGLE_PHASE_COMMIT".into(),
        Notification::RmDisconnected => "RM_DISCONNECTED".into(),
        Notification::Recover => "RECOVER".into(),
        Notification::LastRecover => "LAST_RECOVER".into(),
        Notification::InDoubt => "INDOUBT".into(),
        Notification::Other(b) => format!("notification 0x{b:X}"),
    }
}

/// `enlistment #3 (key 7, tx #2)`.
struct Of(EnlistmentId, EnlistmentKey, TxId);

impl fmt::Display for Of {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (key {}, {})", self.0, self.1.0, tx_name(self.2))
    }
}

/// `PREPARE on enlistment #3 (key 7, tx #2)`.
struct On(Notification, EnlistmentId, EnlistmentKey, TxId);

impl fmt::Display for On {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let On(n, en, key, tx) = *self;
        write!(f, "{} on {}", notification_name(n), Of(en, key, tx))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation as V;
        match *self {
            V::UnknownEnlistment { call, enlistment } => match call {
                Call::Answer(a) => write!(f, "unknown enlistment: {a:?} answered on {enlistment}"),
                Call::Close => write!(f, "unknown enlistment: close of {enlistment}"),
                Call::RecoverEnlistment => {
                    write!(f, "unknown enlistment: recover_enlistment on {enlistment}")
                }
            },
            V::AnswerNotOutstanding {
                answer,
                enlistment,
                key,
                tx,
                last,
                closed,
            } => write!(
                f,
                "answer not outstanding: {answer:?} on {} with no notification outstanding \
                 (last answer {last:?}, closed {closed})",
                Of(enlistment, key, tx)
            ),
            V::RecoverNotOutstanding { enlistment, tx } => write!(
                f,
                "answer not outstanding: recover_enlistment on {enlistment} ({}) with no RECOVER \
                 outstanding",
                tx_name(tx)
            ),
            V::WrongAnswer {
                answer,
                notification,
                enlistment,
                key,
                tx,
            } => write!(
                f,
                "wrong answer: {answer:?} to {}",
                On(notification, enlistment, key, tx)
            ),
            V::NeverAnswered {
                notification,
                enlistment,
                key,
                tx,
                within,
            } => {
                let on = On(notification, enlistment, key, tx);
                if notification == Notification::Recover {
                    f.write_str("recover not answered: ZwRecoverEnlistment never called for")?;
                } else {
                    f.write_str("never answered:")?;
                }
                write!(f, " {on} got no answer within {within:?}")
            }
            V::CallbackPanicked {
                notification,
                enlistment,
                key,
                tx,
            } => write!(
                f,
                "callback panicked: {}",
                On(notification, enlistment, key, tx)
            ),
            V::PendingWithoutAnswer {
                notification,
                enlistment,
                key,
                tx,
            } => {
                let n = notification_name(notification);
                match key {
                    Some(key) => write!(
                        f,
                        "pending without answer: callback returned STATUS_PENDING for {n} on {}, \
                         which takes no answer",
                        Of(enlistment, key, tx)
                    ),
                    None => write!(
                        f,
                        "pending without answer: callback returned STATUS_PENDING for {n} on \
                         {enlistment} ({}), which takes no answer",
                        tx_name(tx)
                    ),
                }
            }
            V::UnansweredReturn {
                status,
                notification,
                enlistment,
                key,
                tx,
            } => write!(
                f,
                "unanswered return: callback returned {status:?} for {} without answering \
                 (return STATUS_PENDING to answer later)",
                On(notification, enlistment, key, tx)
            ),
            V::CallbackFailed {
                status,
                notification,
                enlistment,
                key,
                tx,
            } => write!(
                f,
                "callback failed: returned {status:?} for {} without answering",
                On(notification, enlistment, key, tx)
            ),
            V::CallbackStillRunning { deliveries } => write!(
                f,
                "callback still running: {deliveries} deliveries never returned"
            ),
            V::BadMask { rm, tx, mask } => write!(
                f,
                "bad mask: RM {} enlisted in {} with mask 0x{mask:X}, which lacks \
                 PREPREPARE|PREPARE|COMMIT (docs/ktm.md §3)",
                rm.0,
                tx_name(tx)
            ),
            V::SpcBesideWriter {
                enlistment,
                tx,
                others,
            } => write!(
                f,
                "spc beside writer: {enlistment} registered SINGLE_PHASE_COMMIT in {} beside \
                 {others} other enlistment(s) still in play; one and only one RM may register it \
                 and all others must be read-only \
                 (https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-commit-operations)",
                tx_name(tx)
            ),
            V::DoubleClose {
                enlistment,
                key,
                tx,
            } => write!(f, "double close: {} closed twice", Of(enlistment, key, tx)),
            V::ClosedWhileOutstanding {
                enlistment,
                key,
                tx,
                notification,
            } => write!(
                f,
                "closed while outstanding: {} closed with {} unanswered",
                Of(enlistment, key, tx),
                notification_name(notification)
            ),
            V::ClosedBeforeOutcome {
                enlistment,
                key,
                tx,
            } => write!(
                f,
                "closed before outcome: {} closed after PrepareComplete, before COMMIT/ROLLBACK",
                Of(enlistment, key, tx)
            ),
            V::OutcomeForUnprepared {
                notification,
                enlistment,
                tx,
                state,
            } => write!(
                f,
                "outcome for unprepared: {} to {enlistment} ({}) in state {state:?}",
                notification_name(notification),
                tx_name(tx)
            ),
            V::OutcomeTwiceAfterRecovery {
                notification,
                enlistment,
                tx,
            } => write!(
                f,
                "outcome twice after recovery: {} to {enlistment} ({})",
                notification_name(notification),
                tx_name(tx)
            ),
            V::RecoveryMissing { rm, waiting } => write!(
                f,
                "recovery missing: durable RM {} registered again but never called \
                 recover_resource_manager; {waiting} prepared enlistment(s) wait for it \
                 (docs/ktm.md §7 step 4)",
                rm.0
            ),
            V::LastRecoverCount { rm, count } => write!(
                f,
                "LAST_RECOVER count: RM {} got {count} LAST_RECOVER in one recovery",
                rm.0
            ),
            V::NoOutcomeAfterRecovery { enlistment, tx } => write!(
                f,
                "no outcome after recovery: {enlistment} ({}) was recovered but got neither \
                 COMMIT nor ROLLBACK",
                tx_name(tx)
            ),
            V::LeakedEnlistment {
                enlistment,
                rm,
                key,
                tx,
                state,
                last,
            } => write!(
                f,
                "leaked enlistment: {enlistment} (RM {}, key {}, {} {state:?}) still open after \
                 the transaction ended (last answer {last:?})",
                rm.0,
                key.0,
                tx_name(tx)
            ),
            V::LeakedReference { tx, references } => write!(
                f,
                "leaked reference: {} still has {references} kernel reference(s)",
                tx_name(tx)
            ),
            V::DeliveredAfterUnload { notification } => write!(
                f,
                "{notification:?} that KTM waits on delivered to the device after its RM handle \
                 was closed (unload)"
            ),
            V::OutputOverrun {
                status,
                information,
                output,
                code,
            } => write!(
                f,
                "device: {status:?} with information {information} > output length {output} \
                 (code 0x{code:08X})"
            ),
        }
    }
}
