//! proptest strategies for the codec's tests: integers at the edges of their ranges (zero,
//! which is not written, one-byte values, the extremes) and the messages built from them.

use proptest::prelude::*;
use prost_types::{Duration, Timestamp};

use crate::v1::Permit;

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
