//! `cairn policy`.

use anyhow::Result;

use crate::Globals;
use crate::commands::forget::PolicyArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Remove the saved policy.
    #[arg(long, conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_tags"])]
    clear: bool,
}

/// With rules, saves them as the policy a plain `cairn forget` applies; without, shows it.
pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut repo = g.open()?;
    let given = a.policy.policy();
    if a.clear {
        repo.set_retention(None)?;
        outln!("retention policy removed");
    } else if !given.is_empty() {
        repo.set_retention(Some(given))?;
        outln!("retention policy saved; `cairn forget` applies it");
    }
    match &repo.config().retention {
        Some(p) => outln!("{}", serde_json::to_string(p)?),
        None if !a.clear => outln!("no retention policy saved"),
        None => {}
    }
    Ok(())
}
