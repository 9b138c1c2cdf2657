//! The hand-written requests against prost, the reference: byte for byte over arbitrary
//! requests, and nothing written for the ones it leaves.

use proptest::prelude::*;
use prost::Message;

use super::encode;
use crate::codec::strategies::{request, written_by_hand};
use crate::v1::session_request::Request;
use crate::v1::{ReportRequest, SessionRequest};

/// What [`encode`] writes for `request`, or `None` when it leaves it to prost.
fn by_hand(request: &SessionRequest) -> Option<Vec<u8>> {
    written_by_hand(encode, request)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_request_with_a_member_is_prosts_bytes(request in request()) {
        let expected = request.request.is_some().then(|| request.encode_to_vec());
        prop_assert_eq!(by_hand(&request), expected);
    }
}

#[test]
fn a_long_name_and_a_request_without_a_member() {
    let long = SessionRequest {
        id: u64::MAX,
        request: Some(Request::Report(ReportRequest {
            name: "n".repeat(300),
            outcome: 1,
            ..ReportRequest::default()
        })),
    };
    assert_eq!(by_hand(&long), Some(long.encode_to_vec()));
    let none = SessionRequest { id: 1, request: None };
    assert_eq!(by_hand(&none), None);
    // Through the codec's entry point both are prost's bytes.
    for request in [long, none] {
        let mut wire = Vec::new();
        super::super::encode_into(&mut Vec::new(), &request, &mut wire);
        assert_eq!(wire, request.encode_to_vec());
    }
}
