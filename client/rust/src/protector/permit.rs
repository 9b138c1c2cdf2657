//! [`CallPermit`]: an admitted call, to resolve with its outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use resilient_circuit_api::v1;
use resilient_circuit_breaker::{self as breaker, Outcome, Status};

use super::state::{Hold, Inner};
use crate::batches::Last;
use crate::transport::Stats;

/// How a permit's report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Whether the outcome was recorded (by the daemon, or by a LOCAL fallback). False
    /// for a stale report, an ALLOW fallback's permit, and a report that was lost.
    pub accepted: bool,
    /// The daemon's status after the report; `None` when the daemon was not reached.
    pub status: Option<Status>,
}

impl Resolved {
    const NOT_RECORDED: Resolved = Resolved {
        accepted: false,
        status: None,
    };
}

/// Who gave the permit out, so its report goes back there.
#[derive(Debug)]
enum Grant {
    Daemon(v1::Permit),
    /// Admitted by a cached protector in this CLOSED generation.
    Cached(u64),
    Local(breaker::Permit),
    Allowed,
}

/// A report that needs the network.
#[derive(Debug)]
enum Network {
    Daemon(v1::Permit),
    /// A FAILURE of a cached permit, sent at once.
    CachedFailure(u64),
}

/// A call the protector admitted. Resolve it with the call's outcome; dropped
/// unresolved, it reports IGNORED (which frees a trial slot and records nothing).
///
/// The call's duration (for the policy's slow-call rule, and the daemon's what-if
/// history) is measured from the moment the permit was handed out to its
/// [`resolve`](Self::resolve), unless the caller gives its own with
/// [`resolve_timed`](Self::resolve_timed). A cached protector's local permit measures only
/// while the daemon's policy has a slow-call rule (see [`ProtectorBuilder::cached`](crate::ProtectorBuilder::cached)).
#[must_use = "resolve the permit with success(), failure() or ignore(); dropping it reports IGNORED"]
#[derive(Debug)]
pub struct CallPermit {
    protector: Hold,
    /// Taken when reported, so `Drop` knows whether it still has to.
    grant: Option<Grant>,
    trial: bool,
    /// When the permit was handed out, if its call is to be measured.
    started: Option<Instant>,
}

impl CallPermit {
    /// The daemon's permit, as it came (to be sent back as it is).
    pub(super) fn daemon(protector: Hold, permit: v1::Permit, trial: bool) -> CallPermit {
        CallPermit {
            protector,
            trial,
            grant: Some(Grant::Daemon(permit)),
            started: Some(Instant::now()),
        }
    }

    pub(super) fn local(protector: Hold, permit: breaker::Permit) -> CallPermit {
        CallPermit {
            protector,
            trial: permit.is_trial(),
            grant: Some(Grant::Local(permit)),
            // The LOCAL fallback's machine judges durations as the daemon does.
            started: Some(Instant::now()),
        }
    }

    pub(super) fn cached(protector: Hold, generation: u64) -> CallPermit {
        // The clock is read only when the daemon's policy judges durations.
        let measured = protector
            .cache
            .as_ref()
            .is_some_and(|c| c.slow_call_duration().is_some());
        CallPermit {
            protector,
            trial: false,
            grant: Some(Grant::Cached(generation)),
            started: measured.then(Instant::now),
        }
    }

    pub(super) fn allowed(protector: Hold) -> CallPermit {
        CallPermit {
            protector,
            trial: false,
            grant: Some(Grant::Allowed),
            started: None,
        }
    }

