//! `simulate`: a what-if answer as two timelines, the candidate policy's and the current
//! one's, each one line per transition (instant, from -> to, reason), then the calls each
//! would have admitted and rejected.

use resilient_circuit_api::v1;

use crate::render::{self, Style, names};

/// One policy's replay: its heading, a line per transition, and its counts.
fn simulation(title: &str, s: Option<&v1::Simulation>, style: Style) -> String {
    let empty = v1::Simulation::default();
    let s = s.unwrap_or(&empty);
    let mut out = format!("{title}: {} transitions\n", s.transitions.len());
    for t in &s.transitions {
        let mut line = format!(
            "  {}  {}  {}",
            render::rfc3339(t.at.as_ref()),
            style.arrow(t.from, t.to).painted(),
            names::transition_reason(t.reason)
        );
        if t.open_until.is_some() {
            line.push_str(&format!(
                ", open until {}",
                render::rfc3339(t.open_until.as_ref())
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("  admitted {}, rejected {}\n", s.admitted, s.rejected));
    out
}

/// `simulate`.
pub fn simulate(r: &v1::SimulatePolicyResponse, style: Style) -> String {
    let span = if r.calls == 0 {
        "the protector keeps no outcome yet".to_owned()
    } else {
        format!(
            "from {} to {}",
            render::rfc3339(r.first_at.as_ref()),
            render::rfc3339(r.last_at.as_ref())
        )
    };
    format!(
        "replayed {} calls, {span} (revision {})\n\n{}\n{}",
        r.calls,
        r.revision,
        simulation("candidate", r.candidate.as_ref(), style),
        simulation("current", r.current.as_ref(), style)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_is_one_line_with_its_instant_arrow_and_reason() {
        let trip = v1::Transition {
            from: v1::Status::Closed as i32,
            to: v1::Status::Open as i32,
            reason: v1::TransitionReason::SlowCalls as i32,
            generation: 2,
            open_until: None,
            at: Some(prost_types::Timestamp {
                seconds: 60,
                nanos: 0,
            }),
        };
        let r = v1::SimulatePolicyResponse {
            calls: 10,
            first_at: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            last_at: Some(prost_types::Timestamp {
                seconds: 90,
                nanos: 0,
            }),
            candidate: Some(v1::Simulation {
                transitions: vec![trip],
                admitted: 6,
                rejected: 4,
            }),
            current: Some(v1::Simulation {
                transitions: Vec::new(),
                admitted: 10,
                rejected: 0,
            }),
            policy: None,
            revision: 7,
        };
        let text = simulate(&r, Style::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("replayed 10 calls, from 1970-01-01T00:00:00.000Z"),
            "{text}"
        );
        assert_eq!(lines[2], "candidate: 1 transitions");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["1970-01-01T00:01:00.000Z", "CLOSED→OPEN", "SLOW_CALLS"]
        );
        assert_eq!(lines[4].trim(), "admitted 6, rejected 4");
        assert_eq!(lines[6], "current: 0 transitions");
        assert_eq!(lines[7].trim(), "admitted 10, rejected 0");
    }
}
