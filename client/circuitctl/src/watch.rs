//! `watch`: print the daemon's change stream live, one line (or JSON object) per message.
//!
//! It runs until ctrl-c (exit 0), the daemon ends the stream cleanly (exit 0), the stream
//! fails (exit 1, or 3 when the daemon went away or is shutting down) or `--count`
//! messages have been printed (exit 0). Only the stream's start is bounded by `--timeout`:
//! an idle stream is normal, and the daemon's PROGRESS messages show it is alive.

use std::process::ExitCode;

use resilient_circuit_api::v1;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;

use crate::error::Failure;
use crate::session::{Session, Wired};
use crate::view;

/// Streams `request` until one of the ends above.
pub async fn run(
    session: &Session,
    mut client: ProtectorServiceClient<Wired>,
    request: v1::WatchRequest,
    count: Option<u64>,
) -> Result<ExitCode, Failure> {
    let mut stream = session.call(client.watch(request)).await?;
    let mut printed: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if count.is_some_and(|n| printed >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        let message = tokio::select! {
            signal = &mut ctrl_c => {
                signal?;
                return Ok(ExitCode::SUCCESS);
            }
            message = stream.message() => message,
        };
        let event = match message {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(ExitCode::SUCCESS),
            Err(status) => return Err(Failure::from_status(session.addr(), status)),
        };
        let line = match session.json() {
            Some(json) => json.line(&event)?,
            None => view::event(&event, session.style()),
        };
        session.print(&(line + "\n"))?;
        printed += 1;
    }
}
