//! The Session's common answers, encoded by hand: an Acquire or a Report answer without a
//! transition, which is nearly every message a busy Session sends.
//!
//! prost writes a nested message by computing its length, then writing it, and each
//! nested message computes its own nested lengths again: a Session answer's permit
//! expiry is measured three times and every varint goes through a generic writer. Here
//! each length is computed once, bottom up, and the bytes are written into the encoder's
//! scratch vector, reserved to the exact length first, then copied out in one piece. In
//! callgrind, prost's `encode_varint` was the daemon's largest single cost: about a
//! tenth of its instructions per decision.
//!
//! The bytes are exactly prost's: fields in tag order, a proto3 scalar only when it is
//! not zero, a present message even when empty, enums and signed integers as
//! sign-extended varints. `tests` checks that byte for byte against prost over arbitrary
//! answers. Anything else (an answer with a transition, an error, an empty answer) is left
//! to prost.

use prost_types::{Duration, Timestamp};

use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, Permit, ReportResponse, SessionResponse};

/// Protobuf wire types.
const VARINT: u8 = 0;
const LEN: u8 = 2;

/// `answer` as prost encodes it, into `scratch` (cleared first), when it is one of the
/// common shapes; `false` (and `scratch` left alone) when prost must encode it.
pub(super) fn encode(answer: &SessionResponse, scratch: &mut Vec<u8>) -> bool {
    match &answer.response {
        Some(Response::Acquire(a)) if a.transition.is_none() => {
            frame(scratch, answer.id, 2, acquire_len(a), |out| write_acquire(out, a));
        }
        Some(Response::Report(r)) if r.transition.is_none() => {
            frame(scratch, answer.id, 3, report_len(r), |out| write_report(out, r));
        }
        _ => return false,
    }
    true
}

/// The answer's `id`, then its member of the oneof: field `tag`, `len` bytes, which
/// `write` writes. `scratch` is reserved to the exact length first: no byte grows it.
fn frame(scratch: &mut Vec<u8>, id: u64, tag: u32, len: usize, write: impl FnOnce(&mut Out)) {
    scratch.clear();
    scratch.reserve(uint64_len(id) + message_len(len));
    let mut out = Out(scratch);
    out.uint64(1, id);
    out.nested(tag, len);
    write(&mut out);
}

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

fn write_acquire(out: &mut Out, a: &AcquireResponse) {
    out.int32(1, a.decision);
    out.int32(2, a.status);
    if let Some(permit) = &a.permit {
        out.nested(3, permit_len(permit));
        write_permit(out, permit);
    }
    if let Some(retry_after) = &a.retry_after {
        out.nested(4, duration_len(retry_after));
        out.int64(1, retry_after.seconds);
        out.int32(2, retry_after.nanos);
    }
    out.int32(5, a.reason);
    out.uint64(6, a.revision);
    if a.would_reject {
        out.key(8, VARINT);
        out.put(1);
    }
    out.uint64(9, a.policy_revision);
}

fn report_len(r: &ReportResponse) -> usize {
    usize::from(r.accepted) * 2 + int32_len(r.status) + uint64_len(r.revision)
}

fn write_report(out: &mut Out, r: &ReportResponse) {
    if r.accepted {
        out.key(1, VARINT);
        out.put(1);
    }
    out.int32(2, r.status);
    out.uint64(3, r.revision);
}

fn permit_len(p: &Permit) -> usize {
    uint64_len(p.generation)
        + uint64_len(p.id)
        + p.expires_at.as_ref().map_or(0, |t| message_len(timestamp_len(t)))
}

fn write_permit(out: &mut Out, p: &Permit) {
    out.uint64(1, p.generation);
    out.uint64(2, p.id);
    if let Some(expires_at) = &p.expires_at {
        out.nested(3, timestamp_len(expires_at));
        out.int64(1, expires_at.seconds);
        out.int32(2, expires_at.nanos);
    }
}

fn timestamp_len(t: &Timestamp) -> usize {
    int64_len(t.seconds) + int32_len(t.nanos)
}

fn duration_len(d: &Duration) -> usize {
    int64_len(d.seconds) + int32_len(d.nanos)
}

/// A field's bytes when it holds a message of `len` bytes (every tag here is below 16,
/// so its key is one byte).
fn message_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A varint field's bytes (its one-byte key and the value), nothing when it is zero.
fn uint64_len(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + varint_len(v) }
}

/// int32 and enums: a negative value is sign-extended to ten bytes.
fn int32_len(v: i32) -> usize {
    uint64_len(i64::from(v) as u64)
}

fn int64_len(v: i64) -> usize {
    uint64_len(v as u64)
}

/// prost's `encoded_len_varint`.
fn varint_len(v: u64) -> usize {
    ((((v | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

/// Where the answer's bytes are written.
#[derive(Debug)]
struct Out<'a>(&'a mut Vec<u8>);

impl Out<'_> {
    fn put(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    fn key(&mut self, tag: u32, wire_type: u8) {
        self.put((tag << 3) as u8 | wire_type);
    }

    fn uint64(&mut self, tag: u32, v: u64) {
        if v != 0 {
            self.key(tag, VARINT);
            self.varint(v);
        }
    }

    fn int32(&mut self, tag: u32, v: i32) {
        self.uint64(tag, i64::from(v) as u64);
    }

    fn int64(&mut self, tag: u32, v: i64) {
        self.uint64(tag, v as u64);
    }

    /// A message field's key and length; its fields follow.
    fn nested(&mut self, tag: u32, len: usize) {
        self.key(tag, LEN);
        self.varint(len as u64);
    }
}

#[cfg(test)]
mod tests;
