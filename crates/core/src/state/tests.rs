//! The state's parts on their own: how the transaction table names slots, and the store's
//! byte count and quotas.

use super::store::{Room, Store};
use super::txns::{Owner, Phase, Txns};
use crate::entry::Entry;
use crate::port::TxId;
use ktmrm_proto::Isolation;
use ktmrm_proto::Limits;

fn id(n: u8) -> TxId {
    TxId([n; 16])
}

#[test]
fn a_key_outliving_its_transaction_names_nothing_even_when_its_slot_is_reused() {
    let mut t: Txns<u32> = Txns::new();
    let a = t.create(id(1), Isolation::Unstated).unwrap();
    assert_eq!(t.find(&id(1)), Some(a));
    assert_eq!(t.get(a).map(|x| x.id()), Some(id(1)));
    t.get_mut(a).unwrap().set_enlisted(Some(7));
    assert_eq!(
        t.remove(a),
        Some(7),
        "the enlistment goes back to be closed"
    );
    assert_eq!(t.live(), 0);
    assert!(t.get(a).is_none() && t.find(&id(1)).is_none());
    let b = t.create(id(2), Isolation::Unstated).unwrap();
    assert_ne!(a, b, "same slot, next generation");
    assert_eq!(
        Txns::<u32>::owner(a),
        Txns::<u32>::owner(b),
        "the slot is reused"
    );
    assert!(
        t.get(a).is_none(),
        "the old key does not reach the new transaction"
    );
    assert!(t.get_mut(a).is_none() && t.remove(a).is_none());
    t.set_phase(a, Phase::Vetoed);
    assert_eq!(t.get(b).map(|x| x.phase()), Some(Phase::Active));
    assert_eq!(
        t.by_owner(Txns::<u32>::owner(b)).map(|x| x.id()),
        Some(id(2))
    );
    assert!(t.by_owner(Owner::DIRECT).is_none());
}

#[test]
fn first_from_walks_the_live_transactions_in_slot_order() {
    let mut t: Txns<u32> = Txns::new();
    let keys: std::vec::Vec<_> = (0..4)
        .map(|n| t.create(id(n), Isolation::Unstated).unwrap())
        .collect();
    t.remove(keys[1]);
    t.set_phase(keys[3], Phase::Ended);
    let active = |x: &super::txns::Txn<u32>| x.phase() == Phase::Active;
    assert_eq!(t.first_from(0, active), Some((1, keys[0])));
    assert_eq!(
        t.first_from(1, active),
        Some((3, keys[2])),
        "slot 1 is free"
    );
    assert_eq!(t.first_from(3, active), None, "slot 3 is not active");
    assert_eq!(t.iter().count(), 3);
}

#[test]
fn the_byte_count_follows_every_put_replace_and_remove() {
    let limits = Limits {
        max_keys: 2,
        max_bytes: 1_000,
        ..Limits::default()
    };
    let mut s = Store::new(&limits);
    let e = |k: &[u8], v: &[u8]| Entry::try_new(k, v).unwrap();
    let charge = |k: &[u8], v: &[u8]| e(k, v).charge();
    assert!(s.put(e(b"a", b"1"), Room::Alloc).is_ok());
    assert!(s.put(e(b"b", b"22"), Room::Alloc).is_ok());
    assert_eq!(s.bytes(), charge(b"a", b"1") + charge(b"b", b"22"));
    assert!(s.put(e(b"a", b"333"), Room::Alloc).is_ok());
    assert_eq!(s.bytes(), charge(b"a", b"333") + charge(b"b", b"22"));
    assert!(s.remove(b"b") && !s.remove(b"b"));
    assert_eq!((s.len(), s.bytes()), (1, charge(b"a", b"333")));
    // One more key fits, unless a prepared commit has already claimed it.
    assert!(s.fits(1, 0) && !s.fits(2, 0) && s.fits(-5, -5));
    s.charge_prepared(1, 0, true);
    assert!(!s.fits(1, 0));
    s.charge_prepared(1, 0, false);
    assert!(s.fits(1, 0));
    assert_eq!(s.charge_of(b"a"), Some(charge(b"a", b"333")));
}
