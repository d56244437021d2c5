//! Helpers shared by the end-to-end tests.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch area with a repository (a local path, or a prefix in a bucket of the test S3
/// server) and a private cache.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// What `--repo` says.
    pub repo_spec: String,
    /// Extra environment of every cairn run (the S3 endpoint and credentials).
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo_spec = dir.path().join("repo").display().to_string();
        Sandbox {
            dir,
            repo_spec,
            env: Vec::new(),
        }
    }

    /// A sandbox whose repository is `s3://BUCKET/repo` on the test S3 server, in a bucket of
    /// its own; `None` when there is no server (said loudly by [`crate::s3::server`]).
    pub fn s3() -> Option<Sandbox> {
        let server = crate::s3::server()?;
        let bucket = server.bucket();
        let mut sb = Sandbox::new();
        sb.repo_spec = format!("s3://{bucket}/repo");
        sb.env = crate::s3::env(&server.endpoint, &server.access_key, &server.secret_key);
        Some(sb)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// A cairn command with this sandbox's repository, cache and environment, and none of the
    /// developer's; for tests that spawn it.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_cairn")), args)
    }

    /// [`Sandbox::command`] with another copy of the binary (one another user can run).
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        for k in FOREIGN_ENV {
            cmd.env_remove(k);
        }
        cmd.args(args)
            .env("CAIRN_REPO", &self.repo_spec)
            .env("CAIRN_PASSWORD", SANDBOX_PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs cairn with this sandbox's repository and cache.
    pub fn cairn(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cairn")
    }

    /// Runs cairn and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs cairn and insists it fails with one clear line and no panic; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "cairn {args:?} succeeded");
        assert_eq!(out.status.code(), Some(1), "cairn {args:?}: {err}");
        assert!(!err.contains("panicked"), "cairn {args:?} panicked: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
        assert_eq!(lines.len(), 1, "cairn {args:?} printed {err:?}");
        assert!(lines[0].starts_with("error: "), "{err}");
        lines[0].to_string()
    }

    /// Backs up `paths` and returns the summary object.
    pub fn backup(&self, extra: &[&str], paths: &[&Path]) -> serde_json::Value {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let ps: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(ps.iter().map(String::as_str));
        last_json(&self.ok(&args))
    }
}

/// The password of every sandbox's repository (given through the environment, as an operator's
/// scheduler would).
pub const SANDBOX_PASSWORD: &str = "sandbox password, not a secret";

/// The settings of the developer's environment that would steer a test's cairn elsewhere (a
/// real S3 endpoint, other credentials, a config file); removed from every test run.
pub const FOREIGN_ENV: &[&str] = &[
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "CAIRN_CONFIG",
    "CAIRN_CONNECTIONS",
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_TO_PASSWORD",
    "CAIRN_TO_PASSWORD_FILE",
    "CAIRN_TO_PASSWORD_COMMAND",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_NEW_PASSWORD_FILE",
    "CAIRN_NEW_PASSWORD_COMMAND",
];

/// A database directory of `files` files of `pages` 8 KiB pages.
pub fn database(dir: &Path, files: u64, pages: u64, rng: &mut Rng) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let data: Vec<u8> = (0..pages).flat_map(|p| rng.page(8192, p)).collect();
        std::fs::write(dir.join(format!("{}", 16384 + f)), data).unwrap();
    }
}

/// Every file below `dir`, sorted; a missing directory has none.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.expect("entry").path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The pack files of a repository.
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("data"))
}

/// The last JSON line of an output (progress lines may come before it).
pub fn last_json(out: &str) -> serde_json::Value {
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).expect("the last line is JSON")
}

/// What a restore must reproduce of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        mode: u32,
        mtime: (i64, i64),
        digest: String,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Every entry below `root`, by relative path.
pub fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        let m = std::fs::symlink_metadata(&p).expect("stat");
        let e = if m.file_type().is_symlink() {
            Entry::Symlink {
                target: std::fs::read_link(&p).expect("readlink"),
            }
        } else if m.is_dir() {
            walk(root, &p, out);
            Entry::Dir {
                mode: m.permissions().mode() & 0o7777,
            }
        } else {
            Entry::File {
                mode: m.permissions().mode() & 0o7777,
                mtime: (m.mtime(), m.mtime_nsec()),
                digest: blake3::hash(&std::fs::read(&p).expect("read"))
                    .to_hex()
                    .to_string(),
            }
        };
        out.insert(rel, e);
    }
}

/// Deterministic pseudo-random bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A database-like page: a header, then rows of mostly repetitive text.
    pub fn page(&mut self, size: usize, page_no: u64) -> Vec<u8> {
        let mut p = Vec::with_capacity(size);
        p.extend_from_slice(&page_no.to_le_bytes());
        p.extend_from_slice(&self.next().to_le_bytes());
        while p.len() < size {
            let row = format!(
                "|{:08}|customer-{:04}|{:>10}.{:02}|status=shipped|",
                self.below(100_000_000),
                self.below(5000),
                self.below(100_000),
                self.below(100)
            );
            p.extend_from_slice(row.as_bytes());
        }
        p.truncate(size);
        p
    }
}

/// Copies a directory tree (contents only, not times or modes).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
