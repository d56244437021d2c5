//! `prune`: reclaim the space of blobs no snapshot reaches, safely.
//!
//! ```text
//! take the exclusive lock (no backup, restore or check runs; format-spec/locks.md)
//! used   = every blob the snapshots reach (all snapshots must be readable)
//! packs  = every pack the index files list; each used blob is owned by one pack
//! per pack: all used -> keep; none used -> delete; some unused -> repack if the unused share
//!           of its bytes exceeds --max-unused, else keep
//! packs in data/ that no index file lists (left by interrupted backups) -> delete
//! 1. repack: copy the used blobs of those packs (each verified) into new packs, then write
//!    index files listing the new packs                 (crash: unreferenced packs, duplicates)
//! 2. write index files listing the kept packs of every index file that lists a pack going away
//!                                                      (crash: packs listed twice, same bytes)
//! 3. delete those old index files, durably              (crash: unreferenced packs)
//! 4. delete the packs going away                        (crash: fewer unreferenced packs)
//! ```
//!
//! Each step is durable before the next starts, so a prune stopped at any point leaves a
//! repository whose snapshots are all complete; what it leaves behind (unreferenced packs,
//! blobs listed twice) is what `check` accepts and the next prune removes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::{PackRecord, encode_index};
use crate::lock_file::LockKind;
use crate::pack::BlobKind;
use crate::progress::Progress;
use crate::reach::walk_blobs;
use crate::repo::{Coalesce, Kind, Object, Packer, Repository, load_index_file};

/// What `prune` may do.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Largest share (0.0 to 1.0) of a pack's bytes that may be unused before the pack is
    /// repacked. 0 reclaims everything; 1 never repacks (only wholly unused packs go).
    pub max_unused: f64,
    /// Re-encryption (key rotation): also repack every pack, and rewrite every index file,
    /// sealed under a data-key epoch other than the current one.
    pub rekey: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused: DEFAULT_MAX_UNUSED,
            rekey: false,
        }
    }
}

/// By default a pack is repacked when more than this share of it is unused.
pub const DEFAULT_MAX_UNUSED: f64 = 0.05;

/// What `prune` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PruneReport {
    /// True if nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose blobs are kept.
    pub snapshots: u64,
    /// Packs listed by index files.
    pub packs: u64,
    /// Packs kept as they are.
    pub packs_kept: u64,
    /// Packs holding only unused blobs, deleted.
    pub packs_deleted: u64,
    /// Packs whose used blobs were copied into new packs, then deleted.
    pub packs_repacked: u64,
    /// Packs that no index file listed (left by interrupted backups), deleted.
    pub packs_unindexed: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Blobs that snapshots reach.
    pub blobs_used: u64,
    /// Blobs that no snapshot reaches (or extra copies of used ones).
    pub blobs_unused: u64,
    /// Stored bytes of unused blobs left in kept packs (below `max_unused`).
    pub bytes_unused_kept: u64,
    /// Stored bytes of used blobs copied by repacking.
    pub bytes_repacked: u64,
    /// Repository bytes before and after (packs and index files).
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Index files written and deleted.
    pub index_files_written: u64,
    /// See `index_files_written`.
    pub index_files_deleted: u64,
    /// Files left in `tmp/` by writes that failed or were killed (local disks), removed.
    pub tmp_files_deleted: u64,
    /// Seconds it took.
    pub duration_s: f64,
}

/// What happens to one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Delete,
    Repack,
    /// Listed by the index but missing from the repository, and holding nothing used: only
    /// dropped from the index.
    Drop,
}

/// Packs per index file that prune writes.
const PACKS_PER_INDEX: usize = 256;
/// An index file listing fewer packs than this is small (a backup writes 16 per file)...
const SMALL_INDEX: usize = 16;
/// ...and prune merges the small ones once there are this many.
const MERGE_SMALL_INDEXES: usize = 32;

