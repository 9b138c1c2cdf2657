//! Conversions between the [`v1`] wire messages and the [`breaker`] value types.
//!
//! The daemon and the Rust client both go through here, so a value means the same on
//! either side of the wire. Outgoing conversions cannot fail and fill in every field.
//! Incoming ones check what the wire cannot express (negative durations, UNSPECIFIED
//! enum values, generation 0) and name the offending field relative to the message
//! being converted, so the daemon can prefix it with the request's path.

use std::fmt;
use std::time::Duration;

use crate::breaker::{self, Fraction, InvalidFraction, InvalidPolicy, PolicySpec, Time};
use crate::v1;

const NANOS_PER_SECOND: i32 = 1_000_000_000;

/// An instant as a wire timestamp. Instants beyond the timestamp's range saturate.
pub fn timestamp(t: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        nanos: t.subsec_nanos() as i32,
    }
}

/// A wire timestamp as an instant; `None` before the Unix epoch or with nanos outside
/// `0..1_000_000_000`.
pub fn time(ts: &prost_types::Timestamp) -> Option<Time> {
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < NANOS_PER_SECOND as u32)?;
    Some(Duration::new(seconds, nanos))
}

/// A duration as a wire duration. Durations beyond the wire's range saturate.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// Why a wire duration is not a [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// The duration is below zero.
    Negative,
    /// `nanos` is outside `-999_999_999..=999_999_999`.
    NanosOutOfRange,
    /// `seconds` and `nanos` are both non-zero with opposite signs.
    SignMismatch,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Negative => "the duration is negative",
            Self::NanosOutOfRange => "the duration's nanos are outside -999999999..=999999999",
            Self::SignMismatch => "the duration's seconds and nanos have opposite signs",
        })
    }
}

impl std::error::Error for DurationError {}

/// A wire duration as a [`Duration`], checked: well formed and not negative.
pub fn std_duration(d: &prost_types::Duration) -> Result<Duration, DurationError> {
    if d.nanos <= -NANOS_PER_SECOND || d.nanos >= NANOS_PER_SECOND {
        return Err(DurationError::NanosOutOfRange);
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(DurationError::SignMismatch);
    }
    if d.seconds < 0 || d.nanos < 0 {
        return Err(DurationError::Negative);
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// An UNSPECIFIED enum value where a real one is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unspecified {
    /// The proto name of the value received, e.g. `STATUS_UNSPECIFIED`.
    pub value: &'static str,
}

impl fmt::Display for Unspecified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not accepted", self.value)
    }
}

impl std::error::Error for Unspecified {}

// The breaker enums and their wire twins share variant names one for one. The wire side
// adds UNSPECIFIED, refused on the way in, and for overrides NONE, which has no breaker
// variant and so gets its own function, `override_kind`.
macro_rules! to_wire {
    ($name:ident: $($variant:ident),+) => {
        impl From<breaker::$name> for v1::$name {
            fn from(v: breaker::$name) -> Self {
                match v {
                    $(breaker::$name::$variant => Self::$variant,)+
                }
            }
        }
    };
}

macro_rules! from_wire {
    ($name:ident: $($variant:ident),+) => {
        impl TryFrom<v1::$name> for breaker::$name {
            type Error = Unspecified;
            fn try_from(v: v1::$name) -> Result<Self, Unspecified> {
                match v {
                    v1::$name::Unspecified => Err(Unspecified { value: v.as_str_name() }),
                    $(v1::$name::$variant => Ok(Self::$variant),)+
                }
            }
        }
    };
}

to_wire!(Status: Closed, Open, HalfOpen);
from_wire!(Status: Closed, Open, HalfOpen);
to_wire!(Outcome: Success, Failure, Ignored);
from_wire!(Outcome: Success, Failure, Ignored);
to_wire!(DecisionReason: Closed, Trial, Disabled, Open, TrialsExhausted, ForcedOpen);
to_wire!(TransitionReason:
    FailureLimit, CooldownElapsed, TrialsSucceeded, TrialsFailed, PermitExpired, Manual);
to_wire!(OverrideKind: ForcedOpen, Disabled);

