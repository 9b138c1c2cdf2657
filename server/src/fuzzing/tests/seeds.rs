//! Valid inputs for each fuzz target, built from the daemon's own types: the fuzzers
//! start from these and mutate.

use std::time::Duration;

use prost::Message;
use resilient_circuit_api::v1;
use resilient_circuit_breaker::{Override, OverrideKind, Policy, Protector, Status};

use crate::service::encode_token;
use crate::store::format;
use crate::store::record::{
    Body, LogEntry, LoggedEvent, Record, RecordGroup, Snapshot, StoredProtector, StoredTrial, TrialChange,
};

type Seeds = Vec<(String, Vec<u8>)>;

/// Every target's seeds, by the name of its corpus directory.
pub fn all() -> Vec<(&'static str, Seeds)> {
    vec![
        ("requests", requests()),
        ("journal", journal()),
        ("snapshot", snapshot()),
        ("page_token", page_token()),
        ("tokens", tokens()),
    ]
}

/// One piece of a `requests`, `journal` or `snapshot` input (see `fuzzing::pieces`).
fn piece(kind: Option<u8>, bytes: &[u8], out: &mut Vec<u8>) {
    out.extend(kind);
    let len = u16::try_from(bytes.len()).expect("a seed piece under 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn seq(requests: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, bytes) in requests {
        piece(Some(*kind), bytes, &mut out);
    }
    out
}

