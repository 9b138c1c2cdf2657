//! How each answer looks as a table, and a watch event as one line.
//!
//! Single answers are two-column "field value" tables, so a script can still pick a row
//! with awk. Watch lines always have six whitespace-separated fields — timestamp,
//! revision, event kind, name, change, reason — with `-` where a field does not apply
//! (names never contain whitespace).

use resilient_circuit_api::v1::{self, watch_event::Event};

use crate::render::{self, Cell, Style, names, table};

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn row(key: &str, value: impl Into<Cell>) -> Vec<Cell> {
    vec![Cell::from(key), value.into()]
}

fn fraction(f: Option<&v1::Fraction>) -> String {
    f.map_or_else(
        || "-".to_owned(),
        |f| format!("{}/{}", f.numerator, f.denominator),
    )
}

/// One protector as field/value rows.
fn protector_rows(p: &v1::Protector, style: Style) -> Vec<Vec<Cell>> {
    let policy = p.policy.unwrap_or_default();
    let ov = p.r#override.unwrap_or_default();
    let window = p.window.clone().unwrap_or_default();
    let counters = p.counters.unwrap_or_default();
    let trial_permits = match policy.trial_permits {
        None => "the window size".to_owned(),
        Some(0) => "unlimited".to_owned(),
        Some(n) => n.to_string(),
    };
    let mut override_text = names::override_kind(ov.kind);
    if ov.expires_at.is_some() {
        override_text = format!(
            "{override_text} until {}",
            render::instant(ov.expires_at.as_ref())
        );
    }
    let outcomes: Vec<String> = window.outcomes.iter().map(|o| names::outcome(*o)).collect();
    let mut rows = vec![
        row("name", p.name.as_str()),
        row("status", style.status(p.status)),
        row("override", override_text),
        row("generation", p.generation.to_string()),
        row("open until", render::instant(p.open_until.as_ref())),
        row("cooldown", render::duration(policy.cooldown.as_ref())),
        row("failure limit", fraction(policy.failure_limit.as_ref())),
        row("success limit", fraction(policy.success_limit.as_ref())),
        row("trial permits", trial_permits),
        row("permit ttl", render::duration(policy.permit_ttl.as_ref())),
        row("auto half-open", yes_no(policy.auto_half_open)),
    ];
    rows.extend(rule_rows(&policy));
    rows.extend([
        row(
            "cooldown in force",
            render::duration(p.cooldown_in_force.as_ref()),
        ),
        row("policy revision", p.policy_revision.to_string()),
    ]);
    if let Some(tw) = &p.time_window {
        rows.push(row("time window", time_window(tw)));
    }
    let slow = if window.slow_calls > 0 {
        format!(", {} slow", window.slow_calls)
    } else {
        String::new()
    };
    rows.extend([
        row(
            "window",
            format!(
                "{} of {}: {} successes, {} failures{slow}{}",
                window.outcomes.len(),
                window.size,
                window.successes,
                window.failures,
                if outcomes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", outcomes.join(" "))
                }
            ),
        ),
        row("consecutive failures", p.consecutive_failures.to_string()),
        row("trials in flight", p.trials_in_flight.to_string()),
        row(
            "counters",
            format!(
                "admitted {}, rejected {}, successes {}, failures {}, ignored {}, \
                 stale reports {}, expired permits {}",
                counters.admitted,
                counters.rejected,
                counters.successes,
                counters.failures,
                counters.ignored,
                counters.stale_reports,
                counters.expired_permits
            ),
        ),
        row("modified at", p.mod_revision.to_string()),
    ]);
    if policy.history_size > 0 {
        rows.push(row(
            "history",
            format!("{} of {} outcomes kept", p.history_len, policy.history_size),
        ));
    }
    rows
}

