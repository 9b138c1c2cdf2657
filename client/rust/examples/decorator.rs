//! Wrapping an async function with a shared protector: every call goes through
//! `protector.call`, which asks the daemon, runs the function and reports how it went.
//!
//! Start a daemon (`cargo run --release`), then:
//!
//! ```text
//! cargo run -p resilient-circuit --example decorator
//! ```
//!
//! The daemon's address comes from `RESILIENT_CIRCUIT_ADDR` (default
//! `http://127.0.0.1:50051`).

use std::time::Duration;

use resilient_circuit::{CallError, Client, Fallback, PolicySpec, Protector, ProtectorPolicy};

/// What the pretend downstream service fails with.
#[derive(Debug, thiserror::Error)]
#[error("the inventory service answered 503")]
struct Unavailable;

/// The function to protect: the service is down for items 4 to 9.
async fn fetch_stock(item: u32) -> Result<u32, Unavailable> {
    if (4..=9).contains(&item) {
        Err(Unavailable)
    } else {
        Ok(item * 10)
    }
}

/// The decorated function: same arguments, same result, plus the rejection case.
async fn protected_fetch_stock(protector: &Protector, item: u32) -> Result<u32, CallError<Unavailable>> {
    protector.call(|| fetch_stock(item)).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr =
        std::env::var("RESILIENT_CIRCUIT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".to_owned());
    let client = Client::connect(addr).await?;

    // Open when 2 of the last 4 calls failed; try again after 5 s. If the daemon is
    // down, an in-process protector with the same policy decides meanwhile.
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: Duration::from_secs(5),
        failure_limit: (2, 4),
        ..PolicySpec::default()
    })?;
    let protector = client
        .protector_builder("example.inventory")
        .policy(policy)
        .fallback(Fallback::Local)
        .build()
        .await?;
    protector.on_status_change(|c| println!("{}: {:?} -> {:?} ({:?})", c.name, c.from, c.to, c.reason));

    for item in 1..=12 {
        match protected_fetch_stock(&protector, item).await {
            Ok(stock) => println!("item {item}: {stock} in stock"),
            Err(CallError::Rejected(r)) => println!("item {item}: not called: {r}"),
            Err(e) => println!("item {item}: {e}"),
        }
    }
    println!("fallback decisions: {}", protector.fallback_decisions());
    Ok(())
}
