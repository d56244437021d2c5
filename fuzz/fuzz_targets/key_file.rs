//! Key file decoding: never panics; what decodes re-encodes to bytes that decode the same.
#![no_main]

use cairn_engine::{Id, KeyFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = Id([7; 32]);
    if let Ok(k) = KeyFile::decode(data, &id) {
        let again = KeyFile::decode(&k.encode(), &id).expect("re-encoded key file decodes");
        assert_eq!(again, k);
    }
});
