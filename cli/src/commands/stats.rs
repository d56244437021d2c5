//! `cairn stats`.

use anyhow::Result;
use cairn_engine::stats;

use crate::Globals;
use crate::units::{human_bytes, short_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to list (default: all).
    snapshots: Vec<String>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let repo = g.open()?;
    let s = stats(&repo, &a.snapshots)?;
    if a.json {
        outln!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    outln!(
        "{} snapshots, {} stored ({} packs, {} blobs); {} logical, dedup {:.2}x, compression {:.2}x",
        s.snapshots,
        human_bytes(s.stored_bytes),
        s.packs,
        s.blobs,
        human_bytes(s.logical_bytes),
        s.dedup_ratio,
        s.compression_ratio
    );
    outln!("{}", crate::commands::encryption_line(&s.encryption));
    outln!(
        "{:<8}  {:<19}  {:>10}  {:>10}  {:>10}  NAME",
        "ID",
        "START",
        "SIZE",
        "ADDED",
        "UNIQUE"
    );
    for p in &s.per_snapshot {
        outln!(
            "{:<8}  {:<19}  {:>10}  {:>10}  {:>10}  {}",
            p.id.short(),
            short_time(&p.time),
            human_bytes(p.logical_bytes),
            human_bytes(p.bytes_added),
            human_bytes(p.unique_bytes),
            p.name.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
