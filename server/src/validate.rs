//! Request fields into typed values, or INVALID_ARGUMENT naming the field.
//!
//! Every function takes the field's proto path (`"name"`, `"policy"`, `"names.names[2]"`)
//! so the error names exactly what the client sent, and checks one field; the service
//! layer calls them in field order, so the first invalid field is the one reported.

use std::time::Duration;

use resilient_circuit_api::{ProtectorName, convert, v1};
use resilient_circuit_breaker as breaker;

use crate::error::Error;

/// A protector name under [`ProtectorName`]'s rule, with this daemon's `max_len`.
#[inline]
pub fn name(field: &str, name: String, max_len: usize) -> Result<ProtectorName, Error> {
    ProtectorName::with_max_len(name, max_len).map_err(|e| Error::invalid(field, e.to_string()))
}

/// A protector name under [`ProtectorName`]'s rule, checked where it is (see
/// [`ProtectorName::check`]).
#[inline]
pub fn name_in_place(field: &str, name: &str, max_len: usize) -> Result<(), Error> {
    ProtectorName::check(name, max_len).map_err(|e| Error::invalid(field, e.to_string()))
}

/// Every name of a repeated field; an error names the element, e.g. `names.names[2]`.
pub fn names(field: &str, names: Vec<String>, max_len: usize) -> Result<Vec<ProtectorName>, Error> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| name(&format!("{field}[{i}]"), n, max_len))
        .collect()
}

/// A required message field: missing is INVALID_ARGUMENT "`field` is required".
pub fn required<'a, T>(field: &str, v: Option<&'a T>) -> Result<&'a T, Error> {
    v.ok_or_else(|| Error::invalid(field, format!("{field} is required")))
}

/// A policy with the defaults filled in; a missing policy is the default one. Errors name
/// the policy field under `field`, e.g. `policy.failure_limit.numerator`.
pub fn policy(field: &str, p: Option<&v1::Policy>) -> Result<breaker::Policy, Error> {
    p.map_or_else(
        || Ok(breaker::Policy::default()),
        |p| convert::policy(p).map_err(|e| Error::from_field(field, e)),
    )
}

/// A permit, which is required; errors name the permit field under `field`, e.g.
/// `permit.generation`.
#[inline]
pub fn permit(field: &str, p: Option<&v1::Permit>) -> Result<breaker::Permit, Error> {
    convert::permit(required(field, p)?).map_err(|e| Error::from_field(field, e))
}

/// The error for an enum field that is UNSPECIFIED or a number this daemon does not know.
fn bad_enum(field: &str, got: &str, accepted: &[&str]) -> Error {
    let description = format!("must be one of {}, got {got}", accepted.join(", "));
    Error::invalid(field, description)
}

/// A status: CLOSED, OPEN or HALF_OPEN.
pub fn status(field: &str, v: i32) -> Result<breaker::Status, Error> {
    let accepted = [v1::Status::Closed, v1::Status::Open, v1::Status::HalfOpen].map(|s| s.as_str_name());
    let s = v1::Status::try_from(v).map_err(|_| bad_enum(field, &v.to_string(), &accepted))?;
    breaker::Status::try_from(s).map_err(|e| bad_enum(field, e.value, &accepted))
}

/// An outcome: SUCCESS, FAILURE or IGNORED.
#[inline]
pub fn outcome(field: &str, v: i32) -> Result<breaker::Outcome, Error> {
    let accepted =
        [v1::Outcome::Success, v1::Outcome::Failure, v1::Outcome::Ignored].map(|o| o.as_str_name());
    let o = v1::Outcome::try_from(v).map_err(|_| bad_enum(field, &v.to_string(), &accepted))?;
    breaker::Outcome::try_from(o).map_err(|e| bad_enum(field, e.value, &accepted))
}

/// An override kind: NONE (`None`, clear the override), FORCED_OPEN or DISABLED.
pub fn override_kind(field: &str, v: i32) -> Result<Option<breaker::OverrideKind>, Error> {
    let accepted = [
        v1::OverrideKind::None,
        v1::OverrideKind::ForcedOpen,
        v1::OverrideKind::Disabled,
    ]
    .map(|k| k.as_str_name());
    let k = v1::OverrideKind::try_from(v).map_err(|_| bad_enum(field, &v.to_string(), &accepted))?;
    convert::override_kind(k).map_err(|e| bad_enum(field, e.value, &accepted))
}

