//! The dashboard's JSON: the contract's messages in the shape the page reads.
//!
//! The page draws what it needs and no more, so this is not a full JSON mapping of the
//! contract (grpcurl or circuitctl give that): statuses and reasons as the lowercase
//! names the metrics use (`half_open`), times as Unix milliseconds, and the failure rate
//! of the current window computed once here rather than in every browser.

use resilient_circuit_api::v1;
use serde_json::{Value, json};

use crate::clock::Clock;

/// An enum value's proto name without its prefix, lowercase: `STATUS_HALF_OPEN` ->
/// `half_open`; `unspecified` for a number the contract does not know.
fn short(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

/// A status's name: `closed`, `open` or `half_open`.
pub fn status(value: i32) -> String {
    v1::Status::try_from(value).map_or_else(
        |_| "unspecified".to_owned(),
        |s| short(s.as_str_name(), "STATUS_"),
    )
}

/// An override's name (`forced_open`, `disabled`), or `None` when no override holds.
pub fn override_kind(value: Option<&v1::Override>) -> Option<String> {
    let kind = v1::OverrideKind::try_from(value?.kind).ok()?;
    match kind {
        v1::OverrideKind::ForcedOpen | v1::OverrideKind::Disabled => {
            Some(short(kind.as_str_name(), "OVERRIDE_KIND_"))
        }
        v1::OverrideKind::None | v1::OverrideKind::Unspecified => None,
    }
}

/// A transition reason's name: `failure_limit`, `cooldown_elapsed`, `manual`, ...
pub fn reason(value: i32) -> String {
    v1::TransitionReason::try_from(value).map_or_else(
        |_| "unspecified".to_owned(),
        |r| short(r.as_str_name(), "TRANSITION_REASON_"),
    )
}

/// A timestamp as Unix milliseconds.
pub fn millis(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// The daemon's clock now, in Unix milliseconds: the page counts cooldowns down against
/// it, so a browser whose clock is off still shows the right time left. The clock that
/// writes the protectors' deadlines and transitions (the wall clock read at start, then
/// the monotonic clock), not the wall clock now: the two drift apart while the daemon
/// runs, and a countdown is a deadline minus this.
pub fn now_millis(clock: &Clock) -> i64 {
    i64::try_from(clock.now().as_millis()).unwrap_or(i64::MAX)
}

/// One protector as a table row and a detail sample.
pub fn protector(p: &v1::Protector) -> Value {
    let window = p.window.clone().unwrap_or_default();
    let judged = window.successes + window.failures;
    let failure_rate = (judged > 0).then(|| f64::from(window.failures) / f64::from(judged));
    let counters = p.counters.unwrap_or_default();
    let cooldown_ms = p
        .policy
        .as_ref()
        .and_then(|policy| policy.cooldown)
        .map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000);
    json!({
        "name": p.name,
        "status": status(p.status),
        "override": override_kind(p.r#override.as_ref()),
        "override_expires_ms": p.r#override.as_ref().and_then(|o| millis(o.expires_at.as_ref())),
        "generation": p.generation,
        "open_until_ms": millis(p.open_until.as_ref()),
        "window": {
            "size": window.size,
            "successes": window.successes,
            "failures": window.failures,
        },
        "failure_rate": failure_rate,
        "consecutive_failures": p.consecutive_failures,
        "trials_in_flight": p.trials_in_flight,
        "counters": {
            "admitted": counters.admitted,
            "rejected": counters.rejected,
            "successes": counters.successes,
            "failures": counters.failures,
            "ignored": counters.ignored,
            "stale_reports": counters.stale_reports,
            "expired_permits": counters.expired_permits,
        },
        "cooldown_ms": cooldown_ms,
        "mod_revision": p.mod_revision,
    })
}

/// A transition of `name` at `revision`.
pub fn transition(name: &str, t: &v1::Transition, revision: u64) -> Value {
    json!({
        "revision": revision,
        "name": name,
        "from": status(t.from),
        "to": status(t.to),
        "reason": reason(t.reason),
        "generation": t.generation,
        "open_until_ms": millis(t.open_until.as_ref()),
        "at_ms": millis(t.at.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_metrics_lowercase_names() {
        assert_eq!(status(v1::Status::HalfOpen as i32), "half_open");
        assert_eq!(status(99), "unspecified");
        assert_eq!(
            reason(v1::TransitionReason::CooldownElapsed as i32),
            "cooldown_elapsed"
        );
        let forced = v1::Override {
            kind: v1::OverrideKind::ForcedOpen as i32,
            expires_at: None,
        };
        assert_eq!(override_kind(Some(&forced)).as_deref(), Some("forced_open"));
        let none = v1::Override {
            kind: v1::OverrideKind::None as i32,
            expires_at: None,
        };
        assert_eq!(override_kind(Some(&none)), None);
    }

    #[test]
    fn a_row_carries_the_window_rate_and_times_in_millis() {
        let p = v1::Protector {
            name: "payments".into(),
            status: v1::Status::Open as i32,
            generation: 3,
            open_until: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 500_000_000,
            }),
            window: Some(v1::Window {
                size: 10,
                successes: 3,
                failures: 1,
                outcomes: vec![],
                slow_calls: 0,
            }),
            ..Default::default()
        };
        let row = protector(&p);
        assert_eq!(row["status"], "open");
        assert_eq!(row["open_until_ms"], 10_500);
        assert_eq!(row["failure_rate"], 0.25);
        assert_eq!(row["override"], Value::Null);
        let empty = protector(&v1::Protector::default());
        assert_eq!(empty["failure_rate"], Value::Null);
    }

    #[tokio::test(start_paused = true)]
    async fn now_is_the_daemons_clock_not_the_wall_clock() {
        // A clock that reads 1,000 s past the epoch at start: the deadlines the page counts
        // down are written on it, so "now" must be read on it too.
        let clock = Clock::starting_at(std::time::Duration::from_secs(1_000));
        assert_eq!(now_millis(&clock), 1_000_000);
        tokio::time::advance(std::time::Duration::from_millis(1_500)).await;
        assert_eq!(now_millis(&clock), 1_001_500);
    }
}
