//! [`CallPermit`]: an admitted call, to resolve with its outcome.

use std::sync::Arc;

use resilient_circuit_api::breaker::{self, Outcome, Status};
use resilient_circuit_api::v1;

use super::{Inner, status};
use crate::client::Stats;
use crate::watcher;

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
    Local(breaker::Permit),
    Allowed,
}

/// A call the protector admitted. Resolve it with the call's outcome; dropped
/// unresolved, it reports IGNORED (which frees a trial slot and records nothing).
#[must_use = "resolve the permit with success(), failure() or ignore(); dropping it reports IGNORED"]
#[derive(Debug)]
pub struct CallPermit {
    protector: Arc<Inner>,
    /// Taken when reported, so `Drop` knows whether it still has to.
    grant: Option<Grant>,
    trial: bool,
}

impl CallPermit {
    pub(super) fn daemon(protector: Arc<Inner>, permit: v1::Permit) -> CallPermit {
        CallPermit {
            protector,
            trial: permit.id != 0,
            grant: Some(Grant::Daemon(permit)),
        }
    }

    pub(super) fn local(protector: Arc<Inner>, permit: breaker::Permit, trial: bool) -> CallPermit {
        CallPermit {
            protector,
            trial,
            grant: Some(Grant::Local(permit)),
        }
    }

    pub(super) fn allowed(protector: Arc<Inner>) -> CallPermit {
        CallPermit {
            protector,
            trial: false,
            grant: Some(Grant::Allowed),
        }
    }

    /// Whether this is a HALF_OPEN trial (it holds one of the limited trial slots).
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Whether the declared fallback gave this permit out, not the daemon.
    pub fn is_fallback(&self) -> bool {
        !matches!(self.grant, Some(Grant::Daemon(_)))
    }

    /// Reports how the call went. Never fails: a report that cannot reach the daemon
    /// is logged and counted in [`ClientStats::reports_lost`](crate::client::ClientStats).
    pub async fn resolve(mut self, outcome: Outcome) -> Resolved {
        match self
            .grant
            .take()
            .map(|g| report_in_process(&self.protector, g, outcome))
        {
            Some(Err(permit)) => report_to_daemon(&self.protector, permit, outcome).await,
            Some(Ok(resolved)) => resolved,
            None => Resolved::NOT_RECORDED,
        }
    }

    /// Reports SUCCESS.
    pub async fn success(self) -> Resolved {
        self.resolve(Outcome::Success).await
    }

    /// Reports FAILURE.
    pub async fn failure(self) -> Resolved {
        self.resolve(Outcome::Failure).await
    }

    /// Reports IGNORED: recorded nowhere, but frees a trial slot.
    pub async fn ignore(self) -> Resolved {
        self.resolve(Outcome::Ignored).await
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let Some(grant) = self.grant.take() else { return };
        let Err(permit) = report_in_process(&self.protector, grant, Outcome::Ignored) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let protector = Arc::clone(&self.protector);
                runtime.spawn(async move {
                    report_to_daemon(&protector, permit, Outcome::Ignored).await;
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
    Stats::bump(&protector.shared.stats.reports_lost);
    tracing::warn!(name = %protector.name, ?outcome, why, "a report could not reach the daemon and is dropped");
}

/// Reports a fallback's permit, which needs no I/O; gives a daemon permit back.
fn report_in_process(protector: &Inner, grant: Grant, outcome: Outcome) -> Result<Resolved, v1::Permit> {
    match grant {
        Grant::Daemon(permit) => Err(permit),
        Grant::Local(permit) => Ok(Resolved {
            accepted: protector
                .local
                .as_ref()
                .is_some_and(|local| local.report(permit, outcome)),
            status: None,
        }),
        Grant::Allowed => {
            Stats::bump(&protector.shared.stats.reports_dropped);
            Ok(Resolved::NOT_RECORDED)
        }
    }
}

async fn report_to_daemon(protector: &Inner, permit: v1::Permit, outcome: Outcome) -> Resolved {
    let link = &protector.shared.link;
    // While the link is in its backoff period the report would only wait for nothing.
    if link.is_down() {
        lost(protector, outcome, "the link to the daemon is down");
        return Resolved::NOT_RECORDED;
    }
    let timeout = protector.shared.config.request_timeout;
    let request = v1::ReportRequest {
        name: protector.name.clone(),
        permit: Some(permit),
        outcome: v1::Outcome::from(outcome) as i32,
    };
    match tokio::time::timeout(timeout, protector.rpc().report(request)).await {
        Ok(Ok(response)) => {
            link.up();
            let r = response.into_inner();
            if let Some(change) = r
                .transition
                .as_ref()
                .and_then(|t| watcher::change(&protector.name, t))
            {
                protector.notifier.transition(change, r.revision);
            }
            Resolved {
                accepted: r.accepted,
                status: status(r.status),
            }
        }
        Ok(Err(status)) => {
            let why = format!("{}: {}", status.code(), status.message());
            if watcher::unreachable(&status) {
                link.failed(&why);
            }
            lost(protector, outcome, &why);
            Resolved::NOT_RECORDED
        }
        Err(_) => {
            let why = format!("no answer within {timeout:?}");
            link.failed(&why);
            lost(protector, outcome, &why);
            Resolved::NOT_RECORDED
        }
    }
}
