//! `cairn copy`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::{CopyReport, Error, Repository, copy};

use crate::Globals;
use crate::password::PasswordSource;
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
    /// File whose first line is the destination's password (else CAIRN_TO_PASSWORD, then
    /// --to-password-command, then the source's password).
    #[arg(long, env = "CAIRN_TO_PASSWORD_FILE", value_name = "FILE")]
    to_password_file: Option<PathBuf>,
    /// Shell command that prints the destination's password.
    #[arg(long, env = "CAIRN_TO_PASSWORD_COMMAND", value_name = "COMMAND")]
    to_password_command: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Snapshots to copy (id, prefix, name or `latest`); all of them when none is given.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut src = g.open()?;
    let dst_globals = Globals {
        config: a.to_config.clone().or_else(|| g.config.clone()),
        ..g.clone()
    };
    let location = dst_globals.resolve(&a.to)?;
    let password = PasswordSource {
        env: "CAIRN_TO_PASSWORD",
        file: a.to_password_file.clone(),
        command: a.to_password_command.clone(),
        prompt: "destination password",
    }
    .or(&g.password);
    let opened = g.open_at(&location, &password);
    let not_found = matches!(
        opened.as_ref().map_err(|e| e.downcast_ref::<Error>()),
        Err(Some(Error::RepositoryNotFound { .. }))
    );
    let mut dst = match opened {
        Ok(r) => r,
        Err(_) if not_found => {
            let pw = match src.sealing().keys() {
                Some(_) => Some(password.get(true)?),
                None => None,
            };
            let config = Repository::init_like(&location, &src, pw, Default::default())
                .with_context(|| format!("cannot create the destination {location}"))?;
            if !a.json {
                outln!(
                    "created cairn repository {} at {location} with the source's parameters",
                    config.id.short()
                );
            }
            g.open_at(&location, &password)?
        }
        Err(e) => return Err(e),
    };
    dst.set_lock_wait(g.lock_wait()?);
    for w in dst.warnings() {
        errln!("warning: {w}");
    }
    let bar = Bar::new(!a.json, "packs");
    let report = copy(&mut src, &mut dst, &a.snapshots, &a.filter.filter(), &bar);
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
