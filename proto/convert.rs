//! Conversions between the [`v1`] wire messages and the [`breaker`] value types.
//!
//! The daemon and the Rust client both go through here, so a value means the same on
//! either side of the wire. Outgoing conversions cannot fail and fill in every field.
//! Incoming ones check what the wire cannot express (negative durations, UNSPECIFIED
//! enum values, generation 0) and name the offending field relative to the message
//! being converted, so the daemon can prefix it with the request's path.

use std::fmt;
use std::time::Duration;

use crate::v1;
use resilient_circuit_breaker::{
    self as breaker, Fraction, InvalidFraction, InvalidPolicy, InvalidRules, Multiplier, PolicyError,
    PolicySpec, Rules, Time,
};

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

macro_rules! both_ways {
    ($name:ident: $($variant:ident),+) => {
        to_wire!($name: $($variant),+);

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

both_ways!(Status: Closed, Open, HalfOpen);
both_ways!(Outcome: Success, Failure, Ignored);
both_ways!(DecisionReason: Closed, Trial, Disabled, Open, TrialsExhausted, ForcedOpen);
both_ways!(TransitionReason: FailureLimit, CooldownElapsed, TrialsSucceeded, TrialsFailed, PermitExpired, Manual, ConsecutiveFailures, SlowCalls);
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

/// An enum field of an incoming message: UNSPECIFIED and values this contract does not
/// know are refused.
fn enum_field<W, B>(field: &str, raw: i32) -> Result<B, FieldError>
where
    W: TryFrom<i32>,
    B: TryFrom<W, Error = Unspecified>,
{
    let wire = W::try_from(raw).map_err(|_| FieldError::new(field, format!("{raw} is not a known value")))?;
    B::try_from(wire).map_err(|e| FieldError::new(field, e.to_string()))
}

/// A timestamp field of an incoming message (see [`time`]).
fn instant(field: &str, ts: &prost_types::Timestamp) -> Result<Time, FieldError> {
    time(ts).ok_or_else(|| {
        FieldError::new(
            field,
            "must not be before the Unix epoch, with nanos in 0..1000000000",
        )
    })
}

fn required<'m, T>(field: &str, value: Option<&'m T>) -> Result<&'m T, FieldError> {
    value.ok_or_else(|| FieldError::new(field, "is required"))
}

fn fraction(f: Fraction) -> v1::Fraction {
    v1::Fraction {
        numerator: f.numerator(),
        denominator: f.denominator(),
    }
}

