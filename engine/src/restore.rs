//! Restore: plan every chunk to the places that need it, then read each pack once.
//!
//! ```text
//! walk the snapshot's trees (with --include filters)
//!   -> directories, empty files of the right size, and for every chunk: pack, blob, (file, offset)
//! for each pack, in parallel (rayon):
//!   read the needed ranges (coalesced) -> check blob header -> decompress -> verify BLAKE3
//!   -> write at every (file, offset) that needs the chunk
//! symlinks, then file metadata, then directory metadata deepest first
//! ```
//!
//! Safety invariants: no byte is written before its chunk's hash is verified; every path
//! written is the target joined with names that the tree decoder checked to be single, safe
//! components; files are created with `O_EXCL | O_NOFOLLOW` inside directories this restore
//! created, so no snapshot entry can write outside the target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use globset::{GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::pack_path;
use crate::manifest::{Node, NodeKind, Tree};
use crate::pack::{BLOB_HEADER_LEN, BlobEntry, BlobKind, check_blob_header, open_blob};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

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
    /// The directory to restore into; created if missing, refused if not empty.
    pub target: PathBuf,
    /// Restore only paths matching one of these globs (relative to the restored root), and
    /// everything below a matching directory. Empty: restore everything.
    pub include: Vec<String>,
    /// Restore only this path of the snapshot (`snapshot:path` on the command line).
    pub subpath: Option<String>,
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
    /// Seconds it took.
    pub duration_s: f64,
}

struct Placement {
    file: u32,
    offset: u64,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    symlinks: Vec<(PathBuf, Node)>,
    /// pack → blob → places.
    packs: HashMap<Id, HashMap<Id, (BlobEntry, Vec<Placement>)>>,
    bytes: u64,
}

/// Restores `snapshot` into `opts.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let include = build_globs(&opts.include)?;
    let target = &opts.target;
    check_target(repo, target)?;

    // Resolve the subpath to a tree or a single entry.
    let root = repo.load_tree(&snapshot.tree)?;
    let mut plan = Plan::default();
    match &opts.subpath {
        None => plan_tree(repo, &root, Path::new(""), &include, false, &mut plan)?,
        Some(sub) => {
            let node = find_path(repo, root, sub)?;
            let name = PathBuf::from(OsStr::from_bytes(&node.name));
            match &node.kind {
                NodeKind::Dir(id) => {
                    let tree = repo.load_tree(id)?;
                    plan_tree(repo, &tree, Path::new(""), &include, false, &mut plan)?;
                    plan.dirs.push((PathBuf::new(), node));
                }
                _ => plan_node(repo, node, name, &include, false, &mut plan)?,
            }
        }
    }
    if !opts.include.is_empty()
        && plan.files.is_empty()
        && plan.dirs.is_empty()
        && plan.symlinks.is_empty()
    {
        return Err(Error::InvalidInput(format!(
            "nothing in the snapshot matches --include {}; run `cairn ls` to see its paths",
            opts.include.join(" ")
        )));
    }
    progress.total(plan.files.len() as u64, plan.bytes);

    fs::create_dir_all(target).map_err(|e| Error::io("cannot create", target, e))?;
    for (rel, _) in &plan.dirs {
        let p = target.join(rel);
        fs::create_dir_all(&p).map_err(|e| Error::io("cannot create", &p, e))?;
    }
    for (rel, node) in &plan.files {
        let p = target.join(rel);
        let f = create_file(&p)?;
        f.set_len(node.size)
            .map_err(|e| Error::io("cannot size", &p, e))?;
    }

    let written = AtomicU64::new(0);
    let mut packs: Vec<_> = plan.packs.iter().collect();
    packs.sort_by_key(|(id, _)| **id);
    packs
        .par_iter()
        .map(|(pack, blobs)| {
            restore_pack(repo, target, &plan.files, pack, blobs, &written, progress)
        })
        .collect::<Result<Vec<()>>>()?;

    for (rel, node) in &plan.symlinks {
        let p = target.join(rel);
        let NodeKind::Symlink(t) = &node.kind else {
            continue;
        };
        std::os::unix::fs::symlink(OsStr::from_bytes(t), &p)
            .map_err(|e| Error::io("cannot create symlink", &p, e))?;
        set_meta(&p, node, true)?;
    }
    for (rel, node) in &plan.files {
        set_meta(&target.join(rel), node, false)?;
    }
    // Deepest first, so that setting a parent's mtime comes after its children changed it.
    let mut dirs: Vec<_> = plan.dirs.iter().collect();
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, node) in dirs {
        set_meta(&target.join(rel), node, false)?;
    }

    Ok(RestoreSummary {
        files_restored: plan.files.len() as u64,
        dirs_restored: plan.dirs.len() as u64,
        symlinks_restored: plan.symlinks.len() as u64,
        bytes_written: written.load(Relaxed),
        duration_s: started.elapsed().as_secs_f64(),
    })
}

