//! proptest strategies for the codec's tests: integers at the edges of their ranges (zero,
//! which is not written, one-byte values, the extremes) and the messages built from them.

use proptest::prelude::*;
use prost_types::{Duration, Timestamp};

use crate::v1::session_request::Request;
use crate::v1::session_response::Response;
use crate::v1::{
    AcquireRequest, AcquireResponse, Permit, ReportRequest, ReportResponse, SessionRequest, SessionResponse,
};

pub(super) fn u64s() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(127),
        Just(128),
        Just(u64::MAX),
        any::<u64>()
    ]
}

pub(super) fn i64s() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        any::<i64>()
    ]
}

/// Enums too: an unknown or negative value is still encoded as prost would.
pub(super) fn i32s() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(3),
        Just(-1),
        Just(i32::MIN),
        Just(i32::MAX),
        any::<i32>()
    ]
}

pub(super) fn timestamp() -> impl Strategy<Value = Timestamp> {
    (i64s(), i32s()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

pub(super) fn duration() -> impl Strategy<Value = Duration> {
    (i64s(), i32s()).prop_map(|(seconds, nanos)| Duration { seconds, nanos })
}

pub(super) fn permit() -> impl Strategy<Value = Permit> {
    (u64s(), u64s(), proptest::option::of(timestamp())).prop_map(|(generation, id, expires_at)| Permit {
        generation,
        id,
        expires_at,
    })
}

pub(super) fn acquire() -> BoxedStrategy<AcquireResponse> {
    (
        (i32s(), i32s(), proptest::option::of(permit())),
        (proptest::option::of(duration()), i32s(), u64s()),
        (any::<bool>(), u64s()),
    )
        .prop_map(
            |(
                (decision, status, permit),
                (retry_after, reason, revision),
                (would_reject, policy_revision),
            )| {
                AcquireResponse {
                    decision,
                    status,
                    permit,
                    retry_after,
                    reason,
                    revision,
                    transition: None,
                    would_reject,
                    policy_revision,
                }
            },
        )
        .boxed()
}

pub(super) fn report() -> impl Strategy<Value = ReportResponse> {
    (any::<bool>(), i32s(), u64s()).prop_map(|(accepted, status, revision)| ReportResponse {
        accepted,
        status,
        revision,
        transition: None,
    })
}

/// An Acquire or a Report answer without a transition: the shapes `answer` writes.
pub(super) fn answer() -> BoxedStrategy<SessionResponse> {
    (
        u64s(),
        prop_oneof![
            acquire().prop_map(Response::Acquire),
            report().prop_map(Response::Report)
        ],
    )
        .prop_map(|(id, response)| SessionResponse {
            id,
            response: Some(response),
        })
        // Boxed: the nested strategy's type is deep enough to overflow a test thread's
        // stack in an unoptimised build.
        .boxed()
}

/// Whatever `bytes` are: a message read by hand (`by_hand`) is the one prost reads
/// (prost may read more).
pub(super) fn agrees_with_prost<M>(by_hand: Option<M>, bytes: &[u8]) -> Result<(), TestCaseError>
where
    M: prost::Message + Default + PartialEq + std::fmt::Debug,
{
    if let Some(by_hand) = by_hand {
        prop_assert_eq!(Ok(by_hand), M::decode(bytes).map_err(|e| e.to_string()));
    }
    Ok(())
}

/// A damage to a well-written message: one byte replaced, then the bytes cut short.
#[derive(Debug, Clone)]
pub(super) struct Damage {
    at: prop::sample::Index,
    byte: u8,
    cut: prop::sample::Index,
}

pub(super) fn damage() -> impl Strategy<Value = Damage> {
    (
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(at, byte, cut)| Damage { at, byte, cut })
}

/// `message`'s bytes, damaged by `damage` one step after the other: at each step, what
/// `decode` reads by hand is what prost reads.
pub(super) fn damaged_agrees<M>(
    message: &M,
    damage: &Damage,
    decode: impl Fn(&[u8]) -> Option<M>,
) -> Result<(), TestCaseError>
where
    M: prost::Message + Default + PartialEq + std::fmt::Debug,
{
    let mut bytes = message.encode_to_vec();
    if bytes.is_empty() {
        return Ok(());
    }
    let i = damage.at.index(bytes.len());
    bytes[i] = damage.byte;
    agrees_with_prost(decode(&bytes), &bytes)?;
    bytes.truncate(damage.cut.index(bytes.len()));
    agrees_with_prost(decode(&bytes), &bytes)
}

/// What a hand-written `encode` appends for `message`, or `None` when it leaves the
/// message to prost (and then it must have touched neither the buffer nor the scratch).
pub(super) fn written_by_hand<M: std::fmt::Debug>(
    encode: impl Fn(&M, &mut Vec<u8>, &mut Vec<u8>) -> bool,
    message: &M,
) -> Option<Vec<u8>> {
    // Stale bytes from an earlier message, as an encoder's scratch may hold, and bytes
    // of the messages before this one in the transport's buffer.
    let mut scratch = vec![0xee; 3];
    let mut buf = vec![0xdd; 2];
    if encode(message, &mut scratch, &mut buf) {
        assert_eq!(buf[..2], [0xdd; 2], "overwrote what the buffer held: {message:?}");
        Some(buf.split_off(2))
    } else {
        assert_eq!(
            (scratch, buf),
            (vec![0xee; 3], vec![0xdd; 2]),
            "touched the scratch or the buffer of a message it left to prost: {message:?}"
        );
        None
    }
}

/// Names as clients send them, empty and arbitrary ones too.
pub(super) fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9._-]{1,40}", any::<String>()]
}

/// Session requests of every shape a client sends, and none.
pub(super) fn request() -> impl Strategy<Value = SessionRequest> {
    let acquire = name().prop_map(|name| Request::Acquire(AcquireRequest { name }));
    let report = (
        name(),
        proptest::option::of(permit()),
        i32s(),
        proptest::option::of(duration()),
    )
        .prop_map(|(name, permit, outcome, duration)| {
            Request::Report(ReportRequest {
                name,
                permit,
                outcome,
                duration,
            })
        });
    (u64s(), proptest::option::of(prop_oneof![acquire, report]))
        .prop_map(|(id, request)| SessionRequest { id, request })
}
