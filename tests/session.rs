//! Session: Acquire and Report pipelined on one stream, answered by id, with the unary
//! calls' semantics; a request's error is answered in the stream, which goes on; the
//! daemon's shutdown ends the stream with UNAVAILABLE.

use std::collections::HashMap;
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::{session_request, session_response};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

/// One open Session: requests go in through a channel, answers are read with a deadline.
struct Session {
    requests: mpsc::Sender<v1::SessionRequest>,
    answers: tonic::Streaming<v1::SessionResponse>,
}

impl Session {
    /// Opens a session whose client side can hold `queue` requests not yet sent.
    async fn open(client: &mut ProtectorClient, queue: usize) -> Session {
        let (requests, rx) = mpsc::channel(queue);
        let answers = client
            .session(ReceiverStream::new(rx))
            .await
            .expect("Session")
            .into_inner();
        Session { requests, answers }
    }

    async fn send(&self, id: u64, request: session_request::Request) {
        self.requests
            .send(v1::SessionRequest {
                id,
                request: Some(request),
            })
            .await
            .expect("the session accepts requests");
    }

    async fn send_raw(&self, request: v1::SessionRequest) {
        self.requests
            .send(request)
            .await
            .expect("the session accepts requests");
    }

    /// The next answer as the transport gives it.
    async fn next_raw(&mut self) -> Result<Option<v1::SessionResponse>, tonic::Status> {
        tokio::time::timeout(DEADLINE, self.answers.message())
            .await
            .unwrap_or_else(|_| panic!("nothing on the session within {DEADLINE:?}"))
    }

    /// The next answer; fails the test on anything else.
    async fn next(&mut self) -> v1::SessionResponse {
        match self.next_raw().await {
            Ok(Some(answer)) => answer,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    /// Sends one request and reads its answer (nothing else is in flight).
    async fn ask(&mut self, id: u64, request: session_request::Request) -> session_response::Response {
        self.send(id, request).await;
        let answer = self.next().await;
        assert_eq!(answer.id, id, "{answer:?}");
        answer.response.expect("a response")
    }
}

fn acquire_req(name: &str) -> session_request::Request {
    session_request::Request::Acquire(v1::AcquireRequest { name: name.into() })
}

fn report_req(name: &str, permit: v1::Permit, outcome: v1::Outcome) -> session_request::Request {
    session_request::Request::Report(v1::ReportRequest {
        name: name.into(),
        permit: Some(permit),
        outcome: outcome as i32,
        ..Default::default()
    })
}

#[track_caller]
fn acquired(r: session_response::Response) -> v1::AcquireResponse {
    match r {
        session_response::Response::Acquire(a) => a,
        other => panic!("expected an Acquire answer, got {other:?}"),
    }
}

#[track_caller]
fn reported(r: session_response::Response) -> v1::ReportResponse {
    match r {
        session_response::Response::Report(a) => a,
        other => panic!("expected a Report answer, got {other:?}"),
    }
}

#[track_caller]
fn failed(r: session_response::Response) -> v1::SessionError {
    match r {
        session_response::Response::Error(e) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn two_hundred_pipelined_requests_are_answered_by_id() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "pipe", policy(HOUR, (5, 10), None)).await;
    let mut session = Session::open(&mut client, 256).await;

    // Three kinds of request, each with its own answer, under ids that are neither
    // dense nor in order, all sent before any answer is read.
    let id = |i: u64| 1_000_003 * (200 - i);
    for i in 0..200 {
        let request = match i % 3 {
            0 => acquire_req("pipe"),
            1 => report_req("pipe", permit(1, 0), v1::Outcome::Success),
            _ => acquire_req("pipe.missing"),
        };
        session.send(id(i), request).await;
    }
    let mut answers = HashMap::new();
    for _ in 0..200 {
        let answer = session.next().await;
        let previous = answers.insert(answer.id, answer.response.expect("a response"));
        assert!(previous.is_none(), "id answered twice: {previous:?}");
    }
    for i in 0..200 {
        let answer = answers
            .remove(&id(i))
            .unwrap_or_else(|| panic!("no answer for request {i}"));
        match i % 3 {
            0 => {
                let a = acquired(answer);
                assert_eq!(a.decision, v1::Decision::Admitted as i32, "{a:?}");
                assert_eq!(a.permit, Some(permit(1, 0)));
            }
            1 => {
                let r = reported(answer);
                assert!(r.accepted, "{r:?}");
                assert_eq!(r.status, v1::Status::Closed as i32);
            }
            _ => assert_eq!(failed(answer).code, Code::NotFound as i32),
        }
    }
    let c = counters(&mut client, "pipe").await;
    assert_eq!((c.admitted, c.successes, c.stale_reports), (67, 67, 0));
}

#[tokio::test]
async fn a_trip_through_the_session_is_the_daemons_and_fences_stale_reports() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "trip", policy(HOUR, (1, 1), None)).await;
    let mut session = Session::open(&mut client, 8).await;

