//! Chunk-list decoding: never panics; what decodes re-encodes to the same bytes.
#![no_main]

use cairn_engine::decode::{decode_list, encode_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = decode_list(data) {
        assert_eq!(encode_list(&list), data);
    }
});
