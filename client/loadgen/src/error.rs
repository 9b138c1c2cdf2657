//! Why a run failed, in the three kinds a caller gives different exit codes.
//!
//! A daemon that cannot be reached (the transport failed, or it answered UNAVAILABLE
//! while shutting down) is told apart from an error status it answered, and both from
//! everything else (the echo baseline failing, no decision completing, a watcher's
//! stream breaking). Errors inside the measured window are not errors of the run: they
//! are counted in the figures.

/// A run's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection to the daemon at `addr`, or it answered UNAVAILABLE.
    #[error("cannot reach circuitd at {addr}: {cause}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why, as the transport (or the status) tells it.
        cause: String,
    },
    /// The daemon answered a setup call with an error status (or no answer came within
    /// the timeout: DEADLINE_EXCEEDED).
    #[error("circuitd answered {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// A local I/O failure, e.g. of the echo baseline's socket.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else; `source`, when present, is the cause under `message`.
    #[error("{message}")]
    Other {
        /// What failed.
        message: String,
        /// Why, when another error says it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// Classifies a status from a call to `addr`: a transport failure or a daemon that is
    /// shutting down means it cannot be reached; anything else is its answer.
    pub fn from_status(addr: &str, status: tonic::Status) -> Error {
        if status.code() == tonic::Code::Unavailable {
            return Error::Unreachable {
                addr: addr.to_owned(),
                cause: status.message().to_owned(),
            };
        }
        Error::Status(status)
    }

    /// A failure that `message` says all about.
    pub(crate) fn other(message: impl Into<String>) -> Error {
        Error::Other {
            message: message.into(),
            source: None,
        }
    }

    /// A failure described by `message`, caused by `source`.
    pub(crate) fn because(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Other {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_means_unreachable_and_other_codes_are_answers() {
        let e = Error::from_status("http://a:1", tonic::Status::unavailable("shutting down"));
        assert!(
            matches!(&e, Error::Unreachable { addr, cause } if addr == "http://a:1" && cause == "shutting down")
        );
        let e = Error::from_status("http://a:1", tonic::Status::not_found("x"));
        assert!(matches!(e, Error::Status(s) if s.code() == tonic::Code::NotFound));
    }

    #[test]
    fn the_cause_follows_the_message_in_the_chain() {
        let io = std::io::Error::other("refused");
        let e = Error::because("cannot bind the echo baseline", io);
        assert_eq!(e.to_string(), "cannot bind the echo baseline");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("refused"));
    }
}
