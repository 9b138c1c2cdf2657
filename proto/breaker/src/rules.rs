//! The optional rules of proto/SEMANTICS.md section 2a (issue 18): time window, minimum
//! calls, consecutive failures, slow calls, cooldown backoff, shadow mode and history.
//! Every one is off in [`Rules::default`], which is exactly the policy of sections 1 and 2.
//!
//! They live apart from [`PolicySpec`](crate::PolicySpec) so that every caller building a
//! `PolicySpec` field by field keeps compiling; [`Policy::try_with`](crate::Policy::try_with)
//! takes both.

use std::fmt;
use std::time::Duration;

use crate::fraction::{Fraction, InvalidFraction};

/// The shortest time window.
pub const MIN_WINDOW_DURATION: Duration = Duration::from_secs(1);
/// The longest time window.
pub const MAX_WINDOW_DURATION: Duration = Duration::from_secs(3600);
/// The largest `minimum_calls`.
pub const MAX_MINIMUM_CALLS: u32 = 1_000_000;
/// The largest `consecutive_failures`.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 10_000;
/// The shortest `slow_call_duration`.
pub const MIN_SLOW_CALL_DURATION: Duration = Duration::from_millis(1);
/// The longest `slow_call_duration`.
pub const MAX_SLOW_CALL_DURATION: Duration = Duration::from_secs(3600);
/// The shortest `max_cooldown`.
pub const MIN_MAX_COOLDOWN: Duration = Duration::from_millis(1);
/// The largest `history_size`.
pub const MAX_HISTORY_SIZE: u32 = 1_000_000;

/// A cooldown multiplier, kept in thousandths so that a policy compares and hashes
/// exactly (1.5 is 1,500). Valid from 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Multiplier(u32);

impl Multiplier {
    /// 1: no backoff.
    pub const ONE: Multiplier = Multiplier(1_000);
    /// The largest valid multiplier, 100.
    pub const MAX: Multiplier = Multiplier(100_000);

    /// `n` thousandths (unchecked: [`Policy::try_with`](crate::Policy::try_with) checks it).
    pub const fn thousandths(n: u32) -> Multiplier {
        Multiplier(n)
    }

    /// From a float (as the wire carries it), rounded to thousandths; `None` when it is
    /// not a finite number in u32 thousandths.
    pub fn from_f64(m: f64) -> Option<Multiplier> {
        let t = (m * 1_000.0).round();
        (t.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&t)).then_some(Multiplier(t as u32))
    }

    /// The value in thousandths.
    pub fn as_thousandths(self) -> u32 {
        self.0
    }

    /// `d` times this multiplier, exactly (in nanoseconds, rounded down), saturating.
    pub fn apply(self, d: Duration) -> Duration {
        let nanos = d.as_nanos().saturating_mul(u128::from(self.0)) / 1_000;
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }
}

impl Default for Multiplier {
    fn default() -> Self {
        Multiplier::ONE
    }
}

impl fmt::Display for Multiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1_000, self.0 % 1_000)
    }
}

/// The unchecked optional rules; `Rules::default()` turns every one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rules {
    /// CLOSED judges the outcomes of this last span instead of the last d; 1 s to 1 h.
    pub window_duration: Option<Duration>,
    /// With a time window, no rate rule is judged below this many calls; `None` = d.
    pub minimum_calls: Option<u32>,
    /// That many FAILUREs in a row trip CLOSED at once; 0 = off.
    pub consecutive_failures: u32,
    /// A call at or above this duration is slow; set with `slow_call_limit`.
    pub slow_call_duration: Option<Duration>,
    /// (n, d): trip when slow / calls >= n/d; set with `slow_call_duration`.
    pub slow_call_limit: Option<(u32, u32)>,
    /// Each reopening from HALF_OPEN multiplies the previous cooldown by this.
    pub cooldown_multiplier: Multiplier,
    /// The cap of the multiplied cooldown; `None` = 30 days.
    pub max_cooldown: Option<Duration>,
    /// Admit every Acquire, saying what the machine would have decided.
    pub shadow: bool,
    /// Recent outcomes kept for a what-if replay; 0 = off.
    pub history_size: u32,
}

/// The first optional rule a [`Rules`] violates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRules {
    /// `window_duration` is below 1 s.
    WindowTooShort,
    /// `window_duration` is above 1 h.
    WindowTooLong,
    /// `minimum_calls` is set without `window_duration`.
    MinimumCallsWithoutWindow,
    /// `minimum_calls` is 0 or above 1,000,000.
    MinimumCallsOutOfRange,
    /// `consecutive_failures` is above 10,000.
    ConsecutiveFailuresTooMany,
    /// `slow_call_duration` is below 1 ms.
    SlowCallDurationTooShort,
    /// `slow_call_duration` is above 1 h.
    SlowCallDurationTooLong,
    /// `slow_call_duration` is set without `slow_call_limit`.
    SlowCallDurationWithoutLimit,
    /// `slow_call_limit` is not a valid fraction.
    SlowCallLimit(InvalidFraction),
    /// `slow_call_limit` is set without `slow_call_duration`.
    SlowCallLimitWithoutDuration,
    /// `cooldown_multiplier` is below 1.
    MultiplierBelowOne,
    /// `cooldown_multiplier` is above 100.
    MultiplierTooLarge,
    /// `max_cooldown` is below 1 ms.
    MaxCooldownTooShort,
    /// `max_cooldown` is above 30 days.
    MaxCooldownTooLong,
    /// `max_cooldown` is below `cooldown`.
    MaxCooldownBelowCooldown,
    /// `history_size` is above 1,000,000.
    HistoryTooLarge,
}

