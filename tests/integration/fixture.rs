//! The frozen format-v1 repository is still read, listed and restored exactly.

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

#[test]
fn repo_v1_still_reads() {
    let sb = Sandbox::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
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

    let mut got = Vec::new();
    for s in &shorts {
        let t = sb.path(&format!("restore-{s}"));
        sb.ok(&["restore", s, "--target", t.to_str().unwrap()]);
        describe(s, &t, &t, &mut got);
    }
    got.sort();
    let expected: Vec<String> = std::fs::read_to_string(fixtures.join("repo-v1.expected"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, expected);

    // Names and `latest` resolve in the old repository too.
    assert!(
        sb.ok(&["ls", "second", "base/1"])
            .contains("base/1/PG_VERSION")
    );
    assert!(sb.ok(&["ls", "latest"]).contains("dump.sql"));
}
