//! `cairn key`: the passwords that open an encrypted repository.

use std::path::PathBuf;

use anyhow::Result;
use cairn_engine::Id;

use crate::Globals;
use crate::commands::init::KdfArgs;
use crate::password::PasswordSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where a new password comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct NewPassword {
    /// File whose first line is the new password (else CAIRN_NEW_PASSWORD, then
    /// --new-password-command, then a prompt).
    #[arg(long, env = "CAIRN_NEW_PASSWORD_FILE", value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Shell command that prints the new password.
    #[arg(long, env = "CAIRN_NEW_PASSWORD_COMMAND", value_name = "COMMAND")]
    new_password_command: Option<String>,
    #[command(flatten)]
    kdf: KdfArgs,
}

impl NewPassword {
    fn source(&self) -> PasswordSource {
        PasswordSource {
            env: "CAIRN_NEW_PASSWORD",
            file: self.new_password_file.clone(),
            command: self.new_password_command.clone(),
            prompt: "new password",
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the keys: each is the repository's master key wrapped under one password.
    List {
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Add a key for another password.
    Add(NewPassword),
    /// Remove a key (never the one given now, so never the last).
    Remove {
        /// The key's id (or a unique prefix of it), from `cairn key list`.
        id: String,
    },
    /// Change the password given now: adds a key for the new one, then removes the old.
    Passwd(NewPassword),
    /// Replace every key: a new master key (for the password given now; other passwords'
    /// keys are removed, add them again) and a new data key, re-encrypt everything stored
    /// under the old one, then destroy it. Stopped midway, run it again to finish.
    Rotate {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let mut repo = g.open()?;
    match a.command {
        Command::List { json } => {
            let keys = repo.keys()?;
            if keys.is_empty() {
                outln!("{} is not encrypted: it has no keys", repo.location());
            }
            for k in keys {
                let f = &k.file;
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({
                            "id": k.id.to_hex(),
                            "current": k.current,
                            "created": f.created,
                            "host": f.host,
                            "kdf": f.kdf,
                        })
                    );
                } else {
                    outln!(
                        "{} {} {} {} argon2id {} MiB x{}",
                        if k.current { "*" } else { " " },
                        k.id.short(),
                        f.created,
                        f.host,
                        f.kdf.memory_kib / 1024,
                        f.kdf.iterations
                    );
                }
            }
        }
        Command::Add(n) => {
            let pw = n.source().get(true)?;
            let id = repo.add_key(&pw, n.kdf.params()?)?;
            outln!("added key {}", id.short());
        }
        Command::Remove { id } => {
            let keys = repo.keys()?;
            let matching: Vec<Id> = keys
                .iter()
                .map(|k| k.id)
                .filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let [one] = matching.as_slice() else {
                anyhow::bail!(
                    "key {id:?} matches {} keys; run `cairn key list` and give a unique prefix",
                    matching.len()
                );
            };
            repo.remove_key(one)?;
            outln!("removed key {}", one.short());
        }
        Command::Rotate { json } => {
            let bar = crate::progress::Bar::new(!json, "packs");
            let report = cairn_engine::rotate_keys(&mut repo, &bar);
            bar.finish();
            let r = report?;
            if json {
                outln!("{}", serde_json::to_string(&r)?);
            } else {
                outln!(
                    "{} key rotation: every object is now sealed under data key {}; {} packs re-encrypted into {}, {} other objects sealed again; old keys destroyed: epochs {:?}",
                    if r.started {
                        "finished the"
                    } else {
                        "finished a stopped"
                    },
                    r.epoch,
                    r.prune.packs_repacked,
                    r.prune.packs_written,
                    r.prune.index_files_written + r.objects_resealed,
                    r.epochs_destroyed
                );
                if !r.keys_removed.is_empty() {
                    outln!(
                        "removed {} other keys (they opened the old master key): {}; add their passwords again with `cairn key add`",
                        r.keys_removed.len(),
                        r.keys_removed
                            .iter()
                            .map(|k| &k[..8])
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        Command::Passwd(n) => {
            let pw = n.source().get(true)?;
            let id = repo.change_password(&pw, n.kdf.params()?)?;
            outln!(
                "changed the password: key {} replaces the old one",
                id.short()
            );
        }
    }
    Ok(())
}
