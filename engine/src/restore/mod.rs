//! Restore: walk the snapshot in order, cut its files into bounded batches, and restore each
//! batch pack by pack.
//!
//! ```text
//! walker thread: walk the trees (with --include / --exclude filters) in order
//!   make each directory when reached (parents first; --delete removes what the tree lacks),
//!   and each symlink, with its owner and times
//!   expand each file's chunk list into the current batch; a file too large for one batch is
//!   cut into pieces that follow each other
//!   batch full (64 Ki chunks or 16 Ki files) -> hand it to the preparer
//! preparer (the calling thread), for each batch:
//!   create each file (or, with --delta, reuse an existing one and find the chunks it already
//!   holds, compared in parallel on all cores); allocate new files of 1 MiB or more ahead
//!   (they are written around the page cache)
//!   look the remaining chunks up in the index (parallel), group them by pack
//!   -> hand the batch to the finisher
//! finisher thread, for each batch, in a pool of four threads per core (writing and reading
//! scattered chunks mostly waits on the disk):
//!   for each pack segment of a few MiB, in parallel:
//!     read the needed ranges (coalesced) -> check blob header -> decompress -> verify BLAKE3
//!     -> write at every (file, offset) that needs the chunk: the whole pages of a run
//!        directly to the disk for files allocated ahead, and their partial pages held back;
//!        all-zero chunks of new files are left as holes
//!   write the partial pages held back; give back the zero pages of files allocated ahead
//!   remove files found damaged (pieces of them in the batch prepared meanwhile are dropped);
//!   --verify: re-read and compare; set the metadata of the files this batch finished
//! directory metadata, deepest first
//! sync (unless --no-sync): one syncfs of the target's filesystem, and of each other
//!   filesystem an existing copy reaches through a mount point
//! ```
//!
//! Memory is bounded by the batch, not by the snapshot: a snapshot of millions of files or a
//! file of hundreds of GiB is restored in as many batches as it takes. At most three batches
//! are alive: the one the walker fills, the one being prepared, and the one being written. So
//! a delta restore compares the next batch with the existing copy while this one is written.
//!
//! Safety invariants: no byte is written before its chunk's hash is verified; every path
//! written is the target joined with names that the tree decoder checked to be single, safe
//! components; directories are made (or, with `--delta`, checked to be real directories, not
//! symlinks) parents first; files are opened with `O_NOFOLLOW`. No snapshot entry, and no
//! symlink planted in an existing target, can make a restore write outside the target.

mod compare;
mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::BlobLocation;
use crate::manifest::{Node, NodeKind};
use crate::pack::{BlobEntry, BlobKind};
use crate::progress::Progress;
use crate::repo::{Coalesce, Repository};
use crate::snapshot::{RootMeta, Snapshot};

use plan::{Batch, FileChunk, Filter, Piece, WalkOutcome, Walker, find_path};

/// A blob of a pack to restore, and the places it goes.
type Wanted<'a> = (&'a BlobEntry, &'a [Placement]);

/// One place a chunk goes: a piece of the batch, and the offset in its file.
#[derive(Debug, Clone, Copy)]
struct Placement {
    file: u32,
    offset: u64,
}

/// Stored bytes of a pack restored as one unit of parallel work.
const SEGMENT: u64 = 4 << 20;
/// Gaps between needed blobs up to this size are read rather than skipped.
const COALESCE_GAP: u64 = 256 * 1024;
/// Descriptors the restoring threads keep open between them (each thread its share; a file
/// written around the page cache takes two): well below the usual limit of 1024 a process.
const OPEN_FILES: usize = 256;

/// Stack of the thread that walks the snapshot's trees (recursively).
const WALK_STACK: usize = 64 << 20;

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory to restore into; created if missing. Without `delta` it must be empty.
    pub target: PathBuf,
    /// Restore only paths matching one of these globs (relative to the restored root), and
    /// everything below a matching directory. Empty: restore everything.
    pub include: Vec<String>,
    /// Leave out paths matching one of these globs, and everything below them.
    pub exclude: Vec<String>,
    /// Restore only this path of the snapshot (`snapshot:path` on the command line).
    pub subpath: Option<String>,
    /// Restore over an existing copy, rewriting only the chunks that differ.
    pub delta: bool,
    /// With `delta`: remove entries of the target that the snapshot does not have.
    pub delete: bool,
    /// After writing, read every restored file back and compare it with the snapshot.
    pub verify: bool,
    /// When data is damaged, restore every file that does not need it and list the others
    /// (which are left out of the target) instead of stopping.
    pub skip_damaged: bool,
    /// Chunks planned and written together (0: the default, about 512 MiB of content). The
    /// plan's memory grows with it; smaller batches re-read packs shared across them.
    pub batch_chunks: usize,
    /// Return only once the restored tree is on disk (the default): one `syncfs` of the
    /// target's filesystem (and of any other one an existing copy reaches through a mount
    /// point), which also reports (from Linux 5.8) any write the disk failed during the
    /// restore. Without it a crash soon after can leave files torn or empty that were
    /// reported restored, and a database started on them corrupt.
    pub sync: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            target: PathBuf::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            subpath: None,
            delta: false,
            delete: false,
            verify: false,
            skip_damaged: false,
            batch_chunks: 0,
            sync: true,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RestoreSummary {
    /// Regular files restored.
    pub files_restored: u64,
    /// Directories restored.
    pub dirs_restored: u64,
    /// Symbolic links restored.
    pub symlinks_restored: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Bytes of all-zero chunks left as holes instead of written.
    pub bytes_sparse: u64,
    /// Bytes already correct in the existing copy and not rewritten (`delta`).
    pub bytes_skipped_delta: u64,
    /// Entries removed from the target because the snapshot does not have them (`delete`).
    pub entries_deleted: u64,
    /// Files read back and found identical to the snapshot (`verify`).
    pub files_verified: u64,
    /// Files left out because data they need is damaged (`skip_damaged`), with the reason; a
    /// directory whose tree is damaged is one entry, `dir/ (the whole directory): reason`.
    pub files_damaged: Vec<String>,
    /// Seconds it took.
    pub duration_s: f64,
}

