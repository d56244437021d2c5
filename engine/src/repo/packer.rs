//! Collects new blobs into packs, uploads sealed packs in the background, and writes index
//! files once the packs they list are stored.
//!
//! Data chunks and metadata (tree and list blobs) go to separate packs, so that reading a
//! snapshot's manifests never drags file contents along.
//!
//! In format version 3 new blobs are gathered, as they arrive, into an open frame per kind of
//! pack; a frame that reaches the config's frame size is taken out of the lock, compressed by
//! the thread that filled it (so frames compress in parallel), and appended to the pack. In
//! versions 1 and 2 each blob is compressed alone, in parallel, before it is added.
//!
//! Blobs in packs not yet indexed are "pending": they count as present for deduplication within
//! this backup, but they enter the local index cache only when an index file listing them has
//! been stored (the cache's invariant, see `index_cache`).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::{PackRecord, encode_index};
use crate::pack::{BlobEntry, BlobKind, Compression, PackWriter, compress, compress_frame};

/// A blob's bytes as the packer takes them.
#[derive(Debug)]
enum Stored {
    /// Compressed alone (versions 1 and 2).
    Alone(Compression, Vec<u8>),
    /// Raw, to be compressed with its frame (version 3).
    Raw(Vec<u8>),
    /// A frame of its own, already compressed (version 3: a blob as large as a frame).
    Frame(Compression, Vec<u8>),
}

/// The frame being filled, for data or for metadata.
#[derive(Debug, Default)]
struct OpenFrame {
    raw: Vec<u8>,
    blobs: Vec<(BlobKind, Id, u32)>,
}

impl OpenFrame {
    /// Compresses the frame (if that makes it smaller) into `writer`.
    fn write_to(self, writer: &mut PackWriter, level: Option<i32>) {
        if self.blobs.is_empty() {
            return;
        }
        let (compression, payload) = compress_frame(&self.raw, level);
        writer.add_frame(compression, &payload, &self.blobs);
    }
}

use super::layout::Object;
use super::repository::Repository;
use super::store::Upload;

/// Sealed packs per index file: bounds what a crash can cost to re-upload.
const CHECKPOINT_PACKS: usize = 16;
/// An index file is also written once a second has passed since the last one (at the next
/// sealed pack), or a twentieth of the packer's age if that is longer: a run killed at any
/// point re-uploads at most about that much work, and a long run writes a few hundred index
/// files, not one every few seconds (benches/RESUME.md).
const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
const CHECKPOINT_SHARE: u32 = 20;

/// A blob hashed and, if new, compressed (or kept raw for its frame); ready for
/// [`Packer::add`].
#[derive(Debug)]
pub(crate) struct Prepared {
    kind: BlobKind,
    id: Id,
    raw_len: u32,
    /// `None` if the repository already has the blob.
    stored: Option<Stored>,
}

impl Prepared {
    pub(crate) fn id(&self) -> Id {
        self.id
    }
    pub(crate) fn raw_len(&self) -> u64 {
        u64::from(self.raw_len)
    }
}

/// Blobs compressed together as one frame of their own, ready for [`Packer::add_frame`].
#[derive(Debug)]
pub(crate) struct PreparedFrame {
    blobs: Vec<(BlobKind, Id, u32)>,
    compression: Compression,
    payload: Vec<u8>,
}

/// What the packer added to the repository.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Packed {
    pub(crate) bytes_added: u64,
    pub(crate) packs_added: u64,
    pub(crate) index_files_added: u64,
    pub(crate) chunks_added: u64,
    pub(crate) metadata_blobs_added: u64,
    pub(crate) metadata_bytes_added: u64,
}

pub(crate) struct Packer<'a> {
    repo: &'a Repository,
    /// Packs are sealed at this many bytes (the config's pack size unless set otherwise).
    pack_size: usize,
    inner: Mutex<Inner>,
    /// Copying blobs the index already lists into new packs (prune): only blobs already added
    /// here are skipped.
    repack: bool,
}

