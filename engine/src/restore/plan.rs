//! Planning a restore: walking the snapshot's trees in order, making directories, and cutting
//! the files' chunk lists into bounded batches for the writer.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use globset::GlobSet;

use super::{RestoreOptions, SyncHandle, make_dir, make_dir_all_real, remove_any, restore_symlink};
use crate::error::{Error, Result};
use crate::filter::globs;
use crate::id::Id;
use crate::manifest::MAX_TREE_DEPTH;
use crate::manifest::{Content, Node, NodeKind, Tree};
use crate::pack::MAX_CHUNK_LEN;
use crate::progress::Progress;
use crate::repo::Repository;

/// One chunk of a file, in file order.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileChunk {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) id: Id,
}

/// The name a file is written under, beside its final name, until it is complete: a restore
/// that fails or is killed leaves no file at its final name whose content is wrong. Fixed by
/// the final name (so a `--delta` run resumes it) and short (any final name fits `NAME_MAX`).
pub(super) fn work_name(rel: &Path) -> PathBuf {
    let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let digest = blake3::hash(name).to_hex();
    rel.with_file_name(format!(".cairn-part-{}", &digest[..16]))
}

/// A run of one file's chunks. A file larger than a batch is cut into several pieces, in
/// order; the first one creates (or opens) the file and the last one finishes it.
#[derive(Debug)]
pub(super) struct Piece {
    /// The file's number in walk order (the same for all its pieces).
    pub(super) file: u32,
    pub(super) rel: PathBuf,
    /// Where the file is written until every chunk of it is in and verified (see
    /// [`work_name`]); then it is renamed to `rel`.
    pub(super) work: PathBuf,
    /// The file's entry, without its content references.
    pub(super) node: Node,
    pub(super) first: bool,
    pub(super) last: bool,
    pub(super) chunks: Vec<FileChunk>,
    /// Set if the file's chunk list could not be read (and `skip_damaged` is on).
    pub(super) damaged: Option<String>,
}

/// Pieces of files, bounded in chunks and in files, executed together.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) pieces: Vec<Piece>,
    pub(super) chunks: usize,
}

/// What the walk leaves for the end of the restore.
#[derive(Debug, Default)]
pub(super) struct WalkOutcome {
    /// Directories made or reused, for their metadata.
    pub(super) dirs: Vec<(PathBuf, Node)>,
    /// Symlinks made or kept (as they are reached: nothing is held for them).
    pub(super) symlinks: u64,
    pub(super) files: u64,
    pub(super) bytes: u64,
    /// Entries removed from the target (`--delete`).
    pub(super) deleted: u64,
    /// Directories left out, with all they hold, because their tree is damaged
    /// (`skip_damaged`), with the reason.
    pub(super) damaged_dirs: Vec<(PathBuf, String)>,
}

/// Which snapshot paths to restore: `--include` (and everything below a match) minus
/// `--exclude` (and everything below a match).
#[derive(Debug, Default)]
pub(super) struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    pub(super) fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        Ok(Filter {
            include: globs("--include", include)?,
            exclude: globs("--exclude", exclude)?,
        })
    }

    pub(super) fn is_trivial(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    fn excluded(&self, rel: &Path) -> bool {
        self.exclude.as_ref().is_some_and(|g| g.is_match(rel))
    }

    fn included(&self, rel: &Path, parent_included: bool) -> bool {
        parent_included || self.include.as_ref().is_none_or(|g| g.is_match(rel))
    }
}

/// Walks `sub` (a `/`-separated path) down from the root tree.
pub(super) fn find_path(repo: &Repository, root: Tree, sub: &str) -> Result<Node> {
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

/// The walk: directories are made as they are reached (parents first), files are cut into
/// batches sent to the writer, symlinks made; directories' metadata waits for the end.
pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) filter: &'a Filter,
    pub(super) opts: &'a RestoreOptions,
    pub(super) progress: &'a dyn Progress,
    /// Report totals as they are found (when the snapshot's own totals do not apply).
    pub(super) report_totals: bool,
    /// Chunks per batch.
    pub(super) batch_chunks: usize,
    pub(super) tx: SyncSender<Batch>,
    /// Set by the writer when it has stopped on an error.
    pub(super) stop: &'a std::sync::atomic::AtomicBool,
    /// What the restore syncs at the end, told of directories on other filesystems.
    pub(super) sync: Option<&'a SyncHandle>,
    pub(super) batch: Batch,
    /// Directories from the root down to the current one, and whether each has been made.
    pub(super) ancestors: Vec<(PathBuf, Node, bool)>,
    pub(super) out: WalkOutcome,
}

