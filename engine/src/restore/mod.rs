//! Restore: plan every chunk to the places that need it, then read each pack once.
//!
//! ```text
//! walk the snapshot's trees (with --include / --exclude filters)
//!   -> directories, files and symlinks, and for every chunk: pack, blob, (file, offset)
//! prepare the target: a new or empty directory; or, with --delta, the existing copy:
//!   compare each existing file with its chunk list and drop the chunks that already match
//! for each pack, in parallel (rayon):
//!   read the needed ranges (coalesced) -> check blob header -> decompress -> verify BLAKE3
//!   -> write at every (file, offset) that needs the chunk (all-zero chunks of new files are
//!      left as holes)
//! symlinks, then file metadata, then directory metadata deepest first
//! --delete: remove what the snapshot does not have;  --verify: re-read and compare every file
//! ```
//!
//! Safety invariants: no byte is written before its chunk's hash is verified; every path
//! written is the target joined with names that the tree decoder checked to be single, safe
//! components; directories are made (or, with `--delta`, checked to be real directories, not
//! symlinks) parents first; files are opened with `O_NOFOLLOW`. No snapshot entry, and no
//! symlink planted in an existing target, can make a restore write outside the target.

mod compare;
mod plan;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::pack_path;
use crate::manifest::{Node, NodeKind};
use crate::pack::{BLOB_HEADER_LEN, BlobEntry, check_blob_header, open_blob};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

use plan::{Filter, Placement, Plan, find_path, plan_node, plan_tree};

/// Gaps between needed blobs up to this size are read rather than skipped.
const COALESCE_GAP: u64 = 256 * 1024;
/// Files each restoring thread keeps open.
const MAX_OPEN_FILES: usize = 64;
/// Deepest directory nesting restored; deeper trees are refused as hostile (paths that deep
/// exceed what the kernel accepts anyway).
pub(crate) const MAX_TREE_DEPTH: usize = 2048;

/// What to restore and where.
#[derive(Debug, Clone, Default)]
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
    /// Files left out because data they need is damaged (`skip_damaged`), with the reason.
    pub files_damaged: Vec<String>,
    /// Seconds it took.
    pub duration_s: f64,
}