/// An optional duration within `min..=max`; unset stays `None`.
#[inline]
pub fn duration_in(
    field: &str,
    d: Option<&prost_types::Duration>,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, Error> {
    let Some(d) = d else {
        return Ok(None);
    };
    let d = convert::std_duration(d).map_err(|e| Error::invalid(field, e.to_string()))?;
    if d < min || d > max {
        let description = format!(
            "must be between {} and {}, got {}",
            humantime::format_duration(min),
            humantime::format_duration(max),
            humantime::format_duration(d),
        );
        return Err(Error::invalid(field, description));
    }
    Ok(Some(d))
}

/// The longest duration a report may carry: the longest `slow_call_duration`.
pub const MAX_CALL_DURATION: Duration = resilient_circuit_breaker::rules::MAX_SLOW_CALL_DURATION;

/// A reported call's duration (ReportRequest.duration): unset stays `None` (never slow),
/// 0 to 1 h.
#[inline]
pub fn call_duration(field: &str, d: Option<&prost_types::Duration>) -> Result<Option<Duration>, Error> {
    duration_in(field, d, Duration::ZERO, MAX_CALL_DURATION)
}

/// A batch's durations (OutcomeBatch.durations), each 0 to 1 h, no more of them than
/// `outcomes` (`field` names the list, e.g. `batches[0].durations`).
pub fn call_durations(
    field: &str,
    durations: &[prost_types::Duration],
    outcomes: usize,
) -> Result<Vec<Duration>, Error> {
    if durations.len() > outcomes {
        return Err(Error::invalid(
            field,
            format!(
                "has {} durations for {outcomes} outcomes: at most one per outcome",
                durations.len()
            ),
        ));
    }
    durations
        .iter()
        .enumerate()
        .map(|(j, d)| call_duration(&format!("{field}[{j}]"), Some(d)).map(|d| d.unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field and description of an INVALID_ARGUMENT, or a panic naming what came instead.
    #[track_caller]
    fn invalid<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, String) {
        match r {
            Err(Error::InvalidArgument { field, description }) => (field, description),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    /// The rules themselves are `ProtectorName`'s (and tested there); here, that the
    /// daemon's limit applies and errors name the field.
    #[test]
    fn names_follow_the_rules_and_name_the_field() {
        let valid = |n: &str, max| name("name", n.to_owned(), max).map(String::from);
        assert_eq!(valid("payments-db.eu/1", 256).unwrap(), "payments-db.eu/1");
        assert!(valid("ü", 2).is_ok());
        let cases = [
            ("", "must not be empty"),
            ("abcde", "is too long: 5 bytes, max 4"),
            ("d b", "contains whitespace or a control character at byte 1"),
        ];
        for (n, want) in cases {
            assert_eq!(invalid(valid(n, 4)), ("name".into(), want.into()), "{n:?}");
        }
        let all = vec!["ok".to_owned(), "fine".into(), String::new()];
        assert_eq!(
            invalid(names("names.names", all.clone(), 256)).0,
            "names.names[2]"
        );
        assert!(names("names.names", all[..2].to_vec(), 256).is_ok());
    }

    #[test]
    fn policies_default_and_name_the_field() {
        assert_eq!(policy("policy", None).unwrap(), breaker::Policy::default());
        let frac = |numerator, denominator| v1::Policy {
            failure_limit: Some(v1::Fraction {
                numerator,
                denominator,
            }),
            ..Default::default()
        };
        let negative = v1::Policy {
            cooldown: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let cases = [
            (frac(0, 5), "policy.failure_limit.numerator"),
            (frac(6, 5), "policy.failure_limit"),
            (frac(0, 0), "policy.failure_limit.denominator"),
            (negative, "policy.cooldown"),
        ];
        for (p, want) in cases {
            assert_eq!(invalid(policy("policy", Some(&p))).0, want, "{p:?}");
        }
        let ok = frac(5, 10);
        assert_eq!(policy("policy", Some(&ok)).unwrap().closed_window(), 10);
    }

    #[test]
    fn enums_refuse_unspecified_and_unknown_values() {
        assert_eq!(status("status", 2).unwrap(), breaker::Status::Open);
        assert_eq!(outcome("outcome", 3).unwrap(), breaker::Outcome::Ignored);
        assert_eq!(override_kind("kind", 1).unwrap(), None);
        let disabled = Some(breaker::OverrideKind::Disabled);
        assert_eq!(override_kind("kind", 3).unwrap(), disabled);
        let cases = [
            (invalid(status("status", 0)), "status", "STATUS_UNSPECIFIED"),
            (invalid(status("status", 9)), "status", "got 9"),
            (invalid(outcome("outcome", 0)), "outcome", "OUTCOME_UNSPECIFIED"),
            (invalid(outcome("outcome", -1)), "outcome", "got -1"),
            (
                invalid(override_kind("kind", 0)),
                "kind",
                "OVERRIDE_KIND_UNSPECIFIED",
            ),
            (invalid(override_kind("kind", 4)), "kind", "got 4"),
        ];
        for ((field, description), want_field, want_got) in cases {
            assert_eq!(field, want_field);
            assert!(description.contains(want_got), "{description}");
            assert!(description.starts_with("must be one of "), "{description}");
        }
        let (_, description) = invalid(status("status", 0));
        assert!(description.contains("STATUS_CLOSED, STATUS_OPEN, STATUS_HALF_OPEN"));
    }

    #[test]
    fn durations_are_checked_against_their_range() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        let (min, max) = (Duration::from_millis(1), Duration::from_secs(3600));
        let check = |v: Option<&prost_types::Duration>| duration_in("open_for", v, min, max);
        assert_eq!(check(None).unwrap(), None);
        assert_eq!(check(Some(&d(2, 0))).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(check(Some(&d(3600, 0))).unwrap(), Some(max));
        let cases = [
            (d(-1, 0), "negative"),
            (d(1, -1), "opposite signs"),
            (d(0, 2_000_000_000), "nanos"),
            (d(0, 0), "must be between 1ms and 1h, got 0s"),
            (d(3601, 0), "must be between 1ms and 1h, got 1h 1s"),
        ];
        for (v, want) in cases {
            let (field, description) = invalid(check(Some(&v)));
            assert_eq!(field, "open_for");
            assert!(description.contains(want), "{v:?}: {description}");
        }
    }

    #[test]
    fn permits_are_required_and_checked() {
        let (field, description) = invalid(permit("permit", None));
        assert_eq!(
            (field.as_str(), description.as_str()),
            ("permit", "permit is required")
        );
        let stale = v1::Permit {
            generation: 0,
            id: 0,
            expires_at: None,
        };
        assert_eq!(invalid(permit("permit", Some(&stale))).0, "permit.generation");
        let ok = v1::Permit {
            generation: 7,
            id: 3,
            expires_at: None,
        };
        let want = breaker::Permit {
            generation: 7,
            id: 3,
            expires_at: None,
        };
        assert_eq!(permit("permit", Some(&ok)).unwrap(), want);
        assert_eq!(invalid(required::<v1::Policy>("policy", None)).0, "policy");
    }
}
