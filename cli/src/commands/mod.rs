//! One module per command.

pub mod backup;
pub mod check;
pub mod copy;
pub mod delete;
pub mod forget;
pub mod init;
pub mod key;
pub mod list;
pub mod ls;
pub mod pg;
pub mod policy;
pub mod prune;
pub mod restore;
pub mod stats;

/// What `list` and `stats` say of a repository's encryption.
/// Which snapshots `latest` and names choose among (and which ones `list`, `forget` and `copy`
/// consider).
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only snapshots taken on this host; may be repeated (any of them).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only snapshots whose source paths include this one (a stream's name for a stream); may
    /// be repeated (all of them).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Only snapshots with this tag; may be repeated (all of them).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> cairn_engine::SnapshotFilter {
        cairn_engine::SnapshotFilter {
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
            tags: self.tags.clone(),
        }
    }
}

pub fn encryption_line(cipher: &str) -> String {
    match cipher {
        "none" => "encryption: none; this repository is NOT encrypted: anyone who can read its files can read the data".to_string(),
        c => format!("encryption: {c} (every object sealed and authenticated)"),
    }
}

/// Splits `SNAPSHOT:PATH` into its parts.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) if !p.is_empty() => (s, Some(p)),
        Some((s, _)) => (s, None),
        None => (spec, None),
    }
}
