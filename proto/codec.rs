//! The codec of every v1 RPC: protobuf, as `tonic_prost::ProstCodec`, with cheaper
//! buffer handling for small messages (a Session carries hundreds of thousands a second).
//!
//! - Decoding reads the message from one contiguous slice when the transport's buffer
//!   holds it whole (it does for every message of one DATA frame), then advances the
//!   buffer once. Decoding from tonic's `DecodeBuf` directly advances it once per varint
//!   byte near a message's end (prost's fast varint path needs ten bytes ahead), and each
//!   of those advances goes through `BytesMut`'s bookkeeping: a third of the daemon's
//!   decoding cost for an Acquire.
//! - Encoding writes the message into a scratch vector the encoder keeps for its stream,
//!   then copies it into tonic's buffer in one piece, instead of growing a `BytesMut`
//!   byte by byte (a Session message written by hand goes from an array on the stack
//!   into tonic's buffer).
//! - A Session's common messages are read and written by hand, as prost would read and
//!   write them: requests written by clients (`ask`) and read by the daemon (`request`),
//!   answers written by the daemon (`answer`) and read by its clients (`response`).
//!   Anything else is prost's. A name read by hand goes into a spare buffer of its
//!   thread when the daemon has handed one back (`names`).
//!
//! Errors are those of `ProstCodec`: a message that does not decode is INTERNAL, as gRPC's
//! status code guide asks.

mod answer;
mod ask;
pub mod names;
mod request;
mod response;
#[cfg(test)]
mod strategies;
mod wire;
mod write;

use std::any::Any;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Protobuf wire types, for the hand-written paths (`wire` reads, `write` writes).
const VARINT: u8 = 0;
const LEN: u8 = 2;

/// The one-byte key of field `number` (below 16: every field the hand-written paths read
/// or write) with `wire_type`.
const fn key(number: u8, wire_type: u8) -> u8 {
    number << 3 | wire_type
}

/// Scratch space an encoder keeps between messages; a larger message's buffer is not
/// kept (so a stream's memory stays bounded by its usual message, not its largest).
const KEEP_SCRATCH: usize = 4096;

/// Encodes `T` and decodes `U` (see the module note).
#[derive(Debug, Clone)]
pub struct FastCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for FastCodec<T, U> {
    fn default() -> Self {
        FastCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for FastCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = FastEncoder<T>;
    type Decoder = FastDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        FastEncoder {
            scratch: Vec::new(),
            _pd: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        FastDecoder { _pd: PhantomData }
    }
}

/// Encodes through a reused scratch vector (what prost writes, and a long message written
/// by hand; a common Session message goes from the stack straight into tonic's buffer).
#[derive(Debug)]
pub struct FastEncoder<T> {
    scratch: Vec<u8>,
    _pd: PhantomData<T>,
}

impl<T: Message + 'static> Encoder for FastEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_into(&mut self.scratch, &item, buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// `item` into `buf`, through `scratch` when it is prost's to write or long (left empty,
/// its capacity kept when small). A Session answer of a common shape and a Session
/// request are written by hand (see `answer` and `ask`); the type test is decided when
/// this is compiled for `T`.
pub fn encode_into<T: Message + 'static>(scratch: &mut Vec<u8>, item: &T, buf: &mut impl BufMut) {
    let any = item as &dyn Any;
    let by_hand = if let Some(answer) = any.downcast_ref::<crate::v1::SessionResponse>() {
        answer::encode(answer, scratch, buf)
    } else if let Some(request) = any.downcast_ref::<crate::v1::SessionRequest>() {
        ask::encode(request, scratch, buf)
    } else {
        false
    };
    if !by_hand {
        scratch.clear();
        // A `Vec` grows as needed: `encode_raw` cannot run out of space.
        item.encode_raw(scratch);
        buf.put_slice(scratch);
    }
    if scratch.capacity() > KEEP_SCRATCH {
        *scratch = Vec::new();
    }
    scratch.clear();
}

/// Decodes from one contiguous slice when it can.
#[derive(Debug)]
pub struct FastDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default + 'static> Decoder for FastDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Read where tonic takes the message from, not built here and moved there (see
        // `request::decode_into`).
        let mut decoded = Ok(Some(U::default()));
        if let Ok(Some(message)) = &mut decoded
            && let Err(e) = decode_into(buf, message)
        {
            decoded = Err(Status::internal(e.to_string()));
        }
        decoded
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The message that is all of `buf`'s remaining bytes (see [`decode_into`]).
pub fn decode_from<U: Message + Default + 'static>(buf: &mut impl Buf) -> Result<U, prost::DecodeError> {
    let mut message = U::default();
    decode_into(buf, &mut message)?;
    Ok(message)
}

