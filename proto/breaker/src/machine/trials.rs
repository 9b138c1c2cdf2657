//! The trial permits in flight, indexed twice so that every operation on them costs
//! O(log n) in the number outstanding: by id, for a report that takes one back, and by
//! `(expires_at, id)`, for the next expiry (the due-scan and [`next_deadline`]). Both
//! indexes always hold the same permits; the second is derived from the first. Public so
//! that a journal replaying permits handed out and taken back can use the same structure.
//!
//! [`next_deadline`]: super::Protector::next_deadline

use std::collections::{BTreeMap, BTreeSet};

use crate::Time;

/// Trial permits in flight: id -> expiry, with the earliest expiry at hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialPermits {
    /// id -> expires_at.
    by_id: BTreeMap<u64, Time>,
    /// The same permits in expiry order; ties broken by id.
    by_expiry: BTreeSet<(Time, u64)>,
}

impl TrialPermits {
    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Drops them all.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.by_expiry.clear();
    }

    /// Adds permit `id` (ids are never reused, so it is new).
    pub fn insert(&mut self, id: u64, expires_at: Time) {
        if let Some(old) = self.by_id.insert(id, expires_at) {
            self.by_expiry.remove(&(old, id));
        }
        self.by_expiry.insert((expires_at, id));
    }

    /// Removes permit `id`; whether it was outstanding.
    pub fn take(&mut self, id: u64) -> bool {
        match self.by_id.remove(&id) {
            Some(expires_at) => {
                self.by_expiry.remove(&(expires_at, id));
                true
            }
            None => false,
        }
    }

    /// The permit that expires first: `(expires_at, id)`.
    pub fn earliest(&self) -> Option<(Time, u64)> {
        self.by_expiry.first().copied()
    }

    /// Every permit as `(id, expires_at)`, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Time)> + '_ {
        self.by_id.iter().map(|(&id, &at)| (id, at))
    }

    /// Removes every permit that expires at or before `at`; how many.
    pub fn expire_through(&mut self, at: Time) -> usize {
        let mut removed = 0;
        while let Some(&(expires_at, id)) = self.by_expiry.first()
            && expires_at <= at
        {
            self.by_expiry.pop_first();
            self.by_id.remove(&id);
            removed += 1;
        }
        removed
    }

    /// Moves every expiry later than `cap` to `cap`; whether any moved. Costs O(log n)
    /// per permit moved.
    pub fn cap(&mut self, cap: Time) -> bool {
        let mut changed = false;
        while let Some(&(at, id)) = self.by_expiry.last()
            && at > cap
        {
            self.by_expiry.pop_last();
            self.by_expiry.insert((cap, id));
            self.by_id.insert(id, cap);
            changed = true;
        }
        changed
    }
}

impl FromIterator<(u64, Time)> for TrialPermits {
    fn from_iter<I: IntoIterator<Item = (u64, Time)>>(iter: I) -> Self {
        let mut trials = TrialPermits::default();
        for (id, at) in iter {
            trials.insert(id, at);
        }
        trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Time {
        Duration::from_millis(ms)
    }

    #[test]
    fn both_indexes_agree_through_inserts_takes_and_caps() {
        let mut t = TrialPermits::default();
        // Expiries out of id order, as after a policy change of permit_ttl.
        for (id, ms) in [(1, 50), (2, 10), (3, 30), (4, 10)] {
            t.insert(id, at(ms));
        }
        assert_eq!(t.earliest(), Some((at(10), 2)));
        assert!(t.take(2));
        assert!(!t.take(2), "a permit is taken back once");
        assert_eq!(t.earliest(), Some((at(10), 4)));
        assert!(t.cap(at(20)));
        assert!(!t.cap(at(20)));
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![(1, at(20)), (3, at(20)), (4, at(10))]
        );
        assert_eq!(t.by_expiry.len(), t.len());
        assert_eq!(t.clone().expire_through(at(19)), 1);
        assert_eq!(t, t.iter().collect::<TrialPermits>());
        t.clear();
        assert_eq!((t.len(), t.earliest()), (0, None));
    }

    proptest::proptest! {
        /// Against a plain list: the same permits, the same earliest, after any sequence
        /// of inserts (fresh ids), takes (any id) and caps.
        #[test]
        fn agrees_with_a_list(ops in proptest::collection::vec((0u8..3, 0u64..40, 0u64..100), 0..200)) {
            let mut t = TrialPermits::default();
            let mut list: Vec<(u64, Time)> = Vec::new();
            let mut next = 1;
            for (op, x, ms) in ops {
                match op {
                    0 => {
                        t.insert(next, at(ms));
                        list.push((next, at(ms)));
                        next += 1;
                    }
                    1 => {
                        let had = list.iter().any(|&(id, _)| id == x);
                        list.retain(|&(id, _)| id != x);
                        proptest::prop_assert_eq!(t.take(x), had);
                    }
                    _ => {
                        let moved = list.iter().any(|&(_, e)| e > at(ms));
                        list.iter_mut().for_each(|(_, e)| *e = (*e).min(at(ms)));
                        proptest::prop_assert_eq!(t.cap(at(ms)), moved);
                    }
                }
                let earliest = list.iter().map(|&(id, e)| (e, id)).min();
                proptest::prop_assert_eq!(t.earliest(), earliest);
                proptest::prop_assert_eq!(t.iter().collect::<Vec<_>>(), list.clone());
                proptest::prop_assert_eq!(t.by_expiry.len(), list.len());
            }
        }
    }
}
