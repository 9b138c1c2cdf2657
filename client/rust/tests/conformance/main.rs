//! The Rust player of the shared conformance vectors (`conformance/vectors.json`, whose
//! format and mapping to this client are in `conformance/README.md`): every vector, in
//! order, each against a `circuitd` process of its own (the harness's real binary, on a
//! durable data directory, so it can be restarted, frozen and thawed).
//! `CONFORMANCE_VECTOR=name` plays one.

mod vectors;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use resilient_circuit::{
    CallError, CallPermit, Client, DecisionReason, Fallback, PolicySpec, Protector, ProtectorPolicy, Status,
    StatusChange, TransitionReason,
};
use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::{AdminClient, ProtectorClient, TempDir};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vectors::{AdminAction, Answer, CallResult, Decision, File, Outcome, Ran, Source, Step, Vector};

/// Between two attempts of `acquire_until` and two reads of `inspect`: a poll interval.
const POLL: Duration = Duration::from_millis(20);

type Checked = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

#[derive(Debug)]
struct Failed;

struct Handle {
    protector: Protector,
    changes: Option<mpsc::UnboundedReceiver<StatusChange>>,
}

/// One vector being played: its daemon, its client, its handles and kept permits.
struct Player {
    deadline: Duration,
    dir: TempDir,
    flags: Vec<String>,
    daemon: Option<Circuitd>,
    addr: SocketAddr,
    client: Client,
    handles: HashMap<String, Handle>,
    permits: HashMap<String, CallPermit>,
}

impl Player {
    async fn start(vector: &Vector, deadline: Duration) -> Player {
        let dir = TempDir::new(&format!("conformance-{}", vector.name));
        let flags = vector.daemon.flags.clone();
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let daemon = Circuitd::start(dir.path(), &args).await;
        let addr = daemon.addr;
        let acquire_deadline = Duration::from_millis(vector.client.acquire_deadline_ms.unwrap_or(2000));
        let client = Client::builder(daemon.uri())
            .acquire_deadline(acquire_deadline)
            .request_timeout(Duration::from_secs(5))
            .build()
            .await
            .expect("client");
        Player {
            deadline,
            dir,
            flags,
            daemon: Some(daemon),
            addr,
            client,
            handles: HashMap::new(),
            permits: HashMap::new(),
        }
    }

    fn handle(&mut self, id: &str) -> Result<&mut Handle, String> {
        self.handles
            .get_mut(id)
            .ok_or_else(|| format!("no protector {id:?}"))
    }

    fn daemon(&self) -> Result<&Circuitd, String> {
        self.daemon
            .as_ref()
            .ok_or_else(|| "the daemon is stopped".to_owned())
    }

    async fn protectors(&self) -> Result<ProtectorClient, String> {
        let channel = self.daemon()?.channel().await.map_err(|e| e.to_string())?;
        Ok(ProtectorClient::new(channel))
    }

    async fn admin(&self) -> Result<AdminClient, String> {
        let channel = self.daemon()?.channel().await.map_err(|e| e.to_string())?;
        Ok(AdminClient::new(channel))
    }

