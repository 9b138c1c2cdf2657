//! Replicated mode, failover (real etcd, real circuitd processes, loopback only): a
//! killed leader loses no acknowledged transition and its OPEN protectors keep their
//! deadlines on the new one; a stopped leader is fenced and rejoins as a follower; a
//! rolling restart of every replica loses nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::ReplicaRole;
use support::*;

/// A transition the cluster acknowledged: the protector and its generation after it.
#[derive(Debug, Clone)]
struct Acked {
    name: String,
    generation: u64,
}

/// Flips `name` between OPEN and CLOSED through any replica until `stop`, recording
/// every acknowledged transition.
fn flipper(
    uris: Vec<String>,
    name: String,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut any = Anywhere::new(uris);
        let mut open = true;
        while !stop.load(Ordering::Acquire) {
            let status = if open {
                v1::Status::Open
            } else {
                v1::Status::Closed
            };
            let open_for = open.then_some(Duration::from_secs(600));
            // Unknown outcomes (UNAVAILABLE past the deadline) are not recorded.
            if let Ok(answer) = any.set_status(&name, status, open_for).await {
                let generation = answer.protector.expect("protector").generation;
                acked.lock().unwrap().push(Acked {
                    name: name.clone(),
                    generation,
                });
                open = !open;
            }
        }
    })
}

/// Waits until at least `n` more transitions than `from` were acknowledged.
async fn acknowledged_past(acked: &Mutex<Vec<Acked>>, from: usize, n: usize) {
    eventually(
        async || {
            let count = acked.lock().unwrap().len();
            if count >= from + n { Ok(()) } else { Err(count) }
        },
        |count| format!("only {count} transitions acknowledged, waiting for {}", from + n),
    )
    .await;
}

