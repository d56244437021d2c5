//! Content-defined chunking of a byte stream with FastCDC (2020), as the repository config says.
//!
//! The stream is read in large segments into one reusable buffer and cut there, so the caller
//! gets whole batches of chunks as ranges of that buffer: it can hash and compress a batch in
//! parallel without copying, and memory stays at one segment however large the file.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::Range;

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};

use crate::config::ChunkerParams;
use crate::crypto::SecretKey;

/// Cuts streams into chunks.
#[derive(Debug, Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    /// Cut every this many bytes instead (whole pages: see `pages`).
    fixed: Option<usize>,
}

impl Chunker {
    /// A chunker for the repository's parameters (validated when the config was read), with
    /// the gear table of version 1, or, given the chunker key of an encrypted repository, the
    /// secret one derived from it ([`keyed_gear`]).
    pub fn for_repository(p: &ChunkerParams, key: Option<&SecretKey>) -> Chunker {
        let mut c = Chunker::new(p);
        if let Some(key) = key {
            let gear = keyed_gear(key);
            c.gear_ls = Cow::Owned(gear.iter().map(|g| g << 1).collect());
            c.gear = Cow::Owned(gear.to_vec());
        }
        c
    }

    /// A chunker with the gear table of version 1.
    pub fn new(p: &ChunkerParams) -> Chunker {
        let level = match p.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(p.avg_size as usize, level);
        let (gear, gear_ls) = get_gear_with_seed(0);
        Chunker {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s,
            mask_l,
            gear,
            gear_ls,
            fixed: None,
        }
    }

    /// The same chunker cutting every `size` bytes from the start of the stream (the last
    /// chunk is what remains): for files of whole pages.
    pub fn fixed(&self, size: u32) -> Chunker {
        let size = size.max(1) as usize;
        Chunker {
            fixed: Some(size),
            max: size,
            min: size,
            avg: size,
            ..self.clone()
        }
    }

    /// The largest chunk this chunker makes.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the first chunk of `data`, given that `data` ends where the stream ends or
    /// holds at least `max` bytes.
    fn cut(&self, data: &[u8]) -> usize {
        if let Some(size) = self.fixed {
            return data.len().min(size);
        }
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n
    }

    /// Cuts all of `data` (a whole stream) into chunk ranges.
    pub fn cut_all(&self, data: &[u8]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = self.cut(&data[pos..]).max(1);
            out.push(pos..pos + n);
            pos += n;
        }
        out
    }

    /// Reads `reader` to its end in segments of about `segment` bytes and calls `f` with each
    /// segment's buffer and the chunks cut from it. Returns the bytes read.
    pub fn for_each_batch<R: Read>(
        &self,
        mut reader: R,
        segment: usize,
        mut f: impl FnMut(&[u8], &[Range<usize>]) -> crate::Result<()>,
    ) -> crate::Result<u64> {
        // Content-defined cuts look ahead up to `max` bytes past several chunks; fixed cuts
        // need only one chunk's worth.
        let cap = match self.fixed {
            Some(size) => segment.max(size),
            None => segment.max(4 * self.max),
        };
        // One buffer per thread, kept between calls; it grows with what is read (never zeroed
        // ahead), so a small file or WAL history file costs no megabytes of page faults.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut buf = BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        buf.clear();
        let result = self.fill_and_cut(&mut reader, &mut buf, cap, &mut f);
        BUF.with(|b| *b.borrow_mut() = buf);
        result
    }

    fn fill_and_cut<R: Read>(
        &self,
        reader: &mut R,
        buf: &mut Vec<u8>,
        cap: usize,
        f: &mut impl FnMut(&[u8], &[Range<usize>]) -> crate::Result<()>,
    ) -> crate::Result<u64> {
        let mut eof = false;
        let mut total = 0u64;
        let mut ranges = Vec::new();
        loop {
            while !eof && buf.len() < cap {
                let want = (cap - buf.len()) as u64;
                match reader.by_ref().take(want).read_to_end(buf) {
                    Ok(0) => eof = true,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ReadError(e).into()),
                }
            }
            let len = buf.len();
            ranges.clear();
            let mut pos = 0;
            while pos < len && (eof || len - pos >= self.max) {
                let n = self.cut(&buf[pos..len]).max(1);
                ranges.push(pos..pos + n);
                pos += n;
            }
            if !ranges.is_empty() {
                f(&buf[..pos], &ranges)?;
            }
            buf.drain(..pos);
            if eof && buf.is_empty() {
                return Ok(total);
            }
        }
    }
}