/// Restores `snapshot` into `opts.target`.
pub fn restore(
    repo: &mut Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    // Held to the end: prune cannot delete packs this restore reads.
    let _lock = repo.lock(crate::lock_file::LockKind::Shared, "restore")?;
    let repo: &Repository = repo;
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    if opts.delete && !opts.delta {
        return Err(Error::InvalidInput(
            "--delete removes files of an existing copy; it needs --delta".into(),
        ));
    }
    if opts.delete && !filter.is_trivial() {
        return Err(Error::InvalidInput(
            "--delete cannot be combined with --include or --exclude: it would remove what they leave out".into(),
        ));
    }
    let target = &opts.target;
    check_target(repo, target, opts.delta)?;
    let root = repo.load_tree(&snapshot.tree)?;
    // Resolve the subpath before touching the target.
    let sub = match &opts.subpath {
        None => None,
        Some(sub) => {
            let node = find_path(repo, root.clone(), sub)?;
            let tree = match &node.kind {
                NodeKind::Dir(id) => Some(repo.load_tree(id)?),
                _ if opts.delete => {
                    return Err(Error::InvalidInput(format!(
                        "--delete needs a directory to mirror, and {sub} is not one: it would remove everything else in the target"
                    )));
                }
                _ => None,
            };
            Some((node, tree))
        }
    };
    let whole = sub.is_none() && filter.is_trivial();
    if whole {
        progress.total(snapshot.summary.files, snapshot.summary.logical_bytes);
    }
    let created = !target.exists();
    fs::create_dir_all(target).map_err(|e| Error::io("cannot create", target, e))?;
    let sync_handle = if opts.sync {
        Some(SyncHandle::open(target)?)
    } else {
        None
    };

    // The walk runs on its own thread and hands bounded batches to the writer, so that
    // planning overlaps writing and memory stays bounded whatever the snapshot's size.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(0);
    // Set when the writer fails, so that the walker stops making directories (and, with
    // --delete, removing entries) at once rather than at its next batch.
    let stop = AtomicBool::new(false);
    // Files that cannot be restored: their number, path, and why.
    let damaged: Mutex<BTreeMap<u32, (PathBuf, String)>> = Mutex::new(BTreeMap::new());
    let write_pool = write_pool()?;
    let (written, walked) = std::thread::scope(|s| {
        // The walk recurses once per directory level, up to MAX_TREE_DEPTH: a default 2 MiB
        // stack overflowed at 2000 levels (a tree a backup takes: one-letter names reach
        // PATH_MAX there). 64 MiB is address space, touched only as deep as the tree goes.
        let walker = std::thread::Builder::new()
            .name("cairn-walk".into())
            .stack_size(WALK_STACK)
            .spawn_scoped(s, || -> Result<WalkOutcome> {
                let mut w = Walker {
                    repo,
                    filter: &filter,
                    opts,
                    progress,
                    report_totals: !whole,
                    batch_chunks: batch_chunks(opts),
                    tx,
                    stop: &stop,
                    sync: sync_handle.as_ref(),
                    batch: Batch::default(),
                    ancestors: Vec::new(),
                    out: WalkOutcome::default(),
                };
                match sub {
                    None => w.walk_tree(&root, Path::new(""), false)?,
                    Some((node, Some(tree))) => w.walk_root_dir(node, &tree)?,
                    Some((node, None)) => {
                        let name = PathBuf::from(OsStr::from_bytes(&node.name));
                        w.walk_node(&node, name, false)?;
                    }
                }
                w.finish()?;
                Ok(w.out)
            });
        // Prepared batches go to a thread of their own to be written, so that comparing the
        // next batch with an existing copy (CPU) overlaps the pack reads and writes of this
        // one (mostly waiting). The queue holds none: at most two batches are in hand.
        let (ptx, prx) = std::sync::mpsc::sync_channel::<Prepared>(0);
        let finisher = s.spawn(|| -> Result<Finished> {
            let mut total = Finished::default();
            for prep in prx {
                match write_pool.install(|| finish_batch(repo, opts, progress, prep, &damaged)) {
                    Ok(f) => total.add(f),
                    Err(e) => {
                        stop.store(true, Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(total)
        });
        let mut open_fresh = HashMap::new();
        let mut prepared = Ok(());
        for batch in &rx {
            // The finisher failed: its error is the one reported.
            if stop.load(Relaxed) {
                break;
            }
            match prepare_batch(
                repo,
                opts,
                progress,
                batch,
                &damaged,
                &mut open_fresh,
                &stop,
            ) {
                // A closed queue means the finisher stopped on an error, which it reports.
                Ok(p) => {
                    if ptx.send(p).is_err() {
                        break;
                    }
                }
                // Stopped because the finisher failed: its error is the one reported.
                Err(_) if stop.load(Relaxed) => break,
                Err(e) => {
                    stop.store(true, Relaxed);
                    prepared = Err(e);
                    break;
                }
            }
        }
        drop(ptx);
        let finished = finisher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The finisher's error comes from an earlier batch than the preparer's.
        let written = finished.and_then(|f| prepared.map(|()| f));
        // A stopped writer makes the walker stop at its next batch.
        drop(rx);
        let walked = match walker {
            Ok(w) => w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // Nothing was walked; the writer, with no batch to take, has stopped at once.
            Err(e) => Err(Error::io(
                "cannot start the restore threads for",
                "cairn",
                e,
            )),
        };
        (written, walked)
    });
    let finished = written?;
    let walked = walked?;
    if !filter.is_trivial() && walked.files == 0 && walked.dirs.is_empty() && walked.symlinks == 0 {
        if created {
            let _ = fs::remove_dir(target);
        }
        return Err(Error::InvalidInput(format!(
            "nothing in the snapshot matches --include {} --exclude {}; run `cairn ls` to see its paths",
            opts.include.join(" "),
            opts.exclude.join(" ")
        )));
    }

    // Deepest first, so that setting a parent's mtime comes after its children changed it.
    let mut dirs: Vec<_> = walked.dirs.iter().collect();
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, node) in dirs {
        set_meta(&target.join(rel), node, false)?;
    }
    // The target is the snapshot's root: it takes the backed-up directory's own metadata.
    if let (None, Some(root)) = (&opts.subpath, &snapshot.root) {
        set_meta(target, &root_node(root), false)?;
    }
    if let Some(handle) = sync_handle {
        handle.sync()?;
    }

    let mut summary = RestoreSummary {
        bytes_written: finished.written,
        bytes_sparse: finished.sparse,
        bytes_skipped_delta: finished.skipped,
        files_restored: finished.restored,
        files_verified: finished.verified,
        ..RestoreSummary::default()
    };
    summary.files_damaged = damaged
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .map(|(rel, reason)| format!("{}: {reason}", rel.display()))
        .chain(
            walked
                .damaged_dirs
                .iter()
                .map(|(rel, reason)| format!("{}/ (the whole directory): {reason}", rel.display())),
        )
        .collect();
    summary.dirs_restored = walked.dirs.len() as u64;
    summary.symlinks_restored = walked.symlinks;
    summary.entries_deleted = walked.deleted;
    summary.duration_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Makes what was written under a directory durable, and reports the writes the disk failed.
pub(crate) struct SyncHandle {
    dir: File,
    path: PathBuf,
    dev: u64,
    /// One directory of the tree on each other filesystem: mount points in an existing copy
    /// (a separately mounted WAL directory, say), which a `syncfs` of the target misses.
    others: Mutex<BTreeMap<u64, File>>,
}

impl SyncHandle {
    /// Opens `dir`. Open it before writing: the sync reports the write-back errors of its
    /// filesystem since then.
    pub(crate) fn open(dir: &Path) -> Result<SyncHandle> {
        let file = File::open(dir).map_err(|e| Error::io("cannot open", dir, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", dir, e))?;
        Ok(SyncHandle {
            dir: file,
            path: dir.to_path_buf(),
            dev: meta.dev(),
            others: Mutex::new(BTreeMap::new()),
        })
    }

    /// Notes an existing directory the restore writes into: if it lies on another filesystem,
    /// that one is synced too.
    pub(crate) fn note_dir(&self, dir: &Path, meta: &fs::Metadata) -> Result<()> {
        if meta.dev() == self.dev {
            return Ok(());
        }
        let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        if let std::collections::btree_map::Entry::Vacant(v) = others.entry(meta.dev()) {
            v.insert(File::open(dir).map_err(|e| Error::io("cannot open", dir, e))?);
        }
        Ok(())
    }

    /// Waits until everything written since the open is on disk. One `syncfs` for the whole
    /// tree: an fsync per file would cost a journal commit each, and a million small files
    /// many minutes. It flushes the filesystem's other dirty data too, and (from Linux 5.8)
    /// fails if any write-back on it failed since the open.
    pub(crate) fn sync(&self) -> Result<()> {
        let others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in std::iter::once(&self.dir).chain(others.values()) {
            rustix::fs::syncfs(dir).map_err(|e| Error::NotDurable {
                path: self.path.clone(),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

/// Chunks per batch by default: about 512 MiB of file content, a few tens of MiB of plan.
const BATCH_CHUNKS: usize = 64 * 1024;

/// Chunks planned and written together.
fn batch_chunks(opts: &RestoreOptions) -> usize {
    if opts.batch_chunks == 0 {
        BATCH_CHUNKS
    } else {
        opts.batch_chunks
    }
}

/// Threads that write restored files on a local disk: four per core, because they spend much
/// of their time waiting on the disk: a direct write returns once the disk has the data, and
/// a delta restore reads scattered chunks. With two per core a full restore left a third of
/// the cores idle. (An object store's reads run in its own pool of one thread per
/// connection.)
fn write_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(4 * rayon::current_num_threads())
        .thread_name(|i| format!("cairn-restore-{i}"))
        .build()
        .map_err(|e| {
            Error::io(
                "cannot start the restore threads for",
                "cairn",
                std::io::Error::other(e),
            )
        })
}

/// A batch made ready to write: its files opened, the chunks they already hold (with
/// `--delta`) left out, and every other chunk located in its pack.
struct Prepared {
    pieces: Vec<Piece>,
    /// Per piece: whether its file was created by this restore (unwritten ranges are zeros).
    fresh: Vec<bool>,
    /// Per piece: whether its file is written around the page cache (see `Opened`).
    direct: Vec<bool>,
    /// Pieces (by position) that cannot be restored, and why.
    damaged: BTreeMap<u32, String>,
    /// Per pack: the blobs wanted from it, and the places each goes.
    packs: HashMap<Id, HashMap<Id, (BlobEntry, Vec<Placement>)>>,
    /// Per piece: bytes already right in the existing copy (`--delta`).
    skipped: Vec<u64>,
}

/// What writing batches did.
#[derive(Default)]
struct Finished {
    written: u64,
    sparse: u64,
    skipped: u64,
    restored: u64,
    verified: u64,
}

impl Finished {
    fn add(&mut self, o: Finished) {
        self.written += o.written;
        self.sparse += o.sparse;
        self.skipped += o.skipped;
        self.restored += o.restored;
        self.verified += o.verified;
    }
}

/// Compares runs of this many chunks (about 32 MiB) at a time, so both cores share large files.
const COMPARE_RUN: usize = 4096;

/// Prepares one batch: opens or creates its files, finds (with `--delta`) the chunks they
/// already hold, and locates every other chunk in its pack. Pieces of files already found
/// damaged are left out.
fn prepare_batch(
    repo: &Repository,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    batch: Batch,
    damaged_files: &Mutex<BTreeMap<u32, (PathBuf, String)>>,
    open_fresh: &mut HashMap<u32, Opened>,
    stop: &AtomicBool,
) -> Result<Prepared> {
    let target = &opts.target;
    let pieces: Vec<Piece> = {
        let known = damaged_files.lock().unwrap_or_else(PoisonError::into_inner);
        batch
            .pieces
            .into_iter()
            .filter(|p| !known.contains_key(&p.file))
            .collect()
    };
    let opened: Vec<Opened> = pieces
        .par_iter()
        .map(|p| {
            if !p.first {
                // Unknown means not created here: zeros are then written, never assumed.
                return Ok(open_fresh.get(&p.file).copied().unwrap_or_default());
            }
            if p.damaged.is_some() {
                return Ok(Opened {
                    fresh: true,
                    direct: false,
                });
            }
            open_target_file(target, p, opts.delta, opts.delete)
        })
        .collect::<Result<_>>()?;
    let fresh: Vec<bool> = opened.iter().map(|o| o.fresh).collect();
    let direct: Vec<bool> = opened.iter().map(|o| o.direct).collect();
    for (p, f) in pieces.iter().zip(opened) {
        if p.first && !p.last {
            open_fresh.insert(p.file, f);
        } else if p.last {
            open_fresh.remove(&p.file);
        }
    }

    // With --delta, which chunks the existing files already hold.
    if stop.load(Relaxed) {
        return Err(stopped());
    }
    let runs: Vec<(usize, usize)> = pieces
        .iter()
        .enumerate()
        .filter(|(i, p)| !fresh[*i] && p.damaged.is_none())
        .flat_map(|(i, p)| {
            (0..p.chunks.len())
                .step_by(COMPARE_RUN)
                .map(move |s| (i, s))
        })
        .collect();
    let matched: Vec<Vec<bool>> = runs
        .par_iter()
        .map(|&(i, s)| {
            let chunks = &pieces[i].chunks;
            let run = &chunks[s..(s + COMPARE_RUN).min(chunks.len())];
            compare::matching_chunks(&target.join(&pieces[i].work), run, repo.hasher())
        })
        .collect();
    // Per piece, which of its chunks are kept (empty: none), and their bytes.
    let mut kept: Vec<Vec<bool>> = vec![Vec::new(); pieces.len()];
    let mut skipped = vec![0u64; pieces.len()];
    for (&(i, s), m) in runs.iter().zip(matched) {
        let chunks = &pieces[i].chunks;
        let k = &mut kept[i];
        k.resize(chunks.len(), false);
        for (j, ok) in m.into_iter().enumerate() {
            if ok {
                k[s + j] = true;
                skipped[i] += u64::from(chunks[s + j].len);
            }
        }
    }
    progress.bytes(skipped.iter().sum());
    if stop.load(Relaxed) {
        return Err(stopped());
    }

    // Locate every chunk still to write, in parallel batches of lookups.
    let mut damaged: BTreeMap<u32, String> = pieces
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i as u32, p.damaged.clone()?)))
        .collect();
    let todo: Vec<(u32, FileChunk)> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.damaged.is_none())
        .flat_map(|(i, p)| {
            let k = &kept[i];
            p.chunks
                .iter()
                .enumerate()
                .filter(move |(j, _)| !k.get(*j).copied().unwrap_or(false))
                .map(move |(_, c)| (i as u32, *c))
        })
        .collect();
    drop(kept);
    // In id order, split between the cores: sorted lookups lie close together in the cache
    // and are found by stepping through it rather than by a search each.
    let mut by_id: Vec<(Id, usize)> = todo
        .iter()
        .enumerate()
        .map(|(k, (_, c))| (c.id, k))
        .collect();
    by_id.sort_unstable();
    let share = by_id.len().div_ceil(rayon::current_num_threads()).max(1024);
    let located: Vec<Vec<Option<BlobLocation>>> = by_id
        .par_chunks(share)
        .map(|group| {
            let ids: Vec<Id> = group.iter().map(|(id, _)| *id).collect();
            repo.blob_locations(BlobKind::Data, &ids)
        })
        .collect::<Result<_>>()?;
    let mut found: Vec<Option<BlobLocation>> = vec![None; todo.len()];
    for ((_, k), loc) in by_id.iter().zip(located.into_iter().flatten()) {
        found[*k] = loc;
    }
    drop(by_id);
    let mut packs: HashMap<Id, HashMap<Id, (BlobEntry, Vec<Placement>)>> = HashMap::new();
    for ((piece, c), loc) in todo.iter().zip(found) {
        let problem = match loc {
            None => Some(Error::MissingBlob {
                kind: BlobKind::Data.name(),
                id: c.id.to_hex(),
            }),
            Some(loc) if loc.entry.raw_len != c.len => Some(Error::corrupt(
                format!("chunk {}", c.id.short()),
                "its indexed length differs from the file's chunk list",
            )),
            Some(loc) => {
                packs
                    .entry(loc.pack)
                    .or_default()
                    .entry(c.id)
                    .or_insert_with(|| (loc.entry, Vec::new()))
                    .1
                    .push(Placement {
                        file: *piece,
                        offset: c.offset,
                    });
                None
            }
        };
        if let Some(e) = problem {
            if !opts.skip_damaged {
                return Err(Error::Unrestorable {
                    files: pieces[*piece as usize].rel.display().to_string(),
                    source: Box::new(e),
                });
            }
            damaged.entry(*piece).or_insert_with(|| e.to_string());
        }
    }

    Ok(Prepared {
        pieces,
        fresh,
        direct,
        damaged,
        packs,
        skipped,
    })
}

/// Writes a prepared batch: reads each pack once, verifies, writes, removes the files found
/// damaged, checks them again (`--verify`), and finishes the files whose last piece this is.
fn finish_batch(
    repo: &Repository,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    prep: Prepared,
    damaged_files: &Mutex<BTreeMap<u32, (PathBuf, String)>>,
) -> Result<Finished> {
    let target = &opts.target;
    let Prepared {
        pieces,
        fresh,
        direct,
        damaged,
        mut packs,
        skipped,
    } = prep;
    // Files the batch before this one found damaged after this one was prepared: they were
    // removed then, and nothing more of them is written.
    let stale: HashSet<u32> = {
        let known = damaged_files.lock().unwrap_or_else(PoisonError::into_inner);
        pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| known.contains_key(&p.file))
            .map(|(i, _)| i as u32)
            .collect()
    };
    if !stale.is_empty() {
        // Nothing of theirs is read, and what they held already does not count as kept.
        for blobs in packs.values_mut() {
            for (_, places) in blobs.values_mut() {
                places.retain(|p| !stale.contains(&p.file));
            }
            blobs.retain(|_, (_, places)| !places.is_empty());
        }
        packs.retain(|_, blobs| !blobs.is_empty());
    }
    let skipped: u64 = skipped
        .iter()
        .enumerate()
        .filter(|(i, _)| !stale.contains(&(*i as u32)))
        .map(|(_, b)| b)
        .sum();
    let written = AtomicU64::new(0);
    let sparse = AtomicU64::new(0);
    let edges = Mutex::new(Edges::default());
    let damaged = Mutex::new(damaged);
    // Each pack's wanted blobs in pack order, cut into segments that the cores share: one
    // pack holds tens of MiB of content, and a batch only a handful of packs.
    let mut packs: Vec<_> = packs.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    let mut segments: Vec<(&Id, Vec<Wanted>)> = Vec::new();
    for (pack, blobs) in &packs {
        let mut wanted: Vec<Wanted> = blobs
            .values()
            .map(|(e, places)| (e, places.as_slice()))
            .collect();
        // The blobs of a frame share its offset: in frame order, so that a file's neighbouring
        // chunks stay neighbours and are written with one call, not one call a chunk.
        wanted.sort_by_key(|(e, _)| (e.offset, e.frame.map_or(0, |f| f.start)));
        let mut seg: Vec<Wanted> = Vec::new();
        for w in wanted {
            if seg
                .first()
                .is_some_and(|(first, _)| w.0.end() - first.offset > SEGMENT)
            {
                segments.push((pack, std::mem::take(&mut seg)));
            }
            seg.push(w);
        }
        if !seg.is_empty() {
            segments.push((pack, seg));
        }
    }
    let ctx = WriteCtx {
        repo,
        target,
        pieces: &pieces,
        fresh: &fresh,
        direct: &direct,
        edges: &edges,
        open_files: (OPEN_FILES / rayon::current_num_threads()).max(4),
        run_room: MAX_WRITE + repo.config().chunker.max_size as usize + 2 * page_size(),
        edges_held: batch_chunks(opts).saturating_mul(EDGES_PER_CHUNK),
        written: &written,
        sparse: &sparse,
        progress,
        skip_damaged: opts.skip_damaged,
        damaged: &damaged,
    };
    repo.objects().with_parallel_reads(|| {
        segments
            .par_iter()
            .map(|(pack, wanted)| ctx.restore_segment(pack, wanted))
            .collect::<Result<Vec<()>>>()
    })?;
    ctx.write_edges(
        std::mem::take(&mut *edges.lock().unwrap_or_else(PoisonError::into_inner)),
        true,
    )?;

    // Files that could not be restored are not left behind half written.
    {
        let mut known = damaged_files.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, reason) in damaged.into_inner().unwrap_or_else(PoisonError::into_inner) {
            if stale.contains(&i) {
                continue;
            }
            let p = &pieces[i as usize];
            remove_any(&target.join(&p.work))?;
            // A file cut across batches has a piece in each; it counts once.
            if known.insert(p.file, (p.rel.clone(), reason)).is_none() {
                progress.file_done();
            }
        }
    }
    let intact: Vec<bool> = {
        let known = damaged_files.lock().unwrap_or_else(PoisonError::into_inner);
        pieces
            .iter()
            .map(|p| !known.contains_key(&p.file))
            .collect()
    };

    // Verify before the final modes are set: a restored file may end up unreadable to us.
    if opts.verify {
        let bad: Vec<String> = pieces
            .par_iter()
            .zip(&intact)
            .zip(&direct)
            .filter(|((_, ok), _)| **ok)
            .filter(|((p, _), direct)| {
                let path = target.join(&p.work);
                let size_ok = fs::symlink_metadata(&path).is_ok_and(|m| m.len() == p.node.size);
                let differs = !size_ok
                    || compare::matching_chunks(&path, &p.chunks, repo.hasher()).contains(&false);
                // Reading filled the cache with pages the next batch may write around it.
                if **direct {
                    drop_cached(&path);
                }
                differs
            })
            .map(|((p, _), _)| p.rel.display().to_string())
            .collect();
        if !bad.is_empty() {
            return Err(Error::corrupt(
                format!("restored files in {}", target.display()),
                format!(
                    "{} differ from the snapshot after writing: {}",
                    bad.len(),
                    bad.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let finished: Vec<&Piece> = pieces
        .iter()
        .zip(&intact)
        .filter(|(p, ok)| p.last && **ok)
        .map(|(p, _)| p)
        .collect();
    // Complete and verified: each file takes its mode, owner and times, then its name.
    finished
        .par_iter()
        .map(|p| {
            let (work, path) = (target.join(&p.work), target.join(&p.rel));
            set_meta(&work, &p.node, false)?;
            fs::rename(&work, &path).map_err(|e| Error::io("cannot rename into place", &path, e))
        })
        .collect::<Result<Vec<()>>>()?;
    for _ in &finished {
        progress.file_done();
    }
    let restored = finished.len() as u64;
    Ok(Finished {
        written: written.load(Relaxed),
        sparse: sparse.load(Relaxed),
        skipped,
        restored,
        verified: if opts.verify { restored } else { 0 },
    })
}

/// The error of a preparer stopped because the finisher failed (never reported: the
/// finisher's error is).
fn stopped() -> Error {
    Error::InvalidInput("the restore writer stopped".into())
}

/// How a restore opened a file it writes.
#[derive(Debug, Clone, Copy, Default)]
struct Opened {
    /// Created by this restore: its unwritten ranges read as zeros.
    fresh: bool,
    /// Written around the page cache: a fresh file of at least `DIRECT_MIN` bytes on a
    /// filesystem that takes direct I/O at page alignment. The whole pages within a run of
    /// bytes go straight to the disk, so a large restore neither copies them into the page
    /// cache nor makes the kernel evict other data to hold them (which, on a machine whose
    /// memory is full of cache, cost a third of a full restore). The partial pages at the
    /// ends of runs go through the cache at the end of the batch, or sooner if too many are
    /// held back (see `Edges`). No page is written both ways.
    direct: bool,
}

/// Smallest file written around the page cache: below it, writes are too small to gain.
const DIRECT_MIN: u64 = 1 << 20;

/// Opens the file a restore writes for `piece`, at its work name, sized to the file's size.
/// With `delta`, an existing regular file is moved to the work name and reused there (not
/// fresh), as is one left at the work name by an interrupted restore; anything else in the
/// way is replaced ([`make_way`]), and a new file is created (fresh).
fn open_target_file(target: &Path, piece: &Piece, delta: bool, delete: bool) -> Result<Opened> {
    let (p, size) = (target.join(&piece.work), piece.node.size);
    let (f, fresh) = if delta {
        let existing = target.join(&piece.rel);
        match fs::symlink_metadata(&existing) {
            // Written in place, a file would hold a mix of old and new content at its final
            // name until the restore finished.
            Ok(m) if m.is_file() && m.nlink() == 1 => fs::rename(&existing, &p)
                .map_err(|e| Error::io("cannot move aside", &existing, e))?,
            Ok(_) => make_way(&existing, "file", delete)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot use", &existing, e)),
        }
        match fs::symlink_metadata(&p) {
            // A file hard-linked elsewhere cannot be reused: writing it would change the other
            // names too (which may lie outside the target).
            Ok(m) if m.is_file() && m.nlink() == 1 => {
                // The final mode is set after writing; until then the owner must write.
                if m.mode() & 0o600 != 0o600 {
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                        .map_err(|e| Error::io("cannot set the mode of", &p, e))?;
                }
                let f = open_existing(&p)?;
                // Truncating to the same length is not free: the filesystem zeroes the tail
                // of the last block, reading it from disk if it is not cached.
                if m.len() != size {
                    f.set_len(size)
                        .map_err(|e| Error::io("cannot size", &p, e))?;
                }
                return Ok(Opened::default());
            }
            Ok(_) => {
                make_way(&p, "file", delete)?;
                (create_file(&p)?, true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => (create_file(&p)?, true),
            Err(e) => return Err(Error::io("cannot use", &p, e)),
        }
    } else {
        (create_file(&p)?, true)
    };
    f.set_len(size)
        .map_err(|e| Error::io("cannot size", &p, e))?;
    let direct = size >= DIRECT_MIN && takes_direct_io(&f);
    if direct {
        // Allocated ahead, a file takes direct writes under a shared lock, from all threads at
        // once; a write that allocates holds the file's lock alone for its trip to the disk
        // (ext4). Its all-zero pages are given back at the end of their batch (see `Edges`),
        // so until then they take space too: the file is allocated only while that leaves at
        // least its size free. Otherwise, or where allocating fails, the writes allocate.
        use rustix::fs::{FallocateFlags, fallocate, fstatvfs};
        let free = fstatvfs(&f).map_or(0, |v| v.f_bavail.saturating_mul(v.f_frsize));
        if free / 2 >= size && fallocate(&f, FallocateFlags::KEEP_SIZE, 0, size).is_err() {
            // A failed allocation may keep what it took; nothing is written yet.
            let _ = fallocate(
                &f,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                0,
                size,
            );
        }
    }
    Ok(Opened { fresh, direct })
}

/// Whether direct reads and writes of `f` at page-aligned offsets, lengths and buffers work,
/// as the filesystem reports it (Linux 6.1+; on older kernels, or where the filesystem does
/// not say, the page cache is used).
fn takes_direct_io(f: &File) -> bool {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    let page = page_size() as u32;
    let Ok(st) = statx(f, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) else {
        return false;
    };
    let fits = |align: u32| align != 0 && page.is_multiple_of(align);
    // Blocks larger than a page would make the page cache hold a partial page in a folio of
    // several pages, which could overlap a direct write.
    st.stx_mask & StatxFlags::DIOALIGN.bits() != 0
        && fits(st.stx_dio_offset_align)
        && fits(st.stx_dio_mem_align)
        && st.stx_blksize <= page
}

/// Lexically absolute, then with its longest existing ancestor resolved through symlinks.
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
}

fn check_target(repo: &Repository, target: &Path, delta: bool) -> Result<()> {
    if let Some(r) = repo.location().local_path() {
        let (r, t) = (resolved(r), resolved(target));
        // Restoring into the repository would mix restored files into it; with --delta, a
        // target that holds the repository could have it replaced or deleted.
        if t.starts_with(&r) || (delta && r.starts_with(&t)) {
            return Err(Error::InvalidInput(format!(
                "restore target {} is inside the repository {}; restore elsewhere",
                t.display(),
                r.display()
            )));
        }
    }
    // The target itself may be a symlink to a directory (a data directory on another volume):
    // it is followed. Below it, no symlink is.
    match fs::metadata(target) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot use restore target", target, e)),
        Ok(m) if !m.is_dir() => Err(Error::InvalidInput(format!(
            "restore target {} exists and is not a directory",
            target.display()
        ))),
        Ok(_) if delta => Ok(()),
        Ok(_) => {
            let mut rd = fs::read_dir(target).map_err(|e| Error::io("cannot read", target, e))?;
            if rd.next().is_some() {
                return Err(Error::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(())
        }
    }
}

pub(super) fn make_dir(p: &Path) -> Result<()> {
    fs::create_dir(p).map_err(|e| Error::io("cannot create", p, e))
}

/// Creates `target/rel` and any missing parents, refusing to pass through anything that is
/// not a real directory.
pub(super) fn make_dir_all_real(
    target: &Path,
    rel: &Path,
    sync: Option<&SyncHandle>,
) -> Result<()> {
    let mut p = target.to_path_buf();
    for part in rel.components() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Some(s) = sync {
                    s.note_dir(&p, &m)?;
                }
            }
            Ok(_) => {
                remove_any(&p)?;
                make_dir(&p)?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => make_dir(&p)?,
            Err(e) => return Err(Error::io("cannot use", &p, e)),
        }
    }
    Ok(())
}

/// Makes `p` a symlink to `t` with the owner and times of `node`; with `delta`, a symlink
/// already there and pointing the same way is kept.
pub(super) fn restore_symlink(
    p: &Path,
    node: &Node,
    t: &[u8],
    opts: &RestoreOptions,
) -> Result<()> {
    if opts.delta {
        match fs::read_link(p) {
            Ok(existing) if existing.as_os_str().as_bytes() == t => return set_meta(p, node, true),
            _ => make_way(p, "symlink", opts.delete)?,
        }
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(t), p)
        .map_err(|e| Error::io("cannot create symlink", p, e))?;
    set_meta(p, node, true)
}

/// Removes a file, symlink or directory tree (never following a symlink, never entering
/// another filesystem); a missing entry is fine.
pub(super) fn remove_any(p: &Path) -> Result<()> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot use", p, e)),
    };
    if m.is_dir() {
        refuse_mount_points(p, &m)?;
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .map_err(|e| Error::io("cannot remove", p, e))
}

/// Makes way at `p` for the `wanted` entry ("file" or "symlink") of the snapshot: anything
/// there that is not a directory goes, and so does an empty directory. A directory with
/// entries goes only with `delete`, as none of them is in the snapshot.
pub(super) fn make_way(p: &Path, wanted: &'static str, delete: bool) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() && !delete => match fs::remove_dir(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Err(Error::DirectoryInTheWay {
                path: p.to_path_buf(),
                wanted,
            }),
            Err(e) => Err(Error::io("cannot remove", p, e)),
        },
        Ok(_) => remove_any(p),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot use", p, e)),
    }
}

/// True if the directory `p` (metadata `m`) is where something is mounted: on another device
/// than `dev`, or (a bind mount of the same filesystem) the root of a mount, as the kernel
/// reports it where it can (Linux 5.8 on).
fn is_mount_point(p: &Path, m: &fs::Metadata, dev: u64) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    m.dev() != dev
        || statx(
            CWD,
            p,
            AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::empty(),
        )
        .is_ok_and(|s| {
            s.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && s.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        })
}

/// Fails if the directory tree at `dir` (with metadata `m`) is, or holds, a mount point:
/// removing it would delete another filesystem's files (a WAL disk mounted inside a copy).
fn refuse_mount_points(dir: &Path, m: &fs::Metadata) -> Result<()> {
    let dev = m.dev();
    let parent_dev = match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::symlink_metadata(parent)
            .map_err(|e| Error::io("cannot use", parent, e))?
            .dev(),
        None => dev,
    };
    if is_mount_point(dir, m, parent_dev) {
        return Err(Error::MountPointInTheWay(dir.to_path_buf()));
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| Error::io("cannot list", &d, e))? {
            let e = e.map_err(|e| Error::io("cannot list", &d, e))?;
            let is_dir = e
                .file_type()
                .map_err(|err| Error::io("cannot use", e.path(), err))?
                .is_dir();
            if is_dir {
                let path = e.path();
                let em =
                    fs::symlink_metadata(&path).map_err(|e| Error::io("cannot use", &path, e))?;
                if is_mount_point(&path, &em, dev) {
                    return Err(Error::MountPointInTheWay(path));
                }
                stack.push(path);
            }
        }
    }
    Ok(())
}

fn create_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(p)
        .map_err(|e| Error::io("cannot create", p, e))
}

