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

/// `n` and the noun, singular or plural as `n` asks: "1 entry", "2 entries".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `name` as `ls -b` prints it: backslash escapes for control characters (C-style where one
/// exists, else octal bytes), backslashes and spaces, so that a crafted name cannot move
/// the cursor, forge a line or hide what follows it. For text output only; JSON stays exact.
pub fn escape(name: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' => out.push_str("\\ "),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:03o}");
                }
            }
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn names_cannot_forge_lines_or_move_the_cursor() {
        assert_eq!(escape("base/16384"), "base/16384");
        assert_eq!(escape("a b\\c"), "a\\ b\\\\c");
        assert_eq!(escape("x\nsnapshot ok\r"), "x\\nsnapshot\\ ok\\r");
        assert_eq!(escape("\u{1b}[2J"), "\\033[2J");
        // C1 controls (a UTF-8 terminal takes U+009B as CSI) and DEL.
        assert_eq!(escape("\u{9b}1m\u{7f}"), "\\302\\2331m\\177");
        assert_eq!(escape("données"), "données");
    }
}
