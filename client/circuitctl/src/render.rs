//! The output machinery: aligned tables, ANSI colour, human values, and proto3 JSON.
//!
//! Colour is decided once per run: only when stdout is a terminal and `NO_COLOR` is unset
//! or empty, so piped output and logs never carry escape codes. Columns are aligned on the
//! visible text, before colour is applied, so codes never skew the layout.
//!
//! JSON goes through prost-reflect: a response is re-decoded as a dynamic message of the
//! contract's descriptor set, whose serde form is the canonical proto3 JSON mapping
//! (lowerCamelCase names, enums by name, `"1.5s"` durations, RFC 3339 timestamps, 64-bit
//! integers as strings, default values omitted).

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage};
use resilient_circuit_api::{convert, v1};

/// Whether statuses are painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: std::io::stdout().is_terminal() && !no_color,
        }
    }

    /// Never colour.
    #[cfg(test)]
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// A status cell, coloured by what it means for traffic.
    pub fn status(self, status: i32) -> Cell {
        let color = match v1::Status::try_from(status) {
            Ok(v1::Status::Closed) => Some(GREEN),
            Ok(v1::Status::Open) => Some(RED),
            Ok(v1::Status::HalfOpen) => Some(YELLOW),
            _ => None,
        };
        let text = status_name(status);
        let painted = color.filter(|_| self.color).map(|c| format!("{c}{text}{RESET}"));
        Cell { text, painted }
    }

    /// `from→to`, each side coloured.
    pub fn arrow(self, from: i32, to: i32) -> Cell {
        let (from, to) = (self.status(from), self.status(to));
        Cell {
            text: format!("{}→{}", from.text, to.text),
            painted: Some(format!("{}→{}", from.painted(), to.painted())),
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// One table cell: its visible text and, when coloured, the text with its escape codes.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    text: String,
    painted: Option<String>,
}

impl Cell {
    /// What is written.
    pub fn painted(&self) -> &str {
        self.painted.as_deref().unwrap_or(&self.text)
    }

    /// The visible text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cell followed by plain text.
    pub fn then(mut self, more: &str) -> Cell {
        self.text.push_str(more);
        if let Some(p) = self.painted.as_mut() {
            p.push_str(more);
        }
        self
    }

    fn width(&self) -> usize {
        self.text.chars().count()
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell {
            text,
            ..Cell::default()
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::from(text.to_owned())
    }
}

/// Rows of cells as aligned columns separated by two spaces; the last column is not
/// padded, so lines carry no trailing blanks.
pub fn table(rows: &[Vec<Cell>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(Cell::width)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell.painted());
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.width()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `STATUS_HALF_OPEN` as `HALF_OPEN`.
pub fn status_name(status: i32) -> String {
    enum_name(
        v1::Status::try_from(status).map(|s| s.as_str_name()),
        "STATUS_",
        status,
    )
}

/// An enum value's name without its type prefix, or the number when this build does not
/// know it (a newer daemon).
pub fn enum_name<E>(name: Result<&str, E>, prefix: &str, value: i32) -> String {
    match name {
        Ok(name) => name.strip_prefix(prefix).unwrap_or(name).to_owned(),
        Err(_) => value.to_string(),
    }
}

/// Names of the contract's enums, as tables show them.
pub mod names {
    use super::enum_name;
    use resilient_circuit_api::v1;

    /// ADMITTED or REJECTED.
    pub fn decision(v: i32) -> String {
        enum_name(v1::Decision::try_from(v).map(|e| e.as_str_name()), "DECISION_", v)
    }

    /// Why admitted or rejected.
    pub fn decision_reason(v: i32) -> String {
        enum_name(
            v1::DecisionReason::try_from(v).map(|e| e.as_str_name()),
            "DECISION_REASON_",
            v,
        )
    }

    /// Why a transition happened.
    pub fn transition_reason(v: i32) -> String {
        enum_name(
            v1::TransitionReason::try_from(v).map(|e| e.as_str_name()),
            "TRANSITION_REASON_",
            v,
        )
    }

    /// NONE, FORCED_OPEN or DISABLED.
    pub fn override_kind(v: i32) -> String {
        enum_name(
            v1::OverrideKind::try_from(v).map(|e| e.as_str_name()),
            "OVERRIDE_KIND_",
            v,
        )
    }

    /// SUCCESS, FAILURE or IGNORED.
    pub fn outcome(v: i32) -> String {
        enum_name(v1::Outcome::try_from(v).map(|e| e.as_str_name()), "OUTCOME_", v)
    }

    /// STANDALONE, LEADER or FOLLOWER.
    pub fn replica_role(v: i32) -> String {
        enum_name(
            v1::ReplicaRole::try_from(v).map(|e| e.as_str_name()),
            "REPLICA_ROLE_",
            v,
        )
    }

    /// LAGGED or COMPACTED.
    pub fn resync_reason(v: i32) -> String {
        enum_name(
            v1::ResyncReason::try_from(v).map(|e| e.as_str_name()),
            "RESYNC_REASON_",
            v,
        )
    }
}

/// A wire duration for people, to the millisecond: `1m 30s`, `250ms`, `0s`.
pub fn duration(d: Option<&prost_types::Duration>) -> String {
    match d.map(convert::std_duration) {
        None => "-".to_owned(),
        Some(Ok(d)) => human(d),
        Some(Err(e)) => format!("invalid ({e})"),
    }
}

/// A duration for people, to the millisecond.
pub fn human(d: Duration) -> String {
    let millis = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(millis).to_string()
}

/// A wire timestamp as RFC 3339 with milliseconds, plus how far it is from now.
pub fn instant(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return "-".to_owned();
    };
    let Some(at) = convert::time(ts).map(|t| SystemTime::UNIX_EPOCH + t) else {
        return format!("invalid ({}s {}ns)", ts.seconds, ts.nanos);
    };
    let when = humantime::format_rfc3339_millis(at);
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => format!("{when} (in {})", human(ahead)),
        Err(past) => format!("{when} ({} ago)", human(past.duration())),
    }
}

/// A wire timestamp as RFC 3339 with milliseconds, nothing more (for event lines).
pub fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    let at = ts
        .and_then(convert::time)
        .map_or_else(SystemTime::now, |t| SystemTime::UNIX_EPOCH + t);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A response message the JSON printer can name in the descriptor set.
pub trait Wire: prost::Message + Sized {
    /// The message's full protobuf name.
    const NAME: &'static str;
}

macro_rules! wire {
    ($($t:ident),* $(,)?) => {
        $(impl Wire for v1::$t {
            const NAME: &'static str = concat!("resilient_circuit.v1.", stringify!($t));
        })*
    };
}

wire!(
    ListProtectorsResponse,
    GetProtectorResponse,
    EnsureProtectorResponse,
    AcquireResponse,
    ReportResponse,
    WatchEvent,
    SetStatusResponse,
    SetOverrideResponse,
    UpdatePolicyResponse,
    DeleteProtectorResponse,
    GetClusterResponse,
    SimulatePolicyResponse,
);

/// Prints messages as proto3 JSON.
#[derive(Debug)]
pub struct Json {
    pool: DescriptorPool,
}

impl Json {
    /// Loads the contract's descriptors.
    pub fn new() -> anyhow::Result<Json> {
        let pool = DescriptorPool::decode(resilient_circuit_api::DESCRIPTOR_SET)
            .context("decoding the contract's descriptor set")?;
        Ok(Json { pool })
    }

    /// The message as a dynamic message of the contract, which serializes as proto3 JSON.
    fn dynamic<M: Wire>(&self, message: &M) -> anyhow::Result<DynamicMessage> {
        let desc = self
            .pool
            .get_message_by_name(M::NAME)
            .with_context(|| format!("{} is not in the descriptor set", M::NAME))?;
        DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
            .with_context(|| format!("re-decoding a {}", M::NAME))
    }

    /// The message as one line of JSON, fields in declaration order.
    pub fn line<M: Wire>(&self, message: &M) -> anyhow::Result<String> {
        serde_json::to_string(&self.dynamic(message)?).with_context(|| format!("serializing a {}", M::NAME))
    }

    /// The message as indented JSON, for a single answer.
    pub fn pretty<M: Wire>(&self, message: &M) -> anyhow::Result<String> {
        serde_json::to_string_pretty(&self.dynamic(message)?)
            .with_context(|| format!("serializing a {}", M::NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_visible_text_even_when_painted() {
        let style = Style { color: true };
        let rows = vec![
            vec![Cell::from("NAME"), Cell::from("STATUS"), Cell::from("GEN")],
            vec![
                Cell::from("a"),
                style.status(v1::Status::HalfOpen as i32),
                Cell::from("3"),
            ],
            vec![
                Cell::from("longer"),
                style.status(v1::Status::Open as i32),
                Cell::from("12"),
            ],
        ];
        let out = table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME    STATUS     GEN");
        assert_eq!(lines[1], "a       \x1b[33mHALF_OPEN\x1b[0m  3");
        assert_eq!(lines[2], "longer  \x1b[31mOPEN\x1b[0m       12");
    }

    #[test]
    fn plain_style_writes_no_escape_codes() {
        let style = Style { color: false };
        let out = table(&[vec![
            style.arrow(v1::Status::Closed as i32, v1::Status::Open as i32),
            Cell::from("x"),
        ]]);
        assert_eq!(out, "CLOSED→OPEN  x\n");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_millis(90_000)), "1m 30s");
        assert_eq!(human(Duration::from_nanos(1_250_999_999)), "1s 250ms");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(duration(None), "-");
    }

    #[test]
    fn json_is_the_canonical_proto3_mapping() {
        let json = Json::new().expect("descriptor set");
        let resp = v1::AcquireResponse {
            decision: v1::Decision::Rejected as i32,
            status: v1::Status::Open as i32,
            permit: None,
            retry_after: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            reason: v1::DecisionReason::Open as i32,
            revision: 7,
            transition: None,
            ..Default::default()
        };
        let line = json.line(&resp).expect("json");
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert!(line.starts_with(r#"{"decision":"#), "not in field order: {line}");
        assert_eq!(v["decision"], "DECISION_REJECTED");
        assert_eq!(v["retryAfter"], "1.500s");
        assert_eq!(v["revision"], "7");
        assert!(v.get("permit").is_none());
    }
}
