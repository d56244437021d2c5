//! `cairn init`.

use anyhow::{Result, bail};
use cairn_engine::{InitOptions, Repository};

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
    let opts = InitOptions {
        avg_chunk_size: u32::try_from(avg)?,
        zstd_level,
        pack_size: u32::try_from(pack)?,
    };
    let config = Repository::init(&location, &opts)?;
    outln!(
        "created cairn repository {} at {location}",
        config.id.short()
    );
    Ok(())
}
