//! Retry and safety-net behaviour on paused tokio time, without a daemon (the backoff
//! schedules themselves are unit-tested in `src/backoff.rs`).
//!
//! Elapsed times are virtual and exact: with the clock paused, a sleep completes the
//! instant the runtime has nothing else to do, advancing time by exactly its length.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_circuit::backoff::{ExponentialDelay, FixedDelay};
use resilient_circuit::policy::Policy;
use resilient_circuit::retry::RetryWithBackoff;
use resilient_circuit::safety_net::SafetyNet;
use resilient_circuit::{CallError, Rejection, Status};
use resilient_circuit_breaker::DecisionReason;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// The test's own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    Transient,
    Permanent,
}

/// An append-only record of what happened, shared by a test's policies and calls.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.events().iter().filter(|e| e.starts_with(prefix)).count()
    }
}

/// Milliseconds of virtual time since `start`.
fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

fn exponential(min_ms: u32, max_ms: u32, factor: f64, jitter: f64) -> ExponentialDelay {
    ExponentialDelay::try_new(min_ms * MS, max_ms * MS, factor, jitter).expect("valid backoff")
}

fn rejection(retry_after: Option<Duration>) -> Rejection {
    Rejection {
        name: "payments".into(),
        status: Status::Open,
        reason: DecisionReason::Open,
        retry_after,
        fallback: false,
    }
}

/// A test-only policy that logs around each execution it wraps.
#[derive(Debug)]
struct Recorder {
    name: &'static str,
    log: Log,
}

impl<E> Policy<E> for Recorder {
    async fn execute<'a, T, F, Fut>(&'a self, mut f: F) -> Result<T, CallError<E>>
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        self.log.push(format!("{} enter", self.name));
        let result = f().await;
        let how = if result.is_ok() { "ok" } else { "err" };
        self.log.push(format!("{} exit {how}", self.name));
        result
    }
}

/// A test-only stand-in for an open protector: rejects once it has seen `trip_after`
/// failures, with `retry_after`.
#[derive(Debug)]
struct Tripwire {
    trip_after: usize,
    retry_after: Option<Duration>,
    failures: Mutex<usize>,
    log: Log,
}

impl Tripwire {
    fn new(trip_after: usize, retry_after: Option<Duration>, log: Log) -> Self {
        Self {
            trip_after,
            retry_after,
            failures: Mutex::new(0),
            log,
        }
    }
}

impl<E> Policy<E> for Tripwire {
    async fn execute<'a, T, F, Fut>(&'a self, mut f: F) -> Result<T, CallError<E>>
    where
        T: Send + 'a,
        E: Send + 'a,
        F: FnMut() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, CallError<E>>> + Send + 'a,
    {
        if *self.failures.lock().unwrap() >= self.trip_after {
            self.log.push("rejected");
            return Err(CallError::Rejected(rejection(self.retry_after)));
        }
        let result = f().await;
        if result.is_err() {
            *self.failures.lock().unwrap() += 1;
        }
        result
    }
}