fn open_existing(p: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| Error::io("cannot open", p, e))
}

/// Opens a file the restore created for writes around the page cache.
fn open_direct(p: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECT)
        .open(p)
        .map_err(|e| Error::io("cannot open", p, e))
}

/// What the parallel pack writers share.
struct WriteCtx<'a> {
    repo: &'a Repository,
    target: &'a Path,
    /// The batch's pieces; placements name them by position.
    pieces: &'a [Piece],
    fresh: &'a [bool],
    direct: &'a [bool],
    edges: &'a Mutex<Edges>,
    /// Descriptors each thread may keep open.
    open_files: usize,
    /// Room a run's buffer is given (for files written around the page cache): the most a
    /// run gathers, its last chunk included, so that the buffer never moves.
    run_room: usize,
    /// Bytes of partial pages held back before they are written anyway.
    edges_held: usize,
    written: &'a AtomicU64,
    sparse: &'a AtomicU64,
    progress: &'a dyn Progress,
    skip_damaged: bool,
    /// Files that cannot be restored, and why; shared by the writers.
    damaged: &'a Mutex<BTreeMap<u32, String>>,
}

impl WriteCtx<'_> {
    /// Records that the files of `places` cannot be restored because of `e`, or, without
    /// `skip_damaged`, stops the restore naming them. Errors that are not damage always stop.
    fn damage<'p>(&self, places: impl Iterator<Item = &'p Placement>, e: Error) -> Result<()> {
        let mut files: Vec<u32> = places.map(|p| p.file).collect();
        files.sort_unstable();
        files.dedup();
        if !e.is_damage() {
            return Err(e);
        }
        if !self.skip_damaged {
            return Err(Error::Unrestorable {
                files: name_files(self.pieces, &files),
                source: Box::new(e),
            });
        }
        let reason = e.to_string();
        if let Ok(mut d) = self.damaged.lock() {
            for f in files {
                d.entry(f).or_insert_with(|| reason.clone());
            }
        }
        Ok(())
    }

    fn is_damaged(&self, file: u32) -> bool {
        self.damaged.lock().is_ok_and(|d| d.contains_key(&file))
    }

    /// Restores the blobs `wanted` (in pack order) of one pack.
    fn restore_segment(&self, pack: &Id, wanted: &[Wanted]) -> Result<()> {
        let mut open: HashMap<u32, OpenFile> = HashMap::new();
        let mut pending: Option<PendingWrite> = None;
        // The buffer of the last run written, reused for the next one.
        let mut spare: Vec<u8> = Vec::new();
        let entries: Vec<BlobEntry> = wanted.iter().map(|(e, _)| **e).collect();
        let coalesce = Coalesce {
            gap: COALESCE_GAP,
            max: u64::MAX,
        };
        let repo = self.repo;
        repo.objects()
            .read_blobs(pack, &entries, coalesce, |k, raw| {
                let places = &wanted[k].1;
                let raw = match raw {
                    Ok(raw) => raw,
                    Err(e) => return self.damage(places.iter(), e),
                };
                let zero = is_zero(&raw);
                for place in places.iter() {
                    if self.is_damaged(place.file) {
                        continue;
                    }
                    let n = raw.len() as u64;
                    self.progress.bytes(n);
                    // A new file was sized with set_len: its unwritten ranges read as zeros
                    // and take no space.
                    if zero && self.fresh[place.file as usize] {
                        self.sparse.fetch_add(n, Relaxed);
                        if self.direct[place.file as usize] {
                            // Allocated ahead: its whole pages are given back at the end.
                            let page = page_size() as u64;
                            let (from, to) = (
                                place.offset.next_multiple_of(page),
                                (place.offset + n) / page * page,
                            );
                            if from < to {
                                let mut edges =
                                    self.edges.lock().unwrap_or_else(PoisonError::into_inner);
                                edges.holes.push((place.file, from, to - from));
                            }
                        }
                        continue;
                    }
                    // Neighbouring chunks of one file are written with one call.
                    if let Some(w) = pending.as_mut()
                        && w.file == place.file
                        && w.offset + w.len() as u64 == place.offset
                        && w.len() < MAX_WRITE
                    {
                        w.buf.extend_from_slice(&raw);
                        continue;
                    }
                    self.flush(&mut open, pending.take(), &mut spare)?;
                    let room = if self.direct[place.file as usize] {
                        Some(self.run_room)
                    } else {
                        None
                    };
                    pending = Some(PendingWrite::new(
                        place,
                        &raw,
                        room,
                        std::mem::take(&mut spare),
                    ));
                }
                Ok(())
            })?;
        self.flush(&mut open, pending.take(), &mut spare)
    }

    /// Writes one run of bytes to its file, and leaves its buffer in `spare`.
    fn flush(
        &self,
        open: &mut HashMap<u32, OpenFile>,
        w: Option<PendingWrite>,
        spare: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(w) = w else { return Ok(()) };
        let path = || self.target.join(&self.pieces[w.file as usize].work);
        let write = |f: &File, bytes: &[u8], at: u64| {
            f.write_all_at(bytes, at)
                .map_err(|e| Error::io("cannot write", path(), e))
        };
        // Bound the open files: a pack can feed thousands of small files.
        if !open.contains_key(&w.file) {
            let held: usize = open
                .values()
                .map(|f| 1 + usize::from(f.direct.is_some()))
                .sum();
            if held + 2 > self.open_files {
                open.clear();
            }
        }
        let f = match open.entry(w.file) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(OpenFile {
                cached: open_existing(&path())?,
                direct: None,
            }),
        };
        let bytes = &w.buf[w.start..];
        let (start, end) = (w.offset, w.offset + bytes.len() as u64);
        let page = page_size() as u64;
        // The run's whole pages, which a file written around the page cache takes directly.
        let (first, last) = (start.next_multiple_of(page), end / page * page);
        if !self.direct[w.file as usize] {
            write(&f.cached, bytes, start)?;
        } else {
            if first < last {
                let whole = &bytes[(first - start) as usize..(last - start) as usize];
                let copy;
                let whole = if whole.as_ptr().align_offset(page as usize) == 0 {
                    whole
                } else {
                    // Only when a chunk larger than the repository's own moved the buffer.
                    copy = AlignedCopy::of(whole, page as usize);
                    copy.bytes()
                };
                let direct = match &mut f.direct {
                    Some(d) => d,
                    None => f.direct.insert(open_direct(&path())?),
                };
                write(direct, whole, first)?;
            }
            // The partial pages wait for the end of the batch, or until too many are held back
            // (see `Edges`), one run per page: the bytes before the first whole page, and those
            // after the last one (or after the first page boundary, in a run that holds no
            // whole page).
            let mut edges = self.edges.lock().unwrap_or_else(PoisonError::into_inner);
            for (from, to) in [(start, first.min(end)), (last.max(first).max(start), end)] {
                if from < to {
                    edges.bytes += (to - from) as usize;
                    edges.runs.push(PendingWrite {
                        file: w.file,
                        offset: from,
                        buf: bytes[(from - start) as usize..(to - start) as usize].to_vec(),
                        start: 0,
                    });
                }
            }
            if edges.bytes >= self.edges_held {
                let runs = std::mem::take(&mut *edges);
                drop(edges);
                self.write_edges(runs, false)?;
            }
        }
        self.written.fetch_add(bytes.len() as u64, Relaxed);
        *spare = w.buf;
        Ok(())
    }

    /// Writes the partial pages held back, each file's on one thread, and gives back the
    /// space of the zero pages of files allocated ahead. Called when no direct write is in
    /// flight (at the end of a batch, `parallel`), or by a pack writer when too many bytes are
    /// held back: then on its own thread, since a thread waiting for a parallel job takes up
    /// other segments meanwhile, each opening files beyond the thread's share of descriptors.
    fn write_edges(&self, edges: Edges, parallel: bool) -> Result<()> {
        let Edges {
            mut runs,
            mut holes,
            ..
        } = edges;
        runs.sort_unstable_by_key(|w| (w.file, w.offset));
        holes.sort_unstable();
        let files: Vec<&[PendingWrite]> = runs.chunk_by(|a, b| a.file == b.file).collect();
        let write = |runs: &&[PendingWrite]| {
            let path = self.target.join(&self.pieces[runs[0].file as usize].work);
            let f = open_existing(&path)?;
            for w in *runs {
                f.write_all_at(&w.buf, w.offset)
                    .map_err(|e| Error::io("cannot write", &path, e))?;
            }
            Ok::<(), Error>(())
        };
        if parallel {
            files.par_iter().try_for_each(write)?;
        } else {
            files.iter().try_for_each(write)?;
        }
        let files: Vec<&[(u32, u64, u64)]> = holes.chunk_by(|a, b| a.0 == b.0).collect();
        let punch = |holes: &&[(u32, u64, u64)]| {
            let path = self.target.join(&self.pieces[holes[0].0 as usize].work);
            let f = open_existing(&path)?;
            for &(_, offset, len) in *holes {
                // Space only: the range reads as zeros either way.
                let _ = rustix::fs::fallocate(
                    &f,
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                    offset,
                    len,
                );
            }
            Ok::<(), Error>(())
        };
        if parallel {
            files.par_iter().try_for_each(punch)
        } else {
            files.iter().try_for_each(punch)
        }
    }
}

