//! The stored form of issue 18's state (proto/SEMANTICS.md section 2a): a policy's
//! optional rules, the time window's buckets and the count window's slow marks. Every
//! field is additional to `StoredProtector`'s first 27, so records written before them
//! decode (no rules, an empty time window, no slow call) and a policy without rules
//! stores exactly what it stored before. Also the encodings every record shares:
//! instants as nanoseconds, booleans as bits.

use std::time::Duration;

use resilient_circuit_breaker::{Bucket, Multiplier, Rules, Time, TimeWindowState};

/// `t` in nanoseconds since the Unix epoch, saturating.
pub fn nanos(t: Time) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch as a [`Time`].
pub fn time(n: u64) -> Time {
    Duration::from_nanos(n)
}

/// A policy's optional rules; absent from a record when every one is off.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredRules {
    /// Nanoseconds.
    #[prost(uint64, optional, tag = "1")]
    pub window_duration: Option<u64>,
    #[prost(uint32, optional, tag = "2")]
    pub minimum_calls: Option<u32>,
    #[prost(uint32, tag = "3")]
    pub consecutive_failures: u32,
    /// Nanoseconds.
    #[prost(uint64, optional, tag = "4")]
    pub slow_call_duration: Option<u64>,
    #[prost(uint32, optional, tag = "5")]
    pub slow_n: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub slow_d: Option<u32>,
    /// Thousandths; absent = 1.
    #[prost(uint32, optional, tag = "7")]
    pub cooldown_multiplier: Option<u32>,
    /// Nanoseconds.
    #[prost(uint64, optional, tag = "8")]
    pub max_cooldown: Option<u64>,
    #[prost(bool, tag = "9")]
    pub shadow: bool,
    #[prost(uint32, tag = "10")]
    pub history_size: u32,
}

impl StoredRules {
    /// The stored form, or `None` when every rule is off.
    pub fn new(r: &Rules) -> Option<StoredRules> {
        (*r != Rules::default()).then(|| StoredRules {
            window_duration: r.window_duration.map(nanos),
            minimum_calls: r.minimum_calls,
            consecutive_failures: r.consecutive_failures,
            slow_call_duration: r.slow_call_duration.map(nanos),
            slow_n: r.slow_call_limit.map(|f| f.0),
            slow_d: r.slow_call_limit.map(|f| f.1),
            cooldown_multiplier: (r.cooldown_multiplier != Multiplier::ONE)
                .then(|| r.cooldown_multiplier.as_thousandths()),
            max_cooldown: r.max_cooldown.map(nanos),
            shadow: r.shadow,
            history_size: r.history_size,
        })
    }

    /// The rules back, unchecked (`Protector::restore` checks them with the policy).
    pub fn rules(&self) -> Result<Rules, String> {
        let slow_call_limit = match (self.slow_n, self.slow_d) {
            (Some(n), Some(d)) => Some((n, d)),
            (None, None) => None,
            _ => return Err("half a slow_call_limit".into()),
        };
        Ok(Rules {
            window_duration: self.window_duration.map(time),
            minimum_calls: self.minimum_calls,
            consecutive_failures: self.consecutive_failures,
            slow_call_duration: self.slow_call_duration.map(time),
            slow_call_limit,
            cooldown_multiplier: self
                .cooldown_multiplier
                .map_or(Multiplier::ONE, Multiplier::thousandths),
            max_cooldown: self.max_cooldown.map(time),
            shadow: self.shadow,
            history_size: self.history_size,
        })
    }
}

/// A time window's clock and non-empty buckets, as packed columns (a full one-hour
/// window of 3,600 buckets is about 20 KB).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredTimeWindow {
    /// The newest bucket index the window has seen.
    #[prost(uint64, tag = "1")]
    pub latest: u64,
    /// Each bucket's distance below `latest`, oldest first.
    #[prost(uint64, repeated, tag = "2")]
    pub age: Vec<u64>,
    #[prost(uint32, repeated, tag = "3")]
    pub calls: Vec<u32>,
    #[prost(uint32, repeated, tag = "4")]
    pub failures: Vec<u32>,
    #[prost(uint32, repeated, tag = "5")]
    pub slow: Vec<u32>,
}

impl StoredTimeWindow {
    /// The stored form.
    pub fn new(w: &TimeWindowState) -> StoredTimeWindow {
        StoredTimeWindow {
            latest: w.latest,
            age: w
                .buckets
                .iter()
                .map(|b| w.latest.saturating_sub(b.index))
                .collect(),
            calls: w.buckets.iter().map(|b| b.calls).collect(),
            failures: w.buckets.iter().map(|b| b.failures).collect(),
            slow: w.buckets.iter().map(|b| b.slow).collect(),
        }
    }