/// A call that fails `failures` times with `Transient`, then answers `attempt number`,
/// logging the virtual instant of each attempt.
fn flaky(
    failures: u32,
    start: Instant,
    log: &Log,
) -> impl FnMut() -> std::future::Ready<Result<u32, Fault>> + Send + use<> {
    let log = log.clone();
    let mut attempt = 0;
    move || {
        attempt += 1;
        log.push(format!("attempt {attempt} at {}", ms_since(start)));
        std::future::ready(if attempt > failures {
            Ok(attempt)
        } else {
            Err(Fault::Transient)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_waits_between_attempts_but_not_after_the_last() {
    let retry = RetryWithBackoff::<Fault>::new().backoff(FixedDelay(250 * MS));
    let log = Log::default();
    let start = Instant::now();

    let err = retry.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    // Three retries: four attempts, three waits, and no fourth wait before giving up.
    assert_eq!(ms_since(start), 750);
    assert_eq!(
        log.events(),
        [
            "attempt 1 at 0",
            "attempt 2 at 250",
            "attempt 3 at 500",
            "attempt 4 at 750"
        ]
    );
    match err {
        CallError::RetryLimitReached { attempts, last } => {
            assert_eq!(attempts, 4);
            assert!(matches!(*last, CallError::Failed(Fault::Transient)));
        }
        other => panic!("expected RetryLimitReached, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_total_is_the_sum_of_the_delays_between_attempts() {
    let retry = RetryWithBackoff::<Fault>::new()
        .max_retries(4)
        .backoff(exponential(100, 500, 2.0, 0.0));
    let log = Log::default();
    let start = Instant::now();

    let err = retry.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    // 100 + 200 + 400 + 500 (capped): no wait after the fifth attempt.
    assert_eq!(ms_since(start), 1_200);
    assert_eq!(
        log.events(),
        [
            "attempt 1 at 0",
            "attempt 2 at 100",
            "attempt 3 at 300",
            "attempt 4 at 700",
            "attempt 5 at 1200",
        ]
    );
    assert!(matches!(err, CallError::RetryLimitReached { attempts: 5, .. }));
    assert_eq!(err.failure(), Some(&Fault::Transient));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_recovers_returns_its_value_after_the_waits_it_needed() {
    let retry = RetryWithBackoff::<Fault>::new().backoff(exponential(100, 1_000, 2.0, 0.0));
    let log = Log::default();
    let start = Instant::now();

    let value = retry.call(flaky(2, start, &log)).await.unwrap();

    assert_eq!(value, 3);
    assert_eq!(ms_since(start), 300);
    assert_eq!(log.count("attempt"), 3);
}

#[tokio::test(start_paused = true)]
async fn the_default_retries_three_times_without_waiting() {
    let retry = RetryWithBackoff::<Fault>::default();
    assert_eq!(retry.retries(), 3);
    let log = Log::default();
    let start = Instant::now();

    let err = retry.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    assert!(matches!(err, CallError::RetryLimitReached { attempts: 4, .. }));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn zero_retries_means_one_attempt() {
    let retry = RetryWithBackoff::<Fault>::new()
        .max_retries(0)
        .backoff(FixedDelay(Duration::from_secs(1)));
    let log = Log::default();
    let start = Instant::now();

    let err = retry.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    assert!(matches!(err, CallError::RetryLimitReached { attempts: 1, .. }));
    assert_eq!(log.count("attempt"), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_error_should_handle_declines_is_returned_at_once() {
    let retry = RetryWithBackoff::<Fault>::new()
        .backoff(FixedDelay(100 * MS))
        .should_handle(|e| *e == Fault::Transient);
    let start = Instant::now();
    let mut attempts = 0;

    // Transient twice (retried), then Permanent (not retried).
    let err = retry
        .call(|| {
            attempts += 1;
            std::future::ready(if attempts < 3 {
                Err::<(), _>(Fault::Transient)
            } else {
                Err(Fault::Permanent)
            })
        })
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::Failed(Fault::Permanent)), "{err:?}");
    assert_eq!(attempts, 3);
    assert_eq!(ms_since(start), 200);
}

#[tokio::test(start_paused = true)]
async fn should_handle_false_on_the_first_attempt_means_no_retry() {
    let retry = RetryWithBackoff::<Fault>::new()
        .backoff(FixedDelay(100 * MS))
        .should_handle(|_| false);
    let log = Log::default();
    let start = Instant::now();

    let err = retry.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    assert!(matches!(err, CallError::Failed(Fault::Transient)), "{err:?}");
    assert_eq!(log.count("attempt"), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// An attempt function that is rejected `rejections` times with `retry_after`, then succeeds.
fn rejected_then_ok(
    rejections: u32,
    retry_after: Option<Duration>,
    start: Instant,
    log: &Log,
) -> impl FnMut() -> std::future::Ready<Result<u32, CallError<Fault>>> + Send + use<> {
    let log = log.clone();
    let mut attempt = 0;
    move || {
        attempt += 1;
        log.push(format!("attempt {attempt} at {}", ms_since(start)));
        std::future::ready(if attempt > rejections {
            Ok(attempt)
        } else {
            Err(CallError::Rejected(rejection(retry_after)))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejection_whose_retry_after_fits_is_retried_after_exactly_retry_after() {
    let retry = RetryWithBackoff::<Fault>::new().backoff(exponential(100, 1_000, 2.0, 0.0));
    let log = Log::default();
    let start = Instant::now();

    // 30 ms fits the first delay (100 ms), 150 ms fits the second (200 ms).
    let value = retry
        .execute(rejected_then_ok(1, Some(30 * MS), start, &log))
        .await
        .unwrap();
    assert_eq!(value, 2);
    assert_eq!(log.events(), ["attempt 1 at 0", "attempt 2 at 30"]);

    let log = Log::default();
    let start = Instant::now();
    let value = retry
        .execute(rejected_then_ok(2, Some(100 * MS), start, &log))
        .await
        .unwrap();
    assert_eq!(value, 3);
    // A retry_after equal to the delay fits.
    assert_eq!(
        log.events(),
        ["attempt 1 at 0", "attempt 2 at 100", "attempt 3 at 200"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_whose_retry_after_does_not_fit_is_returned_at_once() {
    let retry = RetryWithBackoff::<Fault>::new().backoff(exponential(100, 1_000, 2.0, 0.0));

    for retry_after in [Some(101 * MS), Some(Duration::from_secs(30)), None] {
        let log = Log::default();
        let start = Instant::now();
        let err = retry
            .execute(rejected_then_ok(u32::MAX, retry_after, start, &log))
            .await
            .unwrap_err();
        match err {
            CallError::Rejected(r) => assert_eq!(r.retry_after, retry_after),
            other => panic!("expected Rejected for {retry_after:?}, got {other:?}"),
        }
        assert_eq!(log.count("attempt"), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejection_on_the_last_attempt_ends_with_the_retry_limit() {
    let retry = RetryWithBackoff::<Fault>::new()
        .max_retries(1)
        .backoff(FixedDelay(100 * MS));
    let log = Log::default();
    let start = Instant::now();

    let err = retry
        .execute(rejected_then_ok(u32::MAX, Some(10 * MS), start, &log))
        .await
        .unwrap_err();

    assert!(
        matches!(err, CallError::RetryLimitReached { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.rejection().and_then(|r| r.retry_after), Some(10 * MS));
    assert_eq!(ms_since(start), 10);
}

#[tokio::test(start_paused = true)]
async fn an_inner_retry_limit_is_judged_by_its_last_error() {
    let inner = RetryWithBackoff::<Fault>::new().max_retries(1);
    let declines_permanent = RetryWithBackoff::<Fault>::new()
        .max_retries(2)
        .should_handle(|e| *e == Fault::Transient);
    let mut calls = 0;

    let err = SafetyNet::new(&declines_permanent, &inner)
        .call(|| {
            calls += 1;
            std::future::ready(Err::<(), _>(Fault::Permanent))
        })
        .await
        .unwrap_err();

    // The inner retry gave up on Permanent after 2 attempts; the outer declines Permanent.
    assert_eq!(calls, 2);
    assert!(
        matches!(err, CallError::RetryLimitReached { attempts: 2, .. }),
        "{err:?}"
    );

    let retries_all = RetryWithBackoff::<Fault>::new().max_retries(2);
    let mut calls = 0;
    let err = SafetyNet::new(&retries_all, &inner)
        .call(|| {
            calls += 1;
            std::future::ready(Err::<(), _>(Fault::Transient))
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 6);
    match err {
        CallError::RetryLimitReached { attempts: 3, last } => {
            assert!(matches!(*last, CallError::RetryLimitReached { attempts: 2, .. }));
        }
        other => panic!("expected the outer RetryLimitReached, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_outside_sees_the_inner_policy_around_every_attempt() {
    let log = Log::default();
    let net = SafetyNet::new(
        RetryWithBackoff::<Fault>::new()
            .max_retries(2)
            .backoff(FixedDelay(10 * MS)),
        Recorder {
            name: "inner",
            log: log.clone(),
        },
    );
    let start = Instant::now();

    let value = net.call(flaky(2, start, &log)).await.unwrap();

    assert_eq!(value, 3);
    assert_eq!(
        log.events(),
        [
            "inner enter",
            "attempt 1 at 0",
            "inner exit err",
            "inner enter",
            "attempt 2 at 10",
            "inner exit err",
            "inner enter",
            "attempt 3 at 20",
            "inner exit ok",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_inside_runs_whole_within_one_outer_execution() {
    let log = Log::default();
    let net = SafetyNet::new(
        Recorder {
            name: "outer",
            log: log.clone(),
        },
        RetryWithBackoff::<Fault>::new()
            .max_retries(2)
            .backoff(FixedDelay(10 * MS)),
    );
    let start = Instant::now();

    let err = net.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    assert!(matches!(err, CallError::RetryLimitReached { attempts: 3, .. }));
    assert_eq!(
        log.events(),
        [
            "outer enter",
            "attempt 1 at 0",
            "attempt 2 at 10",
            "attempt 3 at 20",
            "outer exit err",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn then_nests_each_policy_inside_the_previous_ones() {
    let log = Log::default();
    let recorder = |name| Recorder {
        name,
        log: log.clone(),
    };
    let net = SafetyNet::new(recorder("first"), recorder("second")).then(recorder("third"));
    let start = Instant::now();

    net.call(flaky(0, start, &log)).await.unwrap();

    assert_eq!(
        log.events(),
        [
            "first enter",
            "second enter",
            "third enter",
            "attempt 1 at 0",
            "third exit ok",
            "second exit ok",
            "first exit ok",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_around_a_tripped_protector_stops_instead_of_hammering() {
    let log = Log::default();
    // Trips after two failures; while open it says "come back in 30 s".
    let protector = Tripwire::new(2, Some(Duration::from_secs(30)), log.clone());
    let retry = RetryWithBackoff::<Fault>::new()
        .max_retries(10)
        .backoff(FixedDelay(100 * MS));
    let net = SafetyNet::new(&retry, &protector);
    let start = Instant::now();

    let err = net.call(flaky(u32::MAX, start, &log)).await.unwrap_err();

    assert!(matches!(err, CallError::Rejected(_)), "{err:?}");
    assert_eq!(log.events(), ["attempt 1 at 0", "attempt 2 at 100", "rejected"]);
    assert_eq!(ms_since(start), 200);
}
