//! The vectors file (conformance/README.md, section 1) as Rust types, read with serde:
//! every key is known (`deny_unknown_fields`), so a typo in a vector fails the test
//! instead of turning a check off.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub format: u32,
    pub deadline_ms: u64,
    pub vectors: Vec<Vector>,
}

impl File {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> File {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let file: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            file.format,
            1,
            "{}: a format this player does not know",
            path.display()
        );
        file
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub daemon: DaemonSetup,
    #[serde(default)]
    pub client: ClientSetup,
    pub steps: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSetup {
    #[serde(default)]
    pub flags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSetup {
    pub acquire_deadline_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub cooldown_ms: Option<u64>,
    pub failure_limit: Option<(u32, u32)>,
    pub success_limit: Option<(u32, u32)>,
    pub trial_permits: Option<u32>,
    pub permit_ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    Deny,
    Allow,
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Admitted,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Daemon,
    Cache,
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    Ok,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ran {
    Ran,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    SetStatus,
    SetOverride,
    Delete,
}

/// What an Acquire answered, in the vectors' terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    pub trial: bool,
    pub source: Source,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub fallback: bool,
    pub retry_after: bool,
}

/// The expectation of an `acquire` or `acquire_until`: only the fields given are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: Option<Decision>,
    pub trial: Option<bool>,
    pub source: Option<Source>,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub fallback: Option<bool>,
    pub retry_after: Option<bool>,
}

impl Expect {
    /// Whether `answer` has every field given.
    pub fn matches(&self, a: &Answer) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, got: &T) -> bool {
            want.as_ref().is_none_or(|w| w == got)
        }
        ok(&self.decision, &a.decision)
            && ok(&self.trial, &a.trial)
            && ok(&self.source, &a.source)
            && self.reason.as_ref().is_none_or(|r| a.reason.as_ref() == Some(r))
            && self.status.as_ref().is_none_or(|s| a.status.as_ref() == Some(s))
            && ok(&self.fallback, &a.fallback)
            && ok(&self.retry_after, &a.retry_after)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportExpect {
    pub accepted: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteExpect {
    pub outcome: Ran,
    pub reason: Option<String>,
    pub fallback: Option<bool>,
}

fn one() -> u32 {
    1
}

/// One step (README, "Steps").
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Protector {
        id: String,
        name: String,
        #[serde(default)]
        policy: Policy,
        #[serde(default)]
        fallback: Fallback,
        #[serde(default)]
        cached: bool,
        staleness_ms: Option<u64>,
        #[serde(default)]
        watch: bool,
    },
    Acquire {
        protector: String,
        permit: Option<String>,
        #[serde(default)]
        expect: Expect,
    },
    AcquireUntil {
        protector: String,
        permit: Option<String>,
        expect: Expect,
    },
    Report {
        permit: String,
        outcome: Outcome,
        #[serde(default)]
        expect: ReportExpect,
    },
    Execute {
        protector: String,
        result: CallResult,
        #[serde(default = "one")]
        times: u32,
        expect: ExecuteExpect,
    },
    Change {
        protector: String,
        from: String,
        to: String,
        reason: Option<String>,
    },
    NoChange {
        protector: String,
    },
    Admin {
        action: AdminAction,
        name: String,
        status: Option<String>,
        kind: Option<String>,
    },
    Inspect {
        name: String,
        expect: BTreeMap<String, serde_json::Value>,
    },
    StopDaemon,
    StartDaemon,
    FreezeDaemon,
    ThawDaemon,
}
