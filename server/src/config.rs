//! Every setting of the daemon, with its default, and how they are loaded.
//!
//! [`Settings::load`] takes each setting from the first of: a command-line flag, its
//! `CIRCUITD_*` environment variable, the TOML file named by `--config`, the default
//! documented on each field of [`Config`]. It checks every rule once (no limit may be zero, `max_name_len` is 1 to 256,
//! each `[[protectors]]` entry has a valid name and policy and a name of its own) and
//! its errors name the flag, variable or file key at fault.
//! `server/circuitd.example.toml` documents the file.
//!
//! Layout (this module only declares its parts and re-exports them; no part imports it):
//! `types` the settings and their defaults, `error` what loading can refuse, `args` the
//! command line and environment, `file` the TOML shape, `load` the precedence and the rules
//! (`load/sections` those of `[cluster]` and `[connections]`), `reload` the
//! `[[protectors]]` read again on SIGHUP.

mod args;
mod error;
mod file;
mod load;
mod reload;
#[cfg(test)]
mod tests;
mod tls;
mod types;

pub use error::{ConfigError, Source};
pub use load::{MAX_NAME_LEN, MAX_WORKER_THREADS, Settings};
pub use reload::Declared;
pub use types::{
    ClusterSettings, Config, ConnectionConfig, DEFAULT_MAX_HISTORY_ENTRIES, Limits, LogFormat,
    ProtectorConfig, StoreSettings, TlsSettings, WatchConfig,
};
