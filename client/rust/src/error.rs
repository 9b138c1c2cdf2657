//! What a protected call can end with besides its own result.

use std::time::Duration;

use resilient_circuit_breaker::{DecisionReason, Status};

/// A call the protector did not let through. Carries what the library's
/// `ProtectedCallError` lacked: the status and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protector {name:?} rejected the call ({reason:?}, status {status:?}{})", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
pub struct Rejection {
    /// The protector's name.
    pub name: String,
    /// The protector's status when it rejected.
    pub status: Status,
    /// Why: Open, TrialsExhausted or ForcedOpen; with `fallback` set, the local reason.
    pub reason: DecisionReason,
    /// When asking again may succeed, if known.
    pub retry_after: Option<Duration>,
    /// True when the daemon could not be asked and the declared fallback decided.
    pub fallback: bool,
}

/// How a protected call, or a composition of policies around it, ended in error.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The protector rejected the call; it did not run.
    #[error(transparent)]
    Rejected(Rejection),
    /// The call ran and failed with its own error.
    #[error("the protected call failed")]
    Failed(#[source] E),
    /// A retry policy gave up after `attempts` attempts; `last` is the final error.
    #[error("gave up after {attempts} attempts")]
    RetryLimitReached {
        /// Attempts made, the first included.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<CallError<E>>,
    },
}

impl<E> CallError<E> {
    /// The rejection, if the call (or its last attempt) was rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self.last() {
            CallError::Rejected(r) => Some(r),
            _ => None,
        }
    }

    /// The call's own error, if it (or its last attempt) ran and failed.
    pub fn failure(&self) -> Option<&E> {
        match self.last() {
            CallError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The error that decided: this one, or for a retry's give-up the error of its last
    /// attempt, through any number of nested give-ups. Never `RetryLimitReached`.
    pub(crate) fn last(&self) -> &CallError<E> {
        let mut error = self;
        while let CallError::RetryLimitReached { last, .. } = error {
            error = last;
        }
        error
    }
}

/// Errors of the client itself (not of a protected call).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon's address is not a valid URI.
    #[error("invalid daemon address {uri:?}: {reason}")]
    InvalidUri {
        /// The address given.
        uri: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The token given to [`ClientBuilder::token`](crate::ClientBuilder::token) cannot
    /// travel in a header.
    #[error(transparent)]
    InvalidToken(#[from] resilient_circuit_api::bearer::InvalidToken),
    /// The daemon answered with an error status.
    #[error("the daemon answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The daemon could not be reached in time.
    #[error("the daemon could not be reached within {0:?}")]
    Timeout(Duration),
    /// The daemon sent something this client cannot understand.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}
