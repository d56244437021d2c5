//! Parsing and printing sizes and times.

use anyhow::{Context, Result, bail};

/// Parses `4096`, `16K`, `16KiB`, `32MiB`, `1G`… (binary units).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("{s:?}: unknown size unit {other:?} (use K, M or G)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

/// Formats bytes for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a point in time: an RFC 3339 timestamp, a date (`2024-01-31`, midnight UTC), a
/// date and time (`2024-01-31 12:00`, UTC), or a span back from now (`36h`, `7d`).
pub fn parse_time(s: &str) -> Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp());
    }
    if let Ok(span) = s.parse::<jiff::Span>() {
        let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
        return Ok(now.checked_sub(span)?.timestamp());
    }
    bail!("{s:?} is not a time: use 2024-01-31, 2024-01-31T12:00:00Z or a span such as 7d")
}

/// A timestamp string shortened for tables: `2024-01-31 12:00:05`.
pub fn short_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("16KiB").unwrap(), 16384);
        assert_eq!(parse_size("32M").unwrap(), 32 << 20);
        assert!(parse_size("12X").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn times() {
        assert!(parse_time("2024-01-31").is_ok());
        assert!(parse_time("2024-01-31T10:00:00Z").is_ok());
        assert!(parse_time("2024-01-31 10:00").is_ok());
        assert!(parse_time("7d").is_ok());
        assert!(parse_time("yesterday-ish").is_err());
    }
}
