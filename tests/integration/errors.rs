//! Bad input gets one clear line and a non-zero exit, never a panic.

use std::path::PathBuf;

use crate::common::Sandbox;

fn small_repo() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = crate::common::Rng(11);
    let a: Vec<u8> = (0..40).flat_map(|p| rng.page(8192, p)).collect();
    std::fs::write(src.join("a"), a).unwrap();
    std::fs::write(src.join("b"), b"bee").unwrap();
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    (sb, src)
}

#[test]
fn missing_repository() {
    let sb = Sandbox::new();
    let line = sb.fails(&["list"]);
    assert!(line.contains("no cairn repository at"), "{line}");
    assert!(
        !sb.repo().exists(),
        "opening must not create the repository"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["list"])
        .env_remove("CAIRN_REPO")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repo"));
}

#[test]
fn init_refuses_existing_or_foreign() {
    let (sb, _) = small_repo();
    assert!(
        sb.fails(&["init"])
            .contains("already holds a cairn repository")
    );
    let foreign = sb.path("src");
    let line = sb.fails(&["init", "--repo", foreign.to_str().unwrap()]);
    assert!(line.contains("not empty"), "{line}");
    assert!(
        sb.fails(&[
            "init",
            "--repo",
            sb.path("x").to_str().unwrap(),
            "--chunk-size",
            "1000"
        ])
        .contains("power of two")
    );
}

#[test]
fn wrong_paths_and_snapshots() {
    let (sb, src) = small_repo();
    let line = sb.fails(&["backup", sb.path("nope").to_str().unwrap()]);
    assert!(line.contains("nope"), "{line}");
    assert!(
        sb.fails(&["restore", "ffffffffff", "--target", "x"])
            .contains("no snapshot matches")
    );
    assert!(
        sb.fails(&["ls", "latest:missing/file"])
            .contains("is not in snapshot")
    );
    let target = sb.path("t");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep"), b"precious").unwrap();
    let line = sb.fails(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"precious");
    let t = sb.path("nothing");
    let line = sb.fails(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--include",
        "db9/*",
    ]);
    assert!(line.contains("nothing in the snapshot matches"), "{line}");
    let _ = src;
}

#[test]
fn repository_inside_source_is_refused() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"x").unwrap();
    let repo = src.join("backups");
    let out = sb.cairn(&["init", "--repo", repo.to_str().unwrap()]);
    assert!(out.status.success());
    let line = sb.fails(&[
        "backup",
        "--repo",
        repo.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(line.contains("inside the backup source"), "{line}");
}

#[test]
fn ambiguous_prefix() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.ok(&["init"]);
    // 17 snapshots over 16 hex digits: two share a first digit.
    let mut ids = Vec::new();
    for i in 0..17 {
        std::fs::write(src.join("f"), format!("{i}")).unwrap();
        ids.push(
            sb.backup(&[], &[&src])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|id| id.starts_with(d.as_str())).count() > 1)
        .unwrap();
    let line = sb.fails(&["ls", &digit]);
    assert!(line.contains("ambiguous"), "{line}");
}

fn only_pack(sb: &Sandbox, metadata: bool) -> PathBuf {
    // Metadata packs are the small ones; data packs hold the 300 KB file.
    let mut packs: Vec<(u64, PathBuf)> = crate::common::pack_files(&sb.repo())
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    packs.sort();
    if metadata {
        packs[0].1.clone()
    } else {
        packs.last().unwrap().1.clone()
    }
}

#[test]
fn truncated_data_pack() {
    let (sb, _) = small_repo();
    let pack = only_pack(&sb, false);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let t = sb.path("t");
    let line = sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(
        line.contains("truncated") || line.contains("damaged"),
        "{line}"
    );
}

#[test]
fn flipped_byte_in_data_pack() {
    let (sb, _) = small_repo();
    let pack = only_pack(&sb, false);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();
    let t = sb.path("t");
    let line = sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(line.contains("damaged"), "{line}");
}

