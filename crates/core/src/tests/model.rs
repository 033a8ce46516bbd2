//! Property test: random interleavings of several transactions and non-transacted writes match a
//! simple reference model of the semantics contract.

use crate::port::Answer;
use crate::testing::Harness;
use ktmrm_proto::NtStatus as S;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Put(Option<usize>, u8, u8),
    Delete(Option<usize>, u8),
    Get(Option<usize>, u8),
    List(Option<usize>, u8),
    Commit(usize),
    Rollback(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let who = proptest::option::weighted(0.8, 0usize..3);
    prop_oneof![
        4 => (who.clone(), 0u8..6, any::<u8>()).prop_map(|(w, k, v)| Op::Put(w, k, v)),
        2 => (who.clone(), 0u8..6).prop_map(|(w, k)| Op::Delete(w, k)),
        2 => (who.clone(), 0u8..6).prop_map(|(w, k)| Op::Get(w, k)),
        1 => (who, 0u8..3).prop_map(|(w, p)| Op::List(w, p)),
        1 => (0usize..3).prop_map(Op::Commit),
        1 => (0usize..3).prop_map(Op::Rollback),
    ]
}

fn key(k: u8) -> String {
    format!("{}{}", ["a", "ab", "b"][usize::from(k % 3)], k)
}

/// The reference: committed map, and per transaction its write set (None = delete).
#[derive(Default)]
struct Model {
    committed: BTreeMap<String, String>,
    txs: Vec<BTreeMap<String, Option<String>>>,
}

impl Model {
    fn view(&self, who: Option<usize>, k: &str) -> Option<String> {
        if let Some(w) = who.and_then(|i| self.txs[i].get(k)) {
            return w.clone();
        }
        self.committed.get(k).cloned()
    }

    fn locked_by_other(&self, who: Option<usize>, k: &str) -> bool {
        self.txs
            .iter()
            .enumerate()
            .any(|(i, t)| Some(i) != who && t.contains_key(k))
    }

    fn write(&mut self, who: Option<usize>, k: &str, v: Option<String>) -> S {
        if self.locked_by_other(who, k) {
            return S::TRANSACTIONAL_CONFLICT;
        }
        if v.is_none() && self.view(who, k).is_none() {
            return S::OBJECT_NAME_NOT_FOUND;
        }
        match who {
            Some(i) => {
                self.txs[i].insert(k.to_string(), v);
            }
            None => match v {
                Some(v) => {
                    self.committed.insert(k.to_string(), v);
                }
                None => {
                    self.committed.remove(k);
                }
            },
        }
        S::SUCCESS
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn interleavings_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let h = Harness::new();
        let mut m = Model { txs: vec![BTreeMap::new(); 3], ..Model::default() };
        let mut handles: Vec<u64> = (0..3).map(|_| h.port.new_tx()).collect();
        let handle = |w: Option<usize>, hs: &Vec<u64>| w.map_or(0, |i| hs[i]);
        for op in ops {
            match op {
                Op::Put(w, k, v) => {
                    let (k, v) = (key(k), v.to_string());
                    let want = m.write(w, &k, Some(v.clone()));
                    prop_assert_eq!(h.put(handle(w, &handles), &k, &v), want, "{:?}", (w, &k));
                }
                Op::Delete(w, k) => {
                    let k = key(k);
                    let want = m.write(w, &k, None);
                    prop_assert_eq!(h.delete(handle(w, &handles), &k), want);
                }
                Op::Get(w, k) => {
                    let k = key(k);
                    let want = m.view(w, &k).ok_or(S::OBJECT_NAME_NOT_FOUND);
                    prop_assert_eq!(h.get(handle(w, &handles), &k), want);
                }
                Op::List(w, p) => {
                    let prefix = ["", "a", "ab"][usize::from(p)];
                    let mut keys: Vec<String> = m.committed.keys().cloned().collect();
                    if let Some(i) = w {
                        for (k, v) in &m.txs[i] {
                            keys.retain(|x| x != k);
                            if v.is_some() { keys.push(k.clone()); }
                        }
                    }
                    keys.retain(|k| k.starts_with(prefix));
                    keys.sort();
                    prop_assert_eq!(h.list(handle(w, &handles), prefix, 2), Ok(keys));
                }
                Op::Commit(i) => {
                    let writes = std::mem::take(&mut m.txs[i]);
                    let vote = h.commit(handles[i]);
                    prop_assert!(matches!(vote, Answer::PrepareComplete | Answer::ReadOnly));
                    for (k, v) in writes {
                        match v {
                            Some(v) => { m.committed.insert(k, v); }
                            None => { m.committed.remove(&k); }
                        }
                    }
                    handles[i] = h.port.new_tx();
                }
                Op::Rollback(i) => {
                    m.txs[i].clear();
                    h.rollback(handles[i]);
                    handles[i] = h.port.new_tx();
                }
            }
            prop_assert_eq!(h.engine.with_state(crate::State::check_consistency), Ok(()));
        }
        let s = h.stats();
        prop_assert_eq!(s.keys, m.committed.len() as u64);
        let bytes: usize = m.committed.iter().map(|(k, v)| k.len() + v.len()).sum();
        prop_assert_eq!(s.bytes, bytes as u64);
        for t in &handles {
            h.rollback(*t);
        }
        prop_assert_eq!(h.stats().live_transactions, 0);
        prop_assert_eq!(h.engine.with_state(|s| s.pending.len()), 0, "a key lock outlived its transaction");
    }
}
