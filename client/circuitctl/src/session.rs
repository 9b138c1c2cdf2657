//! A session: the connection to the daemon and how its answers are printed.
//!
//! Every unary call is bounded by `--timeout` on the client side (a watch only until its
//! stream starts), so a daemon that accepts connections but never answers cannot hang a
//! script. Output goes through [`Session::print`], which reports a closed pipe as an error
//! that `main` treats as a quiet exit rather than a panic.
//!
//! The connection is made eagerly, as the load generator makes its own (its
//! [`connect`](resilient_circuit_loadgen::connect) serves both), so an unreachable daemon
//! (exit 3) is told apart from an error answer (exit 1) in the same words everywhere.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilient_circuit_api::Bearer;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::Failure;
use crate::render::{self, Json, Style, Wire};

/// The connection every stub goes through: the channel, with the `--token` on each call.
pub type Wired = InterceptedService<Channel, Bearer>;

/// A connection to the daemon and how to print its answers.
#[derive(Debug)]
pub struct Session {
    addr: String,
    timeout: Duration,
    channel: Channel,
    bearer: Bearer,
    json: Option<Json>,
    style: Style,
    /// Whether anything was printed (a request is then not sent to another address).
    printed: AtomicBool,
}

impl Session {
    /// Connects to `addr` within `timeout`; answers print as JSON with `json`, else as
    /// tables, coloured when stdout is a terminal; every call carries `bearer`, over TLS
    /// when `tls` is given.
    pub async fn open(
        addr: String,
        timeout: Duration,
        json: bool,
        bearer: Bearer,
        tls: Option<&tonic::transport::ClientTlsConfig>,
    ) -> Result<Session, Failure> {
        let json = if json { Some(Json::new()?) } else { None };
        let channel = resilient_circuit_loadgen::connect_with(&addr, timeout, tls).await?;
        Ok(Session {
            addr,
            timeout,
            channel,
            bearer,
            json,
            style: Style::detect(),
            printed: AtomicBool::new(false),
        })
    }

    /// A data-plane client on the session's connection.
    pub fn protectors(&self) -> ProtectorServiceClient<Wired> {
        ProtectorServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// An admin client on the session's connection.
    pub fn admin(&self) -> AdminServiceClient<Wired> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// Awaits a call for at most `--timeout`.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Failure::from_status(&self.addr, status)),
            Err(_) => Err(Failure::Rpc(tonic::Status::deadline_exceeded(format!(
                "no answer from {} within {}",
                self.addr,
                render::human(self.timeout)
            )))),
        }
    }

    /// Prints one answer: indented JSON with `--json`, else the table `table` draws.
    pub fn show<M: Wire>(&self, message: &M, table: impl FnOnce() -> String) -> Result<ExitCode, Failure> {
        let text = match &self.json {
            Some(json) => json.pretty(message)? + "\n",
            None => table(),
        };
        self.print(&text)?;
        Ok(ExitCode::SUCCESS)
    }

    /// Writes `text` to stdout and flushes, so a watcher's lines appear as they come.
    pub fn print(&self, text: &str) -> Result<(), Failure> {
        self.printed.store(true, Ordering::Relaxed);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Whether anything was printed yet.
    pub fn printed(&self) -> bool {
        self.printed.load(Ordering::Relaxed)
    }

    /// The daemon's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How tables and watch lines are painted.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The JSON printer, with `--json`.
    pub fn json(&self) -> Option<&Json> {
        self.json.as_ref()
    }
}
