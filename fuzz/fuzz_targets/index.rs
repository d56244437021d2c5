//! Index file decoding: never panics; what decodes re-encodes to the same bytes.
#![no_main]

use cairn_engine::decode::{decode_index, encode_index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packs) = decode_index(data) {
        assert_eq!(encode_index(&packs), data);
    }
});
