//! A protector's validated rules. [`Policy::try_new`] checks one rule at a time and names
//! the first one violated, with the field it concerns, so the daemon can answer
//! INVALID_ARGUMENT naming that field.

use std::fmt;
use std::time::Duration;

pub use crate::fraction::{Fraction, InvalidFraction, MAX_DENOMINATOR};
use crate::rules::{self, Checked, InvalidRules, Multiplier, Rules};

/// The longest cooldown (and `open_for`, and override expiry): 30 days.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest permit TTL.
pub const MIN_PERMIT_TTL: Duration = Duration::from_millis(1);
/// The longest permit TTL.
pub const MAX_PERMIT_TTL: Duration = Duration::from_secs(3600);
/// The most trial permits a policy may allow at once.
pub const MAX_TRIAL_PERMITS: u32 = 10_000;
/// The default permit TTL.
pub const DEFAULT_PERMIT_TTL: Duration = Duration::from_secs(30);

/// The unchecked inputs of a [`Policy`]; `PolicySpec::default()` is the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySpec {
    /// How long OPEN rejects before a trial; 0 to 30 days.
    pub cooldown: Duration,
    /// (n, d) of the trip rule.
    pub failure_limit: (u32, u32),
    /// (n, d) of the HALF_OPEN close rule; `None` = use the failure rule.
    pub success_limit: Option<(u32, u32)>,
    /// Most trials in flight in HALF_OPEN; 0 = unlimited; `None` = the HALF_OPEN window size.
    pub trial_permits: Option<u32>,
    /// How long a trial permit lives unreported; 1 ms to 1 h.
    pub permit_ttl: Duration,
    /// Whether the machine moves OPEN to HALF_OPEN by itself at `open_until`.
    pub auto_half_open: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            cooldown: Duration::ZERO,
            failure_limit: (1, 1),
            success_limit: None,
            trial_permits: None,
            permit_ttl: DEFAULT_PERMIT_TTL,
            auto_half_open: false,
        }
    }
}

/// The first rule a [`PolicySpec`] violates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidPolicy {
    /// `cooldown` is above 30 days.
    CooldownTooLong,
    /// `failure_limit` is not a valid fraction.
    FailureLimit(InvalidFraction),
    /// `success_limit` is not a valid fraction.
    SuccessLimit(InvalidFraction),
    /// `trial_permits` is above 10,000.
    TrialPermitsTooMany,
    /// `permit_ttl` is below 1 ms.
    PermitTtlTooShort,
    /// `permit_ttl` is above 1 h.
    PermitTtlTooLong,
}

impl InvalidPolicy {
    /// The policy field the violation concerns, as named in the proto.
    pub fn field(self) -> &'static str {
        match self {
            Self::CooldownTooLong => "cooldown",
            Self::FailureLimit(_) => "failure_limit",
            Self::SuccessLimit(_) => "success_limit",
            Self::TrialPermitsTooMany => "trial_permits",
            Self::PermitTtlTooShort | Self::PermitTtlTooLong => "permit_ttl",
        }
    }
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CooldownTooLong => f.write_str("cooldown must be at most 30 days"),
            Self::FailureLimit(e) => write!(f, "failure_limit: {e}"),
            Self::SuccessLimit(e) => write!(f, "success_limit: {e}"),
            Self::TrialPermitsTooMany => f.write_str("trial_permits must be at most 10000"),
            Self::PermitTtlTooShort => f.write_str("permit_ttl must be at least 1ms"),
            Self::PermitTtlTooLong => f.write_str("permit_ttl must be at most 1h"),
        }
    }
}

impl std::error::Error for InvalidPolicy {}

/// A protector's rules, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    cooldown: Duration,
    failure_limit: Fraction,
    success_limit: Option<Fraction>,
    trial_permits: Option<u32>,
    permit_ttl: Duration,
    auto_half_open: bool,
    /// The optional rules of section 2a, checked.
    rules: Checked,
}

/// Why [`Policy::try_with`] refused a policy: a rule of section 1 or one of section 2a.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// A rule of the [`PolicySpec`].
    Spec(InvalidPolicy),
    /// A rule of the [`Rules`].
    Rules(InvalidRules),
}