/// The optional rules of proto/SEMANTICS.md section 2a, a row for each one set.
fn rule_rows(policy: &v1::Policy) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    if policy.window_duration.is_some() {
        rows.push(row(
            "window duration",
            render::duration(policy.window_duration.as_ref()),
        ));
        let minimum = policy
            .minimum_calls
            .map_or_else(|| "failure limit's d".to_owned(), |n| n.to_string());
        rows.push(row("minimum calls", minimum));
    }
    if policy.consecutive_failures > 0 {
        rows.push(row(
            "consecutive failure limit",
            policy.consecutive_failures.to_string(),
        ));
    }
    if policy.slow_call_duration.is_some() || policy.slow_call_limit.is_some() {
        rows.push(row(
            "slow calls",
            format!(
                "at or above {}, limit {}",
                render::duration(policy.slow_call_duration.as_ref()),
                fraction(policy.slow_call_limit.as_ref())
            ),
        ));
    }
    if let Some(m) = policy.cooldown_multiplier {
        rows.push(row("cooldown multiplier", format!("{m}")));
    }
    if policy.max_cooldown.is_some() {
        rows.push(row(
            "max cooldown",
            render::duration(policy.max_cooldown.as_ref()),
        ));
    }
    if policy.shadow {
        rows.push(row("shadow", "yes: every call is admitted"));
    }
    if policy.history_size > 0 {
        rows.push(row("history size", policy.history_size.to_string()));
    }
    rows
}

/// A time window's totals: `12 calls in 1m (buckets of 100ms): 3 failures, 1 slow`.
fn time_window(tw: &v1::TimeWindow) -> String {
    format!(
        "{} calls in {} (buckets of {}): {} failures, {} slow",
        tw.calls,
        render::duration(tw.duration.as_ref()),
        render::duration(tw.bucket_width.as_ref()),
        tw.failures,
        tw.slow_calls
    )
}

fn protector_or_empty(p: Option<&v1::Protector>, style: Style) -> Vec<Vec<Cell>> {
    p.map(|p| protector_rows(p, style)).unwrap_or_default()
}

/// A transition: `CLOSED→OPEN FAILURE_LIMIT, generation 2, open until ...`.
fn transition(t: &v1::Transition, style: Style) -> Cell {
    let mut rest = format!(
        " {}, generation {}",
        names::transition_reason(t.reason),
        t.generation
    );
    if t.open_until.is_some() {
        rest.push_str(&format!(
            ", open until {}",
            render::instant(t.open_until.as_ref())
        ));
    }
    style.arrow(t.from, t.to).then(&rest)
}

/// `get`.
pub fn get(r: &v1::GetProtectorResponse, style: Style) -> String {
    let mut rows = protector_or_empty(r.protector.as_ref(), style);
    rows.push(row("revision", r.revision.to_string()));
    table(&rows)
}

/// `list`: one protector a line.
pub fn list(protectors: &[v1::Protector], style: Style) -> String {
    let header = [
        "NAME",
        "STATUS",
        "OVERRIDE",
        "GENERATION",
        "WINDOW",
        "TRIALS",
        "COOLDOWN",
        "POLICY REV",
        "OPEN UNTIL",
    ];
    let mut rows = vec![header.into_iter().map(Cell::from).collect::<Vec<_>>()];
    for p in protectors {
        let w = p.window.clone().unwrap_or_default();
        let ov = p.r#override.unwrap_or_default();
        rows.push(vec![
            Cell::from(p.name.as_str()),
            style.status(p.status),
            Cell::from(names::override_kind(ov.kind)),
            Cell::from(p.generation.to_string()),
            Cell::from(match &p.time_window {
                // CLOSED with a time window: its totals, over its span.
                Some(tw) => format!(
                    "{} in {} ({} failed)",
                    tw.calls,
                    render::duration(tw.duration.as_ref()),
                    tw.failures
                ),
                None => format!("{}/{} ({} failed)", w.outcomes.len(), w.size, w.failures),
            }),
            Cell::from(p.trials_in_flight.to_string()),
            Cell::from(render::duration(p.cooldown_in_force.as_ref())),
            Cell::from(p.policy_revision.to_string()),
            Cell::from(render::instant(p.open_until.as_ref())),
        ]);
    }
    table(&rows)
}

