//! The page's admin actions as AdminService requests.
//!
//! An action is turned into the very request circuitctl would send, and served by the
//! AdminService code itself (see `dashboard`): the same validation, forwarding to the
//! leader, audit line and errors. Only the shape of the page's JSON is checked here.

use std::time::Duration;

use resilient_circuit_api::v1;
use serde::Deserialize;

/// What the page posts to `/api/admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The protector.
    pub name: String,
    /// `force_open`, `disable`, `clear` or `set_status`.
    pub action: String,
    /// For `set_status`: `closed`, `open` or `half_open`.
    #[serde(default)]
    pub status: Option<String>,
    /// How long a forced-open or disabled override holds, or an OPEN set by hand lasts
    /// (the cooldown when absent).
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// An action, as the AdminService request that performs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// SetStatus.
    SetStatus(v1::SetStatusRequest),
    /// SetOverride.
    SetOverride(v1::SetOverrideRequest),
}

/// The longest `seconds` accepted before the service's own bound applies (a year): keeps
/// the float's conversion exact.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

fn duration(seconds: Option<f64>) -> Result<Option<prost_types::Duration>, String> {
    let Some(s) = seconds else { return Ok(None) };
    if !(s.is_finite() && (0.0..=MAX_SECONDS).contains(&s)) {
        return Err(format!(
            "seconds: {s} is not a number of seconds from 0 to {MAX_SECONDS}"
        ));
    }
    let d = Duration::from_secs_f64(s);
    Ok(Some(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }))
}

impl ActionBody {
    /// The request this action sends; an error names what is wrong.
    pub fn into_action(self) -> Result<Action, String> {
        let expires = duration(self.seconds)?;
        let set_override = |kind: v1::OverrideKind, expires_after| {
            Action::SetOverride(v1::SetOverrideRequest {
                name: self.name.clone(),
                kind: kind as i32,
                expires_after,
            })
        };
        match self.action.as_str() {
            "force_open" => Ok(set_override(v1::OverrideKind::ForcedOpen, expires)),
            "disable" => Ok(set_override(v1::OverrideKind::Disabled, expires)),
            // Clearing has no duration; one sent along is meaningless, not an error.
            "clear" => Ok(set_override(v1::OverrideKind::None, None)),
            "set_status" => {
                let status = match self.status.as_deref() {
                    Some("closed") => v1::Status::Closed,
                    Some("open") => v1::Status::Open,
                    Some("half_open") => v1::Status::HalfOpen,
                    other => {
                        return Err(format!(
                            "status: {other:?} is not one of \"closed\", \"open\", \"half_open\""
                        ));
                    }
                };
                Ok(Action::SetStatus(v1::SetStatusRequest {
                    name: self.name,
                    status: status as i32,
                    open_for: if status == v1::Status::Open { expires } else { None },
                }))
            }
            other => Err(format!(
                "action: {other:?} is not one of \"force_open\", \"disable\", \"clear\", \"set_status\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(action: &str, status: Option<&str>, seconds: Option<f64>) -> ActionBody {
        ActionBody {
            name: "p".into(),
            action: action.into(),
            status: status.map(Into::into),
            seconds,
        }
    }

    #[test]
    fn each_action_is_the_request_circuitctl_would_send() {
        let Action::SetOverride(r) = body("force_open", None, Some(1.5)).into_action().unwrap() else {
            panic!("not an override");
        };
        assert_eq!(r.kind, v1::OverrideKind::ForcedOpen as i32);
        assert_eq!(
            r.expires_after,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let Action::SetOverride(r) = body("clear", None, Some(3.0)).into_action().unwrap() else {
            panic!("not an override");
        };
        assert_eq!((r.kind, r.expires_after), (v1::OverrideKind::None as i32, None));
        let Action::SetStatus(r) = body("set_status", Some("half_open"), Some(3.0))
            .into_action()
            .unwrap()
        else {
            panic!("not a status");
        };
        assert_eq!((r.status, r.open_for), (v1::Status::HalfOpen as i32, None));
    }

    #[test]
    fn a_wrong_body_is_refused_naming_the_field() {
        for (b, field) in [
            (body("explode", None, None), "action:"),
            (body("set_status", Some("purple"), None), "status:"),
            (body("set_status", None, None), "status:"),
            (body("disable", None, Some(-1.0)), "seconds:"),
            (body("disable", None, Some(f64::NAN)), "seconds:"),
        ] {
            let e = b.into_action().unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
