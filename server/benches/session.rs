//! The daemon's own work for one decision on a Session stream, without the network: each
//! message decoded from its bytes with the daemon's codec, answered as a session answers
//! it (name check, map lookup, entry guard, status machine, revision) and its answer
//! encoded, as the transport would have it.
//!
//! - `session/acquire_report`: an Acquire then the Report of its permit (SUCCESS), on one
//!   protector in CLOSED: the whole decision, two messages each way (the Report's bytes are
//!   made in the loop, from the permit just answered: one small encoding beyond the daemon's
//!   work).
//! - `session/acquire`: the Acquire message alone.
//! - `session/stream_64`: a Session stream as the transport serves it, without the
//!   network: 64 messages (32 Acquires and 32 Reports, in turns) in one body, read
//!   through tonic's `Streaming` with the daemon's decoder, answered by the stream that
//!   `ProtectorService::session` opens (its loop, as the transport polls it), and each
//!   answer encoded. What `session/acquire_report` leaves out: the framing, the stream's
//!   poll and the answer's way out of it.
//! - `codec/decode_acquire_daemon` and `codec/decode_acquire_prost`: decoding one
//!   Acquire message through a `BytesMut`, with the daemon's codec and with prost's
//!   `decode` on the buffer as `tonic_prost` does it (the codec's saving shows as the gap).
//! - `codec/decode_acquire_daemon_recycled`: the same, the name handed back to the
//!   codec's spare buffers afterwards, as the daemon does once a request is decided.
//! - `codec/encode_answer_daemon` and `codec/encode_answer_prost`: encoding one Acquire
//!   answer (admitted, with its permit), by the codec's hand-written path and by prost
//!   through the scratch vector.
//! - `codec/encode_request_daemon` and `codec/encode_request_prost`: encoding one Report
//!   request (with its permit), as a client sends it, by the codec's hand-written path and
//!   by prost through the scratch vector.
//! - `name/check_{7,29}_bytes` and `name/check_non_ascii`: checking a name against the
//!   contract's rule (`ProtectorName::with_max_len`, the daemon's check of every request's
//!   name): printable ASCII a word at a time, and a name that needs the character rule.
//!
//! Services are built as `circuitd --in-memory` wires them (default limits, a standalone
//! cluster); each routine runs on a current-thread runtime, one message after another.

use std::hint::black_box;
use std::sync::Arc;

use circuitd::Config;
use circuitd::cluster::Cluster;
use circuitd::registry::Registry;
use circuitd::service::{self, ProtectorApi};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};
use http_body_util::Full;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use resilient_circuit_api::ProtectorName;
use resilient_circuit_api::codec::{FastCodec, decode_from, encode_into, names};
use resilient_circuit_api::v1::protector_service_server::ProtectorService;
use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, Streaming};

const NAME: &str = "bench-session";

fn daemon(runtime: &tokio::runtime::Runtime) -> ProtectorApi {
    let _entered = runtime.enter();
    let config = Config::default();
    let shutdown = CancellationToken::new();
    let registry = Arc::new(Registry::in_memory(&config, shutdown.clone()));
    let cluster = Cluster::standalone(Arc::clone(&registry), "127.0.0.1:1".into(), None);
    let (protectors, _admin) = service::services(cluster, config.limits, config.watch, shutdown);
    runtime
        .block_on(registry.ensure(NAME, Default::default()))
        .expect("the bench protector");
    protectors
}

fn acquire_bytes(id: u64) -> Vec<u8> {
    v1::SessionRequest {
        id,
        request: Some(session_request::Request::Acquire(v1::AcquireRequest {
            name: NAME.into(),
        })),
    }
    .encode_to_vec()
}

fn report_bytes(id: u64, permit: v1::Permit) -> Vec<u8> {
    v1::SessionRequest {
        id,
        request: Some(session_request::Request::Report(v1::ReportRequest {
            name: NAME.into(),
            permit: Some(permit),
            outcome: v1::Outcome::Success as i32,
            ..Default::default()
        })),
    }
    .encode_to_vec()
}

