//! The backup pipeline: walk the sources, chunk, deduplicate, compress, pack, index, and
//! write the snapshot last.
//!
//! ```text
//! walk (rayon, one task per directory entry)
//!   unchanged file (size, mtime, ctime, inode match the parent)  -> reuse the parent's node
//!   changed or new file -> read in segments -> cut chunks -> hash + look up + compress (rayon)
//!                       -> Packer (data pack) -> upload in the background
//!   directory -> tree blob -> Packer (tree pack)
//! Packer::finish -> wait for uploads -> index file -> snapshot
//! ```
//!
//! Write ordering (an invariant, see `format-spec/layout.md`): a pack is uploaded before the
//! index file that lists it, and every index file is written before the snapshot that needs
//! it. A crash at any point therefore leaves at worst packs that no index lists.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock_file::LockKind;
use crate::manifest::{Content, ContentBuilder, ContentRef, Node, NodeKind, Tree};
use crate::pack::BlobKind;
use crate::progress::Progress;
use crate::repo::{Lock, Object, Packed, Packer, Repository};
use crate::snapshot::{RootMeta, SNAPSHOT_VERSION, Snapshot, Summary};

/// Bytes of a file read and processed as one batch.
const SEGMENT: usize = 8 << 20;
/// A file changed less than this many seconds before it was read is read again next time.
const RACY_SECONDS: i64 = 2;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Source paths. One directory: its contents become the snapshot's root. Several paths, or
    /// a file: each becomes an entry of the root named by its last component.
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file of this name instead of paths.
    pub stdin_name: Option<String>,
    /// A name for the snapshot.
    pub name: Option<String>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// The snapshot to compare with (a snapshot spec); by default the latest snapshot of the
    /// same paths on the same host.
    pub parent: Option<String>,
    /// Read every file even if its metadata matches the parent.
    pub force_read: bool,
    /// Host name to record; by default this machine's.
    pub hostname: Option<String>,
    /// Set (from a signal handler, say) to stop the backup early; what was uploaded so far
    /// is then indexed, and the backup returns [`Error::Interrupted`].
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Glob patterns of paths to leave out, matched against paths as they appear in the
    /// snapshot (relative to its root; `*` does not cross `/`, `**` does). An excluded
    /// directory is left out with everything below it; `dir/*` keeps `dir` itself, empty.
    pub exclude: Vec<String>,
    /// Fail on a file or directory that cannot be read, instead of leaving it out, listing it
    /// and marking the snapshot partial.
    pub strict: bool,
    /// Mark the snapshot so that `forget` keeps it whatever the policy.
    pub keep_forever: bool,
}

/// What a caller adds when the walk is done, just before the snapshot is assembled: files in
/// the snapshot's root (replacing entries of the same name), tags, and PostgreSQL facts. A
/// PostgreSQL base backup ends the server's backup mode here, after every file was read.
#[derive(Debug, Clone, Default)]
pub struct Additions {
    /// Files to put in the root: name and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Tags to add.
    pub tags: Vec<String>,
    /// Where the backup sits in the WAL of its PostgreSQL server.
    pub pg: Option<crate::snapshot::PgInfo>,
}

/// The result of a backup.
#[derive(Debug, Clone)]
pub struct BackupResult {
    /// The new snapshot's id.
    pub id: Id,
    /// The new snapshot.
    pub snapshot: Snapshot,
}

#[derive(Debug, Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    logical_bytes: AtomicU64,
    bytes_read: AtomicU64,
}

struct Run<'a> {
    repo: &'a Repository,
    chunker: Chunker,
    /// The config's page rule and its globs, if it has one.
    pages: Option<(crate::pages::PageRule, globset::GlobSet)>,
    /// Bytes of a stream read and cut as one batch.
    segment: usize,
    /// Set for long streams (WAL, format version 3): the new chunks of a batch are compressed
    /// in frames of their own of up to this many bytes, in parallel, instead of joining the
    /// shared open frame one by one.
    frame_group: Option<usize>,
    packer: Packer<'a>,
    progress: &'a dyn Progress,
    force_read: bool,
    strict: bool,
    interrupt: Option<Arc<AtomicBool>>,
    counters: Counters,
    skipped: Mutex<Vec<String>>,
    unreadable: Mutex<Vec<String>>,
    changed_during: Mutex<Vec<String>>,
    exclude: Exclude,
}

/// Chunk size of streams stored alone (WAL files) in format version 3.
pub(crate) const WAL_CHUNK: u32 = 4 << 20;
/// Bytes of WAL read as one batch, and at most in one frame (format version 3).
const WAL_BATCH: usize = 16 << 20;
const WAL_FRAME: usize = 8 << 20;

