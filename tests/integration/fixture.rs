//! The frozen repositories of every format version are still read, listed and restored
//! exactly, and take new backups at their own version.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::common::{Sandbox, copy_dir};

fn describe(snapshot: &str, root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.push(format!("{snapshot} {rel} symlink {}", t.display()));
        } else if m.is_dir() {
            out.push(format!("{snapshot} {rel} dir {mode:04o}"));
            describe(snapshot, root, &p, out);
        } else {
            let data = std::fs::read(&p).unwrap();
            let ns = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            out.push(format!(
                "{snapshot} {rel} file {mode:04o} {} {ns} {:x}",
                data.len(),
                Sha256::digest(&data)
            ));
        }
    }
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Restores every snapshot of the sandbox's repository and compares the trees with
/// `<name>.expected`.
fn restores_as_expected(sb: &Sandbox, shorts: &[&str], name: &str, extra: &[&str]) {
    let mut got = Vec::new();
    for s in shorts {
        let t = sb.path(&format!("restore-{s}"));
        let mut args = extra.to_vec();
        args.extend(["restore", s, "--target", t.to_str().unwrap()]);
        sb.ok(&args);
        describe(s, &t, &t, &mut got);
    }
    got.sort();
    let expected: Vec<String> =
        std::fs::read_to_string(fixtures().join(format!("{name}.expected")))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    assert_eq!(got, expected);
}

fn short_ids(sb: &Sandbox, extra: &[&str]) -> (serde_json::Value, Vec<String>) {
    let mut args = extra.to_vec();
    args.extend(["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&sb.ok(&args)).unwrap();
    let shorts = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect();
    (list, shorts)
}

#[test]
fn repo_v2_still_reads_with_its_password_only() {
    let sb = Sandbox::new();
    copy_dir(&fixtures().join("repo-v2"), &sb.repo());
    let pw = fixtures().join("repo-v2.password");
    let with_pw = ["--password-file", pw.to_str().unwrap()];
    // The sandbox's own password is not this repository's.
    assert!(sb.fails(&["list"]).contains("wrong password"));
    let (list, shorts) = short_ids(&sb, &with_pw);
    assert_eq!(shorts, ["dab980aa", "f5e9c233", "cf9c672c"]);
    assert_eq!(list[0]["name"], "first");
    assert_eq!(list[0]["tags"][0], "fixture");
    assert_eq!(list[1]["parent"], list[0]["id"]);
    assert_eq!(list[2]["stdin"], true);
    let shorts: Vec<&str> = shorts.iter().map(String::as_str).collect();
    restores_as_expected(&sb, &shorts, "repo-v2", &with_pw);
    let mut args = with_pw.to_vec();
    args.extend(["check", "--read-data"]);
    sb.ok(&args);
    // It takes new backups, still encrypted and at version 2, readable by the next reader.
    let src = sb.path("more");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"new rows after the fixture was frozen").unwrap();
    let mut args = with_pw.to_vec();
    args.extend(["backup", src.to_str().unwrap()]);
    sb.ok(&args);
    let config = std::fs::read_to_string(sb.repo().join("config")).unwrap();
    assert!(config.starts_with(r#"{"version":2,"#), "{config}");
    let mut args = with_pw.to_vec();
    args.extend(["check", "--read-data"]);
    sb.ok(&args);
}

/// A frozen version-3 repository: listed, restored exactly, checked; a backup of its first
/// snapshot's files adds almost nothing (the page rule and chunker cut them as they were cut
/// when it was frozen); it stays at version 3.
fn repo_v3_reads(name: &str, extra: &[&str], ids: [&str; 3]) {
    let sb = Sandbox::new();
    copy_dir(&fixtures().join(name), &sb.repo());
    let (list, shorts) = short_ids(&sb, extra);
    assert_eq!(shorts, ids);
    assert_eq!(list[0]["name"], "first");
    assert_eq!(list[0]["tags"][0], "fixture");
    assert_eq!(list[1]["parent"], list[0]["id"]);
    assert_eq!(list[2]["stdin"], true);
    restores_as_expected(&sb, &ids, name, extra);
    let mut args = extra.to_vec();
    args.extend(["check", "--read-data"]);
    sb.ok(&args);
    let src = sb.path(&format!("restore-{}", ids[0]));
    let mut args = extra.to_vec();
    args.extend(["backup", "--json", src.to_str().unwrap()]);
    let v = crate::common::last_json(&sb.ok(&args));
    assert!(v["bytes_added"].as_u64().unwrap() < 8_000, "{v}");
    let config = std::fs::read_to_string(sb.repo().join("config")).unwrap();
    assert!(config.starts_with(r#"{"version":3,"#), "{config}");
    let mut args = extra.to_vec();
    args.extend(["check", "--read-data"]);
    sb.ok(&args);
}

#[test]
fn repo_v3_still_reads_with_its_password() {
    let pw = fixtures().join("repo-v3.password");
    let with_pw = ["--password-file", pw.to_str().unwrap()];
    repo_v3_reads("repo-v3", &with_pw, ["9ddee95b", "5a5314e6", "60ceb91f"]);
}

#[test]
fn repo_v3_plain_still_reads() {
    repo_v3_reads("repo-v3-plain", &[], ["063f280a", "3387d59f", "b706f6b4"]);
}

#[test]
fn repo_v1_still_reads() {
    let sb = Sandbox::new();
    let fixtures = fixtures();
    copy_dir(&fixtures.join("repo-v1"), &sb.repo());

    let list: serde_json::Value = serde_json::from_str(&sb.ok(&["list", "--json"])).unwrap();
    let shorts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    assert_eq!(shorts, ["e6e2d8f7", "f9bf28f0", "cf607993"]);
    assert_eq!(list[0]["name"], "first");
    assert_eq!(list[0]["tags"][0], "fixture");
    assert_eq!(list[1]["parent"], list[0]["id"]);
    assert_eq!(list[2]["stdin"], true);

    restores_as_expected(&sb, &shorts, "repo-v1", &[]);

    // Names and `latest` resolve in the old repository too.
    assert!(
        sb.ok(&["ls", "second", "base/1"])
            .contains("base/1/PG_VERSION")
    );
    assert!(sb.ok(&["ls", "latest"]).contains("dump.sql"));

    // It takes new backups as version 1: unencrypted, no key needed, dedup against the old
    // snapshots.
    let src = sb.path("restore-e6e2d8f7");
    let v = sb.backup(&[], &[&src]);
    assert!(v["bytes_added"].as_u64().unwrap() < 20_000, "{v}");
    let config = std::fs::read_to_string(sb.repo().join("config")).unwrap();
    assert!(config.starts_with(r#"{"version":1,"#), "{config}");
    sb.ok(&["check", "--read-data"]);
    let t = sb.path("again");
    sb.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(
        crate::common::snapshot_of(&src),
        crate::common::snapshot_of(&t)
    );
}
