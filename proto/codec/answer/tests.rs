//! The hand-written answers against prost, the reference: byte for byte over arbitrary
//! answers of the shapes it writes, and nothing written for the shapes it leaves.

use proptest::prelude::*;
use prost::Message;
use prost_types::{Duration, Timestamp};

use super::encode;
use crate::codec::strategies::{answer, written_by_hand};
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, Permit, ReportResponse, SessionError, SessionResponse, Transition};

/// What [`encode`] writes for `answer`, or `None` when it leaves it to prost.
fn by_hand(answer: &SessionResponse) -> Option<Vec<u8>> {
    written_by_hand(encode, answer)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_common_answers_are_prosts_bytes(answer in answer()) {
        prop_assert_eq!(by_hand(&answer), Some(answer.encode_to_vec()));
    }
}

#[test]
fn the_longest_answer_is_prosts() {
    let max_time = Timestamp {
        seconds: i64::MIN,
        nanos: i32::MIN,
    };
    let answer = SessionResponse {
        id: u64::MAX,
        response: Some(Response::Acquire(AcquireResponse {
            decision: -1,
            status: -1,
            permit: Some(Permit {
                generation: u64::MAX,
                id: u64::MAX,
                expires_at: Some(max_time),
            }),
            retry_after: Some(Duration {
                seconds: i64::MIN,
                nanos: i32::MIN,
            }),
            reason: -1,
            revision: u64::MAX,
            transition: None,
            would_reject: true,
            policy_revision: u64::MAX,
        })),
    };
    assert_eq!(by_hand(&answer), Some(answer.encode_to_vec()));
}

#[test]
fn empty_parts_are_written_as_prost_writes_them() {
    let cases = [
        // Only the oneof's empty message: its key and a zero length.
        SessionResponse {
            id: 0,
            response: Some(Response::Report(ReportResponse::default())),
        },
        SessionResponse {
            id: 0,
            response: Some(Response::Acquire(AcquireResponse::default())),
        },
        // A present but empty permit, and an empty expiry inside one.
        SessionResponse {
            id: 9,
            response: Some(Response::Acquire(AcquireResponse {
                permit: Some(Permit::default()),
                retry_after: Some(Duration::default()),
                ..AcquireResponse::default()
            })),
        },
        SessionResponse {
            id: 9,
            response: Some(Response::Acquire(AcquireResponse {
                permit: Some(Permit {
                    expires_at: Some(Timestamp::default()),
                    ..Permit::default()
                }),
                ..AcquireResponse::default()
            })),
        },
    ];
    for answer in cases {
        assert_eq!(by_hand(&answer), Some(answer.encode_to_vec()), "{answer:?}");
    }
}

#[test]
fn other_answers_are_left_to_prost() {
    let transition = Some(Box::new(Transition::default()));
    let cases = [
        SessionResponse {
            id: 1,
            response: None,
        },
        SessionResponse {
            id: 1,
            response: Some(Response::Error(SessionError {
                code: 3,
                message: "name: must not be empty".into(),
                field: "name".into(),
            })),
        },
        SessionResponse {
            id: 1,
            response: Some(Response::Acquire(AcquireResponse {
                transition: transition.clone(),
                ..AcquireResponse::default()
            })),
        },
        SessionResponse {
            id: 1,
            response: Some(Response::Report(ReportResponse {
                transition,
                ..ReportResponse::default()
            })),
        },
    ];
    for answer in cases {
        assert_eq!(by_hand(&answer), None, "{answer:?}");
        // Through the codec's entry point they are still prost's bytes.
        let mut wire = Vec::new();
        super::super::encode_into(&mut Vec::new(), &answer, &mut wire);
        assert_eq!(wire, answer.encode_to_vec(), "{answer:?}");
    }
}