/// Stores streams, each as a file in a tree of its own (WAL files), with one packer: one set
/// of packs of at most `pack_size` bytes and one index file for them all, so that many small
/// stores cost one round of writes. The caller holds a lock.
pub(crate) struct StreamStore<'a> {
    run: Run<'a>,
}

impl<'a> StreamStore<'a> {
    pub(crate) fn new(repo: &'a Repository, pack_size: u32) -> StreamStore<'a> {
        let mut run = Run::new(repo, &crate::progress::NoProgress);
        run.packer = Packer::new(repo).with_pack_size(pack_size);
        // One chunk at a time: a store of small, frequent streams keeps little in memory.
        run.segment = WAL_CHUNK as usize;
        if repo.config().framed() {
            // WAL does not repeat across segments except in whole zero-filled stretches: large
            // chunks lose no deduplication and cost less metadata (format-spec/wal.md).
            run.chunker = run.chunker.fixed(WAL_CHUNK);
            // A segment read at once, its chunks compressed two by two as frames with a
            // window over all of each, the two frames on two threads: 0.4% smaller than each
            // chunk alone, and half the time of one stream over the segment (benches/SPACE.md).
            run.segment = WAL_BATCH;
            run.frame_group = Some(WAL_FRAME);
        }
        StreamStore { run }
    }

    /// Stores what `reader` yields as a file named `name`; returns its tree's id. Nothing is
    /// indexed before [`StreamStore::finish`].
    pub(crate) fn add(&self, name: &str, reader: &mut (dyn Read + Send)) -> Result<Id> {
        let tree = self.run.stdin_root(name, reader)?;
        self.run.store_tree(tree)
    }

    /// Seals the last packs, waits for every upload and writes the index file.
    pub(crate) fn finish(self) -> Result<Packed> {
        self.run.packer.finish()
    }
}

/// Backs up `opts.paths` (or `stdin` when `opts.stdin_name` is set) into `repo`.
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    stdin: Option<&mut (dyn Read + Send)>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    backup_with(
        repo,
        opts,
        stdin,
        progress,
        &mut || Ok(Additions::default()),
        None,
    )
}

