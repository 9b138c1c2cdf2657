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

use prost_types::{Duration, Timestamp};

use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, Permit, ReportRequest, SessionRequest};

/// Protobuf wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;

/// The request `bytes` hold, when they are written plainly; `None` for prost to decode.
pub(super) fn decode(bytes: &[u8]) -> Option<SessionRequest> {
    let mut fields = Fields::new(bytes);
    let mut request = SessionRequest::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Varint(id)) if seen.first(1) => request.id = id,
            (2, Value::Bytes(acquire)) if seen.first(2) && seen.first(3) => {
                request.request = Some(Request::Acquire(acquire_request(acquire)?));
            }
            (3, Value::Bytes(report)) if seen.first(2) && seen.first(3) => {
                request.request = Some(Request::Report(report_request(report)?));
            }
            _ => return None,
        }
    }
    Some(request)
}

fn acquire_request(bytes: &[u8]) -> Option<AcquireRequest> {
    let mut fields = Fields::new(bytes);
    let mut request = AcquireRequest::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Bytes(name)) if seen.first(1) => request.name = string(name)?,
            _ => return None,
        }
    }
    Some(request)
}

fn report_request(bytes: &[u8]) -> Option<ReportRequest> {
    let mut fields = Fields::new(bytes);
    let mut request = ReportRequest::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Bytes(name)) if seen.first(1) => request.name = string(name)?,
            (2, Value::Bytes(permit)) if seen.first(2) => request.permit = Some(permit_of(permit)?),
            // int32 and enums: the varint's low 32 bits, as prost reads them.
            (3, Value::Varint(outcome)) if seen.first(3) => request.outcome = outcome as i32,
            (4, Value::Bytes(duration)) if seen.first(4) => {
                let (seconds, nanos) = seconds_and_nanos(duration)?;
                request.duration = Some(Duration { seconds, nanos });
            }
            _ => return None,
        }
    }
    Some(request)
}

fn permit_of(bytes: &[u8]) -> Option<Permit> {
    let mut fields = Fields::new(bytes);
    let mut permit = Permit::default();
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Varint(generation)) if seen.first(1) => permit.generation = generation,
            (2, Value::Varint(id)) if seen.first(2) => permit.id = id,
            (3, Value::Bytes(expires_at)) if seen.first(3) => {
                let (seconds, nanos) = seconds_and_nanos(expires_at)?;
                permit.expires_at = Some(Timestamp { seconds, nanos });
            }
            _ => return None,
        }
    }
    Some(permit)
}

/// A Timestamp's or a Duration's fields: int64 seconds, int32 nanos.
fn seconds_and_nanos(bytes: &[u8]) -> Option<(i64, i32)> {
    let mut fields = Fields::new(bytes);
    let (mut seconds, mut nanos) = (0, 0);
    let mut seen = Seen::default();
    while let Some(field) = fields.next()? {
        match field {
            (1, Value::Varint(s)) if seen.first(1) => seconds = s as i64,
            (2, Value::Varint(n)) if seen.first(2) => nanos = n as i32,
            _ => return None,
        }
    }
    Some((seconds, nanos))
}

/// A string field: UTF-8 or prost's error.
fn string(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// The field numbers met so far in one message (every number here is below 8).
#[derive(Debug, Default)]
struct Seen(u8);

impl Seen {
    /// Whether `tag` is met for the first time; it is met from now on either way.
    fn first(&mut self, tag: u32) -> bool {
        let bit = 1u8 << tag;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first
    }
}

/// A field's value, by its wire type.
#[derive(Debug)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// One message's fields, in the order written.
#[derive(Debug)]
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { bytes }
    }

    /// The next field: `Some(None)` at the message's end, `None` where prost must decide
    /// (a wire type other than varint or length-delimited, a field number of 8 or more,
    /// a varint or a length that does not decode).
    fn next(&mut self) -> Option<Option<(u32, Value<'a>)>> {
        if self.bytes.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if !(1..8).contains(&tag) {
            return None;
        }
        let value = match key & 7 {
            VARINT => Value::Varint(self.varint()?),
            LEN => {
                let len = usize::try_from(self.varint()?).ok()?;
                let (value, rest) = self.bytes.split_at_checked(len)?;
                self.bytes = rest;
                Value::Bytes(value)
            }
            _ => return None,
        };
        Some(Some((tag as u32, value)))
    }

    /// A varint as prost reads one: at most ten bytes, the tenth at most 1.
    #[inline]
    fn varint(&mut self) -> Option<u64> {
        // Keys, enums and small numbers: one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Some(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.bytes = &self.bytes[i + 1..];
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
