//! Converter from Google cluster-data 2011 (`clusterdata-2011-2`) CSVs to a [`Trace`].
//!
//! Users bring the files (they are not shipped). Schema used (0-based columns, per the trace's
//! `schema.csv`):
//!
//! - `task_events`: 0 timestamp (us), 2 job ID, 3 task index, 5 event type (1 SCHEDULE; 2 EVICT,
//!   3 FAIL, 4 FINISH, 5 KILL, 6 LOST end a run), 9 CPU request, 10 memory request (both normalised
//!   to the largest machine, so they are scaled by `largest_machine_cpus` / `_mem_gib`).
//! - `task_usage` (optional): 2 job ID, 3 task index, 6 canonical memory usage (normalised). The hot
//!   fraction of a task is its mean canonical memory usage divided by its memory request.
//!
//! The trace's timestamps start at 600 s (earlier = before the window), so times are shifted by
//! -600 s and clamped at 0. A run that has not ended by the last event ends there.

use std::collections::HashMap;

use super::trace::{Request, Trace};
use super::SimError;

/// Scale of the normalised Google resource columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoogleScale {
    /// Cores of the largest machine (request 1.0).
    pub largest_machine_cpus: f64,
    /// GiB of the largest machine (request 1.0).
    pub largest_machine_mem_gib: f64,
    /// Hot fraction when `task_usage` has no sample for a task.
    pub default_hot_fraction: f64,
}

impl Default for GoogleScale {
    fn default() -> Self {
        GoogleScale {
            largest_machine_cpus: 32.0,
            largest_machine_mem_gib: 128.0,
            default_hot_fraction: 0.5,
        }
    }
}

const TRACE_START_US: f64 = 600e6;

fn field<'a>(
    line: usize,
    fields: &[&'a str],
    col: usize,
    name: &'static str,
) -> Result<&'a str, SimError> {
    fields.get(col).copied().ok_or_else(|| SimError::Csv {
        line,
        column: col + 1,
        name,
        reason: format!("missing (line has {} columns)", fields.len()),
    })
}

fn number(
    line: usize,
    fields: &[&str],
    col: usize,
    name: &'static str,
) -> Result<Option<f64>, SimError> {
    let text = field(line, fields, col, name)?;
    if text.is_empty() {
        return Ok(None); // the trace leaves unknown values empty
    }
    let v: f64 = text.parse().map_err(|_| SimError::Csv {
        line,
        column: col + 1,
        name,
        reason: format!("`{text}` is not a number"),
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(SimError::Csv {
            line,
            column: col + 1,
            name,
            reason: format!("`{text}` must be a finite number >= 0"),
        });
    }
    Ok(Some(v))
}

fn key(line: usize, fields: &[&str]) -> Result<(u64, u64), SimError> {
    let parse = |col: usize, name: &'static str| -> Result<u64, SimError> {
        let text = field(line, fields, col, name)?;
        text.parse().map_err(|_| SimError::Csv {
            line,
            column: col + 1,
            name,
            reason: format!("`{text}` is not an unsigned integer"),
        })
    };
    Ok((parse(2, "job_id")?, parse(3, "task_index")?))
}

/// Mean canonical memory usage per task from `task_usage` text.
pub fn parse_task_usage(text: &str) -> Result<HashMap<(u64, u64), f64>, SimError> {
    let mut sums: HashMap<(u64, u64), (f64, u32)> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').collect();
        let k = key(i + 1, &fields)?;
        if let Some(mem) = number(i + 1, &fields, 6, "canonical_memory_usage")? {
            let e = sums.entry(k).or_insert((0.0, 0));
            e.0 += mem;
            e.1 += 1;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(k, (s, n))| (k, s / f64::from(n)))
        .collect())
}