    /// Whether this is a HALF_OPEN trial (it holds one of the limited trial slots).
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Whether the declared fallback gave this permit out, not the daemon (nor a cached
    /// protector on the daemon's word).
    pub fn is_fallback(&self) -> bool {
        !matches!(self.grant, Some(Grant::Daemon(_) | Grant::Cached(_)))
    }

    /// Whether a cached protector admitted this call locally, without asking the daemon
    /// (see [`ProtectorBuilder::cached`](crate::ProtectorBuilder::cached)).
    pub fn is_local(&self) -> bool {
        matches!(self.grant, Some(Grant::Cached(_)))
    }

    /// The generation the call was admitted in, when the daemon's word admitted it
    /// (directly, or through a cached protector); `None` for a fallback's permit.
    pub fn generation(&self) -> Option<u64> {
        match self.grant.as_ref()? {
            Grant::Daemon(p) => Some(p.generation),
            Grant::Cached(generation) => Some(*generation),
            Grant::Local(_) | Grant::Allowed => None,
        }
    }

    /// Reports how the call went. Never fails: a report that cannot reach the daemon
    /// is logged and counted in [`ClientStats::reports_lost`](crate::client::ClientStats).
    ///
    /// A cached protector's local permit: a SUCCESS (or IGNORED) resolves at once with
    /// `accepted` true and `status` `None` (it is queued for the next batch; `accepted`
    /// is false for a slow success the full queue of slow calls drops); a FAILURE
    /// is sent at once and answers like a unary report.
    ///
    /// The report is made when the returned future is first polled, and the call's
    /// duration is measured then; a future dropped unpolled drops the permit, which
    /// reports IGNORED.
    pub fn resolve(self, outcome: Outcome) -> Resolve {
        Resolve::start(self, outcome, None)
    }

    /// Reports how the call went, with how long it took as the caller measured it
    /// (instead of the time since the permit was handed out).
    pub fn resolve_timed(self, outcome: Outcome, duration: Duration) -> Resolve {
        Resolve::start(self, outcome, Some(duration))
    }

    /// Reports SUCCESS.
    pub fn success(self) -> Resolve {
        self.resolve(Outcome::Success)
    }

    /// Reports FAILURE.
    pub fn failure(self) -> Resolve {
        self.resolve(Outcome::Failure)
    }

    /// Reports IGNORED: recorded nowhere, but frees a trial slot.
    pub fn ignore(self) -> Resolve {
        self.resolve(Outcome::Ignored)
    }

    /// The report's first step, on the future's first poll: what needs no I/O is done
    /// here; what needs the network comes back as a future that owns the permit.
    fn report(mut self, outcome: Outcome, timed: Option<Duration>) -> Result<Resolved, Remote> {
        let duration = timed.or_else(|| self.started.map(|t| t.elapsed()));
        let Some(grant) = self.grant.take() else {
            return Ok(Resolved::NOT_RECORDED);
        };
        match report_in_process(&self.protector, grant, outcome, duration) {
            Ok(resolved) => Ok(resolved),
            Err(Network::Daemon(permit)) => Err(Box::pin(async move {
                report_to_daemon(&self.protector, permit, outcome, duration).await
            })),
            Err(Network::CachedFailure(generation)) => {
                let last = Last {
                    generation,
                    outcome,
                    duration,
                };
                Err(Box::pin(
                    async move { report_cached(&self.protector, last).await },
                ))
            }
        }
    }
}

/// A report on its way to the daemon.
type Remote = Pin<Box<dyn Future<Output = Resolved> + Send>>;

/// The future of [`CallPermit::resolve`] and its shorthands. Like any future it does
/// nothing until polled.
///
/// What needs no I/O (a cached success, a fallback's permit) is done on the first poll,
/// and the future is ready at once. A report that goes to the daemon runs in a boxed
/// future of its own, so that this one stays a few words long: moving a future the
/// size of the whole gRPC exchange would cost more than a cached success.
#[must_use = "futures do nothing unless you `.await` or poll them; dropped unpolled, the permit reports IGNORED"]
pub struct Resolve {
    state: Reporting,
}

enum Reporting {
    Start {
        permit: CallPermit,
        outcome: Outcome,
        /// The caller's measure of the call; `None` to measure it from the permit.
        timed: Option<Duration>,
    },
    Remote(Remote),
    Done,
}

impl Resolve {
    fn start(permit: CallPermit, outcome: Outcome, timed: Option<Duration>) -> Resolve {
        Resolve {
            state: Reporting::Start {
                permit,
                outcome,
                timed,
            },
        }
    }
}

impl std::fmt::Debug for Resolve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Resolve");
        match &self.state {
            Reporting::Start { permit, outcome, .. } => d.field("permit", permit).field("outcome", outcome),
            Reporting::Remote(_) => d.field("state", &"reporting to the daemon"),
            Reporting::Done => d.field("state", &"done"),
        };
        d.finish()
    }
}

