use super::*;
use crate::id::IdHasher;
use proptest::prelude::*;

fn sample() -> (Id, Vec<u8>, Vec<BlobEntry>, Vec<Vec<u8>>) {
    let blobs: Vec<Vec<u8>> = vec![b"alpha".repeat(100), vec![7u8; 3], Vec::new()];
    let mut w = PackWriter::new();
    for (i, b) in blobs.iter().enumerate() {
        let kind = if i == 1 {
            BlobKind::Tree
        } else {
            BlobKind::Data
        };
        let (c, stored) = compress(b, Some(3));
        w.add(kind, Id::of(b), b.len() as u32, c, &stored);
    }
    let (id, bytes, entries) = w.finish();
    (id, bytes, entries, blobs)
}

#[test]
fn round_trip() {
    let (id, bytes, entries, blobs) = sample();
    assert_eq!(Id::of(&bytes), id);
    let decoded = decode_pack(&bytes).unwrap();
    assert_eq!(decoded, entries);
    for (e, raw) in entries.iter().zip(&blobs) {
        let h = &bytes[e.offset as usize..(e.offset + BLOB_HEADER_LEN) as usize];
        check_blob_header(e, h).unwrap();
        let stored = &bytes[(e.offset + BLOB_HEADER_LEN) as usize..e.end() as usize];
        assert_eq!(&open_blob(e, stored).unwrap(), raw);
    }
    assert_eq!(entries[0].compression, Compression::Zstd);
    assert_eq!(entries[1].compression, Compression::None);
}

#[test]
fn two_zstd_frames_are_not_one_blob() {
    let raw = b"page ".repeat(400);
    let mut two = zstd::bulk::compress(&raw[..1000], 3).unwrap();
    two.extend(zstd::bulk::compress(&raw[1000..], 3).unwrap());
    let e = BlobEntry {
        id: Id::of(&raw),
        kind: BlobKind::Data,
        compression: Compression::Zstd,
        cipher: None,
        offset: PREAMBLE_LEN,
        stored_len: two.len() as u32,
        raw_len: raw.len() as u32,
        frame: None,
    };
    assert!(open_blob(&e, &two).is_err());
    assert!(verify_blob(&e, &two).is_err());
    let one = zstd::bulk::compress(&raw, 3).unwrap();
    let e = BlobEntry {
        stored_len: one.len() as u32,
        ..e
    };
    assert_eq!(open_blob(&e, &one).unwrap(), raw);
}

#[test]
fn flipped_byte_is_caught() {
    let (_, mut bytes, entries, _) = sample();
    let e = entries[0];
    let stored = &bytes[(e.offset + BLOB_HEADER_LEN) as usize..e.end() as usize];
    assert_eq!(verify_blob(&e, stored).unwrap(), e.raw_len);
    bytes[(e.offset + BLOB_HEADER_LEN + 2) as usize] ^= 0x40;
    let stored = &bytes[(e.offset + BLOB_HEADER_LEN) as usize..e.end() as usize];
    assert!(open_blob(&e, stored).is_err());
    assert!(verify_blob(&e, stored).is_err());
}

/// A version-3 pack: two frames of data, one of a tree; its blobs, in pack order.
fn framed_sample(
    keys: Option<std::sync::Arc<crate::crypto::Keys>>,
) -> (Vec<u8>, Vec<BlobEntry>, Vec<Vec<u8>>) {
    let hasher = match &keys {
        Some(k) => IdHasher::keyed(k.id_key()),
        None => IdHasher::plain(),
    };
    let frames: Vec<Vec<(BlobKind, Vec<u8>)>> = vec![
        vec![
            (BlobKind::Data, b"page one ".repeat(900)),
            (BlobKind::Data, b"page two ".repeat(900)),
            (BlobKind::Data, vec![1, 2, 3]),
        ],
        vec![(BlobKind::Tree, b"tree".to_vec())],
        vec![(
            BlobKind::Data,
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        )],
    ];
    let mut w = PackWriter::framed(keys);
    let mut raws = Vec::new();
    for f in &frames {
        let joined: Vec<u8> = f.iter().flat_map(|(_, b)| b.clone()).collect();
        let blobs: Vec<_> = f
            .iter()
            .map(|(k, b)| (*k, hasher.id(b), b.len() as u32))
            .collect();
        let (c, payload) = compress_frame(&joined, Some(3));
        w.add_frame(c, &payload, &blobs);
        raws.extend(f.iter().map(|(_, b)| b.clone()));
    }
    let (id, bytes, entries) = w.finish();
    assert_eq!(Id::of(&bytes), id);
    (bytes, entries, raws)
}

