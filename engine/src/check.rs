//! `check`: prove that snapshots are complete and that every byte is what was written, and say
//! exactly what is damaged and which snapshots and files that affects.
//!
//! ```text
//! 1. index files:  list index/, read each, check its name and decode it; keep per pack only a
//!                  summary (size, blob count, digest of its entries)
//! 2. packs:        list data/, compare sizes with the index; missing and short packs are damage,
//!                  packs no index mentions are warnings
//! 3. snapshots:    first the local cache, which is never trusted: it is used only if it holds
//!                  exactly the index files' entries (same files, same order-independent
//!                  fingerprint of its entries, one sequential scan), and otherwise rebuilt
//!                  from them. Then walk each snapshot's trees and chunk lists (each tree and
//!                  list verified once) and look up every chunk in the verified cache, in
//!                  sorted batches (found by one pass of an iterator when they cover much of
//!                  the cache)
//! 4. --read-data:  for each selected pack, in parallel: stream it once, hashing the whole file
//!                  (its name is its digest), verifying every blob (header, decompression,
//!                  BLAKE3), and comparing its directory with the index. It needs only step 1,
//!                  so without a snapshot filter it runs alongside step 3
//! 5. attribution:  if anything is damaged, walk the snapshots again and name the files that
//!                  reach a damaged blob or pack
//! ```
//!
//! It never changes the repository; at most it rebuilds the local cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use rand::seq::IndexedRandom;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index_file::PackRecord;
use crate::manifest::MAX_TREE_DEPTH;
use crate::manifest::{Content, NodeKind, Tree, decode_list};
use crate::pack::{BlobEntry, BlobKind, PREAMBLE_LEN, TRAILER_LEN, check_preamble, decode_trailer};
use crate::progress::Progress;
use crate::repo::{Fingerprint, Kind, Object, Repository, load_index_file};
use crate::snapshot::Snapshot;

/// Bytes read from a pack at a time when verifying it.
const SEGMENT: u64 = 8 << 20;
/// Files named per affected snapshot in a report; the rest are counted.
const MAX_FILES_NAMED: usize = 50;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// Structure only.
    #[default]
    No,
    /// Every pack.
    All,
    /// Deterministic part `n` of `m` (1-based): over `1/m … m/m` every pack is read once.
    Subset {
        /// Which part.
        n: u32,
        /// How many parts.
        m: u32,
    },
    /// A random sample of this percentage of the packs.
    Percent(f64),
}

impl FromStr for ReadData {
    type Err = Error;

    /// Parses `N/M` or `P%`.
    fn from_str(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::InvalidInput(format!(
                "--read-data-subset {s:?}: give N/M (1 <= N <= M) or a percentage such as 10%"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Percent(p));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Subset { n, m })
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Which packs to read and verify.
    pub read_data: ReadData,
    /// Limit the check to what these snapshots reference (snapshot specs); empty: everything.
    pub snapshots: Vec<String>,
}

/// Files of one snapshot affected by a problem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Affected {
    /// The snapshot's short id.
    pub snapshot: String,
    /// Paths of the affected files (directories end in `/`), at most 50.
    pub files: Vec<String>,
    /// How many more were affected than are named.
    pub more_files: u64,
}

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// What kind: `index-file`, `pack-missing`, `pack-size`, `pack-header`, `pack-contents`,
    /// `blob`, `chunk-missing`, `tree`, `list`, `snapshot`; warnings: `unreferenced-pack`,
    /// `stray-file`.
    pub kind: &'static str,
    /// The damaged object, e.g. `data/3f/3fa2…` or `tree 91c0…`.
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// The snapshots and files that cannot be restored because of it.
    pub affected: Vec<Affected>,
}

/// Figures of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStats {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Index files read.
    pub index_files: u64,
    /// Packs the index lists.
    pub packs: u64,
    /// Blobs the index lists.
    pub blobs: u64,
    /// Trees and lists walked.
    pub manifests: u64,
    /// Packs read by `--read-data`.
    pub packs_read: u64,
    /// Blobs verified by `--read-data`.
    pub blobs_read: u64,
    /// Bytes read by `--read-data`.
    pub bytes_read: u64,
    /// Raw (decompressed) bytes verified by `--read-data`.
    pub logical_bytes_verified: u64,
    /// Seconds from the first pack read to the last pack verified.
    pub read_duration_s: f64,
    /// Ids of the packs read, for audits of subset coverage.
    pub packs_read_ids: Vec<Id>,
    /// Seconds the check took.
    pub duration_s: f64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// True if no damage was found (warnings allowed).
    pub ok: bool,
    /// Damage: each makes the check fail.
    pub errors: Vec<Problem>,
    /// Oddities that lose no data.
    pub warnings: Vec<Problem>,
    /// Figures.
    pub stats: CheckStats,
}

