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

/// Splits `SNAPSHOT:PATH` into its parts.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) if !p.is_empty() => (s, Some(p)),
        Some((s, _)) => (s, None),
        None => (spec, None),
    }
}
