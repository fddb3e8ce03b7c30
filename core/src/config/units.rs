//! Human-friendly durations (`500ms`, `5m`) and sizes (`64MiB`, `1GB`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as `5m`, `1h30m`, `250ms` (humantime syntax).
///
/// A bare number is rejected: `60` could mean seconds or milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// The longest duration a pipeline may give (ten years): anything longer
    /// is a typo, and would overflow clock arithmetic at run time.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

    /// The wrapped duration.
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, such as `30s`, `5m` or `250ms`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                let d = humantime::parse_duration(s.trim()).map_err(|e| {
                    E::custom(format!("invalid duration `{s}`: {e} (write e.g. `30s`, `5m`)"))
                })?;
                if d > HumanDuration::MAX {
                    return Err(E::custom(format!("duration `{s}` is longer than ten years")));
                }
                Ok(HumanDuration(d))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("duration `{v}` has no unit: write `{v}s` or `{v}ms`")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("duration `{v}` has no unit: write `{v}s` or `{v}ms`")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes: a plain number, or `64KiB`, `64MiB`, `1GiB`, `10MB` …
///
/// `KB`/`MB`/`GB` are powers of 1000 and `KiB`/`MiB`/`GiB` powers of 1024,
/// as their symbols say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The largest size a pipeline may give (1 PiB).
    pub const MAX: ByteSize = ByteSize(1 << 50);

    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size `{s}`: unknown unit `{unit}` (use B, KB, MB, GB, KiB, MiB, GiB)"
                ));
            }
        };
        let value: f64 =
            num.parse().map_err(|_| format!("invalid size `{s}`: expected a number and a unit"))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > ByteSize::MAX.0 as f64 {
            return Err(format!("invalid size `{s}`: out of range (at most 1PiB)"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `64MiB` or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                if v > ByteSize::MAX.0 {
                    return Err(E::custom(format!("size `{v}` is out of range (at most 1PiB)")));
                }
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                let v = u64::try_from(v).map_err(|_| E::custom(format!("size `{v}` is negative")))?;
                self.visit_u64(v)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// Rows per batch a source emits, 1 to 1,048,576: one type, checked once
/// when the file is read, for every source's `batch_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchSize(usize);

impl BatchSize {
    /// The largest batch: beyond it a batch stops fitting a cache-friendly
    /// working set and only delays the first records.
    pub const MAX: usize = 1 << 20;

    /// `rows` rows (a default); panics outside 1..=MAX, at compile time when
    /// used in a constant.
    pub const fn new(rows: usize) -> Self {
        assert!(rows >= 1 && rows <= Self::MAX, "a batch size is 1 to 1048576 rows");
        Self(rows)
    }

    /// Rows.
    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows", self.0)
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n == 0 || n > Self::MAX as u64 {
            return Err(de::Error::custom(format!("a batch size is 1 to {} rows, not {n}", Self::MAX)));
        }
        Ok(Self(n as usize))
    }
}

impl Serialize for BatchSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_their_symbols() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().get(), 64 << 20);
        assert_eq!("1.5 KB".parse::<ByteSize>().unwrap().get(), 1500);
        assert_eq!("42".parse::<ByteSize>().unwrap().get(), 42);
        assert!("12 parsecs".parse::<ByteSize>().unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn sizes_and_durations_are_range_checked() {
        assert!("2000TiB".parse::<ByteSize>().unwrap_err().contains("out of range"));
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!("400000000000y")).unwrap_err();
        assert!(e.to_string().contains("invalid duration") || e.to_string().contains("ten years"), "{e}");
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!("11y")).unwrap_err();
        assert!(e.to_string().contains("longer than ten years"), "{e}");
        assert!(serde_json::from_value::<HumanDuration>(serde_json::json!("9y")).is_ok());
    }

    #[test]
    fn batch_sizes_are_one_to_a_million_rows() {
        assert_eq!(serde_json::from_value::<BatchSize>(serde_json::json!(8192)).unwrap().get(), 8192);
        for bad in [0u64, (BatchSize::MAX as u64) + 1] {
            let e = serde_json::from_value::<BatchSize>(serde_json::json!(bad)).unwrap_err();
            assert!(e.to_string().contains("a batch size is 1 to 1048576 rows"), "{e}");
        }
        assert!(serde_json::from_value::<BatchSize>(serde_json::json!(-1)).is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        let d: HumanDuration = serde_json::from_value(serde_json::json!("5m")).unwrap();
        assert_eq!(d.get().as_secs(), 300);
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!(60)).unwrap_err();
        assert!(e.to_string().contains("has no unit"), "{e}");
    }
}
