//! The one pack reader: every blob read out of a pack, by any command, is checked here (its
//! header against the index's entry, its contents against its id) before anyone uses it.
//!
//! ```text
//! read_blobs(pack, entries sorted by offset, coalesce, f):
//!   group neighbours: next blob starts within `gap` of the group's end, group within `max`
//!   read each group with one ranged request           (a Segment)
//!   for each frame of it: open it once; for each blob: verify digest; f(i, raw bytes, or the damage)
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
use crate::pack::{BlobEntry, blob_in_frame, blob_name, blob_slice, check_blob_header, frames_of};
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
        if entry.header_len() > 0 {
            check_blob_header(entry, header)
                .map_err(|m| m.about(format!("pack {}", self.pack.short())))?;
        }
        Ok(stored)
    }

    /// The blob `entry` in this segment, verified: its raw bytes.
    pub(crate) fn blob(&self, entry: &BlobEntry) -> Result<Vec<u8>> {
        self.sealing.open_blob(entry, self.stored_of(entry)?)
    }

    /// Calls `f` with each blob of `entries` (sorted by offset, all in this segment) verified,
    /// or the damage that keeps it from being read; each frame is opened once for all the
    /// blobs it holds.
    pub(crate) fn for_each_blob(
        &self,
        entries: &[BlobEntry],
        mut f: impl FnMut(usize, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let mut i = 0;
        for frame in frames_of(entries) {
            if let [alone] = frame {
                f(i, self.blob(alone))?;
                i += 1;
                continue;
            }
            let raw = self.open_frame(&frame[0]);
            for e in frame {
                f(i, self.cut(e, &raw))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// The raw bytes of the frame holding `entry`, authenticated and decompressed.
    fn open_frame(&self, entry: &BlobEntry) -> Result<Vec<u8>> {
        self.sealing.open_frame(entry, self.stored_of(entry)?)
    }

    /// The blob `entry` out of its opened frame (or why the frame did not open), verified.
    fn cut(&self, entry: &BlobEntry, frame: &Result<Vec<u8>>) -> Result<Vec<u8>> {
        match frame {
            Ok(raw) => blob_in_frame(entry, raw, self.sealing.hasher()),
            Err(e) => Err(Error::corrupt(blob_name(entry), frame_damage(e))),
        }
    }
}

impl<B: AsRef<[u8]> + Sync> Segment<'_, B> {
    /// Verifies every blob of `entries` (sorted by offset, all in this segment) without keeping
    /// their contents, frames in parallel; returns each one's raw length or its damage. For
    /// audits that read everything.
    pub(crate) fn verify_all(&self, entries: &[BlobEntry]) -> Vec<Result<u32>> {
        use rayon::prelude::*;
        let per_frame: Vec<Vec<Result<u32>>> = frames_of(entries)
            .par_iter()
            .map(|frame| {
                if let [alone] = frame {
                    let verified = self
                        .stored_of(alone)
                        .and_then(|stored| self.sealing.verify_blob(alone, stored));
                    return vec![verified];
                }
                let raw = self.open_frame(&frame[0]);
                frame
                    .iter()
                    .map(|e| match &raw {
                        Ok(raw) => {
                            blob_slice(e, raw, self.sealing.hasher()).map(|b| b.len() as u32)
                        }
                        Err(err) => Err(Error::corrupt(blob_name(e), frame_damage(err))),
                    })
                    .collect()
            })
            .collect();
        per_frame.into_iter().flatten().collect()
    }
}

/// What made a frame unreadable, told about each blob it holds.
fn frame_damage(e: &Error) -> String {
    match e {
        Error::Corrupt { object, detail } => {
            format!("its frame (with {object}) is damaged: {detail}")
        }
        other => format!("its frame is damaged: {other}"),
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
    /// `coalesce` allows, and calls `f` with each one's position in `entries` and its raw bytes,
    /// verified, or the damage that keeps it from being read. An error that is not damage (the
    /// store unreachable, say), or one `f` returns, stops the read.
    pub(crate) fn read_blobs(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        coalesce: Coalesce,
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
            // The blobs of one frame are one unit: read together even one by one.
            while j < entries.len()
                && (j >= singly_until || entries[j].offset == start)
                && entries[j].offset <= end.saturating_add(coalesce.gap)
                && entries[j].end().saturating_sub(start) <= coalesce.max
            {
                end = end.max(entries[j].end());
                j += 1;
            }
            let one_unit = entries[i..j].iter().all(|e| e.offset == start);
            let segment = match self.read_segment(pack, start..end) {
                Ok(s) => s,
                Err(e) if e.is_damage() && !one_unit => {
                    singly_until = j;
                    continue;
                }
                Err(e) if e.is_damage() => {
                    for (k, entry) in entries[i..j].iter().enumerate().skip(1) {
                        f(
                            i + k,
                            Err(Error::corrupt(blob_name(entry), frame_damage(&e))),
                        )?;
                    }
                    f(i, Err(e))?;
                    i = j;
                    continue;
                }
                Err(e) => return Err(e),
            };
            segment.for_each_blob(&entries[i..j], |k, r| f(i + k, r))?;
            i = j;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BLOB_HEADER_LEN, BlobKind, PackWriter, compress};
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
            .read_blobs(&id, &entries, all, |i, r| {
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
            .read_blobs(&id, &entries, small, |i, r| {
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
