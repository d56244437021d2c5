//! `cairn restore`.

use std::path::PathBuf;

use anyhow::Result;
use cairn_engine::{RestoreOptions, restore};

use crate::Globals;
use crate::commands::split_spec;
use crate::progress::Bar;
use crate::units::{human_bytes, plural};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id, a unique id prefix, a name, or `latest`; `SNAPSHOT:PATH` restores
    /// only that path (e.g. `latest:db1` restores database db1's directory as the target).
    snapshot: String,
    /// Directory to restore into; must be new or empty, unless `--delta` restores over what
    /// it holds.
    #[arg(long, short = 't')]
    target: PathBuf,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Restore only paths matching this glob, relative to the restored root (e.g.
    /// `db1/*/2024-01-*`); may be repeated.
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out paths matching this glob, and everything below them; may be repeated.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Restore over an existing copy (e.g. yesterday's data directory), rewriting only the
    /// chunks that differ; also finishes an interrupted restore.
    #[arg(long)]
    delta: bool,
    /// With --delta, remove files of the target that the snapshot does not have.
    #[arg(long)]
    delete: bool,
    /// Read every restored file back and compare it with the snapshot.
    #[arg(long)]
    verify: bool,
    /// If data is damaged, restore everything else and list the files left out (exit
    /// status 3) instead of stopping.
    #[arg(long)]
    skip_damaged: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Return without waiting for the restored files to reach the disk: faster, but a crash
    /// soon after may leave them torn or empty.
    #[arg(long)]
    no_sync: bool,
    /// Chunks planned and written at a time (default 65536, about 512 MiB of content):
    /// smaller uses less memory.
    #[arg(
        long,
        value_name = "CHUNKS",
        default_value_t = 0,
        hide_default_value = true
    )]
    batch_chunks: usize,
}

/// Whether every file was restored.
pub enum Outcome {
    Complete,
    Incomplete,
}

pub fn run(g: &Globals, a: Args) -> Result<Outcome> {
    let (spec, sub) = split_spec(&a.snapshot);
    let mut repo = g.open()?;
    let (id, snap) = repo.resolve_filtered(spec, &a.filter.filter())?;
    let opts = RestoreOptions {
        target: a.target,
        include: a.include,
        exclude: a.exclude,
        subpath: sub.map(str::to_string),
        delta: a.delta,
        delete: a.delete,
        verify: a.verify,
        skip_damaged: a.skip_damaged,
        batch_chunks: a.batch_chunks,
        sync: !a.no_sync,
    };
    let bar = Bar::new(!a.json, "files");
    let result = restore(&mut repo, &snap, &opts, &bar);
    bar.finish();
    let s = result.map_err(|e| match e {
        cairn_engine::Error::PathNotInSnapshot { path, .. } => {
            cairn_engine::Error::PathNotInSnapshot {
                path,
                snapshot: id.short(),
            }
        }
        e => e,
    })?;
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["snapshot_id"] = serde_json::json!(id);
        outln!("{v}");
    } else {
        outln!(
            "restored snapshot {} to {}: {}, {}, {}, {} written in {:.2}s",
            id.short(),
            opts.target.display(),
            plural(s.files_restored as usize, "file", "files"),
            plural(s.dirs_restored as usize, "directory", "directories"),
            plural(s.symlinks_restored as usize, "symlink", "symlinks"),
            human_bytes(s.bytes_written),
            s.duration_s
        );
        if opts.delta {
            outln!(
                "{} already correct and kept, {} deleted",
                human_bytes(s.bytes_skipped_delta),
                plural(s.entries_deleted as usize, "entry", "entries")
            );
        }
        if opts.verify {
            outln!(
                "{} read back and verified",
                plural(s.files_verified as usize, "file", "files")
            );
        }
        if !s.files_damaged.is_empty() {
            outln!(
                "{} could not be restored and {} left out:",
                plural(s.files_damaged.len(), "file", "files"),
                if s.files_damaged.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            );
            for f in &s.files_damaged {
                outln!("  {f}");
            }
        }
    }
    Ok(if s.files_damaged.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Incomplete
    })
}
