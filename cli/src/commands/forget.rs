//! `cairn forget`, and the retention flags `cairn policy` shares.

use anyhow::Result;
use cairn_engine::{DEFAULT_MAX_UNUSED, Group, RetentionPolicy, forget};

use crate::Globals;
use crate::units::short_time;

/// Retention rules; without any, a saved policy (`cairn policy`) applies.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours (UTC).
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days (UTC).
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this long of the newest (e.g. 7d, 36h, 1y).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep every snapshot with this tag; may be repeated.
    #[arg(long = "keep-tag", value_name = "TAG")]
    keep_tags: Vec<String>,
    /// Keep every snapshot with this name (`backup --name`); may be repeated. Without it, the
    /// newest snapshot of each name is kept and older ones follow the other rules.
    #[arg(long = "keep-name", value_name = "NAME")]
    keep_names: Vec<String>,
}

impl PolicyArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within.clone(),
            keep_tags: self.keep_tags.clone(),
            keep_names: self.keep_names.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print each snapshot, kept or removed, and the rule that keeps it; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards to reclaim the space.
    #[arg(long)]
    prune: bool,
    /// Print the verdicts as one JSON array of groups.
    #[arg(long)]
    json: bool,
    /// Judge only these snapshots; the others stay whatever the policy says.
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut repo = g.open()?;
    let given = a.policy.policy();
    let policy = (!given.is_empty()).then_some(&given);
    let groups = forget(&mut repo, policy, &a.filter.filter(), a.dry_run)?;
    let going: Vec<cairn_engine::Id> = groups
        .iter()
        .flat_map(|g| g.snapshots.iter().filter(|v| !v.keep).map(|v| v.id))
        .collect();
    let wal = cairn_engine::expire_wal(&mut repo, &going, a.dry_run)?;
    drop(repo);
    if a.json {
        outln!("{}", serde_json::to_string(&groups)?);
    } else {
        print_groups(&groups, a.dry_run)?;
        super::delete::print_expired(&wal, a.dry_run)?;
    }
    if a.prune && !a.dry_run {
        super::prune::run_prune(g, false, DEFAULT_MAX_UNUSED, a.json)?;
    }
    Ok(())
}

fn print_groups(groups: &[Group], dry_run: bool) -> Result<()> {
    let (mut kept, mut removed) = (0, 0);
    for g in groups {
        outln!("host {}, paths {}:", g.hostname, g.paths.join(" "));
        for v in &g.snapshots {
            if v.keep {
                kept += 1;
                outln!(
                    "  keep    {}  {}  {}",
                    v.id.short(),
                    short_time(&v.time),
                    v.reasons.join(", ")
                );
            } else {
                removed += 1;
                let verb = if dry_run { "would remove" } else { "remove" };
                outln!("  {verb:<7} {}  {}", v.id.short(), short_time(&v.time));
            }
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    outln!("{kept} snapshots kept, {removed} {verb}; run `cairn prune` to reclaim their space");
    Ok(())
}