fn build_globs(include: &[String]) -> Result<Option<GlobSet>> {
    if include.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in include {
        let glob = globset::GlobBuilder::new(g.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("--include {g:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("--include: {e}")))
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

fn check_target(repo: &Repository, target: &Path) -> Result<()> {
    if let Some(r) = repo.store().location().local_path() {
        let (r, t) = (resolved(r), resolved(target));
        if t.starts_with(&r) {
            return Err(Error::InvalidInput(format!(
                "restore target {} is inside the repository {}; restore elsewhere",
                t.display(),
                r.display()
            )));
        }
    }
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot use restore target", target, e)),
        Ok(m) if !m.is_dir() => Err(Error::InvalidInput(format!(
            "restore target {} exists and is not a directory",
            target.display()
        ))),
        Ok(_) => {
            let mut rd = fs::read_dir(target).map_err(|e| Error::io("cannot read", target, e))?;
            if rd.next().is_some() {
                return Err(Error::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(())
        }
    }
}

/// Walks `sub` (a `/`-separated path) down from the root tree.
fn find_path(repo: &Repository, root: Tree, sub: &str) -> Result<Node> {
    let not_found = || Error::PathNotInSnapshot {
        path: sub.to_string(),
        snapshot: String::new(),
    };
    let mut tree = root;
    let parts: Vec<&str> = sub.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(not_found());
    }
    for (i, part) in parts.iter().enumerate() {
        let node = tree.find(part.as_bytes()).ok_or_else(not_found)?.clone();
        if i + 1 == parts.len() {
            return Ok(node);
        }
        match node.kind {
            NodeKind::Dir(id) => tree = repo.load_tree(&id)?,
            _ => return Err(not_found()),
        }
    }
    Err(not_found())
}

fn matches(include: &Option<GlobSet>, rel: &Path) -> bool {
    include.as_ref().is_none_or(|g| g.is_match(rel))
}

fn plan_tree(
    repo: &Repository,
    tree: &Tree,
    dir: &Path,
    include: &Option<GlobSet>,
    included: bool,
    plan: &mut Plan,
) -> Result<()> {
    for node in &tree.nodes {
        let rel = dir.join(OsStr::from_bytes(&node.name));
        plan_node(repo, node.clone(), rel, include, included, plan)?;
    }
    Ok(())
}

fn plan_node(
    repo: &Repository,
    node: Node,
    rel: PathBuf,
    include: &Option<GlobSet>,
    parent_included: bool,
    plan: &mut Plan,
) -> Result<()> {
    let included = parent_included || matches(include, &rel);
    match &node.kind {
        NodeKind::Dir(_) if rel.components().count() > MAX_TREE_DEPTH => {
            return Err(Error::corrupt(
                format!("snapshot path {}", rel.display()),
                format!("directories nested deeper than {MAX_TREE_DEPTH}"),
            ));
        }
        NodeKind::Dir(id) => {
            let tree = repo.load_tree(id)?;
            let before = plan.files.len() + plan.symlinks.len() + plan.dirs.len();
            plan_tree(repo, &tree, &rel, include, included, plan)?;
            let grew = plan.files.len() + plan.symlinks.len() + plan.dirs.len() > before;
            // Directories are created with their parents, so children may come first here.
            if included || grew {
                plan.dirs.push((rel, node));
            }
        }
        NodeKind::File(content) if included => {
            let file = plan.files.len() as u32;
            let mut offset = 0u64;
            repo.for_each_chunk(content, &mut |r| {
                let loc = repo.locate(BlobKind::Data, &r.id)?;
                if u64::from(loc.entry.raw_len) != r.len {
                    return Err(Error::corrupt(
                        format!("chunk {}", r.id.short()),
                        "its indexed length differs from the file's chunk list",
                    ));
                }
                plan.packs
                    .entry(loc.pack)
                    .or_default()
                    .entry(r.id)
                    .or_insert_with(|| (loc.entry, Vec::new()))
                    .1
                    .push(Placement { file, offset });
                offset += r.len;
                Ok(())
            })?;
            plan.bytes += node.size;
            plan.files.push((rel, node));
        }
        NodeKind::Symlink(_) if included => plan.symlinks.push((rel, node)),
        _ => {}
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

fn restore_pack(
    repo: &Repository,
    target: &Path,
    files: &[(PathBuf, Node)],
    pack: &Id,
    blobs: &HashMap<Id, (BlobEntry, Vec<Placement>)>,
    written: &AtomicU64,
    progress: &dyn Progress,
) -> Result<()> {
    let mut wanted: Vec<&(BlobEntry, Vec<Placement>)> = blobs.values().collect();
    wanted.sort_by_key(|(e, _)| e.offset);
    let path = pack_path(pack);
    let mut open: HashMap<u32, File> = HashMap::new();
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
        let bytes = repo.store().read_range(&path, start..end)?;
        for (entry, places) in &wanted[i..j] {
            let at = (entry.offset - start) as usize;
            let header = &bytes[at..at + BLOB_HEADER_LEN as usize];
            let stored = &bytes[at + BLOB_HEADER_LEN as usize..(entry.end() - start) as usize];
            check_blob_header(entry, header)
                .map_err(|m| m.about(format!("pack {}", pack.short())))?;
            let raw = open_blob(entry, stored)?;
            for place in places {
                let (rel, _) = &files[place.file as usize];
                // Bound the open files: a pack can feed thousands of small files.
                if open.len() >= MAX_OPEN_FILES && !open.contains_key(&place.file) {
                    open.clear();
                }
                let f = match open.entry(place.file) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let p = target.join(rel);
                        let f = OpenOptions::new()
                            .write(true)
                            .custom_flags(libc::O_NOFOLLOW)
                            .open(&p)
                            .map_err(|e| Error::io("cannot open", &p, e))?;
                        v.insert(f)
                    }
                };
                f.write_all_at(&raw, place.offset)
                    .map_err(|e| Error::io("cannot write", target.join(rel), e))?;
                written.fetch_add(raw.len() as u64, Relaxed);
                progress.bytes(raw.len() as u64);
            }
        }
        i = j;
    }
    Ok(())
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
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
