//! Session answers decoded by hand when they are written plainly, on the client's side of
//! a Session: the mirror of `request`, for the shapes `answer` writes (an Acquire or a
//! Report answer without a transition).
//!
//! Anything else (a transition, an error, a field repeated or unknown, bytes that do not
//! decode) returns `None`, and prost decodes the message, so every outcome, errors
//! included, is prost's. `tests` checks that against prost over arbitrary answers and
//! arbitrary bytes.

use prost_types::Duration;

use super::wire::{Fields, Seen, Value, permit_of, seconds_and_nanos};
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, ReportResponse, SessionResponse};

/// The answer `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionResponse> {
    let mut fields = Fields::new(bytes);
    let mut answer = SessionResponse::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Varint(id)) if seen.first(1) => answer.id = id,
            // One member of the oneof, once (an error, the third, is prost's to read).
            (2, Value::Bytes(acquire)) if seen.first(2) && seen.first(3) => {
                answer.response = Some(Response::Acquire(acquire_answer(acquire)?));
            }
            (3, Value::Bytes(report)) if seen.first(2) && seen.first(3) => {
                answer.response = Some(Response::Report(report_answer(report)?));
            }
            _ => return None,
        }
    }
    Some(answer)
}

fn acquire_answer(bytes: &[u8]) -> Option<AcquireResponse> {
    let mut fields = Fields::new(bytes);
    let mut answer = AcquireResponse::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        // int32 and enums are the varint's low 32 bits, a bool any varint but 0, as prost
        // reads them.
        match field {
            (1, Value::Varint(decision)) if seen.first(1) => answer.decision = decision as i32,
            (2, Value::Varint(status)) if seen.first(2) => answer.status = status as i32,
            (3, Value::Bytes(permit)) if seen.first(3) => answer.permit = Some(permit_of(permit)?),
            (4, Value::Bytes(retry_after)) if seen.first(4) => {
                let (seconds, nanos) = seconds_and_nanos(retry_after)?;
                answer.retry_after = Some(Duration { seconds, nanos });
            }
            (5, Value::Varint(reason)) if seen.first(5) => answer.reason = reason as i32,
            (6, Value::Varint(revision)) if seen.first(6) => answer.revision = revision,
            (8, Value::Varint(would_reject)) if seen.first(8) => answer.would_reject = would_reject != 0,
            (9, Value::Varint(policy_revision)) if seen.first(9) => answer.policy_revision = policy_revision,
            _ => return None,
        }
    }
    Some(answer)
}

fn report_answer(bytes: &[u8]) -> Option<ReportResponse> {
    let mut fields = Fields::new(bytes);
    let mut answer = ReportResponse::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Varint(accepted)) if seen.first(1) => answer.accepted = accepted != 0,
            (2, Value::Varint(status)) if seen.first(2) => answer.status = status as i32,
            (3, Value::Varint(revision)) if seen.first(3) => answer.revision = revision,
            _ => return None,
        }
    }
    Some(answer)
}

#[cfg(test)]
mod tests;
