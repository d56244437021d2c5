//! `forget` and `delete`: removing snapshots. Their data stays until `prune` reclaims it.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock::LockKind;
use crate::policy::{Group, RetentionPolicy, apply_policy};
use crate::repository::Repository;
use crate::snapshot::snapshot_path;

/// Applies `policy` (or, if `None`, the policy saved in the repository config) and, unless
/// `dry_run`, deletes the snapshots it does not keep. Returns every snapshot's verdict.
///
/// Deleting takes the exclusive lock: a `check` or `copy` that listed a snapshot must not
/// find it gone when it reads it (and report damage that is not there).
pub fn forget(
    repo: &mut Repository,
    policy: Option<&RetentionPolicy>,
    dry_run: bool,
) -> Result<Vec<Group>> {
    let _lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, "forget")?)
    };
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
/// resolved before any is deleted, under the exclusive lock (see [`forget`]). Returns their
/// ids.
pub fn delete_snapshots(repo: &mut Repository, specs: &[String]) -> Result<Vec<Id>> {
    let _lock = repo.lock(LockKind::Exclusive, "delete")?;
    // A damaged snapshot can be deleted by its id (or a prefix of it): that is how an
    // operator clears one that `check` reported.
    let (all, damaged) = repo.snapshots_and_damaged()?;
    let mut ids = Vec::new();
    for spec in specs {
        let id = match crate::repository::resolve_in(all.clone(), spec) {
            Ok((id, _)) => id,
            Err(Error::SnapshotNotFound(_))
                if let Some(id) = damaged_by_prefix(&damaged, spec)? =>
            {
                id
            }
            Err(e) => return Err(e),
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in &ids {
        repo.store().delete(&snapshot_path(id))?;
    }
    Ok(ids)
}

/// The one damaged snapshot whose id starts with `spec` (hex), if any.
fn damaged_by_prefix(damaged: &[(Id, Error)], spec: &str) -> Result<Option<Id>> {
    let lower = spec.to_ascii_lowercase();
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hits: Vec<Id> = damaged
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| id.to_hex().starts_with(&lower))
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(*id)),
        _ => Err(Error::AmbiguousSnapshot {
            prefix: spec.into(),
            candidates: hits.iter().map(Id::short).collect::<Vec<_>>().join(", "),
        }),
    }
}
