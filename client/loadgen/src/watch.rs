//! The watch shape: how long one transition takes to reach many watchers.
//!
//! It opens `--watchers` Watch streams on one protector (a names filter), spread over
//! `--connections`, and waits until every one has sent SYNCED. Then it makes
//! `--transitions` SetStatus calls, alternating OPEN and CLOSED, one at a time: the clock
//! starts just before a call is sent, and each watcher's task reads the same monotonic
//! clock when its STATUS_CHANGED arrives. The next call waits until the change has
//! reached every watcher, so each figure is one transition's fan-out and nothing else.
//! With `--hold` the streams stay open that long afterwards (to read the daemon's memory
//! with its watchers idle); the moment they are all synced is announced on stderr.
//!
//! Every wait is bounded: no watcher synced, or no delivery, for `--timeout` ends the run
//! with an error naming how far it got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use resilient_circuit_api::v1::{self, watch_event::Event};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::args::Args;
use crate::daemon::{connect, within};
use crate::error::Error;
use crate::report::NOTE;
use crate::tally::latency_histogram;

/// The protector every watcher watches.
const NAME: &str = "bench-watch";

/// How long an OPEN set by the bench lasts: far longer than any run, so the status only
/// changes when the bench changes it.
const OPEN_FOR: Duration = Duration::from_secs(3600);

/// When a STATUS_CHANGED of some revision reached a watcher.
type Delivery = (u64, Instant);

/// What the watchers' tasks and the driver share.
#[derive(Debug, Default)]
struct Shared {
    synced: AtomicUsize,
    delivered: AtomicUsize,
    progress: Notify,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn failed(&self, why: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
        drop(first);
        self.progress.notify_one();
    }

    fn error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `count` reaches `target`; fails when it has not moved for `stall`.
    async fn reach(
        &self,
        count: &AtomicUsize,
        target: usize,
        stall: Duration,
        what: &str,
    ) -> Result<(), Error> {
        let mut seen = count.load(Ordering::Acquire);
        while seen < target {
            if let Some(why) = self.error() {
                return Err(Error::other(format!("a watcher failed: {why}")));
            }
            let moved = tokio::time::timeout(stall, self.progress.notified())
                .await
                .is_ok();
            let now = count.load(Ordering::Acquire);
            if !moved && now == seen {
                return Err(Error::other(format!(
                    "{what}: {now} of {target}, nothing more within {stall:?}"
                )));
            }
            seen = now;
        }
        Ok(())
    }
}

/// Runs the watch shape against the daemon at `addr` and prints its figures.
pub async fn run(args: &Args, addr: &str, timeout: Duration, json: bool) -> Result<(), Error> {
    let watchers = args.watchers as usize;
    let admin_channel = connect(addr, timeout).await?;
    prepare(addr, &admin_channel, timeout).await?;
    let connections = (args.connections.unwrap_or(8) as usize).clamp(1, watchers);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(addr, timeout).await?);
    }

    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let opening = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..watchers {
        let client = ProtectorServiceClient::new(channels[i % connections].clone());
        tasks.spawn(watcher(client, Arc::clone(&shared), stop_rx.clone(), timeout));
    }
    let outcome = async {
        shared
            .reach(&shared.synced, watchers, timeout, "watchers synced")
            .await?;
        let synced_in = opening.elapsed();
        eprintln!("{NOTE}: {watchers} watchers synced in {synced_in:?}");
        let mut admin = AdminServiceClient::new(admin_channel.clone());
        let mut sent = Vec::with_capacity(args.transitions as usize);
        for k in 0..args.transitions as usize {
            let open = k % 2 == 0;
            let req = v1::SetStatusRequest {
                name: NAME.to_owned(),
                status: if open {
                    v1::Status::Open
                } else {
                    v1::Status::Closed
                } as i32,
                open_for: open.then(|| OPEN_FOR.try_into().expect("an hour fits")),
            };
            let started = Instant::now();
            let answer = bounded(addr, timeout, admin.set_status(req)).await?;
            sent.push((answer.revision, started));
            let what = format!("transition {} of {} reached watchers", k + 1, args.transitions);
            shared
                .reach(&shared.delivered, watchers * (k + 1), timeout, &what)
                .await?;
        }
        if !args.hold.is_zero() {
            eprintln!("{NOTE}: holding {watchers} watchers open for {:?}", args.hold);
            tokio::time::sleep(args.hold).await;
        }
        Ok::<_, Error>((synced_in, sent))
    };
    let outcome = outcome.await;
    // Every task ends on the stop signal, whatever happened to the run.
    let _ = stop_tx.send(true);
    let mut deliveries = Vec::with_capacity(watchers);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(mine) => deliveries.push(mine),
            Err(e) => shared.failed(format!("a watcher's task ended abnormally: {e}")),
        }
    }
    let (synced_in, sent) = outcome?;
    let figures = Figures::new(&sent, &deliveries);
    let text = if json {
        figures.json(args, connections, synced_in)
    } else {
        figures.text(args, connections, synced_in)
    };
    print!("{text}");
    if let Some(why) = shared.error() {
        return Err(Error::other(format!("a watcher failed: {why}")));
    }
    Ok(())
}