impl From<&breaker::Policy> for v1::Policy {
    fn from(p: &breaker::Policy) -> Self {
        let rules = p.rules();
        v1::Policy {
            cooldown: Some(duration(p.cooldown())),
            failure_limit: Some(fraction(p.failure_limit())),
            success_limit: p.success_limit().map(fraction),
            trial_permits: p.trial_permits(),
            permit_ttl: Some(duration(p.permit_ttl())),
            auto_half_open: p.auto_half_open(),
            window_duration: rules.window_duration.map(duration),
            minimum_calls: rules.minimum_calls,
            consecutive_failures: rules.consecutive_failures,
            slow_call_duration: rules.slow_call_duration.map(duration),
            slow_call_limit: rules
                .slow_call_limit
                .map(|(numerator, denominator)| v1::Fraction {
                    numerator,
                    denominator,
                }),
            // 1 is the default, sent back unset (types.proto).
            cooldown_multiplier: (rules.cooldown_multiplier != Multiplier::ONE)
                .then(|| f64::from(rules.cooldown_multiplier.as_thousandths()) / 1_000.0),
            max_cooldown: rules.max_cooldown.map(duration),
            shadow: rules.shadow,
            history_size: rules.history_size,
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
        InvalidFraction::NumeratorAboveDenominator => ("", "the numerator must not exceed the denominator"),
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
        InvalidPolicy::SuccessLimit(f) => fraction_error(field, f, spec.success_limit.unwrap_or((0, 0))),
        InvalidPolicy::CooldownTooLong => {
            FieldError::new(field, format!("must be at most 30 days, got {:?}", spec.cooldown))
        }
        InvalidPolicy::TrialPermitsTooMany => FieldError::new(
            field,
            format!(
                "must be at most 10000, got {}",
                spec.trial_permits.unwrap_or_default()
            ),
        ),
        InvalidPolicy::PermitTtlTooShort => {
            FieldError::new(field, format!("must be at least 1ms, got {:?}", spec.permit_ttl))
        }
        InvalidPolicy::PermitTtlTooLong => {
            FieldError::new(field, format!("must be at most 1h, got {:?}", spec.permit_ttl))
        }
    }
}

/// The violated optional rule (proto/SEMANTICS.md section 2a), naming its field.
fn rules_error(e: InvalidRules, rules: &Rules) -> FieldError {
    let field = e.field();
    match e {
        InvalidRules::SlowCallLimit(f) => fraction_error(field, f, rules.slow_call_limit.unwrap_or((0, 0))),
        other => FieldError::new(field, other.to_string()),
    }
}

/// An optional duration of section 2a: unset is `None`; zero is kept (and refused by
/// the rule's own range), a negative or malformed one is refused here.
fn rule_duration(field: &str, d: Option<&prost_types::Duration>) -> Result<Option<Duration>, FieldError> {
    d.map(|d| std_duration(d).map_err(|e| FieldError::new(field, e.to_string())))
        .transpose()
}

/// The wire's optional rules as unchecked [`Rules`]; [`policy`] checks them.
fn rules(p: &v1::Policy) -> Result<Rules, FieldError> {
    let cooldown_multiplier = match p.cooldown_multiplier {
        None => Multiplier::ONE,
        Some(m) => Multiplier::from_f64(m).ok_or_else(|| {
            FieldError::new(
                "cooldown_multiplier",
                format!("must be a number from 1 to 100, got {m}"),
            )
        })?,
    };
    Ok(Rules {
        window_duration: rule_duration("window_duration", p.window_duration.as_ref())?,
        minimum_calls: p.minimum_calls,
        consecutive_failures: p.consecutive_failures,
        slow_call_duration: rule_duration("slow_call_duration", p.slow_call_duration.as_ref())?,
        slow_call_limit: p.slow_call_limit.map(|f| (f.numerator, f.denominator)),
        cooldown_multiplier,
        max_cooldown: rule_duration("max_cooldown", p.max_cooldown.as_ref())?,
        shadow: p.shadow,
        history_size: p.history_size,
    })
}

/// A wire policy as a validated [`breaker::Policy`], with the defaults of proto/SEMANTICS.md
/// section 1 for unset fields. Fractions are taken as given: an explicit 1/1
/// `success_limit` stays set. The fields of section 1 are checked first, then the optional
/// rules of section 2a in table order; the first violation names its field.
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
    breaker::Policy::try_new(spec).map_err(|e| policy_error(e, &spec))?;
    let rules = rules(p)?;
    breaker::Policy::try_with(spec, rules).map_err(|e| match e {
        PolicyError::Spec(e) => policy_error(e, &spec),
        PolicyError::Rules(e) => rules_error(e, &rules),
    })
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
#[inline]
pub fn permit(p: &v1::Permit) -> Result<breaker::Permit, FieldError> {
    Ok(breaker::Permit {
        generation: generation(p.generation)?,
        id: p.id,
        expires_at: None,
    })
}

fn generation(g: u64) -> Result<u64, FieldError> {
    if g == 0 {
        return Err(FieldError::new(
            "generation",
            "must be at least 1 (generations start at 1)",
        ));
    }
    Ok(g)
}

/// The answer to an Acquire: the decision, with the protector's status after it, the
/// revision it reflects and the transition it caused (OPEN to HALF_OPEN), if any.
/// `would_reject` is the shadow mode's mark; `policy_revision`, the revision at which the
/// policy that decided was set.
#[inline]
pub fn acquire_response(
    decision: breaker::Decision,
    status: breaker::Status,
    revision: u64,
    transition: Option<breaker::Transition>,
    would_reject: bool,
    policy_revision: u64,
) -> v1::AcquireResponse {
    let (kind, permit, reason, retry_after) = match decision {
        breaker::Decision::Admitted { permit, reason } => {
            (v1::Decision::Admitted, Some(permit.into()), reason, None)
        }
        breaker::Decision::Rejected { reason, retry_after } => {
            (v1::Decision::Rejected, None, reason, retry_after.map(duration))
        }
    };
    v1::AcquireResponse {
        decision: kind.into(),
        status: v1::Status::from(status).into(),
        permit,
        retry_after,
        reason: v1::DecisionReason::from(reason).into(),
        revision,
        transition: transition.map(|t| Box::new(t.into())),
        would_reject,
        policy_revision,
    }
}

/// The decision an Acquire's answer carries: ADMITTED with its permit (as [`permit`]
/// reads it) or REJECTED with its `retry_after`, and a reason either way. The status,
/// revision and transition beside it are read on their own.
pub fn decision(a: &v1::AcquireResponse) -> Result<breaker::Decision, FieldError> {
    let reason = || enum_field::<v1::DecisionReason, _>("reason", a.reason);
    match v1::Decision::try_from(a.decision) {
        Ok(v1::Decision::Admitted) => {
            let p = required("permit", a.permit.as_ref())?;
            let permit =
                permit(p).map_err(|e| FieldError::new(format!("permit.{}", e.field), e.description))?;
            Ok(breaker::Decision::Admitted {
                permit,
                reason: reason()?,
            })
        }
        Ok(v1::Decision::Rejected) => Ok(breaker::Decision::Rejected {
            reason: reason()?,
            retry_after: a
                .retry_after
                .as_ref()
                .map(|d| std_duration(d).map_err(|e| FieldError::new("retry_after", e.to_string())))
                .transpose()?,
        }),
        _ => Err(FieldError::new(
            "decision",
            format!(
                "must be DECISION_ADMITTED or DECISION_REJECTED, got {}",
                a.decision
            ),
        )),
    }
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

/// A wire transition as a [`breaker::Transition`]: both statuses and the reason
/// specified, a generation of at least 1, `at` set and both instants well formed.
pub fn transition(t: &v1::Transition) -> Result<breaker::Transition, FieldError> {
    Ok(breaker::Transition {
        from: enum_field::<v1::Status, _>("from", t.from)?,
        to: enum_field::<v1::Status, _>("to", t.to)?,
        reason: enum_field::<v1::TransitionReason, _>("reason", t.reason)?,
        generation: generation(t.generation)?,
        open_until: t
            .open_until
            .as_ref()
            .map(|ts| instant("open_until", ts))
            .transpose()?,
        at: instant("at", required("at", t.at.as_ref())?)?,
    })
}

/// A window as sent on the wire, outcomes oldest first.
pub fn window(w: &breaker::Window) -> v1::Window {
    v1::Window {
        size: w.size(),
        successes: w.successes(),
        failures: w.failures(),
        slow_calls: w.slow(),
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

/// A time window's totals as sent on the wire.
pub fn time_window(w: &breaker::TimeWindow, span: Duration) -> v1::TimeWindow {
    v1::TimeWindow {
        duration: Some(duration(span)),
        bucket_width: Some(duration(w.width())),
        calls: w.calls(),
        failures: w.failures(),
        slow_calls: w.slow(),
    }
}

/// Everything about one protector, as sent on the wire. `policy_revision` and
/// `history_len` are the daemon's, filled in by the caller.
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
        cooldown_in_force: Some(duration(p.cooldown_in_force())),
        policy_revision: 0,
        time_window: p
            .time_window()
            .zip(p.policy().window_duration())
            .map(|(w, span)| time_window(w, span)),
        history_len: 0,
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
