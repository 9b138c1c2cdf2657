//! The streaming shape: one bidirectional stream per connection, carrying the decisions
//! of many logical workers ("slots") at once.
//!
//! Each slot has at most one request outstanding, and the request's id is the slot's
//! index, so an answer finds its slot directly, whatever order answers come in. A slot
//! sends an Acquire; when it is admitted, a Report; when that is answered (or the Acquire
//! rejected) the decision is complete and the slot starts the next one. One task drives
//! all the slots of a stream: no task, channel or lock per message, so the client's own
//! cost stays small beside the transport's.

use std::pin::pin;
use std::time::Instant;

use resilient_circuit_api::v1::{self, session_request, session_response};
use tokio::sync::mpsc;

use crate::echo::{EchoRequest, EchoResponse};
use crate::tally::{Answer, Tally, Window, Workload};

/// A streaming protocol the driver can pipeline decisions on.
pub trait Pipeline {
    /// What the client sends.
    type Request: Send + 'static;
    /// What the server answers.
    type Response;
    /// The Acquire of a decision.
    fn acquire(id: u64, name: &str) -> Self::Request;
    /// The Report of an admitted decision.
    fn report(
        id: u64,
        name: &str,
        permit: Option<v1::Permit>,
        outcome: v1::Outcome,
        duration: Option<prost_types::Duration>,
    ) -> Self::Request;
    /// The id an answer carries.
    fn id(response: &Self::Response) -> u64;
    /// What an answer means, for a slot that awaits an Acquire's answer or not.
    fn answer(response: Self::Response, awaiting_acquire: bool) -> Answer;
}

/// circuitd's Session stream.
#[derive(Debug)]
pub enum Session {}

impl Pipeline for Session {
    type Request = v1::SessionRequest;
    type Response = v1::SessionResponse;

    fn acquire(id: u64, name: &str) -> v1::SessionRequest {
        let acquire = v1::AcquireRequest {
            name: name.to_owned(),
        };
        v1::SessionRequest {
            id,
            request: Some(session_request::Request::Acquire(acquire)),
        }
    }

    fn report(
        id: u64,
        name: &str,
        permit: Option<v1::Permit>,
        outcome: v1::Outcome,
        duration: Option<prost_types::Duration>,
    ) -> v1::SessionRequest {
        let report = v1::ReportRequest {
            duration,
            name: name.to_owned(),
            permit,
            outcome: outcome as i32,
        };
        v1::SessionRequest {
            id,
            request: Some(session_request::Request::Report(report)),
        }
    }

    fn id(response: &v1::SessionResponse) -> u64 {
        response.id
    }

    fn answer(response: v1::SessionResponse, awaiting_acquire: bool) -> Answer {
        match (response.response, awaiting_acquire) {
            (Some(session_response::Response::Acquire(r)), true) => Answer::acquired(r),
            (Some(session_response::Response::Report(_)), false) => Answer::Reported,
            (Some(session_response::Response::Error(e)), _) => {
                Answer::Failed(format!("code {}: {}", e.code, e.message))
            }
            (other, _) => Answer::Failed(format!("an answer that does not fit its request: {other:?}")),
        }
    }
}

/// The echo baseline's EchoStream: every message answered as it is.
#[derive(Debug)]
pub enum EchoStream {}

impl Pipeline for EchoStream {
    type Request = EchoRequest;
    type Response = EchoResponse;

    fn acquire(id: u64, name: &str) -> EchoRequest {
        EchoRequest {
            id,
            name: name.to_owned(),
        }
    }

    fn report(
        id: u64,
        name: &str,
        _: Option<v1::Permit>,
        _: v1::Outcome,
        _: Option<prost_types::Duration>,
    ) -> EchoRequest {
        EchoRequest {
            id,
            name: name.to_owned(),
        }
    }

    fn id(response: &EchoResponse) -> u64 {
        response.id
    }

    fn answer(_: EchoResponse, awaiting_acquire: bool) -> Answer {
        if awaiting_acquire {
            Answer::Admitted(None)
        } else {
            Answer::Reported
        }
    }
}

/// One logical worker on a stream.
#[derive(Debug)]
struct Slot {
    /// The worker's number across all streams (for its protector and outcome sequence).
    worker: usize,
    iteration: u64,
    started: Instant,
    awaiting_acquire: bool,
}

/// The workers `first..first + slots` of `workload`, pipelined on one stream: requests go
/// out through `requests` (the stream's sending half), answers come from `responses`.
pub async fn drive<P: Pipeline>(
    requests: mpsc::Sender<P::Request>,
    mut responses: tonic::Streaming<P::Response>,
    workload: Workload,
    first: usize,
    slots: usize,
    window: Window,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = workload.rng(first);
    let mut give_up = pin!(tokio::time::sleep_until(window.give_up.into()));
    let now = Instant::now();
    let mut slot: Vec<Slot> = (0..slots)
        .map(|i| Slot {
            worker: first + i,
            iteration: 0,
            started: now,
            awaiting_acquire: true,
        })
        .collect();
    let mut busy = 0usize;
    for (id, s) in slot.iter_mut().enumerate() {
        if start::<P>(s, id, &workload, &window, &requests).await {
            busy += 1;
        }
    }
    while busy > 0 {
        let received = tokio::select! {
            biased;
            m = responses.message() => m,
            () = &mut give_up => break,
        };
        let response = match received {
            Ok(Some(response)) => response,
            Ok(None) => {
                tally.failed(
                    &window,
                    "the stream ended while answers were outstanding".to_owned(),
                );
                break;
            }
            Err(status) => {
                tally.failed(&window, format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        };
        let id = P::id(&response);
        let Some(s) = usize::try_from(id).ok().and_then(|i| slot.get_mut(i)) else {
            tally.failed(&window, format!("an answer to id {id}, which no slot sent"));
            continue;
        };
        let name = workload.name(s.worker, s.iteration);
        match P::answer(response, s.awaiting_acquire) {
            Answer::Admitted(_) if workload.acquire_only => tally.decided(&window, s.started, true),
            Answer::Admitted(permit) => {
                s.awaiting_acquire = false;
                let outcome = workload.outcome(&mut rng);
                if requests
                    .send(P::report(id, name, permit, outcome, workload.report_duration))
                    .await
                    .is_err()
                {
                    tally.failed(&window, "the stream closed for sending".to_owned());
                    break;
                }
                continue;
            }
            Answer::Rejected => tally.decided(&window, s.started, false),
            Answer::Reported => tally.decided(&window, s.started, true),
            Answer::Failed(why) => tally.failed(&window, why),
        }
        s.iteration += 1;
        if !start::<P>(s, id as usize, &workload, &window, &requests).await {
            busy -= 1;
        }
    }
    tally
}

/// Starts the slot's next decision unless the window has closed (or the stream can no
/// longer send); whether it started.
async fn start<P: Pipeline>(
    s: &mut Slot,
    id: usize,
    workload: &Workload,
    window: &Window,
    requests: &mpsc::Sender<P::Request>,
) -> bool {
    s.started = Instant::now();
    s.awaiting_acquire = true;
    if !window.open_at(s.started) {
        return false;
    }
    let name = workload.name(s.worker, s.iteration);
    requests.send(P::acquire(id as u64, name)).await.is_ok()
}
