//! Pack preambles, directories and trailers: in versions 1 and 2 one 52-byte entry per blob,
//! in version 3 a compact list of frames and their blobs (shared with index files).

use super::{
    BLOB_HEADER_LEN, BlobEntry, BlobKind, Compression, DIR_MAGIC, END_MAGIC, ENTRY_LEN, FramePart,
    MAX_BLOB_LEN, PACK_MAGIC, PACK_VERSION, PREAMBLE_LEN, TRAILER_LEN, check_chunk_len,
    decode_kind_bytes,
};
use crate::crypto::Cipher;
use crate::id::Id;
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Checks a blob's 44-byte header (as read from the pack) against its directory entry.
pub fn check_blob_header(entry: &BlobEntry, header: &[u8]) -> DecodeResult<()> {
    let mut r = Reader::new(header);
    let (kind, compression, cipher) = decode_kind_bytes(&mut r)?;
    if cipher.is_some() {
        return Err(Malformed::new("a version-1 blob header names a cipher"));
    }
    let stored_len = r.u32()?;
    let raw_len = r.u32()?;
    let id = r.id()?;
    if (kind, compression, stored_len, raw_len, id)
        != (
            entry.kind,
            entry.compression,
            entry.stored_len,
            entry.raw_len,
            entry.id,
        )
    {
        return Err(Malformed::new(format!(
            "blob header at offset {} does not match the directory entry for {}",
            entry.offset,
            entry.id.short()
        )));
    }
    Ok(())
}

/// Reads a pack's trailer (its last 12 bytes): the length of the directory before it.
pub fn decode_trailer(trailer: &[u8], pack_len: u64) -> DecodeResult<u32> {
    let mut r = Reader::new(trailer);
    let dir_len = r.u32()?;
    if r.take(8)? != END_MAGIC {
        return Err(Malformed::new("pack trailer magic is wrong"));
    }
    if u64::from(dir_len) + TRAILER_LEN + PREAMBLE_LEN > pack_len || dir_len < 12 {
        return Err(Malformed::new(format!(
            "directory length {dir_len} does not fit in a pack of {pack_len} bytes"
        )));
    }
    Ok(dir_len)
}

