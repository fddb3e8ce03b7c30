//! When each target is polled next: a min-heap of due times, so a wake
//! costs O(log n) per target started instead of a scan and sort of every
//! target. Entries are invalidated lazily: each carries the slot number the
//! target held when it was scheduled, and an entry whose target was removed,
//! replaced or rescheduled since is skipped when it reaches the top (and the
//! heap is rebuilt if such entries ever outnumber the live ones).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tokio::time::Instant;

/// A scheduled poll: due time, slot, target name.
type Entry = Reverse<(Instant, u64, String)>;

/// The due-time heap.
#[derive(Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Entry>,
    next_slot: u64,
}

impl Schedule {
    /// Schedules `name` at `due`; returns the slot the target must hold for
    /// the entry to stay valid.
    pub fn add(&mut self, name: &str, due: Instant) -> u64 {
        self.next_slot += 1;
        self.heap.push(Reverse((due, self.next_slot, name.to_string())));
        self.next_slot
    }

    /// The earliest valid due time.
    pub fn next(&mut self, valid: impl Fn(&str, u64) -> bool) -> Option<Instant> {
        while let Some(Reverse((due, slot, name))) = self.heap.peek() {
            if valid(name, *slot) {
                return Some(*due);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest valid entry due at `now` or before.
    pub fn pop_due(&mut self, now: Instant, valid: impl Fn(&str, u64) -> bool) -> Option<String> {
        let due = self.next(&valid)?;
        if due > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, _, name))| name)
    }

    /// Drops invalid entries once they outnumber `live` (the targets that
    /// hold a slot) by more than a margin: removals cannot grow the heap
    /// without bound.
    pub fn compact(&mut self, live: usize, valid: impl Fn(&str, u64) -> bool) {
        if self.heap.len() > 2 * live + 64 {
            self.heap.retain(|Reverse((_, slot, name))| valid(name, *slot));
        }
    }

    /// Entries held, valid or not.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_due_order_and_skips_what_was_rescheduled_or_removed() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let mut slots: HashMap<&str, u64> = HashMap::new();
        slots.insert("c", s.add("c", t0 + Duration::from_secs(3)));
        slots.insert("a", s.add("a", t0 + Duration::from_secs(1)));
        slots.insert("b", s.add("b", t0 + Duration::from_secs(2)));
        // `a` is rescheduled later; `b` is removed.
        slots.insert("a", s.add("a", t0 + Duration::from_secs(5)));
        slots.remove("b");
        fn valid<'a>(slots: &'a HashMap<&str, u64>) -> impl Fn(&str, u64) -> bool + 'a {
            move |n, slot| slots.get(n) == Some(&slot)
        }
        assert_eq!(s.next(valid(&slots)), Some(t0 + Duration::from_secs(3)));
        assert_eq!(s.pop_due(t0 + Duration::from_secs(2), valid(&slots)), None);
        assert_eq!(s.pop_due(t0 + Duration::from_secs(10), valid(&slots)).as_deref(), Some("c"));
        slots.remove("c");
        assert_eq!(s.pop_due(t0 + Duration::from_secs(10), valid(&slots)).as_deref(), Some("a"));
        slots.remove("a");
        assert_eq!(s.pop_due(t0 + Duration::from_secs(10), valid(&slots)), None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn removed_targets_cannot_grow_the_heap_without_bound() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let live = s.add("live", t0);
        for i in 0..10_000 {
            s.add(&format!("gone{i}"), t0 + Duration::from_secs(3600));
            s.compact(1, |n, slot| n == "live" && slot == live);
        }
        assert!(s.len() <= 2 + 64, "{}", s.len());
    }
}
