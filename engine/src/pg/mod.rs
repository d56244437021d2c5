//! PostgreSQL: consistent base backups of a running server, a WAL archive kept in the same
//! repository (compressed and sealed like everything else), and point-in-time restores.
//!
//! ```text
//! pg backup:   connect -> checks -> shared repository lock (so that waiting for a prune does
//!              not hold the server in backup mode) -> pg_backup_start(label, fast) -> back up
//!              the data directory (without what PostgreSQL documents as safe to skip) ->
//!              pg_backup_stop() -> its backup_label and tablespace_map go into the snapshot's
//!              root -> snapshot, tagged pg-base, with start/stop LSN and timeline
//!              (format-spec/snapshot.md)
//! archive-wal: WAL files -> chunks in packs -> index -> wal/<name> records (format-spec/wal.md),
//!              each written once: the same name with other contents is refused (`archive`);
//!              with a spool, one call stores every segment the server has ready and leaves a
//!              mark for each, so that the calls for the next ones return at once (`spool`)
//! fetch-wal:   wal/<name> -> its tree -> the file, written beside %p and renamed into place;
//!              the next segments fetched ahead into a spool meanwhile (`prefetch`)
//! pg restore:  newest base backup that ends before the target -> restore -> recovery.signal
//!              and recovery settings (restore_command calls fetch-wal)
//! ```
//!
//! Files: `mod.rs` base backups and restores, `archive.rs` storing and fetching WAL files,
//! `spool.rs` the marks that let one `archive-wal` call store a batch, `prefetch.rs` fetching
//! the next segments ahead of recovery.
//!
//! The backup's session stays open from start to stop: if cairn dies, the server sees the
//! connection close and ends the backup itself, and no snapshot was written.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backup::{Additions, BackupOptions, BackupResult, backup_with};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock_file::LockKind;
use crate::pitr::{PgInventory, expendable_wal, inventory};
use crate::progress::Progress;
use crate::repo::{Repository, delete_wal_record, wal_names};
use crate::restore::{RestoreOptions, restore};
use crate::snapshot::{PgInfo, Snapshot};
pub use crate::wal::{parse_lsn, segment_name};

mod archive;
mod local;
mod prefetch;
mod spool;

pub use archive::{Archived, WalFile, archive_wal, archive_wal_batch, fetch_wal};
pub use prefetch::{PrefetchOptions, prefetch_wal, prefetch_wanted, take_prefetched};
pub use spool::{SpoolOptions, archive_wal_spooled};

/// The tag of PostgreSQL base backups.
pub const PG_BASE_TAG: &str = "pg-base";

/// Paths of a data directory a base backup leaves out (relative to it), as PostgreSQL's
/// documentation of low-level backups lists them: WAL (archived separately), runtime state
/// rebuilt at start, and temporary files. The directories themselves are kept, empty, but
/// for `pg_wal`.
pub const PG_EXCLUDES: &[&str] = &[
    // Left out whole, not only its contents: it may be a symlink to a WAL directory elsewhere
    // (`initdb -X`), which a restore must not point at. The restore makes a new, empty one.
    "pg_wal",
    "pg_replslot/*",
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_serial/*",
    "pg_snapshots/*",
    "pg_stat_tmp/*",
    "pg_subtrans/*",
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "recovery.signal",
    "standby.signal",
    "**/pgsql_tmp*",
    "**/pg_internal.init",
];

/// How to reach the server: the standard libpq variables fill what is not given.
#[derive(Debug, Clone, Default)]
pub struct PgConnect {
    /// Host name, address, or socket directory (`PGHOST`; default `/var/run/postgresql`).
    pub host: Option<String>,
    /// Port (`PGPORT`; default 5432).
    pub port: Option<u16>,
    /// User (`PGUSER`; default the operating-system user).
    pub user: Option<String>,
    /// Database (`PGDATABASE`; default `postgres`).
    pub dbname: Option<String>,
}

impl PgConnect {
    fn config(&self) -> Result<postgres::Config> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut c = postgres::Config::new();
        let host = self
            .host
            .clone()
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| "/var/run/postgresql".into());
        c.host(&host);
        let port = match (self.port, env("PGPORT")) {
            (Some(p), _) => p,
            (None, Some(p)) => p
                .parse()
                .map_err(|_| Error::InvalidInput(format!("PGPORT {p:?} is not a port")))?,
            (None, None) => 5432,
        };
        c.port(port);
        let user = self
            .user
            .clone()
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        c.user(&user);
        c.dbname(
            &self
                .dbname
                .clone()
                .or_else(|| env("PGDATABASE"))
                .unwrap_or_else(|| "postgres".into()),
        );
        if let Some(pw) = env("PGPASSWORD") {
            c.password(pw);
        }
        c.application_name("cairn");
        c.connect_timeout(std::time::Duration::from_secs(30));
        Ok(c)
    }
}

