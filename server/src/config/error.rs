//! What loading the settings can refuse, and where the value at fault came from.

use std::fmt;
use std::io;
use std::path::PathBuf;

use resilient_circuit_breaker::PolicyError;

/// Where a setting's value came from, so an error can say what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, e.g. `--max-protectors`.
    Flag(String),
    /// An environment variable, e.g. `CIRCUITD_MAX_PROTECTORS`.
    Env(String),
    /// A key of the config file, e.g. `limits.max_protectors`.
    File {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => f.write_str(flag),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File { path, key } => write!(f, "config file {}: {key}", path.display()),
            Self::Default => f.write_str("the default"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line was refused, or asked for `--help` or `--version`: the binary
    /// should call [`clap::Error::exit`], which prints it and picks the exit code.
    #[error("{0}")]
    Args(clap::Error),
    /// An environment variable holds a value its flag would refuse.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A `CIRCUITD_` environment variable is not valid UTF-8.
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },
    /// The config file could not be read (a file named explicitly must exist).
    #[error("config file {}: cannot read it: {error}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The config file is not valid TOML of the expected shape (the message names the
    /// key and line: unknown keys, wrong types, bad durations or fractions).
    #[error("config file {}: {error}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        error: toml::de::Error,
    },
    /// A setting breaks its rule, e.g. a limit of zero.
    #[error("{origin} {rule}")]
    Invalid {
        /// The setting's key in the file, e.g. `limits.max_protectors`.
        setting: &'static str,
        /// Where the value came from.
        origin: Source,
        /// The rule and the value, e.g. "must be at least 1, got 0".
        rule: String,
    },
    /// A `[[protectors]]` entry has a name the daemon would refuse.
    #[error("config file {}: protectors[{index}].name {name:?}: {rule}", path.display())]
    ProtectorName {
        /// The file.
        path: PathBuf,
        /// The entry's position, from 0.
        index: usize,
        /// The name.
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A `[[protectors]]` entry has a policy `Policy::try_with` refuses; the error names
    /// the field.
    #[error("config file {}: protector {name:?} (protectors[{index}]): {error}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// The entry's position, from 0.
        index: usize,
        /// The protector.
        name: String,
        /// The first policy rule broken.
        error: PolicyError,
    },
    /// Two `[[protectors]]` entries share a name.
    #[error("config file {}: protectors[{second}] repeats the name {name:?} of protectors[{first}]", path.display())]
    DuplicateProtector {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        name: String,
        /// The first entry with it.
        first: usize,
        /// The entry repeating it.
        second: usize,
    },
    /// The file lists more protectors than `max_protectors` allows.
    #[error("config file {}: {count} protectors, more than max_protectors ({max})", path.display())]
    TooManyProtectors {
        /// The file.
        path: PathBuf,
        /// How many it lists.
        count: usize,
        /// The limit in force.
        max: usize,
    },
}
