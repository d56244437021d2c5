//! `cairn pg`: PostgreSQL base backups, WAL archiving and point-in-time restores.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cairn_engine::{
    Archived, Id, PgBackupOptions, PgConnect, PgRestoreOptions, PgTarget, PrefetchOptions,
    Repository, SpoolOptions, archive_wal, archive_wal_spooled, base_backup, fetch_wal,
    pg_inventory, pg_restore, prefetch_wal, prefetch_wanted, take_prefetched,
};

use crate::Globals;
use crate::progress::Bar;
use crate::units::{human_bytes, plural};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Take a consistent base backup of a running server.
    Backup(BackupArgs),
    /// Store one WAL file; for `archive_command = 'cairn --repo R pg archive-wal %p %f'`.
    /// Stores with it the other files the server has ready, and marks them in a local spool
    /// so that the calls for them return at once.
    ArchiveWal {
        /// Path of the file (`%p`).
        path: PathBuf,
        /// Its name (`%f`).
        name: String,
        /// Store only this file.
        #[arg(long)]
        no_spool: bool,
        /// The spool directory (default: under the cache directory, one per repository).
        #[arg(long, value_name = "DIR")]
        spool_dir: Option<PathBuf>,
        /// Most files stored by one call.
        #[arg(long, default_value_t = 64, value_name = "N")]
        batch: usize,
    },
    /// Write one archived WAL file; for `restore_command`. Exits 1 if it is not archived, 200
    /// on any other failure (which stops PostgreSQL's recovery instead of ending it early).
    FetchWal {
        /// Its name (`%f`).
        name: String,
        /// Where to write it (`%p`).
        path: PathBuf,
        /// Fetch only this file, none ahead.
        #[arg(long)]
        no_prefetch: bool,
        /// Segments fetched ahead, in the background, into a spool under the cache directory.
        #[arg(long, default_value_t = 8, value_name = "N")]
        prefetch: usize,
    },
    /// Fetch the segments after one into the spool (what fetch-wal starts in the background).
    #[command(hide = true)]
    PrefetchWal {
        /// The segment just fetched.
        name: String,
        /// Segments to hold ahead.
        #[arg(long, default_value_t = 8)]
        ahead: usize,
    },
    /// Restore a base backup and set up recovery to a point in time.
    Restore(RestoreArgs),
    /// Base backups and the WAL archived after each: what can be restored.
    List {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// The server's data directory.
    #[arg(long, value_name = "DIR")]
    pgdata: PathBuf,
    /// Host or socket directory (default: $PGHOST, else /var/run/postgresql).
    #[arg(long)]
    host: Option<String>,
    /// Port (default: $PGPORT, else 5432).
    #[arg(long)]
    port: Option<u16>,
    /// User (default: $PGUSER, else the current user). The password, if one is needed, comes
    /// from $PGPASSWORD.
    #[arg(long)]
    user: Option<String>,
    /// Database to connect to (default: $PGDATABASE, else postgres).
    #[arg(long)]
    dbname: Option<String>,
    /// A name for the snapshot.
    #[arg(long)]
    name: Option<String>,
    /// A tag for the snapshot (pg-base is always added); may be repeated.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Print one JSON summary object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("until").required(true).args(["time", "lsn", "latest"])))]
struct RestoreArgs {
    /// The new data directory (missing or empty).
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// Recover to this time (RFC 3339, e.g. 2026-11-22T10:15:00Z), along the base backup's
    /// timeline.
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Recover to this LSN (e.g. 0/5000060).
    #[arg(long, value_name = "LSN")]
    lsn: Option<String>,
    /// Recover everything archived, following the newest timeline.
    #[arg(long)]
    latest: bool,
    /// Restore this base backup instead of the newest that ends before the target.
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,
}

/// The exit status of a `fetch-wal` that failed for another reason than the file not being
/// archived: above 125, so that PostgreSQL stops recovery rather than end it early.
pub const FETCH_FAILED: i32 = 200;

pub fn run(g: &Globals, a: Args) -> Result<i32> {
    match a.command {
        Command::Backup(b) => {
            let mut repo = g.open()?;
            let bar = Bar::new(!b.json, "files");
            let result = base_backup(
                &mut repo,
                &PgBackupOptions {
                    pgdata: b.pgdata,
                    connect: PgConnect {
                        host: b.host,
                        port: b.port,
                        user: b.user,
                        dbname: b.dbname,
                    },
                    name: b.name,
                    tags: b.tags,
                },
                &bar,
            );
            bar.finish();
            let done = result?;
            super::backup::report(&done, b.json)?;
            if let (false, Some(pg)) = (b.json, &done.snapshot.pg) {
                outln!(
                    "PostgreSQL base backup: timeline {}, WAL {} ({}) to {} ({})",
                    pg.timeline,
                    pg.start_lsn,
                    pg.start_wal,
                    pg.stop_lsn,
                    pg.stop_wal
                );
            }
            Ok(0)
        }
        Command::ArchiveWal {
            path,
            name,
            no_spool,
            spool_dir,
            batch,
        } => {
            let location = g.location()?;
            let wait = g.lock_wait()?;
            // WAL does not repeat: archiving needs no index cache to deduplicate against.
            let open = || -> cairn_engine::Result<Repository> {
                let ask = || g.password.get(false).map_err(crate::password_error);
                let mut repo = Repository::open_append_only(&location, &ask)?;
                repo.set_lock_wait(wait);
                Ok(repo)
            };
            let archived = if no_spool {
                archive_wal(&mut open()?, &path, &name)?
            } else {
                let dir = match spool_dir {
                    Some(d) => d,
                    None => {
                        let hex = Id::of(location.to_string().as_bytes()).to_hex();
                        g.cache_dir().join("wal-spool").join(&hex[..16])
                    }
                };
                let opts = SpoolOptions {
                    dir,
                    batch: batch.max(1),
                    wait: wait.max(std::time::Duration::from_secs(600)),
                };
                archive_wal_spooled(&open, &path, &name, &opts)?
            };
            if archived == Archived::AlreadyThere {
                errln!("{name} was already archived, identical");
            }
            Ok(0)
        }
        Command::FetchWal {
            name,
            path,
            no_prefetch,
            prefetch,
        } => {
            let ahead = (!no_prefetch && prefetch > 0).then(|| prefetch_options(g, prefetch));
            if let Some(opts) = &ahead
                && let Ok(true) = take_prefetched(opts, &name, &path)
            {
                if prefetch_wanted(opts, &name) {
                    start_prefetch(g, &name, prefetch);
                }
                return Ok(0);
            }
            // Exit status 1 tells PostgreSQL the archive ends here, and it promotes; any other
            // failure must stop recovery instead, which a status above 125 does.
            let fetched = g
                .open()
                .and_then(|mut repo| Ok(fetch_wal(&mut repo, &name, &path)?));
            if ahead.is_some() && matches!(fetched, Ok(true)) {
                start_prefetch(g, &name, prefetch);
            }
            match fetched {
                Ok(true) => Ok(0),
                Ok(false) => {
                    errln!("{name} is not archived");
                    Ok(1)
                }
                Err(e) => {
                    errln!("error: {e:#}");
                    Ok(FETCH_FAILED)
                }
            }
        }
        Command::PrefetchWal { name, ahead } => {
            let opts = prefetch_options(g, ahead);
            // Opened only by the prefetcher that takes the spool's lock.
            let open = || {
                g.open()
                    .map_err(|e| cairn_engine::Error::InvalidInput(format!("{e:#}")))
            };
            prefetch_wal(&open, &name, &opts)?;
            Ok(0)
        }
        Command::Restore(r) => {
            let until = match (&r.time, &r.lsn, r.latest) {
                (Some(t), _, _) => PgTarget::Time(t.parse().with_context(|| {
                    format!("--time {t:?}: give an RFC 3339 time such as 2026-11-22T10:15:00Z")
                })?),
                (None, Some(l), _) => PgTarget::Lsn(l.clone()),
                (None, None, true) => PgTarget::Latest,
                (None, None, false) => bail!("give --time, --lsn or --latest"),
            };
            let mut repo = g.open()?;
            if repo.sealing().keys().is_some() && g.password.for_other_process().is_none() {
                bail!(
                    "the repository is encrypted: give --password-file or --password-command, which the restored server's restore_command uses to fetch WAL (the password itself is never written there)"
                );
            }
            let bar = Bar::new(true, "files");
            let report = pg_restore(
                &mut repo,
                &PgRestoreOptions {
                    target: r.target.clone(),
                    until,
                    snapshot: r.snapshot,
                    restore_command: fetch_command(g)?,
                },
                &bar,
            );
            bar.finish();
            let report = report?;
            outln!(
                "restored base backup {} to {} ({}, {}); start PostgreSQL there to replay WAL (at least to {})",
                report.snapshot.short(),
                r.target.display(),
                plural(report.files as usize, "file", "files"),
                human_bytes(report.bytes),
                report.stop_lsn
            );
            Ok(0)
        }
        Command::List { json } => {
            let repo = g.open()?;
            let inv = pg_inventory(&repo)?;
            if json {
                outln!("{}", serde_json::to_string(&inv)?);
                return Ok(0);
            }
            for b in &inv.backups {
                let until = b.wal_until.as_deref().unwrap_or("(none archived)");
                outln!(
                    "base backup {}  ended {}  timeline {}  WAL {} .. {}  archived through {}{}",
                    b.id.short(),
                    b.time_end,
                    b.pg.timeline,
                    b.pg.start_wal,
                    b.pg.stop_wal,
                    until,
                    if b.consistent {
                        ""
                    } else {
                        "  NOT RESTORABLE: WAL missing before its stop"
                    }
                );
            }
            for t in &inv.timelines {
                outln!(
                    "timeline {}: {} segments, {} .. {}{}",
                    t.timeline,
                    t.segments,
                    t.first,
                    t.last,
                    if t.gaps.is_empty() {
                        String::new()
                    } else {
                        format!(", {} gaps", t.gaps.len())
                    }
                );
                for (from, to) in &t.gaps {
                    outln!("  missing {from} .. {to}");
                }
            }
            if inv.backups.is_empty() {
                outln!("no PostgreSQL base backups");
            }
            Ok(0)
        }
    }
}

/// The `restore_command` a restored server runs: this binary, this repository, and the
/// settings given to this run, with `%f` and `%p` for PostgreSQL to fill in.
fn fetch_command(g: &Globals) -> Result<String> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let mut cmd = quote(&exe.display().to_string());
    cmd += &format!(" --repo {}", quote(&g.location()?.to_string()));
    // Only if given: this user's default cache (root's, for a restore run as root) is not
    // the server user's to open; without one, the server user's own default is used.
    if let Some(dir) = &g.cache_dir {
        let abs = std::path::absolute(dir).context("cannot resolve --cache-dir")?;
        cmd += &format!(" --cache-dir {}", quote(&abs.display().to_string()));
    }
    if let Some(c) = &g.config {
        let abs = std::path::absolute(c).context("cannot resolve --config")?;
        cmd += &format!(" --config {}", quote(&abs.display().to_string()));
    }
    if let Some(p) = g.password.for_other_process() {
        cmd += &p;
    }
    cmd += " pg fetch-wal %f %p";
    Ok(cmd)
}

