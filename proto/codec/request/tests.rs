//! The hand-read requests against prost, the reference: every request prost writes is
//! read back whole, and for any bytes at all, what is read by hand is what prost reads.

use proptest::prelude::*;
use prost::Message;

use super::decode;
use crate::codec::strategies::{agrees_with_prost, damage, damaged_agrees, request};
use crate::v1::session_request::Request;
use crate::v1::{AcquireRequest, Permit, ReportRequest, SessionRequest};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_request_prost_writes_is_read_whole(request in request()) {
        prop_assert_eq!(decode(&request.encode_to_vec()), Some(request));
    }

    #[test]
    fn arbitrary_bytes_read_by_hand_are_read_as_prost_reads_them(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        agrees_with_prost(decode(&bytes), &bytes)?;
    }

    #[test]
    fn a_damaged_request_is_read_as_prost_reads_it(request in request(), damage in damage()) {
        damaged_agrees(&request, &damage, decode)?;
    }
}

#[test]
fn what_prost_merges_or_skips_is_left_to_prost() {
    let acquire = |name: &str| SessionRequest {
        id: 1,
        request: Some(Request::Acquire(AcquireRequest { name: name.into() })),
    };
    let report = SessionRequest {
        id: 1,
        request: Some(Request::Report(ReportRequest {
            name: "p".into(),
            permit: Some(Permit {
                generation: 1,
                id: 2,
                expires_at: None,
            }),
            outcome: 1,
            duration: None,
        })),
    };
    let twice = |m: &SessionRequest| [m.encode_to_vec(), m.encode_to_vec()].concat();
    let cases: [(&str, Vec<u8>); 6] = [
        // The same message twice: protobuf merges the two.
        ("a request written twice", twice(&acquire("a"))),
        ("a report written twice", twice(&report)),
        // An Acquire, then a Report: the oneof's last member wins.
        (
            "both members of the oneof",
            [acquire("a").encode_to_vec(), report.encode_to_vec()].concat(),
        ),
        // Field 5, unknown to this contract: skipped by prost.
        (
            "an unknown field",
            [acquire("a").encode_to_vec(), vec![5 << 3, 7]].concat(),
        ),
        // Field 1 as a fixed64: not a varint.
        (
            "a wire type this does not read",
            vec![(1 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        // A name that is not UTF-8: prost's error.
        (
            "a name that is not UTF-8",
            vec![2 << 3 | 2, 3, 1 << 3 | 2, 1, 0xff],
        ),
    ];
    for (why, bytes) in cases {
        assert_eq!(decode(&bytes), None, "{why}");
    }
}

#[test]
fn the_codecs_entry_point_reads_both_ways_alike() {
    let request = SessionRequest {
        id: 42,
        request: Some(Request::Acquire(AcquireRequest {
            name: "payments".into(),
        })),
    };
    let plain = request.encode_to_vec();
    let merged = [plain.clone(), plain.clone()].concat();
    for bytes in [plain, merged] {
        let mut slice = bytes.as_slice();
        let read: SessionRequest = super::super::decode_from(&mut slice).expect("decodes");
        assert_eq!(
            read,
            SessionRequest::decode(bytes.as_slice()).expect("prost decodes")
        );
        assert!(slice.is_empty());
    }
}