fn duration(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

fn requests() -> Seeds {
    let policy = v1::Policy {
        cooldown: duration(5, 0),
        failure_limit: Some(v1::Fraction {
            numerator: 2,
            denominator: 4,
        }),
        success_limit: Some(v1::Fraction {
            numerator: 1,
            denominator: 2,
        }),
        trial_permits: Some(2),
        permit_ttl: duration(1, 500_000_000),
        auto_half_open: true,
        ..Default::default()
    };
    let ensure = v1::EnsureProtectorRequest {
        name: "payments".into(),
        policy: Some(policy),
    }
    .encode_to_vec();
    let acquire = v1::AcquireRequest {
        name: "payments".into(),
    }
    .encode_to_vec();
    let permit = v1::Permit {
        generation: 1,
        id: 0,
        expires_at: None,
    };
    let report = |outcome: v1::Outcome, permit: v1::Permit| v1::ReportRequest {
        duration: None,
        name: "payments".into(),
        permit: Some(permit),
        outcome: outcome as i32,
    };
    let failure = report(v1::Outcome::Failure, permit).encode_to_vec();
    let trial = v1::Permit {
        generation: 2,
        id: 1,
        expires_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
    };
    let batch = v1::ReportBatchRequest {
        batches: vec![v1::OutcomeBatch {
            durations: Vec::new(),
            name: "payments".into(),
            generation: 1,
            successes: 3,
            outcomes: vec![v1::Outcome::Failure as i32, v1::Outcome::Ignored as i32],
        }],
    }
    .encode_to_vec();
    let watch = |filter| {
        v1::WatchRequest {
            filter: Some(filter),
            start_revision: Some(1),
            start_epoch: None,
            progress_interval: duration(1, 0),
        }
        .encode_to_vec()
    };
    let names = v1::NameList {
        names: vec!["payments".into(), "search".into()],
    };
    let get = v1::GetProtectorRequest {
        name: "payments".into(),
    }
    .encode_to_vec();
    let list = v1::ListProtectorsRequest {
        prefix: "pay".into(),
        page_size: 1,
        page_token: encode_token("a"),
    }
    .encode_to_vec();
    let session = |request| v1::SessionRequest {
        id: 7,
        request: Some(request),
    };
    let session_acquire = session(v1::session_request::Request::Acquire(v1::AcquireRequest {
        name: "payments".into(),
    }))
    .encode_to_vec();
    let session_report = session(v1::session_request::Request::Report(report(
        v1::Outcome::Success,
        permit,
    )))
    .encode_to_vec();
    let set_status = |status: v1::Status, open_for| {
        v1::SetStatusRequest {
            name: "payments".into(),
            status: status as i32,
            open_for,
        }
        .encode_to_vec()
    };
    let set_override = |kind: v1::OverrideKind, expires_after| {
        v1::SetOverrideRequest {
            name: "payments".into(),
            kind: kind as i32,
            expires_after,
        }
        .encode_to_vec()
    };
    let update = v1::UpdatePolicyRequest {
        name: "payments".into(),
        policy: Some(v1::Policy::default()),
    }
    .encode_to_vec();
    let delete = v1::DeleteProtectorRequest {
        name: "payments".into(),
    }
    .encode_to_vec();
    let cluster = v1::GetClusterRequest::default().encode_to_vec();
    let half_open = set_status(v1::Status::HalfOpen, None);
    let trial_success = report(v1::Outcome::Success, trial).encode_to_vec();
    vec![
        ("ensure", seq(&[(0, ensure.clone())])),
        (
            "closed-to-open",
            seq(&[
                (0, ensure.clone()),
                (1, acquire.clone()),
                (2, failure.clone()),
                (1, acquire.clone()),
                (2, failure.clone()),
                (1, acquire.clone()),
            ]),
        ),
        (
            "half-open-trial",
            seq(&[
                (0, ensure.clone()),
                (8, half_open),
                (1, acquire.clone()),
                (2, trial_success),
                (5, get.clone()),
            ]),
        ),
        ("report-batch", seq(&[(0, ensure.clone()), (3, batch)])),
        (
            "watch",
            seq(&[
                (0, ensure.clone()),
                (4, watch(v1::watch_request::Filter::All(true))),
                (4, watch(v1::watch_request::Filter::Prefix("pay".into()))),
                (4, watch(v1::watch_request::Filter::Names(names))),
            ]),
        ),
        ("get-list", seq(&[(0, ensure.clone()), (5, get), (6, list)])),
        (
            "session",
            seq(&[(0, ensure.clone()), (7, session_acquire), (7, session_report)]),
        ),
        (
            "admin",
            seq(&[
                (0, ensure.clone()),
                (8, set_status(v1::Status::Open, duration(30, 0))),
                (9, set_override(v1::OverrideKind::ForcedOpen, duration(60, 0))),
                (1, acquire.clone()),
                (9, set_override(v1::OverrideKind::None, None)),
                (10, update),
                (11, delete),
                (12, cluster),
            ]),
        ),
        ("acquire-unknown", seq(&[(1, acquire), (2, failure)])),
    ]
    .into_iter()
    .map(|(name, bytes)| (name.to_owned(), bytes))
    .collect()
}

const NOW: Duration = Duration::from_secs(1_800_000_000);

/// Protectors in every status, with a trial in flight and an override, stored.
fn protectors() -> Vec<StoredProtector> {
    let policy = Policy::default();
    let closed = Protector::new(policy);
    let mut open = Protector::new(policy);
    open.set_status(Status::Open, Some(Duration::from_secs(30)), NOW);
    let mut half_open = Protector::new(policy);
    half_open.set_status(Status::HalfOpen, None, NOW);
    half_open.acquire(NOW);
    let mut forced = Protector::new(policy);
    let forced_open = Override {
        kind: OverrideKind::ForcedOpen,
        expires_at: Some(NOW + Duration::from_secs(60)),
    };
    forced.set_override(Some(forced_open), NOW);
    [
        ("closed", closed),
        ("open", open),
        ("half-open", half_open),
        ("forced", forced),
    ]
    .iter()
    .zip(1..)
    .map(|((name, p), version)| StoredProtector::new(name, p, version * 10, version))
    .collect()
}

/// A record of every kind, in sequence order after the protectors' versions.
fn records() -> Vec<Record> {
    let stored = protectors();
    let mut records: Vec<Record> = stored
        .iter()
        .map(|p| Record {
            seq: p.version,
            revision: p.mod_revision,
            body: Some(Body::Put(p.clone())),
        })
        .collect();
    let half_open = stored.iter().find(|p| p.name == "half-open").expect("half-open");
    let mut state = half_open.clone();
    state.trials.clear();
    state.version = 5;
    // The permit handed out takes the next id; the one in flight is taken back.
    let issued = state.next_permit_id;
    state.next_permit_id += 1;
    records.push(Record {
        seq: 5,
        revision: 50,
        body: Some(Body::Trial(TrialChange {
            state: Some(state),
            at: format_nanos(NOW),
            issued: Some(StoredTrial {
                id: issued,
                expires_at: format_nanos(NOW + Duration::from_secs(5)),
            }),
            released: half_open.trials.first().map(|t| t.id),
        })),
    });
    records.push(Record {
        seq: 6,
        revision: 60,
        body: Some(Body::Delete("closed".into())),
    });
    records
}

fn format_nanos(t: Duration) -> u64 {
    crate::store::record::nanos(t)
}

fn journal() -> Seeds {
    let records = records();
    let group = |rs: &[Record]| RecordGroup { records: rs.to_vec() }.encode_to_vec();
    // Mode 4: a whole last segment, as on disk.
    let mut segment = vec![4];
    segment.extend_from_slice(format::SEGMENT_MAGIC);
    format::frame(&group(&records[..4]), &mut segment);
    format::frame(&group(&records[4..]), &mut segment);
    let mut torn = segment.clone();
    torn.truncate(torn.len() - 3);
    // Mode 5: group payloads, framed by the harness.
    let mut groups = vec![5];
    piece(None, &group(&records[..2]), &mut groups);
    piece(None, &group(&records[2..]), &mut groups);
    // Mode 6: one record per frame, the legacy layout.
    let mut legacy = vec![6];
    for r in &records {
        piece(None, &r.encode_to_vec(), &mut legacy);
    }
    // Mode 3: entries of the replicated log, with their events.
    let mut log = vec![3];
    for (i, r) in records.iter().enumerate() {
        let event = v1::WatchEvent {
            revision: r.revision,
            ..Default::default()
        };
        let entry = LogEntry {
            records: vec![r.clone()],
            events: vec![LoggedEvent {
                name: format!("p{i}"),
                event: Some(event),
            }],
        };
        piece(None, &entry.encode_to_vec(), &mut log);
    }
    vec![
        ("segment".to_owned(), segment),
        ("segment-torn".to_owned(), torn),
        ("groups".to_owned(), groups),
        ("legacy".to_owned(), legacy),
        ("replicated-log".to_owned(), log),
    ]
}

fn snapshot() -> Seeds {
    let snap = Snapshot {
        revision: 40,
        first_segment: 2,
        protectors: protectors(),
        last_seq: 4,
    }
    .encode_to_vec();
    let mut file = vec![0];
    file.extend_from_slice(format::SNAPSHOT_MAGIC);
    format::frame(&snap, &mut file);
    let mut payload = vec![1];
    payload.extend_from_slice(&snap);
    let mut piece = vec![2];
    piece.extend_from_slice(&snap);
    vec![
        ("file".to_owned(), file),
        ("payload".to_owned(), payload),
        ("piece".to_owned(), piece),
    ]
}

fn page_token() -> Seeds {
    ["a", "b/c", "ü", "payments.eu-west/1"]
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("token-{i}"), encode_token(name).into_bytes()))
        .chain([("garbage".to_owned(), b"zz".to_vec())])
        .collect()
}

fn tokens() -> Seeds {
    let digest = |token: &str| crate::auth::sha256_hex(token.as_bytes());
    let one = format!(
        "[[token]]\nname = \"deploy-bot\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
        digest("deploy")
    );
    let three = format!(
        "{one}\n[[token]]\nname = \"reader\"\nsha256 = \"{}\"\nrole = \"read\"\n\n[[token]]\nname = \"svc\"\nsha256 = \"{}\"\nrole = \"data\"\n",
        digest("reader"),
        digest("svc")
    );
    let inline = format!(
        "token = [{{ name = \"a\", sha256 = \"{}\", role = \"data\" }}]\n",
        digest("a").to_uppercase()
    );
    let unknown = "[[token]]\nname = \"x\"\nsha256 = \"00\"\nrole = \"root\"\nextra = 1\n".to_owned();
    [
        ("one", one),
        ("three", three),
        ("inline", inline),
        ("unknown-key", unknown),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text.into_bytes()))
    .collect()
}
