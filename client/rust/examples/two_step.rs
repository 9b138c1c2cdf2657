//! The two-step API: acquire a permit, do the work, then resolve the permit with how it
//! went. Useful when the work is not one async function (a stream, a callback, work
//! spread over several tasks). A permit dropped unresolved reports IGNORED.
//!
//! Start a daemon (`cargo run --release`), then:
//!
//! ```text
//! cargo run -p resilient-circuit --example two_step
//! ```
//!
//! The daemon's address comes from `RESILIENT_CIRCUIT_ADDR` (default
//! `http://127.0.0.1:50051`).

use std::time::Duration;

use resilient_circuit::{Client, Outcome, PolicySpec, ProtectorPolicy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr =
        std::env::var("RESILIENT_CIRCUIT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".to_owned());
    let client = Client::connect(addr).await?;
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: Duration::from_secs(5),
        failure_limit: (1, 2),
        ..PolicySpec::default()
    })?;
    let protector = client.protector("example.upload", policy).await?;

    for chunk in 0..6u32 {
        let permit = match protector.acquire().await {
            Ok(permit) => permit,
            Err(rejection) => {
                println!("chunk {chunk}: skipped, retry after {:?}", rejection.retry_after);
                continue;
            }
        };
        // The work: here, pretend uploads where every fourth chunk fails and a
        // cancelled one (chunk 5) is neither a success nor a failure.
        let outcome = match chunk {
            5 => Outcome::Ignored,
            c if c % 4 == 3 => Outcome::Failure,
            _ => Outcome::Success,
        };
        let trial = if permit.is_trial() { " (a trial)" } else { "" };
        let resolved = permit.resolve(outcome).await;
        println!(
            "chunk {chunk}{trial}: {outcome:?}, recorded: {}, status now {:?}",
            resolved.accepted, resolved.status
        );
    }
    println!("client stats: {:?}", client.stats());
    Ok(())
}