    let a = acquired(session.ask(1, acquire_req("trip")).await);
    assert_eq!(a.decision, v1::Decision::Admitted as i32);
    assert_eq!(a.reason, v1::DecisionReason::Closed as i32);
    let permit = a.permit.expect("permit");
    assert_eq!(permit, support::permit(1, 0));

    let r = reported(
        session
            .ask(2, report_req("trip", permit, v1::Outcome::Failure))
            .await,
    );
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.status, v1::Status::Open as i32);
    let t = r.transition.expect("the failure trips 1/1");
    assert_transition(
        &t,
        v1::Status::Closed,
        v1::Status::Open,
        v1::TransitionReason::FailureLimit,
        2,
    );

    // A unary Acquire sees the session's trip.
    let unary = acquire(&mut client, "trip").await;
    assert_eq!(unary.decision, v1::Decision::Rejected as i32, "{unary:?}");
    assert_eq!(unary.reason, v1::DecisionReason::Open as i32);
    assert_eq!(unary.status, v1::Status::Open as i32);
    assert_eq!(unary.revision, r.revision, "nothing changed since the trip");

    // The session answers as the unary call does.
    let again = acquired(session.ask(3, acquire_req("trip")).await);
    assert_eq!(again.decision, v1::Decision::Rejected as i32);
    assert_eq!(again.reason, v1::DecisionReason::Open as i32);
    let retry = again.retry_after.expect("retry_after");
    assert!(retry.seconds > 3000 && retry.seconds <= 3600, "{retry:?}");

    // The permit of generation 1 is stale now, on the session as on the unary call.
    let stale = reported(
        session
            .ask(4, report_req("trip", permit, v1::Outcome::Success))
            .await,
    );
    assert!(!stale.accepted, "{stale:?}");
    assert_eq!((stale.status, stale.transition), (v1::Status::Open as i32, None));
    assert_eq!(stale.revision, r.revision, "a stale report is no change");
    let unary_stale = report(&mut client, "trip", permit, v1::Outcome::Success).await;
    assert!(!unary_stale.accepted);

    let c = counters(&mut client, "trip").await;
    assert_eq!((c.admitted, c.rejected), (1, 2));
    assert_eq!((c.failures, c.successes, c.stale_reports), (1, 0, 2));
}

#[tokio::test]
async fn request_errors_are_answered_in_the_stream_which_goes_on() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "errs", policy(HOUR, (5, 10), None)).await;
    let mut session = Session::open(&mut client, 8).await;

    // (request, code, field)
    let bad_outcome = session_request::Request::Report(v1::ReportRequest {
        name: "errs".into(),
        permit: Some(permit(1, 0)),
        outcome: 99,
        ..Default::default()
    });
    let no_permit = session_request::Request::Report(v1::ReportRequest {
        name: "errs".into(),
        permit: None,
        outcome: v1::Outcome::Success as i32,
        ..Default::default()
    });
    let rows: Vec<(session_request::Request, Code, &str)> = vec![
        (acquire_req(""), Code::InvalidArgument, "name"),
        (acquire_req("has space"), Code::InvalidArgument, "name"),
        (acquire_req(&"n".repeat(257)), Code::InvalidArgument, "name"),
        (acquire_req("errs.unknown"), Code::NotFound, ""),
        (
            report_req("errs.unknown", permit(1, 0), v1::Outcome::Success),
            Code::NotFound,
            "",
        ),
        (bad_outcome, Code::InvalidArgument, "outcome"),
        (no_permit, Code::InvalidArgument, "permit"),
    ];
    for (i, (request, code, field)) in rows.into_iter().enumerate() {
        let id = 10 + i as u64;
        let e = failed(session.ask(id, request).await);
        assert_eq!((e.code, e.field.as_str()), (code as i32, field), "row {i}: {e:?}");
        assert!(!e.message.is_empty(), "row {i}: {e:?}");
        // The stream goes on: the next good request is answered.
        let a = acquired(session.ask(100 + i as u64, acquire_req("errs")).await);
        assert_eq!(a.decision, v1::Decision::Admitted as i32, "after row {i}");
    }

    // Neither acquire nor report.
    session
        .send_raw(v1::SessionRequest {
            id: 77,
            request: None,
        })
        .await;
    let answer = session.next().await;
    assert_eq!(answer.id, 77);
    let e = failed(answer.response.expect("a response"));
    assert_eq!(
        (e.code, e.field.as_str()),
        (Code::InvalidArgument as i32, "request")
    );
    let r = reported(
        session
            .ask(78, report_req("errs", permit(1, 0), v1::Outcome::Success))
            .await,
    );
    assert!(r.accepted);

    // The failed requests changed nothing: one admitted per row, one success.
    let c = counters(&mut client, "errs").await;
    assert_eq!((c.admitted, c.successes, c.stale_reports), (7, 1, 0));
}