#[test]
fn damaged_manifest() {
    let (sb, _) = small_repo();
    let pack = only_pack(&sb, true);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[16 + 44 + 3] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    // Restore reads every tree and list blob, whichever this byte belongs to.
    let t = sb.path("t");
    let line = sb.fails(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert!(line.contains("damaged"), "{line}");
}

#[test]
fn malformed_index_and_snapshot() {
    let (sb, _) = small_repo();
    let index = crate::common::files_under(&sb.repo().join("index")).remove(0);
    std::fs::write(&index, b"CAIRNIDX garbage").unwrap();
    std::fs::remove_dir_all(sb.cache()).unwrap();
    // The index is unreadable, so the snapshot's trees cannot be found.
    let out = sb.cairn(&["ls", "latest"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: skipped index file"), "{err}");
    assert!(!err.contains("panicked"));

    let snap = crate::common::files_under(&sb.repo().join("snapshots")).remove(0);
    let short = &snap.file_name().unwrap().to_str().unwrap()[..8];
    for broken in [&b"{\"version\":1,"[..], b""] {
        std::fs::write(&snap, broken).unwrap();
        // Listed as damaged, not a failure of the whole listing.
        assert!(
            sb.ok(&["list"]).contains(&format!("{short}  DAMAGED")),
            "{broken:?}"
        );
        assert!(sb.fails(&["ls", short]).contains("damaged"));
    }
}

#[test]
fn a_damaged_snapshot_stops_no_backup_and_can_be_deleted() {
    let (sb, src) = small_repo();
    let snap = crate::common::files_under(&sb.repo().join("snapshots")).remove(0);
    let id = snap.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::write(&snap, b"{\"version\":1,").unwrap();
    // Backups go on, reading every file (the damaged snapshot was their parent), and say why.
    let out = sb.cairn(&["backup", "--json", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: snapshot {} is not considered", &id[..8])),
        "{err}"
    );
    let summary = crate::common::last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(summary["files_new"], 2, "{summary}");
    // Listing marks it; deleting it by a prefix of its id works.
    assert!(sb.ok(&["list"]).contains(&format!("{}  DAMAGED", &id[..8])));
    sb.ok(&["delete", &id[..10]]);
    assert!(!snap.exists());
    let listed = sb.ok(&["list", "--json"]);
    assert_eq!(listed.matches("\"id\"").count(), 1);
    assert!(!listed.contains("damaged"), "{listed}");
    // A prefix that a readable and a damaged snapshot share names neither.
    let readable = crate::common::files_under(&sb.repo().join("snapshots")).remove(0);
    let name = readable.file_name().unwrap().to_str().unwrap().to_string();
    let twin = readable.with_file_name(format!("{}{}", &name[..10], "0".repeat(54)));
    std::fs::write(&twin, b"not a snapshot").unwrap();
    assert!(sb.fails(&["delete", &name[..10]]).contains("ambiguous"));
    assert!(readable.exists() && twin.exists());
}

#[test]
fn pg_commands_fail_as_postgresql_needs() {
    let (sb, _) = small_repo();
    let seg = sb.path("seg");
    // As restore_command, any status up to 125 reads as "not archived" and may end recovery
    // early: a command line fetch-wal cannot parse is a failure (200), as for other commands
    // a usage error (2).
    let out = sb.cairn(&[
        "pg",
        "fetch-wal",
        "--no-such-flag",
        "000000010000000000000001",
        seg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(200), "{out:?}");
    assert_eq!(sb.cairn(&["list", "--no-such-flag"]).status.code(), Some(2));
    // A malformed target is refused before anything is chosen or restored.
    let t = sb.path("pgdata");
    let pw = sb.path("password");
    std::fs::write(&pw, crate::common::SANDBOX_PASSWORD).unwrap();
    let line = sb.fails(&[
        "--password-file",
        pw.to_str().unwrap(),
        "pg",
        "restore",
        "--lsn",
        "0/XYZ",
        "--target",
        t.to_str().unwrap(),
    ]);
    assert!(line.contains("is not an LSN"), "{line}");
    assert!(!t.exists());
}

#[test]
fn malformed_config() {
    let (sb, _) = small_repo();
    std::fs::write(sb.repo().join("config"), b"{\"version\": 7}").unwrap();
    assert!(sb.fails(&["list"]).contains("upgrade cairn"));
    std::fs::write(sb.repo().join("config"), b"\x00\x01").unwrap();
    assert!(sb.fails(&["list"]).contains("damaged"));
}

#[test]
fn restore_into_the_repository_is_refused() {
    let (sb, _) = small_repo();
    let inside = sb.repo().join("restored");
    let line = sb.fails(&["restore", "latest", "--target", inside.to_str().unwrap()]);
    assert!(line.contains("inside the repository"), "{line}");
    assert!(!inside.exists());
}

#[test]
fn sockets_are_skipped_with_a_note() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), b"rows").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join(".s.PGSQL.5432")).unwrap();
    sb.ok(&["init"]);
    let out = sb.backup(&[], &[&src]);
    let skipped = out["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{out}");
    assert!(skipped[0].as_str().unwrap().contains("socket"), "{out}");
    assert_eq!(out["files"], 1);
}

#[test]
fn list_filters() {
    let (sb, src) = small_repo();
    sb.backup(
        &[
            "--name",
            "before-upgrade",
            "--tag",
            "pg15",
            "--tag",
            "weekly",
        ],
        &[&src],
    );
    let list = |args: &[&str]| -> usize {
        let mut a = vec!["list", "--json"];
        a.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&sb.ok(&a))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(list(&[]), 2);
    assert_eq!(list(&["--name", "before-upgrade"]), 1);
    assert_eq!(list(&["--tag", "pg15", "--tag", "weekly"]), 1);
    assert_eq!(list(&["--tag", "monthly"]), 0);
    assert_eq!(list(&["--since", "1h"]), 2);
    assert_eq!(list(&["--until", "2000-01-01"]), 0);
    assert_eq!(list(&["--path", src.to_str().unwrap()]), 2);
    assert_eq!(list(&["--path", "/elsewhere"]), 0);
    let table = sb.ok(&["list"]);
    assert!(table.contains("before-upgrade [pg15,weekly]"), "{table}");
    assert!(sb.ok(&["ls", "before-upgrade"]).contains(" b"));
    assert!(
        sb.fails(&["list", "--since", "someday"])
            .contains("not a time")
    );
    assert!(
        sb.fails(&["backup", "--name", "a:b", src.to_str().unwrap()])
            .contains("without ':'")
    );
}

#[test]
fn closed_or_full_stdout() {
    let (sb, _src) = small_repo();
    // A reader that stops early (`cairn check --json | head -c0`): no panic, and the exit
    // status is still the command's own.
    for args in [
        &["list"][..],
        &["check", "--json"],
        &["stats"],
        &["ls", "latest"],
    ] {
        let mut child = sb
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // With stderr closed too, an error still ends in its own exit status, not a panic (101).
    let mut child = sb
        .command(&["ls", "no-such-snapshot"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
    // A full disk under `>` is an error, in one line.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = sb.command(&["list"]).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "error: cannot write to standard output: No space left on device (os error 28)"
    );
}

#[test]
fn a_snapshot_file_out_of_place_is_a_stray_file() {
    let (sb, _src) = small_repo();
    let listed = sb.ok(&["list"]);
    // A copy of a real snapshot, one directory too deep: not where a snapshot lives.
    let snaps = sb.repo().join("snapshots");
    let real = std::fs::read_dir(&snaps).unwrap().next().unwrap().unwrap();
    std::fs::create_dir(snaps.join("misplaced")).unwrap();
    std::fs::copy(real.path(), snaps.join("misplaced").join(real.file_name())).unwrap();
    assert_eq!(sb.ok(&["list"]), listed);
    let report = crate::common::last_json(&sb.ok(&["check", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["kind"] == "stray-file"
                && w["object"].as_str().unwrap().contains("misplaced")),
        "{report}"
    );
}
