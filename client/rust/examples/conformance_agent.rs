//! The Rust agent of the cross-language test (conformance/README.md, section 3): one
//! protector handle on the daemon at ADDRESS, commands on stdin, one line per answer and
//! per status change on stdout.
//!
//! ```sh
//! cargo run -p resilient-circuit --example conformance_agent -- 127.0.0.1:50051 shared
//! ```

use std::time::Duration;

use resilient_circuit::{Client, Fallback, PolicySpec, ProtectorPolicy, Status};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long an Acquire may wait for the daemon: generous, so the daemon decides even on
/// a loaded machine (the protocol's calls must reach it to trip it).
const ACQUIRE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Failed;

fn status(s: Status) -> &'static str {
    match s {
        Status::Closed => "CLOSED",
        Status::Open => "OPEN",
        Status::HalfOpen => "HALF_OPEN",
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(name), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: conformance_agent ADDRESS NAME".into());
    };
    let client = Client::builder(format!("http://{address}"))
        .acquire_deadline(ACQUIRE_DEADLINE)
        .build()
        .await?;
    let policy = ProtectorPolicy::try_new(PolicySpec {
        cooldown: Duration::from_secs(60),
        failure_limit: (2, 2),
        ..PolicySpec::default()
    })?;
    // `build` ensures the protector, so the handle knows its status before `ready`.
    let protector = client
        .protector_builder(name)
        .policy(policy)
        .fallback(Fallback::Deny)
        .build()
        .await?;
    // Rust's stdout is line-buffered and each println! holds its lock for the whole line.
    protector.on_status_change(|c| println!("event {} {}", status(c.from), status(c.to)));
    println!("ready");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (fail, count) = match words.as_slice() {
            ["quit"] => break,
            ["fail", n] => (true, n.parse::<u32>()),
            ["succeed", n] => (false, n.parse::<u32>()),
            _ => {
                println!("error unknown command: {line}");
                continue;
            }
        };
        let Ok(count) = count else {
            println!("error not a count: {line}");
            continue;
        };
        for _ in 0..count {
            // A rejection is not an error here: the protector may be OPEN already.
            let _ = protector
                .call(|| async move { if fail { Err(Failed) } else { Ok(()) } })
                .await;
        }
        println!("ok {line}");
    }
    Ok(())
}
