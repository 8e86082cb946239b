//! Workload traces: VM/container requests and the documented CSV format.
//!
//! CSV format (one request per line, `#` starts a comment line, the header line is required):
//!
//! ```text
//! id,arrival_s,departure_s,cpus,mem_gib,hot_fraction
//! 1,0,3600,2,8,0.5
//! ```
//!
//! - `id`: unsigned integer, unique label (used in error messages only).
//! - `arrival_s`, `departure_s`: seconds from the trace start; `departure_s > arrival_s >= 0`.
//! - `cpus`: cores asked (> 0, fractions allowed), `mem_gib`: memory asked in GiB (> 0).
//! - `hot_fraction`: share of `mem_gib` the VM actually touches (its working set), in (0, 1]. The
//!   disaggregating policies keep at least this part local.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::SimError;

/// CSV header, also the column names used in error messages.
pub const CSV_COLUMNS: [&str; 6] = [
    "id",
    "arrival_s",
    "departure_s",
    "cpus",
    "mem_gib",
    "hot_fraction",
];

/// One VM/container request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Request {
    /// Label from the trace.
    pub id: u64,
    /// Arrival time, seconds from the trace start.
    pub arrival_s: f64,
    /// Departure time, seconds from the trace start.
    pub departure_s: f64,
    /// Cores asked.
    pub cpus: f64,
    /// Memory asked, GiB.
    pub mem_gib: f64,
    /// Share of the memory actually touched, in (0, 1].
    pub hot_fraction: f64,
}

/// A workload: requests sorted by arrival (then id), and the horizon the simulation covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Requests, sorted by (arrival, id).
    pub requests: Vec<Request>,
    /// End of the simulated period, seconds; requests still running then are cut there.
    pub horizon_s: f64,
}

impl Trace {
    /// Builds a trace, sorting the requests; the horizon defaults to the last departure.
    pub fn new(mut requests: Vec<Request>, horizon_s: Option<f64>) -> Self {
        requests.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s).then(a.id.cmp(&b.id)));
        let last = requests.iter().map(|r| r.departure_s).fold(0.0, f64::max);
        Trace {
            requests,
            horizon_s: horizon_s.unwrap_or(last),
        }
    }

    /// Reads a CSV trace file.
    pub fn read_csv(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Trace::new(parse_csv(&text)?, None))
    }

    /// Writes the trace as CSV (the format [`parse_csv`] reads).
    pub fn write_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "{}", CSV_COLUMNS.join(","))?;
        for r in &self.requests {
            writeln!(
                out,
                "{},{},{},{},{},{}",
                r.id, r.arrival_s, r.departure_s, r.cpus, r.mem_gib, r.hot_fraction
            )?;
        }
        Ok(())
    }
}

fn bad(line: usize, column: usize, reason: impl Into<String>) -> SimError {
    SimError::Csv {
        line,
        column,
        name: CSV_COLUMNS.get(column - 1).copied().unwrap_or("(extra)"),
        reason: reason.into(),
    }
}

/// Parses the CSV format described in the module docs. Any bad line is an error with its 1-based
/// line and column; nothing is skipped silently.
pub fn parse_csv(text: &str) -> Result<Vec<Request>, SimError> {
    let mut requests = Vec::new();
    let mut saw_header = false;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !saw_header {
            if fields != CSV_COLUMNS {
                return Err(bad(
                    line_no,
                    1,
                    format!("expected header `{}`", CSV_COLUMNS.join(",")),
                ));
            }
            saw_header = true;
            continue;
        }
        requests.push(parse_row(line_no, &fields)?);
    }
    if !saw_header {
        return Err(bad(1, 1, "empty trace: no header line"));
    }
    Ok(requests)
}

fn parse_row(line: usize, fields: &[&str]) -> Result<Request, SimError> {
    if fields.len() != CSV_COLUMNS.len() {
        let column = fields.len().min(CSV_COLUMNS.len()) + 1;
        return Err(bad(
            line,
            column.min(CSV_COLUMNS.len() + 1),
            format!(
                "expected {} fields, found {}",
                CSV_COLUMNS.len(),
                fields.len()
            ),
        ));
    }
    let id: u64 = fields[0].parse().map_err(|_| {
        bad(
            line,
            1,
            format!("`{}` is not an unsigned integer", fields[0]),
        )
    })?;
    let mut num = [0.0f64; 5];
    for (i, slot) in num.iter_mut().enumerate() {
        let column = i + 2;
        let text = fields[i + 1];
        let v: f64 = text
            .parse()
            .map_err(|_| bad(line, column, format!("`{text}` is not a number")))?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad(
                line,
                column,
                format!("`{text}` must be a finite number >= 0"),
            ));
        }
        *slot = v;
    }
    let [arrival_s, departure_s, cpus, mem_gib, hot_fraction] = num;
    if departure_s <= arrival_s {
        return Err(bad(line, 3, "departure must be after arrival"));
    }
    if cpus <= 0.0 {
        return Err(bad(line, 4, "must be > 0"));
    }
    if mem_gib <= 0.0 {
        return Err(bad(line, 5, "must be > 0"));
    }
    if hot_fraction <= 0.0 || hot_fraction > 1.0 {
        return Err(bad(line, 6, "must be in (0, 1]"));
    }
    Ok(Request {
        id,
        arrival_s,
        departure_s,
        cpus,
        mem_gib,
        hot_fraction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,arrival_s,departure_s,cpus,mem_gib,hot_fraction\n";

    fn err_of(body: &str) -> String {
        parse_csv(&format!("{HEADER}{body}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_rows_comments_and_sorts() {
        let text = format!("# sample\n{HEADER}2,10,20,1,2,0.5\n\n1,0,5,2.5,4,1\n");
        let t = Trace::new(parse_csv(&text).unwrap(), None);
        assert_eq!(t.requests.len(), 2);
        assert_eq!(t.requests[0].id, 1);
        assert_eq!(t.requests[0].cpus, 2.5);
        assert_eq!(t.horizon_s, 20.0);
    }

    #[test]
    fn bad_number_reports_line_and_column() {
        let msg = err_of("1,0,5,2,4,1\n2,0,5,x,4,1\n");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("column 4"), "{msg}");
        assert!(msg.contains("cpus"), "{msg}");
    }

    #[test]
    fn wrong_field_count_and_ranges_are_rejected() {
        assert!(err_of("1,0,5,2\n").contains("column 5"));
        assert!(err_of("1,0,5,2,4,1,9\n").contains("expected 6 fields"));
        assert!(err_of("1,5,5,2,4,1\n").contains("departure"));
        assert!(err_of("1,0,5,0,4,1\n").contains("column 4"));
        assert!(err_of("1,0,5,1,-4,1\n").contains("column 5"));
        assert!(err_of("1,0,5,1,4,1.5\n").contains("hot_fraction"));
        assert!(err_of("1,0,5,1,4,NaN\n").contains("column 6"));
        let msg = parse_csv("a,b\n").unwrap_err().to_string();
        assert!(msg.contains("line 1") && msg.contains("header"), "{msg}");
    }

    #[test]
    fn csv_round_trips() {
        let t = Trace::new(
            parse_csv(&format!("{HEADER}1,0,5.5,2,4,0.25\n")).unwrap(),
            None,
        );
        let mut out = Vec::new();
        t.write_csv(&mut out).unwrap();
        let back = Trace::new(parse_csv(std::str::from_utf8(&out).unwrap()).unwrap(), None);
        assert_eq!(t, back);
    }
}
