//! `forget` and `delete`: removing snapshots. Their data stays until `prune` reclaims it.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock_file::LockKind;
use crate::policy::{Group, RetentionPolicy, apply_policy};
use crate::repo::{Object, Repository};
use crate::snapshot::{Snapshot, SnapshotFilter};

/// Applies `policy` (or, if `None`, the policy saved in the repository config) and, unless
/// `dry_run`, deletes the snapshots it does not keep. Returns every snapshot's verdict.
///
/// Deleting takes the exclusive lock: a `check` or `copy` that listed a snapshot must not
/// find it gone when it reads it (and report damage that is not there).
pub fn forget(
    repo: &mut Repository,
    policy: Option<&RetentionPolicy>,
    filter: &SnapshotFilter,
    dry_run: bool,
) -> Result<Vec<Group>> {
    let _lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, "forget")?)
    };
    let saved = repo.config().retention.clone().unwrap_or_default();
    let policy = policy.unwrap_or(&saved);
    // Only the snapshots the filter lets through are judged; the others stay.
    let snapshots: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    let groups = apply_policy(&snapshots, policy)?;
    if !dry_run {
        for g in &groups {
            for v in g.snapshots.iter().filter(|v| !v.keep) {
                repo.objects().delete(&Object::Snapshot(v.id))?;
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
        let id = match damaged_by_prefix(&all, &damaged, spec)? {
            Some(id) => id,
            None => crate::repo::resolve_in(all.clone(), spec)?.0,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in &ids {
        repo.objects().delete(&Object::Snapshot(*id))?;
    }
    Ok(ids)
}

/// The damaged snapshot whose id starts with `spec` (hex), if it is the only snapshot,
/// readable (`all`) or damaged, that does.
fn damaged_by_prefix(
    all: &[(Id, Snapshot)],
    damaged: &[(Id, Error)],
    spec: &str,
) -> Result<Option<Id>> {
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let lower = spec.to_ascii_lowercase();
    let matching = |id: &Id| id.to_hex().starts_with(&lower);
    let hits: Vec<Id> = damaged.iter().map(|(id, _)| *id).filter(matching).collect();
    let readable: Vec<Id> = all.iter().map(|(id, _)| *id).filter(matching).collect();
    match (hits.as_slice(), readable.is_empty()) {
        ([], _) => Ok(None),
        ([id], true) => Ok(Some(*id)),
        _ => Err(Error::AmbiguousSnapshot {
            prefix: spec.into(),
            candidates: hits
                .iter()
                .chain(&readable)
                .map(Id::short)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
