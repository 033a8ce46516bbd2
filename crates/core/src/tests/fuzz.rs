//! Arbitrary bytes into the dispatcher: never a panic, never more output than the buffer, and
//! every failure a named status. Valid headers are mixed in so bodies get exercised too.

use crate::testing::Harness;
use ktmrm_proto::{Call, PROTOCOL_VERSION};
use proptest::prelude::*;

fn code() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0usize..Call::ALL.len()).prop_map(|i| Call::ALL[i].code()),
        any::<u32>(),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        // A well-formed header with the right body length and a random body.
        (proptest::collection::vec(any::<u8>(), 0..300), 0u64..3).prop_map(|(body, tx)| {
            let mut v = Vec::new();
            v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(tx * 4).to_le_bytes());
            v.extend_from_slice(&body);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_requests_never_panic(reqs in proptest::collection::vec((code(), input(), 0usize..600), 1..8)) {
        let h = Harness::new();
        let tx = h.port.new_tx(); // handle 4 exists, 8 does not
        for (code, input, out_len) in reqs {
            let (st, out) = h.raw(code, &input, out_len);
            prop_assert!(out.len() <= out_len);
            prop_assert!(st.name().is_some(), "unnamed status {:?}", st);
            if st.is_error() {
                prop_assert!(out.is_empty(), "error with output");
            }
        }
        let _ = tx;
        let handles: Vec<u64> = h.port.handles.borrow().keys().copied().collect();
        for t in handles {
            h.rollback(t);
        }
        prop_assert_eq!(h.stats().live_transactions, 0);
    }
}