/// Files per batch, whatever their size: bounds per-file state for trees of small files.
const BATCH_FILES: usize = 16 * 1024;

impl Walker<'_> {
    /// Fails once the writer has stopped (its error is the one reported).
    fn check_stop(&self) -> Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::InvalidInput("the restore writer stopped".into()));
        }
        Ok(())
    }

    /// Sends the current batch to the writer.
    fn send(&mut self) -> Result<()> {
        if self.report_totals {
            self.progress.total(self.out.files, self.out.bytes);
        }
        let batch = std::mem::take(&mut self.batch);
        // A closed channel means the writer stopped on an error, which it reports instead.
        self.tx
            .send(batch)
            .map_err(|_| Error::InvalidInput("the restore writer stopped".into()))
    }

    /// Sends what is left.
    pub(super) fn finish(&mut self) -> Result<()> {
        if !self.batch.pieces.is_empty() {
            self.send()?;
        }
        if self.report_totals {
            self.progress.total(self.out.files, self.out.bytes);
        }
        Ok(())
    }

    /// Makes every ancestor directory not made yet, parents first.
    fn materialize(&mut self) -> Result<()> {
        let target = &self.opts.target;
        for (rel, node, made) in &mut self.ancestors {
            if *made {
                continue;
            }
            *made = true;
            if rel.as_os_str().is_empty() {
                // The restored root is the target itself, checked to be a directory; an
                // earlier restore may have left it read-only.
                let m = fs::metadata(target).map_err(|e| Error::io("cannot use", target, e))?;
                owner_can_write(target, &m)?;
            } else {
                make_real_dir(target, rel, self.sync)?;
            }
            self.out.dirs.push((rel.clone(), node.clone()));
        }
        Ok(())
    }

    pub(super) fn walk_tree(&mut self, tree: &Tree, dir: &Path, included: bool) -> Result<()> {
        if self.opts.delete {
            self.delete_extras(tree, dir)?;
        }
        for node in &tree.nodes {
            let rel = dir.join(OsStr::from_bytes(&node.name));
            self.walk_node(node, rel, included)?;
        }
        Ok(())
    }

    /// Walks the directory `node` as the restored root.
    pub(super) fn walk_root_dir(&mut self, node: Node, tree: &Tree) -> Result<()> {
        self.ancestors.push((PathBuf::new(), node, false));
        self.materialize()?;
        self.walk_tree(tree, Path::new(""), false)?;
        self.ancestors.pop();
        Ok(())
    }

    pub(super) fn walk_node(
        &mut self,
        node: &Node,
        rel: PathBuf,
        parent_included: bool,
    ) -> Result<()> {
        self.check_stop()?;
        if self.filter.excluded(&rel) {
            return Ok(());
        }
        let included = self.filter.included(&rel, parent_included);
        match &node.kind {
            NodeKind::Dir(_) if rel.components().count() > MAX_TREE_DEPTH => {
                return Err(Error::corrupt(
                    format!("snapshot path {}", rel.display()),
                    format!("directories nested deeper than {MAX_TREE_DEPTH}"),
                ));
            }
            NodeKind::Dir(id) => {
                let tree = match self.repo.load_tree(id) {
                    Ok(tree) => tree,
                    // Nothing below it can be restored, nor named: the directory stands for
                    // all it holds.
                    Err(e) if e.is_damage() && self.opts.skip_damaged => {
                        self.out.damaged_dirs.push((rel, e.to_string()));
                        return Ok(());
                    }
                    Err(e) if e.is_damage() => {
                        return Err(Error::Unrestorable {
                            files: format!("{}/ (the whole directory)", rel.display()),
                            source: Box::new(e),
                        });
                    }
                    Err(e) => return Err(e),
                };
                self.ancestors.push((rel.clone(), node.clone(), false));
                if included {
                    self.materialize()?;
                }
                self.walk_tree(&tree, &rel, included)?;
                self.ancestors.pop();
            }
            NodeKind::File(content) if included => {
                self.materialize()?;
                self.walk_file(node, content, rel)?;
            }
            NodeKind::Symlink(t) if included => {
                self.materialize()?;
                restore_symlink(&self.opts.target.join(&rel), node, t, self.opts)?;
                self.out.symlinks += 1;
            }
            _ => {}
        }
        Ok(())
    }

    fn walk_file(&mut self, node: &Node, content: &Content, rel: PathBuf) -> Result<()> {
        let file = u32::try_from(self.out.files).map_err(|_| {
            Error::InvalidInput("a restore holds at most 4 billion files; restore part of the snapshot with --include".into())
        })?;
        self.out.files += 1;
        // (Sizes come from the snapshot: a hostile one must not wrap the progress total.)
        self.out.bytes = self.out.bytes.saturating_add(node.size);
        let mut bare = node.clone();
        bare.kind = NodeKind::File(Content::default());
        let work = work_name(&rel);
        let piece = |first: bool| Piece {
            file,
            rel: rel.clone(),
            work: work.clone(),
            node: bare.clone(),
            first,
            last: false,
            chunks: Vec::new(),
            damaged: None,
        };
        let mut cur = piece(true);
        let repo = self.repo;
        let mut offset = 0u64;
        let walked = repo.for_each_chunk(content, &mut |r| {
            // A longer chunk is never stored; checked before a comparison with an existing
            // copy reads that much.
            let len = u32::try_from(r.len)
                .ok()
                .filter(|&len| len <= MAX_CHUNK_LEN)
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("chunk {}", r.id.short()),
                        "its length in the file's chunk list exceeds any chunk's",
                    )
                })?;
            if self.batch.chunks >= self.batch_chunks && !cur.chunks.is_empty() {
                // Cut the file here: this piece goes now, the rest follows.
                let done = std::mem::replace(&mut cur, piece(false));
                self.batch.pieces.push(done);
                self.send()?;
            }
            cur.chunks.push(FileChunk {
                offset,
                len,
                id: r.id,
            });
            self.batch.chunks += 1;
            offset += r.len;
            Ok(())
        });
        cur.last = true;
        match walked {
            Ok(()) => {}
            Err(e) if e.is_damage() && self.opts.skip_damaged => {
                cur.damaged = Some(e.to_string());
            }
            Err(e) if e.is_damage() => {
                return Err(Error::Unrestorable {
                    files: rel.display().to_string(),
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(e),
        }
        self.batch.pieces.push(cur);
        if self.batch.chunks >= self.batch_chunks || self.batch.pieces.len() >= BATCH_FILES {
            self.send()?;
        }
        Ok(())
    }

    /// With `--delete`: removes the entries of the target directory `dir` that `tree` lacks.
    fn delete_extras(&mut self, tree: &Tree, dir: &Path) -> Result<()> {
        let path = self.opts.target.join(dir);
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot list", &path, e)),
        };
        for e in rd {
            self.check_stop()?;
            let e = e.map_err(|e| Error::io("cannot list", &path, e))?;
            if tree.find(e.file_name().as_bytes()).is_none() {
                remove_any(&e.path())?;
                self.out.deleted += 1;
            }
        }
        Ok(())
    }
}

