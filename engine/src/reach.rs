//! What snapshots reach: the walk that prune (what is used) and stats (what is whose) share.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::manifest::{Content, NodeKind, decode_list};
use crate::pack::BlobKind;
use crate::repo::Repository;

/// Walks everything the tree `root` reaches: itself, its subtrees, their files' chunk lists
/// and chunks. `visit(kind, id)` is called for each blob reached; for trees and lists, what it
/// returns decides whether the walk descends into the blob (return false for a blob already
/// walked). Any blob that cannot be loaded or decoded stops the walk with its error.
pub(crate) fn walk_blobs(
    repo: &Repository,
    root: &Id,
    visit: &mut dyn FnMut(BlobKind, &Id) -> bool,
) -> Result<()> {
    if visit(BlobKind::Tree, root) {
        tree(repo, root, visit, 0)?;
    }
    Ok(())
}

fn tree(
    repo: &Repository,
    id: &Id,
    visit: &mut dyn FnMut(BlobKind, &Id) -> bool,
    depth: usize,
) -> Result<()> {
    if depth > crate::manifest::MAX_TREE_DEPTH {
        return Err(Error::corrupt(
            format!("tree {}", id.short()),
            "directories nested too deep",
        ));
    }
    let t = repo.load_tree(id)?;
    for node in &t.nodes {
        match &node.kind {
            NodeKind::Dir(sub) => {
                if visit(BlobKind::Tree, sub) {
                    tree(repo, sub, visit, depth + 1)?;
                }
            }
            NodeKind::File(content) => contents(repo, content, visit)?,
            NodeKind::Symlink(_) => {}
        }
    }
    Ok(())
}

fn contents(
    repo: &Repository,
    c: &Content,
    visit: &mut dyn FnMut(BlobKind, &Id) -> bool,
) -> Result<()> {
    if c.depth == 0 {
        for r in &c.refs {
            visit(BlobKind::Data, &r.id);
        }
        return Ok(());
    }
    for r in &c.refs {
        if !visit(BlobKind::List, &r.id) {
            continue;
        }
        let bytes = repo.load_blob(BlobKind::List, &r.id)?;
        let sub = decode_list(&bytes).map_err(|m| m.about(format!("list {}", r.id.short())))?;
        if sub.depth + 1 != c.depth {
            return Err(Error::corrupt(
                format!("list {}", r.id.short()),
                "its depth does not match the reference to it",
            ));
        }
        contents(repo, &sub, visit)?;
    }
    Ok(())
}