/// Decodes a pack directory; `dir_start` is its offset in the pack. Checks that the blobs it
/// lists lie, in order and without overlap, between the preamble and the directory.
/// Every entry must name `cipher` (`None`: unsealed).
pub fn decode_directory(
    dir: &[u8],
    dir_start: u64,
    cipher: Option<Cipher>,
) -> DecodeResult<Vec<BlobEntry>> {
    let mut r = after_magic(dir)?;
    let count = r.u32()? as usize;
    if count > r.remaining() / ENTRY_LEN {
        return Err(Malformed::new(format!(
            "directory claims {count} entries in {} bytes",
            r.remaining()
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut next = PREAMBLE_LEN;
    for _ in 0..count {
        let e = BlobEntry::decode_from(&mut r)?;
        if e.cipher != cipher {
            return Err(Malformed::new(format!(
                "blob {} is {}sealed, unlike the repository",
                e.id.short(),
                if e.cipher.is_some() { "" } else { "not " }
            )));
        }
        if e.offset != next {
            return Err(Malformed::new(format!(
                "blob {} at offset {} but the previous blob ends at {next}",
                e.id.short(),
                e.offset
            )));
        }
        next = e.end();
        entries.push(e);
    }
    r.expect_end()?;
    if next != dir_start {
        return Err(Malformed::new(format!(
            "blobs end at {next} but the directory starts at {dir_start}"
        )));
    }
    Ok(entries)
}

/// Checks the preamble (first 16 bytes) of a pack of `version` (1, or 2 when sealed).
pub fn check_preamble(preamble: &[u8], version: u32) -> DecodeResult<()> {
    let mut r = Reader::new(preamble);
    if r.take(8)? != PACK_MAGIC {
        return Err(Malformed::new("not a pack: magic is wrong"));
    }
    let found = r.u32()?;
    if found != version {
        return Err(Malformed::new(format!(
            "pack version {found}, where this repository has version {version}"
        )));
    }
    let flags = r.u32()?;
    if flags != 0 {
        return Err(Malformed::new(format!("unknown pack flags {flags:#x}")));
    }
    Ok(())
}

/// Decodes the directory of a whole pack held in memory and checks every blob header against
/// it (not the blob contents: see [`open_blob`]).
pub fn decode_pack(pack: &[u8]) -> DecodeResult<Vec<BlobEntry>> {
    let len = pack.len() as u64;
    if len < PREAMBLE_LEN + TRAILER_LEN {
        return Err(Malformed::new(format!("pack of {len} bytes is too short")));
    }
    check_preamble(&pack[..PREAMBLE_LEN as usize], PACK_VERSION)?;
    let dir_len = decode_trailer(&pack[pack.len() - TRAILER_LEN as usize..], len)?;
    let dir_start = len - TRAILER_LEN - u64::from(dir_len);
    let entries = decode_directory(
        &pack[dir_start as usize..(len - TRAILER_LEN) as usize],
        dir_start,
        None,
    )?;
    for e in &entries {
        let h = e.offset as usize;
        check_blob_header(e, &pack[h..h + BLOB_HEADER_LEN as usize])?;
    }
    Ok(entries)
}

/// Appends the frames of a version-3 pack: `entries` in pack order, the blobs of one frame
/// adjacent and sharing its offset. Written in index files with each blob's id, and in pack
/// directories (after their magic) without: a pack's blobs are named by hashing them, and
/// the index files are where ids are looked up, so a third copy of every id would only cost
/// space (32 bytes per chunk, about 6% of a repository of well-compressed database pages).
///
/// ```text
/// frames:varint ( compression:u8 stored_len:varint blobs:varint ( kind:u8 raw_len:varint [id] )* )*
/// ```
pub(crate) fn encode_frames(entries: &[BlobEntry], ids: bool, out: &mut Vec<u8>) {
    let frames = frames_of(entries);
    out.put_varint(frames.len() as u64);
    for f in frames {
        out.put_u8(f[0].compression.code());
        out.put_varint(u64::from(f[0].stored_len));
        out.put_varint(f.len() as u64);
        for b in f {
            out.put_u8(b.kind.code());
            out.put_varint(u64::from(b.raw_len));
            if ids {
                out.put_id(&b.id);
            }
        }
    }
}

/// `entries` split into their frames (runs sharing an offset).
pub(crate) fn frames_of(entries: &[BlobEntry]) -> Vec<&[BlobEntry]> {
    entries.chunk_by(|a, b| a.offset == b.offset).collect()
}

/// Reads what [`encode_frames`] wrote, for frames laid end to end from `first`; returns the
/// entries and the offset where the last frame ends. Every blob must name `cipher`. Without
/// `ids`, every entry's id is zero: the caller learns it by hashing the blob.
pub(crate) fn decode_frames(
    r: &mut Reader<'_>,
    first: u64,
    cipher: Option<Cipher>,
    ids: bool,
) -> DecodeResult<(Vec<BlobEntry>, u64)> {
    // Smallest encoding of one blob: kind, a one-byte length, the id if any.
    let min_blob = if ids { 34 } else { 2 };
    let frames = r.count(3 + min_blob)?;
    let mut entries = Vec::new();
    let mut offset = first;
    for _ in 0..frames {
        let code = r.u8()?;
        let compression = Compression::from_code(code)
            .ok_or_else(|| Malformed::new(format!("unknown compression {code}")))?;
        let stored_len = small_len(r.varint()?, "frame")?;
        let blobs = r.count(min_blob)?;
        if blobs == 0 {
            return Err(Malformed::new(format!(
                "the frame at {offset} holds no blob"
            )));
        }
        let first_blob = entries.len();
        let mut frame_len = 0u64;
        for _ in 0..blobs {
            let code = r.u8()?;
            let kind = BlobKind::from_code(code)
                .ok_or_else(|| Malformed::new(format!("blob kind {code}")))?;
            let raw_len = small_len(r.varint()?, "blob")?;
            let id = if ids { r.id()? } else { Id([0; 32]) };
            check_chunk_len(kind, raw_len, &id)?;
            entries.push(BlobEntry {
                id,
                kind,
                compression,
                cipher,
                offset,
                stored_len,
                raw_len,
                frame: Some(FramePart {
                    start: frame_len as u32,
                    frame_len: 0,
                }),
            });
            frame_len += u64::from(raw_len);
            if frame_len > u64::from(MAX_BLOB_LEN) {
                return Err(Malformed::new(format!(
                    "the frame at {offset} holds more than {MAX_BLOB_LEN} raw bytes"
                )));
            }
        }
        let frame_len = frame_len as u32;
        for e in &mut entries[first_blob..] {
            if let Some(f) = &mut e.frame {
                f.frame_len = frame_len;
            }
        }
        match cipher {
            None if compression == Compression::None && stored_len != frame_len => {
                return Err(Malformed::new(format!(
                    "the uncompressed frame at {offset} has {stored_len} stored bytes but \
                     {frame_len} raw bytes"
                )));
            }
            Some(_) if (stored_len as usize) < crate::crypto::BLOB_OVERHEAD => {
                return Err(Malformed::new(format!(
                    "the sealed frame at {offset} of {stored_len} bytes is too short"
                )));
            }
            _ => {}
        }
        if stored_len == 0 {
            return Err(Malformed::new(format!("the frame at {offset} is empty")));
        }
        offset += u64::from(stored_len);
    }
    Ok((entries, offset))
}

fn small_len(v: u64, what: &str) -> DecodeResult<u32> {
    u32::try_from(v)
        .ok()
        .filter(|n| *n <= MAX_BLOB_LEN)
        .ok_or_else(|| Malformed::new(format!("a {what} of {v} bytes is too large")))
}

/// Decodes the directory of a version-3 pack (opened, if it was sealed); `dir_start` is its
/// offset in the pack. Checks that the frames lie end to end between the preamble and the
/// directory. The directory gives no ids: every entry's id is zero (see [`encode_frames`]).
pub fn decode_framed_directory(
    dir: &[u8],
    dir_start: u64,
    cipher: Option<Cipher>,
) -> DecodeResult<Vec<BlobEntry>> {
    let mut r = after_magic(dir)?;
    let (entries, end) = decode_frames(&mut r, PREAMBLE_LEN, cipher, false)?;
    r.expect_end()?;
    if end != dir_start {
        return Err(Malformed::new(format!(
            "frames end at {end} but the directory starts at {dir_start}"
        )));
    }
    Ok(entries)
}

/// A reader of a pack directory's body, past its magic.
fn after_magic(dir: &[u8]) -> DecodeResult<Reader<'_>> {
    let mut r = Reader::new(dir);
    if r.take(8)? != DIR_MAGIC {
        return Err(Malformed::new("pack directory magic is wrong"));
    }
    Ok(r)
}
