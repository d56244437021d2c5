//! End-to-end comparison of cairn with restic and borg on database-like data, each tool at its
//! defaults with zstd level 3 (borg's `--compression zstd,3`; restic's `auto`), local
//! repositories, the same data for all.
//!
//! Run with `./benches/compare.sh [GiB] [rounds]` (installs restic and borg from Debian's
//! packages if missing, builds cairn, and runs this). It writes its tables into `benches/RESULTS.md`.
//!
//! Backups: (a) initial; (b) nothing changed; (c) 1% of pages updated in place at random;
//! (d) 5% new pages appended to the largest files, and new files. Restores: full into an empty
//! directory; and over a copy in which 1% of pages differ (cairn `--delta`; restic 0.14 and
//! borg 1.2 have no delta mode and rewrite every file), first with the copy in the page cache
//! (just restored and read back), then with it on disk only (changed again, and dropped from
//! the cache, as yesterday's data directory would be). The restores run in rounds (default
//! 3): in each, every tool restores in full, then over that copy twice; the tables give the
//! medians.

use std::fmt::Write as _;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_benches::Rng;

const PAGE: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    Cairn,
    Restic,
    Borg,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Cairn => "cairn",
            Tool::Restic => "restic",
            Tool::Borg => "borg",
        }
    }
}

/// A change made to the data before a backup step.
type Mutation = fn(&mut Bench);

/// One measured command.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    added: i64,
}

struct Bench {
    work: PathBuf,
    data: PathBuf,
    cairn: PathBuf,
    rng: Rng,
    snapshot_no: u32,
}

fn dir_size(p: &Path) -> i64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                total += dir_size(&e.path());
            } else {
                total += m.len() as i64;
            }
        }
    }
    total
}

/// Runs `cmd` under `/usr/bin/time -v`; returns wall, CPU and peak RSS.
fn timed(mut cmd: Command, cwd: Option<&Path>) -> Run {
    let mut time = Command::new("/usr/bin/time");
    time.arg("-v").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            time.env(k, v);
        }
    }
    if let Some(d) = cwd {
        time.current_dir(d);
    }
    let t = Instant::now();
    let out = time.output().expect("run /usr/bin/time");
    let wall = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!("{:?} failed: {err}", cmd.get_program());
    }
    let field = |name: &str| -> f64 {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
            .unwrap_or(0.0)
    };
    let _ = &mut cmd;
    Run {
        wall,
        cpu: field("User time (seconds)") + field("System time (seconds)"),
        rss_mib: field("Maximum resident set size (kbytes)") / 1024.0,
        added: 0,
    }
}

impl Bench {
    fn repo(&self, tool: Tool) -> PathBuf {
        self.work.join(format!("repo-{}", tool.name()))
    }

    fn command(&self, tool: Tool, args: &[&str]) -> Command {
        let mut c = match tool {
            Tool::Cairn => {
                let mut c = Command::new(&self.cairn);
                // Encrypted (its default), like restic's.
                c.env("CAIRN_REPO", self.repo(tool))
                    .env("CAIRN_PASSWORD", "benchmark")
                    .env("CAIRN_CACHE_DIR", self.work.join("cache-cairn"));
                c
            }
            Tool::Restic => {
                let mut c = Command::new("restic");
                c.env("RESTIC_REPOSITORY", self.repo(tool))
                    .env("RESTIC_PASSWORD", "benchmark")
                    .env("RESTIC_CACHE_DIR", self.work.join("cache-restic"));
                c
            }
            Tool::Borg => {
                let mut c = Command::new("borg");
                c.env("BORG_REPO", self.repo(tool))
                    .env("BORG_CACHE_DIR", self.work.join("cache-borg"))
                    .env("BORG_BASE_DIR", self.work.join("borg-base"))
                    .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
                    .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes");
                c
            }
        };
        c.args(args);
        c
    }