/// [`backup`], calling `finish` once every source file was read, and adding what it returns
/// to the snapshot. If `finish` fails, no snapshot is written. `held` is a shared lock the
/// caller already holds (it is then not taken again); without one, the backup takes its own.
pub fn backup_with(
    repo: &mut Repository,
    opts: &BackupOptions,
    stdin: Option<&mut (dyn Read + Send)>,
    progress: &dyn Progress,
    finish: &mut dyn FnMut() -> Result<Additions>,
    held: Option<Lock>,
) -> Result<BackupResult> {
    let started = Instant::now();
    // Held to the end: prune cannot delete what this backup deduplicates against.
    let lock = match held {
        Some(lock) => lock,
        None => repo.lock(LockKind::Shared, "backup")?,
    };
    let repo: &Repository = repo;
    let time = jiff::Timestamp::now();
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    validate_label("name", opts.name.iter())?;
    validate_label("tag", opts.tags.iter())?;

    let (paths, sources) = match (&opts.stdin_name, stdin) {
        (Some(name), Some(_)) if !crate::manifest::is_safe_name(name.as_bytes()) => {
            return Err(Error::InvalidInput(format!(
                "--stdin-name {name:?} must be a plain file name"
            )));
        }
        (Some(name), Some(reader)) => (vec![name.clone()], Sources::Stdin(name.clone(), reader)),
        (Some(_), None) => {
            return Err(Error::InvalidInput(
                "--stdin-name needs a stream on standard input".into(),
            ));
        }
        (None, _) => {
            let abs = check_sources(repo, &opts.paths)?;
            (
                abs.iter().map(|p| p.display().to_string()).collect(),
                Sources::Paths(abs),
            )
        }
    };
    let stdin_mode = matches!(sources, Sources::Stdin(..));
    // A lone source directory is the snapshot's root: its own metadata is kept with it (a
    // PostgreSQL data directory must come back 0700 for the server to start).
    let root_meta = match &sources {
        Sources::Paths(abs) => match abs.as_slice() {
            [single] => fs::metadata(single)
                .ok()
                .filter(Metadata::is_dir)
                .map(|m| RootMeta {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: m.mtime(),
                    mtime_ns: m.mtime_nsec().clamp(0, 999_999_999) as u32,
                }),
            _ => None,
        },
        Sources::Stdin(..) => None,
    };

    // One damaged snapshot must not stop every backup: it cannot be a parent.
    let (readable, damaged) = repo.snapshots_and_damaged()?;
    for (id, e) in damaged {
        progress.warn(&format!(
            "snapshot {} is not considered as a parent: {e}",
            id.short()
        ));
    }
    let parent = match &opts.parent {
        Some(spec) => Some(crate::repo::resolve_in(readable, spec)?),
        None => readable
            .into_iter()
            .rev()
            .find(|(_, s)| s.hostname == hostname && s.paths == paths && s.stdin == stdin_mode),
    };
    let parent_tree = match &parent {
        Some((id, s)) => match repo.load_tree(&s.tree) {
            Ok(tree) => Some(tree),
            // A parent chosen here, not named by the user, whose tree is damaged: every file
            // is read as new rather than no backup made.
            Err(e) if e.is_damage() && opts.parent.is_none() => {
                progress.warn(&format!(
                    "the parent snapshot {} is damaged, so every file is read: {e}",
                    id.short()
                ));
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };

    let mut run = Run::new(repo, progress);
    run.force_read = opts.force_read;
    run.strict = opts.strict;
    run.interrupt = opts.interrupt.clone();
    run.exclude = Exclude::new(&opts.exclude, &sources)?;

    let mut extra_tags = Vec::new();
    let mut pg = None;
    let root_tree = || -> Result<Id> {
        let mut tree = match sources {
            Sources::Stdin(name, reader) => run.stdin_root(&name, reader)?,
            Sources::Paths(abs) => run.paths_root(&abs, parent_tree.as_ref())?,
        };
        let more = finish()?;
        validate_label("tag", more.tags.iter())?;
        for (name, bytes) in more.files {
            run.add_file(&mut tree, &name, &bytes)?;
        }
        extra_tags = more.tags;
        pg = more.pg;
        run.store_tree(tree)
    };
    let root = root_tree();
    let root = match root {
        Ok(root) => root,
        Err(Error::Interrupted { .. }) => {
            // Keep what was uploaded: seal, upload and index it, then report.
            let packed = run.packer.finish()?;
            return Err(Error::Interrupted {
                kept: packed.bytes_added,
            });
        }
        Err(e) => return Err(e),
    };
    let packed = run.packer.finish()?;

    let c = &run.counters;
    let mut summary = Summary {
        files: c.files.load(Relaxed),
        dirs: c.dirs.load(Relaxed),
        symlinks: c.symlinks.load(Relaxed),
        files_new: c.files_new.load(Relaxed),
        files_changed: c.files_changed.load(Relaxed),
        files_unchanged: c.files_unchanged.load(Relaxed),
        logical_bytes: c.logical_bytes.load(Relaxed),
        bytes_read: c.bytes_read.load(Relaxed),
        bytes_added: packed.bytes_added,
        chunks_added: packed.chunks_added,
        metadata_blobs_added: packed.metadata_blobs_added,
        metadata_bytes_added: packed.metadata_bytes_added,
        skipped: run.skipped.into_inner().unwrap_or_default(),
        changed_during_backup: run.changed_during.into_inner().unwrap_or_default(),
        unreadable: run.unreadable.into_inner().unwrap_or_default(),
        duration_s: 0.0,
    };
    summary.unreadable.sort();
    let mut snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        time: time.to_string(),
        time_end: String::new(),
        hostname,
        username: username(),
        paths,
        stdin: stdin_mode,
        name: opts.name.clone(),
        tags: opts.tags.iter().chain(&extra_tags).cloned().collect(),
        tree: root,
        parent: parent.map(|(id, _)| id),
        summary: Summary::default(),
        pg,
        root: root_meta,
        partial: !summary.unreadable.is_empty(),
        keep_forever: Some(opts.keep_forever),
    };
    // The snapshot's own size counts as added; its length hardly changes with the figure
    // itself, so estimate once, then fix the figure.
    summary.duration_s = started.elapsed().as_secs_f64();
    snapshot.time_end = jiff::Timestamp::now().to_string();
    snapshot.summary = summary.clone();
    let estimate = snapshot.encode().len() as u64 + 8;
    summary.bytes_added += estimate;
    snapshot.summary = summary;
    let bytes = snapshot.encode();
    let id = repo.objects().sealing().hasher().id(&bytes);
    // Committing needs the lock: without it a prune may have deleted data this snapshot needs.
    lock.confirm()?;
    repo.objects().write(&Object::Snapshot(id), bytes)?;
    Ok(BackupResult { id, snapshot })
}

enum Sources<'s> {
    Stdin(String, &'s mut (dyn Read + Send)),
    Paths(Vec<PathBuf>),
}

/// The exclusion patterns of a backup, and how to turn a source path into its snapshot path.
#[derive(Default)]
struct Exclude {
    set: Option<globset::GlobSet>,
    /// Source paths and the prefix their snapshot paths drop: a lone directory is the root;
    /// otherwise each source is an entry of the root named by its last component.
    bases: Vec<(PathBuf, PathBuf)>,
}

impl Exclude {
    fn new(patterns: &[String], sources: &Sources<'_>) -> Result<Exclude> {
        let Some(set) = crate::filter::globs("--exclude", patterns)? else {
            return Ok(Exclude::default());
        };
        let bases = match sources {
            Sources::Paths(paths) if paths.len() == 1 && paths[0].is_dir() => {
                vec![(paths[0].clone(), paths[0].clone())]
            }
            Sources::Paths(paths) => paths
                .iter()
                .map(|p| (p.clone(), p.parent().unwrap_or(p).to_path_buf()))
                .collect(),
            Sources::Stdin(..) => Vec::new(),
        };
        Ok(Exclude {
            set: Some(set),
            bases,
        })
    }

    fn excludes(&self, path: &Path) -> bool {
        let Some(set) = &self.set else { return false };
        self.bases
            .iter()
            .find(|(src, _)| path.starts_with(src))
            .and_then(|(_, base)| path.strip_prefix(base).ok())
            .is_some_and(|rel| set.is_match(rel))
    }
}

fn validate_label<'a>(what: &str, values: impl Iterator<Item = &'a String>) -> Result<()> {
    for v in values {
        if v.is_empty() || v.contains(':') || v.chars().any(char::is_control) {
            return Err(Error::InvalidInput(format!(
                "{what} {v:?} must be non-empty, without ':' or control characters"
            )));
        }
    }
    Ok(())
}

fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // /proc/self belongs to the process's effective user.
            let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
            format!("uid {uid}")
        })
}

/// Makes the sources absolute, checks they exist, and refuses a repository inside a source.
fn check_sources(repo: &Repository, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give one or more paths, or --stdin".into(),
        ));
    }
    let repo_dir = repo
        .location()
        .local_path()
        .and_then(|p| p.canonicalize().ok());
    let mut out = Vec::new();
    for p in paths {
        let abs = p
            .canonicalize()
            .map_err(|e| Error::io("cannot back up", p, e))?;
        if let Some(r) = &repo_dir
            && (r.starts_with(&abs) || abs.starts_with(r))
        {
            return Err(Error::InvalidInput(format!(
                "the repository {} lies inside the backup source {} (or the reverse); \
                 keep the repository outside what you back up",
                r.display(),
                abs.display()
            )));
        }
        out.push(abs);
    }
    Ok(out)
}

/// Opens the regular file listed at `path` with `meta`, or `None` if the path now names
/// something else: a symlink (which, followed as root, could read any file on the machine
/// into the snapshot under this name), a named pipe (whose open would wait for a writer
/// forever), or another file.
fn open_listed(path: &Path, meta: &Metadata) -> Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(Error::io("cannot open", path, e)),
    };
    let now = file
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?;
    let same = now.is_file() && now.ino() == meta.ino() && now.dev() == meta.dev();
    Ok(same.then_some(file))
}

