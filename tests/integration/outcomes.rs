//! Honest outcomes: a partial backup says so, damage stays where it is, what cairn creates is
//! private, and names neither keep snapshots forever nor forge output lines.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Rng, Sandbox, database, files_under, last_json, snapshot_of};

/// cairn as a user that permission bits stop: the tests' own user, or `nobody` when they run
/// as root (root reads any file whatever its mode).
struct Unprivileged {
    program: PathBuf,
    ids: Option<(u32, u32)>,
}

impl Unprivileged {
    /// Call once the sandbox holds everything the test made: as root, the sandbox is handed
    /// to `nobody`, with a copy of cairn it can run.
    fn new(sb: &Sandbox) -> Unprivileged {
        if !rustix::process::geteuid().is_root() {
            return Unprivileged {
                program: PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
                ids: None,
            };
        }
        let program = sb.path("cairn-bin");
        std::fs::copy(env!("CARGO_BIN_EXE_cairn"), &program).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(sb.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        Unprivileged {
            program,
            ids: Some((65534, 65534)),
        }
    }

    fn run(&self, sb: &Sandbox, args: &[&str]) -> Output {
        let mut c = sb.command_of(&self.program, args);
        if let Some((uid, gid)) = self.ids {
            c.uid(uid).gid(gid).env("HOME", sb.dir.path());
        }
        c.output().unwrap()
    }
}

#[test]
fn unreadable_entries_make_a_partial_snapshot_that_says_so() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("readable"), b"rows").unwrap();
    std::fs::write(src.join("secret"), b"not for us").unwrap();
    std::fs::write(src.join("locked/inside"), b"nor this").unwrap();
    sb.ok(&["init"]);
    let cairn = Unprivileged::new(&sb);
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let source = src.to_str().unwrap();

    // --strict: no snapshot at all.
    let strict = cairn.run(&sb, &["backup", "--strict", source]);
    let err = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(1), "{err}");
    assert!(err.contains("secret") || err.contains("locked"), "{err}");

    let out = cairn.run(&sb, &["backup", source]);
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{text}{err}");
    assert!(
        text.contains("the snapshot is partial: 2 entries"),
        "{text}"
    );
    for name in ["secret", "locked"] {
        let listed = src.join(name).display().to_string();
        assert!(
            text.contains(&listed) && err.contains(&listed),
            "{text}{err}"
        );
    }
    let json = cairn.run(&sb, &["backup", "--json", source]);
    assert_eq!(json.status.code(), Some(3));
    let summary = last_json(&String::from_utf8_lossy(&json.stdout));
    assert_eq!(summary["partial"], true, "{summary}");
    assert_eq!(
        summary["unreadable"].as_array().unwrap().len(),
        2,
        "{summary}"
    );

    let list = cairn.run(&sb, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let snaps = list.as_array().unwrap();
    assert_eq!(snaps.len(), 2, "--strict saved nothing: {list}");
    assert!(snaps.iter().all(|s| s["partial"] == true), "{list}");
    let text = String::from_utf8(cairn.run(&sb, &["list"]).stdout).unwrap();
    assert!(text.contains("(partial: 2 unreadable)"), "{text}");

    // What could be read is there.
    let target = sb.path("restored");
    let restored = cairn.run(
        &sb,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(restored.status.success(), "{restored:?}");
    assert_eq!(std::fs::read(target.join("readable")).unwrap(), b"rows");
    assert!(!target.join("secret").exists() && !target.join("locked").exists());
}

#[test]
fn the_backed_up_directory_keeps_its_own_mode_owner_and_mtime() {
    let sb = Sandbox::new();
    let src = sb.path("pgdata");
    std::fs::create_dir_all(src.join("base")).unwrap();
    std::fs::write(src.join("PG_VERSION"), b"15\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_700_000_000, 123_456_789);
    filetime::set_file_mtime(&src, mtime).unwrap();
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    let target = sb.path("restored");
    sb.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let (a, b) = (src.metadata().unwrap(), target.metadata().unwrap());
    assert_eq!(b.mode() & 0o7777, 0o700);
    assert_eq!((b.mtime(), b.mtime_nsec()), (a.mtime(), a.mtime_nsec()));
    assert_eq!((b.uid(), b.gid()), (a.uid(), a.gid()));
    assert_eq!(snapshot_of(&src), snapshot_of(&target));
}

/// Flips one byte in the middle of `file`.
fn flip_middle(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn one_damaged_snapshot_hides_no_other() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.ok(&["init"]);
    let mut ids = Vec::new();
    let mut versions = Vec::new();
    for round in 0..3 {
        let table = format!("version {round}").repeat(1000);
        std::fs::write(src.join("table"), &table).unwrap();
        versions.push(table);
        ids.push(
            sb.backup(&[], &[&src])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // The newest one is damaged: `latest` is then the one before it.
    flip_middle(&sb.repo().join("snapshots").join(&ids[2]));

    let text = sb.ok(&["list"]);
    assert!(
        text.contains(&ids[0][..8]) && text.contains(&ids[1][..8]),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}  DAMAGED", &ids[2][..8])),
        "{text}"
    );
    assert!(text.contains("2 snapshots, and 1 damaged one"), "{text}");
    let list: serde_json::Value = serde_json::from_str(&sb.ok(&["list", "--json"])).unwrap();
    let damaged: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("damaged").is_some())
        .collect();
    assert_eq!(damaged.len(), 1, "{list}");
    assert_eq!(damaged[0]["id"], ids[2].as_str());

    for (spec, version) in [("latest", &versions[1]), (&ids[0][..10], &versions[0])] {
        let target = sb.path(&format!("restored-{spec}"));
        sb.ok(&["restore", spec, "--target", target.to_str().unwrap()]);
        let restored = std::fs::read_to_string(target.join("table")).unwrap();
        assert!(restored == *version, "{spec}");
    }
    // Named, the damaged one says what is wrong with it; check reports it.
    let err = sb.fails(&[
        "restore",
        &ids[2],
        "--target",
        sb.path("x").to_str().unwrap(),
    ]);
    assert!(err.contains(&ids[2][..8]), "{err}");
    let check = sb.cairn(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains(&ids[2][..8]));
}

/// The cache's table files.
fn cache_tables(sb: &Sandbox) -> Vec<PathBuf> {
    files_under(&sb.cache())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect()
}

#[test]
fn a_damaged_cache_is_rebuilt_with_one_warning() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    database(&src, 2, 200, &mut Rng(5));
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    let target = sb.path("restored");
    let target_arg = target.to_str().unwrap().to_string();
    let runs: [&[&str]; 3] = [
        &["backup", "--force-read", src.to_str().unwrap()],
        &["restore", "latest", "--target", &target_arg],
        &["check"],
    ];
    for args in runs {
        let tables = cache_tables(&sb);
        assert!(
            !tables.is_empty(),
            "no table file in {:?}",
            files_under(&sb.cache())
        );
        for t in &tables {
            flip_middle(t);
        }
        let out = sb.cairn(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("cache")).collect();
        assert_eq!(warnings.len(), 1, "{args:?}: {err}");
        assert!(warnings[0].starts_with("warning: "), "{err}");
    }
    assert_eq!(snapshot_of(&src), snapshot_of(&target));

    // Something else where the cache directory belongs is moved aside.
    let dirs: Vec<PathBuf> = std::fs::read_dir(sb.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    std::fs::remove_dir_all(&dirs[0]).unwrap();
    std::fs::write(&dirs[0], b"not a cache").unwrap();
    let out = sb.cairn(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("moved to"), "{err}");
    assert!(dirs[0].is_dir());
}

#[test]
fn what_cairn_creates_is_private() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    database(&src, 1, 50, &mut Rng(6));
    // As cron would run it: umask 022.
    let run = |args: &[&str]| {
        let mut c = sb.command(args);
        // SAFETY: umask only changes the child's file-creation mask; no other state.
        #[allow(unsafe_code)]
        unsafe {
            c.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
                Ok(())
            });
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    run(&["init"]);
    run(&["backup", src.to_str().unwrap()]);
    for root in [sb.repo(), sb.cache()] {
        let mut seen = 0;
        for entry in walk(&root) {
            let m = std::fs::symlink_metadata(&entry).unwrap();
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(m.mode() & 0o777, want, "{}", entry.display());
            seen += 1;
        }
        assert!(seen > 5, "{}", root.display());
    }
}

/// `root` and everything below it.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut more: Vec<PathBuf> = std::fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            more.sort();
            out.extend(more);
        }
        i += 1;
    }
    out
}

