//! Two backups at once, and a backup killed partway, leave a valid repository.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Rng, Sandbox, snapshot_of};

fn fill(dir: &std::path::Path, files: u64, pages: u64, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(seed);
    for f in 0..files {
        let data: Vec<u8> = (0..pages).flat_map(|p| rng.page(8192, p)).collect();
        std::fs::write(dir.join(format!("{f}")), data).unwrap();
    }
}

fn spawn_backup(sb: &Sandbox, path: &std::path::Path) -> std::process::Child {
    sb.command(&["backup", "--json", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_backups_at_once() {
    let sb = Sandbox::new();
    let (a, b) = (sb.path("a"), sb.path("b"));
    fill(&a, 8, 1500, 1);
    fill(&b, 8, 1500, 2);
    // Shared content in both, so that both backups race to store the same chunks.
    fill(&a.join("common"), 2, 1500, 3);
    fill(&b.join("common"), 2, 1500, 3);
    sb.ok(&["init"]);
    let (ca, cb) = (spawn_backup(&sb, &a), spawn_backup(&sb, &b));
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    for o in [&oa, &ob] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ida: serde_json::Value = crate::common::last_json(&String::from_utf8_lossy(&oa.stdout));
    let idb: serde_json::Value = crate::common::last_json(&String::from_utf8_lossy(&ob.stdout));
    for (src, id) in [(&a, &ida), (&b, &idb)] {
        let t = sb.path(&format!("r-{}", id["snapshot_id"].as_str().unwrap()));
        sb.ok(&[
            "restore",
            id["snapshot_id"].as_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
        ]);
        assert_eq!(snapshot_of(src), snapshot_of(&t));
    }
    // And again with the shared cache gone, so that both rebuild it at once.
    std::fs::remove_dir_all(sb.cache()).unwrap();
    let (ca, cb) = (spawn_backup(&sb, &a), spawn_backup(&sb, &b));
    for o in [
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    ] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = crate::common::last_json(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(v["chunks_added"], 0, "{v}");
    }
}

#[test]
fn backup_killed_after_checkpoints_is_not_uploaded_again() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    // 2.1 GiB of pages, compressible to about 560 MiB; 1 MiB packs, so the backup writes an
    // index file (a checkpoint) every 16 MiB of packs.
    fill(&src, 64, 4200, 8);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let mut child = spawn_backup(&sb, &src);
    let index = sb.repo().join("index");
    let started = std::time::Instant::now();
    // Kill -9 once at least 20 checkpoints (~320 MiB of packs) are in.
    loop {
        let n = std::fs::read_dir(&index).map(|d| d.count()).unwrap_or(0);
        if n >= 20 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let kept: u64 = crate::common::pack_files(&sb.repo())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let done = sb.backup(&[], &[&src]);
    let added = done["bytes_added"].as_u64().unwrap();
    let total = kept + added;
    eprintln!("kept {kept} bytes of packs, the next backup added {added}");
    assert!(added * 2 < total, "re-uploaded {added} of {total}");
    // And the repository is whole: every byte verifies.
    let out = sb.cairn(&["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t = sb.path("restored");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn killed_backup_leaves_a_valid_repository() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 4, 2000, 5);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let first = sb.backup(&[], &[&src]);
    fill(&src.join("more"), 24, 4000, 6);
    for delay_ms in [150u64, 400, 900] {
        let mut child = spawn_backup(&sb, &src);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Everything that existed before is still listed and restorable.
        let list: serde_json::Value = serde_json::from_str(&sb.ok(&["list", "--json"])).unwrap();
        assert!(!list.as_array().unwrap().is_empty());
    }
    let t = sb.path("first");
    sb.ok(&[
        "restore",
        first["snapshot_id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]);
    let done = sb.backup(&[], &[&src]);
    let t = sb.path("last");
    sb.ok(&[
        "restore",
        done["snapshot_id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_what_was_uploaded() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 24, 3200, 9);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let child = spawn_backup(&sb, &src);
    let data = sb.repo().join("data");
    let started = std::time::Instant::now();
    // Interrupt once some packs are stored.
    while std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0) < 20
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted:") && err.contains("the next backup will not upload them again"),
        "{err}"
    );
    // Nothing is left unindexed: check finds no unreferenced pack.
    let check = sb.cairn(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
    let done = sb.backup(&[], &[&src]);
    assert!(done["bytes_added"].as_u64().unwrap() > 0);
    let t = sb.path("restored");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

/// Sends `signal` (`-INT`, `-TERM`) to a running backup once `packs` packs are stored; its
/// output, and how long it took to end after the signal.
fn interrupt_once_stored(
    sb: &Sandbox,
    child: std::process::Child,
    packs: usize,
    signal: &str,
) -> (std::process::Output, Duration) {
    let data = sb.repo().join("data");
    let started = std::time::Instant::now();
    while crate::common::files_under(&data).len() < packs
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    Command::new("kill").args([signal, &pid]).status().unwrap();
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, signalled.elapsed())
}

#[test]
fn ctrl_c_inside_one_large_file_stops_there() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 1, 64_000, 13); // one file of 500 MiB
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let child = spawn_backup(&sb, &src);
    let (out, after) = interrupt_once_stored(&sb, child, 10, "-INT");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "stopped {:.2} s after SIGINT, inside the file",
        after.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(sb.ok(&["list"]).contains("0 snapshots"));
    // What was uploaded before the interrupt is not uploaded again.
    let kept: u64 = err
        .split("interrupted: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(kept > 0, "{err}");
    let next = sb.backup(&[], &[&src]);
    let other = Sandbox::new();
    other.ok(&["init", "--pack-size", "1MiB"]);
    let full = other.backup(&[], &[&src]);
    let (next, full) = (
        next["bytes_added"].as_u64().unwrap(),
        full["bytes_added"].as_u64().unwrap(),
    );
    assert!(
        next + kept / 2 < full,
        "the next backup added {next} after {kept} kept; a full one adds {full}"
    );
}

#[test]
fn ctrl_c_inside_a_producer_stream_stops_it() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 1, 4_000, 14);
    let file = src.join("0");
    sb.ok(&["init", "--pack-size", "1MiB"]);
    // A producer that never ends: only the interrupt can stop this backup.
    let producer = format!("while :; do cat '{}'; done", file.display());
    let child = sb
        .command(&[
            "backup",
            "--stdin-from-command",
            "--stdin-name",
            "endless.bin",
            "--",
            "sh",
            "-c",
            &producer,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _) = interrupt_once_stored(&sb, child, 5, "-INT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(sb.ok(&["list"]).contains("0 snapshots"));
}

#[test]
fn sigterm_stops_a_backup_as_ctrl_c_does_with_its_own_status() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 1, 32_000, 15); // one file of 250 MiB
    sb.ok(&["init", "--pack-size", "1MiB"]);
    let child = spawn_backup(&sb, &src);
    let (out, after) = interrupt_once_stored(&sb, child, 5, "-TERM");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(after < Duration::from_secs(5), "{after:?}: {err}");
    assert!(err.contains("interrupted:"), "{err}");
    assert!(sb.ok(&["list"]).contains("0 snapshots"));
    // What was uploaded is indexed: check sees no pack that no index lists.
    let check = sb.cairn(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn a_file_that_changes_while_read_is_reported() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    fill(&src, 1, 100_000, 12); // one file of 780 MiB: reading it takes a while
    sb.ok(&["init"]);
    let child = spawn_backup(&sb, &src);
    // Once the backup holds its lock it has opened the repository (deriving the key takes a
    // moment) and starts reading.
    let locks = sb.repo().join("locks");
    let started = std::time::Instant::now();
    while crate::common::files_under(&locks).is_empty()
        && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(src.join("0"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"a row written during the backup").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = crate::common::last_json(&String::from_utf8_lossy(&out.stdout));
    let changed = v["changed_during_backup"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{v}");
    assert!(changed[0].as_str().unwrap().ends_with("/0"), "{v}");
}
