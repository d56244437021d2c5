//! Tree decoding: never panics; every decoded name is a safe path component; what decodes
//! re-encodes to the same bytes.
#![no_main]

use cairn_engine::decode::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut tree) = Tree::decode(data) {
        for n in &tree.nodes {
            assert!(!n.name.is_empty() && n.name != b".." && n.name != b"." && !n.name.contains(&b'/'));
        }
        assert_eq!(tree.encode(), data);
    }
});