impl<'a> Run<'a> {
    fn new(repo: &'a Repository, progress: &'a dyn Progress) -> Run<'a> {
        Run {
            repo,
            chunker: repo.chunker(),
            pages: repo.config().pages.clone().map(|r| {
                let globs = r.matcher();
                (r, globs)
            }),
            packer: Packer::new(repo),
            segment: SEGMENT,
            frame_group: None,
            progress,
            force_read: false,
            strict: false,
            interrupt: None,
            counters: Counters::default(),
            skipped: Mutex::new(Vec::new()),
            unreadable: Mutex::new(Vec::new()),
            changed_during: Mutex::new(Vec::new()),
            exclude: Exclude::default(),
        }
    }

    /// Puts a file with `bytes` in `tree` as `name`, replacing an entry of that name.
    fn add_file(&self, tree: &mut Tree, name: &str, bytes: &[u8]) -> Result<()> {
        let mut node = self.stream_node(name, &mut &bytes[..])?;
        node.mode = 0o600;
        tree.nodes.retain(|n| n.name != name.as_bytes());
        tree.nodes.push(node);
        tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupt.as_ref().is_some_and(|f| f.load(Relaxed)) {
            return Err(Error::Interrupted { kept: 0 });
        }
        Ok(())
    }

    fn stdin_root(&self, name: &str, reader: &mut (dyn Read + Send)) -> Result<Tree> {
        let node = self.stream_node(name, reader)?;
        self.counters.dirs.fetch_add(1, Relaxed);
        Ok(Tree { nodes: vec![node] })
    }

    /// A file node holding what `reader` yields, stored now.
    fn stream_node(&self, name: &str, reader: &mut (dyn Read + Send)) -> Result<Node> {
        let now = jiff::Timestamp::now();
        let content = self.chunk_stream(&self.chunker, reader, name)?;
        let size = content.len();
        self.counters.files.fetch_add(1, Relaxed);
        self.counters.files_new.fetch_add(1, Relaxed);
        self.counters.logical_bytes.fetch_add(size, Relaxed);
        Ok(Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File(content),
            mode: 0o600,
            mtime: now.as_second(),
            mtime_ns: now.subsec_nanosecond().max(0) as u32,
            ctime: now.as_second(),
            ctime_ns: 0,
            uid: 0,
            gid: 0,
            inode: 0,
            dev: 0,
            size,
        })
    }

    fn paths_root(&self, paths: &[PathBuf], parent: Option<&Tree>) -> Result<Tree> {
        if let [single] = paths
            && single.is_dir()
        {
            return self.dir_tree(single, parent);
        }
        let mut names = HashSet::new();
        for p in paths {
            let name = p
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            if !names.insert(name.clone()) || name.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "two sources would both be named {:?} in the snapshot; back them up \
                     separately or back up their common parent",
                    String::from_utf8_lossy(&name)
                )));
            }
        }
        let nodes: Vec<Option<Node>> = paths
            .par_iter()
            .map(|p| {
                let name = p.file_name().map(|n| n.as_bytes()).unwrap_or_default();
                let meta = fs::symlink_metadata(p).map_err(|e| Error::io("cannot stat", p, e));
                let parent_node = parent.and_then(|t| t.find(name));
                let node = meta.and_then(|meta| self.entry(p, name, &meta, parent_node));
                self.unless_unreadable(p, node)
            })
            .collect::<Result<_>>()?;
        self.counters.dirs.fetch_add(1, Relaxed);
        Ok(Tree {
            nodes: nodes.into_iter().flatten().collect(),
        })
    }

    /// Backs up one directory and returns its tree id.
    fn dir(&self, path: &Path, parent: Option<&Tree>) -> Result<Id> {
        let tree = self.dir_tree(path, parent)?;
        self.store_tree(tree)
    }

    /// Backs up what one directory holds and returns its tree, not yet stored.
    fn dir_tree(&self, path: &Path, parent: Option<&Tree>) -> Result<Tree> {
        let mut entries = Vec::new();
        let rd = fs::read_dir(path).map_err(|e| Error::io("cannot list", path, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("cannot list", path, e))?;
            entries.push(entry.file_name());
        }
        entries.sort();
        let nodes: Vec<Option<Node>> = entries
            .par_iter()
            .map(|name| {
                self.check_interrupt()?;
                let p = path.join(name);
                if self.exclude.excludes(&p) {
                    return Ok(None);
                }
                let meta = match fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.skip(&p, "it vanished during the backup");
                        return Ok(None);
                    }
                    Err(e) => {
                        return self.unless_unreadable(&p, Err(Error::io("cannot stat", &p, e)));
                    }
                };
                let parent_node = parent.and_then(|t| t.find(name.as_bytes()));
                let node = self.entry(&p, name.as_bytes(), &meta, parent_node);
                match self.unless_unreadable(&p, node) {
                    // A database deletes files while it runs (dropped tables, old segments):
                    // one that is gone by the time it is opened is skipped, as if listed later.
                    // Only where the entry itself is opened: a "not found" from anything else
                    // is a real error.
                    Err(Error::Io {
                        action: "cannot open" | "cannot list" | "cannot read link",
                        path: gone,
                        source,
                    }) if source.kind() == io::ErrorKind::NotFound && gone == p => {
                        self.skip(&p, "it vanished during the backup");
                        Ok(None)
                    }
                    other => other,
                }
            })
            .collect::<Result<_>>()?;
        self.counters.dirs.fetch_add(1, Relaxed);
        Ok(Tree {
            nodes: nodes.into_iter().flatten().collect(),
        })
    }

    /// An entry that cannot be read (permissions, an I/O error of the source's disk) is left
    /// out and listed, and makes the snapshot partial; with `strict`, its error stands. Only
    /// an error about the entry itself: one about an entry below it was handled there, and
    /// an error of the repository is never the source's.
    fn unless_unreadable(&self, path: &Path, node: Result<Option<Node>>) -> Result<Option<Node>> {
        match node {
            Err(Error::Io {
                action:
                    action @ ("cannot open" | "cannot list" | "cannot stat" | "cannot read"
                    | "cannot read link"),
                path: bad,
                source,
            }) if !self.strict && bad == path && source.kind() != io::ErrorKind::NotFound => {
                let msg = format!("{}: {action} it: {source}", path.display());
                self.progress.warn(&format!("not backed up: {msg}"));
                if let Ok(mut u) = self.unreadable.lock() {
                    u.push(msg);
                }
                Ok(None)
            }
            other => other,
        }
    }

    fn skip(&self, path: &Path, why: &str) {
        let msg = format!("{}: {why}", path.display());
        self.progress.warn(&format!("skipped {msg}"));
        if let Ok(mut s) = self.skipped.lock() {
            s.push(msg);
        }
    }

    /// Backs up one directory entry; `None` if it is skipped.
    fn entry(
        &self,
        path: &Path,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let ft = meta.file_type();
        let mut node = node_from_meta(name, meta);
        if ft.is_dir() {
            let parent_tree = match parent.map(|n| &n.kind) {
                Some(NodeKind::Dir(id)) => self.repo.load_tree(id).ok(),
                _ => None,
            };
            node.kind = NodeKind::Dir(self.dir(path, parent_tree.as_ref())?);
            node.size = 0;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| Error::io("cannot read link", path, e))?;
            node.kind = NodeKind::Symlink(target.as_os_str().as_bytes().to_vec());
            self.counters.symlinks.fetch_add(1, Relaxed);
        } else if ft.is_file() {
            let Some(content) = self.file(path, meta, &mut node, parent)? else {
                return Ok(None);
            };
            node.kind = NodeKind::File(content);
            self.counters.files.fetch_add(1, Relaxed);
            self.counters.logical_bytes.fetch_add(node.size, Relaxed);
        } else {
            let what = if ft.is_socket() {
                "a socket"
            } else if ft.is_fifo() {
                "a named pipe"
            } else {
                "a device"
            };
            self.skip(path, &format!("{what} is not backed up"));
            return Ok(None);
        }
        Ok(Some(node))
    }

    fn file(
        &self,
        path: &Path,
        meta: &Metadata,
        node: &mut Node,
        parent: Option<&Node>,
    ) -> Result<Option<Content>> {
        if let Some(p) = parent
            && let NodeKind::File(content) = &p.kind
        {
            let same = p.size == node.size
                && p.mtime == node.mtime
                && p.mtime_ns == node.mtime_ns
                && p.ctime == node.ctime
                && p.ctime_ns == node.ctime_ns
                && p.inode == node.inode
                && p.dev == node.dev;
            if same && !self.force_read {
                self.counters.files_unchanged.fetch_add(1, Relaxed);
                self.progress.reused(p.size);
                self.progress.file_done();
                return Ok(Some(content.clone()));
            }
            self.counters.files_changed.fetch_add(1, Relaxed);
        } else {
            self.counters.files_new.fetch_add(1, Relaxed);
        }
        let shown = path.display().to_string();
        self.progress.file_started(&shown);
        let Some(file) = open_listed(path, meta)? else {
            self.skip(path, "it was replaced during the backup");
            self.progress.file_done();
            return Ok(None);
        };
        let (chunker, file) = self.cutter_for(path, meta.len(), file)?;
        let content = self
            .chunk_stream(&chunker, file, &shown)
            .map_err(|e| match e {
                Error::Io { action, source, .. } => Error::io(action, path, source),
                other => other,
            })?;
        // A file that changed while it was read is stored as read, and reported.
        if let Ok(after) = fs::symlink_metadata(path)
            && (after.len() != meta.len()
                || after.mtime() != meta.mtime()
                || after.mtime_nsec() != meta.mtime_nsec()
                || content.len() != meta.len())
            && let Ok(mut c) = self.changed_during.lock()
        {
            c.push(shown);
        }
        node.size = content.len();
        // A file modified within the timestamp granularity of this read could change again
        // without its size, mtime or ctime changing; record it so that the next backup reads it
        // again instead of trusting the metadata (ctime 0 never matches a real file).
        let read_at = jiff::Timestamp::now().as_second();
        if read_at - node.mtime.max(node.ctime) < RACY_SECONDS {
            node.ctime = 0;
            node.ctime_ns = 0;
        }
        self.progress.file_done();
        Ok(Some(content))
    }

    /// How the file at `path` is cut: into whole pages if the page rule recognises it (from
    /// its first bytes, which are read here and handed back in front of the rest), else by
    /// content.
    fn cutter_for(
        &self,
        path: &Path,
        len: u64,
        mut file: File,
    ) -> Result<(Cow<'_, Chunker>, impl Read + use<>)> {
        let Some((rule, globs)) = &self.pages else {
            return Ok((
                Cow::Borrowed(&self.chunker),
                io::Cursor::new(Vec::new()).chain(file),
            ));
        };
        let mut head = Vec::with_capacity(crate::pages::HEAD_LEN);
        (&mut file)
            .take(crate::pages::HEAD_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io("cannot read", path, e))?;
        let chunker = match rule.paged(globs, path.as_os_str().as_bytes(), &head, len) {
            Some(p) => Cow::Owned(self.chunker.fixed(p.chunk_size)),
            None => Cow::Borrowed(&self.chunker),
        };
        Ok((chunker, io::Cursor::new(head).chain(file)))
    }

    /// Chunks a stream, stores the new chunks, and returns the content.
    fn chunk_stream(&self, chunker: &Chunker, reader: impl Read, shown: &str) -> Result<Content> {
        let mut builder = ContentBuilder::new(self.repo.config().list_split);
        let level = self.repo.config().zstd_level();
        let mut store_list = |bytes: Vec<u8>| self.packer.add_raw(BlobKind::List, bytes, level);
        chunker
            .for_each_batch(reader, self.segment, |buf, ranges| {
                // A large file or a stream stops within a batch of an interrupt, not at its end.
                self.check_interrupt()?;
                // Hash in parallel, look the batch up at once, compress what is new in parallel.
                let hasher = self.repo.hasher();
                let ids: Vec<Id> = ranges
                    .par_iter()
                    .map(|r| hasher.id(&buf[r.clone()]))
                    .collect();
                let known = self.packer.known_many(BlobKind::Data, &ids)?;
                if let Some(limit) = self.frame_group {
                    self.store_in_frames(buf, ranges, &ids, &known, limit, level)?;
                    for (r, id) in ranges.iter().zip(&ids) {
                        let len = r.len() as u64;
                        builder.push(ContentRef { id: *id, len }, &mut store_list)?;
                    }
                } else {
                    let prepared = ranges
                        .par_iter()
                        .zip(ids.par_iter().zip(known.par_iter()))
                        .map(|(r, (id, known))| {
                            self.packer.prepare_known(
                                BlobKind::Data,
                                *id,
                                &buf[r.clone()],
                                *known,
                                level,
                            )
                        })
                        .collect::<Result<Vec<_>>>()?;
                    for p in prepared {
                        let len = p.raw_len();
                        let id = p.id();
                        self.packer.add(p)?;
                        builder.push(ContentRef { id, len }, &mut store_list)?;
                    }
                }
                let n = buf.len() as u64;
                self.counters.bytes_read.fetch_add(n, Relaxed);
                self.progress.bytes(n);
                Ok(())
            })
            .map_err(|e| match e {
                Error::Io { action, source, .. } => Error::io(action, shown, source),
                other => other,
            })?;
        builder.finish(&mut store_list)
    }

    /// Stores a batch's new chunks in frames of their own of up to `limit` bytes, compressed
    /// in parallel (see `frame_group`).
    fn store_in_frames(
        &self,
        buf: &[u8],
        ranges: &[std::ops::Range<usize>],
        ids: &[Id],
        known: &[bool],
        limit: usize,
        level: Option<i32>,
    ) -> Result<()> {
        let frames: Vec<_> = new_runs(ranges, ids, known, limit)
            .par_iter()
            .map(|run| {
                let blobs: Vec<(Id, u32)> = run
                    .clone()
                    .map(|i| (ids[i], ranges[i].len() as u32))
                    .collect();
                let raw = &buf[ranges[run.start].start..ranges[run.end - 1].end];
                self.packer
                    .prepare_frame(BlobKind::Data, &blobs, raw, level)
            })
            .collect();
        for f in frames {
            self.packer.add_frame(f)?;
        }
        Ok(())
    }

    fn store_tree(&self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        self.packer
            .add_raw(BlobKind::Tree, bytes, self.repo.config().zstd_level())
    }
}

