//! The hand-read answers against prost, the reference: every answer of the shapes the
//! daemon writes by hand is read back whole, and for any bytes at all, what is read by
//! hand is what prost reads.

use proptest::prelude::*;
use prost::Message;

use super::decode;
use crate::codec::strategies::{agrees_with_prost, answer, damage, damaged_agrees};
use crate::v1::session_response::Response;
use crate::v1::{AcquireResponse, ReportResponse, SessionError, SessionResponse, Transition};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_common_answer_is_read_whole(answer in answer()) {
        prop_assert_eq!(decode(&answer.encode_to_vec()), Some(answer));
    }

    #[test]
    fn arbitrary_bytes_read_by_hand_are_read_as_prost_reads_them(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        agrees_with_prost(decode(&bytes), &bytes)?;
    }

    #[test]
    fn a_damaged_answer_is_read_as_prost_reads_it(answer in answer(), damage in damage()) {
        damaged_agrees(&answer, &damage, decode)?;
    }
}

#[test]
fn transitions_errors_and_what_prost_merges_are_left_to_prost() {
    let admitted = SessionResponse {
        id: 1,
        response: Some(Response::Acquire(AcquireResponse {
            decision: 1,
            ..AcquireResponse::default()
        })),
    };
    let transition = Some(Box::new(Transition {
        from: 1,
        to: 2,
        ..Transition::default()
    }));
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "an Acquire answer with a transition",
            SessionResponse {
                id: 1,
                response: Some(Response::Acquire(AcquireResponse {
                    transition: transition.clone(),
                    ..AcquireResponse::default()
                })),
            }
            .encode_to_vec(),
        ),
        (
            "a Report answer with a transition",
            SessionResponse {
                id: 1,
                response: Some(Response::Report(ReportResponse {
                    transition,
                    ..ReportResponse::default()
                })),
            }
            .encode_to_vec(),
        ),
        (
            "an error",
            SessionResponse {
                id: 1,
                response: Some(Response::Error(SessionError {
                    code: 5,
                    message: "no protector named \"x\"".into(),
                    field: String::new(),
                })),
            }
            .encode_to_vec(),
        ),
        (
            "an answer written twice",
            [admitted.encode_to_vec(), admitted.encode_to_vec()].concat(),
        ),
        (
            "an unknown field",
            [admitted.encode_to_vec(), vec![7 << 3, 1]].concat(),
        ),
    ];
    for (why, bytes) in cases {
        assert_eq!(decode(&bytes), None, "{why}");
        let mut slice = bytes.as_slice();
        let read: SessionResponse = super::super::decode_from(&mut slice).expect("decodes");
        assert_eq!(
            read,
            SessionResponse::decode(bytes.as_slice()).expect("prost decodes"),
            "{why}"
        );
    }
}
