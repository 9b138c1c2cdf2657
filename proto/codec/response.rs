//! Session answers decoded by hand when they are written plainly, on the client's side of
//! a Session: the mirror of `request`, for the shapes `answer` writes (an Acquire or a
//! Report answer without a transition).
//!
//! Anything else (a transition, an error, a field repeated or unknown, bytes that do not
//! decode) returns `None`, and prost decodes the message, so every outcome, errors
//! included, is prost's. `tests` checks that against prost over arbitrary answers and
//! arbitrary bytes.

use prost_types::Duration;

use super::wire::{Value, message, permit_of, seconds_and_nanos};
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, ReportResponse, SessionResponse};

/// The answer `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionResponse> {
    message(bytes, |answer: &mut SessionResponse, tag, value| {
        match (tag, value) {
            (1, Value::Varint(id)) => answer.id = id,
            // One member of the oneof (an error, the third, is prost's to read).
            (2, Value::Bytes(acquire)) if answer.response.is_none() => {
                answer.response = Some(Response::Acquire(acquire_answer(acquire)?));
            }
            (3, Value::Bytes(report)) if answer.response.is_none() => {
                answer.response = Some(Response::Report(report_answer(report)?));
            }
            _ => return None,
        }
        Some(())
    })
}

fn acquire_answer(bytes: &[u8]) -> Option<AcquireResponse> {
    message(bytes, |answer: &mut AcquireResponse, tag, value| {
        // int32 and enums are the varint's low 32 bits, a bool any varint but 0, as prost
        // reads them.
        match (tag, value) {
            (1, Value::Varint(decision)) => answer.decision = decision as i32,
            (2, Value::Varint(status)) => answer.status = status as i32,
            (3, Value::Bytes(permit)) => answer.permit = Some(permit_of(permit)?),
            (4, Value::Bytes(retry_after)) => {
                let (seconds, nanos) = seconds_and_nanos(retry_after)?;
                answer.retry_after = Some(Duration { seconds, nanos });
            }
            (5, Value::Varint(reason)) => answer.reason = reason as i32,
            (6, Value::Varint(revision)) => answer.revision = revision,
            (8, Value::Varint(would_reject)) => answer.would_reject = would_reject != 0,
            (9, Value::Varint(policy_revision)) => answer.policy_revision = policy_revision,
            _ => return None,
        }
        Some(())
    })
}

fn report_answer(bytes: &[u8]) -> Option<ReportResponse> {
    message(bytes, |answer: &mut ReportResponse, tag, value| {
        match (tag, value) {
            (1, Value::Varint(accepted)) => answer.accepted = accepted != 0,
            (2, Value::Varint(status)) => answer.status = status as i32,
            (3, Value::Varint(revision)) => answer.revision = revision,
            _ => return None,
        }
        Some(())
    })
}

#[cfg(test)]
mod tests;
