//! Loading: flag > environment variable > TOML file > default, then every rule checked
//! once, with errors that name where the offending value came from.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use resilient_circuit_api::ProtectorName;
use resilient_circuit_breaker::{Policy, PolicySpec, Rules};

use super::args::{self, Parsed};
use super::error::{ConfigError, Source};
use super::file::{FileConfig, FileProtector};
use super::types::{Config, Limits, LogFormat, ProtectorConfig, StoreSettings, WatchConfig};

/// The contract's limit on a protector name; `max_name_len` may lower it, never raise it.
pub const MAX_NAME_LEN: usize = ProtectorName::MAX_LEN;

/// Everything the binary needs: the daemon's [`Config`] plus what only the process
/// itself uses (how it logs), which the transport-agnostic `Config` does not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The daemon's configuration, for [`crate::serve`].
    pub config: Config,
    /// How the binary writes its logs. Default [`LogFormat::Text`].
    pub log_format: LogFormat,
}

/// The most worker threads `--worker-threads` takes: beyond any host's cores, where a
/// typo's thousands of threads would only cost memory.
pub const MAX_WORKER_THREADS: usize = 1024;

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
pub(super) struct Layers<'a> {
    pub(super) parsed: &'a Parsed,
    pub(super) file: Option<(&'a Path, &'a FileConfig)>,
}

/// One setting's value, where it came from, and its key in the file.
pub(super) struct Picked<T> {
    pub(super) value: T,
    pub(super) origin: Source,
    pub(super) key: &'static str,
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

// After `pick!`, which it uses.
mod sections;

impl Layers<'_> {
    /// The first of flag (or its variable), file, default. `id` is the flag's field name.
    pub(super) fn pick<T>(
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
            max_watchers_per_identity: positive(pick!(
                self,
                max_watchers_per_identity,
                limits.max_watchers_per_identity,
                d.limits.max_watchers_per_identity
            ))?,
            max_sessions_per_identity: positive(pick!(
                self,
                max_sessions_per_identity,
                limits.max_sessions_per_identity,
                d.limits.max_sessions_per_identity
            ))?,
            max_protectors_per_identity: positive(pick!(
                self,
                max_protectors_per_identity,
                limits.max_protectors_per_identity,
                d.limits.max_protectors_per_identity
            ))?,
            // 0 is valid: no protector may keep a history.
            max_history_entries: pick!(
                self,
                max_history_entries,
                limits.max_history_entries,
                d.limits.max_history_entries
            )
            .value,
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
        let connections = self.connections(&d.connections)?;
        let (protectors, protector_rules) = match self.file {
            Some((path, file)) => protectors(path, &file.protectors, &limits)?,
            None => Default::default(),
        };
        let cluster = self.cluster()?;
        let in_memory = pick!(self, in_memory, store.in_memory, false).value;
        let store = if in_memory || cluster.is_some() {
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
        let threads = self.pick(
            "worker_threads",
            self.parsed.args.worker_threads.map(Some),
            "worker_threads",
            |f| f.worker_threads.map(Some),
            None,
        );
        if let Some(n) = threads.value
            && !(1..=MAX_WORKER_THREADS).contains(&n)
        {
            return Err(ConfigError::Invalid {
                setting: threads.key,
                origin: threads.origin,
                rule: format!("must be 1 to {MAX_WORKER_THREADS}, got {n}"),
            });
        }
        let config = Config {
            listen: pick!(self, listen, listen, d.listen).value,
            admin_listen: self
                .pick(
                    "admin_listen",
                    self.parsed.args.admin_listen.map(Some),
                    "admin_listen",
                    |f| f.admin_listen.map(Some),
                    None,
                )
                .value,
            http_listen: self
                .pick(
                    "http_listen",
                    self.parsed.args.http_listen.map(Some),
                    "http_listen",
                    |f| f.http_listen.map(Some),
                    None,
                )
                .value,
            metrics_max_protectors: pick!(
                self,
                metrics_max_protectors,
                metrics_max_protectors,
                d.metrics_max_protectors
            )
            .value,
            tokens: self
                .pick(
                    "tokens",
                    self.parsed.args.tokens.clone().map(Some),
                    "tokens",
                    |f| f.tokens.clone().map(Some),
                    None,
                )
                .value,
            limits,
            watch,
            connections,
            connection_threads: threads.value,
            shutdown_grace: pick!(self, shutdown_grace, shutdown_grace, d.shutdown_grace).value,
            protectors,
            protector_rules,
            config_file: self.file.map(|(path, _)| path.to_owned()),
            store,
            cluster,
            tls: self.tls()?,
        };
        if let Some(admin) = config.admin_listen
            && admin == config.listen
            && admin.port() != 0
        {
            return Err(ConfigError::Invalid {
                setting: "admin_listen",
                origin: pick!(self, admin_listen, admin_listen, admin).origin,
                rule: format!("must differ from listen ({admin}): the admin listener is a second address"),
            });
        }
        if let Some(http) = config.http_listen
            && http.port() != 0
            && (http == config.listen || Some(http) == config.admin_listen)
        {
            return Err(ConfigError::Invalid {
                setting: "http_listen",
                origin: pick!(self, http_listen, http_listen, http).origin,
                rule: format!(
                    "must differ from listen and admin_listen ({http}): HTTP is served on an address of its own"
                ),
            });
        }
        let log_format = pick!(self, log_format, log_format, LogFormat::default()).value;
        Ok(Settings { config, log_format })
    }
}

/// A timeout of zero would close every connection at once, and one of years would
/// keep a dead peer's place as good as forever: both are mistakes, refused.
fn between(p: Picked<Duration>, min: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if !(min..=max).contains(&p.value) {
        let rule = format!(
            "must be between {} and {}, got {}",
            humantime::format_duration(min),
            humantime::format_duration(max),
            humantime::format_duration(p.value)
        );
        return Err(ConfigError::Invalid {
            setting: p.key,
            origin: p.origin,
            rule,
        });
    }
    Ok(p.value)
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

pub(super) fn protectors(
    path: &Path,
    entries: &[FileProtector],
    limits: &Limits,
) -> Result<(Vec<ProtectorConfig>, BTreeMap<String, Rules>), ConfigError> {
    if entries.len() > limits.max_protectors {
        return Err(ConfigError::TooManyProtectors {
            path: path.to_owned(),
            count: entries.len(),
            max: limits.max_protectors,
        });
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    let mut rules_out = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let name = entry.name.clone();
        // The API's own rule, so a name the file accepts is one the API accepts.
        if let Err(rule) = ProtectorName::with_max_len(name.as_str(), limits.max_name_len) {
            return Err(ConfigError::ProtectorName {
                path: path.to_owned(),
                index,
                name,
                rule: rule.to_string(),
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
        let rules = entry.rules();
        if let Err(error) = Policy::try_with(policy, rules) {
            return Err(ConfigError::Policy {
                path: path.to_owned(),
                index,
                name,
                error,
            });
        }
        // A marked entry is checked like the others, and then only deleted (config/reload.rs).
        if entry.delete {
            continue;
        }
        if rules != Rules::default() {
            rules_out.insert(name.clone(), rules);
        }
        out.push(ProtectorConfig { name, policy });
    }
    Ok((out, rules_out))
}
