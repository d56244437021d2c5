//! `cairn list`.

use anyhow::Result;
use serde_json::json;

use crate::Globals;
use crate::units::{human_bytes, parse_time, short_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only snapshots with this name.
    #[arg(long)]
    name: Option<String>,
    /// Only snapshots with this tag; may be repeated (all must match).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only snapshots started at or after this time (2024-01-31, RFC 3339, or a span like 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only snapshots started before this time.
    #[arg(long)]
    until: Option<String>,
    /// Only snapshots whose source paths include this one.
    #[arg(long)]
    path: Option<String>,
    /// Print one JSON array of snapshot objects.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let path = a
        .path
        .as_deref()
        .map(|p| std::path::absolute(p).map(|p| p.display().to_string()))
        .transpose()?;
    let repo = g.open()?;
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| a.name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n)))
        .filter(|(_, s)| a.tags.iter().all(|t| s.tags.contains(t)))
        .filter(|(_, s)| {
            let t = s.start();
            since.is_none_or(|x| t.is_some_and(|t| t >= x))
                && until.is_none_or(|x| t.is_some_and(|t| t < x))
        })
        .filter(|(_, s)| {
            path.as_ref()
                .is_none_or(|p| s.paths.iter().any(|q| q == p || a.path.as_ref() == Some(q)))
        })
        .collect();
    if a.json {
        let arr: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id,
                    "short_id": id.short(),
                    "name": s.name,
                    "tags": s.tags,
                    "time": s.time,
                    "time_end": s.time_end,
                    "duration_s": s.summary.duration_s,
                    "hostname": s.hostname,
                    "username": s.username,
                    "paths": s.paths,
                    "stdin": s.stdin,
                    "tree": s.tree,
                    "parent": s.parent,
                    "logical_bytes": s.summary.logical_bytes,
                    "bytes_added": s.summary.bytes_added,
                    "files": s.summary.files,
                    "summary": s.summary,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(arr));
        return Ok(());
    }
    outln!(
        "{:<8}  {:<20}  {:<19}  {:>9}  {:<19}  {:>10}  {:>10}  {:>8}  PATHS",
        "ID",
        "NAME/TAGS",
        "START",
        "DURATION",
        "END",
        "SIZE",
        "ADDED",
        "FILES"
    );
    for (id, s) in &snaps {
        let mut label = s.name.clone().unwrap_or_default();
        if !s.tags.is_empty() {
            if !label.is_empty() {
                label.push(' ');
            }
            label.push('[');
            label.push_str(&s.tags.join(","));
            label.push(']');
        }
        outln!(
            "{:<8}  {:<20}  {:<19}  {:>8.1}s  {:<19}  {:>10}  {:>10}  {:>8}  {}",
            id.short(),
            label,
            short_time(&s.time),
            s.summary.duration_s,
            short_time(&s.time_end),
            human_bytes(s.summary.logical_bytes),
            human_bytes(s.summary.bytes_added),
            s.summary.files,
            s.paths.join(" ")
        );
    }
    outln!("{} snapshots", snaps.len());
    if repo.config().cipher().is_none() {
        outln!("{}", crate::commands::encryption_line("none"));
    }
    Ok(())
}