fn pg_error(doing: &str, e: postgres::Error) -> Error {
    Error::Postgres {
        doing: doing.to_string(),
        detail: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string()),
    }
}

/// Options of a base backup.
#[derive(Debug, Clone, Default)]
pub struct PgBackupOptions {
    /// The server's data directory, as this machine sees it.
    pub pgdata: PathBuf,
    /// How to connect.
    pub connect: PgConnect,
    /// A name for the snapshot.
    pub name: Option<String>,
    /// More tags (`pg-base` is always added).
    pub tags: Vec<String>,
}

/// Takes a consistent base backup of the running server whose data directory is
/// `opts.pgdata`.
pub fn base_backup(
    repo: &mut Repository,
    opts: &PgBackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let mut client = opts
        .connect
        .config()?
        .connect(postgres::NoTls)
        .map_err(|e| pg_error("connect to the server", e))?;
    let row = client
        .query_one(
            "SELECT current_setting('data_directory'), \
                    current_setting('server_version_num')::int, \
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                    (SELECT system_identifier::text FROM pg_control_system()), \
                    current_setting('archive_mode')",
            &[],
        )
        .map_err(|e| pg_error("read the server's settings", e))?;
    let server_dir: String = row.get(0);
    let version: i32 = row.get(1);
    let segment_size: i64 = row.get(2);
    let system_identifier: String = row.get(3);
    let archive_mode: String = row.get(4);
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io("cannot resolve", p, e));
    if canon(&opts.pgdata)? != canon(Path::new(&server_dir))? {
        return Err(Error::InvalidInput(format!(
            "--pgdata {} is not the data directory of the server connected to ({server_dir})",
            opts.pgdata.display()
        )));
    }
    if archive_mode == "off" {
        return Err(Error::InvalidInput(
            "the server does not archive WAL (archive_mode = off): a base backup alone cannot \
             be made consistent; set archive_mode and archive_command (see the README)"
                .into(),
        ));
    }
    let tablespaces: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
            &[],
        )
        .map_err(|e| pg_error("list tablespaces", e))?
        .get(0);
    if tablespaces > 0 {
        return Err(Error::InvalidInput(format!(
            "the server has {tablespaces} tablespaces outside its data directory, which pg backup \
             does not copy yet; back them up with the server stopped, or move them into pg_default"
        )));
    }
    if version < 150_000 {
        return Err(Error::InvalidInput(format!(
            "PostgreSQL {version} is not supported; pg backup needs PostgreSQL 15 or later"
        )));
    }
    // Taken before the server enters backup mode, so that waiting for a running prune does
    // not keep the server in it; the backup below holds it to the end.
    let lock = repo.lock(LockKind::Shared, "pg backup")?;
    let label = format!("cairn {}", jiff::Timestamp::now());
    let start: String = client
        .query_one("SELECT pg_backup_start($1, true)::text", &[&label])
        .map_err(|e| pg_error("start the backup (pg_backup_start)", e))?
        .get(0);
    let segment_size = segment_size as u64;
    let backup_opts = BackupOptions {
        paths: vec![opts.pgdata.clone()],
        name: opts.name.clone(),
        tags: opts.tags.clone(),
        exclude: PG_EXCLUDES.iter().map(|s| s.to_string()).collect(),
        // A base backup missing a file the server wrote does not recover: no partial ones.
        strict: true,
        ..BackupOptions::default()
    };
    let mut finish = || -> Result<Additions> {
        let row = client
            .query_one(
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)",
                &[],
            )
            .map_err(|e| pg_error("stop the backup (pg_backup_stop)", e))?;
        let stop: String = row.get(0);
        let labelfile: String = row.get(1);
        let spcmap: Option<String> = row.get(2);
        let timeline = label_field(&labelfile, "START TIMELINE:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::corrupt("backup_label", "it names no START TIMELINE"))?;
        let start_lsn = parse_lsn(&start)?;
        let stop_lsn = parse_lsn(&stop)?;
        let mut files = vec![("backup_label".to_string(), labelfile.into_bytes())];
        if let Some(map) = spcmap.filter(|m| !m.is_empty()) {
            files.push(("tablespace_map".to_string(), map.into_bytes()));
        }
        Ok(Additions {
            files,
            tags: vec![PG_BASE_TAG.to_string()],
            pg: Some(PgInfo {
                timeline,
                start_lsn: start.clone(),
                stop_lsn: stop,
                start_wal: segment_name(timeline, start_lsn, segment_size),
                stop_wal: segment_name(timeline, stop_lsn.saturating_sub(1), segment_size),
                wal_segment_size: segment_size,
                system_identifier: system_identifier.clone(),
                server_version: version as u32,
            }),
        })
    };
    let result = backup_with(repo, &backup_opts, None, progress, &mut finish, Some(lock));
    // Dropping the session ends a backup still in progress (on an error before the stop).
    drop(client);
    result
}

fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// Which point a point-in-time restore reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Stop at this time (RFC 3339).
    Time(jiff::Timestamp),
    /// Stop at this LSN.
    Lsn(String),
}

/// Options of a point-in-time restore.
#[derive(Debug, Clone)]
pub struct PgRestoreOptions {
    /// The new data directory (missing or empty).
    pub target: PathBuf,
    /// The point to reach.
    pub until: PgTarget,
    /// A base backup to use instead of the newest suitable one.
    pub snapshot: Option<String>,
    /// The `restore_command` PostgreSQL runs to fetch WAL (`%f` and `%p` in it).
    pub restore_command: String,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, Serialize)]
pub struct PgRestoreReport {
    /// The base backup restored.
    pub snapshot: Id,
    /// Its stop LSN: recovery must replay at least to here.
    pub stop_lsn: String,
    /// Files restored.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Restores the newest base backup that ends before the target into `opts.target` and writes
/// the recovery settings: starting PostgreSQL there replays the archived WAL to the target.
pub fn pg_restore(
    repo: &mut Repository,
    opts: &PgRestoreOptions,
    progress: &dyn Progress,
) -> Result<PgRestoreReport> {
    if let Ok(mut rd) = std::fs::read_dir(&opts.target)
        && rd.next().is_some()
    {
        return Err(Error::InvalidInput(format!(
            "{} is not empty; a point-in-time restore needs a new or empty directory",
            opts.target.display()
        )));
    }
    // A target that does not parse is refused before anything is chosen or written (a typo
    // must not read as "no base backup fits", nor fail after the whole restore).
    if let PgTarget::Lsn(l) = &opts.until {
        parse_lsn(l)?;
    }
    let all = repo.snapshots()?;
    let names = wal_names(repo)?;
    let bases: Vec<(Id, Snapshot)> = all.into_iter().filter(|(_, s)| s.pg.is_some()).collect();
    let (id, snap) = match &opts.snapshot {
        Some(spec) => crate::repo::resolve_in(bases, spec)?,
        None => choose_base(bases, &names, &opts.until)?,
    };
    let pg = snap.pg.clone().ok_or_else(|| {
        Error::InvalidInput(format!(
            "snapshot {} is not a PostgreSQL base backup",
            id.short()
        ))
    })?;
    let summary = restore(
        repo,
        &snap,
        &RestoreOptions {
            target: opts.target.clone(),
            ..RestoreOptions::default()
        },
        progress,
    )?;
    // The restore synced its files; what is changed here is synced at the end.
    let sync = crate::restore::SyncHandle::open(&opts.target)?;
    // PostgreSQL refuses a data directory others may read.
    set_mode(&opts.target, 0o700)?;
    let auto = opts.target.join("postgresql.auto.conf");
    // Absent is empty; unreadable (or not UTF-8) must not become empty, losing its settings.
    // The restored tree is what the snapshot holds, which the database's user could shape: a
    // symlink here is followed neither to read nor to write, and is refused.
    let (old, mode) = match std::fs::symlink_metadata(&auto) {
        Ok(m) if m.is_file() => (
            std::fs::read_to_string(&auto).map_err(|e| Error::io("cannot read", &auto, e))?,
            m.mode() & 0o7777,
        ),
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "{} is not a regular file in the restored base backup; cairn will not write through it",
                auto.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o600),
        Err(e) => return Err(Error::io("cannot read", &auto, e)),
    };
    // Recovery settings left by an earlier restore of the backed-up cluster would add a second
    // target (which PostgreSQL refuses) or a stale one: they are commented out.
    let mut conf: String = old
        .lines()
        .map(|l| {
            let key = l.trim_start();
            if key.starts_with("recovery_target") || key.starts_with("restore_command") {
                format!("# (replaced by cairn pg restore) {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    conf += &recovery_settings(&id, &pg, &opts.until, &opts.restore_command)?;
    // Written aside and renamed over it (synced with the rest at the end): a failed write
    // leaves the restored file as it was.
    // (With the mode PostgreSQL gave the file it replaces; its owner is set below.)
    let fresh = opts.target.join("postgresql.auto.conf.cairn-new");
    write_new(&fresh, conf.as_bytes(), mode)?;
    std::fs::rename(&fresh, &auto).map_err(|e| Error::io("cannot replace", &auto, e))?;
    let signal = opts.target.join("recovery.signal");
    write_new(&signal, b"", 0o600)?;
    let mut made = vec![auto, signal];
    for dir in ["pg_wal", "pg_wal/archive_status"] {
        let d = opts.target.join(dir);
        std::fs::create_dir(&d).map_err(|e| Error::io("cannot create", &d, e))?;
        set_mode(&d, 0o700)?;
        made.push(d);
    }
    // What the restore added belongs to whoever owns the restored files (a restore run as
    // root for a server run as postgres), or the server could not read its backup_label.
    let owner = std::fs::metadata(opts.target.join("PG_VERSION"))
        .map_err(|e| Error::io("cannot stat", opts.target.join("PG_VERSION"), e))?;
    made.extend(["backup_label", "tablespace_map"].map(|f| opts.target.join(f)));
    for p in made.iter().filter(|p| std::fs::symlink_metadata(p).is_ok()) {
        std::os::unix::fs::lchown(p, Some(owner.uid()), Some(owner.gid()))
            .map_err(|e| Error::io("cannot set the owner of", p, e))?;
    }
    // Without this, a crash before the server starts could lose recovery.signal, and the
    // server would then start from the base backup without replaying WAL.
    sync.sync()?;
    Ok(PgRestoreReport {
        snapshot: id,
        stop_lsn: pg.stop_lsn,
        files: summary.files_restored,
        bytes: summary.bytes_written,
    })
}

/// The newest base backup that ends before `until` and whose WAL from start to stop is
/// archived, among those of one cluster: the repository may hold several, and their WAL
/// cannot be mixed.
fn choose_base(
    bases: Vec<(Id, Snapshot)>,
    names: &[String],
    until: &PgTarget,
) -> Result<(Id, Snapshot)> {
    let clusters: HashSet<&str> = bases
        .iter()
        .filter_map(|(_, s)| s.pg.as_ref().map(|p| p.system_identifier.as_str()))
        .collect();
    if clusters.len() > 1 {
        return Err(Error::InvalidInput(format!(
            "the repository holds base backups of {} clusters; name one with --snapshot",
            clusters.len()
        )));
    }
    let consistent: HashSet<Id> = inventory(&bases, names)?
        .backups
        .iter()
        .filter(|b| b.consistent)
        .map(|b| b.id)
        .collect();
    let fits = |s: &Snapshot| match (until, &s.pg) {
        (_, None) => false,
        (PgTarget::Latest, Some(_)) => true,
        (PgTarget::Time(t), Some(_)) => s.end().is_some_and(|end| end < *t),
        (PgTarget::Lsn(l), Some(pg)) => {
            matches!((parse_lsn(l), parse_lsn(&pg.stop_lsn)), (Ok(l), Ok(stop)) if stop <= l)
        }
    };
    bases
        .into_iter()
        .rev()
        .find(|(id, s)| fits(s) && consistent.contains(id))
        .ok_or_else(|| {
            Error::InvalidInput(
                "no restorable PostgreSQL base backup ends before that target; `cairn pg list` \
                 shows what is restorable"
                    .into(),
            )
        })
}

/// The lines added to `postgresql.auto.conf`: the one recovery target, its action, and the
/// timeline to follow.
fn recovery_settings(
    id: &Id,
    pg: &PgInfo,
    until: &PgTarget,
    restore_command: &str,
) -> Result<String> {
    // postgresql.conf strings: quotes doubled, backslashes escaped.
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"));
    let (time, lsn, timeline) = match until {
        PgTarget::Latest => (String::new(), String::new(), "latest".to_string()),
        // PostgreSQL's timestamptz input: no `T`, no `Z`.
        PgTarget::Time(t) => (
            t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            String::new(),
            pg.timeline.to_string(),
        ),
        PgTarget::Lsn(l) => {
            let v = parse_lsn(l)?;
            (
                String::new(),
                format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF),
                pg.timeline.to_string(),
            )
        }
    };
    let mut out = format!(
        "\n# Written by cairn pg restore from base backup {}.\nrestore_command = {}\n",
        id.short(),
        quote(restore_command)
    );
    let target = match until {
        PgTarget::Latest => None,
        PgTarget::Time(_) => Some(("recovery_target_time", time)),
        PgTarget::Lsn(_) => Some(("recovery_target_lsn", lsn)),
    };
    if let Some((key, value)) = target {
        out += &format!(
            "{key} = {}\nrecovery_target_action = 'promote'\n",
            quote(&value)
        );
    }
    out += &format!("recovery_target_timeline = {}\n", quote(&timeline));
    Ok(out)
}

/// Writes `bytes` to a new file at `p` with `mode`, first removing whatever is there that is
/// not a directory, and never following a symlink: in a tree restored from a snapshot, one
/// could lead a restore run as root anywhere.
fn write_new(p: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(p).map_err(|e| Error::io("cannot remove", p, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(p)
        .map_err(|e| Error::io("cannot create", p, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("cannot write", p, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot set the mode of", p, e))
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot set the mode of", p, e))
}

/// Lists base backups and the archived WAL after each.
pub fn pg_inventory(repo: &Repository) -> Result<PgInventory> {
    let snaps = repo.snapshots()?;
    let names = wal_names(repo)?;
    inventory(&snaps, &names)
}

/// Deletes the WAL files no remaining base backup needs (see [`expendable_wal`]), counting
/// the snapshots `going` (about to be removed by a dry run) as gone; with `dry_run`, only
/// names them. Deleting takes the exclusive lock: a `pg fetch-wal` of a point-in-time restore
/// must not lose its segment between listing and reading it.
pub fn expire_wal(repo: &mut Repository, going: &[Id], dry_run: bool) -> Result<Vec<String>> {
    let _lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, "expire WAL")?)
    };
    // A damaged base backup may need any WAL: none is expired while one is unreadable.
    let snaps: Vec<(Id, Snapshot)> = repo
        .snapshots_strict()?
        .into_iter()
        .filter(|(id, _)| !going.contains(id))
        .collect();
    let names = wal_names(repo)?;
    let gone = expendable_wal(&snaps, &names);
    if !dry_run {
        for n in &gone {
            delete_wal_record(repo, n)?;
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_written_into_a_restored_tree_never_follow_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"kept").unwrap();
        let planted = dir.path().join("recovery.signal");
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        write_new(&planted, b"", 0o600).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"kept");
        let m = std::fs::symlink_metadata(&planted).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    }

    #[test]
    fn recovery_settings_name_one_target_and_quote_values() {
        let pg = PgInfo {
            timeline: 3,
            start_lsn: "0/3000028".into(),
            stop_lsn: "0/4000100".into(),
            start_wal: "000000030000000000000003".into(),
            stop_wal: "000000030000000000000004".into(),
            wal_segment_size: 16 << 20,
            system_identifier: "1".into(),
            server_version: 150000,
        };
        let id = Id::of(b"s");
        let lsn =
            recovery_settings(&id, &pg, &PgTarget::Lsn(" 0/00005A".into()), r"c 'x' \y").unwrap();
        assert!(lsn.contains("recovery_target_lsn = '0/5A'\n"), "{lsn}");
        assert!(!lsn.contains("recovery_target_time ="), "{lsn}");
        assert!(lsn.contains("recovery_target_timeline = '3'\n"), "{lsn}");
        assert!(lsn.contains(r"restore_command = 'c ''x'' \\y'"), "{lsn}");
        let t: jiff::Timestamp = "2026-11-22T10:15:00.5Z".parse().unwrap();
        let time = recovery_settings(&id, &pg, &PgTarget::Time(t), "c").unwrap();
        assert!(
            time.contains("recovery_target_time = '2026-11-22 10:15:00.500000+00'\n"),
            "{time}"
        );
        let latest = recovery_settings(&id, &pg, &PgTarget::Latest, "c").unwrap();
        assert!(
            latest.contains("recovery_target_timeline = 'latest'\n"),
            "{latest}"
        );
        assert!(recovery_settings(&id, &pg, &PgTarget::Lsn("x".into()), "c").is_err());
    }
}
