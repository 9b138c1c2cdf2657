//! Writing a message by hand, as prost writes it, for the codec's hand-written paths
//! (`answer` on the daemon's side, `ask` on the client's): fields in tag order, a proto3
//! scalar only when it is not zero, a present message even when empty, enums and signed
//! integers as sign-extended varints, and the small messages both directions carry (a
//! permit, a timestamp, a duration).
//!
//! prost writes a nested message by computing its length, then writing it, and each
//! nested message computes its own nested lengths again; every varint goes through a
//! generic writer that grows the buffer byte by byte. Here each length is computed once,
//! bottom up, and the bytes are written into an array on the stack (a message longer
//! than [`ON_STACK`] into the encoder's scratch vector, sized to the exact length first),
//! indexed by a local count, so no byte goes through a `Vec`'s length and capacity in
//! memory. The array is then copied into the transport's buffer, once.

use prost::bytes::BufMut;
use prost_types::{Duration, Timestamp};

use crate::v1::Permit;

use super::{LEN, VARINT, key};

#[inline]
pub(super) fn permit_len(p: &Permit) -> usize {
    uint64_len(p.generation)
        + uint64_len(p.id)
        + p.expires_at.as_ref().map_or(0, |t| message_len(timestamp_len(t)))
}

#[inline]
pub(super) fn timestamp_len(t: &Timestamp) -> usize {
    int64_len(t.seconds) + int32_len(t.nanos)
}

#[inline]
pub(super) fn duration_len(d: &Duration) -> usize {
    int64_len(d.seconds) + int32_len(d.nanos)
}

/// A field's bytes when it holds a message of `len` bytes (every tag written by hand is
/// below 16, so its key is one byte).
#[inline]
pub(super) fn message_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A varint field's bytes (its one-byte key and the value), nothing when it is zero.
#[inline]
pub(super) fn uint64_len(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + varint_len(v) }
}

/// int32 and enums: a negative value is sign-extended to ten bytes.
#[inline]
pub(super) fn int32_len(v: i32) -> usize {
    uint64_len(i64::from(v) as u64)
}

#[inline]
pub(super) fn int64_len(v: i64) -> usize {
    uint64_len(v as u64)
}

/// prost's `encoded_len_varint`.
#[inline]
pub(super) fn varint_len(v: u64) -> usize {
    ((((v | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

/// A string field's bytes, nothing when it is empty.
#[inline]
pub(super) fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { message_len(s.len()) }
}

/// The longest message written on the stack.
const ON_STACK: usize = 64;

/// Where a message's bytes are written: a slice of the exact length, indexed by a local
/// count, so no byte written goes through a `Vec`'s length and capacity in memory.
#[derive(Debug)]
pub(super) struct Out<'a> {
    bytes: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    /// A message of `id` (field 1) and one member of a oneof (field `tag`, a message of
    /// `len` bytes, which `write` writes), appended to `buf`. A message of at most
    /// [`ON_STACK`] bytes (every common one) is written on the stack and copied into `buf`
    /// once; a longer one into `scratch` (cleared, then zeroed to its length), then `buf`.
    #[inline]
    pub(super) fn frame(
        scratch: &mut Vec<u8>,
        buf: &mut impl BufMut,
        id: u64,
        tag: u8,
        len: usize,
        write: impl Fn(&mut Out<'_>),
    ) {
        let total = uint64_len(id) + message_len(len);
        let fill = |bytes: &mut [u8]| {
            let mut out = Out { bytes, len: 0 };
            out.uint64(1, id);
            out.nested(tag, len);
            write(&mut out);
            debug_assert_eq!(out.len, total, "a length computed is not the length written");
        };
        if total <= ON_STACK {
            let mut bytes = [0; ON_STACK];
            fill(&mut bytes[..total]);
            buf.put_slice(&bytes[..total]);
        } else {
            scratch.clear();
            scratch.resize(total, 0);
            fill(scratch);
            buf.put_slice(scratch);
        }
    }

    #[inline]
    pub(super) fn put(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    #[inline]
    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    #[inline]
    pub(super) fn key(&mut self, tag: u8, wire_type: u8) {
        self.put(key(tag, wire_type));
    }

    #[inline]
    pub(super) fn uint64(&mut self, tag: u8, v: u64) {
        if v != 0 {
            self.key(tag, VARINT);
            self.varint(v);
        }
    }

    #[inline]
    pub(super) fn int32(&mut self, tag: u8, v: i32) {
        self.uint64(tag, i64::from(v) as u64);
    }

    #[inline]
    pub(super) fn int64(&mut self, tag: u8, v: i64) {
        self.uint64(tag, v as u64);
    }

    /// A message field's key and length; its fields follow.
    #[inline]
    pub(super) fn nested(&mut self, tag: u8, len: usize) {
        self.key(tag, LEN);
        self.varint(len as u64);
    }

    /// A string field: its key, its length, its bytes (nothing when empty).
    #[inline]
    pub(super) fn string(&mut self, tag: u8, s: &str) {
        if !s.is_empty() {
            self.nested(tag, s.len());
            let end = self.len + s.len();
            self.bytes[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        }
    }

    /// A Timestamp's or a Duration's fields.
    #[inline]
    pub(super) fn seconds_and_nanos(&mut self, seconds: i64, nanos: i32) {
        self.int64(1, seconds);
        self.int32(2, nanos);
    }

    /// A Permit's fields.
    #[inline]
    pub(super) fn permit(&mut self, p: &Permit) {
        self.uint64(1, p.generation);
        self.uint64(2, p.id);
        if let Some(expires_at) = &p.expires_at {
            self.nested(3, timestamp_len(expires_at));
            self.seconds_and_nanos(expires_at.seconds, expires_at.nanos);
        }
    }
}