/// Creates the protector if needed and brings it to CLOSED.
async fn prepare(addr: &str, channel: &Channel, timeout: Duration) -> Result<(), Error> {
    let fraction = |numerator, denominator| {
        Some(v1::Fraction {
            numerator,
            denominator,
        })
    };
    let policy = v1::Policy {
        cooldown: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        failure_limit: fraction(1000, 1000),
        ..v1::Policy::default()
    };
    let mut client = ProtectorServiceClient::new(channel.clone());
    let req = v1::EnsureProtectorRequest {
        name: NAME.to_owned(),
        policy: Some(policy),
    };
    let ensured = bounded(addr, timeout, client.ensure_protector(req)).await?;
    if ensured.protector.map(|p| p.status) != Some(v1::Status::Closed as i32) {
        let mut admin = AdminServiceClient::new(channel.clone());
        let req = v1::SetStatusRequest {
            name: NAME.to_owned(),
            status: v1::Status::Closed as i32,
            open_for: None,
        };
        bounded(addr, timeout, admin.set_status(req)).await?;
    }
    Ok(())
}

/// Awaits one call for at most `timeout`.
async fn bounded<T>(
    addr: &str,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Error> {
    within(addr, timeout, call)
        .await?
        .ok_or_else(|| Error::other(format!("no answer from {addr} within {timeout:?}")))
}

/// One watcher: opens its stream, counts itself synced, then notes when each
/// STATUS_CHANGED arrives until told to stop. Returns what it noted.
async fn watcher(
    mut client: ProtectorServiceClient<Channel>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
) -> Vec<Delivery> {
    let mut noted = Vec::new();
    let req = v1::WatchRequest {
        filter: Some(v1::watch_request::Filter::Names(v1::NameList {
            names: vec![NAME.to_owned()],
        })),
        ..v1::WatchRequest::default()
    };
    let mut stream = match tokio::time::timeout(timeout, client.watch(req)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            shared.failed(format!("Watch: {:?}: {}", status.code(), status.message()));
            return noted;
        }
        Err(_) => {
            shared.failed(format!("Watch did not start within {timeout:?}"));
            return noted;
        }
    };
    loop {
        let message = tokio::select! {
            biased;
            message = stream.message() => message,
            _ = stop.changed() => return noted,
        };
        let event = match message {
            Ok(Some(event)) => event,
            Ok(None) => {
                shared.failed("the daemon ended a Watch stream".to_owned());
                return noted;
            }
            Err(status) => {
                shared.failed(format!("Watch: {:?}: {}", status.code(), status.message()));
                return noted;
            }
        };
        let counter = match &event.event {
            Some(Event::StatusChanged(_)) => {
                noted.push((event.revision, Instant::now()));
                &shared.delivered
            }
            Some(Event::Synced(_)) => &shared.synced,
            Some(Event::Resync(_)) => {
                shared.failed(format!("RESYNC at revision {}", event.revision));
                return noted;
            }
            _ => continue,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        shared.progress.notify_one();
    }
}

/// The latencies of one run.
#[derive(Debug)]
struct Figures {
    /// Every (watcher, transition) delivery, from the SetStatus being sent.
    all_ns: Histogram<u64>,
    /// Per transition: until its last watcher got it.
    last_ns: Histogram<u64>,
    /// Deliveries of a revision no SetStatus of this run answered with.
    unmatched: u64,
}

impl Figures {
    fn new(sent: &[(u64, Instant)], deliveries: &[Vec<Delivery>]) -> Figures {
        let mut figures = Figures {
            all_ns: latency_histogram(),
            last_ns: latency_histogram(),
            unmatched: 0,
        };
        let index: HashMap<u64, usize> = sent.iter().enumerate().map(|(k, (rev, _))| (*rev, k)).collect();
        let mut last = vec![0u64; sent.len()];
        for (revision, at) in deliveries.iter().flatten() {
            let Some(&k) = index.get(revision) else {
                figures.unmatched += 1;
                continue;
            };
            let ns = u64::try_from(at.saturating_duration_since(sent[k].1).as_nanos()).unwrap_or(u64::MAX);
            figures.all_ns.saturating_record(ns.max(1));
            last[k] = last[k].max(ns.max(1));
        }
        for ns in last.into_iter().filter(|&ns| ns > 0) {
            figures.last_ns.saturating_record(ns);
        }
        figures
    }

    fn us(h: &Histogram<u64>, q: f64) -> f64 {
        h.value_at_quantile(q) as f64 / 1_000.0
    }

    fn json(&self, args: &Args, connections: usize, synced_in: Duration) -> String {
        let object = json!({
            "mode": "watch",
            "watchers": args.watchers,
            "connections": connections,
            "transitions": args.transitions,
            "deliveries": self.all_ns.len(),
            "unmatched": self.unmatched,
            "p50_us": Self::us(&self.all_ns, 0.5),
            "p99_us": Self::us(&self.all_ns, 0.99),
            "p999_us": Self::us(&self.all_ns, 0.999),
            "max_us": self.all_ns.max() as f64 / 1_000.0,
            "last_watcher_p50_us": Self::us(&self.last_ns, 0.5),
            "last_watcher_p99_us": Self::us(&self.last_ns, 0.99),
            "synced_s": synced_in.as_secs_f64(),
            "hold_s": args.hold.as_secs_f64(),
        });
        serde_json::to_string_pretty(&object).expect("a JSON value always prints") + "\n"
    }

    fn text(&self, args: &Args, connections: usize, synced_in: Duration) -> String {
        let mut out = format!(
            "bench watch: {} watchers of one protector on {connections} connection(s), {} transitions\n",
            args.watchers, args.transitions
        );
        out += &format!("  synced in       {synced_in:?}\n");
        out += &format!(
            "  deliveries      {:>12}   ({} unmatched)\n",
            self.all_ns.len(),
            self.unmatched
        );
        out += &format!(
            "  latency µs      p50 {:.0}  p99 {:.0}  p999 {:.0}  max {:.0}   (SetStatus sent to one watcher's STATUS_CHANGED)\n",
            Self::us(&self.all_ns, 0.5),
            Self::us(&self.all_ns, 0.99),
            Self::us(&self.all_ns, 0.999),
            self.all_ns.max() as f64 / 1_000.0,
        );
        out += &format!(
            "  last watcher µs p50 {:.0}  p99 {:.0}   (per transition, until every watcher had it)\n",
            Self::us(&self.last_ns, 0.5),
            Self::us(&self.last_ns, 0.99),
        );
        out
    }
}
