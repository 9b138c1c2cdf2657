//! Session answers decoded by hand when they are written plainly, on the client's side of
//! a Session: the mirror of `request`, for the shapes `answer` writes (an Acquire or a
//! Report answer without a transition).
//!
//! Anything else (a transition, an error, a field repeated or unknown, bytes that do not
//! decode) returns `None`, and prost decodes the message anew, so every outcome, errors
//! included, is prost's. `tests` checks that against prost over arbitrary answers and
//! arbitrary bytes.

use prost_types::Duration;

use super::wire::Reader;
use super::wire::keys::*;
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, Permit, ReportResponse, SessionResponse};

/// The answer `bytes` hold, when they are written plainly; `None` for prost to decode.
#[cfg(test)]
pub(super) fn decode(bytes: &[u8]) -> Option<SessionResponse> {
    let mut answer = SessionResponse::default();
    decode_into(bytes, &mut answer)?;
    Some(answer)
}

/// Reads the answer `bytes` hold into `answer` (a default one), in place, as
/// `request::decode_into` reads a request (and for the same reason): `None` for prost to
/// decode, `answer` then holding whatever was read.
pub(super) fn decode_into(bytes: &[u8], answer: &mut SessionResponse) -> Option<()> {
    let mut r = Reader::new(bytes);
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.id = r.varint()?,
            // One member of the oneof (an error, the third, is prost's to read).
            L2 if answer.response.is_none() => {
                let bytes = r.bytes()?;
                if let Response::Acquire(acquire) = answer
                    .response
                    .insert(Response::Acquire(AcquireResponse::default()))
                {
                    acquire_into(bytes, acquire)?;
                }
            }
            L3 if answer.response.is_none() => {
                let bytes = r.bytes()?;
                if let Response::Report(report) = answer
                    .response
                    .insert(Response::Report(ReportResponse::default()))
                {
                    report_into(bytes, report)?;
                }
            }
            _ => return None,
        }
    }
    Some(())
}

fn acquire_into(bytes: &[u8], answer: &mut AcquireResponse) -> Option<()> {
    let mut r = Reader::new(bytes);
    // int32 and enums are the varint's low 32 bits, a bool any varint but 0, as prost
    // reads them.
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.decision = r.varint()? as i32,
            V2 => answer.status = r.varint()? as i32,
            L3 => r.permit_into(answer.permit.insert(Permit::default()))?,
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
    Some(())
}

fn report_into(bytes: &[u8], answer: &mut ReportResponse) -> Option<()> {
    let mut r = Reader::new(bytes);
    while let Some(k) = r.key()? {
        match k {
            V1 => answer.accepted = r.varint()? != 0,
            V2 => answer.status = r.varint()? as i32,
            V3 => answer.revision = r.varint()?,
            _ => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests;
