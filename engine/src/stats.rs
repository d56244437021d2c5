//! `stats`: what the repository holds, and what each snapshot costs.
//!
//! A snapshot's *unique bytes* are the stored bytes (blob headers and compressed contents) of
//! the blobs that it reaches and no other snapshot does: what deleting it and pruning would
//! free. They are found by one walk over all snapshots that records, per blob, its only
//! snapshot or that it is shared; a subtree already seen is walked again only to mark it
//! shared, so each tree is walked at most twice.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::pack::BlobKind;
use crate::reach::walk_blobs;
use crate::repo::{Kind, Repository, load_index_file};

/// One snapshot's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotStats {
    /// The snapshot.
    pub id: Id,
    /// When it was taken.
    pub time: String,
    /// Its name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sum of the sizes of its files.
    pub logical_bytes: u64,
    /// Bytes it added to the repository when it was made.
    pub bytes_added: u64,
    /// Stored bytes of blobs no other snapshot reaches: what deleting it and pruning frees.
    pub unique_bytes: u64,
}

/// The repository's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoStats {
    /// The cipher (format version 2), or `"none"`: an unencrypted repository.
    pub encryption: String,
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// Bytes of every file of the repository (packs, index files, snapshots, config).
    pub stored_bytes: u64,
    /// Packs, and the blobs they hold.
    pub packs: u64,
    /// See `packs`.
    pub blobs: u64,
    /// Raw (uncompressed) bytes of every stored blob.
    pub raw_bytes: u64,
    /// Stored bytes of every blob (headers and compressed contents).
    pub blob_bytes: u64,
    /// Sum of the snapshots' logical sizes: what restoring every snapshot would write.
    pub logical_bytes: u64,
    /// Logical bytes per raw byte stored: what deduplication saves.
    pub dedup_ratio: f64,
    /// Raw bytes per stored byte: what compression saves.
    pub compression_ratio: f64,
    /// The snapshots asked for (all if none were), oldest first.
    pub per_snapshot: Vec<SnapshotStats>,
}

const SHARED: u32 = u32::MAX;

/// Computes the figures; `specs` selects the snapshots listed (all if empty).
pub fn stats(repo: &Repository, specs: &[String]) -> Result<RepoStats> {
    let objects = repo.objects();
    let snapshots = repo.snapshots()?;
    let mut selected: Vec<usize> = Vec::new();
    for spec in specs {
        let (id, _) = crate::repo::resolve_in(snapshots.clone(), spec)?;
        if let Some(i) = snapshots.iter().position(|(s, _)| *s == id)
            && !selected.contains(&i)
        {
            selected.push(i);
        }
    }
    if specs.is_empty() {
        selected = (0..snapshots.len()).collect();
    }
    selected.sort_unstable();

    // Who owns what.
    let mut owner: HashMap<(BlobKind, Id), u32> = HashMap::new();
    for (n, (_, snap)) in snapshots.iter().enumerate() {
        let n = n as u32;
        walk_blobs(
            repo,
            &snap.tree,
            &mut |kind, id| match owner.entry((kind, *id)) {
                Entry::Vacant(v) => {
                    v.insert(n);
                    true
                }
                Entry::Occupied(mut o) => {
                    let was = *o.get();
                    if was == n || was == SHARED {
                        false
                    } else {
                        o.insert(SHARED);
                        true
                    }
                }
            },
        )?;
    }
    let mut unique = vec![0u64; snapshots.len()];
    let owned: Vec<((BlobKind, Id), u32)> =
        owner.into_iter().filter(|(_, o)| *o != SHARED).collect();
    let sizes: Vec<Vec<u64>> = owned
        .par_chunks(4096)
        .map(|group| -> Result<Vec<u64>> {
            let mut out = vec![0; group.len()];
            for kind in [BlobKind::Data, BlobKind::Tree, BlobKind::List] {
                let at: Vec<usize> = (0..group.len()).filter(|i| group[*i].0.0 == kind).collect();
                let ids: Vec<Id> = at.iter().map(|i| group[*i].0.1).collect();
                for (i, loc) in at.into_iter().zip(repo.blob_locations(kind, &ids)?) {
                    out[i] = loc.map_or(0, |l| l.entry.pack_len());
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    for ((_, o), size) in owned.iter().zip(sizes.into_iter().flatten()) {
        unique[*o as usize] += size;
    }

    // What is stored.
    let index_ids = objects.list_ids(Kind::Index)?;
    let records = objects.with_parallel_reads(|| {
        index_ids
            .par_iter()
            .map(|id| load_index_file(objects, id))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut seen_packs = std::collections::HashSet::new();
    let (mut packs, mut blobs, mut raw, mut blob_bytes) = (0u64, 0u64, 0u64, 0u64);
    for p in records.iter().flatten() {
        if !seen_packs.insert(p.id) {
            continue;
        }
        packs += 1;
        for b in &p.blobs {
            blobs += 1;
            raw += u64::from(b.raw_len);
            blob_bytes += b.pack_len();
        }
    }
    let stored = objects.stored_bytes()?;
    let logical: u64 = snapshots.iter().map(|(_, s)| s.summary.logical_bytes).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(RepoStats {
        encryption: repo.config().encryption.clone(),
        snapshots: snapshots.len() as u64,
        stored_bytes: stored,
        packs,
        blobs,
        raw_bytes: raw,
        blob_bytes,
        logical_bytes: logical,
        dedup_ratio: ratio(logical, raw),
        compression_ratio: ratio(raw, blob_bytes),
        per_snapshot: selected
            .into_iter()
            .map(|i| {
                let (id, s) = &snapshots[i];
                SnapshotStats {
                    id: *id,
                    time: s.time.clone(),
                    name: s.name.clone(),
                    logical_bytes: s.summary.logical_bytes,
                    bytes_added: s.summary.bytes_added,
                    unique_bytes: unique[i],
                }
            })
            .collect(),
    })
}