#[test]
fn a_nightly_name_is_retained_by_the_policy_not_forever() {
    use cairn_engine::{Id, Snapshot};

    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.ok(&["init", "--encryption", "none"]);
    // Ten nights of `backup --name nightly`, each moved to its night.
    let snaps = sb.repo().join("snapshots");
    let mut night_of = std::collections::HashMap::new();
    for night in 1..=10 {
        std::fs::write(src.join("table"), format!("night {night}")).unwrap();
        let id = sb.backup(&["--name", "nightly"], &[&src])["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        let bytes = std::fs::read(snaps.join(&id)).unwrap();
        let mut s = Snapshot::decode(&bytes, &Id::of(&bytes)).unwrap();
        std::fs::remove_file(snaps.join(&id)).unwrap();
        s.time = format!("2026-11-{night:02}T02:00:00Z");
        s.time_end = format!("2026-11-{night:02}T02:05:00Z");
        let bytes = s.encode();
        let id = Id::of(&bytes).to_hex();
        std::fs::write(snaps.join(&id), bytes).unwrap();
        night_of.insert(id, night);
    }
    // The documented rule: names are judged like any snapshot, and the newest of each name
    // stays; --keep-daily 3 keeps nights 8, 9 and 10.
    let dry: serde_json::Value =
        serde_json::from_str(&sb.ok(&["forget", "--dry-run", "--json", "--keep-daily", "3"]))
            .unwrap();
    let mut kept: Vec<(u32, Vec<String>)> = dry[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["keep"] == true)
        .map(|v| {
            let reasons = v["reasons"].as_array().unwrap();
            (
                night_of[v["id"].as_str().unwrap()],
                reasons
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            (8, vec!["daily".to_string()]),
            (9, vec!["daily".to_string()]),
            (
                10,
                vec!["daily".to_string(), "newest named nightly".to_string()]
            ),
        ]
    );
    sb.ok(&["forget", "--keep-daily", "3"]);
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 3);
    // --keep-forever is the explicit way to keep one.
    let forever = sb.backup(&["--keep-forever"], &[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    sb.ok(&["forget", "--keep-last", "1"]);
    sb.ok(&["forget", "--keep-last", "1"]);
    let left: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.contains(&forever), "{left:?}");
}

#[test]
fn names_reach_the_terminal_escaped_and_json_exact() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let forged = "x\nd 0755            0 2026-01-01 00:00:00 passwd\u{1b}[2J";
    std::fs::write(src.join(forged), b"").unwrap();
    sb.ok(&["init"]);
    sb.backup(&["--host", "db\u{1b}[31m1"], &[&src]);
    let ls = sb.ok(&["ls", "latest"]);
    assert_eq!(ls.lines().count(), 1, "{ls:?}");
    assert!(
        ls.contains("x\\nd\\ 0755") && ls.contains("\\033[2J"),
        "{ls:?}"
    );
    let list = sb.ok(&["list"]);
    assert!(
        list.contains("db\\033[31m1") && !list.contains('\u{1b}'),
        "{list:?}"
    );
    let json = sb.ok(&["ls", "latest", "--json"]);
    let entry: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(entry["path"], forged);
}

#[test]
fn a_restore_over_a_damaged_pack_leaves_no_wrong_file_at_its_name() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    database(&src, 8, 200, &mut Rng(9)); // 8 files of 1.6 MiB, over many 1 MiB packs
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    let pack = files_under(&sb.repo().join("data"))
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    flip_middle(&pack);

    // Every file at its final name is the source's; the rest is not there under that name.
    let right_or_absent = |target: &Path| {
        let mut right = 0;
        for f in files_under(target) {
            let name = f.file_name().unwrap().to_str().unwrap();
            if name.starts_with(".cairn-part-") {
                continue;
            }
            let rel = f.strip_prefix(target).unwrap();
            assert!(
                std::fs::read(&f).unwrap() == std::fs::read(src.join(rel)).unwrap(),
                "{} is at its name with the wrong content",
                rel.display()
            );
            right += 1;
        }
        right
    };
    let stopped = sb.path("stopped");
    let out = sb.cairn(&["restore", "latest", "--target", stopped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(right_or_absent(&stopped) < 8);

    let skipped = sb.path("skipped");
    let out = sb.cairn(&[
        "restore",
        "latest",
        "--skip-damaged",
        "--json",
        "--target",
        skipped.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let summary = last_json(&String::from_utf8_lossy(&out.stdout));
    let missing = summary["files_damaged"].as_array().unwrap();
    assert!(!missing.is_empty(), "{summary}");
    assert_eq!(right_or_absent(&skipped) + missing.len(), 8, "{summary}");
    // Left out means gone: nothing half written stays behind under another name either.
    assert!(
        files_under(&skipped)
            .iter()
            .all(|f| !f.to_str().unwrap().contains(".cairn-part-"))
    );
}

#[test]
fn latest_is_chosen_by_host_path_and_tag() {
    let sb = Sandbox::new();
    let (a, b) = (sb.path("a"), sb.path("b"));
    std::fs::create_dir_all(a.join("db1")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("db1/table"), b"rows of db1").unwrap();
    std::fs::write(b.join("other"), b"rows of b").unwrap();
    sb.ok(&["init"]);
    sb.backup(&["--host", "db1", "--tag", "files"], &[&a]);
    sb.backup(&["--host", "db2"], &[&b]);
    sb.backup(&["--host", "db1"], &[&a]);
    // The newest snapshot is a dump: a plain `latest:db1` now names a path it lacks.
    let out = sb
        .command(&[
            "backup",
            "--stdin",
            "--stdin-name",
            "dump.sql",
            "--host",
            "db1",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"CREATE TABLE t();")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let a_arg = a.to_str().unwrap();

    for (filter, want) in [
        (vec!["--path", a_arg], "rows of db1"),
        (vec!["--tag", "files"], "rows of db1"),
    ] {
        let target = sb.path(&format!("restored-{}", filter[0]));
        let mut args = vec![
            "restore",
            "latest:db1/table",
            "--target",
            target.to_str().unwrap(),
        ];
        args.extend(&filter);
        sb.ok(&args);
        assert_eq!(
            std::fs::read(target.join("table")).unwrap(),
            want.as_bytes()
        );
    }
    let ls = sb.ok(&["ls", "latest", "--host", "db2"]);
    assert!(ls.contains("other") && !ls.contains("db1"), "{ls}");
    let err = sb.fails(&["ls", "latest", "--host", "db3"]);
    assert!(err.contains("latest --host db3"), "{err}");

    let list = sb.ok(&["list", "--host", "db1"]);
    assert!(
        list.contains("3 snapshots") && list.contains("dump.sql"),
        "{list}"
    );
    // forget judges only what the filter lets through: db1's older backup of `a` goes, and
    // db2's one snapshot stays.
    sb.ok(&["forget", "--host", "db1", "--keep-last", "1"]);
    let list = sb.ok(&["list"]);
    assert!(list.contains("3 snapshots"), "{list}");
    assert!(
        list.contains("db2") && list.contains("dump.sql") && !list.contains("files"),
        "{list}"
    );
}

#[test]
fn progress_without_a_terminal_comes_as_lines_at_an_interval() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    database(&src, 4, 4000, &mut Rng(10)); // 125 MiB
    sb.ok(&["init"]);
    let out = sb
        .command(&["backup", src.to_str().unwrap()])
        .env("CAIRN_PROGRESS_INTERVAL", "0.05")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!lines.is_empty(), "{err}");
    assert!(
        lines.iter().all(|l| l.contains("% of 125.0 MiB (4 files)")),
        "{err}"
    );
    // --json: the same figures, with the share done, once a second.
    std::fs::write(src.join("16384"), b"changed").unwrap();
    let out = sb.ok(&["backup", "--json", "--force-read", src.to_str().unwrap()]);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "progress" {
            assert!(
                v["percent_done"].as_f64().is_some_and(|p| p <= 100.0),
                "{v}"
            );
            assert_eq!(v["files_total"], 4, "{v}");
        }
    }
}
