//! `cairn backup`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use cairn_engine::{Additions, BackupOptions, backup_with};
use serde_json::json;

use crate::Globals;
use crate::progress::{Bar, JsonLines};
use crate::units::{human_bytes, plural};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
    /// Back up standard input instead of paths.
    #[arg(long, requires = "stdin_name", conflicts_with = "paths")]
    stdin: bool,
    /// Back up what the command given after `--` writes to its standard output, and save the
    /// snapshot only if it exits 0, e.g. `--stdin-from-command --stdin-name shop.sql --
    /// pg_dump shop` (a pipe into --stdin cannot tell a producer that failed half way).
    #[arg(long, requires = "stdin_name", conflicts_with_all = ["paths", "stdin"])]
    stdin_from_command: bool,
    /// File name for the stream read with --stdin or --stdin-from-command.
    #[arg(long, value_name = "NAME")]
    stdin_name: Option<String>,
    /// Save a snapshot even if the stream is empty (without it, an empty stream is refused:
    /// it is more often a producer that failed than an empty database).
    #[arg(long)]
    allow_empty: bool,
    /// The command for --stdin-from-command, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// A name for the snapshot (e.g. before-upgrade).
    #[arg(long)]
    name: Option<String>,
    /// A tag for the snapshot; may be repeated.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Compare with this snapshot instead of the latest one of the same paths.
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Read every file, even those whose metadata says they are unchanged.
    #[arg(long)]
    force_read: bool,
    /// Host name to record.
    #[arg(long)]
    host: Option<String>,
    /// Fail, saving no snapshot, if a file or directory cannot be read. Without it, such an
    /// entry is left out and listed, the snapshot is marked partial, and the exit status is 3.
    #[arg(long)]
    strict: bool,
    /// Keep this snapshot whatever the retention policy says (`delete` still removes it).
    #[arg(long)]
    keep_forever: bool,
    /// Leave out paths matching this glob, relative to the snapshot's root (`*` stays within
    /// one directory, `**` crosses them; `dir/*` keeps `dir`, empty); may be repeated.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Print progress as JSON lines (at most one a second) and end with one JSON summary
    /// object (`"type": "summary"`).
    #[arg(long)]
    json: bool,
}

/// How a backup that saved a snapshot went.
pub enum Outcome {
    /// Every source entry is in the snapshot.
    Complete,
    /// Some entries could not be read and are missing (exit status 3).
    Partial,
}

pub fn run(g: &Globals, a: Args) -> Result<Outcome> {
    let streamed = a.stdin || a.stdin_from_command;
    if a.stdin_name.is_some() && !streamed {
        bail!("--stdin-name needs --stdin or --stdin-from-command");
    }
    match (a.stdin_from_command, a.command.is_empty()) {
        (true, true) => bail!("--stdin-from-command needs the command after `--`"),
        (false, false) => bail!(
            "a command after `--` is only for --stdin-from-command (to back up a path that \
             starts with '-', write it as ./-name)"
        ),
        _ => {}
    }
    let mut repo = g.open()?;
    // Ctrl-C or SIGTERM stops the backup cleanly: what was uploaded is indexed, so the next
    // backup does not upload it again.
    let interrupt = Arc::new(AtomicBool::new(false));
    crate::interrupt::watch(interrupt.clone())?;
    let opts = BackupOptions {
        paths: a.paths,
        stdin_name: a.stdin_name,
        name: a.name,
        tags: a.tags,
        parent: a.parent,
        force_read: a.force_read,
        hostname: a.host,
        interrupt: Some(interrupt.clone()),
        exclude: a.exclude,
        strict: a.strict,
        keep_forever: a.keep_forever,
    };
    let bar = Bar::new(!a.json, "files");
    let lines = JsonLines::new();
    let progress: &dyn cairn_engine::Progress = if a.json { &lines } else { &bar };
    let (mut producer, inner): (Option<Producer>, Box<dyn Read + Send>) = match a.stdin_from_command
    {
        true => {
            let (p, output) = Producer::start(&a.command)?;
            (Some(p), Box::new(output))
        }
        false => (None, Box::new(std::io::stdin())),
    };
    let read = Arc::new(AtomicU64::new(0));
    let mut source = Counted {
        inner,
        read: read.clone(),
    };
    let reader: Option<&mut (dyn Read + Send)> = streamed.then_some(&mut source);
    // Once the stream has ended, and before the snapshot is written: the producer must have
    // succeeded, and the stream must hold something.
    let allow_empty = a.allow_empty;
    let stopped = interrupt.clone();
    let mut finish = || -> cairn_engine::Result<Additions> {
        // Ctrl-C reaches the producer too, which then ends the stream: still an interrupt.
        if stopped.load(Ordering::SeqCst) {
            return Err(cairn_engine::Error::Interrupted { kept: 0 });
        }
        if let Some(p) = producer.as_mut() {
            p.check()?;
        }
        if streamed && !allow_empty && read.load(Ordering::Relaxed) == 0 {
            return Err(cairn_engine::Error::InvalidInput(
                "the stream was empty: no snapshot saved (--allow-empty saves one)".into(),
            ));
        }
        Ok(Additions::default())
    };
    // Size the job in the background, so that progress can show a share done and an ETA.
    let result = std::thread::scope(|scope| {
        if !streamed {
            let paths = opts.paths.clone();
            scope.spawn(move || {
                let (files, bytes) = scan(&paths);
                cairn_engine::Progress::total(progress, files, bytes);
            });
        }
        backup_with(&mut repo, &opts, reader, progress, &mut finish, None)
    });
    drop(source);
    bar.finish();
    // A backup that failed before the stream ended leaves the producer writing to nothing.
    if let Some(p) = producer.as_mut() {
        p.stop();
    }
    let done = result?;
    report(&done, a.json)?;
    Ok(match done.snapshot.partial {
        true => Outcome::Partial,
        false => Outcome::Complete,
    })
}

