//! `cairn list`.

use anyhow::Result;
use serde_json::json;

use crate::Globals;
use crate::units::{escape, human_bytes, parse_time, plural, short_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only snapshots with this name.
    #[arg(long)]
    name: Option<String>,
    /// Only snapshots started at or after this time (2024-01-31, RFC 3339, or a span like 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only snapshots started before this time.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// Print one JSON array of snapshot objects.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let filter = a.filter.filter();
    let repo = g.open()?;
    let (readable, damaged) = repo.snapshots_and_damaged()?;
    let snaps: Vec<_> = readable
        .into_iter()
        .filter(|(_, s)| a.name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n)))
        .filter(|(_, s)| filter.matches(s))
        .filter(|(_, s)| {
            let t = s.start();
            since.is_none_or(|x| t.is_some_and(|t| t >= x))
                && until.is_none_or(|x| t.is_some_and(|t| t < x))
        })
        .collect();
    if a.json {
        let arr: Vec<_> =
            snaps
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
                        "partial": s.partial,
                        "keep_forever": s.kept_forever(),
                        "tree": s.tree,
                        "parent": s.parent,
                        "logical_bytes": s.summary.logical_bytes,
                        "bytes_added": s.summary.bytes_added,
                        "files": s.summary.files,
                        "summary": s.summary,
                    })
                })
                .chain(damaged.iter().map(
                    |(id, e)| json!({"id": id, "short_id": id.short(), "damaged": e.to_string()}),
                ))
                .collect();
        outln!("{}", serde_json::Value::Array(arr));
        return Ok(());
    }
    outln!(
        "{:<8}  {:<20}  {:<12}  {:<19}  {:>9}  {:<19}  {:>10}  {:>10}  {:>8}  PATHS",
        "ID",
        "NAME/TAGS",
        "HOST",
        "START",
        "DURATION",
        "END",
        "SIZE",
        "ADDED",
        "FILES"
    );
    for (id, s) in &snaps {
        let mut label = s.name.as_deref().map(escape).unwrap_or_default();
        if !s.tags.is_empty() {
            if !label.is_empty() {
                label.push(' ');
            }
            label.push('[');
            label.push_str(&escape(&s.tags.join(",")));
            label.push(']');
        }
        let mut paths: Vec<String> = s.paths.iter().map(|p| escape(p)).collect();
        if s.partial {
            paths.push(format!(
                "(partial: {} unreadable)",
                s.summary.unreadable.len()
            ));
        }
        outln!(
            "{:<8}  {:<20}  {:<12}  {:<19}  {:>8.1}s  {:<19}  {:>10}  {:>10}  {:>8}  {}",
            id.short(),
            label,
            escape(&s.hostname),
            short_time(&s.time),
            s.summary.duration_s,
            short_time(&s.time_end),
            human_bytes(s.summary.logical_bytes),
            human_bytes(s.summary.bytes_added),
            s.summary.files,
            paths.join(" ")
        );
    }
    for (id, e) in &damaged {
        outln!("{:<8}  DAMAGED: {e}", id.short());
    }
    let mut total = plural(snaps.len(), "snapshot", "snapshots");
    if !damaged.is_empty() {
        total.push_str(&format!(
            ", and {} (`cairn check` tells more; `cairn delete` removes it)",
            plural(damaged.len(), "damaged one", "damaged ones")
        ));
    }
    outln!("{total}");
    if repo.config().cipher().is_none() {
        outln!("{}", crate::commands::encryption_line("none"));
    }
    Ok(())
}
