//! Each subcommand: one request, its answer printed as a table or as JSON; `bench` hands
//! over to the load generator.
//!
//! Requests go through the generated stubs, not the client library (`resilient-circuit`):
//! the library offers no call that means what these commands mean. Its Acquire answers
//! from a fallback after a 50 ms deadline, its protectors are created on first use, and
//! it has no Get, List, Report of a given permit, raw Watch or admin call; an operator's
//! command must print the daemon's own answer, whole, with its exit code.

use std::process::ExitCode;

use resilient_circuit_api::{Bearer, v1};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::cli::{Cli, Command, Request};

use crate::error::{EXIT_REJECTED, Failure};
use crate::session::Session;
use crate::{timeline, view, watch};

/// Runs the command line's command; `Ok` carries the exit code of an answered command.
pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let tls = tls(&cli)?;
    match cli.command {
        // The load generator opens connections of its own, and none in echo mode.
        Command::Bench(args) => {
            let credentials = resilient_circuit_loadgen::Credentials::bearer(cli.token.as_deref())?;
            resilient_circuit_loadgen::run_with(&args, &cli.addr[0], cli.timeout, cli.json, tls, credentials)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(command) => crate::token::run(&command),
        Command::Request(request) => {
            let bearer = Bearer::new(cli.token.as_deref()).map_err(|e| Failure::Other(e.into()))?;
            // Each address in turn until one answers: an address that cannot be reached
            // (or answers UNAVAILABLE) before anything was printed hands the request to
            // the next. A watch that breaks once it printed is not started over.
            let mut addrs = cli.addr.into_iter().peekable();
            while let Some(addr) = addrs.next() {
                let sent =
                    match Session::open(addr, cli.timeout, cli.json, bearer.clone(), tls.as_ref()).await {
                        Ok(session) => match send(&session, request.clone()).await {
                            Err(failure) if failure.is_unreachable() && !session.printed() => Err(failure),
                            answered => return answered,
                        },
                        Err(failure) => Err(failure),
                    };
                match (sent, addrs.peek()) {
                    (Err(failure), Some(next)) if failure.is_unreachable() => {
                        eprintln!("{failure}; trying {next}");
                    }
                    (result, _) => return result,
                }
            }
            Err(Failure::Other(anyhow::anyhow!(
                "no daemon address given (--addr)"
            )))
        }
    }
}

/// The TLS configuration of `--tls-ca`, `--tls-cert` and `--tls-key`, if any is set.
fn tls(cli: &Cli) -> Result<Option<ClientTlsConfig>, Failure> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Failure::Other(anyhow::anyhow!("{flag} {}: cannot read it: {e}", path.display())))
    };
    let mut tls = match &cli.tls_ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?)),
        None if cli.tls_cert.is_some() => {
            return Err(Failure::Other(anyhow::anyhow!(
                "--tls-cert needs --tls-ca, the CA that signed the daemon's certificate"
            )));
        }
        None => return Ok(None),
    };
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        tls = tls.identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
    }
    Ok(Some(tls))
}

/// Sends `request` and prints its answer.
async fn send(session: &Session, request: Request) -> Result<ExitCode, Failure> {
    let style = session.style();
    match request {
        Request::List {
            prefix,
            page_size,
            page_token,
            all_pages,
        } => list(session, prefix, page_size, page_token, all_pages).await,
        Request::Get { name } => {
            let r = session
                .call(
                    session
                        .protectors()
                        .get_protector(v1::GetProtectorRequest { name }),
                )
                .await?;
            session.show(&r, || view::get(&r, style))
        }
        Request::Ensure { name, policy } => {
            let req = v1::EnsureProtectorRequest {
                name,
                policy: Some(policy.to_policy()),
            };
            let r = session.call(session.protectors().ensure_protector(req)).await?;
            session.show(&r, || view::ensure(&r, style))
        }
        Request::Acquire { name } => {
            let r = session
                .call(session.protectors().acquire(v1::AcquireRequest { name }))
                .await?;
            session.show(&r, || view::acquire(&r, style))?;
            if r.decision == v1::Decision::Admitted as i32 {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(EXIT_REJECTED))
            }
        }
        Request::Report {
            name,
            permit,
            generation,
            outcome,
            duration,
        } => {
            let req = v1::ReportRequest {
                name,
                permit: Some(v1::Permit {
                    generation,
                    id: permit,
                    expires_at: None,
                }),
                outcome: v1::Outcome::from(outcome) as i32,
                duration: duration.map(resilient_circuit_api::convert::duration),
            };
            let r = session.call(session.protectors().report(req)).await?;
            session.show(&r, || view::report(&r, style))
        }
        Request::Watch(args) => {
            watch::run(session, session.protectors(), args.to_request(), args.count).await
        }
        Request::SetStatus {
            name,
            status,
            open_for,
        } => {
            let req = v1::SetStatusRequest {
                name,
                status: v1::Status::from(status) as i32,
                open_for: open_for.map(resilient_circuit_api::convert::duration),
            };
            let r = session.call(session.admin().set_status(req)).await?;
            session.show(&r, || view::set_status(&r, style))
        }
        Request::Override {
            name,
            kind,
            expires_after,
        } => {
            let req = v1::SetOverrideRequest {
                name,
                kind: v1::OverrideKind::from(kind) as i32,
                expires_after: expires_after.map(resilient_circuit_api::convert::duration),
            };
            let r = session.call(session.admin().set_override(req)).await?;
            session.show(&r, || view::changed(r.protector.as_ref(), r.revision, style))
        }
        Request::UpdatePolicy { name, policy } => {
            let req = v1::UpdatePolicyRequest {
                name,
                policy: Some(policy.to_policy()),
            };
            let r = session.call(session.admin().update_policy(req)).await?;
            session.show(&r, || view::changed(r.protector.as_ref(), r.revision, style))
        }
        Request::Simulate { name, policy } => {
            let req = v1::SimulatePolicyRequest {
                name,
                policy: Some(policy.to_policy()),
            };
            let r = session.call(session.admin().simulate_policy(req)).await?;
            session.show(&r, || timeline::simulate(&r, style))
        }
        Request::Delete { name } => {
            let req = v1::DeleteProtectorRequest { name: name.clone() };
            let r = session.call(session.admin().delete_protector(req)).await?;
            session.show(&r, || view::delete(&name, &r))
        }
        Request::Cluster => {
            let r = session
                .call(session.admin().get_cluster(v1::GetClusterRequest {}))
                .await?;
            session.show(&r, || view::cluster(&r))
        }
    }
}

async fn list(
    session: &Session,
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
        let page = session.call(session.protectors().list_protectors(req)).await?;
        all.protectors.extend(page.protectors);
        all.revision = page.revision;
        all.next_page_token = page.next_page_token;
        if !all_pages || all.next_page_token.is_empty() {
            break;
        }
        page_token = std::mem::take(&mut all.next_page_token);
    }
    let code = session.show(&all, || view::list(&all.protectors, session.style()))?;
    if !all.next_page_token.is_empty() && session.json().is_none() {
        eprintln!(
            "more protectors follow: --page-token {} (or --all-pages)",
            all.next_page_token
        );
    }
    Ok(code)
}
