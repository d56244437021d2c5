//! Snapshot objects: the last thing a backup writes, naming the root tree and describing the run.
//!
//! Stored at `snapshots/<id>` as compact JSON, where `<id>` is the BLAKE3 digest of the bytes
//! (`format-spec/snapshot.md`). A snapshot is written only after everything it references is
//! stored and indexed, so a snapshot that exists is complete.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// Snapshot format version written and read by this build.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// When the backup started (RFC 3339, UTC).
    pub time: String,
    /// When it finished.
    pub time_end: String,
    /// Host it ran on.
    pub hostname: String,
    /// User it ran as.
    pub username: String,
    /// The source paths as given, made absolute; for a stream, the name given to it.
    pub paths: Vec<String>,
    /// True if the snapshot holds one stream read from standard input.
    #[serde(default)]
    pub stdin: bool,
    /// The name given with `--name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags given with `--tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The root tree.
    pub tree: Id,
    /// The snapshot whose unchanged files were reused, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// What the backup did.
    pub summary: Summary,
    /// For a PostgreSQL base backup: where it sits in the WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg: Option<PgInfo>,
    /// The backed-up directory's own mode, owner and mtime, when the snapshot's root is one
    /// directory (absent for several sources, a file, a stream, and in snapshots written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMeta>,
    /// True if some entries could not be read and are missing (`summary.unreadable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Whether `forget` must keep this snapshot whatever the policy (`backup --keep-forever`).
    /// Absent in snapshots written before names became subject to retention: a named one of
    /// those is kept, as its writer promised (see [`Snapshot::kept_forever`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_forever: Option<bool>,
}

/// Mode, owner and modification time of a snapshot's root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_ns: u32,
}

/// Where a PostgreSQL base backup sits in the write-ahead log: replaying the WAL from
/// `start_lsn` to at least `stop_lsn` on `timeline` makes it consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgInfo {
    /// The server's timeline when the backup started.
    pub timeline: u32,
    /// The backup's start LSN, as PostgreSQL prints it (`0/2000028`).
    pub start_lsn: String,
    /// The backup's stop LSN.
    pub stop_lsn: String,
    /// The WAL segment file holding the start LSN.
    pub start_wal: String,
    /// The WAL segment file holding the stop LSN.
    pub stop_wal: String,
    /// Bytes of a WAL segment on this server.
    pub wal_segment_size: u64,
    /// The cluster's system identifier (from `pg_control_system()`).
    pub system_identifier: String,
    /// `server_version_num`.
    pub server_version: u32,
}

/// Figures recorded by the backup that made a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot (the root included).
    pub dirs: u64,
    /// Symbolic links in the snapshot.
    pub symlinks: u64,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose contents were read again.
    pub files_changed: u64,
    /// Files reused from the parent without being read.
    pub files_unchanged: u64,
    /// Sum of the sizes of the files in the snapshot.
    pub logical_bytes: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes newly written to the repository: packs, index files and this snapshot.
    pub bytes_added: u64,
    /// Chunks newly stored.
    pub chunks_added: u64,
    /// Tree and list blobs newly stored.
    pub metadata_blobs_added: u64,
    /// Raw bytes of the tree and list blobs newly stored.
    pub metadata_bytes_added: u64,
    /// Entries skipped (sockets, pipes, devices, entries that vanished), with the reason.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Files that changed while they were being read.
    #[serde(default)]
    pub changed_during_backup: Vec<String>,
    /// Files and directories that could not be read, and why: missing from the snapshot,
    /// which is then `partial`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Seconds the backup took.
    pub duration_s: f64,
}

/// Which snapshots `latest` and names choose among, and which `list`, `forget` and `copy`
/// consider: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Taken on one of these hosts.
    pub hosts: Vec<String>,
    /// Of all these source paths (absolute, or a stream's name).
    pub paths: Vec<String>,
    /// Carrying all these tags.
    pub tags: Vec<String>,
}

impl SnapshotFilter {
    /// True if it lets every snapshot through.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.paths.is_empty() && self.tags.is_empty()
    }

    /// True if `s` meets every condition.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && self.paths.iter().all(|p| {
                // As given (a stream's name, an absolute path), or made absolute.
                let absolute = std::path::absolute(p).map(|a| a.display().to_string());
                s.paths
                    .iter()
                    .any(|q| q == p || absolute.as_ref().is_ok_and(|a| a == q))
            })
            && self.tags.iter().all(|t| s.tags.contains(t))
    }

    /// The conditions as command-line flags, for messages.
    pub fn describe(&self) -> String {
        let flags = [
            ("--host", &self.hosts),
            ("--path", &self.paths),
            ("--tag", &self.tags),
        ];
        flags
            .iter()
            .flat_map(|(flag, values)| values.iter().map(move |v| format!(" {flag} {v}")))
            .collect()
    }
}

