//! Any bytes, for any control code: the decoder never panics, every rejection is a named status,
//! and whatever it accepts re-encodes to the very same bytes, the isolation level the header
//! states included.
#![no_main]

use ktmrm_proto::{Call, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let call = Call::ALL[usize::from(selector) % Call::ALL.len()];
    match Request::decode_stated(call, input) {
        Ok((Request::GetVersion, _)) => {}
        Ok((req, level)) => {
            let mut out = vec![0u8; req.encoded_len()];
            let n = req
                .encode_stating(level, &mut out)
                .expect("an accepted request re-encodes");
            assert_eq!(&out[..n], input, "decode/encode is not the identity");
        }
        Err(st) => assert!(st.name().is_some(), "unnamed status {st:?}"),
    }
});