    /// The plain data back (checked by `TimeWindow::restore`).
    pub fn state(&self) -> Result<TimeWindowState, String> {
        let n = self.age.len();
        if [self.calls.len(), self.failures.len(), self.slow.len()] != [n; 3] {
            return Err("time window columns of different lengths".into());
        }
        let buckets = (0..n)
            .map(|i| {
                let index = self
                    .latest
                    .checked_sub(self.age[i])
                    .ok_or("a time window bucket older than the epoch")?;
                Ok(Bucket {
                    index,
                    calls: self.calls[i],
                    failures: self.failures[i],
                    slow: self.slow[i],
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(TimeWindowState {
            latest: self.latest,
            buckets,
        })
    }
}

/// Booleans as bits, one per entry, least significant first.
pub fn pack(bits: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, on) in bits.iter().enumerate() {
        if *on {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    bytes
}

/// The first `len` bits of `bytes`; an error when there are fewer.
pub fn unpack(bytes: &[u8], len: usize, what: &str) -> Result<Vec<bool>, String> {
    if bytes.len() < len.div_ceil(8) {
        return Err(format!("{what} shorter than its length"));
    }
    Ok((0..len).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message;
    use resilient_circuit_breaker::{Decision, Outcome, Policy, PolicySpec, Protector, Rules};

    use super::super::StoredProtector;

    const T0: Duration = Duration::from_secs(1_700_000_000);

    /// A protector with every kind of state issue 18 added: rules, a time window with
    /// buckets, slow calls.
    fn busy(window_duration: Option<Duration>) -> Protector {
        let rules = Rules {
            window_duration,
            consecutive_failures: 9,
            slow_call_duration: Some(Duration::from_millis(100)),
            slow_call_limit: Some((9, 10)),
            cooldown_multiplier: resilient_circuit_breaker::Multiplier::thousandths(1_500),
            max_cooldown: Some(Duration::from_secs(60)),
            history_size: 5,
            ..Rules::default()
        };
        let spec = PolicySpec {
            failure_limit: (9, 10),
            cooldown: Duration::from_secs(1),
            ..PolicySpec::default()
        };
        let mut p = Protector::new(Policy::try_with(spec, rules).unwrap());
        for i in 0..6u64 {
            let now = T0 + Duration::from_millis(i * 250);
            let Decision::Admitted { permit, .. } = p.acquire(now).decision else {
                panic!("rejected")
            };
            let outcome = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            p.report_timed(permit, outcome, Some(Duration::from_millis(i * 40)), now);
        }
        p
    }

    #[test]
    fn rules_buckets_and_slow_marks_survive_encoding() {
        for window_duration in [None, Some(Duration::from_secs(5))] {
            let p = busy(window_duration);
            let stored = StoredProtector::new("p", &p, 3, 4).policy_set_at(2);
            let decoded = StoredProtector::decode(stored.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded, stored);
            assert_eq!(decoded.policy_revision, Some(2));
            assert_eq!(decoded.protector().unwrap(), p);
        }
    }

    #[test]
    fn a_record_written_before_the_rules_still_loads() {
        let plain = Protector::new(Policy::default());
        let stored = StoredProtector::new("old", &plain, 1, 1);
        assert_eq!(stored.rules, None, "a policy without rules stores no rules");
        assert!(stored.window_slow.is_empty() && stored.time_window.is_none());
        // Fields 27 to 30 absent, as an older daemon wrote it.
        let decoded = StoredProtector::decode(stored.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.protector().unwrap(), plain);
        assert_eq!(decoded.policy_revision, None);
    }

    #[test]
    fn damaged_time_windows_are_refused() {
        let p = busy(Some(Duration::from_secs(5)));
        let good = StoredProtector::new("p", &p, 1, 1);
        let spoil: [fn(&mut StoredProtector); 3] = [
            |s| {
                s.time_window
                    .as_mut()
                    .unwrap()
                    .calls
                    .pop()
                    .map(drop)
                    .unwrap_or(())
            },
            |s| s.time_window.as_mut().unwrap().age[0] = u64::MAX,
            |s| s.time_window.as_mut().unwrap().failures[0] = u32::MAX,
        ];
        for (i, spoil) in spoil.iter().enumerate() {
            let mut s = good.clone();
            spoil(&mut s);
            assert!(s.protector().is_err(), "spoil {i} was accepted");
        }
    }
}