/// A wire override kind: NONE is `None`, UNSPECIFIED an error.
pub fn override_kind(k: v1::OverrideKind) -> Result<Option<breaker::OverrideKind>, Unspecified> {
    match k {
        v1::OverrideKind::Unspecified => Err(Unspecified {
            value: k.as_str_name(),
        }),
        v1::OverrideKind::None => Ok(None),
        v1::OverrideKind::ForcedOpen => Ok(Some(breaker::OverrideKind::ForcedOpen)),
        v1::OverrideKind::Disabled => Ok(Some(breaker::OverrideKind::Disabled)),
    }
}

/// An invalid field of an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path relative to the message converted, e.g. `failure_limit.numerator`.
    pub field: String,
    /// What is wrong with it, as a sentence fragment that does not repeat the path.
    pub description: String,
}

impl FieldError {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

impl std::error::Error for FieldError {}

fn fraction(f: Fraction) -> v1::Fraction {
    v1::Fraction {
        numerator: f.numerator(),
        denominator: f.denominator(),
    }
}

impl From<&breaker::Policy> for v1::Policy {
    fn from(p: &breaker::Policy) -> Self {
        v1::Policy {
            cooldown: Some(duration(p.cooldown())),
            failure_limit: Some(fraction(p.failure_limit())),
            success_limit: p.success_limit().map(fraction),
            trial_permits: p.trial_permits(),
            permit_ttl: Some(duration(p.permit_ttl())),
            auto_half_open: p.auto_half_open(),
        }
    }
}

fn optional_duration(
    field: &str,
    d: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<Duration, FieldError> {
    d.map_or(Ok(default), |d| {
        std_duration(d).map_err(|e| FieldError::new(field, e.to_string()))
    })
}

/// The violated fraction rule, naming the part of the fraction at fault when only one is.
fn fraction_error(field: &str, e: InvalidFraction, (n, d): (u32, u32)) -> FieldError {
    let (part, rule) = match e {
        InvalidFraction::ZeroNumerator => (".numerator", "must be at least 1"),
        InvalidFraction::ZeroDenominator => (".denominator", "must be at least 1"),
        InvalidFraction::DenominatorTooLarge => (".denominator", "must be at most 10000"),
        InvalidFraction::NumeratorAboveDenominator => {
            ("", "the numerator must not exceed the denominator")
        }
    };
    FieldError::new(
        format!("{field}{part}"),
        format!("{rule} (the fraction is {n}/{d})"),
    )
}

fn policy_error(e: InvalidPolicy, spec: &PolicySpec) -> FieldError {
    let field = e.field();
    match e {
        InvalidPolicy::FailureLimit(f) => fraction_error(field, f, spec.failure_limit),
        InvalidPolicy::SuccessLimit(f) => {
            fraction_error(field, f, spec.success_limit.unwrap_or((0, 0)))
        }
        InvalidPolicy::CooldownTooLong => FieldError::new(
            field,
            format!("must be at most 30 days, got {:?}", spec.cooldown),
        ),
        InvalidPolicy::TrialPermitsTooMany => FieldError::new(
            field,
            format!(
                "must be at most 10000, got {}",
                spec.trial_permits.unwrap_or_default()
            ),
        ),
        InvalidPolicy::PermitTtlTooShort => FieldError::new(
            field,
            format!("must be at least 1ms, got {:?}", spec.permit_ttl),
        ),
        InvalidPolicy::PermitTtlTooLong => FieldError::new(
            field,
            format!("must be at most 1h, got {:?}", spec.permit_ttl),
        ),
    }
}

/// A wire policy as a validated [`breaker::Policy`], with the defaults of SEMANTICS.md
/// section 1 for unset fields. Fractions are taken as given: an explicit 1/1
/// `success_limit` stays set.
pub fn policy(p: &v1::Policy) -> Result<breaker::Policy, FieldError> {
    let defaults = PolicySpec::default();
    let spec = PolicySpec {
        cooldown: optional_duration("cooldown", p.cooldown.as_ref(), defaults.cooldown)?,
        failure_limit: p
            .failure_limit
            .map_or(defaults.failure_limit, |f| (f.numerator, f.denominator)),
        success_limit: p.success_limit.map(|f| (f.numerator, f.denominator)),
        trial_permits: p.trial_permits,
        permit_ttl: optional_duration("permit_ttl", p.permit_ttl.as_ref(), defaults.permit_ttl)?,
        auto_half_open: p.auto_half_open,
    };
    breaker::Policy::try_new(spec).map_err(|e| policy_error(e, &spec))
}

impl From<breaker::Permit> for v1::Permit {
    fn from(p: breaker::Permit) -> Self {
        v1::Permit {
            generation: p.generation,
            id: p.id,
            expires_at: p.expires_at.map(timestamp),
        }
    }
}

/// A wire permit as a [`breaker::Permit`]. `expires_at` is dropped: the daemon tracks
/// each trial's expiry itself and never trusts the client's copy.
pub fn permit(p: &v1::Permit) -> Result<breaker::Permit, FieldError> {
    if p.generation == 0 {
        return Err(FieldError::new(
            "generation",
            "must be at least 1 (generations start at 1)",
        ));
    }
    Ok(breaker::Permit {
        generation: p.generation,
        id: p.id,
        expires_at: None,
    })
}

impl From<breaker::Transition> for v1::Transition {
    fn from(t: breaker::Transition) -> Self {
        v1::Transition {
            from: v1::Status::from(t.from).into(),
            to: v1::Status::from(t.to).into(),
            reason: v1::TransitionReason::from(t.reason).into(),
            generation: t.generation,
            open_until: t.open_until.map(timestamp),
            at: Some(timestamp(t.at)),
        }
    }
}

/// A window as sent on the wire, outcomes oldest first.
pub fn window(w: &breaker::Window) -> v1::Window {
    v1::Window {
        size: w.size(),
        successes: w.successes(),
        failures: w.failures(),
        outcomes: w
            .iter()
            .map(|failed| {
                if failed {
                    v1::Outcome::Failure
                } else {
                    v1::Outcome::Success
                }
                .into()
            })
            .collect(),
    }
}

impl From<&breaker::Counters> for v1::Counters {
    fn from(c: &breaker::Counters) -> Self {
        v1::Counters {
            admitted: c.admitted,
            rejected: c.rejected,
            successes: c.successes,
            failures: c.failures,
            ignored: c.ignored,
            stale_reports: c.stale_reports,
            expired_permits: c.expired_permits,
        }
    }
}

impl From<breaker::Override> for v1::Override {
    fn from(o: breaker::Override) -> Self {
        v1::Override {
            kind: v1::OverrideKind::from(o.kind).into(),
            expires_at: o.expires_at.map(timestamp),
        }
    }
}

/// The override message sent when none holds: kind NONE, no expiry.
pub fn no_override() -> v1::Override {
    v1::Override {
        kind: v1::OverrideKind::None.into(),
        expires_at: None,
    }
}

/// Everything about one protector, as sent on the wire.
pub fn protector(name: &str, p: &breaker::Protector, mod_revision: u64) -> v1::Protector {
    v1::Protector {
        name: name.to_owned(),
        policy: Some(p.policy().into()),
        status: v1::Status::from(p.status()).into(),
        r#override: Some(p.override_state().map_or_else(no_override, Into::into)),
        generation: p.generation(),
        open_until: p.open_until().map(timestamp),
        window: Some(window(p.window())),
        consecutive_failures: p.consecutive_failures(),
        trials_in_flight: p.trials_in_flight(),
        counters: Some(p.counters().into()),
        mod_revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{Outcome, OverrideKind, Policy, Protector, Status};

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }
    fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }
    fn frac(numerator: u32, denominator: u32) -> Option<v1::Fraction> {
        Some(v1::Fraction {
            numerator,
            denominator,
        })
    }

    #[test]
    fn instants_round_trip_and_bad_timestamps_are_refused() {
        for t in [Time::ZERO, Duration::new(1_700_000_000, 999_999_999)] {
            assert_eq!(time(&timestamp(t)), Some(t));
        }
        for bad in [ts(-1, 0), ts(1, -1), ts(1, 1_000_000_000)] {
            assert_eq!(time(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_round_trip_and_malformed_ones_are_refused() {
        for d in [
            Duration::ZERO,
            Duration::new(30, 5),
            Duration::from_nanos(1),
        ] {
            assert_eq!(std_duration(&duration(d)), Ok(d));
        }
        use DurationError::*;
        let cases = [
            (dur(-1, 0), Negative),
            (dur(0, -1), Negative),
            (dur(-1, -5), Negative),
            (dur(0, 1_000_000_000), NanosOutOfRange),
            (dur(0, -1_000_000_000), NanosOutOfRange),
            (dur(1, -1), SignMismatch),
            (dur(-1, 1), SignMismatch),
        ];
        for (d, want) in cases {
            assert_eq!(std_duration(&d), Err(want), "{d:?}");
        }
    }

    #[test]
    fn enums_round_trip_and_unspecified_is_refused() {
        for s in [Status::Closed, Status::Open, Status::HalfOpen] {
            assert_eq!(Status::try_from(v1::Status::from(s)), Ok(s));
        }
        for o in [Outcome::Success, Outcome::Failure, Outcome::Ignored] {
            assert_eq!(Outcome::try_from(v1::Outcome::from(o)), Ok(o));
        }
        for k in [OverrideKind::ForcedOpen, OverrideKind::Disabled] {
            assert_eq!(override_kind(v1::OverrideKind::from(k)), Ok(Some(k)));
        }
        assert_eq!(override_kind(v1::OverrideKind::None), Ok(None));
        let err = Status::try_from(v1::Status::Unspecified).unwrap_err();
        assert_eq!(err.value, "STATUS_UNSPECIFIED");
        assert!(Outcome::try_from(v1::Outcome::Unspecified).is_err());
        assert!(override_kind(v1::OverrideKind::Unspecified).is_err());
        let reason = v1::DecisionReason::from(breaker::DecisionReason::TrialsExhausted);
        assert_eq!(reason, v1::DecisionReason::TrialsExhausted);
        let reason = v1::TransitionReason::from(breaker::TransitionReason::PermitExpired);
        assert_eq!(reason, v1::TransitionReason::PermitExpired);
    }

    #[test]
    fn policies_round_trip_with_defaults_and_fractions_as_given() {
        assert_eq!(policy(&v1::Policy::default()), Ok(Policy::default()));
        let specs = [
            PolicySpec::default(),
            PolicySpec {
                cooldown: Duration::from_millis(2500),
                failure_limit: (5, 10),
                success_limit: Some((1, 1)),
                trial_permits: Some(0),
                permit_ttl: Duration::from_millis(1),
                auto_half_open: true,
            },
            PolicySpec {
                success_limit: Some((3, 4)),
                trial_permits: Some(10_000),
                ..PolicySpec::default()
            },
        ];
        for spec in specs {
            let p = Policy::try_new(spec).unwrap();
            let wire = v1::Policy::from(&p);
            assert!(wire.cooldown.is_some() && wire.permit_ttl.is_some());
            assert!(wire.failure_limit.is_some());
            assert_eq!(wire.trial_permits, spec.trial_permits);
            assert_eq!(policy(&wire), Ok(p));
        }
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let fl = |n, d| v1::Policy {
            failure_limit: frac(n, d),
            ..Default::default()
        };
        let sl = |n, d| v1::Policy {
            success_limit: frac(n, d),
            ..Default::default()
        };
        let cd = |s, n| v1::Policy {
            cooldown: Some(dur(s, n)),
            ..Default::default()
        };
        let ttl = |s, n| v1::Policy {
            permit_ttl: Some(dur(s, n)),
            ..Default::default()
        };
        let cases = [
            (fl(0, 5), "failure_limit.numerator"),
            (fl(6, 5), "failure_limit"),
            (fl(0, 0), "failure_limit.denominator"),
            (fl(1, 10_001), "failure_limit.denominator"),
            (sl(0, 5), "success_limit.numerator"),
            (sl(2, 1), "success_limit"),
            (cd(-1, 0), "cooldown"),
            (cd(31 * 24 * 3600, 0), "cooldown"),
            (ttl(1, -1), "permit_ttl"),
            (ttl(0, 0), "permit_ttl"),
            (ttl(3601, 0), "permit_ttl"),
            (
                v1::Policy {
                    trial_permits: Some(10_001),
                    ..Default::default()
                },
                "trial_permits",
            ),
        ];
        for (p, field) in cases {
            let err = policy(&p).unwrap_err();
            assert_eq!(err.field, field, "{p:?}: {err}");
            assert!(!err.description.is_empty());
        }
        let err = policy(&fl(6, 5)).unwrap_err();
        assert!(err.description.contains("6/5"), "{err}");
    }

    #[test]
    fn permits_round_trip_without_the_expiry() {
        let bp = |generation, id, expires_at| breaker::Permit {
            generation,
            id,
            expires_at,
        };
        let wp = |generation, id, expires_at| v1::Permit {
            generation,
            id,
            expires_at,
        };
        let untracked = bp(3, 0, None);
        assert_eq!(permit(&untracked.into()), Ok(untracked));
        let wire = v1::Permit::from(bp(4, 9, Some(Duration::from_secs(5))));
        assert_eq!(wire, wp(4, 9, Some(ts(5, 0))));
        assert_eq!(permit(&wire), Ok(bp(4, 9, None)));
        assert_eq!(permit(&wp(2, 0, Some(ts(1, 0)))), Ok(bp(2, 0, None)));
        assert_eq!(permit(&wp(0, 1, None)).unwrap_err().field, "generation");
    }

    #[test]
    fn a_protector_fills_every_field() {
        let spec = PolicySpec {
            failure_limit: (2, 3),
            ..PolicySpec::default()
        };
        let mut p = Protector::new(Policy::try_new(spec).unwrap());
        let now = Duration::from_secs(100);
        let breaker::Decision::Admitted { permit, .. } = p.acquire(now).decision else {
            panic!("a new protector admits");
        };
        p.report(permit, Outcome::Success, now);
        p.report(permit, Outcome::Failure, now);
        let wire = protector("db", &p, 42);
        assert_eq!((wire.name.as_str(), wire.mod_revision), ("db", 42));
        assert_eq!(
            (wire.status, wire.generation),
            (v1::Status::Closed as i32, 1)
        );
        assert_eq!(wire.r#override, Some(no_override()));
        assert_eq!(wire.policy.and_then(|p| p.failure_limit), frac(2, 3));
        let w = wire.window.unwrap();
        assert_eq!((w.size, w.successes, w.failures), (3, 1, 1));
        assert_eq!(
            w.outcomes,
            [v1::Outcome::Success as i32, v1::Outcome::Failure as i32]
        );
        let counters = wire.counters.map(|c| (c.admitted, c.successes, c.failures));
        assert_eq!(counters, Some((1, 1, 1)));
        assert_eq!(wire.consecutive_failures, 1);

        let forced = breaker::Override {
            kind: OverrideKind::ForcedOpen,
            expires_at: None,
        };
        p.set_override(Some(forced), now);
        let changes = p.set_status(Status::Open, None, now);
        let wire = protector("db", &p, 43);
        let kind = wire.r#override.map(|o| o.kind);
        assert_eq!(kind, Some(v1::OverrideKind::ForcedOpen as i32));
        assert_eq!(wire.open_until, Some(ts(100, 0)));
        let Some(breaker::Change::Transition(t)) = changes.last() else {
            panic!("SetStatus transitions");
        };
        // The generated getter `Transition::from` shadows `From::from`, hence `into`.
        let t: v1::Transition = (*t).into();
        assert_eq!((t.from(), t.to()), (v1::Status::Closed, v1::Status::Open));
        assert_eq!(t.reason(), v1::TransitionReason::Manual);
        assert_eq!(
            (t.generation, t.at, t.open_until),
            (2, Some(ts(100, 0)), Some(ts(100, 0)))
        );
    }
}
