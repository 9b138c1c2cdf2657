//! Loading: flag > environment variable > TOML file > default, then every rule checked
//! once, with errors that name where the offending value came from.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resilient_circuit_breaker::{InvalidPolicy, Policy, PolicySpec};

use super::args::{self, Parsed};
use super::file::{FileConfig, FileProtector};
use super::{Config, Limits, LogFormat, ProtectorConfig, StoreSettings, WatchConfig};

/// The contract's limit on a protector name; `max_name_len` may lower it, never raise it.
pub const MAX_NAME_LEN: usize = 256;

/// Everything the binary needs: the daemon's [`Config`] plus what only the process
/// itself uses (how it logs), which the transport-agnostic `Config` does not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The daemon's configuration, for [`crate::serve`].
    pub config: Config,
    /// How the binary writes its logs. Default [`LogFormat::Text`].
    pub log_format: LogFormat,
}

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
    /// A `[[protectors]]` entry has a policy `Policy::try_new` refuses; the error names
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
        error: InvalidPolicy,
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

impl Settings {
    /// Loads from this process's arguments and `CIRCUITD_*` environment variables.
    pub fn from_process() -> Result<Settings, ConfigError> {
        let mut env = HashMap::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str().filter(|k| k.starts_with("CIRCUITD_")) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| ConfigError::EnvNotUnicode { var: key.to_owned() })?;
            env.insert(key.to_owned(), value);
        }
        Settings::load(std::env::args_os(), &env)
    }

    /// Loads from `argv` (program name first) and `env` (variable to value; an empty
    /// value counts as unset), reading the config file if one is named.
    pub fn load<I, T>(argv: I, env: &HashMap<String, String>) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Settings::load_with(argv, env, |path| std::fs::read_to_string(path))
    }

    /// [`Settings::load`] with the file read by `read`, so tests need no disk.
    pub(super) fn load_with<I, T>(
        argv: I,
        env: &HashMap<String, String>,
        read: impl FnOnce(&Path) -> io::Result<String>,
    ) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let parsed = args::parse(argv, env)?;
        let file = match &parsed.args.config {
            None => None,
            Some(path) => {
                let text = read(path).map_err(|error| ConfigError::ReadFile {
                    path: path.clone(),
                    error,
                })?;
                let file: FileConfig = toml::from_str(&text).map_err(|error| ConfigError::ParseFile {
                    path: path.clone(),
                    error,
                })?;
                Some((path.as_path(), file))
            }
        };
        Layers {
            parsed: &parsed,
            file: file.as_ref().map(|(p, f)| (*p, f)),
        }
        .resolve()
    }
}

/// The binary's data directory when none is configured: `data` in the working directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// The three sources, consulted in order for each setting.
struct Layers<'a> {
    parsed: &'a Parsed,
    file: Option<(&'a Path, &'a FileConfig)>,
}

/// One setting's value, where it came from, and its key in the file.
struct Picked<T> {
    value: T,
    origin: Source,
    key: &'static str,
}

/// `pick!(layers, flag_field, file.key, default)`: the setting whose flag is
/// `--flag-field` and whose file key is `file.key` (a section and a key, or one key).
macro_rules! pick {
    ($layers:expr, $flag:ident, $($key:ident).+, $default:expr) => {
        $layers.pick(
            stringify!($flag),
            $layers.parsed.args.$flag,
            concat!($(stringify!($key), "."),+).trim_end_matches('.'),
            |f| f.$($key).+.map(Into::into),
            $default,
        )
    };
}