/// One message as the session sees it: decoded from `wire`, answered, encoded into `out`.
fn message(
    api: &ProtectorApi,
    wire: &mut BytesMut,
    scratch: &mut Vec<u8>,
    out: &mut BytesMut,
) -> v1::SessionResponse {
    let request: v1::SessionRequest = decode_from(wire).expect("decodes");
    let response = api
        .session_message(request)
        .now_or_never()
        .expect("an in-memory answer is ready at once");
    out.clear();
    encode_into(scratch, &response, out);
    response
}

/// A request decoded from `bytes` as the daemon does it: its name handed back once
/// decided, for the next one.
fn decode_recycled(wire: &mut BytesMut, bytes: &[u8]) {
    wire.clear();
    wire.extend_from_slice(bytes);
    let request = decode_from::<v1::SessionRequest>(wire).expect("decodes");
    match black_box(request).request {
        Some(session_request::Request::Acquire(a)) => names::recycle(a.name),
        Some(session_request::Request::Report(r)) => names::recycle(r.name),
        None => {}
    }
}

/// Messages in `session/stream_64`'s body.
const IN_ONE_BODY: u64 = 64;

/// The body of `session/stream_64`: Acquires (even ids) and Reports (odd ids), each in
/// its gRPC frame. A Report's permit is one CLOSED gives in the protector's first
/// generation (a permit CLOSED gives is not one of a kind: any of its generation reports).
fn stream_body() -> Bytes {
    let mut body = BytesMut::new();
    for id in 0..IN_ONE_BODY {
        let message = if id % 2 == 0 {
            acquire_bytes(id)
        } else {
            let permit = v1::Permit {
                generation: 1,
                ..Default::default()
            };
            report_bytes(id, permit)
        };
        body.put_u8(0);
        body.put_u32(u32::try_from(message.len()).expect("a small message"));
        body.put_slice(&message);
    }
    body.freeze()
}

