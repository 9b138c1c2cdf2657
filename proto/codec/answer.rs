//! The Session's common answers, encoded by hand: an Acquire or a Report answer without a
//! transition, which is nearly every message a busy Session sends.
//!
//! prost writes a nested message by computing its length, then writing it, and each
//! nested message computes its own nested lengths again: a Session answer's permit
//! expiry is measured three times and every varint goes through a generic writer. Here
//! each length is computed once, bottom up, and `write` writes the bytes (into a stack
//! array, copied into the transport's buffer once). In callgrind, prost's `encode_varint`
//! was the daemon's largest single cost: about a tenth of its instructions per decision.
//!
//! The bytes are exactly prost's: fields in tag order, a proto3 scalar only when it is
//! not zero, a present message even when empty, enums and signed integers as
//! sign-extended varints. `tests` checks that byte for byte against prost over arbitrary
//! answers. Anything else (an answer with a transition, an error, an empty answer) is left
//! to prost.

use prost::bytes::BufMut;

use super::VARINT;
use super::write::{Out, duration_len, int32_len, message_len, permit_len, uint64_len};
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, ReportResponse, SessionResponse};

/// `answer` as prost encodes it, appended to `buf` (through `scratch` when it is long),
/// when it is one of the common shapes; `false` (`buf` and `scratch` left alone) when
/// prost must encode it.
pub(super) fn encode(answer: &SessionResponse, scratch: &mut Vec<u8>, buf: &mut impl BufMut) -> bool {
    match &answer.response {
        Some(Response::Acquire(a)) if a.transition.is_none() => {
            Out::frame(scratch, buf, answer.id, 2, acquire_len(a), |out| {
                write_acquire(out, a)
            });
        }
        Some(Response::Report(r)) if r.transition.is_none() => {
            Out::frame(scratch, buf, answer.id, 3, report_len(r), |out| {
                write_report(out, r)
            });
        }
        _ => return false,
    }
    true
}

#[inline]
fn acquire_len(a: &AcquireResponse) -> usize {
    int32_len(a.decision)
        + int32_len(a.status)
        + a.permit.as_ref().map_or(0, |p| message_len(permit_len(p)))
        + a.retry_after.as_ref().map_or(0, |d| message_len(duration_len(d)))
        + int32_len(a.reason)
        + uint64_len(a.revision)
        + usize::from(a.would_reject) * 2
        + uint64_len(a.policy_revision)
}

#[inline]
fn write_acquire(out: &mut Out, a: &AcquireResponse) {
    out.int32(1, a.decision);
    out.int32(2, a.status);
    if let Some(permit) = &a.permit {
        out.nested(3, permit_len(permit));
        out.permit(permit);
    }
    if let Some(retry_after) = &a.retry_after {
        out.nested(4, duration_len(retry_after));
        out.seconds_and_nanos(retry_after.seconds, retry_after.nanos);
    }
    out.int32(5, a.reason);
    out.uint64(6, a.revision);
    if a.would_reject {
        out.key(8, VARINT);
        out.put(1);
    }
    out.uint64(9, a.policy_revision);
}

#[inline]
fn report_len(r: &ReportResponse) -> usize {
    usize::from(r.accepted) * 2 + int32_len(r.status) + uint64_len(r.revision)
}

#[inline]
fn write_report(out: &mut Out, r: &ReportResponse) {
    if r.accepted {
        out.key(1, VARINT);
        out.put(1);
    }
    out.int32(2, r.status);
    out.uint64(3, r.revision);
}

#[cfg(test)]
mod tests;