    fn init(&self, tool: Tool) {
        let args: &[&str] = match tool {
            Tool::Cairn => &["init"],
            Tool::Restic => &["init"],
            Tool::Borg => &["init", "--encryption", "none"],
        };
        let out = self.command(tool, args).output().expect("init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn backup(&mut self, tool: Tool) -> Run {
        let before = dir_size(&self.repo(tool));
        self.snapshot_no += 1;
        let data = self.data.to_str().unwrap_or_default().to_string();
        let archive = format!("::s{}", self.snapshot_no);
        let args: Vec<&str> = match tool {
            Tool::Cairn => vec!["backup", &data],
            Tool::Restic => vec!["backup", "--quiet", &data],
            // borg's default is lz4; zstd level 3 is what cairn and restic use.
            Tool::Borg => vec!["create", "--compression", "zstd,3", &archive, &data],
        };
        let mut r = timed(self.command(tool, &args), None);
        r.added = dir_size(&self.repo(tool)) - before;
        r
    }

    fn restore(&self, tool: Tool, target: &Path) -> Run {
        std::fs::create_dir_all(target).expect("target");
        let t = target.to_str().unwrap_or_default();
        match tool {
            Tool::Cairn => timed(
                // restic and borg return before their files reach the disk; so does this.
                self.command(
                    tool,
                    &["restore", "latest", "--target", t, "--delta", "--no-sync"],
                ),
                None,
            ),
            Tool::Restic => timed(
                self.command(tool, &["restore", "latest", "--target", t]),
                None,
            ),
            Tool::Borg => {
                let archive = format!("::s{}", self.snapshot_no);
                timed(self.command(tool, &["extract", &archive]), Some(target))
            }
        }
    }

    /// Reads a tool's repository and cache, so that a restore starts with them in the page
    /// cache and recently touched.
    fn warm_inputs(&self, tool: Tool) {
        let cache = match tool {
            Tool::Cairn => "cache-cairn",
            Tool::Restic => "cache-restic",
            Tool::Borg => "cache-borg",
        };
        for d in [self.repo(tool), self.work.join(cache)]
            .iter()
            .filter(|d| d.is_dir())
        {
            for f in walk(d) {
                // Only a warm-up: a file that cannot be read is the restore's to report.
                if let Ok(mut file) = std::fs::File::open(&f) {
                    let _ = std::io::copy(&mut file, &mut std::io::sink());
                }
            }
        }
    }

    /// Where a tool puts the data directory inside a restore target.
    fn restored_data(&self, tool: Tool, target: &Path) -> PathBuf {
        match tool {
            // cairn restores a single source directory as the root.
            Tool::Cairn => target.to_path_buf(),
            // restic and borg keep the absolute path (borg without its leading slash).
            Tool::Restic | Tool::Borg => {
                target.join(self.data.strip_prefix("/").unwrap_or(&self.data))
            }
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.data.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    fn write_file(&mut self, p: &Path, pages: u64, first_page: u64) {
        cairn_benches::write_pages(&mut self.rng, p, pages, first_page);
    }

    fn generate(&mut self, gib: f64) {
        cairn_benches::generate_database(&mut self.rng, &self.data, gib);
    }

    fn update_one_percent(&mut self, root: &Path) {
        let files: Vec<(PathBuf, u64)> = walk(root)
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, len / PAGE as u64)
            })
            .filter(|(_, pages)| *pages > 0)
            .collect();
        let total: u64 = files.iter().map(|(_, n)| n).sum();
        for _ in 0..total / 100 {
            let mut k = self.rng.below(total);
            let (p, pages) = files
                .iter()
                .find(|(_, n)| {
                    if k < *n {
                        true
                    } else {
                        k -= n;
                        false
                    }
                })
                .expect("page");
            let page = k.min(pages - 1);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("open");
            f.seek(SeekFrom::Start(page * PAGE as u64)).expect("seek");
            f.write_all(&self.rng.page(PAGE, page)).expect("write");
        }
    }

    fn append_five_percent(&mut self) {
        let files = self.files();
        let total: u64 = files
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
            / PAGE as u64;
        let mut by_size: Vec<(u64, PathBuf)> = files
            .iter()
            .map(|p| {
                (
                    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                    p.clone(),
                )
            })
            .collect();
        by_size.sort();
        let extra = total / 20;
        for (len, p) in by_size.iter().rev().take(3) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .expect("open");
            for i in 0..extra / 6 {
                f.write_all(&self.rng.page(PAGE, len / PAGE as u64 + i))
                    .expect("append");
            }
        }
        for n in 0..20 {
            let p = self.data.join(format!("base/16384/{}", 90000 + n));
            self.write_file(&p, extra / 2 / 20, 0);
        }
    }
}