/// Every acknowledged transition is in the cluster: each protector's generation is at
/// least the last one acknowledged for it.
async fn assert_kept(any: &mut Anywhere, acked: &[Acked]) {
    let mut last = std::collections::BTreeMap::<&str, u64>::new();
    for a in acked {
        let g = last.entry(a.name.as_str()).or_default();
        *g = (*g).max(a.generation);
    }
    for (name, generation) in last {
        let now = any
            .get(name)
            .await
            .expect("GetProtector")
            .protector
            .expect("protector");
        assert!(
            now.generation >= generation,
            "{name}: generation {} after failover, but {generation} was acknowledged",
            now.generation
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_transition_and_open_stays_open() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    let leader = replicas.leader().await;
    let mut any = Anywhere::new(replicas.uris());

    // OPEN before the kill, for ten minutes: the new leader keeps the same deadline.
    let mut opened = Vec::new();
    for i in 0..3 {
        let name = format!("held-{i}");
        let held = any.held_open(&name, Duration::from_secs(600)).await;
        opened.push((name, held));
    }
    // Load from several clients, each through a different replica first.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut flippers = Vec::new();
    for i in 0..3 {
        let name = format!("flip-{i}");
        any.ensure(&name).await.expect("ensure");
        let mut uris = replicas.uris();
        uris.rotate_left(i);
        flippers.push(flipper(uris, name, Arc::clone(&acked), Arc::clone(&stop)));
    }
    any.ensure("probe").await.expect("ensure");
    acknowledged_past(&acked, 0, 30).await;

    replicas.kill(leader).await;
    let killed = tokio::time::Instant::now();
    let mut survivors = Anywhere::new(
        (0..replicas.len())
            .filter(|&i| i != leader)
            .map(|i| format!("http://{}", replicas.addr(i)))
            .collect(),
    );
    survivors
        .acquire("probe")
        .await
        .expect("a decision after failover");
    println!(
        "time without a leader (kill -9 to the first decision on a survivor): {:?}",
        killed.elapsed()
    );
    let new_leader = replicas.new_leader(leader).await;
    let before = acked.lock().unwrap().len();
    acknowledged_past(&acked, before, 30).await;
    stop.store(true, Ordering::Release);
    for f in flippers {
        f.await.expect("flipper");
    }

    let acked = acked.lock().unwrap().clone();
    assert_kept(&mut survivors, &acked).await;
    let mut on_new = replicas.protectors(new_leader).await;
    for (name, before) in opened {
        let now = get(&mut on_new, &name).await;
        assert_eq!(now.status(), v1::Status::Open, "{name}");
        assert_eq!(
            (now.generation, now.open_until),
            (before.generation, before.open_until),
            "{name}: the new leader must keep the OPEN deadline"
        );
        let answer = acquire(&mut on_new, &name).await;
        assert_eq!(answer.decision(), v1::Decision::Rejected, "{name}");
        let retry_after = std_duration(answer.retry_after);
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_secs(600),
            "{name}: retry after {retry_after:?}, the rest of the cooldown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_fenced_and_rejoins_as_a_follower() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    let old = replicas.leader().await;
    let mut on_old = replicas.protectors(old).await;
    ensure(
        &mut on_old,
        "fenced",
        policy(Duration::from_secs(60), (1, 1), None),
    )
    .await;
    assert_eq!(
        acquire(&mut on_old, "fenced").await.decision(),
        v1::Decision::Admitted
    );

    replicas.freeze(old);
    let new = replicas.new_leader(old).await;
    let mut admin = replicas.admin(new).await;
    set_status(
        &mut admin,
        "fenced",
        v1::Status::Open,
        Some(Duration::from_secs(600)),
    )
    .await;
    replicas.thaw(old);

    // From the moment it runs again, the old leader never decides from its stale state
    // (CLOSED, which would admit): it answers UNAVAILABLE, or, once it follows, forwards
    // to the new leader, which rejects.
    let mut answers = 0;
    loop {
        match on_old
            .acquire(v1::AcquireRequest {
                name: "fenced".into(),
            })
            .await
        {
            Ok(answer) => {
                assert_eq!(
                    answer.get_ref().decision(),
                    v1::Decision::Rejected,
                    "the deposed leader decided from its stale state"
                );
            }
            Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        }
        answers += 1;
        if answers >= 5 && replicas.role(old).await == Some(ReplicaRole::Follower) {
            break;
        }
        assert!(answers < 10_000, "the old leader never rejoined as a follower");
    }
    replicas.wait_for_role(old, ReplicaRole::Follower).await;
    assert_eq!(get(&mut on_old, "fenced").await.status(), v1::Status::Open);
    assert!(
        replicas.stderr(old).contains("stepped down"),
        "{}",
        replicas.stderr(old)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_no_acknowledged_change() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 3, &[]).await;
    replicas.leader().await;
    let mut any = Anywhere::new(replicas.uris());
    let held = any.held_open("held", Duration::from_secs(600)).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    any.ensure("flip").await.expect("ensure");
    let load = flipper(
        replicas.uris(),
        "flip".into(),
        Arc::clone(&acked),
        Arc::clone(&stop),
    );
    let mut created = Vec::new();
    for i in 0..replicas.len() {
        let before = acked.lock().unwrap().len();
        acknowledged_past(&acked, before, 10).await;
        replicas.terminate(i).await;
        // Changes keep being acknowledged while it is down.
        let name = format!("made-while-{i}-down");
        assert!(any.ensure(&name).await.expect("ensure").created, "{name}");
        created.push(name);
        replicas.restart(i).await;
        replicas.leader().await;
    }
    let before = acked.lock().unwrap().len();
    acknowledged_past(&acked, before, 10).await;
    stop.store(true, Ordering::Release);
    load.await.expect("load");

    let acked = acked.lock().unwrap().clone();
    assert_kept(&mut any, &acked).await;
    for name in &created {
        any.get(name)
            .await
            .unwrap_or_else(|e| panic!("{name} was lost: {e:?}"));
    }
    let now = any.get("held").await.expect("get").protector.expect("protector");
    assert_eq!(
        (now.status(), now.generation, now.open_until),
        (v1::Status::Open, held.generation, held.open_until),
        "a protector's state was reset by the restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_permit_handed_out_before_a_failover_is_honoured_after_it() {
    let etcd = Etcd::single().await;
    let mut replicas = Replicas::start(&etcd, 2, &[]).await;
    let old = replicas.leader().await;
    let mut on_old = replicas.protectors(old).await;
    // One trial at a time in HALF_OPEN; one success closes.
    ensure(
        &mut on_old,
        "trial",
        policy(Duration::from_secs(60), (1, 1), Some((1, 1))),
    )
    .await;
    set_status(
        &mut replicas.admin(old).await,
        "trial",
        v1::Status::HalfOpen,
        None,
    )
    .await;
    let trial = acquire(&mut on_old, "trial").await;
    assert_eq!(trial.decision(), v1::Decision::Admitted);
    let permit = trial.permit.expect("a trial permit");
    assert_eq!(
        acquire(&mut on_old, "trial").await.decision(),
        v1::Decision::Rejected
    );

    replicas.kill(old).await;
    let new = replicas.new_leader(old).await;
    let mut on_new = replicas.protectors(new).await;
    // The permit is still in flight on the new leader: no second trial ...
    assert_eq!(
        acquire(&mut on_new, "trial").await.decision(),
        v1::Decision::Rejected
    );
    // ... and its report counts: the trial's success closes the protector.
    let reported = report(&mut on_new, "trial", permit, v1::Outcome::Success).await;
    assert!(reported.accepted, "{reported:?}");
    assert_eq!(reported.status(), v1::Status::Closed);
}