/// The command of --stdin-from-command, run with its standard output piped to the backup and
/// its standard error passed through.
struct Producer {
    shown: String,
    child: std::process::Child,
}

impl Producer {
    /// Starts the command; returns it and its standard output.
    fn start(command: &[String]) -> Result<(Producer, std::process::ChildStdout)> {
        // As a shell would read it back, for messages.
        let shown = command
            .iter()
            .map(|a| {
                let plain = !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
                match plain {
                    true => a.clone(),
                    false => format!("'{}'", a.replace('\'', r"'\''")),
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{shown}`"))?;
        let Some(output) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no pipe from `{shown}`");
        };
        Ok((Producer { shown, child }, output))
    }

    /// Waits for the command to end; an error unless it exited 0.
    fn check(&mut self) -> cairn_engine::Result<()> {
        let status = self.child.wait().map_err(|e| {
            cairn_engine::Error::InvalidInput(format!("cannot wait for `{}`: {e}", self.shown))
        })?;
        if status.success() {
            return Ok(());
        }
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => format!("failed ({status})"),
        };
        Err(cairn_engine::Error::InvalidInput(format!(
            "`{}` {how}: no snapshot saved",
            self.shown
        )))
    }

    /// Ends the command if it still runs (the backup stopped first), and reaps it.
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A reader that counts the bytes it passes on.
struct Counted {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Prints what a backup did: a summary line, or a JSON summary object.
pub fn report(done: &cairn_engine::BackupResult, json: bool) -> Result<()> {
    let s = &done.snapshot.summary;
    // How many times less the snapshot cost than a full, uncompressed copy of its files.
    let dedup = s.logical_bytes as f64 / s.bytes_added.max(1) as f64;
    if json {
        let out = json!({
            "type": "summary",
            "snapshot_id": done.id,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "files": s.files,
            "dirs": s.dirs,
            "symlinks": s.symlinks,
            "bytes_read": s.bytes_read,
            "bytes_added": s.bytes_added,
            "logical_bytes": s.logical_bytes,
            "chunks_added": s.chunks_added,
            "metadata_blobs_added": s.metadata_blobs_added,
            "metadata_bytes_added": s.metadata_bytes_added,
            "dedup_ratio": dedup,
            "skipped": s.skipped,
            "changed_during_backup": s.changed_during_backup,
            "unreadable": s.unreadable,
            "partial": done.snapshot.partial,
            "duration_s": s.duration_s,
        });
        outln!("{out}");
    } else {
        outln!(
            "snapshot {} saved: {} ({} new, {} changed, {} unchanged), {} read, {} added (dedup ratio {:.1}), in {:.2}s",
            done.id.short(),
            plural(s.files as usize, "file", "files"),
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            human_bytes(s.bytes_read),
            human_bytes(s.bytes_added),
            dedup,
            s.duration_s
        );
        if !s.changed_during_backup.is_empty() {
            outln!(
                "{} changed while being read and {} stored as read:",
                plural(s.changed_during_backup.len(), "file", "files"),
                if s.changed_during_backup.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            );
            for f in &s.changed_during_backup {
                outln!("  {f}");
            }
        }
        if !s.unreadable.is_empty() {
            outln!(
                "the snapshot is partial: {} could not be read and {} missing from it:",
                plural(s.unreadable.len(), "entry", "entries"),
                if s.unreadable.len() == 1 { "is" } else { "are" }
            );
            for f in &s.unreadable {
                outln!("  {f}");
            }
        }
    }
    Ok(())
}

/// Counts the regular files below `paths` and their bytes, without following symlinks.
fn scan(paths: &[PathBuf]) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes)
}