impl Layers<'_> {
    /// The first of flag (or its variable), file, default. `id` is the flag's field name.
    fn pick<T>(
        &self,
        id: &str,
        flag: Option<T>,
        key: &'static str,
        file: impl FnOnce(&FileConfig) -> Option<T>,
        default: T,
    ) -> Picked<T> {
        let (value, origin) = match (flag, self.file) {
            (Some(value), _) => match self.parsed.from_env.get(id) {
                Some(var) => (value, Source::Env(var.clone())),
                None => (value, Source::Flag(format!("--{}", id.replace('_', "-")))),
            },
            (None, Some((path, contents))) => match file(contents) {
                Some(value) => (
                    value,
                    Source::File {
                        path: path.to_owned(),
                        key: key.to_owned(),
                    },
                ),
                None => (default, Source::Default),
            },
            (None, None) => (default, Source::Default),
        };
        Picked { value, origin, key }
    }

    fn resolve(&self) -> Result<Settings, ConfigError> {
        let d = Config::default();
        let limits = Limits {
            max_protectors: positive(pick!(
                self,
                max_protectors,
                limits.max_protectors,
                d.limits.max_protectors
            ))?,
            max_watchers: positive(pick!(
                self,
                max_watchers,
                limits.max_watchers,
                d.limits.max_watchers
            ))?,
            max_name_len: name_len(pick!(
                self,
                max_name_len,
                limits.max_name_len,
                d.limits.max_name_len
            ))?,
            max_message_bytes: positive(pick!(
                self,
                max_message_bytes,
                limits.max_message_bytes,
                d.limits.max_message_bytes
            ))?,
            max_concurrent_streams: positive(pick!(
                self,
                max_concurrent_streams,
                limits.max_concurrent_streams,
                d.limits.max_concurrent_streams
            ))?,
            max_watch_names: positive(pick!(
                self,
                max_watch_names,
                limits.max_watch_names,
                d.limits.max_watch_names
            ))?,
            max_connections: positive(pick!(
                self,
                max_connections,
                limits.max_connections,
                d.limits.max_connections
            ))?,
        };
        let watch = WatchConfig {
            buffer: positive(pick!(self, watch_buffer, watch.buffer, d.watch.buffer))?,
            history: positive(pick!(self, watch_history, watch.history, d.watch.history))?,
            progress_interval: positive_duration(pick!(
                self,
                progress_interval,
                watch.progress_interval,
                d.watch.progress_interval
            ))?,
        };
        let protectors = match self.file {
            Some((path, file)) => protectors(path, &file.protectors, &limits)?,
            None => Vec::new(),
        };
        let in_memory = pick!(self, in_memory, store.in_memory, false).value;
        let store = if in_memory {
            None
        } else {
            let defaults = StoreSettings::new(DEFAULT_DATA_DIR);
            Some(StoreSettings {
                data_dir: self
                    .pick(
                        "data_dir",
                        self.parsed.args.data_dir.clone(),
                        "store.data_dir",
                        |f| f.store.data_dir.clone(),
                        defaults.data_dir.clone(),
                    )
                    .value,
                repair: self.parsed.args.repair.unwrap_or(false),
                flush_interval: positive_duration(pick!(
                    self,
                    flush_interval,
                    store.flush_interval,
                    defaults.flush_interval
                ))?,
                segment_bytes: positive(pick!(
                    self,
                    segment_bytes,
                    store.segment_bytes,
                    defaults.segment_bytes
                ))?,
                faults: None,
            })
        };
        let config = Config {
            listen: pick!(self, listen, listen, d.listen).value,
            limits,
            watch,
            shutdown_grace: pick!(self, shutdown_grace, shutdown_grace, d.shutdown_grace).value,
            protectors,
            store,
        };
        let log_format = pick!(self, log_format, log_format, LogFormat::default()).value;
        Ok(Settings { config, log_format })
    }
}

/// Zero would make the daemon refuse everything (or, for a buffer, cut off every
/// watcher), so it is a mistake rather than a way to switch something off.
fn positive<T: Default + PartialEq + fmt::Display>(p: Picked<T>) -> Result<T, ConfigError> {
    if p.value == T::default() {
        let rule = format!("must be at least 1, got {}", p.value);
        return Err(ConfigError::Invalid {
            setting: p.key,
            origin: p.origin,
            rule,
        });
    }
    Ok(p.value)
}

/// A zero interval would send PROGRESS in a busy loop.
fn positive_duration(p: Picked<Duration>) -> Result<Duration, ConfigError> {
    if p.value.is_zero() {
        let rule = "must be longer than 0".to_owned();
        return Err(ConfigError::Invalid {
            setting: p.key,
            origin: p.origin,
            rule,
        });
    }
    Ok(p.value)
}

fn name_len(p: Picked<usize>) -> Result<usize, ConfigError> {
    if !(1..=MAX_NAME_LEN).contains(&p.value) {
        let rule = format!("must be between 1 and {MAX_NAME_LEN}, got {}", p.value);
        return Err(ConfigError::Invalid {
            setting: p.key,
            origin: p.origin,
            rule,
        });
    }
    Ok(p.value)
}

/// The daemon's own name rule, so a name the file accepts is one the API accepts.
/// `None` when the name is acceptable, else the rule it breaks.
fn name_rule(name: &str, max_len: usize) -> Option<String> {
    match crate::validate::name("name", name, max_len) {
        Ok(()) => None,
        Err(crate::error::Error::InvalidArgument { description, .. }) => Some(description),
        Err(other) => Some(other.to_string()),
    }
}

fn protectors(
    path: &Path,
    entries: &[FileProtector],
    limits: &Limits,
) -> Result<Vec<ProtectorConfig>, ConfigError> {
    if entries.len() > limits.max_protectors {
        return Err(ConfigError::TooManyProtectors {
            path: path.to_owned(),
            count: entries.len(),
            max: limits.max_protectors,
        });
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let name = entry.name.clone();
        if let Some(rule) = name_rule(&name, limits.max_name_len) {
            return Err(ConfigError::ProtectorName {
                path: path.to_owned(),
                index,
                name,
                rule,
            });
        }
        if let Some(&first) = seen.get(entry.name.as_str()) {
            return Err(ConfigError::DuplicateProtector {
                path: path.to_owned(),
                name,
                first,
                second: index,
            });
        }
        seen.insert(&entry.name, index);
        let policy = PolicySpec {
            cooldown: entry.cooldown.0,
            failure_limit: entry.failure_limit.0,
            success_limit: entry.success_limit.map(|f| f.0),
            trial_permits: entry.trial_permits,
            permit_ttl: entry
                .permit_ttl
                .map_or(PolicySpec::default().permit_ttl, Into::into),
            auto_half_open: entry.auto_half_open,
        };
        if let Err(error) = Policy::try_new(policy) {
            return Err(ConfigError::Policy {
                path: path.to_owned(),
                index,
                name,
                error,
            });
        }
        out.push(ProtectorConfig { name, policy });
    }
    Ok(out)
}
