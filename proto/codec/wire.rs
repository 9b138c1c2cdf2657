//! Reading plainly written messages from a slice, for the codec's hand-written paths
//! (`request`, `response`): fields by key, each at most once, and the small messages both
//! directions carry (a permit, a timestamp, a duration).
//!
//! A reader takes each field's key as its one byte (every field number read by hand is
//! below 16) and each decoder matches that byte against the keys it knows, so a field
//! costs a compare and its value's read. Whatever is not read here (a key of more than
//! one byte, field number 0, a field met twice, a key no decoder knows, a varint or a
//! length that does not decode) makes the decoder answer `None`, and prost reads the
//! message, so every outcome, errors included, is prost's.

use prost_types::Timestamp;

use crate::v1::Permit;
use keys::{L3, V1, V2};

/// Keys by field number and wire type, for the decoders' `match`: `Vn` is field `n`
/// written as a varint, `Ln` field `n` length-delimited.
pub(super) mod keys {
    use super::super::{LEN, VARINT, key};

    pub(in crate::codec) const V1: u8 = key(1, VARINT);
    pub(in crate::codec) const V2: u8 = key(2, VARINT);
    pub(in crate::codec) const V3: u8 = key(3, VARINT);
    pub(in crate::codec) const V5: u8 = key(5, VARINT);
    pub(in crate::codec) const V6: u8 = key(6, VARINT);
    pub(in crate::codec) const V8: u8 = key(8, VARINT);
    pub(in crate::codec) const V9: u8 = key(9, VARINT);
    pub(in crate::codec) const L1: u8 = key(1, LEN);
    pub(in crate::codec) const L2: u8 = key(2, LEN);
    pub(in crate::codec) const L3: u8 = key(3, LEN);
    pub(in crate::codec) const L4: u8 = key(4, LEN);
}

/// One message's fields, in the order written.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    /// The field numbers met so far, a bit each (1 to 15 are read here). A `u32`, not
    /// the `u16` that would hold them: the compiler wrote a `u16` back to the stack and
    /// read it as 32 bits for the next key, a load the processor cannot forward from
    /// the narrower store. The stall held about half of a request decoder's samples in a
    /// profile; without it, criterion decodes a request a fifth to a quarter faster and
    /// an answer twice as fast (BENCHMARKS.md, twelfth pass).
    seen: u32,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, seen: 0 }
    }

    /// The next field's key: `Some(None)` at the message's end, `None` where prost must
    /// read the message (a key of more than one byte, field number 0, a field number met
    /// before: protobuf merges a repeated field, which is prost's to do).
    #[inline]
    pub(super) fn key(&mut self) -> Option<Option<u8>> {
        let Some((&key, rest)) = self.bytes.split_first() else {
            return Some(None);
        };
        if !(8..0x80).contains(&key) {
            return None;
        }
        let bit = 1u32 << (key >> 3);
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        self.bytes = rest;
        Some(Some(key))
    }

    /// A varint as prost reads one: at most ten bytes, the tenth at most 1. Keys, enums,
    /// lengths and small numbers are one byte, read here; longer ones out of line.
    #[inline(always)]
    pub(super) fn varint(&mut self) -> Option<u64> {
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Some(u64::from(byte));
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Option<u64> {
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

    /// A length-delimited value: its length, then that many bytes.
    #[inline]
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let (value, rest) = self.bytes.split_at_checked(len)?;
        self.bytes = rest;
        Some(value)
    }

    /// A string field's value, read into `field` (replacing what it held): UTF-8, or
    /// prost's error. Written where it stays, not returned: a `String` returned is stored a
    /// word at a time and read back at once with one wide load, which stalls (as a request
    /// returned would: see `request::decode_into`).
    #[inline]
    pub(super) fn string_into(&mut self, field: &mut String) -> Option<()> {
        let value = std::str::from_utf8(self.bytes()?).ok()?;
        super::names::fill(field, value);
        Some(())
    }

    /// A Timestamp's or a Duration's fields (int64 seconds, int32 nanos), from a
    /// length-delimited value.
    #[inline]
    pub(super) fn seconds_and_nanos(&mut self) -> Option<(i64, i32)> {
        let mut r = Reader::new(self.bytes()?);
        let (mut seconds, mut nanos) = (0, 0);
        while let Some(k) = r.key()? {
            match k {
                V1 => seconds = r.varint()? as i64,
                // int32: the varint's low 32 bits, as prost reads them.
                V2 => nanos = r.varint()? as i32,
                _ => return None,
            }
        }
        Some((seconds, nanos))
    }

    /// A Permit, from a length-delimited value, read into `permit` (a default one).
    #[inline]
    pub(super) fn permit_into(&mut self, permit: &mut Permit) -> Option<()> {
        let mut r = Reader::new(self.bytes()?);
        while let Some(k) = r.key()? {
            match k {
                V1 => permit.generation = r.varint()?,
                V2 => permit.id = r.varint()?,
                L3 => {
                    let (seconds, nanos) = r.seconds_and_nanos()?;
                    permit.expires_at = Some(Timestamp { seconds, nanos });
                }
                _ => return None,
            }
        }
        Some(())
    }
}