/// `ensure`.
pub fn ensure(r: &v1::EnsureProtectorResponse, style: Style) -> String {
    let mut rows = vec![
        row("created", yes_no(r.created)),
        row("policy matches", yes_no(r.policy_matches)),
    ];
    rows.extend(protector_or_empty(r.protector.as_ref(), style));
    rows.push(row("revision", r.revision.to_string()));
    table(&rows)
}

/// `acquire`.
pub fn acquire(r: &v1::AcquireResponse, style: Style) -> String {
    let permit = r.permit.unwrap_or_default();
    let mut rows = vec![
        row("decision", names::decision(r.decision)),
        row("reason", names::decision_reason(r.reason)),
        row("status", style.status(r.status)),
    ];
    if r.would_reject {
        // Shadow mode: admitted, but the live breaker would have rejected it for `reason`.
        rows.push(row("would reject", "yes (shadow mode)"));
    }
    if r.permit.is_some() {
        rows.push(row("permit", permit.id.to_string()));
        rows.push(row("generation", permit.generation.to_string()));
        rows.push(row("expires at", render::instant(permit.expires_at.as_ref())));
    }
    rows.push(row("retry after", render::duration(r.retry_after.as_ref())));
    rows.push(row("policy revision", r.policy_revision.to_string()));
    rows.push(row("revision", r.revision.to_string()));
    table(&rows)
}

/// `report`.
pub fn report(r: &v1::ReportResponse, style: Style) -> String {
    let accepted = if r.accepted {
        "yes"
    } else {
        "no (stale: another generation, or the trial permit was already reported or expired)"
    };
    let mut rows = vec![row("accepted", accepted), row("status", style.status(r.status))];
    if let Some(t) = &r.transition {
        rows.push(row("transition", transition(t, style)));
    }
    rows.push(row("revision", r.revision.to_string()));
    table(&rows)
}

/// `set-status`.
pub fn set_status(r: &v1::SetStatusResponse, style: Style) -> String {
    let mut rows = Vec::new();
    if let Some(t) = &r.transition {
        rows.push(row("transition", transition(t, style)));
    }
    rows.extend(protector_or_empty(r.protector.as_ref(), style));
    rows.push(row("revision", r.revision.to_string()));
    table(&rows)
}

/// `override` and `update-policy`: the protector after the change.
pub fn changed(p: Option<&v1::Protector>, revision: u64, style: Style) -> String {
    let mut rows = protector_or_empty(p, style);
    rows.push(row("revision", revision.to_string()));
    table(&rows)
}

/// `delete`.
pub fn delete(name: &str, r: &v1::DeleteProtectorResponse) -> String {
    format!("deleted {name} at revision {}\n", r.revision)
}

/// `cluster`: the answering replica's view, then one replica a line (`*` marks the one
/// that answered).
pub fn cluster(r: &v1::GetClusterResponse) -> String {
    let prefix = if r.prefix.is_empty() {
        "- (standalone)"
    } else {
        r.prefix.as_str()
    };
    let summary = vec![
        row("answered by", r.answered_by.as_str()),
        row("prefix", prefix),
        row("revision", r.revision.to_string()),
        row("epoch", r.epoch.to_string()),
    ];
    let header = ["", "ADVERTISE", "ADMIN", "ROLE", "LEADER SINCE", "STARTED"];
    let mut replicas = vec![header.into_iter().map(Cell::from).collect::<Vec<_>>()];
    for replica in &r.replicas {
        let answered = if replica.advertise == r.answered_by {
            "*"
        } else {
            " "
        };
        replicas.push(vec![
            Cell::from(answered),
            Cell::from(replica.advertise.as_str()),
            // "-": AdminService is served at the advertised address.
            Cell::from(if replica.admin_advertise.is_empty() {
                "-"
            } else {
                replica.admin_advertise.as_str()
            }),
            Cell::from(names::replica_role(replica.role)),
            Cell::from(render::instant(replica.leader_since.as_ref())),
            Cell::from(render::instant(replica.started.as_ref())),
        ]);
    }
    format!("{}\n{}", table(&summary), table(&replicas))
}