/// Lets the owner read, write and enter the directory `p` (metadata `m`) until its final mode
/// is set at the end of the restore.
fn owner_can_write(p: &Path, m: &fs::Metadata) -> Result<()> {
    if m.mode() & 0o700 != 0o700 {
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot set the mode of", p, e))?;
    }
    Ok(())
}

/// Makes `target/rel` a real directory the owner can write into: an existing directory is
/// kept (an earlier restore may have left it read-only; its final mode is set at the end),
/// anything else in the way (a file, or a symlink that could lead outside) is replaced.
fn make_real_dir(target: &Path, rel: &Path, sync: Option<&SyncHandle>) -> Result<()> {
    let p = target.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {
            if let Some(s) = sync {
                s.note_dir(&p, &m)?;
            }
            owner_can_write(&p, &m)
        }
        Ok(_) => {
            remove_any(&p)?;
            make_dir(&p)
        }
        // The walk makes parents first, so the parent is usually there: checking every
        // component again for each new directory made deep trees cost the cube of their depth.
        Err(e) if e.kind() == ErrorKind::NotFound => match fs::create_dir(&p) {
            Err(e) if e.kind() == ErrorKind::NotFound => make_dir_all_real(target, rel, sync),
            r => r.map_err(|e| Error::io("cannot create", &p, e)),
        },
        Err(e) => Err(Error::io("cannot use", &p, e)),
    }
}