/// What the index says about one pack, kept small so that the whole repository fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackSummary {
    len: u64,
    blobs: u32,
    /// BLAKE3 of the index's entries for this pack, encoded as in a pack directory.
    digest: Id,
    /// The index file that lists it (to fetch the entries again when reading the pack).
    index_file: Id,
}

fn entries_digest(blobs: &[BlobEntry]) -> Id {
    let mut h = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(crate::pack::ENTRY_LEN);
    for b in blobs {
        buf.clear();
        // A version-3 directory names no blob (reading the data checks every id): compare
        // the layout only.
        let b = match b.frame {
            Some(_) => BlobEntry {
                id: Id([0; 32]),
                ..*b
            },
            None => *b,
        };
        b.encode_cached(&mut buf);
        h.update(&buf);
    }
    Id(*h.finalize().as_bytes())
}

/// Things found damaged, to attribute to snapshots and files.
#[derive(Debug, Default)]
struct Findings {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    /// Damaged or missing blob id → (the pack of the damaged copy, if known; index into
    /// `errors`). A blob may be stored in several packs; only damage to the copy the index
    /// uses costs a restore anything.
    blobs: HashMap<Id, Vec<(Option<Id>, usize)>>,
    /// Damaged or missing pack id → indexes into `errors`.
    packs: HashMap<Id, Vec<usize>>,
}

impl Findings {
    fn error(&mut self, kind: &'static str, object: String, detail: String) -> usize {
        self.errors.push(Problem {
            kind,
            object,
            detail,
            affected: Vec::new(),
        });
        self.errors.len() - 1
    }

    /// Damage to the copy of a blob that the index uses (or to every copy).
    fn blob(&mut self, id: Id, kind: &'static str, object: String, detail: String) {
        self.blob_in(id, None, kind, object, detail);
    }

    /// Damage to a blob, in `pack` if only that copy is known to be damaged.
    fn blob_in(
        &mut self,
        id: Id,
        pack: Option<Id>,
        kind: &'static str,
        object: String,
        detail: String,
    ) {
        if self
            .blobs
            .get(&id)
            .is_some_and(|v| v.iter().any(|(p, _)| *p == pack))
        {
            return;
        }
        let i = self.error(kind, object, detail);
        self.blobs.entry(id).or_default().push((pack, i));
    }

    fn pack(&mut self, id: Id, kind: &'static str, detail: String) {
        let i = self.error(kind, Object::Pack(id).path(), detail);
        self.packs.entry(id).or_default().push(i);
    }

    fn warn(&mut self, kind: &'static str, object: String, detail: String) {
        self.warnings.push(Problem {
            kind,
            object,
            detail,
            affected: Vec::new(),
        });
    }
}

