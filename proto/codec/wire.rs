//! Reading plainly written messages from a slice, for the codec's hand-written paths
//! (`request`, `response`): fields by number and wire type, each at most once, and the
//! small messages both directions carry (a permit, a timestamp, a duration).

use prost_types::Timestamp;

use crate::v1::Permit;

/// Protobuf wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;

/// The message `bytes` hold, read field by field: `field` sets the one it is given and
/// answers `None` for a field it does not read (prost must read the message then). Each
/// field number may come once; a second time is prost's too (it merges).
pub(super) fn message<M: Default>(
    bytes: &[u8],
    mut field: impl FnMut(&mut M, u32, Value<'_>) -> Option<()>,
) -> Option<M> {
    let mut fields = Fields::new(bytes);
    let mut message = M::default();
    let mut seen = Seen::default();
    while let Some((tag, value)) = fields.next()? {
        if !seen.first(tag) {
            return None;
        }
        field(&mut message, tag, value)?;
    }
    Some(message)
}

pub(super) fn permit_of(bytes: &[u8]) -> Option<Permit> {
    message(bytes, |permit: &mut Permit, tag, value| {
        match (tag, value) {
            (1, Value::Varint(generation)) => permit.generation = generation,
            (2, Value::Varint(id)) => permit.id = id,
            (3, Value::Bytes(expires_at)) => {
                let (seconds, nanos) = seconds_and_nanos(expires_at)?;
                permit.expires_at = Some(Timestamp { seconds, nanos });
            }
            _ => return None,
        }
        Some(())
    })
}

/// A Timestamp's or a Duration's fields: int64 seconds, int32 nanos.
pub(super) fn seconds_and_nanos(bytes: &[u8]) -> Option<(i64, i32)> {
    message(bytes, |(seconds, nanos): &mut (i64, i32), tag, value| {
        match (tag, value) {
            (1, Value::Varint(s)) => *seconds = s as i64,
            (2, Value::Varint(n)) => *nanos = n as i32,
            _ => return None,
        }
        Some(())
    })
}

/// A string field: UTF-8 or prost's error.
pub(super) fn string(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// The field numbers met so far in one message (every number here is below 16).
#[derive(Debug, Default)]
struct Seen(u16);

impl Seen {
    /// Whether `tag` is met for the first time; it is met from now on either way.
    fn first(&mut self, tag: u32) -> bool {
        let bit = 1u16 << tag;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first
    }
}

/// A field's value, by its wire type.
#[derive(Debug)]
pub(super) enum Value<'a> {
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
    /// (a wire type other than varint or length-delimited, a field number of 16 or more,
    /// a varint or a length that does not decode).
    fn next(&mut self) -> Option<Option<(u32, Value<'a>)>> {
        if self.bytes.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if !(1..16).contains(&tag) {
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
