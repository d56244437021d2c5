//! The `cairn` command: parses arguments, calls the engine, prints results. No logic lives here.

/// `println!` for results: a reader that went away (`cairn list | head`) is not an error, so
/// the command goes on and exits as it would have; any other failure to write (a full disk
/// under `>`) is, and ends the command.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out_line(format_args!($($arg)*))
            .map_err(|e| anyhow::Error::new(e).context("cannot write to standard output"))?
    };
}

/// `eprintln!` that cannot panic: when stderr itself is gone (`cairn … 2>&1 | head`), there is
/// nowhere left to say anything, and the exit status still tells.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod commands;
mod interrupt;
mod password;
mod progress;
mod units;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Content-addressed, deduplicating backups of database files.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
struct Cli {
    /// Repository location: a local path (or file:// URL), or s3://BUCKET/PREFIX.
    #[arg(
        long,
        short = 'r',
        env = "CAIRN_REPO",
        global = true,
        value_name = "REPO"
    )]
    repo: Option<String>,

    /// TOML file with an [s3] table: endpoint, region, access_key_id, secret_access_key,
    /// session_token, virtual_host_style, connections. What it leaves out comes from the
    /// AWS_* environment variables.
    #[arg(long, env = "CAIRN_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Requests in flight at once to an object store (uploads and downloads each).
    #[arg(long, env = "CAIRN_CONNECTIONS", global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    connections: Option<u16>,

    /// File whose first line is the repository's password (else --password-command, then
    /// CAIRN_PASSWORD, then a prompt on the terminal).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// Shell command that prints the repository's password.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    password_command: Option<String>,

    /// Directory of the local index cache (rebuildable; safe to delete).
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// How long to wait for a command holding a conflicting lock (a prune, or the backups
    /// and restores a prune waits for), e.g. 30s, 10m, 2h.
    #[arg(
        long,
        env = "CAIRN_LOCK_WAIT",
        global = true,
        value_name = "DURATION",
        default_value = "10m"
    )]
    lock_wait: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(commands::init::Args),
    /// Back up paths, or a stream from standard input, as a new snapshot.
    Backup(commands::backup::Args),
    /// Verify the repository: structure, and with --read-data every byte.
    Check(commands::check::Args),
    /// List snapshots.
    List(commands::list::Args),
    /// List the files of a snapshot.
    Ls(commands::ls::Args),
    /// Restore a snapshot, or part of it, into a directory.
    Restore(commands::restore::Args),
    /// Remove snapshots by a retention policy (their data is reclaimed by prune).
    Forget(commands::forget::Args),
    /// Remove the named snapshots (their data is reclaimed by prune).
    Delete(commands::delete::Args),
    /// Delete data no snapshot needs; safe while other commands run.
    Prune(commands::prune::Args),
    /// Show or save the retention policy a plain `forget` applies.
    Policy(commands::policy::Args),
    /// PostgreSQL: base backups, WAL archiving, point-in-time restores.
    Pg(commands::pg::Args),
    /// Copy snapshots into another repository, sending only the data it lacks.
    Copy(commands::copy::Args),
    /// Sizes: stored, logical, dedup and compression ratios, and what each snapshot costs.
    Stats(commands::stats::Args),
    /// The passwords of an encrypted repository: list, add, remove, change.
    Key(commands::key::Args),
}

/// What every command needs from the global options.
#[derive(Debug, Clone)]
pub struct Globals {
    repo: Option<String>,
    config: Option<PathBuf>,
    connections: Option<u16>,
    cache_dir: Option<PathBuf>,
    lock_wait: String,
    pub(crate) password: password::PasswordSource,
}

impl Globals {
    /// The repository location, or a clear error if none was given.
    pub fn location(&self) -> Result<cairn_engine::Location> {
        let repo = self.repo.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no repository given: use --repo PATH or set CAIRN_REPO")
        })?;
        self.resolve(repo)
    }

    /// Parses a repository location, with the settings to reach it if it is an object store.
    pub fn resolve(&self, repo: &str) -> Result<cairn_engine::Location> {
        let location = cairn_engine::Location::parse(repo)?;
        if !matches!(location, cairn_engine::Location::S3(_)) {
            return Ok(location);
        }
        let mut settings = cairn_engine::S3Settings::load(self.config.as_deref())?;
        if let Some(n) = self.connections {
            settings.connections = Some(n.into());
        }
        Ok(location.with_s3_settings(settings))
    }

    /// How long to wait for a conflicting lock.
    pub fn lock_wait(&self) -> Result<std::time::Duration> {
        Ok(cairn_engine::parse_duration(&self.lock_wait)?)
    }

    /// The repository as given (`--repo` or `CAIRN_REPO`).
    pub fn repo_spec(&self) -> Option<String> {
        self.repo.clone()
    }

    /// The config file given with `--config`.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    /// The local cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(cairn_engine::default_cache_dir)
    }

    /// Opens the repository at `location`, asking `password` for its password if it is
    /// encrypted.
    pub fn open_at(
        &self,
        location: &cairn_engine::Location,
        password: &password::PasswordSource,
    ) -> Result<cairn_engine::Repository> {
        let ask = || password.get(false).map_err(password_error);
        let mut repo = cairn_engine::Repository::open_with(location, &self.cache_dir(), &ask)?;
        repo.set_warning_sink(Box::new(|w| errln!("warning: {w}")));
        Ok(repo)
    }

    /// Opens the repository, printing any warnings met while indexing it.
    pub fn open(&self) -> Result<cairn_engine::Repository> {
        let wait = self.lock_wait()?;
        let mut repo = self.open_at(&self.location()?, &self.password)?;
        repo.set_lock_wait(wait);
        for w in repo.warnings() {
            errln!("warning: {w}");
        }
        Ok(repo)
    }
}

