//! Fifty SIGKILLs at random moments while clients create, trip, set and override
//! protectors: after every restart nothing acknowledged is missing, and the revision
//! never goes backwards.
//!
//! Each client task owns its protectors (names `t<task>-<n>`) and works on them one
//! call at a time, so when the daemon dies each protector has at most one call in
//! flight. A protector without one must come back exactly as the last acknowledged
//! answer left it (generation, status, override, policy, mod_revision); one with a call
//! in flight may also show that call's effect, never less than what was acknowledged.
//! The kill moments come from a seeded generator (each life is killed once its clients
//! have had a random number of changes acknowledged), so a failure names its seed and
//! iteration, and no wall-clock wait decides what is tested.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::watch_event::Event;
use support::process::Circuitd;
use support::*;

const SEED: u64 = 0x5eed_c0ff_ee15_2024;
const KILLS: usize = 50;
const TASKS: usize = 4;
/// Each life is killed after between these many acknowledged changes.
const MIN_ACKS: u64 = 3;
const MAX_ACKS: u64 = 40;

/// A tiny xorshift64 generator: reproducible kill moments and operations.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the last acknowledged answer said about a protector.
#[derive(Debug, Clone, PartialEq)]
struct Known {
    generation: u64,
    status: i32,
    r#override: Option<v1::Override>,
    policy: Option<v1::Policy>,
    mod_revision: u64,
}

impl Known {
    fn of(p: &v1::Protector) -> Known {
        Known {
            generation: p.generation,
            status: p.status,
            r#override: p.r#override,
            policy: p.policy,
            mod_revision: p.mod_revision,
        }
    }
}

/// One acknowledged change: an RPC that returned OK after making it durable.
#[derive(Debug, Clone)]
struct Ack {
    name: String,
    what: &'static str,
    revision: u64,
    generation: u64,
    /// For SetOverride: the override it set.
    r#override: Option<i32>,
}

/// The call a task had in flight when the daemon died.
#[derive(Debug, Clone)]
enum InFlight {
    Create,
    SetOverride(i32),
    Other,
}

/// What one task did in one life of the daemon.
#[derive(Debug, Default)]
struct TaskLog {
    known: HashMap<String, Known>,
    acks: Vec<Ack>,
    in_flight: Option<(String, InFlight)>,
    /// A failure that was not the daemon dying: the test fails with it.
    unexpected: Option<String>,
}

struct Task {
    id: usize,
    /// Acknowledged changes in this life, across every task: the kill waits for them.
    acked: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
    rng: XorShift,
    next_name: u64,
    client: ProtectorClient,
    admin: AdminClient,
    log: TaskLog,
}

fn random_policy(rng: &mut XorShift) -> v1::Policy {
    let failure = if rng.chance(50) { (1, 1) } else { (2, 3) };
    let success = rng.chance(30).then_some((1, 2));
    v1::Policy {
        // Trial permits never expire during the run: no change happens by the clock alone.
        permit_ttl: Some(duration(Duration::from_secs(3600))),
        ..policy(Duration::from_millis(rng.range(10, 150)), failure, success)
    }
}

impl Task {
    /// Marks `name` as having `what` in flight; cleared once the call returns.
    fn begin(&mut self, name: &str, what: InFlight) {
        self.log.in_flight = Some((name.to_owned(), what));
    }

    fn ack(&mut self, name: &str, what: &'static str, revision: u64, r#override: Option<i32>) {
        self.log.in_flight = None;
        self.acked.send_modify(|n| *n += 1);
        let generation = self.log.known[name].generation;
        self.log.acks.push(Ack {
            name: name.to_owned(),
            what,
            revision,
            generation,
            r#override,
        });
    }

