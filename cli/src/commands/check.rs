//! `cairn check`. Exit status: 0 clean, 1 damage found (even when the report cannot be written),
//! 2 the check could not run (or found no damage but could not write its report).

use anyhow::Result;
use cairn_engine::{CheckOptions, CheckReport, ReadData, check};

use crate::Globals;
use crate::progress::Bar;
use crate::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check only what these snapshots reference (ids, prefixes, names or `latest`).
    snapshots: Vec<String>,
    /// Read every pack and verify every blob (headers, decompression, BLAKE3).
    #[arg(long)]
    read_data: bool,
    /// Read only part of the data: `N/M` (deterministic; 1/7…7/7 over a week covers
    /// everything) or `P%` (random sample).
    #[arg(long, value_name = "N/M|P%", conflicts_with = "read_data")]
    read_data_subset: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What `main` should exit with after a check that ran.
pub enum Outcome {
    Clean,
    Damaged,
}

pub fn run(g: &Globals, a: Args) -> Result<Outcome> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => s.parse::<ReadData>()?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::No,
    };
    let mut repo = match g.open() {
        Ok(r) => r,
        // A config that does not authenticate (replaced, or changed) is damage, not a usage
        // error: exit as a damaged repository does.
        Err(e)
            if e.downcast_ref::<cairn_engine::Error>()
                .is_some_and(cairn_engine::Error::is_damage) =>
        {
            errln!("error: {e:#}");
            return Ok(Outcome::Damaged);
        }
        Err(e) => return Err(e),
    };
    let bar = Bar::new(!a.json, "packs");
    let opts = CheckOptions {
        read_data,
        snapshots: a.snapshots,
    };
    let result = check(&mut repo, &opts, &bar);
    bar.finish();
    let report = result?;
    match (print(&report, a.json), report.ok) {
        (Ok(()), true) => Ok(Outcome::Clean),
        (Ok(()), false) => Ok(Outcome::Damaged),
        // The damage must not be lost with the report: say so where we still can, and exit
        // as a damaged repository does.
        (Err(e), false) => {
            errln!("error: {e:#}");
            errln!(
                "DAMAGE FOUND: {} errors, {} warnings; run `cairn check` again with its output where it can be written",
                report.errors.len(),
                report.warnings.len()
            );
            Ok(Outcome::Damaged)
        }
        (Err(e), true) => Err(e),
    }
}

/// Writes the report to standard output.
fn print(report: &CheckReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        for (label, problems) in [("error", &report.errors), ("warning", &report.warnings)] {
            for p in problems {
                outln!("{label}: [{}] {}: {}", p.kind, p.object, p.detail);
                for af in &p.affected {
                    let more = if af.more_files > 0 {
                        format!(" and {} more", af.more_files)
                    } else {
                        String::new()
                    };
                    outln!("  snapshot {}: {}{more}", af.snapshot, af.files.join(", "));
                }
            }
        }
        let s = &report.stats;
        let rate = if s.duration_s > 0.0 {
            s.logical_bytes_verified as f64 / s.duration_s
        } else {
            0.0
        };
        outln!(
            "{}: {} snapshots, {} index files, {} packs, {} blobs, {} manifests; read {} packs ({}, {} verified at {}/s) in {:.2}s; {} errors, {} warnings",
            if report.ok {
                "no damage found"
            } else {
                "DAMAGE FOUND"
            },
            s.snapshots,
            s.index_files,
            s.packs,
            s.blobs,
            s.manifests,
            s.packs_read,
            human_bytes(s.bytes_read),
            human_bytes(s.logical_bytes_verified),
            human_bytes(rate as u64),
            s.duration_s,
            report.errors.len(),
            report.warnings.len()
        );
    }
    Ok(())
}
