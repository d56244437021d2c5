//! `cairn ls`.

use std::io::Write;

use anyhow::Result;
use cairn_engine::{Node, NodeKind, walk};
use serde_json::json;

use crate::Globals;
use crate::commands::split_spec;
use crate::units::{escape, short_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id, a unique id prefix, a name, or `latest` (`SNAPSHOT:PATH` works too).
    snapshot: String,
    /// List only this path inside the snapshot and what lies below it.
    path: Option<String>,
    /// Print one JSON object per entry, one per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let (spec, sub) = split_spec(&a.snapshot);
    let sub = a.path.as_deref().or(sub);
    let repo = g.open()?;
    let (id, snap) = repo.resolve_filtered(spec, &a.filter.filter())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // A reader that went away (`cairn ls … | head`) ends the listing early, and is not an
    // error.
    let mut closed = false;
    let mut print = |path: &str, n: &Node| -> cairn_engine::Result<()> {
        let mtime = jiff::Timestamp::new(n.mtime, n.mtime_ns as i32)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let line = if a.json {
            let target = match &n.kind {
                NodeKind::Symlink(t) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            };
            json!({
                "path": path, "type": n.type_name(), "mode": format!("{:04o}", n.mode),
                "size": n.size, "mtime": mtime, "uid": n.uid, "gid": n.gid,
                "link_target": target,
            })
            .to_string()
        } else {
            let link = match &n.kind {
                NodeKind::Symlink(t) => format!(" -> {}", escape(&String::from_utf8_lossy(t))),
                _ => String::new(),
            };
            format!(
                "{} {:04o} {:>12} {} {}{link}",
                &n.type_name()[..1],
                n.mode,
                n.size,
                short_time(&mtime),
                escape(path)
            )
        };
        writeln!(out, "{line}").map_err(|e| {
            closed = e.kind() == std::io::ErrorKind::BrokenPipe;
            cairn_engine::Error::io("cannot write", "stdout", e)
        })
    };
    let walked = walk(&repo, &snap, sub, &mut print);
    if closed {
        return Ok(());
    }
    walked.map_err(|e| match e {
        cairn_engine::Error::PathNotInSnapshot { path, .. } => {
            cairn_engine::Error::PathNotInSnapshot {
                path,
                snapshot: id.short(),
            }
        }
        e => e,
    })?;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}
