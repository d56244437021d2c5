//! Decoding a version-3 pack (frames): any bytes give frames and blobs or an error, never a
//! panic; a pack that decodes re-encodes, frame by frame, to the same bytes.
#![no_main]

use cairn_engine::decode::{PackWriter, Sealing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sealing = Sealing::plain().with_frames(true);
    let Ok(opened) = sealing.open_pack(data) else {
        return;
    };
    let entries: Vec<_> = opened.iter().map(|(e, _)| *e).collect();
    let mut w = PackWriter::framed(None);
    for frame in entries.chunk_by(|a, b| a.offset == b.offset) {
        let f = &frame[0];
        let stored = &data[f.offset as usize..(f.offset + u64::from(f.stored_len)) as usize];
        let blobs: Vec<_> = frame.iter().map(|e| (e.kind, e.id, e.raw_len)).collect();
        w.add_frame(f.compression, stored, &blobs);
    }
    let (_, bytes, again) = w.finish();
    assert_eq!(again, entries);
    assert_eq!(bytes, data);
});
