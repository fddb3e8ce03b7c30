//! Per-interval deltas and rates from polled counters.
//!
//! A counter that is lower than last time either wrapped (it passed its
//! maximum, 2^32 or 2^64, and started again) or was reset (the device
//! restarted, or the interface was re-created). The two are told apart by
//! sysUpTime: if the device's uptime went back, it restarted, and no delta
//! is reported for that interval (the counters started again from zero at
//! some unknown moment in it). Otherwise a lower value is a single wrap.
//! sysUpTime itself wraps after 497 days (2^32 centiseconds); a lower
//! uptime is taken as a wrap rather than a restart when the wall-clock time
//! between the polls agrees with the wrapped difference.

/// How the device's clock moved between two polls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elapsed {
    /// Seconds of device time between the polls.
    Seconds(f64),
    /// The device restarted: counters are not comparable.
    Restarted,
}

const UPTIME_WRAP: u64 = 1 << 32;

/// Time between two polls by sysUpTime (centiseconds), checked against the
/// wall clock (`wall_s` seconds between the polls' starts).
pub fn elapsed(prev_uptime: u32, uptime: u32, wall_s: f64) -> Elapsed {
    if uptime >= prev_uptime {
        let dev = (uptime - prev_uptime) as f64 / 100.0;
        // An uptime that moved far less than the wall clock did means a
        // restart that happened long enough ago to have caught up past the
        // old value; allow generous slack for timeouts and agent caching.
        if wall_s > 0.0 && dev + 30.0 < wall_s * 0.5 {
            return Elapsed::Restarted;
        }
        return Elapsed::Seconds(dev);
    }
    let wrapped = (uptime as u64 + UPTIME_WRAP - prev_uptime as u64) as f64 / 100.0;
    if (wrapped - wall_s).abs() <= (wall_s * 0.1).max(5.0) {
        Elapsed::Seconds(wrapped)
    } else {
        Elapsed::Restarted
    }
}

/// Delta of a counter of `bits` width (32 or 64) between two reads taken
/// with no restart in between.
pub fn delta(prev: u64, now: u64, bits: u32) -> u64 {
    if now >= prev {
        now - prev
    } else if bits >= 64 {
        now.wrapping_sub(prev)
    } else {
        (now + (1u64 << bits)).saturating_sub(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_wrap_at_their_width() {
        assert_eq!(delta(10, 25, 64), 15);
        assert_eq!(delta(u32::MAX as u64 - 5, 4, 32), 10);
        assert_eq!(delta(u64::MAX - 1, 3, 64), 5);
    }

    #[test]
    fn uptime_tells_restart_from_wrap() {
        // 60 s apart by both clocks.
        assert_eq!(elapsed(1000, 7000, 60.0), Elapsed::Seconds(60.0));
        // Uptime wrapped: 30 s before the wrap, 30 s after.
        let before = (UPTIME_WRAP - 3000) as u32;
        assert_eq!(elapsed(before, 3000, 60.0), Elapsed::Seconds(60.0));
        // Uptime went back, and the wall clock does not fit a wrap.
        assert_eq!(elapsed(900_000, 1500, 60.0), Elapsed::Restarted);
        // Restarted long ago relative to a long gap between polls: uptime
        // is ahead of the old value but moved far less than the wall clock.
        assert_eq!(elapsed(1000, 2000, 3600.0), Elapsed::Restarted);
    }
}
