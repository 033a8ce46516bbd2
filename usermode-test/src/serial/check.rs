//! The search for a serial order: the committed transactions are serializable when some order
//! of them, each run alone from the store its predecessors left, reproduces every answer each
//! of them received and the final store. Aborted and rolled-back transactions left no writes,
//! so they are not placed; their reads are not checked here.

use super::history::{Event, History, Outcome, Store};
use std::fmt;

/// No order of the committed transactions explains the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotSerializable {
    /// The committed transactions' indices.
    pub committed: Vec<usize>,
    /// The history, as a replayable script.
    pub history: String,
}

impl fmt::Display for NotSerializable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.committed.iter().map(|t| format!("T{t}")).collect();
        writeln!(
            f,
            "no serial order of the committed transactions ({}) gives the answers they got \
             and the final store:",
            names.join(", ")
        )?;
        f.write_str(&self.history)
    }
}

impl std::error::Error for NotSerializable {}

/// An order of the committed transactions that explains `history`, or why there is none.
/// Depth-first over orders, dropping a prefix as soon as one of its transactions would have
/// seen something else, so a handful of transactions costs little.
pub fn serial_order(history: &History) -> Result<Vec<usize>, NotSerializable> {
    let committed: Vec<usize> = (0..history.txs.len())
        .filter(|&t| history.txs[t].outcome == Outcome::Committed)
        .collect();
    let mut order = Vec::with_capacity(committed.len());
    let mut left = committed.clone();
    if place(history, &mut left, &mut order, &history.plan.initial) {
        Ok(order)
    } else {
        Err(NotSerializable {
            committed,
            history: history.to_string(),
        })
    }
}

fn place(h: &History, left: &mut Vec<usize>, order: &mut Vec<usize>, store: &Store) -> bool {
    if left.is_empty() {
        return *store == h.final_store;
    }
    for i in 0..left.len() {
        let t = left[i];
        let Some(after) = run_alone(&h.txs[t].events, store) else {
            continue;
        };
        left.remove(i);
        order.push(t);
        if place(h, left, order, &after) {
            return true;
        }
        order.pop();
        left.insert(i, t);
    }
    false
}

/// The store after a transaction with `events` ran alone on `store`, if it would have seen
/// exactly what it saw.
fn run_alone(events: &[Event], store: &Store) -> Option<Store> {
    let mut view = store.clone();
    for e in events {
        match e {
            Event::Read { key, value } => {
                if view.get(key) != value.as_ref() {
                    return None;
                }
            }
            Event::List(keys) => {
                if !view.keys().eq(keys.iter()) {
                    return None;
                }
            }
            Event::Put { key, value } => {
                view.insert(*key, value.clone());
            }
            Event::Delete(key) => {
                view.remove(key)?;
            }
            Event::Refused => {}
        }
    }
    Some(view)
}