/// Removes what no snapshot reaches.
pub fn prune(
    repo: &mut Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let started = Instant::now();
    if !(0.0..=1.0).contains(&opts.max_unused) {
        return Err(Error::InvalidInput(
            "--max-unused must be a percentage from 0% to 100%".into(),
        ));
    }
    let lock = repo.lock(LockKind::Exclusive, "prune")?;
    let repo: &Repository = repo;
    let objects = repo.objects();
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };

    // What the snapshots reach. A snapshot that cannot be read, or a tree or list that cannot
    // be loaded, stops prune: it could not know what that snapshot needs.
    let snapshots = repo.snapshots_strict().map_err(refuse)?;
    report.snapshots = snapshots.len() as u64;
    let mut used: HashSet<(BlobKind, Id)> = HashSet::new();
    for (_, snap) in &snapshots {
        walk_blobs(repo, &snap.tree, &mut |kind, id| used.insert((kind, *id))).map_err(refuse)?;
    }
    // The archived PostgreSQL WAL is data too (forget expires what no base backup needs).
    for record in crate::repo::wal_records(repo).map_err(refuse)? {
        walk_blobs(repo, &record.tree, &mut |kind, id| used.insert((kind, *id))).map_err(refuse)?;
    }
    report.blobs_used = used.len() as u64;

    // The index files and what they list; every one must be readable.
    let mut index_ids: Vec<Id> = objects.list_ids(Kind::Index)?;
    index_ids.sort();
    let loaded: Vec<(Id, Vec<PackRecord>)> = objects
        .with_parallel_reads(|| {
            index_ids
                .par_iter()
                .map(|id| load_index_file(objects, id).map(|p| (*id, p)))
                .collect::<Result<_>>()
        })
        .map_err(refuse)?;
    let (present, _) = repo.list_packs()?;
    // Re-encrypting: which packs and index files are sealed under an old epoch.
    let current = objects.sealing().keys().map(|k| k.current().0);
    let (old_packs, old_indexes) = match current {
        Some(current) if opts.rekey => old_epochs(repo, &present, &index_ids, current)?,
        _ => Default::default(),
    };

    // Each pack once; each used blob owned by one pack that holds it.
    let mut packs: BTreeMap<Id, &PackRecord> = BTreeMap::new();
    let mut listed_by: HashMap<Id, Vec<Id>> = HashMap::new();
    for (iid, records) in &loaded {
        for r in records {
            packs.entry(r.id).or_insert(r);
            listed_by.entry(r.id).or_default().push(*iid);
        }
    }
    report.packs = packs.len() as u64;
    report.bytes_before = present.values().sum::<u64>()
        + index_ids
            .iter()
            .filter_map(|id| objects.size(&Object::Index(*id)).ok().flatten())
            .sum::<u64>();
    let mut fates: BTreeMap<Id, Fate> = BTreeMap::new();
    let mut owned: HashMap<Id, Vec<usize>> = HashMap::new();
    // Packs that are there whole own blobs first: a used blob with a copy in a healthy pack
    // never depends on a missing or truncated one.
    let mut order: Vec<(&Id, &&PackRecord)> = packs.iter().collect();
    order.sort_by_key(|(id, r)| (present.get(*id) != Some(&r.len), **id));
    for (id, record) in order {
        let mut used_bytes = 0u64;
        let mut unused_bytes = 0u64;
        let mut mine = Vec::new();
        for (i, b) in record.blobs.iter().enumerate() {
            let size = b.pack_len();
            if used.remove(&(b.kind, b.id)) {
                used_bytes += size;
                mine.push(i);
            } else {
                unused_bytes += size;
                report.blobs_unused += 1;
            }
        }
        let on_disk = present.get(id);
        if on_disk != Some(&record.len) {
            if !mine.is_empty() {
                return Err(refuse(Error::corrupt(
                    format!("pack {}", id.short()),
                    match on_disk {
                        None => "it is missing, and snapshots need blobs in it".to_string(),
                        Some(n) => format!("{n} bytes, but the index says {}", record.len),
                    },
                )));
            }
            fates.insert(
                *id,
                if on_disk.is_none() {
                    Fate::Drop
                } else {
                    Fate::Delete
                },
            );
            continue;
        }
        let fate = if mine.is_empty() {
            Fate::Delete
        } else if old_packs.contains(id) {
            Fate::Repack
        } else if unused_bytes == 0 {
            Fate::Keep
        } else if unused_bytes as f64 / (used_bytes + unused_bytes) as f64 > opts.max_unused {
            Fate::Repack
        } else {
            report.bytes_unused_kept += unused_bytes;
            Fate::Keep
        };
        if fate == Fate::Repack {
            report.bytes_repacked += used_bytes;
        }
        fates.insert(*id, fate);
        owned.insert(*id, mine);
    }
    // A blob that snapshots reach but no pack holds: the repository is already damaged, and
    // deleting anything now could only make it worse.
    if let Some((kind, id)) = used.iter().next() {
        return Err(refuse(Error::MissingBlob {
            kind: kind.name(),
            id: id.to_hex(),
        }));
    }
    let unindexed: Vec<Id> = present
        .keys()
        .filter(|id| !packs.contains_key(*id))
        .copied()
        .collect();
    let count = |f: Fate| fates.values().filter(|x| **x == f).count() as u64;
    report.packs_kept = count(Fate::Keep);
    report.packs_deleted = count(Fate::Delete) + count(Fate::Drop);
    report.packs_repacked = count(Fate::Repack);
    report.packs_unindexed = unindexed.len() as u64;
    let going: HashSet<Id> = fates
        .iter()
        .filter(|(_, f)| **f != Fate::Keep)
        .map(|(id, _)| *id)
        .collect();
    // Index files that list a pack going away are replaced. So are small ones when there are
    // many (every archived WAL file writes one, every short backup one or two): each command
    // lists and reads them all, so they are merged into full ones.
    let small: Vec<Id> = loaded
        .iter()
        .filter(|(_, records)| records.len() < SMALL_INDEX)
        .map(|(id, _)| *id)
        .collect();
    let merge = small.len() >= MERGE_SMALL_INDEXES;
    let obsolete: Vec<Id> = loaded
        .iter()
        .filter(|(id, records)| {
            records.iter().any(|r| going.contains(&r.id))
                || (merge && small.contains(id))
                || old_indexes.contains(id)
        })
        .map(|(id, _)| *id)
        .collect();
    if opts.dry_run {
        report.bytes_after = estimate_after(&report, &present, &going, &unindexed);
        report.duration_s = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // 1. Repack.
    let mut written: Vec<Id> = Vec::new();
    let mut written_indexes: Vec<Id> = Vec::new();
    let to_repack: Vec<Id> = fates
        .iter()
        .filter(|(_, f)| **f == Fate::Repack)
        .map(|(id, _)| *id)
        .collect();
    if !to_repack.is_empty() {
        progress.total(to_repack.len() as u64, report.bytes_repacked);
        let packer = Packer::for_repack(repo);
        to_repack
            .par_iter()
            .filter_map(|id| Some((packs.get(id)?, owned.get(id)?)))
            .map(|(record, keep)| repack_one(repo, &packer, record, keep, progress))
            .collect::<Result<Vec<()>>>()?;
        let packed = packer.finish()?;
        report.packs_written = packed.packs_added;
        report.index_files_written += packed.index_files_added;
        (written, written_indexes) = packer.written();
    }

    // 2. The kept packs of the obsolete index files, listed anew.
    let obsolete_set: HashSet<Id> = obsolete.iter().copied().collect();
    let mut relist: Vec<PackRecord> = Vec::new();
    let mut relisted: HashSet<Id> = HashSet::new();
    for (iid, records) in &loaded {
        if !obsolete_set.contains(iid) {
            continue;
        }
        for r in records {
            let listed_elsewhere = listed_by
                .get(&r.id)
                .is_some_and(|by| by.iter().any(|i| !obsolete_set.contains(i)));
            if fates.get(&r.id) == Some(&Fate::Keep) && !listed_elsewhere && relisted.insert(r.id) {
                relist.push(r.clone());
            }
        }
    }
    for group in relist.chunks(PACKS_PER_INDEX) {
        let bytes = encode_index(group);
        let id = objects.sealing().hasher().id(&bytes);
        objects.write(&Object::Index(id), bytes)?;
        written_indexes.push(id);
        report.index_files_written += 1;
    }

    // Deleting needs the lock: if it was lost, another command may rely on what would go.
    lock.confirm()?;

    // 3. The obsolete index files go; each deletion is durable before any pack goes. An index
    // file written above may have the very name of an obsolete one (the same packs listed the
    // same way by an earlier prune that was stopped): it stays.
    for id in obsolete.iter().filter(|id| !written_indexes.contains(id)) {
        objects.delete(&Object::Index(*id))?;
        report.index_files_deleted += 1;
    }

    // 4. The packs. A pack written by the repacking above may have the very name of one going
    // away: the same blobs packed the same way by an earlier prune that was stopped before it
    // indexed them. The new index files list it; it stays.
    let doomed: Vec<&Id> = going
        .iter()
        .filter(|id| fates.get(*id) != Some(&Fate::Drop))
        .chain(&unindexed)
        .filter(|id| !written.contains(id))
        .collect();
    doomed
        .par_iter()
        .map(|id| objects.delete(&Object::Pack(**id)))
        .collect::<Result<Vec<()>>>()?;

    // 5. What failed or killed writes left behind (a full disk leaves one file per retry).
    report.tmp_files_deleted = objects.remove_stale_tmp()?;

    report.bytes_after = repo.list_packs()?.0.values().sum::<u64>()
        + objects
            .list(Kind::Index)?
            .objects
            .iter()
            .filter_map(|o| objects.size(o).ok().flatten())
            .sum::<u64>();
    report.duration_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The packs (of those present) and index files sealed under an epoch other than `current`.
fn old_epochs(
    repo: &Repository,
    present: &HashMap<Id, u64>,
    index_ids: &[Id],
    current: u32,
) -> Result<(HashSet<Id>, HashSet<Id>)> {
    let objects = repo.objects();
    objects.with_parallel_reads(|| {
        let packs = present
            .par_iter()
            .map(|(id, len)| Ok((*id, objects.pack_epoch(id, *len)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, e)| *e != Some(current))
            .map(|(id, _)| id)
            .collect();
        let indexes = index_ids
            .par_iter()
            .map(|id| Ok((*id, objects.object_epoch(&Object::Index(*id))?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, e)| *e != Some(current))
            .map(|(id, _)| id)
            .collect();
        Ok((packs, indexes))
    })
}

/// Copies the blobs `keep` (positions in `record`) of one pack into the packer, verifying each.
/// A damaged blob stops the prune: `check` says what it affects.
fn repack_one(
    repo: &Repository,
    packer: &Packer<'_>,
    record: &PackRecord,
    keep: &[usize],
    progress: &dyn Progress,
) -> Result<()> {
    let entries: Vec<_> = keep.iter().map(|&i| record.blobs[i]).collect();
    // The kept blobs of one pack, read in as few requests as the pack's size allows.
    let whole = Coalesce {
        gap: u64::MAX,
        max: u64::MAX,
    };
    repo.objects()
        .read_blobs(&record.id, &entries, whole, |i, raw| {
            let raw = raw?;
            progress.bytes(entries[i].pack_len());
            packer.add_copy(&entries[i], raw)
        })
}

/// Repository bytes after a prune, as a dry run can tell.
fn estimate_after(
    report: &PruneReport,
    present: &HashMap<Id, u64>,
    going: &HashSet<Id>,
    unindexed: &[Id],
) -> u64 {
    let removed: u64 = going
        .iter()
        .chain(unindexed)
        .filter_map(|id| present.get(id))
        .sum();
    (report.bytes_before - removed) + report.bytes_repacked
}

/// Wraps an error that stops prune before it changes anything.
fn refuse(e: Error) -> Error {
    Error::PruneRefused {
        source: Box::new(e),
    }
}