    /// Runs random calls until one fails (the daemon died).
    async fn run(mut self) -> TaskLog {
        let Err(status) = self.steps().await;
        if matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::FailedPrecondition
                | tonic::Code::ResourceExhausted
                | tonic::Code::AlreadyExists
                | tonic::Code::OutOfRange
        ) {
            self.log.unexpected = Some(format!("task {}: {status:?}", self.id));
        }
        self.log
    }

    async fn steps(&mut self) -> Result<Infallible, tonic::Status> {
        loop {
            // The three newest protectors are worked on, so each trips and reopens often;
            // older ones only have to stay as they were left.
            let mut names: Vec<(u64, String)> = self
                .log
                .known
                .keys()
                .map(|n| {
                    (
                        n.rsplit('-')
                            .next()
                            .and_then(|i| i.parse().ok())
                            .expect("t<task>-<n>"),
                        n.clone(),
                    )
                })
                .collect();
            names.sort_unstable();
            if names.len() < 3 || self.rng.chance(2) {
                self.create().await?;
                continue;
            }
            let active = &names[names.len() - 3..];
            let name = active[self.rng.range(0, 3) as usize].1.clone();
            match self.rng.next() % 100 {
                0..=49 => self.call(&name).await?,
                50..=69 => self.set_status(&name).await?,
                70..=89 => self.set_override(&name).await?,
                _ => self.update_policy(&name).await?,
            }
        }
    }

    async fn create(&mut self) -> Result<(), tonic::Status> {
        let name = format!("t{}-{}", self.id, self.next_name);
        self.next_name += 1;
        let policy = random_policy(&mut self.rng);
        self.begin(&name, InFlight::Create);
        let r = self
            .client
            .ensure_protector(v1::EnsureProtectorRequest {
                name: name.clone(),
                policy: Some(policy),
            })
            .await?
            .into_inner();
        assert!(r.created, "{name} existed before it was created");
        self.log
            .known
            .insert(name.clone(), Known::of(&r.protector.expect("protector")));
        self.ack(&name, "create", r.revision, None);
        Ok(())
    }

    async fn call(&mut self, name: &str) -> Result<(), tonic::Status> {
        self.begin(name, InFlight::Other);
        let a = self
            .client
            .acquire(v1::AcquireRequest { name: name.into() })
            .await?
            .into_inner();
        self.log.in_flight = None;
        let Some(permit) = a.permit else {
            return Ok(());
        };
        let known = self.log.known.get_mut(name).expect("owned");
        if a.reason == v1::DecisionReason::Trial as i32 {
            if permit.generation != known.generation {
                // The cooldown ended: this Acquire moved it to HALF_OPEN, durably.
                known.generation = permit.generation;
                known.status = a.status;
                known.mod_revision = a.revision;
                self.ack(name, "acquire-trial", a.revision, None);
            }
        } else {
            assert_eq!(
                permit.generation, known.generation,
                "{name}: an Acquire outside HALF_OPEN changed the generation: {a:?}"
            );
        }
        let outcome = if self.rng.chance(55) {
            v1::Outcome::Failure
        } else {
            v1::Outcome::Success
        };
        self.begin(name, InFlight::Other);
        let r = self
            .client
            .report(v1::ReportRequest {
                name: name.into(),
                permit: Some(permit),
                outcome: outcome as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        self.log.in_flight = None;
        if let Some(t) = r.transition {
            let known = self.log.known.get_mut(name).expect("owned");
            known.generation = t.generation;
            known.status = t.to;
            known.mod_revision = r.revision;
            self.ack(name, "report-transition", r.revision, None);
        }
        Ok(())
    }

    async fn set_status(&mut self, name: &str) -> Result<(), tonic::Status> {
        let (status, open_for) = match self.rng.next() % 4 {
            0 => (v1::Status::Closed, None),
            1 => (v1::Status::Open, None),
            2 => (
                v1::Status::Open,
                Some(duration(Duration::from_millis(self.rng.range(5, 120)))),
            ),
            _ => (v1::Status::HalfOpen, None),
        };
        self.begin(name, InFlight::Other);
        let r = self
            .admin
            .set_status(v1::SetStatusRequest {
                name: name.into(),
                status: status as i32,
                open_for,
            })
            .await?
            .into_inner();
        self.log
            .known
            .insert(name.to_owned(), Known::of(&r.protector.expect("protector")));
        self.ack(name, "set-status", r.revision, None);
        Ok(())
    }

    async fn set_override(&mut self, name: &str) -> Result<(), tonic::Status> {
        let kind = match self.rng.next() % 3 {
            0 => v1::OverrideKind::None,
            1 => v1::OverrideKind::ForcedOpen,
            _ => v1::OverrideKind::Disabled,
        };
        let expires_after = (kind != v1::OverrideKind::None && self.rng.chance(50))
            .then(|| duration(Duration::from_secs(3600)));
        self.begin(name, InFlight::SetOverride(kind as i32));
        let r = self
            .admin
            .set_override(v1::SetOverrideRequest {
                name: name.into(),
                kind: kind as i32,
                expires_after,
            })
            .await?
            .into_inner();
        self.log
            .known
            .insert(name.to_owned(), Known::of(&r.protector.expect("protector")));
        self.ack(name, "set-override", r.revision, Some(kind as i32));
        Ok(())
    }

    async fn update_policy(&mut self, name: &str) -> Result<(), tonic::Status> {
        let policy = random_policy(&mut self.rng);
        self.begin(name, InFlight::Other);
        let r = self
            .admin
            .update_policy(v1::UpdatePolicyRequest {
                name: name.into(),
                policy: Some(policy),
            })
            .await?
            .into_inner();
        self.log
            .known
            .insert(name.to_owned(), Known::of(&r.protector.expect("protector")));
        self.ack(name, "update-policy", r.revision, None);
        Ok(())
    }
}

/// Everything acknowledged so far and what the daemon must come back with.
#[derive(Debug, Default)]
struct Model {
    known: HashMap<String, Known>,
    /// The acknowledged changes of the life that just ended.
    acks: Vec<Ack>,
    in_flight: HashMap<String, InFlight>,
    /// Every acknowledged revision so far, at most.
    max_acked: u64,
    /// The revision the last restart came back with.
    last_recovered: u64,
}

impl Model {
    /// Checks the recovered protectors against every acknowledgement, then takes them as
    /// the new baseline (they are on disk now).
    fn check(&mut self, life: usize, recovered: &[v1::Protector], revision: u64) {
        let at = format!("seed {SEED:#x}, after kill {life}");
        let by_name: HashMap<&str, &v1::Protector> = recovered.iter().map(|p| (p.name.as_str(), p)).collect();
        assert!(
            revision >= self.max_acked,
            "{at}: revision {revision} is behind acknowledged revision {}",
            self.max_acked
        );
        assert!(
            revision >= self.last_recovered,
            "{at}: revision went backwards from {} to {revision}",
            self.last_recovered
        );
        for ack in &self.acks {
            let p = by_name
                .get(ack.name.as_str())
                .unwrap_or_else(|| panic!("{at}: acknowledged {} of {} but it is gone", ack.what, ack.name));
            assert!(
                p.generation >= ack.generation,
                "{at}: {ack:?} acknowledged generation {}, recovered {}",
                ack.generation,
                p.generation
            );
            assert!(
                ack.revision <= revision,
                "{at}: {ack:?} is past revision {revision}"
            );
        }
        // The last acknowledged override of each protector holds unless a later call
        // (one in flight at the kill) may have replaced it.
        let mut last_override: HashMap<&str, &Ack> = HashMap::new();
        for ack in self.acks.iter().filter(|a| a.r#override.is_some()) {
            last_override.insert(ack.name.as_str(), ack);
        }
        for (name, ack) in last_override {
            let kind = by_name[name].r#override.map(|o| o.kind);
            let superseded = matches!(self.in_flight.get(name), Some(InFlight::SetOverride(_)));
            assert!(
                superseded || kind == ack.r#override,
                "{at}: {ack:?} but the recovered override is {kind:?}"
            );
        }
        for (name, known) in &self.known {
            let p = by_name
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{at}: the acknowledged protector {name} is gone"));
            let got = Known::of(p);
            match self.in_flight.get(name) {
                None => assert_eq!(
                    &got, known,
                    "{at}: {name} differs from its last acknowledged state"
                ),
                Some(what) => {
                    assert!(
                        got.generation >= known.generation && got.mod_revision >= known.mod_revision,
                        "{at}: {name} went back from {known:?} to {got:?} ({what:?} in flight)"
                    );
                    let kind = got.r#override.map(|o| o.kind);
                    let allowed = match what {
                        InFlight::SetOverride(k) => kind == Some(*k),
                        _ => false,
                    };
                    assert!(
                        allowed || got.r#override == known.r#override,
                        "{at}: {name} override {:?}, acknowledged {:?} ({what:?} in flight)",
                        got.r#override,
                        known.r#override
                    );
                }
            }
        }
        for p in recovered {
            assert!(
                self.known.contains_key(&p.name)
                    || matches!(self.in_flight.get(&p.name), Some(InFlight::Create)),
                "{at}: {} exists but was never created",
                p.name
            );
        }
        self.known = recovered.iter().map(|p| (p.name.clone(), Known::of(p))).collect();
        self.acks.clear();
        self.in_flight.clear();
        self.last_recovered = revision;
    }

    fn absorb(&mut self, log: TaskLog) {
        if let Some(e) = log.unexpected {
            panic!("seed {SEED:#x}: a call failed for another reason than the kill: {e}");
        }
        self.max_acked = log.acks.iter().map(|a| a.revision).fold(self.max_acked, u64::max);
        self.acks.extend(log.acks);
        if let Some((name, what)) = log.in_flight {
            self.in_flight.insert(name, what);
        }
        self.known.extend(log.known);
    }
}

/// A watcher resuming from `from`, the newest revision acknowledged before the kill:
/// SYNCED at once when that is the recovered `revision`, else RESYNC COMPACTED and a
/// snapshot (the restarted daemon keeps no history), never a replay that skips. The
/// epoch stays the directory's; returns it.
async fn resume(client: &mut ProtectorClient, from: u64, epoch: Option<u64>, revision: u64) -> Option<u64> {
    let mut watcher = Watcher::open(
        client,
        v1::WatchRequest {
            start_revision: Some(from),
            start_epoch: epoch,
            ..watch_all()
        },
    )
    .await;
    let first = watcher.next().await;
    let synced = match first.event {
        Some(Event::Synced(s)) if from == revision => s,
        Some(Event::Resync(r)) if from < revision && r.reason == v1::ResyncReason::Compacted as i32 => {
            match watcher.next_until_synced().await {
                Some(Event::Synced(s)) => s,
                other => panic!("expected SYNCED after RESYNC, got {other:?}"),
            }
        }
        other => panic!("resuming from {from} at revision {revision}: {other:?}"),
    };
    if let Some(epoch) = epoch {
        assert_eq!(synced.epoch, epoch, "the epoch changed across a restart");
    }
    Some(synced.epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9s_lose_nothing_acknowledged() {
    let dir = TempDir::new("crash-recovery");
    // Small segments: the kills also land during rotations and snapshots.
    let flags = ["--segment-bytes", "16384", "--flush-interval", "20ms"];
    let mut rng = XorShift(SEED);
    let mut model = Model::default();
    let mut total_acks = 0;
    let mut epoch = None;
    for life in 0..=KILLS {
        let daemon = Circuitd::start(dir.path(), &flags).await;
        let mut client = daemon.protectors().await;
        let (recovered, revision) = list_all(&mut client).await;
        let resumed_from = model.max_acked;
        model.check(life, &recovered, revision);
        epoch = resume(&mut client, resumed_from, epoch, revision).await;
        if life == KILLS {
            daemon.terminate().await;
            break;
        }
        let mut tasks = Vec::new();
        let acked = std::sync::Arc::new(tokio::sync::watch::Sender::new(0usize));
        for id in 0..TASKS {
            let prefix = format!("t{id}-");
            let known: HashMap<String, Known> = model
                .known
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, k)| (n.clone(), k.clone()))
                .collect();
            let task = Task {
                id,
                acked: std::sync::Arc::clone(&acked),
                rng: XorShift(rng.next() | 1),
                next_name: u64::try_from(known.len()).expect("few") + (life as u64) * 1000,
                client: daemon.protectors().await,
                admin: daemon.admin().await,
                log: TaskLog {
                    known,
                    ..TaskLog::default()
                },
            };
            tasks.push(tokio::spawn(task.run()));
        }
        model.known.retain(|n, _| !n.starts_with('t'));
        // The kill moment is what this test varies: after a random number of
        // acknowledged changes, while the other tasks have calls in flight.
        let kill_after = rng.range(MIN_ACKS, MAX_ACKS + 1) as usize;
        let mut progress = acked.subscribe();
        tokio::time::timeout(DEADLINE, progress.wait_for(|&n| n >= kill_after))
            .await
            .unwrap_or_else(|_| panic!("life {life}: fewer than {kill_after} changes acknowledged"))
            .expect("the tasks hold the sender");
        let exit = daemon.kill().await;
        exit.assert_no_panic();
        for task in tasks {
            let log = tokio::time::timeout(DEADLINE, task)
                .await
                .expect("a client task did not notice the kill")
                .expect("client task");
            total_acks += log.acks.len();
            model.absorb(log);
        }
    }
    assert!(
        total_acks >= MIN_ACKS as usize * KILLS,
        "only {total_acks} acknowledged changes in {KILLS} lives"
    );
}