/// What the writers of a batch hold back for files written around the page cache: the
/// partial pages at the ends of each run (one run per page), and the whole pages of all-zero
/// chunks.
///
/// A write through the page cache takes the file's lock exclusively and so waits for every
/// direct write in flight to that file (which holds it shared for its whole trip to the
/// disk); holding the partial pages back until the end of the batch (or until 512 bytes per
/// chunk of the batch are held) lets the direct writes of all threads proceed together.
/// Giving back allocated space likewise waits for them.
#[derive(Default)]
struct Edges {
    runs: Vec<PendingWrite>,
    /// Bytes in `runs`.
    bytes: usize,
    /// (piece, offset, length) of whole zero pages.
    holes: Vec<(u32, u64, u64)>,
}

/// Bytes of partial pages held back, per chunk of the batch, before they are written anyway
/// (when runs are short and scattered, they are a large share of the data): 32 MiB with the
/// default batch. They are part of the batch's memory, which a smaller batch makes smaller.
const EDGES_PER_CHUNK: usize = 512;

/// A file a restoring thread writes: through the page cache, and (opened when first needed)
/// around it.
struct OpenFile {
    cached: File,
    direct: Option<File>,
}

/// Bytes for one file, at one offset, not yet written.
struct PendingWrite {
    file: u32,
    offset: u64,
    /// The bytes, from `start` on.
    buf: Vec<u8>,
    start: usize,
}

