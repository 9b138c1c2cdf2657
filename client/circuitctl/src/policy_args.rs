//! The policy flags of `ensure`, `update-policy` and `simulate`, and the value parsers
//! they share with the rest of the command line.
//!
//! As everywhere in circuitctl, a value is parsed for its shape only (a duration, `n/d`, a
//! number); whether it is allowed (a window of 1 s to 1 h, a multiplier of at least 1...)
//! is the daemon's call, whose INVALID_ARGUMENT names the field (`policy.max_cooldown`).

use std::time::Duration;

use clap::Args;
use resilient_circuit_api::{convert, v1};

/// The policy flags shared by `ensure`, `update-policy` and `simulate`; an unset flag
/// takes the daemon's default, and every rule of proto/SEMANTICS.md section 2a is off
/// unless its flag is given.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// How long OPEN rejects before a trial call may go, e.g. 30s (default 0).
    #[arg(long, value_parser = duration)]
    pub cooldown: Option<Duration>,
    /// Trip when the window of d outcomes holds at least n/d failures, e.g. 2/5 (default
    /// 1/1); with --window-duration, a failure rate.
    #[arg(long, value_parser = fraction, value_name = "N/D")]
    pub failure_limit: Option<v1::Fraction>,
    /// HALF_OPEN closes when its window of d outcomes holds at least n/d successes.
    #[arg(long, value_parser = fraction, value_name = "N/D")]
    pub success_limit: Option<v1::Fraction>,
    /// Most trial calls in flight in HALF_OPEN (0 = unlimited; default the window size).
    #[arg(long)]
    pub trial_permits: Option<u32>,
    /// How long a trial permit lives without a report (default 30s).
    #[arg(long, value_parser = duration)]
    pub permit_ttl: Option<Duration>,
    /// The daemon moves OPEN to HALF_OPEN itself when the cooldown ends.
    #[arg(long)]
    pub auto_half_open: bool,
    /// CLOSED judges the outcomes of this last span (a time window, 1s to 1h) instead of
    /// the last d outcomes (default: the count window).
    #[arg(long, value_parser = duration)]
    pub window_duration: Option<Duration>,
    /// With --window-duration: no rate rule is judged while the window holds fewer calls
    /// (default: failure limit's d).
    #[arg(long, requires = "window_duration")]
    pub minimum_calls: Option<u32>,
    /// In CLOSED, this many failures in a row trip at once (default 0: off).
    #[arg(long)]
    pub consecutive_failures: Option<u32>,
    /// A call reported with a duration at or above this is slow, e.g. 500ms (1ms to 1h);
    /// needs --slow-call-limit.
    #[arg(long, value_parser = duration, requires = "slow_call_limit")]
    pub slow_call_duration: Option<Duration>,
    /// Trip (or reopen from HALF_OPEN) when the window is full and slow calls / calls
    /// reach n/d; needs --slow-call-duration.
    #[arg(long, value_parser = fraction, value_name = "N/D", requires = "slow_call_duration")]
    pub slow_call_limit: Option<v1::Fraction>,
    /// Each reopening from HALF_OPEN multiplies the previous cooldown by this (1 to 100,
    /// default 1: no backoff), up to --max-cooldown.
    #[arg(long, value_parser = multiplier, value_name = "X")]
    pub cooldown_multiplier: Option<f64>,
    /// The cap of the multiplied cooldown, at least --cooldown (default 30 days).
    #[arg(long, value_parser = duration)]
    pub max_cooldown: Option<Duration>,
    /// Shadow mode: admit every call, and say in each answer whether it would have been
    /// rejected (`would reject`); transitions happen and are published as usual.
    #[arg(long)]
    pub shadow: bool,
    /// Keep this many recent outcomes for `simulate` (default 0: none; at most 1000000).
    #[arg(long)]
    pub history_size: Option<u32>,
}

