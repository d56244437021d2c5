//! Compression, and the checks that turn stored bytes into verified raw blobs.

use std::cell::RefCell;

use super::{BlobEntry, BlobKind, Compression, MAX_BLOB_LEN, MAX_CHUNK_LEN};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::id::IdHasher;

thread_local! {
    /// One zstd compression context per thread, level, checksum flag and window: creating a
    /// context costs more than compressing a small chunk.
    static COMPRESSOR: RefCell<Option<(CompressorKey, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Level, checksum flag and window log (0: the level's own) of a compression context.
type CompressorKey = (i32, bool, u32);

/// The window (log2 bytes) that lets zstd match across the whole of a frame of `len` bytes,
/// where the level's own window (2 MiB at level 3 for large inputs) is smaller; 0 (the level's
/// own) for inputs it covers. At most 16 MiB: a reader needs the window in memory anyway, as
/// it holds the whole frame.
fn window_log(len: usize) -> u32 {
    const LEVEL_WINDOW_LOG: u32 = 21;
    let needed = usize::BITS - len.saturating_sub(1).leading_zeros();
    if needed <= LEVEL_WINDOW_LOG {
        0
    } else {
        needed.min(24)
    }
}

fn zstd_compress(raw: &[u8], level: i32, checksum: bool) -> std::io::Result<Vec<u8>> {
    let key = (level, checksum, window_log(raw.len()));
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(checksum)?;
            c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(key.2))?;
            *slot = Some((key, c));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

fn zstd_decompress(stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(stored, raw_len),
            None => zstd::bulk::decompress(stored, raw_len),
        }
    })
}

/// Compresses a blob's raw bytes; keeps them raw when compression would not shrink them.
pub fn compress(raw: &[u8], zstd_level: Option<i32>) -> (Compression, Vec<u8>) {
    compress_with(raw, zstd_level, false)
}

/// Compresses a frame's raw bytes (format version 3) like [`compress`], with zstd's content
/// checksum (4 bytes a frame), so that a damaged unencrypted frame is found by decompressing
/// it, even without the index's ids.
pub fn compress_frame(raw: &[u8], zstd_level: Option<i32>) -> (Compression, Vec<u8>) {
    compress_with(raw, zstd_level, true)
}

fn compress_with(raw: &[u8], zstd_level: Option<i32>, checksum: bool) -> (Compression, Vec<u8>) {
    if let Some(level) = zstd_level
        && let Ok(z) = zstd_compress(raw, level, checksum)
        && z.len() < raw.len()
    {
        return (Compression::Zstd, z);
    }
    (Compression::None, raw.to_vec())
}

/// Turns a blob's stored bytes back into raw bytes and checks them against the blob's id, in
/// an unencrypted repository (see `Sealing` for both kinds).
pub fn open_blob(entry: &BlobEntry, stored: &[u8]) -> Result<Vec<u8>> {
    check_plain(entry, stored)?;
    decode_payload(entry, stored, &IdHasher::plain())
}

/// Verifies a blob like [`open_blob`] without keeping its raw bytes.
pub fn verify_blob(entry: &BlobEntry, stored: &[u8]) -> Result<u32> {
    check_plain(entry, stored)?;
    verify_payload(entry, stored, &IdHasher::plain())
}

fn check_plain(entry: &BlobEntry, stored: &[u8]) -> Result<()> {
    check_stored(entry, stored, None)
}

/// Checks that a blob's entry names `cipher` (the repository's; `None`: unencrypted) and that
/// `stored` has the length it gives.
pub(crate) fn check_stored(entry: &BlobEntry, stored: &[u8], cipher: Option<Cipher>) -> Result<()> {
    if entry.cipher != cipher {
        return Err(Error::corrupt(
            blob_name(entry),
            match cipher {
                Some(_) => "is not sealed, in an encrypted repository",
                None => "is sealed, in an unencrypted repository",
            },
        ));
    }
    if stored.len() != entry.stored_len as usize {
        return Err(Error::corrupt(
            blob_name(entry),
            format!(
                "{} stored bytes, expected {}",
                stored.len(),
                entry.stored_len
            ),
        ));
    }
    Ok(())
}

pub(crate) fn blob_name(entry: &BlobEntry) -> String {
    format!("{} {}", entry.kind.name(), entry.id.short())
}

/// Decompresses a blob's payload (its stored bytes, or what unsealing them gave) and checks
/// the raw bytes against the blob's id. This is the one place where blob contents are
/// verified; every reader goes through it, or through [`decode_frame`] and [`blob_in_frame`]
/// when it reads several blobs of one frame.
pub(crate) fn decode_payload(
    entry: &BlobEntry,
    payload: &[u8],
    hasher: &IdHasher,
) -> Result<Vec<u8>> {
    let raw = decode_frame(entry, payload)?;
    if entry.frame.is_some() {
        return blob_in_frame(entry, &raw, hasher);
    }
    if hasher.id(&raw) != entry.id {
        return Err(Error::corrupt(
            blob_name(entry),
            "contents do not match its id",
        ));
    }
    Ok(raw)
}