/// Restores `snapshot` into `opts.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
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

    let mut plan = Plan {
        skip_damaged: opts.skip_damaged,
        ..Plan::default()
    };
    let root = repo.load_tree(&snapshot.tree)?;
    match &opts.subpath {
        None => plan_tree(repo, &root, Path::new(""), &filter, false, &mut plan)?,
        Some(sub) => {
            let node = find_path(repo, root, sub)?;
            let name = PathBuf::from(OsStr::from_bytes(&node.name));
            match &node.kind {
                NodeKind::Dir(id) => {
                    let tree = repo.load_tree(id)?;
                    plan_tree(repo, &tree, Path::new(""), &filter, false, &mut plan)?;
                    plan.dirs.push((PathBuf::new(), node));
                }
                _ if opts.delete => {
                    return Err(Error::InvalidInput(format!(
                        "--delete needs a directory to mirror, and {sub} is not one: it would remove everything else in the target"
                    )));
                }
                _ => plan_node(repo, node, name, &filter, false, &mut plan)?,
            }
        }
    }
    if !filter.is_trivial() && plan.is_empty() {
        return Err(Error::InvalidInput(format!(
            "nothing in the snapshot matches --include {} --exclude {}; run `cairn ls` to see its paths",
            opts.include.join(" "),
            opts.exclude.join(" ")
        )));
    }
    progress.total(plan.files.len() as u64, plan.bytes);

    let mut summary = RestoreSummary::default();
    let prepared = prepare(target, &mut plan, opts, &mut summary)?;
    progress.bytes(summary.bytes_skipped_delta);

    let written = AtomicU64::new(0);
    let sparse = AtomicU64::new(0);
    let damaged = Mutex::new(std::mem::take(&mut plan.damaged));
    let mut packs: Vec<_> = plan.packs.iter().collect();
    packs.sort_by_key(|(id, _)| **id);
    let ctx = WriteCtx {
        repo,
        target,
        files: &plan.files,
        fresh: &prepared.fresh,
        skip: &prepared.skip,
        written: &written,
        sparse: &sparse,
        progress,
        skip_damaged: opts.skip_damaged,
        damaged: &damaged,
    };
    packs
        .par_iter()
        .map(|(pack, blobs)| ctx.restore_pack(pack, blobs))
        .collect::<Result<Vec<()>>>()?;

    // Files that could not be restored are not left behind half written.
    let damaged = damaged.into_inner().unwrap_or_default();
    for (file, reason) in &damaged {
        let rel = &plan.files[*file as usize].0;
        remove_any(&target.join(rel))?;
        summary
            .files_damaged
            .push(format!("{}: {reason}", rel.display()));
    }
    let intact = |i: usize| !damaged.contains_key(&(i as u32));

    // Verify before the final modes are set: a restored file may end up unreadable to us.
    if opts.verify {
        let bad: Vec<String> = plan
            .files
            .par_iter()
            .zip(&plan.chunks)
            .enumerate()
            .filter(|(i, _)| intact(*i))
            .map(|(_, pair)| pair)
            .filter(|((rel, node), chunks)| {
                let p = target.join(rel);
                let size_ok = fs::symlink_metadata(&p).is_ok_and(|m| m.len() == node.size);
                !size_ok || compare::matching_chunks(&p, chunks).contains(&false)
            })
            .map(|((rel, _), _)| rel.display().to_string())
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
        summary.files_verified = (plan.files.len() - damaged.len()) as u64;
    }

    for (rel, node) in &plan.symlinks {
        let p = target.join(rel);
        let NodeKind::Symlink(t) = &node.kind else {
            continue;
        };
        if opts.delta {
            match fs::read_link(&p) {
                Ok(existing) if existing.as_os_str().as_bytes() == t.as_slice() => {
                    set_meta(&p, node, true)?;
                    continue;
                }
                _ => remove_any(&p)?,
            }
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(t), &p)
            .map_err(|e| Error::io("cannot create symlink", &p, e))?;
        set_meta(&p, node, true)?;
    }
    for (i, (rel, node)) in plan.files.iter().enumerate() {
        if intact(i) {
            set_meta(&target.join(rel), node, false)?;
        }
    }
    if opts.delete {
        summary.entries_deleted = delete_extras(target, &plan)?;
    }
    // Deepest first, so that setting a parent's mtime comes after its children changed it.
    let mut dirs: Vec<_> = plan.dirs.iter().collect();
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, node) in dirs {
        set_meta(&target.join(rel), node, false)?;
    }

    summary.files_restored = (plan.files.len() - damaged.len()) as u64;
    summary.dirs_restored = plan.dirs.len() as u64;
    summary.symlinks_restored = plan.symlinks.len() as u64;
    summary.bytes_written = written.load(Relaxed);
    summary.bytes_sparse = sparse.load(Relaxed);
    summary.duration_s = started.elapsed().as_secs_f64();
    Ok(summary)
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
    if let Some(r) = repo.store().location().local_path() {
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
    match fs::symlink_metadata(target) {
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

/// What preparing the target decided for the write phase.
struct Prepared {
    /// Per file: true if created empty by this restore (zeros need not be written).
    fresh: Vec<bool>,
    /// Places already holding the right bytes.
    skip: HashSet<(u32, u64)>,
}

/// Makes the directories and files of the plan. With `delta`, reuses what is already right.
fn prepare(
    target: &Path,
    plan: &mut Plan,
    opts: &RestoreOptions,
    summary: &mut RestoreSummary,
) -> Result<Prepared> {
    fs::create_dir_all(target).map_err(|e| Error::io("cannot create", target, e))?;
    // Parents before children; in a delta restore, anything in the way of a directory (a
    // file, or a symlink that could lead outside) is replaced by a real directory.
    let mut dirs: Vec<&PathBuf> = plan.dirs.iter().map(|(rel, _)| rel).collect();
    dirs.sort_by_key(|rel| rel.components().count());
    for rel in dirs {
        if rel.as_os_str().is_empty() {
            continue;
        }
        let p = target.join(rel);
        match fs::symlink_metadata(&p) {
            // An existing directory may have been left read-only by an earlier restore; its
            // final mode is set at the end.
            Ok(m) if m.is_dir() => {
                if m.mode() & 0o700 != 0o700 {
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                        .map_err(|e| Error::io("cannot set the mode of", &p, e))?;
                }
            }
            Ok(_) => {
                remove_any(&p)?;
                make_dir(&p)?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => make_dir_all_real(target, rel)?,
            Err(e) => return Err(Error::io("cannot use", &p, e)),
        }
    }
    let mut fresh = vec![true; plan.files.len()];
    let mut skip = HashSet::new();
    if opts.delta {
        // Which existing files can be reused in place. A file hard-linked elsewhere cannot:
        // writing it would change the other names too (which may lie outside the target).
        let reusable: Vec<bool> = plan
            .files
            .par_iter()
            .map(|(rel, _)| {
                fs::symlink_metadata(target.join(rel)).is_ok_and(|m| m.is_file() && m.nlink() == 1)
            })
            .collect();
        // Compare them with their chunk lists in parallel, large files cut into runs so that
        // both cores share them.
        const RUN: usize = 4096; // chunks: about 32 MiB
        let runs: Vec<(usize, usize)> = plan
            .chunks
            .iter()
            .enumerate()
            .filter(|(i, _)| reusable[*i])
            .flat_map(|(i, chunks)| (0..chunks.len()).step_by(RUN).map(move |s| (i, s)))
            .collect();
        let matched: Vec<Vec<bool>> = runs
            .par_iter()
            .map(|&(i, s)| {
                let chunks = &plan.chunks[i][s..(s + RUN).min(plan.chunks[i].len())];
                compare::matching_chunks(&target.join(&plan.files[i].0), chunks)
            })
            .collect();
        for (i, ok) in reusable.iter().enumerate() {
            if *ok {
                fresh[i] = false;
            }
        }
        for (&(i, s), m) in runs.iter().zip(matched) {
            for (c, ok) in plan.chunks[i][s..].iter().zip(m) {
                if ok {
                    skip.insert((i as u32, c.offset));
                    summary.bytes_skipped_delta += u64::from(c.len);
                }
            }
        }
    }
    for (i, (rel, node)) in plan.files.iter().enumerate() {
        let p = target.join(rel);
        let f = if fresh[i] {
            if opts.delta {
                // Whatever is in the way (a directory, a symlink) goes.
                match fs::symlink_metadata(&p) {
                    Ok(_) => remove_any(&p)?,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("cannot use", &p, e)),
                }
            }
            create_file(&p)?
        } else {
            // The final mode is set after writing; until then the owner must be able to write.
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("cannot set the mode of", &p, e))?;
            open_existing(&p)?
        };
        f.set_len(node.size)
            .map_err(|e| Error::io("cannot size", &p, e))?;
    }
    Ok(Prepared { fresh, skip })
}

fn make_dir(p: &Path) -> Result<()> {
    fs::create_dir(p).map_err(|e| Error::io("cannot create", p, e))
}

/// Creates `target/rel` and any missing parents, refusing to pass through anything that is
/// not a real directory.
fn make_dir_all_real(target: &Path, rel: &Path) -> Result<()> {
    let mut p = target.to_path_buf();
    for part in rel.components() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
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

/// Removes a file, symlink or directory tree (never following a symlink); a missing entry is
/// fine.
fn remove_any(p: &Path) -> Result<()> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot use", p, e)),
    };
    let r = if m.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    r.map_err(|e| Error::io("cannot remove", p, e))
}

