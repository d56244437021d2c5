//! `cairn init`.

use anyhow::{Result, bail};
use cairn_engine::{
    Cipher, InitOptions, KdfParams, PageGlob, PageGroup, PageRule, Repository, single_pages,
};

use crate::Globals;
use crate::password::PasswordSource;
use crate::units::parse_size;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Average chunk size, a power of two (e.g. 8KiB); fixed for the life of the repository.
    #[arg(long, default_value = "8KiB")]
    chunk_size: String,
    /// Compression: a zstd level 1..=22, or `none`.
    #[arg(long, default_value = "3")]
    compression: String,
    /// Target size of pack files (e.g. 32MiB).
    #[arg(long, default_value = "32MiB")]
    pack_size: String,
    /// Encryption: `aes-256-gcm`, `chacha20-poly1305`, or `none` (an unencrypted repository,
    /// readable by anyone who can read its files).
    #[arg(long, default_value = "aes-256-gcm")]
    encryption: String,
    /// Repository format version: 3 (the default), or 1 (unencrypted) or 2 (encrypted) for a
    /// repository that an older cairn must read; they store each chunk compressed alone.
    #[arg(long, default_value_t = cairn_engine::FORMAT_VERSION)]
    format_version: u32,
    /// Raw size of a frame: new chunks are compressed (and sealed) together in frames of
    /// this size, so that small chunks compress as a whole file would.
    #[arg(long, default_value = "512KiB")]
    frame_size: String,
    /// Cut files whose path matches GLOB into pages of SIZE bytes, one page per chunk (e.g.
    /// `**/*.ibd=16KiB`); repeatable. PostgreSQL relation files and SQLite databases are
    /// recognised anyway.
    #[arg(long, value_name = "GLOB=SIZE")]
    page_glob: Vec<String>,
    /// How many bytes of pages make one chunk of a PostgreSQL relation file, by file size:
    /// `FROM:BYTES,...` (default `0:8KiB,64MiB:16KiB`; `0:0` is one page per chunk).
    #[arg(long, value_name = "MAP")]
    pg_page_groups: Option<String>,
    /// The same for SQLite databases (default `0:0`, one page per chunk).
    #[arg(long, value_name = "MAP")]
    sqlite_page_groups: Option<String>,
    /// Cut every file by content, database files included.
    #[arg(long, conflicts_with_all = ["page_glob", "pg_page_groups", "sqlite_page_groups"])]
    no_pages: bool,
    #[command(flatten)]
    kdf: KdfArgs,
    /// Share the id key and chunker secret of this encrypted repository (and take its
    /// chunking, compression and pack size), so that `copy` between the two sends only
    /// missing data; everything else (master key, data keys, password) is the new one's own.
    #[arg(long, value_name = "REPO", conflicts_with_all = ["chunk_size", "compression", "pack_size", "encryption", "format_version", "frame_size", "page_glob", "pg_page_groups", "sqlite_page_groups", "no_pages"])]
    copy_keys_from: Option<String>,
    /// File whose first line is the password of --copy-keys-from's repository (else
    /// --from-password-command, then CAIRN_FROM_PASSWORD, then this repository's password).
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    from_password_file: Option<std::path::PathBuf>,
    /// Shell command that prints the password of --copy-keys-from's repository.
    #[arg(long, env = "CAIRN_FROM_PASSWORD_COMMAND", value_name = "COMMAND")]
    from_password_command: Option<String>,
}

/// How a password is stretched into a key (Argon2id).
#[derive(Debug, Clone, clap::Args)]
pub struct KdfArgs {
    /// Argon2id memory (e.g. 64MiB): more makes guessing passwords dearer, and every
    /// command's start slower.
    #[arg(long, default_value = "64MiB")]
    kdf_memory: String,
    /// Argon2id passes over that memory.
    #[arg(long, default_value_t = 3)]
    kdf_iterations: u32,
}

impl KdfArgs {
    /// The parameters.
    pub fn params(&self) -> Result<KdfParams> {
        let memory = parse_size(&self.kdf_memory)? / 1024;
        Ok(KdfParams {
            memory_kib: u32::try_from(memory)?,
            iterations: self.kdf_iterations,
            parallelism: 1,
        })
    }
}

