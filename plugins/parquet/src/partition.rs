//! Hive-style time partitions from a timestamp column.

use std::collections::HashMap;

use arrow::array::{Array, TimestampNanosecondArray};

/// Directory for rows whose time is null (Hive's convention).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Splits rows into partitions named by a strftime pattern.
///
/// Rows are grouped by the pattern's finest unit (second, minute, hour or
/// day) with integer division, so the pattern is formatted once per group and
/// batch, not once per row.
pub struct Partitioner {
    pattern: String,
    granularity_ns: i64,
    groups: HashMap<i64, Vec<u32>>,
}

impl Partitioner {
    /// A partitioner for `pattern`, or why the pattern is unusable.
    pub fn new(pattern: &str) -> Result<Self, String> {
        check_pattern(pattern)?;
        let granularity_s = if pattern.contains("%S") || pattern.contains("%T") || pattern.contains("%s") {
            1
        } else if pattern.contains("%M") || pattern.contains("%R") {
            60
        } else if ["%H", "%k", "%I", "%l"].iter().any(|p| pattern.contains(p)) {
            3600
        } else {
            86_400
        };
        Ok(Self {
            pattern: pattern.to_string(),
            granularity_ns: granularity_s * 1_000_000_000,
            groups: HashMap::new(),
        })
    }

    /// Groups the rows of `times` by partition directory, calling `f` once
    /// per partition with its directory and row indices (in order).
    pub fn split(&mut self, times: &TimestampNanosecondArray, mut f: impl FnMut(&str, &[u32])) {
        for v in self.groups.values_mut() {
            v.clear();
        }
        let mut nulls = Vec::new();
        for i in 0..times.len() {
            if times.is_null(i) {
                nulls.push(i as u32);
                continue;
            }
            let bucket = times.value(i).div_euclid(self.granularity_ns);
            self.groups.entry(bucket).or_default().push(i as u32);
        }
        let mut keys: Vec<i64> = self.groups.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| *k).collect();
        keys.sort_unstable();
        // Different buckets can format to the same directory (a month
        // pattern with day buckets); merge them so one file gets them all.
        let mut by_dir: Vec<(String, Vec<u32>)> = Vec::new();
        for k in keys {
            let dir = self.format(k * self.granularity_ns);
            let rows = &self.groups[&k];
            match by_dir.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, v)) => v.extend_from_slice(rows),
                None => by_dir.push((dir, rows.clone())),
            }
        }
        for (dir, mut rows) in by_dir {
            rows.sort_unstable();
            f(&dir, &rows);
        }
        if !nulls.is_empty() {
            f(NULL_PARTITION, &nulls);
        }
        // Keep the map from growing without bound on long runs.
        if self.groups.len() > 64 {
            self.groups.clear();
        }
    }

    fn format(&self, ns: i64) -> String {
        chrono::DateTime::from_timestamp_nanos(ns).format(&self.pattern).to_string()
    }
}

/// Rejects patterns that chrono cannot format or that escape the directory.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{pattern}` is not a valid strftime pattern"));
    }
    if pattern.starts_with('/') || pattern.split('/').any(|p| p == ".." || p == "." || p.is_empty()) {
        return Err(format!("`{pattern}` must be a relative path without `..`, `.` or empty parts"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_grouped_by_hour_in_time_order() {
        let h = 3_600_000_000_000i64;
        let t0 = 1_767_225_600_000_000_000i64; // 2026-01-01T00:00:00Z
        let times = TimestampNanosecondArray::from(vec![
            Some(t0 + h + 5),
            Some(t0),
            None,
            Some(t0 + 10),
            Some(t0 + h),
        ]);
        let mut p = Partitioner::new("dt=%Y-%m-%d/hour=%H").unwrap();
        let mut seen = Vec::new();
        p.split(&times, |dir, rows| seen.push((dir.to_string(), rows.to_vec())));
        assert_eq!(
            seen,
            vec![
                ("dt=2026-01-01/hour=00".to_string(), vec![1, 3]),
                ("dt=2026-01-01/hour=01".to_string(), vec![0, 4]),
                (NULL_PARTITION.to_string(), vec![2]),
            ]
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Partitioner::new("dt=%Q").is_err());
        assert!(Partitioner::new("../escape/%Y").is_err());
        assert!(Partitioner::new("/abs/%Y").is_err());
    }
}
