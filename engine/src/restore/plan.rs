//! Planning a restore: which entries, and for every chunk, the pack that holds it and the
//! (file, offset) places that need it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};

use super::MAX_TREE_DEPTH;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::manifest::{Node, NodeKind, Tree};
use crate::pack::{BlobEntry, BlobKind};
use crate::repository::Repository;

/// One place a chunk goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    pub(super) file: u32,
    pub(super) offset: u64,
}

/// One chunk of a file, in file order.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileChunk {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) id: Id,
}

/// Everything a restore will do.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) dirs: Vec<(PathBuf, Node)>,
    pub(super) files: Vec<(PathBuf, Node)>,
    /// Per file (same order as `files`), its chunks.
    pub(super) chunks: Vec<Vec<FileChunk>>,
    pub(super) symlinks: Vec<(PathBuf, Node)>,
    /// pack → blob → places.
    pub(super) packs: HashMap<Id, HashMap<Id, (BlobEntry, Vec<Placement>)>>,
    pub(super) bytes: u64,
    /// Restore what can be restored when data is damaged, instead of stopping.
    pub(super) skip_damaged: bool,
    /// Files that cannot be restored (index into `files`), and why.
    pub(super) damaged: std::collections::BTreeMap<u32, String>,
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty() && self.symlinks.is_empty()
    }
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

fn globs(flag: &str, patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in patterns {
        let glob = globset::GlobBuilder::new(g.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("{flag} {g:?}: {e}")))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("{flag}: {e}")))
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

/// Maps every chunk of a file to its pack, looking chunks up in batches.
fn locate_chunks(
    repo: &Repository,
    content: &crate::manifest::Content,
    file: u32,
    plan: &mut Plan,
    chunks: &mut Vec<FileChunk>,
) -> Result<()> {
    const BATCH: usize = 1024;
    let mut refs: Vec<crate::manifest::ContentRef> = Vec::new();
    let mut offset = 0u64;
    let mut flush = |refs: &mut Vec<crate::manifest::ContentRef>| -> Result<()> {
        let ids: Vec<Id> = refs.iter().map(|r| r.id).collect();
        let found = repo.index().get_many(BlobKind::Data, &ids)?;
        for (r, loc) in refs.drain(..).zip(found) {
            let loc = loc.ok_or_else(|| Error::MissingBlob {
                kind: BlobKind::Data.name(),
                id: r.id.to_hex(),
            })?;
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
            chunks.push(FileChunk {
                offset,
                len: loc.entry.raw_len,
                id: r.id,
            });
            offset += r.len;
        }
        Ok(())
    };
    repo.for_each_chunk(content, &mut |r| {
        refs.push(*r);
        if refs.len() >= BATCH {
            flush(&mut refs)?;
        }
        Ok(())
    })?;
    flush(&mut refs)
}

pub(super) fn plan_tree(
    repo: &Repository,
    tree: &Tree,
    dir: &Path,
    filter: &Filter,
    included: bool,
    plan: &mut Plan,
) -> Result<()> {
    for node in &tree.nodes {
        let rel = dir.join(OsStr::from_bytes(&node.name));
        plan_node(repo, node.clone(), rel, filter, included, plan)?;
    }
    Ok(())
}

pub(super) fn plan_node(
    repo: &Repository,
    node: Node,
    rel: PathBuf,
    filter: &Filter,
    parent_included: bool,
    plan: &mut Plan,
) -> Result<()> {
    if filter.excluded(&rel) {
        return Ok(());
    }
    let included = filter.included(&rel, parent_included);
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
            plan_tree(repo, &tree, &rel, filter, included, plan)?;
            let grew = plan.files.len() + plan.symlinks.len() + plan.dirs.len() > before;
            // Directories are created parents first later, so children may come first here.
            if included || grew {
                plan.dirs.push((rel, node));
            }
        }
        NodeKind::File(content) if included => {
            let file = plan.files.len() as u32;
            let mut chunks = Vec::new();
            let walked = locate_chunks(repo, content, file, plan, &mut chunks);
            match walked {
                Ok(()) => {}
                Err(e) if e.is_damage() && plan.skip_damaged => {
                    plan.damaged.insert(file, e.to_string());
                }
                Err(e) if e.is_damage() => {
                    return Err(Error::Unrestorable {
                        files: rel.display().to_string(),
                        source: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
            plan.bytes += node.size;
            plan.files.push((rel, node));
            plan.chunks.push(chunks);
        }
        NodeKind::Symlink(_) if included => plan.symlinks.push((rel, node)),
        _ => {}
    }
    Ok(())
}
