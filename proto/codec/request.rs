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

use super::wire::Reader;
use super::wire::keys::*;
use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, ReportRequest, SessionRequest};

/// The request `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionRequest> {
    let mut r = Reader::new(bytes);
    let mut request = SessionRequest::default();
    while let Some(k) = r.key()? {
        match k {
            V1 => request.id = r.varint()?,
            // One member of the oneof (a second one replaces the first: prost's to read).
            L2 if request.request.is_none() => {
                request.request = Some(Request::Acquire(acquire_request(r.bytes()?)?));
            }
            L3 if request.request.is_none() => {
                request.request = Some(Request::Report(report_request(r.bytes()?)?));
            }
            _ => return None,
        }
    }
    Some(request)
}

fn acquire_request(bytes: &[u8]) -> Option<AcquireRequest> {
    let mut r = Reader::new(bytes);
    let mut request = AcquireRequest::default();
    while let Some(k) = r.key()? {
        match k {
            L1 => request.name = r.string()?,
            _ => return None,
        }
    }
    Some(request)
}

fn report_request(bytes: &[u8]) -> Option<ReportRequest> {
    let mut r = Reader::new(bytes);
    let mut request = ReportRequest::default();
    while let Some(k) = r.key()? {
        match k {
            L1 => request.name = r.string()?,
            L2 => request.permit = Some(r.permit()?),
            // int32 and enums: the varint's low 32 bits, as prost reads them.
            V3 => request.outcome = r.varint()? as i32,
            L4 => {
                let (seconds, nanos) = r.seconds_and_nanos()?;
                request.duration = Some(Duration { seconds, nanos });
            }
            _ => return None,
        }
    }
    Some(request)
}

#[cfg(test)]
mod tests;