/// The raw bytes of what a blob is stored in (its frame, or the blob alone) from the payload:
/// decompressed and exactly as long as the entry says. Not checked against any id yet.
pub(crate) fn decode_frame(entry: &BlobEntry, payload: &[u8]) -> Result<Vec<u8>> {
    let what = || blob_name(entry);
    // Chunks are at most 16 MiB (the largest chunker maximum) and frames at most 1 GiB; a
    // bigger claim is hostile and must not make us allocate it.
    if entry.kind == BlobKind::Data && entry.raw_len > MAX_CHUNK_LEN {
        return Err(Error::corrupt(
            what(),
            format!("claims {} raw bytes, more than any chunk", entry.raw_len),
        ));
    }
    let want = entry.frame_len();
    if want > MAX_BLOB_LEN {
        return Err(Error::corrupt(
            what(),
            format!("its frame claims {want} raw bytes, more than any frame"),
        ));
    }
    let raw = match entry.compression {
        Compression::None => payload.to_vec(),
        Compression::Zstd => {
            one_frame(entry, payload)?;
            zstd_decompress(payload, want as usize)
                .map_err(|e| Error::corrupt(what(), format!("does not decompress: {e}")))?
        }
    };
    if raw.len() != want as usize {
        return Err(Error::corrupt(
            what(),
            format!("{} raw bytes, expected {want}", raw.len()),
        ));
    }
    Ok(raw)
}

/// The blob `entry` cut out of its frame's raw bytes (as [`decode_frame`] gave them), checked
/// against its id.
pub(crate) fn blob_in_frame(entry: &BlobEntry, frame: &[u8], hasher: &IdHasher) -> Result<Vec<u8>> {
    blob_slice(entry, frame, hasher).map(<[u8]>::to_vec)
}

/// Like [`blob_in_frame`], without copying.
pub(crate) fn blob_slice<'f>(
    entry: &BlobEntry,
    frame: &'f [u8],
    hasher: &IdHasher,
) -> Result<&'f [u8]> {
    let start = entry.frame.map_or(0, |f| f.start) as usize;
    let blob = frame
        .get(start..start.saturating_add(entry.raw_len as usize))
        .ok_or_else(|| Error::corrupt(blob_name(entry), "lies outside its frame"))?;
    if hasher.id(blob) != entry.id {
        return Err(Error::corrupt(
            blob_name(entry),
            "contents do not match its id",
        ));
    }
    Ok(blob)
}

/// A compressed payload is exactly one zstd frame (pack.md): zstd would also decode frames
/// laid end to end, and a blob must have one encoding.
fn one_frame(entry: &BlobEntry, payload: &[u8]) -> Result<()> {
    match zstd::zstd_safe::find_frame_compressed_size(payload) {
        Ok(n) if n == payload.len() => Ok(()),
        _ => Err(Error::corrupt(
            blob_name(entry),
            "its stored bytes are not exactly one zstd frame",
        )),
    }
}

/// Verifies a payload like [`decode_payload`] without keeping its raw bytes: decompresses into
/// a per-thread buffer and hashes that. Returns the raw length. For audits that read
/// everything.
pub(crate) fn verify_payload(entry: &BlobEntry, payload: &[u8], hasher: &IdHasher) -> Result<u32> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    if entry.compression == Compression::None
        || entry.kind != BlobKind::Data
        || entry.raw_len > MAX_CHUNK_LEN
        || entry.frame.is_some()
    {
        return decode_payload(entry, payload, hasher).map(|raw| raw.len() as u32);
    }
    let what = || blob_name(entry);
    one_frame(entry, payload)?;
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        buf.reserve(entry.raw_len as usize);
        let n = DECOMPRESSOR
            .with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new()?);
                }
                match slot.as_mut() {
                    Some(d) => d.decompress_to_buffer(payload, &mut *buf),
                    None => Err(std::io::Error::other("no zstd context")),
                }
            })
            .map_err(|e| Error::corrupt(what(), format!("does not decompress: {e}")))?;
        if n != entry.raw_len as usize {
            return Err(Error::corrupt(
                what(),
                format!("{n} raw bytes, expected {}", entry.raw_len),
            ));
        }
        if hasher.id(&buf) != entry.id {
            return Err(Error::corrupt(what(), "contents do not match its id"));
        }
        Ok(entry.raw_len)
    })
}