impl InvalidRules {
    /// The policy field the violation concerns, as named in the proto.
    pub fn field(self) -> &'static str {
        match self {
            Self::WindowTooShort | Self::WindowTooLong => "window_duration",
            Self::MinimumCallsWithoutWindow | Self::MinimumCallsOutOfRange => "minimum_calls",
            Self::ConsecutiveFailuresTooMany => "consecutive_failures",
            Self::SlowCallDurationTooShort
            | Self::SlowCallDurationTooLong
            | Self::SlowCallDurationWithoutLimit => "slow_call_duration",
            Self::SlowCallLimit(_) | Self::SlowCallLimitWithoutDuration => "slow_call_limit",
            Self::MultiplierBelowOne | Self::MultiplierTooLarge => "cooldown_multiplier",
            Self::MaxCooldownTooShort | Self::MaxCooldownTooLong | Self::MaxCooldownBelowCooldown => {
                "max_cooldown"
            }
            Self::HistoryTooLarge => "history_size",
        }
    }
}

impl fmt::Display for InvalidRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            Self::WindowTooShort => "window_duration must be at least 1s",
            Self::WindowTooLong => "window_duration must be at most 1h",
            Self::MinimumCallsWithoutWindow => "minimum_calls needs window_duration",
            Self::MinimumCallsOutOfRange => "minimum_calls must be 1 to 1000000",
            Self::ConsecutiveFailuresTooMany => "consecutive_failures must be at most 10000",
            Self::SlowCallDurationTooShort => "slow_call_duration must be at least 1ms",
            Self::SlowCallDurationTooLong => "slow_call_duration must be at most 1h",
            Self::SlowCallDurationWithoutLimit => "slow_call_duration needs slow_call_limit",
            Self::SlowCallLimit(e) => return write!(f, "slow_call_limit: {e}"),
            Self::SlowCallLimitWithoutDuration => "slow_call_limit needs slow_call_duration",
            Self::MultiplierBelowOne => "cooldown_multiplier must be at least 1",
            Self::MultiplierTooLarge => "cooldown_multiplier must be at most 100",
            Self::MaxCooldownTooShort => "max_cooldown must be at least 1ms",
            Self::MaxCooldownTooLong => "max_cooldown must be at most 30 days",
            Self::MaxCooldownBelowCooldown => "max_cooldown must not be below cooldown",
            Self::HistoryTooLarge => "history_size must be at most 1000000",
        };
        f.write_str(why)
    }
}

impl std::error::Error for InvalidRules {}

/// [`Rules`] checked against the policy's `cooldown`, in table order.
pub(crate) fn check(rules: &Rules, cooldown: Duration, max: Duration) -> Result<Checked, InvalidRules> {
    use InvalidRules as E;
    if let Some(w) = rules.window_duration {
        if w < MIN_WINDOW_DURATION {
            return Err(E::WindowTooShort);
        }
        if w > MAX_WINDOW_DURATION {
            return Err(E::WindowTooLong);
        }
    }
    if let Some(m) = rules.minimum_calls {
        if rules.window_duration.is_none() {
            return Err(E::MinimumCallsWithoutWindow);
        }
        if m == 0 || m > MAX_MINIMUM_CALLS {
            return Err(E::MinimumCallsOutOfRange);
        }
    }
    if rules.consecutive_failures > MAX_CONSECUTIVE_FAILURES {
        return Err(E::ConsecutiveFailuresTooMany);
    }
    if let Some(d) = rules.slow_call_duration {
        if d < MIN_SLOW_CALL_DURATION {
            return Err(E::SlowCallDurationTooShort);
        }
        if d > MAX_SLOW_CALL_DURATION {
            return Err(E::SlowCallDurationTooLong);
        }
        if rules.slow_call_limit.is_none() {
            return Err(E::SlowCallDurationWithoutLimit);
        }
    }
    let slow_call_limit = rules
        .slow_call_limit
        .map(|(n, d)| Fraction::try_new(n, d))
        .transpose()
        .map_err(E::SlowCallLimit)?;
    if slow_call_limit.is_some() && rules.slow_call_duration.is_none() {
        return Err(E::SlowCallLimitWithoutDuration);
    }
    if rules.cooldown_multiplier < Multiplier::ONE {
        return Err(E::MultiplierBelowOne);
    }
    if rules.cooldown_multiplier > Multiplier::MAX {
        return Err(E::MultiplierTooLarge);
    }
    if let Some(m) = rules.max_cooldown {
        if m < MIN_MAX_COOLDOWN {
            return Err(E::MaxCooldownTooShort);
        }
        if m > max {
            return Err(E::MaxCooldownTooLong);
        }
        if m < cooldown {
            return Err(E::MaxCooldownBelowCooldown);
        }
    }
    if rules.history_size > MAX_HISTORY_SIZE {
        return Err(E::HistoryTooLarge);
    }
    Ok(Checked {
        rules: *rules,
        slow_call_limit,
    })
}

/// Valid [`Rules`], with the slow-call fraction checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checked {
    pub rules: Rules,
    pub slow_call_limit: Option<Fraction>,
}