#[tokio::test]
async fn shutdown_ends_an_open_session_with_unavailable() {
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "down", policy(HOUR, (1, 1), None)).await;
    let mut session = Session::open(&mut client, 8).await;
    let a = acquired(session.ask(1, acquire_req("down")).await);
    assert_eq!(a.decision, v1::Decision::Admitted as i32);

    let stopping = tokio::spawn(daemon.stop());
    // The client keeps its side open; the daemon must end the stream anyway.
    match session.next_raw().await {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    let stopped = tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the daemon stops with a session open")
        .expect("serve task");
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn many_sessions_at_once_each_get_their_own_answers() {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 8;
    const CALLS: u64 = 50;
    let daemon = Daemon::start().await;
    let mut client = daemon.protectors().await;
    ensure(&mut client, "many.shared", policy(HOUR, (5, 10), None)).await;
    // Every other session has its own protector OPEN, so a crossed answer shows.
    let sessions = CONNECTIONS * PER_CONNECTION;
    for k in 0..sessions {
        let name = format!("many.own{k}");
        ensure(&mut client, &name, policy(HOUR, (1, 1), None)).await;
        if k % 2 == 1 {
            let r = call(&mut client, &name, v1::Outcome::Failure).await;
            assert!(r.transition.is_some());
        }
    }

    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = daemon.channel().await;
        for _ in 0..PER_CONNECTION {
            let k = tasks.len();
            let mut client = ProtectorClient::new(channel.clone());
            tasks.push(tokio::spawn(async move {
                let own = format!("many.own{k}");
                let mut session = Session::open(&mut client, 2 * CALLS as usize + 1).await;
                // Ids repeat across sessions: each session's answers carry its own.
                for id in 0..CALLS {
                    session.send(2 * id, acquire_req("many.shared")).await;
                    let report = report_req("many.shared", permit(1, 0), v1::Outcome::Success);
                    session.send(2 * id + 1, report).await;
                }
                session.send(u64::MAX, acquire_req(&own)).await;
                let mut seen = vec![false; 2 * CALLS as usize];
                for _ in 0..=2 * CALLS {
                    let answer = session.next().await;
                    let response = answer.response.expect("a response");
                    if answer.id == u64::MAX {
                        let decision = acquired(response).decision;
                        let expected = if k % 2 == 1 {
                            v1::Decision::Rejected
                        } else {
                            v1::Decision::Admitted
                        };
                        assert_eq!(decision, expected as i32, "session {k}");
                        continue;
                    }
                    let slot = &mut seen[answer.id as usize];
                    assert!(!*slot, "session {k}: id {} answered twice", answer.id);
                    *slot = true;
                    if answer.id % 2 == 0 {
                        assert!(acquired(response).permit.is_some(), "session {k}");
                    } else {
                        assert!(reported(response).accepted, "session {k}");
                    }
                }
                assert!(seen.iter().all(|s| *s), "session {k}: answers missing");
            }));
        }
    }
    for task in tasks {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("sessions finish")
            .expect("session task");
    }
    let c = counters(&mut client, "many.shared").await;
    let total = sessions as u64 * CALLS;
    assert_eq!((c.admitted, c.successes, c.stale_reports), (total, total, 0));
}
