//! `cairn copy`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::{CopyReport, Error, Repository, copy};

use crate::Globals;
use crate::progress::Bar;
use crate::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The destination repository: a local path or s3://BUCKET/PREFIX. Created with the
    /// source's chunking, compression and pack size when it does not exist.
    #[arg(long, value_name = "REPO")]
    to: String,
    /// TOML file with the destination's [s3] settings, when they differ from the source's
    /// (--config); what it leaves out comes from the AWS_* environment variables.
    #[arg(long, value_name = "FILE")]
    to_config: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Snapshots to copy (id, prefix, name or `latest`); all of them when none is given.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut src = g.open()?;
    let dst_globals = Globals {
        config: a.to_config.clone().or_else(|| g.config.clone()),
        ..g.clone()
    };
    let location = dst_globals.resolve(&a.to)?;
    let cache = g.cache_dir();
    let mut dst = match Repository::open(&location, &cache) {
        Ok(r) => r,
        Err(Error::RepositoryNotFound { .. }) => {
            let config = Repository::init_like(&location, src.config())
                .with_context(|| format!("cannot create the destination {location}"))?;
            if !a.json {
                outln!(
                    "created cairn repository {} at {location} with the source's parameters",
                    config.id.short()
                );
            }
            Repository::open(&location, &cache)?
        }
        Err(e) => return Err(e.into()),
    };
    dst.set_lock_wait(g.lock_wait()?);
    for w in dst.warnings() {
        errln!("warning: {w}");
    }
    let bar = Bar::new(!a.json, "packs");
    let report = copy(&mut src, &mut dst, &a.snapshots, &bar);
    bar.finish();
    print_report(&report?, a.json)
}

fn print_report(r: &CopyReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    outln!(
        "copied {} snapshots ({} already there): {} blobs, {} in {} packs ({} blobs already there) in {:.2}s",
        r.snapshots_copied,
        r.snapshots_present,
        r.blobs_copied,
        human_bytes(r.bytes_copied),
        r.packs_written,
        r.blobs_present,
        r.duration_s
    );
    if r.wal_files_copied + r.wal_files_present > 0 {
        outln!(
            "copied {} archived WAL files ({} already there)",
            r.wal_files_copied,
            r.wal_files_present
        );
    }
    Ok(())
}
