//! The one pack reader: every blob read out of a pack, by any command, is checked here (its
//! header against the index's entry, its contents against its id) before anyone uses it.
//!
//! ```text
//! read_blobs(pack, entries sorted by offset, coalesce, want, f):
//!   group neighbours: next blob starts within `gap` of the group's end, group within `max`
//!   read each group with one ranged request           (a Segment)
//!   for each blob of it: verify header and digest; f(i, raw or stored bytes, or the damage)
//!   a group that cannot be read is read again blob by blob, so a truncated or partly
//!   unreadable pack loses only the blobs it lost; errors that are not damage stop at once
//! ```
//!
//! Restore, copy and prune's repacking read through [`Objects::read_blobs`]; blob loading reads
//! single blobs out of a cached whole pack, and `check --read-data` streams whole packs in
//! [`Segment`]s, both verifying through the same [`Segment`] methods.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{BlobEntry, check_blob_header, decode_payload};
use crate::sealing::Sealing;

use super::objects::Objects;

/// How neighbouring blobs are read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coalesce {
    /// Blobs whose gap is at most this many bytes share a request (the gap is read and thrown
    /// away: cheaper than another round trip).
    pub(crate) gap: u64,
    /// A request reads at most this many bytes, unless one blob alone is longer.
    pub(crate) max: u64,
}

/// What a reader wants of each blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blob {
    /// Its raw bytes, decompressed and verified.
    Raw,
    /// Its payload (compressed bytes: unsealed, without the header), verified: for copying
    /// into another pack without compressing again.
    Payload,
}

/// Bytes read from a pack, starting at `start`, and how the repository seals blobs.
pub(crate) struct Segment<'s, B> {
    pack: Id,
    start: u64,
    bytes: B,
    sealing: &'s Sealing,
}

impl<'s, B: AsRef<[u8]>> Segment<'s, B> {
    /// `bytes` read from `pack` at `start`.
    pub(crate) fn new(sealing: &'s Sealing, pack: Id, start: u64, bytes: B) -> Segment<'s, B> {
        Segment {
            pack,
            start,
            bytes,
            sealing,
        }
    }

    /// The bytes read.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The blob `entry` in this segment: its header checked, and its stored bytes.
    fn stored_of(&self, entry: &BlobEntry) -> Result<&[u8]> {
        let bytes = self.bytes.as_ref();
        let at = entry.offset.checked_sub(self.start);
        let end = entry.end().checked_sub(self.start);
        let blob = at
            .zip(end)
            .and_then(|(at, end)| bytes.get(usize::try_from(at).ok()?..usize::try_from(end).ok()?));
        let Some(blob) = blob else {
            return Err(Error::corrupt(
                format!("pack {}", self.pack.short()),
                format!(
                    "the index places blob {} at {}..{}, outside what the pack holds (truncated?)",
                    entry.id.short(),
                    entry.offset,
                    entry.end()
                ),
            ));
        };
        let (header, stored) = blob.split_at((entry.header_len() as usize).min(blob.len()));
        if entry.cipher.is_none() {
            check_blob_header(entry, header)
                .map_err(|m| m.about(format!("pack {}", self.pack.short())))?;
        }
        Ok(stored)
    }

    /// The blob `entry`, verified, as `want` asks.
    pub(crate) fn blob(&self, entry: &BlobEntry, want: Blob) -> Result<Vec<u8>> {
        let stored = self.stored_of(entry)?;
        match want {
            Blob::Raw => self.sealing.open_blob(entry, stored),
            Blob::Payload => {
                let payload = self.sealing.payload(entry, stored)?;
                decode_payload(entry, &payload, self.sealing.hasher())?;
                Ok(payload.into_vec())
            }
        }
    }

    /// Verifies the blob `entry` without keeping its contents; returns its raw length. For
    /// audits that read everything.
    pub(crate) fn verify(&self, entry: &BlobEntry) -> Result<u32> {
        self.sealing.verify_blob(entry, self.stored_of(entry)?)
    }
}

impl Objects {
    /// Reads `range` of `pack`.
    pub(crate) fn read_segment(
        &self,
        pack: &Id,
        range: Range<u64>,
    ) -> Result<Segment<'_, Vec<u8>>> {
        let start = range.start;
        let bytes = self.read_pack_range(pack, range)?;
        Ok(Segment::new(self.sealing(), *pack, start, bytes))
    }