/// A password that could not be had, as the engine's error (its message is the whole story).
pub(crate) fn password_error(e: anyhow::Error) -> cairn_engine::Error {
    cairn_engine::Error::InvalidInput(format!("{e:#}"))
}

/// True for `cairn … pg fetch-wal …`, PostgreSQL's restore_command.
fn fetching_wal() -> bool {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    args.iter()
        .position(|a| a == "pg")
        .is_some_and(|pg| args[pg..].iter().any(|a| a == "fetch-wal"))
}

fn main() -> ExitCode {
    // Buffers of megabytes (read batches, frames, packs) come and go all the time. With
    // glibc's default, freeing one raises the mmap threshold, and later ones then stay in the
    // heap once freed; a fixed threshold returns them to the system, so that the peak RSS is
    // what is live (archive-wal's bound, benches/SPACE.md). Fixing it also fixes the trim
    // threshold at 128 KiB, which gives back and faults in again the heap's top all the time
    // (a restore took three times as long): twice the mmap threshold, as glibc would make it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 << 20);
    }
    // What cairn creates (repository files, the cache, a restore's new directories) is the
    // running user's alone: repository files 0600, directories 0700, whatever the umask.
    // Restored files and directories then take the modes the snapshot records.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let fetching = fetching_wal();
    if fetching {
        // PostgreSQL takes any status up to 125 from it for "not archived", and may end
        // recovery there, early: not even a panic may exit that way.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::exit(commands::pg::FETCH_FAILED);
        }));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other error; `cairn help` has the usage.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            errln!("error: {message}; see `cairn help`");
            return ExitCode::from(if fetching {
                commands::pg::FETCH_FAILED as u8
            } else {
                2
            });
        }
    };
    let globals = Globals {
        repo: cli.repo,
        config: cli.config,
        connections: cli.connections,
        cache_dir: cli.cache_dir,
        lock_wait: cli.lock_wait,
        password: password::PasswordSource {
            env: "CAIRN_PASSWORD",
            file: cli.password_file,
            command: cli.password_command,
            prompt: "repository password",
        },
    };
    let result = match cli.command {
        Command::Check(a) => match commands::check::run(&globals, a) {
            Ok(commands::check::Outcome::Clean) => Ok(()),
            Ok(commands::check::Outcome::Damaged) => return ExitCode::from(1),
            Err(e) => {
                errln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Init(a) => commands::init::run(&globals, a),
        Command::Backup(a) => match commands::backup::run(&globals, a) {
            Ok(commands::backup::Outcome::Complete) => Ok(()),
            Ok(commands::backup::Outcome::Partial) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::List(a) => commands::list::run(&globals, a),
        Command::Ls(a) => commands::ls::run(&globals, a),
        Command::Forget(a) => commands::forget::run(&globals, a),
        Command::Delete(a) => commands::delete::run(&globals, a),
        Command::Prune(a) => commands::prune::run(&globals, a),
        Command::Policy(a) => commands::policy::run(&globals, a),
        Command::Stats(a) => commands::stats::run(&globals, a),
        Command::Copy(a) => commands::copy::run(&globals, a),
        Command::Key(a) => commands::key::run(&globals, a),
        Command::Pg(a) => match commands::pg::run(&globals, a) {
            Ok(0) => Ok(()),
            Ok(code) => return ExitCode::from(code as u8),
            Err(e) => Err(e),
        },
        Command::Restore(a) => match commands::restore::run(&globals, a) {
            Ok(commands::restore::Outcome::Complete) => Ok(()),
            Ok(commands::restore::Outcome::Incomplete) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if matches!(
                e.downcast_ref::<cairn_engine::Error>(),
                Some(cairn_engine::Error::Interrupted { .. })
            ) =>
        {
            errln!("{e}");
            ExitCode::from(interrupt::exit_status())
        }
        Err(e) => {
            let _ = std::io::stdout().flush();
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout, taking a closed pipe as the end of the reader's interest.
fn out_line(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