#[test]
fn framed_pack_round_trip_plain_and_sealed() {
    use crate::crypto::{Cipher, Keys};
    use crate::sealing::Sealing;
    for keys in [
        None,
        Some(std::sync::Arc::new(Keys::fixed(Cipher::Aes256Gcm))),
    ] {
        let sealing = match &keys {
            Some(k) => Sealing::encrypted(k.clone()),
            None => Sealing::plain(),
        }
        .with_frames(true);
        let (bytes, entries, raws) = framed_sample(keys.clone());
        assert_eq!(&bytes[8..12], &FRAMED_PACK_VERSION.to_le_bytes());
        // The three blobs of the first frame share its offset and stored bytes.
        assert_eq!(entries[0].offset, entries[2].offset);
        assert_eq!(entries[1].frame.unwrap().start, entries[0].raw_len);
        let opened = sealing.open_pack(&bytes).unwrap();
        assert_eq!(opened.len(), raws.len());
        for ((e, raw), want) in opened.iter().zip(&raws) {
            assert_eq!(raw.as_ref().unwrap(), want, "{e:?}");
        }
        assert_eq!(opened.iter().map(|(e, _)| *e).collect::<Vec<_>>(), entries);
        // A flipped byte in the first frame damages its three blobs (sealed: it no longer
        // authenticates; unencrypted: zstd's checksum fails) and nothing in other frames.
        let mut bad = bytes.clone();
        bad[(entries[0].offset + u64::from(entries[0].stored_len) / 2) as usize] ^= 0x10;
        let opened = sealing.open_pack(&bad).unwrap();
        let damaged: Vec<bool> = opened.iter().map(|(_, r)| r.is_err()).collect();
        assert_eq!(damaged, [true, true, true, false, false]);
        // Compressed frames are much smaller than the blobs laid end to end.
        let raw_total: usize = raws.iter().map(Vec::len).sum();
        assert!(
            bytes.len() < raw_total / 2,
            "{} of {raw_total}",
            bytes.len()
        );
    }
}

#[test]
fn cache_entries_round_trip_with_their_frames() {
    let (_, mut entries, _) = framed_sample(None);
    // A frame kept raw: its blobs' stored length is the frame's, not theirs.
    let mut w = PackWriter::framed(None);
    let raw = vec![9u8; 300];
    w.add_frame(
        Compression::None,
        &raw,
        &[
            (BlobKind::Data, Id::of(&raw[..100]), 100),
            (BlobKind::Data, Id::of(&raw[100..]), 200),
        ],
    );
    entries.extend(w.finish().2);
    let (_, _, alone, _) = sample();
    entries.extend(alone);
    for e in entries {
        let mut buf = Vec::new();
        e.encode_cached(&mut buf);
        assert_eq!(BlobEntry::decode_cached(&mut Reader::new(&buf)).unwrap(), e);
    }
}

#[test]
fn framed_index_round_trip() {
    use crate::index_file::{PackRecord, decode_index, encode_index};
    let (bytes, entries, _) = framed_sample(None);
    let packs = vec![PackRecord {
        id: Id::of(&bytes),
        len: bytes.len() as u64,
        blobs: entries,
    }];
    let encoded = encode_index(&packs);
    assert_eq!(&encoded[8..12], &2u32.to_le_bytes());
    assert_eq!(decode_index(&encoded).unwrap(), packs);
    // A frame reaching past its pack is refused.
    let mut short = packs.clone();
    short[0].len = 100;
    assert!(decode_index(&encode_index(&short)).is_err());
}

#[test]
fn an_oversized_chunk_entry_is_refused_where_it_is_read() {
    let (_, _, mut entries, _) = sample();
    entries[0].raw_len = MAX_CHUNK_LEN + 1;
    let mut buf = Vec::new();
    entries[0].encode_into(&mut buf);
    assert!(BlobEntry::decode_from(&mut Reader::new(&buf)).is_err());
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes: Vec<u8>) {
        let _ = decode_pack(&bytes);
        let _ = decode_framed_directory(&bytes, 1 << 20, None);
    }

    #[test]
    fn decoder_survives_mutation(pos: usize, val: u8) {
        let (_, mut bytes, _, _) = sample();
        let i = pos % bytes.len();
        bytes[i] = val;
        let _ = decode_pack(&bytes);
    }
}

#[test]
fn a_large_frame_is_compressed_with_a_window_over_all_of_it() {
    // 3 MiB of noise twice: the second copy is 3 MiB back, beyond level 3's own 2 MiB window.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let raw = [noise.clone(), noise].concat();
    let (c, payload) = compress_frame(&raw, Some(3));
    assert_eq!(c, Compression::Zstd);
    assert!(payload.len() < (3 << 20) + (256 << 10), "{}", payload.len());
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    assert_eq!(d.decompress(&payload, raw.len()).unwrap(), raw);
}
