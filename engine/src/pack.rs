//! Pack files: many compressed blobs in one repository file, with a directory at the end.
//!
//! Layout (byte-exact description in `format-spec/pack.md`):
//!
//! ```text
//! "CAIRNPAK" version:u32 flags:u32                       preamble, 16 bytes
//! ( blob header (44 bytes) stored bytes )*               the blobs
//! "CAIRNDIR" count:u32 entry(52 bytes)*                  the directory
//! dir_len:u32 "CAIRNEND"                                 the trailer, 12 bytes
//! ```
//!
//! Every blob carries its own header, so a pack can be read front to back without its
//! directory, and the directory can be checked against the blobs. A pack is named by the
//! BLAKE3 digest of all its bytes.
//!
//! This module owns the encoding only: it never touches storage.

use std::cell::RefCell;

use std::sync::Arc;

use crate::crypto::{Cipher, Keys};
use crate::error::{Error, Result};
use crate::id::{Id, IdHasher};
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Pack format version of unencrypted repositories (format version 1).
pub const PACK_VERSION: u32 = 1;
/// Pack format version of encrypted repositories (format version 2): sealed blobs, a sealed
/// directory (format-spec/encryption.md).
pub const SEALED_PACK_VERSION: u32 = 2;
/// First 8 bytes of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"CAIRNPAK";
const DIR_MAGIC: &[u8; 8] = b"CAIRNDIR";
const END_MAGIC: &[u8; 8] = b"CAIRNEND";
/// Size of the preamble.
pub const PREAMBLE_LEN: u64 = 16;
/// Size of a blob header in a version-1 pack (a sealed blob has no clear header: its epoch and
/// nonce count as stored bytes).
pub const BLOB_HEADER_LEN: u64 = 44;
/// Size of one directory (and index) entry.
pub const ENTRY_LEN: usize = 52;
/// Size of the trailer.
pub const TRAILER_LEN: u64 = 12;
/// Largest blob (raw or stored) a reader accepts; bounds memory on corrupt input.
pub const MAX_BLOB_LEN: u32 = 1 << 30;
/// Largest data chunk a reader accepts (the config allows chunker maxima up to 16 MiB).
pub const MAX_CHUNK_LEN: u32 = 16 << 20;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobKind {
    /// A chunk of file contents.
    Data,
    /// A directory listing.
    Tree,
    /// A sub-list of a long chunk list.
    List,
}

impl BlobKind {
    /// The byte stored on disk.
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 1,
            BlobKind::Tree => 2,
            BlobKind::List => 3,
        }
    }

    /// Parses the stored byte.
    pub fn from_code(b: u8) -> Option<BlobKind> {
        match b {
            1 => Some(BlobKind::Data),
            2 => Some(BlobKind::Tree),
            3 => Some(BlobKind::List),
            _ => None,
        }
    }

    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "chunk",
            BlobKind::Tree => "tree",
            BlobKind::List => "list",
        }
    }
}

/// How a blob's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Raw bytes.
    None,
    /// One zstd frame.
    Zstd,
}

impl Compression {
    /// The byte stored on disk.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }
    fn from_code(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Where a blob is inside its pack, and how it is stored. Shared by pack directories, index
/// files and the local index cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobEntry {
    /// The blob's id: BLAKE3 of its raw bytes.
    pub id: Id,
    /// What it holds.
    pub kind: BlobKind,
    /// How its bytes are stored.
    pub compression: Compression,
    /// The cipher that sealed it, or `None` in an unencrypted repository.
    pub cipher: Option<Cipher>,
    /// Offset of its header from the start of the pack.
    pub offset: u64,
    /// Length of the stored bytes (after the header; a sealed blob's whole length).
    pub stored_len: u32,
    /// Length of the raw bytes.
    pub raw_len: u32,
}

impl BlobEntry {
    /// Appends the 52-byte encoding.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.kind.code());
        out.put_u8(self.compression.code());
        out.put_u8(self.cipher.map_or(0, Cipher::code));
        out.put_u8(0); // reserved
        out.put_u64(self.offset);
        out.put_u32(self.stored_len);
        out.put_u32(self.raw_len);
        out.put_id(&self.id);
    }