impl Future for Resolve {
    type Output = Resolved;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Resolved> {
        let this = &mut *self;
        match std::mem::replace(&mut this.state, Reporting::Done) {
            Reporting::Start {
                permit,
                outcome,
                timed,
            } => match permit.report(outcome, timed) {
                Ok(resolved) => return Poll::Ready(resolved),
                Err(remote) => this.state = Reporting::Remote(remote),
            },
            state => this.state = state,
        }
        let Reporting::Remote(remote) = &mut this.state else {
            panic!("`Resolve` polled after it completed");
        };
        let resolved = std::task::ready!(remote.as_mut().poll(cx));
        this.state = Reporting::Done;
        Poll::Ready(resolved)
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let Some(grant) = self.grant.take() else { return };
        // IGNORED of a cached permit needs no report, so only a daemon permit is left.
        let Err(Network::Daemon(permit)) = report_in_process(&self.protector, grant, Outcome::Ignored, None)
        else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let protector = self.protector.clone();
                runtime.spawn(async move {
                    report_to_daemon(&protector, permit, Outcome::Ignored, None).await;
                });
            }
            Err(_) => lost(
                &self.protector,
                Outcome::Ignored,
                "no Tokio runtime to report from",
            ),
        }
    }
}

fn lost(protector: &Inner, outcome: Outcome, why: &str) {
    Stats::bump(&protector.connection.stats.reports_lost);
    tracing::warn!(name = %protector.name, ?outcome, why, "a report could not reach the daemon and is dropped");
}

/// Reports what needs no I/O (a fallback's permit, a cached success); gives the rest back.
fn report_in_process(
    protector: &Inner,
    grant: Grant,
    outcome: Outcome,
    duration: Option<Duration>,
) -> Result<Resolved, Network> {
    match grant {
        Grant::Daemon(permit) => Err(Network::Daemon(permit)),
        Grant::Cached(generation) => match (outcome, &protector.cache) {
            (Outcome::Failure, _) => Err(Network::CachedFailure(generation)),
            (outcome, Some(cache)) => {
                let queued = outcome != Outcome::Success || cache.success_timed(generation, duration);
                if !queued {
                    Stats::bump(&protector.connection.stats.batched_lost);
                    tracing::warn!(name = %protector.name, "too many slow calls wait for a flush; one is dropped");
                }
                Ok(Resolved {
                    accepted: queued,
                    status: None,
                })
            }
            (_, None) => unreachable!("a cached permit comes from a cached protector"),
        },
        Grant::Local(permit) => Ok(Resolved {
            accepted: protector
                .local
                .as_ref()
                .is_some_and(|local| local.report(permit, outcome, duration)),
            status: None,
        }),
        Grant::Allowed => {
            Stats::bump(&protector.connection.stats.reports_dropped);
            Ok(Resolved::NOT_RECORDED)
        }
    }
}

pub(super) async fn report_to_daemon(
    protector: &Inner,
    permit: v1::Permit,
    outcome: Outcome,
    duration: Option<Duration>,
) -> Resolved {
    let link = &protector.connection.link;
    // While the link is in its backoff period the report would only wait for nothing.
    if link.is_down() {
        lost(protector, outcome, "the link to the daemon is down");
        return Resolved::NOT_RECORDED;
    }
    let timeout = protector.connection.config.request_timeout;
    let connection = &protector.connection;
    match connection
        .ask(timeout, |replica| {
            replica.report(&protector.name, permit, outcome, duration)
        })
        .await
    {
        Ok(r) => {
            if let Some(t) = &r.transition {
                protector.learned(t, r.revision);
            }
            Resolved {
                accepted: r.accepted,
                status: Status::try_from(r.status()).ok(),
            }
        }
        Err(why) => {
            lost(protector, outcome, &why.to_string());
            Resolved::NOT_RECORDED
        }
    }
}

/// A cached permit's FAILURE: sent at once, after the pending successes, and its answer
/// applied to the local state before this returns.
async fn report_cached(protector: &Inner, last: Last) -> Resolved {
    let Some(reporter) = protector.reporter() else {
        return Resolved::NOT_RECORDED;
    };
    match reporter.send(Some(last)).await {
        Some(r) if r.error.is_none() => Resolved {
            accepted: r.stale == 0,
            status: Status::try_from(r.status()).ok(),
        },
        _ => Resolved::NOT_RECORDED,
    }
}