/// The secret gear table of an encrypted repository: the first 2048 bytes of BLAKE3's output,
/// keyed with the chunker key, of the input `"cairn gear table"`, read as 256 little-endian
/// `u64`s.
pub fn keyed_gear(key: &SecretKey) -> [u64; 256] {
    let mut bytes = [0u8; 2048];
    blake3::Hasher::new_keyed(key.as_bytes())
        .update(b"cairn gear table")
        .finalize_xof()
        .fill(&mut bytes);
    let mut gear = [0u64; 256];
    for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut v = [0u8; 8];
        v.copy_from_slice(b);
        *g = u64::from_le_bytes(v);
    }
    gear
}

/// An I/O error while reading the stream being chunked; the caller adds the path.
#[derive(Debug)]
pub struct ReadError(pub io::Error);

impl From<ReadError> for crate::Error {
    fn from(e: ReadError) -> Self {
        crate::Error::io("cannot read", "<stream>", e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChunkerParams, DEFAULT_AVG_CHUNK};

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunker() -> Chunker {
        Chunker::new(&ChunkerParams::with_average(DEFAULT_AVG_CHUNK).unwrap())
    }

    #[test]
    fn streaming_equals_whole() {
        let c = chunker();
        let d = data(3_000_000, 1);
        let whole: Vec<_> = c
            .cut_all(&d)
            .iter()
            .map(|r| d[r.clone()].to_vec())
            .collect();
        let mut streamed = Vec::new();
        let n = c
            .for_each_batch(&d[..], 300_000, |buf, rs| {
                streamed.extend(rs.iter().map(|r| buf[r.clone()].to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(n, d.len() as u64);
        assert_eq!(whole, streamed);
    }

    #[test]
    fn fixed_cuts_whole_pages_from_the_start() {
        let c = chunker().fixed(8192);
        let d = data(8192 * 40 + 100, 2);
        let mut lens = Vec::new();
        // Segments that are not a multiple of the page size still cut at page boundaries.
        c.for_each_batch(&d[..], 100_000, |_, rs| {
            lens.extend(rs.iter().map(|r| r.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(lens.len(), 41);
        assert!(lens[..40].iter().all(|&l| l == 8192));
        assert_eq!(lens[40], 100);
        assert_eq!(c.max_size(), 8192);
    }

    /// Pins the chunk boundaries of the default parameters: changing them breaks dedup with
    /// every existing repository, so it must be a deliberate, versioned change.
    #[test]
    fn boundaries_are_pinned() {
        let c = chunker();
        let d = data(1 << 20, 7);
        let lens: Vec<usize> = c.cut_all(&d).iter().map(|r| r.len()).take(8).collect();
        let expected = pinned_lengths();
        assert_eq!(lens, expected);
    }

    fn pinned_lengths() -> Vec<usize> {
        // Recorded from the first run of this build on seeded data.
        include!("../tests/data/chunk_lengths.txt")
    }

    #[test]
    fn insertion_shifts_few_chunks() {
        let c = chunker();
        let d = data(4 << 20, 3);
        let mut e = d.clone();
        e.splice(2_000_000..2_000_000, data(100, 9));
        let ids = |v: &[u8]| -> std::collections::HashSet<_> {
            c.cut_all(v)
                .iter()
                .map(|r| blake3::hash(&v[r.clone()]))
                .collect()
        };
        let (a, b) = (ids(&d), ids(&e));
        let new = b.difference(&a).count();
        assert!(new <= 3, "{new} chunks changed after one insertion");
    }

    /// The test vectors of `format-spec/encryption.md`: the keyed gear table's first entries
    /// and the cut points it gives, so that a second implementation can check its chunker.
    #[test]
    fn keyed_chunker_vectors() {
        let key = SecretKey::from_bytes(core::array::from_fn(|i| i as u8));
        let gear = keyed_gear(&key);
        let head: Vec<String> = gear[..3].iter().map(|g| format!("{g:016x}")).collect();
        let c = Chunker::for_repository(&ChunkerParams::with_average(8192).unwrap(), Some(&key));
        // The input: 1 MiB of BLAKE3's output (unkeyed) for the input "cairn chunker test".
        let mut d = vec![0u8; 1 << 20];
        blake3::Hasher::new()
            .update(b"cairn chunker test")
            .finalize_xof()
            .fill(&mut d);
        let cuts: Vec<usize> = c.cut_all(&d).iter().map(|r| r.end).take(8).collect();
        let plain: Vec<usize> = chunker()
            .cut_all(&d)
            .iter()
            .map(|r| r.end)
            .take(8)
            .collect();
        assert_ne!(cuts, plain);
        let expected = include!("../tests/data/keyed_chunker_vectors.txt");
        assert_eq!((head, cuts), expected);
    }
}
