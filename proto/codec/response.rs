//! Session answers decoded by hand when they are written plainly, on the client's side of
//! a Session: the mirror of `request`, for the shapes `answer` writes (an Acquire or a
//! Report answer without a transition).
//!
//! Anything else (a transition, an error, a field repeated or unknown, bytes that do not
//! decode) returns `None`, and prost decodes the message, so every outcome, errors
//! included, is prost's. `tests` checks that against prost over arbitrary answers and
//! arbitrary bytes.

use prost_types::Duration;

use super::wire::Reader;
use super::wire::keys::*;
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, ReportResponse, SessionResponse};

/// The answer `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionResponse> {
    let mut r = Reader::new(bytes);
    let mut answer = SessionResponse::default();
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.id = r.varint()?,
            // One member of the oneof (an error, the third, is prost's to read).
            L2 if answer.response.is_none() => {
                answer.response = Some(Response::Acquire(acquire_answer(r.bytes()?)?));
            }
            L3 if answer.response.is_none() => {
                answer.response = Some(Response::Report(report_answer(r.bytes()?)?));
            }
            _ => return None,
        }
    }
    Some(answer)
}

fn acquire_answer(bytes: &[u8]) -> Option<AcquireResponse> {
    let mut r = Reader::new(bytes);
    let mut answer = AcquireResponse::default();
    // int32 and enums are the varint's low 32 bits, a bool any varint but 0, as prost
    // reads them.
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.decision = r.varint()? as i32,
            V2 => answer.status = r.varint()? as i32,
            L3 => answer.permit = Some(r.permit()?),
            L4 => {
                let (seconds, nanos) = r.seconds_and_nanos()?;
                answer.retry_after = Some(Duration { seconds, nanos });
            }
            V5 => answer.reason = r.varint()? as i32,
            V6 => answer.revision = r.varint()?,
            V8 => answer.would_reject = r.varint()? != 0,
            V9 => answer.policy_revision = r.varint()?,
            _ => return None,
        }
    }
    Some(answer)
}

fn report_answer(bytes: &[u8]) -> Option<ReportResponse> {
    let mut r = Reader::new(bytes);
    let mut answer = ReportResponse::default();
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.accepted = r.varint()? != 0,
            V2 => answer.status = r.varint()? as i32,
            V3 => answer.revision = r.varint()?,
            _ => return None,
        }
    }
    Some(answer)
}

#[cfg(test)]
mod tests;