/// Where fetch-wal's segments ahead are kept: one spool per repository, under the cache.
fn prefetch_options(g: &Globals, ahead: usize) -> PrefetchOptions {
    let repo = g.repo_spec().unwrap_or_default();
    let hex = Id::of(repo.as_bytes()).to_hex();
    PrefetchOptions {
        dir: g.cache_dir().join("wal-prefetch").join(&hex[..16]),
        ahead,
    }
}

/// Starts `cairn pg prefetch-wal NAME` in the background, with this call's repository, cache,
/// config and password source, and does not wait for it: recovery goes on meanwhile. Best
/// effort: a prefetch that cannot start only makes the next fetch slower.
fn start_prefetch(g: &Globals, name: &str, ahead: usize) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut c = std::process::Command::new(exe);
    if let Some(repo) = g.repo_spec() {
        c.arg("--repo").arg(repo);
    }
    c.arg("--cache-dir").arg(g.cache_dir());
    if let Some(config) = g.config_path() {
        c.arg("--config").arg(config);
    }
    if let Some(f) = &g.password.file {
        c.arg("--password-file").arg(f);
    }
    if let Some(cmd) = &g.password.command {
        c.arg("--password-command").arg(cmd);
    }
    c.args(["pg", "prefetch-wal", name, "--ahead", &ahead.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = c.spawn();
}