    /// Reads the 52-byte encoding.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> DecodeResult<BlobEntry> {
        let (kind, compression, cipher) = decode_kind_bytes(r)?;
        let offset = r.u64()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        let id = r.id()?;
        if stored_len > MAX_BLOB_LEN || raw_len > MAX_BLOB_LEN {
            return Err(Malformed::new(format!("blob {} too large", id.short())));
        }
        if cipher.is_none() && compression == Compression::None && stored_len != raw_len {
            return Err(Malformed::new(format!(
                "uncompressed blob {} has stored length {stored_len} but raw length {raw_len}",
                id.short()
            )));
        }
        if cipher.is_some() && (stored_len as usize) < crate::crypto::BLOB_OVERHEAD {
            return Err(Malformed::new(format!(
                "sealed blob {} of {stored_len} bytes is too short",
                id.short()
            )));
        }
        Ok(BlobEntry {
            id,
            kind,
            compression,
            cipher,
            offset,
            stored_len,
            raw_len,
        })
    }

    /// Bytes of its clear header: 44 in a version-1 pack, none for a sealed blob.
    pub fn header_len(&self) -> u64 {
        if self.cipher.is_some() {
            0
        } else {
            BLOB_HEADER_LEN
        }
    }

    /// Bytes the blob takes in its pack, header included.
    pub fn pack_len(&self) -> u64 {
        self.header_len() + u64::from(self.stored_len)
    }

    /// Offset one past the blob's last stored byte.
    /// Saturates instead of overflowing, so that a corrupt offset compares as out of range.
    pub fn end(&self) -> u64 {
        self.offset
            .saturating_add(self.header_len())
            .saturating_add(u64::from(self.stored_len))
    }
}

fn decode_kind_bytes(r: &mut Reader<'_>) -> DecodeResult<(BlobKind, Compression, Option<Cipher>)> {
    let kind = r.u8()?;
    let kind =
        BlobKind::from_code(kind).ok_or_else(|| Malformed::new(format!("blob kind {kind}")))?;
    let comp = r.u8()?;
    let comp = Compression::from_code(comp)
        .ok_or_else(|| Malformed::new(format!("unknown compression {comp}")))?;
    let enc = r.u8()?;
    let cipher = match enc {
        0 => None,
        c => Some(
            Cipher::from_code(c)
                .ok_or_else(|| Malformed::new(format!("unknown encryption {c}")))?,
        ),
    };
    let reserved = r.u8()?;
    if reserved != 0 {
        return Err(Malformed::new(format!(
            "reserved byte is {reserved}, not 0"
        )));
    }
    Ok((kind, comp, cipher))
}

