//! Building packs in memory.

use std::sync::Arc;

use super::{
    BLOB_HEADER_LEN, BlobEntry, BlobKind, Compression, DIR_MAGIC, END_MAGIC, ENTRY_LEN,
    FRAMED_PACK_VERSION, FramePart, PACK_MAGIC, PACK_VERSION, SEALED_PACK_VERSION, encode_frames,
};
use crate::crypto::Keys;
use crate::id::Id;
use crate::wire::Put;

/// Builds a pack in memory: version 1, version 2 with every blob and the directory sealed, or
/// version 3 with blobs in frames (sealed or not).
#[derive(Debug)]
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    keys: Option<Arc<Keys>>,
    framed: bool,
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

    /// An empty pack of version 1, or of version 2 sealed under `keys`' current epoch.
    pub fn with_keys(keys: Option<Arc<Keys>>) -> PackWriter {
        Self::start(keys, false)
    }

    /// An empty version-3 pack, sealed under `keys`' current epoch if there are keys.
    pub fn framed(keys: Option<Arc<Keys>>) -> PackWriter {
        Self::start(keys, true)
    }

    fn start(keys: Option<Arc<Keys>>, framed: bool) -> PackWriter {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(PACK_MAGIC);
        buf.put_u32(match (framed, keys.is_some()) {
            (true, _) => FRAMED_PACK_VERSION,
            (false, true) => SEALED_PACK_VERSION,
            (false, false) => PACK_VERSION,
        });
        buf.put_u32(0);
        PackWriter {
            buf,
            entries: Vec::new(),
            keys,
            framed,
        }
    }

    /// Whether this pack holds frames (version 3).
    pub fn is_framed(&self) -> bool {
        self.framed
    }

    /// Appends one blob, already compressed (its payload): a frame of its own in version 3.
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: Id,
        raw_len: u32,
        compression: Compression,
        payload: &[u8],
    ) {
        if self.framed {
            return self.add_frame(compression, payload, &[(kind, id, raw_len)]);
        }
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
                crate::crypto::seal_blob(aead, epoch, &aad, payload, true, &mut self.buf);
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
            frame: None,
        });
    }

    /// Appends one frame of a version-3 pack: `payload` is the compressed (or, with
    /// `Compression::None`, raw) concatenation of `blobs`' raw bytes, in order.
    ///
    /// # Panics
    /// In a pack of version 1 or 2, or with no blob: callers choose the writer.
    pub fn add_frame(
        &mut self,
        compression: Compression,
        payload: &[u8],
        blobs: &[(BlobKind, Id, u32)],
    ) {
        assert!(
            self.framed && !blobs.is_empty(),
            "frames belong to version-3 packs"
        );
        let frame_len: u32 = blobs.iter().map(|b| b.2).sum();
        let offset = self.buf.len() as u64;
        let cipher = match &self.keys {
            None => {
                self.buf.extend_from_slice(payload);
                None
            }
            Some(keys) => {
                let (epoch, aead) = keys.current();
                let aad = crate::crypto::frame_aad(compression.code(), frame_len);
                crate::crypto::seal_blob(aead, epoch, &aad, payload, false, &mut self.buf);
                Some(keys.cipher())
            }
        };
        let stored_len = (self.buf.len() as u64 - offset) as u32;
        let mut start = 0;
        for &(kind, id, raw_len) in blobs {
            self.entries.push(BlobEntry {
                id,
                kind,
                compression,
                cipher,
                offset,
                stored_len,
                raw_len,
                frame: Some(FramePart { start, frame_len }),
            });
            start += raw_len;
        }
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
        if self.framed {
            encode_frames(&self.entries, false, &mut dir);
        } else {
            dir.put_u32(self.entries.len() as u32);
            for e in &self.entries {
                e.encode_into(&mut dir);
            }
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