struct Inner {
    data: PackWriter,
    meta: PackWriter,
    data_frame: OpenFrame,
    meta_frame: OpenFrame,
    pending: HashSet<(BlobKind, Id)>,
    sealed: Vec<PackRecord>,
    /// Every pack sealed, and every index file written, in order.
    written: Vec<Id>,
    written_indexes: Vec<Id>,
    uploads: Vec<Upload>,
    packed: Packed,
    /// Set by the first failure to store a pack or index file. From then on nothing more is
    /// written: an index file must never list a pack whose upload was not seen to succeed.
    /// Why an upload or index write failed; the packer accepts nothing after that.
    failed: Option<String>,
    started: std::time::Instant,
    last_checkpoint: std::time::Instant,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(repo: &'a Repository) -> Packer<'a> {
        Packer {
            repo,
            pack_size: repo.config().pack_size as usize,
            repack: false,
            inner: Mutex::new(Inner {
                data: repo.objects().sealing().pack_writer(),
                meta: repo.objects().sealing().pack_writer(),
                data_frame: OpenFrame::default(),
                meta_frame: OpenFrame::default(),
                pending: HashSet::new(),
                sealed: Vec::new(),
                written: Vec::new(),
                written_indexes: Vec::new(),
                uploads: Vec::new(),
                packed: Packed::default(),
                failed: None,
                started: std::time::Instant::now(),
                last_checkpoint: std::time::Instant::now(),
            }),
        }
    }

    /// The same packer sealing packs at `bytes` (at most the config's pack size): bounds what
    /// a small, frequent store (WAL) holds in memory.
    pub(crate) fn with_pack_size(mut self, bytes: u32) -> Packer<'a> {
        self.pack_size = self.pack_size.min(bytes as usize);
        self
    }

