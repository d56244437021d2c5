//! Retention policies: which snapshots `forget` keeps, and why.
//!
//! Snapshots are grouped by host and source paths; each group is judged on its own, newest
//! first. A snapshot is kept if any rule keeps it:
//!
//! - `keep_last N`: the N newest;
//! - `keep_hourly N` (and daily, weekly, monthly, yearly): the newest snapshot of each of the
//!   N most recent hours (days, ISO weeks, months, years) that have one, in UTC;
//! - `keep_within D`: every snapshot taken within D of the group's newest;
//! - `keep_tags`: every snapshot carrying one of the tags;
//! - `keep_names`: every snapshot given one of the names (`backup --name`);
//! - the newest snapshot of each name in the group, so that the name always restores;
//! - a snapshot backed up with `--keep-forever` (or given a name by a cairn that promised to
//!   keep named snapshots forever: snapshots without the `keep_forever` field) is always
//!   kept; `delete` removes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::Snapshot;

/// A retention policy (also stored in the repository config, see format-spec/config.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep the N newest snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within this duration (e.g. `7d`, `36h`) of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    /// Keep every snapshot carrying one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
    /// Keep every snapshot given one of these names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_names: Vec<String>,
}

impl RetentionPolicy {
    /// True if no rule is set: such a policy would remove everything, and is refused.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
            && self.keep_names.is_empty()
    }

    /// Checks that the policy can be applied (a readable duration).
    pub fn validate(&self) -> Result<()> {
        if let Some(d) = &self.keep_within {
            parse_duration(d)?;
        }
        Ok(())
    }
}