/// Reads the message that is all of `buf`'s remaining bytes into `message` (a default
/// one), as `U::decode` would return it: from one slice when the bytes are contiguous
/// (and from `buf` itself when not); `buf` is left empty either way. A Session request or
/// answer written plainly is read by hand (see `request` and `response`), in place; the
/// type test is decided when this is compiled for `U`.
pub fn decode_into<U: Message + Default + 'static>(
    buf: &mut impl Buf,
    message: &mut U,
) -> Result<(), prost::DecodeError> {
    let len = buf.remaining();
    let chunk = buf.chunk();
    if chunk.len() < len {
        return message.merge(buf);
    }
    let bytes = &chunk[..len];
    let any = message as &mut dyn Any;
    let by_hand = if let Some(request) = any.downcast_mut::<crate::v1::SessionRequest>() {
        Some(request::decode_into(bytes, request).is_some())
    } else {
        any.downcast_mut::<crate::v1::SessionResponse>()
            .map(|answer| response::decode_into(bytes, answer).is_some())
    };
    let decoded = match by_hand {
        Some(true) => Ok(()),
        // What the hand-written path read before it stopped goes, and prost reads the
        // message anew (merging the same bytes into what was read would come to the
        // same message, but only by the rules of merging; anew, it plainly is prost's).
        Some(false) => {
            *message = U::default();
            message.merge(bytes)
        }
        None => message.merge(bytes),
    };
    buf.advance(len);
    decoded
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::any;
    use prost::bytes::{Buf, BytesMut};

    use super::*;
    use crate::v1;

    fn request(name: &str) -> v1::SessionRequest {
        v1::SessionRequest {
            id: 7,
            request: Some(v1::session_request::Request::Acquire(v1::AcquireRequest {
                name: name.into(),
            })),
        }
    }

    #[test]
    fn a_message_round_trips_through_the_scratch_and_the_slice() {
        let mut scratch = Vec::new();
        let mut wire = BytesMut::new();
        encode_into(&mut scratch, &request("payments"), &mut wire);
        assert_eq!(wire.as_ref(), request("payments").encode_to_vec().as_slice());
        let mut whole = wire.clone().freeze();
        assert_eq!(
            decode_from::<v1::SessionRequest>(&mut whole).unwrap(),
            request("payments")
        );
        assert_eq!(whole.remaining(), 0);
    }

    #[test]
    fn a_message_split_across_chunks_decodes_from_the_buffer() {
        let bytes = request("a-longer-name-for-two-chunks").encode_to_vec();
        let (a, b) = bytes.split_at(5);
        let mut chained = Buf::chain(a, b);
        let decoded: v1::SessionRequest = decode_from(&mut chained).unwrap();
        assert_eq!(decoded, request("a-longer-name-for-two-chunks"));
        assert_eq!(chained.remaining(), 0);
    }

    /// `bytes` read by the codec and by prost: the same message, or the same refusal.
    fn reads_as_prost<M>(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError>
    where
        M: Message + Default + PartialEq + std::fmt::Debug + 'static,
    {
        let by_codec = decode_from::<M>(&mut &bytes[..]).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(by_codec, M::decode(bytes).map_err(|e| e.to_string()));
        Ok(())
    }

    /// A field this contract does not know (field 5, a varint): prost skips it.
    const UNKNOWN_FIELD: [u8; 2] = [key(5, VARINT), 1];

    proptest::proptest! {
        // The hand-written readers fill the message in place and stop at what they
        // leave to prost (here a field this contract does not know, and a message
        // written twice, which protobuf merges); the message is then prost's to read,
        // and must be what prost reads.
        #[test]
        fn a_message_the_hand_reader_stops_in_is_read_as_prost_reads_it(
            request in strategies::request(),
            answer in strategies::answer(),
        ) {
            for bytes in [
                [request.encode_to_vec(), UNKNOWN_FIELD.to_vec()].concat(),
                [request.encode_to_vec(), request.encode_to_vec()].concat(),
            ] {
                reads_as_prost::<v1::SessionRequest>(&bytes)?;
            }
            for bytes in [
                [answer.encode_to_vec(), UNKNOWN_FIELD.to_vec()].concat(),
                [answer.encode_to_vec(), answer.encode_to_vec()].concat(),
            ] {
                reads_as_prost::<v1::SessionResponse>(&bytes)?;
            }
        }

        #[test]
        fn any_bytes_are_read_as_prost_reads_them(bytes in vec(any::<u8>(), 0..64)) {
            reads_as_prost::<v1::SessionRequest>(&bytes)?;
            reads_as_prost::<v1::SessionResponse>(&bytes)?;
        }
    }

    #[test]
    fn garbage_is_a_decode_error_and_a_large_scratch_is_not_kept() {
        let mut garbage: &[u8] = &[0xff, 0xff, 0xff];
        assert!(decode_from::<v1::SessionRequest>(&mut garbage).is_err());
        let mut scratch = Vec::new();
        let mut wire = BytesMut::new();
        encode_into(&mut scratch, &request(&"n".repeat(2 * KEEP_SCRATCH)), &mut wire);
        assert!(scratch.capacity() <= KEEP_SCRATCH);
    }
}
