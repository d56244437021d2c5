//! `cairn backup`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use cairn_engine::{BackupOptions, backup};
use serde_json::json;

use crate::Globals;
use crate::progress::{Bar, JsonLines};
use crate::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
    /// Back up standard input instead of paths.
    #[arg(long, requires = "stdin_name", conflicts_with = "paths")]
    stdin: bool,
    /// File name for the stream read with --stdin.
    #[arg(long, value_name = "NAME")]
    stdin_name: Option<String>,
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
    /// Leave out paths matching this glob, relative to the snapshot's root (`*` stays within
    /// one directory, `**` crosses them; `dir/*` keeps `dir`, empty); may be repeated.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Print progress as JSON lines (at most one a second) and end with one JSON summary
    /// object (`"type": "summary"`).
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    if a.stdin_name.is_some() && !a.stdin {
        bail!("--stdin-name needs --stdin");
    }
    let mut repo = g.open()?;
    // Ctrl-C stops the backup cleanly: what was uploaded is indexed, so the next backup does
    // not upload it again. A second Ctrl-C quits at once (still safe: see the write ordering).
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        errln!("stopping: indexing what was uploaded (Ctrl-C again to quit at once)");
    });
    let opts = BackupOptions {
        paths: a.paths,
        stdin_name: a.stdin_name,
        name: a.name,
        tags: a.tags,
        parent: a.parent,
        force_read: a.force_read,
        hostname: a.host,
        interrupt: Some(interrupt),
        exclude: a.exclude,
    };
    let bar = Bar::new(!a.json, "files");
    let lines = JsonLines::new();
    let progress: &dyn cairn_engine::Progress = if a.json { &lines } else { &bar };
    let mut stdin = std::io::stdin();
    let reader: Option<&mut (dyn std::io::Read + Send)> =
        if a.stdin { Some(&mut stdin) } else { None };
    // On a terminal, size the job in the background, so that the bar can show an ETA.
    let result = std::thread::scope(|scope| {
        if bar.enabled() && !a.stdin {
            let paths = opts.paths.clone();
            let bar = &bar;
            scope.spawn(move || {
                let (files, bytes) = scan(&paths);
                cairn_engine::Progress::total(bar, files, bytes);
            });
        }
        backup(&mut repo, &opts, reader, progress)
    });
    bar.finish();
    report(&result?, a.json)
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
            "duration_s": s.duration_s,
        });
        outln!("{out}");
    } else {
        outln!(
            "snapshot {} saved: {} files ({} new, {} changed, {} unchanged), {} read, {} added (dedup ratio {:.1}), in {:.2}s",
            done.id.short(),
            s.files,
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
                "{} files changed while being read and were stored as read:",
                s.changed_during_backup.len()
            );
            for f in &s.changed_during_backup {
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
