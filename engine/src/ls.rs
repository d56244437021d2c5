//! Listing a snapshot's entries.

use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};
use crate::manifest::{Node, NodeKind, Tree};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// Calls `f` with the path (relative to the snapshot root, `/`-separated) and node of every
/// entry of `snapshot` at or below `subpath`, parents before children, siblings by name.
pub fn walk(
    repo: &Repository,
    snapshot: &Snapshot,
    subpath: Option<&str>,
    f: &mut dyn FnMut(&str, &Node) -> Result<()>,
) -> Result<()> {
    let mut tree = repo.load_tree(&snapshot.tree)?;
    let mut prefix = String::new();
    if let Some(sub) = subpath {
        let parts: Vec<&str> = sub.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let node =
                tree.find(part.as_bytes())
                    .cloned()
                    .ok_or_else(|| Error::PathNotInSnapshot {
                        path: sub.to_string(),
                        snapshot: String::new(),
                    })?;
            prefix = if prefix.is_empty() {
                (*part).to_string()
            } else {
                format!("{prefix}/{part}")
            };
            match &node.kind {
                NodeKind::Dir(id) => {
                    if i + 1 == parts.len() {
                        f(&prefix, &node)?;
                    }
                    tree = repo.load_tree(id)?;
                }
                _ if i + 1 == parts.len() => return f(&prefix, &node),
                _ => {
                    return Err(Error::PathNotInSnapshot {
                        path: sub.to_string(),
                        snapshot: String::new(),
                    });
                }
            }
        }
    }
    walk_tree(repo, &tree, &prefix, f)
}

fn walk_tree(
    repo: &Repository,
    tree: &Tree,
    prefix: &str,
    f: &mut dyn FnMut(&str, &Node) -> Result<()>,
) -> Result<()> {
    for node in &tree.nodes {
        let name = std::ffi::OsStr::from_bytes(&node.name).to_string_lossy();
        let path = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        f(&path, node)?;
        if let NodeKind::Dir(id) = &node.kind {
            if path.matches('/').count() >= crate::manifest::MAX_TREE_DEPTH {
                return Err(Error::corrupt(
                    format!("snapshot path {path}"),
                    "directories nested too deep",
                ));
            }
            walk_tree(repo, &repo.load_tree(id)?, &path, f)?;
        }
    }
    Ok(())
}
