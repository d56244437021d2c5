//! Index files (format-spec/index.md): which blobs each pack holds, as encoded in the
//! repository's `index/` objects. Bytes and types only; reading and writing them, and the local
//! cache derived from them, are the repository layer's (`repo/index.rs`).

use crate::crypto::Cipher;
use crate::id::Id;
use crate::pack::{BlobEntry, ENTRY_LEN, PREAMBLE_LEN, decode_frames, encode_frames};
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Index file format version of repositories of format versions 1 and 2: 52-byte entries.
pub const INDEX_VERSION: u32 = 1;
/// Index file format version of repositories of format version 3: packs of frames, listed as
/// their directories list them.
pub const FRAMED_INDEX_VERSION: u32 = 2;
const INDEX_MAGIC: &[u8; 8] = b"CAIRNIDX";

/// One pack as an index file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack's id (BLAKE3 of its bytes).
    pub id: Id,
    /// Its size in bytes.
    pub len: u64,
    /// Its blobs, in pack order.
    pub blobs: Vec<BlobEntry>,
}

impl PackRecord {
    /// Whether the pack holds frames (version 3).
    pub fn is_framed(&self) -> bool {
        self.blobs.first().is_some_and(|b| b.frame.is_some())
    }
}

/// Encodes an index file: version 2 if its packs hold frames, else version 1.
pub fn encode_index(packs: &[PackRecord]) -> Vec<u8> {
    if packs.iter().any(PackRecord::is_framed) {
        return encode_framed_index(packs);
    }
    let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
    let mut out = Vec::with_capacity(20 + packs.len() * 44 + blobs * ENTRY_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.put_u32(INDEX_VERSION);
    out.put_u32(0);
    out.put_u32(packs.len() as u32);
    for p in packs {
        out.put_id(&p.id);
        out.put_u64(p.len);
        out.put_u32(p.blobs.len() as u32);
        for b in &p.blobs {
            b.encode_into(&mut out);
        }
    }
    out
}

fn encode_framed_index(packs: &[PackRecord]) -> Vec<u8> {
    let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
    let mut out = Vec::with_capacity(20 + packs.len() * 48 + blobs * 40);
    out.extend_from_slice(INDEX_MAGIC);
    out.put_u32(FRAMED_INDEX_VERSION);
    out.put_u32(0);
    out.put_varint(packs.len() as u64);
    for p in packs {
        out.put_id(&p.id);
        out.put_varint(p.len);
        out.put_u8(
            p.blobs
                .first()
                .and_then(|b| b.cipher)
                .map_or(0, Cipher::code),
        );
        encode_frames(&p.blobs, true, &mut out);
    }
    out
}

/// Decodes an index file, checking that every entry lies inside its pack.
pub fn decode_index(bytes: &[u8]) -> DecodeResult<Vec<PackRecord>> {
    let mut r = Reader::new(bytes);
    if r.take(8)? != INDEX_MAGIC {
        return Err(Malformed::new("not an index file: magic is wrong"));
    }
    let version = r.u32()?;
    if version != INDEX_VERSION && version != FRAMED_INDEX_VERSION {
        return Err(Malformed::new(format!(
            "index version {version}, this build reads {INDEX_VERSION} and {FRAMED_INDEX_VERSION}"
        )));
    }
    let flags = r.u32()?;
    if flags != 0 {
        return Err(Malformed::new(format!("unknown index flags {flags:#x}")));
    }
    if version == FRAMED_INDEX_VERSION {
        return decode_framed_index(r);
    }
    let count = r.u32()? as usize;
    if count > r.remaining() / 44 {
        return Err(Malformed::new(format!("{count} packs cannot fit")));
    }
    let mut packs = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.id()?;
        let len = r.u64()?;
        let n = r.u32()? as usize;
        if n > r.remaining() / ENTRY_LEN {
            return Err(Malformed::new(format!(
                "pack {} claims {n} blobs that cannot fit",
                id.short()
            )));
        }
        let mut blobs = Vec::with_capacity(n);
        for _ in 0..n {
            let b = BlobEntry::decode_from(&mut r)?;
            if b.offset < PREAMBLE_LEN || b.end() > len {
                return Err(Malformed::new(format!(
                    "blob {} at {}..{} lies outside pack {} of {len} bytes",
                    b.id.short(),
                    b.offset,
                    b.end(),
                    id.short()
                )));
            }
            blobs.push(b);
        }
        packs.push(PackRecord { id, len, blobs });
    }
    r.expect_end()?;
    Ok(packs)
}

fn decode_framed_index(mut r: Reader<'_>) -> DecodeResult<Vec<PackRecord>> {
    let count = r.count(32 + 1 + 1 + 1)?;
    let mut packs = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.id()?;
        let len = r.varint()?;
        let code = r.u8()?;
        let cipher = match code {
            0 => None,
            c => Some(
                Cipher::from_code(c)
                    .ok_or_else(|| Malformed::new(format!("unknown encryption {c}")))?,
            ),
        };
        let (blobs, end) = decode_frames(&mut r, PREAMBLE_LEN, cipher, true)?;
        if blobs.is_empty() || end > len {
            return Err(Malformed::new(format!(
                "pack {} of {len} bytes lists frames up to {end}",
                id.short()
            )));
        }
        packs.push(PackRecord { id, len, blobs });
    }
    r.expect_end()?;
    Ok(packs)
}

/// Where a blob is: its pack and its entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding the blob.
    pub pack: Id,
    /// The blob's entry in that pack.
    pub entry: BlobEntry,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pack::{BlobKind, Compression, PackWriter};
    use proptest::prelude::*;

    pub(crate) fn record() -> PackRecord {
        let mut w = PackWriter::new();
        for i in 0..5u8 {
            let raw = vec![i; 100 + usize::from(i)];
            w.add(
                BlobKind::Data,
                Id::of(&raw),
                raw.len() as u32,
                Compression::None,
                &raw,
            );
        }
        let (id, bytes, blobs) = w.finish();
        PackRecord {
            id,
            len: bytes.len() as u64,
            blobs,
        }
    }

    #[test]
    fn index_file_round_trip() {
        let packs = vec![record(), record()];
        assert_eq!(decode_index(&encode_index(&packs)).unwrap(), packs);
        assert_eq!(decode_index(&encode_index(&[])).unwrap(), vec![]);
    }

    #[test]
    fn entry_outside_pack_is_rejected() {
        let mut p = record();
        p.len = 50;
        assert!(decode_index(&encode_index(&[p])).is_err());
        // Found by fuzzing: an offset near 2^64 must not overflow the range check.
        let mut p = record();
        p.blobs[0].offset = u64::MAX - 10;
        assert!(decode_index(&encode_index(&[p])).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes: Vec<u8>) {
            let _ = decode_index(&bytes);
        }
    }
}