/// One watch event as one line (no newline).
pub fn event(e: &v1::WatchEvent, style: Style) -> String {
    let dash = || Cell::from("-");
    let (kind, at, name, change, reason) = match &e.event {
        None => ("UNKNOWN", None, dash(), dash(), dash()),
        Some(Event::Snapshot(p)) => (
            "SNAPSHOT",
            None,
            Cell::from(p.name.as_str()),
            style.status(p.status),
            dash(),
        ),
        Some(Event::Synced(_)) => ("SYNCED", None, dash(), dash(), dash()),
        Some(Event::StatusChanged(c)) => {
            let t = c.transition.unwrap_or_default();
            (
                "STATUS_CHANGED",
                t.at,
                Cell::from(c.name.as_str()),
                style.arrow(t.from, t.to),
                Cell::from(names::transition_reason(t.reason)),
            )
        }
        Some(Event::Created(p)) => (
            "CREATED",
            None,
            Cell::from(p.name.as_str()),
            style.status(p.status),
            dash(),
        ),
        Some(Event::Deleted(d)) => ("DELETED", None, Cell::from(d.name.as_str()), dash(), dash()),
        Some(Event::PolicyUpdated(u)) => (
            "POLICY_UPDATED",
            None,
            Cell::from(u.name.as_str()),
            dash(),
            dash(),
        ),
        Some(Event::OverrideChanged(o)) => (
            "OVERRIDE_CHANGED",
            None,
            Cell::from(o.name.as_str()),
            Cell::from(names::override_kind(o.r#override.unwrap_or_default().kind)),
            Cell::from(if o.expired { "EXPIRED" } else { "OPERATOR" }),
        ),
        Some(Event::Progress(_)) => ("PROGRESS", None, dash(), dash(), dash()),
        Some(Event::Resync(r)) => (
            "RESYNC",
            None,
            dash(),
            dash(),
            Cell::from(names::resync_reason(r.reason)),
        ),
    };
    let pad = |c: &Cell, width: usize| {
        let gap = width.saturating_sub(c.text().chars().count());
        format!("{}{}", c.painted(), " ".repeat(gap))
    };
    format!(
        "{}  {:>6}  {:<16}  {}  {}  {}",
        render::rfc3339(at.as_ref()),
        e.revision,
        kind,
        pad(&name, 20),
        pad(&change, 17),
        reason.painted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_change_is_one_line_of_six_fields() {
        let e = v1::WatchEvent {
            revision: 42,
            event: Some(Event::StatusChanged(v1::StatusChanged {
                name: "payments".into(),
                transition: Some(v1::Transition {
                    from: v1::Status::Closed as i32,
                    to: v1::Status::Open as i32,
                    reason: v1::TransitionReason::FailureLimit as i32,
                    generation: 2,
                    open_until: None,
                    at: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
                }),
            })),
        };
        let line = event(&e, Style::plain());
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "1970-01-01T00:00:00.000Z",
                "42",
                "STATUS_CHANGED",
                "payments",
                "CLOSED→OPEN",
                "FAILURE_LIMIT"
            ]
        );
    }

    #[test]
    fn events_without_a_protector_use_dashes() {
        let e = v1::WatchEvent {
            revision: 3,
            event: Some(Event::Progress(v1::Progress {})),
        };
        let line = event(&e, Style::plain());
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1..], ["3", "PROGRESS", "-", "-", "-"]);
    }
}
