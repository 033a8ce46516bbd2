//! The client library's isolation levels: a `Transaction` states its level on every request,
//! so a transaction the driver already knows at another level is refused with
//! STATUS_INVALID_PARAMETER_MIX instead of silently running at the wrong one; requests that
//! state nothing take the level the transaction has.

use ktmrm_client::client::Isolation;
use ktmrm_client::proto::NtStatus;
use ktmrm_client::transport::{Backend, SimConfig};
use ktmrm_client::{Client, TxSource};

fn client() -> Client {
    Client::new(Backend::Sim(SimConfig::default()).connect().unwrap()).unwrap()
}

const LEVELS: [Isolation; 2] = [Isolation::ReadCommitted, Isolation::Serializable];

fn other(level: Isolation) -> Isolation {
    match level {
        Isolation::Serializable => Isolation::ReadCommitted,
        _ => Isolation::Serializable,
    }
}

#[test]
fn a_transaction_states_its_level_and_the_other_level_is_refused() {
    let c = client();
    c.put(b"k", b"v").unwrap();
    for source in [TxSource::Begin, TxSource::Ktmw32] {
        for level in LEVELS {
            let mut t = c.begin_with(source, level, 0, "levels").unwrap();
            assert_eq!(t.level(), level);
            assert_eq!(t.get(b"k").unwrap(), b"v", "{source:?} {level:?}");
            let at = (t.handle(), other(level));
            let e = c.get_stating(at, b"k").unwrap_err();
            assert_eq!(
                e.status(),
                Some(NtStatus::INVALID_PARAMETER_MIX),
                "{source:?} {level:?}"
            );
            let e = c.put_stating(at, b"k", b"w").unwrap_err();
            assert_eq!(e.status(), Some(NtStatus::INVALID_PARAMETER_MIX));
            // Not stating a level is stating the transaction's own.
            c.put_in(t.handle(), b"k", b"w").unwrap();
            assert_eq!(t.get(b"k").unwrap(), b"w");
            t.rollback().unwrap();
        }
    }
    assert_eq!(c.get(b"k").unwrap(), b"v", "the refused write left nothing");
}

#[test]
fn an_adopted_handle_states_the_level_it_is_adopted_at() {
    let c = client();
    c.put(b"k", b"v").unwrap();
    for level in LEVELS {
        let h = c.transport().create_transaction(0, "adopted").unwrap();
        let mut t = c.adopt_with(h, level);
        t.put(b"k", b"x").unwrap();
        let e = c.delete_stating((h, other(level)), b"k").unwrap_err();
        assert_eq!(
            e.status(),
            Some(NtStatus::INVALID_PARAMETER_MIX),
            "{level:?}"
        );
        t.commit().unwrap();
        c.put(b"k", b"v").unwrap();
    }
    // `adopt` is read committed.
    let h = c.transport().create_transaction(0, "adopted").unwrap();
    let t = c.adopt(h);
    assert_eq!(t.level(), Isolation::ReadCommitted);
    t.get(b"k").unwrap();
    let e = c
        .list_stating((h, Isolation::Serializable), b"")
        .unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::INVALID_PARAMETER_MIX));
}

/// The lost update through the library: two serializable read-modify-writes of one key, the
/// first commits, the second cannot (its write is refused), and the first's update stays.
#[test]
fn serializable_read_modify_writes_lose_no_update() {
    let c = client();
    c.put(b"n", b"10").unwrap();
    let begin = || {
        c.begin_with(TxSource::Ktmw32, Isolation::Serializable, 0, "rmw")
            .unwrap()
    };
    let (mut t1, mut t2) = (begin(), begin());
    assert_eq!(t1.get(b"n").unwrap(), b"10");
    assert_eq!(t2.get(b"n").unwrap(), b"10");
    t1.put(b"n", b"11").unwrap();
    t1.commit().unwrap();
    let e = t2.put(b"n", b"12").unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::TRANSACTIONAL_CONFLICT));
    let e = t2.commit().unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::TRANSACTION_ABORTED));
    assert_eq!(c.get(b"n").unwrap(), b"11");
    // The same at read committed loses T1's update: the level is what prevents it.
    let begin = || {
        c.begin_with(TxSource::Ktmw32, Isolation::ReadCommitted, 0, "rmw")
            .unwrap()
    };
    let (mut t1, mut t2) = (begin(), begin());
    t1.get(b"n").unwrap();
    t2.get(b"n").unwrap();
    t1.put(b"n", b"12").unwrap();
    t1.commit().unwrap();
    t2.put(b"n", b"12").unwrap();
    t2.commit().unwrap();
}
