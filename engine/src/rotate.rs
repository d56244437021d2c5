//! `key rotate`: a new master key and a new data-key epoch, then every object still sealed
//! under an old epoch re-encrypted, then the old keys destroyed. An integration on top of
//! prune, whose crash-safe repacking does the re-encryption of packs.
//!
//! ```text
//! no rotation in progress (one epoch): start one                       (exclusive lock)
//!     new key file (new master key, this password) → config (new master, epochs old + new,
//!     current = new) → the other key files go (they wrap the old master key)
//! prune --rekey: packs sealed under an old epoch are repacked, index files under an old
//!     epoch rewritten, in prune's order                                 (its own lock)
//! snapshots, WAL records, index files still under an old epoch: sealed again, same name
//! nothing left under an old epoch: the config keeps only the current key (old keys gone)
//! ```
//!
//! Stopped anywhere, the repository is whole (prune's ordering; objects are replaced whole)
//! and the next `key rotate` finishes the rotation in progress instead of starting another.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock_file::LockKind;
use crate::progress::Progress;
use crate::prune::{PruneOptions, PruneReport, prune};
use crate::repo::{Kind, Object, Repository};

/// What `key rotate` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RotateReport {
    /// The epoch of the data key every object is now sealed under.
    pub epoch: u32,
    /// True if this run started the rotation (else it finished one stopped midway).
    pub started: bool,
    /// Key files removed (they wrapped the replaced master key).
    pub keys_removed: Vec<String>,
    /// The re-encryption of packs and index files.
    pub prune: PruneReport,
    /// Snapshots, WAL records and index files sealed again.
    pub objects_resealed: u64,
    /// Epochs whose keys were destroyed.
    pub epochs_destroyed: Vec<u32>,
}

/// Rotates the keys of an encrypted repository, or finishes a rotation in progress.
pub fn rotate_keys(repo: &mut Repository, progress: &dyn Progress) -> Result<RotateReport> {
    let mut report = RotateReport::default();
    {
        let _lock = repo.lock(LockKind::Exclusive, "key rotate")?;
        let keys = repo.encrypted_keys()?;
        if keys.epochs().len() == 1 {
            let (epoch, removed) = repo.start_rotation()?;
            report.started = true;
            report.epoch = epoch;
            report.keys_removed = removed.iter().map(Id::to_hex).collect();
        } else {
            report.epoch = keys.current().0;
            let removed = repo.remove_keys_older_than_epoch()?;
            report.keys_removed = removed.iter().map(Id::to_hex).collect();
        }
    }
    report.prune = prune(
        repo,
        &PruneOptions {
            rekey: true,
            ..PruneOptions::default()
        },
        progress,
    )?;
    let lock = repo.lock(LockKind::Exclusive, "key rotate")?;
    let objects = repo.objects();
    let mut all = Vec::new();
    for kind in [Kind::Snapshot, Kind::Wal, Kind::Index] {
        all.extend(objects.list(kind)?.objects);
    }
    let resealed: Vec<bool> = objects.with_parallel_reads(|| {
        all.par_iter()
            .map(|o: &Object| repo.reseal(o))
            .collect::<Result<_>>()
    })?;
    report.objects_resealed = resealed.iter().filter(|r| **r).count() as u64;
    // A pack still under an old epoch (written by a command that began before the rotation
    // and has not taken a lock since): its key must stay; the next run repacks it.
    let current = repo.encrypted_keys()?.current().0;
    let (packs, _) = repo.list_packs()?;
    let stale = objects.with_parallel_reads(|| {
        packs
            .par_iter()
            .map(|(id, len)| objects.pack_epoch(id, *len))
            .collect::<Result<Vec<_>>>()
    })?;
    let left = stale.iter().filter(|e| **e != Some(current)).count();
    if left > 0 {
        return Err(Error::KeyRefused(format!(
            "{left} packs are still sealed under an old key (written by a command that began before the rotation); run `cairn key rotate` again to finish"
        )));
    }
    lock.confirm()?;
    report.epochs_destroyed = repo.finish_rotation()?;
    Ok(report)
}