/// Serves one stream of `body` to its end, each answer encoded into `out`; how many
/// answers were admitted Acquires and accepted Reports (a failed request panics).
fn serve_stream(api: &ProtectorApi, body: &Bytes, scratch: &mut Vec<u8>, out: &mut BytesMut) -> u64 {
    let mut codec = FastCodec::<v1::SessionResponse, v1::SessionRequest>::default();
    let inbound = Streaming::new_request(codec.decoder(), Full::new(body.clone()), None, None);
    let opened = api
        .session(tonic::Request::new(inbound))
        .now_or_never()
        .expect("opened at once")
        .expect("a session");
    let mut answers = opened.into_inner();
    let mut count = 0;
    out.clear();
    while let Some(answer) = answers
        .next()
        .now_or_never()
        .expect("in-memory answers are ready at once")
    {
        let answer = answer.expect("no stream error");
        count += u64::from(match &answer.response {
            Some(session_response::Response::Acquire(a)) => a.decision == v1::Decision::Admitted as i32,
            Some(session_response::Response::Report(r)) => r.accepted,
            other => panic!("answer {}: {other:?}", answer.id),
        });
        encode_into(scratch, &answer, out);
    }
    count
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let api = daemon(&runtime);
    let _entered = runtime.enter();
    let acquire = acquire_bytes(1);
    let (mut wire, mut scratch, mut out) = (BytesMut::new(), Vec::new(), BytesMut::new());

    c.bench_function("session/acquire", |b| {
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&acquire);
            black_box(message(&api, &mut wire, &mut scratch, &mut out));
        })
    });

    c.bench_function("session/acquire_report", |b| {
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&acquire);
            let answer = message(&api, &mut wire, &mut scratch, &mut out);
            let Some(session_response::Response::Acquire(a)) = answer.response else {
                panic!("an Acquire answer: {answer:?}");
            };
            wire.clear();
            wire.extend_from_slice(&report_bytes(2, a.permit.expect("CLOSED admits")));
            black_box(message(&api, &mut wire, &mut scratch, &mut out));
        })
    });

    let body = stream_body();
    assert_eq!(
        serve_stream(&api, &body, &mut scratch, &mut out),
        IN_ONE_BODY,
        "every Acquire admitted, every Report accepted"
    );
    c.bench_function("session/stream_64", |b| {
        b.iter(|| black_box(serve_stream(&api, &body, &mut scratch, &mut out)))
    });

    c.bench_function("codec/decode_acquire_daemon", |b| {
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&acquire);
            black_box(decode_from::<v1::SessionRequest>(&mut wire).expect("decodes"));
        })
    });

    c.bench_function("codec/decode_acquire_daemon_recycled", |b| {
        b.iter(|| decode_recycled(&mut wire, &acquire))
    });

    // A Report as a client sends it: the permit of a call admitted under CLOSED.
    let report = v1::SessionRequest {
        id: 17,
        request: Some(session_request::Request::Report(v1::ReportRequest {
            name: NAME.into(),
            permit: Some(v1::Permit {
                generation: 1,
                id: 0,
                expires_at: None,
            }),
            outcome: v1::Outcome::Success as i32,
            duration: None,
        })),
    };
    // With a duration too, as a timed call reports: every field a client sends, and the
    // most fields a request's reader keys through.
    let mut timed = report.clone();
    if let Some(session_request::Request::Report(r)) = &mut timed.request {
        r.duration = Some(prost_types::Duration {
            seconds: 0,
            nanos: 250_000,
        });
    }
    let report_wire = timed.encode_to_vec();
    c.bench_function("codec/decode_report_daemon_recycled", |b| {
        b.iter(|| decode_recycled(&mut wire, &report_wire))
    });

    c.bench_function("codec/decode_acquire_prost", |b| {
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&acquire);
            // What tonic_prost does: prost decoding from the buffer itself.
            let len = wire.remaining();
            let mut limited = (&mut wire).take(len);
            black_box(v1::SessionRequest::decode(&mut limited).expect("decodes"));
        })
    });

    // A typical answer: an Acquire admitted under CLOSED, with its permit.
    wire.clear();
    wire.extend_from_slice(&acquire);
    let answer = message(&api, &mut wire, &mut scratch, &mut out);
    c.bench_function("codec/encode_answer_daemon", |b| {
        b.iter(|| {
            out.clear();
            encode_into(&mut scratch, black_box(&answer), &mut out);
            black_box(&out);
        })
    });

    c.bench_function("codec/encode_answer_prost", |b| {
        b.iter(|| {
            out.clear();
            // The scratch path every other message takes: prost's encoding, then one copy.
            scratch.clear();
            black_box(&answer).encode_raw(&mut scratch);
            out.extend_from_slice(&scratch);
            black_box(&out);
        })
    });

    // The same answer as a client reads it (the Rust client's codec, and the load
    // generator's).
    let answer_wire = answer.encode_to_vec();
    c.bench_function("codec/decode_answer_client", |b| {
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&answer_wire);
            black_box(decode_from::<v1::SessionResponse>(&mut wire).expect("decodes"));
        })
    });

    c.bench_function("codec/encode_request_daemon", |b| {
        b.iter(|| {
            out.clear();
            encode_into(&mut scratch, black_box(&report), &mut out);
            black_box(&out);
        })
    });

    c.bench_function("codec/encode_request_prost", |b| {
        b.iter(|| {
            out.clear();
            scratch.clear();
            black_box(&report).encode_raw(&mut scratch);
            out.extend_from_slice(&scratch);
            black_box(&out);
        })
    });
}

fn name_checks(c: &mut Criterion) {
    for (label, name) in [
        ("name/check_7_bytes", "bench-0"),
        ("name/check_29_bytes", "payments-db.eu-west-1/primary"),
        ("name/check_non_ascii", "zahlungsdienst-münchen"),
    ] {
        // The same buffer moved in and out of the name: no allocation in the loop.
        let mut buffer = name.to_owned();
        c.bench_function(label, |b| {
            b.iter(|| {
                let checked = ProtectorName::with_max_len(std::mem::take(&mut buffer), 256);
                buffer = black_box(checked).expect("a valid name").into_string();
            })
        });
    }
}

criterion_group!(session, benches, name_checks);
criterion_main!(session);
