//! Session requests decoded by hand when they are written plainly: each field at most
//! once, no field the contract does not know. Every client writes them so.
//!
//! prost decodes through a generic loop that looks each field up, checks its wire type,
//! merges nested messages field by field and grows the name's `String` as it copies it.
//! Here the few fields of an Acquire or a Report are read straight from the slice and
//! the name is copied once, at its length. In callgrind prost's decoding of a Session
//! request was about a fifth of the daemon's instructions per decision.
//!
//! The fields are read into the message where it will stay (`decode_into`), not built
//! here and returned: see `decode_into`'s note.
//!
//! Anything else (a field repeated, which protobuf merges; a field unknown to this
//! contract; bytes that do not decode) returns `None`, and prost decodes the message anew,
//! so every outcome, errors included, is prost's. `tests` checks that against prost over
//! arbitrary requests and arbitrary bytes (and the codec's own tests, that a request the
//! reader stops in is read as prost reads it).

use prost_types::Duration;

use super::wire::Reader;
use super::wire::keys::*;
use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, Permit, ReportRequest, SessionRequest};

/// The request `bytes` hold, when they are written plainly; `None` for prost to decode.
#[cfg(test)]
pub(super) fn decode(bytes: &[u8]) -> Option<SessionRequest> {
    let mut request = SessionRequest::default();
    decode_into(bytes, &mut request)?;
    Some(request)
}

/// Reads the request `bytes` hold into `request` (a default one), field by field where
/// it will stay: `None` for prost to decode, `request` then holding whatever was read.
///
/// In place, not returned: a request built on the stack and then moved is copied right
/// after its fields were stored, and the copy's wide loads cannot be forwarded from those
/// narrower stores, so each copy stalls (most of `FastDecoder::decode`'s time in a
/// profile; BENCHMARKS.md, thirteenth pass).
pub(super) fn decode_into(bytes: &[u8], request: &mut SessionRequest) -> Option<()> {
    let mut r = Reader::new(bytes);
    while let Some(k) = r.key()? {
        match k {
            V1 => request.id = r.varint()?,
            // One member of the oneof (a second one replaces the first: prost's to read).
            L2 if request.request.is_none() => {
                let bytes = r.bytes()?;
                if let Request::Acquire(acquire) = request
                    .request
                    .insert(Request::Acquire(AcquireRequest::default()))
                {
                    acquire_into(bytes, acquire)?;
                }
            }
            L3 if request.request.is_none() => {
                let bytes = r.bytes()?;
                if let Request::Report(report) =
                    request.request.insert(Request::Report(ReportRequest::default()))
                {
                    report_into(bytes, report)?;
                }
            }
            _ => return None,
        }
    }
    Some(())
}

fn acquire_into(bytes: &[u8], request: &mut AcquireRequest) -> Option<()> {
    let mut r = Reader::new(bytes);
    while let Some(k) = r.key()? {
        match k {
            L1 => r.string_into(&mut request.name)?,
            _ => return None,
        }
    }
    Some(())
}

fn report_into(bytes: &[u8], request: &mut ReportRequest) -> Option<()> {
    let mut r = Reader::new(bytes);
    while let Some(k) = r.key()? {
        match k {
            L1 => r.string_into(&mut request.name)?,
            L2 => r.permit_into(request.permit.insert(Permit::default()))?,
            // int32 and enums: the varint's low 32 bits, as prost reads them.
            V3 => request.outcome = r.varint()? as i32,
            L4 => {
                let (seconds, nanos) = r.seconds_and_nanos()?;
                request.duration = Some(Duration { seconds, nanos });
            }
            _ => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests;
