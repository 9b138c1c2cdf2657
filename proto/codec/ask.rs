//! Session requests encoded by hand, on the client's side of a Session: the mirror of
//! `answer`, for every request a client sends (an Acquire, or a Report with its permit).
//! The bytes are exactly prost's (see `write`); `tests` checks that byte for byte over
//! arbitrary requests. A request with no member of the oneof is left to prost.

use prost::bytes::BufMut;

use super::write::{Out, duration_len, int32_len, message_len, permit_len, string_len};
use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, ReportRequest, SessionRequest};

/// `request` as prost encodes it, appended to `buf` (through `scratch` when it is long);
/// `false` (`buf` and `scratch` left alone) when prost must encode it.
pub(super) fn encode(request: &SessionRequest, scratch: &mut Vec<u8>, buf: &mut impl BufMut) -> bool {
    match &request.request {
        Some(Request::Acquire(a)) => {
            Out::frame(scratch, buf, request.id, 2, acquire_len(a), |out| {
                out.string(1, &a.name)
            });
        }
        Some(Request::Report(r)) => {
            Out::frame(scratch, buf, request.id, 3, report_len(r), |out| {
                write_report(out, r)
            });
        }
        None => return false,
    }
    true
}

#[inline]
fn acquire_len(a: &AcquireRequest) -> usize {
    string_len(&a.name)
}

#[inline]
fn report_len(r: &ReportRequest) -> usize {
    string_len(&r.name)
        + r.permit.as_ref().map_or(0, |p| message_len(permit_len(p)))
        + int32_len(r.outcome)
        + r.duration.as_ref().map_or(0, |d| message_len(duration_len(d)))
}

#[inline]
fn write_report(out: &mut Out, r: &ReportRequest) {
    out.string(1, &r.name);
    if let Some(permit) = &r.permit {
        out.nested(2, permit_len(permit));
        out.permit(permit);
    }
    out.int32(3, r.outcome);
    if let Some(duration) = &r.duration {
        out.nested(4, duration_len(duration));
        out.seconds_and_nanos(duration.seconds, duration.nanos);
    }
}

#[cfg(test)]
mod tests;