    async fn step(&mut self, step: Step) -> Checked {
        match step {
            Step::Protector {
                id,
                name,
                policy,
                fallback,
                cached,
                staleness_ms,
                watch,
            } => {
                let spec = PolicySpec {
                    cooldown: policy.cooldown_ms.map_or(Duration::ZERO, Duration::from_millis),
                    failure_limit: policy.failure_limit.unwrap_or((1, 1)),
                    success_limit: policy.success_limit,
                    trial_permits: policy.trial_permits,
                    permit_ttl: policy
                        .permit_ttl_ms
                        .map_or(PolicySpec::default().permit_ttl, Duration::from_millis),
                    ..PolicySpec::default()
                };
                let policy = ProtectorPolicy::try_new(spec).map_err(|e| format!("policy: {e:?}"))?;
                let mut builder =
                    self.client
                        .protector_builder(name)
                        .policy(policy)
                        .fallback(match fallback {
                            vectors::Fallback::Deny => Fallback::Deny,
                            vectors::Fallback::Allow => Fallback::Allow,
                            vectors::Fallback::Local => Fallback::Local,
                        });
                builder = match (cached, staleness_ms) {
                    (_, Some(ms)) => builder.cached_staleness(Duration::from_millis(ms)),
                    (cached, None) => builder.cached(cached),
                };
                let protector = builder.build().await.map_err(|e| e.to_string())?;
                let changes = watch.then(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    protector.on_status_change(move |c| drop(tx.send(c.clone())));
                    rx
                });
                self.handles.insert(id, Handle { protector, changes });
            }
            Step::Acquire {
                protector,
                permit,
                expect,
            } => {
                let (answer, granted) = acquire(&self.handle(&protector)?.protector).await;
                self.keep(permit, granted)?;
                check!(expect.matches(&answer), "expected {expect:?}, got {answer:?}");
            }
            Step::AcquireUntil {
                protector,
                permit,
                expect,
            } => {
                let p = self.handle(&protector)?.protector.clone();
                let give_up = Instant::now() + self.deadline;
                let mut last = None;
                loop {
                    check!(
                        Instant::now() < give_up,
                        "no answer matched {expect:?} within {:?}; the last was {last:?}",
                        self.deadline
                    );
                    let (answer, granted) = acquire(&p).await;
                    if expect.matches(&answer) {
                        match (permit, granted) {
                            (Some(name), Some(granted)) => {
                                self.permits.insert(name, granted);
                            }
                            (_, granted) => ignore(granted).await,
                        }
                        break;
                    }
                    ignore(granted).await;
                    last = Some(answer);
                    tokio::time::sleep(POLL).await;
                }
            }
            Step::Report {
                permit,
                outcome,
                expect,
            } => {
                let granted = self
                    .permits
                    .remove(&permit)
                    .ok_or_else(|| format!("no permit {permit:?}"))?;
                let resolved = granted
                    .resolve(match outcome {
                        Outcome::Success => resilient_circuit::Outcome::Success,
                        Outcome::Failure => resilient_circuit::Outcome::Failure,
                        Outcome::Ignore => resilient_circuit::Outcome::Ignored,
                    })
                    .await;
                if let Some(accepted) = expect.accepted {
                    check!(
                        resolved.accepted == accepted,
                        "expected accepted {accepted}, got {resolved:?}"
                    );
                }
            }
            Step::Execute {
                protector,
                result,
                times,
                expect,
            } => {
                let p = self.handle(&protector)?.protector.clone();
                for call in 1..=times {
                    let got = p
                        .call(|| async move {
                            match result {
                                CallResult::Ok => Ok(()),
                                CallResult::Fail => Err(Failed),
                            }
                        })
                        .await;
                    let what = format!("call {call} of {times}: expected {expect:?}, got {got:?}");
                    match (got, expect.outcome) {
                        (Ok(()), Ran::Ran) => check!(result == CallResult::Ok, "{what}"),
                        (Err(CallError::Failed(Failed)), Ran::Ran) => {
                            check!(result == CallResult::Fail, "{what}")
                        }
                        (Err(CallError::Rejected(r)), Ran::Rejected) => {
                            check!(
                                expect
                                    .reason
                                    .as_ref()
                                    .is_none_or(|want| *want == decision_reason(r.reason))
                                    && expect.fallback.is_none_or(|want| want == r.fallback),
                                "{what}"
                            );
                        }
                        _ => return Err(what),
                    }
                }
            }
            Step::Change {
                protector,
                from,
                to,
                reason,
            } => {
                let deadline = self.deadline;
                let changes = self.changes(&protector)?;
                let change = match tokio::time::timeout(deadline, changes.recv()).await {
                    Ok(Some(change)) => change,
                    Ok(None) => return Err("the status-change channel closed".to_owned()),
                    Err(_) => return Err(format!("no status change within {deadline:?}")),
                };
                let got = (status(change.from), status(change.to));
                check!(
                    got == (from.clone(), to.clone()),
                    "expected {from} -> {to}, got {change:?}"
                );
                if let Some(reason) = reason {
                    check!(
                        change.reason.map(transition_reason).as_ref() == Some(&reason),
                        "expected reason {reason}, got {change:?}"
                    );
                }
            }
            Step::NoChange { protector } => {
                if let Ok(extra) = self.changes(&protector)?.try_recv() {
                    return Err(format!("an unexpected (or repeated) status change: {extra:?}"));
                }
            }
            Step::Admin {
                action,
                name,
                status,
                kind,
            } => {
                let mut admin = self.admin().await?;
                match action {
                    AdminAction::SetStatus => {
                        let status = status.ok_or("set_status needs a status")?;
                        let status = v1::Status::from_str_name(&format!("STATUS_{status}"))
                            .ok_or_else(|| format!("no status {status}"))?;
                        support::set_status(&mut admin, &name, status, None).await;
                    }
                    AdminAction::SetOverride => {
                        let kind = kind.ok_or("set_override needs a kind")?;
                        let kind = v1::OverrideKind::from_str_name(&format!("OVERRIDE_KIND_{kind}"))
                            .ok_or_else(|| format!("no override kind {kind}"))?;
                        support::set_override(&mut admin, &name, kind, None).await;
                    }
                    AdminAction::Delete => {
                        support::delete(&mut admin, &name).await;
                    }
                }
            }
            Step::Inspect { name, expect } => {
                let mut client = self.protectors().await?;
                let give_up = Instant::now() + self.deadline;
                loop {
                    let p = support::get(&mut client, &name).await;
                    let mut wrong = Vec::new();
                    for (key, want) in &expect {
                        let got = field(&p, key)?;
                        if got != *want {
                            wrong.push(format!("{key}: expected {want}, got {got}"));
                        }
                    }
                    if wrong.is_empty() {
                        break;
                    }
                    check!(
                        Instant::now() < give_up,
                        "{name} within {:?}: {}",
                        self.deadline,
                        wrong.join("; ")
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
            Step::StopDaemon => {
                let daemon = self.daemon.take().ok_or("the daemon is stopped already")?;
                daemon.terminate().await;
            }
            Step::StartDaemon => {
                check!(self.daemon.is_none(), "the daemon is running");
                let mut args: Vec<String> = vec![
                    "--listen".into(),
                    self.addr.to_string(),
                    "--data-dir".into(),
                    self.dir.path().display().to_string(),
                ];
                args.extend(self.flags.iter().cloned());
                self.daemon = Some(Circuitd::launch_args(&args).await.serving());
            }
            Step::FreezeDaemon => self.daemon()?.freeze(),
            Step::ThawDaemon => self.daemon()?.thaw(),
        }
        Ok(())
    }

    fn changes(&mut self, id: &str) -> Result<&mut mpsc::UnboundedReceiver<StatusChange>, String> {
        self.handle(id)?
            .changes
            .as_mut()
            .ok_or_else(|| format!("protector {id:?} was made without `watch`"))
    }

    fn keep(&mut self, name: Option<String>, granted: Option<CallPermit>) -> Checked {
        match (name, granted) {
            (Some(name), Some(granted)) => {
                self.permits.insert(name, granted);
                Ok(())
            }
            (None, Some(granted)) => {
                drop(granted); // reported IGNORED by its Drop
                Err("a permit was admitted with no name to keep it under".to_owned())
            }
            (_, None) => Ok(()),
        }
    }

    async fn finish(mut self) {
        for (_, permit) in self.permits.drain() {
            permit.ignore().await;
        }
        drop(self.handles);
        if let Some(daemon) = self.daemon.take() {
            // A frozen daemon would hold its SIGTERM: thaw it first.
            daemon.thaw();
            daemon.terminate().await;
        }
    }
}

async fn acquire(p: &Protector) -> (Answer, Option<CallPermit>) {
    match p.acquire().await {
        Ok(permit) => {
            let source = if permit.is_local() {
                Source::Cache
            } else if permit.is_fallback() {
                Source::Fallback
            } else {
                Source::Daemon
            };
            let answer = Answer {
                decision: Decision::Admitted,
                trial: permit.is_trial(),
                source,
                reason: None,
                status: None,
                fallback: permit.is_fallback(),
                retry_after: false,
            };
            (answer, Some(permit))
        }
        Err(r) => {
            let answer = Answer {
                decision: Decision::Rejected,
                trial: false,
                source: if r.fallback {
                    Source::Fallback
                } else {
                    Source::Daemon
                },
                reason: Some(decision_reason(r.reason)),
                status: Some(status(r.status)),
                fallback: r.fallback,
                retry_after: r.retry_after.is_some(),
            };
            (answer, None)
        }
    }
}

/// The vectors spell enums as the proto does, without the prefix (`HALF_OPEN`).
fn wire_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_owned()
}

fn status(s: Status) -> String {
    wire_name(v1::Status::from(s).as_str_name(), "STATUS_")
}

fn decision_reason(r: DecisionReason) -> String {
    wire_name(v1::DecisionReason::from(r).as_str_name(), "DECISION_REASON_")
}

fn transition_reason(r: TransitionReason) -> String {
    wire_name(v1::TransitionReason::from(r).as_str_name(), "TRANSITION_REASON_")
}

async fn ignore(permit: Option<CallPermit>) {
    if let Some(permit) = permit {
        permit.ignore().await;
    }
}

/// A field of the daemon's protector as the vectors name it (README, `inspect`).
fn field(p: &v1::Protector, key: &str) -> Result<serde_json::Value, String> {
    let c = p.counters.unwrap_or_default();
    Ok(match key {
        "status" => {
            let status = v1::Status::try_from(p.status).map_err(|e| e.to_string())?;
            wire_name(status.as_str_name(), "STATUS_").into()
        }
        "generation" => p.generation.into(),
        "trials_in_flight" => p.trials_in_flight.into(),
        "consecutive_failures" => p.consecutive_failures.into(),
        "admitted" => c.admitted.into(),
        "rejected" => c.rejected.into(),
        "successes" => c.successes.into(),
        "failures" => c.failures.into(),
        "ignored" => c.ignored.into(),
        "stale_reports" => c.stale_reports.into(),
        "expired_permits" => c.expired_permits.into(),
        other => return Err(format!("inspect: no field {other:?}")),
    })
}

fn vectors_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_vector() {
    let file = File::read(&vectors_file());
    let only = std::env::var("CONFORMANCE_VECTOR").ok().filter(|v| !v.is_empty());
    let (deadline, mut played) = (file.deadline(), 0);
    for vector in file.vectors {
        if only.as_ref().is_some_and(|only| *only != vector.name) {
            continue;
        }
        eprintln!("vector {}: {}", vector.name, vector.description);
        let mut player = Player::start(&vector, deadline).await;
        let name = vector.name.clone();
        for (index, step) in vector.steps.into_iter().enumerate() {
            let what = format!("{step:?}");
            if let Err(why) = player.step(step).await {
                panic!("vector {name}, step {index} {what}: {why}");
            }
        }
        player.finish().await;
        eprintln!("vector {name}: passed");
        played += 1;
    }
    assert!(played > 0, "no vector played (CONFORMANCE_VECTOR={only:?})");
}
