//! What a repository does to every byte it stores: nothing in format version 1; in version 2,
//! seal it (`crypto`); in version 3, group blobs in frames, sealed or not. One value of
//! [`Sealing`] travels with an open repository, and every reader and writer of objects and
//! blobs goes through it, so the versions differ in this file only.

use std::sync::Arc;

use crate::crypto::{
    BlobOpenError, Keys, Sealed, blob_aad, envelope_header, frame_aad, open_blob_payload,
};
use crate::error::{Error, Result};
use crate::id::IdHasher;
use crate::pack::{
    BlobEntry, FRAMED_PACK_VERSION, PACK_VERSION, PackWriter, SEALED_PACK_VERSION, blob_name,
    check_stored, decode_directory, decode_frame, decode_framed_directory, decode_payload,
    open_blob, verify_blob, verify_payload,
};
use crate::wire::{DecodeResult, Malformed};

/// A blob's payload: its stored bytes as they are (version 1), or the part of the plaintext a
/// sealed blob opened to (version 2).
pub(crate) enum Payload<'a> {
    Stored(&'a [u8]),
    Opened(Vec<u8>, std::ops::Range<usize>),
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Stored(b) => b,
            Payload::Opened(v, at) => &v[at.clone()],
        }
    }
}

/// How a repository's objects and blobs are stored: in the clear (format version 1), sealed
/// under its keys (version 2), or in frames, in the clear or sealed (version 3).
#[derive(Debug, Clone, Default)]
pub struct Sealing {
    keys: Option<Arc<Keys>>,
    hasher: IdHasher,
    framed: bool,
}

impl Sealing {
    /// Unencrypted.
    pub fn plain() -> Sealing {
        Sealing::default()
    }

    /// Sealed under `keys`.
    pub fn encrypted(keys: Arc<Keys>) -> Sealing {
        Sealing {
            hasher: IdHasher::keyed(keys.id_key()),
            keys: Some(keys),
            framed: false,
        }
    }

    /// The same, with packs of frames (format version 3) if `framed`.
    pub fn with_frames(mut self, framed: bool) -> Sealing {
        self.framed = framed;
        self
    }

    /// Whether packs hold frames (format version 3).
    pub fn is_framed(&self) -> bool {
        self.framed
    }

    /// The keys, if the repository is encrypted.
    pub fn keys(&self) -> Option<&Arc<Keys>> {
        self.keys.as_ref()
    }

    /// What computes ids.
    pub fn hasher(&self) -> &IdHasher {
        &self.hasher
    }

    /// The version packs have.
    pub fn pack_version(&self) -> u32 {
        if self.framed {
            FRAMED_PACK_VERSION
        } else if self.keys.is_some() {
            SEALED_PACK_VERSION
        } else {
            PACK_VERSION
        }
    }

    /// The cipher blob entries must name.
    pub fn cipher(&self) -> Option<crate::crypto::Cipher> {
        self.keys.as_ref().map(|k| k.cipher())
    }

    /// An empty pack to fill.
    pub(crate) fn pack_writer(&self) -> PackWriter {
        if self.framed {
            PackWriter::framed(self.keys.clone())
        } else {
            PackWriter::with_keys(self.keys.clone())
        }
    }