impl PendingWrite {
    /// A run starting with `raw` at `place`, in `buf` (cleared). For a file written around the
    /// page cache (`room` given) the bytes are placed so that the run's first whole page lies
    /// at a page-aligned address, as direct I/O needs, in a buffer of `room` bytes.
    fn new(place: &Placement, raw: &[u8], room: Option<usize>, mut buf: Vec<u8>) -> PendingWrite {
        buf.clear();
        let start = if let Some(room) = room {
            let page = page_size();
            buf.reserve(room.max(raw.len() + 2 * page));
            let to_page = (place.offset.next_multiple_of(page as u64) - place.offset) as usize;
            buf.as_ptr().wrapping_add(to_page).align_offset(page)
        } else {
            0
        };
        buf.resize(start, 0);
        buf.extend_from_slice(raw);
        PendingWrite {
            file: place.file,
            offset: place.offset,
            buf,
            start,
        }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Bytes copied to a page-aligned address.
struct AlignedCopy {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedCopy {
    fn of(bytes: &[u8], page: usize) -> AlignedCopy {
        let mut buf = vec![0; bytes.len() + page];
        let start = buf.as_ptr().align_offset(page);
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedCopy {
            buf,
            start,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// Whether all of `bytes` are zero, compared a block at a time (a byte loop that stops at
/// the first non-zero byte still crawls through the long zero runs of database pages).
fn is_zero(bytes: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    bytes.last().is_none_or(|b| *b == 0)
        && bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// Drops the clean cached pages of a file written around the page cache once `--verify` has
/// read it: the direct writes of the next batch then find nothing cached in their range to
/// write back and drop (the kernel does both, keeping readers coherent), and the cache is
/// left to data read again. Advice only: a file that cannot be opened has none.
fn drop_cached(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    }
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// Largest run of bytes gathered for one write.
const MAX_WRITE: usize = 4 << 20;

/// A few file names, then a count.
fn name_files(pieces: &[Piece], which: &[u32]) -> String {
    let mut names: Vec<String> = which
        .iter()
        .take(5)
        .map(|i| pieces[*i as usize].rel.display().to_string())
        .collect();
    if which.len() > 5 {
        names.push(format!("and {} more files", which.len() - 5));
    }
    names.join(", ")
}

/// Sets mode, times, and (as root) owner, each only if it differs (a delta restore over an
/// identical copy then changes nothing). Symlinks get owner and times, never a mode.
fn set_meta(p: &Path, node: &Node, symlink: bool) -> Result<()> {
    let current = fs::symlink_metadata(p).map_err(|e| Error::io("cannot use", p, e))?;
    let mut chowned = false;
    if is_root() && (current.uid() != node.uid || current.gid() != node.gid) {
        std::os::unix::fs::lchown(p, Some(node.uid), Some(node.gid))
            .map_err(|e| Error::io("cannot set the owner of", p, e))?;
        chowned = true;
    }
    // A change of owner clears the set-user-ID and set-group-ID bits, even for root: the mode
    // read before is then stale.
    if !symlink && (chowned || current.mode() & 0o7777 != node.mode & 0o7777) {
        fs::set_permissions(p, fs::Permissions::from_mode(node.mode))
            .map_err(|e| Error::io("cannot set the mode of", p, e))?;
    }
    if current.mtime() != node.mtime || current.mtime_nsec() != i64::from(node.mtime_ns) {
        let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_ns);
        filetime::set_symlink_file_times(p, mtime, mtime)
            .map_err(|e| Error::io("cannot set the times of", p, e))?;
    }
    Ok(())
}

/// The snapshot's root directory as a node, for [`set_meta`].
fn root_node(root: &RootMeta) -> Node {
    Node {
        name: Vec::new(),
        kind: NodeKind::Dir(Id([0; 32])),
        mode: root.mode,
        mtime: root.mtime,
        mtime_ns: root.mtime_ns,
        ctime: 0,
        ctime_ns: 0,
        uid: root.uid,
        gid: root.gid,
        inode: 0,
        dev: 0,
        size: 0,
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_covers_each_filesystem_the_tree_reaches_once() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let handle = SyncHandle::open(dir.path()).unwrap();
        let others = |h: &SyncHandle| h.others.lock().unwrap().len();
        // A directory on the target's own filesystem adds nothing.
        handle
            .note_dir(&sub, &fs::symlink_metadata(&sub).unwrap())
            .unwrap();
        assert_eq!(others(&handle), 0);
        // procfs stands in for a filesystem mounted inside an existing copy: it is always
        // mounted, and never on the temporary directory's device.
        for p in ["/proc", "/proc/sys", "/proc"] {
            let p = Path::new(p);
            handle
                .note_dir(p, &fs::symlink_metadata(p).unwrap())
                .unwrap();
        }
        assert_eq!(others(&handle), 1);
        handle.sync().unwrap();
    }

    #[test]
    fn removal_never_enters_another_filesystem() {
        // procfs stands in for a filesystem mounted inside a copy. The check only reads.
        let under = |p: &str| {
            let p = Path::new(p);
            refuse_mount_points(p, &fs::symlink_metadata(p).unwrap())
        };
        assert!(
            matches!(under("/proc"), Err(Error::MountPointInTheWay(p)) if p == Path::new("/proc"))
        );
        assert!(matches!(under("/"), Err(Error::MountPointInTheWay(_))));
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), b"x").unwrap();
        remove_any(&tree).unwrap();
        assert!(!tree.exists());
    }
}
