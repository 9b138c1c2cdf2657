//! A replicated leader's right to decide, bounded in time by its etcd lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A leader's right to decide, in time: valid until an instant its lease cannot have
/// expired before. Each keepalive etcd answers extends it to the keepalive's sending
/// instant plus the lease's time to live, less a margin; nothing else does. A leader
/// whose keepalives stop being answered (etcd unreachable, or the process stopped)
/// thus stops deciding before etcd can hand the lease to another replica: the check
/// reads the monotonic clock, which keeps running while a process is stopped.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base`; 0 = not valid.
    until: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl Fence {
    /// Valid until `until` (never moves an earlier revoke back, see [`Fence::revoke`]).
    pub fn extend_to(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.fetch_max(nanos.max(1), Ordering::AcqRel);
    }

    /// No longer valid, until extended by a new term (see [`Fence::renew`]).
    pub fn revoke(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Valid until `until`, even if an earlier extension reached later (a new term).
    pub fn renew(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.store(nanos.max(1), Ordering::Release);
    }

    /// Whether a decision may be made now.
    pub fn is_valid(&self) -> bool {
        self.remaining() > Duration::ZERO
    }

    /// How long the right to decide lasts from now.
    pub fn remaining(&self) -> Duration {
        let until = Duration::from_nanos(self.until.load(Ordering::Acquire));
        until.saturating_sub(self.base.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_valid_only_until_its_last_extension_and_never_after_a_revoke() {
        let fence = Fence::default();
        assert!(!fence.is_valid(), "a new fence grants nothing");
        let later = Instant::now() + Duration::from_secs(60);
        fence.extend_to(later);
        assert!(fence.is_valid());
        // An extension never shortens it.
        fence.extend_to(Instant::now());
        assert!(fence.remaining() > Duration::from_secs(50));
        fence.revoke();
        assert!(!fence.is_valid());
        // A past instant grants nothing; a new term may set an earlier end.
        fence.renew(Instant::now() - Duration::from_millis(1));
        assert!(!fence.is_valid());
        fence.renew(later);
        assert!(fence.is_valid());
    }
}
