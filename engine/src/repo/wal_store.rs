//! The records of archived WAL files (`wal/<WAL file name>`, format-spec/wal.md): each names
//! the WAL file, its digest and the tree holding its contents, which are stored like any other
//! file's. Written once per name; only WAL expiry deletes them.

use rayon::prelude::*;

use crate::error::Result;
use crate::wal::WalRecord;

use super::layout::{Kind, Object};
use super::repository::Repository;

/// The archived WAL file names, sorted.
pub fn wal_names(repo: &Repository) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo
        .objects()
        .list(Kind::Wal)?
        .objects
        .iter()
        .filter_map(|o| o.name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads the record of an archived WAL file, or `None` if it is not archived.
pub fn load_wal_record(repo: &Repository, name: &str) -> Result<Option<WalRecord>> {
    match repo.objects().read_opt(&Object::Wal(name.to_string()))? {
        Some(bytes) => WalRecord::decode(&bytes, name).map(Some),
        None => Ok(None),
    }
}

/// Reads the record of an archived WAL file, decoded and as stored (for `copy`, which writes
/// it unchanged).
pub(crate) fn read_wal_record(repo: &Repository, name: &str) -> Result<(WalRecord, Vec<u8>)> {
    let bytes = repo.objects().read(&Object::Wal(name.to_string()))?;
    Ok((WalRecord::decode(&bytes, name)?, bytes))
}

/// Stores the record `bytes` of the WAL file `name` unless one is there already: `None` when
/// written, else the record found (an archiver racing with another, or a copy meeting what
/// the destination has), for the caller to compare.
pub(crate) fn add_wal_record(
    repo: &Repository,
    name: &str,
    bytes: Vec<u8>,
) -> Result<Option<WalRecord>> {
    let object = Object::Wal(name.to_string());
    if repo.objects().write_new(&object, bytes)? {
        return Ok(None);
    }
    let there = repo.objects().read(&object)?;
    WalRecord::decode(&there, name).map(Some)
}

/// Deletes the record of an archived WAL file (WAL expiry, under the exclusive lock).
pub(crate) fn delete_wal_record(repo: &Repository, name: &str) -> Result<()> {
    repo.objects().delete(&Object::Wal(name.to_string()))
}

/// Reads every WAL record; for `prune`. Unreadable records are errors.
pub(crate) fn wal_records(repo: &Repository) -> Result<Vec<WalRecord>> {
    let names = wal_names(repo)?;
    repo.objects().with_parallel_reads(|| {
        names
            .par_iter()
            .map(|n| read_wal_record(repo, n).map(|(r, _)| r))
            .collect()
    })
}