thread_local! {
    /// One zstd compression context per thread and level: creating a context costs more than
    /// compressing a small chunk.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn zstd_compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
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
    if let Some(level) = zstd_level
        && let Ok(z) = zstd_compress(raw, level)
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
/// verified; every reader goes through it.
pub(crate) fn decode_payload(
    entry: &BlobEntry,
    payload: &[u8],
    hasher: &IdHasher,
) -> Result<Vec<u8>> {
    let what = || blob_name(entry);
    // Chunks are at most 16 MiB (the largest chunker maximum); a bigger claim is hostile and
    // must not make us allocate it.
    if entry.kind == BlobKind::Data && entry.raw_len > MAX_CHUNK_LEN {
        return Err(Error::corrupt(
            what(),
            format!("claims {} raw bytes, more than any chunk", entry.raw_len),
        ));
    }
    let raw = match entry.compression {
        Compression::None => payload.to_vec(),
        Compression::Zstd => {
            one_frame(entry, payload)?;
            zstd_decompress(payload, entry.raw_len as usize)
                .map_err(|e| Error::corrupt(what(), format!("does not decompress: {e}")))?
        }
    };
    if raw.len() != entry.raw_len as usize {
        return Err(Error::corrupt(
            what(),
            format!("{} raw bytes, expected {}", raw.len(), entry.raw_len),
        ));
    }
    if hasher.id(&raw) != entry.id {
        return Err(Error::corrupt(what(), "contents do not match its id"));
    }
    Ok(raw)
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

/// Builds a pack in memory: version 1, or version 2 with every blob and the directory sealed.
#[derive(Debug)]
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    keys: Option<Arc<Keys>>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    /// An empty version-1 pack.
    pub fn new() -> PackWriter {
        Self::with_keys(None)
    }

    /// An empty pack: sealed under `keys`' current epoch if there are keys.
    pub fn with_keys(keys: Option<Arc<Keys>>) -> PackWriter {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(PACK_MAGIC);
        buf.put_u32(if keys.is_some() {
            SEALED_PACK_VERSION
        } else {
            PACK_VERSION
        });
        buf.put_u32(0);
        PackWriter {
            buf,
            entries: Vec::new(),
            keys,
        }
    }

    /// Appends one blob, already compressed (its payload).
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: Id,
        raw_len: u32,
        compression: Compression,
        payload: &[u8],
    ) {
        let offset = self.buf.len() as u64;
        let cipher = match &self.keys {
            None => {
                self.buf.put_u8(kind.code());
                self.buf.put_u8(compression.code());
                self.buf.put_u8(0);
                self.buf.put_u8(0);
                self.buf.put_u32(payload.len() as u32);
                self.buf.put_u32(raw_len);
                self.buf.put_id(&id);
                self.buf.extend_from_slice(payload);
                None
            }
            Some(keys) => {
                let (epoch, aead) = keys.current();
                let aad = crate::crypto::blob_aad(kind.code(), compression.code(), raw_len, &id.0);
                crate::crypto::seal_blob(aead, epoch, &aad, payload, &mut self.buf);
                Some(keys.cipher())
            }
        };
        let header = if cipher.is_some() { 0 } else { BLOB_HEADER_LEN };
        self.entries.push(BlobEntry {
            id,
            kind,
            compression,
            cipher,
            offset,
            stored_len: (self.buf.len() as u64 - offset - header) as u32,
            raw_len,
        });
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the directory and trailer; returns the pack id, its bytes and its entries.
    pub fn finish(mut self) -> (Id, Vec<u8>, Vec<BlobEntry>) {
        let mut dir = Vec::with_capacity(12 + ENTRY_LEN * self.entries.len());
        dir.extend_from_slice(DIR_MAGIC);
        dir.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            e.encode_into(&mut dir);
        }
        if let Some(keys) = &self.keys {
            let (epoch, aead) = keys.current();
            dir = crate::crypto::seal_object(
                aead,
                keys.cipher(),
                epoch,
                crate::crypto::Sealed::PackDirectory,
                "",
                &dir,
            );
        }
        self.buf.extend_from_slice(&dir);
        self.buf.put_u32(dir.len() as u32);
        self.buf.extend_from_slice(END_MAGIC);
        (Id::of(&self.buf), self.buf, self.entries)
    }
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
    let mut r = Reader::new(dir);
    if r.take(8)? != DIR_MAGIC {
        return Err(Malformed::new("pack directory magic is wrong"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
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

    proptest! {
        #[test]
        fn decoder_never_panics(bytes: Vec<u8>) {
            let _ = decode_pack(&bytes);
        }

        #[test]
        fn decoder_survives_mutation(pos: usize, val: u8) {
            let (_, mut bytes, _, _) = sample();
            let i = pos % bytes.len();
            bytes[i] = val;
            let _ = decode_pack(&bytes);
        }
    }
}
