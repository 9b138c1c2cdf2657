//! Each subcommand: one request, its answer printed as a table or as JSON.
//!
//! Every unary call is bounded by `--timeout` on the client side (a watch only until its
//! stream starts), so a daemon that accepts connections but never answers cannot hang a
//! script. Output goes through [`Session::print`], which reports a closed pipe as an error
//! that `main` treats as a quiet exit rather than a panic.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::cli::{Cli, Command};
use crate::error::{EXIT_REJECTED, Failure};
use crate::render::{self, Json, Style, Wire};
use crate::{bench, view, watch};

/// A connection to the daemon and how to print its answers.
#[derive(Debug)]
pub struct Session {
    addr: String,
    timeout: Duration,
    channel: Channel,
    json: Option<Json>,
    style: Style,
}

/// Runs the command line's command; `Ok` carries the exit code of an answered command.
pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let command = match cli.command {
        // The load generator opens connections of its own, and none in echo mode.
        Command::Bench(args) => return bench::run(args, &cli.addr, cli.timeout, cli.json).await,
        command => command,
    };
    let json = if cli.json { Some(Json::new()?) } else { None };
    let channel = connect(&cli.addr, cli.timeout).await?;
    let session = Session {
        addr: cli.addr,
        timeout: cli.timeout,
        channel,
        json,
        style: Style::detect(),
    };
    session.dispatch(command).await
}

/// Connects eagerly, so an unreachable daemon is told apart from an error answer.
pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Channel, Failure> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| anyhow!("invalid --addr {addr:?}: {e}"))?
        .connect_timeout(timeout);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(Failure::Unreachable {
            addr: addr.to_owned(),
            cause: causes(&e),
        }),
        Err(_) => Err(Failure::Unreachable {
            addr: addr.to_owned(),
            cause: format!("no connection within {}", render::human(timeout)),
        }),
    }
}

/// An error and its sources joined by `: `, skipping a source whose text a previous level
/// already repeats (the transport's errors often embed their cause).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

impl Session {
    async fn dispatch(self, command: Command) -> Result<ExitCode, Failure> {
        let style = self.style;
        match command {
            Command::List {
                prefix,
                page_size,
                page_token,
                all_pages,
            } => self.list(prefix, page_size, page_token, all_pages).await,
            Command::Get { name } => {
                let r = self
                    .call(self.protectors().get_protector(v1::GetProtectorRequest { name }))
                    .await?;
                self.show(&r, || view::get(&r, style))
            }
            Command::Ensure { name, policy } => {
                let req = v1::EnsureProtectorRequest {
                    name,
                    policy: Some(policy.to_policy()),
                };
                let r = self.call(self.protectors().ensure_protector(req)).await?;
                self.show(&r, || view::ensure(&r, style))
            }
            Command::Acquire { name } => {
                let r = self
                    .call(self.protectors().acquire(v1::AcquireRequest { name }))
                    .await?;
                self.show(&r, || view::acquire(&r, style))?;
                if r.decision == v1::Decision::Admitted as i32 {
                    Ok(ExitCode::SUCCESS)
                } else {
                    Ok(ExitCode::from(EXIT_REJECTED))
                }
            }
            Command::Report {
                name,
                permit,
                generation,
                outcome,
            } => {
                let req = v1::ReportRequest {
                    name,
                    permit: Some(v1::Permit {
                        generation,
                        id: permit,
                        expires_at: None,
                    }),
                    outcome: v1::Outcome::from(outcome) as i32,
                };
                let r = self.call(self.protectors().report(req)).await?;
                self.show(&r, || view::report(&r, style))
            }
            Command::Watch(args) => watch::run(&self, self.protectors(), args.to_request(), args.count).await,
            Command::SetStatus {
                name,
                status,
                open_for,
            } => {
                let req = v1::SetStatusRequest {
                    name,
                    status: v1::Status::from(status) as i32,
                    open_for: open_for.map(resilient_circuit_api::convert::duration),
                };
                let r = self.call(self.admin().set_status(req)).await?;
                self.show(&r, || view::set_status(&r, style))
            }
            Command::Override {
                name,
                kind,
                expires_after,
            } => {
                let req = v1::SetOverrideRequest {
                    name,
                    kind: v1::OverrideKind::from(kind) as i32,
                    expires_after: expires_after.map(resilient_circuit_api::convert::duration),
                };
                let r = self.call(self.admin().set_override(req)).await?;
                self.show(&r, || view::changed(r.protector.as_ref(), r.revision, style))
            }
            Command::UpdatePolicy { name, policy } => {
                let req = v1::UpdatePolicyRequest {
                    name,
                    policy: Some(policy.to_policy()),
                };
                let r = self.call(self.admin().update_policy(req)).await?;
                self.show(&r, || view::changed(r.protector.as_ref(), r.revision, style))
            }
            Command::Delete { name } => {
                let req = v1::DeleteProtectorRequest { name: name.clone() };
                let r = self.call(self.admin().delete_protector(req)).await?;
                self.show(&r, || view::delete(&name, &r))
            }
            Command::Bench(args) => bench::run(args, &self.addr, self.timeout, self.json.is_some()).await,
        }
    }

    async fn list(
        &self,
        prefix: String,
        page_size: u32,
        mut page_token: String,
        all_pages: bool,
    ) -> Result<ExitCode, Failure> {
        let mut all = v1::ListProtectorsResponse::default();
        loop {
            let req = v1::ListProtectorsRequest {
                prefix: prefix.clone(),
                page_size,
                page_token,
            };
            let page = self.call(self.protectors().list_protectors(req)).await?;
            all.protectors.extend(page.protectors);
            all.revision = page.revision;
            all.next_page_token = page.next_page_token;
            if !all_pages || all.next_page_token.is_empty() {
                break;
            }
            page_token = std::mem::take(&mut all.next_page_token);
        }
        let code = self.show(&all, || view::list(&all.protectors, self.style))?;
        if !all.next_page_token.is_empty() && self.json.is_none() {
            eprintln!(
                "more protectors follow: --page-token {} (or --all-pages)",
                all.next_page_token
            );
        }
        Ok(code)
    }

    /// A data-plane client on the session's connection.
    pub fn protectors(&self) -> ProtectorServiceClient<Channel> {
        ProtectorServiceClient::new(self.channel.clone())
    }

    fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
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
    fn show<M: Wire>(&self, message: &M, table: impl FnOnce() -> String) -> Result<ExitCode, Failure> {
        let text = match &self.json {
            Some(json) => json.pretty(message)? + "\n",
            None => table(),
        };
        self.print(&text)?;
        Ok(ExitCode::SUCCESS)
    }

    /// Writes `text` to stdout and flushes, so a watcher's lines appear as they come.
    pub fn print(&self, text: &str) -> Result<(), Failure> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// The daemon's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How watch lines are painted.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The JSON printer, with `--json`.
    pub fn json(&self) -> Option<&Json> {
        self.json.as_ref()
    }
}