/// Drops every file under `root` from the page cache (written to disk before: only clean
/// pages are dropped).
fn uncache(root: &Path) {
    for f in walk(root) {
        let file = std::fs::File::open(&f).expect("open");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn same_tree(a: &Path, b: &Path) -> bool {
    Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn version(cmd: &str) -> String {
    let arg = if cmd == "restic" {
        "version"
    } else {
        "--version"
    };
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// The run of median wall time (the lower of the two middle ones for an even count).
fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    sorted[(sorted.len() - 1) / 2]
}

fn mib(b: i64) -> String {
    format!("{:.1}", b as f64 / 1048576.0)
}

fn main() {
    let gib: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let here = std::env::current_exe().expect("exe");
    let cairn = here.with_file_name("cairn");
    let work = std::env::temp_dir().join(format!("cairn-compare-{}", std::process::id()));
    let data = work.join("pgdata");
    std::fs::create_dir_all(&data).expect("work dir");
    let mut b = Bench {
        work: work.clone(),
        data,
        cairn,
        rng: Rng(2026),
        snapshot_no: 0,
    };
    let tools = [Tool::Cairn, Tool::Restic, Tool::Borg];
    eprintln!(
        "generating {gib} GiB of database files in {}",
        b.data.display()
    );
    b.generate(gib);
    let data_bytes = dir_size(&b.data);
    let file_count = b.files().len();
    for t in tools {
        b.init(t);
    }
    // Let mtimes settle: every tool is then free to trust them.
    let settle = || std::thread::sleep(Duration::from_millis(2100));

    let mut backups: Vec<(&str, Vec<Run>)> = Vec::new();
    let steps: [(&str, Mutation); 4] = [
        ("(a) initial backup", |_| {}),
        ("(b) nothing changed", |_| {}),
        ("(c) 1% of pages updated", |b| {
            let d = b.data.clone();
            b.update_one_percent(&d)
        }),
        ("(d) 5% appended, new files", |b| b.append_five_percent()),
    ];
    for (label, mutate) in steps {
        mutate(&mut b);
        settle();
        let mut runs = Vec::new();
        for t in tools {
            // Each tool numbers its own snapshots the same way.
            b.snapshot_no = backups.len() as u32;
            eprintln!("{label}: {}", t.name());
            runs.push(b.backup(t));
        }
        backups.push((label, runs));
    }
    let repo_sizes: Vec<i64> = tools.iter().map(|t| dir_size(&b.repo(*t))).collect();

    // Restores of the last snapshot, in rounds; in each, every tool restores in full, then
    // over that copy changed by 1%, then over it changed by 1% again and dropped from the page
    // cache. One run of a restore varies by a quarter or more on this VM, so each restore row
    // is the median of the rounds, and every round's figures are listed. Each restore starts
    // with the tool's repository and cache just read, and the copy is restored, checked and
    // changed seconds before the second one: this VM's host takes back guest memory left idle,
    // and a page cache page untouched for 10 s is then several times slower to read, which
    // would otherwise favour whichever tool ran last.
    let mut full: Vec<Vec<Run>> = vec![Vec::new(); tools.len()];
    let mut delta: Vec<Vec<Run>> = vec![Vec::new(); tools.len()];
    let mut uncached: Vec<Vec<Run>> = vec![Vec::new(); tools.len()];
    for round in 1..=rounds {
        for (((t, f), d), u) in tools
            .iter()
            .zip(&mut full)
            .zip(&mut delta)
            .zip(&mut uncached)
        {
            let target = b.work.join(format!("restore-{}", t.name()));
            match std::fs::remove_dir_all(&target) {
                // The first round starts without one.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("cannot empty {}: {e}", target.display())
                }
                _ => {}
            }
            settle_disk();
            b.warm_inputs(*t);
            eprintln!("round {round}/{rounds}, full restore: {}", t.name());
            f.push(b.restore(*t, &target));
            let root = b.restored_data(*t, &target);
            assert!(
                same_tree(&b.data, &root),
                "{} restored something else",
                t.name()
            );
            // Changes the copy by 1%, on disk, cached or not, and restores over it.
            let over_copy = |b: &mut Bench, cached: bool| {
                b.update_one_percent(&root);
                settle_disk();
                if !cached {
                    uncache(&root);
                }
                b.warm_inputs(*t);
                let how = if cached { "" } else { " not in the page cache" };
                eprintln!(
                    "round {round}/{rounds}, restore over a 1%-different copy{how}: {}",
                    t.name()
                );
                let run = b.restore(*t, &target);
                assert!(same_tree(&b.data, &root), "{} left differences", t.name());
                run
            };
            d.push(over_copy(&mut b, true));
            u.push(over_copy(&mut b, false));
        }
    }
    let restores = [
        ("full restore into an empty directory", &full),
        ("restore over a copy with 1% of pages different", &delta),
        ("the same, the copy not in the page cache", &uncached),
    ];
    // cairn's delta restores against its full restore of the same round.
    let c = tools.iter().position(|t| *t == Tool::Cairn).expect("cairn");
    let shares = |runs: &[Run]| -> Vec<f64> {
        full[c]
            .iter()
            .zip(runs)
            .map(|(f, d)| 100.0 * d.wall / f.wall)
            .collect()
    };

    let mut md = String::new();
    let _ = writeln!(
        md,
        "Data: {:.2} GiB in {file_count} files of 8 KiB pages (3 large files hold 60%); \
         machine: 2-core x86_64 VM, local disk; {}; {}; cairn {}. Run: {}.\n",
        data_bytes as f64 / (1u64 << 30) as f64,
        version("restic"),
        version("borg"),
        env!("CARGO_PKG_VERSION"),
        jiff_now()
    );
    let _ = writeln!(
        md,
        "| step | tool | wall s | CPU s | peak RSS MiB | repository MiB added |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (label, runs) in &backups {
        for (t, r) in tools.iter().zip(runs) {
            let _ = writeln!(
                md,
                "| {label} | {} | {:.2} | {:.2} | {:.0} | {} |",
                t.name(),
                r.wall,
                r.cpu,
                r.rss_mib,
                mib(r.added)
            );
        }
    }
    let _ = writeln!(md, "\nRepository size after (a)–(d):\n");
    let _ = writeln!(md, "| tool | MiB |");
    let _ = writeln!(md, "|---|---|");
    for (t, s) in tools.iter().zip(&repo_sizes) {
        let _ = writeln!(md, "| {} | {} |", t.name(), mib(*s));
    }
    let _ = writeln!(
        md,
        "\nRestores: median of {rounds} rounds (CPU and memory of the median run); each round's wall \
         times in the last column.\n"
    );
    let _ = writeln!(
        md,
        "| restore | tool | wall s | CPU s | peak RSS MiB | wall s per round |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (label, runs) in restores {
        for (t, r) in tools.iter().zip(runs) {
            let m = median(r);
            let each: Vec<String> = r.iter().map(|x| format!("{:.2}", x.wall)).collect();
            let _ = writeln!(
                md,
                "| {label} | {} | {:.2} | {:.2} | {:.0} | {} |",
                t.name(),
                m.wall,
                m.cpu,
                m.rss_mib,
                each.join(", ")
            );
        }
    }
    let mut line = "\ncairn's delta restore took".to_string();
    for (which, runs) in [
        ("", &delta[c]),
        (", and over a copy not in the page cache", &uncached[c]),
    ] {
        let shares = shares(runs);
        let each: Vec<String> = shares.iter().map(|s| format!("{s:.0}%")).collect();
        let mut sorted = shares.clone();
        sorted.sort_by(f64::total_cmp);
        let _ = write!(
            line,
            "{which} {} (median {:.0}%)",
            each.join(", "),
            sorted[(sorted.len() - 1) / 2]
        );
    }
    let _ = writeln!(md, "{line} of its full restore of the same round.");
    println!("{md}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
    let old = std::fs::read_to_string(&results).unwrap_or_default();
    let (start, end) = ("<!-- compare:start -->", "<!-- compare:end -->");
    let section = format!("{start}\n{md}{end}");
    let new = match (old.find(start), old.find(end)) {
        (Some(a), Some(z)) => format!("{}{section}{}", &old[..a], &old[z + end.len()..]),
        _ => format!("{old}\n## cairn, restic and borg\n\n{section}\n"),
    };
    if std::fs::write(&results, new).is_ok() {
        eprintln!("wrote {}", results.display());
    }
    // CAIRN_COMPARE_KEEP=1 keeps the data and repositories for profiling a step by hand.
    if std::env::var_os("CAIRN_COMPARE_KEEP").is_some() {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
}

/// Lets the writes of the previous step reach the disk, so that no tool pays for another's
/// writeback: the VM's disk stalls reads while it flushes.
fn settle_disk() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
}

fn jiff_now() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
