//! A retry around a shared protector: flaky calls are retried with exponential backoff,
//! and once the fleet-wide protector opens, the retries stop at the rejection.
//!
//! Start a daemon (`cargo run --release`), then:
//!
//! ```text
//! cargo run -p resilient-circuit --example safety_net
//! ```
//!
//! The daemon's address comes from `RESILIENT_CIRCUIT_ADDR` (default
//! `http://127.0.0.1:50051`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient_circuit::backoff::ExponentialDelay;
use resilient_circuit::client::Client;
use resilient_circuit::retry::RetryWithBackoff;
use resilient_circuit::safety_net::SafetyNet;
use resilient_circuit::{CallError, PolicySpec, ProtectorPolicy};

/// What the pretend downstream service fails with.
#[derive(Debug, thiserror::Error)]
#[error("the payment service timed out")]
struct Timeout;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr =
        std::env::var("RESILIENT_CIRCUIT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".to_owned());
    let client = Client::connect(addr).await?;

    // Open when 3 of the last 5 calls failed; try again after 10 s.
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: Duration::from_secs(10),
        failure_limit: (3, 5),
        ..PolicySpec::default()
    })?;
    let protector = client.protector("example.payments", policy).await?;

    // The retry is outermost, so every attempt asks the protector first.
    let net = SafetyNet::new(
        RetryWithBackoff::new()
            .max_retries(3)
            .backoff(ExponentialDelay::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
            )?)
            .should_handle(|_: &Timeout| true),
        protector,
    );

    // The service answers one call in three.
    let calls = AtomicU32::new(0);
    for request in 1..=8 {
        let started = tokio::time::Instant::now();
        let result = net
            .call(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n % 3 == 2 {
                        Ok(format!("receipt #{n}"))
                    } else {
                        Err(Timeout)
                    }
                }
            })
            .await;
        let took = started.elapsed();
        match result {
            Ok(receipt) => println!("request {request}: {receipt} after {took:?}"),
            Err(CallError::Rejected(rejection)) => println!("request {request}: not sent: {rejection}"),
            Err(CallError::RetryLimitReached { attempts, last }) => {
                println!("request {request}: gave up after {attempts} attempts ({took:?}): {last}")
            }
            Err(CallError::Failed(error)) => println!("request {request}: failed: {error}"),
        }
    }
    println!("the service was called {} times", calls.load(Ordering::SeqCst));
    Ok(())
}