impl PolicyArgs {
    /// The policy message; unset fields are left for the daemon's defaults.
    pub fn to_policy(&self) -> v1::Policy {
        let duration = |d: Option<Duration>| d.map(convert::duration);
        v1::Policy {
            cooldown: duration(self.cooldown),
            failure_limit: self.failure_limit,
            success_limit: self.success_limit,
            trial_permits: self.trial_permits,
            permit_ttl: duration(self.permit_ttl),
            auto_half_open: self.auto_half_open,
            window_duration: duration(self.window_duration),
            minimum_calls: self.minimum_calls,
            consecutive_failures: self.consecutive_failures.unwrap_or_default(),
            slow_call_duration: duration(self.slow_call_duration),
            slow_call_limit: self.slow_call_limit,
            cooldown_multiplier: self.cooldown_multiplier,
            max_cooldown: duration(self.max_cooldown),
            shadow: self.shadow,
            history_size: self.history_size.unwrap_or_default(),
        }
    }
}

/// A human duration such as `30s`, `1m30s` or `250ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m, 250ms)"))
}

/// `n/d`, two unsigned integers. Their range is left to the daemon.
pub fn fraction(s: &str) -> Result<v1::Fraction, String> {
    let shape = || format!("expected N/D such as 2/5, got {s:?}");
    let (n, d) = s.split_once('/').ok_or_else(shape)?;
    let part = |p: &str| p.trim().parse::<u32>().map_err(|_| shape());
    Ok(v1::Fraction {
        numerator: part(n)?,
        denominator: part(d)?,
    })
}

/// A finite decimal number such as `2` or `1.5`. Its range is left to the daemon.
fn multiplier(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("expected a number such as 2 or 1.5, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn parse(args: &[&str]) -> Result<v1::Policy, clap::Error> {
        Flags::try_parse_from(std::iter::once("flags").chain(args.iter().copied()))
            .map(|f| f.policy.to_policy())
    }

    #[test]
    fn fractions_are_parsed_for_shape_only() {
        let f = fraction("2/5").expect("2/5");
        assert_eq!((f.numerator, f.denominator), (2, 5));
        let f = fraction("6/5").expect("out of range is the daemon's call");
        assert_eq!((f.numerator, f.denominator), (6, 5));
        for bad in ["", "2", "2/", "/5", "a/5", "2/5/7", "-1/5", "2.5/5"] {
            assert!(fraction(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn every_rule_has_a_flag() {
        let p = parse(&[
            "--cooldown=10s",
            "--failure-limit=3/10",
            "--window-duration=1m",
            "--minimum-calls=20",
            "--consecutive-failures=5",
            "--slow-call-duration=250ms",
            "--slow-call-limit=1/2",
            "--cooldown-multiplier=1.5",
            "--max-cooldown=10m",
            "--shadow",
            "--history-size=1000",
        ])
        .expect("parsed");
        assert_eq!(
            p.window_duration,
            Some(convert::duration(Duration::from_secs(60)))
        );
        assert_eq!(p.minimum_calls, Some(20));
        assert_eq!(p.consecutive_failures, 5);
        assert_eq!(
            p.slow_call_duration,
            Some(convert::duration(Duration::from_millis(250)))
        );
        assert_eq!(
            p.slow_call_limit,
            Some(v1::Fraction {
                numerator: 1,
                denominator: 2
            })
        );
        assert_eq!(p.cooldown_multiplier, Some(1.5));
        assert_eq!(p.max_cooldown, Some(convert::duration(Duration::from_secs(600))));
        assert!(p.shadow);
        assert_eq!(p.history_size, 1_000);
        // The daemon's own validation accepts what the flags built.
        let policy = convert::policy(&p).expect("valid");
        assert_eq!(policy.rules().history_size, 1_000);
    }

    #[test]
    fn unset_rules_stay_off() {
        let p = parse(&["--cooldown=1s"]).expect("parsed");
        let policy = convert::policy(&p).expect("valid");
        assert_eq!(policy.rules(), Default::default());
    }

    #[test]
    fn rules_that_go_together_are_required_together_and_shapes_are_checked() {
        for bad in [
            &["--minimum-calls=5"][..],
            &["--slow-call-duration=1s"],
            &["--slow-call-limit=1/2"],
            &["--cooldown-multiplier=fast"],
            &["--cooldown-multiplier=inf"],
            &["--window-duration=soon"],
            &["--history-size=-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        // Out of range is the daemon's call, with the field named.
        let p = parse(&["--cooldown-multiplier=0.5"]).expect("well-formed");
        let refused = convert::policy(&p).expect_err("below 1");
        assert_eq!(refused.field, "cooldown_multiplier");
    }
}
