//! Plans (which transaction does what, in which order) and the histories running them gives.
//!
//! Keys are `k0`, `k1`, … (single digits, so bytewise order is index order); every PUT writes a
//! value no other PUT writes (`t<tx>.<step>`), so a read names the write it saw.

use crate::client::{Client, Isolation, Transaction, TxSource};
use crate::error::Error;
use ktmrm_proto::NtStatus;
use std::collections::BTreeMap;
use std::fmt;

/// The prefix every key of a plan starts with (what LIST lists).
pub const KEY_PREFIX: &[u8] = b"k";

/// A store's contents, by key index.
pub type Store = BTreeMap<u8, Vec<u8>>;

/// The bytes of key `i`.
#[must_use]
pub fn key(i: u8) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

/// One request of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// GET key.
    Get(u8),
    /// PUT key (a fresh value).
    Put(u8),
    /// DELETE key.
    Delete(u8),
    /// LIST every key.
    List,
    /// CommitTransaction.
    Commit,
    /// RollbackTransaction.
    Rollback,
    /// A second resource manager votes no, then CommitTransaction (simulator only).
    Veto,
}

impl Op {
    /// Whether the transaction ends with this request.
    #[must_use]
    pub fn ends(self) -> bool {
        matches!(self, Op::Commit | Op::Rollback | Op::Veto)
    }
}

/// Transaction `tx` issues `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The transaction's index.
    pub tx: usize,
    /// What it does.
    pub op: Op,
}

/// What to run: the committed store at the start, then the steps in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many transactions (`T0`…).
    pub txs: usize,
    /// Every transaction's isolation level (`Unstated`: read committed, stated by nobody).
    pub isolation: Isolation,
    /// The store before the first step.
    pub initial: Store,
    /// The requests, in the order they are issued.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Interleaves each transaction's requests: `choices[j]` (modulo the transactions that
    /// still have requests) picks who goes next; when the choices run out, the rest go in index
    /// order. Each transaction's own order is kept.
    #[must_use]
    pub fn interleave(initial: Store, per_tx: &[Vec<Op>], choices: &[usize]) -> Plan {
        let mut next = vec![0usize; per_tx.len()];
        let mut steps = Vec::new();
        let mut choices = choices.iter();
        loop {
            let live: Vec<usize> = (0..per_tx.len())
                .filter(|&t| next[t] < per_tx[t].len())
                .collect();
            let Some(&first) = live.first() else { break };
            let tx = choices.next().map_or(first, |c| live[c % live.len()]);
            steps.push(Step {
                tx,
                op: per_tx[tx][next[tx]],
            });
            next[tx] += 1;
        }
        Plan {
            txs: per_tx.len(),
            isolation: Isolation::ReadCommitted,
            initial,
            steps,
        }
    }

    /// The same plan with its transactions at `level`.
    #[must_use]
    pub fn at(self, level: Isolation) -> Plan {
        Plan {
            isolation: level,
            ..self
        }
    }
}

/// What a transaction observed or did, as the checker needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A GET's answer (`None`: not found), or a DELETE that found no key (`None`).
    Read {
        /// The key.
        key: u8,
        /// The value seen, if any.
        value: Option<Vec<u8>>,
    },
    /// A LIST's answer.
    List(Vec<u8>),
    /// A PUT that succeeded.
    Put {
        /// The key.
        key: u8,
        /// The value written.
        value: Vec<u8>,
    },
    /// A DELETE that succeeded: the key was there.
    Delete(u8),
    /// A write refused with STATUS_TRANSACTIONAL_CONFLICT: no effect.
    Refused,
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// CommitTransaction succeeded.
    Committed,
    /// CommitTransaction reported STATUS_TRANSACTION_ABORTED.
    Aborted,
    /// Rolled back by its owner.
    RolledBack,
}

/// One transaction's events and outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// In the order they happened.
    pub events: Vec<Event>,
    /// How it ended.
    pub outcome: Outcome,
}

/// A plan, what each of its steps answered, and the store afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// What ran.
    pub plan: Plan,
    /// Each step's answer, as a script's output line (`ok …` / `err STATUS_…`).
    pub answers: Vec<String>,
    /// Per transaction.
    pub txs: Vec<TxRecord>,
    /// The committed store after every transaction ended.
    pub final_store: Store,
}

/// Runs `plan` on `client` (whose keys under [`KEY_PREFIX`] it replaces with the plan's
/// initial store). Transactions the plan leaves open are committed at the end, in index order.
/// An answer a read-committed or serializable store can give is recorded (at serializable also
/// a write refused because the transaction's reads went stale, and a commit that aborts); any
/// other is an error.
pub fn run(client: &Client, plan: &Plan) -> Result<History, Error> {
    client.delete_prefix(KEY_PREFIX)?;
    for (k, v) in &plan.initial {
        client.put(&key(*k), v)?;
    }
    let mut open = Vec::with_capacity(plan.txs);
    for _ in 0..plan.txs {
        let t = client.begin_with(TxSource::Begin, plan.isolation, 0, "ktmrm-test serial")?;
        open.push(Some(t));
    }
    let mut txs = vec![
        TxRecord {
            events: Vec::new(),
            outcome: Outcome::RolledBack,
        };
        plan.txs
    ];
    let mut answers = Vec::with_capacity(plan.steps.len());
    let mut steps = plan.steps.clone();
    for tx in 0..plan.txs {
        steps.push(Step { tx, op: Op::Commit });
    }
    for (n, step) in steps.iter().enumerate() {
        let Some(tx) = open.get_mut(step.tx).and_then(Option::as_mut) else {
            if n < plan.steps.len() {
                answers.push("skipped: ended".into());
            }
            continue;
        };
        let record = &mut txs[step.tx];
        let value = format!("t{}.{n}", step.tx).into_bytes();
        let answer = apply(tx, step.op, value, record)?;
        if step.op.ends() {
            open[step.tx] = None;
        }
        if n < plan.steps.len() {
            answers.push(answer);
        }
    }
    let final_store = client
        .snapshot(KEY_PREFIX)?
        .into_iter()
        .map(|(k, v)| Ok((index_of(&k)?, v)))
        .collect::<Result<Store, Error>>()?;
    Ok(History {
        plan: plan.clone(),
        answers,
        txs,
        final_store,
    })
}

