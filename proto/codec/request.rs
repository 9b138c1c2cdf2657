//! Session requests decoded by hand when they are written plainly: each field at most
//! once, no field the contract does not know. Every client writes them so.
//!
//! prost decodes through a generic loop that looks each field up, checks its wire type,
//! merges nested messages field by field and grows the name's `String` as it copies it.
//! Here the few fields of an Acquire or a Report are read straight from the slice and
//! the name is copied once, at its length. In callgrind prost's decoding of a Session
//! request was about a fifth of the daemon's instructions per decision.
//!
//! Anything else (a field repeated, which protobuf merges; a field unknown to this
//! contract; bytes that do not decode) returns `None`, and prost decodes the message, so
//! every outcome, errors included, is prost's. `tests` checks that against prost over
//! arbitrary requests and arbitrary bytes.

use prost_types::Duration;

use super::wire::{Value, message, permit_of, seconds_and_nanos, string};
use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, ReportRequest, SessionRequest};

/// The request `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionRequest> {
    message(bytes, |request: &mut SessionRequest, tag, value| {
        match (tag, value) {
            (1, Value::Varint(id)) => request.id = id,
            // One member of the oneof (a second one replaces the first: prost's to read).
            (2, Value::Bytes(acquire)) if request.request.is_none() => {
                request.request = Some(Request::Acquire(acquire_request(acquire)?));
            }
            (3, Value::Bytes(report)) if request.request.is_none() => {
                request.request = Some(Request::Report(report_request(report)?));
            }
            _ => return None,
        }
        Some(())
    })
}

fn acquire_request(bytes: &[u8]) -> Option<AcquireRequest> {
    message(bytes, |request: &mut AcquireRequest, tag, value| {
        match (tag, value) {
            (1, Value::Bytes(name)) => request.name = string(name)?,
            _ => return None,
        }
        Some(())
    })
}

fn report_request(bytes: &[u8]) -> Option<ReportRequest> {
    message(bytes, |request: &mut ReportRequest, tag, value| {
        match (tag, value) {
            (1, Value::Bytes(name)) => request.name = string(name)?,
            (2, Value::Bytes(permit)) => request.permit = Some(permit_of(permit)?),
            // int32 and enums: the varint's low 32 bits, as prost reads them.
            (3, Value::Varint(outcome)) => request.outcome = outcome as i32,
            (4, Value::Bytes(duration)) => {
                let (seconds, nanos) = seconds_and_nanos(duration)?;
                request.duration = Some(Duration { seconds, nanos });
            }
            _ => return None,
        }
        Some(())
    })
}

#[cfg(test)]
mod tests;
