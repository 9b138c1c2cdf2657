//! The file-descriptor limit against `max_connections`.
//!
//! Each connection is a descriptor, and each listener takes up to `max_connections` of
//! them. A process often starts with a soft `RLIMIT_NOFILE` of 1,024 (a shell's, or
//! systemd's default), far below the default cap of 10,000 connections: past it, accepts
//! fail with EMFILE and newcomers wait (the acceptor logs and pauses) although the cap
//! says they are welcome. So at start the daemon raises its soft limit, up to the hard
//! one, to what its listeners may hold plus [`RESERVED`] for its own files (the journal,
//! etcd's connections, the certificates it reads). It raises it no higher than that, and
//! never lowers it. Where the hard limit is too low, it says so once, with what to change:
//! the cap is then not what it seems, but nothing else is wrong, so the daemon still starts.

/// Descriptors kept for the daemon's own files, beside its listeners' connections.
pub const RESERVED: u64 = 256;

/// What the daemon did about its descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The soft limit already allowed what is wanted.
    Enough,
    /// The soft limit was raised from `from` to `to`, which allows what is wanted.
    Raised { from: u64, to: u64 },
    /// Even the hard limit does not allow `wanted`: the soft limit is now `soft` (raised
    /// to the hard limit if it was lower).
    Short { soft: u64, wanted: u64 },
}

/// The descriptors `listeners` listeners of `max_connections` each may need, with the
/// reserve.
pub fn wanted(max_connections: usize, listeners: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(listeners as u64)
        .saturating_add(RESERVED)
}

/// The soft limit to set for `wanted` descriptors, given the current limits: `None` to
/// leave it (already enough, or already at the hard limit).
pub fn raise_to(soft: u64, hard: u64, wanted: u64) -> Option<u64> {
    let to = wanted.min(hard);
    (to > soft).then_some(to)
}

/// Raises the soft `RLIMIT_NOFILE` for `max_connections` on each of `listeners`
/// listeners, and logs what it did: a warning when the limit stays short, or when it
/// cannot be read or set (the daemon still starts).
pub fn ensure(max_connections: usize, listeners: usize) {
    let wanted = wanted(max_connections, listeners);
    let limit = match apply(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file descriptor limit (RLIMIT_NOFILE)");
            return;
        }
    };
    match limit {
        Limit::Enough => {}
        Limit::Raised { from, to } => tracing::info!(
            "raised the file descriptor limit from {from} to {to}: {listeners} listener(s) of up to \
             {max_connections} connections (max_connections), and {RESERVED} for the daemon's own files"
        ),
        Limit::Short { soft, wanted } => tracing::warn!(
            "the file descriptor limit is {soft}, below the {wanted} that {listeners} listener(s) of up \
             to {max_connections} connections (max_connections) and {RESERVED} for the daemon's own files \
             need: connections past about {} will wait for a descriptor; raise the hard limit \
             (`ulimit -Hn`, systemd's LimitNOFILE=) or lower max_connections",
            soft.saturating_sub(RESERVED)
        ),
    }
}

fn apply(wanted: u64) -> std::io::Result<Limit> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let now = match raise_to(soft, hard, wanted) {
        None => soft,
        Some(to) => {
            rlimit::Resource::NOFILE.set(to, hard)?;
            to
        }
    };
    Ok(if now < wanted {
        Limit::Short { soft: now, wanted }
    } else if now > soft {
        Limit::Raised { from: soft, to: now }
    } else {
        Limit::Enough
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_what_is_wanted_within_the_hard_limit() {
        // (soft, hard, wanted) -> the soft limit to set
        let cases = [
            ((1_024, 1_048_576, 10_256), Some(10_256)),
            ((1_024, 4_096, 10_256), Some(4_096)),
            ((1_024, 1_024, 10_256), None),
            ((65_536, 1_048_576, 10_256), None),
            ((10_256, 20_000, 10_256), None),
            ((300, u64::MAX, 1_256), Some(1_256)),
        ];
        for ((soft, hard, wanted), expected) in cases {
            assert_eq!(
                raise_to(soft, hard, wanted),
                expected,
                "soft {soft}, hard {hard}, wanted {wanted}"
            );
        }
    }

    #[test]
    fn each_listener_may_hold_max_connections_beside_the_reserve() {
        assert_eq!(wanted(10_000, 1), 10_000 + RESERVED);
        assert_eq!(wanted(10_000, 3), 30_000 + RESERVED);
        assert_eq!(wanted(usize::MAX, 3), u64::MAX);
    }
}