/// Runs of consecutive chunks (indices into `ranges`) that are new to the repository and to
/// this batch, each of at most `limit` bytes unless a single chunk is larger: the frames a
/// batch of a long stream is stored in.
fn new_runs(
    ranges: &[std::ops::Range<usize>],
    ids: &[Id],
    known: &[bool],
    limit: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut seen = HashSet::new();
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut open: Option<(usize, usize)> = None; // (first index, bytes)
    for (i, r) in ranges.iter().enumerate() {
        if known[i] || !seen.insert(ids[i]) {
            if let Some((first, _)) = open.take() {
                runs.push(first..i);
            }
            continue;
        }
        open = match open {
            Some((first, bytes)) if bytes + r.len() <= limit => Some((first, bytes + r.len())),
            Some((first, _)) => {
                runs.push(first..i);
                Some((i, r.len()))
            }
            None => Some((i, r.len())),
        };
    }
    if let Some((first, _)) = open {
        runs.push(first..ranges.len());
    }
    runs
}

fn node_from_meta(name: &[u8], meta: &Metadata) -> Node {
    Node {
        name: name.to_vec(),
        kind: NodeKind::Symlink(Vec::new()),
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        mtime_ns: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        ctime: meta.ctime(),
        ctime_ns: meta.ctime_nsec().clamp(0, 999_999_999) as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        inode: meta.ino(),
        dev: meta.dev(),
        size: meta.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_runs_group_new_chunks_up_to_the_limit() {
        let ranges: Vec<std::ops::Range<usize>> = (0..6).map(|i| i * 4..i * 4 + 4).collect();
        let id = |b: u8| Id::of(&[b]);
        // Chunk 2 is known, chunk 4 repeats chunk 3: both end a run; runs hold at most 8 bytes.
        let ids = [id(0), id(1), id(2), id(3), id(3), id(5)];
        let known = [false, false, true, false, false, false];
        assert_eq!(new_runs(&ranges, &ids, &known, 8), vec![0..2, 3..4, 5..6]);
        // A limit below one chunk still stores every new chunk, one per run.
        assert_eq!(
            new_runs(&ranges, &ids, &[false; 6], 2),
            vec![0..1, 1..2, 2..3, 3..4, 5..6]
        );
        assert!(new_runs(&ranges, &ids, &[true; 6], 8).is_empty());
    }

    #[test]
    fn a_file_replaced_after_listing_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"listed").unwrap();
        let listed = fs::symlink_metadata(&p).unwrap();
        assert!(open_listed(&p, &listed).unwrap().is_some());
        // (The listed inode stays allocated, so a new file cannot reuse its number.)
        fs::hard_link(&p, dir.path().join("kept")).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"not this file's").unwrap();
        let replace = |how: &dyn Fn()| {
            fs::remove_file(&p).unwrap();
            how();
            assert!(open_listed(&p, &listed).unwrap().is_none());
        };
        // By a symlink: followed, it would store another file under this name.
        replace(&|| std::os::unix::fs::symlink(&secret, &p).unwrap());
        // By a named pipe without a writer: a plain open would wait forever.
        replace(&|| {
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success()
            )
        });
        // By another file.
        replace(&|| fs::write(&p, b"another").unwrap());
    }

    #[test]
    fn no_index_file_is_written_once_the_lock_is_lost() {
        use crate::repo::{InitOptions, Location};
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Local(dir.path().join("repo"));
        Repository::init(&location, &InitOptions::default()).unwrap();
        let mut repo = Repository::open(&location, &dir.path().join("cache")).unwrap();
        let lock = repo.lock(LockKind::Shared, "backup").unwrap();
        let store = |repo: &Repository, name: &str| {
            let store = StreamStore::new(repo, 1 << 20);
            store.add(name, &mut &b"some bytes"[..])?;
            store.finish()
        };
        store(&repo, "a").unwrap();
        let index_files = |repo: &Repository| {
            repo.objects()
                .list_ids(crate::repo::Kind::Index)
                .unwrap()
                .len()
        };
        assert_eq!(index_files(&repo), 1);
        // Another command judged the lock stale and removed it (a prune may follow).
        for l in repo
            .objects()
            .list(crate::repo::Kind::Lock)
            .unwrap()
            .objects
        {
            repo.objects().delete(&l).unwrap();
        }
        assert!(matches!(store(&repo, "b"), Err(Error::LockLost { .. })));
        assert_eq!(
            index_files(&repo),
            1,
            "an index file was written without the lock"
        );
        // A lock released is no longer confirmed; one taken anew is.
        drop(lock);
        let _lock = repo.lock(LockKind::Shared, "backup").unwrap();
        store(&repo, "b").unwrap();
        assert_eq!(index_files(&repo), 2);
    }
}