    /// Whether blobs can be copied between repositories sealed like this and like `other`
    /// without changing their ids: both unencrypted, or both with the same id and chunker keys.
    pub fn same_content_ids(&self, other: &Sealing) -> bool {
        match (&self.keys, &other.keys) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_content_keys(b),
            _ => false,
        }
    }

    /// The payload of a blob (its compressed or raw bytes), from its `stored` bytes: unsealed
    /// and authenticated in version 2. Not yet checked against its id.
    pub(crate) fn payload<'a>(&self, entry: &BlobEntry, stored: &'a [u8]) -> Result<Payload<'a>> {
        check_stored(entry, stored, self.cipher())?;
        let Some(keys) = &self.keys else {
            return Ok(Payload::Stored(stored));
        };
        let epoch = crate::crypto::blob_epoch(stored).map_err(|m| m.about(blob_name(entry)))?;
        let aead = keys.epoch(epoch).ok_or_else(|| {
            Error::corrupt(
                blob_name(entry),
                format!("is sealed under epoch {epoch}, whose key this repository does not have"),
            )
        })?;
        let opened = match entry.frame {
            None => {
                let aad = blob_aad(
                    entry.kind.code(),
                    entry.compression.code(),
                    entry.raw_len,
                    &entry.id.0,
                );
                open_blob_payload(aead, &aad, stored, true)
            }
            Some(f) => {
                let aad = frame_aad(entry.compression.code(), f.frame_len);
                open_blob_payload(aead, &aad, stored, false)
            }
        };
        match opened {
            Ok((plain, at)) => Ok(Payload::Opened(plain, at)),
            Err(BlobOpenError::NotAuthentic) => Err(Error::corrupt(
                blob_name(entry),
                "does not authenticate (changed, moved or swapped)",
            )),
            Err(BlobOpenError::Malformed(d)) => Err(Error::corrupt(blob_name(entry), d)),
        }
    }

    /// A blob's raw bytes from its stored bytes, verified against its id.
    pub(crate) fn open_blob(&self, entry: &BlobEntry, stored: &[u8]) -> Result<Vec<u8>> {
        if self.keys.is_none() {
            return open_blob(entry, stored);
        }
        decode_payload(entry, &self.payload(entry, stored)?, &self.hasher)
    }

    /// The raw bytes of the frame holding `entry` (the blob itself in versions 1 and 2), from
    /// its stored bytes: authenticated and decompressed, not yet checked against any id (see
    /// `pack::blob_in_frame`). For readers that take several blobs out of one frame.
    pub(crate) fn open_frame(&self, entry: &BlobEntry, stored: &[u8]) -> Result<Vec<u8>> {
        decode_frame(entry, &self.payload(entry, stored)?)
    }

    /// Verifies a blob without keeping its raw bytes; returns its raw length.
    pub(crate) fn verify_blob(&self, entry: &BlobEntry, stored: &[u8]) -> Result<u32> {
        if self.keys.is_none() {
            return verify_blob(entry, stored);
        }
        verify_payload(entry, &self.payload(entry, stored)?, &self.hasher)
    }

    /// Seals a whole object of `kind` stored at `path`; unencrypted, its bytes as they are.
    pub(crate) fn seal_object(&self, kind: Sealed, path: &str, plain: Vec<u8>) -> Vec<u8> {
        match &self.keys {
            None => plain,
            Some(keys) => {
                let (epoch, aead) = keys.current();
                crate::crypto::seal_object(aead, keys.cipher(), epoch, kind, path, &plain)
            }
        }
    }

    /// Opens a whole object of `kind` stored at `path`: for fuzz targets and format tests.
    #[doc(hidden)]
    pub fn open_sealed(&self, kind: Sealed, path: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        self.open_object(kind, path, stored)
    }

    /// Opens a whole object of `kind` stored at `path`.
    pub(crate) fn open_object(&self, kind: Sealed, path: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        let Some(keys) = &self.keys else {
            return Ok(stored);
        };
        let header = envelope_header(&stored, kind).map_err(|m| m.about(path))?;
        if header.cipher != keys.cipher() {
            return Err(Error::corrupt(
                path,
                "is sealed with another cipher than the repository's",
            ));
        }
        let aead = keys.epoch(header.epoch).ok_or_else(|| {
            Error::corrupt(
                path,
                format!(
                    "is sealed under epoch {}, whose key this repository does not have",
                    header.epoch
                ),
            )
        })?;
        crate::crypto::open_object(aead, path, &stored).map_err(|_| {
            Error::corrupt(
                path,
                "does not authenticate (changed, or another object's bytes)",
            )
        })
    }
}

