//! The daemon's one error type, its one mapping to `tonic::Status`, and every conversion
//! into or out of it.
//!
//! Every failure a handler can answer with is a variant here, so the gRPC code and the
//! machine-readable details (google.rpc.BadRequest, ResourceInfo, QuotaFailure) are
//! decided in one table and clients can rely on them. A rejected Acquire is not an error.
//! No conversion here logs: an error is logged where it is handled, never where it is
//! passed on (a journal failure is logged once, by the journal, when it happens).
//! [`ServeError`], why serving stopped, lives here too, with its conversions.

use resilient_circuit_api::convert::FieldError;
use resilient_circuit_api::v1;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::store::StoreError;
use crate::watch::WatchError;

/// The `resource_type` of the ResourceInfo sent with NOT_FOUND.
pub const PROTECTOR_RESOURCE_TYPE: &str = "resilient_circuit.v1.Protector";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or invalid; `field` is its proto path.
    #[error("invalid {field}: {description}")]
    InvalidArgument {
        /// The field's path in the request, e.g. `policy.failure_limit.numerator`.
        field: String,
        /// What is wrong with it.
        description: String,
    },
    /// No protector has this name.
    #[error("no protector is named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A configured limit would be exceeded.
    #[error("the limit {limit} is reached: {description}")]
    ResourceExhausted {
        /// The limit's setting name, e.g. `max_protectors`.
        limit: &'static str,
        /// What hit the limit.
        description: String,
    },
    /// The protector is not in the state the request needs (SimulatePolicy of a
    /// protector that keeps no history).
    #[error("{description}")]
    FailedPrecondition {
        /// What the precondition is about, e.g. the protector's name.
        subject: String,
        /// What is missing, and how to get it.
        description: String,
    },
    /// The daemon is shutting down and takes no new work.
    #[error("circuitd is shutting down")]
    Unavailable,
    /// A replica that does not lead now (replicated mode): it lost, or could not
    /// confirm, its lease. UNAVAILABLE: retry, on this or another replica.
    #[error(
        "this replica does not lead the cluster now (its etcd lease is not confirmed, or an election is under way); retry"
    )]
    NotLeading,
    /// A bug or a broken invariant; the message is for the operator.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// INVALID_ARGUMENT for the request field at `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// NOT_FOUND for the protector `name`.
    pub fn not_found(name: impl Into<String>) -> Self {
        Error::NotFound { name: name.into() }
    }

    /// RESOURCE_EXHAUSTED for the configured `limit`.
    pub fn exhausted(limit: &'static str, description: impl Into<String>) -> Self {
        Error::ResourceExhausted {
            limit,
            description: description.into(),
        }
    }

    /// FAILED_PRECONDITION about `subject`.
    pub fn failed_precondition(subject: impl Into<String>, description: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            subject: subject.into(),
            description: description.into(),
        }
    }

    /// INTERNAL with a message for the operator.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// INVALID_ARGUMENT for a conversion error inside the message at `prefix`: a
    /// `failure_limit.numerator` error under `policy` names `policy.failure_limit.numerator`.
    pub fn from_field(prefix: &str, e: FieldError) -> Self {
        let field = match (prefix.is_empty(), e.field.is_empty()) {
            (true, _) => e.field,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", e.field),
        };
        Error::InvalidArgument {
            field,
            description: e.description,
        }
    }

    /// The gRPC code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::Unavailable | Error::NotLeading => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        }
    }
}

/// A change that cannot be made durable is not acknowledged: the client hears
/// UNAVAILABLE and may retry elsewhere or later.
impl From<StoreError> for Error {
    fn from(_: StoreError) -> Self {
        Error::Unavailable
    }
}

impl From<WatchError> for Error {
    fn from(e: WatchError) -> Self {
        match e {
            WatchError::TooManyWatchers(_) => Error::ResourceExhausted {
                limit: "max_watchers",
                description: e.to_string(),
            },
        }
    }
}

