//! Point-in-time recovery coverage: which points in time the base backups and the archived WAL
//! of a repository can restore, which WAL no base backup needs any more, and which a chosen
//! set of base backups may replay. Pure functions of the snapshots and the archived WAL
//! names; used by `pg`, `check` and `copy`.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::snapshot::{PgInfo, Snapshot};
use crate::wal::{parse_segment, segment_file};

/// A base backup and the WAL archived after it.
#[derive(Debug, Clone, Serialize)]
pub struct PgBaseBackup {
    /// The snapshot.
    pub id: Id,
    /// When the backup ended.
    pub time_end: String,
    /// Where it sits in the WAL.
    pub pg: PgInfo,
    /// The last WAL segment of the unbroken run archived from its start, if any.
    pub wal_until: Option<String>,
    /// Whether every segment from its start to its stop is archived (it can be restored).
    pub consistent: bool,
}

/// The WAL archived on one timeline.
#[derive(Debug, Clone, Serialize)]
pub struct PgTimeline {
    /// The timeline.
    pub timeline: u32,
    /// First and last archived segment.
    pub first: String,
    /// Last archived segment.
    pub last: String,
    /// Segments archived.
    pub segments: u64,
    /// Missing runs of segments between the first and the last, as (first missing, last
    /// missing).
    pub gaps: Vec<(String, String)>,
}

/// Base backups and the WAL archive: which points in time can be restored.
#[derive(Debug, Clone, Serialize)]
pub struct PgInventory {
    /// Base backups, oldest first.
    pub backups: Vec<PgBaseBackup>,
    /// Archived WAL by timeline.
    pub timelines: Vec<PgTimeline>,
    /// Other archived files (timeline history, backup history).
    pub other_files: Vec<String>,
}

/// Base backups and the archived WAL after each, from the snapshots and the archived WAL
/// names.
pub(crate) fn inventory(snaps: &[(Id, Snapshot)], names: &[String]) -> Result<PgInventory> {
    let segment_size = snaps
        .iter()
        .find_map(|(_, s)| s.pg.as_ref().map(|p| p.wal_segment_size))
        .unwrap_or(16 << 20);
    let mut by_tli: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut other_files = Vec::new();
    for n in names {
        match parse_segment(n, segment_size) {
            Some((tli, seg)) => by_tli.entry(tli).or_default().push(seg),
            None => other_files.push(n.clone()),
        }
    }
    let name_of = |tli: u32, seg: u64| segment_file(tli, seg, segment_size);
    let mut timelines = Vec::new();
    for (tli, segs) in &mut by_tli {
        segs.sort_unstable();
        segs.dedup();
        let mut gaps = Vec::new();
        for w in segs.windows(2) {
            if w[1] > w[0] + 1 {
                gaps.push((name_of(*tli, w[0] + 1), name_of(*tli, w[1] - 1)));
            }
        }
        timelines.push(PgTimeline {
            timeline: *tli,
            first: name_of(*tli, segs[0]),
            last: name_of(*tli, segs[segs.len() - 1]),
            segments: segs.len() as u64,
            gaps,
        });
    }
    let have: HashSet<(u32, u64)> = by_tli
        .iter()
        .flat_map(|(t, s)| s.iter().map(move |seg| (*t, *seg)))
        .collect();
    let mut backups = Vec::new();
    for (id, s) in snaps {
        let Some(pg) = &s.pg else { continue };
        let start = parse_segment(&pg.start_wal, pg.wal_segment_size);
        let stop = parse_segment(&pg.stop_wal, pg.wal_segment_size);
        let (mut until, mut consistent) = (None, false);
        if let (Some((tli, first)), Some((_, last))) = (start, stop) {
            let mut seg = first;
            while have.contains(&(tli, seg)) {
                until = Some(name_of(tli, seg));
                seg += 1;
            }
            consistent = seg > last;
        }
        backups.push(PgBaseBackup {
            id: *id,
            time_end: s.time_end.clone(),
            pg: pg.clone(),
            wal_until: until,
            consistent,
        });
    }
    Ok(PgInventory {
        backups,
        timelines,
        other_files,
    })
}

/// The WAL files no remaining base backup needs: segments before the start of the oldest
/// base backup (on any timeline), and backup history files of segments before it. Nothing
/// when no base backup remains (an archive without a base cannot be judged).
pub(crate) fn expendable_wal(snaps: &[(Id, Snapshot)], names: &[String]) -> Vec<String> {
    let Some(oldest) = snaps
        .iter()
        .filter_map(|(_, s)| s.pg.as_ref())
        .filter_map(|pg| {
            parse_segment(&pg.start_wal, pg.wal_segment_size)
                .map(|(_, seg)| (seg, pg.wal_segment_size))
        })
        .min()
    else {
        return Vec::new();
    };
    let (first_needed, size) = oldest;
    names
        .iter()
        .filter(|n| {
            let seg_part = n.split('.').next().unwrap_or("");
            !n.ends_with(".history")
                && parse_segment(seg_part, size).is_some_and(|(_, seg)| seg < first_needed)
        })
        .cloned()
        .collect()
}

/// The archived WAL files that the base backups among `snaps` may replay: segments from the
/// earliest one's start on (any timeline), and every history file. None without a base backup.
pub(crate) fn wal_needed(snaps: &[(Id, Snapshot)], names: &[String]) -> Vec<String> {
    if !snaps.iter().any(|(_, s)| s.pg.is_some()) {
        return Vec::new();
    }
    let before: HashSet<String> = expendable_wal(snaps, names).into_iter().collect();
    names
        .iter()
        .filter(|n| !before.contains(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_finds_gaps_and_restorable_ranges() {
        let pg = PgInfo {
            timeline: 1,
            start_lsn: "0/3000028".into(),
            stop_lsn: "0/4000100".into(),
            start_wal: "000000010000000000000003".into(),
            stop_wal: "000000010000000000000004".into(),
            wal_segment_size: 16 << 20,
            system_identifier: "1".into(),
            server_version: 150000,
        };
        let snap = Snapshot {
            version: 1,
            time: "2026-01-01T00:00:00Z".into(),
            time_end: "2026-01-01T00:01:00Z".into(),
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/pg".into()],
            stdin: false,
            name: None,
            tags: vec!["pg-base".into()],
            tree: Id::of(b"t"),
            parent: None,
            summary: Default::default(),
            pg: Some(pg),
            root: None,
            partial: false,
            keep_forever: None,
        };
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000007",
            "00000002.history",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let snaps = vec![(Id::of(b"s"), snap)];
        let inv = inventory(&snaps, &names).unwrap();
        assert_eq!(inv.timelines.len(), 1);
        assert_eq!(
            inv.timelines[0].gaps,
            vec![
                (
                    "000000010000000000000002".to_string(),
                    "000000010000000000000002".to_string()
                ),
                (
                    "000000010000000000000006".to_string(),
                    "000000010000000000000006".to_string()
                ),
            ]
        );
        assert!(inv.backups[0].consistent);
        assert_eq!(
            inv.backups[0].wal_until.as_deref(),
            Some("000000010000000000000005")
        );
        assert_eq!(inv.other_files, vec!["00000002.history".to_string()]);
        assert_eq!(
            expendable_wal(&snaps, &names),
            vec!["000000010000000000000001".to_string()]
        );
    }
}
