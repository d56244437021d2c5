//! Encrypted repositories (the default): nothing readable at rest, every kind of tampering
//! caught and never restored, passwords and keys.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cairn_engine::decode::BlobKind;
use cairn_engine::{Location, NodeKind, Password, Repository};

use crate::common::{
    Rng, SANDBOX_PASSWORD, Sandbox, copy_dir, files_under, last_json, snapshot_of,
};

/// Strings that must appear nowhere in the repository: in file and directory names, in rows.
const MARKERS: &[&str] = &[
    "tenant_PLUTO42",
    "ledger_QX7Z",
    "SECRET-ROW-ZEBRA",
    "alice.wonder@example.org",
];

/// A source of database-like pages with marked rows, an incompressible file, a small file.
fn source(sb: &Sandbox) -> PathBuf {
    let src = sb.path("src");
    let dir = src.join("tenant_PLUTO42");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(2026);
    let mut pages = Vec::new();
    for p in 0..300 {
        let mut page = rng.page(8192, p);
        let row = format!("SECRET-ROW-ZEBRA {p} alice.wonder@example.org");
        page[100..100 + row.len()].copy_from_slice(row.as_bytes());
        pages.extend(page);
    }
    std::fs::write(dir.join("ledger_QX7Z.db"), &pages).unwrap();
    let noise: Vec<u8> = (0..600_000).map(|_| rng.next() as u8).collect();
    std::fs::write(dir.join("noise.bin"), &noise).unwrap();
    std::fs::write(src.join("small.txt"), b"SECRET-ROW-ZEBRA alone").unwrap();
    src
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nothing_is_readable_at_rest() {
    let sb = Sandbox::new();
    let src = source(&sb);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&["--name", "ledger_QX7Z"], &[&src]);
    let mut child = sb
        .command(&["backup", "--stdin", "--stdin-name", "tenant_PLUTO42.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"INSERT INTO t VALUES ('alice.wonder@example.org');",
    )
    .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // Samples of the incompressible file: stored raw in an unencrypted repository.
    let noise = std::fs::read(src.join("tenant_PLUTO42/noise.bin")).unwrap();
    let samples: Vec<&[u8]> = (0..20)
        .map(|i| &noise[i * 29_000..i * 29_000 + 24])
        .collect();
    let files = files_under(&sb.repo());
    assert!(files.len() > 8, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let name = f.display().to_string();
        for m in MARKERS {
            assert!(!contains(&bytes, m.as_bytes()), "{m} is readable in {name}");
            assert!(!name.contains(m), "{m} is in the name {name}");
        }
        for s in &samples {
            assert!(!contains(&bytes, s), "file contents are readable in {name}");
        }
    }
    // The same backup into an unencrypted repository shows them: the test would see a leak.
    let plain = Sandbox::new();
    plain.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    plain.backup(&["--name", "ledger_QX7Z"], &[&src]);
    let all: Vec<u8> = files_under(&plain.repo())
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(contains(&all, b"ledger_QX7Z") && contains(&all, samples[0]));
    // Said plainly where an operator looks.
    assert!(plain.ok(&["list"]).contains("NOT encrypted"));
    assert!(plain.ok(&["stats"]).contains("NOT encrypted"));
    assert!(sb.ok(&["stats"]).contains("encryption: aes-256-gcm"));
    assert!(!sb.ok(&["list"]).contains("NOT encrypted"));
    // And the encrypted one gives everything back.
    let t = sb.path("restored");
    sb.ok(&["restore", "ledger_QX7Z", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
    let listed = sb.ok(&["list"]);
    assert!(listed.contains("ledger_QX7Z"), "{listed}");
}

/// An encrypted repository with one snapshot of [`source`], and that source.
fn backed_up() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let src = source(&sb);
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    (sb, src)
}

/// Copies every snapshot of `from` into `to`, whose password is the first line of `pw`;
/// returns the report.
fn copy_into(from: &Sandbox, to: &Sandbox, pw: &Path) -> serde_json::Value {
    last_json(&from.ok(&[
        "copy",
        "--to",
        &to.repo_spec,
        "--to-password-file",
        pw.to_str().unwrap(),
        "--json",
    ]))
}

/// An encrypted repository with two snapshots over several data packs, and its source.
fn pristine() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let src = source(&sb);
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    std::fs::write(src.join("small.txt"), b"a second snapshot").unwrap();
    sb.backup(&[], &[&src]);
    (sb, src)
}

/// A copy of `pristine`'s repository in a sandbox of its own (same password, own cache).
fn copy_of(pristine: &Sandbox) -> Sandbox {
    let sb = Sandbox::new();
    copy_dir(&pristine.repo(), &sb.repo());
    sb
}

fn packs(sb: &Sandbox) -> Vec<PathBuf> {
    files_under(&sb.repo().join("data"))
}

fn id_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// `check` exits 1 and its output names `what`; a restore writes no byte that did not
/// authenticate: every byte of every restored file is the source's, or was never written (a
/// hole left where a damaged chunk would go; whether such a file may stay is another matter).
fn caught(sb: &Sandbox, src: &Path, read_data: bool, what: &str) {
    let mut args = vec!["check"];
    if read_data {
        args.push("--read-data");
    }
    let out = sb.cairn(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{what}: {text}");
    assert!(text.contains(what), "check does not name {what}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    let t = sb.path("restored");
    let out = sb.cairn(&["restore", "latest", "--target", t.to_str().unwrap()]);
    for f in files_under(&t) {
        let rel = f.strip_prefix(&t).unwrap();
        let Ok(want) = std::fs::read(src.join(rel)) else {
            continue;
        };
        let got = std::fs::read(&f).unwrap();
        assert!(got.len() <= want.len(), "{what}: {} grew", rel.display());
        let foreign = got.iter().zip(&want).position(|(g, w)| g != w && *g != 0);
        assert_eq!(
            foreign,
            None,
            "{what}: {} holds bytes not its own",
            rel.display()
        );
    }
    if out.status.success() {
        assert_eq!(
            snapshot_of(&t),
            snapshot_of(src),
            "{what}: restore succeeded but differs"
        );
    }
}

/// The files of `pristine`'s two snapshots, older first.
fn older_and_newer(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let listed = last_json(&sb.ok(&["list", "--json"]));
    let file = |i: usize| {
        sb.repo()
            .join("snapshots")
            .join(listed[i]["id"].as_str().unwrap())
    };
    (file(0), file(1))
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tampering_is_caught_and_never_restored() {
    let (base, src) = pristine();
    assert!(
        base.ok(&["check", "--read-data"])
            .contains("no damage found")
    );

    // A flipped byte in every kind of object.
    let sb = copy_of(&base);
    let pack = packs(&sb)
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    flip(&pack, 5000);
    caught(&sb, &src, true, &id_of(&pack)[..8]);

    let sb = copy_of(&base);
    let index = files_under(&sb.repo().join("index")).remove(0);
    flip(&index, 40);
    caught(&sb, &src, false, &id_of(&index)[..8]);

    // The older snapshot: `latest`, the newer one, stays intact and restores.
    let sb = copy_of(&base);
    let (snap, _) = older_and_newer(&sb);
    flip(&snap, 60);
    caught(&sb, &src, false, &id_of(&snap)[..8]);

    // A pack's sealed directory (its last bytes): read with the data.
    let sb = copy_of(&base);
    let pack = packs(&sb).remove(0);
    let len = pack.metadata().unwrap().len() as usize;
    flip(&pack, len - 40);
    caught(&sb, &src, true, &id_of(&pack)[..8]);

    // Two packs trading names: found by their sizes, and with the data by their digests.
    let sb = copy_of(&base);
    let all = packs(&sb);
    let (a, b) = (&all[0], &all[1]);
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    std::fs::write(a, bb).unwrap();
    std::fs::write(b, ba).unwrap();
    caught(&sb, &src, false, &id_of(a)[..8]);
    caught(&sb, &src, true, &id_of(b)[..8]);

    // The older snapshot's file holding the newer one's bytes.
    let sb = copy_of(&base);
    let (older, newer) = older_and_newer(&sb);
    std::fs::copy(&newer, &older).unwrap();
    caught(&sb, &src, false, &id_of(&older)[..8]);

    // Two blobs of one pack, of equal sealed length, trading places (format version 2: each
    // blob sealed alone, its id in its associated data).
    let v2 = Sandbox::new();
    let v2_src = source(&v2);
    v2.ok(&["init", "--format-version", "2", "--pack-size", "1MiB"]);
    v2.backup(&[], &[&v2_src]);
    swap_two_blobs(&v2);
    caught(&v2, &v2_src, true, "does not authenticate");

    // Two frames of equal sealed length trading places (format version 3: here each frame
    // holds one page of random bytes). Both open; their pages do not match their ids.
    let v3 = Sandbox::new();
    let db = v3.path("pages");
    std::fs::create_dir_all(&db).unwrap();
    let mut rng = Rng(7);
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend_from_slice(&4096u16.to_be_bytes());
    bytes.resize(4096 * 9, 0);
    for b in &mut bytes[4096..] {
        *b = rng.next() as u8;
    }
    std::fs::write(db.join("shop.sqlite"), &bytes).unwrap();
    v3.ok(&["init", "--frame-size", "4KiB"]);
    v3.backup(&[], &[&db]);
    swap_two_blobs(&v3);
    caught(&v3, &db, true, "do not match its id");

    // The config: changed, or replaced by another repository's (made with the same password).
    let sb = copy_of(&base);
    let config = sb.repo().join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    let at = text.find("\"sealed\":\"").unwrap() + 80;
    flip(&config, at);
    caught(&sb, &src, false, "config");
    let sb = copy_of(&base);
    let other = Sandbox::new();
    other.ok(&["init"]);
    std::fs::copy(other.repo().join("config"), sb.repo().join("config")).unwrap();
    caught(&sb, &src, false, "config");
}

/// Finds two chunks in one pack, stored apart (as blobs or frames) with the same sealed length,
/// and swaps their bytes.
fn swap_two_blobs(sb: &Sandbox) {
    let location = Location::parse(sb.repo().to_str().unwrap()).unwrap();
    let pw = || Password::new(SANDBOX_PASSWORD.to_string());
    let repo = Repository::open_with(&location, &sb.path("engine-cache"), &pw).unwrap();
    let mut ids = Vec::new();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let mut trees = vec![snap.tree];
    while let Some(t) = trees.pop() {
        for node in repo.load_tree(&t).unwrap().nodes {
            match node.kind {
                NodeKind::Dir(sub) => trees.push(sub),
                NodeKind::File(content) => repo
                    .for_each_chunk(&content, &mut |r| {
                        ids.push(r.id);
                        Ok(())
                    })
                    .unwrap(),
                NodeKind::Symlink(_) => {}
            }
        }
    }
    let locs: Vec<_> = ids
        .iter()
        .map(|id| repo.locate(BlobKind::Data, id).unwrap())
        .collect();
    for (i, a) in locs.iter().enumerate() {
        for b in &locs[i + 1..] {
            if a.pack == b.pack
                && a.entry.stored_len == b.entry.stored_len
                && a.entry.offset != b.entry.offset
            {
                let hex = a.pack.to_hex();
                let path = sb.repo().join("data").join(&hex[..2]).join(&hex);
                let mut bytes = std::fs::read(&path).unwrap();
                let (x, y, n) = (
                    a.entry.offset as usize,
                    b.entry.offset as usize,
                    a.entry.stored_len as usize,
                );
                let blob_a = bytes[x..x + n].to_vec();
                bytes.copy_within(y..y + n, x);
                bytes[y..y + n].copy_from_slice(&blob_a);
                std::fs::write(&path, bytes).unwrap();
                return;
            }
        }
    }
    panic!("no two chunks of one pack have the same sealed length");
}

#[test]
fn passwords_and_keys() {
    let sb = Sandbox::new();
    let src = source(&sb);
    sb.ok(&["init"]);
    sb.backup(&[], &[&src]);
    let keys = sb.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let file = |name: &str, pw: &str| {
        let p = keys.join(name);
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        p.display().to_string()
    };
    let wrong = file("wrong", "not the password");
    let second = file("second", "a second password");
    let third = file("third", "a third password");

    // Wrong or missing: one line, non-zero, before any work (no lock is taken).
    let line = sb.fails(&["--password-file", &wrong, "backup", src.to_str().unwrap()]);
    assert!(line.contains("wrong password"), "{line}");
    let out = sb
        .command(&["list"])
        .env_remove("CAIRN_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("password is needed"), "{err}");
    assert!(files_under(&sb.repo().join("locks")).is_empty());
    let line = sb.fails(&["--password-command", "exit 3", "list"]);
    assert!(line.contains("password command failed"), "{line}");

    // add, list, remove, passwd.
    let out = sb
        .command(&["key", "add"])
        .env("CAIRN_NEW_PASSWORD_FILE", &second)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.ok(&["--password-file", &second, "list"]);
    let listed = sb.ok(&["key", "list", "--json"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let first_key = listed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The key in use is never removed (so neither is the last one).
    let line = sb.fails(&["key", "remove", &first_key[..8]]);
    assert!(line.contains("another key"), "{line}");
    sb.ok(&["--password-file", &second, "key", "remove", &first_key[..8]]);
    assert!(sb.fails(&["list"]).contains("wrong password"));
    let out = sb
        .command(&["--password-file", &second, "key", "passwd"])
        .env("CAIRN_NEW_PASSWORD_FILE", &third)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sb.fails(&["--password-file", &second, "list"])
            .contains("wrong password")
    );
    let listed = sb.ok(&["--password-file", &third, "key", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let t = sb.path("restored");
    sb.ok(&[
        "--password-file",
        &third,
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
}

#[test]
fn the_password_is_never_on_a_command_line() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Large enough that the backup is still running when `ps` looks.
    let mut rng = Rng(5);
    let big: Vec<u8> = (0..60_000).flat_map(|p| rng.page(8192, p)).collect();
    std::fs::write(src.join("big"), big).unwrap();
    sb.ok(&["init"]);
    let mut child = sb
        .command(&["backup", src.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..200 {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,args"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ps.stdout);
        assert!(!text.contains(SANDBOX_PASSWORD), "{text}");
        if text.contains(&format!("{} ", child.id())) {
            seen = true;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "the backup was never seen running");
    assert!(child.wait().unwrap().success());
}

#[test]
fn copy_shares_only_content_keys_and_refuses_other_secrets() {
    let (from, src) = backed_up();
    // Into a new repository: created encrypted, with its own password and master key.
    let to = Sandbox::new();
    let pw = to.path("to-password");
    std::fs::write(&pw, "the destination's own password\n").unwrap();
    let copied = copy_into(&from, &to, &pw);
    assert_eq!(copied["snapshots_copied"], 1, "{copied}");
    assert!(to.fails(&["list"]).contains("wrong password"));
    let with_pw = ["--password-file", pw.to_str().unwrap()];
    let mut args = with_pw.to_vec();
    args.extend(["check", "--read-data"]);
    to.ok(&args);
    // A second backup copies only what is new.
    std::fs::write(src.join("small.txt"), b"one more row").unwrap();
    from.backup(&[], &[&src]);
    let again = copy_into(&from, &to, &pw);
    assert_eq!(again["snapshots_copied"], 1, "{again}");
    assert!(again["blobs_copied"].as_u64().unwrap() < 10, "{again}");
    let t = to.path("restored");
    let mut args = with_pw.to_vec();
    args.extend(["restore", "latest", "--target", t.to_str().unwrap()]);
    to.ok(&args);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));
    // Into a repository made on its own (other id key and chunker secret), or unencrypted:
    // refused.
    let other = Sandbox::new();
    other.ok(&["init"]);
    let line = from.fails(&["copy", "--to", &other.repo_spec]);
    assert!(line.contains("different secrets"), "{line}");
    let plain = Sandbox::new();
    plain.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let line = from.fails(&["copy", "--to", &plain.repo_spec]);
    assert!(line.contains("the source is encrypted"), "{line}");
}

#[test]
fn init_copy_keys_from_makes_a_copy_destination() {
    let (from, _) = backed_up();
    let to = Sandbox::new();
    let pw = to.path("to-password");
    std::fs::write(&pw, "another password\n").unwrap();
    let from_pw = to.path("from-password");
    std::fs::write(&from_pw, format!("{SANDBOX_PASSWORD}\n")).unwrap();
    let out = to
        .command(&[
            "--password-file",
            pw.to_str().unwrap(),
            "init",
            "--copy-keys-from",
            &from.repo_spec,
            "--from-password-file",
            from_pw.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = copy_into(&from, &to, &pw);
    assert_eq!(copied["snapshots_copied"], 1, "{copied}");
    // Another password, another master key: the source's password does not open it.
    assert!(to.fails(&["list"]).contains("wrong password"));
    // An unencrypted source has nothing to share.
    let plain = Sandbox::new();
    plain.ok(&["init", "--encryption", "none", "--format-version", "1"]);
    let other = Sandbox::new();
    let line = other.fails(&["init", "--copy-keys-from", &plain.repo_spec]);
    assert!(line.contains("not encrypted"), "{line}");
    assert!(!other.repo().join("config").exists());
}

#[test]
fn key_rotation_leaves_nothing_the_old_keys_open_and_resumes_after_kills() {
    let sb = Sandbox::new();
    let src = source(&sb);
    // Enough packs that a rotation takes a while to kill in.
    let mut rng = Rng(77);
    let noise: Vec<u8> = (0..24_000_000).map(|_| rng.next() as u8).collect();
    std::fs::write(src.join("more-noise.bin"), noise).unwrap();
    sb.ok(&["init", "--pack-size", "1MiB"]);
    sb.backup(&[], &[&src]);
    std::fs::write(src.join("small.txt"), b"second").unwrap();
    sb.backup(&[], &[&src]);
    let old = sb.path("old-material");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(sb.repo().join("config"), old.join("config")).unwrap();
    copy_dir(&sb.repo().join("keys"), &old.join("keys"));

    // Killed at several points, the repository stays whole and the next run goes on.
    for delay_ms in [40u64, 120, 250, 400, 600] {
        let mut child = sb
            .command(&["key", "rotate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let out = sb.cairn(&["check", "--read-data"]);
        assert!(
            out.status.success(),
            "after a kill at {delay_ms} ms: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let done = sb.ok(&["key", "rotate", "--json"]);
    let report: serde_json::Value = serde_json::from_str(done.trim()).unwrap();
    assert!(
        !report["epochs_destroyed"].as_array().unwrap().is_empty() || report["started"] == false,
        "{report}"
    );
    sb.ok(&["check", "--read-data"]);
    let t = sb.path("restored");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(snapshot_of(&src), snapshot_of(&t));

    // The old config and key files (the old master key, the old data keys) open nothing.
    let hybrid = Sandbox::new();
    copy_dir(&sb.repo(), &hybrid.repo());
    std::fs::remove_dir_all(hybrid.repo().join("keys")).unwrap();
    copy_dir(&old.join("keys"), &hybrid.repo().join("keys"));
    std::fs::copy(old.join("config"), hybrid.repo().join("config")).unwrap();
    let location = Location::parse(hybrid.repo().to_str().unwrap()).unwrap();
    let pw = || Password::new(SANDBOX_PASSWORD.to_string());
    let repo = Repository::open_with(&location, &hybrid.path("engine-cache"), &pw).unwrap();
    let sealing = repo.sealing().clone();
    let mut opened = 0;
    let mut tried = 0;
    for f in files_under(&hybrid.repo()) {
        let rel = f.strip_prefix(hybrid.repo()).unwrap().display().to_string();
        let bytes = std::fs::read(&f).unwrap();
        let kind = match rel.split('/').next().unwrap() {
            "data" => {
                tried += 1;
                if let Ok(blobs) = sealing.open_pack(&bytes) {
                    opened += 1 + blobs.iter().filter(|(_, b)| b.is_ok()).count();
                }
                continue;
            }
            "index" => cairn_engine::decode::Sealed::Index,
            "snapshots" => cairn_engine::decode::Sealed::Snapshot,
            "wal" => cairn_engine::decode::Sealed::Wal,
            _ => continue,
        };
        tried += 1;
        if sealing.open_sealed(kind, &rel, bytes).is_ok() {
            opened += 1;
        }
    }
    assert!(tried > 20, "{tried}");
    assert_eq!(opened, 0, "the old keys still open {opened} objects");
    // Nothing reads with the old keys: every snapshot is listed as damaged.
    let listed = hybrid.ok(&["list"]);
    assert!(
        listed.contains("DAMAGED") && listed.contains("0 snapshots, and"),
        "{listed}"
    );
}
