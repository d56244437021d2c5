//! `pg archive-wal` with its spool, without a server: one call stores every segment marked
//! ready, the calls for those return without opening the repository, and an archiver killed
//! at any point loses nothing it acknowledged.

use std::path::Path;
use std::time::Duration;

use crate::common::{Rng, Sandbox};

/// A pg_wal directory of `n` segments (1 MiB each, half random, half zeros), all ready.
fn wal_dir(sb: &Sandbox, n: u32, seed: u64) -> (std::path::PathBuf, Vec<String>) {
    let wal = sb.path("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    let mut rng = Rng(seed);
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("0000000100000000000000{:02X}", i + 1);
        let mut bytes: Vec<u8> = (0..512 * 1024).map(|_| rng.next() as u8).collect();
        bytes.resize(1 << 20, 0);
        std::fs::write(wal.join(&name), &bytes).unwrap();
        std::fs::write(
            wal.join("archive_status").join(format!("{name}.ready")),
            b"",
        )
        .unwrap();
        names.push(name);
    }
    (wal, names)
}

/// What PostgreSQL does once a segment is archived.
fn archived(wal: &Path, name: &str) {
    let status = wal.join("archive_status");
    std::fs::rename(
        status.join(format!("{name}.ready")),
        status.join(format!("{name}.done")),
    )
    .unwrap();
}

fn archive(sb: &Sandbox, wal: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let p = wal.join(name);
    let mut args = extra.to_vec();
    args.extend(["pg", "archive-wal", p.to_str().unwrap(), name]);
    sb.cairn(&args)
}

fn all_fetch_back(sb: &Sandbox, wal: &Path, names: &[String]) {
    for name in names {
        let out = sb.path(&format!("fetched-{name}"));
        sb.ok(&["pg", "fetch-wal", name, out.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(wal.join(name)).unwrap(),
            "{name}"
        );
    }
    sb.ok(&["check", "--read-data"]);
}

#[test]
fn one_call_stores_the_ready_segments_and_the_next_calls_need_no_repository() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--kdf-memory", "8MiB", "--kdf-iterations", "1"]);
    let (wal, names) = wal_dir(&sb, 6, 11);
    let out = archive(&sb, &wal, &names[0], &[]);
    assert!(out.status.success(), "{out:?}");
    archived(&wal, &names[0]);
    // One batch: one index file for all six.
    assert_eq!(
        std::fs::read_dir(sb.repo().join("index")).unwrap().count(),
        1
    );
    for name in &names[1..] {
        // A wrong password would fail any call that opens the repository.
        let out = archive(&sb, &wal, name, &["--password-file", "/nonexistent"]);
        assert!(out.status.success(), "{name}: {out:?}");
        archived(&wal, name);
    }
    // A segment changed after it was marked is not taken for stored: the repository, which
    // holds the first contents, refuses the new ones under the same name.
    let more = wal_dir_extra(&wal, "0000000100000000000000F0");
    assert!(archive(&sb, &wal, &more, &[]).status.success());
    std::fs::write(wal.join(&more), b"rewritten").unwrap();
    let out = archive(&sb, &wal, &more, &[]);
    assert!(!out.status.success(), "a changed segment was accepted");
    all_fetch_back(&sb, &wal, &names);
}

/// Adds one ready segment; returns its name.
fn wal_dir_extra(wal: &Path, name: &str) -> String {
    std::fs::write(wal.join(name), vec![7u8; 4096]).unwrap();
    std::fs::write(
        wal.join("archive_status").join(format!("{name}.ready")),
        b"",
    )
    .unwrap();
    name.to_string()
}

#[test]
fn an_archiver_killed_anywhere_loses_no_acknowledged_segment() {
    let sb = Sandbox::new();
    sb.ok(&["init", "--kdf-memory", "8MiB", "--kdf-iterations", "1"]);
    let (wal, names) = wal_dir(&sb, 12, 29);
    let mut acknowledged = Vec::new();
    let mut rng = Rng(5);
    let mut next = 0;
    let mut kills = 0;
    while next < names.len() {
        let name = &names[next];
        let p = wal.join(name);
        let mut child = sb
            .command(&["pg", "archive-wal", p.to_str().unwrap(), name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill every other call at a random moment of its first second.
        if next % 2 == 0 && kills < 8 {
            std::thread::sleep(Duration::from_millis(rng.next() % 400));
            let _ = child.kill();
            kills += 1;
        }
        let status = child.wait().unwrap();
        if status.success() {
            // PostgreSQL would now recycle the segment: it must be in the repository.
            acknowledged.push(name.clone());
            archived(&wal, name);
            let out = sb.path(&format!("check-{name}"));
            sb.ok(&["pg", "fetch-wal", name, out.to_str().unwrap()]);
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&p).unwrap());
            next += 1;
        }
    }
    assert_eq!(acknowledged, names);
    all_fetch_back(&sb, &wal, &names);
}