/// What a unary call's error would have said, as the answer to one request of a Session
/// or one batch of a ReportBatch.
impl From<Error> for v1::SessionError {
    fn from(e: Error) -> Self {
        let field = match &e {
            Error::InvalidArgument { field, .. } => field.clone(),
            _ => String::new(),
        };
        let status = tonic::Status::from(e);
        v1::SessionError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            field,
        }
    }
}

/// Why [`serve`](crate::serve) stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("the gRPC transport failed")]
    Transport(#[from] tonic::transport::Error),
    /// A connection thread could not be started, or stopped unexpectedly.
    #[error("connection threads: {0}")]
    Threads(String),
    /// Server reflection could not be built from the descriptor set.
    #[error("server reflection could not be built")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A journal write or fsync failed while serving: the daemon stopped deciding.
    #[error(
        "the journal failed ({0}); circuitd stopped so that nobody sees a change it could not keep. \
         Every acknowledged change is on disk: fix the disk (free space, replace it) and start circuitd again"
    )]
    JournalFailed(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = e.code();
        let message = e.to_string();
        let details = match e {
            Error::InvalidArgument { field, description } => {
                ErrorDetails::with_bad_request_violation(field, description)
            }
            Error::NotFound { name } => ErrorDetails::with_resource_info(
                PROTECTOR_RESOURCE_TYPE,
                name,
                "",
                "no protector has this name",
            ),
            Error::ResourceExhausted { limit, description } => {
                ErrorDetails::with_quota_failure_violation(limit, description)
            }
            Error::FailedPrecondition { subject, description } => {
                ErrorDetails::with_precondition_failure_violation("STATE", subject, description)
            }
            Error::Unavailable | Error::NotLeading | Error::Internal(_) => {
                return tonic::Status::new(code, message);
            }
        };
        tonic::Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_a_field_violation() {
        let status = tonic::Status::from(Error::invalid("name", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid name: must not be empty");
        let bad = status.get_details_bad_request().expect("BadRequest details");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "name");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
    }

    #[test]
    fn a_field_error_is_prefixed_with_its_message_path() {
        let cases = [
            (
                "policy",
                "failure_limit.numerator",
                "policy.failure_limit.numerator",
            ),
            ("permit", "generation", "permit.generation"),
            ("", "cooldown", "cooldown"),
            ("policy", "", "policy"),
        ];
        for (prefix, field, want) in cases {
            let e = Error::from_field(prefix, FieldError::new(field, "is wrong"));
            let status = tonic::Status::from(e);
            let bad = status.get_details_bad_request().expect("BadRequest details");
            assert_eq!(bad.field_violations[0].field, want);
            assert_eq!(status.message(), format!("invalid {want}: is wrong"));
        }
    }

    #[test]
    fn not_found_names_the_protector() {
        let status = tonic::Status::from(Error::not_found("payments-db"));
        assert_eq!(status.code(), Code::NotFound);
        assert!(
            status.message().contains("\"payments-db\""),
            "{}",
            status.message()
        );
        let info = status.get_details_resource_info().expect("ResourceInfo details");
        assert_eq!(info.resource_type, PROTECTOR_RESOURCE_TYPE);
        assert_eq!(info.resource_name, "payments-db");
    }

    #[test]
    fn resource_exhausted_names_the_limit() {
        let e = Error::exhausted("max_protectors", "100000 protectors exist already");
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("max_protectors"));
        let quota = status.get_details_quota_failure().expect("QuotaFailure details");
        assert_eq!(quota.violations.len(), 1);
        assert_eq!(quota.violations[0].subject, "max_protectors");
        assert_eq!(quota.violations[0].description, "100000 protectors exist already");
    }

    #[test]
    fn unavailable_and_internal_carry_no_details() {
        let status = tonic::Status::from(Error::Unavailable);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "circuitd is shutting down");
        assert!(status.details().is_empty());
        let status = tonic::Status::from(Error::internal("window overflow"));
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("window overflow"));
        assert!(status.details().is_empty());
    }
}
