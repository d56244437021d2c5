//! `forget` and `delete`: removing snapshots. Their data stays until `prune` reclaims it.

use crate::error::Result;
use crate::id::Id;
use crate::policy::{Group, RetentionPolicy, apply_policy};
use crate::repository::Repository;
use crate::snapshot::snapshot_path;

/// Applies `policy` (or, if `None`, the policy saved in the repository config) and, unless
/// `dry_run`, deletes the snapshots it does not keep. Returns every snapshot's verdict.
pub fn forget(
    repo: &Repository,
    policy: Option<&RetentionPolicy>,
    dry_run: bool,
) -> Result<Vec<Group>> {
    let saved = repo.config().retention.clone().unwrap_or_default();
    let policy = policy.unwrap_or(&saved);
    let snapshots = repo.snapshots()?;
    let groups = apply_policy(&snapshots, policy)?;
    if !dry_run {
        for g in &groups {
            for v in g.snapshots.iter().filter(|v| !v.keep) {
                repo.store().delete(&snapshot_path(&v.id))?;
            }
        }
    }
    Ok(groups)
}

/// Deletes the snapshots named by `specs` (ids, prefixes, names or `latest`); all are
/// resolved before any is deleted. Returns their ids.
pub fn delete_snapshots(repo: &Repository, specs: &[String]) -> Result<Vec<Id>> {
    let all = repo.snapshots()?;
    let mut ids = Vec::new();
    for spec in specs {
        let (id, _) = crate::repository::resolve_in(all.clone(), spec)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in &ids {
        repo.store().delete(&snapshot_path(id))?;
    }
    Ok(ids)
}