impl PolicyError {
    /// The policy field the violation concerns, as named in the proto.
    pub fn field(self) -> &'static str {
        match self {
            Self::Spec(e) => e.field(),
            Self::Rules(e) => e.field(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spec(e) => e.fmt(f),
            Self::Rules(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PolicyError {}

impl Default for Policy {
    fn default() -> Self {
        Policy::try_new(PolicySpec::default()).expect("the default policy is valid")
    }
}

impl Policy {
    /// Checks every rule of proto/SEMANTICS.md section 1, in field order, and names the first
    /// one violated.
    pub fn try_new(spec: PolicySpec) -> Result<Policy, InvalidPolicy> {
        if spec.cooldown > MAX_COOLDOWN {
            return Err(InvalidPolicy::CooldownTooLong);
        }
        let failure_limit = Fraction::try_new(spec.failure_limit.0, spec.failure_limit.1)
            .map_err(InvalidPolicy::FailureLimit)?;
        let success_limit = spec
            .success_limit
            .map(|(n, d)| Fraction::try_new(n, d))
            .transpose()
            .map_err(InvalidPolicy::SuccessLimit)?;
        if spec.trial_permits.is_some_and(|t| t > MAX_TRIAL_PERMITS) {
            return Err(InvalidPolicy::TrialPermitsTooMany);
        }
        if spec.permit_ttl < MIN_PERMIT_TTL {
            return Err(InvalidPolicy::PermitTtlTooShort);
        }
        if spec.permit_ttl > MAX_PERMIT_TTL {
            return Err(InvalidPolicy::PermitTtlTooLong);
        }
        Ok(Policy {
            cooldown: spec.cooldown,
            failure_limit,
            success_limit,
            trial_permits: spec.trial_permits,
            permit_ttl: spec.permit_ttl,
            auto_half_open: spec.auto_half_open,
            rules: Checked::default(),
        })
    }

    /// [`Policy::try_new`] plus the optional rules of section 2a, checked after the spec
    /// in table order; `Rules::default()` gives exactly `Policy::try_new(spec)`.
    pub fn try_with(spec: PolicySpec, rules: Rules) -> Result<Policy, PolicyError> {
        let mut policy = Policy::try_new(spec).map_err(PolicyError::Spec)?;
        policy.rules = rules::check(&rules, spec.cooldown, MAX_COOLDOWN).map_err(PolicyError::Rules)?;
        Ok(policy)
    }

    /// The optional rules as given (round-trips through [`Policy::try_with`] with
    /// [`Policy::spec`]).
    pub fn rules(&self) -> Rules {
        self.rules.rules
    }
    /// The time window's span, if CLOSED uses one.
    pub fn window_duration(&self) -> Option<Duration> {
        self.rules.rules.window_duration
    }
    /// With a time window: the fewest calls a rate rule is judged on (default d).
    pub fn minimum_calls(&self) -> u32 {
        self.rules
            .rules
            .minimum_calls
            .unwrap_or(self.failure_limit.denominator())
    }
    /// The streak that trips CLOSED at once; 0 = off.
    pub fn consecutive_failures_limit(&self) -> u32 {
        self.rules.rules.consecutive_failures
    }
    /// The slow-call rule: (duration at or above which a call is slow, rate that trips).
    pub fn slow_calls(&self) -> Option<(Duration, Fraction)> {
        self.rules
            .rules
            .slow_call_duration
            .zip(self.rules.slow_call_limit)
    }
    /// Whether a call of `duration` is slow under this policy.
    pub fn is_slow(&self, duration: Option<Duration>) -> bool {
        matches!((self.rules.rules.slow_call_duration, duration), (Some(limit), Some(d)) if d >= limit)
    }
    /// The cooldown multiplier of each reopening from HALF_OPEN.
    pub fn cooldown_multiplier(&self) -> Multiplier {
        self.rules.rules.cooldown_multiplier
    }
    /// The cap of the multiplied cooldown.
    pub fn max_cooldown(&self) -> Duration {
        self.rules.rules.max_cooldown.unwrap_or(MAX_COOLDOWN)
    }
    /// Whether every Acquire is admitted, saying what the machine would have decided.
    pub fn shadow(&self) -> bool {
        self.rules.rules.shadow
    }
    /// How many recent outcomes the daemon keeps for a what-if replay; 0 = none.
    pub fn history_size(&self) -> u32 {
        self.rules.rules.history_size
    }

    /// The inputs this policy was built from (round-trips through [`Policy::try_new`]).
    pub fn spec(&self) -> PolicySpec {
        PolicySpec {
            cooldown: self.cooldown,
            failure_limit: (self.failure_limit.numerator(), self.failure_limit.denominator()),
            success_limit: self.success_limit.map(|f| (f.numerator(), f.denominator())),
            trial_permits: self.trial_permits,
            permit_ttl: self.permit_ttl,
            auto_half_open: self.auto_half_open,
        }
    }

    /// How long OPEN rejects.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
    /// The trip rule; its denominator is the CLOSED window size.
    pub fn failure_limit(&self) -> Fraction {
        self.failure_limit
    }
    /// The HALF_OPEN close rule, if set.
    pub fn success_limit(&self) -> Option<Fraction> {
        self.success_limit
    }
    /// The configured trial permits (`None` = the default).
    pub fn trial_permits(&self) -> Option<u32> {
        self.trial_permits
    }
    /// How long a trial permit lives unreported.
    pub fn permit_ttl(&self) -> Duration {
        self.permit_ttl
    }
    /// Whether OPEN moves to HALF_OPEN by itself.
    pub fn auto_half_open(&self) -> bool {
        self.auto_half_open
    }
    /// The CLOSED window size.
    pub fn closed_window(&self) -> u32 {
        self.failure_limit.denominator()
    }
    /// The HALF_OPEN window size: success_limit's denominator if set, else failure_limit's.
    pub fn half_open_window(&self) -> u32 {
        self.success_limit.unwrap_or(self.failure_limit).denominator()
    }
    /// Trials allowed in flight at once; `None` means unlimited.
    pub fn trial_limit(&self) -> Option<u32> {
        match self.trial_permits {
            None => Some(self.half_open_window()),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }
}