/// Checks the repository. Returns a report whether or not damage was found; an `Err` means
/// the check itself could not run.
pub fn check(
    repo: &mut Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let started = Instant::now();
    // Held to the end: prune cannot delete what is being checked.
    let _lock = repo.lock(crate::lock_file::LockKind::Shared, "check")?;
    let mut f = Findings::default();
    let mut stats = CheckStats::default();

    // 1. Snapshots and WAL records, listed before the index files: a backup or WAL archiver
    // running alongside writes its index files before its snapshot or record, so whatever a
    // listed snapshot needs is in an index file listed after it.
    let snapshots = load_snapshots(repo, &mut f)?;
    let selected: Vec<(Id, Snapshot)> = if opts.snapshots.is_empty() {
        snapshots
    } else {
        let mut chosen = Vec::new();
        for spec in &opts.snapshots {
            // Resolved among the snapshots that could be read: a damaged one is reported,
            // not a reason to stop.
            let (id, _) = crate::repo::resolve_in(snapshots.clone(), spec)?;
            if let Some(s) = snapshots.iter().find(|(i, _)| *i == id) {
                chosen.push(s.clone());
            }
        }
        chosen
    };
    stats.snapshots = selected.len() as u64;
    // The PostgreSQL WAL archive: its records, and whether each base backup can be restored.
    let wal = if opts.snapshots.is_empty() {
        check_wal(repo, &selected, &mut f)?
    } else {
        Vec::new()
    };

    // 2. Index files. The cache is checked against them (and rebuilt if it differs) before
    // the walk, which looks chunks up in it; reading the packs needs only the files.
    let index_files = load_index_files(repo, &mut f)?;
    let summaries = &index_files.summaries;
    stats.index_files = index_files.ids.len() as u64;
    stats.packs = summaries.len() as u64;
    stats.blobs = summaries.values().map(|s| u64::from(s.blobs)).sum();

    // 3. Packs present against packs indexed. Damaged packs are reported after the walk, which
    // skips them and tells which of them the checked snapshots need.
    let present = list_packs(repo, &mut f)?;
    let mut bad_packs: BTreeMap<Id, (&'static str, String)> = BTreeMap::new();
    for (id, s) in summaries {
        match present.get(id) {
            None => {
                bad_packs.insert(
                    *id,
                    (
                        "pack-missing",
                        "the index lists this pack but it is not in the repository".into(),
                    ),
                );
            }
            Some(len) if *len != s.len => {
                bad_packs.insert(
                    *id,
                    (
                        "pack-size",
                        format!(
                            "{len} bytes, but the index says {} (truncated or extended)",
                            s.len
                        ),
                    ),
                );
            }
            Some(_) => {}
        }
    }
    let mut unreferenced: Vec<&Id> = present
        .keys()
        .filter(|id| !summaries.contains_key(id))
        .collect();
    unreferenced.sort();
    for id in unreferenced {
        f.warn(
            "unreferenced-pack",
            Object::Pack(*id).path(),
            "no index file lists this pack (left by an interrupted backup; prune reclaims it)"
                .into(),
        );
    }

    // 3 and 4. Walk the snapshots, and read the data. Without a snapshot filter every pack is a
    // candidate, so the reading runs alongside the walk, keeping both cores busy; with a filter,
    // the walk decides which packs to read and must come first.
    let repo: &Repository = repo;
    let candidates = |walked: Option<&HashSet<Id>>| -> Vec<Id> {
        let mut c: Vec<Id> = summaries
            .keys()
            .filter(|id| present.get(*id).copied() == summaries.get(*id).map(|s| s.len))
            .filter(|id| walked.is_none_or(|w| w.contains(*id)))
            .copied()
            .collect();
        c.sort();
        select(c, opts.read_data)
    };
    // Set when the cache cannot be verified or rebuilt: the check then fails, and the reading
    // alongside stops rather than finishing for nothing.
    let failed = AtomicBool::new(false);
    let walk_all = |f: &mut Findings| -> Result<Walk> {
        verify_cache(repo, &index_files).inspect_err(|_| failed.store(true, Relaxed))?;
        let mut walk = Walk::new(repo, &bad_packs);
        for (_, snap) in &selected {
            walk.tree(&snap.tree, 0, f);
        }
        for record in &wal {
            walk.tree(&record.tree, 0, f);
        }
        walk.look_up_chunks(f);
        Ok(walk)
    };
    let read = |to_read: &[Id]| {
        if to_read.is_empty() {
            return (Vec::new(), 0.0);
        }
        let total: u64 = to_read
            .iter()
            .filter_map(|id| summaries.get(id))
            .map(|s| s.len)
            .sum();
        progress.total(to_read.len() as u64, total);
        let t = Instant::now();
        let verdicts = read_packs(repo, to_read, summaries, &failed, progress);
        (verdicts, t.elapsed().as_secs_f64())
    };
    let (walk, to_read, (verdicts, read_duration)) = if opts.snapshots.is_empty() {
        let to_read = candidates(None);
        let (walk, verdicts) = rayon::join(|| walk_all(&mut f), || read(&to_read));
        (walk?, to_read, verdicts)
    } else {
        let walk = walk_all(&mut f)?;
        let to_read = candidates(Some(&walk.packs));
        let verdicts = read(&to_read);
        (walk, to_read, verdicts)
    };
    stats.manifests = walk.manifests;
    stats.read_duration_s = read_duration;
    // A snapshot filter limits the audit to what those snapshots need.
    for (id, (kind, detail)) in &bad_packs {
        if opts.snapshots.is_empty() || walk.packs.contains(id) {
            f.pack(*id, kind, detail.clone());
        }
    }
    for (id, v) in to_read.iter().zip(verdicts) {
        stats.packs_read += 1;
        stats.blobs_read += v.blobs;
        stats.bytes_read += v.bytes;
        stats.logical_bytes_verified += v.logical;
        stats.packs_read_ids.push(*id);
        for (blob, detail) in v.bad_blobs {
            f.blob_in(
                blob.id,
                Some(*id),
                "blob",
                format!(
                    "{} {} in {}",
                    blob.kind.name(),
                    blob.id,
                    Object::Pack(*id).path()
                ),
                detail,
            );
        }
        for (kind, detail) in v.pack_problems {
            f.pack(*id, kind, detail);
        }
    }

    // 5. Who is affected.
    if !f.blobs.is_empty() || !f.packs.is_empty() {
        attribute(repo, &selected, &mut f);
    }

    stats.duration_s = started.elapsed().as_secs_f64();
    Ok(CheckReport {
        ok: f.errors.is_empty(),
        errors: f.errors,
        warnings: f.warnings,
        stats,
    })
}

/// The packs `--read-data` reads among the candidates.
fn select(candidates: Vec<Id>, read_data: ReadData) -> Vec<Id> {
    match read_data {
        ReadData::No => Vec::new(),
        ReadData::All => candidates,
        ReadData::Subset { n, m } => candidates
            .into_iter()
            .filter(|id| subset_of(id, m) == n - 1)
            .collect(),
        ReadData::Percent(p) => {
            let k = ((candidates.len() as f64) * p / 100.0).ceil() as usize;
            let mut chosen: Vec<Id> = candidates
                .choose_multiple(&mut rand::rng(), k)
                .copied()
                .collect();
            chosen.sort();
            chosen
        }
    }
}

/// Which of `m` parts a pack belongs to.
fn subset_of(id: &Id, m: u32) -> u32 {
    let v = u64::from_le_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
    (v % u64::from(m)) as u32
}

/// What the index files say: a summary of each pack they list, and what a cache built from
/// exactly the readable ones would hold.
struct IndexFiles {
    summaries: HashMap<Id, PackSummary>,
    /// Every index file listed, readable or not.
    ids: Vec<Id>,
    readable: HashSet<Id>,
    expected: Fingerprint,
}

fn load_index_files(repo: &Repository, f: &mut Findings) -> Result<IndexFiles> {
    let objects = repo.objects();
    let listing = objects.list(Kind::Index)?;
    for path in listing.stray {
        f.warn(
            "stray-file",
            path,
            "not a cairn index file name; ignored".into(),
        );
    }
    let mut ids: Vec<Id> = listing.objects.iter().filter_map(Object::id).collect();
    ids.sort();
    let mut summaries: HashMap<Id, PackSummary> = HashMap::new();
    let mut expected = Fingerprint::default();
    let mut readable: HashSet<Id> = HashSet::new();
    for group in ids.chunks(64) {
        for (id, res) in crate::repo::load_index_files(objects, group) {
            match res {
                Ok(packs) => {
                    readable.insert(id);
                    for p in &packs {
                        // The cache holds a pack listed by several index files once.
                        if !summaries.contains_key(&p.id) {
                            expected.add_packs(std::slice::from_ref(p));
                        }
                        let s = PackSummary {
                            len: p.len,
                            blobs: p.blobs.len() as u32,
                            digest: entries_digest(&p.blobs),
                            index_file: id,
                        };
                        match summaries.get(&p.id) {
                            Some(prev)
                                if (prev.len, prev.blobs, prev.digest)
                                    != (s.len, s.blobs, s.digest) =>
                            {
                                f.pack(
                                    p.id,
                                    "pack-header",
                                    format!(
                                        "index files {} and {} describe this pack differently",
                                        prev.index_file.short(),
                                        id.short()
                                    ),
                                );
                            }
                            Some(_) => {}
                            None => {
                                summaries.insert(p.id, s);
                            }
                        }
                    }
                }
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(e) => {
                    f.error("index-file", Object::Index(id).path(), short_error(&e));
                }
            }
        }
    }
    Ok(IndexFiles {
        summaries,
        ids,
        readable,
        expected,
    })
}

/// Makes the local cache hold exactly what the readable index files say: it is used as it is
/// if it holds the same files' entries (by fingerprint), and rebuilt from them otherwise.
fn verify_cache(repo: &Repository, files: &IndexFiles) -> Result<()> {
    let (cached, absorbed) = repo.index_fingerprint()?;
    if cached == files.expected && absorbed == files.readable {
        return Ok(());
    }
    repo.clear_index()?;
    for group in files.ids.chunks(64) {
        let loaded: Vec<(Id, Result<Vec<PackRecord>>)> = group
            .par_iter()
            .filter(|id| files.readable.contains(*id))
            .map(|id| (*id, load_index_file(repo.objects(), id)))
            .collect();
        for (id, res) in loaded {
            repo.absorb_index(&id, &res?)?;
        }
    }
    Ok(())
}

fn short_error(e: &Error) -> String {
    match e {
        Error::Corrupt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

fn list_packs(repo: &Repository, f: &mut Findings) -> Result<HashMap<Id, u64>> {
    let (packs, stray) = repo.list_packs()?;
    for path in stray {
        f.warn(
            "stray-file",
            path,
            "not a cairn pack name or not in its place; ignored".into(),
        );
    }
    Ok(packs)
}

/// Reads the WAL records and reports base backups whose WAL is not all archived (errors: they
/// cannot be restored) and gaps in the archive (warnings: points in time that cannot be
/// reached). Returns the readable records, whose trees the walk then verifies.
fn check_wal(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    f: &mut Findings,
) -> Result<Vec<crate::wal::WalRecord>> {
    let mut names = crate::repo::wal_names(repo)?;
    let mut records = Vec::new();
    let mut gone = HashSet::new();
    for name in &names {
        let path = Object::Wal(name.clone()).path();
        match crate::repo::load_wal_record(repo, name) {
            Ok(Some(r)) => records.push(r),
            // Expired by a forget or delete since the listing (those take no lock).
            Ok(None) => {
                f.warn(
                    "wal-gone",
                    path,
                    "removed while the check ran; not checked".into(),
                );
                gone.insert(name.clone());
            }
            Err(e @ Error::Storage { .. }) if !e.is_damage() => return Err(e),
            Err(e) => {
                f.error("wal-record", path, short_error(&e));
            }
        }
    }
    names.retain(|n| !gone.contains(n));
    let inv = crate::pitr::inventory(snapshots, &names)?;
    for b in &inv.backups {
        // A base backup forgotten since it was read takes the WAL only it needed with it.
        if !b.consistent && !snapshot_gone(repo, &b.id, f)? {
            f.error(
                "wal-missing",
                Object::Snapshot(b.id).path(),
                format!(
                    "PostgreSQL base backup {} needs WAL {} to {}, but the archive is not complete{}; it cannot be restored",
                    b.id.short(),
                    b.pg.start_wal,
                    b.pg.stop_wal,
                    b.wal_until.as_ref().map_or(String::new(), |u| format!(" after {u}"))
                ),
            );
        }
    }
    for t in &inv.timelines {
        for (from, to) in &t.gaps {
            f.warn(
                "wal-gap",
                Object::Wal(from.clone()).path(),
                format!("WAL {from} to {to} of timeline {} is not archived: no point in time in that range can be restored", t.timeline),
            );
        }
    }
    Ok(records)
}

/// True if snapshot `id`, read a moment ago, has been forgotten or deleted since (those take
/// no lock); says so in a warning.
fn snapshot_gone(repo: &Repository, id: &Id, f: &mut Findings) -> Result<bool> {
    let object = Object::Snapshot(*id);
    if repo.objects().size(&object)?.is_some() {
        return Ok(false);
    }
    warn_gone(f, object.path());
    Ok(true)
}

fn warn_gone(f: &mut Findings, path: String) {
    f.warn(
        "snapshot-gone",
        path,
        "removed while the check ran; not checked".into(),
    );
}

fn load_snapshots(repo: &Repository, f: &mut Findings) -> Result<Vec<(Id, Snapshot)>> {
    let mut out = Vec::new();
    let listing = repo.objects().list(Kind::Snapshot)?;
    for path in listing.stray {
        f.warn(
            "stray-file",
            path,
            "not a cairn snapshot name; ignored".into(),
        );
    }
    for id in listing.objects.iter().filter_map(Object::id) {
        let path = Object::Snapshot(id).path();
        match repo.load_snapshot(&id) {
            Ok(s) => out.push((id, s)),
            // Forgotten or deleted since the listing (possible only if our shared lock went
            // stale, or the remover did not lock): not damage.
            Err(Error::SnapshotNotFound(_)) => warn_gone(f, path),
            Err(e @ Error::Storage { .. }) => return Err(e),
            Err(e) => {
                let i = f.error("snapshot", path, short_error(&e));
                f.errors[i].affected.push(Affected {
                    snapshot: id.short(),
                    files: vec!["(the whole snapshot)".into()],
                    more_files: 0,
                });
            }
        }
    }
    crate::repo::sort_by_time(&mut out);
    Ok(out)
}

/// The structural walk: every tree and list verified once, every chunk looked up.
struct Walk<'a> {
    repo: &'a Repository,
    /// Packs missing or of the wrong size: not read, reported later.
    bad_packs: &'a BTreeMap<Id, (&'static str, String)>,
    seen: HashSet<Id>,
    packs: HashSet<Id>,
    manifests: u64,
    /// Chunk references (id, length) waiting to be looked up together.
    chunks: Vec<(Id, u64)>,
}

/// Chunk references looked up in one sorted batch (with the ids and their locations, about
/// 160 MiB at most). The larger the batch, the closer its ids lie in the cache, and the more
/// of them one pass of an iterator finds by stepping rather than searching: the chunks of a
/// repository with up to a million chunk references are looked up in a single pass.
const LOOKUP_BATCH: usize = 1 << 20;

impl<'a> Walk<'a> {
    fn new(repo: &'a Repository, bad_packs: &'a BTreeMap<Id, (&'static str, String)>) -> Self {
        Walk {
            repo,
            bad_packs,
            seen: HashSet::new(),
            packs: HashSet::new(),
            manifests: 0,
            chunks: Vec::new(),
        }
    }

    /// Looks up the waiting chunk references: each must be indexed with the length the chunk
    /// list gives.
    fn look_up_chunks(&mut self, f: &mut Findings) {
        let mut refs = std::mem::take(&mut self.chunks);
        // In key order the lookups touch neighbouring blocks of the cache.
        refs.sort_unstable();
        refs.dedup();
        let ids: Vec<Id> = refs.iter().map(|(id, _)| *id).collect();
        match self.repo.blob_locations(BlobKind::Data, &ids) {
            Ok(found) => {
                for ((id, len), loc) in refs.iter().zip(found) {
                    match loc {
                        Some(loc) if u64::from(loc.entry.raw_len) != *len => f.blob(
                            *id,
                            "chunk",
                            format!("chunk {id}"),
                            format!(
                                "indexed as {} bytes, but a chunk list says {len}",
                                loc.entry.raw_len
                            ),
                        ),
                        Some(loc) => {
                            self.packs.insert(loc.pack);
                        }
                        None => f.blob(
                            *id,
                            "chunk-missing",
                            format!("chunk {id}"),
                            "referenced but not in any index file".into(),
                        ),
                    }
                }
            }
            Err(e) => {
                for (id, _) in &refs {
                    f.blob(*id, "chunk-missing", format!("chunk {id}"), short_error(&e));
                }
            }
        }
        refs.clear();
        self.chunks = refs;
    }

    /// Loads a tree or list blob, recording damage; `None` if it cannot be read.
    fn load(&mut self, kind: BlobKind, id: &Id, f: &mut Findings) -> Option<Vec<u8>> {
        let what = if kind == BlobKind::Tree {
            "tree"
        } else {
            "list"
        };
        let loc = match self.repo.find_blob(kind, id) {
            Ok(Some(loc)) => {
                self.packs.insert(loc.pack);
                if self.bad_packs.contains_key(&loc.pack) {
                    return None;
                }
                loc
            }
            Ok(None) => {
                f.blob(
                    *id,
                    what,
                    format!("{what} {id}"),
                    "referenced but not in any index file".into(),
                );
                return None;
            }
            Err(e) => {
                f.blob(*id, what, format!("{what} {id}"), short_error(&e));
                return None;
            }
        };
        match self.repo.load_blob_at(kind, &loc) {
            Ok(b) => Some(b),
            Err(e) => {
                f.blob(*id, what, format!("{what} {id}"), short_error(&e));
                None
            }
        }
    }

    fn tree(&mut self, id: &Id, depth: usize, f: &mut Findings) {
        if !self.seen.insert(*id) {
            return;
        }
        if depth > MAX_TREE_DEPTH {
            f.blob(
                *id,
                "tree",
                format!("tree {id}"),
                format!("nested deeper than {MAX_TREE_DEPTH} directories"),
            );
            return;
        }
        self.manifests += 1;
        let Some(bytes) = self.load(BlobKind::Tree, id, f) else {
            return;
        };
        let tree = match Tree::decode(&bytes) {
            Ok(t) => t,
            Err(m) => {
                f.blob(*id, "tree", format!("tree {id}"), m.0);
                return;
            }
        };
        for node in &tree.nodes {
            match &node.kind {
                NodeKind::Dir(sub) => self.tree(sub, depth + 1, f),
                NodeKind::File(content) => self.content(content, f),
                NodeKind::Symlink(_) => {}
            }
        }
    }

    fn content(&mut self, c: &Content, f: &mut Findings) {
        if c.depth == 0 {
            self.chunks.extend(c.refs.iter().map(|r| (r.id, r.len)));
            if self.chunks.len() >= LOOKUP_BATCH {
                self.look_up_chunks(f);
            }
            return;
        }
        for r in &c.refs {
            if !self.seen.insert(r.id) {
                continue;
            }
            self.manifests += 1;
            let Some(bytes) = self.load(BlobKind::List, &r.id, f) else {
                continue;
            };
            match decode_list(&bytes) {
                Ok(sub) if sub.depth + 1 == c.depth && sub.len() == r.len => self.content(&sub, f),
                Ok(_) => f.blob(
                    r.id,
                    "list",
                    format!("list {}", r.id),
                    "its depth or length does not match the reference to it".into(),
                ),
                Err(m) => f.blob(r.id, "list", format!("list {}", r.id), m.0),
            }
        }
    }
}

/// What reading one pack found.
#[derive(Debug, Default)]
struct PackVerdict {
    bytes: u64,
    logical: u64,
    blobs: u64,
    bad_blobs: Vec<(BlobEntry, String)>,
    pack_problems: Vec<(&'static str, String)>,
}

fn read_packs(
    repo: &Repository,
    packs: &[Id],
    summaries: &HashMap<Id, PackSummary>,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Vec<PackVerdict> {
    // Index files are shared by up to 16 packs; decode each once.
    let index_files: quick_cache::sync::Cache<Id, Arc<Vec<PackRecord>>> =
        quick_cache::sync::Cache::new(64);
    repo.objects().with_parallel_reads(|| {
        packs
            .par_iter()
            .map(|id| {
                if stop.load(Relaxed) {
                    return PackVerdict::default();
                }
                let v = match summaries.get(id) {
                    Some(s) => verify_pack(repo, id, s, &index_files, progress),
                    None => PackVerdict::default(),
                };
                progress.file_done();
                v
            })
            .collect()
    })
}

fn verify_pack(
    repo: &Repository,
    id: &Id,
    summary: &PackSummary,
    index_files: &quick_cache::sync::Cache<Id, Arc<Vec<PackRecord>>>,
    progress: &dyn Progress,
) -> PackVerdict {
    let mut v = PackVerdict::default();
    let records = match index_files.get_or_insert_with(&summary.index_file, || {
        load_index_file(repo.objects(), &summary.index_file).map(Arc::new)
    }) {
        Ok(r) => r,
        Err(e) => {
            v.pack_problems.push((
                "pack-header",
                format!("its index file cannot be read again: {e}"),
            ));
            return v;
        }
    };
    let Some(record) = records.iter().find(|p| p.id == *id) else {
        v.pack_problems
            .push(("pack-header", "its index file no longer lists it".into()));
        return v;
    };
    let mut entries = record.blobs.clone();
    entries.sort_by_key(|e| e.offset);
    // Writers lay blobs end to end from the preamble on; anything else in an index is damage,
    // and the segment arithmetic below relies on it.
    let mut expect = PREAMBLE_LEN;
    let mut frame_at = None;
    for e in &entries {
        // The blobs of a frame share its offset (decoding checked their places in it).
        if e.frame.is_some() && frame_at == Some(e.offset) {
            continue;
        }
        frame_at = Some(e.offset);
        if e.offset != expect {
            v.pack_problems.push((
                "pack-header",
                format!(
                    "the index places blob {} at {}, where {expect} was expected",
                    e.id.short(),
                    e.offset
                ),
            ));
            return v;
        }
        expect = e.end();
    }

    let len = summary.len;
    let mut hasher = blake3::Hasher::new();
    // Read the pack front to back in segments that end on blob boundaries, so that every
    // segment verifies on its own, without copying blobs across segments.
    let mut start = 0u64;
    let mut i = 0usize;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len()
            && (entries[j].offset == entries[j - 1].offset || entries[j].end() - start <= SEGMENT)
        {
            j += 1;
        }
        let end = entries[j - 1].end();
        let seg = match repo.objects().read_segment(id, start..end) {
            Ok(seg) => seg,
            Err(e) => {
                v.pack_problems.push((
                    "pack-size",
                    format!("cannot be read to its end: {}", short_error(&e)),
                ));
                return v;
            }
        };
        let bytes = seg.bytes();
        hasher.update(bytes);
        v.bytes += bytes.len() as u64;
        progress.bytes(bytes.len() as u64);
        if start == 0
            && let Err(m) = check_preamble(
                &bytes[..PREAMBLE_LEN.min(bytes.len() as u64) as usize],
                repo.objects().sealing().pack_version(),
            )
        {
            v.pack_problems.push(("pack-header", m.0));
        }
        let results = seg.verify_all(&entries[i..j]);
        for (e, r) in entries[i..j].iter().zip(results) {
            match r.map_err(|err| short_error(&err)) {
                Ok(n) => v.logical += u64::from(n),
                Err(detail) => v.bad_blobs.push((*e, detail)),
            }
            v.blobs += 1;
        }
        start = end;
        i = j;
    }
    // What follows the last blob is the directory and the trailer; they must agree with the
    // index.
    let tail = match repo.objects().read_pack_range(id, start..len) {
        Ok(t) => t,
        Err(e) => {
            v.pack_problems.push(("pack-size", short_error(&e)));
            return v;
        }
    };
    hasher.update(&tail);
    v.bytes += tail.len() as u64;
    progress.bytes(tail.len() as u64);
    let tail_ok = (|| {
        if (tail.len() as u64) < TRAILER_LEN {
            return Err("too short to hold a directory".to_string());
        }
        let t = tail.len() - TRAILER_LEN as usize;
        let dir_len = decode_trailer(&tail[t..], len).map_err(|m| m.0)?;
        let dir_start = len - TRAILER_LEN - u64::from(dir_len);
        if dir_start != start {
            return Err(format!(
                "its directory starts at {dir_start}, but its last blob ends at {start}"
            ));
        }
        let dir = repo
            .objects()
            .sealing()
            .open_directory(&tail[..t], dir_start)
            .map_err(|m| m.0)?;
        if entries_digest(&dir) != summary.digest || dir.len() as u32 != summary.blobs {
            return Err("its directory disagrees with the index".to_string());
        }
        Ok(())
    })();
    if let Err(detail) = tail_ok {
        v.pack_problems.push(("pack-header", detail));
    }
    if Id(*hasher.finalize().as_bytes()) != *id
        && v.pack_problems.is_empty()
        && v.bad_blobs.is_empty()
    {
        v.pack_problems.push((
            "pack-contents",
            "its contents do not match its name (renamed, or changed outside the blobs)".into(),
        ));
    }
    v
}

/// Names the snapshots and files that reach damaged blobs or packs.
fn attribute(repo: &Repository, snapshots: &[(Id, Snapshot)], f: &mut Findings) {
    // problem index → snapshot short id → files
    let mut hits: BTreeMap<usize, BTreeMap<String, (Vec<String>, u64)>> = BTreeMap::new();
    let mut a = Attribution {
        repo,
        f: &*f,
        memo: HashMap::new(),
    };
    for (id, snap) in snapshots {
        let found = a.tree(&snap.tree, 0);
        for (problem, (paths, more)) in &found.0 {
            let entry = hits
                .entry(*problem)
                .or_default()
                .entry(id.short())
                .or_default();
            // A tree's own path is "" within it: the root, "/", here.
            entry.0 = paths
                .iter()
                .map(|p| if p.is_empty() { "/".into() } else { p.clone() })
                .collect();
            entry.1 = *more;
        }
    }
    for (problem, per_snap) in hits {
        f.errors[problem].affected = per_snap
            .into_iter()
            .map(|(snapshot, (files, more))| Affected {
                snapshot,
                files,
                more_files: more,
            })
            .collect();
    }
}

/// The problems a tree reaches, each with the first [`MAX_FILES_NAMED`] paths that reach it
/// (relative to the tree; "" is the tree itself, a directory ends in `/`) and how many more.
#[derive(Debug, Default)]
struct Found(BTreeMap<usize, (Vec<String>, u64)>);

impl Found {
    fn add(&mut self, problem: usize, path: String) {
        let entry = self.0.entry(problem).or_default();
        if entry.0.last() == Some(&path) {
            return;
        }
        if entry.0.len() < MAX_FILES_NAMED {
            entry.0.push(path);
        } else {
            entry.1 = entry.1.saturating_add(1);
        }
    }

    /// Adds what the subtree `name` reaches. (Counts saturate: a hostile repository can name
    /// a file by more than 2^64 paths.)
    fn add_dir(&mut self, name: &str, sub: &Found) {
        for (problem, (paths, more)) in &sub.0 {
            for p in paths {
                self.add(*problem, format!("{name}/{p}"));
            }
            let entry = self.0.entry(*problem).or_default();
            entry.1 = entry.1.saturating_add(*more);
        }
    }
}

struct Attribution<'a> {
    repo: &'a Repository,
    f: &'a Findings,
    /// What each tree reaches, walked once: snapshots share most of their trees, and a tree
    /// may be reached by many paths (identical directories; or, in a hostile repository, a
    /// chain of trees each naming the next twice, 2^depth paths).
    memo: HashMap<Id, Rc<Found>>,
}

impl Attribution<'_> {
    /// The problems a blob reaches: its own, and its pack's.
    fn problems(&self, kind: BlobKind, id: &Id) -> Vec<usize> {
        let used = self.repo.find_blob(kind, id).ok().flatten().map(|l| l.pack);
        let mut out: Vec<usize> = self
            .f
            .blobs
            .get(id)
            .into_iter()
            .flatten()
            .filter(|(pack, _)| pack.is_none() || *pack == used)
            .map(|(_, i)| *i)
            .collect();
        if let Some(p) = used.and_then(|pack| self.f.packs.get(&pack)) {
            out.extend(p);
        }
        out
    }

    /// What the tree `id`, `depth` levels below a snapshot's root, reaches. Below the deepest
    /// tree the walk reads, nothing: it has reported the nesting as damage already.
    fn tree(&mut self, id: &Id, depth: usize) -> Rc<Found> {
        if let Some(found) = self.memo.get(id) {
            return found.clone();
        }
        let mut found = Found::default();
        for p in self.problems(BlobKind::Tree, id) {
            found.add(p, String::new());
        }
        // A tree in a pack with a problem may still be readable, and lead to other damage.
        if depth <= MAX_TREE_DEPTH
            && let Ok(tree) = self.repo.load_tree(id)
        {
            for node in &tree.nodes {
                let name = String::from_utf8_lossy(&node.name);
                match &node.kind {
                    NodeKind::Dir(sub) => {
                        let sub = self.tree(sub, depth + 1);
                        found.add_dir(&name, &sub);
                    }
                    NodeKind::File(c) => {
                        let mut problems = Vec::new();
                        self.content(c, &mut problems);
                        problems.sort_unstable();
                        problems.dedup();
                        for p in problems {
                            found.add(p, name.clone().into_owned());
                        }
                    }
                    NodeKind::Symlink(_) => {}
                }
            }
        }
        let found = Rc::new(found);
        self.memo.insert(*id, found.clone());
        found
    }

    fn content(&self, c: &Content, found: &mut Vec<usize>) {
        let kind = if c.depth == 0 {
            BlobKind::Data
        } else {
            BlobKind::List
        };
        for r in &c.refs {
            let p = self.problems(kind, &r.id);
            if !p.is_empty() {
                found.extend(p);
                continue;
            }
            // A list one level down, as the format requires: a list claiming any other depth
            // is damage the walk reports, and following it could go on without end.
            if c.depth > 0
                && let Ok(bytes) = self.repo.load_blob(BlobKind::List, &r.id)
                && let Ok(sub) = decode_list(&bytes)
                && sub.depth.checked_add(1) == Some(c.depth)
            {
                self.content(&sub, found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_partition() {
        assert_eq!(
            "2/7".parse::<ReadData>().unwrap(),
            ReadData::Subset { n: 2, m: 7 }
        );
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Percent(10.0));
        for bad in ["0/3", "4/3", "x", "0%", "101%", "1/0"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
        let ids: Vec<Id> = (0..300u32).map(|i| Id::of(&i.to_le_bytes())).collect();
        let mut counts = [0; 3];
        for id in &ids {
            counts[subset_of(id, 3) as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<i32>(), 300);
        assert!(counts.iter().all(|c| *c > 60), "{counts:?}");
    }
}
