//! Where passwords come from: `--password-file`, `--password-command`, `CAIRN_PASSWORD`, or a
//! prompt on the terminal (the first given wins); never the command line itself, so no password shows in `ps`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_engine::Password;

/// One way of getting a password (for the source repository, a copy's destination, or a new
/// key).
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    /// Environment variable holding the password.
    pub env: &'static str,
    /// A file whose first line is the password.
    pub file: Option<PathBuf>,
    /// A shell command that prints the password.
    pub command: Option<String>,
    /// What the prompt says.
    pub prompt: &'static str,
}

impl PasswordSource {
    /// The password, from the first source given; prompts (once, or twice with `confirm`)
    /// only when none is and a terminal is there to ask on.
    pub fn get(&self, confirm: bool) -> Result<Password> {
        if let Some(path) = &self.file {
            return read_file(path);
        }
        if let Some(cmd) = &self.command {
            return run_command(cmd);
        }
        if let Some(p) = std::env::var_os(self.env) {
            let p = p
                .into_string()
                .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", self.env))?;
            return Password::new(p).with_context(|| format!("{} is set but empty", self.env));
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "a password is needed: set {}, or give --password-file or --password-command (no terminal to ask on)",
                self.env
            );
        }
        let first = rpassword::prompt_password(format!("{}: ", self.prompt))
            .context("cannot read the password from the terminal")?;
        if confirm {
            let again = rpassword::prompt_password(format!("{} (again): ", self.prompt))
                .context("cannot read the password from the terminal")?;
            if again != first {
                bail!("the two passwords differ");
            }
        }
        Ok(Password::new(first)?)
    }

    /// This source if any of its ways was given (its variable set, a file or a command),
    /// else `fallback`: a second repository's password defaults to the first one's.
    pub fn or(self, fallback: &PasswordSource) -> PasswordSource {
        if std::env::var_os(self.env).is_some() || self.file.is_some() || self.command.is_some() {
            self
        } else {
            fallback.clone()
        }
    }

    /// Whether the password can be found again by another process without this one's
    /// environment or terminal (a file or a command): what a restored server's
    /// `restore_command` needs.
    pub fn for_other_process(&self) -> Option<String> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        if let Some(f) = &self.file {
            let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            return Some(format!(
                " --password-file {}",
                quote(&abs.display().to_string())
            ));
        }
        self.command
            .as_ref()
            .map(|c| format!(" --password-command {}", quote(c)))
    }
}

fn first_line(bytes: Vec<u8>, what: &str) -> Result<Password> {
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{what} is not UTF-8"))?;
    let line = text.lines().next().unwrap_or("").to_string();
    Password::new(line).with_context(|| format!("{what} gives an empty password"))
}

fn read_file(path: &Path) -> Result<Password> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    first_line(bytes, &format!("password file {}", path.display()))
}

fn run_command(cmd: &str) -> Result<Password> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| "cannot run the password command")?;
    if !out.status.success() {
        bail!("the password command failed ({})", out.status);
    }
    first_line(out.stdout, "the password command")
}