/// Parses a duration such as `90s`, `15m`, `36h`, `7d`, `2w` or `1y 6mo` (days of 24 hours,
/// weeks of 7 days, months of 30 days, years of 365 days).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = |why: String| {
        Error::InvalidInput(format!(
            "{s:?} is not a duration ({why}); write e.g. 30s, 15m, 36h, 7d, 2w, 1y"
        ))
    };
    let span: jiff::Span = s
        .trim()
        .parse()
        .map_err(|e: jiff::Error| bad(e.to_string()))?;
    // Calendar units as fixed lengths: retention counts elapsed time, not calendar dates.
    let days = f64::from(span.get_years()) * 365.0
        + f64::from(span.get_months()) * 30.0
        + f64::from(span.get_weeks()) * 7.0
        + f64::from(span.get_days());
    let rest = span
        .years(0)
        .months(0)
        .weeks(0)
        .days(0)
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| bad(e.to_string()))?;
    let secs = days * 86_400.0 + rest.as_secs_f64();
    if !(0.0..=1e12).contains(&secs) {
        return Err(bad("out of range".into()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One snapshot and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The snapshot.
    pub id: Id,
    /// When it was taken.
    pub time: String,
    /// True if kept.
    pub keep: bool,
    /// The rules that keep it (e.g. `last`, `daily`, `within 7d`, `tag nightly`, `named`).
    pub reasons: Vec<String>,
}

/// The snapshots of one host and set of source paths, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Host the snapshots were taken on.
    pub hostname: String,
    /// Their source paths.
    pub paths: Vec<String>,
    /// Verdicts, newest first.
    pub snapshots: Vec<Verdict>,
}

/// Host and sorted source paths.
type GroupKey = (String, Vec<String>);

/// Applies `policy` to `snapshots`. Refuses an empty policy.
pub fn apply_policy(snapshots: &[(Id, Snapshot)], policy: &RetentionPolicy) -> Result<Vec<Group>> {
    if policy.is_empty() {
        return Err(Error::InvalidInput(
            "no retention rule given: it would remove every snapshot; pass --keep-last, --keep-daily, …, or save a policy with `cairn policy`".into(),
        ));
    }
    let within = policy
        .keep_within
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let mut groups: BTreeMap<GroupKey, Vec<(Id, &Snapshot)>> = BTreeMap::new();
    for (id, s) in snapshots {
        let mut paths = s.paths.clone();
        paths.sort();
        groups
            .entry((s.hostname.clone(), paths))
            .or_default()
            .push((*id, s));
    }
    let mut out = Vec::new();
    for ((hostname, paths), mut snaps) in groups {
        // Newest first; equal times by id, so that the verdict never depends on listing order.
        snaps.sort_by(|(ia, a), (ib, b)| b.start().cmp(&a.start()).then(ib.cmp(ia)));
        let mut verdicts: Vec<Verdict> = snaps
            .iter()
            .map(|(id, s)| Verdict {
                id: *id,
                time: s.time.clone(),
                keep: false,
                reasons: Vec::new(),
            })
            .collect();
        let times: Vec<Option<jiff::Zoned>> = snaps
            .iter()
            .map(|(_, s)| s.start().map(|t| t.to_zoned(jiff::tz::TimeZone::UTC)))
            .collect();
        let mut keep = |i: usize, why: String| {
            verdicts[i].keep = true;
            verdicts[i].reasons.push(why);
        };
        if let Some(n) = policy.keep_last {
            for i in 0..snaps.len().min(n as usize) {
                keep(i, "last".into());
            }
        }
        type Bucket = fn(&jiff::Zoned) -> (i32, i32, i32, i32);
        let buckets: [(&str, Option<u32>, Bucket); 5] = [
            ("hourly", policy.keep_hourly, |z| {
                (
                    i32::from(z.year()),
                    i32::from(z.day_of_year()),
                    i32::from(z.hour()),
                    0,
                )
            }),
            ("daily", policy.keep_daily, |z| {
                (i32::from(z.year()), i32::from(z.day_of_year()), 0, 0)
            }),
            ("weekly", policy.keep_weekly, |z| {
                let w = z.date().iso_week_date();
                (i32::from(w.year()), i32::from(w.week()), 0, 0)
            }),
            ("monthly", policy.keep_monthly, |z| {
                (i32::from(z.year()), i32::from(z.month()), 0, 0)
            }),
            ("yearly", policy.keep_yearly, |z| {
                (i32::from(z.year()), 0, 0, 0)
            }),
        ];
        for (name, count, bucket) in buckets {
            let Some(n) = count else { continue };
            let mut left = n;
            let mut last = None;
            for (i, t) in times.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let Some(t) = t else { continue };
                let b = bucket(t);
                if last != Some(b) {
                    keep(i, name.into());
                    last = Some(b);
                    left -= 1;
                }
            }
        }
        if let (Some(d), Some(Some(newest))) = (within, times.first()) {
            let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
            let text = policy.keep_within.clone().unwrap_or_default();
            for (i, t) in times.iter().enumerate() {
                if t.as_ref()
                    .is_some_and(|t| newest.timestamp().duration_since(t.timestamp()) <= d)
                {
                    keep(i, format!("within {text}"));
                }
            }
        }
        let mut names_seen = std::collections::HashSet::new();
        for (i, (_, s)) in snaps.iter().enumerate() {
            if let Some(tag) = s.tags.iter().find(|t| policy.keep_tags.contains(t)) {
                keep(i, format!("tag {tag}"));
            }
            if let Some(name) = &s.name {
                if policy.keep_names.contains(name) {
                    keep(i, format!("name {name}"));
                }
                // Newest first: the first of a name is its newest.
                if names_seen.insert(name) {
                    keep(i, format!("newest named {name}"));
                }
            }
            if s.kept_forever() {
                keep(i, "keep-forever".into());
            }
            // A snapshot whose time cannot be read cannot be judged; it stays.
            if times[i].is_none() {
                keep(i, "time unreadable".into());
            }
        }
        out.push(Group {
            hostname,
            paths,
            snapshots: verdicts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot taken at `time` (RFC 3339) of `/pgdata` on host `db1`.
    fn snap(time: &str) -> Snapshot {
        Snapshot {
            version: 1,
            time: time.into(),
            time_end: time.into(),
            hostname: "db1".into(),
            username: "postgres".into(),
            paths: vec!["/pgdata".into()],
            stdin: false,
            name: None,
            tags: Vec::new(),
            tree: Id::of(b"tree"),
            parent: None,
            summary: Default::default(),
            pg: None,
            root: None,
            partial: false,
            keep_forever: Some(false),
        }
    }

    /// Two years of hourly snapshots: 2024-01-01T00:00Z to 2025-12-31T23:00Z.
    fn two_years() -> Vec<(Id, Snapshot)> {
        let start: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        (0..(366 + 365) * 24)
            .map(|h: i64| {
                let t = start + jiff::SignedDuration::from_hours(h);
                (Id::of(t.to_string().as_bytes()), snap(&t.to_string()))
            })
            .collect()
    }

    fn kept(groups: &[Group]) -> BTreeMap<String, Vec<String>> {
        groups[0]
            .snapshots
            .iter()
            .filter(|v| v.keep)
            .map(|v| (v.time.clone(), v.reasons.clone()))
            .collect()
    }

    #[test]
    fn within_tags_names_and_groups() {
        let mut history = two_years();
        history[100].1.tags = vec!["before-upgrade".into()];
        history[200].1.name = Some("golden".into());
        history[300].1.name = Some("golden".into());
        history[300].1.keep_forever = None;
        history[400].1.keep_forever = Some(true);
        history[500].1.name = Some("nightly".into());
        history[600].1.name = Some("nightly".into());
        // Another host's snapshots are judged apart.
        let mut other = snap("2024-06-01T00:00:00Z");
        other.hostname = "db2".into();
        history.push((Id::of(b"db2"), other));
        let policy = RetentionPolicy {
            keep_within: Some("2d".into()),
            keep_tags: vec!["before-upgrade".into()],
            ..Default::default()
        };
        let groups = apply_policy(&history, &policy).unwrap();
        assert_eq!(groups.len(), 2);
        let got = kept(&groups);
        // 2 days before the newest, inclusive: 49 hourly snapshots.
        assert_eq!(got.len(), 49 + 4);
        assert_eq!(got["2024-01-05T04:00:00Z"], vec!["tag before-upgrade"]);
        // An older snapshot of a name is judged like any other; the newest one stays.
        assert!(!got.contains_key("2024-01-09T08:00:00Z"));
        assert!(!got.contains_key("2024-01-21T20:00:00Z"));
        assert_eq!(got["2024-01-26T00:00:00Z"], vec!["newest named nightly"]);
        // Named by a cairn that kept names forever: still kept, and said why.
        assert_eq!(
            got["2024-01-13T12:00:00Z"],
            vec!["newest named golden", "keep-forever"]
        );
        assert_eq!(got["2024-01-17T16:00:00Z"], vec!["keep-forever"]);
        assert_eq!(got["2025-12-29T23:00:00Z"], vec!["within 2d"]);
        assert!(!got.contains_key("2025-12-29T22:00:00Z"));
        // The other host's only snapshot is the newest of its group.
        assert!(groups[1].snapshots[0].keep);
        assert!(apply_policy(&history, &RetentionPolicy::default()).is_err());
        // --keep-name keeps every snapshot of the name.
        let by_name = RetentionPolicy {
            keep_last: Some(1),
            keep_names: vec!["nightly".into()],
            ..Default::default()
        };
        let got = kept(&apply_policy(&history, &by_name).unwrap());
        assert_eq!(got["2024-01-21T20:00:00Z"], vec!["name nightly"]);
        assert_eq!(
            got["2024-01-26T00:00:00Z"],
            vec!["name nightly", "newest named nightly"]
        );
        assert!(parse_duration("7 parsecs").is_err());
        assert_eq!(parse_duration("36h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(parse_duration("1y").unwrap().as_secs(), 365 * 86_400);
    }
}
