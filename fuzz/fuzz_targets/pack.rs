//! Pack decoding: any bytes give a directory or an error, never a panic; a decoded directory
//! re-encodes to the same bytes.
#![no_main]

use cairn_engine::decode::{PackWriter, decode_pack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode_pack(data) {
        let mut w = PackWriter::new();
        for e in &entries {
            let start = (e.offset + 44) as usize;
            let stored = &data[start..start + e.stored_len as usize];
            w.add(e.kind, e.id, e.raw_len, e.compression, stored);
        }
        let (_, bytes, again) = w.finish();
        assert_eq!(again, entries);
        assert_eq!(bytes, data);
    }
});
