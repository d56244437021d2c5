//! Pack files: many compressed blobs in one repository file, with a directory at the end.
//!
//! Layout (byte-exact description in `format-spec/pack.md`):
//!
//! ```text
//! "CAIRNPAK" version:u32 flags:u32                       preamble, 16 bytes
//! version 1: ( blob header (44 bytes) stored bytes )*    the blobs, each alone
//! version 2: ( sealed blob )*                            the same, each sealed
//! version 3: ( frame )*                                  blobs grouped in frames
//! "CAIRNDIR" ...                                         the directory (sealed in 2 and 3)
//! dir_len:u32 "CAIRNEND"                                 the trailer, 12 bytes
//! ```
//!
//! A frame (version 3) is one zstd frame, or raw bytes, holding several blobs laid end to end,
//! sealed as one unit in an encrypted repository: small chunks compress together (as a whole
//! file would) while each stays addressable by its place in the frame and verifiable by its id.
//! Versions 1 and 2 are the case of one blob per frame. A pack is named by the BLAKE3 digest of
//! all its bytes.
//!
//! This module owns the encoding only: it never touches storage. `codec` turns stored bytes
//! into verified blobs, `writer` builds packs, `directory` reads their directories.

mod codec;
mod directory;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use codec::{
    blob_in_frame, blob_name, blob_slice, check_stored, decode_frame, decode_payload,
    verify_payload,
};
pub use codec::{compress, compress_frame, open_blob, verify_blob};
pub(crate) use directory::frames_of;
pub use directory::{
    check_blob_header, check_preamble, decode_directory, decode_framed_directory, decode_pack,
    decode_trailer,
};
pub(crate) use directory::{decode_frames, encode_frames};
pub use writer::PackWriter;

use crate::crypto::Cipher;
use crate::id::Id;
use crate::wire::{DecodeResult, Malformed, Put, Reader};

/// Pack format version of unencrypted repositories of format version 1.
pub const PACK_VERSION: u32 = 1;
/// Pack format version of encrypted repositories of format version 2: sealed blobs, a sealed
/// directory (format-spec/encryption.md).
pub const SEALED_PACK_VERSION: u32 = 2;
/// Pack format version of repositories of format version 3, plain or sealed: blobs in frames.
pub const FRAMED_PACK_VERSION: u32 = 3;
/// First 8 bytes of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"CAIRNPAK";
const DIR_MAGIC: &[u8; 8] = b"CAIRNDIR";
const END_MAGIC: &[u8; 8] = b"CAIRNEND";
/// Size of the preamble.
pub const PREAMBLE_LEN: u64 = 16;
/// Size of a blob header in a version-1 pack (a sealed blob has no clear header: its epoch and
/// nonce count as stored bytes; a frame has none).
pub const BLOB_HEADER_LEN: u64 = 44;
/// Size of one directory (and index) entry of versions 1 and 2.
pub const ENTRY_LEN: usize = 52;
/// Size of the trailer.
pub const TRAILER_LEN: u64 = 12;
/// Largest blob (raw or stored), and largest frame, a reader accepts; bounds memory on corrupt
/// input.
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
    pub(crate) fn from_code(b: u8) -> Option<Compression> {
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
    /// Where the blob lies in its frame, in a version-3 pack (`offset` and `stored_len` are
    /// then the frame's); `None` for a blob stored alone (versions 1 and 2).
    pub frame: Option<FramePart>,
}

/// A blob's place in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FramePart {
    /// Offset of the blob's first raw byte in the frame's raw bytes.
    pub start: u32,
    /// Length of the frame's raw bytes (the sum of its blobs' raw lengths).
    pub frame_len: u32,
}