    /// Reads the blobs `entries` (sorted by offset) of `pack`, neighbours together as
    /// `coalesce` allows, and calls `f` with each one's position in `entries` and its bytes as
    /// `want` asks, or the damage that keeps it from being read. An error that is not damage
    /// (the store unreachable, say), or one `f` returns, stops the read.
    pub(crate) fn read_blobs(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        coalesce: Coalesce,
        want: Blob,
        mut f: impl FnMut(usize, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let mut i = 0;
        // Up to here, blobs are read one by one: a group's read failed, and only the blobs
        // that cannot be read on their own are damage.
        let mut singly_until = 0;
        while i < entries.len() {
            let start = entries[i].offset;
            let mut end = entries[i].end();
            let mut j = i + 1;
            while j < entries.len()
                && j >= singly_until
                && entries[j].offset <= end.saturating_add(coalesce.gap)
                && entries[j].end().saturating_sub(start) <= coalesce.max
            {
                end = end.max(entries[j].end());
                j += 1;
            }
            let segment = match self.read_segment(pack, start..end) {
                Ok(s) => s,
                Err(e) if e.is_damage() && j > i + 1 => {
                    singly_until = j;
                    continue;
                }
                Err(e) if e.is_damage() => {
                    f(i, Err(e))?;
                    i = j;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (k, entry) in entries[i..j].iter().enumerate() {
                f(i + k, segment.blob(entry, want))?;
            }
            i = j;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BLOB_HEADER_LEN, BlobKind, Compression, PackWriter, compress};
    use crate::repo::layout::Object;
    use crate::repo::store::{Location, Store};

    fn pack_of(blobs: &[Vec<u8>]) -> (Id, Vec<u8>, Vec<BlobEntry>) {
        let mut w = PackWriter::new();
        for raw in blobs {
            let (c, stored) = compress(raw, Some(3));
            w.add(BlobKind::Data, Id::of(raw), raw.len() as u32, c, &stored);
        }
        w.finish()
    }

    #[test]
    fn reads_coalesced_verified_and_loses_only_what_is_damaged() {
        let objects = Objects::new(Store::open(&Location::Memory, true).unwrap());
        let raws: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
        let (id, mut bytes, entries) = pack_of(&raws);
        // Damage the fourth blob's contents.
        let bad = entries[3];
        bytes[(bad.offset + BLOB_HEADER_LEN) as usize] ^= 1;
        objects.write(&Object::Pack(id), bytes).unwrap();
        let all = Coalesce {
            gap: u64::MAX,
            max: u64::MAX,
        };
        let mut got = Vec::new();
        objects
            .read_blobs(&id, &entries, all, Blob::Raw, |i, r| {
                got.push((i, r.map_err(|e| e.is_damage())));
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), 6);
        for (i, r) in got {
            if i == 3 {
                assert_eq!(r, Err(true));
            } else {
                assert_eq!(r, Ok(raws[i].clone()));
            }
        }
        // Payloads are what the pack holds, verified.
        let mut stored = Vec::new();
        objects
            .read_blobs(&id, &entries[..1], all, Blob::Payload, |_, r| {
                stored.push(r.unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(stored[0].len(), entries[0].stored_len as usize);
        assert_ne!(entries[0].compression, Compression::None);
    }

    #[test]
    fn a_truncated_pack_loses_its_tail_only() {
        let objects = Objects::new(Store::open(&Location::Memory, true).unwrap());
        let raws: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 5000]).collect();
        let (id, bytes, entries) = pack_of(&raws);
        let cut = entries[2].offset as usize + 10;
        objects
            .write(&Object::Pack(id), bytes[..cut].to_vec())
            .unwrap();
        let mut ok = Vec::new();
        let mut damaged = Vec::new();
        let small = Coalesce {
            gap: 1 << 20,
            max: 1 << 20,
        };
        objects
            .read_blobs(&id, &entries, small, Blob::Raw, |i, r| {
                match r {
                    Ok(_) => ok.push(i),
                    Err(e) if e.is_damage() => damaged.push(i),
                    Err(e) => return Err(e),
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(ok, vec![0, 1]);
        assert_eq!(damaged, vec![2, 3]);
    }
}