    /// A packer that copies blobs the repository already has into new packs (prune).
    pub(crate) fn for_repack(repo: &'a Repository) -> Packer<'a> {
        Packer {
            repack: true,
            ..Packer::new(repo)
        }
    }

    /// The packer's state, unless an earlier failure stopped it.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        let stopped = |why: &str| {
            Error::InvalidInput(format!("the backup stopped after a storage error: {why}"))
        };
        let inner = self
            .inner
            .lock()
            .map_err(|_| stopped("another thread failed"))?;
        if let Some(why) = &inner.failed {
            return Err(stopped(why));
        }
        Ok(inner)
    }

    fn known(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        if self.lock()?.pending.contains(&(kind, *id)) {
            return Ok(true);
        }
        self.repo.has_blob(kind, id)
    }

    /// Hashes `raw` and, if the repository lacks it, compresses it. Runs on any thread.
    pub(crate) fn prepare(
        &self,
        kind: BlobKind,
        raw: &[u8],
        level: Option<i32>,
    ) -> Result<Prepared> {
        let id = self.repo.objects().sealing().hasher().id(raw);
        let known = self.known(kind, &id)?;
        self.prepare_known(kind, id, raw, known, level)
    }

    /// Which of `ids` the repository or this backup already has: one lock and one batched
    /// index lookup for a whole batch of chunks.
    pub(crate) fn known_many(&self, kind: BlobKind, ids: &[Id]) -> Result<Vec<bool>> {
        let mut out = vec![false; ids.len()];
        let mut ask = Vec::new();
        {
            let inner = self.lock()?;
            for (i, id) in ids.iter().enumerate() {
                if inner.pending.contains(&(kind, *id)) {
                    out[i] = true;
                } else {
                    ask.push(i);
                }
            }
        }
        let asked: Vec<Id> = ask.iter().map(|i| ids[*i]).collect();
        for (i, found) in ask.into_iter().zip(self.repo.blob_locations(kind, &asked)?) {
            out[i] = found.is_some();
        }
        Ok(out)
    }

    /// Like [`Packer::prepare`], for a blob already hashed and looked up.
    pub(crate) fn prepare_known(
        &self,
        kind: BlobKind,
        id: Id,
        raw: &[u8],
        known: bool,
        level: Option<i32>,
    ) -> Result<Prepared> {
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|n| *n <= crate::pack::MAX_BLOB_LEN)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "a {} of {} bytes is larger than a blob may be",
                    kind.name(),
                    raw.len()
                ))
            })?;
        let stored = if known {
            None
        } else if self.framed() && raw.len() >= self.repo.config().frame_size() as usize {
            // Compressed here, in parallel with its neighbours, rather than under the lock.
            let (compression, payload) = compress_frame(raw, level);
            Some(Stored::Frame(compression, payload))
        } else if self.framed() {
            Some(Stored::Raw(raw.to_vec()))
        } else {
            let (compression, stored) = compress(raw, level);
            Some(Stored::Alone(compression, stored))
        };
        Ok(Prepared {
            kind,
            id,
            raw_len,
            stored,
        })
    }

    /// Prepares and adds one blob; returns its id.
    pub(crate) fn add_raw(&self, kind: BlobKind, raw: Vec<u8>, level: Option<i32>) -> Result<Id> {
        let p = self.prepare(kind, &raw, level)?;
        let id = p.id;
        self.add(p)?;
        Ok(id)
    }

    /// Whether blobs go into frames (format version 3).
    fn framed(&self) -> bool {
        self.repo.objects().sealing().is_framed()
    }

    /// Compresses `raw`, the raw bytes of `blobs` laid end to end, as one frame of its own
    /// (format version 3), whose window spans it all. Runs on any thread. For long streams
    /// (WAL) read in large batches: frames of several large chunks compress better than each
    /// chunk alone, and the batch's frames compress in parallel.
    pub(crate) fn prepare_frame(
        &self,
        kind: BlobKind,
        blobs: &[(Id, u32)],
        raw: &[u8],
        level: Option<i32>,
    ) -> PreparedFrame {
        debug_assert!(self.framed());
        debug_assert_eq!(
            blobs.iter().map(|b| u64::from(b.1)).sum::<u64>(),
            raw.len() as u64
        );
        let (compression, payload) = compress_frame(raw, level);
        PreparedFrame {
            blobs: blobs.iter().map(|&(id, len)| (kind, id, len)).collect(),
            compression,
            payload,
        }
    }

    /// Adds a frame from [`Packer::prepare_frame`] unless the repository or this backup
    /// already has every blob in it. (A blob that another thread added meanwhile is then
    /// stored twice, which readers, `check` and `prune` accept.)
    pub(crate) fn add_frame(&self, f: PreparedFrame) -> Result<()> {
        let mut inner = self.lock()?;
        let mut new = Vec::with_capacity(f.blobs.len());
        for &(kind, id, len) in &f.blobs {
            let known = inner.pending.contains(&(kind, id))
                || (!self.repack && self.repo.has_blob(kind, &id)?);
            if !known {
                new.push((kind, id, len));
            }
        }
        let Some(&(kind, ..)) = new.first() else {
            return Ok(());
        };
        let is_data = kind == BlobKind::Data;
        for &(kind, id, len) in &new {
            inner.pending.insert((kind, id));
            if kind == BlobKind::Data {
                inner.packed.chunks_added += 1;
            } else {
                inner.packed.metadata_blobs_added += 1;
                inner.packed.metadata_bytes_added += u64::from(len);
            }
        }
        let writer = if is_data {
            &mut inner.data
        } else {
            &mut inner.meta
        };
        writer.add_frame(f.compression, &f.payload, &f.blobs);
        self.seal_if_full(&mut inner, is_data)
    }

    /// Adds a prepared blob unless the repository or this backup already has it.
    pub(crate) fn add(&self, p: Prepared) -> Result<()> {
        let Some(stored) = p.stored else {
            return Ok(());
        };
        let mut inner = self.lock()?;
        if inner.pending.contains(&(p.kind, p.id))
            || (!self.repack && self.repo.has_blob(p.kind, &p.id)?)
        {
            return Ok(());
        }
        inner.pending.insert((p.kind, p.id));
        let is_data = p.kind == BlobKind::Data;
        if is_data {
            inner.packed.chunks_added += 1;
        } else {
            inner.packed.metadata_blobs_added += 1;
            inner.packed.metadata_bytes_added += u64::from(p.raw_len);
        }
        match stored {
            Stored::Alone(compression, stored) => {
                let writer = if is_data {
                    &mut inner.data
                } else {
                    &mut inner.meta
                };
                writer.add(p.kind, p.id, p.raw_len, compression, &stored);
            }
            Stored::Frame(compression, payload) => {
                let writer = if is_data {
                    &mut inner.data
                } else {
                    &mut inner.meta
                };
                writer.add_frame(compression, &payload, &[(p.kind, p.id, p.raw_len)]);
            }
            Stored::Raw(raw) => {
                let frame = if is_data {
                    &mut inner.data_frame
                } else {
                    &mut inner.meta_frame
                };
                frame.raw.extend_from_slice(&raw);
                frame.blobs.push((p.kind, p.id, p.raw_len));
                if frame.raw.len() < self.repo.config().frame_size() as usize {
                    return Ok(());
                }
                // Compress the full frame outside the lock, so that other threads keep adding.
                let full = std::mem::take(frame);
                drop(inner);
                let level = self.repo.config().zstd_level();
                let (compression, payload) = compress_frame(&full.raw, level);
                inner = self.lock()?;
                let writer = if is_data {
                    &mut inner.data
                } else {
                    &mut inner.meta
                };
                writer.add_frame(compression, &payload, &full.blobs);
            }
        }
        self.seal_if_full(&mut inner, is_data)
    }

    fn seal_if_full(&self, inner: &mut Inner, data: bool) -> Result<()> {
        let writer = if data { &inner.data } else { &inner.meta };
        if writer.len() >= self.pack_size {
            self.seal(inner, data)?;
        }
        Ok(())
    }

    /// Writes the open frame of data or metadata into its pack.
    fn flush_frame(&self, inner: &mut Inner, data: bool) {
        let level = self.repo.config().zstd_level();
        let (frame, writer) = if data {
            (std::mem::take(&mut inner.data_frame), &mut inner.data)
        } else {
            (std::mem::take(&mut inner.meta_frame), &mut inner.meta)
        };
        frame.write_to(writer, level);
    }

    /// Seals the current data or metadata pack and starts its upload.
    fn seal(&self, inner: &mut Inner, data: bool) -> Result<()> {
        let writer = if data {
            &mut inner.data
        } else {
            &mut inner.meta
        };
        if writer.is_empty() {
            return Ok(());
        }
        let fresh = self.repo.objects().sealing().pack_writer();
        let (id, bytes, blobs) = std::mem::replace(writer, fresh).finish();
        let len = bytes.len() as u64;
        inner.packed.bytes_added += len;
        inner.packed.packs_added += 1;
        inner.written.push(id);
        let upload = self.repo.objects().spawn_write_pack(&id, bytes);
        inner.uploads.push(upload);
        inner.sealed.push(PackRecord { id, len, blobs });
        let interval = CHECKPOINT_AFTER.max(inner.started.elapsed() / CHECKPOINT_SHARE);
        if inner.sealed.len() >= CHECKPOINT_PACKS || inner.last_checkpoint.elapsed() >= interval {
            self.checkpoint(inner)?;
        }
        Ok(())
    }

    /// Waits for the sealed packs to be stored, then writes the index file listing them.
    fn checkpoint(&self, inner: &mut Inner) -> Result<()> {
        inner.last_checkpoint = std::time::Instant::now();
        let result = self.write_index(inner);
        if let Err(e) = &result {
            // Threads that meet the stopped packer report the cause, whichever error the
            // caller happens to see first.
            inner.failed = Some(describe(e));
        }
        result
    }

    fn write_index(&self, inner: &mut Inner) -> Result<()> {
        // Wait for every upload, even after one failed, so that none is left running.
        let mut first_error = None;
        for upload in inner.uploads.drain(..) {
            if let Err(e) = self.repo.objects().finish(upload) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if inner.sealed.is_empty() {
            return Ok(());
        }
        // The packs are stored; an index file may list them only while the lock holds.
        self.repo.confirm_locks()?;
        let bytes = encode_index(&inner.sealed);
        let id = self.repo.objects().sealing().hasher().id(&bytes);
        inner.packed.bytes_added += bytes.len() as u64;
        inner.packed.index_files_added += 1;
        self.repo.objects().write(&Object::Index(id), bytes)?;
        inner.written_indexes.push(id);
        self.repo.absorb_index(&id, &inner.sealed)?;
        for p in inner.sealed.drain(..) {
            for b in &p.blobs {
                inner.pending.remove(&(b.kind, b.id));
            }
        }
        Ok(())
    }

    /// The packs this packer has sealed, and the index files it has written, so far.
    pub(crate) fn written(&self) -> (Vec<Id>, Vec<Id>) {
        self.inner
            .lock()
            .map(|i| (i.written.clone(), i.written_indexes.clone()))
            .unwrap_or_default()
    }

    /// Adds a blob the pack reader returned verified (its raw bytes): copying between packs
    /// (prune, copy). It is compressed and sealed again, under this repository's current
    /// epoch and into its frames.
    pub(crate) fn add_copy(&self, entry: &BlobEntry, raw: Vec<u8>) -> Result<()> {
        let level = self.repo.config().zstd_level();
        self.add(self.prepare_known(entry.kind, entry.id, &raw, false, level)?)
    }

    /// Seals what is left, waits for every upload and writes the last index file.
    pub(crate) fn finish(&self) -> Result<Packed> {
        let mut inner = self.lock()?;
        self.flush_frame(&mut inner, true);
        self.flush_frame(&mut inner, false);
        self.seal(&mut inner, true)?;
        self.seal(&mut inner, false)?;
        self.checkpoint(&mut inner)?;
        Ok(inner.packed)
    }
}

/// An error and its causes, innermost last, on one line.
fn describe(e: &Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.join(": ")
}
