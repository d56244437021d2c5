//! `copy`: snapshots into a second repository (a secondary copy elsewhere), transferring only
//! the blobs the destination lacks.
//!
//! ```text
//! shared locks on both repositories
//! snapshots the destination already has (same id: same bytes) are skipped
//! walk what the others reach in the source; the blobs the destination's index lacks are read
//!   from the source pack by pack (coalesced ranges, in parallel), verified, and added still
//!   compressed to the destination's packer                (packs, then index files)
//! then the snapshot files, unchanged                     (the write ordering of a backup)
//! and the archived PostgreSQL WAL the copied base backups may replay, the same way
//! ```
//!
//! Blob ids name raw bytes, so a copy needs the same chunking and list splitting on both sides
//! (otherwise the destination would hold a second, incompatible cut of the same data);
//! compression and pack size may differ: stored bytes are copied as they are.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::BlobLocation;
use crate::lock_file::LockKind;
use crate::pack::{BlobEntry, BlobKind};
use crate::progress::Progress;
use crate::repo::{Coalesce, Object, Packer, Repository};
use crate::snapshot::SnapshotFilter;

/// How blobs of one source pack are read: neighbours within 256 KiB in one request, of at
/// most 8 MiB.
const COALESCE: Coalesce = Coalesce {
    gap: 256 << 10,
    max: 8 << 20,
};
/// Blob lookups per index query.
const LOOKUP_BATCH: usize = 4096;

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots written to the destination.
    pub snapshots_copied: u64,
    /// Snapshots asked for that the destination already had.
    pub snapshots_present: u64,
    /// Blobs (chunks, trees, lists) transferred.
    pub blobs_copied: u64,
    /// Blobs the copied snapshots reach that the destination already had.
    pub blobs_present: u64,
    /// Archived PostgreSQL WAL files copied.
    pub wal_files_copied: u64,
    /// Archived WAL files the destination already had.
    pub wal_files_present: u64,
    /// Stored (compressed) bytes transferred.
    pub bytes_copied: u64,
    /// Packs written to the destination.
    pub packs_written: u64,
    /// Seconds the copy took.
    pub duration_s: f64,
}

/// Refuses a destination whose chunking, list splitting or ids differ from the source's.
fn compatible(src: &Repository, dst: &Repository) -> Result<()> {
    let (a, b) = (src.config(), dst.config());
    let what = if !src.sealing().same_content_ids(dst.sealing()) {
        Some(match (a.cipher(), b.cipher()) {
            (Some(_), Some(_)) => "they key chunk ids and the chunker with different secrets (a destination shares them only when `copy` creates it)".to_string(),
            (Some(_), None) => "the source is encrypted and the destination is not".to_string(),
            _ => "the destination is encrypted and the source is not".to_string(),
        })
    } else if a.chunker != b.chunker {
        Some(format!(
            "chunk sizes {}/{}/{} vs {}/{}/{} (min/avg/max)",
            a.chunker.min_size,
            a.chunker.avg_size,
            a.chunker.max_size,
            b.chunker.min_size,
            b.chunker.avg_size,
            b.chunker.max_size
        ))
    } else if a.list_split != b.list_split {
        Some("chunk-list splitting parameters".to_string())
    } else if a.pages != b.pages {
        Some("which files are cut into pages (the page rules differ)".to_string())
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::IncompatibleRepositories {
            detail: format!("the repositories chunk data differently: {what}"),
        }),
        None => Ok(()),
    }
}