/// Removes every entry under `target` that the plan does not restore; returns how many.
fn delete_extras(target: &Path, plan: &Plan) -> Result<u64> {
    let keep: HashSet<&Path> = plan
        .dirs
        .iter()
        .chain(&plan.files)
        .chain(&plan.symlinks)
        .map(|(rel, _)| rel.as_path())
        .collect();
    let mut removed = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = target.join(&rel);
        let rd = fs::read_dir(&dir).map_err(|e| Error::io("cannot list", &dir, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io("cannot list", &dir, e))?;
            let child = rel.join(e.file_name());
            if !keep.contains(child.as_path()) {
                remove_any(&target.join(&child))?;
                removed += 1;
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child);
            }
        }
    }
    Ok(removed)
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

/// What the parallel pack writers share.
struct WriteCtx<'a> {
    repo: &'a Repository,
    target: &'a Path,
    files: &'a [(PathBuf, Node)],
    fresh: &'a [bool],
    skip: &'a HashSet<(u32, u64)>,
    written: &'a AtomicU64,
    sparse: &'a AtomicU64,
    progress: &'a dyn Progress,
    skip_damaged: bool,
    /// Files that cannot be restored, and why; shared by the writers.
    damaged: &'a Mutex<std::collections::BTreeMap<u32, String>>,
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
                files: name_files(self.files, &files),
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

    fn restore_pack(
        &self,
        pack: &Id,
        blobs: &HashMap<Id, (BlobEntry, Vec<Placement>)>,
    ) -> Result<()> {
        let mut wanted: Vec<(&BlobEntry, Vec<&Placement>)> = blobs
            .values()
            .map(|(e, places)| {
                let todo: Vec<&Placement> = places
                    .iter()
                    .filter(|p| !self.skip.contains(&(p.file, p.offset)))
                    .collect();
                (e, todo)
            })
            .filter(|(_, todo)| !todo.is_empty())
            .collect();
        wanted.sort_by_key(|(e, _)| e.offset);
        let path = pack_path(pack);
        let mut open: HashMap<u32, File> = HashMap::new();
        let mut pending: Option<PendingWrite> = None;
        // Coalesce neighbouring blobs into ranges, then read each range once.
        let mut i = 0;
        while i < wanted.len() {
            let start = wanted[i].0.offset;
            let mut j = i + 1;
            let mut end = wanted[i].0.end();
            while j < wanted.len() && wanted[j].0.offset <= end.saturating_add(COALESCE_GAP) {
                end = end.max(wanted[j].0.end());
                j += 1;
            }
            let bytes = match self.repo.store().read_range(&path, start..end) {
                Ok(b) => b,
                Err(e) => {
                    let places = wanted[i..j].iter().flat_map(|(_, p)| p.iter().copied());
                    self.damage(places, e)?;
                    i = j;
                    continue;
                }
            };
            for (entry, places) in &wanted[i..j] {
                let at = (entry.offset - start) as usize;
                let header = &bytes[at..at + BLOB_HEADER_LEN as usize];
                let stored = &bytes[at + BLOB_HEADER_LEN as usize..(entry.end() - start) as usize];
                let raw = match check_blob_header(entry, header)
                    .map_err(|m| m.about(format!("pack {}", pack.short())))
                    .and_then(|()| open_blob(entry, stored))
                {
                    Ok(raw) => raw,
                    Err(e) => {
                        self.damage(places.iter().copied(), e)?;
                        continue;
                    }
                };
                let zero = raw.iter().all(|b| *b == 0);
                for place in places {
                    if self.is_damaged(place.file) {
                        continue;
                    }
                    let n = raw.len() as u64;
                    self.progress.bytes(n);
                    // A new file was sized with set_len: its unwritten ranges read as zeros
                    // and take no space.
                    if zero && self.fresh[place.file as usize] {
                        self.sparse.fetch_add(n, Relaxed);
                        continue;
                    }
                    // Neighbouring chunks of one file are written with one call.
                    if let Some(w) = pending.as_mut()
                        && w.file == place.file
                        && w.offset + w.bytes.len() as u64 == place.offset
                        && w.bytes.len() < MAX_WRITE
                    {
                        w.bytes.extend_from_slice(&raw);
                        continue;
                    }
                    self.flush(&mut open, pending.take())?;
                    pending = Some(PendingWrite {
                        file: place.file,
                        offset: place.offset,
                        bytes: raw.clone(),
                    });
                }
            }
            i = j;
        }
        self.flush(&mut open, pending.take())
    }

    /// Writes one run of bytes to its file.
    fn flush(&self, open: &mut HashMap<u32, File>, w: Option<PendingWrite>) -> Result<()> {
        let Some(w) = w else { return Ok(()) };
        let (rel, _) = &self.files[w.file as usize];
        // Bound the open files: a pack can feed thousands of small files.
        if open.len() >= MAX_OPEN_FILES && !open.contains_key(&w.file) {
            open.clear();
        }
        let f = match open.entry(w.file) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(open_existing(&self.target.join(rel))?)
            }
        };
        f.write_all_at(&w.bytes, w.offset)
            .map_err(|e| Error::io("cannot write", self.target.join(rel), e))?;
        self.written.fetch_add(w.bytes.len() as u64, Relaxed);
        Ok(())
    }
}

/// Bytes for one file, at one offset, not yet written.
struct PendingWrite {
    file: u32,
    offset: u64,
    bytes: Vec<u8>,
}

/// Largest run of bytes gathered for one write.
const MAX_WRITE: usize = 4 << 20;

/// A few file names, then a count.
fn name_files(files: &[(PathBuf, Node)], which: &[u32]) -> String {
    let mut names: Vec<String> = which
        .iter()
        .take(5)
        .map(|i| files[*i as usize].0.display().to_string())
        .collect();
    if which.len() > 5 {
        names.push(format!("and {} more files", which.len() - 5));
    }
    names.join(", ")
}

/// Sets mode, times, and (as root) owner. Symlinks get owner and times, never a mode.
fn set_meta(p: &Path, node: &Node, symlink: bool) -> Result<()> {
    if is_root() {
        std::os::unix::fs::lchown(p, Some(node.uid), Some(node.gid))
            .map_err(|e| Error::io("cannot set the owner of", p, e))?;
    }
    if !symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(node.mode))
            .map_err(|e| Error::io("cannot set the mode of", p, e))?;
    }
    let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_ns);
    filetime::set_symlink_file_times(p, mtime, mtime)
        .map_err(|e| Error::io("cannot set the times of", p, e))
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
