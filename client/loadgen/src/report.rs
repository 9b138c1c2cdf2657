//! How a run's result looks: a few aligned lines for a person, or one JSON object, on
//! stdout; notes for the operator go to stderr, after [`NOTE`].

use serde_json::{Value, json};

use crate::args::{Args, Mode};
use crate::plan::Measured;

/// How notes on stderr begin: the load generator runs as this command.
pub const NOTE: &str = "circuitctl bench";

/// A run's result with what it was asked to do.
#[derive(Debug)]
pub struct Summary<'a> {
    /// The command line.
    pub args: &'a Args,
    /// Connections actually used.
    pub connections: usize,
    /// The run (the echo run itself in echo mode).
    pub measured: &'a Measured,
    /// The echo baseline of the same shape, with `--baseline`.
    pub baseline: Option<&'a Measured>,
}

impl Summary<'_> {
    /// One pretty-printed JSON object and a newline.
    pub fn json(&self) -> String {
        let m = self.measured;
        let mut object = json!({
            "mode": self.args.mode.word(),
            "concurrency": self.args.concurrency,
            "connections": self.connections,
            "client_threads": client_threads(),
            "protectors": self.args.protectors,
            "duration_s": m.duration.as_secs_f64(),
            "warmup_s": self.args.warmup.as_secs_f64(),
            "rounds": self.args.rounds,
            "failure_rate": self.args.failure_rate,
            "trip": self.args.trip,
            "acquire_only": self.args.acquire_only,
            "decisions": m.tally.decisions(),
            "admitted": m.tally.admitted,
            "rejected": m.tally.rejected,
            "errors": m.tally.errors,
            "decisions_per_sec": round(m.rate()),
            "p50_us": m.tally.quantile_us(0.5),
            "p99_us": m.tally.quantile_us(0.99),
            "p999_us": m.tally.quantile_us(0.999),
            "mean_us": round(m.tally.mean_us()),
        });
        let fields = object.as_object_mut().expect("built as an object");
        if let Some(transitions) = m.transitions {
            fields.insert("transitions".into(), json!(transitions));
            fields.insert(
                "transitions_per_sec".into(),
                json!(round(transitions as f64 / m.duration.as_secs_f64())),
            );
        }
        for (key, value) in &m.extra {
            fields.insert((*key).into(), json!(value));
        }
        if let Some(b) = self.baseline {
            fields.insert("baseline_decisions_per_sec".into(), json!(round(b.rate())));
            fields.insert("baseline_p50_us".into(), json!(b.tally.quantile_us(0.5)));
            fields.insert("baseline_p99_us".into(), json!(b.tally.quantile_us(0.99)));
            fields.insert("baseline_p999_us".into(), json!(b.tally.quantile_us(0.999)));
            fields.insert("ratio_to_baseline".into(), ratio(m, b));
        }
        serde_json::to_string_pretty(&object).expect("a JSON value always prints") + "\n"
    }

    /// The human summary.
    pub fn text(&self) -> String {
        let a = self.args;
        let m = self.measured;
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let what = match a.mode {
            Mode::Unary => "Acquire + Report, two unary calls",
            Mode::Session => "Acquire + Report, pipelined on a Session",
            Mode::Echo => "two unary Echo calls",
            Mode::Watch => "a Watch delivery",
            Mode::Cached => "the library's acquire + resolve, cached",
            Mode::Library => "the library's acquire + resolve, through the daemon",
        };
        let mut out = format!(
            "bench {}: {} in flight on {}, {}, {} measured after {} warmup\n",
            a.mode.word(),
            a.concurrency,
            plural(self.connections as u64, "connection"),
            plural(u64::from(a.protectors), "protector"),
            humantime::format_duration(m.duration),
            humantime::format_duration(a.warmup),
        );
        out += &format!(
            "  decisions/s     {:>12}   ({} admitted, {} rejected, {} errors)\n",
            thousands(m.rate()),
            m.tally.admitted,
            m.tally.rejected,
            m.tally.errors,
        );
        let what = if a.acquire_only && !matches!(a.mode, Mode::Cached | Mode::Library) {
            "one Acquire, not reported"
        } else {
            what
        };
        out += &format!("  latency µs      {}   (one decision: {what})\n", quantiles(m));
        if let Some(t) = m.transitions {
            out += &format!(
                "  transitions/s   {:>12}   ({t} in the window)\n",
                thousands(t as f64 / m.duration.as_secs_f64())
            );
        }
        for (key, value) in &m.extra {
            out += &format!("  {key:<15} {value:>12}\n");
        }
        if let Some(b) = self.baseline {
            let shape = if matches!(a.mode, Mode::Session | Mode::Library) {
                "two messages on an EchoStream"
            } else {
                "two unary Echo calls"
            };
            out += &format!(
                "  echo baseline   {:>12}/s ({shape} per decision)\n  baseline µs     {}\n",
                thousands(b.rate()),
                quantiles(b)
            );
            if let Some(r) = ratio(m, b).as_f64() {
                out += &format!("  ratio           {r:>12.3}   of the baseline's decisions/s\n");
            }
            if a.rounds > 1 {
                out += &format!(
                    "  rounds          {:>12}   (echo and daemon in turns, {} slices each)\n",
                    a.rounds,
                    humantime::format_duration(m.duration / a.rounds)
                );
            }
        }
        out
    }
}

/// The worker threads of the runtime the run drove from (1 outside a multi-thread one).
fn client_threads() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
}

/// This run's rate over the baseline's; null when the baseline made none.
fn ratio(m: &Measured, b: &Measured) -> Value {
    if b.rate() > 0.0 {
        json!((m.rate() / b.rate() * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn quantiles(m: &Measured) -> String {
    let t = &m.tally;
    format!(
        "p50 {}  p99 {}  p999 {}",
        micros(t.quantile_us(0.5)),
        micros(t.quantile_us(0.99)),
        micros(t.quantile_us(0.999)),
    )
}

/// Whole microseconds, except below 100 where (local decisions) the fraction matters.
fn micros(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.3}")
    } else {
        thousands(us)
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to a whole number, with a comma every three digits.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(micros(0.0625), "0.062");
        assert_eq!(micros(12_345.6), "12,346");
    }
}