impl BlobEntry {
    /// Appends the 52-byte encoding of versions 1 and 2 (which has no frame part).
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
        let e = BlobEntry::decode_fields(r)?;
        e.check_lengths()?;
        Ok(e)
    }

    /// The 52 bytes, unchecked.
    fn decode_fields(r: &mut Reader<'_>) -> DecodeResult<BlobEntry> {
        let (kind, compression, cipher) = decode_kind_bytes(r)?;
        let offset = r.u64()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        let id = r.id()?;
        if stored_len > MAX_BLOB_LEN || raw_len > MAX_BLOB_LEN {
            return Err(Malformed::new(format!("blob {} too large", id.short())));
        }
        check_chunk_len(kind, raw_len, &id)?;
        Ok(BlobEntry {
            id,
            kind,
            compression,
            cipher,
            offset,
            stored_len,
            raw_len,
            frame: None,
        })
    }

    /// Checks the stored length against what the entry says is stored there: the raw bytes
    /// of the blob (or its frame) when unsealed and uncompressed, at least a seal's overhead
    /// when sealed; and that a blob lies inside its frame.
    fn check_lengths(&self) -> DecodeResult<()> {
        let (id, stored_len, raw_len) = (self.id, self.stored_len, self.frame_len());
        if self.cipher.is_none() && self.compression == Compression::None && stored_len != raw_len {
            return Err(Malformed::new(format!(
                "uncompressed blob {} has stored length {stored_len} but raw length {raw_len}",
                id.short()
            )));
        }
        if self.cipher.is_some() && (stored_len as usize) < crate::crypto::BLOB_OVERHEAD {
            return Err(Malformed::new(format!(
                "sealed blob {} of {stored_len} bytes is too short",
                id.short()
            )));
        }
        if let Some(f) = self.frame
            && (u64::from(f.start) + u64::from(self.raw_len) > u64::from(f.frame_len)
                || f.frame_len > MAX_BLOB_LEN)
        {
            return Err(Malformed::new(format!(
                "blob {} lies outside its frame",
                id.short()
            )));
        }
        Ok(())
    }

    /// Appends the local index cache's encoding: the 52 bytes, then the frame part if any.
    pub(crate) fn encode_cached(&self, out: &mut Vec<u8>) {
        self.encode_into(out);
        if let Some(f) = self.frame {
            out.put_u32(f.start);
            out.put_u32(f.frame_len);
        }
    }

    /// Reads what [`BlobEntry::encode_cached`] wrote.
    pub(crate) fn decode_cached(r: &mut Reader<'_>) -> DecodeResult<BlobEntry> {
        let mut e = BlobEntry::decode_fields(r)?;
        if r.remaining() > 0 {
            let start = r.u32()?;
            let frame_len = r.u32()?;
            e.frame = Some(FramePart { start, frame_len });
        }
        e.check_lengths()?;
        Ok(e)
    }

    /// The raw length of the unit it is stored in: its frame's, or its own.
    pub fn frame_len(&self) -> u32 {
        self.frame.map_or(self.raw_len, |f| f.frame_len)
    }

    /// Bytes of its clear header: 44 in a version-1 pack, none for a sealed blob or a frame.
    pub fn header_len(&self) -> u64 {
        if self.cipher.is_some() || self.frame.is_some() {
            0
        } else {
            BLOB_HEADER_LEN
        }
    }

    /// Bytes the blob takes in its pack, header included; for a blob in a frame, its share of
    /// the frame's stored bytes, in proportion to its raw length.
    pub fn pack_len(&self) -> u64 {
        match self.frame {
            Some(f) if f.frame_len > 0 => {
                u64::from(self.stored_len) * u64::from(self.raw_len) / u64::from(f.frame_len)
            }
            _ => self.header_len() + u64::from(self.stored_len),
        }
    }

    /// Offset one past the blob's last stored byte.
    /// Saturates instead of overflowing, so that a corrupt offset compares as out of range.
    pub fn end(&self) -> u64 {
        self.offset
            .saturating_add(self.header_len())
            .saturating_add(u64::from(self.stored_len))
    }
}

pub(crate) fn decode_kind_bytes(
    r: &mut Reader<'_>,
) -> DecodeResult<(BlobKind, Compression, Option<Cipher>)> {
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

/// A data chunk is at most [`MAX_CHUNK_LEN`] bytes; an entry claiming more is refused where it
/// is read, so that `check` and `restore` agree.
pub(crate) fn check_chunk_len(kind: BlobKind, raw_len: u32, id: &Id) -> DecodeResult<()> {
    if kind == BlobKind::Data && raw_len > MAX_CHUNK_LEN {
        return Err(Malformed::new(format!(
            "data chunk {} claims {raw_len} bytes, more than any chunk",
            id.short()
        )));
    }
    Ok(())
}
