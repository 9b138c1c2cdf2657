//! Why a command failed, what the operator reads, and the exit code scripts rely on.
//!
//! Exit codes: 1 the daemon answered with an error, 3 it could not be reached (connection
//! refused, a timeout while connecting, UNAVAILABLE while it shuts down), 4 `acquire` was
//! rejected. 2 (usage) is clap's own and never passes through here.
//!
//! A gRPC error's machine-readable details arrive as an encoded google.rpc.Status; the few
//! messages needed to show a BadRequest's field violations are declared below rather than
//! pulling in a crate for them.

use std::fmt;
use std::process::ExitCode;

use prost::Message;

/// The daemon answered with an error.
pub const EXIT_ERROR: u8 = 1;
/// The daemon could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// `acquire` was answered REJECTED.
pub const EXIT_REJECTED: u8 = 4;

/// A command's failure.
#[derive(Debug)]
pub enum Failure {
    /// No connection to the daemon at `addr`.
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why, as the transport tells it.
        cause: String,
    },
    /// The daemon answered with an error status.
    Rpc(tonic::Status),
    /// Anything else, e.g. an address that is not a URI or output that cannot be written.
    Other(anyhow::Error),
}

impl Failure {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Unreachable { .. } => ExitCode::from(EXIT_UNREACHABLE),
            Failure::Rpc(_) | Failure::Other(_) => ExitCode::from(EXIT_ERROR),
        }
    }

    /// Whether the daemon could not be reached (another replica may answer).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Failure::Unreachable { .. })
    }

    /// Whether stdout was closed under us.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Failure::Other(e) => e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
            _ => false,
        }
    }

    /// Classifies a status from a call to `addr`: a transport failure or a daemon that is
    /// shutting down means it cannot be reached; anything else is its answer. The load
    /// generator's rule serves, so `bench` and every other command agree.
    pub fn from_status(addr: &str, status: tonic::Status) -> Failure {
        resilient_circuit_loadgen::Error::from_status(addr, status).into()
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// The load generator's failures, told apart as this module tells its own.
impl From<resilient_circuit_loadgen::Error> for Failure {
    fn from(e: resilient_circuit_loadgen::Error) -> Self {
        use resilient_circuit_loadgen::Error;
        match e {
            Error::Unreachable { addr, cause } => Failure::Unreachable { addr, cause },
            Error::Status(status) => Failure::Rpc(status),
            Error::Io(e) => Failure::from(e),
            other @ Error::Other { .. } => Failure::Other(other.into()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable { addr, cause } => {
                write!(f, "circuitctl: cannot reach circuitd at {addr}: {cause}")
            }
            Failure::Rpc(status) => {
                write!(
                    f,
                    "circuitctl: {}: {}",
                    code_name(status.code()),
                    status.message()
                )?;
                for v in field_violations(status.details()) {
                    write!(f, "\n  field {}: {}", v.field, v.description)?;
                }
                Ok(())
            }
            Failure::Other(e) => write!(f, "circuitctl: {e:#}"),
        }
    }
}

/// The gRPC code as the protocol spells it, e.g. `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// google.rpc.Status, the envelope of a gRPC error's details.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// google.rpc.BadRequest.
#[derive(Clone, PartialEq, Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

/// google.rpc.BadRequest.FieldViolation.
#[derive(Clone, PartialEq, Message)]
pub struct FieldViolation {
    /// The request field's path, e.g. `policy.failure_limit.numerator`.
    #[prost(string, tag = "1")]
    pub field: String,
    /// What is wrong with it.
    #[prost(string, tag = "2")]
    pub description: String,
}

const BAD_REQUEST_TYPE_URL: &str = "type.googleapis.com/google.rpc.BadRequest";

/// The field violations in an error's encoded details; none when there are no details or
/// they cannot be decoded (the message alone still says what went wrong).
pub fn field_violations(details: &[u8]) -> Vec<FieldViolation> {
    let Ok(status) = RpcStatus::decode(details) else {
        return Vec::new();
    };
    status
        .details
        .iter()
        .filter(|any| any.type_url == BAD_REQUEST_TYPE_URL)
        .filter_map(|any| BadRequest::decode(any.value.as_slice()).ok())
        .flat_map(|b| b.field_violations)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_the_protocol_does() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Internal), "INTERNAL");
    }

    #[test]
    fn bad_request_violations_are_listed_under_the_message() {
        let bad = BadRequest {
            field_violations: vec![FieldViolation {
                field: "policy.failure_limit.numerator".into(),
                description: "must be at most the denominator".into(),
            }],
        };
        let details = RpcStatus {
            code: tonic::Code::InvalidArgument as i32,
            message: "bad".into(),
            details: vec![prost_types::Any {
                type_url: BAD_REQUEST_TYPE_URL.into(),
                value: bad.encode_to_vec(),
            }],
        };
        let status = tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "invalid policy",
            details.encode_to_vec().into(),
        );
        let text = Failure::Rpc(status).to_string();
        assert_eq!(
            text,
            "circuitctl: INVALID_ARGUMENT: invalid policy\n  \
             field policy.failure_limit.numerator: must be at most the denominator"
        );
        assert!(field_violations(b"\xff\xff").is_empty());
    }
}
