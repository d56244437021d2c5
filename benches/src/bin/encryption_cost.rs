//! What encryption costs: the same database files backed up into an unencrypted repository and
//! into encrypted ones (AES-256-GCM, ChaCha20-Poly1305), side by side in one run, rounds
//! interleaved so that the machine's drift falls on all alike. For each: first backup,
//! unchanged re-backup, restore, `check --read-data` (wall seconds), and the repository's size,
//! with the padding padmé adds predicted from the unencrypted repository's blobs. Each round
//! starts with a different repository.
//!
//! `cargo run --release -p cairn-benches --bin encryption_cost -- [GiB] [rounds]` (default 2, 3)

use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_benches::generate_database;
use cairn_engine::decode::{decode_index, padme};
use cairn_engine::{
    BackupOptions, CheckOptions, Cipher, InitOptions, KdfParams, Location, NoProgress, Password,
    ReadData, Repository, RestoreOptions, backup, check, restore,
};

fn du(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().map(|m| (m.is_dir(), m.len()));
            match m {
                Ok((true, _)) => total += du(&e.path()),
                Ok((false, n)) => total += n,
                Err(_) => {}
            }
        }
    }
    total
}

fn password() -> cairn_engine::Result<Password> {
    Password::new("benchmark password".into())
}

struct Run {
    first: f64,
    again: f64,
    restore: f64,
    check: f64,
    bytes: u64,
}

fn run_one(dir: &Path, src: &Path, cipher: Option<Cipher>) -> cairn_engine::Result<Run> {
    let _ = std::fs::remove_dir_all(dir);
    let location = Location::parse(&dir.join("repo").display().to_string())?;
    let cache = dir.join("cache");
    Repository::init(
        &location,
        &InitOptions {
            encryption: cipher,
            password: Some(password()?),
            kdf: KdfParams::default(),
            ..InitOptions::default()
        },
    )?;
    let mut repo = Repository::open_with(&location, &cache, &password)?;
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        ..Default::default()
    };
    let t = Instant::now();
    backup(&mut repo, &opts, None, &NoProgress)?;
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let done = backup(&mut repo, &opts, None, &NoProgress)?;
    let again = t.elapsed().as_secs_f64();
    let t = Instant::now();
    restore(
        &mut repo,
        &done.snapshot,
        &RestoreOptions {
            target: dir.join("restored"),
            ..Default::default()
        },
        &NoProgress,
    )?;
    let restore_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = check(
        &mut repo,
        &CheckOptions {
            read_data: ReadData::All,
            snapshots: Vec::new(),
        },
        &NoProgress,
    )?;
    let check_s = t.elapsed().as_secs_f64();
    assert!(report.ok, "the benchmark repository must be clean");
    let _ = std::fs::remove_dir_all(dir.join("restored"));
    Ok(Run {
        first,
        again,
        restore: restore_s,
        check: check_s,
        bytes: du(&dir.join("repo")),
    })
}

/// Padding padmé would add to the blobs of an unencrypted repository, and their payload bytes.
fn predicted_padding(repo: &Path) -> (u64, u64) {
    let (mut pad, mut payload) = (0, 0);
    for e in std::fs::read_dir(repo.join("index"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        for p in decode_index(&bytes).unwrap_or_default() {
            for b in p.blobs {
                let l = 4 + u64::from(b.stored_len);
                pad += padme(l) - l;
                payload += u64::from(b.stored_len);
            }
        }
    }
    (pad, payload)
}

fn main() -> cairn_engine::Result<()> {
    let mut args = std::env::args().skip(1);
    let gib: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let base: PathBuf = std::env::temp_dir().join(format!("cairn-enc-cost-{}", std::process::id()));
    let src = base.join("data");
    generate_database(&mut cairn_benches::Rng(7), &src, gib);
    let kinds = [
        ("none", None),
        ("aes-256-gcm", Some(Cipher::Aes256Gcm)),
        ("chacha20-poly1305", Some(Cipher::ChaCha20Poly1305)),
    ];
    println!(
        "| round | repository | first backup s | unchanged re-backup s | restore s | check --read-data s | repository bytes |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut sums = vec![(0.0, 0.0, 0.0, 0.0, 0u64); kinds.len()];
    for round in 1..=rounds {
        // Each round starts with another repository, so that none always runs first.
        let order = (0..kinds.len()).map(|i| (i + round - 1) % kinds.len());
        for k in order {
            let (name, cipher) = &kinds[k];
            let dir = base.join(name);
            let r = run_one(&dir, &src, *cipher)?;
            println!(
                "| {round} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                r.first, r.again, r.restore, r.check, r.bytes
            );
            let s = &mut sums[k];
            s.0 += r.first;
            s.1 += r.again;
            s.2 += r.restore;
            s.3 += r.check;
            s.4 = r.bytes;
            if k == 0 && round == 1 {
                let (pad, payload) = predicted_padding(&dir.join("repo"));
                println!(
                    "\npadmé on the unencrypted repository's {payload} payload bytes: {pad} bytes ({:.2}%)\n",
                    100.0 * pad as f64 / payload as f64
                );
            }
        }
    }
    println!("| repository | first backup | re-backup | restore | check --read-data | size |");
    println!("|---|---|---|---|---|---|");
    let plain = sums[0];
    for ((name, _), s) in kinds.iter().zip(&sums) {
        println!(
            "| {name} | {:+.1}% | {:+.1}% | {:+.1}% | {:+.1}% | {:+.2}% |",
            100.0 * (s.0 / plain.0 - 1.0),
            100.0 * (s.1 / plain.1 - 1.0),
            100.0 * (s.2 / plain.2 - 1.0),
            100.0 * (s.3 / plain.3 - 1.0),
            100.0 * (s.4 as f64 / plain.4 as f64 - 1.0)
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