pub fn run(g: &Globals, a: Args) -> Result<()> {
    let location = g.location()?;
    if let Some(from) = &a.copy_keys_from {
        return init_sharing_keys(g, &a, &location, from);
    }
    let avg = parse_size(&a.chunk_size)?;
    let pack = parse_size(&a.pack_size)?;
    let zstd_level = match a.compression.as_str() {
        "none" => None,
        s => match s.parse::<i32>() {
            Ok(l) => Some(l),
            Err(_) => bail!("--compression {s:?}: give a zstd level 1..=22 or `none`"),
        },
    };
    let encryption = match a.encryption.as_str() {
        "none" => None,
        s => Some(Cipher::from_name(s).ok_or_else(|| {
            anyhow::anyhow!("--encryption {s:?}: give aes-256-gcm, chacha20-poly1305 or none")
        })?),
    };
    let password = match encryption {
        Some(_) => Some(g.password.get(true)?),
        None => None,
    };
    let opts = InitOptions {
        avg_chunk_size: u32::try_from(avg)?,
        zstd_level,
        pack_size: u32::try_from(pack)?,
        encryption,
        password,
        kdf: a.kdf.params()?,
        format_version: a.format_version,
        frame_size: u32::try_from(parse_size(&a.frame_size)?)?,
        pages: page_rule(&a)?,
    };
    let config = Repository::init(&location, &opts)?;
    match encryption {
        Some(c) => outln!(
            "created cairn repository {} at {location}, encrypted with {}; keep the password safe: without it the data cannot be read",
            config.id.short(),
            c.name()
        ),
        None => outln!(
            "created cairn repository {} at {location}, NOT encrypted: anyone who can read its files can read the data",
            config.id.short()
        ),
    }
    Ok(())
}

/// The page rule the options describe.
fn page_rule(a: &Args) -> Result<Option<PageRule>> {
    if a.no_pages {
        return Ok(None);
    }
    let mut rule = PageRule::default();
    for g in &a.page_glob {
        let Some((glob, size)) = g.rsplit_once('=') else {
            bail!("--page-glob {g:?}: give GLOB=SIZE, e.g. '**/*.ibd=16KiB'");
        };
        rule.globs.push(PageGlob {
            glob: glob.to_string(),
            page_size: u32::try_from(parse_size(size)?)?,
            groups: single_pages(),
        });
    }
    if let Some(map) = &a.pg_page_groups {
        rule.postgresql = Some(page_groups("--pg-page-groups", map)?);
    }
    if let Some(map) = &a.sqlite_page_groups {
        rule.sqlite = Some(page_groups("--sqlite-page-groups", map)?);
    }
    Ok(Some(rule))
}

/// A chunk-size map `FROM:BYTES,...`.
fn page_groups(option: &str, map: &str) -> Result<Vec<PageGroup>> {
    map.split(',')
        .map(|step| {
            let Some((from, bytes)) = step.split_once(':') else {
                bail!("{option} {map:?}: give FROM:BYTES,... e.g. 0:8KiB,64MiB:16KiB");
            };
            Ok(PageGroup {
                from: parse_size(from)?,
                bytes: u32::try_from(parse_size(bytes)?)?,
            })
        })
        .collect()
}

/// `init --copy-keys-from`.
fn init_sharing_keys(
    g: &Globals,
    a: &Args,
    location: &cairn_engine::Location,
    from: &str,
) -> Result<()> {
    let source = PasswordSource {
        env: "CAIRN_FROM_PASSWORD",
        file: a.from_password_file.clone(),
        command: a.from_password_command.clone(),
        prompt: "password of the repository to copy keys from",
    }
    .or(&g.password);
    let src = g.open_at(&g.resolve(from)?, &source)?;
    if src.sealing().keys().is_none() {
        bail!("{from} is not encrypted: it has no keys to share (init without --copy-keys-from)");
    }
    let password = g.password.get(true)?;
    let config = Repository::init_like(location, &src, Some(password), a.kdf.params()?)?;
    outln!(
        "created cairn repository {} at {location}, encrypted with {}, sharing the id key and chunker secret of {} (copy between them sends only missing data)",
        config.id.short(),
        config.encryption,
        src.config().id.short()
    );
    Ok(())
}