impl Sealing {
    /// Decodes a whole pack held in memory, opening its directory, and opens every blob in
    /// it: each blob's raw bytes, or why it does not open. For fuzz targets and format tests.
    #[doc(hidden)]
    pub fn open_pack(&self, pack: &[u8]) -> Result<Vec<(BlobEntry, Result<Vec<u8>>)>> {
        use crate::pack::{PREAMBLE_LEN, TRAILER_LEN, check_preamble, decode_trailer};
        let bad = |m: Malformed| m.about("pack");
        let len = pack.len() as u64;
        if len < PREAMBLE_LEN + TRAILER_LEN {
            return Err(Error::corrupt("pack", format!("{len} bytes is too short")));
        }
        check_preamble(&pack[..PREAMBLE_LEN as usize], self.pack_version()).map_err(bad)?;
        let dir_len =
            decode_trailer(&pack[pack.len() - TRAILER_LEN as usize..], len).map_err(bad)?;
        let dir_start = len - TRAILER_LEN - u64::from(dir_len);
        let dir = &pack[dir_start as usize..(len - TRAILER_LEN) as usize];
        let entries = self.open_directory(dir, dir_start).map_err(bad)?;
        if self.framed {
            return Ok(self.open_frames(pack, entries));
        }
        Ok(entries
            .into_iter()
            .map(|e| {
                let start = (e.offset + e.header_len()) as usize;
                let blob = pack
                    .get(start..e.end() as usize)
                    .ok_or_else(|| Error::corrupt("pack", "a blob lies outside the pack"))
                    .and_then(|stored| {
                        if e.header_len() > 0 {
                            let header = &pack[e.offset as usize..start];
                            crate::pack::check_blob_header(&e, header).map_err(bad)?;
                        }
                        self.open_blob(&e, stored)
                    });
                (e, blob)
            })
            .collect())
    }

    /// The blobs of a version-3 pack, from its directory's `entries` (which carry no ids):
    /// each frame opened once, each blob named by hashing it; a blob of a frame that does not
    /// open keeps a zero id.
    fn open_frames(
        &self,
        pack: &[u8],
        mut entries: Vec<BlobEntry>,
    ) -> Vec<(BlobEntry, Result<Vec<u8>>)> {
        let mut out = Vec::with_capacity(entries.len());
        let mut at = 0;
        while at < entries.len() {
            let n = entries[at..]
                .iter()
                .take_while(|e| e.offset == entries[at].offset)
                .count();
            let first = entries[at];
            let frame = pack
                .get(first.offset as usize..first.end() as usize)
                .ok_or_else(|| Error::corrupt("pack", "a frame lies outside the pack"))
                .and_then(|stored| self.open_frame(&first, stored));
            for e in &mut entries[at..at + n] {
                let start = e.frame.map_or(0, |f| f.start) as usize;
                let blob = match &frame {
                    Ok(raw) => match raw.get(start..start + e.raw_len as usize) {
                        Some(b) => {
                            e.id = self.hasher.id(b);
                            Ok(b.to_vec())
                        }
                        None => Err(Error::corrupt(blob_name(e), "lies outside its frame")),
                    },
                    Err(err) => Err(Error::corrupt(blob_name(e), err.to_string())),
                };
                out.push((*e, blob));
            }
            at += n;
        }
        out
    }