/// Issues `op` in `tx`, records what it observed, and returns its answer line.
fn apply(
    tx: &mut Transaction,
    op: Op,
    value: Vec<u8>,
    rec: &mut TxRecord,
) -> Result<String, Error> {
    let refused = |e: &Error| e.status() == Some(NtStatus::TRANSACTIONAL_CONFLICT);
    let absent = |e: &Error| e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND);
    let (event, answer) = match op {
        Op::Get(k) => match tx.get(&key(k)) {
            Ok(v) => {
                let shown = format!("ok {}", String::from_utf8_lossy(&v));
                (
                    Event::Read {
                        key: k,
                        value: Some(v),
                    },
                    shown,
                )
            }
            Err(e) if absent(&e) => (
                Event::Read {
                    key: k,
                    value: None,
                },
                err(&e),
            ),
            Err(e) => return Err(e),
        },
        Op::Put(k) => match tx.put(&key(k), &value) {
            Ok(()) => (Event::Put { key: k, value }, "ok".into()),
            Err(e) if refused(&e) => (Event::Refused, err(&e)),
            Err(e) => return Err(e),
        },
        Op::Delete(k) => match tx.delete(&key(k)) {
            Ok(()) => (Event::Delete(k), "ok".into()),
            Err(e) if absent(&e) => (
                Event::Read {
                    key: k,
                    value: None,
                },
                err(&e),
            ),
            Err(e) if refused(&e) => (Event::Refused, err(&e)),
            Err(e) => return Err(e),
        },
        Op::List => {
            let keys = tx.list(KEY_PREFIX)?;
            let shown = keys.iter().map(|k| String::from_utf8_lossy(k).into_owned());
            let shown = format!("ok {}", shown.collect::<Vec<_>>().join(" "));
            let keys = keys.iter().map(|k| index_of(k)).collect::<Result<_, _>>()?;
            (Event::List(keys), shown.trim_end().to_owned())
        }
        Op::Commit | Op::Veto => {
            if op == Op::Veto {
                tx.veto()?;
            }
            match tx.commit() {
                Ok(()) if op == Op::Veto => {
                    return Err(Error::BadAnswer {
                        op: "commit".into(),
                        detail: "committed although a resource manager voted no".into(),
                    });
                }
                Ok(()) => rec.outcome = Outcome::Committed,
                Err(e) if e.status() == Some(NtStatus::TRANSACTION_ABORTED) => {
                    rec.outcome = Outcome::Aborted;
                    return Ok(err(&e));
                }
                Err(e) => return Err(e),
            }
            return Ok("ok".into());
        }
        Op::Rollback => {
            tx.rollback()?;
            return Ok("ok".into());
        }
    };
    rec.events.push(event);
    Ok(answer)
}

fn err(e: &Error) -> String {
    e.status().map_or_else(
        || e.to_string(),
        |s| format!("err {}", crate::status::name(s)),
    )
}

fn index_of(k: &[u8]) -> Result<u8, Error> {
    let bad = || Error::BadAnswer {
        op: "list".into(),
        detail: format!(
            "key {:?} is not one of the plan's",
            String::from_utf8_lossy(k)
        ),
    };
    let digits = k.strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)
}

/// The history as a script (`ktmrm-test script`) with each step's answer as a comment, so a
/// rejected history can be replayed and read.
impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.plan.initial {
            writeln!(f, "put - k{k} {}", String::from_utf8_lossy(v))?;
        }
        let level = match self.plan.isolation {
            Isolation::Serializable => " serializable",
            _ => "",
        };
        for t in 0..self.plan.txs {
            writeln!(f, "begin T{t}{level}")?;
        }
        for (n, (step, answer)) in self.plan.steps.iter().zip(&self.answers).enumerate() {
            let t = step.tx;
            let line = match step.op {
                Op::Get(k) => format!("get T{t} k{k}"),
                Op::Put(k) => format!("put T{t} k{k} t{t}.{n}"),
                Op::Delete(k) => format!("delete T{t} k{k}"),
                Op::List => format!("list T{t} k"),
                Op::Commit => format!("commit T{t}"),
                Op::Rollback => format!("rollback T{t}"),
                Op::Veto => format!("veto T{t}\ncommit T{t}"),
            };
            writeln!(f, "{line:<24} # {answer}")?;
        }
        for (t, rec) in self.txs.iter().enumerate() {
            writeln!(f, "# T{t}: {:?}", rec.outcome)?;
        }
        let store: Vec<String> = self
            .final_store
            .iter()
            .map(|(k, v)| format!("k{k}={}", String::from_utf8_lossy(v)))
            .collect();
        writeln!(f, "# final store: {}", store.join(" "))
    }
}
