//! `cairn delete`.

use anyhow::Result;
use cairn_engine::{DEFAULT_MAX_UNUSED, delete_snapshots};

use crate::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to delete: ids, unique id prefixes, names, or `latest`.
    #[arg(required = true)]
    snapshots: Vec<String>,
    /// Run prune afterwards to reclaim the space.
    #[arg(long)]
    prune: bool,
    /// Print the deleted ids (and the prune report) as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut repo = g.open()?;
    let ids = delete_snapshots(&mut repo, &a.snapshots)?;
    let wal = cairn_engine::expire_wal(&mut repo, &[], false)?;
    drop(repo);
    if a.json {
        outln!(
            "{}",
            serde_json::json!({ "deleted": ids, "wal_expired": wal })
        );
    } else {
        for id in &ids {
            outln!("deleted snapshot {}", id.short());
        }
        print_expired(&wal, false)?;
    }
    if a.prune {
        super::prune::run_prune(g, false, DEFAULT_MAX_UNUSED, a.json)?;
    } else if !a.json {
        outln!("run `cairn prune` to reclaim their space");
    }
    Ok(())
}

/// Says which archived WAL files went with the base backups that needed them.
pub fn print_expired(wal: &[String], dry_run: bool) -> Result<()> {
    if let (Some(first), Some(last)) = (wal.first(), wal.last()) {
        let verb = if dry_run { "would expire" } else { "expired" };
        outln!(
            "{verb} {} archived WAL files no remaining base backup needs ({first} .. {last})",
            wal.len()
        );
    }
    Ok(())
}
