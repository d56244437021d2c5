//! `cairn prune`.

use anyhow::{Result, bail};
use cairn_engine::{DEFAULT_MAX_UNUSED, PruneOptions, PruneReport, prune};

use crate::Globals;
use crate::progress::Bar;
use crate::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Say what would be deleted and repacked; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Repack a pack when more than this share of it is unused (e.g. 5%, 0% to reclaim
    /// everything, 100% to only delete wholly unused packs).
    #[arg(long, value_name = "PERCENT")]
    max_unused: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let max_unused = match &a.max_unused {
        None => DEFAULT_MAX_UNUSED,
        Some(p) => parse_percent(p)?,
    };
    run_prune(g, a.dry_run, max_unused, a.json)
}

/// Runs prune and prints its report (also for `forget --prune` and `delete --prune`).
pub fn run_prune(g: &Globals, dry_run: bool, max_unused: f64, json: bool) -> Result<()> {
    let mut repo = g.open()?;
    let bar = Bar::new(!json, "packs");
    let report = prune(
        &mut repo,
        &PruneOptions {
            dry_run,
            max_unused,
            rekey: false,
        },
        &bar,
    );
    bar.finish();
    print_report(&report?, json)
}

fn print_report(r: &PruneReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let verb = if r.dry_run { "would" } else { "did" };
    outln!(
        "prune {verb}: keep {} of {} packs, delete {} unused, repack {} ({} of used blobs copied), delete {} unindexed",
        r.packs_kept,
        r.packs,
        r.packs_deleted,
        r.packs_repacked,
        human_bytes(r.bytes_repacked),
        r.packs_unindexed,
    );
    outln!(
        "{} blobs used by {} snapshots, {} unused; repository {} -> {}{}",
        r.blobs_used,
        r.snapshots,
        r.blobs_unused,
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after),
        if r.dry_run { " (estimated)" } else { "" }
    );
    Ok(())
}

fn parse_percent(s: &str) -> Result<f64> {
    let n: f64 = match s.trim().strip_suffix('%').unwrap_or(s.trim()).parse() {
        Ok(n) => n,
        Err(_) => bail!("--max-unused {s:?}: give a percentage such as 5%"),
    };
    if !(0.0..=100.0).contains(&n) {
        bail!("--max-unused {s:?}: give a percentage from 0% to 100%");
    }
    Ok(n / 100.0)
}
