//! `cairn init`.

use anyhow::{Result, bail};
use cairn_engine::{Cipher, InitOptions, KdfParams, Repository};

use crate::Globals;
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
    #[command(flatten)]
    kdf: KdfArgs,
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