    /// Decodes a pack's directory (`dir`, starting at `dir_start`), opening it first if it is
    /// sealed. In version 3 the entries carry no ids (zero ids).
    pub(crate) fn open_directory(
        &self,
        dir: &[u8],
        dir_start: u64,
    ) -> DecodeResult<Vec<BlobEntry>> {
        let decode = if self.framed {
            decode_framed_directory
        } else {
            decode_directory
        };
        let Some(keys) = &self.keys else {
            return decode(dir, dir_start, None);
        };
        let header = envelope_header(dir, Sealed::PackDirectory)?;
        let aead = keys
            .epoch(header.epoch)
            .filter(|_| header.cipher == keys.cipher())
            .ok_or_else(|| {
                Malformed::new(format!(
                    "directory sealed under epoch {} of {}, which this repository does not have",
                    header.epoch,
                    header.cipher.name()
                ))
            })?;
        let plain = crate::crypto::open_object(aead, "", dir)
            .map_err(|_| Malformed::new("directory does not authenticate"))?;
        decode(&plain, dir_start, Some(keys.cipher()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{BLOB_OVERHEAD, Cipher, padme};
    use crate::pack::{BlobKind, compress};

    fn sealed_pack(sealing: &Sealing, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<BlobEntry>) {
        let mut w = sealing.pack_writer();
        for raw in blobs {
            let (c, payload) = compress(raw, Some(3));
            w.add(
                BlobKind::Data,
                sealing.hasher().id(raw),
                raw.len() as u32,
                c,
                &payload,
            );
        }
        let (id, bytes, entries) = w.finish();
        assert_eq!(crate::id::Id::of(&bytes), id);
        (bytes, entries)
    }

    #[test]
    fn sealed_packs_round_trip_and_every_change_is_caught() {
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let sealing = Sealing::encrypted(Arc::new(Keys::fixed(cipher)));
            let blobs: Vec<Vec<u8>> = vec![b"rows ".repeat(300), vec![9u8; 1000], vec![1u8; 1000]];
            let (pack, entries) = sealed_pack(&sealing, &blobs);
            let opened = sealing.open_pack(&pack).unwrap();
            assert_eq!(opened.len(), 3);
            for ((e, raw), want) in opened.iter().zip(&blobs) {
                assert_eq!(raw.as_ref().unwrap(), want);
                assert_eq!(e.cipher, Some(cipher));
            }
            for e in &entries {
                let payload = if e.compression == crate::pack::Compression::None {
                    e.raw_len as u64
                } else {
                    u64::from(e.stored_len) - BLOB_OVERHEAD as u64
                };
                assert!(u64::from(e.stored_len) >= padme(4 + payload.min(u64::from(e.stored_len))));
                assert_ne!(e.stored_len, e.raw_len);
            }
            // Any flipped byte: the pack's preamble, a blob, or its directory fails.
            for at in [
                3,
                20,
                entries[1].offset as usize + 30,
                pack.len() - 30,
                pack.len() - 5,
            ] {
                let mut bad = pack.clone();
                bad[at] ^= 1;
                let ok = sealing
                    .open_pack(&bad)
                    .map(|bs| bs.iter().all(|(_, b)| b.is_ok()))
                    .unwrap_or(false);
                assert!(!ok, "a flip at {at} went unnoticed");
            }
            // Two blobs of equal length trading places: both fail to open.
            let (a, b) = (entries[1], entries[2]);
            assert_eq!(a.stored_len, b.stored_len);
            let mut swapped = pack.clone();
            let n = a.stored_len as usize;
            let (x, y) = (a.offset as usize, b.offset as usize);
            let blob_a = swapped[x..x + n].to_vec();
            swapped.copy_within(y..y + n, x);
            swapped[y..y + n].copy_from_slice(&blob_a);
            let opened = sealing.open_pack(&swapped).unwrap();
            assert!(opened[0].1.is_ok() && opened[1].1.is_err() && opened[2].1.is_err());
            // An unencrypted reader refuses it, and an encrypted one refuses a plain pack.
            assert!(Sealing::plain().open_pack(&pack).is_err());
            let plain = sealed_pack(&Sealing::plain(), &blobs).0;
            assert!(sealing.open_pack(&plain).is_err());
        }
    }

    #[test]
    fn sealed_objects_bind_their_path() {
        let sealing = Sealing::encrypted(Arc::new(Keys::fixed(Cipher::Aes256Gcm)));
        let s = sealing.seal_object(Sealed::Snapshot, "object a", b"{}".to_vec());
        assert_eq!(
            sealing
                .open_object(Sealed::Snapshot, "object a", s.clone())
                .unwrap(),
            b"{}"
        );
        assert!(
            sealing
                .open_object(Sealed::Snapshot, "object b", s.clone())
                .is_err()
        );
        assert!(
            sealing
                .open_object(Sealed::Index, "object a", s.clone())
                .is_err()
        );
        let other = Sealing::encrypted(Arc::new(Keys::generate(Cipher::Aes256Gcm)));
        assert!(other.open_object(Sealed::Snapshot, "object a", s).is_err());
        // Unencrypted, objects are stored as they are.
        assert_eq!(
            Sealing::plain().seal_object(Sealed::Lock, "object x", b"l".to_vec()),
            b"l"
        );
    }
}