/// Copies the snapshots `specs` names (all of them when empty) from `src` to `dst`.
pub fn copy(
    src: &mut Repository,
    dst: &mut Repository,
    specs: &[String],
    filter: &SnapshotFilter,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let started = Instant::now();
    if src.config().id == dst.config().id {
        return Err(Error::InvalidInput(
            "the source and the destination are the same repository".into(),
        ));
    }
    compatible(src, dst)?;
    let src_lock = src.lock(LockKind::Shared, "copy (source)")?;
    let dst_lock = dst.lock(LockKind::Shared, "copy")?;
    let all = src.snapshots()?;
    // A backup that finished after the lock was taken indexed its blobs before writing its
    // snapshot: bring the cache up to date with what the listed snapshots may need.
    src.resync()?;
    let chosen: Vec<(Id, crate::snapshot::Snapshot)> = if specs.is_empty() {
        all.into_iter().filter(|(_, s)| filter.matches(s)).collect()
    } else {
        let mut picked = Vec::new();
        let mut seen = HashSet::new();
        for spec in specs {
            let (id, snap) = crate::repo::resolve_in_filtered(all.clone(), spec, filter)?;
            if seen.insert(id) {
                picked.push((id, snap));
            }
        }
        picked
    };
    let mut report = CopyReport::default();
    let wal = wal_to_copy(src, dst, &chosen, specs.is_empty(), &mut report)?;
    let mut todo = Vec::new();
    for (id, snap) in chosen {
        if dst.objects().size(&Object::Snapshot(id))?.is_some() {
            report.snapshots_present += 1;
        } else {
            todo.push((id, snap));
        }
    }
    if todo.is_empty() && wal.is_empty() {
        report.duration_s = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // Everything the snapshots and WAL records to copy reach, each blob once.
    let mut reached: HashSet<(BlobKind, Id)> = HashSet::new();
    let trees = todo
        .iter()
        .map(|(_, s)| &s.tree)
        .chain(wal.iter().map(|(r, _)| &r.tree));
    for tree in trees {
        crate::reach::walk_blobs(src, tree, &mut |kind, id| reached.insert((kind, *id)))?;
    }
    let mut by_kind: HashMap<BlobKind, Vec<Id>> = HashMap::new();
    for (kind, id) in reached {
        by_kind.entry(kind).or_default().push(id);
    }
    // What the destination lacks, by source pack.
    let mut wanted: HashMap<Id, Vec<BlobLocation>> = HashMap::new();
    for (kind, mut ids) in by_kind {
        ids.sort_unstable();
        for batch in ids.chunks(LOOKUP_BATCH) {
            let present = dst.blob_locations(kind, batch)?;
            let found = src.blob_locations(kind, batch)?;
            for ((id, have), loc) in batch.iter().zip(present).zip(found) {
                if have.is_some() {
                    report.blobs_present += 1;
                    continue;
                }
                let loc = loc.ok_or_else(|| Error::MissingBlob {
                    kind: kind.name(),
                    id: id.to_hex(),
                })?;
                wanted.entry(loc.pack).or_default().push(loc);
            }
        }
    }
    let mut packs: Vec<(Id, Vec<BlobLocation>)> = wanted.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    let total: u64 = packs
        .iter()
        .flat_map(|(_, b)| b.iter())
        .map(|b| b.entry.pack_len())
        .sum();
    progress.total(0, total);

    let packer = Packer::new(dst);
    let copied: Vec<(u64, u64)> = src.objects().with_parallel_reads(|| {
        packs
            .par_iter_mut()
            .map(|(pack, blobs)| copy_pack(src, &packer, pack, blobs, progress))
            .collect::<Result<_>>()
    })?;
    let packed = packer.finish()?;
    for (n, bytes) in copied {
        report.blobs_copied += n;
        report.bytes_copied += bytes;
    }
    report.packs_written = packed.packs_added;

    // The snapshots last, byte for byte: their ids stay the same.
    src_lock.confirm()?;
    dst_lock.confirm()?;
    for (id, _) in &todo {
        let bytes = src.load_snapshot_bytes(id)?;
        dst.objects().write(&Object::Snapshot(*id), bytes)?;
        report.snapshots_copied += 1;
    }
    // And the WAL records, as the source stored them.
    for (record, bytes) in &wal {
        if let Some(there) = crate::repo::add_wal_record(dst, &record.name, bytes.clone())?
            && there.digest != record.digest
        {
            return Err(Error::WalConflict {
                name: record.name.clone(),
            });
        }
        report.wal_files_copied += 1;
    }
    report.duration_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The archived PostgreSQL WAL files to copy, with their records as stored: all of them when
/// every snapshot is copied; otherwise those the chosen base backups may replay (from the
/// earliest one's start segment on, and timeline history files). Those the destination has
/// are counted, not copied.
fn wal_to_copy(
    src: &Repository,
    dst: &Repository,
    chosen: &[(Id, crate::snapshot::Snapshot)],
    everything: bool,
    report: &mut CopyReport,
) -> Result<Vec<(crate::wal::WalRecord, Vec<u8>)>> {
    let names = crate::repo::wal_names(src)?;
    let names = if everything {
        names
    } else {
        crate::pitr::wal_needed(chosen, &names)
    };
    let there: HashSet<String> = crate::repo::wal_names(dst)?.into_iter().collect();
    let mut out = Vec::new();
    for name in names {
        if there.contains(&name) {
            report.wal_files_present += 1;
            continue;
        }
        out.push(crate::repo::read_wal_record(src, &name)?);
    }
    Ok(out)
}

/// Copies `blobs` of one source pack; returns how many blobs and stored bytes it copied. A
/// damaged blob stops the copy: `check` on the source says what it affects.
fn copy_pack(
    src: &Repository,
    packer: &Packer<'_>,
    pack: &Id,
    blobs: &mut [BlobLocation],
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    blobs.sort_by_key(|b| b.entry.offset);
    let entries: Vec<BlobEntry> = blobs.iter().map(|b| b.entry).collect();
    let (mut n, mut bytes) = (0, 0);
    src.objects()
        .read_blobs(pack, &entries, COALESCE, |i, raw| {
            let raw = raw?;
            let len = entries[i].pack_len();
            packer.add_copy(&entries[i], raw)?;
            n += 1;
            bytes += len;
            progress.bytes(len);
            Ok(())
        })?;
    Ok((n, bytes))
}