/// Converts `task_events` text (and optional per-task mean memory usage) into a trace.
pub fn convert(
    task_events: &str,
    usage: Option<&HashMap<(u64, u64), f64>>,
    scale: &GoogleScale,
) -> Result<Trace, SimError> {
    struct Open {
        start: f64,
        cpu: f64,
        mem: f64,
    }
    let mut open: HashMap<(u64, u64), Open> = HashMap::new();
    let mut requests = Vec::new();
    let mut last_t = 0.0f64;
    let mut id = 0u64;
    let mut finish = |k: (u64, u64), o: Open, end: f64, requests: &mut Vec<Request>| {
        if end <= o.start || o.cpu <= 0.0 || o.mem <= 0.0 {
            return; // zero-length runs and requests without resources use no capacity
        }
        let hot = usage
            .and_then(|u| u.get(&k))
            .map(|used| (used / o.mem).clamp(0.01, 1.0))
            .unwrap_or(scale.default_hot_fraction);
        requests.push(Request {
            id,
            arrival_s: o.start,
            departure_s: end,
            cpus: o.cpu * scale.largest_machine_cpus,
            mem_gib: o.mem * scale.largest_machine_mem_gib,
            hot_fraction: hot,
        });
        id += 1;
    };
    for (i, raw) in task_events.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').collect();
        let ts = number(line, &fields, 0, "timestamp")?.unwrap_or(0.0);
        let t = ((ts - TRACE_START_US) / 1e6).max(0.0);
        last_t = last_t.max(t);
        let k = key(line, &fields)?;
        let event = number(line, &fields, 5, "event_type")?.unwrap_or(-1.0);
        match event as i64 {
            1 => {
                let cpu = number(line, &fields, 9, "cpu_request")?.unwrap_or(0.0);
                let mem = number(line, &fields, 10, "memory_request")?.unwrap_or(0.0);
                if let Some(prev) = open.insert(k, Open { start: t, cpu, mem }) {
                    finish(k, prev, t, &mut requests);
                }
            }
            2..=6 => {
                if let Some(o) = open.remove(&k) {
                    finish(k, o, t, &mut requests);
                }
            }
            _ => {}
        }
    }
    let mut still_open: Vec<_> = open.into_iter().collect();
    still_open.sort_by_key(|(k, _)| *k); // HashMap order is random; output must be deterministic
    for (k, o) in still_open {
        finish(k, o, last_t, &mut requests);
    }
    Ok(Trace::new(requests, Some(last_t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_finish_pairs_become_requests() {
        let ev = "600000000,,7,0,1,1,u,0,0,0.0625,0.0312,0,0\n\
                  610000000,,7,1,1,1,u,0,0,0.125,0.25,0,0\n\
                  700000000,,7,0,1,4,u,0,0,,,,\n\
                  900000000,,9,0,1,0,u,0,0,0.5,0.5,0,0\n";
        let usage = parse_task_usage("0,1,7,0,1,0.1,0.0156,0.02\n").unwrap();
        let t = convert(ev, Some(&usage), &GoogleScale::default()).unwrap();
        assert_eq!(t.requests.len(), 2);
        let a = t.requests.iter().find(|r| r.arrival_s == 0.0).unwrap();
        assert_eq!(a.departure_s, 100.0);
        assert_eq!(a.cpus, 2.0);
        assert!((a.mem_gib - 0.0312 * 128.0).abs() < 1e-9);
        assert!((a.hot_fraction - 0.0156 / 0.0312).abs() < 1e-9);
        // task (7,1) never finished: it ends at the last event (300 s); no usage -> default hot.
        let b = t.requests.iter().find(|r| r.arrival_s == 10.0).unwrap();
        assert_eq!(b.departure_s, 300.0);
        assert_eq!(b.hot_fraction, 0.5);
    }

    #[test]
    fn bad_field_reports_line_and_column() {
        let ev = "600000000,,7,0,1,1,u,0,0,0.1,0.1,0,0\n600000000,,7,x,1,1,u,0,0,0.1,0.1,0,0\n";
        let e = convert(ev, None, &GoogleScale::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("column 4"), "{e}");
    }
}