impl Snapshot {
    /// Encodes the snapshot as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes a stored snapshot, and checks what a reader relies on: its name and tags are
    /// labels (`SNAPSHOT:PATH` must stay unambiguous), its times are times.
    pub fn decode(bytes: &[u8], id: &Id) -> Result<Snapshot> {
        let what = format!("snapshot {}", id.short());
        let s: Snapshot = crate::wire::decode_versioned_json(
            bytes,
            &what,
            "a snapshot object",
            SNAPSHOT_VERSION,
        )?;
        let bad_label =
            |v: &String| v.is_empty() || v.contains(':') || v.chars().any(char::is_control);
        if let Some(l) = s.name.iter().chain(&s.tags).find(|v| bad_label(v)) {
            return Err(Error::corrupt(
                what,
                format!("name or tag {l:?} is empty or holds ':' or a control character"),
            ));
        }
        if s.start().is_none() || s.end().is_none() {
            return Err(Error::corrupt(what, "its times are not RFC 3339 times"));
        }
        if let Some(r) = &s.root
            && (r.mode > 0o7777 || r.mtime_ns >= 1_000_000_000)
        {
            return Err(Error::corrupt(
                what,
                "its root's mode or mtime is out of range",
            ));
        }
        Ok(s)
    }

    /// True if `forget` keeps this snapshot whatever the policy: written with
    /// `--keep-forever`, or named by a cairn that promised to keep named snapshots forever.
    pub fn kept_forever(&self) -> bool {
        self.keep_forever.unwrap_or(self.name.is_some())
    }

    /// Start time as a timestamp.
    pub fn start(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }

    /// End time as a timestamp.
    pub fn end(&self) -> Option<jiff::Timestamp> {
        self.time_end.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_times_and_ids_are_checked_on_read() {
        let mut s: Snapshot =
            serde_json::from_str(include_str!("../../tests/fixtures/snapshot-pg-v1.json")).unwrap();
        let good = s.encode();
        assert!(Snapshot::decode(&good, &Id::of(&good)).is_ok());
        s.tags.push("a:b".into());
        let bytes = s.encode();
        assert!(Snapshot::decode(&bytes, &Id::of(&bytes)).is_err());
        s.tags.pop();
        s.time = "yesterday".into();
        let bytes = s.encode();
        assert!(Snapshot::decode(&bytes, &Id::of(&bytes)).is_err());
        let upper = String::from_utf8(good.clone())
            .unwrap()
            .replace(&s.tree.to_hex(), &s.tree.to_hex().to_uppercase());
        if upper.as_bytes() != good.as_slice() {
            assert!(Snapshot::decode(upper.as_bytes(), &Id::of(upper.as_bytes())).is_err());
        }
    }

    #[test]
    fn round_trip() {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            time: "2026-01-02T03:04:05.123456789Z".into(),
            time_end: "2026-01-02T03:04:06Z".into(),
            hostname: "db1".into(),
            username: "postgres".into(),
            paths: vec!["/var/lib/postgresql".into()],
            stdin: false,
            name: Some("nightly".into()),
            tags: vec!["pg".into()],
            tree: Id::of(b"tree"),
            parent: None,
            summary: Summary {
                files: 3,
                duration_s: 1.5,
                ..Summary::default()
            },
            pg: Some(PgInfo {
                timeline: 1,
                start_lsn: "0/2000028".into(),
                stop_lsn: "0/2000100".into(),
                start_wal: "000000010000000000000002".into(),
                stop_wal: "000000010000000000000002".into(),
                wal_segment_size: 16 << 20,
                system_identifier: "7312345678901234567".into(),
                server_version: 150004,
            }),
            root: Some(RootMeta {
                mode: 0o700,
                uid: 26,
                gid: 26,
                mtime: 1_767_322_245,
                mtime_ns: 5,
            }),
            partial: false,
            keep_forever: Some(false),
        };
        let bytes = s.encode();
        let id = Id::of(&bytes);
        assert_eq!(Snapshot::decode(&bytes, &id).unwrap(), s);
        assert!(Snapshot::decode(b"[]", &id).is_err());
    }

    #[test]
    fn the_frozen_snapshot_with_root_and_partial_still_reads() {
        let bytes = include_bytes!("../../tests/fixtures/snapshot-root-v1.json");
        let s = Snapshot::decode(bytes, &Id::of(bytes)).unwrap();
        assert_eq!(
            s.root.map(|r| (r.mode, r.uid, r.mtime_ns)),
            Some((0o700, 26, 5))
        );
        assert!(s.partial);
        assert_eq!(s.summary.unreadable.len(), 1);
        // Named, but written with the field: the policy decides.
        assert!(!s.kept_forever());
        // The older fixture has a name-less snapshot without the field: not kept forever.
        let old = include_bytes!("../../tests/fixtures/snapshot-pg-v1.json");
        let old = Snapshot::decode(old, &Id::of(old)).unwrap();
        assert!(old.keep_forever.is_none() && !old.kept_forever());
    }

    #[test]
    fn the_frozen_postgresql_snapshot_still_reads() {
        let bytes = include_bytes!("../../tests/fixtures/snapshot-pg-v1.json");
        let s = Snapshot::decode(bytes, &Id::of(bytes)).unwrap();
        let pg = s.pg.unwrap();
        assert_eq!(pg.timeline, 1);
        assert_eq!(pg.start_wal, "000000010000000000000002");
        assert_eq!(s.tags, vec!["pg-base".to_string()]);
    }
}
