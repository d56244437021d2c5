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
